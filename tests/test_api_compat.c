/*
 * test_api_compat.c - a caller written against the 0.1 API still builds
 * and works: the deprecated names (sky_event_apply, sky_session_put,
 * sky_event_send, ... -- compiled with -Wno-deprecated-declarations) do
 * what their sky_mirror_* / sky_session_event_* replacements do, option
 * structs of every older version open (their missing fields take the
 * defaults, the deprecated durability flags still map to a mode), and the
 * versioned output structs refuse a version the library does not know.
 *
 * Only the public header is used, as an outside caller would.
 */
#include "config.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

#define JS(text) (text), strlen(text)

static const char *APP_JSON = "{\"applicationId\":\"app1\",\"name\":\"A\"}";
static const char *SESSION_S1 =
    "{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"status\":\"open\","
    "\"version\":1,\"name\":\"Line 1\",\"participants\":[],"
    "\"createdBy\":\"u1\",\"createdAt\":\"2024-05-01T10:00:00Z\","
    "\"modifiedBy\":\"u1\",\"modifiedAt\":\"2024-05-01T10:00:00Z\"}";
static const char *EVENT_E1 =
    "{\"applicationId\":\"app1\",\"sessionId\":\"s1\",\"eventId\":\"e1\","
    "\"source\":\"t\",\"userId\":\"u1\",\"createdAt\":"
    "\"2024-05-01T10:01:00Z\",\"timestamp\":1,\"version\":2,"
    "\"eventType\":\"session_data_updated\",\"data\":{\"k\":1}}";

static sky_cache *open_dir(const char *dir, const sky_cache_options *o, int *rc)
{
	sky_cache *c = NULL;
	*rc = sky_cache_open(&c, dir, o);
	return *rc == 0 ? c : NULL;
}

/* A directory NAME in one temporary directory for the whole program
 * (static storage: copy it to keep two). */
static char *subdir(const char *name)
{
	static const char *top;
	static char path[4200];
	if (!top)
		top = sky_test_tmpdir();
	snprintf(path, sizeof(path), "%s/%s", top, name);
	return path;
}

/* The 0.1 names of the mirror-feeding calls, types and outcomes. */
static void test_api_compat__deprecated_mirror_names(void)
{
	int rc;
	sky_cache *c = open_dir(subdir("mirror"), NULL, &rc);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(sky_app_put(c, JS(APP_JSON)) == 0);
	CU_ASSERT(sky_role_put(c, "app1",
			       JS("{\"roleId\":\"r1\",\"name\":\"R\","
				  "\"permissions\":[],\"participants\":[]}")) ==
		  0);
	CU_ASSERT(sky_session_put(c, JS(SESSION_S1), JS("{}"), 0) == 0);

	sky_event_outcome o = SKY_EVENT_REJECTED;
	CU_ASSERT(sky_event_apply(c, JS(EVENT_E1), &o) == 0);
	CU_ASSERT(o == SKY_EVENT_APPLIED);
	CU_ASSERT(strcmp(sky_event_outcome_name(o),
			 sky_mirror_outcome_name(SKY_MIRROR_APPLIED)) == 0);
	/* The same event again, through the old batch type. */
	sky_event_item it[1] = {
	    {EVENT_E1, strlen(EVENT_E1), SKY_EVENT_APPLIED, NULL}};
	CU_ASSERT(sky_event_apply_batch(c, it, 1) == 0);
	CU_ASSERT(it[0].outcome == SKY_EVENT_DUPLICATE);
	CU_ASSERT(it[0].error == NULL);

	char *data = NULL;
	CU_ASSERT(sky_data_get(c, "app1", "s1", &data, NULL) == 0);
	CU_ASSERT(data && strstr(data, "\"k\":1") != NULL);
	sky_free(data);

	sky_session_item si[1];
	memset(si, 0, sizeof(si));
	si[0].session_json = SESSION_S1;
	si[0].len = strlen(SESSION_S1);
	CU_ASSERT(sky_session_put_batch(c, si, 1) == 0);
	CU_ASSERT(si[0].result == 0);

	/* A custom session event queued and listed under the old names. */
	CU_ASSERT(sky_event_send(c, "app1", "s1", JS("{\"x\":1}")) == 0);
	CU_ASSERT(sky_session_events(c, "app1", "s1", NULL, NULL) == 0);

	CU_ASSERT(sky_session_remove(c, "app1", "s1") == 0);
	CU_ASSERT(sky_session_get(c, "app1", "s1", &data, NULL) ==
		  SKY_ENOTFOUND);
	sky_cache_close(c);
}

/* What a 0.1 caller compiled against version 1 passes: a struct that ends
 * before closed_keep_s. The library must read no further. */
typedef struct {
	unsigned version;
	unsigned flags;
	size_t max_event_bytes;
	unsigned max_depth;
	unsigned event_log_size;
	unsigned pending_limit;
	size_t initial_map_bytes;
} cache_options_v1;

static void test_api_compat__old_cache_options(void)
{
	int rc;
	/* Exactly the size a version 1 caller has (ASan sees an overread). */
	cache_options_v1 *v1 = malloc(sizeof(*v1));
	CU_ASSERT_FATAL(v1 != NULL);
	memset(v1, 0, sizeof(*v1));
	v1->version = 1;
	v1->flags = SKY_CACHE_NOSYNC;
	sky_cache *c =
	    open_dir(subdir("v1"), (const sky_cache_options *)v1, &rc);
	CU_ASSERT(rc == 0);
	CU_ASSERT(c && sky_app_put(c, JS(APP_JSON)) == 0);
	sky_cache_close(c);
	free(v1);

	/* Version 2 with the deprecated fast-writes flag. */
	sky_cache_options v2 = SKY_CACHE_OPTIONS_INIT;
	v2.version = 2;
	v2.flags = SKY_CACHE_FAST_WRITES;
	c = open_dir(subdir("v2"), &v2, &rc);
	CU_ASSERT(rc == 0);
	sky_cache_close(c);

	/* The deprecated flags still refuse their one bad combination. */
	v2.flags = SKY_CACHE_JOURNAL | SKY_CACHE_NOSYNC;
	CU_ASSERT(open_dir(subdir("v2b"), &v2, &rc) == NULL);
	CU_ASSERT(rc == SKY_EINVAL);

	/* The current version: one mode, and no mixing with the flags. */
	sky_cache_options v3 = SKY_CACHE_OPTIONS_INIT;
	v3.durability = SKY_DURABILITY_NONE;
	c = open_dir(subdir("v3"), &v3, &rc);
	CU_ASSERT(rc == 0);
	sky_cache_close(c);
	v3.flags = SKY_CACHE_FAST_WRITES;
	CU_ASSERT(open_dir(subdir("v3b"), &v3, &rc) == NULL);
	CU_ASSERT(rc == SKY_EINVAL);
	v3.flags = 0;
	v3.durability = (sky_durability)99;
	CU_ASSERT(open_dir(subdir("v3c"), &v3, &rc) == NULL);
	CU_ASSERT(rc == SKY_EINVAL);

	/* Versions the library does not know. */
	v3.durability = SKY_DURABILITY_DEFAULT;
	v3.version = 0;
	CU_ASSERT(open_dir(subdir("v0"), &v3, &rc) == NULL);
	CU_ASSERT(rc == SKY_EINVAL);
	v3.version = SKY_CACHE_OPTIONS_VERSION + 1;
	CU_ASSERT(open_dir(subdir("v4"), &v3, &rc) == NULL);
	CU_ASSERT(rc == SKY_EINVAL);
}

/* Engine options of version 1 (before reconcile_interval_s) still make an
 * engine, whose status fills a versioned sky_sync_status. */
static void test_api_compat__old_engine_options_and_status(void)
{
	int rc;
	sky_cache *c = open_dir(subdir("engine"), NULL, &rc);
	CU_ASSERT_FATAL(c != NULL);
	/* What follows a version 1 struct is garbage the library must not
	 * read (a pointer there would crash it). */
	size_t v1_size = offsetof(sky_engine_options, reconcile_interval_s);
	sky_engine_options *o = malloc(sizeof(*o));
	CU_ASSERT_FATAL(o != NULL);
	memset(o, 0xab, sizeof(*o));
	memset(o, 0, v1_size);
	o->version = 1;
	o->server = "http://127.0.0.1:9";
	o->broker = "mqtt://127.0.0.1:9";
	o->realm = "r";
	o->user = "u";
	o->password = "p";
	sky_engine *e = NULL;
	rc = sky_engine_new(&e, c, o);
	if (rc)
		fprintf(stderr, "\nsky_engine_new: %s\n",
			sky_error_last()->message);
	CU_ASSERT_FATAL(rc == 0);
	free(o);

	sky_sync_status st = SKY_SYNC_STATUS_INIT;
	CU_ASSERT(sky_engine_status(e, &st) == 0);
	CU_ASSERT(st.version == SKY_SYNC_STATUS_VERSION);
	CU_ASSERT(st.state == SKY_ENGINE_IDLE);
	sky_sync_status bad = SKY_SYNC_STATUS_INIT;
	bad.version = 0;
	CU_ASSERT(sky_engine_status(e, &bad) == SKY_EINVAL);
	bad.version = SKY_SYNC_STATUS_VERSION + 1;
	CU_ASSERT(sky_engine_status(e, &bad) == SKY_EINVAL);
	sky_engine_free(e);
	sky_cache_close(c);
}

/* Output structs: the version the caller set is checked and kept. */
static void test_api_compat__output_versions(void)
{
	int rc;
	sky_cache *c = open_dir(subdir("out"), NULL, &rc);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(sky_mirror_app_put(c, JS(APP_JSON)) == 0);

	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.version == SKY_STATS_VERSION);
	CU_ASSERT(st.applications == 1);
	sky_stats zero;
	memset(&zero, 0, sizeof(zero));
	CU_ASSERT(sky_cache_stats(c, &zero) == SKY_EINVAL);
	CU_ASSERT(zero.applications == 0); /* nothing filled */
	zero.version = SKY_STATS_VERSION + 1;
	CU_ASSERT(sky_cache_stats(c, &zero) == SKY_EINVAL);

	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	char *local = NULL;
	CU_ASSERT(
	    sky_session_create(c, "app1", JS("{\"name\":\"x\"}"), &local) == 0);
	sky_free(local);
	CU_ASSERT(sky_outbox_counts_get(c, &n) == 0);
	CU_ASSERT(n.version == SKY_OUTBOX_COUNTS_VERSION);
	CU_ASSERT(n.pending == 1);
	n.version = 0;
	CU_ASSERT(sky_outbox_counts_get(c, &n) == SKY_EINVAL);
	sky_cache_close(c);

	char from[4200];
	snprintf(from, sizeof(from), "%s", subdir("out"));
	sky_salvage_report r = SKY_SALVAGE_REPORT_INIT;
	r.version = 7;
	CU_ASSERT(sky_cache_salvage(from, subdir("saved"), NULL, NULL, &r) ==
		  SKY_EINVAL);
	r.version = SKY_SALVAGE_REPORT_VERSION;
	rc = sky_cache_salvage(from, subdir("saved"), NULL, NULL, &r);
	if (rc)
		fprintf(stderr, "\nsky_cache_salvage: %s\n",
			sky_error_last()->message);
	CU_ASSERT(rc == 0);
	CU_ASSERT(r.version == SKY_SALVAGE_REPORT_VERSION);
	CU_ASSERT(r.entries > 0);
	CU_ASSERT(r.outbox == 1);
	CU_ASSERT(r.damaged_ranges == 0);
}

/* sky_reader_data is borrowed: texts from one reader all stay valid until
 * it ends (and are freed then: valgrind and ASan see no leak). */
static void test_api_compat__reader_data_borrowed(void)
{
	int rc;
	sky_cache *c = open_dir(subdir("reader"), NULL, &rc);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(sky_mirror_app_put(c, JS(APP_JSON)) == 0);
	CU_ASSERT(
	    sky_mirror_session_put(c, JS(SESSION_S1), JS("{\"a\":1}"), 0) == 0);
	sky_reader *r = NULL;
	CU_ASSERT_FATAL(sky_reader_begin(&r, c) == 0);
	const char *d1 = NULL, *d2 = NULL, *s = NULL;
	size_t n1 = 0;
	CU_ASSERT(sky_reader_data(r, "app1", "s1", &d1, &n1) == 0);
	CU_ASSERT(sky_reader_session(r, "app1", "s1", &s, NULL) == 0);
	CU_ASSERT(sky_reader_data(r, "app1", "s1", &d2, NULL) == 0);
	/* The same bytes of the map, or two texts the reader keeps. */
	CU_ASSERT(d1 && d2);
	CU_ASSERT(d1 && strcmp(d1, "{\"a\":1}") == 0 && n1 == 7);
	CU_ASSERT(d2 && strcmp(d2, d1) == 0);
	CU_ASSERT(s && strstr(s, "\"sessionId\":\"s1\"") != NULL);
	CU_ASSERT(sky_reader_data(r, "app1", "nope", &d2, NULL) ==
		  SKY_ENOTFOUND);
	/* The copy is the caller's, and outlives the reader. */
	char *copy = NULL;
	CU_ASSERT(sky_reader_data_copy(r, "app1", "s1", &copy, &n1) == 0);
	sky_reader_end(r);
	CU_ASSERT(copy && strcmp(copy, "{\"a\":1}") == 0 && n1 == 7);
	sky_free(copy);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_api_compat__deprecated_mirror_names",
	     test_api_compat__deprecated_mirror_names},
	    {"test_api_compat__old_cache_options",
	     test_api_compat__old_cache_options},
	    {"test_api_compat__old_engine_options_and_status",
	     test_api_compat__old_engine_options_and_status},
	    {"test_api_compat__output_versions",
	     test_api_compat__output_versions},
	    {"test_api_compat__reader_data_borrowed",
	     test_api_compat__reader_data_borrowed},
	    {NULL, NULL}};
	return sky_test_main("api_compat", cases);
}
