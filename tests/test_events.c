/*
 * test_events.c - applying server events (DESIGN.md §3) through the public
 * API: every event type, idempotence, no rollback, events waiting for
 * unknown sessions, rejection of malformed events with nothing changed,
 * the size and depth limits, batches, and direct puts of server state.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "events.h"
#include "json.h"
#include "protocol.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

static sky_cache *open_cache(void)
{
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), NULL) == 0);
	return c;
}

/* Build an event; `payload` is JSON text for "session" or "data". */
static char *ev(const char *type, const char *sid, const char *eid,
		const char *created, const char *payload_key,
		const char *payload)
{
	char *out;
	int n =
	    asprintf(&out,
		     "{\"applicationId\":\"app1\",\"sessionId\":\"%s\","
		     "\"eventId\":\"%s\",\"source\":\"test\",\"userId\":\"u1\","
		     "\"createdAt\":\"%s\",\"timestamp\":1,\"version\":1,"
		     "\"eventType\":\"%s\",\"%s\":%s}",
		     sid, eid, created, type, payload_key, payload);
	CU_ASSERT_FATAL(n > 0);
	return out;
}

static sky_mirror_outcome apply(sky_cache *c, char *event)
{
	sky_mirror_outcome o = SKY_MIRROR_REJECTED;
	int rc = sky_mirror_event_apply(c, event, strlen(event), &o);
	if (rc != 0)
		fprintf(stderr, "\napply failed: %s\n",
			sky_error_last()->message);
	CU_ASSERT(rc == 0);
	free(event);
	return o;
}

static int reject(sky_cache *c, const char *event, const char *needle)
{
	sky_mirror_outcome o = SKY_MIRROR_APPLIED;
	int rc = sky_mirror_event_apply(c, event, strlen(event), &o);
	CU_ASSERT(rc == SKY_EINVAL || rc == SKY_ELIMIT);
	CU_ASSERT(o == SKY_MIRROR_REJECTED);
	const char *msg = sky_error_last()->message;
	if (needle && !strstr(msg, needle)) {
		fprintf(stderr, "\nmessage '%s' lacks '%s'\n", msg, needle);
		CU_FAIL("error message does not name the field");
	}
	return rc;
}

static char *get(sky_cache *c, const char *sid)
{
	char *json = NULL;
	if (sky_session_get(c, "app1", sid, &json, NULL) != 0)
		return NULL;
	return json;
}

static char *data(sky_cache *c, const char *sid)
{
	char *json = NULL;
	if (sky_data_get(c, "app1", sid, &json, NULL) != 0)
		return NULL;
	return json;
}

static const char *SESSION_S1 =
    "{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"status\":\"open\","
    "\"isDraft\":false,\"version\":3,\"name\":\"Line 1\",\"description\":"
    "\"first\",\"participants\":[{\"id\":\"u1\",\"type\":\"user\"}],"
    "\"createdBy\":\"u1\",\"createdAt\":\"2024-05-01T10:00:00Z\","
    "\"modifiedBy\":\"u1\",\"modifiedAt\":\"2024-05-01T10:00:00Z\","
    "\"properties\":{\"site\":\"Plant-7\"},\"customField\":{\"x\":[1,2]}}";

static void test_events__all_six_types(void)
{
	sky_cache *c = open_cache();
	CU_ASSERT(apply(c, ev("session_created", "s1", "e1",
			      "2024-05-01T10:00:00Z", "session", SESSION_S1)) ==
		  SKY_MIRROR_APPLIED);
	char *s = get(c, "s1");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	SKY_ASSERT_JSON_EQ(s, SESSION_S1); /* unknown fields round-trip */
	free(s);

	CU_ASSERT(apply(c, ev("session_updated", "s1", "e2",
			      "2024-05-01T10:01:00Z", "session",
			      "{\"sessionId\":\"s1\",\"name\":\"Line 2\"}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_properties_updated", "s1", "e3",
			      "2024-05-01T10:02:00Z", "session",
			      "{\"properties\":{\"shift\":\"night\"}}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_data_updated", "s1", "e4",
			      "2024-05-01T10:03:00Z", "data",
			      "{\"a\":{\"b\":1,\"c\":[1,2]},\"d\":\"x\"}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_data_updated", "s1", "e5",
			      "2024-05-01T10:04:00Z", "data",
			      "{\"a\":{\"b\":null,\"c\":[3]},\"d\":null}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_event_created", "s1", "e6",
			      "2024-05-01T10:05:00Z", "data",
			      "{\"kind\":\"scan\",\"code\":42}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(
	    apply(c, ev("session_closed", "s1", "e7", "2024-05-01T10:06:00Z",
			"session", "{\"status\":\"closed\"}")) ==
	    SKY_MIRROR_APPLIED);

	s = get(c, "s1");
	json_t *j = json_loads(s, 0, NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "name")),
			       "Line 2");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(j, "status")),
			       "closed");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(j, "description")), "first");
	json_t *props = json_object_get(j, "properties");
	CU_ASSERT(json_object_size(props) == 1); /* overwritten wholesale */
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(props, "shift")), "night");
	json_decref(j);
	free(s);

	char *d = data(c, "s1");
	SKY_ASSERT_JSON_EQ(d, "{\"a\":{\"c\":[3]}}");
	free(d);

	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.custom_events == 1);
	CU_ASSERT(st.sessions == 1);
	CU_ASSERT(st.open_sessions == 0);
	CU_ASSERT(st.events_applied == 7);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

static void test_events__idempotent(void)
{
	sky_cache *c = open_cache();
	CU_ASSERT(apply(c, ev("session_created", "s1", "e1",
			      "2024-05-01T10:00:00Z", "session", SESSION_S1)) ==
		  SKY_MIRROR_APPLIED);
	/* The same data patch twice: the second must be skipped by id even
	 * though applying it again would be harmless here; an array append
	 * elsewhere would not be. */
	CU_ASSERT(apply(c, ev("session_event_created", "s1", "e2",
			      "2024-05-01T10:01:00Z", "data", "{\"n\":1}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_event_created", "s1", "e2",
			      "2024-05-01T10:01:00Z", "data", "{\"n\":1}")) ==
		  SKY_MIRROR_DUPLICATE);
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	CU_ASSERT(st.custom_events == 1);
	CU_ASSERT(st.events_skipped == 1);
	sky_cache_close(c);
}

static void test_events__event_log_is_bounded(void)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.event_log_size = 5;
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	apply(c, ev("session_created", "s1", "e0", "2024-05-01T10:00:00Z",
		    "session", SESSION_S1));
	for (int i = 1; i <= 20; i++) {
		char eid[16], t[40];
		snprintf(eid, sizeof(eid), "e%d", i);
		snprintf(t, sizeof(t), "2024-05-01T10:%02d:00Z", i);
		CU_ASSERT(apply(c, ev("session_data_updated", "s1", eid, t,
				      "data", "{\"k\":1}")) ==
			  SKY_MIRROR_APPLIED);
	}
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	CU_ASSERT(st.event_log == 5);
	/* A recent id is still remembered. */
	CU_ASSERT(apply(c, ev("session_data_updated", "s1", "e20",
			      "2024-05-01T10:20:00Z", "data", "{\"k\":1}")) ==
		  SKY_MIRROR_DUPLICATE);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

static void test_events__no_rollback(void)
{
	sky_cache *c = open_cache();
	apply(c, ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		    "session", SESSION_S1));
	CU_ASSERT(apply(c, ev("session_updated", "s1", "e3",
			      "2024-05-01T12:00:00Z", "session",
			      "{\"name\":\"new\"}")) == SKY_MIRROR_APPLIED);
	/* An older rename arrives late: it must not undo the newer one. */
	CU_ASSERT(
	    apply(c, ev("session_updated", "s1", "e2", "2024-05-01T11:00:00Z",
			"session", "{\"name\":\"old\"}")) == SKY_MIRROR_STALE);
	/* Properties have their own watermark: an older property update is
	 * still newer than the last property change. */
	CU_ASSERT(apply(c, ev("session_properties_updated", "s1", "e4",
			      "2024-05-01T11:30:00Z", "session",
			      "{\"properties\":{\"a\":\"1\"}}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_data_updated", "s1", "e5",
			      "2024-05-01T11:00:00Z", "data", "{\"v\":2}")) ==
		  SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev("session_data_updated", "s1", "e6",
			      "2024-05-01T10:59:00Z", "data", "{\"v\":1}")) ==
		  SKY_MIRROR_STALE);
	char *s = get(c, "s1");
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"name\":\"new\""));
	free(s);
	char *d = data(c, "s1");
	SKY_ASSERT_JSON_EQ(d, "{\"v\":2}");
	free(d);

	/* A snapshot read at 13:00 replaces; an event from 12:30 is stale. */
	const char *snap =
	    "{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"status\":"
	    "\"open\",\"name\":\"snap\",\"createdAt\":\"2024-05-01T10:00:"
	    "00Z\"}";
	int64_t t13 = 1714568400LL * 1000000; /* 2024-05-01T13:00:00Z */
	CU_ASSERT(sky_mirror_session_put(c, snap, strlen(snap), "{\"v\":9}", 7,
					 t13) == 0);
	CU_ASSERT(
	    apply(c, ev("session_updated", "s1", "e7", "2024-05-01T12:30:00Z",
			"session", "{\"name\":\"late\"}")) == SKY_MIRROR_STALE);
	s = get(c, "s1");
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"name\":\"snap\""));
	free(s);
	d = data(c, "s1");
	SKY_ASSERT_JSON_EQ(d, "{\"v\":9}");
	free(d);
	/* And an older snapshot does not roll back the newer one. */
	const char *older =
	    "{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"name\":"
	    "\"older\",\"createdAt\":\"2024-05-01T10:00:00Z\"}";
	CU_ASSERT(sky_mirror_session_put(c, older, strlen(older), "{}", 2,
					 t13 - 1000000) == 0);
	s = get(c, "s1");
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "\"name\":\"snap\""));
	free(s);
	sky_cache_close(c);
}

static void test_events__waits_for_unknown_session(void)
{
	sky_cache *c = open_cache();
	CU_ASSERT(apply(c, ev("session_data_updated", "s9", "e2",
			      "2024-05-01T10:01:00Z", "data", "{\"x\":1}")) ==
		  SKY_MIRROR_DEFERRED);
	CU_ASSERT(
	    apply(c, ev("session_updated", "s9", "e3", "2024-05-01T10:02:00Z",
			"session", "{\"name\":\"renamed\"}")) ==
	    SKY_MIRROR_DEFERRED);
	CU_ASSERT(apply(c, ev("session_event_created", "s9", "e4",
			      "2024-05-01T10:03:00Z", "data", "[1]")) ==
		  SKY_MIRROR_DEFERRED);
	/* A duplicate of a waiting event is not kept twice. */
	CU_ASSERT(apply(c, ev("session_data_updated", "s9", "e2",
			      "2024-05-01T10:01:00Z", "data", "{\"x\":1}")) ==
		  SKY_MIRROR_DUPLICATE);
	CU_ASSERT_PTR_NULL(get(c, "s9"));
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	CU_ASSERT(st.pending_events == 3);

	const char *s9 = "{\"applicationId\":\"app1\",\"sessionId\":\"s9\","
			 "\"status\":\"open\",\"name\":\"orig\",\"createdAt\":"
			 "\"2024-05-01T10:00:00Z\"}";
	CU_ASSERT(apply(c, ev("session_created", "s9", "e1",
			      "2024-05-01T10:00:00Z", "session", s9)) ==
		  SKY_MIRROR_APPLIED);
	char *s = get(c, "s9");
	CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "\"name\":\"renamed\""));
	free(s);
	char *d = data(c, "s9");
	SKY_ASSERT_JSON_EQ(d, "{\"x\":1}");
	free(d);
	sky_cache_stats(c, &st);
	CU_ASSERT(st.pending_events == 0);
	CU_ASSERT(st.custom_events == 1);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);

	/* Events waiting for a session that arrives by a snapshot put. */
	CU_ASSERT(apply(c, ev("session_properties_updated", "s10", "e20",
			      "2024-05-01T11:00:00Z", "session",
			      "{\"properties\":{\"p\":\"v\"}}")) ==
		  SKY_MIRROR_DEFERRED);
	const char *s10 = "{\"applicationId\":\"app1\",\"sessionId\":\"s10\","
			  "\"createdAt\":\"2024-05-01T10:00:00Z\"}";
	CU_ASSERT(sky_mirror_session_put(c, s10, strlen(s10), NULL, 0,
					 1714557600LL * 1000000) == 0);
	s = get(c, "s10");
	CU_ASSERT_PTR_NOT_NULL(s && strstr(s, "\"p\":\"v\""));
	free(s);
	sky_cache_close(c);
}

static void test_events__pending_limit(void)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.pending_limit = 2;
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	apply(c, ev("session_data_updated", "x", "e1", "2024-05-01T10:00:00Z",
		    "data", "{}"));
	apply(c, ev("session_data_updated", "x", "e2", "2024-05-01T10:00:00Z",
		    "data", "{}"));
	char *e = ev("session_data_updated", "x", "e3", "2024-05-01T10:00:00Z",
		     "data", "{}");
	CU_ASSERT(reject(c, e, "limit 2") == SKY_ELIMIT);
	free(e);
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	CU_ASSERT(st.pending_events == 2);
	CU_ASSERT(st.event_log == 2);
	sky_cache_close(c);
}

/* Each malformed event is rejected naming the field; nothing changes. */
static void test_events__malformed_rejected(void)
{
	sky_cache *c = open_cache();
	apply(c, ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		    "session", SESSION_S1));
	sky_stats before = SKY_STATS_INIT;
	sky_cache_stats(c, &before);
	static const struct {
		const char *event;
		const char *needle;
	} bad[] = {
	    {"not json", "not valid JSON"},
	    {"[1,2]", "must be a JSON object"},
	    {"{\"sessionId\":\"s1\",\"eventId\":\"x\",\"eventType\":"
	     "\"session_closed\",\"createdAt\":\"2024-05-01T10:00:00Z\","
	     "\"session\":{}}",
	     "event.applicationId: missing"},
	    {"{\"applicationId\":7,\"sessionId\":\"s1\",\"eventId\":\"x\"}",
	     "event.applicationId: must be a string"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"\",\"eventId\":"
	     "\"x\"}",
	     "event.sessionId: must not be empty"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_exploded\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\"}",
	     "event.eventType: unknown type"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_closed\",\"createdAt\":"
	     "\"yesterday\","
	     "\"session\":{}}",
	     "event.createdAt"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_data_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\",\"data\":[1]}",
	     "event.data: a data patch must be a JSON object"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_data_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\"}",
	     "event.data: missing"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_properties_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\",\"session\":{\"properties\":{\"a\":1}}}",
	     "event.session.properties.a: property values must be strings"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\",\"session\":{\"sessionId\":\"s2\"}}",
	     "event.session.sessionId: does not match"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\",\"session\":{\"status\":\"paused\"}}",
	     "event.session.status"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\",\"session\":{\"participants\":[{\"id\":"
	     "\"u\",\"type\":\"robot\"}]}}",
	     "event.session.participants[0].type"},
	    {"{\"applicationId\":\"app1\",\"applicationId\":\"app2\"}",
	     "duplicate"},
	    {"{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	     "\"x\",\"eventType\":\"session_updated\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\",\"session\":{\"name\":5}}",
	     "event.session.name: must be a string"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		reject(c, bad[i].event, bad[i].needle);
	/* Invalid UTF-8 and an embedded NUL. */
	reject(c, "{\"applicationId\":\"\xff\"}", "not valid JSON");
	static const char nul[] = "{\"a\":\"x\0y\"}";
	sky_mirror_outcome o;
	CU_ASSERT(sky_mirror_event_apply(c, nul, sizeof(nul) - 1, &o) ==
		  SKY_EINVAL);

	sky_stats after = SKY_STATS_INIT;
	sky_cache_stats(c, &after);
	CU_ASSERT(after.events_applied == before.events_applied);
	CU_ASSERT(after.event_log == before.event_log);
	CU_ASSERT(after.last_apply_us == before.last_apply_us);
	CU_ASSERT(after.events_rejected == before.events_rejected + 17);
	char *s = get(c, "s1");
	SKY_ASSERT_JSON_EQ(s, SESSION_S1);
	free(s);
	sky_cache_close(c);
}

static char *nested(unsigned depth)
{
	/* {"applicationId":...,"data":{"a":{"a":...}}} with `depth` levels. */
	size_t n = 400 + depth * 6;
	char *buf = malloc(n);
	CU_ASSERT_FATAL(buf != NULL);
	int off = sprintf(buf,
			  "{\"applicationId\":\"app1\",\"sessionId\":\"s1\","
			  "\"eventId\":\"deep%u\",\"eventType\":"
			  "\"session_data_updated\",\"createdAt\":"
			  "\"2024-05-01T10:00:00Z\",\"data\":",
			  depth);
	for (unsigned i = 1; i < depth; i++)
		off += sprintf(buf + off, "{\"a\":");
	off += sprintf(buf + off, "1");
	for (unsigned i = 0; i < depth; i++)
		buf[off++] = '}';
	buf[off] = '\0';
	return buf;
}

static void test_events__limits(void)
{
	sky_cache *c = open_cache();
	apply(c, ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		    "session", SESSION_S1));
	/* 64 levels (the event object counts as one) pass, 65 do not. */
	char *ok = nested(64), *deep = nested(65);
	sky_mirror_outcome o;
	CU_ASSERT(sky_mirror_event_apply(c, ok, strlen(ok), &o) == 0);
	CU_ASSERT(o == SKY_MIRROR_APPLIED);
	CU_ASSERT(reject(c, deep, "deeper than the limit of 64") == SKY_ELIMIT);
	free(ok);
	free(deep);

	/* Just over 1 MiB. */
	size_t big = 1024 * 1024 + 1;
	char *huge = malloc(big + 1);
	CU_ASSERT_FATAL(huge != NULL);
	int off = sprintf(huge, "{\"applicationId\":\"app1\",\"pad\":\"");
	memset(huge + off, 'x', big - (size_t)off - 2);
	strcpy(huge + big - 2, "\"}");
	CU_ASSERT(strlen(huge) == big);
	CU_ASSERT(reject(c, huge, "over the limit of 1048576") == SKY_ELIMIT);
	free(huge);
	sky_cache_close(c);

	/* Both limits are configurable. */
	sky_cache_options opt = SKY_CACHE_OPTIONS_INIT;
	opt.max_depth = 3;
	opt.max_event_bytes = 4096;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &opt) == 0);
	char *d4 = nested(4);
	CU_ASSERT(reject(c, d4, "limit of 3") == SKY_ELIMIT);
	free(d4);
	char *e = ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		     "session", SESSION_S1);
	CU_ASSERT(reject(c, e, "deeper") == SKY_ELIMIT); /* participants: 4 */
	free(e);
	sky_cache_close(c);
}

static void test_events__batch_with_rejects(void)
{
	sky_cache *c = open_cache();
	char *e1 = ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		      "session", SESSION_S1);
	char *e2 = ev("session_data_updated", "s1", "e2",
		      "2024-05-01T10:01:00Z", "data", "{\"a\":1}");
	char *e3 = ev("session_data_updated", "s1", "e3",
		      "2024-05-01T10:02:00Z", "data", "\"not an object\"");
	char *e4 = ev("session_data_updated", "s1", "e2",
		      "2024-05-01T10:01:00Z", "data", "{\"a\":1}");
	sky_mirror_event_item items[] = {
	    {e1, strlen(e1), 0, NULL},
	    {e2, strlen(e2), 0, NULL},
	    {e3, strlen(e3), 0, NULL},
	    {e4, strlen(e4), 0, NULL},
	};
	CU_ASSERT(sky_mirror_event_apply_batch(c, items, 4) == 0);
	CU_ASSERT(items[0].outcome == SKY_MIRROR_APPLIED);
	CU_ASSERT(items[1].outcome == SKY_MIRROR_APPLIED);
	CU_ASSERT(items[2].outcome == SKY_MIRROR_REJECTED);
	CU_ASSERT_PTR_NOT_NULL(items[2].error &&
			       strstr(items[2].error, "event.data"));
	CU_ASSERT(items[3].outcome == SKY_MIRROR_DUPLICATE);
	for (int i = 0; i < 4; i++)
		sky_free(items[i].error);
	free(e1);
	free(e2);
	free(e3);
	free(e4);
	char *d = data(c, "s1");
	SKY_ASSERT_JSON_EQ(d, "{\"a\":1}");
	free(d);
	sky_cache_close(c);
}

static void test_events__apps_roles_remove(void)
{
	sky_cache *c = open_cache();
	const char *app = "{\"applicationId\":\"app1\",\"name\":\"Picking\","
			  "\"publishedVersion\":2,\"extra\":true}";
	const char *role = "{\"name\":\"operator\",\"permissions\":["
			   "\"session:read:any\"],\"participants\":[{\"id\":"
			   "\"g1\",\"type\":\"group\"}]}";
	CU_ASSERT(sky_mirror_app_put(c, app, strlen(app)) == 0);
	CU_ASSERT(sky_mirror_role_put(c, "app1", role, strlen(role)) == 0);
	const char *bad_app = "{\"name\":\"x\"}";
	const char *bad_role = "{\"name\":\"r\",\"permissions\":\"x\"}";
	CU_ASSERT(sky_mirror_app_put(c, bad_app, strlen(bad_app)) ==
		  SKY_EINVAL);
	CU_ASSERT(sky_mirror_role_put(c, "app1", bad_role, strlen(bad_role)) ==
		  SKY_EINVAL);
	char *got;
	CU_ASSERT(sky_app_get(c, "app1", &got, NULL) == 0);
	SKY_ASSERT_JSON_EQ(got, app);
	free(got);
	CU_ASSERT(sky_app_get(c, "nope", &got, NULL) == SKY_ENOTFOUND);

	apply(c, ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		    "session", SESSION_S1));
	apply(c, ev("session_data_updated", "s1", "e2", "2024-05-01T10:01:00Z",
		    "data", "{\"a\":{\"b\":1}}"));
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "s1") == 0);
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "s1") == SKY_ENOTFOUND);
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	CU_ASSERT(st.sessions == 0);
	CU_ASSERT(st.data_entries == 0);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

static void test_events__reader_snapshot(void)
{
	sky_cache *c = open_cache();
	apply(c, ev("session_created", "s1", "e1", "2024-05-01T10:00:00Z",
		    "session", SESSION_S1));
	sky_reader *r;
	const char *json;
	CU_ASSERT_FATAL(sky_reader_begin(&r, c) == 0);
	apply(c, ev("session_updated", "s1", "e2", "2024-05-01T10:01:00Z",
		    "session", "{\"name\":\"later\"}"));
	CU_ASSERT(sky_reader_session(r, "app1", "s1", &json, NULL) == 0);
	CU_ASSERT_PTR_NULL(strstr(json, "later"));
	CU_ASSERT(sky_reader_session(r, "app1", "nope", &json, NULL) ==
		  SKY_ENOTFOUND);
	sky_reader_end(r);
	char *s = get(c, "s1");
	CU_ASSERT_PTR_NOT_NULL(strstr(s, "later"));
	free(s);
	sky_cache_close(c);
}

/*
 * Values a server may send come back exactly: U+0000 inside strings (name,
 * description, a property value, data), integers beyond 64 bits as their
 * text, reals in their shortest form. What cannot be stored (U+0000 in a
 * member name or an id) and what is not JSON (a raw NUL byte, wherever it
 * is in the buffer given) is rejected with nothing changed.
 */
static const char *SESSION_VALUES =
    "{\"applicationId\":\"app1\",\"sessionId\":\"sv\",\"status\":\"open\","
    "\"isDraft\":false,\"version\":100000000000000000000,\"name\":"
    "\"Line\\u00003\",\"description\":\"a\\u0000\",\"createdAt\":"
    "\"2024-05-01T10:00:00Z\",\"properties\":{\"site\":\"Plant\\u00007\"},"
    "\"extra\":[0.94,-123456789012345678901]}";

static void test_events__values_kept_exactly(void)
{
	sky_cache *c = open_cache();
	CU_ASSERT(
	    apply(c, ev("session_created", "sv", "v1", "2024-05-01T10:00:00Z",
			"session", SESSION_VALUES)) == SKY_MIRROR_APPLIED);
	char *s = get(c, "sv");
	CU_ASSERT(s && strcmp(s, SESSION_VALUES) == 0);
	free(s);
	CU_ASSERT(
	    apply(c,
		  ev("session_data_updated", "sv", "v2", "2024-05-01T10:01:00Z",
		     "data",
		     "{\"n\":\"x\\u0000y\",\"big\":100000000000000000000,"
		     "\"r\":0.94,\"o\":{\"neg\":-123456789012345678901}}")) ==
	    SKY_MIRROR_APPLIED);
	/* A second patch merges into the stored members: they read back. */
	CU_ASSERT(apply(c, ev("session_data_updated", "sv", "v3",
			      "2024-05-01T10:02:00Z", "data",
			      "{\"o\":{\"p\":1.5e+999}}")) ==
		  SKY_MIRROR_APPLIED);
	char *d = data(c, "sv");
	CU_ASSERT(d && strcmp(d, "{\"big\":100000000000000000000,\"n\":"
				 "\"x\\u0000y\",\"o\":{\"neg\":"
				 "-123456789012345678901,\"p\":1.5e+999},"
				 "\"r\":0.94}") == 0);
	if (d && !strstr(d, "0.94}"))
		fprintf(stderr, "\ndata: %s\n", d);
	free(d);
	/* Server state put directly keeps them too. */
	const char *sj = "{\"applicationId\":\"app1\",\"sessionId\":\"sp\","
			 "\"name\":\"p\\u0000q\",\"createdAt\":"
			 "\"2024-05-01T10:00:00Z\"}";
	const char *dj = "{\"k\":18446744073709551616,\"z\":[0.1,\"\\u0000\"]}";
	CU_ASSERT(
	    sky_mirror_session_put(c, sj, strlen(sj), dj, strlen(dj), 0) == 0);
	s = get(c, "sp");
	CU_ASSERT(s && strcmp(s, sj) == 0);
	free(s);
	d = data(c, "sp");
	CU_ASSERT(d && strcmp(d, dj) == 0);
	free(d);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

static void test_events__values_refused(void)
{
	sky_cache *c = open_cache();
	apply(c, ev("session_created", "sv", "v1", "2024-05-01T10:00:00Z",
		    "session", SESSION_VALUES));
	sky_stats before = SKY_STATS_INIT, after = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &before) == 0);
	char *e;
	e = ev("session_data_updated", "sv", "r1", "2024-05-01T10:01:00Z",
	       "data", "{\"a\\u0000b\":1}");
	reject(c, e, "member name");
	free(e);
	e = ev("session_properties_updated", "sv", "r2", "2024-05-01T10:01:00Z",
	       "session", "{\"properties\":{\"k\\u0000\":\"v\"}}");
	reject(c, e, "U+0000");
	free(e);
	e = ev("session_properties_updated", "sv", "r3", "2024-05-01T10:01:00Z",
	       "session", "{\"properties\":{\"k\":100000000000000000000}}");
	reject(c, e, "strings, not a number");
	free(e);
	e = ev("session_data_updated", "s\\u0000v", "r4",
	       "2024-05-01T10:01:00Z", "data", "{}");
	reject(c, e, "event.sessionId: holds U+0000");
	free(e);
	e = ev("session_data_updated", "sv", "r5",
	       "2024-05-01T10:01:00Z\\u0000", "data", "{}");
	reject(c, e, "event.createdAt");
	free(e);
	e = ev("session_updated", "sv", "r6", "2024-05-01T10:01:00Z", "session",
	       "{\"status\":\"open\\u0000\"}");
	reject(c, e, "status");
	free(e);
	/* A raw NUL byte: inside the object, or after it within `len`. */
	e = ev("session_data_updated", "sv", "r7", "2024-05-01T10:01:00Z",
	       "data", "{\"v\":1}");
	size_t n = strlen(e);
	sky_mirror_outcome o = SKY_MIRROR_APPLIED;
	CU_ASSERT(sky_mirror_event_apply(c, e, n + 1, &o) == SKY_EINVAL);
	CU_ASSERT(o == SKY_MIRROR_REJECTED);
	CU_ASSERT(strstr(sky_error_last()->message, "raw NUL byte") != NULL);
	char buf[512];
	CU_ASSERT_FATAL(n < sizeof(buf) && strstr(e, "\"v\":1}") != NULL);
	memcpy(buf, e, n + 1);
	*strstr(buf, "\"v\":1}") = '\0'; /* {<NUL>v":1}} */
	o = SKY_MIRROR_APPLIED;
	CU_ASSERT(sky_mirror_event_apply(c, buf, n, &o) == SKY_EINVAL);
	CU_ASSERT(o == SKY_MIRROR_REJECTED);
	CU_ASSERT(strstr(sky_error_last()->message, "raw NUL byte") != NULL);
	free(e);
	CU_ASSERT(sky_cache_stats(c, &after) == 0);
	CU_ASSERT(after.events_applied == before.events_applied);
	char *d = data(c, "sv");
	CU_ASSERT(d && strcmp(d, "{}") == 0);
	free(d);
	sky_cache_close(c);
}

/* The value of a string field of session s1, copied (NULL when absent). */
static char *field(sky_cache *c, const char *name)
{
	char *s = get(c, "s1");
	json_t *j = s ? json_loads(s, 0, NULL) : NULL;
	const char *v = json_string_value(json_object_get(j, name));
	char *out = v ? strdup(v) : NULL;
	json_decref(j);
	free(s);
	return out;
}

static void expect_modified(sky_cache *c, const char *at, const char *by)
{
	char *a = field(c, "modifiedAt"), *b = field(c, "modifiedBy");
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	if (strcmp(a, at) || strcmp(b, by))
		fprintf(stderr, "\nmodified %s by %s, expected %s by %s\n", a,
			b, at, by);
	CU_ASSERT_STRING_EQUAL(a, at);
	CU_ASSERT_STRING_EQUAL(b, by);
	free(a);
	free(b);
}

/* An event by user `uid`, otherwise as ev() makes it. */
static char *ev_by(const char *uid, const char *type, const char *eid,
		   const char *created, const char *payload_key,
		   const char *payload)
{
	char *out;
	int n =
	    asprintf(&out,
		     "{\"applicationId\":\"app1\",\"sessionId\":\"s1\","
		     "\"eventId\":\"%s\",\"source\":\"test\",\"userId\":\"%s\","
		     "\"createdAt\":\"%s\",\"timestamp\":1,\"version\":1,"
		     "\"eventType\":\"%s\",\"%s\":%s}",
		     eid, uid, created, type, payload_key, payload);
	CU_ASSERT_FATAL(n > 0);
	return out;
}

/*
 * An event that changes a session's fields or properties without carrying
 * modifiedAt/modifiedBy moves them to its createdAt (verbatim) and userId,
 * as the server does; one that carries them sets them as sent; data
 * patches and custom events leave them; an older event never moves
 * modifiedAt back.
 */
static void test_events__modified_follows_changes(void)
{
	sky_cache *c = open_cache();
	CU_ASSERT(apply(c, ev("session_created", "s1", "e1",
			      "2024-05-01T10:00:00Z", "session", SESSION_S1)) ==
		  SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:00:00Z", "u1");

	CU_ASSERT(apply(c, ev_by("u2", "session_properties_updated", "e2",
				 "2024-05-01T10:01:00.250000Z", "session",
				 "{\"sessionId\":\"s1\",\"properties\":"
				 "{\"a\":\"1\"}}")) == SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:01:00.250000Z", "u2");

	/* Data and custom events do not touch the session's fields. */
	CU_ASSERT(apply(c, ev_by("u3", "session_data_updated", "e3",
				 "2024-05-01T10:02:00Z", "data",
				 "{\"x\":1}")) == SKY_MIRROR_APPLIED);
	CU_ASSERT(apply(c, ev_by("u3", "session_event_created", "e4",
				 "2024-05-01T10:02:30Z", "data",
				 "{\"k\":1}")) == SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:01:00.250000Z", "u2");

	/* A session_updated that names them: taken as sent. */
	CU_ASSERT(
	    apply(c, ev_by("u3", "session_updated", "e5",
			   "2024-05-01T10:03:00Z", "session",
			   "{\"name\":\"N\",\"modifiedBy\":\"u4\","
			   "\"modifiedAt\":\"2024-05-01T10:03:00.5Z\"}")) ==
	    SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:03:00.5Z", "u4");

	/* A session_updated without them: from the envelope. */
	CU_ASSERT(apply(c, ev_by("u5", "session_updated", "e6",
				 "2024-05-01T10:04:00Z", "session",
				 "{\"description\":\"d\"}")) ==
		  SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:04:00Z", "u5");

	/* A properties event older than the last change (it arrived late,
	 * its own watermark is older): properties apply, the stamp stays. */
	CU_ASSERT(apply(c, ev_by("u6", "session_properties_updated", "e7",
				 "2024-05-01T10:03:30Z", "session",
				 "{\"properties\":{\"b\":\"2\"}}")) ==
		  SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:04:00Z", "u5");

	CU_ASSERT(
	    apply(c, ev_by("u7", "session_closed", "e8", "2024-05-01T10:05:00Z",
			   "session", "{\"status\":\"closed\"}")) ==
	    SKY_MIRROR_APPLIED);
	expect_modified(c, "2024-05-01T10:05:00Z", "u7");
	char *st = field(c, "status");
	CU_ASSERT_STRING_EQUAL(st, "closed");
	free(st);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* ---- the data events' fast path against the full parse ---- */

static uint64_t mut_state = 0x9e3779b97f4a7c15ull;

static unsigned mut_below(unsigned n)
{
	/* xorshift64*: a fixed seed, so a failure reproduces. */
	mut_state ^= mut_state >> 12;
	mut_state ^= mut_state << 25;
	mut_state ^= mut_state >> 27;
	return (unsigned)((mut_state * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/* One random edit of buf[*len] (room for 64 more bytes). */
static void mutate(char *buf, size_t *len)
{
	static const char alphabet[] = "{}[]\",:\\ \n\t0123456789.eE-+tnful"
				       "\x00\x7f\xc3\xa9\xff";
	size_t n = *len, at = n ? mut_below((unsigned)n) : 0;
	char ch = alphabet[mut_below(sizeof(alphabet) - 1)];
	switch (mut_below(5)) {
	case 0: /* delete a byte */
		if (n) {
			memmove(buf + at, buf + at + 1, n - at - 1);
			*len = n - 1;
		}
		break;
	case 1: /* insert a byte */
		memmove(buf + at + 1, buf + at, n - at);
		buf[at] = ch;
		*len = n + 1;
		break;
	case 2: /* replace a byte */
		if (n)
			buf[at] = ch;
		break;
	case 3: /* cut the text short */ *len = at; break;
	default: { /* repeat a stretch of it elsewhere */
		size_t from = n ? mut_below((unsigned)n) : 0;
		size_t k = 1 + mut_below(16);
		if (from + k > n)
			k = n - from;
		memmove(buf + at + k, buf + at, n - at);
		memmove(buf + at, buf + (from >= at ? from + k : from), k);
		*len = n + k;
		break;
	}
	}
}

/*
 * Whenever the scan takes an event, the full parse accepts it too and
 * gives the same ids, type, time and patch; tried on plain events and on
 * thousands of random edits of them (most of which the scan must leave
 * to the full parse, some of which it takes).
 */
static void test_events__scan_matches_full_parse(void)
{
	static const char *const bases[] = {
	    "{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":"
	    "\"e1\",\"source\":\"test\",\"userId\":\"u1\",\"createdAt\":"
	    "\"2024-05-01T12:00:00Z\",\"timestamp\":1,\"version\":1,"
	    "\"eventType\":\"session_data_updated\",\"data\":{\"a\":1,\"b\":"
	    "{\"c\":[1,2.5,{\"d\":null}],\"e\":\"x\\u00e9\\\"\"}}}",
	    " {\n\t\"data\" : {\"items\":{\"i1\":{\"qty\":3,\"pos\":{\"x\":"
	    "-1e3}}},\"meta\":{\"rev\":12345678901234567890123}} ,\r\n"
	    "\"eventType\":\"session_data_updated\",\"eventId\":\"ev-9\","
	    "\"createdAt\":\"2024-05-01T12:00:00.123456+02:00\","
	    "\"sessionId\":\"S 1\",\"applicationId\":\"a-b.c\",\"version\":"
	    "null,\"source\":null,\"userId\":null,\"timestamp\":"
	    "\"2024-05-01T12:00:00Z\"} ",
	    "{\"applicationId\":\"app1\",\"sessionId\":\"s2\",\"eventId\":"
	    "\"e2\",\"createdAt\":\"2024-05-01T12:00:00Z\",\"eventType\":"
	    "\"session_data_updated\",\"data\":{}}",
	    "{\"applicationId\":\"app1\",\"sessionId\":\"s3\",\"eventId\":"
	    "\"e3\",\"createdAt\":\"2024-05-01T12:00:00Z\",\"version\":-7,"
	    "\"timestamp\":0,\"eventType\":\"session_data_updated\",\"data\":"
	    "{\"k\":[[[[\"deep\"]]]],\"t\":true,\"f\":false,\"z\":0}}",
	};
	sky_cache *c = open_cache();
	const sky_protocol *proto = sky__protocol_builtin();
	unsigned taken = 0, tries = 0;

	for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
		sky_parsed_event pe;
		int r = sky__event_scan(&c->event_limits, proto, bases[b],
					strlen(bases[b]), &pe);
		CU_ASSERT(r == 1); /* the plain case is taken */
		if (r == 1)
			sky__event_clear(&pe);
	}
	for (unsigned round = 0; round < 40000; round++) {
		const char *base =
		    bases[mut_below(sizeof(bases) / sizeof(bases[0]))];
		char buf[1024];
		size_t len = strlen(base);
		memcpy(buf, base, len);
		for (unsigned k = 1 + mut_below(3); k > 0; k--)
			if (len < sizeof(buf) - 64)
				mutate(buf, &len);
		sky_parsed_event fast, full;
		tries++;
		if (sky__event_scan(&c->event_limits, proto, buf, len, &fast) !=
		    1)
			continue;
		taken++;
		int rc = sky__event_parse_tree(c, buf, len, &full);
		if (rc != 0) {
			fprintf(stderr,
				"\nscan took what the parse refuses: "
				"%.*s\n",
				(int)len, buf);
			CU_FAIL("scan accepted an invalid event");
		} else {
			char *a = sky__json_dumps(fast.payload, NULL);
			char *f = sky__json_dumps(full.payload, NULL);
			CU_ASSERT(a && f && strcmp(a, f) == 0);
			CU_ASSERT(strcmp(fast.app, full.app) == 0);
			CU_ASSERT(strcmp(fast.sid, full.sid) == 0);
			CU_ASSERT(strcmp(fast.eid, full.eid) == 0);
			CU_ASSERT(fast.type == full.type);
			CU_ASSERT(fast.created_us == full.created_us);
			free(a);
			free(f);
			sky__event_clear(&full);
		}
		sky__event_clear(&fast);
	}
	/* Most edits break the envelope; enough must survive (edits inside
	 * the patch or its strings) for the comparison to mean something. */
	CU_ASSERT(taken > tries / 100);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_events__all_six_types", test_events__all_six_types},
	    {"test_events__idempotent", test_events__idempotent},
	    {"test_events__event_log_is_bounded",
	     test_events__event_log_is_bounded},
	    {"test_events__no_rollback", test_events__no_rollback},
	    {"test_events__waits_for_unknown_session",
	     test_events__waits_for_unknown_session},
	    {"test_events__pending_limit", test_events__pending_limit},
	    {"test_events__malformed_rejected",
	     test_events__malformed_rejected},
	    {"test_events__limits", test_events__limits},
	    {"test_events__batch_with_rejects",
	     test_events__batch_with_rejects},
	    {"test_events__apps_roles_remove", test_events__apps_roles_remove},
	    {"test_events__reader_snapshot", test_events__reader_snapshot},
	    {"test_events__values_kept_exactly",
	     test_events__values_kept_exactly},
	    {"test_events__values_refused", test_events__values_refused},
	    {"test_events__modified_follows_changes",
	     test_events__modified_follows_changes},
	    {"test_events__scan_matches_full_parse",
	     test_events__scan_matches_full_parse},
	    {NULL, NULL},
	};
	return sky_test_main("events", cases);
}
