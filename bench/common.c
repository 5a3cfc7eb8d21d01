/*
 * common.c - data generators, timing, memory figures, files and the result
 * line shared by the benchmark programs (see common.h).
 *
 * The generators write JSON text with snprintf rather than through a JSON
 * library, so building a data set costs little and the bytes are exactly
 * the same in every program. Timing uses CLOCK_MONOTONIC around whole
 * rounds of operations (a sub-microsecond operation cannot be timed one by
 * one without the clock dominating) and reports the median round.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

const char *bench_prog = "bench";

/* ---- failure ---- */

void bench_die(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", bench_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

void *bench_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		bench_die("out of memory (%zu bytes)", n);
	return p;
}

/* ---- growable text ---- */

static void buf_reserve(bench_buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (!p)
		bench_die("out of memory");
	b->data = p;
	b->cap = cap;
}

void bench_buf_append(bench_buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void bench_buf_printf(bench_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		bench_die("bad format");
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

void bench_buf_clear(bench_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void bench_buf_free(bench_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* ---- time and memory ---- */

double bench_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

double bench_median(double *v, size_t n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

long bench_peak_rss_kb(void)
{
	/*
	 * VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across
	 * execve, so a program started by a big parent (bench/run is Python)
	 * would report the parent's size. VmHWM belongs to this process
	 * image alone. ru_maxrss is the fallback where /proc is missing.
	 */
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");
	if (f) {
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
				break;
		fclose(f);
	}
	if (kb < 0) {
		struct rusage ru;
		if (getrusage(RUSAGE_SELF, &ru) == 0)
			kb = ru.ru_maxrss; /* KiB on Linux */
	}
	return kb;
}

long bench_rss_kb(void)
{
	long pages = -1, resident = -1;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
		resident = -1;
	fclose(f);
	return resident < 0 ? -1 : resident * (sysconf(_SC_PAGESIZE) / 1024);
}

size_t bench_heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

/* ---- random ---- */

void bench_rng_init(bench_rng *r, uint64_t seed)
{
	r->s = seed;
}

/* splitmix64: small, fast, and the same on every machine. */
uint64_t bench_rng_next(bench_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

uint32_t bench_rng_below(bench_rng *r, uint32_t n)
{
	return (uint32_t)(bench_rng_next(r) % n);
}

uint64_t bench_mix(uint64_t i, uint64_t salt)
{
	bench_rng r = {i * 0x100000001b3ull + salt * 0x9e3779b97f4a7c15ull +
		       BENCH_SEED};
	return bench_rng_next(&r);
}

/* ---- time text ---- */

void bench_format_time(int64_t us, char buf[32])
{
	time_t secs = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf + 19, 13, ".%06uZ", (unsigned)(us % 1000000));
}

/* ---- the sessions data set ---- */

void bench_session_id(char *buf, size_t cap, unsigned i)
{
	snprintf(buf, cap, "s-%07u", i);
}

int64_t bench_session_created_us(unsigned i)
{
	return BENCH_SESSION_EPOCH_US + (int64_t)i * 1000000;
}

static unsigned at_least_1(unsigned n)
{
	return n ? n : 1;
}

const char *const bench_prop_keys[BENCH_PROPS] = {
    "site", "line", "shift", "priority", "asset", "operator", "checklist",
};

void bench_session_prop(unsigned i, unsigned n, int k, char *value, size_t cap)
{
	static const char *prio[] = {"low", "normal", "high", "urgent"};
	switch (k) {
	case 0:
		snprintf(value, cap, "Plant-%u",
			 (unsigned)(bench_mix(i, 1) % at_least_1(n / 100)));
		break;
	case 1: /* every value exactly 10 times: i mod n/10 */
		snprintf(value, cap, "Line-%u", i % at_least_1(n / 10));
		break;
	case 2:
		snprintf(value, cap, "S-%u", (unsigned)(bench_mix(i, 2) % 10));
		break;
	case 3: snprintf(value, cap, "%s", prio[bench_mix(i, 3) % 4]); break;
	case 4:
		snprintf(value, cap, "A-%08x",
			 (unsigned)(bench_mix(i, 4) & 0xffffffffu));
		break;
	case 5:
		snprintf(value, cap, "op-%u",
			 (unsigned)(bench_mix(i, 5) % 500));
		break;
	default:
		snprintf(value, cap, "CL-2024-%02u",
			 (unsigned)(bench_mix(i, 6) % 12) + 1);
		break;
	}
}

void bench_session_props(unsigned i, unsigned n, bench_prop p[BENCH_PROPS])
{
	for (int k = 0; k < BENCH_PROPS; k++) {
		p[k].key = bench_prop_keys[k];
		bench_session_prop(i, n, k, p[k].value, sizeof(p[k].value));
	}
}

void bench_session_json(bench_buf *out, unsigned i, unsigned n, const char *sid)
{
	char own[32], created[32];
	bench_prop p[BENCH_PROPS];
	unsigned user = (unsigned)(bench_mix(i, 7) % 200);
	if (!sid) {
		bench_session_id(own, sizeof(own), i);
		sid = own;
	}
	bench_format_time(bench_session_created_us(i), created);
	bench_session_props(i, n, p);
	bench_buf_printf(
	    out,
	    "{\"applicationId\":\"" BENCH_APP "\",\"sessionId\":\"%s\","
	    "\"status\":\"%s\",\"isDraft\":false,\"version\":%u,"
	    "\"name\":\"Inspection %u\",\"description\":\"Routine "
	    "inspection of %s at %s, shift %s\","
	    "\"participants\":[{\"id\":\"user-%u\",\"type\":\"user\"},"
	    "{\"id\":\"crew-%s\",\"type\":\"group\"}],"
	    "\"createdBy\":\"user-%u\",\"createdAt\":\"%s\","
	    "\"modifiedBy\":\"user-%u\",\"modifiedAt\":\"%s\","
	    "\"properties\":{",
	    sid, bench_session_is_open(i) ? "open" : "closed",
	    (unsigned)(bench_mix(i, 9) % 5) + 1, i, p[1].value, p[0].value,
	    p[2].value, user, p[1].value, user, created, user, created);
	for (int k = 0; k < BENCH_PROPS; k++)
		bench_buf_printf(out, "%s\"%s\":\"%s\"", k ? "," : "", p[k].key,
				 p[k].value);
	bench_buf_printf(out, "}}");
}

void bench_query_one(bench_rng *r, unsigned n, bench_pred *p)
{
	p->key = "line";
	snprintf(p->value, sizeof(p->value), "Line-%u",
		 bench_rng_below(r, at_least_1(n / 10)));
}

void bench_query_two(bench_rng *r, unsigned n, bench_pred p[2])
{
	p[0].key = "site";
	snprintf(p[0].value, sizeof(p[0].value), "Plant-%u",
		 bench_rng_below(r, at_least_1(n / 100)));
	p[1].key = "shift";
	snprintf(p[1].value, sizeof(p[1].value), "S-%u",
		 bench_rng_below(r, 10));
}

bench_sid *bench_random_sids(bench_rng *r, unsigned n, unsigned count)
{
	bench_sid *ids = bench_xmalloc(n * sizeof(*ids));
	for (unsigned i = 0; i < n; i++)
		bench_session_id(ids[i].sid, sizeof(ids[i].sid),
				 bench_rng_below(r, count));
	return ids;
}

bench_sid *bench_random_doc_sids(bench_rng *r, unsigned n, int kind)
{
	bench_sid *ids = bench_xmalloc(n * sizeof(*ids));
	for (unsigned i = 0; i < n; i++)
		bench_doc_sid(ids[i].sid, sizeof(ids[i].sid), kind,
			      bench_rng_below(r, bench_doc_count(kind)));
	return ids;
}

bench_pred *bench_random_queries(bench_rng *r, unsigned n, unsigned sessions,
				 int two)
{
	bench_pred *preds = bench_xmalloc(n * 2 * sizeof(*preds));
	for (unsigned i = 0; i < n; i++) {
		if (two)
			bench_query_two(r, sessions, &preds[2 * i]);
		else
			bench_query_one(r, sessions, &preds[2 * i]);
	}
	return preds;
}

/* ---- the documents data set ---- */

unsigned bench_doc_count(int kind)
{
	return kind == BENCH_DOC_LARGE	  ? BENCH_DOCS_LARGE
	       : kind == BENCH_DOC_MEDIUM ? BENCH_DOCS_MEDIUM
					  : BENCH_DOCS_SMALL;
}

unsigned bench_doc_items(int kind)
{
	return kind == BENCH_DOC_LARGE	  ? BENCH_ITEMS_LARGE
	       : kind == BENCH_DOC_MEDIUM ? BENCH_ITEMS_MEDIUM
					  : BENCH_ITEMS_SMALL;
}

void bench_doc_sid(char *buf, size_t cap, int kind, unsigned i)
{
	if (kind == BENCH_DOC_LARGE)
		snprintf(buf, cap, "m-%u", i);
	else if (kind == BENCH_DOC_MEDIUM)
		snprintf(buf, cap, "k-%03u", i);
	else
		snprintf(buf, cap, "d-%05u", i);
}

int bench_session_is_open(unsigned i)
{
	return bench_mix(i, 8) % 10 != 0;
}

void bench_write_doc_sid(char *buf, size_t cap, uint64_t seq)
{
	unsigned i = (unsigned)(bench_mix(seq, 10) % BENCH_DOCS_SMALL);
	/* The next open document: there is one within a few steps. */
	while (!bench_session_is_open(i))
		i = (i + 1) % BENCH_DOCS_SMALL;
	bench_doc_sid(buf, cap, BENCH_DOC_SMALL, i);
}

void bench_doc_json(bench_buf *out, unsigned items)
{
	bench_buf_printf(out, "{\"meta\":{\"rev\":0,\"site\":\"Plant-7\","
			      "\"updatedAt\":\"2024-05-01T12:00:00Z\"},"
			      "\"items\":{");
	for (unsigned i = 0; i < items; i++)
		bench_buf_printf(out,
				 "%s\"i%05u\":{\"name\":\"item-%u\",\"qty\":%u,"
				 "\"status\":\"new\",\"tags\":[\"a\",\"b\"],"
				 "\"pos\":{\"x\":1.5,\"y\":2}}",
				 i ? "," : "", i, i, i % 50);
	bench_buf_printf(out, "}}");
}

void bench_patch_json(bench_buf *out, unsigned item, unsigned rev)
{
	bench_buf_printf(out,
			 "{\"items\":{\"i%05u\":{\"qty\":%u,\"status\":\"%s\","
			 "\"pos\":{\"x\":%u},\"by\":\"operator-7\"}},"
			 "\"meta\":{\"rev\":%u}}",
			 item, rev % 97, rev % 2 ? "checked" : "new", rev % 13,
			 rev);
}

void bench_patch_event(bench_buf *out, const char *sid, unsigned item,
		       unsigned rev, const char *eid, int64_t created_us)
{
	char t[32];
	bench_format_time(created_us, t);
	bench_buf_printf(out,
			 "{\"applicationId\":\"" BENCH_APP "\","
			 "\"sessionId\":\"%s\",\"eventId\":\"%s\","
			 "\"source\":\"bench\",\"userId\":\"user-1\","
			 "\"createdAt\":\"%s\",\"timestamp\":\"%s\","
			 "\"version\":%u,"
			 "\"eventType\":\"session_data_updated\",\"data\":",
			 sid, eid, t, t, rev);
	bench_patch_json(out, item, rev);
	bench_buf_printf(out, "}");
}

bench_buf *bench_patch_events(bench_rng *r, uint64_t *seq, const char *workload,
			      int large, unsigned n)
{
	bench_buf *events = bench_xmalloc(n * sizeof(*events));
	unsigned docs = large ? BENCH_DOCS_LARGE : BENCH_DOCS_SMALL;
	unsigned items = large ? BENCH_ITEMS_LARGE : BENCH_ITEMS_SMALL;
	for (unsigned i = 0; i < n; i++) {
		char sid[32], eid[48];
		unsigned d = bench_rng_below(r, docs);
		unsigned item = bench_rng_below(r, items);
		uint64_t q = ++*seq;
		bench_doc_sid(sid, sizeof(sid), large, d);
		snprintf(eid, sizeof(eid), "ev-%s-%08llu", workload,
			 (unsigned long long)q);
		events[i] = (bench_buf)BENCH_BUF_INIT;
		bench_patch_event(&events[i], sid, item, (unsigned)q, eid,
				  bench_event_created_us(q));
	}
	return events;
}

void bench_bufs_free(bench_buf *bufs, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		bench_buf_free(&bufs[i]);
	free(bufs);
}

void bench_patch_leaves(unsigned item, unsigned rev,
			bench_leaf l[BENCH_PATCH_LEAVES])
{
	snprintf(l[0].path, sizeof(l[0].path), "items/i%05u/qty", item);
	snprintf(l[0].value, sizeof(l[0].value), "%u", rev % 97);
	snprintf(l[1].path, sizeof(l[1].path), "items/i%05u/status", item);
	snprintf(l[1].value, sizeof(l[1].value), "\"%s\"",
		 rev % 2 ? "checked" : "new");
	snprintf(l[2].path, sizeof(l[2].path), "items/i%05u/pos/x", item);
	snprintf(l[2].value, sizeof(l[2].value), "%u", rev % 13);
	snprintf(l[3].path, sizeof(l[3].path), "items/i%05u/by", item);
	snprintf(l[3].value, sizeof(l[3].value), "\"operator-7\"");
	snprintf(l[4].path, sizeof(l[4].path), "meta/rev");
	snprintf(l[4].value, sizeof(l[4].value), "%u", rev);
}

int64_t bench_event_created_us(uint64_t q)
{
	static int64_t base;
	if (!base) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		base = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	return base + (int64_t)q;
}

/* ---- the outbox workloads ---- */

void bench_outbox_json(bench_buf *out, uint64_t seq)
{
	char sid[32];
	bench_session_id(sid, sizeof(sid),
			 (unsigned)(bench_mix(seq, 10) % 100000));
	bench_buf_printf(
	    out,
	    "{\"kind\":\"data_patch\",\"applicationId\":\"" BENCH_APP
	    "\",\"sessionId\":\"%s\",\"localId\":\"w-%08llu\","
	    "\"patch\":",
	    sid, (unsigned long long)seq);
	bench_patch_json(out, (unsigned)(seq % BENCH_ITEMS_SMALL),
			 (unsigned)seq);
	bench_buf_printf(out, "}");
}

uint32_t bench_crc32(const void *data, size_t len)
{
	static uint32_t table[256];
	static int ready;
	const unsigned char *p = data;
	uint32_t c = 0xffffffffu;
	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;
			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
		ready = 1;
	}
	for (size_t i = 0; i < len; i++)
		c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
	return c ^ 0xffffffffu;
}

/* ---- files ---- */

void bench_path(char *buf, size_t cap, const char *dir, const char *name)
{
	if ((size_t)snprintf(buf, cap, "%s/%s", dir, name) >= cap)
		bench_die("path too long: %s/%s", dir, name);
}

void bench_mkdirs(const char *dir)
{
	char path[4096];
	if (strlen(dir) >= sizeof(path))
		bench_die("path too long: %s", dir);
	strcpy(path, dir);
	for (char *p = path + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			bench_die("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		bench_die("mkdir %s: %s", path, strerror(errno));
}

void bench_rmtree(const char *path)
{
	struct stat sb;
	if (lstat(path, &sb) < 0)
		return;
	if (S_ISDIR(sb.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *de;
		while (d && (de = readdir(d)) != NULL) {
			char sub[4096];
			if (!strcmp(de->d_name, ".") ||
			    !strcmp(de->d_name, ".."))
				continue;
			bench_path(sub, sizeof(sub), path, de->d_name);
			bench_rmtree(sub);
		}
		if (d)
			closedir(d);
		rmdir(path);
	} else {
		unlink(path);
	}
}

void bench_evict(const char *path)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return;
	/* Dirty pages cannot be dropped: write them first. */
	fdatasync(fd);
	posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
	close(fd);
}

/* ---- command line ---- */

static unsigned parse_uint(const char *opt, const char *text)
{
	char *end;
	unsigned long v = strtoul(text ? text : "", &end, 10);
	if (!text || !*text || *end || v > 0xffffffffUL)
		bench_die("%s: expected a number, got '%s'", opt,
			  text ? text : "");
	return (unsigned)v;
}

void bench_parse_args(int argc, char **argv, bench_args *a)
{
	const char *slash = strrchr(argv[0], '/');
	bench_prog = slash ? slash + 1 : argv[0];
	/* libtool may run us as lt-bench_x: keep the real name. */
	if (!strncmp(bench_prog, "lt-", 3))
		bench_prog += 3;
	memset(a, 0, sizeof(*a));
	a->runs = 5;
	a->n = 10000;
	a->batch = 1000;
	if (argc < 2 || (strcmp(argv[1], "build") && strcmp(argv[1], "run")))
		goto usage;
	a->cmd = argv[1];
	for (int i = 2; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(o, "--docs")) {
			a->what = "docs";
			continue;
		}
		if (!v)
			goto usage;
		i++;
		if (!strcmp(o, "--dir"))
			a->dir = v;
		else if (!strcmp(o, "--workload"))
			a->workload = v;
		else if (!strcmp(o, "--sessions"))
			a->sessions = parse_uint(o, v);
		else if (!strcmp(o, "--n"))
			a->n = parse_uint(o, v);
		else if (!strcmp(o, "--runs"))
			a->runs = parse_uint(o, v);
		else if (!strcmp(o, "--batch"))
			a->batch = parse_uint(o, v);
		else
			goto usage;
	}
	if (!a->dir || a->n == 0 || a->runs == 0 || a->batch == 0)
		goto usage;
	if (!strcmp(a->cmd, "build")) {
		if (!a->what)
			a->what = "sessions";
		if (!strcmp(a->what, "sessions") && a->sessions == 0)
			goto usage;
	} else if (!a->workload) {
		goto usage;
	}
	return;
usage:
	fprintf(stderr,
		"usage: %s build --dir DIR (--sessions N | --docs)\n"
		"       %s run --dir DIR --workload W [--sessions N] [--n OPS] "
		"[--runs R] [--batch B]\n"
		"(normally run by bench/run; see bench/README.md)\n",
		bench_prog, bench_prog);
	exit(2);
}

int bench_main(int argc, char **argv, bench_build_fn build, bench_run_fn run)
{
	bench_args a;
	bench_parse_args(argc, argv, &a);
	if (!strcmp(a.cmd, "build"))
		build(&a);
	else
		bench_result_emit(run(&a));
	return 0;
}

/* ---- rounds and results ---- */

void bench_time_rounds(bench_round_fn round, void *ctx, unsigned n,
		       unsigned runs, double *out)
{
	round(ctx, n); /* warm-up: page cache, map, allocator */
	for (unsigned r = 0; r < runs; r++)
		out[r] = round(ctx, n);
}

double bench_median_rounds(bench_round_fn round, void *ctx, unsigned n,
			   unsigned runs)
{
	double *v = bench_xmalloc(runs * sizeof(double));
	bench_time_rounds(round, ctx, n, runs, v);
	double m = bench_median(v, runs);
	free(v);
	return m;
}

json_t *bench_result(const char *impl, const char *workload, const char *unit,
		     unsigned n, const double *runs, unsigned n_runs)
{
	json_t *res = json_object(), *arr = json_array();
	double *sorted = bench_xmalloc(n_runs * sizeof(double));
	for (unsigned i = 0; i < n_runs; i++) {
		json_array_append_new(arr, json_real(runs[i]));
		sorted[i] = runs[i];
	}
	json_object_set_new(res, "impl", json_string(impl));
	json_object_set_new(res, "workload", json_string(workload));
	json_object_set_new(res, "unit", json_string(unit));
	json_object_set_new(res, "n", json_integer(n));
	json_object_set_new(res, "median",
			    json_real(bench_median(sorted, n_runs)));
	json_object_set_new(res, "runs", arr);
	free(sorted);
	return res;
}

void bench_result_emit(json_t *res)
{
	json_object_set_new(res, "peak_rss_kb",
			    json_integer(bench_peak_rss_kb()));
	char *text = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(6));
	if (!text)
		bench_die("out of memory");
	printf("%s\n", text);
	fflush(stdout);
	free(text);
	json_decref(res);
}

json_t *bench_run_rounds(const char *impl, const char *workload,
			 bench_round_fn round, void *ctx, const bench_args *a)
{
	double *runs = bench_xmalloc(a->runs * sizeof(double));
	bench_time_rounds(round, ctx, a->n, a->runs, runs);
	json_t *res =
	    bench_result(impl, workload, "us/op", a->n, runs, a->runs);
	free(runs);
	return res;
}

json_t *bench_run_mixed(const char *impl, bench_round_fn round, void *ctx,
			int *mode, const bench_args *a)
{
	double *t[3];
	for (int m = 0; m < 3; m++) {
		t[m] = bench_xmalloc(a->runs * sizeof(double));
		*mode = m;
		round(ctx, a->n); /* warm-up */
	}
	for (unsigned r = 0; r < a->runs; r++)
		for (int m = 0; m < 3; m++) {
			*mode = m;
			t[m][r] = round(ctx, a->n);
		}
	*mode = 0;
	json_t *res = bench_result(impl, "mixed", "us/op", a->n, t[0], a->runs);
	double ev = bench_median(t[1], a->runs);
	double wr = bench_median(t[2], a->runs);
	json_t *detail = json_object();
	json_object_set_new(detail, "events_alone_us", json_real(ev));
	json_object_set_new(detail, "writes_alone_us", json_real(wr));
	json_object_set_new(detail, "parts_us", json_real(ev + wr));
	json_object_set_new(res, "detail", detail);
	for (int m = 0; m < 3; m++)
		free(t[m]);
	return res;
}

void bench_result_hits(json_t *res, unsigned hits, unsigned queries)
{
	if (queries)
		json_object_set_new(res, "results_per_query",
				    json_real((double)hits / queries));
}

json_t *bench_cold_start(const char *impl, const bench_args *a,
			 const char *file, bench_open_fn open_and_answer,
			 int query_first)
{
	char path[4096];
	bench_path(path, sizeof(path), a->dir, file);
	bench_evict(path);
	/* Cold first: the warm open after it finds the pages it read. */
	double cold = open_and_answer(a, query_first);
	double warm = open_and_answer(a, query_first);
	json_t *res = bench_result(impl, "cold_start", "us/op", 1, &cold, 1);
	json_t *detail = json_object();
	json_object_set_new(detail, "warm_us", json_real(warm));
	json_object_set_new(res, "detail", detail);
	json_object_set_new(res, "first",
			    json_string(query_first ? "query" : "get"));
	return res;
}

json_t *bench_heap_rounds(const char *impl, bench_round_fn round, void *ctx,
			  const bench_args *a)
{
	json_t *heap = json_array(), *rss = json_array();
	double *runs = bench_xmalloc(a->runs * sizeof(double));
	size_t first_heap = 0;
	long first_rss = 0;
	/* No warm-up round: the first rounds' growth is part of what is
	 * shown, and the later rounds tell whether it goes on. */
	for (unsigned r = 0; r < a->runs; r++) {
		runs[r] = round(ctx, a->n);
		size_t h = bench_heap_bytes();
		long kb = bench_rss_kb();
		if (r == 0) {
			first_heap = h;
			first_rss = kb;
		}
		json_array_append_new(heap, json_integer((json_int_t)h));
		json_array_append_new(rss, json_integer(kb));
	}
	json_t *res = bench_result(impl, "heap", "us/op", a->n, runs, a->runs);
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
