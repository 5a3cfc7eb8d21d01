/*
 * bench_merge.c - what a session data patch costs as the document grows.
 *
 * DESIGN.md section 4 asks that a patch cost in proportion to the patch,
 * not to the document it lands on. This program stores a ~1 KB and a ~1 MB
 * document (doc.c) in an LMDB environment in a temporary directory, applies
 * the same kind of ~100-byte patch (a few nested leaves changed) to each,
 * batched 1000 per write transaction and one per transaction, and prints
 * the median time per patch and the ratio between the two sizes: near 1
 * means the cost does not grow with the document. For comparison it times
 * reading each document as text (sky__doc_read) and the naive way of
 * patching a document kept as one JSON text: parse, merge, dump.
 *
 * The environment is opened with MDB_NOSYNC, so the numbers are the work
 * of the library and LMDB, not the disk's flush time. Timing is wall clock
 * (CLOCK_MONOTONIC); run it on an idle machine. --quick does fewer rounds.
 */
#include "config.h"

#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "doc.h"
#include "merge.h"
#include "util.h"

#define DOC_SMALL 1
#define DOC_LARGE 2
#define BATCH 1000

static MDB_env *env;
static MDB_dbi dbi;
static char dir[4096];

static double now_us(void)
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

static double median(double *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, int rc)
{
	fprintf(stderr, "bench_merge: %s: %s\n", what,
		rc > 0 || rc < -100 ? mdb_strerror(rc) : "failed");
	exit(1);
}

/* A document of `items` items of ~90 bytes each, plus a little meta. */
static json_t *make_doc(int items)
{
	json_t *doc = json_pack("{s:{s:i,s:s,s:s}}", "meta", "rev", 0, "site",
				"Plant-7", "updatedAt", "2024-05-01T12:00:00Z");
	json_t *all = json_object();
	for (int i = 0; i < items; i++) {
		char key[16], name[32];
		snprintf(key, sizeof(key), "i%05d", i);
		snprintf(name, sizeof(name), "item-%d", i);
		json_object_set_new(
		    all, key,
		    json_pack("{s:s,s:i,s:s,s:[s,s],s:{s:f,s:i}}", "name", name,
			      "qty", i % 50, "status", "new", "tags", "a", "b",
			      "pos", "x", 1.5, "y", 2));
	}
	json_object_set_new(doc, "items", all);
	return doc;
}

/* A ~100-byte patch changing a few nested leaves of item `item`. */
static json_t *make_patch(int item, int rev)
{
	char key[16];
	snprintf(key, sizeof(key), "i%05d", item);
	return json_pack("{s:{s:{s:i,s:s,s:{s:i},s:s}},s:{s:i}}", "items", key,
			 "qty", rev % 97, "status", rev % 2 ? "checked" : "new",
			 "pos", "x", rev % 13, "by", "operator-7", "meta",
			 "rev", rev);
}

static size_t doc_text_len(uint64_t docid)
{
	MDB_txn *txn;
	sky_buf buf = SKY_BUF_INIT;
	int rc;
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0)
		die("begin", rc);
	if ((rc = sky__doc_read(txn, dbi, docid, &buf)) != 0)
		die("doc_read", rc);
	size_t n = buf.len;
	mdb_txn_abort(txn);
	sky__buf_free(&buf);
	return n;
}

static void store(uint64_t docid, json_t *doc)
{
	MDB_txn *txn;
	int rc;
	if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
		die("begin", rc);
	if ((rc = sky__doc_write(txn, dbi, docid, doc)) != 0)
		die("doc_write", rc);
	if ((rc = mdb_txn_commit(txn)) != 0)
		die("commit", rc);
}

/* Median microseconds of one sky__doc_patch call, BATCH per txn. */
static double patch_batched(uint64_t docid, int items, int n)
{
	double *t = malloc(n * sizeof(*t));
	MDB_txn *txn = NULL;
	int rc;

	for (int i = 0; i < n; i++) {
		json_t *patch = make_patch((i * 7919) % items, i);
		if (i % BATCH == 0 &&
		    (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
			die("begin", rc);
		double t0 = now_us();
		if ((rc = sky__doc_patch(txn, dbi, docid, patch)) != 0)
			die("doc_patch", rc);
		t[i] = now_us() - t0;
		if ((i % BATCH == BATCH - 1 || i == n - 1) &&
		    (rc = mdb_txn_commit(txn)) != 0)
			die("commit", rc);
		json_decref(patch);
	}
	double m = median(t, n);
	free(t);
	return m;
}

/* Median microseconds of begin + patch + commit. */
static double patch_per_txn(uint64_t docid, int items, int n)
{
	double *t = malloc(n * sizeof(*t));
	MDB_txn *txn;
	int rc;

	for (int i = 0; i < n; i++) {
		json_t *patch = make_patch((i * 7919) % items, i);
		double t0 = now_us();
		if ((rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0)
			die("begin", rc);
		if ((rc = sky__doc_patch(txn, dbi, docid, patch)) != 0)
			die("doc_patch", rc);
		if ((rc = mdb_txn_commit(txn)) != 0)
			die("commit", rc);
		t[i] = now_us() - t0;
		json_decref(patch);
	}
	double m = median(t, n);
	free(t);
	return m;
}

/* Median microseconds of sky__doc_read into a reused buffer. */
static double read_text(uint64_t docid, int n)
{
	double *t = malloc(n * sizeof(*t));
	sky_buf buf = SKY_BUF_INIT;
	MDB_txn *txn;
	int rc;

	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn)) != 0)
		die("begin", rc);
	for (int i = 0; i < n; i++) {
		sky__buf_clear(&buf);
		double t0 = now_us();
		if ((rc = sky__doc_read(txn, dbi, docid, &buf)) != 0)
			die("doc_read", rc);
		t[i] = now_us() - t0;
	}
	mdb_txn_abort(txn);
	sky__buf_free(&buf);
	double m = median(t, n);
	free(t);
	return m;
}

/* Median microseconds of parse + merge + dump of the whole text. */
static double naive(json_t *doc, int items, int n)
{
	double *t = malloc(n * sizeof(*t));
	char *text = json_dumps(doc, JSON_COMPACT);

	for (int i = 0; i < n; i++) {
		json_t *patch = make_patch((i * 7919) % items, i);
		double t0 = now_us();
		json_t *j = json_loads(text, 0, NULL);
		j = sky__merge_patch(j, patch);
		char *out = json_dumps(j, JSON_COMPACT);
		t[i] = now_us() - t0;
		free(text);
		text = out;
		json_decref(j);
		json_decref(patch);
	}
	free(text);
	double m = median(t, n);
	free(t);
	return m;
}

static void cleanup(void)
{
	char path[4200];
	if (env)
		mdb_env_close(env);
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
	int n_patch = quick ? 2000 : 20000;
	int n_read = quick ? 2000 : 20000;
	int n_naive_small = quick ? 2000 : 20000,
	    n_naive_large = quick ? 5 : 30;
	const char *tmp = getenv("TMPDIR");
	MDB_txn *txn;
	int rc;

	if (argc > 1 && !quick) {
		fprintf(stderr, "usage: bench_merge [--quick]\n");
		return 1;
	}
	snprintf(dir, sizeof(dir), "%s/bench_merge.XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	atexit(cleanup);
	if ((rc = mdb_env_create(&env)) != 0 ||
	    (rc = mdb_env_set_mapsize(env, 4ull << 30)) != 0 ||
	    (rc = mdb_env_open(env, dir, MDB_NOSYNC, 0600)) != 0 ||
	    (rc = mdb_txn_begin(env, NULL, 0, &txn)) != 0 ||
	    (rc = mdb_dbi_open(txn, NULL, 0, &dbi)) != 0 ||
	    (rc = mdb_txn_commit(txn)) != 0)
		die("open environment", rc);

	/* ~1 KB and ~1 MB as compact text. */
	const int small_items = 10, large_items = 11000;
	json_t *small = make_doc(small_items), *large = make_doc(large_items);
	store(DOC_SMALL, small);
	store(DOC_LARGE, large);
	size_t small_len = doc_text_len(DOC_SMALL);
	size_t large_len = doc_text_len(DOC_LARGE);
	json_t *sample = make_patch(1, 1);
	char *sample_text = json_dumps(sample, JSON_COMPACT);

	double sb = patch_batched(DOC_SMALL, small_items, n_patch);
	double lb = patch_batched(DOC_LARGE, large_items, n_patch);
	double st = patch_per_txn(DOC_SMALL, small_items, n_patch / 2);
	double lt = patch_per_txn(DOC_LARGE, large_items, n_patch / 2);
	double sr = read_text(DOC_SMALL, n_read);
	double lr = read_text(DOC_LARGE, quick ? 20 : 200);
	double sn = naive(small, small_items, n_naive_small);
	double ln = naive(large, large_items, n_naive_large);

	printf("bench_merge: session data patches (doc.c), median per "
	       "operation, MDB_NOSYNC%s\n",
	       quick ? ", --quick" : "");
	printf("patch: %zu bytes, e.g. %s\n\n", strlen(sample_text),
	       sample_text);
	printf("%-10s %10s %16s %16s %12s %26s\n", "document", "bytes",
	       "patch us/batch", "patch us/txn", "read us",
	       "naive parse+merge+dump us");
	printf("%-10s %10zu %16.2f %16.2f %12.2f %26.2f\n", "~1 KB", small_len,
	       sb, st, sr, sn);
	printf("%-10s %10zu %16.2f %16.2f %12.2f %26.2f\n", "~1 MB", large_len,
	       lb, lt, lr, ln);
	printf("\nratio 1 MB / 1 KB: patch batched %.2f, patch per txn %.2f "
	       "(naive: %.0f)\n",
	       lb / sb, lt / st, ln / sn);
	printf("(batched: %d patches per write txn, time of the patch call; "
	       "per txn: begin + patch + commit)\n",
	       BATCH);

	free(sample_text);
	json_decref(sample);
	json_decref(small);
	json_decref(large);
	return 0;
}
