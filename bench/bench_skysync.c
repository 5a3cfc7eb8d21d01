/*
 * bench_skysync.c - skysync's column of bench/run: every workload through
 * the public API of libsync (skysync.h), on the data common.c generates,
 * so that the numbers are what an application calling the library gets.
 *
 *   get          sky_reader_session in one reader reused for the round
 *                (borrowed text, no copy); as a detail, sky_session_get,
 *                which takes its own snapshot and copies;
 *   data_*       sky_reader_data_into: the whole 1 KB, 10 KB or 1 MB
 *                document as text, into one buffer reused for the round;
 *                as details, sky_reader_data_copy + sky_free and
 *                sky_reader_data (borrowed, kept by the reader until it
 *                ends);
 *   query_*      sky_query_new + sky_reader_query + sky_query_free per
 *                query (one reader per round), reading every row;
 *   patch_*      session_data_updated events as JSON text through
 *                sky_mirror_event_apply_batch, --batch events per call, in the
 *                default (durable) mode; as a detail, the same with
 *                SKY_DURABILITY_NONE (the work without the flushes);
 *   enqueue_*    data patches queued in the outbox: sky_data_patch, one
 *                durable commit each; enqueue_batch via sky_write_batch;
 *   ingest       a snapshot's worth of sessions with ~1 KB data each
 *                through sky_mirror_session_put_batch, BENCH_INGEST_BATCH per
 *                call, in the default mode (durable per batch);
 *   mixed        durable queued writes (journal mode) between live
 *                events, one write per BENCH_MIXED_EVENTS events, each
 *                event applied alone; and the two measured apart;
 *   cold_start   sky_cache_open of a cache whose file was dropped from the
 *                page cache, and the first answer;
 *   heap         rounds of patch_1kb apply, sampling heap and RSS after
 *                each, to show that a long apply run does not grow.
 *
 * Data sets are built with SKY_DURABILITY_NONE (the build is not measured)
 * and measured with the cache opened as a user opens it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "skysync.h"
#include "skysync_mirror.h"

/* Sessions stored per write transaction while building a data set. */
#define BUILD_BATCH 1000u

typedef struct {
	sky_cache *cache;
	const bench_args *a;
	bench_rng rng;
	uint64_t seq;
	int large; /* patch_1mb */
	int kind;  /* data_*: BENCH_DOC_* */
	int mixed; /* mixed: 0 both, 1 events alone, 2 writes alone */
	int two;   /* query_two_predicates */
	unsigned hits, queries;
	unsigned sink;
} sk_ctx;

static void sk_check(int rc, const char *what)
{
	if (rc < 0)
		bench_die("%s: %s", what, sky_error_last()->message);
}

static void sk_open(sk_ctx *s, const char *dir, sky_durability d)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = d;
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
	sky_mirror_event_item *items =
	    bench_xmalloc(BUILD_BATCH * sizeof(*items));
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
		sk_check(sky_mirror_event_apply_batch(s->cache, items, count),
			 "storing sessions");
		for (unsigned b = 0; b < count; b++) {
			if (items[b].outcome != SKY_MIRROR_APPLIED)
				bench_die(
				    "session %u: %s: %s", i + b,
				    sky_mirror_outcome_name(items[b].outcome),
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
	for (int kind = 0; kind < BENCH_DOC_KINDS; kind++) {
		unsigned count = bench_doc_count(kind);
		bench_buf_clear(&doc);
		bench_doc_json(&doc, bench_doc_items(kind));
		for (unsigned i = 0; i < count; i++) {
			char sid[32];
			bench_doc_sid(sid, sizeof(sid), kind, i);
			bench_buf_clear(&json);
			bench_session_json(&json, i, count, sid);
			sk_check(sky_mirror_session_put(
				     s->cache, json.data, json.len, doc.data,
				     doc.len, BENCH_AS_OF_US),
				 "storing a document");
		}
	}
	bench_buf_free(&json);
	bench_buf_free(&doc);
}

static void build(const bench_args *a)
{
	sk_ctx s;
	memset(&s, 0, sizeof(s));
	sk_open(&s, a->dir, SKY_DURABILITY_NONE);
	if (!strcmp(a->what, "docs"))
		build_docs(&s);
	else
		build_sessions(&s, a->sessions);
	sky_cache_close(s.cache);
}

/* ---- reads ---- */

static double round_get(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	bench_sid *ids = bench_random_sids(&s->rng, n, s->a->sessions);
	sky_reader *r;
	double t0 = bench_now_us();
	sk_check(sky_reader_begin(&r, s->cache), "sky_reader_begin");
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
	bench_sid *ids = bench_random_sids(&s->rng, n, s->a->sessions);
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

/*
 * The whole document, one reader per round, in one of three ways:
 * - into one buffer the round reuses (sky_reader_data_into), which is
 *   how SQLite's column text lives: in memory of the statement's, valid
 *   until its next step, reused from row to row (the figure);
 * - as a copy the caller frees when done with it (sky_reader_data_copy),
 *   a detail: for a 1 MB document a fresh allocation is fresh pages,
 *   which the kernel maps and zeroes on first touch;
 * - borrowed (sky_reader_data), a detail: a small document without a
 *   copy, a large one built and kept by the reader with all the others
 *   of the round until it ends.
 */
enum data_read { DATA_INTO, DATA_COPY, DATA_BORROWED };

static double data_round(sk_ctx *s, unsigned n, enum data_read how)
{
	bench_sid *ids = bench_random_doc_sids(&s->rng, n, s->kind);
	sky_reader *r;
	char *buf = NULL;
	size_t size = 0;
	double t0 = bench_now_us();
	sk_check(sky_reader_begin(&r, s->cache), "sky_reader_begin");
	for (unsigned i = 0; i < n; i++) {
		const char *json = NULL;
		char *copy = NULL;
		size_t len;
		switch (how) {
		case DATA_INTO:
			sk_check(sky_reader_data_into(r, BENCH_APP, ids[i].sid,
						      &buf, &size, &len),
				 "sky_reader_data_into");
			json = buf;
			break;
		case DATA_COPY:
			sk_check(sky_reader_data_copy(r, BENCH_APP, ids[i].sid,
						      &copy, &len),
				 "sky_reader_data_copy");
			json = copy;
			break;
		case DATA_BORROWED:
			sk_check(sky_reader_data(r, BENCH_APP, ids[i].sid,
						 &json, &len),
				 "sky_reader_data");
			break;
		}
		s->sink += (unsigned char)json[0] + (unsigned)len;
		sky_free(copy);
	}
	sky_reader_end(r);
	double t = (bench_now_us() - t0) / n;
	sky_free(buf);
	free(ids);
	return t;
}

static double round_data(void *arg, unsigned n)
{
	return data_round(arg, n, DATA_INTO);
}

static double round_data_copy(void *arg, unsigned n)
{
	return data_round(arg, n, DATA_COPY);
}

static double round_data_borrowed(void *arg, unsigned n)
{
	return data_round(arg, n, DATA_BORROWED);
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

static void query_texts(const bench_pred *p, int two, query_text *qt)
{
	for (int i = 0; i < (two ? 2 : 1); i++)
		snprintf(qt->text[i], sizeof(qt->text[i]), "%s=%s", p[i].key,
			 p[i].value);
}

static double round_query(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	int two = s->two;
	query_text *qt = bench_xmalloc(n * sizeof(*qt));
	bench_pred *preds =
	    bench_random_queries(&s->rng, n, s->a->sessions, two);
	sky_reader *r;
	for (unsigned i = 0; i < n; i++)
		query_texts(&preds[2 * i], two, &qt[i]);
	free(preds);
	double t0 = bench_now_us();
	sk_check(sky_reader_begin(&r, s->cache), "sky_reader_begin");
	for (unsigned i = 0; i < n; i++)
		run_query(s, r, &qt[i], two);
	sky_reader_end(r);
	double t = (bench_now_us() - t0) / n;
	free(qt);
	return t;
}

/* ---- patches ---- */

static double round_patch(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	bench_buf *texts =
	    bench_patch_events(&s->rng, &s->seq, s->a->workload, s->large, n);
	sky_mirror_event_item *items = bench_xmalloc(n * sizeof(*items));
	for (unsigned i = 0; i < n; i++) {
		items[i].json = texts[i].data;
		items[i].len = texts[i].len;
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += s->a->batch) {
		unsigned count = n - i < s->a->batch ? n - i : s->a->batch;
		sk_check(
		    sky_mirror_event_apply_batch(s->cache, items + i, count),
		    "sky_mirror_event_apply_batch");
	}
	double t = (bench_now_us() - t0) / n;
	/* Every event must have done its work, or the time means nothing. */
	for (unsigned i = 0; i < n; i++) {
		if (items[i].outcome != SKY_MIRROR_APPLIED)
			bench_die("event %u: %s %s", i,
				  sky_mirror_outcome_name(items[i].outcome),
				  items[i].error ? items[i].error : "");
		sky_free(items[i].error);
	}
	bench_bufs_free(texts, n);
	free(items);
	return t;
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
		bench_pred p;
		query_text qt;
		bench_query_one(&c.rng, a->sessions, &p);
		query_texts(&p, 0, &qt);
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

/*
 * ---- enqueue_durable, enqueue_batch: the outbox ----
 *
 * Each write is a data patch queued with sky_data_patch (durable: on
 * disk, power-loss safe, when the call returns) or, for enqueue_batch,
 * BENCH_ENQUEUE_BATCH of them per sky_write_batch call. The outbox checks
 * that the session exists and applies the patch to the local view in the
 * same transaction, so the scratch cache holds the application and
 * ENQUEUE_SESSIONS sessions; the writes address them in the same
 * pseudo-random order as the baselines (their session ids modulo it).
 * The figure is for SKY_DURABILITY_JOURNAL (one flush per acknowledged write:
 * the mode for a gateway that owns its cache). As details: the default
 * mode (LMDB's two ordered flushes per commit, any number of writer
 * processes), SKY_DURABILITY_FAST (one flush per commit, a power cut
 * may undo the last writes) and SKY_DURABILITY_NONE (no flush at all: the
 * library's own cost).
 */
#define ENQUEUE_SESSIONS BENCH_ENQUEUE_SESSIONS

static void enqueue_open(sk_ctx *s, const char *dir, sky_durability d)
{
	char path[4096];
	bench_path(path, sizeof(path), dir, "skysync-outbox");
	bench_rmtree(path);
	bench_mkdirs(path);
	sk_open(s, path, SKY_DURABILITY_NONE);
	const char *app = "{\"applicationId\":\"" BENCH_APP "\"}";
	sk_check(sky_mirror_app_put(s->cache, app, strlen(app)),
		 "sky_mirror_app_put");
	/* Open sessions (the outbox refuses writes to closed ones). */
	char t[32];
	bench_format_time(BENCH_AS_OF_US, t);
	for (unsigned i = 0; i < ENQUEUE_SESSIONS; i++) {
		char sid[32], json[256];
		bench_session_id(sid, sizeof(sid), i);
		int len = snprintf(json, sizeof(json),
				   "{\"applicationId\":\"" BENCH_APP
				   "\",\"sessionId\":\"%s\",\"status\":"
				   "\"open\",\"name\":\"outbox %u\","
				   "\"createdAt\":\"%s\"}",
				   sid, i, t);
		sk_check(sky_mirror_session_put(s->cache, json, (size_t)len,
						"{}", 2, BENCH_AS_OF_US),
			 "sky_mirror_session_put");
	}
	sky_cache_close(s->cache);
	sk_open(s, path, d);
}

static double round_enqueue(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	int batched = !strcmp(s->a->workload, "enqueue_batch");
	bench_buf *rec = bench_xmalloc(n * sizeof(*rec));
	char(*sids)[32] = bench_xmalloc(n * sizeof(*sids));
	sky_write *w = bench_xmalloc(BENCH_ENQUEUE_BATCH * sizeof(*w));
	for (unsigned i = 0; i < n; i++) {
		uint64_t q = ++s->seq;
		rec[i] = (bench_buf)BENCH_BUF_INIT;
		bench_patch_json(&rec[i], (unsigned)(q % BENCH_ITEMS_SMALL),
				 (unsigned)q);
		bench_session_id(
		    sids[i], sizeof(sids[i]),
		    (unsigned)(bench_mix(q, 10) % 100000 % ENQUEUE_SESSIONS));
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n;) {
		if (!batched) {
			sk_check(sky_data_patch(s->cache, BENCH_APP, sids[i],
						rec[i].data, rec[i].len),
				 "sky_data_patch");
			i++;
			continue;
		}
		unsigned k =
		    n - i < BENCH_ENQUEUE_BATCH ? n - i : BENCH_ENQUEUE_BATCH;
		for (unsigned j = 0; j < k; j++)
			w[j] = (sky_write){SKY_WRITE_DATA,
					   BENCH_APP,
					   sids[i + j],
					   rec[i + j].data,
					   rec[i + j].len,
					   0,
					   NULL,
					   0,
					   NULL};
		sk_check(sky_write_batch(s->cache, w, k), "sky_write_batch");
		i += k;
	}
	double t = (bench_now_us() - t0) / n;
	for (unsigned i = 0; i < n; i++)
		bench_buf_free(&rec[i]);
	free(rec);
	free(sids);
	free(w);
	return t;
}

static json_t *run_enqueue(sk_ctx *s, const bench_args *a, json_t *detail)
{
	enqueue_open(s, a->dir, SKY_DURABILITY_JOURNAL);
	json_t *res =
	    bench_run_rounds("skysync", a->workload, round_enqueue, s, a);
	sky_cache_close(s->cache);
	enqueue_open(s, a->dir, 0);
	json_object_set_new(
	    detail, "default_mode_us",
	    json_real(bench_median_rounds(round_enqueue, s, a->n, a->runs)));
	sky_cache_close(s->cache);
	enqueue_open(s, a->dir, SKY_DURABILITY_FAST);
	json_object_set_new(
	    detail, "fast_writes_us",
	    json_real(bench_median_rounds(round_enqueue, s, a->n, a->runs)));
	sky_cache_close(s->cache);
	enqueue_open(s, a->dir, SKY_DURABILITY_NONE);
	json_object_set_new(
	    detail, "nosync_us",
	    json_real(bench_median_rounds(round_enqueue, s, a->n, a->runs)));
	sky_cache_close(s->cache);
	char path[4096];
	bench_path(path, sizeof(path), a->dir, "skysync-outbox");
	bench_rmtree(path);
	return res;
}

/*
 * ---- ingest: a snapshot's sessions, with their data ----
 *
 * What the sync engine's snapshot does with the sessions it reads: each
 * session with its ~1 KB data, BENCH_INGEST_BATCH per
 * sky_mirror_session_put_batch (one write transaction), durable when the call
 * returns (the default mode). The rounds go on numbering sessions, so
 * every round adds new ones to the same cache.
 */
static double round_ingest(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	bench_buf doc = BENCH_BUF_INIT;
	bench_buf *texts = bench_xmalloc(n * sizeof(*texts));
	sky_mirror_session_item *items = bench_xmalloc(n * sizeof(*items));
	bench_doc_json(&doc, BENCH_ITEMS_SMALL);
	for (unsigned i = 0; i < n; i++) {
		texts[i] = (bench_buf)BENCH_BUF_INIT;
		bench_session_json(&texts[i], (unsigned)s->seq++,
				   BENCH_INGEST_SPREAD, NULL);
		memset(&items[i], 0, sizeof(items[i]));
		items[i].session_json = texts[i].data;
		items[i].len = texts[i].len;
		items[i].data_json = doc.data;
		items[i].data_len = doc.len;
		items[i].as_of_us = BENCH_AS_OF_US;
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += BENCH_INGEST_BATCH) {
		unsigned k =
		    n - i < BENCH_INGEST_BATCH ? n - i : BENCH_INGEST_BATCH;
		sk_check(sky_mirror_session_put_batch(s->cache, items + i, k),
			 "sky_mirror_session_put_batch");
	}
	double t = (bench_now_us() - t0) / n;
	for (unsigned i = 0; i < n; i++) {
		if (items[i].result != 0)
			bench_die("session %u rejected: %s", i,
				  items[i].error ? items[i].error : "");
		bench_buf_free(&texts[i]);
	}
	free(texts);
	free(items);
	bench_buf_free(&doc);
	return t;
}

static json_t *run_ingest(sk_ctx *s, const bench_args *a)
{
	char path[4096];
	bench_path(path, sizeof(path), a->dir, "skysync-ingest");
	bench_rmtree(path);
	bench_mkdirs(path);
	sk_open(s, path, 0);
	json_t *res =
	    bench_run_rounds("skysync", a->workload, round_ingest, s, a);
	sky_cache_close(s->cache);
	bench_rmtree(path);
	return res;
}

/*
 * ---- mixed: durable queued writes among live events ----
 *
 * A gateway's day: live events arrive one by one (sky_mirror_event_apply) and
 * now and then the application queues a write (sky_data_patch, durable
 * when it returns), one per BENCH_MIXED_EVENTS
 * events, on the same ~1 KB documents. The cache is in journal mode. The
 * figure is per unit of one write and its events; s->mixed = 1 or 2 runs
 * the events or the writes alone, so that the mix can be compared with
 * the sum of its parts.
 */
static double round_mixed(void *arg, unsigned n)
{
	sk_ctx *s = arg;
	unsigned ne = n * BENCH_MIXED_EVENTS;
	bench_buf *texts = bench_patch_events(&s->rng, &s->seq, "mixed", 0, ne);
	sky_mirror_event_item *items = bench_xmalloc(ne * sizeof(*items));
	bench_buf *rec = bench_xmalloc(n * sizeof(*rec));
	char(*sids)[32] = bench_xmalloc(n * sizeof(*sids));
	for (unsigned i = 0; i < ne; i++) {
		memset(&items[i], 0, sizeof(items[i]));
		items[i].json = texts[i].data;
		items[i].len = texts[i].len;
	}
	for (unsigned i = 0; i < n; i++) {
		uint64_t q = s->seq + i;
		rec[i] = (bench_buf)BENCH_BUF_INIT;
		bench_patch_json(&rec[i], (unsigned)(q % BENCH_ITEMS_SMALL),
				 (unsigned)q);
		bench_write_doc_sid(sids[i], sizeof(sids[i]), q);
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i++) {
		if (s->mixed != 2)
			for (unsigned j = 0; j < BENCH_MIXED_EVENTS; j++)
				sk_check(
				    sky_mirror_event_apply(
					s->cache,
					items[i * BENCH_MIXED_EVENTS + j].json,
					items[i * BENCH_MIXED_EVENTS + j].len,
					&items[i * BENCH_MIXED_EVENTS + j]
					     .outcome),
				    "sky_mirror_event_apply");
		if (s->mixed != 1)
			sk_check(sky_data_patch(s->cache, BENCH_APP, sids[i],
						rec[i].data, rec[i].len),
				 "sky_data_patch");
	}
	double t = (bench_now_us() - t0) / n;
	for (unsigned i = 0; i < ne && s->mixed != 2; i++) {
		if (items[i].outcome != SKY_MIRROR_APPLIED)
			bench_die("event %u: %s %s", i,
				  sky_mirror_outcome_name(items[i].outcome),
				  items[i].error ? items[i].error : "");
		sky_free(items[i].error);
	}
	for (unsigned i = 0; i < n; i++)
		bench_buf_free(&rec[i]);
	bench_bufs_free(texts, ne);
	free(items);
	free(rec);
	free(sids);
	return t;
}

static json_t *run_mixed(sk_ctx *s, const bench_args *a)
{
	sk_open(s, a->dir, SKY_DURABILITY_JOURNAL);
	json_t *res = bench_run_mixed("skysync", round_mixed, s, &s->mixed, a);
	sky_cache_close(s->cache);
	return res;
}

/* ---- main ---- */

static json_t *run(const bench_args *a)
{
	sk_ctx s;
	memset(&s, 0, sizeof(s));
	s.a = a;
	bench_rng_init(&s.rng, BENCH_SEED);
	const char *w = a->workload;
	json_t *res = NULL, *detail = json_object();
	if (!strcmp(w, "capabilities")) {
		/* What bench/run may ask of this libsync. */
		res = json_object();
		json_object_set_new(res, "impl", json_string("skysync"));
		json_object_set_new(res, "query", json_true());
		json_object_set_new(res, "outbox", json_true());
	} else if (!strcmp(w, "enqueue_durable") ||
		   !strcmp(w, "enqueue_batch")) {
		res = run_enqueue(&s, a, detail);
	} else if (!strncmp(w, "query_", 6)) {
		s.two = !strcmp(w, "query_two_predicates");
		sk_open(&s, a->dir, 0);
		res = bench_run_rounds("skysync", w, round_query, &s, a);
		bench_result_hits(res, s.hits, s.queries);
		sky_cache_close(s.cache);
	} else if (!strcmp(w, "cold_start") || !strcmp(w, "cold_start_query")) {
		res =
		    bench_cold_start("skysync", a, "data.mdb", open_and_answer,
				     !strcmp(w, "cold_start_query"));
	} else if (!strcmp(w, "get")) {
		sk_open(&s, a->dir, 0);
		res = bench_run_rounds("skysync", w, round_get, &s, a);
		json_object_set_new(detail, "sky_session_get_us",
				    json_real(bench_median_rounds(
					round_session_get, &s, a->n, a->runs)));
		sky_cache_close(s.cache);
	} else if (!strcmp(w, "ingest")) {
		res = run_ingest(&s, a);
	} else if (!strcmp(w, "mixed")) {
		res = run_mixed(&s, a);
	} else if (!strncmp(w, "data_", 5)) {
		s.kind = !strcmp(w, "data_1mb")	   ? BENCH_DOC_LARGE
			 : !strcmp(w, "data_10kb") ? BENCH_DOC_MEDIUM
						   : BENCH_DOC_SMALL;
		sk_open(&s, a->dir, 0);
		res = bench_run_rounds("skysync", w, round_data, &s, a);
		json_object_set_new(detail, "copy_us",
				    json_real(bench_median_rounds(
					round_data_copy, &s, a->n, a->runs)));
		json_object_set_new(
		    detail, "borrowed_us",
		    json_real(bench_median_rounds(round_data_borrowed, &s, a->n,
						  a->runs)));
		sky_cache_close(s.cache);
	} else if (!strcmp(w, "patch_1kb") || !strcmp(w, "patch_1mb")) {
		s.large = !strcmp(w, "patch_1mb");
		/* Journal mode: events (server state) become durable at
		 * the next checkpoint, within a second, and a power cut
		 * never corrupts -- SQLite's synchronous=NORMAL class. */
		sk_open(&s, a->dir, SKY_DURABILITY_JOURNAL);
		res = bench_run_rounds("skysync", w, round_patch, &s, a);
		sky_cache_close(s.cache);
		/* The default mode: durable when each batch returns. */
		sk_open(&s, a->dir, 0);
		json_object_set_new(detail, "default_mode_us",
				    json_real(bench_median_rounds(
					round_patch, &s, a->n, a->runs)));
		sky_cache_close(s.cache);
		/* The same without waiting for the disk: what the library
		 * and LMDB cost, apart from the flushes. */
		sk_open(&s, a->dir, SKY_DURABILITY_NONE);
		json_object_set_new(detail, "nosync_us",
				    json_real(bench_median_rounds(
					round_patch, &s, a->n, a->runs)));
		sky_cache_close(s.cache);
		json_object_set_new(detail, "batch", json_integer(a->batch));
	} else if (!strcmp(w, "heap")) {
		sk_open(&s, a->dir, 0);
		res = bench_heap_rounds("skysync", round_patch, &s, a);
		sky_cache_close(s.cache);
	} else {
		bench_die("unknown workload '%s'", w);
	}
	if (json_object_size(detail))
		json_object_set(res, "detail", detail);
	json_decref(detail);
	return res;
}

int main(int argc, char **argv)
{
	return bench_main(argc, argv, build, run);
}
