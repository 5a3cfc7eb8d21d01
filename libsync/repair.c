/*
 * repair.c - cache-side helpers of sync: session watermarks, change
 * detection for notifications, and the removals that make the mirror match
 * what the server lists (see repair.h).
 *
 * Rules kept here:
 * - A session with local writes pending (SKY_REC_PENDING, the outbox's
 *   optimistic view) is never removed by a prune: the server does not
 *   know it yet, or not in its latest form; the outbox decides its fate.
 * - Removals first collect keys in a read transaction, then delete them in
 *   one write transaction that re-checks each record, so the write is short
 *   and a rerun after map growth sees the same outcome.
 * - Nothing here talks to the network.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "doc.h"
#include "error.h"
#include "record.h"
#include "repair.h"

/* A growable list of owned strings. */
typedef struct {
	char **v;
	size_t n, cap;
} strlist;

static int strlist_add(strlist *l, const char *s, size_t len)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return sky__error_nomem();
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strndup(s, len)))
		return sky__error_nomem();
	l->n++;
	return 0;
}

static void strlist_free(strlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

int sky__repair_session_info(sky_cache *c, const char *app, const char *sid,
			     int64_t *wm, unsigned *flags)
{
	MDB_txn *txn;
	*wm = INT64_MIN;
	*flags = 0;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	sky_record rec;
	rc = sky__record_get(txn, c, app, sid, &rec);
	if (rc == 0) {
		*wm = rec.wm_session;
		if (rec.wm_props > *wm)
			*wm = rec.wm_props;
		if (rec.wm_data > *wm)
			*wm = rec.wm_data;
		*flags = rec.flags;
	}
	sky__store_read_end(&c->st, txn);
	return rc;
}

unsigned sky__repair_diff(sky_cache *c, const json_t *session,
			  const json_t *data)
{
	const char *app = sky__json_str(session, "applicationId");
	const char *sid = sky__json_str(session, "sessionId");
	MDB_txn *txn;
	unsigned what = 0;
	if (!app || !sid || sky__store_read_begin(&c->st, &txn) < 0)
		return 0;
	sky_record rec;
	if (sky__record_get(txn, c, app, sid, &rec) != 0) {
		sky__store_read_end(&c->st, txn);
		return SKY_CHANGE_ADDED;
	}
	json_t *old = sky__record_json(&rec);
	if (old) {
		const char *k;
		json_t *v;
		if (!json_equal(json_object_get(old, "properties"),
				json_object_get(session, "properties")))
			what |= SKY_CHANGE_PROPERTIES;
		const char *was = sky__json_str(old, "status");
		const char *now = sky__json_str(session, "status");
		if (now && !strcmp(now, "closed") &&
		    (!was || strcmp(was, "closed")))
			what |= SKY_CHANGE_CLOSED;
		/* Any other field added, changed or gone. */
		json_object_foreach((json_t *)session, k, v) {
			if (!strcmp(k, "properties") || !strcmp(k, "status"))
				continue;
			if (!json_equal(v, json_object_get(old, k)))
				what |= SKY_CHANGE_SESSION;
		}
		json_object_foreach(old, k, v) {
			if (strcmp(k, "properties") && strcmp(k, "status") &&
			    !json_object_get(session, k))
				what |= SKY_CHANGE_SESSION;
		}
		json_decref(old);
	}
	if (data) {
		json_t *old_data = NULL;
		if (sky__doc_read_json(txn, SKY_DBI(c, SKY_DB_DATA), rec.docid,
				       &old_data) < 0 ||
		    !json_equal(old_data, data))
			what |= SKY_CHANGE_DATA;
		json_decref(old_data);
	}
	sky__store_read_end(&c->st, txn);
	return what;
}

/* Collect the second key part of every key "a \0 b" in `dbi` under `a`. */
static int collect_under(sky_cache *c, enum sky_db db, const char *a,
			 sky_repair_keep_fn keep, void *ctx, int skip_pending,
			 strlist *out)
{
	unsigned char prefix[SKY_KEY_MAX];
	size_t plen = sky__key2(prefix, sizeof(prefix), a, NULL);
	if (!plen)
		return 0;
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, SKY_DBI(c, db), &cur))) {
		sky__store_read_end(&c->st, txn);
		return sky__error_lmdb(rc, "listing the mirror");
	}
	MDB_val key = {plen, prefix}, val;
	int err = 0; /* ours, as opposed to LMDB's codes in rc */
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (rc == 0 && key.mv_size > plen &&
	       memcmp(key.mv_data, prefix, plen) == 0) {
		char name[SKY_KEY_MAX + 1];
		size_t nl = key.mv_size - plen;
		memcpy(name, (char *)key.mv_data + plen, nl);
		name[nl] = '\0';
		sky_record rec;
		int pending = skip_pending &&
			      sky__record_decode(&val, &rec) == 0 &&
			      (rec.flags & SKY_REC_PENDING);
		if (!pending && !keep(a, name, ctx) &&
		    (err = strlist_add(out, name, nl)) < 0)
			break;
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	sky__store_read_end(&c->st, txn);
	if (err < 0)
		return err;
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "listing the mirror");
	return 0;
}

typedef struct {
	sky_cache *cache;
	const char *app;
	strlist *sids;
	strlist *roles;
	int drop_app;
	size_t removed; /* sessions deleted by the last run */
} prune_ctx;

static int prune_write(MDB_txn *txn, void *arg)
{
	prune_ctx *p = arg;
	sky_cache *c = p->cache;
	int rc;
	p->removed = 0;
	for (size_t i = 0; p->sids && i < p->sids->n; i++) {
		sky_record rec;
		rc = sky__record_get(txn, c, p->app, p->sids->v[i], &rec);
		if (rc == SKY_ENOTFOUND)
			continue;
		if (rc < 0)
			return rc;
		if (rec.flags & SKY_REC_PENDING)
			continue;
		if ((rc = sky__record_delete(txn, c, p->app, p->sids->v[i])) <
		    0)
			return rc;
		p->removed++;
	}
	for (size_t i = 0; p->roles && i < p->roles->n; i++) {
		unsigned char kbuf[SKY_KEY_MAX];
		MDB_val key = {
		    sky__key2(kbuf, sizeof(kbuf), p->app, p->roles->v[i]),
		    kbuf};
		rc = mdb_del(txn, SKY_DBI(c, SKY_DB_ROLES), &key, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "removing a role");
	}
	if (p->drop_app) {
		MDB_val key = {strlen(p->app), (void *)p->app};
		rc = mdb_del(txn, SKY_DBI(c, SKY_DB_APPS), &key, NULL);
		if (rc && rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "removing an application");
	}
	return 0;
}

static int keep_none(const char *a, const char *b, void *ctx)
{
	(void)a;
	(void)b;
	(void)ctx;
	return 0;
}

long sky__repair_unlisted_open(sky_cache *c, const char *app,
			       sky_repair_keep_fn keep, void *ctx,
			       sky_repair_each_fn each)
{
	strlist sids = {0}, open = {0};
	int rc = collect_under(c, SKY_DB_SESSIONS, app, keep, ctx, 1, &sids);
	if (rc == 0 && sids.n) {
		MDB_txn *txn;
		if ((rc = sky__store_read_begin(&c->st, &txn)) == 0) {
			for (size_t i = 0; i < sids.n && rc == 0; i++) {
				sky_record rec;
				int r = sky__record_get(txn, c, app, sids.v[i],
							&rec);
				/* Records are compact JSON written by us. */
				if (r == 0 &&
				    !strstr(rec.json, "\"status\":\"closed\""))
					rc = strlist_add(&open, sids.v[i],
							 strlen(sids.v[i]));
				else if (r < 0 && r != SKY_ENOTFOUND)
					rc = r;
			}
			sky__store_read_end(&c->st, txn);
		}
	}
	for (size_t i = 0; i < open.n && rc == 0; i++)
		rc = each(app, open.v[i], ctx);
	long n = (long)open.n;
	strlist_free(&sids);
	strlist_free(&open);
	return rc < 0 ? rc : n;
}

long sky__repair_prune_roles(sky_cache *c, const char *app,
			     sky_repair_keep_fn keep, void *ctx)
{
	strlist roles = {0};
	int rc = collect_under(c, SKY_DB_ROLES, app, keep, ctx, 0, &roles);
	prune_ctx p = {c, app, NULL, &roles, 0, 0};
	if (rc == 0 && roles.n)
		rc = sky__store_write(&c->st, prune_write, &p);
	long n = (long)roles.n;
	strlist_free(&roles);
	return rc < 0 ? rc : n;
}

long sky__repair_prune_apps(sky_cache *c, sky_repair_keep_fn keep, void *ctx,
			    sky_repair_removed_fn removed)
{
	strlist apps = {0};
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_APPS), &cur))) {
		sky__store_read_end(&c->st, txn);
		return sky__error_lmdb(rc, "listing applications");
	}
	MDB_val key, val;
	int err = 0;
	while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		char id[SKY_KEY_MAX + 1];
		size_t n =
		    key.mv_size < SKY_KEY_MAX ? key.mv_size : SKY_KEY_MAX;
		memcpy(id, key.mv_data, n);
		id[n] = '\0';
		if (!keep(id, NULL, ctx) &&
		    (err = strlist_add(&apps, id, n)) < 0)
			break;
	}
	mdb_cursor_close(cur);
	sky__store_read_end(&c->st, txn);
	if (err < 0 || (rc && rc != MDB_NOTFOUND)) {
		rc =
		    err < 0 ? err : sky__error_lmdb(rc, "listing applications");
		goto done;
	}
	rc = 0;
	long dropped = 0;
	for (size_t i = 0; i < apps.n && rc == 0; i++) {
		strlist sids = {0}, all = {0}, roles = {0};
		rc = collect_under(c, SKY_DB_SESSIONS, apps.v[i], keep_none,
				   NULL, 1, &sids);
		if (rc == 0)
			rc = collect_under(c, SKY_DB_SESSIONS, apps.v[i],
					   keep_none, NULL, 0, &all);
		if (rc == 0)
			rc = collect_under(c, SKY_DB_ROLES, apps.v[i],
					   keep_none, NULL, 0, &roles);
		/* Sessions with pending local writes keep their application. */
		prune_ctx p = {c, apps.v[i], &sids, &roles, all.n == sids.n, 0};
		if (rc == 0)
			rc = sky__store_write(&c->st, prune_write, &p);
		if (rc == 0) {
			dropped++;
			if (removed)
				for (size_t k = 0; k < sids.n; k++)
					removed(apps.v[i], sids.v[k], ctx);
		}
		strlist_free(&sids);
		strlist_free(&all);
		strlist_free(&roles);
	}
	strlist_free(&apps);
	return rc < 0 ? rc : dropped;
done:
	strlist_free(&apps);
	return rc;
}

typedef struct {
	sky_cache *cache;
	const char *app, *sid;
	int removed;
} one_ctx;

static int remove_one_write(MDB_txn *txn, void *arg)
{
	one_ctx *o = arg;
	sky_record rec;
	o->removed = 0;
	int rc = sky__record_get(txn, o->cache, o->app, o->sid, &rec);
	if (rc == SKY_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	if (rec.flags & SKY_REC_PENDING)
		return 0;
	if ((rc = sky__record_delete(txn, o->cache, o->app, o->sid)) < 0)
		return rc;
	o->removed = 1;
	return 0;
}

int sky__repair_remove_session(sky_cache *c, const char *app, const char *sid)
{
	one_ctx o = {c, app, sid, 0};
	int rc = sky__store_write(&c->st, remove_one_write, &o);
	return rc < 0 ? rc : o.removed;
}

static int purge_write(MDB_txn *txn, void *arg)
{
	one_ctx *o = arg;
	sky_cache *c = o->cache;
	unsigned char prefix[SKY_KEY_MAX];
	size_t plen = sky__key2(prefix, SKY_KEY_MAX - 1, o->app, o->sid);
	if (!plen)
		return 0;
	prefix[plen++] = '\0';
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_PENDING), &cur);
	if (rc)
		return sky__error_lmdb(rc, "purging waiting events");
	for (;;) {
		MDB_val key = {plen, prefix}, val;
		rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		if (rc || key.mv_size != plen + 8 ||
		    memcmp(key.mv_data, prefix, plen) != 0)
			break;
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "purging waiting events");
	return 0;
}

int sky__repair_purge_pending(sky_cache *c, const char *app, const char *sid)
{
	one_ctx o = {c, app, sid, 0};
	return sky__store_write(&c->st, purge_write, &o);
}

typedef struct {
	sky_cache *cache;
	uint64_t v[4];
} meta_ctx;

static int meta_write(MDB_txn *txn, void *arg)
{
	meta_ctx *m = arg;
	static const char *names[4] = {
	    SKY_META_SYNC_STATE, SKY_META_SYNC_LAST_AT, SKY_META_SYNC_EVENT_LAG,
	    SKY_META_SYNC_UPDATED};
	for (int i = 0; i < 4; i++) {
		int rc =
		    sky__meta_put_u64(txn, &m->cache->st, names[i], m->v[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int sky__repair_put_meta(sky_cache *c, uint64_t state, uint64_t last_at,
			 uint64_t lag, uint64_t updated)
{
	meta_ctx m = {c, {state, last_at, lag, updated}};
	return sky__store_write(&c->st, meta_write, &m);
}

typedef struct {
	sky_cache *cache;
	uint64_t v[3];
} path_ctx;

static int path_write(MDB_txn *txn, void *arg)
{
	path_ctx *m = arg;
	static const char *names[3] = {SKY_META_SYNC_PATH, SKY_META_SYNC_WHY,
				       SKY_META_SYNC_REQUESTS};
	for (int i = 0; i < 3; i++) {
		int rc =
		    sky__meta_put_u64(txn, &m->cache->st, names[i], m->v[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int sky__repair_put_sync_path(sky_cache *c, uint64_t path, uint64_t why,
			      uint64_t requests)
{
	path_ctx m = {c, {path, why, requests}};
	return sky__store_write(&c->st, path_write, &m);
}
