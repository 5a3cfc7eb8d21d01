/*
 * state.c - LMDB persistence of skylight-emu. See state.h for the layout.
 *
 * Every write is one short write transaction committed before the HTTP
 * answer that reveals it is sent. The environment runs with MDB_NOSYNC:
 * a commit is in the OS page cache when mdb_txn_commit returns, so state
 * survives a killed emulator (what tests do); the disk is synced on clean
 * shutdown. The map is sized once (sparse), far above what a test realm
 * needs; a full map is reported as a write failure, never hidden.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lmdb.h>

#include "emu.h"
#include "log.h"
#include "json.h"
#include "state.h"

#define STATE_FORMAT "skylight-emu-state/1"
#define STATE_MAP_BYTES ((size_t)4 << 30)

enum { DB_META, DB_APPS, DB_SESSIONS, DB_DATA, DB_TOKENS, DB_COUNT };
static const char *const db_names[DB_COUNT] = {"meta", "apps", "sessions",
					       "data", "tokens"};

struct emu_state {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
};

int emu_state_open(struct emu_state **out, const char *dir, char *err,
		   size_t errlen)
{
	struct emu_state *st = calloc(1, sizeof(*st));
	MDB_txn *txn = NULL;
	int rc;
	if (!st) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s: %s", dir, strerror(errno));
		goto fail;
	}
	if ((rc = mdb_env_create(&st->env)) ||
	    (rc = mdb_env_set_maxdbs(st->env, DB_COUNT)) ||
	    (rc = mdb_env_set_mapsize(st->env, STATE_MAP_BYTES)) ||
	    (rc = mdb_env_open(st->env, dir, MDB_NOSYNC, 0600))) {
		snprintf(err, errlen, "%s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	int dead;
	mdb_reader_check(st->env, &dead);
	if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn))) {
		snprintf(err, errlen, "%s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	for (int i = 0; i < DB_COUNT; i++) {
		if ((rc = mdb_dbi_open(txn, db_names[i], MDB_CREATE,
				       &st->dbi[i]))) {
			snprintf(err, errlen, "%s: %s: %s", dir, db_names[i],
				 mdb_strerror(rc));
			mdb_txn_abort(txn);
			goto fail;
		}
	}
	if ((rc = mdb_txn_commit(txn))) {
		snprintf(err, errlen, "%s: %s", dir, mdb_strerror(rc));
		goto fail;
	}
	*out = st;
	return 0;
fail:
	if (st->env)
		mdb_env_close(st->env);
	free(st);
	return -1;
}

void emu_state_close(struct emu_state *st)
{
	if (!st)
		return;
	mdb_env_sync(st->env, 1);
	mdb_env_close(st->env);
	free(st);
}

/* Put the JSON text of `v` under key, or delete key when v is NULL. */
static int put_json(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen,
		    const json_t *v)
{
	MDB_val key = {klen, (void *)k};
	if (!v) {
		int rc = mdb_del(txn, dbi, &key, NULL);
		return rc == MDB_NOTFOUND ? 0 : rc;
	}
	char *text = sky__json_dumps(v, NULL);
	if (!text)
		return ENOMEM;
	MDB_val val = {strlen(text), text};
	int rc = mdb_put(txn, dbi, &key, &val, 0);
	free(text);
	return rc;
}

static json_t *get_json(const MDB_val *val)
{
	return sky__json_loadb(val->mv_data, val->mv_size, JSON_DECODE_ANY,
			       NULL);
}

/* "app \0 sid" into buf; 0 when it does not fit. */
static size_t session_key(char *buf, size_t cap, const char *app,
			  const char *sid)
{
	size_t a = strlen(app), s = strlen(sid);
	if (a + 1 + s > cap)
		return 0;
	memcpy(buf, app, a);
	buf[a] = '\0';
	memcpy(buf + a + 1, sid, s);
	return a + 1 + s;
}

int emu_state_has_realm(struct emu_state *st)
{
	MDB_txn *txn;
	if (mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn))
		return 0;
	MDB_val key = {6, "format"}, val;
	int has = mdb_get(txn, st->dbi[DB_META], &key, &val) == 0;
	mdb_txn_abort(txn);
	return has;
}

static int write_failed(int rc, const char *what)
{
	emu_warn("state: %s: %s", what, mdb_strerror(rc));
	return -1;
}

int emu_state_save_seed(struct emu_state *st, const json_t *seed)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		return write_failed(rc, "saving the realm");
	json_t *realm = json_pack("{s:O, s:O, s:O}", "realm",
				  json_object_get(seed, "realm"), "users",
				  json_object_get(seed, "users"), "groups",
				  json_object_get(seed, "groups"));
	rc =
	    realm ? put_json(txn, st->dbi[DB_META], "realm", 5, realm) : ENOMEM;
	json_decref(realm);
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(seed, "applications"), i, v) {
		if (rc)
			break;
		const char *id = json_string_value(json_object_get(
		    json_object_get(v, "application"), "applicationId"));
		rc = put_json(txn, st->dbi[DB_APPS], id, strlen(id), v);
	}
	json_array_foreach(json_object_get(seed, "sessions"), i, v) {
		if (rc)
			break;
		const json_t *s = json_object_get(v, "session");
		char k[1024];
		size_t klen = session_key(
		    k, sizeof(k),
		    json_string_value(json_object_get(s, "applicationId")),
		    json_string_value(json_object_get(s, "sessionId")));
		rc = put_json(txn, st->dbi[DB_SESSIONS], k, klen, s);
		if (!rc)
			rc = put_json(txn, st->dbi[DB_DATA], k, klen,
				      json_object_get(v, "data"));
	}
	if (!rc) {
		MDB_val key = {6, "format"};
		MDB_val val = {strlen(STATE_FORMAT), STATE_FORMAT};
		rc = mdb_put(txn, st->dbi[DB_META], &key, &val, 0);
	}
	if (rc) {
		mdb_txn_abort(txn);
		return write_failed(rc, "saving the realm");
	}
	if ((rc = mdb_txn_commit(txn)))
		return write_failed(rc, "saving the realm");
	return 0;
}

int emu_state_put_session(struct emu_state *st, const char *app,
			  const char *sid, const json_t *session,
			  const json_t *data)
{
	char k[1024];
	size_t klen = session_key(k, sizeof(k), app, sid);
	MDB_txn *txn;
	int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		return write_failed(rc, "writing a session");
	if (session)
		rc = put_json(txn, st->dbi[DB_SESSIONS], k, klen, session);
	if (!rc && data)
		rc = put_json(txn, st->dbi[DB_DATA], k, klen, data);
	if (rc) {
		mdb_txn_abort(txn);
		return write_failed(rc, "writing a session");
	}
	if ((rc = mdb_txn_commit(txn)))
		return write_failed(rc, "writing a session");
	return 0;
}

int emu_state_put_token(struct emu_state *st, const char *token,
			const json_t *entry)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
	if (rc)
		return write_failed(rc, "writing a token");
	rc = put_json(txn, st->dbi[DB_TOKENS], token, strlen(token), entry);
	if (rc) {
		mdb_txn_abort(txn);
		return write_failed(rc, "writing a token");
	}
	if ((rc = mdb_txn_commit(txn)))
		return write_failed(rc, "writing a token");
	return 0;
}

/* Sessions in creation order, as a client listing them would expect. */
static int by_created(const void *a, const void *b)
{
	const json_t *sa = json_object_get(*(json_t *const *)a, "session");
	const json_t *sb = json_object_get(*(json_t *const *)b, "session");
	const char *ca = json_string_value(json_object_get(sa, "createdAt"));
	const char *cb = json_string_value(json_object_get(sb, "createdAt"));
	int c = strcmp(ca ? ca : "", cb ? cb : "");
	if (c)
		return c;
	const char *ia = json_string_value(json_object_get(sa, "sessionId"));
	const char *ib = json_string_value(json_object_get(sb, "sessionId"));
	return strcmp(ia ? ia : "", ib ? ib : "");
}

int emu_state_load(struct emu_state *st, json_t **seed_out, json_t **tokens_out,
		   char *err, size_t errlen)
{
	MDB_txn *txn;
	MDB_cursor *cur = NULL, *dcur = NULL;
	MDB_val key, val;
	json_t *seed = NULL, *tokens = json_object(), *apps = json_array();
	json_t **sessions = NULL;
	size_t n = 0, cap = 0;
	int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
	if (rc) {
		snprintf(err, errlen, "state: %s", mdb_strerror(rc));
		json_decref(tokens);
		json_decref(apps);
		return -1;
	}
	key.mv_size = 5;
	key.mv_data = "realm";
	if (mdb_get(txn, st->dbi[DB_META], &key, &val) ||
	    !(seed = get_json(&val)) || !json_is_object(seed)) {
		snprintf(err, errlen,
			 "state: the realm record is missing or "
			 "damaged");
		goto fail;
	}
	if (json_object_set(seed, "applications", apps) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	mdb_cursor_open(txn, st->dbi[DB_APPS], &cur);
	while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		json_t *a = get_json(&val);
		if (!a) {
			snprintf(err, errlen, "state: a damaged application");
			goto fail;
		}
		if (json_array_append_new(apps, a) < 0) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	mdb_cursor_close(cur);
	cur = NULL;

	mdb_cursor_open(txn, st->dbi[DB_SESSIONS], &cur);
	mdb_cursor_open(txn, st->dbi[DB_DATA], &dcur);
	while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		json_t *s = get_json(&val);
		MDB_val dkey = key, dval;
		json_t *d = mdb_cursor_get(dcur, &dkey, &dval, MDB_SET) == 0
				? get_json(&dval)
				: json_object();
		if (!s || !d) {
			json_decref(s);
			json_decref(d);
			snprintf(err, errlen, "state: a damaged session");
			goto fail;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 256;
			json_t **p = realloc(sessions, cap * sizeof(*p));
			if (!p) {
				json_decref(s);
				json_decref(d);
				snprintf(err, errlen, "out of memory");
				goto fail;
			}
			sessions = p;
		}
		sessions[n++] =
		    json_pack("{s:o, s:o}", "session", s, "data", d);
	}
	mdb_cursor_close(cur);
	mdb_cursor_close(dcur);
	cur = dcur = NULL;
	if (n)
		qsort(sessions, n, sizeof(*sessions), by_created);
	json_t *list = json_array();
	int bad = !list;
	/* Each append takes its session, also when it fails. */
	for (size_t i = 0; i < n; i++) {
		if (bad)
			json_decref(sessions[i]);
		else if (json_array_append_new(list, sessions[i]) < 0)
			bad = 1;
	}
	free(sessions);
	sessions = NULL;
	n = 0;
	if (bad)
		json_decref(list);
	if (bad || json_object_set_new(seed, "sessions", list) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}

	mdb_cursor_open(txn, st->dbi[DB_TOKENS], &cur);
	while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		char *tok = strndup(key.mv_data, key.mv_size);
		json_t *e = get_json(&val);
		/* A token key that is not UTF-8 cannot have been stored by
		 * us: the state is damaged, like a record that does not parse.
		 */
		int damaged = !tok || !e || json_object_set(tokens, tok, e) < 0;
		json_decref(e);
		free(tok);
		if (damaged) {
			snprintf(err, errlen, "state: a damaged token");
			goto fail;
		}
	}
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	json_decref(apps);
	*seed_out = seed;
	*tokens_out = tokens;
	return 0;
fail:
	if (cur)
		mdb_cursor_close(cur);
	if (dcur)
		mdb_cursor_close(dcur);
	mdb_txn_abort(txn);
	for (size_t i = 0; i < n; i++)
		json_decref(sessions[i]);
	free(sessions);
	json_decref(seed);
	json_decref(tokens);
	json_decref(apps);
	return -1;
}
