/*
 * common.h - what the three benchmark programs (bench_skysync.c,
 * bench_sqlite.c, bench_floor.c) share, so that they measure the same work
 * on the same data and report it the same way: the data set generators,
 * the fixed-seed random sequence of ids, queries and patches, the main and
 * its command line, the timed rounds and their medians, the cold start and
 * heap runs, memory figures, and the one-line JSON result that bench/run
 * collects. A program brings its own round functions (one timed round of
 * a workload) and open-and-answer function; everything around them is here.
 *
 * Every generator is a pure function of its arguments (and of BENCH_SEED),
 * so the three programs, run as separate processes, build byte-identical
 * sessions, documents, patches and outbox records, and look up the same
 * ids in the same order.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* The one application every benchmark session belongs to. */
#define BENCH_APP "app-bench"
/* The seed of every random sequence (ids looked up, items patched, ...). */
#define BENCH_SEED 20240601u

/* The documents data set: sessions with ~1 KB, ~10 KB and ~1 MB data. */
#define BENCH_DOCS_SMALL 1000u
#define BENCH_DOCS_LARGE 4u
#define BENCH_DOCS_MEDIUM 100u
#define BENCH_ITEMS_SMALL 10u	 /* ~1 KB of compact JSON */
#define BENCH_ITEMS_LARGE 11000u /* ~1 MB */
#define BENCH_ITEMS_MEDIUM 105u	 /* ~10 KB */

/* The kinds of document, as bench_doc_sid and friends take them. */
enum { BENCH_DOC_SMALL, BENCH_DOC_LARGE, BENCH_DOC_MEDIUM, BENCH_DOC_KINDS };
unsigned bench_doc_count(int kind);
unsigned bench_doc_items(int kind);

/* Open sessions the enqueue workloads write to (their scratch caches). */
#define BENCH_ENQUEUE_SESSIONS 1000u
/* ingest: sessions per batch (one durable commit each), and the property
 * spread of the sessions (as in a 100k-session data set). */
#define BENCH_INGEST_BATCH 1000u
#define BENCH_INGEST_SPREAD 100000u
/* mixed: live events per durable queued write. */
#define BENCH_MIXED_EVENTS 10u

/* Writes per durable commit in enqueue_batch. */
#define BENCH_ENQUEUE_BATCH 100u

/* Properties of every session: their number and the query predicates. */
#define BENCH_PROPS 7

/* Microseconds since the epoch of the sessions' and events' times. */
#define BENCH_SESSION_EPOCH_US 1672531200000000ll /* 2023-01-01T00:00:00Z */
#define BENCH_AS_OF_US 1704067200000000ll	  /* 2024-01-01T00:00:00Z */

/* ---- growable text ---- */

typedef struct {
	char *data;
	size_t len, cap;
} bench_buf;

#define BENCH_BUF_INIT                                                         \
	{                                                                      \
		NULL, 0, 0                                                     \
	}

void bench_buf_printf(bench_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void bench_buf_append(bench_buf *b, const void *data, size_t len);
void bench_buf_clear(bench_buf *b);
void bench_buf_free(bench_buf *b);

/* ---- failure ---- */

/* Print "PROGRAM: message" to stderr and exit 1 (benchmarks do not limp on). */
void bench_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* malloc that dies instead of returning NULL. */
void *bench_xmalloc(size_t n);
extern const char *bench_prog;

/* ---- time and memory ---- */

double bench_now_us(void);
/* The median of v[0..n) (sorts v). */
double bench_median(double *v, size_t n);
/* Peak resident set of this process image (VmHWM; ru_maxrss), KiB. */
long bench_peak_rss_kb(void);
/* Current resident set (/proc/self/statm), KiB. */
long bench_rss_kb(void);
/* Heap bytes in use (mallinfo2: arena in use + mmapped chunks). */
size_t bench_heap_bytes(void);

/* ---- random ---- */

typedef struct {
	uint64_t s;
} bench_rng;

void bench_rng_init(bench_rng *r, uint64_t seed);
uint64_t bench_rng_next(bench_rng *r);
/* Uniform in [0, n), n > 0. */
uint32_t bench_rng_below(bench_rng *r, uint32_t n);
/* A fixed pseudo-random function of (i, salt): the session attributes. */
uint64_t bench_mix(uint64_t i, uint64_t salt);

/* ---- the sessions data set ---- */

/* Session i of a data set: "s-0000042". */
void bench_session_id(char *buf, size_t cap, unsigned i);
/* createdAt of session i (distinct, increasing with i). */
int64_t bench_session_created_us(unsigned i);

typedef struct {
	const char *key;
	char value[48];
} bench_prop;

/*
 * The properties of session i of a data set of n sessions. `line` has n/10
 * values (each on exactly 10 sessions), `site` n/100 values and `shift` 10,
 * drawn independently, so site=X shift=Y matches about 10 sessions.
 */
void bench_session_props(unsigned i, unsigned n, bench_prop props[BENCH_PROPS]);
/* Property k alone (the key is bench_prop_keys[k]). */
extern const char *const bench_prop_keys[BENCH_PROPS];
void bench_session_prop(unsigned i, unsigned n, int k, char *value, size_t cap);
/*
 * Append the compact JSON text of session i (as the server sends it),
 * with sessionId `sid`, or bench_session_id(i) when sid is NULL.
 */
void bench_session_json(bench_buf *out, unsigned i, unsigned n,
			const char *sid);

/* One predicate key=value of a query. */
typedef struct {
	const char *key;
	char value[48];
} bench_pred;

/* query_100k / query_1m: line=Line-X, exactly 10 matches of n. */
void bench_query_one(bench_rng *r, unsigned n, bench_pred *p);
/*
 * query_two_predicates: site=Plant-X shift=S-Y, ~10 matches; p[0] is the
 * more selective one (~n/100 sessions per site, n/10 per shift).
 */
void bench_query_two(bench_rng *r, unsigned n, bench_pred p[2]);

/* The id of a session or document, as the rounds prepare them. */
typedef struct {
	char sid[16];
} bench_sid;

/*
 * The inputs of one round, drawn before its timed part: n ids of random
 * sessions of a data set of `count` (get), n ids of random documents of
 * a kind (data_*), n random queries for a data set of `sessions` (query_*:
 * query i in p[2i], and p[2i+1] when `two`). Free them with free().
 */
bench_sid *bench_random_sids(bench_rng *r, unsigned n, unsigned count);
bench_sid *bench_random_doc_sids(bench_rng *r, unsigned n, int kind);
bench_pred *bench_random_queries(bench_rng *r, unsigned n, unsigned sessions,
				 int two);

/* ---- the documents data set ---- */

/* Document session i of a kind: "d-00042" (~1 KB), "m-0" (~1 MB) or
 * "k-042" (~10 KB). */
void bench_doc_sid(char *buf, size_t cap, int kind, unsigned i);
/* Whether session i of any data set is open (the outbox refuses writes to
 * closed sessions; bench_session_json makes one in ten closed). */
int bench_session_is_open(unsigned i);
/* The session id of queued write number seq: one of the open documents
 * d-NNNNN (mixed, where writes and events meet on the same documents). */
void bench_write_doc_sid(char *buf, size_t cap, uint64_t seq);
/* Append a session data document of `items` items (~95 bytes each). */
void bench_doc_json(bench_buf *out, unsigned items);

/*
 * The ~100-byte merge patch number `rev` on item `item`: it sets four
 * leaves of the item (one nested) and meta.rev. bench_patch_json appends
 * the patch alone, bench_patch_event the whole session_data_updated event
 * around it (eventId `eid`, createdAt `created_us`).
 */
void bench_patch_json(bench_buf *out, unsigned item, unsigned rev);
void bench_patch_event(bench_buf *out, const char *sid, unsigned item,
		       unsigned rev, const char *eid, int64_t created_us);

/*
 * The events of one patch_* round, drawn before its timed part: n events,
 * each on a random document (~1 KB, or ~1 MB when `large`) and item,
 * numbered on from *seq, with ids "ev-WORKLOAD-NNNNNNNN" (unique across
 * the rounds of a run, or they would be skipped as duplicates). Free them
 * with bench_bufs_free.
 */
bench_buf *bench_patch_events(bench_rng *r, uint64_t *seq, const char *workload,
			      int large, unsigned n);
void bench_bufs_free(bench_buf *bufs, unsigned n);

/*
 * createdAt of event number q of this process: the wall clock when the
 * process first asked, plus q microseconds. Events must not be older than
 * the data they patch (they would be skipped as stale), and the workloads
 * that patch the same documents run one process after the other, so each
 * starts later than the last event of the one before.
 */
int64_t bench_event_created_us(uint64_t q);

/* The leaves a patch sets, for the floor: a path and its JSON text. */
typedef struct {
	char path[40];
	char value[24];
} bench_leaf;
#define BENCH_PATCH_LEAVES 5
void bench_patch_leaves(unsigned item, unsigned rev,
			bench_leaf leaves[BENCH_PATCH_LEAVES]);

/* ---- the outbox workloads ---- */

/* Append the JSON of queued write number `seq` (a data patch, ~200 B). */
void bench_outbox_json(bench_buf *out, uint64_t seq);
/* CRC-32 (IEEE) for the floor's checksummed log records. */
uint32_t bench_crc32(const void *data, size_t len);

/* ---- files ---- */

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" */
void bench_format_time(int64_t us, char buf[32]);
/* mkdir -p (0700). Dies on failure. */
void bench_mkdirs(const char *dir);
/* rm -rf of a benchmark's own directory. */
void bench_rmtree(const char *path);
/*
 * Drop `path` from the page cache (fdatasync, then POSIX_FADV_DONTNEED),
 * so the next open reads it from the disk: a cold start without touching
 * any other file of the machine. Missing files are ignored.
 */
void bench_evict(const char *path);

/* ---- command line and results ---- */

typedef struct {
	const char *cmd;      /* "build" or "run" */
	const char *dir;      /* the data set directory */
	const char *workload; /* for run */
	const char *what;     /* for build: "sessions" or "docs" */
	unsigned sessions;    /* sessions in the data set */
	unsigned n;	      /* operations per timed round */
	unsigned runs;	      /* timed rounds (after one warm-up) */
	unsigned batch;	      /* operations per transaction, where batched */
} bench_args;

/*
 * bench_X build --dir D (--sessions N | --docs)
 * bench_X run --dir D --workload W [--sessions N] [--n N] [--runs R]
 *             [--batch B]
 */
void bench_parse_args(int argc, char **argv, bench_args *a);

/*
 * The main of each of the three programs: parse the command line, then
 * build the data set, or run the workload and print the result object
 * `run` returns as the one line bench/run reads (bench_result_emit).
 * Returns the exit status.
 */
typedef void (*bench_build_fn)(const bench_args *a);
typedef json_t *(*bench_run_fn)(const bench_args *a);
int bench_main(int argc, char **argv, bench_build_fn build, bench_run_fn run);

/*
 * Run `runs` rounds of `round(ctx, n)` after one warm-up round and store
 * what each returned in out[]. A round does n operations and returns the
 * microseconds per operation it timed itself, so that it can prepare its
 * input (event texts, ids) outside the timed part.
 */
typedef double (*bench_round_fn)(void *ctx, unsigned n);
void bench_time_rounds(bench_round_fn round, void *ctx, unsigned n,
		       unsigned runs, double *out);

/* The median of `runs` rounds (after the warm-up): a figure for "detail". */
double bench_median_rounds(bench_round_fn round, void *ctx, unsigned n,
			   unsigned runs);

/*
 * A result object for bench/run: impl, workload, unit, n, runs[], median.
 * bench_result_emit adds the peak RSS and prints it as one line on stdout.
 */
json_t *bench_result(const char *impl, const char *workload, const char *unit,
		     unsigned n, const double *runs, unsigned n_runs);
void bench_result_emit(json_t *result);

/*
 * A whole timed workload: bench_time_rounds with a->n operations and
 * a->runs rounds, returned as bench_result in us/op. Every workload that
 * is one round function goes through here, in each of the programs, so
 * that they time and report it the same way.
 */
json_t *bench_run_rounds(const char *impl, const char *workload,
			 bench_round_fn round, void *ctx, const bench_args *a);

/*
 * mixed: `round` with *mode = 0 (the mix), 1 (its events alone) and 2
 * (its writes alone), one round of each in turn, a->runs times after one
 * warm-up of each, so that drift (a growing outbox, the disk's mood)
 * falls on the three alike. The result is the mix; its detail has
 * events_alone_us, writes_alone_us and their sum parts_us.
 */
json_t *bench_run_mixed(const char *impl, bench_round_fn round, void *ctx,
			int *mode, const bench_args *a);

/* Add results_per_query (hits / queries) to a result, when queries ran. */
void bench_result_hits(json_t *result, unsigned hits, unsigned queries);

/*
 * Open the data set in a->dir and answer one get (or one query, when
 * query_first) in a fresh handle; returns the microseconds from before
 * the open to the answer.
 */
typedef double (*bench_open_fn)(const bench_args *a, int query_first);

/*
 * cold_start: drop a->dir/file from the page cache, then open and answer
 * once cold and once warm. The result has the cold time as its one run,
 * the warm one as detail.warm_us, and "first": "query" or "get".
 */
json_t *bench_cold_start(const char *impl, const bench_args *a,
			 const char *file, bench_open_fn open_and_answer,
			 int query_first);

/*
 * heap: a->runs rounds of `round` (a patch apply) in this process, with no
 * warm-up, sampling the heap in use and the RSS after each. The result
 * carries both series and their growth from the first round to the end.
 */
json_t *bench_heap_rounds(const char *impl, bench_round_fn round, void *ctx,
			  const bench_args *a);

/* Join dir and name into buf (dies when it does not fit). */
void bench_path(char *buf, size_t cap, const char *dir, const char *name);

#endif
