/*
 * bench_sqlite.c - the SQLite baseline: the cache a competent engineer
 * would write with SQLite instead of using skysync, doing the same work on
 * the same data (common.c) as bench_skysync.c. bench/README.md explains
 * each choice; in short:
 *
 *   sessions      a rowid table (id INTEGER PRIMARY KEY) with a UNIQUE
 *                 index on (app, sid); the row carries createdAt, the
 *                 data watermark, the document id, whether the session
 *                 is open and the session JSON text. (Rows of ~600 bytes
 *                 are what SQLite advises against keeping WITHOUT ROWID:
 *                 an earlier schema did, and paid ~1.65x on queries.)
 *   props         (app, key, value, created_us, sid) PRIMARY KEY, WITHOUT
 *                 ROWID, carrying the session's rowid: one small row per
 *                 property, a covering index that answers key=value
 *                 already in result order, joined to sessions by rowid.
 *   session_data  docid INTEGER PRIMARY KEY -> data JSON text (rowid
 *                 table: documents up to megabytes live in overflow pages).
 *   evlog         eventId PRIMARY KEY (idempotence, as skysync).
 *   outbox        seq INTEGER PRIMARY KEY, app, sid, body, with an index
 *                 on (app, sid, seq) (a session's pending writes); a
 *                 queued write also patches the local view (json_patch
 *                 of session_data) in the same transaction, as skysync's
 *                 outbox does (enqueue_*, mixed).
 *
 * WAL journal; synchronous=NORMAL for reads and batched work and FULL for
 * the durable enqueue workloads (a commit is then on disk when it
 * returns); mmap_size 4 GiB; a 64 MiB page cache; statements prepared once
 * and reused; an explicit transaction around every batch (reads too, which
 * keeps one WAL read snapshot for a round, as skysync's reused reader);
 * json_patch() for merge patches; ANALYZE after the build. ingest parses
 * each session with jansson (its properties feed props) and inserts data,
 * session and property rows, a FULL commit per batch.
 */
#include "config.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

#define DB_FILE "bench.db"
#define QUERY_LIMIT 1000

typedef struct {
	sqlite3 *db;
	const bench_args *a;
	bench_rng rng;
	uint64_t seq;
	int large; /* patch_1mb */
	int two;   /* query_two_predicates */
	unsigned hits, queries;
	unsigned sink;
	sqlite3_stmt *get, *data, *q1, *q2, *ev_log, *ev_session, *ev_patch,
	    *ev_wm, *begin, *commit, *outbox, *wr_session, *ins_session,
	    *ins_data, *ins_prop;
	int kind;  /* data_*: BENCH_DOC_* */
	int mixed; /* mixed: 0 both, 1 events alone, 2 writes alone */
} sq_ctx;

static void sq_check(sq_ctx *s, int rc, const char *what)
{
	if (rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
		bench_die("%s: %s", what, sqlite3_errmsg(s->db));
}

static void exec(sq_ctx *s, const char *sql)
{
	char *err = NULL;
	if (sqlite3_exec(s->db, sql, NULL, NULL, &err) != SQLITE_OK)
		bench_die("%s: %s", sql, err ? err : "failed");
}

static sqlite3_stmt *prepare(sq_ctx *s, const char *sql)
{
	sqlite3_stmt *st;
	/* SQLITE_PREPARE_PERSISTENT: the statement is reused for the whole
	 * run, so SQLite may keep it in long-lived memory. */
	if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
			       NULL) != SQLITE_OK)
		bench_die("prepare %s: %s", sql, sqlite3_errmsg(s->db));
	return st;
}

/* Run a prepared statement that returns no rows, and reset it. */
static void step_done(sq_ctx *s, sqlite3_stmt *st, const char *what)
{
	int rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		sq_check(s, rc == SQLITE_ROW ? SQLITE_ERROR : rc, what);
	sqlite3_reset(st);
}

static void bind_text(sqlite3_stmt *st, int i, const char *text)
{
	sqlite3_bind_text(st, i, text, -1, SQLITE_STATIC);
}

/* How a connection commits. */
enum { SYNC_NORMAL, SYNC_FULL, BUILDING };

static void sq_open(sq_ctx *s, const char *dir, const char *file, int mode)
{
	char path[4096], pragmas[256];
	bench_path(path, sizeof(path), dir, file);
	if (sqlite3_open_v2(path, &s->db,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
				SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK)
		bench_die("%s: %s", path, sqlite3_errmsg(s->db));
	/* The build is not measured: no journal, no flush. The data set is
	 * switched to WAL when it is complete. */
	snprintf(pragmas, sizeof(pragmas),
		 "PRAGMA journal_mode=%s; PRAGMA synchronous=%s;"
		 "PRAGMA mmap_size=4294967296; PRAGMA cache_size=-65536;"
		 "PRAGMA temp_store=MEMORY;",
		 mode == BUILDING ? "OFF" : "WAL",
		 mode == SYNC_FULL  ? "FULL"
		 : mode == BUILDING ? "OFF"
				    : "NORMAL");
	exec(s, pragmas);
	s->begin = prepare(s, "BEGIN");
	s->commit = prepare(s, "COMMIT");
}

static void sq_close(sq_ctx *s)
{
	sqlite3_stmt **all[] = {&s->get,	 &s->data,     &s->q1,
				&s->q2,		 &s->ev_log,   &s->ev_session,
				&s->ev_patch,	 &s->ev_wm,    &s->begin,
				&s->commit,	 &s->outbox,   &s->wr_session,
				&s->ins_session, &s->ins_data, &s->ins_prop};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		sqlite3_finalize(*all[i]);
		*all[i] = NULL;
	}
	if (sqlite3_close(s->db) != SQLITE_OK)
		bench_die("close: %s", sqlite3_errmsg(s->db));
	s->db = NULL;
}

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS sessions(id INTEGER PRIMARY KEY,"
    " app TEXT NOT NULL, sid TEXT NOT NULL, created_us INTEGER NOT NULL,"
    " wm_data INTEGER NOT NULL, docid INTEGER NOT NULL,"
    " open INTEGER NOT NULL, json TEXT NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS sessions_by_sid"
    " ON sessions(app, sid);"
    "CREATE TABLE IF NOT EXISTS props("
    " app TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,"
    " created_us INTEGER NOT NULL, sid TEXT NOT NULL, sess INTEGER NOT NULL,"
    " PRIMARY KEY(app, key, value, created_us, sid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS session_data("
    " docid INTEGER PRIMARY KEY, data TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS evlog("
    " event_id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS outbox(seq INTEGER PRIMARY KEY,"
    " app TEXT NOT NULL, sid TEXT NOT NULL, body TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS outbox_by_session ON outbox(app, sid, seq);";

static const char insert_session_sql[] =
    "INSERT INTO sessions(app, sid, created_us, wm_data, docid, open, json)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/* ---- building ---- */

static void insert_session(sq_ctx *s, sqlite3_stmt *ins, const char *sid,
			   unsigned i, unsigned n, int64_t docid,
			   bench_buf *json)
{
	bench_buf_clear(json);
	bench_session_json(json, i, n, sid);
	bind_text(ins, 1, BENCH_APP);
	bind_text(ins, 2, sid);
	sqlite3_bind_int64(ins, 3, bench_session_created_us(i));
	sqlite3_bind_int64(ins, 4, BENCH_AS_OF_US);
	sqlite3_bind_int64(ins, 5, docid);
	sqlite3_bind_int(ins, 6, bench_session_is_open(i));
	sqlite3_bind_text(ins, 7, json->data, (int)json->len, SQLITE_STATIC);
	step_done(s, ins, "insert session");
}

/* One props row while building: sorted before it is inserted. */
typedef struct {
	char value[48];
	unsigned i;
} prop_row;

static int cmp_prop_row(const void *a, const void *b)
{
	const prop_row *x = a, *y = b;
	int c = strcmp(x->value, y->value);
	/* createdAt and sid both grow with i. */
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

/*
 * The props rows of a sessions data set, inserted key by key in primary
 * key order: appending to a B-tree is several times faster than inserting
 * at random places, and the resulting table is the same.
 */
static void build_props(sq_ctx *s, unsigned n)
{
	sqlite3_stmt *prop =
	    prepare(s, "INSERT INTO props(app, key, value, created_us, sid,"
		       " sess) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
	prop_row *rows = bench_xmalloc((size_t)n * sizeof(*rows));
	int order[BENCH_PROPS];

	/* The keys in byte order. */
	for (int k = 0; k < BENCH_PROPS; k++) {
		int j = k;
		while (j > 0 && strcmp(bench_prop_keys[order[j - 1]],
				       bench_prop_keys[k]) > 0) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = k;
	}
	for (int ko = 0; ko < BENCH_PROPS; ko++) {
		int k = order[ko];
		const char *key = bench_prop_keys[k];
		for (unsigned i = 0; i < n; i++) {
			bench_session_prop(i, n, k, rows[i].value,
					   sizeof(rows[i].value));
			rows[i].i = i;
		}
		qsort(rows, n, sizeof(*rows), cmp_prop_row);
		for (unsigned r = 0; r < n; r++) {
			char sid[32];
			bench_session_id(sid, sizeof(sid), rows[r].i);
			bind_text(prop, 1, BENCH_APP);
			bind_text(prop, 2, key);
			bind_text(prop, 3, rows[r].value);
			sqlite3_bind_int64(prop, 4,
					   bench_session_created_us(rows[r].i));
			bind_text(prop, 5, sid);
			/* Sessions were inserted in order: rowid i + 1. */
			sqlite3_bind_int64(prop, 6, (int64_t)rows[r].i + 1);
			step_done(s, prop, "insert property");
		}
	}
	free(rows);
	sqlite3_finalize(prop);
}

static void build(const bench_args *a)
{
	sq_ctx ctx, *s = &ctx;
	bench_buf json = BENCH_BUF_INIT, doc = BENCH_BUF_INIT;
	memset(s, 0, sizeof(*s));
	bench_mkdirs(a->dir);
	sq_open(s, a->dir, DB_FILE, BUILDING);
	exec(s, schema);
	sqlite3_stmt *ins = prepare(s, insert_session_sql);
	sqlite3_stmt *data =
	    prepare(s, "INSERT INTO session_data(docid, data) VALUES(?1, ?2)");
	exec(s, "BEGIN");
	if (!strcmp(a->what, "docs")) {
		/* Documents belong to sessions like any other, named d-... and
		 * m-...; they carry no properties (no query runs here). */
		for (int kind = 0; kind < BENCH_DOC_KINDS; kind++) {
			unsigned count = bench_doc_count(kind);
			bench_buf_clear(&doc);
			bench_doc_json(&doc, bench_doc_items(kind));
			for (unsigned i = 0; i < count; i++) {
				char sid[32];
				int64_t docid = kind * 1000000 + i + 1;
				bench_doc_sid(sid, sizeof(sid), kind, i);
				insert_session(s, ins, sid, i, count, docid,
					       &json);
				sqlite3_bind_int64(data, 1, docid);
				sqlite3_bind_text(data, 2, doc.data,
						  (int)doc.len, SQLITE_STATIC);
				step_done(s, data, "insert data");
			}
		}
	} else {
		for (unsigned i = 0; i < a->sessions; i++) {
			char sid[32];
			bench_session_id(sid, sizeof(sid), i);
			insert_session(s, ins, sid, i, a->sessions,
				       (int64_t)i + 1, &json);
		}
		build_props(s, a->sessions);
	}
	exec(s, "COMMIT");
	sqlite3_finalize(ins);
	sqlite3_finalize(data);
	/* Statistics for the planner, then the WAL mode of every run. */
	exec(s, "ANALYZE; PRAGMA journal_mode=WAL;");
	sq_close(s);
	bench_buf_free(&json);
	bench_buf_free(&doc);
}

/* ---- reads ---- */

/*
 * Run the one-row statement `st` (app, sid) for each of ids[0..n) in one
 * read transaction and read the text it returns; frees ids.
 */
static double timed_rows(sq_ctx *s, sqlite3_stmt *st, bench_sid *ids,
			 unsigned n, const char *what)
{
	double t0 = bench_now_us();
	step_done(s, s->begin, "BEGIN");
	for (unsigned i = 0; i < n; i++) {
		bind_text(st, 1, BENCH_APP);
		bind_text(st, 2, ids[i].sid);
		if (sqlite3_step(st) != SQLITE_ROW)
			bench_die("%s %s: %s", what, ids[i].sid,
				  sqlite3_errmsg(s->db));
		const unsigned char *text = sqlite3_column_text(st, 0);
		s->sink += text[0] + (unsigned)sqlite3_column_bytes(st, 0);
		sqlite3_reset(st);
	}
	step_done(s, s->commit, "COMMIT");
	double t = (bench_now_us() - t0) / n;
	free(ids);
	return t;
}

static double round_get(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	return timed_rows(
	    s, s->get, bench_random_sids(&s->rng, n, s->a->sessions), n, "get");
}

static double round_data(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	return timed_rows(
	    s, s->data, bench_random_doc_sids(&s->rng, n, s->kind), n, "data");
}

static void prepare_queries(sq_ctx *s)
{
	/* The covering props key gives the rows in (createdAt, sid) order:
	 * no sort step (EXPLAIN QUERY PLAN shows no temp b-tree). */
	s->q1 = prepare(s, "SELECT s.json FROM props p"
			   " JOIN sessions s ON s.id = p.sess"
			   " WHERE p.app = ?1 AND p.key = ?2 AND p.value = ?3"
			   " ORDER BY p.created_us, p.sid LIMIT ?4");
	/* Two predicates: walk the more selective one (written first, the
	 * planner cannot know which value is rarer) and probe the other
	 * by its whole primary key. */
	s->q2 = prepare(s, "SELECT s.json FROM props a"
			   " JOIN props b ON b.app = a.app AND b.key = ?4"
			   "  AND b.value = ?5 AND b.created_us = a.created_us"
			   "  AND b.sid = a.sid"
			   " JOIN sessions s ON s.id = a.sess"
			   " WHERE a.app = ?1 AND a.key = ?2 AND a.value = ?3"
			   " ORDER BY a.created_us, a.sid LIMIT ?6");
}

static void run_query(sq_ctx *s, const bench_pred *p, int two)
{
	sqlite3_stmt *st = two ? s->q2 : s->q1;
	int rc;
	bind_text(st, 1, BENCH_APP);
	bind_text(st, 2, p[0].key);
	bind_text(st, 3, p[0].value);
	if (two) {
		bind_text(st, 4, p[1].key);
		bind_text(st, 5, p[1].value);
		sqlite3_bind_int(st, 6, QUERY_LIMIT);
	} else {
		sqlite3_bind_int(st, 4, QUERY_LIMIT);
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const unsigned char *text = sqlite3_column_text(st, 0);
		s->sink += text[0] + (unsigned)sqlite3_column_bytes(st, 0);
		s->hits++;
	}
	sq_check(s, rc, "query");
	sqlite3_reset(st);
	s->queries++;
}

static double round_query(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	int two = s->two;
	bench_pred *preds =
	    bench_random_queries(&s->rng, n, s->a->sessions, two);
	double t0 = bench_now_us();
	step_done(s, s->begin, "BEGIN");
	for (unsigned i = 0; i < n; i++)
		run_query(s, &preds[2 * i], two);
	step_done(s, s->commit, "COMMIT");
	double t = (bench_now_us() - t0) / n;
	free(preds);
	return t;
}

/* ---- patches ---- */

static void prepare_patch(sq_ctx *s)
{
	s->ev_log =
	    prepare(s, "INSERT OR IGNORE INTO evlog(event_id) VALUES(?1)");
	s->ev_session = prepare(s, "SELECT docid, wm_data FROM sessions"
				   " WHERE app = ?1 AND sid = ?2");
	s->ev_patch = prepare(s, "UPDATE session_data SET data ="
				 " json_patch(data, ?2) WHERE docid = ?1");
	s->ev_wm = prepare(s, "UPDATE sessions SET wm_data = ?3"
			      " WHERE app = ?1 AND sid = ?2");
}

/* createdAt of an event or session object, in microseconds. */
static int64_t created_us(json_t *obj)
{
	const char *created =
	    json_string_value(json_object_get(obj, "createdAt"));
	int y, mo, d, h, mi, sec, us;
	if (!created || sscanf(created, "%4d-%2d-%2dT%2d:%2d:%2d.%6dZ", &y, &mo,
			       &d, &h, &mi, &sec, &us) != 7)
		bench_die("bad createdAt %s", created ? created : "(none)");
	struct tm tm = {.tm_year = y - 1900,
			.tm_mon = mo - 1,
			.tm_mday = d,
			.tm_hour = h,
			.tm_min = mi,
			.tm_sec = sec};
	return (int64_t)timegm(&tm) * 1000000 + us;
}

/*
 * Apply one session_data_updated event given as JSON text, with the rules
 * skysync keeps: parse and check it, skip a known eventId, skip an event
 * older than the data's watermark, merge the patch, move the watermark.
 * Returns 1 when applied.
 */
static int apply_event(sq_ctx *s, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *ev = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *app, *sid, *eid, *type;
	json_t *data;
	if (!ev ||
	    json_unpack(ev, "{s:s,s:s,s:s,s:s,s:o}", "applicationId", &app,
			"sessionId", &sid, "eventId", &eid, "eventType", &type,
			"data", &data) != 0 ||
	    strcmp(type, "session_data_updated") != 0 || !json_is_object(data))
		bench_die("bad event: %s", ev ? "fields" : jerr.text);
	/* createdAt was generated by common.c; the watermark compares the
	 * microseconds, as skysync does. */
	int64_t t = created_us(ev);
	int applied = 0;
	bind_text(s->ev_log, 1, eid);
	step_done(s, s->ev_log, "evlog");
	if (sqlite3_changes(s->db) == 0)
		goto done; /* duplicate */
	bind_text(s->ev_session, 1, app);
	bind_text(s->ev_session, 2, sid);
	if (sqlite3_step(s->ev_session) != SQLITE_ROW)
		bench_die("event for unknown session %s", sid);
	int64_t docid = sqlite3_column_int64(s->ev_session, 0);
	int64_t wm = sqlite3_column_int64(s->ev_session, 1);
	sqlite3_reset(s->ev_session);
	if (t < wm)
		goto done; /* stale */
	char *patch = json_dumps(data, JSON_COMPACT);
	sqlite3_bind_int64(s->ev_patch, 1, docid);
	sqlite3_bind_text(s->ev_patch, 2, patch, -1, SQLITE_STATIC);
	step_done(s, s->ev_patch, "json_patch");
	free(patch);
	bind_text(s->ev_wm, 1, app);
	bind_text(s->ev_wm, 2, sid);
	sqlite3_bind_int64(s->ev_wm, 3, t);
	step_done(s, s->ev_wm, "watermark");
	applied = 1;
done:
	json_decref(ev);
	return applied;
}

static double round_patch(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	bench_buf *events =
	    bench_patch_events(&s->rng, &s->seq, s->a->workload, s->large, n);
	unsigned applied = 0;
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += s->a->batch) {
		unsigned end = i + s->a->batch < n ? i + s->a->batch : n;
		step_done(s, s->begin, "BEGIN");
		for (unsigned j = i; j < end; j++)
			applied += (unsigned)apply_event(s, events[j].data,
							 events[j].len);
		step_done(s, s->commit, "COMMIT");
	}
	double t = (bench_now_us() - t0) / n;
	if (applied != n)
		bench_die("only %u of %u events applied", applied, n);
	bench_bufs_free(events, n);
	return t;
}

/* ---- durable writes ---- */

static void prepare_write(sq_ctx *s)
{
	s->wr_session = prepare(s, "SELECT docid, open FROM sessions"
				   " WHERE app = ?1 AND sid = ?2");
	s->outbox = prepare(s, "INSERT INTO outbox(app, sid, body)"
			       " VALUES(?1, ?2, ?3)");
	if (!s->ev_patch)
		s->ev_patch =
		    prepare(s, "UPDATE session_data SET data ="
			       " json_patch(data, ?2) WHERE docid = ?1");
}

/*
 * One queued data patch, with the steps skysync's outbox takes in its one
 * transaction: the session must exist and be open, the write is appended
 * to the outbox (and its per-session index), and the local view's
 * document is patched so that reads see the write at once.
 */
static void enqueue_write(sq_ctx *s, const char *sid, const bench_buf *body,
			  const bench_buf *patch)
{
	bind_text(s->wr_session, 1, BENCH_APP);
	bind_text(s->wr_session, 2, sid);
	if (sqlite3_step(s->wr_session) != SQLITE_ROW)
		bench_die("write to unknown session %s", sid);
	int64_t docid = sqlite3_column_int64(s->wr_session, 0);
	int open = sqlite3_column_int(s->wr_session, 1);
	sqlite3_reset(s->wr_session);
	if (!open)
		bench_die("write to closed session %s", sid);
	bind_text(s->outbox, 1, BENCH_APP);
	bind_text(s->outbox, 2, sid);
	sqlite3_bind_text(s->outbox, 3, body->data, (int)body->len,
			  SQLITE_STATIC);
	step_done(s, s->outbox, "enqueue");
	sqlite3_bind_int64(s->ev_patch, 1, docid);
	sqlite3_bind_text(s->ev_patch, 2, patch->data, (int)patch->len,
			  SQLITE_STATIC);
	step_done(s, s->ev_patch, "local view");
}

/* The inputs of n queued writes: outbox bodies and patches. */
typedef struct {
	bench_buf *body, *patch;
	char (*sids)[32];
	unsigned n;
} write_inputs;

static void writes_make(write_inputs *w, uint64_t first, unsigned n,
			int on_docs)
{
	w->n = n;
	w->body = bench_xmalloc(n * sizeof(*w->body));
	w->patch = bench_xmalloc(n * sizeof(*w->patch));
	w->sids = bench_xmalloc(n * sizeof(*w->sids));
	for (unsigned i = 0; i < n; i++) {
		uint64_t q = first + i;
		w->body[i] = (bench_buf)BENCH_BUF_INIT;
		w->patch[i] = (bench_buf)BENCH_BUF_INIT;
		bench_outbox_json(&w->body[i], q);
		bench_patch_json(&w->patch[i],
				 (unsigned)(q % BENCH_ITEMS_SMALL),
				 (unsigned)q);
		/* The sessions skysync's side writes to, in its order. */
		if (on_docs)
			bench_write_doc_sid(w->sids[i], sizeof(w->sids[i]), q);
		else
			bench_session_id(w->sids[i], sizeof(w->sids[i]),
					 (unsigned)(bench_mix(q, 10) % 100000 %
						    BENCH_ENQUEUE_SESSIONS));
	}
}

static void writes_free(write_inputs *w)
{
	for (unsigned i = 0; i < w->n; i++) {
		bench_buf_free(&w->body[i]);
		bench_buf_free(&w->patch[i]);
	}
	free(w->body);
	free(w->patch);
	free(w->sids);
}

static double round_enqueue(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	int batched = !strcmp(s->a->workload, "enqueue_batch");
	unsigned per_commit = batched ? BENCH_ENQUEUE_BATCH : 1;
	write_inputs w;
	writes_make(&w, s->seq + 1, n, 0);
	s->seq += n;
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i++) {
		/* Durable: the transaction is on disk (synchronous=FULL)
		 * when its COMMIT returns. */
		if (i % per_commit == 0)
			step_done(s, s->begin, "BEGIN");
		enqueue_write(s, w.sids[i], &w.body[i], &w.patch[i]);
		if (i % per_commit == per_commit - 1 || i == n - 1)
			step_done(s, s->commit, "COMMIT");
	}
	double t = (bench_now_us() - t0) / n;
	writes_free(&w);
	return t;
}

/* The scratch database of enqueue_*: the open sessions written to. */
static void enqueue_setup(sq_ctx *s, const char *dir)
{
	bench_buf json = BENCH_BUF_INIT;
	sq_open(s, dir, "outbox.db", SYNC_FULL);
	exec(s, schema);
	sqlite3_stmt *ins = prepare(s, insert_session_sql);
	sqlite3_stmt *data = prepare(
	    s, "INSERT INTO session_data(docid, data) VALUES(?1, '{}')");
	exec(s, "BEGIN");
	for (unsigned i = 0; i < BENCH_ENQUEUE_SESSIONS; i++) {
		char sid[32];
		bench_session_id(sid, sizeof(sid), i);
		insert_session(s, ins, sid, i, BENCH_ENQUEUE_SESSIONS,
			       (int64_t)i + 1, &json);
		sqlite3_bind_int64(data, 1, (int64_t)i + 1);
		step_done(s, data, "insert data");
	}
	/* All open, as skysync's scratch cache. */
	exec(s, "UPDATE sessions SET open = 1; COMMIT");
	sqlite3_finalize(ins);
	sqlite3_finalize(data);
	bench_buf_free(&json);
	prepare_write(s);
}

/*
 * ---- mixed: durable writes among live events ----
 *
 * Each live event is applied in its own transaction (synchronous=NORMAL);
 * every BENCH_MIXED_EVENTS events a queued write commits with
 * synchronous=FULL (the pragma is switched around it), on the same
 * documents. s->mixed = 1 or 2 runs the events or the writes alone.
 */
static double round_mixed(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	unsigned ne = n * BENCH_MIXED_EVENTS;
	bench_buf *events =
	    bench_patch_events(&s->rng, &s->seq, "mixed", 0, ne);
	write_inputs w;
	writes_make(&w, s->seq, n, 1);
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i++) {
		for (unsigned j = 0; j < BENCH_MIXED_EVENTS && s->mixed != 2;
		     j++) {
			bench_buf *e = &events[i * BENCH_MIXED_EVENTS + j];
			step_done(s, s->begin, "BEGIN");
			if (!apply_event(s, e->data, e->len))
				bench_die("event not applied");
			step_done(s, s->commit, "COMMIT");
		}
		if (s->mixed == 1)
			continue;
		/* sqlite3_exec, not a prepared statement: SQLite applies
		 * this pragma when it is compiled, so a statement prepared
		 * once would set it at the prepare and never again. */
		exec(s, "PRAGMA synchronous=FULL");
		step_done(s, s->begin, "BEGIN");
		enqueue_write(s, w.sids[i], &w.body[i], &w.patch[i]);
		step_done(s, s->commit, "COMMIT");
		exec(s, "PRAGMA synchronous=NORMAL");
	}
	double t = (bench_now_us() - t0) / n;
	writes_free(&w);
	bench_bufs_free(events, ne);
	return t;
}

/*
 * ---- ingest: a snapshot's sessions, with their data ----
 *
 * What this cache must do with each session a snapshot reads: parse it
 * (its properties feed the props rows), check its ~1 KB data is a JSON
 * object, and insert the data, the session and its property rows;
 * BENCH_INGEST_BATCH sessions per transaction, synchronous=FULL (durable
 * per batch, as skysync's default mode).
 */
static void ingest_one(sq_ctx *s, const bench_buf *text, const bench_buf *doc)
{
	json_error_t jerr;
	json_t *ses =
	    json_loadb(text->data, text->len, JSON_REJECT_DUPLICATES, &jerr);
	const char *sid, *status, *key;
	json_t *props, *val;
	if (!ses ||
	    json_unpack(ses, "{s:s,s:s,s:o}", "sessionId", &sid, "status",
			&status, "properties", &props) != 0 ||
	    !json_is_object(props))
		bench_die("bad session: %s", ses ? "fields" : jerr.text);
	int64_t t = created_us(ses);
	json_t *d =
	    json_loadb(doc->data, doc->len, JSON_REJECT_DUPLICATES, &jerr);
	if (!d || !json_is_object(d))
		bench_die("bad session data");
	json_decref(d);
	sqlite3_bind_text(s->ins_data, 1, doc->data, (int)doc->len,
			  SQLITE_STATIC);
	step_done(s, s->ins_data, "insert data");
	int64_t docid = sqlite3_last_insert_rowid(s->db);
	bind_text(s->ins_session, 1, BENCH_APP);
	bind_text(s->ins_session, 2, sid);
	sqlite3_bind_int64(s->ins_session, 3, t);
	sqlite3_bind_int64(s->ins_session, 4, BENCH_AS_OF_US);
	sqlite3_bind_int64(s->ins_session, 5, docid);
	sqlite3_bind_int(s->ins_session, 6, !strcmp(status, "open"));
	sqlite3_bind_text(s->ins_session, 7, text->data, (int)text->len,
			  SQLITE_STATIC);
	step_done(s, s->ins_session, "insert session");
	int64_t sess = sqlite3_last_insert_rowid(s->db);
	json_object_foreach(props, key, val) {
		if (!json_is_string(val))
			continue;
		bind_text(s->ins_prop, 1, BENCH_APP);
		bind_text(s->ins_prop, 2, key);
		bind_text(s->ins_prop, 3, json_string_value(val));
		sqlite3_bind_int64(s->ins_prop, 4, t);
		bind_text(s->ins_prop, 5, sid);
		sqlite3_bind_int64(s->ins_prop, 6, sess);
		step_done(s, s->ins_prop, "insert property");
	}
	json_decref(ses);
}

static double round_ingest(void *arg, unsigned n)
{
	sq_ctx *s = arg;
	bench_buf doc = BENCH_BUF_INIT;
	bench_buf *texts = bench_xmalloc(n * sizeof(*texts));
	bench_doc_json(&doc, BENCH_ITEMS_SMALL);
	for (unsigned i = 0; i < n; i++) {
		texts[i] = (bench_buf)BENCH_BUF_INIT;
		bench_session_json(&texts[i], (unsigned)s->seq++,
				   BENCH_INGEST_SPREAD, NULL);
	}
	double t0 = bench_now_us();
	for (unsigned i = 0; i < n; i += BENCH_INGEST_BATCH) {
		unsigned end =
		    i + BENCH_INGEST_BATCH < n ? i + BENCH_INGEST_BATCH : n;
		step_done(s, s->begin, "BEGIN");
		for (unsigned j = i; j < end; j++)
			ingest_one(s, &texts[j], &doc);
		step_done(s, s->commit, "COMMIT");
	}
	double t = (bench_now_us() - t0) / n;
	bench_bufs_free(texts, n);
	bench_buf_free(&doc);
	return t;
}

static void ingest_setup(sq_ctx *s, const char *dir)
{
	sq_open(s, dir, "ingest.db", SYNC_FULL);
	exec(s, schema);
	s->ins_session = prepare(s, insert_session_sql);
	s->ins_data = prepare(s, "INSERT INTO session_data(data) VALUES(?1)");
	s->ins_prop =
	    prepare(s, "INSERT INTO props(app, key, value, created_us, sid,"
		       " sess) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
}

static void remove_db(const char *dir, const char *file)
{
	char path[4096], name[256];
	static const char *const ext[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(name, sizeof(name), "%s%s", file, ext[i]);
		bench_path(path, sizeof(path), dir, name);
		unlink(path);
	}
}

/* ---- cold start ---- */

static double open_and_answer(const bench_args *a, int query_first)
{
	sq_ctx c;
	char sid[32];
	memset(&c, 0, sizeof(c));
	c.a = a;
	bench_rng_init(&c.rng, BENCH_SEED);
	double t0 = bench_now_us();
	sq_open(&c, a->dir, DB_FILE, SYNC_NORMAL);
	if (query_first) {
		bench_pred p;
		prepare_queries(&c);
		bench_query_one(&c.rng, a->sessions, &p);
		run_query(&c, &p, 0);
	} else {
		c.get = prepare(&c, "SELECT json FROM sessions"
				    " WHERE app = ?1 AND sid = ?2");
		bench_session_id(sid, sizeof(sid),
				 bench_rng_below(&c.rng, a->sessions));
		bind_text(c.get, 1, BENCH_APP);
		bind_text(c.get, 2, sid);
		if (sqlite3_step(c.get) != SQLITE_ROW)
			bench_die("get %s: %s", sid, sqlite3_errmsg(c.db));
		c.sink += sqlite3_column_text(c.get, 0)[0];
		sqlite3_reset(c.get);
	}
	double t = bench_now_us() - t0;
	sq_close(&c);
	return t;
}

/* ---- main ---- */

static json_t *run(const bench_args *a)
{
	sq_ctx s;
	memset(&s, 0, sizeof(s));
	s.a = a;
	bench_rng_init(&s.rng, BENCH_SEED);
	const char *w = a->workload;
	json_t *res;
	if (!strcmp(w, "cold_start") || !strcmp(w, "cold_start_query"))
		return bench_cold_start("sqlite", a, DB_FILE, open_and_answer,
					!strcmp(w, "cold_start_query"));
	bench_round_fn fn = NULL;
	const char *scratch = NULL; /* a database this run creates */
	if (!strcmp(w, "enqueue_durable") || !strcmp(w, "enqueue_batch")) {
		bench_mkdirs(a->dir);
		scratch = "outbox.db";
		remove_db(a->dir, scratch);
		enqueue_setup(&s, a->dir);
		fn = round_enqueue;
	} else if (!strcmp(w, "ingest")) {
		bench_mkdirs(a->dir);
		scratch = "ingest.db";
		remove_db(a->dir, scratch);
		ingest_setup(&s, a->dir);
		fn = round_ingest;
	} else {
		sq_open(&s, a->dir, DB_FILE, SYNC_NORMAL);
		if (!strcmp(w, "get")) {
			s.get = prepare(&s, "SELECT json FROM sessions"
					    " WHERE app = ?1 AND sid = ?2");
			fn = round_get;
		} else if (!strncmp(w, "data_", 5)) {
			s.kind = !strcmp(w, "data_1mb")	   ? BENCH_DOC_LARGE
				 : !strcmp(w, "data_10kb") ? BENCH_DOC_MEDIUM
							   : BENCH_DOC_SMALL;
			s.data =
			    prepare(&s, "SELECT d.data FROM sessions s"
					" JOIN session_data d"
					" ON d.docid = s.docid"
					" WHERE s.app = ?1 AND s.sid = ?2");
			fn = round_data;
		} else if (!strcmp(w, "query_100k") || !strcmp(w, "query_1m")) {
			prepare_queries(&s);
			fn = round_query;
		} else if (!strcmp(w, "query_two_predicates")) {
			prepare_queries(&s);
			s.two = 1;
			fn = round_query;
		} else if (!strcmp(w, "patch_1kb") || !strcmp(w, "patch_1mb") ||
			   !strcmp(w, "heap")) {
			prepare_patch(&s);
			s.large = !strcmp(w, "patch_1mb");
			fn = round_patch;
		} else if (!strcmp(w, "mixed")) {
			prepare_patch(&s);
			prepare_write(&s);
			fn = round_mixed;
		} else {
			bench_die("unknown workload '%s'", w);
		}
	}
	if (!strcmp(w, "heap")) {
		res = bench_heap_rounds("sqlite", fn, &s, a);
		sq_close(&s);
	} else if (fn == round_mixed) {
		res = bench_run_mixed("sqlite", fn, &s, &s.mixed, a);
		sq_close(&s);
	} else {
		res = bench_run_rounds("sqlite", w, fn, &s, a);
		bench_result_hits(res, s.hits, s.queries);
		sq_close(&s);
		if (fn == round_patch) {
			/* The same with a flush at every commit: the
			 * durability skysync gives by default. */
			sq_open(&s, a->dir, DB_FILE, SYNC_FULL);
			prepare_patch(&s);
			json_t *detail = json_object();
			json_object_set_new(detail, "full_us",
					    json_real(bench_median_rounds(
						fn, &s, a->n, a->runs)));
			json_object_set_new(res, "detail", detail);
			sq_close(&s);
		}
	}
	json_object_set_new(res, "sqlite_version",
			    json_string(sqlite3_libversion()));
	if (scratch)
		remove_db(a->dir, scratch);
	return res;
}

int main(int argc, char **argv)
{
	return bench_main(argc, argv, build, run);
}
