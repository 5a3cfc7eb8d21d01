/*
 * bench_query.c - the cost of a local query as the cache grows (issue 3):
 * an equality query returning 10 sessions, and a two-predicate query
 * returning about 10, on caches of 10k, 100k and 1M sessions (10k and
 * 100k with --quick). The sessions, predicates and random sequence are
 * those of bench/common.c, so the numbers line up with bench/run.
 *
 *   bench/bench_query [--quick] [--sizes N,N,...] [--queries N]
 *                     [--tmpdir DIR] [--keep]
 *
 * Each cache is built in DIR (default $TMPDIR or /tmp) with
 * sky_mirror_event_apply_batch, 10000 session_created events per transaction,
 * without fsync. Each query is timed alone, as an application runs it:
 * sky_query_new + sky_query_run (its own snapshot, every row read) +
 * sky_query_free; the table gives the median microseconds per query, the
 * rows returned, and the plan's driver (its estimated and examined
 * candidates). The equality query should stay nearly flat from 10k to
 * 1M: its cost follows the result, not the cache. The two-predicate
 * query intersects site (n/100 sessions) with shift (n/10): it follows
 * the smaller set, so it grows with n/100. The SQLite baseline is
 * bench/run's (bench_sqlite.c).
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "skysync.h"
#include "skysync_mirror.h"

#define BUILD_BATCH 10000u

typedef struct {
	unsigned sessions;
	double eq_us, two_us;	  /* first pass over the queries */
	double eq_warm, two_warm; /* the same queries again */
	double eq_rows, two_rows;
	long long eq_drive_est, eq_drive_act, two_drive_est, two_drive_act;
	double build_s;
} result_t;

static void check(int rc, const char *what)
{
	if (rc < 0)
		bench_die("%s: %s", what, sky_error_last()->message);
}

static void build(sky_cache *c, unsigned n)
{
	bench_buf ev = BENCH_BUF_INIT, session = BENCH_BUF_INIT;
	sky_mirror_event_item *items =
	    bench_xmalloc(BUILD_BATCH * sizeof(*items));
	size_t *offs = bench_xmalloc(BUILD_BATCH * sizeof(*offs));
	char created[32];
	bench_format_time(BENCH_AS_OF_US, created);
	for (unsigned start = 0; start < n; start += BUILD_BATCH) {
		unsigned count =
		    n - start < BUILD_BATCH ? n - start : BUILD_BATCH;
		bench_buf_clear(&ev);
		for (unsigned k = 0; k < count; k++) {
			unsigned i = start + k;
			char sid[32];
			bench_session_id(sid, sizeof(sid), i);
			bench_buf_clear(&session);
			bench_session_json(&session, i, n, sid);
			offs[k] = ev.len;
			bench_buf_printf(&ev,
					 "{\"applicationId\":\"" BENCH_APP "\","
					 "\"sessionId\":\"%s\",\"eventId\":"
					 "\"build-%u\",\"createdAt\":\"%s\","
					 "\"eventType\":\"session_created\","
					 "\"session\":%.*s}",
					 sid, i, created, (int)session.len,
					 session.data);
		}
		/* Items point into ev, which no longer moves. */
		for (unsigned k = 0; k < count; k++) {
			size_t end = k + 1 < count ? offs[k + 1] : ev.len;
			items[k].json = ev.data + offs[k];
			items[k].len = end - offs[k];
		}
		check(sky_mirror_event_apply_batch(c, items, count),
		      "building");
		for (unsigned k = 0; k < count; k++) {
			if (items[k].outcome != SKY_MIRROR_APPLIED)
				bench_die("event %u: %s", start + k,
					  items[k].error ? items[k].error
							 : "not applied");
			sky_free(items[k].error);
		}
	}
	free(items);
	free(offs);
	bench_buf_free(&ev);
	bench_buf_free(&session);
}

static int count_row(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	(void)json;
	(void)len;
	(void)flags;
	++*(unsigned long *)payload;
	return 0;
}

/* The driver step of the last run: estimated and actual candidates. */
static void driver_counts(sky_query *q, long long *est, long long *act)
{
	json_t *plan = json_loads(sky_query_explain(q), 0, NULL);
	json_t *first = json_array_get(json_object_get(plan, "steps"), 0);
	*est = json_integer_value(json_object_get(first, "estimated"));
	*act = json_integer_value(json_object_get(first, "actual"));
	json_decref(plan);
}

/*
 * One pass: `queries` timed queries after a tenth as warm-up, all from
 * the same fixed random sequence. Returns the median microseconds; the
 * mean rows per query and the last plan's driver counts go to the rest.
 */
static double one_pass(sky_cache *c, unsigned n, int two, unsigned queries,
		       double *rows, long long *est, long long *act)
{
	bench_rng rng;
	double *t = bench_xmalloc(queries * sizeof(*t));
	unsigned long total = 0;
	unsigned warm = queries / 10 + 1;
	bench_rng_init(&rng, BENCH_SEED + (two ? 2 : 1));
	for (unsigned i = 0; i < warm + queries; i++) {
		bench_pred p[2];
		char text[2][64];
		const char *preds[2] = {text[0], text[1]};
		if (two)
			bench_query_two(&rng, n, p);
		else
			bench_query_one(&rng, n, p);
		for (int k = 0; k < (two ? 2 : 1); k++)
			snprintf(text[k], sizeof(text[k]), "%s=%s", p[k].key,
				 p[k].value);
		unsigned long got = 0;
		double t0 = bench_now_us();
		sky_query *q;
		check(sky_query_new(&q, c, BENCH_APP, preds, two ? 2u : 1u),
		      "sky_query_new");
		check(sky_query_run(q, count_row, &got), "sky_query_run");
		double t1 = bench_now_us();
		if (i >= warm) {
			t[i - warm] = t1 - t0;
			total += got;
		}
		if (i + 1 == warm + queries)
			driver_counts(q, est, act);
		sky_query_free(q);
	}
	*rows = (double)total / queries;
	double m = bench_median(t, queries);
	free(t);
	return m;
}

/*
 * The first pass meets pages of the map this process never touched (page
 * faults, cold caches), as a fresh process does; the second runs the same
 * queries again, as a long-running process that has the map in use.
 */
static double time_queries(sky_cache *c, unsigned n, int two, unsigned queries,
			   double *rows, long long *est, long long *act,
			   double *warm_us)
{
	double first = one_pass(c, n, two, queries, rows, est, act);
	*warm_us = one_pass(c, n, two, queries, rows, est, act);
	return first;
}

int main(int argc, char **argv)
{
	int quick = 0, keep = 0;
	unsigned queries = 2000;
	unsigned sizes[8] = {10000, 100000, 1000000}, n_sizes = 3;
	const char *tmp = getenv("TMPDIR");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--keep"))
			keep = 1;
		else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
			queries = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--tmpdir") && i + 1 < argc)
			tmp = argv[++i];
		else if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
			char *list = argv[++i], *end;
			for (n_sizes = 0; *list && n_sizes < 8; list = end) {
				sizes[n_sizes++] =
				    (unsigned)strtoul(list, &end, 10);
				if (*end == ',')
					end++;
				else if (*end)
					bench_die("--sizes: '%s'", list);
			}
		} else {
			fprintf(
			    stderr,
			    "usage: bench_query [--quick] [--sizes N,N,...] "
			    "[--queries N] [--tmpdir DIR] [--keep]\n");
			return 1;
		}
	}
	if (quick && n_sizes == 3)
		n_sizes = 2;
	bench_prog = "bench_query";
	if (queries == 0)
		bench_die("--queries must be positive");
	result_t res[8];
	char base[4096];
	snprintf(base, sizeof(base), "%s/bench_query.%d", tmp ? tmp : "/tmp",
		 (int)getpid());
	bench_mkdirs(base);

	for (unsigned s = 0; s < n_sizes; s++) {
		result_t *r = &res[s];
		char dir[4200];
		snprintf(dir, sizeof(dir), "%s/c%u", base, sizes[s]);
		sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
		o.durability = SKY_DURABILITY_NONE;
		o.initial_map_bytes = (size_t)1 << 30;
		sky_cache *c;
		check(sky_cache_open(&c, dir, &o), "opening the cache");
		r->sessions = sizes[s];
		fprintf(stderr, "bench_query: building %u sessions...\n",
			sizes[s]);
		double t0 = bench_now_us();
		build(c, sizes[s]);
		r->build_s = (bench_now_us() - t0) / 1e6;
		r->eq_us = time_queries(c, sizes[s], 0, queries, &r->eq_rows,
					&r->eq_drive_est, &r->eq_drive_act,
					&r->eq_warm);
		r->two_us = time_queries(c, sizes[s], 1, queries, &r->two_rows,
					 &r->two_drive_est, &r->two_drive_act,
					 &r->two_warm);
		sky_cache_close(c);
		if (!keep)
			bench_rmtree(dir);
	}
	if (!keep)
		bench_rmtree(base);

	printf("%-9s %8s %8s %5s %9s  %8s %8s %5s %9s  %7s\n", "sessions",
	       "eq us", "warm", "rows", "driver", "two us", "warm", "rows",
	       "driver", "build s");
	for (unsigned s = 0; s < n_sizes; s++) {
		result_t *r = &res[s];
		char d1[32], d2[32];
		snprintf(d1, sizeof(d1), "%lld/%lld", r->eq_drive_act,
			 r->eq_drive_est);
		snprintf(d2, sizeof(d2), "%lld/%lld", r->two_drive_act,
			 r->two_drive_est);
		printf("%-9u %8.1f %8.1f %5.1f %9s  %8.1f %8.1f %5.1f %9s  "
		       "%7.1f\n",
		       r->sessions, r->eq_us, r->eq_warm, r->eq_rows, d1,
		       r->two_us, r->two_warm, r->two_rows, d2, r->build_s);
	}
	unsigned last = n_sizes - 1;
	printf("ratio %u/%u sessions: equality %.2f (warm %.2f), two "
	       "predicates %.2f (warm %.2f)\n",
	       res[last].sessions, res[0].sessions,
	       res[last].eq_us / res[0].eq_us,
	       res[last].eq_warm / res[0].eq_warm,
	       res[last].two_us / res[0].two_us,
	       res[last].two_warm / res[0].two_warm);
	printf("(median us of %u queries each: the first pass, then the same "
	       "queries again;\n driver: candidates examined / estimated by "
	       "the planner)\n",
	       queries);
	return 0;
}
