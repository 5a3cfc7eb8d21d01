/*
 * test_writes.c - the checks every write call makes before it changes
 * anything: a table of bad arguments for each public write function (and
 * a batch holding one), each refused with SKY_EINVAL / SKY_ELIMIT /
 * SKY_ENOTFOUND, the argument named in the message, and the outbox, the
 * local view and the session data unchanged; local ids from getrandom()
 * (EINTR and short reads retried, a failing source refused, no fallback);
 * and the validators under them: ids without C1 controls or Unicode line
 * breaks, RFC 3339 times with days that exist, event envelopes typed;
 * and a create's application version, taken only as a JSON integer >= 0
 * and queued as one.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "random.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"
#include "util.h"
#include "validate.h"

#define APP "app1"
#define SID "s-1"

static const char *const session_json =
    "{\"applicationId\":\"app1\",\"sessionId\":\"s-1\",\"status\":\"open\","
    "\"name\":\"One\",\"version\":1,\"createdAt\":\"2026-11-02T08:00:00Z\","
    "\"participants\":[],\"properties\":{\"site\":\"P7\"}}";

static sky_cache *open_realm(void)
{
	sky_cache *c = NULL;
	const char *app = "{\"applicationId\":\"app1\",\"name\":\"A\"}";
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), NULL) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app, strlen(app)) == 0);
	CU_ASSERT_FATAL(sky_mirror_session_put(c, session_json,
					       strlen(session_json), "{}", 2,
					       0) == 0);
	return c;
}

static int add_entry(const sky_outbox_entry *e, void *payload)
{
	sky_buf *b = payload;
	return sky__buf_printf(
	    b, "%llu %d %d %s %s %s\n", (unsigned long long)e->id, (int)e->op,
	    (int)e->state, e->app_id, e->session_id, e->body);
}

/* Everything a write could change, as text: the outbox, the local view
 * of the session and its data, and the pending count. */
static char *snapshot(sky_cache *c)
{
	sky_buf b = {0};
	char *json = NULL;
	unsigned pending = 0;
	CU_ASSERT_FATAL(sky_outbox_list(c, add_entry, &b) == 0);
	CU_ASSERT_FATAL(sky_session_get(c, APP, SID, &json, NULL) == 0);
	CU_ASSERT_FATAL(sky__buf_puts(&b, json) == 0);
	sky_free(json);
	CU_ASSERT_FATAL(sky_data_get(c, APP, SID, &json, NULL) == 0);
	CU_ASSERT_FATAL(sky__buf_puts(&b, json) == 0);
	sky_free(json);
	CU_ASSERT_FATAL(sky_session_pending(c, APP, SID, &pending) == 0);
	CU_ASSERT_FATAL(sky__buf_printf(&b, "\npending %u", pending) == 0);
	return sky__buf_detach(&b, NULL);
}

typedef enum {
	W_CREATE,
	W_PATCH,
	W_PROPS,
	W_NAME,
	W_DESC,
	W_CLOSE,
	W_DATA,
	W_PARTICIPANT,
	W_EVENT,
	W_BATCH, /* a good data patch, then the bad write as a patch */
} write_kind;

typedef struct {
	write_kind kind;
	const char *app, *sid;
	const char *arg; /* JSON, the name, the participant id */
	int group;	 /* W_PARTICIPANT */
	int want;
	const char *needle;
} bad_write;

static int do_write(sky_cache *c, const bad_write *w)
{
	size_t len = w->arg ? strlen(w->arg) : 0;
	char *sid = NULL;
	int rc;
	switch (w->kind) {
	case W_CREATE:
		rc = sky_session_create(c, w->app, w->arg, len, &sid);
		CU_ASSERT(rc == 0 || sid == NULL);
		sky_free(sid);
		return rc;
	case W_PATCH: return sky_session_patch(c, w->app, w->sid, w->arg, len);
	case W_PROPS:
		return sky_session_set_properties(c, w->app, w->sid, w->arg,
						  len);
	case W_NAME: return sky_session_set_name(c, w->app, w->sid, w->arg);
	case W_DESC:
		return sky_session_set_description(c, w->app, w->sid, w->arg);
	case W_CLOSE: return sky_session_close(c, w->app, w->sid);
	case W_DATA: return sky_data_patch(c, w->app, w->sid, w->arg, len);
	case W_PARTICIPANT:
		return sky_participant_add(c, w->app, w->sid, w->arg, w->group);
	case W_EVENT:
		return sky_session_event_send(c, w->app, w->sid, w->arg, len);
	case W_BATCH: {
		sky_write ws[2] = {
		    {SKY_WRITE_DATA, APP, SID, "{\"a\":1}", 7, 0, NULL, 0,
		     NULL},
		    {SKY_WRITE_PATCH, w->app, w->sid, w->arg, len, 0, NULL, 0,
		     NULL},
		};
		rc = sky_write_batch(c, ws, 2);
		CU_ASSERT(ws[0].result == 0 && ws[0].error == NULL);
		CU_ASSERT(ws[1].result == rc);
		CU_ASSERT(rc == 0 || ws[1].error != NULL);
		sky_free(ws[1].error);
		return rc;
	}
	}
	return -1;
}

static char long_value[SKY_MAX_PROPERTY_VALUE_BYTES + 64];
static char long_id[SKY_MAX_ID_BYTES + 2];

static void test_writes__bad_arguments(void)
{
	memset(long_id, 'i', sizeof(long_id) - 1);
	snprintf(long_value, sizeof(long_value), "{\"properties\":{\"k\":\"");
	size_t o = strlen(long_value);
	memset(long_value + o, 'v', SKY_MAX_PROPERTY_VALUE_BYTES + 1);
	strcpy(long_value + o + SKY_MAX_PROPERTY_VALUE_BYTES + 1, "\"}}");
	const char *long_props = long_value + strlen("{\"properties\":");
	char long_props_copy[sizeof(long_value)];
	snprintf(long_props_copy, sizeof(long_props_copy), "%.*s",
		 (int)(strlen(long_props) - 1), long_props);

	const bad_write table[] = {
	    /* ids, through several calls */
	    {W_PATCH, APP, "s\x01", "{\"name\":\"x\"}", 0, SKY_EINVAL,
	     "session id"},
	    {W_PATCH, APP, "s\xc2\x85", "{\"name\":\"x\"}", 0, SKY_EINVAL,
	     "U+0085"},
	    {W_DATA, APP, "s\xe2\x80\xa8", "{}", 0, SKY_EINVAL, "U+2028"},
	    {W_EVENT, APP, "s\xe2\x80\xa9", "{}", 0, SKY_EINVAL, "U+2029"},
	    {W_CLOSE, APP, "s/1", NULL, 0, SKY_EINVAL, "'/'"},
	    {W_CLOSE, APP, "s+1", NULL, 0, SKY_EINVAL, "'+'"},
	    {W_CLOSE, APP, "", NULL, 0, SKY_EINVAL, "session id"},
	    {W_CLOSE, APP, NULL, NULL, 0, SKY_EINVAL, "session id"},
	    {W_CLOSE, APP, long_id, NULL, 0, SKY_ELIMIT, "session id"},
	    {W_NAME, "a\xff", SID, "x", 0, SKY_EINVAL, "application id"},
	    {W_CREATE, "a#", NULL, "{\"name\":\"x\"}", 0, SKY_EINVAL,
	     "application id"},
	    {W_CLOSE, APP, "nope", NULL, 0, SKY_ENOTFOUND, "not in the cache"},
	    {W_CREATE, "nope", NULL, "{\"name\":\"x\"}", 0, SKY_ENOTFOUND,
	     "nope"},
	    /* create bodies */
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":\"1\"}", 0,
	     SKY_EINVAL, "version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":-1}", 0,
	     SKY_EINVAL, "version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":1.5}", 0,
	     SKY_EINVAL, "version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":\"abc\"}", 0,
	     SKY_EINVAL,
	     "version: must be a whole number >= 0 (a JSON integer), not a "
	     "string"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":4.0}", 0,
	     SKY_EINVAL, "session create: version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":1e3}", 0,
	     SKY_EINVAL, "session create: version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":true}", 0,
	     SKY_EINVAL,
	     "version: must be a whole number >= 0 (a JSON integer), not a "
	     "boolean"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":null}", 0,
	     SKY_EINVAL,
	     "version: must be a whole number >= 0 (a JSON integer), not null"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":[4]}", 0,
	     SKY_EINVAL, "session create: version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":{}}", 0,
	     SKY_EINVAL, "session create: version"},
	    {W_CREATE, APP, NULL,
	     "{\"name\":\"x\",\"version\":99999999999999999999}", 0, SKY_EINVAL,
	     "version"},
	    {W_CREATE, APP, NULL, "{\"name\":\"\"}", 0, SKY_EINVAL, "name"},
	    {W_CREATE, APP, NULL, "{\"description\":\"d\"}", 0, SKY_EINVAL,
	     "name is required"},
	    {W_CREATE, APP, NULL, "{\"name\":\"x\",\"properties\":{\"a\":1}}",
	     0, SKY_EINVAL, "properties.a"},
	    {W_CREATE, APP, NULL,
	     "{\"name\":\"x\",\"properties\":{\"\":\"v\"}}", 0, SKY_EINVAL,
	     "empty property name"},
	    {W_CREATE, APP, NULL, "[\"name\"]", 0, SKY_EINVAL, "JSON object"},
	    {W_CREATE, APP, NULL, "{\"name\":\"\xff\"}", 0, SKY_EINVAL,
	     "session create"},
	    {W_CREATE, APP, NULL, NULL, 0, SKY_EINVAL, "no JSON"},
	    /* patches */
	    {W_PATCH, APP, SID, "{}", 0, SKY_EINVAL, "empty"},
	    {W_PATCH, APP, SID, "[]", 0, SKY_EINVAL, "JSON object"},
	    {W_PATCH, APP, SID, "{\"status\":\"open\"}", 0, SKY_EINVAL,
	     "status"},
	    {W_PATCH, APP, SID, "{\"name\":null}", 0, SKY_EINVAL, "name"},
	    {W_PATCH, APP, SID, "{\"name\":\"a\",\"name\":\"b\"}", 0,
	     SKY_EINVAL, "session patch"},
	    {W_PATCH, APP, SID, long_value, 0, SKY_ELIMIT, "properties.k"},
	    {W_PROPS, APP, SID, "[]", 0, SKY_EINVAL, "properties"},
	    {W_PROPS, APP, SID, "{\"a\":{}}", 0, SKY_EINVAL, "properties.a"},
	    {W_PROPS, APP, SID, "{\"a\":\"\xc3\x28\"}", 0, SKY_EINVAL,
	     "properties"},
	    {W_PROPS, APP, SID, "{", 0, SKY_EINVAL, "properties"},
	    {W_PROPS, APP, SID, NULL, 0, SKY_EINVAL, "properties"},
	    {W_PROPS, APP, SID, long_props_copy, 0, SKY_ELIMIT, "properties.k"},
	    {W_NAME, APP, SID, "", 0, SKY_EINVAL, "name"},
	    {W_NAME, APP, SID, NULL, 0, SKY_EINVAL, "session name"},
	    {W_NAME, APP, SID, "x\xff", 0, SKY_EINVAL,
	     "session name: invalid UTF-8 at byte 1"},
	    {W_DESC, APP, SID, "\xed\xa0\x80", 0, SKY_EINVAL,
	     "session description"},
	    /* data, participants, events */
	    {W_DATA, APP, SID, "[1]", 0, SKY_EINVAL,
	     "data patch: must be a JSON object"},
	    {W_DATA, APP, SID, "3", 0, SKY_EINVAL, "data patch"},
	    {W_DATA, APP, SID, "{\"a\":", 0, SKY_EINVAL, "data patch"},
	    {W_PARTICIPANT, APP, SID, "", 0, SKY_EINVAL, "participant id"},
	    {W_PARTICIPANT, APP, SID, NULL, 0, SKY_EINVAL, "participant id"},
	    {W_PARTICIPANT, APP, SID, "b\xc2\x9f", 0, SKY_EINVAL,
	     "participant id"},
	    {W_PARTICIPANT, APP, SID, "b\xff", 0, SKY_EINVAL, "participant id"},
	    {W_PARTICIPANT, APP, SID, "bob", 2, SKY_EINVAL, "participant type"},
	    {W_PARTICIPANT, APP, SID, "bob", -1, SKY_EINVAL,
	     "participant type"},
	    {W_EVENT, APP, SID, "[1]", 0, SKY_EINVAL, "custom event"},
	    {W_EVENT, APP, SID, "", 0, SKY_EINVAL, "custom event"},
	    /* a batch is refused whole */
	    {W_BATCH, APP, SID, "{\"status\":\"reopened\"}", 0, SKY_EINVAL,
	     "status"},
	    {W_BATCH, APP, "s\xc2\x85", "{\"name\":\"x\"}", 0, SKY_EINVAL,
	     "U+0085"},
	};
	sky_cache *c = open_realm();
	/* Something queued already, so "unchanged" covers the outbox. */
	CU_ASSERT_FATAL(sky_data_patch(c, APP, SID, "{\"x\":1}", 7) == 0);
	char *before = snapshot(c);
	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		const bad_write *w = &table[i];
		sky_error_clear();
		int rc = do_write(c, w);
		const char *msg = sky_error_last()->message;
		if (rc != w->want || !strstr(msg, w->needle)) {
			fprintf(stderr,
				"\ncase %zu: rc %d (wanted %d), '%s' "
				"(wanted '%s')\n",
				i, rc, w->want, msg, w->needle);
			CU_FAIL("bad write not refused as expected");
		}
		char *after = snapshot(c);
		if (strcmp(before, after)) {
			fprintf(stderr, "\ncase %zu changed the cache\n", i);
			CU_FAIL("a refused write changed something");
		}
		free(after);
	}
	/* The same calls go through with good arguments. */
	CU_ASSERT(sky_session_set_name(c, APP, SID, "Zürich") == 0);
	CU_ASSERT(sky_session_set_properties(c, APP, SID, "{\"a\":\"b=c\"}",
					     11) == 0);
	CU_ASSERT(sky_participant_add(c, APP, SID, "crew", 1) == 0);
	char *after = snapshot(c);
	CU_ASSERT(strcmp(before, after) != 0);
	CU_ASSERT_PTR_NOT_NULL(strstr(after, "Zürich"));
	CU_ASSERT_PTR_NOT_NULL(strstr(after, "\"a\":\"b=c\""));
	free(after);
	free(before);
	sky_cache_close(c);
}

/* A fake getrandom: EINTR first, then 3 bytes at a time, then fails
 * with ENOSYS once `budget` bytes are given. */
static int fake_calls;
static size_t fake_budget;
static ssize_t fake_getrandom(void *buf, size_t len, unsigned flags)
{
	(void)flags;
	if (fake_calls++ == 0) {
		errno = EINTR;
		return -1;
	}
	if (fake_budget == 0) {
		errno = ENOSYS;
		return -1;
	}
	size_t n = len < 3 ? len : 3;
	if (n > fake_budget)
		n = fake_budget;
	memset(buf, 0xab, n);
	fake_budget -= n;
	return (ssize_t)n;
}

static int is_local_id(const char *id)
{
	if (!id || strlen(id) != 38 || strncmp(id, "local-", 6))
		return 0;
	return strspn(id + 6, "0123456789abcdef") == 32;
}

static void test_writes__local_ids(void)
{
	char a[SKY_LOCAL_ID_SIZE], b[SKY_LOCAL_ID_SIZE];
	CU_ASSERT(sky__local_id(a) == 0 && is_local_id(a));
	CU_ASSERT(sky__local_id(b) == 0 && is_local_id(b));
	CU_ASSERT(strcmp(a, b) != 0);

	/* EINTR and short reads are retried until 16 bytes are in. */
	fake_calls = 0;
	fake_budget = 16;
	sky__random_set_source(fake_getrandom);
	CU_ASSERT(sky__local_id(a) == 0);
	CU_ASSERT_STRING_EQUAL(a, "local-abababababababababababababababab");
	CU_ASSERT(fake_calls == 1 + 6); /* EINTR, then 3+3+3+3+3+1 */

	/* A source that fails makes the create fail, and nothing is queued:
	 * no weaker generator takes over. */
	sky_cache *c = open_realm();
	char *before = snapshot(c);
	fake_calls = 1;
	fake_budget = 5;
	char *sid = NULL;
	const char *body = "{\"name\":\"x\"}";
	CU_ASSERT(sky_session_create(c, APP, body, strlen(body), &sid) == -1);
	CU_ASSERT_PTR_NULL(sid);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "getrandom"));
	CU_ASSERT(sky_error_last()->native == ENOSYS);
	char *after = snapshot(c);
	CU_ASSERT_STRING_EQUAL(before, after);
	free(after);
	free(before);
	sky__random_set_source(NULL);
	CU_ASSERT(sky_session_create(c, APP, body, strlen(body), &sid) == 0);
	CU_ASSERT(is_local_id(sid));
	sky_free(sid);
	sky_cache_close(c);
}

static void test_writes__ids(void)
{
	CU_ASSERT(sky__check_id("Zürich-\xe2\x80\xa7", "id") == 0); /* U+2027 */
	CU_ASSERT(sky__check_id("a\xc2\xa0"
				"b",
				"id") == 0); /* U+00A0 */
	static const char *const bad[] = {
	    "a\x1f",	     "a\x7f",	  "a\xc2\x80",
	    "a\xc2\x85",     "a\xc2\x9f", "a\xe2\x80\xa8",
	    "a\xe2\x80\xa9", "a\xc0\x80", "a\xed\xa0\x80",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT(sky__check_id(bad[i], "the id") == SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "the id"));
	CU_ASSERT(sky__check_write_id("s-1", "sid") == 0);
	CU_ASSERT(sky__check_write_id("a/b", "sid") == SKY_EINVAL);
	CU_ASSERT(sky__check_write_id("a#", "sid") == SKY_EINVAL);
	CU_ASSERT(sky__check_text("ok", 2, "t") == 0);
	CU_ASSERT(sky__check_text("ok!", 2, "t") == SKY_ELIMIT);
	CU_ASSERT(sky__check_text("\xf4\x90\x80\x80", 0, "t") == SKY_EINVAL);
	CU_ASSERT(sky__check_text(NULL, 0, "t") == SKY_EINVAL);
}

static void test_writes__times(void)
{
	int64_t us;
	static const char *const good[] = {
	    "2024-02-29T00:00:00Z", "2000-02-29T12:00:00Z",
	    "2023-12-31T23:59:60Z", "2024-04-30T00:00:00+14:00",
	    "2024-01-31T23:59:59.999999Z"};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		CU_ASSERT(sky__parse_time(good[i], &us) == 0);
	static const char *const bad[] = {
	    "2024-02-31T00:00:00Z",	 "2023-02-29T00:00:00Z",
	    "1900-02-29T00:00:00Z",	 "2024-04-31T00:00:00Z",
	    "2024-06-31T00:00:00Z",	 "2024-09-31T00:00:00Z",
	    "2024-11-31T00:00:00Z",	 "2024-01-32T00:00:00Z",
	    "2024-13-01T00:00:00Z",	 "2024-00-10T00:00:00Z",
	    "2024-01-00T00:00:00Z",	 "2024-01-01T24:00:00Z",
	    "2024-01-01T00:60:00Z",	 "2024-01-01T00:00:61Z",
	    "2024-01-01T00:00:00+24:00", "2024-01-01T00:00:00+01:60"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (sky__parse_time(bad[i], &us) != -1) {
			fprintf(stderr, "\naccepted %s\n", bad[i]);
			CU_FAIL("impossible time accepted");
		}
	}
}

static char *event_with(const char *extra, const char *created)
{
	char *out;
	CU_ASSERT_FATAL(
	    asprintf(&out,
		     "{\"applicationId\":\"app1\",\"sessionId\":"
		     "\"s-1\",\"eventId\":\"e-%s\",\"createdAt\":"
		     "\"%s\",\"eventType\":\"session_data_updated\","
		     "\"data\":{\"k\":1}%s}",
		     created, created, extra) > 0);
	return out;
}

static void test_writes__event_envelope(void)
{
	sky_cache *c = open_realm();
	static const struct {
		const char *extra, *created, *needle;
	} bad[] = {
	    {",\"version\":\"1\"", "2026-11-02T09:00:00Z", "event.version"},
	    {",\"version\":1.5", "2026-11-02T09:00:01Z", "event.version"},
	    {",\"timestamp\":true", "2026-11-02T09:00:02Z", "event.timestamp"},
	    {",\"timestamp\":-5", "2026-11-02T09:00:03Z", "event.timestamp"},
	    {",\"timestamp\":\"2024-02-31T00:00:00Z\"", "2026-11-02T09:00:04Z",
	     "event.timestamp"},
	    {"", "2024-02-31T00:00:00Z", "event.createdAt"},
	    {"", "2025-02-29T00:00:00Z", "event.createdAt"},
	};
	char *before = snapshot(c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *e = event_with(bad[i].extra, bad[i].created);
		sky_mirror_outcome o = SKY_MIRROR_APPLIED;
		int rc = sky_mirror_event_apply(c, e, strlen(e), &o);
		CU_ASSERT(rc == SKY_EINVAL && o == SKY_MIRROR_REJECTED);
		if (!strstr(sky_error_last()->message, bad[i].needle)) {
			fprintf(stderr, "\ncase %zu: '%s'\n", i,
				sky_error_last()->message);
			CU_FAIL("the field is not named");
		}
		free(e);
	}
	char *after = snapshot(c);
	CU_ASSERT_STRING_EQUAL(before, after);
	free(after);
	free(before);
	/* Integer versions, string or millisecond timestamps, null. */
	static const char *const good[] = {
	    ",\"version\":2,\"timestamp\":\"2026-11-02T10:00:00Z\"",
	    ",\"version\":null,\"timestamp\":1793606400000",
	};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		char created[32];
		snprintf(created, sizeof(created), "2026-11-02T10:00:0%zuZ", i);
		char *e = event_with(good[i], created);
		sky_mirror_outcome o = SKY_MIRROR_REJECTED;
		CU_ASSERT(sky_mirror_event_apply(c, e, strlen(e), &o) == 0);
		CU_ASSERT(o == SKY_MIRROR_APPLIED);
		free(e);
	}
	sky_cache_close(c);
}

/* The last create body the outbox holds, parsed. */
static int last_create_body(const sky_outbox_entry *e, void *payload)
{
	json_t **out = payload;
	if (e->op != SKY_WRITE_CREATE)
		return 0;
	json_decref(*out);
	*out = json_loads(e->body, 0, NULL);
	return 0;
}

/* The application version of a create: the validator takes a JSON
 * integer >= 0 and nothing else; a create given one queues it as a
 * number (the body sent to the server) and shows it so, by itself and in
 * a batch. */
static void test_writes__app_version(void)
{
	json_t *ok[] = {json_integer(0), json_integer(4),
			json_integer(INT64_MAX)};
	json_t *bad[] = {json_integer(-1), json_real(4.0),  json_real(1.5),
			 json_string("4"), json_string(""), json_true(),
			 json_false(),	   json_null(),	    json_array(),
			 json_object()};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		CU_ASSERT(sky__check_app_version(ok[i], "v") == 0);
		json_decref(ok[i]);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sky_error_clear();
		CU_ASSERT(sky__check_app_version(bad[i], "the version") ==
			  SKY_EINVAL);
		CU_ASSERT(strncmp(sky_error_last()->message,
				  "the version: ", 13) == 0);
		json_decref(bad[i]);
	}
	CU_ASSERT(sky__check_app_version(NULL, "v") == SKY_EINVAL);

	sky_cache *c = open_realm();
	const char *body = "{\"name\":\"v\",\"version\":4}";
	char *sid = NULL, *text = NULL;
	CU_ASSERT_FATAL(sky_session_create(c, APP, body, strlen(body), &sid) ==
			0);
	json_t *queued = NULL;
	CU_ASSERT(sky_outbox_list(c, last_create_body, &queued) == 0);
	json_t *v = json_object_get(queued, "version");
	CU_ASSERT(json_is_integer(v) && json_integer_value(v) == 4);
	CU_ASSERT(sky_session_get(c, APP, sid, &text, NULL) == 0);
	CU_ASSERT_PTR_NOT_NULL(text && strstr(text, "\"version\":4"));
	sky_free(text);
	sky_free(sid);

	sky_write w = {SKY_WRITE_CREATE,
		       APP,
		       NULL,
		       "{\"name\":\"w\","
		       "\"version\":7}",
		       0,
		       0,
		       NULL,
		       0,
		       NULL};
	w.len = strlen(w.json);
	CU_ASSERT(sky_write_batch(c, &w, 1) == 0 && w.result == 0);
	CU_ASSERT(sky_outbox_list(c, last_create_body, &queued) == 0);
	v = json_object_get(queued, "version");
	CU_ASSERT(json_is_integer(v) && json_integer_value(v) == 7);
	sky_free(w.new_session_id);
	json_decref(queued);

	/* A batch with a bad version is refused whole, naming it. */
	sky_write ws[2] = {
	    {SKY_WRITE_DATA, APP, SID, "{\"a\":1}", 7, 0, NULL, 0, NULL},
	    {SKY_WRITE_CREATE, APP, NULL, "{\"name\":\"x\",\"version\":\"4\"}",
	     0, 0, NULL, 0, NULL},
	};
	ws[1].len = strlen(ws[1].json);
	char *before = snapshot(c);
	CU_ASSERT(sky_write_batch(c, ws, 2) == SKY_EINVAL);
	CU_ASSERT(ws[1].result == SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(ws[1].error &&
			       strstr(ws[1].error, "session create: version"));
	CU_ASSERT_PTR_NULL(ws[1].new_session_id);
	char *after = snapshot(c);
	CU_ASSERT_STRING_EQUAL(before, after);
	free(before);
	free(after);
	sky_free(ws[1].error);
	sky_free(ws[0].error);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_writes__bad_arguments", test_writes__bad_arguments},
	    {"test_writes__local_ids", test_writes__local_ids},
	    {"test_writes__ids", test_writes__ids},
	    {"test_writes__times", test_writes__times},
	    {"test_writes__event_envelope", test_writes__event_envelope},
	    {"test_writes__app_version", test_writes__app_version},
	    {NULL, NULL},
	};
	return sky_test_main("writes", cases);
}
