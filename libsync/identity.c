/*
 * identity.c - the broker identity of a cache (see identity.h).
 *
 * The broker keeps a persistent session (clean_session = false) per
 * client id: the subscription and the QoS 1 messages published while the
 * client is away. A new id at every start would abandon one such session
 * per restart and lose what it queued, so the id is chosen once and kept.
 *
 * Rules kept here:
 * - The stored id belongs to one realm and one token subject; asking for
 *   another pair replaces it (in the same write transaction that read it,
 *   so two callers cannot both think they chose) and hands the old id back
 *   for its session to be ended.
 * - A stored value that does not parse is replaced as if absent (nothing
 *   can be retired then: its id is unknown).
 * - One engine per cache uses the identity (the cache lock's concern), so
 *   no two connections ever share the id.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "cache_types.h"
#include "error.h"
#include "identity.h"
#include "json.h"

typedef struct {
	sky_cache *c;
	const char *realm, *sub;
	char *client_id, *retired; /* results (owned until returned) */
} ident_ctx;

/* The stored identity as JSON, or NULL when absent or unreadable. */
static json_t *load(MDB_txn *txn, sky_cache *c)
{
	MDB_val key = {strlen(SKY_META_BROKER_IDENTITY),
		       (void *)SKY_META_BROKER_IDENTITY},
		val;
	if (mdb_get(txn, SKY_DBI(c, SKY_DB_META), &key, &val) != 0)
		return NULL;
	json_t *j = sky__json_loadb(val.mv_data, val.mv_size, 0, NULL);
	if (j && (!json_is_string(json_object_get(j, "realm")) ||
		  !json_is_string(json_object_get(j, "sub")) ||
		  !json_is_string(json_object_get(j, "clientId")))) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

static int choose(MDB_txn *txn, void *arg)
{
	ident_ctx *x = arg;
	/* A rerun (map growth) starts from scratch. */
	free(x->client_id);
	free(x->retired);
	x->client_id = x->retired = NULL;
	json_t *cur = load(txn, x->c);
	if (cur &&
	    !strcmp(json_string_value(json_object_get(cur, "realm")),
		    x->realm) &&
	    !strcmp(json_string_value(json_object_get(cur, "sub")), x->sub)) {
		x->client_id =
		    strdup(json_string_value(json_object_get(cur, "clientId")));
		json_decref(cur);
		return x->client_id ? 0 : sky__error_nomem();
	}
	if (cur && !(x->retired = strdup(json_string_value(
			 json_object_get(cur, "clientId"))))) {
		json_decref(cur);
		return sky__error_nomem();
	}
	json_decref(cur);
	if (asprintf(&x->client_id, "%s-%s-%08u", x->realm, x->sub,
		     (unsigned)(sky__random_u64() % 100000000u)) < 0) {
		x->client_id = NULL;
		return sky__error_nomem();
	}
	json_t *j = json_object();
	char *text = NULL;
	int rc = -1;
	if (!j || json_object_set_new(j, "realm", json_string(x->realm)) < 0 ||
	    json_object_set_new(j, "sub", json_string(x->sub)) < 0 ||
	    json_object_set_new(j, "clientId", json_string(x->client_id)) < 0 ||
	    !(text = sky__json_dumps(j, NULL))) {
		rc = sky__error_nomem();
		goto done;
	}
	MDB_val key = {strlen(SKY_META_BROKER_IDENTITY),
		       (void *)SKY_META_BROKER_IDENTITY},
		val = {strlen(text), text};
	int mrc = mdb_put(txn, SKY_DBI(x->c, SKY_DB_META), &key, &val, 0);
	rc = mrc ? sky__error_lmdb(mrc, "storing the broker identity") : 0;
done:
	free(text);
	json_decref(j);
	return rc;
}

int sky__identity_client_id(sky_cache *c, const char *realm, const char *sub,
			    char **client_id, char **retired)
{
	ident_ctx x = {c, realm, sub, NULL, NULL};
	int rc = sky__store_write(&c->st, choose, &x);
	if (rc < 0) {
		free(x.client_id);
		free(x.retired);
		return rc;
	}
	*client_id = x.client_id;
	*retired = x.retired;
	return 0;
}

char *sky__identity_stored(sky_cache *c)
{
	MDB_txn *txn;
	if (sky__store_read_begin(&c->st, &txn) < 0)
		return NULL;
	json_t *j = load(txn, c);
	char *id = j ? strdup(json_string_value(json_object_get(j, "clientId")))
		     : NULL;
	json_decref(j);
	sky__store_read_end(&c->st, txn);
	return id;
}
