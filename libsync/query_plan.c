/*
 * query_plan.c - planning a query with index counts and walking the plan
 * (DESIGN.md §6): access paths (sets of index keys), streams of their
 * sessions in result order, the leapfrog join and the record checks.
 *
 * Plan. Every positive predicate (=, ^=, ?) and the viewer's participant
 * rule become a set of index keys whose sessions are counted (exactly with
 * mdb_cursor_count; a prefix by walking a bounded number of its keys). The
 * smallest set drives; the others are intersected with it by a leapfrog
 * join over the per-key session lists, which are all sorted in result
 * order, so the work follows the smallest set and the seeks, never the
 * size of the application. `!=` predicates are answered by probing their
 * keys; what the index cannot answer exactly (hashed long keys, prefixes
 * with too many keys to merge) is checked on the record. A query with no
 * positive predicate walks the application's list of all its sessions.
 *
 * Invariants kept here:
 * - The walk yields exactly the sessions of the application that satisfy
 *   every predicate (and the visibility rule) in the read snapshot, in
 *   result order: the index only narrows the candidates; anything it
 *   answers inexactly is checked against the record.
 */
#include "config.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "query_access.h"
#include "query_plan.h"

/* A prefix with more keys than this is merged by collecting its sessions. */
#define MAX_UNION_KEYS 64
/* Keys of a wide prefix walked to estimate its size. */
#define ESTIMATE_KEYS 256

/* ---- access paths: sets of index keys ---- */

/* The index field codes of a predicate's field. */
static size_t field_codes(const sky_pred *p, char codes[2])
{
	switch (p->field) {
	case SKY_FIELD_PROP: codes[0] = SKY_IXF_PROP; return 1;
	case SKY_FIELD_STATUS: codes[0] = SKY_IXF_STATUS; return 1;
	case SKY_FIELD_NAME: codes[0] = SKY_IXF_NAME; return 1;
	case SKY_FIELD_PARTICIPANT:
		codes[0] = SKY_IXF_USER;
		codes[1] = SKY_IXF_GROUP;
		return 2;
	case SKY_FIELD_CREATED_BY: codes[0] = SKY_IXF_CREATED_BY; return 1;
	case SKY_FIELD_MODIFIED_BY: codes[0] = SKY_IXF_MODIFIED_BY; return 1;
	case SKY_FIELD_IS_DRAFT: codes[0] = SKY_IXF_DRAFT; return 1;
	case SKY_FIELD_VERSION: codes[0] = SKY_IXF_VERSION; return 1;
	case SKY_FIELD_MODIFIED_AT: codes[0] = SKY_IXF_MODIFIED_AT; return 1;
	case SKY_FIELD_CREATED_AT: return 0; /* positions: plan_bound() */
	}
	return 0;
}

static void path_free(path_t *p)
{
	free(p->keys);
	free(p->ranges);
	memset(p, 0, sizeof(*p));
}

static int path_add_key(path_t *p, const sky_ixkey *k)
{
	sky_ixkey *keys = realloc(p->keys, (p->n_keys + 1) * sizeof(*keys));
	if (!keys)
		return sky__error_nomem();
	p->keys = keys;
	keys[p->n_keys++] = *k;
	if (k->hashed)
		p->inexact = 1;
	return 0;
}

/* Number of sessions under one stored key (0 when absent). */
static int key_count(MDB_cursor *cur, const sky_ixkey *k, uint64_t *out)
{
	MDB_val kv = {k->len, (void *)k->data}, v;
	int rc = mdb_cursor_get(cur, &kv, &v, MDB_SET);
	*out = 0;
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return sky__error_lmdb(rc, "counting index entries");
	size_t n;
	if ((rc = mdb_cursor_count(cur, &n)))
		return sky__error_lmdb(rc, "counting index entries");
	*out = n;
	return 0;
}

/* How many bytes of a logical prefix every key of its range starts with. */
static size_t range_scan_len(const sky_ixkey *pfx)
{
	return pfx->full <= SKY_IX_KEEP ? pfx->full : SKY_IX_KEEP;
}

/*
 * Is the stored key `k` in the range of logical prefix `pfx`, given that it
 * starts with its first range_scan_len() bytes? *exact is 0 when only the
 * record can tell (a hashed key whose kept bytes end before the prefix).
 */
static int range_accepts(const sky_ixkey *pfx, const MDB_val *k, int *exact)
{
	*exact = 1;
	if (sky__ixkey_is_hashed(k->mv_data, k->mv_size)) {
		*exact = pfx->full <= SKY_IX_KEEP;
		return 1;
	}
	return pfx->full <= k->mv_size &&
	       memcmp(k->mv_data, pfx->data, pfx->full) == 0;
}

/* Is the stored key below the excluded high end of a number range? */
static int below(const MDB_val *k, const sky_ixkey *hi)
{
	size_t n = k->mv_size < hi->len ? k->mv_size : hi->len;
	int r = memcmp(k->mv_data, hi->data, n);
	return r < 0 || (r == 0 && k->mv_size < hi->len);
}

/*
 * Walk the keys of a prefix range, or with `hi` of the number range from
 * the key `pfx` up to `hi` (both finished keys of the same field, so
 * every key between them is one of its values): up to `max_keys` keys
 * are handed to fn (with their count); *more is set when keys remain.
 */
static int range_walk(MDB_cursor *cur, const sky_ixkey *pfx,
		      const sky_ixkey *hi, size_t max_keys,
		      int (*fn)(const MDB_val *key, uint64_t count, int exact,
				void *arg),
		      void *arg, int *more)
{
	size_t slen = hi ? pfx->len : range_scan_len(pfx), seen = 0;
	MDB_val k = {slen, (void *)pfx->data}, v;
	int rc;
	*more = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 &&
	     (hi ? below(&k, hi)
		 : k.mv_size >= slen && !memcmp(k.mv_data, pfx->data, slen));
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_NODUP)) {
		int exact = 1;
		if (!hi && !range_accepts(pfx, &k, &exact))
			continue;
		if (seen == max_keys) {
			*more = 1;
			return 0;
		}
		seen++;
		size_t n;
		if ((rc = mdb_cursor_count(cur, &n)))
			break;
		int frc = fn(&k, n, exact, arg);
		if (frc)
			return frc;
	}
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "reading the query index");
	return 0;
}

typedef struct {
	path_t *path;
	uint64_t sum;
} enum_ctx;

static int enum_key(const MDB_val *key, uint64_t count, int exact, void *arg)
{
	enum_ctx *e = arg;
	sky_ixkey k;
	memcpy(k.data, key->mv_data, key->mv_size);
	k.len = key->mv_size;
	k.full = key->mv_size;
	k.hashed = !exact;
	k.hash = 0;
	e->sum += count;
	return path_add_key(e->path, &k);
}

static int sum_key(const MDB_val *key, uint64_t count, int exact, void *arg)
{
	(void)key;
	(void)exact;
	((enum_ctx *)arg)->sum += count;
	return 0;
}

/* The logical prefix key "app \0 V field \0 prefix" (not finished). */
static void prefix_key(sky_ixkey *k, const char *app, char code,
		       const char *prop, const char *value)
{
	sky__ixkey_begin(k, app, SKY_IX_VALUE);
	sky__ixkey_field(k, code, prop);
	sky__ixkey_add(k, "", 1);
	sky__ixkey_add(k, value, strlen(value));
}

/* The ranges of a prefix predicate: one prefix per value and field code. */
static int add_prefixes(path_t *out, const char *app, char code,
			const sky_pred *p, const char *const *values,
			size_t n_values)
{
	for (size_t v = 0; v < n_values; v++) {
		sky_ixkey *r =
		    realloc(out->ranges, (out->n_ranges + 1) * sizeof(*r));
		if (!r)
			return sky__error_nomem();
		out->ranges = r;
		prefix_key(&r[out->n_ranges++], app, code, p->prop, values[v]);
	}
	return 0;
}

/*
 * The keys (or ranges) of a predicate: its values, its field, its
 * prefixes. In an index of version 3 a field's presence is the prefix of
 * all its values (index.h).
 */
static int path_for_pred(MDB_cursor *cur, const char *app, const sky_pred *p,
			 unsigned ix_version, path_t *out)
{
	static const char *const any_value[] = {""};
	char codes[2];
	size_t nc = field_codes(p, codes);
	int rc = 0;
	memset(out, 0, sizeof(*out));
	out->estimate_exact = 1;
	for (size_t c = 0; c < nc && rc == 0; c++) {
		sky_ixkey k;
		switch (p->op) {
		case SKY_OP_EQ:
		case SKY_OP_NE:
			for (size_t v = 0; v < p->n_values && rc == 0; v++) {
				if (p->nums)
					sky__ixkey_number(&k, app, codes[c],
							  p->nums[v]);
				else
					sky__ixkey_value(&k, app, codes[c],
							 p->prop, p->values[v],
							 strlen(p->values[v]));
				rc = path_add_key(out, &k);
			}
			break;
		case SKY_OP_GE:
		case SKY_OP_GT:
		case SKY_OP_LT:
		case SKY_OP_LE: {
			int64_t lo, hi;
			if (!sky__pred_interval(p, &lo, &hi))
				break; /* empty: no keys, no sessions */
			if (!(out->ranges = malloc(sizeof(*out->ranges)))) {
				rc = sky__error_nomem();
				break;
			}
			sky__ixkey_number(&out->ranges[0], app, codes[c], lo);
			sky__ixkey_number(&out->hi, app, codes[c], hi);
			out->n_ranges = 1;
			out->bounded = 1;
			break;
		}
		case SKY_OP_EXISTS:
			if (ix_version >= 3) {
				rc = add_prefixes(out, app, codes[c], p,
						  any_value, 1);
				break;
			}
			sky__ixkey_exists(&k, app, codes[c], p->prop);
			rc = path_add_key(out, &k);
			break;
		case SKY_OP_PREFIX:
			rc = add_prefixes(out, app, codes[c], p,
					  (const char *const *)p->values,
					  p->n_values);
			break;
		}
	}
	if (rc < 0)
		goto fail;
	/* Counts: exact per key; prefixes enumerated while they are few. */
	for (size_t i = 0; i < out->n_keys; i++) {
		uint64_t n;
		if ((rc = key_count(cur, &out->keys[i], &n)) < 0)
			goto fail;
		out->estimate += n;
	}
	if (out->n_ranges) {
		enum_ctx e = {out, 0};
		for (size_t r = 0; r < out->n_ranges && !out->wide; r++) {
			int more;
			size_t room = MAX_UNION_KEYS > out->n_keys
					  ? MAX_UNION_KEYS - out->n_keys
					  : 0;
			if ((rc = range_walk(cur, &out->ranges[r],
					     out->bounded ? &out->hi : NULL,
					     room, enum_key, &e, &more)) < 0)
				goto fail;
			if (more)
				out->wide = 1;
		}
		if (!out->wide) {
			out->estimate += e.sum;
		} else {
			/* Too many keys to merge: estimate from a walk. */
			out->n_keys = 0;
			out->inexact = 0;
			enum_ctx s = {out, 0};
			int more_any = 0;
			for (size_t r = 0; r < out->n_ranges; r++) {
				int more;
				if ((rc = range_walk(
					 cur, &out->ranges[r],
					 out->bounded ? &out->hi : NULL,
					 ESTIMATE_KEYS, sum_key, &s, &more)) <
				    0)
					goto fail;
				more_any |= more;
				if (!out->bounded &&
				    range_scan_len(&out->ranges[r]) <
					out->ranges[r].full)
					out->inexact = 1;
			}
			/* Unwalked keys hold at least one session each. */
			out->estimate =
			    more_any ? s.sum * 2 + ESTIMATE_KEYS : s.sum;
			out->estimate_exact = !more_any;
		}
	}
	return 0;
fail:
	path_free(out);
	return rc;
}

/* ---- streams: sessions of a path in result order ---- */

static void stream_free(stream_t *s)
{
	for (size_t i = 0; i < s->n_subs; i++)
		if (s->subs[i].cur)
			mdb_cursor_close(s->subs[i].cur);
	free(s->subs);
	free(s->arr);
	memset(s, 0, sizeof(*s));
}

/*
 * First position >= t under one key. Targets never decrease, so a cursor
 * already at or past t stays, and the next item is tried before a seek
 * (scanning a list costs one step per row, jumping a logarithmic seek).
 */
static int sub_seek(subcur *s, const sky_ixpos *t)
{
	MDB_val k, v;
	int rc;
	if (s->state == 2)
		return 1;
	if (s->state == 1) {
		if (sky__ixpos_cmp(&s->pos, t) >= 0)
			return 0;
		rc = mdb_cursor_get(s->cur, &k, &v, MDB_NEXT_DUP);
		if (rc == MDB_NOTFOUND) {
			s->state = 2;
			return 1;
		}
		if (rc)
			return sky__error_lmdb(rc, "running a query");
		sky__ixpos_set(&s->pos, &v);
		if (sky__ixpos_cmp(&s->pos, t) >= 0)
			return 0;
	}
	k.mv_size = s->key->len;
	k.mv_data = (void *)s->key->data;
	if (t->len == 0) {
		rc = mdb_cursor_get(s->cur, &k, &v, MDB_SET_KEY);
	} else {
		v.mv_size = t->len;
		v.mv_data = (void *)t->data;
		rc = mdb_cursor_get(s->cur, &k, &v, MDB_GET_BOTH_RANGE);
	}
	if (rc == MDB_NOTFOUND) {
		s->state = 2;
		return 1;
	}
	if (rc)
		return sky__error_lmdb(rc, "running a query");
	sky__ixpos_set(&s->pos, &v);
	s->state = 1;
	return 0;
}

/* First position >= t of the stream: 0 (in *out), 1 when none, < 0. */
static int stream_seek(stream_t *s, const sky_ixpos *t, sky_ixpos *out)
{
	if (s->collected) {
		size_t lo = s->at, hi = s->n_arr;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			if (sky__ixpos_cmp(&s->arr[mid], t) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		s->at = lo;
		if (lo == s->n_arr)
			return 1;
		*out = s->arr[lo];
		return 0;
	}
	const sky_ixpos *best = NULL;
	for (size_t i = 0; i < s->n_subs; i++) {
		int rc = sub_seek(&s->subs[i], t);
		if (rc < 0)
			return rc;
		if (rc == 0 &&
		    (!best || sky__ixpos_cmp(&s->subs[i].pos, best) < 0))
			best = &s->subs[i].pos;
	}
	if (!best)
		return 1;
	*out = *best;
	return 0;
}

static int stream_open(MDB_txn *txn, MDB_dbi dbi, const path_t *p, stream_t *s)
{
	memset(s, 0, sizeof(*s));
	s->subs = calloc(p->n_keys ? p->n_keys : 1, sizeof(*s->subs));
	if (!s->subs)
		return sky__error_nomem();
	s->n_subs = p->n_keys;
	for (size_t i = 0; i < p->n_keys; i++) {
		s->subs[i].key = &p->keys[i];
		int rc = mdb_cursor_open(txn, dbi, &s->subs[i].cur);
		if (rc) {
			stream_free(s);
			return sky__error_lmdb(rc, "running a query");
		}
	}
	return 0;
}

typedef struct {
	MDB_cursor *cur;
	const sky_ixpos *from, *to; /* to: NULL, or the excluded end */
	sky_ixpos *arr;
	size_t n, cap;
} collect_ctx;

static int collect_key(const MDB_val *key, uint64_t count, int exact, void *arg)
{
	collect_ctx *c = arg;
	(void)count;
	(void)exact;
	/* range_walk's cursor is not this one: walk this key's list here. */
	MDB_val k = *key, v;
	int rc;
	if (c->from->len)
		v = (MDB_val){c->from->len, (void *)c->from->data};
	rc = mdb_cursor_get(c->cur, &k, &v,
			    c->from->len ? MDB_GET_BOTH_RANGE : MDB_SET_KEY);
	while (rc == 0) {
		if (c->to && sky__ixpos_cmp_val(c->to, &v) <= 0)
			return 0; /* past the createdAt range */
		if (c->n == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 256;
			sky_ixpos *a = realloc(c->arr, cap * sizeof(*a));
			if (!a)
				return sky__error_nomem();
			c->arr = a;
			c->cap = cap;
		}
		sky__ixpos_set(&c->arr[c->n++], &v);
		rc = mdb_cursor_get(c->cur, &k, &v, MDB_NEXT_DUP);
	}
	if (rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "running a query");
	return 0;
}

static int cmp_pos(const void *a, const void *b)
{
	return sky__ixpos_cmp(a, b);
}

/*
 * Collect the sessions of a wide path from `from` on (up to `to`, when not
 * NULL), sorted, distinct.
 */
static int stream_collect(MDB_txn *txn, MDB_dbi dbi, const path_t *p,
			  const sky_ixpos *from, const sky_ixpos *to,
			  stream_t *s)
{
	collect_ctx c = {NULL, from, to, NULL, 0, 0};
	MDB_cursor *walk;
	int rc;
	memset(s, 0, sizeof(*s));
	if ((rc = mdb_cursor_open(txn, dbi, &walk)))
		return sky__error_lmdb(rc, "running a query");
	if ((rc = mdb_cursor_open(txn, dbi, &c.cur))) {
		mdb_cursor_close(walk);
		return sky__error_lmdb(rc, "running a query");
	}
	for (size_t r = 0; r < p->n_ranges && rc == 0; r++) {
		int more;
		rc = range_walk(walk, &p->ranges[r], p->bounded ? &p->hi : NULL,
				SIZE_MAX, collect_key, &c, &more);
	}
	mdb_cursor_close(c.cur);
	mdb_cursor_close(walk);
	if (rc < 0) {
		free(c.arr);
		return rc;
	}
	if (c.n > 1)
		qsort(c.arr, c.n, sizeof(*c.arr), cmp_pos);
	size_t out = 0;
	for (size_t i = 0; i < c.n; i++)
		if (out == 0 || sky__ixpos_cmp(&c.arr[out - 1], &c.arr[i]) != 0)
			c.arr[out++] = c.arr[i];
	s->arr = c.arr;
	s->n_arr = out;
	s->collected = 1;
	return 0;
}

/* ---- plans ---- */

void sky__plan_free(plan_t *p)
{
	for (size_t i = 0; i < p->n_joins && p->streams; i++)
		stream_free(&p->streams[i]);
	free(p->streams);
	for (size_t i = 0; i < p->n_steps; i++)
		path_free(&p->steps[i].path);
	free(p->steps);
	if (p->probe)
		mdb_cursor_close(p->probe);
	memset(p, 0, sizeof(*p));
}

static int cmp_step(const void *a, const void *b)
{
	const step_t *x = a, *y = b;
	/* Joins first, by estimate; a wide path sorts after an equal one. */
	if (x->kind != y->kind)
		return x->kind < y->kind ? -1 : 1;
	if (x->path.estimate != y->path.estimate)
		return x->path.estimate < y->path.estimate ? -1 : 1;
	if (x->path.wide != y->path.wide)
		return x->path.wide ? 1 : -1;
	return x->pred < y->pred ? -1 : x->pred > y->pred;
}

/* A position that sorts before every session created at `us`. */
static void time_pos(sky_ixpos *x, int64_t us)
{
	sky__put_time(x->data, us);
	x->len = 8;
}

/* Narrow the plan's createdAt interval by one range predicate. */
static void plan_bound(plan_t *p, const sky_pred *pr)
{
	int64_t lo, hi;
	sky_ixpos x;
	if (!sky__pred_interval(pr, &lo, &hi)) {
		p->empty = 1;
		return;
	}
	if (lo != INT64_MIN) {
		time_pos(&x, lo);
		if (!p->has_lo || sky__ixpos_cmp(&x, &p->lo) > 0)
			p->lo = x;
		p->has_lo = 1;
	}
	if (hi != INT64_MAX) {
		time_pos(&x, hi);
		if (!p->has_hi || sky__ixpos_cmp(&x, &p->hi) < 0)
			p->hi = x;
		p->has_hi = 1;
	}
	if (p->has_lo && p->has_hi && sky__ixpos_cmp(&p->lo, &p->hi) >= 0)
		p->empty = 1;
}

int sky__plan_build(MDB_txn *txn, sky_query *q, const sky_ixpos *from,
		    plan_t *p)
{
	MDB_dbi dbi = SKY_DBI(q->cache, SKY_DB_INDEX);
	MDB_cursor *cur;
	int rc;
	memset(p, 0, sizeof(*p));
	p->q = q;
	p->txn = txn;
	if ((rc = sky__query_access(txn, q, &p->access)) < 0)
		return rc;
	/* One step per predicate, and one for the viewer or, when nothing
	 * else drives, for the walk over all sessions. */
	p->steps = calloc(q->n_preds + 1, sizeof(*p->steps));
	if (!p->steps)
		return sky__error_nomem();
	if (p->access == SKY_ACCESS_NONE) {
		p->nothing = 1;
		return 0;
	}
	if ((rc = mdb_cursor_open(txn, dbi, &cur)))
		return sky__error_lmdb(rc, "planning a query");

	p->ix_version = sky__index_version(txn, q->cache);
	for (size_t i = 0; i < q->n_preds; i++) {
		const sky_pred *pr = &q->preds[i];
		step_t *s = &p->steps[p->n_steps];
		s->pred = (int)i;
		if (pr->field == SKY_FIELD_CREATED_AT) {
			s->kind = STEP_BOUND;
			p->n_steps++;
			plan_bound(p, pr);
			continue;
		}
		if (p->ix_version < 2 && pr->field >= SKY_FIELD_CREATED_BY) {
			/* An index of version 1 has no keys for the field
			 * (read-only open of an older cache): the record
			 * answers. */
			s->kind = STEP_FILTER;
			p->n_steps++;
			continue;
		}
		if ((rc = path_for_pred(cur, q->app, pr, p->ix_version,
					&s->path)) < 0)
			goto fail;
		p->n_steps++;
		if (pr->op == SKY_OP_NE) {
			/* A hashed key cannot tell "no" for sure. */
			s->kind = s->path.inexact ? STEP_FILTER : STEP_EXCLUDE;
		} else {
			s->kind = STEP_JOIN;
			s->check = s->path.inexact;
		}
	}
	if (p->access == SKY_ACCESS_PARTICIPANT) {
		/* Sessions the viewer is in: its user id, its groups. */
		step_t *s = &p->steps[p->n_steps++];
		sky_ixkey k;
		s->kind = STEP_JOIN;
		s->pred = -1;
		s->visibility = 1;
		s->path.estimate_exact = 1;
		for (size_t g = 0; g <= q->n_groups; g++) {
			uint64_t n;
			if (g == 0)
				sky__ixkey_value(&k, q->app, SKY_IXF_USER, NULL,
						 q->viewer, strlen(q->viewer));
			else
				sky__ixkey_value(&k, q->app, SKY_IXF_GROUP,
						 NULL, q->groups[g - 1],
						 strlen(q->groups[g - 1]));
			if ((rc = path_add_key(&s->path, &k)) < 0 ||
			    (rc = key_count(cur, &k, &n)) < 0)
				goto fail;
			s->path.estimate += n;
		}
	}
	/*
	 * The smallest set drives. A wide prefix may drive (its sessions are
	 * collected) but is not merged as a member: collecting it could cost
	 * far more than the driver; it is checked on the record instead.
	 */
	qsort(p->steps, p->n_steps, sizeof(*p->steps), cmp_step);
	for (size_t i = 1; i < p->n_steps; i++)
		if (p->steps[i].kind == STEP_JOIN && p->steps[i].path.wide)
			p->steps[i].kind = STEP_FILTER;
	qsort(p->steps, p->n_steps, sizeof(*p->steps), cmp_step);
	while (p->n_joins < p->n_steps &&
	       p->steps[p->n_joins].kind == STEP_JOIN)
		p->n_joins++;
	if (p->n_joins == 0) {
		/* No positive predicate (so no viewer step either): walk
		 * every session of the application. */
		assert(p->n_steps == q->n_preds);
		memmove(p->steps + 1, p->steps, p->n_steps * sizeof(*p->steps));
		memset(p->steps, 0, sizeof(*p->steps));
		p->n_steps++;
		p->n_joins = 1;
		step_t *s = &p->steps[0];
		sky_ixkey k;
		uint64_t n;
		s->pred = -1;
		s->path.estimate_exact = 1;
		sky__ixkey_all(&k, q->app);
		if ((rc = path_add_key(&s->path, &k)) < 0 ||
		    (rc = key_count(cur, &k, &n)) < 0)
			goto fail;
		s->path.estimate = n;
	}
	p->steps[0].kind = STEP_DRIVE;
	int probes = 0;
	for (size_t i = 0; i < p->n_steps; i++) {
		if (p->steps[i].kind == STEP_FILTER)
			p->steps[i].check = 1;
		if (p->steps[i].check)
			p->need_json = 1;
		if (p->steps[i].kind == STEP_EXCLUDE)
			probes = 1;
	}

	/* Collected paths start at the createdAt range when it is later. */
	if (p->has_lo && sky__ixpos_cmp(from, &p->lo) < 0)
		from = &p->lo;
	/* Streams for the joins; the exclusion probe cursor. */
	p->streams = calloc(p->n_joins, sizeof(*p->streams));
	if (!p->streams) {
		rc = sky__error_nomem();
		goto fail;
	}
	for (size_t i = 0; i < p->n_joins; i++) {
		const path_t *path = &p->steps[i].path;
		rc = path->wide ? stream_collect(txn, dbi, path, from,
						 p->has_hi ? &p->hi : NULL,
						 &p->streams[i])
				: stream_open(txn, dbi, path, &p->streams[i]);
		if (rc < 0) {
			p->n_joins = i; /* free only what was opened */
			goto fail;
		}
	}
	if (probes && (rc = mdb_cursor_open(txn, dbi, &p->probe))) {
		rc = sky__error_lmdb(rc, "running a query");
		goto fail;
	}
	mdb_cursor_close(cur);
	return 0;
fail:
	mdb_cursor_close(cur);
	sky__plan_free(p);
	return rc;
}

/* The next position where every join stream agrees, from *target on. */
static int next_candidate(plan_t *p, sky_ixpos *target, sky_ixpos *x)
{
	for (;;) {
		int rc = stream_seek(&p->streams[0], target, x);
		if (rc)
			return rc;
		if (p->has_hi && sky__ixpos_cmp(x, &p->hi) >= 0)
			return 1; /* past the createdAt range */
		p->steps[0].actual++;
		size_t j;
		for (j = 1; j < p->n_joins; j++) {
			sky_ixpos y;
			if ((rc = stream_seek(&p->streams[j], x, &y)))
				return rc;
			if (sky__ixpos_cmp(&y, x) != 0) {
				*target = y;
				break;
			}
			p->steps[j].actual++;
		}
		if (j == p->n_joins)
			return 0;
	}
}

/* Is position x under one of the keys of the path? */
static int probe_any(plan_t *p, const path_t *path, const sky_ixpos *x,
		     int *found)
{
	*found = 0;
	for (size_t i = 0; i < path->n_keys; i++) {
		MDB_val k = {path->keys[i].len, (void *)path->keys[i].data};
		MDB_val v = {x->len, (void *)x->data};
		int rc = mdb_cursor_get(p->probe, &k, &v, MDB_GET_BOTH);
		if (rc == 0) {
			*found = 1;
			return 0;
		}
		if (rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "running a query");
	}
	return 0;
}

void sky__ixpos_successor(sky_ixpos *t, const sky_ixpos *x)
{
	*t = *x;
	t->data[t->len++] = 0;
}

int sky__plan_next(plan_t *p, sky_ixpos *target, sky_ixpos *x, sky_record *rec)
{
	if (p->nothing || p->empty)
		return 1;
	if (p->has_lo && sky__ixpos_cmp(target, &p->lo) < 0)
		*target = p->lo;
	for (;;) {
		int rc = next_candidate(p, target, x);
		if (rc)
			return rc;
		sky__ixpos_successor(target, x);
		for (size_t i = p->n_joins; i < p->n_steps; i++)
			if (p->steps[i].kind == STEP_BOUND)
				p->steps[i].actual++;
		int out = 0;
		for (size_t i = p->n_joins; i < p->n_steps && !out; i++) {
			step_t *s = &p->steps[i];
			if (s->kind != STEP_EXCLUDE)
				continue;
			int found;
			if ((rc = probe_any(p, &s->path, x, &found)) < 0)
				return rc;
			if (found)
				out = 1;
			else
				s->actual++;
		}
		if (out)
			continue;
		if (p->index_only && !p->need_json)
			return 0; /* a count: the index alone answers */
		char sid[SKY_MAX_ID_BYTES + 1];
		sky__ixpos_sid(x, sid);
		rc = sky__record_get(p->txn, p->q->cache, p->q->app, sid, rec);
		/* An entry without its record is a damaged index (check
		 * reports it): it is no result. */
		if (rc == SKY_ENOTFOUND ||
		    (rc == 0 && rec->created_us != sky__ixpos_created(x)))
			continue;
		if (rc < 0)
			return rc;
		if (!p->need_json)
			return 0;
		json_t *s = sky__record_json(rec);
		if (!s)
			return -1;
		int ok = 1;
		for (size_t i = 0; i < p->n_steps && ok; i++) {
			step_t *st = &p->steps[i];
			if (!st->check)
				continue;
			ok = st->pred < 0
				 ? sky__query_visible(p->q, p->access, s)
				 : sky__pred_eval(&p->q->preds[st->pred], s);
			if (ok && st->kind == STEP_FILTER)
				st->actual++;
		}
		json_decref(s);
		if (ok)
			return 0;
	}
}
