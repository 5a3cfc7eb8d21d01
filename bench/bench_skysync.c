/*
 * bench_skysync.c - skysync's column of bench/run: every workload through
 * the public API of libsync (skysync.h), on the data common.c generates,
 * so that the numbers are what an application calling the library gets.
 *
 *   get          sky_reader_session in one reader reused for the round
 *                (borrowed text, no copy); as a detail, sky_session_get,
 *                which takes its own snapshot and copies;
 *   data_1kb     sky_reader_data: the whole 1 KB document as text;
 *   query_*      sky_query_new + sky_reader_query + sky_query_free per
 *                query (one reader per round), reading every row;
 *   patch_*      session_data_updated events as JSON text through
 *                sky_event_apply_batch, --batch events per call, in the
 *                default (durable) mode; as a detail, the same with
 *                SKY_CACHE_NOSYNC (the work without the flushes);
 *   enqueue_*    the outbox of issue 6, once libsync has it;
 *   cold_start   sky_cache_open of a cache whose file was dropped from the
 *                page cache, and the first answer;
 *   heap         rounds of patch_1kb apply, sampling heap and RSS after
 *                each, to show that a long apply run does not grow.
 *
 * Data sets are built with SKY_CACHE_NOSYNC (the build is not measured)
 * and measured with the cache opened as a user opens it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "skysync.h"

/* Sessions stored per write transaction while building a data set. */
#define BUILD_BATCH 1000u

typedef struct {
	sky_cache *cache;
	const bench_args *a;
	bench_rng rng;
	uint64_t seq;
	int large;
	unsigned hits, queries;
	unsigned sink;
} sk_ctx;

static void sk_check(int rc, const char *what)
{
	if (rc < 0)
		bench_die("%s: %s", what, sky_error_last()->message);
}

static void sk_open(sk_ctx *s, const char *dir, unsigned flags)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = flags;
	/* The 1 MB documents are stored whole when building, over the
	 * default 1 MiB limit of one input; a higher limit costs nothing
	 * when the inputs are small. */
	o.max_event_bytes = 16u << 20;
	sk_check(sky_cache_open(&s->cache, dir, &o), dir);
}

/* ---- building ---- */

/*
 * Sessions arrive as session_created events, BUILD_BATCH per write
 * transaction: the way a snapshot of many sessions is cheapest to store.
 */
static void build_sessions(sk_ctx *s, unsigned n)
{
	sky_event_item *items = bench_xmalloc(BUILD_BATCH * sizeof(*items));
	bench_buf *texts = bench_xmalloc(BUILD_BATCH * sizeof(*texts));
	char t[32];
	bench_format_time(BENCH_AS_OF_US, t);
	for (unsigned b = 0; b < BUILD_BATCH; b++)
		texts[b] = (bench_buf)BENCH_BUF_INIT;
	for (unsigned i = 0; i < n; i += BUILD_BATCH) {
		unsigned count = n - i < BUILD_BATCH ? n - i : BUILD_BATCH;
		for (unsigned b = 0; b < count; b++) {
			char sid[32];
			bench_session_id(sid, sizeof(sid), i + b);
			bench_buf_clear(&texts[b]);
			bench_buf_printf(&texts[b],
					 "{\"applicationId\":\"" BENCH_APP
					 "\",\"sessionId\":\"%s\","
					 "\"eventId\":\"build-%u\","
					 "\"createdAt\":\"%s\",\"version\":1,"
					 "\"eventType\":\"session_created\","
					 "\"session\":",
					 sid, i + b, t);
			bench_session_json(&texts[b], i + b, n, sid);
			bench_buf_printf(&texts[b], "}");
			items[b].json = texts[b].data;
			items[b].len = texts[b].len;
		}
		sk_check(sky_event_apply_batch(s->cache, items, count),
			 "storing sessions");
		for (unsigned b = 0; b < count; b++) {
			if (items[b].outcome != SKY_EVENT_APPLIED)
				bench_die(
				    "session %u: %s: %s", i + b,
				    sky_event_outcome_name(items[b].outcome),
				    items[b].error ? items[b].error : "");
			sky_free(items[b].error);
		}
	}
	for (unsigned b = 0; b < BUILD_BATCH; b++)
		bench_buf_free(&texts[b]);
	free(texts);
	free(items);
}

static void build_docs(sk_ctx *s)
{
	bench_buf json = BENCH_BUF_INIT, doc = BENCH_BUF_INIT;
	for (int large = 0; large < 2; large++) {
		unsigned count = large ? BENCH_DOCS_LARGE : BENCH_DOCS_SMALL;
		bench_buf_clear(&doc);
		bench_doc_json(&doc,
			       large ? BENCH_ITEMS_LARGE : BENCH_ITEMS_SMALL);
		for (unsigned i = 0; i < count; i++) {
			char sid[32];
			bench_doc_sid(sid, sizeof(sid), large, i);
			bench_buf_clear(&json);
			bench_session_json(&json, i, count, sid);
			sk_check(sky_session_put(s->cache, json.data, json.len,
						 doc.data, doc.len,
						 BENCH_AS_OF_US),
				 "storing a document");
		}
	}
	bench_buf_free(&json);
	bench_buf_free(&doc);
}

static void build(sk_ctx *s, const bench_args *a)
{
	sk_open(s, a->dir, SKY_CACHE_NOSYNC);
	if (!strcmp(a->what, "docs"))
		build_docs(s);
	else
		build_sessions(s, a->sessions);
	sky_cache_close(s->cache);
}

/* ---- reads ---- */

typedef struct {
	char sid[16];
} sid_t;

static double round_get(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	sid_t *ids = bench_xmalloc(n * sizeof(*ids));
	sky_reader *r;
	for (unsigned i = 0; i < n; i++)
		bench_session_id(ids[i].sid, sizeof(ids[i].sid),
				 bench_rng_below(&s->rng, s->a->sessions));
	double t0 = bench_now_us();
	sk_check(sky_reader_begin(s->cache, &r), "sky_reader_begin");
	for (unsigned i = 0; i < n; i++) {
		const char *json;
		size_t len;
		sk_check(
		    sky_reader_session(r, BENCH_APP, ids[i].sid, &json, &len),
		    "sky_reader_session");
		s->sink += (unsigned char)json[0] + (unsigned)len;
	}
	sky_reader_end(r);
	double t = (bench_now_us() - t0) / n;
	free(ids);
	return t;
}

/* The convenience form: its own snapshot and a copy per call. */
static double round_session_get(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	sid_t *ids = bench_xmalloc(n * sizeof(*ids));
	for (unsigned i = 0; i < n; i++)
		bench_session_id(ids[i].sid, sizeof(ids[i].sid),
				 bench_rng_below(&s->rng, s->a->sessions));
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i++) {
		char *json;
		size_t len;
		sk_check(sky_session_get(s->cache, BENCH_APP, ids[i].sid, &json,
					 &len),
			 "sky_session_get");
		s->sink += (unsigned char)json[0] + (unsigned)len;
		sky_free(json);
	}
	double t = (bench_now_us() - t0) / n;
	free(ids);
	return t;
}

static double round_data(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	sid_t *ids = bench_xmalloc(n * sizeof(*ids));
	sky_reader *r;
	for (unsigned i = 0; i < n; i++)
		bench_doc_sid(ids[i].sid, sizeof(ids[i].sid), 0,
			      bench_rng_below(&s->rng, BENCH_DOCS_SMALL));
	double t0 = bench_now_us();
	sk_check(sky_reader_begin(s->cache, &r), "sky_reader_begin");
	for (unsigned i = 0; i < n; i++) {
		char *json;
		size_t len;
		sk_check(sky_reader_data(r, BENCH_APP, ids[i].sid, &json, &len),
			 "sky_reader_data");
		s->sink += (unsigned char)json[0] + (unsigned)len;
		sky_free(json);
	}
	sky_reader_end(r);
	double t = (bench_now_us() - t0) / n;
	free(ids);
	return t;
}

/* ---- queries ---- */

/* One predicate as text: "line=Line-42". */
typedef struct {
	char text[2][64];
} query_text;

static int count_row(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	sk_ctx *s = payload;
	(void)flags;
	s->sink += (unsigned char)json[0] + (unsigned)len;
	s->hits++;
	return 0;
}

/*
 * One query as an application runs it: parse the predicates, run in the
 * snapshot, read every row, free. SQLite's side binds values to a
 * statement prepared once, which is its cheapest equivalent.
 */
static void run_query(sk_ctx *s, sky_reader *r, const query_text *qt, int two)
{
	const char *preds[2] = {qt->text[0], qt->text[1]};
	sky_query *q;
	sk_check(sky_query_new(&q, s->cache, BENCH_APP, preds, two ? 2 : 1),
		 "sky_query_new");
	if (r)
		sk_check(sky_reader_query(r, q, count_row, s),
			 "sky_reader_query");
	else
		sk_check(sky_query_run(q, count_row, s), "sky_query_run");
	sky_query_free(q);
	s->queries++;
}

static void query_texts(sk_ctx *s, unsigned sessions, int two, query_text *qt)
{
	bench_pred p[2];
	if (two)
		bench_query_two(&s->rng, sessions, p);
	else
		bench_query_one(&s->rng, sessions, p);
	for (int i = 0; i < (two ? 2 : 1); i++)
		snprintf(qt->text[i], sizeof(qt->text[i]), "%s=%s", p[i].key,
			 p[i].value);
}

static double round_query(sk_ctx *s, unsigned n, int two)
{
	query_text *qt = bench_xmalloc(n * sizeof(*qt));
	sky_reader *r;
	for (unsigned i = 0; i < n; i++)
		query_texts(s, s->a->sessions, two, &qt[i]);
	double t0 = bench_now_us();
	sk_check(sky_reader_begin(s->cache, &r), "sky_reader_begin");
	for (unsigned i = 0; i < n; i++)
		run_query(s, r, &qt[i], two);
	sky_reader_end(r);
	double t = (bench_now_us() - t0) / n;
	free(qt);
	return t;
}

static double round_query_one(void *arg, unsigned n)
{
	return round_query(arg, n, 0);
}

static double round_query_two(void *arg, unsigned n)
{
	return round_query(arg, n, 1);
}

/* ---- patches ---- */

static double round_patch(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	bench_buf *texts = bench_xmalloc(n * sizeof(*texts));
	sky_event_item *items = bench_xmalloc(n * sizeof(*items));
	unsigned docs = s->large ? BENCH_DOCS_LARGE : BENCH_DOCS_SMALL;
	unsigned n_items = s->large ? BENCH_ITEMS_LARGE : BENCH_ITEMS_SMALL;
	for (unsigned i = 0; i < n; i++) {
		char sid[32], eid[48];
		unsigned d = bench_rng_below(&s->rng, docs);
		unsigned item = bench_rng_below(&s->rng, n_items);
		uint64_t q = ++s->seq;
		bench_doc_sid(sid, sizeof(sid), s->large, d);
		snprintf(eid, sizeof(eid), "ev-%s-%08llu", s->a->workload,
			 (unsigned long long)q);
		texts[i] = (bench_buf)BENCH_BUF_INIT;
		bench_patch_event(&texts[i], sid, item, (unsigned)q, eid,
				  bench_event_created_us(q));
		items[i].json = texts[i].data;
		items[i].len = texts[i].len;
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += s->a->batch) {
		unsigned count = n - i < s->a->batch ? n - i : s->a->batch;
		sk_check(sky_event_apply_batch(s->cache, items + i, count),
			 "sky_event_apply_batch");
	}
	double t = (bench_now_us() - t0) / n;
	/* Every event must have done its work, or the time means nothing. */
	for (unsigned i = 0; i < n; i++) {
		if (items[i].outcome != SKY_EVENT_APPLIED)
			bench_die("event %u: %s %s", i,
				  sky_event_outcome_name(items[i].outcome),
				  items[i].error ? items[i].error : "");
		sky_free(items[i].error);
		bench_buf_free(&texts[i]);
	}
	free(texts);
	free(items);
	return t;
}

static double median_rounds(bench_round_fn fn, sk_ctx *s, unsigned n,
			    unsigned runs)
{
	double *v = bench_xmalloc(runs * sizeof(double));
	bench_time_rounds(fn, s, n, runs, v);
	double m = bench_median(v, runs);
	free(v);
	return m;
}

/* ---- cold start ---- */

static double open_and_answer(const bench_args *a, int query_first)
{
	sk_ctx c;
	memset(&c, 0, sizeof(c));
	c.a = a;
	bench_rng_init(&c.rng, BENCH_SEED);
	double t0 = bench_now_us();
	sk_open(&c, a->dir, 0);
	if (query_first) {
		query_text qt;
		query_texts(&c, a->sessions, 0, &qt);
		run_query(&c, NULL, &qt, 0);
	} else {
		char sid[32], *json;
		size_t len;
		bench_session_id(sid, sizeof(sid),
				 bench_rng_below(&c.rng, a->sessions));
		sk_check(sky_session_get(c.cache, BENCH_APP, sid, &json, &len),
			 "sky_session_get");
		sky_free(json);
	}
	double t = bench_now_us() - t0;
	sky_cache_close(c.cache);
	return t;
}

static json_t *run_cold_start(const bench_args *a, int query_first)
{
	char path[4096];
	bench_path(path, sizeof(path), a->dir, "data.mdb");
	bench_evict(path);
	double cold = open_and_answer(a, query_first);
	double warm = open_and_answer(a, query_first);
	json_t *res =
	    bench_result("skysync", "cold_start", "us/op", 1, &cold, 1);
	json_t *detail = json_object();
	json_object_set_new(detail, "warm_us", json_real(warm));
	json_object_set_new(res, "detail", detail);
	json_object_set_new(res, "first",
			    json_string(query_first ? "query" : "get"));
	return res;
}

/* ---- heap growth over a long apply run ---- */

static json_t *run_heap(sk_ctx *s, const bench_args *a)
{
	json_t *heap = json_array(), *rss = json_array();
	double *runs = bench_xmalloc(a->runs * sizeof(double));
	size_t first_heap = 0;
	long first_rss = 0;
	for (unsigned r = 0; r < a->runs; r++) {
		runs[r] = round_patch(s, a->n);
		size_t h = bench_heap_bytes();
		long kb = bench_rss_kb();
		if (r == 0) {
			first_heap = h;
			first_rss = kb;
		}
		json_array_append_new(heap, json_integer((json_int_t)h));
		json_array_append_new(rss, json_integer(kb));
	}
	json_t *res =
	    bench_result("skysync", "heap", "us/op", a->n, runs, a->runs);
	json_object_set_new(res, "heap_bytes", heap);
	json_object_set_new(res, "rss_kb", rss);
	json_object_set_new(res, "heap_growth_bytes",
			    json_integer((json_int_t)bench_heap_bytes() -
					 (json_int_t)first_heap));
	json_object_set_new(res, "rss_growth_kb",
			    json_integer(bench_rss_kb() - first_rss));
	free(runs);
	return res;
}

/* A result for a workload libsync cannot run yet. */
static json_t *not_available(const char *workload, const char *why)
{
	json_t *res = json_object();
	json_object_set_new(res, "impl", json_string("skysync"));
	json_object_set_new(res, "workload", json_string(workload));
	json_object_set_new(res, "available", json_false());
	json_object_set_new(res, "note", json_string(why));
	return res;
}

/* ---- main ---- */

int main(int argc, char **argv)
{
	bench_args a;
	sk_ctx s;
	bench_parse_args(argc, argv, &a);
	memset(&s, 0, sizeof(s));
	s.a = &a;
	bench_rng_init(&s.rng, BENCH_SEED);

	if (!strcmp(a.cmd, "build")) {
		build(&s, &a);
		return 0;
	}
	const char *w = a.workload;
	json_t *res = NULL, *detail = json_object();
	double *runs = bench_xmalloc(a.runs * sizeof(double));
	if (!strcmp(w, "capabilities")) {
		/* What bench/run may ask of this libsync. */
		res = json_object();
		json_object_set_new(res, "impl", json_string("skysync"));
		json_object_set_new(res, "query", json_true());
		json_object_set_new(res, "outbox", json_false());
	} else if (!strcmp(w, "enqueue_durable") ||
		   !strcmp(w, "enqueue_batch")) {
		res = not_available(w, "the outbox (issue 6) is not in libsync "
				       "yet");
	} else if (!strncmp(w, "query_", 6)) {
		int two = !strcmp(w, "query_two_predicates");
		sk_open(&s, a.dir, 0);
		bench_time_rounds(two ? round_query_two : round_query_one, &s,
				  a.n, a.runs, runs);
		res = bench_result("skysync", w, "us/op", a.n, runs, a.runs);
		json_object_set_new(res, "results_per_query",
				    json_real((double)s.hits / s.queries));
		sky_cache_close(s.cache);
	} else if (!strcmp(w, "cold_start") || !strcmp(w, "cold_start_query")) {
		res = run_cold_start(&a, !strcmp(w, "cold_start_query"));
	} else if (!strcmp(w, "get")) {
		sk_open(&s, a.dir, 0);
		bench_time_rounds(round_get, &s, a.n, a.runs, runs);
		res = bench_result("skysync", w, "us/op", a.n, runs, a.runs);
		json_object_set_new(detail, "sky_session_get_us",
				    json_real(median_rounds(round_session_get,
							    &s, a.n, a.runs)));
		sky_cache_close(s.cache);
	} else if (!strcmp(w, "data_1kb")) {
		sk_open(&s, a.dir, 0);
		bench_time_rounds(round_data, &s, a.n, a.runs, runs);
		res = bench_result("skysync", w, "us/op", a.n, runs, a.runs);
		sky_cache_close(s.cache);
	} else if (!strcmp(w, "patch_1kb") || !strcmp(w, "patch_1mb")) {
		s.large = !strcmp(w, "patch_1mb");
		sk_open(&s, a.dir, 0);
		bench_time_rounds(round_patch, &s, a.n, a.runs, runs);
		res = bench_result("skysync", w, "us/op", a.n, runs, a.runs);
		sky_cache_close(s.cache);
		/* The same without waiting for the disk: what the library
		 * and LMDB cost, apart from the flushes. */
		sk_open(&s, a.dir, SKY_CACHE_NOSYNC);
		json_object_set_new(
		    detail, "nosync_us",
		    json_real(median_rounds(round_patch, &s, a.n, a.runs)));
		sky_cache_close(s.cache);
		json_object_set_new(detail, "batch", json_integer(a.batch));
	} else if (!strcmp(w, "heap")) {
		sk_open(&s, a.dir, 0);
		res = run_heap(&s, &a);
		sky_cache_close(s.cache);
	} else {
		bench_die("unknown workload '%s'", w);
	}
	if (json_object_size(detail))
		json_object_set(res, "detail", detail);
	json_decref(detail);
	free(runs);
	bench_result_emit(res);
	return 0;
}
