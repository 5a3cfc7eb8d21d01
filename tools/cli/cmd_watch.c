/*
 * cmd_watch.c - `skysync watch APP [PRED...]`: print a query's rows, then
 * one JSON line per change of its result set, until SIGINT or SIGTERM
 * (exit 0), while another process (a `skysync sync --follow`, a gateway,
 * `skysync apply`) writes the cache.
 *
 * libsync's live queries see only the writes made through the same cache
 * handle, so a separate process polls: every --interval milliseconds
 * (default 200) it looks whether data.mdb changed (its size or its
 * modification time: every LMDB commit writes it; one more look follows
 * each change, for a write in the same clock tick) and if so runs the
 * query again in a snapshot of its own and compares the rows with the
 * previous run's by sessionId and a 64-bit hash of the session's text.
 *
 * What it keeps true:
 *  - a change line is printed for a difference between two snapshots:
 *    "entered" (a session now in the results), "changed" (still in them,
 *    its text differs), "left" (no longer in them: the session as the
 *    cache now shows it, or just its ids when it is gone); several writes
 *    between two looks give one line per session;
 *  - memory is the result set's ids and hashes, not the sessions;
 *  - output is flushed after every look, so a pipe or a file sees each
 *    change as soon as it is found.
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"
#include "json.h"

typedef struct {
	char *sid;
	uint64_t hash;
	int seen; /* in the previous set: found again by this run */
} row;

typedef struct {
	row *rows;
	size_t n, cap;
} row_set;

typedef struct {
	row_set *old; /* the previous run, sorted by sid (NULL: first run) */
	row_set cur;  /* this run, in query order */
	int failed;   /* out of memory */
} watch_ctx;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* FNV-1a: no cryptographic need, only a changed text must show. */
static uint64_t text_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h;
}

static int cmp_rows(const void *a, const void *b)
{
	return strcmp(((const row *)a)->sid, ((const row *)b)->sid);
}

static void set_clear(row_set *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->rows[i].sid);
	s->n = 0;
}

static void print_change(const char *change, const char *json, size_t len)
{
	printf("{\"change\":\"%s\",\"session\":", change);
	fwrite(json, 1, len, stdout);
	fputs("}\n", stdout);
}

static int on_row(const char *json, size_t len, unsigned flags, void *payload)
{
	watch_ctx *w = payload;
	(void)flags;
	json_t *o = sky__json_loadb(json, len, 0, NULL);
	const char *sid = json_string_value(json_object_get(o, "sessionId"));
	row r = {sid ? strdup(sid) : NULL, text_hash(json, len), 0};
	json_decref(o);
	if (!r.sid)
		goto nomem;
	if (w->cur.n == w->cur.cap) {
		size_t cap = w->cur.cap ? 2 * w->cur.cap : 64;
		row *rows = realloc(w->cur.rows, cap * sizeof(*rows));
		if (!rows) {
			free(r.sid);
			goto nomem;
		}
		w->cur.rows = rows;
		w->cur.cap = cap;
	}
	w->cur.rows[w->cur.n++] = r;
	if (!w->old) {
		/* The first run: the rows as `query` prints them. */
		fwrite(json, 1, len, stdout);
		fputc('\n', stdout);
		return 0;
	}
	row *was = bsearch(&r, w->old->rows, w->old->n, sizeof(row), cmp_rows);
	if (!was)
		print_change("entered", json, len);
	else {
		was->seen = 1;
		if (was->hash != r.hash)
			print_change("changed", json, len);
	}
	return 0;
nomem:
	w->failed = 1;
	return 1;
}

/* The rows of the previous run that this one did not find. */
static void print_left(sky_cache *c, const char *app, row_set *old)
{
	for (size_t i = 0; i < old->n; i++) {
		if (old->rows[i].seen)
			continue;
		char *json = NULL;
		size_t len;
		if (sky_session_get(c, app, old->rows[i].sid, &json, &len) ==
		    0) {
			print_change("left", json, len);
			sky_free(json);
			continue;
		}
		json_t *ids = json_pack("{s:s,s:s}", "applicationId", app,
					"sessionId", old->rows[i].sid);
		char *text = ids ? sky__json_dumps(ids, &len) : NULL;
		json_decref(ids);
		if (text)
			print_change("left", text, len);
		free(text);
	}
}

/* Whether data.mdb may have changed since the last look. */
static int cache_changed(const char *path, struct stat *last)
{
	struct stat st;
	if (stat(path, &st) < 0)
		return 1; /* let the query run say what is wrong */
	int changed = st.st_size != last->st_size ||
		      st.st_mtim.tv_sec != last->st_mtim.tv_sec ||
		      st.st_mtim.tv_nsec != last->st_mtim.tv_nsec ||
		      st.st_ino != last->st_ino;
	*last = st;
	return changed;
}

static const char usage[] =
    "usage: skysync watch APP [PRED...] [--interval MS]\n"
    "\n"
    "Print the sessions of application APP that satisfy the predicates (as\n"
    "`query` prints them), then one JSON line per change of that result\n"
    "set, until SIGINT or SIGTERM (exit 0):\n"
    "  {\"change\":\"entered\",\"session\":{...}}  a session now in the "
    "results\n"
    "  {\"change\":\"changed\",\"session\":{...}}  still in them, written\n"
    "  {\"change\":\"left\",\"session\":{...}}     no longer in them (the\n"
    "                                       session as the cache shows it\n"
    "                                       now, or its ids when it is gone)\n"
    "The cache is written by another process (sync --follow, apply, a\n"
    "gateway): every MS milliseconds (default 200) watch looks whether the\n"
    "cache file changed and, if so, runs the query again and compares. "
    "Several\n"
    "writes between two looks give one line per session.\n";

static int run_watch(int argc, char **argv, const cli_globals *g)
{
	if (g->format != FORMAT_JSON)
		return cli_usage_error("watch",
				       "prints JSON lines only (no --format)");
	long interval_ms = 200;
	const char **preds = calloc((size_t)argc + 1, sizeof(*preds));
	size_t n_preds = 0;
	const char *app = NULL;
	int rc;
	if (!preds) {
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--interval")) {
			uint64_t v;
			if (i + 1 >= argc) {
				rc = cli_usage_error("watch",
						     "--interval needs MS");
				goto out_preds;
			}
			if ((rc = cli_parse_u64("watch", "--interval",
						argv[++i], &v)) != EXIT_OK)
				goto out_preds;
			if (v < 10 || v > 3600000) {
				rc = cli_input_error("watch",
						     "--interval must be "
						     "10 to 3600000 ms");
				goto out_preds;
			}
			interval_ms = (long)v;
		} else if (!app)
			app = argv[i];
		else
			preds[n_preds++] = argv[i];
	}
	if (!app) {
		rc = cli_usage_error("watch", "expected APP");
		goto out_preds;
	}
	if ((rc = cli_check_utf8_args("watch", argc, argv, 1)) != EXIT_OK)
		goto out_preds;

	sky_cache *c = cli_open(g, 1);
	if (!c) {
		rc = EXIT_USAGE;
		goto out_preds;
	}
	sky_query *q = NULL;
	char *mdb = NULL;
	row_set a = {NULL, 0, 0}, b = {NULL, 0, 0};
	watch_ctx w = {NULL, {NULL, 0, 0}, 0};
	struct stat last;
	memset(&last, 0, sizeof(last));
	if (sky_query_new(&q, c, app, preds, n_preds) < 0) {
		rc = cli_fail(NULL);
		goto out;
	}
	if (asprintf(&mdb, "%s/data.mdb", g->db) < 0) {
		mdb = NULL;
		fprintf(stderr, "skysync: out of memory\n");
		rc = EXIT_USAGE;
		goto out;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal; /* no SA_RESTART: the sleep ends at once */
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGINT, &sa, NULL) < 0 ||
	    sigaction(SIGTERM, &sa, NULL) < 0) {
		fprintf(stderr, "skysync: watch: %s\n", strerror(errno));
		rc = EXIT_USAGE;
		goto out;
	}

	/* a: the previous run, sorted by sid; b: this run. */
	row_set *prev = &a, *next = &b;
	int first = 1, again = 0;
	while (!stop_requested) {
		/* After a change, one more run: a write in the same clock tick
		 * as the look leaves the modification time as it was. */
		int changed = cache_changed(mdb, &last);
		if (first || changed || again) {
			again = changed;
			set_clear(next);
			for (size_t i = 0; i < prev->n; i++)
				prev->rows[i].seen = 0;
			w.old = first ? NULL : prev;
			w.cur = *next;
			w.failed = 0;
			int qrc = sky_query_run(q, on_row, &w);
			*next = w.cur;
			if (w.failed) {
				fprintf(stderr, "skysync: out of memory\n");
				rc = EXIT_USAGE;
				goto out;
			}
			if (qrc < 0) {
				rc = cli_fail("watch");
				goto out;
			}
			if (!first)
				print_left(c, app, prev);
			qsort(next->rows, next->n, sizeof(row), cmp_rows);
			row_set *t = prev;
			prev = next;
			next = t;
			first = 0;
			if (fflush(stdout) == EOF || ferror(stdout)) {
				rc = EXIT_OK; /* the reader went away */
				goto out;
			}
		}
		struct timespec ts = {interval_ms / 1000,
				      (interval_ms % 1000) * 1000000L};
		(void)nanosleep(&ts, NULL);
	}
	rc = EXIT_OK;
out:
	set_clear(&a);
	set_clear(&b);
	free(a.rows);
	free(b.rows);
	free(mdb);
	sky_query_free(q);
	sky_cache_close(c);
out_preds:
	free(preds);
	return rc;
}

const cli_command cli_cmd_watch = {
    "watch",
    "print a query's rows, then its changes, as they happen",
    usage,
    run_watch,
};
