/*
 * viewer.c - the user a cache is synced as (see viewer.h), and the two
 * public calls that read it: sky_sync_user_get and
 * sky_query_set_viewer_self.
 *
 * The engine stores the record at the end of every snapshot, from its
 * access token: `sub` is the user id (the user name when the token has
 * none, as for the broker identity), the `groups` claim the groups. A
 * record is replaced whole, never merged, so it always describes one
 * login; a token without a `groups` claim leaves "groups" out, which
 * means "not known" rather than "none". Like every meta value it is
 * sealed by the store's wrappers (sealed.h); a stored value that does
 * not parse is reported as absent, never guessed at.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "error.h"
#include "json.h"
#include "query.h"
#include "viewer.h"

static json_t *parse(const MDB_val *val)
{
	json_t *j = sky__json_loadb(val->mv_data, val->mv_size, 0, NULL);
	const json_t *g = json_object_get(j, "groups");
	if (j && (!json_is_string(json_object_get(j, "userId")) ||
		  (g && !json_is_array(g)))) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

typedef struct {
	sky_cache *c;
	const char *text;
} store_ctx;

static int put(MDB_txn *txn, void *arg)
{
	store_ctx *x = arg;
	MDB_val key = {strlen(SKY_META_SYNC_USER), (void *)SKY_META_SYNC_USER};
	MDB_val val;
	val.mv_size = strlen(x->text);
	val.mv_data = (void *)x->text;
	int rc = mdb_put(txn, SKY_DBI(x->c, SKY_DB_META), &key, &val, 0);
	return rc ? sky__error_lmdb(rc, "storing the sync user") : 0;
}

int sky__viewer_store(sky_cache *c, const char *realm, const char *user_id,
		      const json_t *groups)
{
	json_t *j = json_pack("{s:s, s:s}", "realm", realm, "userId", user_id);
	char *text = NULL;
	if (!j ||
	    (groups &&
	     json_object_set_new(j, "groups", json_deep_copy(groups)) < 0) ||
	    !(text = sky__json_dumps(j, NULL))) {
		json_decref(j);
		return sky__error_nomem();
	}
	json_decref(j);
	/* Unchanged (every sync of the same user): no write transaction,
	 * so no disk flush for it. */
	MDB_txn *txn;
	MDB_val key = {strlen(SKY_META_SYNC_USER), (void *)SKY_META_SYNC_USER},
		val;
	int same = 0;
	if (sky__store_read_begin(&c->st, &txn) == 0) {
		same = mdb_get(txn, SKY_DBI(c, SKY_DB_META), &key, &val) == 0 &&
		       val.mv_size == strlen(text) &&
		       memcmp(val.mv_data, text, val.mv_size) == 0;
		sky__store_read_end(&c->st, txn);
	}
	store_ctx x = {c, text};
	int rc = same ? 0 : sky__store_write(&c->st, put, &x);
	free(text);
	return rc;
}

int sky__viewer_load(sky_cache *c, json_t **out)
{
	MDB_txn *txn;
	*out = NULL;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	MDB_val key = {strlen(SKY_META_SYNC_USER), (void *)SKY_META_SYNC_USER},
		val;
	int mrc = mdb_get(txn, SKY_DBI(c, SKY_DB_META), &key, &val);
	if (mrc == 0)
		*out = parse(&val);
	else if (mrc != MDB_NOTFOUND)
		rc = sky__error_lmdb(mrc, "reading the sync user");
	sky__store_read_end(&c->st, txn);
	if (rc < 0)
		return rc;
	if (!*out)
		return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				      "the cache does not know which user it "
				      "is synced as: it was never synced (or "
				      "synced before the user was recorded); "
				      "run a sync first");
	return 0;
}

int sky_sync_user_get(sky_cache *cache, char **json, size_t *len)
{
	json_t *j;
	*json = NULL;
	int rc = sky__viewer_load(cache, &j);
	if (rc < 0)
		return rc;
	size_t n = 0;
	*json = sky__json_dumps(j, &n);
	json_decref(j);
	if (!*json)
		return sky__error_nomem();
	if (len)
		*len = n;
	return 0;
}

int sky_query_set_viewer_self(sky_query *q)
{
	json_t *j;
	int rc = sky__viewer_load(q->cache, &j);
	if (rc < 0)
		return rc;
	const json_t *g = json_object_get(j, "groups");
	size_t n = json_array_size(g);
	const char **groups = calloc(n ? n : 1, sizeof(*groups));
	if (!groups) {
		json_decref(j);
		return sky__error_nomem();
	}
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (json_is_string(json_array_get(g, i)))
			groups[k++] = json_string_value(json_array_get(g, i));
	const char *id = json_string_value(json_object_get(j, "userId"));
	rc = sky_query_set_viewer(q, id, groups, k);
	free(groups);
	json_decref(j);
	return rc;
}
