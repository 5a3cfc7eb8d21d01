/*
 * queue.c - the outbox's queue (DESIGN.md §5): entries stored, read and
 * removed, their per-session order, the names of their operations and
 * states, the delivery count, dead-letter notes, aliases of local ids,
 * listing and counting for the public API, and the coalescing of
 * queued patches (sky__patch_compose, for deliver.c).
 *
 * What this file keeps true: every entry it stores or removes is stored
 * or removed together with its key under outbox_by_session, so reading a
 * session's prefix there gives its entries in queue order (ids grow in
 * queue order); the delivered count changes in the transaction that
 * removes the delivered entries. It never writes a session record: the
 * local view is view.c's.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "queue.h"
#include "store.h"

#define ENTRY_HEADER 32
#define ENTRY_FORMAT 1

/*
 * Value layout (big-endian): u8 format | u8 op | u8 state | u8 flags |
 * u32 attempts | i64 queued_us | i64 next_try_us | i32 http_status | u32 0,
 * then five NUL-terminated strings: app, sid, local, body, answer.
 */
int sky__ob_decode(uint64_t id, const MDB_val *val, sky_ob_entry *out)
{
	const unsigned char *p = val->mv_data;
	if (val->mv_size < ENTRY_HEADER + 5 || p[0] != ENTRY_FORMAT ||
	    ((const char *)p)[val->mv_size - 1] != '\0')
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
				      "outbox entry %llu is corrupt",
				      (unsigned long long)id);
	memset(out, 0, sizeof(*out));
	out->id = id;
	out->op = (sky_write_op)p[1];
	out->state = (sky_outbox_state)p[2];
	out->flags = p[3];
	out->attempts = sky__get_be32(p + 4);
	out->queued_us = (int64_t)sky__get_be64(p + 8);
	out->next_try_us = (int64_t)sky__get_be64(p + 16);
	out->http_status = (int)sky__get_be32(p + 24);
	const char *s = (const char *)p + ENTRY_HEADER;
	const char *end = (const char *)p + val->mv_size;
	const char **fields[5] = {&out->app, &out->sid, &out->local, &out->body,
				  &out->answer};
	for (int i = 0; i < 5; i++) {
		if (s >= end)
			return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
					      "outbox entry %llu is corrupt",
					      (unsigned long long)id);
		*fields[i] = s;
		s += strlen(s) + 1;
	}
	if (!*out->local)
		out->local = NULL;
	return 0;
}

static size_t session_prefix(unsigned char *buf, const char *app,
			     const char *sid)
{
	size_t n = sky__key2(buf, SKY_KEY_MAX - 9, app, sid);
	if (n)
		buf[n++] = '\0';
	return n;
}

size_t sky__ob_queue_key(unsigned char *buf, const char *app, const char *sid,
			 uint64_t id)
{
	size_t n = session_prefix(buf, app, sid);
	if (!n)
		return 0;
	sky__put_be64(buf + n, id);
	return n + 8;
}

int sky__ob_store(MDB_txn *txn, sky_cache *c, const sky_ob_entry *e)
{
	/* What a replayed journal record queues behind (store.h). */
	sky__store_settle_mirror(&c->st);
	const char *strs[5] = {e->app, e->sid, e->local ? e->local : "",
			       e->body ? e->body : "",
			       e->answer ? e->answer : ""};
	size_t lens[5], total = ENTRY_HEADER;
	for (int i = 0; i < 5; i++)
		total += (lens[i] = strlen(strs[i])) + 1;
	unsigned char kb[8];
	sky__put_be64(kb, e->id);
	MDB_val key = {8, kb}, val = {total, NULL};
	int rc =
	    mdb_put(txn, SKY_DBI(c, SKY_DB_OUTBOX), &key, &val, MDB_RESERVE);
	if (rc)
		return sky__error_lmdb(rc, "writing an outbox entry");
	unsigned char *p = val.mv_data;
	memset(p, 0, ENTRY_HEADER);
	p[0] = ENTRY_FORMAT;
	p[1] = (unsigned char)e->op;
	p[2] = (unsigned char)e->state;
	p[3] = (unsigned char)e->flags;
	sky__put_be32(p + 4, e->attempts);
	sky__put_be64(p + 8, (uint64_t)e->queued_us);
	sky__put_be64(p + 16, (uint64_t)e->next_try_us);
	sky__put_be32(p + 24, (uint32_t)e->http_status);
	p += ENTRY_HEADER;
	for (int i = 0; i < 5; i++) {
		memcpy(p, strs[i], lens[i] + 1);
		p += lens[i] + 1;
	}
	unsigned char sk[SKY_KEY_MAX];
	MDB_val skey = {sky__ob_queue_key(sk, e->app, e->sid, e->id), sk};
	MDB_val empty = {0, ""};
	if (!skey.mv_size)
		return sky__error_input("outbox: ids too long");
	if ((rc = mdb_put(txn, SKY_DBI(c, SKY_DB_OBSESS), &skey, &empty, 0)))
		return sky__error_lmdb(rc, "writing an outbox entry");
	return 0;
}

int sky__ob_get(MDB_txn *txn, sky_cache *c, uint64_t id, sky_ob_entry *out)
{
	unsigned char kb[8];
	sky__put_be64(kb, id);
	MDB_val key = {8, kb}, val;
	int rc = mdb_get(txn, SKY_DBI(c, SKY_DB_OUTBOX), &key, &val);
	if (rc == MDB_NOTFOUND)
		return SKY_ENOTFOUND;
	if (rc)
		return sky__error_lmdb(rc, "reading the outbox");
	return sky__ob_decode(id, &val, out);
}

int sky__ob_remove(MDB_txn *txn, sky_cache *c, const sky_ob_entry *e)
{
	/* What a replayed journal record queues behind (store.h). */
	sky__store_settle_mirror(&c->st);
	unsigned char sk[SKY_KEY_MAX], kb[8];
	MDB_val skey = {sky__ob_queue_key(sk, e->app, e->sid, e->id), sk};
	int rc = mdb_del(txn, SKY_DBI(c, SKY_DB_OBSESS), &skey, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "removing an outbox entry");
	sky__put_be64(kb, e->id);
	MDB_val key = {8, kb};
	rc = mdb_del(txn, SKY_DBI(c, SKY_DB_OUTBOX), &key, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "removing an outbox entry");
	return 0;
}

int sky__ob_own(const sky_ob_entry *e, sky_ob_owned *out)
{
	const char *src[5] = {e->app, e->sid, e->local ? e->local : "",
			      e->body ? e->body : "",
			      e->answer ? e->answer : ""};
	size_t total = 0;
	for (int i = 0; i < 5; i++)
		total += strlen(src[i]) + 1;
	out->e = *e;
	if (!(out->strs = malloc(total)))
		return sky__error_nomem();
	char *p = out->strs;
	const char **dst[5] = {&out->e.app, &out->e.sid, &out->e.local,
			       &out->e.body, &out->e.answer};
	for (int i = 0; i < 5; i++) {
		size_t n = strlen(src[i]) + 1;
		memcpy(p, src[i], n);
		*dst[i] = p;
		p += n;
	}
	if (!e->local)
		out->e.local = NULL;
	return 0;
}

void sky__ob_list_free(sky_ob_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].strs);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/*
 * A cursor on the by-session keys from session pre[0..plen)'s first:
 * mdb_cursor_get's code (0: *key set), or mdb_cursor_open's with *cur
 * NULL. The caller closes *cur.
 */
static int session_cursor(MDB_txn *txn, sky_cache *c, unsigned char *pre,
			  size_t plen, MDB_cursor **cur, MDB_val *key)
{
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_OBSESS), cur);
	if (rc) {
		*cur = NULL;
		return rc;
	}
	MDB_val val;
	*key = (MDB_val){plen, pre};
	return mdb_cursor_get(*cur, key, &val, MDB_SET_RANGE);
}

/* Whether by-session key `key` is one of the session's pre[0..plen). */
static int of_session(const MDB_val *key, const unsigned char *pre, size_t plen)
{
	return key->mv_size == plen + 8 && memcmp(key->mv_data, pre, plen) == 0;
}

int sky__ob_session_queued(MDB_txn *txn, sky_cache *c, const char *app,
			   const char *sid)
{
	unsigned char pre[SKY_KEY_MAX];
	size_t plen = session_prefix(pre, app, sid);
	if (!plen)
		return 0;
	MDB_cursor *cur;
	MDB_val key;
	int rc = session_cursor(txn, c, pre, plen, &cur, &key);
	if (!cur)
		return sky__error_lmdb(rc, "reading the outbox");
	int found = rc == 0 && of_session(&key, pre, plen);
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "reading the outbox");
	return found;
}

int sky__ob_session_entries(MDB_txn *txn, sky_cache *c, const char *app,
			    const char *sid, int live_only, sky_ob_list *out)
{
	unsigned char pre[SKY_KEY_MAX];
	size_t plen = session_prefix(pre, app, sid);
	memset(out, 0, sizeof(*out));
	if (!plen)
		return 0;
	MDB_cursor *cur;
	MDB_val key, val;
	int rc = session_cursor(txn, c, pre, plen, &cur, &key);
	if (!cur)
		return sky__error_lmdb(rc, "reading the outbox");
	while (rc == 0 && of_session(&key, pre, plen)) {
		uint64_t id =
		    sky__get_be64((unsigned char *)key.mv_data + plen);
		sky_ob_entry e;
		if ((rc = sky__ob_get(txn, c, id, &e)) < 0)
			break;
		if (!live_only || e.state != SKY_OUTBOX_REJECTED) {
			if (out->n == out->cap) {
				size_t cap = out->cap ? out->cap * 2 : 8;
				sky_ob_owned *v =
				    realloc(out->v, cap * sizeof(*v));
				if (!v) {
					rc = sky__error_nomem();
					break;
				}
				out->v = v;
				out->cap = cap;
			}
			if ((rc = sky__ob_own(&e, &out->v[out->n])) < 0)
				break;
			out->n++;
		}
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	else if (rc > 0)
		rc = sky__error_lmdb(rc, "reading the outbox");
	if (rc < 0)
		sky__ob_list_free(out);
	return rc;
}

static const char *op_names[] = {
    [SKY_WRITE_CREATE] = "create", [SKY_WRITE_PATCH] = "patch",
    [SKY_WRITE_DATA] = "data",	   [SKY_WRITE_PARTICIPANT] = "participant",
    [SKY_WRITE_EVENT] = "event",
};

const char *sky_write_op_name(sky_write_op op)
{
	if (op < SKY_WRITE_CREATE || op > SKY_WRITE_EVENT)
		return "unknown";
	return op_names[op];
}

const char *sky_outbox_state_name(sky_outbox_state s)
{
	switch (s) {
	case SKY_OUTBOX_PENDING: return "pending";
	case SKY_OUTBOX_IN_FLIGHT: return "in flight";
	case SKY_OUTBOX_IN_DOUBT: return "in doubt";
	case SKY_OUTBOX_REJECTED: return "rejected";
	}
	return "unknown";
}

int sky__ob_count_delivered(MDB_txn *txn, sky_cache *c, size_t n)
{
	uint64_t total = sky__meta_get_u64(txn, &c->st, SKY_META_OB_DELIVERED);
	int rc =
	    sky__meta_put_u64(txn, &c->st, SKY_META_OB_DELIVERED, total + n);
	if (rc == 0)
		rc = sky__meta_put_u64(txn, &c->st, SKY_META_OB_LAST_DELIVERY,
				       (uint64_t)sky__now_us());
	return rc;
}

/* Note a new dead letter for the caller's notifications. */
int sky__ob_note_dead(sky_buf *dead, uint64_t id)
{
	unsigned char b[8];
	if (!dead)
		return 0;
	sky__put_be64(b, id);
	return sky__buf_append(dead, b, 8);
}

const char *sky__outbox_alias(MDB_txn *txn, sky_cache *c, const char *app,
			      const char *sid)
{
	if (!sky__ob_is_local(sid))
		return NULL;
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, sid), kb}, val;
	if (!key.mv_size ||
	    mdb_get(txn, SKY_DBI(c, SKY_DB_ALIAS), &key, &val) != 0)
		return NULL;
	return val.mv_data;
}

int sky__ob_alias_put(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *local, const char *server_sid)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, local), kb};
	MDB_val val = {strlen(server_sid) + 1, (void *)server_sid};
	sky__store_settle_mirror(&c->st);
	int rc = mdb_put(txn, SKY_DBI(c, SKY_DB_ALIAS), &key, &val, 0);
	return rc ? sky__error_lmdb(rc, "writing an alias") : 0;
}

/* ------------------------------------------------------------------ */
/* Listing and notifying                                              */
/* ------------------------------------------------------------------ */

void sky__ob_to_public(const sky_ob_entry *e, sky_outbox_entry *p)
{
	p->id = e->id;
	p->op = e->op;
	p->state = e->state;
	p->app_id = e->app;
	p->session_id = e->sid;
	p->local_id = e->local;
	p->body = e->body;
	p->queued_us = e->queued_us;
	p->attempts = e->attempts;
	p->next_try_us = e->next_try_us;
	p->http_status = e->http_status;
	p->answer = e->answer;
}

int sky_outbox_list(sky_cache *cache, sky_outbox_cb cb, void *payload)
{
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	MDB_cursor *cur;
	if ((rc = mdb_cursor_open(txn, SKY_DBI(cache, SKY_DB_OUTBOX), &cur))) {
		sky__store_read_end(&cache->st, txn);
		return sky__error_lmdb(rc, "reading the outbox");
	}
	MDB_val key, val;
	int mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
	rc = 0;
	while (mrc == 0) {
		sky_ob_entry e;
		if (key.mv_size != 8) {
			rc = sky__error_input("outbox: corrupt key");
			break;
		}
		if ((rc = sky__ob_decode(sky__get_be64(key.mv_data), &val,
					 &e)) < 0)
			break;
		sky_outbox_entry p;
		sky__ob_to_public(&e, &p);
		if ((rc = cb(&p, payload)) != 0)
			break;
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = sky__error_lmdb(mrc, "reading the outbox");
	mdb_cursor_close(cur);
	sky__store_read_end(&cache->st, txn);
	return rc;
}

static int count_cb(const sky_outbox_entry *e, void *payload)
{
	sky_outbox_counts *n = payload;
	switch (e->state) {
	case SKY_OUTBOX_PENDING: n->pending++; break;
	case SKY_OUTBOX_IN_FLIGHT: n->in_flight++; break;
	case SKY_OUTBOX_IN_DOUBT: n->in_doubt++; break;
	case SKY_OUTBOX_REJECTED: n->rejected++; break;
	}
	return 0;
}

int sky_outbox_counts_get(sky_cache *cache, sky_outbox_counts *out)
{
	/* Version 1 has every count there is. */
	int rc = sky__error_out_version("sky_outbox_counts",
					out ? &out->version : NULL,
					SKY_OUTBOX_COUNTS_VERSION);
	if (rc < 0)
		return rc;
	unsigned version = out->version;
	memset(out, 0, sizeof(*out));
	out->version = version;
	return sky_outbox_list(cache, count_cb, out);
}

void sky_outbox_on_rejected(sky_cache *cache, sky_outbox_cb cb, void *payload)
{
	cache->on_rejected = cb;
	cache->on_rejected_payload = payload;
}

void sky__outbox_notify_rejected(sky_cache *c, uint64_t id)
{
	if (!c->on_rejected)
		return;
	MDB_txn *txn;
	if (sky__store_read_begin(&c->st, &txn) < 0)
		return;
	sky_ob_entry e;
	if (sky__ob_get(txn, c, id, &e) == 0) {
		sky_outbox_entry p;
		sky__ob_to_public(&e, &p);
		c->on_rejected(&p, c->on_rejected_payload);
	}
	sky__store_read_end(&c->st, txn);
}

/* ------------------------------------------------------------------ */
/* Coalescing                                                          */
/* ------------------------------------------------------------------ */

/*
 * compose(p1, p2) = p with apply(apply(d, p1), p2) == apply(d, p) for
 * every document d, by induction over the keys of p1 and p2:
 * - k only in p1: p2 leaves the value p1 made; p[k] = p1[k].
 * - p2[k] not an object (a scalar, an array, or null): p2 sets or deletes
 *   k whatever p1 did; p[k] = p2[k].
 * - p2[k] an object, k not in p1: p1 leaves d[k]; p[k] = p2[k].
 * - p2[k] and p1[k] objects: both merge into d[k] in turn; by induction
 *   p[k] = compose(p1[k], p2[k]) when that exists.
 * - p2[k] an object and p1[k] not one (it set k to a scalar or array, or
 *   deleted it): the result is p2[k] merged into nothing, whatever d[k]
 *   was -- but an object in a patch always merges into d[k], so no single
 *   patch says this. No composition: the writes are sent one by one.
 */
json_t *sky__patch_compose(const json_t *first, const json_t *second)
{
	if (!json_is_object(first) || !json_is_object(second))
		return NULL;
	json_t *out = json_deep_copy(first);
	if (!out)
		return NULL;
	const char *k;
	json_t *v2;
	json_object_foreach((json_t *)second, k, v2) {
		json_t *v1 = json_object_get(first, k);
		json_t *nv;
		if (!json_is_object(v2) || !v1) {
			nv = json_deep_copy(v2);
		} else if (json_is_object(v1)) {
			nv = sky__patch_compose(v1, v2);
		} else {
			json_decref(out);
			return NULL;
		}
		if (!nv || json_object_set_new(out, k, nv) < 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}
