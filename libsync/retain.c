/*
 * retain.c - how long closed sessions stay in the mirror.
 *
 * The server lists open sessions only, but still answers a closed one, so
 * the mirror keeps a session that closed with status "closed" (get, data,
 * events and queries keep answering it) until the retention the user set
 * in sky_cache_options removes it: by age (closed_keep_s, default 30 days,
 * counted from the session's modifiedAt, which the close moved) and by
 * count (closed_keep_max: the most recently closed are kept). The sync
 * engine applies it after each snapshot; opening a cache removes nothing
 * (a cache read or fed by hand keeps what it was given).
 *
 * Rules kept here:
 * - A session with local writes pending is never removed (the outbox
 *   decides its fate), and does not count against closed_keep_max.
 * - Candidates are collected in one read transaction; each removal is a
 *   short write transaction of its own that re-checks the record
 *   (sky__repair_remove_session), so nothing long is held.
 * - Ages compare the server's modifiedAt with the local clock: retention
 *   is counted in days, where clock skew does not matter. A session whose
 *   times cannot be read is taken as closed now (kept the longest).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache_types.h"
#include "error.h"
#include "json.h"
#include "record.h"
#include "repair.h"
#include "retain.h"
#include "util.h"

typedef struct {
	char *app, *sid;
	int64_t closed_us;
} closed_one;

typedef struct {
	closed_one *v;
	size_t n, cap;
} closed_list;

static void list_free(closed_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].app);
		free(l->v[i].sid);
	}
	free(l->v);
}

static int list_add(closed_list *l, const char *app, const char *sid,
		    int64_t closed_us)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		closed_one *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return sky__error_nomem();
		l->v = v;
		l->cap = cap;
	}
	closed_one *o = &l->v[l->n];
	if (!(o->app = strdup(app)) || !(o->sid = strdup(sid))) {
		free(o->app);
		return sky__error_nomem();
	}
	o->closed_us = closed_us;
	l->n++;
	return 0;
}

/* Most recently closed first; ties in key order, so the outcome is fixed. */
static int newest_first(const void *a, const void *b)
{
	const closed_one *x = a, *y = b;
	if (x->closed_us != y->closed_us)
		return x->closed_us > y->closed_us ? -1 : 1;
	int c = strcmp(x->app, y->app);
	return c ? c : strcmp(x->sid, y->sid);
}

static int64_t closed_at(const json_t *s, int64_t now)
{
	int64_t t;
	const char *m = json_string_value(json_object_get(s, "modifiedAt"));
	if (m && sky__parse_time(m, &t) == 0)
		return t;
	const char *c = json_string_value(json_object_get(s, "createdAt"));
	if (c && sky__parse_time(c, &t) == 0)
		return t;
	return now;
}

/* Every closed session without pending writes. */
static int collect_closed(sky_cache *c, int64_t now, closed_list *out)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	if ((rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_SESSIONS), &cur))) {
		sky__store_read_end(&c->st, txn);
		return sky__error_lmdb(rc, "listing closed sessions");
	}
	MDB_val key, val;
	int err = 0;
	while ((rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) == 0) {
		sky_record rec;
		if (sky__record_decode(&val, &rec) < 0 ||
		    (rec.flags & SKY_REC_PENDING) ||
		    !strstr(rec.json, "\"status\":\"closed\""))
			continue;
		json_t *s = sky__json_loadb(rec.json, rec.json_len, 0, NULL);
		const char *app =
		    json_string_value(json_object_get(s, "applicationId"));
		const char *sid =
		    json_string_value(json_object_get(s, "sessionId"));
		const char *st =
		    json_string_value(json_object_get(s, "status"));
		if (app && sid && st && !strcmp(st, "closed"))
			err = list_add(out, app, sid, closed_at(s, now));
		json_decref(s);
		if (err < 0)
			break;
	}
	mdb_cursor_close(cur);
	sky__store_read_end(&c->st, txn);
	if (err < 0)
		return err;
	if (rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "listing closed sessions");
	return 0;
}

long sky__retain_closed(sky_cache *c, sky_repair_removed_fn removed, void *ctx)
{
	int64_t now = sky__now_us();
	int64_t keep_s = c->opts.closed_keep_s;
	uint64_t keep_max = c->opts.closed_keep_max;
	closed_list l = {0};
	int rc = collect_closed(c, now, &l);
	long n = 0;
	if (rc < 0)
		goto done;
	if (l.n > 1) /* qsort() of no array is undefined */
		qsort(l.v, l.n, sizeof(*l.v), newest_first);
	for (size_t i = 0; i < l.n; i++) {
		int too_many = keep_max && i >= keep_max;
		int too_old = keep_s != SKY_KEEP_FOREVER &&
			      l.v[i].closed_us < now - keep_s * 1000000;
		if (!too_many && !too_old)
			continue;
		int r = sky__repair_remove_session(c, l.v[i].app, l.v[i].sid);
		if (r < 0) {
			rc = r;
			goto done;
		}
		if (r > 0) {
			n++;
			if (removed)
				removed(l.v[i].app, l.v[i].sid, ctx);
		}
	}
done:
	list_free(&l);
	return rc < 0 ? rc : n;
}
