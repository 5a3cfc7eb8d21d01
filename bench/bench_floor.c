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
 *   docids    app \0 sid           -> docid(8) of its member-wise copy
 *   nodes     docid(8) path        -> 'v' leaf JSON text (one per leaf)
 *   evlog     eventId              -> seq(8)
 *
 * What each workload does (the operation whose time is reported):
 *   get          mdb_get of the stored session bytes, one read txn reused
 *                for the whole round (no copy, like sky_reader_session);
 *   data_*       mdb_get of the 1 KB, 10 KB or 1 MB document stored as
 *                one value;
 *   query_*      walk the index duplicates of the predicate (and probe the
 *                second predicate with MDB_GET_BOTH) and mdb_get each
 *                matching session;
 *   patch_*      per event, scan the event text once (a validating JSON
 *                scanner, no tree: the least any program must do with
 *                untrusted text), find the document by its session id,
 *                put the event id in evlog and put each leaf the patch
 *                sets; one commit per batch without a flush, as skysync's
 *                journal mode (a durable commit per batch as a detail);
 *   enqueue_*    the physical limit of a durable write: overwrite a
 *                checksummed record in a preallocated, zero-filled file
 *                and fdatasync (one flush, no size change to journal),
 *                once per write (durable) or once per batch; as details,
 *                the same appended to a growing file and an LMDB durable
 *                commit per write (two ordered flushes);
 *   ingest       per session, scan the session and its data (validating),
 *                put the record, its index entries and the data as one
 *                value; one durable LMDB commit per batch;
 *   mixed        patch events one per commit without a flush, and every
 *                BENCH_MIXED_EVENTS events one preallocated record +
 *                fdatasync; the two also alone;
 *   cold_start   open the environment whose file was dropped from the page
 *                cache, and answer the first get (or query); as a detail,
 *                the same opened with readahead (without MDB_NORDAHEAD).
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

enum {
	DB_SESSIONS,
	DB_INDEX,
	DB_DOCS,
	DB_NODES,
	DB_EVLOG,
	DB_DOCIDS,
	DB_COUNT
};

static const struct {
	const char *name;
	unsigned flags;
} db_specs[DB_COUNT] = {
    [DB_SESSIONS] = {"sessions", 0}, [DB_INDEX] = {"index", MDB_DUPSORT},
    [DB_DOCS] = {"docs", 0},	     [DB_NODES] = {"nodes", 0},
    [DB_EVLOG] = {"evlog", 0},	     [DB_DOCIDS] = {"docids", 0},
};

typedef struct {
	MDB_env *env;
	MDB_dbi dbi[DB_COUNT];
	const bench_args *a;
	bench_rng rng;
	uint64_t seq;  /* event and record numbers, across rounds */
	int large;     /* patch_1mb */
	int kind;      /* data_*: BENCH_DOC_* */
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

static void build_doc(floor_ctx *f, int kind, unsigned i)
{
	char sid[32], path[64], value[32];
	unsigned char key[KEY_MAX], id[8];
	unsigned items = bench_doc_items(kind);
	uint64_t docid = (uint64_t)kind * LARGE_DOCID_BASE + i;
	bench_buf doc = BENCH_BUF_INIT;
	MDB_txn *txn;
	static const char *const leaves[] = {"name", "qty",   "status",
					     "tags", "pos/x", "pos/y"};

	bench_doc_sid(sid, sizeof(sid), kind, i);
	bench_doc_json(&doc, items);
	check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
	put(txn, f->dbi[DB_DOCS], key, make_key(key, BENCH_APP, sid, NULL),
	    doc.data, doc.len + 1);
	for (int b = 0; b < 8; b++)
		id[b] = (unsigned char)(docid >> (56 - 8 * b));
	put(txn, f->dbi[DB_DOCIDS], key, make_key(key, BENCH_APP, sid, NULL),
	    id, 8);
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
		for (int kind = 0; kind < BENCH_DOC_KINDS; kind++)
			for (unsigned i = 0; i < bench_doc_count(kind); i++)
				build_doc(f, kind, i);
	} else {
		build_sessions(f, a->sessions);
	}
	check(mdb_env_sync(f->env, 1), "mdb_env_sync");
	mdb_env_close(f->env);
}

/* ---- reads ---- */

/*
 * mdb_get each of ids[0..n) from database `db` in one read txn, touching
 * the first byte past `skip` (the JSON text), or, when `copy`, copying the
 * whole value out (a document read: skysync hands out a copy and SQLite
 * assembles overflow pages, so the floor reads every byte too); frees ids.
 */
static double timed_gets(floor_ctx *f, bench_sid *ids, unsigned n, int db,
			 size_t skip, int copy)
{
	unsigned char key[KEY_MAX];
	MDB_txn *txn;
	bench_buf out = BENCH_BUF_INIT;
	double t0 = bench_now_us();
	check(mdb_txn_begin(f->env, NULL, MDB_RDONLY, &txn), "begin");
	for (unsigned i = 0; i < n; i++) {
		MDB_val k = {make_key(key, BENCH_APP, ids[i].sid, NULL), key},
			v;
		check(mdb_get(txn, f->dbi[db], &k, &v), "get");
		if (copy) {
			bench_buf_clear(&out);
			bench_buf_append(&out, v.mv_data, v.mv_size);
			f->sink += (unsigned char)out.data[v.mv_size / 2];
		}
		f->sink += ((const unsigned char *)v.mv_data)[skip] +
			   (unsigned)v.mv_size;
	}
	mdb_txn_abort(txn);
	double t = (bench_now_us() - t0) / n;
	bench_buf_free(&out);
	free(ids);
	return t;
}

static double round_get(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	return timed_gets(f, bench_random_sids(&f->rng, n, f->a->sessions), n,
			  DB_SESSIONS, RECORD_HEADER, 0);
}

static double round_data(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	return timed_gets(f, bench_random_doc_sids(&f->rng, n, f->kind), n,
			  DB_DOCS, 0, 1);
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
	bench_pred *preds =
	    bench_random_queries(&f->rng, n, f->a->sessions, two);
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

/*
 * ---- a minimal validating JSON scanner ----
 *
 * The least a program must do with an event or a session it did not
 * write: check that the text is JSON (RFC 8259 syntax, UTF-8, at most 64
 * levels) and find the members it needs, in one pass and without building
 * a tree. Each scalar or array is reported with its path (the object keys
 * joined by '/', as they appear in the text) and its raw text; arrays are
 * leaves, as in the floor's member-wise documents. Duplicate keys are not
 * looked for.
 */
typedef void (*scan_leaf_fn)(void *ctx, const char *path, size_t plen,
			     const char *val, size_t vlen);
typedef struct {
	const char *p, *end;
	char path[256];
	size_t plen;
	int depth;
	scan_leaf_fn leaf; /* NULL: validate only */
	void *ctx;
} json_scan;

static void scan_ws(json_scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
				 *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

/* At the opening quote; ends after the closing one. */
static int scan_string(json_scan *s)
{
	s->p++;
	while (s->p < s->end) {
		unsigned char c = (unsigned char)*s->p++;
		if (c == '"')
			return 0;
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			if (s->p >= s->end)
				return -1;
			c = (unsigned char)*s->p++;
			if (c == 'u') {
				for (int i = 0; i < 4; i++, s->p++)
					if (s->p >= s->end ||
					    !strchr("0123456789abcdefABCDEF",
						    *s->p))
						return -1;
			} else if (!strchr("\"\\/bfnrt", c)) {
				return -1;
			}
		} else if (c >= 0x80) {
			int more = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : 1;
			if (c < 0xc2 || c > 0xf4)
				return -1;
			for (int i = 0; i < more; i++, s->p++)
				if (s->p >= s->end ||
				    ((unsigned char)*s->p & 0xc0) != 0x80)
					return -1;
		}
	}
	return -1;
}

static int scan_digits(json_scan *s)
{
	const char *p0 = s->p;
	while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
		s->p++;
	return s->p > p0 ? 0 : -1;
}

static int scan_number(json_scan *s)
{
	if (s->p < s->end && *s->p == '-')
		s->p++;
	if (s->p < s->end && *s->p == '0')
		s->p++;
	else if (scan_digits(s))
		return -1;
	if (s->p < s->end && *s->p == '.') {
		s->p++;
		if (scan_digits(s))
			return -1;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (scan_digits(s))
			return -1;
	}
	return 0;
}

static int scan_literal(json_scan *s, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n))
		return -1;
	s->p += n;
	return 0;
}

static int scan_value(json_scan *s, int report);

static int scan_object(json_scan *s, int report)
{
	if (++s->depth > 64)
		return -1;
	s->p++;
	scan_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		scan_ws(s);
		if (s->p >= s->end || *s->p != '"')
			return -1;
		const char *k = s->p + 1;
		if (scan_string(s))
			return -1;
		size_t kl = (size_t)(s->p - 1 - k), saved = s->plen;
		if (report) {
			if (saved + 1 + kl >= sizeof(s->path))
				return -1;
			if (saved)
				s->path[s->plen++] = '/';
			memcpy(s->path + s->plen, k, kl);
			s->plen += kl;
		}
		scan_ws(s);
		if (s->p >= s->end || *s->p++ != ':')
			return -1;
		if (scan_value(s, report))
			return -1;
		s->plen = saved;
		scan_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p++ != '}')
			return -1;
		s->depth--;
		return 0;
	}
}

static int scan_array(json_scan *s)
{
	if (++s->depth > 64)
		return -1;
	s->p++;
	scan_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (scan_value(s, 0))
			return -1;
		scan_ws(s);
		if (s->p >= s->end)
			return -1;
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p++ != ']')
			return -1;
		s->depth--;
		return 0;
	}
}

static int scan_value(json_scan *s, int report)
{
	scan_ws(s);
	if (s->p >= s->end)
		return -1;
	const char *start = s->p;
	int rc;
	switch (*s->p) {
	case '{': return scan_object(s, report);
	case '[': rc = scan_array(s); break;
	case '"': rc = scan_string(s); break;
	case 't': rc = scan_literal(s, "true"); break;
	case 'f': rc = scan_literal(s, "false"); break;
	case 'n': rc = scan_literal(s, "null"); break;
	default: rc = scan_number(s); break;
	}
	if (rc == 0 && report && s->leaf)
		s->leaf(s->ctx, s->path, s->plen, start,
			(size_t)(s->p - start));
	return rc;
}

/* Scan a whole text that must be one JSON object; 0 when it is. */
static int scan_text(const char *text, size_t len, scan_leaf_fn leaf, void *ctx)
{
	json_scan s;
	s.p = text;
	s.end = text + len;
	s.plen = 0;
	s.depth = 0;
	s.leaf = leaf;
	s.ctx = ctx;
	scan_ws(&s);
	if (s.p >= s.end || *s.p != '{' || scan_value(&s, 1))
		return -1;
	scan_ws(&s);
	return s.p == s.end ? 0 : -1;
}

/* A string leaf's text without its quotes (ids carry no escapes here; a
 * program meeting one would unescape it). */
static void leaf_string(const char *val, size_t vlen, char *out, size_t cap)
{
	if (vlen < 2 || val[0] != '"' || vlen - 2 >= cap ||
	    memchr(val, '\\', vlen))
		bench_die("unexpected string %.*s", (int)vlen, val);
	memcpy(out, val + 1, vlen - 2);
	out[vlen - 2] = '\0';
}

static int path_is(const char *path, size_t plen, const char *name)
{
	return plen == strlen(name) && !memcmp(path, name, plen);
}

/* ---- patches ---- */

#define EVENT_LEAVES 16

/* What a session_data_updated event tells the floor. */
typedef struct {
	char app[64], sid[64], eid[64], type[32];
	unsigned nleaves;
	struct {
		char path[128];
		size_t plen;
		const char *val;
		size_t vlen;
	} leaf[EVENT_LEAVES];
} event_fields;

static void event_leaf(void *ctx, const char *path, size_t plen,
		       const char *val, size_t vlen)
{
	event_fields *e = ctx;
	if (path_is(path, plen, "eventId"))
		leaf_string(val, vlen, e->eid, sizeof(e->eid));
	else if (path_is(path, plen, "sessionId"))
		leaf_string(val, vlen, e->sid, sizeof(e->sid));
	else if (path_is(path, plen, "applicationId"))
		leaf_string(val, vlen, e->app, sizeof(e->app));
	else if (path_is(path, plen, "eventType"))
		leaf_string(val, vlen, e->type, sizeof(e->type));
	else if (plen > 5 && !memcmp(path, "data/", 5)) {
		if (e->nleaves == EVENT_LEAVES || plen - 5 >= 128)
			bench_die("patch too large for the floor");
		memcpy(e->leaf[e->nleaves].path, path + 5, plen - 5);
		e->leaf[e->nleaves].plen = plen - 5;
		e->leaf[e->nleaves].val = val;
		e->leaf[e->nleaves].vlen = vlen;
		e->nleaves++;
	}
}

/*
 * Apply one event given as text: scan it, find the document's id by its
 * session, skip a known event id (MDB_NOOVERWRITE on evlog), put each leaf
 * the patch sets (a null removes it, RFC 7396). Returns 1 when applied.
 */
static int apply_event(floor_ctx *f, MDB_txn *txn, const char *text, size_t len)
{
	event_fields e;
	unsigned char key[KEY_MAX], seq[8], nk[8 + 128];
	e.app[0] = e.sid[0] = e.eid[0] = e.type[0] = '\0';
	e.nleaves = 0;
	if (scan_text(text, len, event_leaf, &e) || !e.eid[0] || !e.sid[0] ||
	    strcmp(e.type, "session_data_updated"))
		bench_die("bad event: %.60s", text);
	MDB_val k = {make_key(key, e.app, e.sid, NULL), key}, v;
	check(mdb_get(txn, f->dbi[DB_DOCIDS], &k, &v), "docid");
	uint64_t docid = 0;
	for (int b = 0; b < 8; b++)
		docid = docid << 8 | ((const unsigned char *)v.mv_data)[b];
	uint64_t s = ++f->seq;
	for (int b = 0; b < 8; b++)
		seq[b] = (unsigned char)(s >> (56 - 8 * b));
	MDB_val ek = {strlen(e.eid), e.eid}, ev = {8, seq};
	int rc = mdb_put(txn, f->dbi[DB_EVLOG], &ek, &ev, MDB_NOOVERWRITE);
	if (rc == MDB_KEYEXIST)
		return 0;
	check(rc, "evlog");
	memcpy(nk, v.mv_data, 8);
	for (unsigned l = 0; l < e.nleaves; l++) {
		memcpy(nk + 8, e.leaf[l].path, e.leaf[l].plen);
		MDB_val lk = {8 + e.leaf[l].plen, nk};
		if (e.leaf[l].vlen == 4 && !memcmp(e.leaf[l].val, "null", 4)) {
			rc = mdb_del(txn, f->dbi[DB_NODES], &lk, NULL);
			if (rc != MDB_NOTFOUND)
				check(rc, "del");
			continue;
		}
		MDB_val lv;
		lv.mv_size = 1 + e.leaf[l].vlen;
		check(mdb_put(txn, f->dbi[DB_NODES], &lk, &lv, MDB_RESERVE),
		      "put");
		((char *)lv.mv_data)[0] = 'v';
		memcpy((char *)lv.mv_data + 1, e.leaf[l].val, e.leaf[l].vlen);
	}
	return 1;
}

static double round_patch(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	uint64_t evseq = f->seq;
	bench_buf *events =
	    bench_patch_events(&f->rng, &evseq, f->a->workload, f->large, n);
	unsigned applied = 0;
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += f->a->batch) {
		unsigned end = i + f->a->batch < n ? i + f->a->batch : n;
		MDB_txn *txn;
		check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
		for (unsigned j = i; j < end; j++)
			applied += (unsigned)apply_event(f, txn, events[j].data,
							 events[j].len);
		check(mdb_txn_commit(txn), "commit");
	}
	double t = (bench_now_us() - t0) / n;
	if (applied != n)
		bench_die("only %u of %u events applied", applied, n);
	bench_bufs_free(events, n);
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
	json_object_set_new(
	    detail, "durable_commit_us",
	    json_real(bench_median_rounds(round_patch, f, a->n, a->runs)));
	json_object_set_new(res, "detail", detail);
	mdb_env_close(f->env);
	return res;
}

/* ---- ingest ---- */

/* What a session tells the floor: its id, createdAt and properties. */
typedef struct {
	char sid[64], created[40];
	unsigned nprops;
	struct {
		char key[64], value[64];
	} prop[BENCH_PROPS + 8];
} session_fields;

static void session_leaf(void *ctx, const char *path, size_t plen,
			 const char *val, size_t vlen)
{
	session_fields *sf = ctx;
	if (path_is(path, plen, "sessionId"))
		leaf_string(val, vlen, sf->sid, sizeof(sf->sid));
	else if (path_is(path, plen, "createdAt"))
		leaf_string(val, vlen, sf->created, sizeof(sf->created));
	else if (plen > 11 && !memcmp(path, "properties/", 11) &&
		 val[0] == '"' && plen - 11 < 64 &&
		 sf->nprops < sizeof(sf->prop) / sizeof(sf->prop[0])) {
		memcpy(sf->prop[sf->nprops].key, path + 11, plen - 11);
		sf->prop[sf->nprops].key[plen - 11] = '\0';
		leaf_string(val, vlen, sf->prop[sf->nprops].value,
			    sizeof(sf->prop[sf->nprops].value));
		sf->nprops++;
	}
}

/* "YYYY-MM-DDTHH:MM:SS.ffffffZ" -> microseconds (days from civil). */
static int64_t parse_time_us(const char *t)
{
	int y, mo, d, h, mi, sec, us;
	if (sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &y, &mo, &d, &h, &mi,
		   &sec, &us) != 7)
		bench_die("bad time %s", t);
	y -= mo <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	int64_t days = era * 146097 + doe - 719468;
	return ((days * 86400 + h * 3600 + mi * 60 + sec) * 1000000) + us;
}

static void ingest_one(floor_ctx *f, MDB_txn *txn, const bench_buf *text,
		       const bench_buf *doc)
{
	session_fields sf;
	unsigned char key[KEY_MAX], dup[8 + 64];
	sf.sid[0] = sf.created[0] = '\0';
	sf.nprops = 0;
	if (scan_text(text->data, text->len, session_leaf, &sf) || !sf.sid[0])
		bench_die("bad session");
	if (scan_text(doc->data, doc->len, NULL, NULL))
		bench_die("bad session data");
	size_t kl = make_key(key, BENCH_APP, sf.sid, NULL);
	MDB_val k = {kl, key}, v = {RECORD_HEADER + text->len + 1, NULL};
	check(mdb_put(txn, f->dbi[DB_SESSIONS], &k, &v, MDB_RESERVE), "put");
	memset(v.mv_data, 0, RECORD_HEADER);
	memcpy((char *)v.mv_data + RECORD_HEADER, text->data, text->len + 1);
	put(txn, f->dbi[DB_DOCS], key, kl, doc->data, doc->len + 1);
	uint64_t created = (uint64_t)parse_time_us(sf.created);
	size_t sl = strlen(sf.sid);
	for (int b = 0; b < 8; b++)
		dup[b] = (unsigned char)(created >> (56 - 8 * b));
	memcpy(dup + 8, sf.sid, sl);
	for (unsigned p = 0; p < sf.nprops; p++)
		put(txn, f->dbi[DB_INDEX], key,
		    make_key(key, BENCH_APP, sf.prop[p].key, sf.prop[p].value),
		    dup, 8 + sl);
}

static double round_ingest(void *arg, unsigned n)
{
	floor_ctx *f = arg;
	bench_buf doc = BENCH_BUF_INIT;
	bench_buf *texts = bench_xmalloc(n * sizeof(*texts));
	bench_doc_json(&doc, BENCH_ITEMS_SMALL);
	for (unsigned i = 0; i < n; i++) {
		texts[i] = (bench_buf)BENCH_BUF_INIT;
		bench_session_json(&texts[i], (unsigned)f->seq++,
				   BENCH_INGEST_SPREAD, NULL);
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += BENCH_INGEST_BATCH) {
		unsigned end =
		    i + BENCH_INGEST_BATCH < n ? i + BENCH_INGEST_BATCH : n;
		MDB_txn *txn;
		check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
		for (unsigned j = i; j < end; j++)
			ingest_one(f, txn, &texts[j], &doc);
		check(mdb_txn_commit(txn), "commit");
	}
	double t = (bench_now_us() - t0) / n;
	bench_bufs_free(texts, n);
	bench_buf_free(&doc);
	return t;
}

static json_t *run_ingest(floor_ctx *f, const bench_args *a)
{
	char path[4096];
	bench_path(path, sizeof(path), a->dir, "floor-ingest");
	bench_rmtree(path);
	bench_mkdirs(path);
	/* Durable per batch: LMDB's own durable commit. */
	env_open(f, path, 0);
	json_t *res =
	    bench_run_rounds("floor", a->workload, round_ingest, f, a);
	mdb_env_close(f->env);
	bench_rmtree(path);
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

/* Open `path` as a zero-filled file of `bytes`, flushed: a log that
 * preallocates its space, so that a write changes no metadata. */
static void prealloc_open(log_ctx *l, const char *path, size_t bytes)
{
	l->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (l->fd < 0)
		bench_die("%s: %s", path, strerror(errno));
	char *zeros = calloc(1, 1 << 20);
	if (!zeros)
		bench_die("out of memory");
	l->prealloc = 1;
	l->offset = 0;
	for (size_t off = 0; off < bytes; off += 1 << 20)
		write_all(l, zeros, 1 << 20);
	free(zeros);
	if (fsync(l->fd) < 0)
		bench_die("fsync: %s", strerror(errno));
	l->offset = 0;
}

static json_t *run_enqueue(floor_ctx *f, const bench_args *a, int batched)
{
	char path[4096];
	log_ctx l = {f, -1, batched, 0, 0, NULL, 0};

	bench_mkdirs(a->dir);
	/* The main figure: one flush of a record overwriting a zero-filled
	 * file, which changes no metadata (what skysync's journal does). */
	bench_path(path, sizeof(path), a->dir, "outbox.prealloc");
	prealloc_open(&l, path, (size_t)(a->runs + 1) * a->n * 400 + (1 << 20));
	json_t *res = bench_run_rounds("floor", a->workload, round_log, &l, a);
	double over = json_real_value(json_object_get(res, "median"));
	close(l.fd);
	unlink(path);

	/* Appending to a growing file: the file system also journals the
	 * new size and blocks at each flush. */
	bench_path(path, sizeof(path), a->dir, "outbox.log");
	unlink(path);
	l.prealloc = 0;
	l.offset = 0;
	l.fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (l.fd < 0)
		bench_die("%s: %s", path, strerror(errno));
	double append = bench_median_rounds(round_log, &l, a->n, a->runs);
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

/* ---- mixed: durable writes among live events ---- */

typedef struct {
	floor_ctx *f;
	log_ctx *log;
	int mixed; /* 0 both, 1 events alone, 2 writes alone */
	uint64_t wseq;
} mixed_ctx;

/* Each event in its own commit without a flush; every
 * BENCH_MIXED_EVENTS events one record overwritten + fdatasync. */
static double round_mixed(void *arg, unsigned n)
{
	mixed_ctx *m = arg;
	floor_ctx *f = m->f;
	unsigned ne = n * BENCH_MIXED_EVENTS;
	uint64_t evseq = f->seq;
	bench_buf *events = bench_patch_events(&f->rng, &evseq, "mixed", 0, ne);
	bench_buf all = BENCH_BUF_INIT;
	size_t *ends = bench_xmalloc(n * sizeof(*ends));
	for (unsigned i = 0; i < n; i++) {
		frame(&all, ++m->wseq);
		ends[i] = all.len;
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i++) {
		for (unsigned j = 0; j < BENCH_MIXED_EVENTS && m->mixed != 2;
		     j++) {
			bench_buf *e = &events[i * BENCH_MIXED_EVENTS + j];
			MDB_txn *txn;
			check(mdb_txn_begin(f->env, NULL, 0, &txn), "begin");
			if (!apply_event(f, txn, e->data, e->len))
				bench_die("event not applied");
			check(mdb_txn_commit(txn), "commit");
		}
		if (m->mixed == 1)
			continue;
		size_t start = i ? ends[i - 1] : 0;
		write_all(m->log, all.data + start, ends[i] - start);
		if (fdatasync(m->log->fd) < 0)
			bench_die("fdatasync: %s", strerror(errno));
	}
	double t = (bench_now_us() - t0) / n;
	if (m->mixed == 2)
		f->seq += ne; /* the events' ids stay unique */
	bench_buf_free(&all);
	free(ends);
	bench_bufs_free(events, ne);
	return t;
}

static json_t *run_mixed(floor_ctx *f, const bench_args *a)
{
	char path[4096];
	log_ctx l = {f, -1, 0, 0, 0, NULL, 0};
	mixed_ctx m = {f, &l, 0, 0};
	bench_path(path, sizeof(path), a->dir, "outbox.prealloc");
	prealloc_open(&l, path,
		      (size_t)(a->runs + 1) * 2 * a->n * 400 + (1 << 20));
	env_open(f, a->dir, MDB_NOSYNC);
	json_t *res = bench_run_mixed("floor", round_mixed, &m, &m.mixed, a);
	mdb_env_close(f->env);
	close(l.fd);
	unlink(path);
	return res;
}
/* ---- cold start ---- */

/* Flags added to the cold start's open (MDB_NORDAHEAD for the detail). */
static unsigned open_flags;

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
	check(mdb_env_open(g.env, a->dir, MDB_NOTLS | open_flags, 0600),
	      a->dir);
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
		int q = !strcmp(w, "cold_start_query");
		/*
		 * Opened with MDB_NORDAHEAD, as skysync's store opens: without
		 * it the kernel reads ahead around every page fault of the
		 * map, which for a cold B-tree walk reads pages the answer
		 * does not need. The same with readahead is a detail.
		 */
		open_flags = MDB_NORDAHEAD;
		res = bench_cold_start("floor", a, "data.mdb", open_and_answer,
				       q);
		open_flags = 0;
		json_t *ra = bench_cold_start("floor", a, "data.mdb",
					      open_and_answer, q);
		json_t *d = json_object_get(res, "detail");
		json_object_set_new(
		    d, "readahead_us",
		    json_real(json_real_value(json_object_get(ra, "median"))));
		json_object_set(
		    d, "readahead_warm_us",
		    json_object_get(json_object_get(ra, "detail"), "warm_us"));
		json_decref(ra);
	} else if (!strcmp(w, "ingest")) {
		res = run_ingest(&f, a);
	} else if (!strcmp(w, "mixed")) {
		res = run_mixed(&f, a);
	} else {
		bench_round_fn fn = NULL;
		if (!strcmp(w, "get"))
			fn = round_get;
		else if (!strncmp(w, "data_", 5))
			fn = round_data;
		else if (!strncmp(w, "query_", 6))
			fn = round_query;
		else
			bench_die("unknown workload '%s'", w);
		f.kind = !strcmp(w, "data_1mb")	   ? BENCH_DOC_LARGE
			 : !strcmp(w, "data_10kb") ? BENCH_DOC_MEDIUM
						   : BENCH_DOC_SMALL;
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
