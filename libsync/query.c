/*
 * query.c - property-filter queries (DESIGN.md §6): parsing predicates,
 * planning with index counts, running the plan, resumable cursors, the
 * viewer's visibility rule, and the explain output.
 *
 * Predicates. `key=v`, `key=a|b|c`, `key!=v` (also a|b), `key^=prefix`
 * (also a|b) and `key?`. The keys `status`, `participant` (any participant
 * id, user or group) and `name` are the session's fields; any other key is
 * a property, and `props.KEY` always means the property KEY (so a property
 * named "status" is written props.status). A backslash makes the next
 * character literal: `site=A\|B` is the one value "A|B", `a\=b=1` the
 * property "a=b".
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
 * - Results are exactly the sessions of the application that satisfy
 *   every predicate (and the visibility rule) in the read snapshot, in
 *   (createdAt, sessionId) order: the index only narrows the candidates;
 *   anything it answers inexactly is checked against the record.
 * - A cursor is the position of the last row returned; the next page
 *   starts strictly after it, so adding or removing sessions between pages
 *   never repeats a row nor skips one that was there on both pages.
 */
#include "config.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"
#include "query.h"

/* A prefix with more keys than this is merged by collecting its sessions. */
#define MAX_UNION_KEYS 64
/* Keys of a wide prefix walked to estimate its size. */
#define ESTIMATE_KEYS 256
/* Cursor format version (first byte). */
#define CURSOR_VERSION 1

/* ---- predicates ---- */

static int valid_utf8(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (!j)
		return 0;
	json_decref(j);
	return 1;
}

void sky__pred_clear(sky_pred *p)
{
	free(p->text);
	free(p->prop);
	for (size_t i = 0; i < p->n_values; i++)
		free(p->values[i]);
	free(p->values);
	memset(p, 0, sizeof(*p));
}

static int bad_pred(const char *text, const char *why)
{
	return sky__error_input("predicate '%.80s%s': %s", text,
				strlen(text) > 80 ? "..." : "", why);
}

/* Add a value unless the predicate already has it. */
static int add_value(sky_pred *p, sky_buf *v)
{
	const char *s = v->data ? v->data : "";
	for (size_t i = 0; i < p->n_values; i++)
		if (strcmp(p->values[i], s) == 0)
			return 0;
	char **vals = realloc(p->values, (p->n_values + 1) * sizeof(*vals));
	if (!vals)
		return sky__error_nomem();
	p->values = vals;
	if (!(vals[p->n_values] = strdup(s)))
		return sky__error_nomem();
	p->n_values++;
	return 0;
}

int sky__pred_parse(const char *text, sky_pred *out)
{
	sky_buf key = SKY_BUF_INIT, val = SKY_BUF_INIT;
	sky_pred p;
	int rc = 0, op = -1;
	size_t i = 0, n = strlen(text);
	memset(&p, 0, sizeof(p));

	/* The key, up to the first unescaped operator. */
	while (i < n && op < 0) {
		char ch = text[i];
		if (ch == '\\') {
			if (i + 1 == n) {
				rc = bad_pred(text,
					      "ends with a lone backslash");
				goto fail;
			}
			if (sky__buf_putc(&key, text[i + 1]) < 0)
				goto nomem;
			i += 2;
		} else if (ch == '=') {
			op = SKY_OP_EQ;
			i++;
		} else if ((ch == '!' || ch == '^') && text[i + 1] == '=') {
			op = ch == '!' ? SKY_OP_NE : SKY_OP_PREFIX;
			i += 2;
		} else if (ch == '?' && i + 1 == n) {
			op = SKY_OP_EXISTS;
			i++;
		} else {
			if (sky__buf_putc(&key, ch) < 0)
				goto nomem;
			i++;
		}
	}
	if (op < 0) {
		rc = bad_pred(text, "expected key=value, key!=value, "
				    "key^=prefix, key? or key=a|b|c");
		goto fail;
	}
	if (key.len == 0) {
		rc = bad_pred(text, "the key is empty");
		goto fail;
	}
	if (!valid_utf8(key.data, key.len)) {
		rc = bad_pred(text, "the key is not valid UTF-8");
		goto fail;
	}

	/* Which field. */
	if (strncmp(key.data, "props.", 6) == 0) {
		if (key.len == 6) {
			rc = bad_pred(text, "props. needs a property name");
			goto fail;
		}
		p.field = SKY_FIELD_PROP;
		if (!(p.prop = strdup(key.data + 6)))
			goto nomem;
	} else if (strcmp(key.data, "status") == 0) {
		p.field = SKY_FIELD_STATUS;
	} else if (strcmp(key.data, "participant") == 0) {
		p.field = SKY_FIELD_PARTICIPANT;
	} else if (strcmp(key.data, "name") == 0) {
		p.field = SKY_FIELD_NAME;
	} else {
		p.field = SKY_FIELD_PROP;
		p.prop = sky__buf_detach(&key, NULL);
		if (!p.prop)
			goto nomem;
	}
	p.op = op;

	/* The values, split on unescaped '|'. */
	if (op != SKY_OP_EXISTS) {
		for (;;) {
			char ch = i < n ? text[i] : '\0';
			if (ch == '\\') {
				if (i + 1 == n) {
					rc = bad_pred(text, "ends with a lone "
							    "backslash");
					goto fail;
				}
				if (sky__buf_putc(&val, text[i + 1]) < 0)
					goto nomem;
				i += 2;
				continue;
			}
			if (ch == '|' || ch == '\0') {
				if (val.len && !valid_utf8(val.data, val.len)) {
					rc = bad_pred(text, "a value is not "
							    "valid UTF-8");
					goto fail;
				}
				if (add_value(&p, &val) < 0)
					goto nomem;
				sky__buf_clear(&val);
				if (ch == '\0')
					break;
				i++;
				continue;
			}
			if (sky__buf_putc(&val, ch) < 0)
				goto nomem;
			i++;
		}
	}
	if (p.field == SKY_FIELD_STATUS &&
	    (op == SKY_OP_EQ || op == SKY_OP_NE)) {
		for (size_t v = 0; v < p.n_values; v++)
			if (strcmp(p.values[v], "open") &&
			    strcmp(p.values[v], "closed")) {
				rc = bad_pred(text, "status is \"open\" or "
						    "\"closed\"");
				goto fail;
			}
	}
	if (!(p.text = strdup(text)))
		goto nomem;
	sky__buf_free(&key);
	sky__buf_free(&val);
	*out = p;
	return 0;

nomem:
	rc = sky__error_nomem();
fail:
	sky__buf_free(&key);
	sky__buf_free(&val);
	sky__pred_clear(&p);
	return rc;
}

/* Does one string value satisfy the positive form of the predicate? */
static int value_matches(const sky_pred *p, const json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	for (size_t i = 0; i < p->n_values; i++) {
		size_t m = strlen(p->values[i]);
		int fits = p->op == SKY_OP_PREFIX ? m <= n : m == n;
		if (fits && memcmp(s, p->values[i], m) == 0)
			return 1;
	}
	return 0;
}

int sky__pred_eval(const sky_pred *p, const json_t *s)
{
	int has = 0, hit = 0;
	if (p->field == SKY_FIELD_PARTICIPANT) {
		size_t i;
		const json_t *e;
		json_array_foreach((json_t *)json_object_get(s, "participants"),
				   i, e) {
			const json_t *id = json_object_get(e, "id");
			if (!json_is_string(id))
				continue;
			has = 1;
			if (p->op != SKY_OP_EXISTS && value_matches(p, id))
				hit = 1;
		}
	} else {
		const json_t *v;
		if (p->field == SKY_FIELD_PROP)
			v = json_object_get(json_object_get(s, "properties"),
					    p->prop);
		else
			v = json_object_get(s, p->field == SKY_FIELD_STATUS
						       ? "status"
						       : "name");
		has = json_is_string(v);
		hit = has && p->op != SKY_OP_EXISTS && value_matches(p, v);
	}
	switch (p->op) {
	case SKY_OP_EQ:
	case SKY_OP_PREFIX: return hit;
	case SKY_OP_NE: return !hit;
	case SKY_OP_EXISTS: return has;
	}
	return 0;
}

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
	}
	return 0;
}

/* ---- visibility ---- */

static int is_group(const json_t *participant)
{
	const char *t = json_string_value(json_object_get(participant, "type"));
	return t && strcmp(t, "group") == 0;
}

/* Is the viewer (directly or through a group) in this participant list? */
static int viewer_in(const sky_query *q, const json_t *parts)
{
	size_t i;
	const json_t *e;
	json_array_foreach((json_t *)parts, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		if (!id)
			continue;
		if (!is_group(e)) {
			if (strcmp(id, q->viewer) == 0)
				return 1;
			continue;
		}
		for (size_t g = 0; g < q->n_groups; g++)
			if (strcmp(id, q->groups[g]) == 0)
				return 1;
	}
	return 0;
}

int sky__query_access(MDB_txn *txn, const sky_query *q, sky_access *out)
{
	if (!q->viewer) {
		*out = SKY_ACCESS_ALL;
		return 0;
	}
	unsigned char prefix[SKY_KEY_MAX];
	size_t plen = sky__key2(prefix, sizeof(prefix), q->app, NULL);
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(q->cache, SKY_DB_ROLES), &cur);
	if (rc)
		return sky__error_lmdb(rc, "reading roles");
	int any = 0, part = 0;
	MDB_val key = {plen, prefix}, val;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	     rc == 0 && key.mv_size >= plen &&
	     memcmp(key.mv_data, prefix, plen) == 0 && !any;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		/* Role values are JSON text with a trailing NUL. */
		size_t len = val.mv_size ? val.mv_size - 1 : 0;
		json_t *role = sky__json_loadb(val.mv_data, len, 0, NULL);
		if (!role)
			continue; /* `check` reports it; it grants nothing */
		if (viewer_in(q, json_object_get(role, "participants"))) {
			size_t i;
			const json_t *perm;
			json_array_foreach(json_object_get(role, "permissions"),
					   i, perm) {
				/* Whole strings: "x\u0000y" is not "x". */
				if (sky__json_streq(perm, "session:read:any"))
					any = 1;
				else if (sky__json_streq(perm,
							 "session:read:participant"))
					part = 1;
			}
		}
		json_decref(role);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "reading roles");
	*out = any ? SKY_ACCESS_ALL : part ? SKY_ACCESS_PARTICIPANT
					   : SKY_ACCESS_NONE;
	return 0;
}

int sky__query_visible(const sky_query *q, sky_access access,
		       const json_t *session)
{
	switch (access) {
	case SKY_ACCESS_ALL: return 1;
	case SKY_ACCESS_NONE: return 0;
	case SKY_ACCESS_PARTICIPANT:
		return viewer_in(q, json_object_get(session, "participants"));
	}
	return 0;
}

/* ---- access paths: sets of index keys ---- */

/*
 * The sessions under a union of index keys. Enumerated keys carry their
 * exact counts; a prefix with more than MAX_UNION_KEYS keys is kept as its
 * ranges instead (`wide`), to be collected if it drives the plan.
 */
typedef struct {
	sky_ixkey *keys;
	size_t n_keys;
	sky_ixkey *ranges; /* logical prefixes (not finished) of a wide path */
	size_t n_ranges;
	int wide;
	int inexact;       /* hashed keys: candidates need the record check */
	uint64_t estimate;
	int estimate_exact;
} path_t;

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

/*
 * Walk the keys of a prefix range: up to `max_keys` keys are handed to fn
 * (with their count); *more is set when keys remain after that.
 */
static int range_walk(MDB_cursor *cur, const sky_ixkey *pfx, size_t max_keys,
		      int (*fn)(const MDB_val *key, uint64_t count, int exact,
				void *arg),
		      void *arg, int *more)
{
	size_t slen = range_scan_len(pfx), seen = 0;
	MDB_val k = {slen, (void *)pfx->data}, v;
	int rc;
	*more = 0;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 && k.mv_size >= slen &&
	     !memcmp(k.mv_data, pfx->data, slen);
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_NODUP)) {
		int exact;
		if (!range_accepts(pfx, &k, &exact))
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

/* The keys (or ranges) of a predicate: its values, its field, its prefixes. */
static int path_for_pred(MDB_cursor *cur, const char *app, const sky_pred *p,
			 path_t *out)
{
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
				sky__ixkey_value(&k, app, codes[c], p->prop,
						 p->values[v],
						 strlen(p->values[v]));
				rc = path_add_key(out, &k);
			}
			break;
		case SKY_OP_EXISTS:
			sky__ixkey_exists(&k, app, codes[c], p->prop);
			rc = path_add_key(out, &k);
			break;
		case SKY_OP_PREFIX:
			for (size_t v = 0; v < p->n_values && rc == 0; v++) {
				prefix_key(&k, app, codes[c], p->prop,
					   p->values[v]);
				sky_ixkey *r = realloc(out->ranges,
						       (out->n_ranges + 1) *
							       sizeof(*r));
				if (!r) {
					rc = sky__error_nomem();
					break;
				}
				out->ranges = r;
				r[out->n_ranges++] = k;
			}
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
			if ((rc = range_walk(cur, &out->ranges[r], room,
					     enum_key, &e, &more)) < 0)
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
				if ((rc = range_walk(cur, &out->ranges[r],
						     ESTIMATE_KEYS, sum_key, &s,
						     &more)) < 0)
					goto fail;
				more_any |= more;
				if (range_scan_len(&out->ranges[r]) <
				    out->ranges[r].full)
					out->inexact = 1;
			}
			/* Unwalked keys hold at least one session each. */
			out->estimate = more_any ? s.sum * 2 + ESTIMATE_KEYS
						 : s.sum;
			out->estimate_exact = !more_any;
		}
	}
	return 0;
fail:
	path_free(out);
	return rc;
}

/* ---- streams: sessions of a path in result order ---- */

typedef struct {
	MDB_cursor *cur;
	const sky_ixkey *key;
	sky_ixpos pos;
	int state; /* 0 not positioned, 1 at pos, 2 exhausted */
} subcur;

typedef struct {
	subcur *subs;
	size_t n_subs;
	sky_ixpos *arr; /* a collected (wide) path */
	size_t n_arr, at;
	int collected;
} stream_t;

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

static int stream_open(MDB_txn *txn, MDB_dbi dbi, const path_t *p,
		       stream_t *s)
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
	const sky_ixpos *from;
	sky_ixpos *arr;
	size_t n, cap;
} collect_ctx;

static int collect_key(const MDB_val *key, uint64_t count, int exact,
		       void *arg)
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

/* Collect the sessions of a wide path from `from` on, sorted, distinct. */
static int stream_collect(MDB_txn *txn, MDB_dbi dbi, const path_t *p,
			  const sky_ixpos *from, stream_t *s)
{
	collect_ctx c = {NULL, from, NULL, 0, 0};
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
		rc = range_walk(walk, &p->ranges[r], SIZE_MAX, collect_key, &c,
				&more);
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

typedef enum {
	STEP_DRIVE,   /* the first stream: candidates come from it */
	STEP_JOIN,    /* intersected with the driver (leapfrog) */
	STEP_EXCLUDE, /* != answered by probing the index */
	STEP_FILTER,  /* checked on the record */
} step_kind;

typedef struct {
	step_kind kind;
	int pred;       /* predicate index; -1: visibility or all sessions */
	int visibility; /* the viewer's participant rule (pred -1) */
	path_t path;
	int check;      /* also evaluate the predicate on the record */
	uint64_t actual; /* candidates that passed this step */
} step_t;

typedef struct {
	sky_query *q;
	MDB_txn *txn;
	sky_access access;
	step_t *steps;
	size_t n_steps;
	size_t n_joins;      /* steps[0..n_joins) have streams */
	stream_t *streams;
	MDB_cursor *probe;
	int need_json;
	int nothing;         /* the viewer may see nothing */
	uint64_t rows;
	int more;
} plan_t;

static void plan_free(plan_t *p)
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

static int plan_build(MDB_txn *txn, sky_query *q, const sky_ixpos *from,
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

	for (size_t i = 0; i < q->n_preds; i++) {
		const sky_pred *pr = &q->preds[i];
		step_t *s = &p->steps[p->n_steps];
		if ((rc = path_for_pred(cur, q->app, pr, &s->path)) < 0)
			goto fail;
		s->pred = (int)i;
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

	/* Streams for the joins; the exclusion probe cursor. */
	p->streams = calloc(p->n_joins, sizeof(*p->streams));
	if (!p->streams) {
		rc = sky__error_nomem();
		goto fail;
	}
	for (size_t i = 0; i < p->n_joins; i++) {
		const path_t *path = &p->steps[i].path;
		rc = path->wide ? stream_collect(txn, dbi, path, from,
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
	plan_free(p);
	return rc;
}

/* The next position where every join stream agrees, from *target on. */
static int next_candidate(plan_t *p, sky_ixpos *target, sky_ixpos *x)
{
	for (;;) {
		int rc = stream_seek(&p->streams[0], target, x);
		if (rc)
			return rc;
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

/* The position right after x: x followed by a zero byte. */
static void successor(sky_ixpos *t, const sky_ixpos *x)
{
	*t = *x;
	t->data[t->len++] = 0;
}

/*
 * The next result at or after *target: 0 with *x and *rec set (and
 * *target moved past it), 1 when there is none, < 0 on error.
 */
static int next_match(plan_t *p, sky_ixpos *target, sky_ixpos *x,
		      sky_record *rec)
{
	if (p->nothing)
		return 1;
	for (;;) {
		int rc = next_candidate(p, target, x);
		if (rc)
			return rc;
		successor(target, x);
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

/* ---- cursors ---- */

static const char b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static char *cursor_encode(const sky_ixpos *x)
{
	unsigned char raw[SKY_IX_POS_MAX + 1];
	size_t n = x->len + 1;
	raw[0] = CURSOR_VERSION;
	memcpy(raw + 1, x->data, x->len);
	char *out = malloc((n + 2) / 3 * 4 + 1);
	if (!out) {
		sky__error_nomem();
		return NULL;
	}
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)raw[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)raw[i + 1] << 8;
		if (i + 2 < n)
			v |= raw[i + 2];
		out[o++] = b64[(v >> 18) & 63];
		out[o++] = b64[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = b64[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = b64[v & 63];
	}
	out[o] = '\0';
	return out;
}

static int cursor_decode(const char *text, sky_ixpos *x)
{
	unsigned char raw[SKY_IX_POS_MAX + 4];
	size_t n = 0, len = strlen(text);
	uint32_t acc = 0;
	int bits = 0;
	if (len > (sizeof(raw) * 4) / 3)
		goto bad;
	for (size_t i = 0; i < len; i++) {
		const char *c = strchr(b64, text[i]);
		if (!c)
			goto bad;
		acc = (acc << 6) | (uint32_t)(c - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (n < 10 || raw[0] != CURSOR_VERSION || n - 1 > SKY_IX_POS_MAX)
		goto bad;
	char sid[SKY_MAX_ID_BYTES + 1];
	memcpy(sid, raw + 9, n - 9);
	sid[n - 9] = '\0';
	if (strlen(sid) != n - 9 || sky__check_id(sid, "cursor") < 0)
		goto bad;
	memcpy(x->data, raw + 1, n - 1);
	x->len = n - 1;
	return 0;
bad:
	return sky__error_input("cursor '%.40s%s' is not one this library "
				"gave out: pass the cursor of a previous page "
				"unchanged",
				text, len > 40 ? "..." : "");
}

/* ---- explain ---- */

static const char *step_name(step_kind k)
{
	switch (k) {
	case STEP_DRIVE: return "scan";
	case STEP_JOIN: return "intersect";
	case STEP_EXCLUDE: return "exclude";
	case STEP_FILTER: return "filter";
	}
	return "?";
}

static const char *access_name(sky_access a)
{
	switch (a) {
	case SKY_ACCESS_ALL: return "any";
	case SKY_ACCESS_PARTICIPANT: return "participant";
	case SKY_ACCESS_NONE: return "none";
	}
	return "?";
}

static char *explain_json(const sky_query *q)
{
	json_t *root = json_object(), *steps = json_array(),
	       *preds = json_array();
	if (!root || !steps || !preds) {
		json_decref(root);
		json_decref(steps);
		json_decref(preds);
		sky__error_nomem();
		return NULL;
	}
	int bad = 0; /* any setter failed: out of memory */
	bad |= json_object_set_new(root, "application", json_string(q->app));
	for (size_t i = 0; i < q->n_preds; i++)
		bad |=
		    json_array_append_new(preds, json_string(q->preds[i].text));
	bad |= json_object_set_new(root, "predicates", preds);
	if (q->viewer) {
		json_t *g = json_array();
		for (size_t i = 0; i < q->n_groups; i++)
			bad |=
			    json_array_append_new(g, json_string(q->groups[i]));
		bad |= json_object_set_new(
		    root, "viewer",
		    json_pack("{s:s,s:o,s:s}", "user", q->viewer, "groups", g,
			      "access", access_name(q->access)));
	}
	for (size_t i = 0; i < q->n_plan; i++) {
		const sky_plan_step *s = &q->plan[i];
		char what[160], how[200];
		if (s->pred >= 0)
			snprintf(what, sizeof(what), "%s",
				 q->preds[s->pred].text);
		else if (s->visibility)
			snprintf(what, sizeof(what),
				 "visible to %s (participant, or one of "
				 "%zu groups)",
				 q->viewer, q->n_groups);
		else
			snprintf(what, sizeof(what), "all sessions");
		if (s->kind == STEP_FILTER)
			snprintf(how, sizeof(how), "record");
		else if (s->wide)
			snprintf(how, sizeof(how),
				 "index: %zu prefix range%s, sessions "
				 "collected",
				 s->n_ranges, s->n_ranges == 1 ? "" : "s");
		else
			snprintf(how, sizeof(how), "index: %zu key%s%s",
				 s->n_keys, s->n_keys == 1 ? "" : "s",
				 s->check ? ", checked on the record" : "");
		json_t *o = json_pack("{s:s,s:s,s:s}", "step",
				      step_name((step_kind)s->kind), "what",
				      what, "using", how);
		if (!o) {
			bad = -1;
			continue;
		}
		if (s->kind != STEP_FILTER) {
			bad |= json_object_set_new(
			    o, "estimated",
			    json_integer((json_int_t)s->estimate));
			if (!s->estimate_exact)
				bad |= json_object_set_new(
				    o, "estimate", json_string("approximate"));
		}
		bad |= json_object_set_new(o, "actual",
					   json_integer((json_int_t)s->actual));
		bad |= json_array_append_new(steps, o);
	}
	if (q->nothing)
		bad |= json_array_append_new(
		    steps,
		    json_pack("{s:s,s:s,s:s,s:I,s:I}", "step", "nothing",
			      "what", "visible sessions", "using",
			      "roles: no session:read permission", "estimated",
			      (json_int_t)0, "actual", (json_int_t)0));
	bad |= json_object_set_new(root, "steps", steps);
	bad |= json_object_set_new(root, "rows",
				   json_integer((json_int_t)q->rows));
	bad |= json_object_set_new(root, "more", json_boolean(q->more));
	if (q->limit)
		bad |= json_object_set_new(root, "limit",
					   json_integer((json_int_t)q->limit));
	if (bad) {
		json_decref(root);
		sky__error_nomem();
		return NULL;
	}
	char *text = sky__json_dumps(root, NULL);
	json_decref(root);
	if (!text)
		sky__error_nomem();
	return text;
}

/* Keep what the explain output needs of the plan of this run. */
static int save_plan(sky_query *q, const plan_t *p)
{
	if (p->n_steps > q->cap_plan) {
		sky_plan_step *v = realloc(q->plan, p->n_steps * sizeof(*v));
		if (!v)
			return sky__error_nomem();
		q->plan = v;
		q->cap_plan = p->n_steps;
	}
	for (size_t i = 0; i < p->n_steps; i++) {
		const step_t *s = &p->steps[i];
		q->plan[i] = (sky_plan_step){
			(int)s->kind,
			s->pred,
			s->visibility,
			s->path.wide,
			s->check,
			s->path.estimate_exact,
			s->path.n_keys,
			s->path.n_ranges,
			s->path.estimate,
			s->actual,
		};
	}
	q->n_plan = p->n_steps;
	q->access = p->access;
	q->nothing = p->nothing;
	q->rows = p->rows;
	q->more = p->more;
	q->ran = 1;
	return 0;
}

/* ---- running ---- */

/* Run in txn; rows go to cb; the query's cursor and explain are updated. */
static int run(MDB_txn *txn, sky_query *q, sky_result_cb cb, void *payload)
{
	plan_t p;
	sky_ixpos target, x, last;
	sky_record rec;
	int rc, stopped = 0, any = 0;
	free(q->next_cursor);
	q->next_cursor = NULL;
	free(q->explain);
	q->explain = NULL;
	q->ran = 0;
	target.len = 0;
	if (q->has_start)
		successor(&target, &q->start);
	if ((rc = plan_build(txn, q, &target, &p)) < 0)
		return rc;
	for (;;) {
		rc = next_match(&p, &target, &x, &rec);
		if (rc < 0)
			goto done;
		if (rc == 1) {
			rc = 0;
			break;
		}
		if (q->limit && p.rows == q->limit) {
			p.more = 1; /* one more row exists: a next page */
			break;
		}
		p.rows++;
		last = x;
		any = 1;
		rc = cb(rec.json, rec.json_len,
			(rec.flags & SKY_REC_PENDING) ? SKY_RESULT_PENDING : 0,
			payload);
		if (rc) {
			stopped = 1;
			break;
		}
	}
	if ((p.more || stopped) && any &&
	    !(q->next_cursor = cursor_encode(&last)))
		rc = -1;
	if (rc >= 0 && save_plan(q, &p) < 0)
		rc = -1;
done:
	plan_free(&p);
	return rc;
}

int sky_reader_query(sky_reader *reader, sky_query *q, sky_result_cb cb,
		     void *payload)
{
	assert(reader && q && cb);
	if (reader->cache != q->cache)
		return sky__error_input("the reader and the query belong to "
					"different caches");
	return run(reader->txn, q, cb, payload);
}

int sky_query_run(sky_query *q, sky_result_cb cb, void *payload)
{
	assert(q && cb);
	MDB_txn *txn;
	int rc = sky__store_read_begin(&q->cache->st, &txn);
	if (rc < 0)
		return rc;
	rc = run(txn, q, cb, payload);
	sky__store_read_end(&q->cache->st, txn);
	return rc;
}

const char *sky_query_next_cursor(const sky_query *q)
{
	return q->next_cursor;
}

const char *sky_query_explain(sky_query *q)
{
	if (!q->explain && q->ran)
		q->explain = explain_json(q);
	return q->explain;
}

/* ---- internal runs for live queries ---- */

int sky__query_each_id(MDB_txn *txn, sky_query *q,
		       int (*fn)(const char *sid, void *arg), void *arg)
{
	plan_t p;
	sky_ixpos target = {.len = 0}, x;
	sky_record rec;
	int rc = plan_build(txn, q, &target, &p);
	if (rc < 0)
		return rc;
	while ((rc = next_match(&p, &target, &x, &rec)) == 0) {
		char sid[SKY_MAX_ID_BYTES + 1];
		sky__ixpos_sid(&x, sid);
		if ((rc = fn(sid, arg)) != 0)
			break;
	}
	plan_free(&p);
	return rc == 1 ? 0 : rc;
}

int sky__query_match(MDB_txn *txn, const sky_query *q, sky_access access,
		     const char *sid, int *match)
{
	sky_record rec;
	*match = 0;
	if (access == SKY_ACCESS_NONE)
		return 0;
	int rc = sky__record_get(txn, q->cache, q->app, sid, &rec);
	if (rc == SKY_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	json_t *s = sky__record_json(&rec);
	if (!s)
		return -1;
	int ok = sky__query_visible(q, access, s);
	for (size_t i = 0; i < q->n_preds && ok; i++)
		ok = sky__pred_eval(&q->preds[i], s);
	json_decref(s);
	*match = ok;
	return 0;
}

/* ---- the query object ---- */

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

int sky_query_new(sky_query **out, sky_cache *cache, const char *app_id,
		  const char *const *preds, size_t n_preds)
{
	int rc = sky__check_id(app_id, "application id");
	if (rc < 0)
		return rc;
	if (n_preds && !preds)
		return sky__error_input("predicates: NULL array");
	sky_query *q = calloc(1, sizeof(*q));
	if (!q)
		return sky__error_nomem();
	q->cache = cache;
	q->preds = calloc(n_preds ? n_preds : 1, sizeof(*q->preds));
	if (!q->preds || !(q->app = strdup(app_id))) {
		rc = sky__error_nomem();
		goto fail;
	}
	for (size_t i = 0; i < n_preds; i++) {
		if (!preds[i]) {
			rc = sky__error_input("predicate %zu: NULL", i);
			goto fail;
		}
		if ((rc = sky__pred_parse(preds[i], &q->preds[i])) < 0)
			goto fail;
		q->n_preds++;
	}
	*out = q;
	return 0;
fail:
	sky_query_free(q);
	return rc;
}

void sky_query_free(sky_query *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n_preds; i++)
		sky__pred_clear(&q->preds[i]);
	free(q->preds);
	free(q->app);
	free(q->viewer);
	free_strings(q->groups, q->n_groups);
	free(q->next_cursor);
	free(q->explain);
	free(q->plan);
	free(q);
}

void sky_query_set_limit(sky_query *q, size_t limit)
{
	q->limit = limit;
}

int sky_query_set_cursor(sky_query *q, const char *cursor)
{
	if (!cursor || !*cursor) {
		q->has_start = 0;
		return 0;
	}
	sky_ixpos x;
	int rc = cursor_decode(cursor, &x);
	if (rc < 0)
		return rc;
	q->start = x;
	q->has_start = 1;
	return 0;
}

int sky_query_set_viewer(sky_query *q, const char *user_id,
			 const char *const *groups, size_t n_groups)
{
	char *viewer = NULL, **g = NULL;
	int rc;
	if (user_id) {
		if ((rc = sky__check_id(user_id, "user id")) < 0)
			return rc;
		for (size_t i = 0; i < n_groups; i++)
			if ((rc = sky__check_id(groups[i], "group id")) < 0)
				return rc;
		if (!(viewer = strdup(user_id)) ||
		    !(g = calloc(n_groups ? n_groups : 1, sizeof(*g)))) {
			free(viewer);
			return sky__error_nomem();
		}
		for (size_t i = 0; i < n_groups; i++)
			if (!(g[i] = strdup(groups[i]))) {
				free_strings(g, i);
				free(viewer);
				return sky__error_nomem();
			}
	} else {
		n_groups = 0;
	}
	free(q->viewer);
	free_strings(q->groups, q->n_groups);
	q->viewer = viewer;
	q->groups = g;
	q->n_groups = n_groups;
	return 0;
}

int sky__query_clone(const sky_query *q, sky_query **out)
{
	const char **texts = calloc(q->n_preds ? q->n_preds : 1,
				    sizeof(*texts));
	if (!texts)
		return sky__error_nomem();
	for (size_t i = 0; i < q->n_preds; i++)
		texts[i] = q->preds[i].text;
	sky_query *c;
	int rc = sky_query_new(&c, q->cache, q->app, texts, q->n_preds);
	free(texts);
	if (rc < 0)
		return rc;
	if (q->viewer &&
	    (rc = sky_query_set_viewer(c, q->viewer,
				       (const char *const *)q->groups,
				       q->n_groups)) < 0) {
		sky_query_free(c);
		return rc;
	}
	*out = c;
	return 0;
}
