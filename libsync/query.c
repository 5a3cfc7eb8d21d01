/*
 * query.c - property-filter queries (DESIGN.md §6): the query object
 * (query_types.h), running a plan (query_plan.c) page by
 * page with resumable cursors, and the explain output. Predicates are
 * parsed in query_parse.c.
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

#include "base64.h"
#include "error.h"
#include "json.h"
#include "query.h"
#include "query_plan.h"

/*
 * Cursor formats (first byte): 1 is a position of the createdAt order;
 * 2 is the order (q->order), the modifiedAt (8 bytes) and the position.
 */
#define CURSOR_VERSION 1
#define CURSOR_ORDERED 2
#define CURSOR_MAX (SKY_IX_POS_MAX + 10)

/* ---- cursors ---- */

static char *cursor_encode(int order, int64_t key, const sky_ixpos *x)
{
	unsigned char raw[CURSOR_MAX];
	size_t h = order ? 10 : 1, n = x->len + h;
	raw[0] = order ? CURSOR_ORDERED : CURSOR_VERSION;
	if (order) {
		raw[1] = (unsigned char)order;
		sky__put_time(raw + 2, key);
	}
	memcpy(raw + h, x->data, x->len);
	sky_buf out = SKY_BUF_INIT;
	if (sky__b64url_append(&out, raw, n) < 0) {
		sky__buf_free(&out);
		return NULL;
	}
	return sky__buf_detach(&out, NULL);
}

static int cursor_decode(const char *text, sky_ixpos *x, int *order,
			 int64_t *key)
{
	unsigned char raw[CURSOR_MAX + 3];
	size_t len = strlen(text);
	long got = sky__b64url_decode(text, len, 0, raw, sizeof raw);
	if (got < 0)
		goto bad;
	size_t n = (size_t)got;
	size_t h = n && raw[0] == CURSOR_ORDERED ? 10 : 1;
	if (n < h + 9 || (raw[0] != CURSOR_VERSION && h == 1) ||
	    n - h > SKY_IX_POS_MAX || (h == 10 && (raw[1] < 1 || raw[1] > 3)))
		goto bad;
	char sid[SKY_MAX_ID_BYTES + 1];
	memcpy(sid, raw + h + 8, n - h - 8);
	sid[n - h - 8] = '\0';
	if (strlen(sid) != n - h - 8 || sky__check_id(sid, "cursor") < 0)
		goto bad;
	memcpy(x->data, raw + h, n - h);
	x->len = n - h;
	*order = h == 10 ? raw[1] : 0;
	*key = h == 10 ? sky__get_time(raw + 2) : 0;
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
	case STEP_BOUND: return "range";
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
		else if (s->kind == STEP_BOUND)
			snprintf(how, sizeof(how),
				 "index: a range of positions in createdAt "
				 "order");
		else if (s->wide)
			snprintf(how, sizeof(how),
				 "index: %zu %s range%s, sessions "
				 "collected",
				 s->n_ranges, s->bounded ? "key" : "prefix",
				 s->n_ranges == 1 ? "" : "s");
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
		if (s->kind != STEP_FILTER && s->kind != STEP_BOUND) {
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
		    (int)s->kind,     s->pred,	      s->visibility,
		    s->path.wide,     s->check,	      s->path.estimate_exact,
		    s->path.bounded,  s->path.n_keys, s->path.n_ranges,
		    s->path.estimate, s->actual,
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
		sky__ixpos_successor(&target, &q->start);
	if ((rc = sky__plan_build(txn, q, &target, &p)) < 0)
		return rc;
	for (;;) {
		rc = sky__plan_next(&p, &target, &x, &rec);
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
	    !(q->next_cursor = cursor_encode(0, 0, &last)))
		rc = -1;
	if (rc >= 0 && save_plan(q, &p) < 0)
		rc = -1;
done:
	sky__plan_free(&p);
	return rc;
}

/* ---- other orders ---- */

/* A result of a sorted run: its sort key and its position. */
typedef struct {
	int64_t key;
	sky_ixpos pos;
} sorted_row;

static int cmp_sorted(const sorted_row *a, int64_t key, const sky_ixpos *pos)
{
	if (a->key != key)
		return a->key < key ? -1 : 1;
	return sky__ixpos_cmp(&a->pos, pos);
}

static int cmp_rows(const void *a, const void *b)
{
	const sorted_row *y = b;
	return cmp_sorted(a, y->key, &y->pos);
}

/* The modifiedAt of a record (INT64_MIN when it has none: first). */
static int64_t record_modified(const sky_record *rec)
{
	int64_t us = INT64_MIN;
	json_t *s = sky__record_json(rec);
	const char *t = s ? sky__json_str(s, "modifiedAt") : NULL;
	if (!t || sky__parse_time(t, &us) < 0)
		us = INT64_MIN;
	json_decref(s);
	return us;
}

/*
 * Run in a non-default order: the plan yields the whole result set (in
 * createdAt order, narrowed by the index as always); it is sorted by the
 * order's key and the page after the cursor is handed out. The work thus
 * follows the size of the result set, not of the application.
 */
static int run_sorted(MDB_txn *txn, sky_query *q, plan_t *p, sky_result_cb cb,
		      void *payload)
{
	sorted_row *rows = NULL;
	size_t n = 0, cap = 0;
	sky_ixpos target = {.len = 0}, x;
	sky_record rec;
	int rc, desc = q->order & 1, by_mod = q->order >= 2, stopped = 0;
	while ((rc = sky__plan_next(p, &target, &x, &rec)) == 0) {
		if (n == cap) {
			size_t c = cap ? cap * 2 : 64;
			sorted_row *r = realloc(rows, c * sizeof(*r));
			if (!r) {
				rc = sky__error_nomem();
				goto done;
			}
			rows = r;
			cap = c;
		}
		rows[n].key =
		    by_mod ? record_modified(&rec) : sky__ixpos_created(&x);
		rows[n++].pos = x;
	}
	if (rc < 0)
		goto done;
	rc = 0;
	if (n > 1)
		qsort(rows, n, sizeof(*rows), cmp_rows);
	const sorted_row *last = NULL;
	for (size_t k = 0; k < n; k++) {
		const sorted_row *r = &rows[desc ? n - 1 - k : k];
		if (q->has_start) {
			int c =
			    cmp_sorted(r,
				       by_mod ? q->start_key
					      : sky__ixpos_created(&q->start),
				       &q->start);
			if (desc ? c >= 0 : c <= 0)
				continue;
		}
		if (q->limit && p->rows == q->limit) {
			p->more = 1;
			break;
		}
		char sid[SKY_MAX_ID_BYTES + 1];
		sky__ixpos_sid(&r->pos, sid);
		rc = sky__record_get(txn, q->cache, q->app, sid, &rec);
		/* Entries without their record (a damaged index, which check
		 * reports) are no results; with index_only they come here. */
		if (rc == SKY_ENOTFOUND ||
		    (rc == 0 &&
		     rec.created_us != sky__ixpos_created(&r->pos))) {
			rc = 0;
			continue;
		}
		if (rc < 0)
			goto done;
		p->rows++;
		last = r;
		rc = cb(rec.json, rec.json_len,
			(rec.flags & SKY_REC_PENDING) ? SKY_RESULT_PENDING : 0,
			payload);
		if (rc) {
			stopped = 1;
			break;
		}
	}
	if ((p->more || stopped) && last &&
	    !(q->next_cursor = cursor_encode(q->order, last->key, &last->pos)))
		rc = -1;
done:
	free(rows);
	return rc;
}

/* Run in the query's order (see run() for the createdAt order). */
static int run_any(MDB_txn *txn, sky_query *q, sky_result_cb cb, void *payload)
{
	if (q->has_start && q->start_order != q->order)
		return sky__error_input("the cursor was given out for a query "
					"in another order: pass it with the "
					"order it came from");
	if (q->order == 0)
		return run(txn, q, cb, payload);
	plan_t p;
	sky_ixpos from = {.len = 0};
	int rc;
	free(q->next_cursor);
	q->next_cursor = NULL;
	free(q->explain);
	q->explain = NULL;
	q->ran = 0;
	if ((rc = sky__plan_build(txn, q, &from, &p)) < 0)
		return rc;
	/* createdAt descending sorts by the positions alone: records are
	 * read for the rows handed out only. */
	p.index_only = q->order == 1;
	rc = run_sorted(txn, q, &p, cb, payload);
	if (rc >= 0 && save_plan(q, &p) < 0)
		rc = -1;
	sky__plan_free(&p);
	return rc;
}

/* ---- counting ---- */

static int count(MDB_txn *txn, sky_query *q, uint64_t *out)
{
	plan_t p;
	sky_ixpos target = {.len = 0}, x;
	sky_record rec;
	free(q->explain);
	q->explain = NULL;
	q->ran = 0;
	int rc = sky__plan_build(txn, q, &target, &p);
	if (rc < 0)
		return rc;
	const step_t *d = &p.steps[0];
	if (!p.nothing && !p.empty && p.n_steps == 1 && !p.has_lo &&
	    !p.has_hi && !d->path.wide && d->path.n_keys == 1 && !d->check) {
		/* One key answers alone: its count is the answer. */
		p.rows = d->path.estimate;
		p.steps[0].actual = p.rows;
	} else {
		p.index_only = 1;
		while ((rc = sky__plan_next(&p, &target, &x, &rec)) == 0)
			p.rows++;
		if (rc == 1)
			rc = 0;
	}
	*out = p.rows;
	if (rc >= 0 && save_plan(q, &p) < 0)
		rc = -1;
	sky__plan_free(&p);
	return rc;
}

int sky_query_count(sky_query *q, uint64_t *out)
{
	assert(q && out);
	MDB_txn *txn;
	int rc = sky__store_read_begin(&q->cache->st, &txn);
	if (rc < 0)
		return rc;
	rc = count(txn, q, out);
	sky__store_read_end(&q->cache->st, txn);
	return rc;
}

int sky_query_set_order(sky_query *q, sky_query_order by, int descending)
{
	if (by != SKY_ORDER_CREATED_AT && by != SKY_ORDER_MODIFIED_AT)
		return sky__error_input("order: SKY_ORDER_CREATED_AT or "
					"SKY_ORDER_MODIFIED_AT");
	q->order = (by == SKY_ORDER_MODIFIED_AT ? 2 : 0) + (descending != 0);
	return 0;
}

int sky_reader_query(sky_reader *reader, sky_query *q, sky_result_cb cb,
		     void *payload)
{
	assert(reader && q && cb);
	if (reader->cache != q->cache)
		return sky__error_input("the reader and the query belong to "
					"different caches");
	return run_any(reader->txn, q, cb, payload);
}

int sky_query_run(sky_query *q, sky_result_cb cb, void *payload)
{
	assert(q && cb);
	MDB_txn *txn;
	int rc = sky__store_read_begin(&q->cache->st, &txn);
	if (rc < 0)
		return rc;
	rc = run_any(txn, q, cb, payload);
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
	int rc = sky__plan_build(txn, q, &target, &p);
	if (rc < 0)
		return rc;
	while ((rc = sky__plan_next(&p, &target, &x, &rec)) == 0) {
		char sid[SKY_MAX_ID_BYTES + 1];
		sky__ixpos_sid(&x, sid);
		if ((rc = fn(sid, arg)) != 0)
			break;
	}
	sky__plan_free(&p);
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
	int order = 0;
	int64_t key = 0;
	int rc = cursor_decode(cursor, &x, &order, &key);
	if (rc < 0)
		return rc;
	q->start = x;
	q->start_order = order;
	q->start_key = key;
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
	const char **texts =
	    calloc(q->n_preds ? q->n_preds : 1, sizeof(*texts));
	if (!texts)
		return sky__error_nomem();
	for (size_t i = 0; i < q->n_preds; i++)
		texts[i] = q->preds[i].text;
	sky_query *c;
	int rc = sky_query_new(&c, q->cache, q->app, texts, q->n_preds);
	free(texts);
	if (rc < 0)
		return rc;
	if (q->viewer && (rc = sky_query_set_viewer(
			      c, q->viewer, (const char *const *)q->groups,
			      q->n_groups)) < 0) {
		sky_query_free(c);
		return rc;
	}
	*out = c;
	return 0;
}
