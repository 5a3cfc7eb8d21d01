/*
 * stale.c - sessions marked stale and the count of refused server events
 * and answers (see stale.h), kept in the cache's meta table.
 *
 * A mark is the meta key "stale" \0 app \0 sid with the value: the time it
 * was set (8 bytes, big-endian µs) followed by the reason (no NUL). The
 * "stale" \0 prefix cannot collide with a counter name, which never holds
 * a NUL. What it keeps true: a mark exists exactly while the engine has
 * not stored a read of the session since one failed; each change is one
 * short write transaction, never held across network I/O.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "error.h"
#include "stale.h"
#include "util.h"

#define PREFIX "stale"
#define PREFIX_LEN 6 /* with its NUL */
#define REASON_MAX 200

static size_t stale_key(unsigned char *buf, const char *app, const char *sid)
{
	size_t la = strlen(app), ls = strlen(sid);
	if (PREFIX_LEN + la + 1 + ls > SKY_KEY_MAX)
		return 0;
	memcpy(buf, PREFIX, PREFIX_LEN);
	memcpy(buf + PREFIX_LEN, app, la + 1);
	memcpy(buf + PREFIX_LEN + la + 1, sid, ls);
	return PREFIX_LEN + la + 1 + ls;
}

typedef struct {
	sky_cache *c;
	unsigned char key[SKY_KEY_MAX];
	size_t klen;
	unsigned char val[8 + REASON_MAX];
	size_t vlen;
	uint64_t add;
} stale_op;

static int put_write(MDB_txn *txn, void *arg)
{
	stale_op *o = arg;
	MDB_val k = {o->klen, o->key}, v = {o->vlen, o->val};
	int rc = mdb_put(txn, SKY_DBI(o->c, SKY_DB_META), &k, &v, 0);
	return rc ? sky__error_lmdb(rc, "marking a session stale") : 0;
}

static int del_write(MDB_txn *txn, void *arg)
{
	stale_op *o = arg;
	MDB_val k = {o->klen, o->key};
	int rc = mdb_del(txn, SKY_DBI(o->c, SKY_DB_META), &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "clearing a stale mark");
	return 0;
}

int sky__stale_mark(sky_cache *c, const char *app, const char *sid,
		    const char *reason)
{
	stale_op o = {c, {0}, 0, {0}, 0, 0};
	if (!(o.klen = stale_key(o.key, app, sid)))
		return sky__error_input("session id too long to mark stale");
	size_t rl = reason ? strlen(reason) : 0;
	if (rl > REASON_MAX)
		rl = REASON_MAX;
	sky__put_be64(o.val, (uint64_t)sky__now_us());
	if (rl)
		memcpy(o.val + 8, reason, rl);
	o.vlen = 8 + rl;
	return sky__store_write(&c->st, put_write, &o);
}

int sky__stale_clear(sky_cache *c, const char *app, const char *sid)
{
	stale_op o = {c, {0}, 0, {0}, 0, 0};
	if (!(o.klen = stale_key(o.key, app, sid)))
		return 0;
	return sky__store_write(&c->st, del_write, &o);
}

static int count_write(MDB_txn *txn, void *arg)
{
	stale_op *o = arg;
	uint64_t v = sky__meta_get_u64(txn, &o->c->st, SKY_META_SERVER_REFUSED);
	return sky__meta_put_u64(txn, &o->c->st, SKY_META_SERVER_REFUSED,
				 v + o->add);
}

int sky__stale_count_refused(sky_cache *c, uint64_t n)
{
	stale_op o = {c, {0}, 0, {0}, 0, n};
	return n ? sky__store_write(&c->st, count_write, &o) : 0;
}

/* Call fn for each mark (stop on its non-zero return). */
static int each_mark(MDB_txn *txn, sky_cache *c, sky_stale_cb fn, void *payload)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_META), &cur);
	if (rc)
		return sky__error_lmdb(rc, "listing stale sessions");
	MDB_val k = {PREFIX_LEN, (void *)PREFIX}, v;
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < PREFIX_LEN ||
		    memcmp(k.mv_data, PREFIX, PREFIX_LEN) != 0)
			break;
		if (!fn)
			continue;
		/* app \0 sid, then NUL-terminated copies for the callback. */
		const char *p = (const char *)k.mv_data + PREFIX_LEN;
		size_t left = k.mv_size - PREFIX_LEN;
		const char *nul = memchr(p, '\0', left);
		if (!nul || v.mv_size < 8)
			continue; /* not ours: a malformed mark is skipped */
		char app[SKY_KEY_MAX + 1], sid[SKY_KEY_MAX + 1],
		    why[REASON_MAX + 1];
		size_t la = (size_t)(nul - p), ls = left - la - 1,
		       lr = v.mv_size - 8;
		if (lr > REASON_MAX)
			lr = REASON_MAX;
		memcpy(app, p, la);
		app[la] = '\0';
		memcpy(sid, nul + 1, ls);
		sid[ls] = '\0';
		memcpy(why, (const char *)v.mv_data + 8, lr);
		why[lr] = '\0';
		sky_stale_session s = {app, sid, why,
				       (int64_t)sky__get_be64(v.mv_data)};
		if ((ret = fn(&s, payload)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "listing stale sessions");
	return ret;
}

int sky_stale_list(sky_cache *cache, sky_stale_cb cb, void *payload)
{
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	rc = each_mark(txn, cache, cb, payload);
	sky__store_read_end(&cache->st, txn);
	return rc;
}

static int count_one(const sky_stale_session *s, void *payload)
{
	(void)s;
	++*(uint64_t *)payload;
	return 0;
}

uint64_t sky__stale_count(sky_cache *c)
{
	uint64_t n = 0;
	if (sky_stale_list(c, count_one, &n) < 0)
		return 0;
	return n;
}

int sky_session_stale(sky_cache *cache, const char *app_id,
		      const char *session_id, char **reason, int64_t *since_us)
{
	unsigned char key[SKY_KEY_MAX];
	size_t klen = stale_key(key, app_id, session_id);
	if (!klen)
		return SKY_ENOTFOUND;
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	MDB_val k = {klen, key}, v;
	rc = mdb_get(txn, SKY_DBI(cache, SKY_DB_META), &k, &v);
	if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size < 8)) {
		rc = SKY_ENOTFOUND;
	} else if (rc) {
		rc = sky__error_lmdb(rc, "reading a stale mark");
	} else {
		char *why = NULL;
		if (reason && !(why = strndup((const char *)v.mv_data + 8,
					      v.mv_size - 8))) {
			rc = sky__error_nomem();
		} else {
			if (reason)
				*reason = why;
			if (since_us)
				*since_us = (int64_t)sky__get_be64(v.mv_data);
		}
	}
	sky__store_read_end(&cache->st, txn);
	return rc;
}
