/*
 * bench_floor.c - the floor: what LMDB and the disk allow for the byte
 * work of each workload, with no parsing, validation or bookkeeping. It is
 * the third column of bench/run, next to skysync and the SQLite baseline,
 * and tells how much of skysync's time is its own overhead.
 *
 * The data sets hold the same bytes as skysync's (common.c generates
 * them), laid out the simplest way LMDB allows:
 *
 *   sessions  app \0 sid           -> 48-byte header + session JSON + NUL
 *                                     (the size of a skysync record)
 *   index     app \0 key \0 value  -> createdAt(8) sid   (DUPSORT, so the
 *                                     duplicates come sorted by createdAt)
 *   docs      app \0 sid           -> the whole session data text
 *   nodes     docid(8) path        -> 'v' leaf JSON text (one per leaf)
 *   evlog     eventId              -> seq(8)
 *
 * What each workload does (the operation whose time is reported):
 *   get          mdb_get of the stored session bytes, one read txn reused
 *                for the whole round (no copy, like sky_reader_session);
 *   data_1kb     mdb_get of the 1 KB document stored as one value;
 *   query_*      walk the index duplicates of the predicate (and probe the
 *                second predicate with MDB_GET_BOTH) and mdb_get each
 *                matching session;
 *   patch_*      per event, put its id in evlog and put the 5 leaves the
 *                patch sets; one commit per batch without a flush, as
 *                skysync's journal mode (a durable commit per batch as a
 *                detail);
 *   enqueue_*    the physical limit of a durable write: append a
 *                checksummed record to a file and fdatasync, once per
 *                write (durable) or once per batch; as details, the same
 *                over a preallocated file (no size change to journal) and
 *                an LMDB durable commit per write (two ordered flushes);
 *   cold_start   open the environment whose file was dropped from the page
 *                cache, and answer the first get (or query).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define MAP_BYTES ((size_t)16 << 30) /* sparse: only what is used counts */
#define BUILD_TXN_SESSIONS 10000u
#define RECORD_HEADER 48
#define KEY_MAX 511
#define LARGE_DOCID_BASE 1000000u

enum { DB_SESSIONS, DB_INDEX, DB_DOCS, DB_NODES, DB_EVLOG, DB_COUNT };

static const struct {
	const char *name;
	unsigned flags;
} db_specs[DB_COUNT] = {
    [DB_SESSIONS] = {"sessions", 0}, [DB_INDEX] = {"index", MDB_DUPSORT},
    [DB_DOCS] = {"docs", 0},	     [DB_NODES] = {"nodes", 0},
    [DB_EVLOG] = {"evlog", 0},
};

typedef struct {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	const bench_args *a;
	bench_rng rng;
	uint64_t seq;  /* event and record numbers, across rounds */
	int large;     /* patch_1mb */
	int two;       /* query_two_predicates */
	unsigned hits; /* results seen, to check the queries match */
	unsigned queries;
	unsigned sink; /* read bytes land here so no read is optimised away */
} floor_ctx;

static void check(int rc, const char *what)
{
	if (rc)
		bench_die("%s: %s", what, mdb_strerror(rc));
}

static void env_open(floor_ctx *f, const char *dir, unsigned flags)
{
	MDB_txn *txn;
	check(mdb_env_create(&f->env), "mdb_env_create");
	check(mdb_env_set_maxdbs(f->env, DB_COUNT + 1), "mdb_env_set_maxdbs");
	check(mdb_env_set_mapsize(f->env, MAP_BYTES), "mdb_env_set_mapsize");
	/* MDB_NOTLS as skysync, which pools its read transactions. */
	check(mdb_env_open(f->env, dir, flags | MDB_NOTLS, 0600), dir);
	check(mdb_txn_begin(f->env, NULL, 0, &txn), "mdb_txn_begin");
	for (int i = 0; i < DB_COUNT; i++)
		check(mdb_dbi_open(txn, db_specs[i].name,
				   db_specs[i].flags | MDB_CREATE, &f->dbi[i]),
		      db_specs[i].name);
	check(mdb_txn_commit(txn), "mdb_txn_commit");
}

/* key = a \0 b [\0 c]; returns its length. */
static size_t make_key(unsigned char *buf, const char *a, const char *b,
		       const char *c)
{
	size_t la = strlen(a), lb = strlen(b), n;
	memcpy(buf, a, la);
	buf[la] = '\0';
	memcpy(buf + la + 1, b, lb);
	n = la + 1 + lb;
	if (c) {
		size_t lc = strlen(c);
		buf[n++] = '\0';
		memcpy(buf + n, c, lc);
		n += lc;
	}
	return n;
}

static void put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t kl,
		const void *v, size_t vl)
{
	MDB_val key = {kl, (void *)k}, val = {vl, (void *)v};
	check(mdb_put(txn, dbi, &key, &val, 0), "mdb_put");
}

/* ---- building ---- */

static void build_sessions(floor_ctx *f, unsigned n)
{
	bench_buf rec = BENCH_BUF_INIT;
	MDB_txn *txn = NULL;
	unsigned char key[KEY_MAX], dup[8 + 32];
	for (unsigned i = 0; i < n; i++) {
		char sid[32];
		bench_prop p[BENCH_PROPS];
		if (i % BUILD_TXN_SESSIONS == 0)
			check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
		bench_session_id(sid, sizeof(sid), i);
		bench_buf_clear(&rec);
		static const char zero[RECORD_HEADER];
		bench_buf_append(&rec, zero, RECORD_HEADER);
		bench_session_json(&rec, i, n, sid);
		put(txn, f->dbi[DB_SESSIONS], key,
		    make_key(key, BENCH_APP, sid, NULL), rec.data, rec.len + 1);
		/* Index entries: createdAt big-endian, then the sid. */
		uint64_t created = (uint64_t)bench_session_created_us(i);
		for (int b = 0; b < 8; b++)
			dup[b] = (unsigned char)(created >> (56 - 8 * b));
		memcpy(dup + 8, sid, strlen(sid));
		bench_session_props(i, n, p);
		for (int k = 0; k < BENCH_PROPS; k++)
			put(txn, f->dbi[DB_INDEX], key,
			    make_key(key, BENCH_APP, p[k].key, p[k].value), dup,
			    8 + strlen(sid));
		if (i % BUILD_TXN_SESSIONS == BUILD_TXN_SESSIONS - 1 ||
		    i == n - 1)
			check(mdb_txn_commit(txn), "commit");
	}
	bench_buf_free(&rec);
}

static void put_leaf(MDB_txn *txn, floor_ctx *f, uint64_t docid,
		     const char *path, const char *value)
{
	unsigned char key[8 + 64], val[64];
	size_t pl = strlen(path), vl = strlen(value);
	for (int b = 0; b < 8; b++)
		key[b] = (unsigned char)(docid >> (56 - 8 * b));
	memcpy(key + 8, path, pl);
	val[0] = 'v';
	memcpy(val + 1, value, vl);
	put(txn, f->dbi[DB_NODES], key, 8 + pl, val, 1 + vl);
}

static void build_doc(floor_ctx *f, int large, unsigned i)
{
	char sid[32], path[64], value[32];
	unsigned char key[KEY_MAX];
	unsigned items = large ? BENCH_ITEMS_LARGE : BENCH_ITEMS_SMALL;
	uint64_t docid = large ? LARGE_DOCID_BASE + i : i;
	bench_buf doc = BENCH_BUF_INIT;
	MDB_txn *txn;
	static const char *const leaves[] = {"name", "qty",   "status",
					     "tags", "pos/x", "pos/y"};

	bench_doc_sid(sid, sizeof(sid), large, i);
	bench_doc_json(&doc, items);
	check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
	put(txn, f->dbi[DB_DOCS], key, make_key(key, BENCH_APP, sid, NULL),
	    doc.data, doc.len + 1);
	/* The member-wise copy the patches write into. */
	put_leaf(txn, f, docid, "meta/rev", "0");
	put_leaf(txn, f, docid, "meta/site", "\"Plant-7\"");
	put_leaf(txn, f, docid, "meta/updatedAt", "\"2024-05-01T12:00:00Z\"");
	for (unsigned it = 0; it < items; it++)
		for (size_t l = 0; l < sizeof(leaves) / sizeof(leaves[0]);
		     l++) {
			snprintf(path, sizeof(path), "items/i%05u/%s", it,
				 leaves[l]);
			snprintf(value, sizeof(value), "\"%u\"", it);
			put_leaf(txn, f, docid, path, value);
		}
	check(mdb_txn_commit(txn), "commit");
	bench_buf_free(&doc);
}

static void build(const bench_args *a)
{
	floor_ctx ctx, *f = &ctx;
	memset(f, 0, sizeof(*f));
	bench_mkdirs(a->dir);
	/* The build is not what is measured: no flush per commit. */
	env_open(f, a->dir, MDB_NOSYNC);
	if (!strcmp(a->what, "docs")) {
		for (unsigned i = 0; i < BENCH_DOCS_SMALL; i++)
			build_doc(f, 0, i);
		for (unsigned i = 0; i < BENCH_DOCS_LARGE; i++)
			build_doc(f, 1, i);
	} else {
		build_sessions(f, a->sessions);
	}
	check(mdb_env_sync(f->env, 1), "mdb_env_sync");
	mdb_env_close(f->env);
}

/* ---- reads ---- */

/*
 * mdb_get each of ids[0..n) from database `db` in one read txn, touching
 * the first byte past `skip` (the JSON text); frees ids.
 */
static double timed_gets(floor_ctx *f, bench_sid *ids, unsigned n, int db,
			 size_t skip)
{
	unsigned char key[KEY_MAX];
	MDB_txn *txn;
	double t0 = bench_now_us();
	check(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), "begin");
	for (unsigned i = 0; i < n; i++) {
		MDB_val k = {make_key(key, BENCH_APP, ids[i].sid, NULL), key},
			v;
		check(mdb_get(txn, f->dbi[db], &k, &v), "get");
		f->sink += ((const unsigned char *)v.mv_data)[skip] +
			   (unsigned)v.mv_size;
	}
	mdb_txn_abort(txn);
	double t = (bench_now_us() - t0) / n;
	free(ids);
	return t;
}

static double round_get(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	return timed_gets(f, bench_random_sids(&f->rng, n, f->a->sessions), n,
			  DB_SESSIONS, RECORD_HEADER);
}

static double round_data(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	return timed_gets(f, bench_random_doc_sids(&f->rng, n), n, DB_DOCS, 0);
}

/* Fetch the session a matching index entry names. */
static void fetch_match(floor_ctx *f, MDB_txn *txn, const MDB_val *dup)
{
	unsigned char key[KEY_MAX];
	char sid[32];
	size_t sl = dup->mv_size - 8;
	memcpy(sid, (const char *)dup->mv_data + 8, sl);
	sid[sl] = '\0';
	MDB_val k = {make_key(key, BENCH_APP, sid, NULL), key}, v;
	check(mdb_get(txn, f->dbi[DB_SESSIONS], &k, &v), "get");
	f->sink += ((const unsigned char *)v.mv_data)[RECORD_HEADER];
	f->hits++;
}

/* One query of one or two equality predicates; duplicates are in order. */
static void query(floor_ctx *f, MDB_txn *txn, MDB_cursor *cur,
		  MDB_cursor *probe, const bench_pred *p, int two)
{
	unsigned char key[KEY_MAX], key2[KEY_MAX];
	MDB_val k = {make_key(key, BENCH_APP, p[0].key, p[0].value), key}, v;
	MDB_val k2 = {0, key2};
	if (two)
		k2.mv_size = make_key(key2, BENCH_APP, p[1].key, p[1].value);
	int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
	while (rc == 0) {
		MDB_val pk = k2, pv = v;
		if (!two || mdb_cursor_get(probe, &pk, &pv, MDB_GET_BOTH) == 0)
			fetch_match(f, txn, &v);
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_DUP);
	}
	if (rc != MDB_NOTFOUND)
		check(rc, "query");
	f->queries++;
}

static double round_query(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	int two = f->two;
	bench_pred *preds = bench_random_queries(&f->rng, n, f->a->sessions,
						 two);
	MDB_txn *txn;
	MDB_cursor *cur, *probe;
	double t0 = bench_now_us();
	check(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), "begin");
	check(mdb_cursor_open(txn, f->dbi[DB_INDEX], &cur), "cursor");
	check(mdb_cursor_open(txn, f->dbi[DB_INDEX], &probe), "cursor");
	for (unsigned i = 0; i < n; i++)
		query(f, txn, cur, probe, &preds[2 * i], two);
	mdb_cursor_close(cur);
	mdb_cursor_close(probe);
	mdb_txn_abort(txn);
	double t = (bench_now_us() - t0) / n;
	free(preds);
	return t;
}

/* ---- patches ---- */

typedef struct {
	uint64_t docid;
	char eid[32];
	bench_leaf leaves[BENCH_PATCH_LEAVES];
} patch_input;

static double round_patch(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	patch_input *in = bench_xmalloc(n * sizeof(*in));
	unsigned docs = f->large ? BENCH_DOCS_LARGE : BENCH_DOCS_SMALL;
	unsigned items = f->large ? BENCH_ITEMS_LARGE : BENCH_ITEMS_SMALL;
	for (unsigned i = 0; i < n; i++) {
		unsigned d = bench_rng_below(&f->rng, docs);
		unsigned item = bench_rng_below(&f->rng, items);
		uint64_t s = ++f->seq;
		in[i].docid = f->large ? LARGE_DOCID_BASE + d : d;
		snprintf(in[i].eid, sizeof(in[i].eid), "ev-%s-%08llu",
			 f->a->workload, (unsigned long long)s);
		bench_patch_leaves(item, (unsigned)s, in[i].leaves);
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += f->a->batch) {
		unsigned end = i + f->a->batch < n ? i + f->a->batch : n;
		MDB_txn *txn;
		check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
		for (unsigned j = i; j < end; j++) {
			unsigned char seq[8];
			uint64_t s = f->seq - n + j + 1;
			for (int b = 0; b < 8; b++)
				seq[b] = (unsigned char)(s >> (56 - 8 * b));
			put(txn, f->dbi[DB_EVLOG], in[j].eid, strlen(in[j].eid),
			    seq, 8);
			for (int l = 0; l < BENCH_PATCH_LEAVES; l++)
				put_leaf(txn, f, in[j].docid,
					 in[j].leaves[l].path,
					 in[j].leaves[l].value);
		}
		check(mdb_txn_commit(txn), "commit");
	}
	double t = (bench_now_us() - t0) / n;
	free(in);
	return t;
}

/* The floor of patch_*: the same puts committed without flushing (what
 * skysync's journal mode does per batch, flushing later in the
 * background); as a detail, one durable commit per batch. */
static json_t *run_patch(floor_ctx *f, const bench_args *a)
{
	env_open(f, a->dir, MDB_NOSYNC);
	json_t *res = bench_run_rounds("floor", a->workload, round_patch, f, a);
	mdb_env_close(f->env);
	env_open(f, a->dir, 0);
	json_t *detail = json_object();
	json_object_set_new(detail, "durable_commit_us",
			    json_real(bench_median_rounds(round_patch, f, a->n,
							  a->runs)));
	json_object_set_new(res, "detail", detail);
	mdb_env_close(f->env);
	return res;
}

/* ---- durable writes ---- */

typedef struct {
	floor_ctx *f;
	int fd;
	int batched;
	int prealloc;  /* overwrite a preallocated region instead */
	off_t offset;  /* next write position when prealloc */
	MDB_env *lmdb; /* LMDB durable commit per write, when set */
	MDB_dbi lmdb_dbi;
} log_ctx;

/* Frame: length(4) crc32(4) payload, as a real log would write it. */
static void frame(bench_buf *out, uint64_t seq)
{
	bench_buf body = BENCH_BUF_INIT;
	unsigned char hdr[8];
	bench_outbox_json(&body, seq);
	uint32_t len = (uint32_t)body.len,
		 crc = bench_crc32(body.data, body.len);
	for (int b = 0; b < 4; b++) {
		hdr[b] = (unsigned char)(len >> (24 - 8 * b));
		hdr[4 + b] = (unsigned char)(crc >> (24 - 8 * b));
	}
	bench_buf_append(out, hdr, 8);
	bench_buf_append(out, body.data, body.len);
	bench_buf_free(&body);
}

static void write_all(log_ctx *l, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t w = l->prealloc ? pwrite(l->fd, data, len, l->offset)
					: write(l->fd, data, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			bench_die("write: %s", strerror(errno));
		}
		data += w;
		len -= (size_t)w;
		l->offset += w;
	}
}

static double round_log(void *arg, unsigned n)
{
	log_ctx *l = arg;
	floor_ctx *f = l->f;
	size_t *ends = bench_xmalloc(n * sizeof(*ends));
	bench_buf all = BENCH_BUF_INIT;
	for (unsigned i = 0; i < n; i++) {
		frame(&all, ++f->seq);
		ends[i] = all.len;
	}
	unsigned per_sync = l->batched ? BENCH_ENQUEUE_BATCH : 1;
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += per_sync) {
		unsigned last = (i + per_sync < n ? i + per_sync : n) - 1;
		size_t start = i ? ends[i - 1] : 0;
		if (l->lmdb) {
			MDB_txn *txn;
			check(mdb_txn_begin(l->lmdb, NULL, 0, &txn), "begin");
			for (unsigned j = i; j <= last; j++) {
				unsigned char seq[8];
				size_t s0 = j ? ends[j - 1] : 0;
				uint64_t s = f->seq - n + j + 1;
				for (int b = 0; b < 8; b++)
					seq[b] =
					    (unsigned char)(s >> (56 - 8 * b));
				put(txn, l->lmdb_dbi, seq, 8, all.data + s0,
				    ends[j] - s0);
			}
			check(mdb_txn_commit(txn), "commit");
			continue;
		}
		/* One write call per acknowledged write (or batch), as a log
		 * appending records as they come would do. */
		write_all(l, all.data + start, ends[last] - start);
		if (fdatasync(l->fd) < 0)
			bench_die("fdatasync: %s", strerror(errno));
	}
	double t = (bench_now_us() - t0) / n;
	bench_buf_free(&all);
	free(ends);
	return t;
}

static json_t *run_enqueue(floor_ctx *f, const bench_args *a, int batched)
{
	char path[4096];
	log_ctx l = {f, -1, batched, 0, 0, NULL, 0};

	bench_mkdirs(a->dir);
	/* The main figure: append + fdatasync. */
	bench_path(path, sizeof(path), a->dir, "outbox.log");
	unlink(path);
	l.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (l.fd < 0)
		bench_die("%s: %s", path, strerror(errno));
	json_t *res = bench_run_rounds("floor", a->workload, round_log, &l, a);
	double append = json_real_value(json_object_get(res, "median"));
	close(l.fd);
	unlink(path);

	/* Overwriting a zero-filled file changes no metadata: the one flush
	 * a log that preallocates its space pays. */
	bench_path(path, sizeof(path), a->dir, "outbox.prealloc");
	l.fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (l.fd < 0)
		bench_die("%s: %s", path, strerror(errno));
	{
		size_t bytes = (size_t)(a->runs + 1) * a->n * 400 + (1 << 20);
		char *zeros = calloc(1, 1 << 20);
		if (!zeros)
			bench_die("out of memory");
		for (size_t off = 0; off < bytes; off += 1 << 20)
			write_all(&l, zeros, 1 << 20);
		free(zeros);
		if (fsync(l.fd) < 0)
			bench_die("fsync: %s", strerror(errno));
		l.prealloc = 1;
		l.offset = 0;
	}
	double over = bench_median_rounds(round_log, &l, a->n, a->runs);
	close(l.fd);
	unlink(path);

	/* LMDB's own durable commit, for reference (two ordered flushes). */
	bench_path(path, sizeof(path), a->dir, "lmdb-outbox");
	bench_mkdirs(path);
	MDB_txn *txn;
	check(mdb_env_create(&l.lmdb), "mdb_env_create");
	check(mdb_env_set_mapsize(l.lmdb, (size_t)1 << 30), "mapsize");
	check(mdb_env_open(l.lmdb, path, MDB_NOTLS, 0600), path);
	check(mdb_txn_begin(l.lmdb, NULL, 0, &txn), "begin");
	check(mdb_dbi_open(txn, NULL, 0, &l.lmdb_dbi), "dbi");
	check(mdb_txn_commit(txn), "commit");
	double lmdb = bench_median_rounds(round_log, &l, a->n, a->runs);
	mdb_env_close(l.lmdb);
	bench_rmtree(path);

	json_t *detail = json_object();
	json_object_set_new(detail, "append_fdatasync_us", json_real(append));
	json_object_set_new(detail, "prealloc_overwrite_fdatasync_us",
			    json_real(over));
	json_object_set_new(detail, "lmdb_durable_commit_us", json_real(lmdb));
	json_object_set_new(detail, "writes_per_sync",
			    json_integer(batched ? BENCH_ENQUEUE_BATCH : 1));
	json_object_set_new(res, "detail", detail);
	return res;
}

/* ---- cold start ---- */

/* Open the data set and answer one get or query; microseconds. */
static double open_and_answer(const bench_args *a, int query_first)
{
	floor_ctx g;
	MDB_txn *txn;
	unsigned char key[KEY_MAX];
	char sid[32];
	memset(&g, 0, sizeof(g));
	g.a = a;
	bench_rng_init(&g.rng, BENCH_SEED);
	double t0 = bench_now_us();
	check(mdb_env_create(&g.env), "mdb_env_create");
	check(mdb_env_set_maxdbs(g.env, DB_COUNT + 1), "maxdbs");
	check(mdb_env_set_mapsize(g.env, MAP_BYTES), "mapsize");
	check(mdb_env_open(g.env, a->dir, MDB_NOTLS, 0600), a->dir);
	check(mdb_txn_begin(g.env, NULL, MDB_RDONLY, &txn), "begin");
	check(mdb_dbi_open(txn, "sessions", 0, &g.dbi[DB_SESSIONS]), "dbi");
	if (query_first) {
		bench_pred p;
		MDB_cursor *cur;
		check(mdb_dbi_open(txn, "index", MDB_DUPSORT, &g.dbi[DB_INDEX]),
		      "dbi");
		check(mdb_cursor_open(txn, g.dbi[DB_INDEX], &cur), "cursor");
		bench_query_one(&g.rng, a->sessions, &p);
		query(&g, txn, cur, NULL, &p, 0);
		mdb_cursor_close(cur);
	} else {
		bench_session_id(sid, sizeof(sid),
				 bench_rng_below(&g.rng, a->sessions));
		MDB_val k = {make_key(key, BENCH_APP, sid, NULL), key}, v;
		check(mdb_get(txn, g.dbi[DB_SESSIONS], &k, &v), "get");
	}
	mdb_txn_abort(txn);
	double t = bench_now_us() - t0;
	mdb_env_close(g.env);
	return t;
}

/* ---- main ---- */

static json_t *run(const bench_args *a)
{
	floor_ctx f;
	memset(&f, 0, sizeof(f));
	f.a = a;
	bench_rng_init(&f.rng, BENCH_SEED);
	const char *w = a->workload;
	json_t *res = NULL;
	if (!strcmp(w, "enqueue_durable") || !strcmp(w, "enqueue_batch")) {
		res = run_enqueue(&f, a, !strcmp(w, "enqueue_batch"));
	} else if (!strcmp(w, "patch_1kb") || !strcmp(w, "patch_1mb")) {
		f.large = !strcmp(w, "patch_1mb");
		res = run_patch(&f, a);
	} else if (!strcmp(w, "cold_start") || !strcmp(w, "cold_start_query")) {
		res = bench_cold_start("floor", a, "data.mdb", open_and_answer,
				       !strcmp(w, "cold_start_query"));
	} else {
		bench_round_fn fn = NULL;
		if (!strcmp(w, "get"))
			fn = round_get;
		else if (!strcmp(w, "data_1kb"))
			fn = round_data;
		else if (!strncmp(w, "query_", 6))
			fn = round_query;
		else
			bench_die("unknown workload '%s'", w);
		f.large = !strcmp(w, "patch_1mb");
		f.two = !strcmp(w, "query_two_predicates");
		env_open(&f, a->dir, 0);
		res = bench_run_rounds("floor", w, fn, &f, a);
		bench_result_hits(res, f.hits, f.queries);
		mdb_env_close(f.env);
	}
	json_object_set_new(res, "lmdb_version",
			    json_string(mdb_version(NULL, NULL, NULL)));
	return res;
}

int main(int argc, char **argv)
{
	return bench_main(argc, argv, build, run);
}
