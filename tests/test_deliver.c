/*
 * test_deliver.c - outbox delivery (libsync/deliver.c) through a one-shot
 * sync against a real skylight-emu and mosquitto (tests/harness.c):
 * consecutive data patches of a session land as fewer server writes than
 * were queued, and as their composition; a session's writes land in queue order
 * (the last rename wins, the close comes last); writes of several
 * sessions all go in one sync; a coalesced group the server refuses is
 * sent again one write at a time, so the dead letter is the write at
 * fault, and the writes after it land; with a tiny first map that the
 * writes must grow, every write lands once. sky_cache_check finds
 * nothing after each.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "harness.h"
#include "skysync.h"
#include "testutil.h"

#define APP "app-inspections"

static sky_broker broker;
static int broker_started;

typedef struct {
	sky_emu emu;
	char *token;
	sky_cache *cache;
} fixture;

static int fx_start_map(fixture *fx, size_t map_bytes)
{
	memset(fx, 0, sizeof(*fx));
	if (!broker_started) {
		if (sky_broker_start(&broker) < 0) {
			fprintf(stderr,
				"test_deliver: cannot start mosquitto\n");
			exit(99);
		}
		broker_started = 1;
	}
	char bro[64];
	snprintf(bro, sizeof(bro), "127.0.0.1:%d", broker.port);
	char *seed = sky_harness_src_path("tools/examples/realm.json");
	const char *args[] = {"--seed", seed, "--broker", bro, NULL};
	int rc = sky_emu_start(&fx->emu, args);
	free(seed);
	if (rc < 0)
		return -1;
	fx->token =
	    sky_emu_login(&fx->emu, "integration", "integration-pass", NULL);
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	o.initial_map_bytes = map_bytes;
	if (!fx->token || sky_cache_open(&fx->cache, sky_test_tmpdir(), &o) < 0)
		return -1;
	return 0;
}

static int fx_start(fixture *fx)
{
	return fx_start_map(fx, 0);
}

static void fx_end(fixture *fx)
{
	sky_cache_close(fx->cache);
	sky_emu_stop(&fx->emu);
	sky_emu_free(&fx->emu);
	free(fx->token);
}

/* A one-shot sync: the snapshot, then the outbox delivered. */
static int sync_once(fixture *fx)
{
	char bro[64];
	snprintf(bro, sizeof(bro), "mqtt://127.0.0.1:%d", broker.port);
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = fx->emu.url;
	o.broker = bro;
	o.realm = "demo";
	o.user = "integration";
	o.password = "integration-pass";
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 1000;
	o.retry_limit = 12;
	sky_engine *e = NULL;
	if (sky_engine_new(&e, fx->cache, &o) < 0)
		return -1;
	int rc = sky_engine_sync_once(e);
	sky_engine_free(e);
	return rc;
}

/* The changes the emulator's realm has taken (/_admin/stats). */
static uint64_t changes(fixture *fx)
{
	sky_http_res res;
	uint64_t n = 0;
	CU_ASSERT_FATAL(sky_http(fx->emu.url, "GET", "/_admin/stats", NULL,
				 NULL, &res) == 200);
	json_t *v = json_object_get(res.json, "changes");
	CU_ASSERT(json_is_integer(v));
	n = (uint64_t)json_integer_value(v);
	sky_http_res_free(&res);
	return n;
}

static uint64_t left(fixture *fx)
{
	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	CU_ASSERT_FATAL(sky_outbox_counts_get(fx->cache, &n) == 0);
	CU_ASSERT(n.rejected == 0);
	return n.pending + n.in_flight + n.in_doubt;
}

static int collect_sid(const char *json, size_t len, void *payload)
{
	json_t *s = json_loadb(json, len, 0, NULL);
	const char *st = json_string_value(json_object_get(s, "status"));
	if (st && !strcmp(st, "open") && json_array_size(payload) < 3)
		json_array_append(payload, json_object_get(s, "sessionId"));
	json_decref(s);
	return 0;
}

/* The server's session (data: its data) through REST, or NULL. */
static json_t *server(fixture *fx, const char *sid, int data)
{
	char path[512];
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s%s", APP,
		 sid, data ? "/data" : "");
	sky_http_res res;
	json_t *out = NULL;
	if (sky_http(fx->emu.url, "GET", path, NULL, fx->token, &res) == 200)
		out = json_loads(res.body, 0, NULL);
	sky_http_res_free(&res);
	return out;
}

static void test_deliver__coalesced_in_order(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx) == 0);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	json_t *ids = json_array();
	sky_session_list(fx.cache, APP, collect_sid, ids);
	CU_ASSERT_FATAL(json_array_size(ids) == 3);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	const char *s2 = json_string_value(json_array_get(ids, 1));
	const char *s3 = json_string_value(json_array_get(ids, 2));
	uint64_t c0 = changes(&fx);
	/* 30 data patches of s1: one key each, one overwritten, one
	 * removed, so that only their composition in order is right. */
	enum { N = 30 };
	for (int i = 0; i < N; i++) {
		char p[96];
		if (i == N - 1)
			snprintf(p, sizeof(p), "{\"t1\":null}");
		else if (i == N - 2)
			snprintf(p, sizeof(p), "{\"t0\":{\"again\":true}}");
		else
			snprintf(p, sizeof(p), "{\"t%d\":{\"i\":%d}}", i, i);
		CU_ASSERT_FATAL(
		    sky_data_patch(fx.cache, APP, s1, p, strlen(p)) == 0);
	}
	CU_ASSERT(left(&fx) == N);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	CU_ASSERT(left(&fx) == 0);
	/* The patches went as far fewer writes on the server. */
	uint64_t used = changes(&fx) - c0;
	CU_ASSERT(used > 0 && used < N / 2);
	json_t *d = server(&fx, s1, 1);
	CU_ASSERT_FATAL(d != NULL);
	json_t *t0 = json_object_get(d, "t0");
	CU_ASSERT(json_is_true(json_object_get(t0, "again")));
	CU_ASSERT(json_integer_value(json_object_get(t0, "i")) == 0);
	CU_ASSERT(json_object_get(d, "t1") == NULL);
	for (int i = 2; i < N - 2; i++) {
		char k[16];
		snprintf(k, sizeof(k), "t%d", i);
		CU_ASSERT(json_integer_value(json_object_get(
			      json_object_get(d, k), "i")) == i);
	}
	json_decref(d);

	/* Renames of s2 land in order; s3's close comes after its rename,
	 * all in one sync. */
	for (int i = 0; i < 5; i++) {
		char name[32];
		snprintf(name, sizeof(name), "rename %d", i);
		CU_ASSERT_FATAL(sky_session_set_name(fx.cache, APP, s2, name) ==
				0);
	}
	CU_ASSERT_FATAL(sky_session_set_name(fx.cache, APP, s3, "last") == 0);
	CU_ASSERT_FATAL(sky_session_close(fx.cache, APP, s3) == 0);
	CU_ASSERT(sky_session_set_name(fx.cache, APP, s3, "after") ==
		  SKY_EINVAL);
	CU_ASSERT(left(&fx) == 7);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	CU_ASSERT(left(&fx) == 0);
	json_t *srv2 = server(&fx, s2, 0), *srv3 = server(&fx, s3, 0);
	CU_ASSERT_FATAL(srv2 && srv3);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(srv2, "name")),
			       "rename 4");
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(srv3, "name")),
			       "last");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(srv3, "status")), "closed");
	json_decref(srv2);
	json_decref(srv3);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT(st.outbox_delivered == N + 7);
	CU_ASSERT(sky_cache_check(fx.cache, NULL, NULL) == 0);
	json_decref(ids);
	fx_end(&fx);
}

/* Install an emulator fault (tools/emu/faults.h spec). */
static void fault(fixture *fx, const char *spec)
{
	json_t *j = json_string(spec);
	char *body = json_dumps(j, JSON_ENCODE_ANY);
	json_decref(j);
	sky_http_res res;
	CU_ASSERT_FATAL(sky_http(fx->emu.url, "POST", "/_admin/faults", body,
				 NULL, &res) == 201);
	sky_http_res_free(&res);
	free(body);
}

/*
 * The server refuses (400) the first two data PATCHes of a session: the
 * coalesced group, then the first of its writes sent alone. That one
 * write is the dead letter; the others land.
 */
static void test_deliver__refused_group_split(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx) == 0);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	json_t *ids = json_array();
	sky_session_list(fx.cache, APP, collect_sid, ids);
	CU_ASSERT_FATAL(json_array_size(ids) >= 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	char spec[512];
	snprintf(spec, sizeof(spec),
		 "error:code=400,next=2,method=PATCH,path=*/sessions/%s/data",
		 s1);
	fault(&fx, spec);
	enum { N = 8 };
	for (int i = 0; i < N; i++) {
		char p[64];
		snprintf(p, sizeof(p), "{\"u%d\":%d}", i, i);
		CU_ASSERT_FATAL(
		    sky_data_patch(fx.cache, APP, s1, p, strlen(p)) == 0);
	}
	uint64_t c0 = changes(&fx);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	CU_ASSERT_FATAL(sky_outbox_counts_get(fx.cache, &n) == 0);
	CU_ASSERT(n.rejected == 1);
	CU_ASSERT(n.pending + n.in_flight + n.in_doubt == 0);
	/* Once the write at fault is a dead letter, the others go grouped
	 * again: fewer server writes than writes. */
	uint64_t used = changes(&fx) - c0;
	CU_ASSERT(used >= 1 && used < N - 1);
	json_t *d = server(&fx, s1, 1);
	CU_ASSERT_FATAL(d != NULL);
	CU_ASSERT(json_object_get(d, "u0") == NULL);
	for (int i = 1; i < N; i++) {
		char k[16];
		snprintf(k, sizeof(k), "u%d", i);
		CU_ASSERT(json_integer_value(json_object_get(d, k)) == i);
	}
	json_decref(d);
	/* The local view no longer shows the dead letter's change. */
	char *text = NULL;
	CU_ASSERT_FATAL(sky_data_get(fx.cache, APP, s1, &text, NULL) == 0);
	CU_ASSERT(text && !strstr(text, "\"u0\"") && strstr(text, "\"u7\""));
	sky_free(text);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT(st.outbox_delivered == N - 1);
	CU_ASSERT(sky_cache_check(fx.cache, NULL, NULL) == 0);
	json_decref(ids);
	fx_end(&fx);
}

/*
 * A first map of 64 KiB: the snapshot and the queued writes grow it, and
 * the answers' commits (which clear each delivered entry and lay the
 * server's copy down) run on whatever room is left, growing it again if
 * they must; every write still lands once.
 */
static void test_deliver__map_grows(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start_map(&fx, 64 * 1024) == 0);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	json_t *ids = json_array();
	sky_session_list(fx.cache, APP, collect_sid, ids);
	CU_ASSERT_FATAL(json_array_size(ids) == 3);
	char body[2001];
	memset(body, 'y', 2000);
	body[2000] = '\0';
	int n = sky_test_workload(60, 30);
	for (int i = 0; i < n; i++) {
		const char *sid =
		    json_string_value(json_array_get(ids, (size_t)i % 3));
		char p[2100];
		snprintf(p, sizeof(p), "{\"big%d\":\"%s\"}", i, body);
		CU_ASSERT_FATAL(
		    sky_data_patch(fx.cache, APP, sid, p, strlen(p)) == 0);
	}
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	uint64_t map = st.map_bytes;
	CU_ASSERT(map > 64 * 1024);
	CU_ASSERT_FATAL(sync_once(&fx) == 0);
	CU_ASSERT(left(&fx) == 0);
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT(st.outbox_delivered == (uint64_t)n);
	CU_ASSERT(st.map_bytes >= map);
	for (size_t k = 0; k < 3; k++) {
		const char *sid = json_string_value(json_array_get(ids, k));
		json_t *d = server(&fx, sid, 1);
		CU_ASSERT_FATAL(d != NULL);
		for (int i = (int)k; i < n; i += 3) {
			char key[16];
			snprintf(key, sizeof(key), "big%d", i);
			const char *v =
			    json_string_value(json_object_get(d, key));
			CU_ASSERT(v && strlen(v) == 2000);
		}
		json_decref(d);
	}
	CU_ASSERT(sky_cache_check(fx.cache, NULL, NULL) == 0);
	json_decref(ids);
	fx_end(&fx);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_deliver__coalesced_in_order",
	     test_deliver__coalesced_in_order},
	    {"test_deliver__refused_group_split",
	     test_deliver__refused_group_split},
	    {"test_deliver__map_grows", test_deliver__map_grows},
	    {NULL, NULL}};
	int rc = sky_test_main("deliver", cases);
	if (broker_started)
		sky_broker_stop(&broker);
	return rc;
}
