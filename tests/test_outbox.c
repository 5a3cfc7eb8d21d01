/*
 * test_outbox.c - the outbox's queue (queue.c), its local view (view.c)
 * and the entry point for server state (server.c), through their own
 * calls: entries come back per session in queue order and dead letters
 * are left out of the live ones; the local view is the server copy with
 * the queued writes over it, also after the server's state changed under
 * it, and becomes the server copy when the writes are delivered; a change
 * refused by the server's side still leaves the view standing; a session
 * created offline is adopted when its server copy arrives; the closed
 * test asks the index. Two loops show a write is all or nothing: every
 * allocation of jansson failing in turn, and a map that must grow many
 * times. sky_cache_check must find nothing after each step.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "error.h"
#include "index.h"
#include "json.h"
#include "outbox.h"
#include "record.h"
#include "server.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"
#include "view.h"

#define APP "app1"
#define JS(text) (text), strlen(text)

static const char *app_json =
    "{\"applicationId\":\"app1\",\"name\":\"Inspections\"}";

static sky_cache *open_cache_map(size_t map_bytes)
{
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	o.initial_map_bytes = map_bytes;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	return c;
}

static sky_cache *open_cache(void)
{
	return open_cache_map(0);
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

static void new_session(sky_cache *c, const char *sid, const char *name)
{
	apply(c, sid, "session_created", "session",
	      json_pack("{s:s,s:s,s:s,s:{s:s}}", "status", "open", "name", name,
			"createdAt", "2023-01-01T00:00:00Z", "properties",
			"site", "Plant-7"));
}

static void collect_line(const char *line, void *payload)
{
	sky_buf *b = payload;
	CU_ASSERT(sky__buf_printf(b, "%s\n", line) == 0);
}

static void expect_clean(sky_cache *c, const char *state)
{
	sky_buf buf = SKY_BUF_INIT;
	int rc = sky_cache_check(c, collect_line, &buf);
	CU_ASSERT_FATAL(sky__buf_putc(&buf, '\0') == 0);
	if (rc != 0 || *buf.data)
		fprintf(stderr, "\n%s: check says (%d):\n%s", state, rc,
			buf.data);
	CU_ASSERT(rc == 0);
	CU_ASSERT_STRING_EQUAL(buf.data, "");
	sky__buf_free(&buf);
}

/* A string member of the local view (get) or the server copy
 * (confirmed) of APP/sid, as a new string or NULL. */
static char *member(sky_cache *c, const char *sid, int confirmed,
		    const char *key)
{
	char *json = NULL;
	size_t len = 0;
	int rc = confirmed ? sky_session_get_confirmed(c, APP, sid, &json, &len)
			   : sky_session_get(c, APP, sid, &json, &len);
	if (rc < 0)
		return NULL;
	json_t *s = json_loadb(json, len, 0, NULL);
	free(json);
	const char *v = json_string_value(json_object_get(s, key));
	char *out = v ? strdup(v) : NULL;
	json_decref(s);
	return out;
}

static void expect_member(sky_cache *c, const char *sid, int confirmed,
			  const char *key, const char *want)
{
	char *got = member(c, sid, confirmed, key);
	if (!want) {
		CU_ASSERT_PTR_NULL(got);
	} else {
		CU_ASSERT_PTR_NOT_NULL(got);
		if (got && strcmp(got, want))
			fprintf(stderr, "\n%s %s.%s: '%s', not '%s'\n", sid,
				confirmed ? "confirmed" : "view", key, got,
				want);
		CU_ASSERT(got && !strcmp(got, want));
	}
	free(got);
}

/* The record flags of APP/sid and whether it keeps a server copy. */
static void record_state(sky_cache *c, const char *sid, unsigned *flags,
			 int *has_server)
{
	MDB_txn *txn;
	sky_record rec;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	CU_ASSERT_FATAL(sky__record_get(txn, c, APP, sid, &rec) == 0);
	*flags = rec.flags;
	*has_server = sky__view_server_get(txn, c, APP, sid, &rec) == 0;
	sky__store_read_end(&c->st, txn);
}

static unsigned pending(sky_cache *c, const char *sid)
{
	unsigned n = 0;
	CU_ASSERT(sky_session_pending(c, APP, sid, &n) == 0);
	return n;
}

/* The ids of the entries of APP/sid in queue order (live or all). */
static size_t entry_ids(sky_cache *c, const char *sid, int live_only,
			uint64_t *ids, size_t max)
{
	MDB_txn *txn;
	sky_ob_list l;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	CU_ASSERT_FATAL(
	    sky__ob_session_entries(txn, c, APP, sid, live_only, &l) == 0);
	size_t n = l.n;
	for (size_t i = 0; i < n && i < max; i++) {
		ids[i] = l.v[i].e.id;
		CU_ASSERT_STRING_EQUAL(l.v[i].e.sid, sid);
	}
	sky__ob_list_free(&l);
	sky__store_read_end(&c->st, txn);
	return n;
}

static void patch_name(sky_cache *c, const char *sid, const char *name)
{
	CU_ASSERT(sky_session_set_name(c, APP, sid, name) == 0);
}

/* ---- delivery results, in one write transaction each ---- */

typedef struct {
	sky_cache *c;
	uint64_t ids[4];
	size_t n;
	int reject;
	int drained;
} deliver_ctx;

static int deliver_write(MDB_txn *txn, void *arg)
{
	deliver_ctx *d = arg;
	if (d->reject)
		return sky__outbox_reject(txn, d->c, d->ids[0], 400,
					  "{\"error\":\"no\"}", NULL);
	return sky__outbox_delivered(txn, d->c, d->ids, d->n, &d->drained);
}

/* ---- the queue ---- */

static void test_outbox__queue_order(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s-a", "a");
	new_session(c, "s-b", "b");
	/* Interleaved: ids 1, 3, 5 for s-a and 2, 4 for s-b. */
	patch_name(c, "s-a", "a1");
	patch_name(c, "s-b", "b1");
	CU_ASSERT(sky_data_patch(c, APP, "s-a", JS("{\"x\":1}")) == 0);
	CU_ASSERT(sky_session_event_send(c, APP, "s-b", JS("{\"k\":\"v\"}")) ==
		  0);
	patch_name(c, "s-a", "a2");
	uint64_t ids[8];
	CU_ASSERT_FATAL(entry_ids(c, "s-a", 1, ids, 8) == 3);
	CU_ASSERT(ids[0] == 1 && ids[1] == 3 && ids[2] == 5);
	CU_ASSERT_FATAL(entry_ids(c, "s-b", 1, ids, 8) == 2);
	CU_ASSERT(ids[0] == 2 && ids[1] == 4);
	/* A dead letter stays in the queue but is not live. */
	deliver_ctx d = {c, {3}, 1, 1, 0};
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	CU_ASSERT(entry_ids(c, "s-a", 0, ids, 8) == 3);
	CU_ASSERT_FATAL(entry_ids(c, "s-a", 1, ids, 8) == 2);
	CU_ASSERT(ids[0] == 1 && ids[1] == 5);
	CU_ASSERT(pending(c, "s-a") == 2);
	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	CU_ASSERT(sky_outbox_counts_get(c, &n) == 0);
	CU_ASSERT(n.pending == 4 && n.rejected == 1);
	/* The by-session key names the entry's session and id. */
	unsigned char k1[SKY_KEY_MAX], k2[SKY_KEY_MAX];
	size_t l1 = sky__ob_queue_key(k1, APP, "s-a", 1);
	size_t l2 = sky__ob_queue_key(k2, APP, "s-a", 5);
	CU_ASSERT(l1 > 8 && l1 == l2 && memcmp(k1, k2, l1) < 0);
	expect_clean(c, "interleaved writes and a dead letter");
	sky_cache_close(c);
}

/* ---- the view over the server's state ---- */

static void test_outbox__view_over_server(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s1", "server name");
	unsigned flags;
	int has_server;
	record_state(c, "s1", &flags, &has_server);
	CU_ASSERT(!(flags & SKY_REC_PENDING) && !has_server);
	patch_name(c, "s1", "my name");
	record_state(c, "s1", &flags, &has_server);
	CU_ASSERT((flags & SKY_REC_PENDING) && has_server);
	expect_member(c, "s1", 0, "name", "my name");
	expect_member(c, "s1", 1, "name", "server name");
	/* The server changes another field: it lands on the server copy,
	 * and the local view keeps the queued write over it. */
	apply(c, "s1", "session_updated", "session",
	      json_pack("{s:s}", "description", "from the server"));
	expect_member(c, "s1", 0, "name", "my name");
	expect_member(c, "s1", 0, "description", "from the server");
	expect_member(c, "s1", 1, "name", "server name");
	expect_member(c, "s1", 1, "description", "from the server");
	expect_clean(c, "a server change under a queued write");
	/* Delivered: the view is the server copy, kept aside no more. */
	deliver_ctx d = {c, {1}, 1, 0, 0};
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	CU_ASSERT(d.drained == 1);
	record_state(c, "s1", &flags, &has_server);
	CU_ASSERT(!(flags & SKY_REC_PENDING) && !has_server);
	expect_member(c, "s1", 0, "name", "my name");
	expect_member(c, "s1", 1, "name", "my name");
	CU_ASSERT(pending(c, "s1") == 0);
	expect_clean(c, "the write delivered");
	sky_cache_close(c);
}

static void test_outbox__delivered_with_more_queued(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s1", "server name");
	patch_name(c, "s1", "first");
	CU_ASSERT(sky_session_set_description(c, APP, "s1", "second") == 0);
	deliver_ctx d = {c, {1}, 1, 0, 0};
	CU_ASSERT_FATAL(sky__store_write(&c->st, deliver_write, &d) == 0);
	CU_ASSERT(d.drained == 0);
	/* The server copy has the delivered write, the view both. */
	expect_member(c, "s1", 1, "name", "first");
	expect_member(c, "s1", 1, "description", NULL);
	expect_member(c, "s1", 0, "description", "second");
	CU_ASSERT(pending(c, "s1") == 1);
	expect_clean(c, "one of two writes delivered");
	sky_cache_close(c);
}

/* ---- the entry point for server state ---- */

typedef struct {
	sky_cache *c;
	const char *sid;
	int calls;
	int refuse;
	int result; /* what sky__server_write returned */
} change_ctx;

/* A server change: the description becomes "changed", or is refused
 * before any write. */
static int change_description(MDB_txn *txn, void *arg)
{
	change_ctx *x = arg;
	x->calls++;
	if (x->refuse)
		return sky__error_input("refused");
	sky_record rec;
	int rc = sky__record_get(txn, x->c, APP, x->sid, &rec);
	if (rc < 0)
		return rc;
	/* The change sees the server's state, not the local view. */
	CU_ASSERT(!(rec.flags & SKY_REC_PENDING));
	json_t *old = sky__record_json(&rec);
	json_t *now = json_deep_copy(old);
	CU_ASSERT_FATAL(now != NULL);
	CU_ASSERT(json_object_set_new(now, "description",
				      json_string("changed")) == 0);
	rc = sky__record_put(txn, x->c, &rec, now, old, rec.created_us);
	json_decref(old);
	json_decref(now);
	return rc;
}

/* The caller commits whatever the change returned (as the events'
 * batch does for a refused event). */
static int server_write_txn(MDB_txn *txn, void *arg)
{
	change_ctx *x = arg;
	x->result = sky__server_write(txn, x->c, APP, x->sid, NULL,
				      change_description, x);
	return x->result == SKY_EINVAL ? 0 : x->result;
}

static void test_outbox__server_write(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s1", "server name");
	/* No queued writes: the change is all there is. */
	change_ctx x = {c, "s1", 0, 0, 0};
	CU_ASSERT_FATAL(sky__store_write(&c->st, server_write_txn, &x) == 0);
	CU_ASSERT(x.calls == 1 && x.result == 0);
	expect_member(c, "s1", 0, "description", "changed");
	/* With one queued: the change lands on the server copy. */
	patch_name(c, "s1", "mine");
	CU_ASSERT(sky_session_set_description(c, APP, "s1", "local") == 0);
	x.calls = 0;
	CU_ASSERT_FATAL(sky__store_write(&c->st, server_write_txn, &x) == 0);
	CU_ASSERT(x.calls == 1 && x.result == 0);
	expect_member(c, "s1", 0, "name", "mine");
	expect_member(c, "s1", 0, "description", "local");
	expect_member(c, "s1", 1, "description", "changed");
	expect_clean(c, "a change under queued writes");
	/* Refused and committed: the local view stands again. */
	x.refuse = 1;
	x.calls = 0;
	CU_ASSERT_FATAL(sky__store_write(&c->st, server_write_txn, &x) == 0);
	CU_ASSERT(x.calls == 1 && x.result == SKY_EINVAL);
	unsigned flags;
	int has_server;
	record_state(c, "s1", &flags, &has_server);
	CU_ASSERT((flags & SKY_REC_PENDING) && has_server);
	expect_member(c, "s1", 0, "name", "mine");
	expect_clean(c, "a refused change committed");
	sky_cache_close(c);
}

static void test_outbox__adopt_on_arrival(void)
{
	sky_cache *c = open_cache();
	char *local = NULL;
	CU_ASSERT_FATAL(
	    sky_session_create(c, APP, JS("{\"name\":\"new\"}"), &local) == 0);
	CU_ASSERT(sky_data_patch(c, APP, local, JS("{\"x\":1}")) == 0);
	CU_ASSERT(pending(c, local) == 2);
	/* The server's copy arrives by a read before the create's answer. */
	json_t *s =
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:[],s:{}}", "applicationId",
		      APP, "sessionId", "s-made", "status", "open", "name",
		      "new", "createdAt", "2024-02-01T00:00:00Z", "clientRef",
		      local, "participants", "properties");
	char *text = json_dumps(s, JSON_COMPACT);
	json_decref(s);
	CU_ASSERT_FATAL(text != NULL);
	CU_ASSERT(sky_mirror_session_put(c, JS(text), NULL, 0, 1) == 0);
	free(text);
	MDB_txn *txn;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	const char *to = sky__outbox_alias(txn, c, APP, local);
	CU_ASSERT(to && !strcmp(to, "s-made"));
	sky_record rec;
	CU_ASSERT(sky__record_get(txn, c, APP, local, &rec) == SKY_ENOTFOUND);
	sky__store_read_end(&c->st, txn);
	/* The create is done; its data patch waits under the server id. */
	uint64_t ids[4];
	CU_ASSERT(entry_ids(c, local, 0, ids, 4) == 0);
	CU_ASSERT_FATAL(entry_ids(c, "s-made", 1, ids, 4) == 1);
	CU_ASSERT(ids[0] == 2);
	CU_ASSERT(pending(c, local) == 1); /* the local id still reads */
	expect_clean(c, "a created session adopted on arrival");
	free(local);
	sky_cache_close(c);
}

static void test_outbox__closed_by_index(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s1", "one");
	MDB_txn *txn;
	sky_record rec;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	CU_ASSERT_FATAL(sky__record_get(txn, c, APP, "s1", &rec) == 0);
	CU_ASSERT(sky__index_has_value(txn, c, APP, SKY_IXF_STATUS, "open", 4,
				       "s1", rec.created_us) == 1);
	CU_ASSERT(sky__index_has_value(txn, c, APP, SKY_IXF_STATUS, "closed", 6,
				       "s1", rec.created_us) == 0);
	CU_ASSERT(sky__index_has_value(txn, c, APP, SKY_IXF_STATUS, "open", 4,
				       "s1", rec.created_us + 1) == 0);
	sky__store_read_end(&c->st, txn);
	CU_ASSERT(sky_session_close(c, APP, "s1") == 0);
	CU_ASSERT(sky_session_set_name(c, APP, "s1", "late") == SKY_EINVAL);
	CU_ASSERT(pending(c, "s1") == 1);
	expect_clean(c, "a write to a closed session refused");
	sky_cache_close(c);
}

/* ---- all or nothing ---- */

static long alloc_calls, alloc_fail_at = -1;

/* No header: blocks allocated before the hook are freed through it. */
static void *failing_malloc(size_t n)
{
	if (alloc_calls++ == alloc_fail_at)
		return NULL;
	return malloc(n);
}

/* The outbox's own check (obcheck.c): queue, flags and server copies. */
static void expect_outbox_clean(sky_cache *c, long at)
{
	MDB_txn *txn;
	sky_buf buf = SKY_BUF_INIT;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	int rc = sky__outbox_check(txn, c, &buf);
	sky__store_read_end(&c->st, txn);
	if (rc != 0)
		fprintf(stderr, "\nallocation %ld failed: %.*s", at,
			(int)buf.len, buf.data ? buf.data : "");
	CU_ASSERT(rc == 0);
	sky__buf_free(&buf);
}

/*
 * Every allocation of jansson fails in turn during a batch of two writes
 * (the first write of s1, which keeps the server copy aside, and one laid
 * on the view of s2) until a run allocates less than the failure point:
 * each run queues both writes or neither, and the outbox agrees with the
 * sessions after each. Only the outbox's check: jansson (2.14) can lose a
 * byte of a string it parses when an allocation fails in its lexer, and
 * reports success, so the record laid down then may hold that text; the
 * whole cache check names it (a jansson fault, not the outbox's).
 */
static void test_outbox__allocation(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s1", "server name");
	new_session(c, "s2", "other");
	patch_name(c, "s2", "queued"); /* s2 already has a local view */
	json_malloc_t old_malloc;
	json_free_t old_free;
	json_get_alloc_funcs(&old_malloc, &old_free);
	unsigned failures = 0, successes = 0;
	long at;
	for (at = 0; at < 5000; at++) {
		unsigned before1 = pending(c, "s1"), before2 = pending(c, "s2");
		sky_write w[2] = {{SKY_WRITE_PATCH, APP, "s1",
				   JS("{\"name\":\"n\"}"), 0, NULL, 0, NULL},
				  {SKY_WRITE_DATA, APP, "s2",
				   JS("{\"d\":{\"e\":[1,2]}}"), 0, NULL, 0,
				   NULL}};
		json_set_alloc_funcs(failing_malloc, free);
		alloc_calls = 0;
		alloc_fail_at = at;
		int rc = sky_write_batch(c, w, 2);
		json_set_alloc_funcs(old_malloc, old_free);
		alloc_fail_at = -1;
		for (int i = 0; i < 2; i++) {
			free(w[i].error);
			free(w[i].new_session_id);
		}
		unsigned after1 = pending(c, "s1"), after2 = pending(c, "s2");
		if (rc == 0) {
			successes++;
			CU_ASSERT(after1 == before1 + 1);
			CU_ASSERT(after2 == before2 + 1);
		} else {
			failures++;
			CU_ASSERT(after1 == before1 && after2 == before2);
		}
		expect_outbox_clean(c, at);
		if (alloc_calls <= at)
			break; /* nothing failed: every allocation was tried */
	}
	CU_ASSERT(at < 5000);
	CU_ASSERT(failures > 0 && successes > 0);
	CU_ASSERT(pending(c, "s1") == successes);
	CU_ASSERT(pending(c, "s2") == successes + 1);
	expect_member(c, "s1", 0, "name", "n");
	expect_member(c, "s1", 1, "name", "server name");
	sky_cache_close(c);
}

static void test_outbox__map_grows(void)
{
	/* A small first map: the writes below grow it many times, each
	 * growth running the write's transaction again from the start. */
	sky_cache *c = open_cache_map(256 * 1024);
	new_session(c, "s1", "server name");
	char body[600];
	memset(body, 'x', sizeof(body));
	for (int i = 0; i < 400; i++) {
		char json[700];
		snprintf(json, sizeof(json), "{\"k%d\":\"%.*s\"}", i,
			 (int)sizeof(body) - 1, body);
		CU_ASSERT_FATAL(sky_data_patch(c, APP, "s1", JS(json)) == 0);
	}
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.map_bytes > 256 * 1024);
	CU_ASSERT(pending(c, "s1") == 400);
	uint64_t ids[400];
	CU_ASSERT_FATAL(entry_ids(c, "s1", 1, ids, 400) == 400);
	int ordered = 1;
	for (int i = 1; i < 400; i++)
		ordered &= ids[i] == ids[i - 1] + 1;
	CU_ASSERT(ordered && ids[0] == 1);
	expect_clean(c, "after the map grew");
	sky_cache_close(c);
}

/*
 * The ids a batch takes come from one counter, read and written once per
 * transaction: consecutive across batches, across a map growth (which
 * runs a batch's transaction again) and across a close, never reused.
 */
static void test_outbox__batch_ids(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	o.initial_map_bytes = 256 * 1024;
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	new_session(c, "s1", "server name");
	static char bodies[5][700];
	uint64_t next = 1;
	int ordered = 1;
	for (int round = 0; round < 60; round++) {
		sky_write w[5];
		for (int i = 0; i < 5; i++) {
			int n =
			    snprintf(bodies[i], sizeof(bodies[i]),
				     "{\"k%d_%d\":\"%0600d\"}", round, i, i);
			w[i] = (sky_write){SKY_WRITE_DATA, APP,	      "s1",
					   bodies[i],	   (size_t)n, 0,
					   NULL,	   0,	      NULL};
		}
		int rc = sky_write_batch(c, w, 5);
		if (rc)
			fprintf(stderr, "\nbatch %d: %s (%s)\n", round,
				sky_error_last()->message,
				w[0].error ? w[0].error : "");
		CU_ASSERT_FATAL(rc == 0);
		for (int i = 0; i < 5; i++)
			ordered &= w[i].id == next++;
		if (round == 30) {
			sky_cache_close(c);
			CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
		}
	}
	CU_ASSERT(ordered);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.map_bytes > 256 * 1024);
	uint64_t ids[300];
	CU_ASSERT_FATAL(entry_ids(c, "s1", 1, ids, 300) == 300);
	CU_ASSERT(ids[0] == 1 && ids[299] == 300);
	expect_clean(c, "after batches");
	sky_cache_close(c);
}

/* The body of the newest outbox entry, as a new string. */
static int last_body_cb(const sky_outbox_entry *e, void *payload)
{
	char **out = payload;
	free(*out);
	*out = strdup(e->body);
	return 0;
}

/*
 * A queued write's body is stored as the library's own dump of it: the
 * caller's text as it is when it already has that form, else the dump
 * (white space, escapes, reals, -0 and big integers rewritten).
 */
static void test_outbox__body_text(void)
{
	static const char *bodies[] = {
	    "{\"a\":1,\"b\":\"x\"}",
	    "{\"z\":{\"y\":[1,-2,true,false,null,\"caf\xc3\xa9\"]},\"a\":{}}",
	    "{\"big\":123456789012345678901234567890,\"neg\":-7}",
	    "{\"e\":\"true e E\",\"t\":true}",
	    "{ \"a\" : 1 }",
	    "{\"a\":\"caf\\u00e9\",\"s\":\"a\\/b\\\"c\"}",
	    "{\"r\":1.50,\"x\":1e3,\"y\":2E-2}",
	    "{\"z\":-0,\"n\":-0.0}",
	    "{\"a\":[1,2],\n\"b\":3}\n",
	};
	sky_cache *c = open_cache();
	new_session(c, "s1", "name");
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		const char *b = bodies[i];
		CU_ASSERT_FATAL(sky_data_patch(c, APP, "s1", b, strlen(b)) ==
				0);
		char *stored = NULL;
		CU_ASSERT_FATAL(sky_outbox_list(c, last_body_cb, &stored) == 0);
		CU_ASSERT_FATAL(stored != NULL);
		json_t *v = sky__json_loadb(b, strlen(b), 0, NULL);
		CU_ASSERT_FATAL(v != NULL);
		char *dump = sky__json_dumps(v, NULL);
		CU_ASSERT_FATAL(dump != NULL);
		if (strcmp(stored, dump))
			fprintf(stderr, "\nbody %zu: stored %s, dump %s\n", i,
				stored, dump);
		CU_ASSERT_STRING_EQUAL(stored, dump);
		if (i < 4) {
			CU_ASSERT_STRING_EQUAL(stored, b);
		} else {
			CU_ASSERT(strcmp(stored, b) != 0);
		}
		free(dump);
		json_decref(v);
		free(stored);
	}
	expect_clean(c, "bodies queued");
	sky_cache_close(c);
}

/* `text` is the JSON `want` (members in any order). */
static void expect_json(const char *text, const char *want)
{
	json_t *a = json_loads(text, 0, NULL), *b = json_loads(want, 0, NULL);
	CU_ASSERT(a && b && json_equal(a, b));
	json_decref(a);
	json_decref(b);
}

/* A session's first queued write that only patches data keeps the
 * server's session text and index entries, and keeps the server's data
 * aside. */
static void test_outbox__data_only_view(void)
{
	sky_cache *c = open_cache();
	new_session(c, "s1", "server name");
	apply(c, "s1", "session_data_updated", "data",
	      json_pack("{s:i}", "n", 1));
	char *before = NULL, *after = NULL;
	size_t len;
	CU_ASSERT_FATAL(sky_session_get(c, APP, "s1", &before, &len) == 0);
	const char *p = "{\"n\":2,\"m\":\"mine\"}";
	CU_ASSERT_FATAL(sky_data_patch(c, APP, "s1", p, strlen(p)) == 0);
	unsigned flags;
	int has_server;
	record_state(c, "s1", &flags, &has_server);
	CU_ASSERT((flags & SKY_REC_PENDING) && has_server);
	CU_ASSERT_FATAL(sky_session_get(c, APP, "s1", &after, &len) == 0);
	CU_ASSERT_STRING_EQUAL(after, before);
	free(after);
	char *data = NULL;
	CU_ASSERT_FATAL(sky_data_get(c, APP, "s1", &data, &len) == 0);
	expect_json(data, "{\"n\":2,\"m\":\"mine\"}");
	free(data);
	CU_ASSERT_FATAL(sky_data_get_confirmed(c, APP, "s1", &data, &len) == 0);
	expect_json(data, "{\"n\":1}");
	free(data);
	expect_member(c, "s1", 0, "name", "server name");
	expect_clean(c, "a data-only first write");
	/* A session write after it: the view is rebuilt with both. */
	patch_name(c, "s1", "my name");
	expect_member(c, "s1", 0, "name", "my name");
	expect_member(c, "s1", 1, "name", "server name");
	CU_ASSERT_FATAL(sky_data_get(c, APP, "s1", &data, &len) == 0);
	expect_json(data, "{\"n\":2,\"m\":\"mine\"}");
	free(data);
	expect_clean(c, "a session write after a data-only one");
	free(before);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_outbox__queue_order", test_outbox__queue_order},
	    {"test_outbox__view_over_server", test_outbox__view_over_server},
	    {"test_outbox__delivered_with_more_queued",
	     test_outbox__delivered_with_more_queued},
	    {"test_outbox__server_write", test_outbox__server_write},
	    {"test_outbox__adopt_on_arrival", test_outbox__adopt_on_arrival},
	    {"test_outbox__closed_by_index", test_outbox__closed_by_index},
	    {"test_outbox__allocation", test_outbox__allocation},
	    {"test_outbox__map_grows", test_outbox__map_grows},
	    {"test_outbox__batch_ids", test_outbox__batch_ids},
	    {"test_outbox__body_text", test_outbox__body_text},
	    {"test_outbox__data_only_view", test_outbox__data_only_view},
	    {NULL, NULL}};
	return sky_test_main("outbox", cases);
}
