/*
 * test_check.c - sky_cache_check (skysync check) tells the truth: on a
 * healthy cache in every state the outbox can leave it (writes of every
 * kind pending, a write in flight, one in doubt, dead letters, a write
 * half delivered, a session without server data) it reports nothing, and
 * each finding it can make is named when that very fault is injected
 * (through raw LMDB writes or the internal sky__ calls) into an otherwise
 * healthy cache.
 *
 * Findings checked elsewhere as well: the index entries (test_index.c:
 * a missing entry, one naming no session, one with another value or
 * another createdAt) and the layout of a data document, member by member
 * (test_doc.c); here one case of each shows it reaches the cache's check.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "doc.h"
#include "outbox.h"
#include "record.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

#define APP "app1"
/* A JSON text argument and its length. */
#define JS(text) (text), strlen(text)
/* A literal and its length with the NUL (as applications are stored). */
#define JZ(text) (text), sizeof(text)

static const char *app_json =
    "{\"applicationId\":\"app1\",\"name\":\"Inspections\"}";

static sky_cache *open_cache(void)
{
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	return c;
}

static int event_seq;

/* Apply one event of `type` to APP/sid with `field` (session or data). */
static void apply(sky_cache *c, const char *sid, const char *type,
		  const char *field, json_t *value)
{
	char eid[32], at[40];
	event_seq++;
	snprintf(eid, sizeof(eid), "e%d", event_seq);
	snprintf(at, sizeof(at), "2024-01-01T00:00:%02d.%06dZ",
		 event_seq / 1000000 % 60, event_seq % 1000000);
	json_t *ev = json_pack(
	    "{s:s,s:s,s:s,s:s,s:s,s:o}", "applicationId", APP, "sessionId", sid,
	    "eventId", eid, "createdAt", at, "eventType", type, field, value);
	CU_ASSERT_FATAL(ev != NULL);
	char *text = json_dumps(ev, JSON_COMPACT);
	CU_ASSERT_FATAL(text != NULL);
	int rc = sky_mirror_event_apply(c, text, strlen(text), NULL);
	if (rc)
		fprintf(stderr, "\napply: %s\n", sky_error_last()->message);
	CU_ASSERT(rc == 0);
	free(text);
	json_decref(ev);
}

static void new_session(sky_cache *c, const char *sid)
{
	apply(c, sid, "session_created", "session",
	      json_pack("{s:s,s:s,s:s,s:{s:s}}", "status", "open", "name", sid,
			"createdAt", "2023-01-01T00:00:00Z", "properties",
			"site", "Plant-7"));
}

/*
 * A cache with two server sessions: s-data (with data) and s-bare (the
 * server sent no data for it).
 */
static sky_cache *two_sessions(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s-data");
	apply(c, "s-data", "session_data_updated", "data",
	      json_pack("{s:{s:s},s:[i]}", "checklist", "guards", "ok",
			"photos", 1));
	new_session(c, "s-bare");
	return c;
}

static void collect_line(const char *line, void *payload)
{
	sky_buf *b = payload;
	CU_ASSERT(sky__buf_printf(b, "%s\n", line) == 0);
}

/* Run the public check; *lines gets what it reported (free it). */
static int check(sky_cache *c, char **lines)
{
	sky_buf buf = SKY_BUF_INIT;
	int rc = sky_cache_check(c, collect_line, &buf);
	CU_ASSERT_FATAL(sky__buf_putc(&buf, '\0') == 0);
	*lines = buf.data;
	return rc;
}

static void expect_clean(sky_cache *c, const char *state)
{
	char *lines;
	int rc = check(c, &lines);
	if (rc != 0 || *lines)
		fprintf(stderr, "\n%s: check says (%d):\n%s", state, rc, lines);
	CU_ASSERT(rc == 0);
	CU_ASSERT_STRING_EQUAL(lines, "");
	free(lines);
}

static void expect_problem(sky_cache *c, const char *needle)
{
	char *lines;
	int rc = check(c, &lines);
	if (rc != SKY_EINVAL)
		fprintf(stderr, "\ncheck returned %d: %s\n", rc,
			sky_error_last()->message);
	CU_ASSERT(rc == SKY_EINVAL);
	if (!strstr(lines, needle)) {
		fprintf(stderr, "\nproblems '%s' lack '%s'\n", lines, needle);
		CU_FAIL("the check did not name the fault");
	}
	free(lines);
}

/* ---- raw writes ---- */

typedef struct {
	sky_cache *c;
	enum sky_db db;
	MDB_val key, val;
	int del;
} raw_ctx;

static int raw_write(MDB_txn *txn, void *arg)
{
	raw_ctx *r = arg;
	int rc = r->del
		     ? mdb_del(txn, SKY_DBI(r->c, r->db), &r->key, NULL)
		     : mdb_put(txn, SKY_DBI(r->c, r->db), &r->key, &r->val, 0);
	return rc ? -1 : 0;
}

static void raw_put(sky_cache *c, enum sky_db db, const void *k, size_t klen,
		    const void *v, size_t vlen)
{
	raw_ctx r = {c, db, {klen, (void *)k}, {vlen, (void *)v}, 0};
	CU_ASSERT_FATAL(sky__store_write(&c->st, raw_write, &r) == 0);
}

static void raw_del(sky_cache *c, enum sky_db db, const void *k, size_t klen)
{
	raw_ctx r = {c, db, {klen, (void *)k}, {0, NULL}, 1};
	CU_ASSERT_FATAL(sky__store_write(&c->st, raw_write, &r) == 0);
}

/* The key APP \0 sid of `sessions`, `server`, ... ; its length. */
static size_t skey(unsigned char *buf, const char *sid)
{
	size_t n = sky__key2(buf, SKY_KEY_MAX, APP, sid);
	CU_ASSERT_FATAL(n > 0);
	return n;
}

/* A copy of the stored value of `db` under APP/sid (free it). */
static MDB_val raw_get(sky_cache *c, enum sky_db db, const char *sid)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {skey(kb, sid), kb}, val, out = {0, NULL};
	MDB_txn *txn;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	if (mdb_get(txn, SKY_DBI(c, db), &key, &val) == 0) {
		out.mv_data = malloc(val.mv_size);
		CU_ASSERT_FATAL(out.mv_data != NULL);
		memcpy(out.mv_data, val.mv_data, val.mv_size);
		out.mv_size = val.mv_size;
	}
	sky__store_read_end(&c->st, txn);
	return out;
}

/* The record header of APP/sid in `db` (sessions or server). */
static sky_record header_of(sky_cache *c, enum sky_db db, const char *sid)
{
	MDB_val v = raw_get(c, db, sid);
	sky_record rec;
	CU_ASSERT_FATAL(v.mv_data != NULL);
	CU_ASSERT_FATAL(sky__record_decode(&v, &rec) == 0);
	rec.json = NULL;
	rec.json_len = 0;
	free(v.mv_data);
	return rec;
}

typedef struct {
	sky_cache *c;
	sky_record hdr;
	const char *sid;
} hdr_ctx;

static int hdr_write(MDB_txn *txn, void *arg)
{
	hdr_ctx *h = arg;
	return sky__record_put_header(txn, h->c, &h->hdr, APP, h->sid);
}

static void put_header(sky_cache *c, const char *sid, const sky_record *hdr)
{
	hdr_ctx h = {c, *hdr, sid};
	CU_ASSERT_FATAL(sky__store_write(&c->st, hdr_write, &h) == 0);
}

/* Outbox entry `id` gets `state` (and the sent flag), as delivery does. */
typedef struct {
	sky_cache *c;
	uint64_t id;
	sky_outbox_state state;
} state_ctx;

static int state_write(MDB_txn *txn, void *arg)
{
	state_ctx *s = arg;
	sky_ob_entry e;
	sky_ob_owned o;
	int rc = sky__ob_get(txn, s->c, s->id, &e);
	if (rc < 0 || (rc = sky__ob_own(&e, &o)) < 0)
		return rc;
	o.e.state = s->state;
	o.e.flags |= SKY_OB_SENT;
	o.e.attempts++;
	rc = sky__ob_store(txn, s->c, &o.e);
	free(o.strs);
	return rc;
}

static void set_state(sky_cache *c, uint64_t id, sky_outbox_state state)
{
	state_ctx s = {c, id, state};
	CU_ASSERT_FATAL(sky__store_write(&c->st, state_write, &s) == 0);
}

/* The writes of the healthy cases, in this order (outbox ids 1..9). */
enum {
	W_PATCH = 1,  /* session patch, s-data */
	W_PROPS,      /* properties, s-data */
	W_DATA,	      /* data patch, s-data */
	W_BARE_DATA,  /* data patch of s-bare, which has no server data */
	W_PART,	      /* participant, s-bare */
	W_EVENT,      /* custom event, s-bare */
	W_CREATE,     /* create: a local session */
	W_LOCAL_DATA, /* data patch of the local session */
	W_CLOSE,      /* close, s-closing */
};

static char *local_id;

/* Every kind of write queued, each followed by a clean check. */
static sky_cache *every_write(void)
{
	sky_cache *c = two_sessions();
	new_session(c, "s-closing");
	expect_clean(c, "server sessions only");
#define STEP(call, state)                                                      \
	do {                                                                   \
		int rc_ = (call);                                              \
		if (rc_)                                                       \
			fprintf(stderr, "\n%s: %s\n", state,                   \
				sky_error_last()->message);                    \
		CU_ASSERT_FATAL(rc_ == 0);                                     \
		expect_clean(c, state);                                        \
	} while (0)
	STEP(sky_session_patch(c, APP, "s-data", JS("{\"name\":\"renamed\"}")),
	     "session patch pending");
	STEP(sky_session_set_properties(c, APP, "s-data",
					JS("{\"site\":\"P-9\"}")),
	     "properties pending");
	STEP(sky_data_patch(c, APP, "s-data",
			    JS("{\"checklist\":{\"fire\":1}}")),
	     "data patch pending");
	STEP(sky_data_patch(c, APP, "s-bare", JS("{\"first\":true}")),
	     "data patch of a session without server data");
	STEP(sky_participant_add(c, APP, "s-bare", "bob", 0),
	     "participant pending");
	STEP(sky_session_event_send(c, APP, "s-bare", JS("{\"note\":\"wet\"}")),
	     "custom event pending");
	free(local_id);
	local_id = NULL;
	STEP(sky_session_create(c, APP, "{\"name\":\"new\"}", 14, &local_id),
	     "create pending");
	STEP(sky_data_patch(c, APP, local_id, JS("{\"made\":\"offline\"}")),
	     "data patch of a session created offline");
	STEP(sky_session_close(c, APP, "s-closing"), "close pending");
#undef STEP
	return c;
}

/* ---- healthy caches ---- */

static void test_check__pending_writes_of_every_kind(void)
{
	sky_cache *c = every_write();
	/* Server state arriving under the queued writes. */
	apply(c, "s-bare", "session_properties_updated", "session",
	      json_pack("{s:{s:s}}", "properties", "site", "Plant-8"));
	expect_clean(c, "server change under queued writes");
	apply(c, "s-data", "session_data_updated", "data",
	      json_pack("{s:s}", "from", "server"));
	expect_clean(c, "server data under a queued data patch");
	sky_cache_close(c);
}

static void test_check__writes_in_flight_and_in_doubt(void)
{
	sky_cache *c = every_write();
	set_state(c, W_CREATE, SKY_OUTBOX_IN_FLIGHT);
	set_state(c, W_EVENT, SKY_OUTBOX_IN_FLIGHT);
	set_state(c, W_PATCH, SKY_OUTBOX_IN_FLIGHT);
	expect_clean(c, "writes in flight");
	set_state(c, W_CREATE, SKY_OUTBOX_IN_DOUBT);
	set_state(c, W_EVENT, SKY_OUTBOX_IN_DOUBT);
	set_state(c, W_PATCH, SKY_OUTBOX_PENDING);
	expect_clean(c, "writes in doubt");
	sky_cache_close(c);
}

typedef struct {
	sky_cache *c;
	uint64_t ids[4];
	size_t n;
	int reject;
	json_t *created; /* adopt this as the server's copy of local_id */
} deliver_ctx;

static int deliver_write(MDB_txn *txn, void *arg)
{
	deliver_ctx *d = arg;
	int drained = 0;
	if (d->created)
		return sky__outbox_adopt(txn, d->c, APP, local_id, d->created,
					 INT64_MIN + 1);
	if (d->reject)
		return sky__outbox_reject(txn, d->c, d->ids[0], 400,
					  "{\"error\":\"no\"}", NULL);
	return sky__outbox_delivered(txn, d->c, d->ids, d->n, &drained);
}

static void test_check__half_delivered_and_dead_letters(void)
{
	sky_cache *c = every_write();
	/* The session patch delivered, its other writes still queued. */
	deliver_ctx d = {c, {W_PATCH}, 1, 0, NULL};
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	expect_clean(c, "one of three writes delivered");
	/* The server made the session created offline, without data: its
	 * data patch is still queued. */
	d.created =
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:[],s:{}}", "applicationId",
		      APP, "sessionId", "s-made", "status", "open", "name",
		      "new", "createdAt", "2024-02-01T00:00:00Z", "clientRef",
		      local_id, "participants", "properties");
	CU_ASSERT_FATAL(d.created != NULL);
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	json_decref(d.created);
	d.created = NULL;
	expect_clean(c, "create delivered, its data patch queued");
	/* A dead letter beside live writes, and one alone. */
	d.reject = 1;
	d.ids[0] = W_PART;
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	expect_clean(c, "a dead letter beside live writes");
	d.ids[0] = W_CLOSE;
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	expect_clean(c, "a session whose only write is a dead letter");
	/* The rest delivered: no server copy left. */
	d.reject = 0;
	d.ids[0] = W_PROPS;
	d.ids[1] = W_DATA;
	d.n = 2;
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	expect_clean(c, "a session drained");
	d.ids[0] = W_BARE_DATA;
	d.ids[1] = W_EVENT;
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	d.ids[0] = W_LOCAL_DATA;
	d.n = 1;
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	expect_clean(c, "everything delivered or dead");
	sky_cache_close(c);
}

static void test_check__rejected_create(void)
{
	sky_cache *c = every_write();
	deliver_ctx d = {c, {W_CREATE}, 1, 1, NULL};
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	expect_clean(c, "a rejected create and its session's writes");
	CU_ASSERT(sky_outbox_drop(c, W_CREATE) == 0);
	expect_clean(c, "the rejected create dropped");
	/* A write of that session retried by hand: it waits for a create
	 * that will not come, and the session stays unmade. */
	CU_ASSERT(sky_outbox_retry(c, W_LOCAL_DATA) == 0);
	expect_clean(c, "a write of a dropped create's session retried");
	sky_cache_close(c);
}

static void test_check__events_waiting(void)
{
	sky_cache *c = two_sessions();
	/* An event for a session the cache does not know yet waits. */
	apply(c, "s-later", "session_data_updated", "data",
	      json_pack("{s:i}", "x", 1));
	expect_clean(c, "an event waiting for its session");
	new_session(c, "s-later");
	expect_clean(c, "the waiting event applied");
	sky_cache_close(c);
}

/* ---- injected faults: the outbox ---- */

static void test_check__outbox_entry_corrupt(void)
{
	sky_cache *c = every_write();
	unsigned char k[8];
	sky__put_be64(k, 77);
	raw_put(c, SKY_DB_OUTBOX, k, 8, JS("garbage"));
	expect_problem(c, "outbox entry 77 is corrupt");
	sky_cache_close(c);
}

/* The by-session queue key of entry `id` of APP/sid. */
static size_t queue_key(unsigned char *buf, const char *sid, uint64_t id)
{
	size_t n = skey(buf, sid);
	buf[n++] = '\0';
	sky__put_be64(buf + n, id);
	return n + 8;
}

static void test_check__outbox_entry_not_queued(void)
{
	sky_cache *c = every_write();
	unsigned char k[SKY_KEY_MAX];
	raw_del(c, SKY_DB_OBSESS, k, queue_key(k, "s-data", W_PROPS));
	expect_problem(c, "outbox entry 2 (app1/s-data) is missing from its "
			  "session's queue");
	sky_cache_close(c);
}

static void test_check__outbox_queue_key_corrupt(void)
{
	sky_cache *c = every_write();
	raw_put(c, SKY_DB_OBSESS, "app1", 4, JS(""));
	expect_problem(c, "a session queue key of the outbox is corrupt");
	sky_cache_close(c);
}

static void test_check__outbox_queue_names_other_entry(void)
{
	sky_cache *c = every_write();
	unsigned char k[SKY_KEY_MAX];
	/* An id with no entry, and the entry of another session. */
	raw_put(c, SKY_DB_OBSESS, k, queue_key(k, "s-data", 999), JS(""));
	expect_problem(c, "the queue of app1/s-data names outbox entry 999, "
			  "which is not one of its writes");
	raw_del(c, SKY_DB_OBSESS, k, queue_key(k, "s-data", 999));
	raw_put(c, SKY_DB_OBSESS, k, queue_key(k, "s-data", W_PART), JS(""));
	expect_problem(c, "the queue of app1/s-data names outbox entry 5");
	sky_cache_close(c);
}

static void test_check__pending_flag_wrong(void)
{
	sky_cache *c = every_write();
	sky_record h = header_of(c, SKY_DB_SESSIONS, "s-data");
	h.flags &= ~SKY_REC_PENDING;
	put_header(c, "s-data", &h);
	expect_problem(c, "session app1/s-data is not flagged pending but has "
			  "3 queued writes");
	sky_cache_close(c);

	c = two_sessions();
	h = header_of(c, SKY_DB_SESSIONS, "s-bare");
	h.flags |= SKY_REC_PENDING;
	put_header(c, "s-bare", &h);
	expect_problem(c, "session app1/s-bare is flagged pending but has 0 "
			  "queued writes");
	sky_cache_close(c);
}

static void test_check__server_copy_missing(void)
{
	sky_cache *c = every_write();
	unsigned char k[SKY_KEY_MAX];
	raw_del(c, SKY_DB_SERVER, k, skey(k, "s-bare"));
	expect_problem(c, "session app1/s-bare has queued writes but no server "
			  "copy");
	sky_cache_close(c);
}

static void test_check__server_copy_stale(void)
{
	sky_cache *c = two_sessions();
	unsigned char k[SKY_KEY_MAX];
	MDB_val v = raw_get(c, SKY_DB_SESSIONS, "s-bare");
	CU_ASSERT_FATAL(v.mv_data != NULL);
	raw_put(c, SKY_DB_SERVER, k, skey(k, "s-bare"), v.mv_data, v.mv_size);
	free(v.mv_data);
	expect_problem(c, "session app1/s-bare keeps a server copy without "
			  "queued writes");
	sky_cache_close(c);
}

typedef struct {
	sky_cache *c;
	uint64_t docid;
} doc_ctx;

static int doc_drop(MDB_txn *txn, void *arg)
{
	doc_ctx *d = arg;
	return sky__doc_delete(txn, SKY_DBI(d->c, SKY_DB_DATA), d->docid);
}

static void test_check__server_copy_lost_data(void)
{
	sky_cache *c = two_sessions();
	/* No data patch queued: the local view's data is the server's. */
	CU_ASSERT_FATAL(
	    sky_session_patch(c, APP, "s-data", JS("{\"name\":\"x\"}")) == 0);
	expect_clean(c, "a session patch over server data");
	doc_ctx d = {c, header_of(c, SKY_DB_SERVER, "s-data").docid};
	CU_ASSERT_FATAL(sky__store_write(&c->st, doc_drop, &d) == 0);
	expect_problem(c, "the server copy of app1/s-data has lost its data");
	sky_cache_close(c);
}

/* ---- injected faults: records ---- */

static void test_check__session_key_without_separator(void)
{
	sky_cache *c = two_sessions();
	MDB_val v = raw_get(c, SKY_DB_SESSIONS, "s-bare");
	CU_ASSERT_FATAL(v.mv_data != NULL);
	raw_put(c, SKY_DB_SESSIONS, "nosep", 5, v.mv_data, v.mv_size);
	free(v.mv_data);
	expect_problem(c, "session key without a separator (5 bytes)");
	sky_cache_close(c);
}

/* Store `json` under APP/sid behind the header of s-bare. */
static void put_record(sky_cache *c, const char *sid, const char *json)
{
	sky_record h = header_of(c, SKY_DB_SESSIONS, "s-bare");
	size_t n = strlen(json);
	unsigned char *v = malloc(SKY_RECORD_HEADER + n + 1);
	unsigned char k[SKY_KEY_MAX];
	CU_ASSERT_FATAL(v != NULL);
	sky__record_encode_header(v, &h);
	memcpy(v + SKY_RECORD_HEADER, json, n + 1);
	raw_put(c, SKY_DB_SESSIONS, k, skey(k, sid), v,
		SKY_RECORD_HEADER + n + 1);
	free(v);
}

static void test_check__session_record_corrupt(void)
{
	sky_cache *c = two_sessions();
	unsigned char k[SKY_KEY_MAX];
	raw_put(c, SKY_DB_SESSIONS, k, skey(k, "s-bad"), JS("short"));
	expect_problem(c, "session app1/s-bad: corrupt session record "
			  "(5 bytes)");
	sky_cache_close(c);
}

static void test_check__session_json_corrupt(void)
{
	sky_cache *c = two_sessions();
	put_record(c, "s-bare", "{\"applicationId\":");
	expect_problem(c, "session app1/s-bare: corrupt session JSON");
	/* Its index entries no longer have a record that expects them. */
	expect_problem(c, "index: 8 entries but only 4 expected");
	sky_cache_close(c);
}

static void test_check__index_entry_malformed(void)
{
	sky_cache *c = two_sessions();
	raw_put(c, SKY_DB_INDEX, JS("x"), JS("abc"));
	expect_problem(c, "index: malformed entry under");
	sky_cache_close(c);
}

static void test_check__session_invalid(void)
{
	sky_cache *c = two_sessions();
	put_record(c, "s-bare",
		   "{\"applicationId\":\"app1\",\"sessionId\":"
		   "\"s-bare\",\"status\":17}");
	expect_problem(c, "session app1/s-bare: session");
	sky_cache_close(c);
}

static void test_check__session_ids_differ_from_key(void)
{
	sky_cache *c = two_sessions();
	MDB_val v = raw_get(c, SKY_DB_SESSIONS, "s-bare");
	unsigned char k[SKY_KEY_MAX];
	CU_ASSERT_FATAL(v.mv_data != NULL);
	raw_put(c, SKY_DB_SESSIONS, k, skey(k, "s-other"), v.mv_data,
		v.mv_size);
	free(v.mv_data);
	expect_problem(c, "session app1/s-other: ids in the record differ from "
			  "its key");
	sky_cache_close(c);
}

static void test_check__session_created_at_differs(void)
{
	sky_cache *c = two_sessions();
	sky_record h = header_of(c, SKY_DB_SESSIONS, "s-bare");
	h.created_us += 1000000;
	put_header(c, "s-bare", &h);
	expect_problem(c, "session app1/s-bare: createdAt differs from the "
			  "record header");
	sky_cache_close(c);
}

static void test_check__session_data_damaged(void)
{
	sky_cache *c = two_sessions();
	/* A member of s-bare's document, which has no header. */
	unsigned char k[8 + 4 + 1];
	sky__put_be64(k, header_of(c, SKY_DB_SESSIONS, "s-bare").docid);
	sky__put_be32(k + 8, 0);
	k[12] = 'x';
	raw_put(c, SKY_DB_DATA, k, sizeof(k), JS("v1"));
	expect_problem(c, "members without a header");
	sky_cache_close(c);
}

/* ---- injected faults: applications, roles, events ---- */

static void test_check__application_damaged(void)
{
	sky_cache *c = two_sessions();
	raw_put(c, SKY_DB_APPS, "app2", 4, JS("{}"));
	expect_problem(c, "application #1: not NUL-terminated");
	raw_put(c, SKY_DB_APPS, "app2", 4, JZ("{\"applicationId\""));
	expect_problem(c, "application #1: bad JSON");
	raw_put(c, SKY_DB_APPS, "app2", 4, JZ("{\"name\":1}"));
	expect_problem(c, "application #1: application");
	sky_cache_close(c);
}

static void test_check__role_damaged(void)
{
	sky_cache *c = two_sessions();
	unsigned char k[SKY_KEY_MAX];
	size_t kl = sky__key2(k, sizeof(k), APP, "inspector");
	raw_put(c, SKY_DB_ROLES, k, kl, JZ("["));
	expect_problem(c, "role #0: bad JSON");
	raw_put(c, SKY_DB_ROLES, k, kl, JZ("{\"description\":\"x\"}"));
	expect_problem(c, "role #0: role");
	sky_cache_close(c);
}

static void test_check__custom_event_damaged(void)
{
	sky_cache *c = two_sessions();
	raw_put(c, SKY_DB_SEVENTS, "k", 1, JS("{nope"));
	expect_problem(c, "session event #0: bad JSON");
	sky_cache_close(c);
}

static void test_check__event_log_damaged(void)
{
	sky_cache *c = two_sessions();
	unsigned char seq[8];
	sky__put_be64(seq, 999);
	raw_put(c, SKY_DB_EVLOG, "ghost", 5, seq, 8);
	expect_problem(c, "event log: 4 ids but 3 sequence entries");
	raw_del(c, SKY_DB_EVLOG, JS("ghost"));
	raw_put(c, SKY_DB_EVSEQ, seq, 8, JS("ghost"));
	expect_problem(c, "event log: id 'ghost' is not indexed back");
	sky_cache_close(c);
}

static void test_check__waiting_event_damaged(void)
{
	sky_cache *c = two_sessions();
	unsigned char k[SKY_KEY_MAX];
	size_t n = skey(k, "s-none");
	k[n++] = '\0';
	sky__put_be64(k + n, 1);
	raw_put(c, SKY_DB_PENDING, k, n + 8, JS("{bad"));
	expect_problem(c, "waiting event: ");
	sky_cache_close(c);
}

static void test_check__waiting_event_of_known_session(void)
{
	sky_cache *c = two_sessions();
	unsigned char k[SKY_KEY_MAX];
	size_t n = skey(k, "s-bare");
	k[n++] = '\0';
	sky__put_be64(k + n, 1);
	const char *ev = "{\"applicationId\":\"app1\",\"sessionId\":\"s-bare\","
			 "\"eventId\":\"late\",\"createdAt\":"
			 "\"2024-03-01T00:00:00Z\",\"eventType\":"
			 "\"session_data_updated\",\"data\":{\"x\":1}}";
	raw_put(c, SKY_DB_PENDING, k, n + 8, ev, strlen(ev));
	expect_problem(c, "waiting event late: its session app1/s-bare is "
			  "known but the event was not applied");
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_check__pending_writes_of_every_kind",
	     test_check__pending_writes_of_every_kind},
	    {"test_check__writes_in_flight_and_in_doubt",
	     test_check__writes_in_flight_and_in_doubt},
	    {"test_check__half_delivered_and_dead_letters",
	     test_check__half_delivered_and_dead_letters},
	    {"test_check__rejected_create", test_check__rejected_create},
	    {"test_check__events_waiting", test_check__events_waiting},
	    {"test_check__outbox_entry_corrupt",
	     test_check__outbox_entry_corrupt},
	    {"test_check__outbox_entry_not_queued",
	     test_check__outbox_entry_not_queued},
	    {"test_check__outbox_queue_key_corrupt",
	     test_check__outbox_queue_key_corrupt},
	    {"test_check__outbox_queue_names_other_entry",
	     test_check__outbox_queue_names_other_entry},
	    {"test_check__pending_flag_wrong", test_check__pending_flag_wrong},
	    {"test_check__server_copy_missing",
	     test_check__server_copy_missing},
	    {"test_check__server_copy_stale", test_check__server_copy_stale},
	    {"test_check__server_copy_lost_data",
	     test_check__server_copy_lost_data},
	    {"test_check__session_key_without_separator",
	     test_check__session_key_without_separator},
	    {"test_check__session_record_corrupt",
	     test_check__session_record_corrupt},
	    {"test_check__session_json_corrupt",
	     test_check__session_json_corrupt},
	    {"test_check__session_invalid", test_check__session_invalid},
	    {"test_check__index_entry_malformed",
	     test_check__index_entry_malformed},
	    {"test_check__session_ids_differ_from_key",
	     test_check__session_ids_differ_from_key},
	    {"test_check__session_created_at_differs",
	     test_check__session_created_at_differs},
	    {"test_check__session_data_damaged",
	     test_check__session_data_damaged},
	    {"test_check__application_damaged",
	     test_check__application_damaged},
	    {"test_check__role_damaged", test_check__role_damaged},
	    {"test_check__custom_event_damaged",
	     test_check__custom_event_damaged},
	    {"test_check__event_log_damaged", test_check__event_log_damaged},
	    {"test_check__waiting_event_damaged",
	     test_check__waiting_event_damaged},
	    {"test_check__waiting_event_of_known_session",
	     test_check__waiting_event_of_known_session},
	    {NULL, NULL}};
	int rc = sky_test_main("check", cases);
	free(local_id);
	return rc;
}
