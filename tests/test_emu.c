/*
 * test_emu.c - skylight-emu as a black box: a real mosquitto and a real
 * emulator (tests/harness.c), driven over HTTP with libcurl and watched
 * over MQTT.
 *
 * Covered: every call of docs/PROTOCOL.md with its status codes; the
 * permission rules (403 on writes, filtered lists, invisible sessions as
 * 404); token expiry, refresh and re-login; every fault kind with exact
 * "next N" counts and repeatable random draws; the events (DESIGN.md §3)
 * with their topics and payloads, each readable over REST by the time it
 * arrives; hostile percent-encoded ids; --state across restarts and a
 * kill -9; a clean (leak-free under ASan) shutdown.
 *
 * No assertion is about time: waits are for conditions, with generous
 * limits. Expectations about the seed are computed from the seed file.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "testutil.h"
#include "util.h"

#define APP "app-inspections"
#define APP2 "app-maintenance"
#define SESSIONS "/v1/applications/" APP "/sessions"
#define TOPIC "realms/demo/applications/+/sessions/#"

static sky_broker broker;
static sky_emu emu;
static int env_state; /* 0: not started, 1: up, -1: failed */
static char *seed_path;
static json_t *seed;
static char *tok_int, *tok_alice, *tok_bob, *tok_carol, *tok_dave, *tok_eve;
static char broker_arg[32];

/* ---- environment ---- */

static int env(void)
{
	if (env_state)
		return env_state > 0;
	env_state = -1;
	seed_path = sky_harness_src_path("tools/examples/realm.json");
	seed = json_load_file(seed_path, 0, NULL);
	if (!seed || sky_broker_start(&broker) < 0)
		return 0;
	snprintf(broker_arg, sizeof(broker_arg), "127.0.0.1:%d", broker.port);
	const char *args[] = {"--seed",	  seed_path,	   "--broker",
			      broker_arg, "--seed-random", "1",
			      NULL};
	if (sky_emu_start(&emu, args) < 0)
		return 0;
	tok_int = sky_emu_login(&emu, "integration", "integration-pass", NULL);
	tok_alice = sky_emu_login(&emu, "alice", "alice-pass", NULL);
	tok_bob = sky_emu_login(&emu, "bob", "bob-pass", NULL);
	tok_carol = sky_emu_login(&emu, "carol", "carol-pass", NULL);
	tok_dave = sky_emu_login(&emu, "dave", "dave-pass", NULL);
	tok_eve = sky_emu_login(&emu, "eve", "eve-pass", NULL);
	if (!tok_int || !tok_alice || !tok_bob || !tok_carol || !tok_dave ||
	    !tok_eve)
		return 0;
	env_state = 1;
	return 1;
}

#define ENV()                                                                  \
	do {                                                                   \
		if (!env())                                                    \
			CU_FAIL_FATAL("the broker or emulator did not start"); \
	} while (0)

/* One call on the main emulator; the status (0: transfer failed). */
static long call(const char *method, const char *path, const char *body,
		 const char *tok, sky_http_res *res)
{
	return sky_http(emu.url, method, path, body, tok, res);
}

static long status_of(const char *method, const char *path, const char *body,
		      const char *tok)
{
	sky_http_res r;
	long st = call(method, path, body, tok, &r);
	sky_http_res_free(&r);
	return st;
}

/* The string at key of obj, or "" when absent (for comparisons). */
static const char *jstr(const json_t *obj, const char *key)
{
	const char *v = json_string_value(json_object_get(obj, key));
	return v ? v : "";
}

/* The JSON value v equals the JSON text `text` (key order ignored). */
static int jeq(const json_t *v, const char *text)
{
	json_t *t = json_loads(text, JSON_DECODE_ANY, NULL);
	int eq = v && t && json_equal(v, t);
	if (!eq) {
		char *got = v ? json_dumps(v, JSON_ENCODE_ANY) : NULL;
		fprintf(stderr, "\nJSON differs:\n  %s\n  %s\n",
			got ? got : "(null)", text);
		free(got);
	}
	json_decref(t);
	return eq;
}

/* The error message of an error answer contains `needle`. */
static int message_has(const sky_http_res *r, const char *needle)
{
	const char *m = json_string_value(json_object_get(r->json, "message"));
	if (!m || !strstr(m, needle)) {
		fprintf(stderr, "\nmessage '%s' lacks '%s'\n", m ? m : "(none)",
			needle);
		return 0;
	}
	return 1;
}

/* Create a session in `app`; its JSON (new reference) or NULL. */
static json_t *create(const char *tok, const char *app, const char *body)
{
	char path[256];
	sky_http_res r;
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions", app);
	call("POST", path, body, tok, &r);
	json_t *s = r.status == 201 ? json_incref(r.json) : NULL;
	if (!s)
		fprintf(stderr, "\ncreate: %ld %s\n", r.status, r.body);
	sky_http_res_free(&r);
	return s;
}

static const char *sid_of(const json_t *s)
{
	return json_string_value(json_object_get(s, "sessionId"));
}

static void session_path(char *buf, size_t cap, const char *app,
			 const char *sid, const char *tail)
{
	snprintf(buf, cap, "/v1/applications/%s/sessions/%s%s", app, sid,
		 tail ? tail : "");
}

static json_t *get_json(const char *path, const char *tok)
{
	sky_http_res r;
	call("GET", path, NULL, tok, &r);
	json_t *j = r.status == 200 ? json_incref(r.json) : NULL;
	sky_http_res_free(&r);
	return j;
}

static json_t *admin_stats(const sky_emu *e)
{
	sky_http_res r;
	sky_http(e->url, "GET", "/_admin/stats", NULL, NULL, &r);
	json_t *j = json_incref(r.json);
	sky_http_res_free(&r);
	return j;
}

static long fired(const sky_emu *e, const char *kind)
{
	json_t *s = admin_stats(e);
	long n = (long)json_integer_value(
	    json_object_get(json_object_get(s, "fired"), kind));
	json_decref(s);
	return n;
}

static long add_fault(const sky_emu *e, const char *spec_json)
{
	sky_http_res r;
	long st =
	    sky_http(e->url, "POST", "/_admin/faults", spec_json, NULL, &r);
	sky_http_res_free(&r);
	return st;
}

static void clear_faults(const sky_emu *e)
{
	sky_http_res r;
	sky_http(e->url, "DELETE", "/_admin/faults", NULL, NULL, &r);
	sky_http_res_free(&r);
}

/* Sessions of the seed matching a predicate on (session, user). */
static int seed_has_participant(const json_t *s, const char *uid,
				const char *gid)
{
	size_t i;
	json_t *p;
	json_array_foreach(json_object_get(s, "participants"), i, p) {
		const char *id = json_string_value(json_object_get(p, "id"));
		const char *t = json_string_value(json_object_get(p, "type"));
		if (uid && !strcmp(t, "user") && !strcmp(id, uid))
			return 1;
		if (gid && !strcmp(t, "group") && !strcmp(id, gid))
			return 1;
	}
	return 0;
}

/* Open seed sessions of app visible to (uid, gid); gid NULL for none;
 * uid NULL for everyone. */
static int seed_open_visible(const char *app, const char *uid, const char *gid)
{
	int n = 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(seed, "sessions"), i, e) {
		json_t *s = json_object_get(e, "session");
		if (strcmp(
			json_string_value(json_object_get(s, "applicationId")),
			app) ||
		    strcmp(json_string_value(json_object_get(s, "status")),
			   "open"))
			continue;
		if (!uid || seed_has_participant(s, uid, gid))
			n++;
	}
	return n;
}

/* A seed session of app matching (visible to uid/gid == want). */
static const char *seed_session(const char *app, const char *uid,
				const char *gid, int want, const char *status)
{
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(seed, "sessions"), i, e) {
		json_t *s = json_object_get(e, "session");
		if (strcmp(
			json_string_value(json_object_get(s, "applicationId")),
			app))
			continue;
		if (status &&
		    strcmp(json_string_value(json_object_get(s, "status")),
			   status))
			continue;
		if (seed_has_participant(s, uid, gid) == want)
			return sid_of(s);
	}
	return NULL;
}

/* ---- MQTT helpers ---- */

/* Index of the first message from position `from` for sid with eventType
 * `type` (and, if not NULL, data equal to `data`), waiting up to ms. */
static long find_event(sky_sub *sub, const char *sid, const char *type,
		       const json_t *data, size_t from, int ms)
{
	size_t seen = from;
	for (int waited = 0;; waited += 20) {
		size_t n = sky_sub_count(sub);
		for (; seen < n; seen++) {
			json_t *ev = sky_sub_json(sub, seen);
			int hit =
			    ev && !strcmp(jstr(ev, "sessionId"), sid) &&
			    !strcmp(jstr(ev, "eventType"), type) &&
			    (!data ||
			     json_equal(json_object_get(ev, "data"), data));
			json_decref(ev);
			if (hit)
				return (long)seen;
		}
		if (waited >= ms)
			return -1;
		sky_sleep_ms(20);
	}
}

/* ---- tests: command line ---- */

static void test_emu__cli(void)
{
	char *out = NULL;
	const char *help[] = {"--help", NULL};
	CU_ASSERT_EQUAL(sky_emu_run(help, &out), 0);
	const char *flags[] = {"--listen", "--broker",	    "--seed",
			       "--state",  "--token-ttl",   "--refresh-ttl",
			       "--fault",  "--seed-random", "--allow-remote",
			       "-v"};
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, flags[i]) : NULL);
	free(out);

	const char *bad[] = {"--frobnicate", NULL};
	CU_ASSERT_EQUAL(sky_emu_run(bad, NULL), 1);
	const char *bad_ttl[] = {"--token-ttl", "soon", NULL};
	CU_ASSERT_EQUAL(sky_emu_run(bad_ttl, NULL), 1);
	const char *bad_fault[] = {"--fault", "meteor:p=1", NULL};
	CU_ASSERT_EQUAL(sky_emu_run(bad_fault, &out), 1);
	CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "meteor") : NULL);
	free(out);
	const char *bad_key[] = {"--fault", "error:code=99", NULL};
	CU_ASSERT_EQUAL(sky_emu_run(bad_key, &out), 1);
	CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "code") : NULL);
	free(out);

	char *realm = sky_harness_src_path("tools/examples/realm.json");
	const char *remote[] = {"--listen", "192.0.2.1:0", "--seed", realm,
				NULL};
	CU_ASSERT_EQUAL(sky_emu_run(remote, &out), 2);
	CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "loopback") : NULL);
	free(out);
	const char *noseed[] = {"--listen", "127.0.0.1:0", NULL};
	CU_ASSERT_EQUAL(sky_emu_run(noseed, &out), 2);
	CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "--seed") : NULL);
	free(out);
	/* A broken seed names the field. */
	const char *dir = sky_test_tmpdir();
	char bad_seed[512];
	snprintf(bad_seed, sizeof(bad_seed), "%s/seed.json", dir);
	FILE *f = fopen(bad_seed, "w");
	fputs("{\"realm\":\"demo\",\"users\":[],\"applications\":[],"
	      "\"sessions\":[{\"session\":{\"applicationId\":\"nope\","
	      "\"sessionId\":\"s1\"}}]}",
	      f);
	fclose(f);
	const char *badseed[] = {"--seed", bad_seed, NULL};
	CU_ASSERT_EQUAL(sky_emu_run(badseed, &out), 2);
	CU_ASSERT_PTR_NOT_NULL(out ? strstr(out, "applicationId") : NULL);
	free(out);
	free(realm);
}

/* ---- tests: authentication ---- */

/* Decode the payload of a JWT-shaped token. */
static json_t *jwt_claims(const char *tok)
{
	const char *a = strchr(tok, '.');
	const char *b = a ? strchr(a + 1, '.') : NULL;
	if (!b || strchr(b + 1, '.'))
		return NULL;
	size_t n = (size_t)(b - a - 1);
	char *text = calloc(1, n + 1);
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t out = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < n; i++) {
		const char *p = strchr(tab, a[1 + i]);
		if (!p) {
			free(text);
			return NULL;
		}
		acc = (acc << 6) | (uint32_t)(p - tab);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			text[out++] = (char)((acc >> bits) & 0xff);
		}
	}
	json_t *j = json_loadb(text, out, 0, NULL);
	free(text);
	return j;
}

static void test_emu__login(void)
{
	ENV();
	sky_http_res r;
	const char *path = "/v1/authentication/login/realms/demo";
	call("POST", path,
	     "{\"username\":\"integration\",\"password\":\"integration-pass\","
	     "\"realm\":\"demo\"}",
	     NULL, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	const char *access =
	    json_string_value(json_object_get(r.json, "access_token"));
	CU_ASSERT_PTR_NOT_NULL(access);
	CU_ASSERT(json_is_string(json_object_get(r.json, "refresh_token")));
	CU_ASSERT_EQUAL(
	    json_integer_value(json_object_get(r.json, "expires_in")), 3600);
	CU_ASSERT_EQUAL(
	    json_integer_value(json_object_get(r.json, "refresh_expires_in")),
	    86400);
	json_t *claims = access ? jwt_claims(access) : NULL;
	CU_ASSERT_STRING_EQUAL(jstr(claims, "sub"), "u-integration");
	CU_ASSERT_STRING_EQUAL(jstr(claims, "realm"), "demo");
	CU_ASSERT(json_integer_value(json_object_get(claims, "exp")) >
		  sky__now_us() / 1000000);
	json_decref(claims);
	sky_http_res_free(&r);

	call("POST", path, "{\"username\":\"integration\",\"password\":\"x\"}",
	     NULL, &r);
	CU_ASSERT_EQUAL(r.status, 401);
	CU_ASSERT(json_is_string(json_object_get(r.json, "message")));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    status_of("POST", path,
		      "{\"username\":\"nobody\",\"password\":\"x\"}", NULL),
	    401);
	call("POST", path, "{\"username\":\"integration\"}", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "password"));
	sky_http_res_free(&r);
	call("POST", path, "{\"username\":7,\"password\":\"x\"}", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "username"));
	sky_http_res_free(&r);
	call("POST", path,
	     "{\"username\":\"integration\",\"password\":\"integration-pass\","
	     "\"realm\":\"other\"}",
	     NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "realm"));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    status_of("POST", "/v1/authentication/login/realms/nope",
		      "{\"username\":\"a\",\"password\":\"b\"}", NULL),
	    404);
	CU_ASSERT_EQUAL(status_of("POST", path, "{not json", NULL), 400);
	CU_ASSERT_EQUAL(status_of("POST", path, NULL, NULL), 400);
	call("GET", path, NULL, NULL, &r);
	CU_ASSERT_EQUAL(r.status, 405);
	CU_ASSERT_STRING_EQUAL(r.allow, "POST");
	sky_http_res_free(&r);
}

static void test_emu__refresh(void)
{
	ENV();
	char *refresh = NULL;
	char *access = sky_emu_login(&emu, "alice", "alice-pass", &refresh);
	CU_ASSERT_PTR_NOT_NULL_FATAL(access);
	char body[2048];
	sky_http_res r;
	snprintf(body, sizeof(body), "{\"refreshToken\":\"%s\"}", refresh);
	call("POST", "/v1/authentication/token/refresh", body, NULL, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	const char *a2 =
	    json_string_value(json_object_get(r.json, "access_token"));
	CU_ASSERT(a2 && strcmp(a2, access) != 0);
	CU_ASSERT(json_is_string(json_object_get(r.json, "refresh_token")));
	CU_ASSERT(json_is_integer(json_object_get(r.json, "expires_in")));
	CU_ASSERT(
	    json_is_integer(json_object_get(r.json, "refresh_expires_in")));
	if (a2)
		CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, a2),
				200);
	sky_http_res_free(&r);
	/* An access token is not a refresh token, and garbage is neither. */
	snprintf(body, sizeof(body), "{\"refreshToken\":\"%s\"}", access);
	CU_ASSERT_EQUAL(
	    status_of("POST", "/v1/authentication/token/refresh", body, NULL),
	    401);
	CU_ASSERT_EQUAL(status_of("POST", "/v1/authentication/token/refresh",
				  "{\"refreshToken\":\"x.y.z\"}", NULL),
			401);
	call("POST", "/v1/authentication/token/refresh", "{}", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "refreshToken"));
	sky_http_res_free(&r);
	free(access);
	free(refresh);
}

static void test_emu__bearer(void)
{
	ENV();
	sky_http_res r;
	call("GET", "/v1/applications", NULL, NULL, &r);
	CU_ASSERT_EQUAL(r.status, 401);
	CU_ASSERT_STRING_EQUAL(jstr(r.json, "error"), "unauthorized");
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    status_of("GET", "/v1/applications", NULL, "not-a-token"), 401);
	/* Authentication comes before routing details such as the method. */
	CU_ASSERT_EQUAL(status_of("DELETE", SESSIONS, NULL, NULL), 401);
	CU_ASSERT_EQUAL(status_of("GET", SESSIONS, NULL, tok_int), 200);
}

/* ---- tests: applications, roles, sessions ---- */

static void test_emu__applications(void)
{
	ENV();
	sky_http_res r;
	call("GET", "/v1/applications", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_EQUAL(json_array_size(r.json), 2);
	sky_http_res_free(&r);
	call("GET", "/v1/applications", NULL, tok_bob, &r);
	CU_ASSERT_EQUAL(json_array_size(r.json), 1); /* inspections only */
	sky_http_res_free(&r);
	call("GET", "/v1/applications", NULL, tok_eve, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_EQUAL(json_array_size(r.json), 0);
	sky_http_res_free(&r);

	call("GET", "/v1/applications/" APP, NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_STRING_EQUAL(jstr(r.json, "applicationId"), APP);
	const char *fields[] = {"name",		"description",
				"draftVersion", "publishedVersion",
				"createdBy",	"createdAt"};
	for (size_t i = 0; i < 6; i++)
		CU_ASSERT_PTR_NOT_NULL(json_object_get(r.json, fields[i]));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    status_of("GET", "/v1/applications/" APP, NULL, tok_eve), 403);
	CU_ASSERT_EQUAL(
	    status_of("GET", "/v1/applications/" APP2, NULL, tok_bob), 403);
	CU_ASSERT_EQUAL(
	    status_of("GET", "/v1/applications/nope", NULL, tok_int), 404);

	call("GET", "/v1/applications/" APP "/roles", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_EQUAL(json_array_size(r.json), 5);
	json_t *role = json_array_get(r.json, 0);
	const char *rf[] = {"name",	 "permissions", "participants",
			    "createdBy", "createdAt",	"modifiedBy",
			    "modifiedAt"};
	for (size_t i = 0; i < 7; i++)
		CU_ASSERT_PTR_NOT_NULL(json_object_get(role, rf[i]));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    status_of("GET", "/v1/applications/" APP "/roles", NULL, tok_eve),
	    403);
	CU_ASSERT_EQUAL(
	    status_of("GET", "/v1/applications/nope/roles", NULL, tok_int),
	    404);
}

static size_t list_size(const char *app, const char *tok, long *status)
{
	char path[256];
	sky_http_res r;
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions", app);
	*status = call("GET", path, NULL, tok, &r);
	size_t n = json_array_size(r.json);
	/* Lists hold open sessions only. */
	size_t i;
	json_t *s;
	json_array_foreach(r.json, i, s)
		CU_ASSERT_STRING_EQUAL(jstr(s, "status"), "open");
	sky_http_res_free(&r);
	return n;
}

static void test_emu__sessions_list(void)
{
	ENV();
	long st;
	/* Counted before other tests add sessions: use a fresh emulator. */
	sky_emu e;
	const char *args[] = {"--seed", seed_path, NULL};
	CU_ASSERT_FATAL(sky_emu_start(&e, args) == 0);
	char *ti = sky_emu_login(&e, "integration", "integration-pass", NULL);
	char *tb = sky_emu_login(&e, "bob", "bob-pass", NULL);
	char *ta = sky_emu_login(&e, "alice", "alice-pass", NULL);
	char *tc = sky_emu_login(&e, "carol", "carol-pass", NULL);
	char *te = sky_emu_login(&e, "eve", "eve-pass", NULL);
	sky_emu saved = emu;
	emu = e; /* call() goes to the fresh emulator */
	CU_ASSERT_EQUAL(list_size(APP, ti, &st),
			(size_t)seed_open_visible(APP, NULL, NULL));
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(list_size(APP2, ti, &st),
			(size_t)seed_open_visible(APP2, NULL, NULL));
	/* bob: participant reader, sees only his own */
	size_t nb = list_size(APP, tb, &st);
	CU_ASSERT_EQUAL(st, 200);
	CU_ASSERT_EQUAL(nb, (size_t)seed_open_visible(APP, "u-bob", NULL));
	CU_ASSERT(nb > 0 && nb < (size_t)seed_open_visible(APP, NULL, NULL));
	/* alice: through her group */
	CU_ASSERT_EQUAL(list_size(APP, ta, &st),
			(size_t)seed_open_visible(APP, "u-alice", "g-line-a"));
	/* carol: read any */
	CU_ASSERT_EQUAL(list_size(APP, tc, &st),
			(size_t)seed_open_visible(APP, NULL, NULL));
	/* eve: no permission at all */
	list_size(APP, te, &st);
	CU_ASSERT_EQUAL(st, 403);
	list_size("nope", ti, &st);
	CU_ASSERT_EQUAL(st, 404);
	emu = saved;
	CU_ASSERT_EQUAL(sky_emu_stop(&e), 0);
	sky_emu_free(&e);
	free(ti);
	free(tb);
	free(ta);
	free(tc);
	free(te);
}

static void test_emu__session_get(void)
{
	ENV();
	char path[512];
	const char *mine = seed_session(APP, "u-bob", NULL, 1, "open");
	const char *other = seed_session(APP, "u-bob", NULL, 0, NULL);
	const char *closed = seed_session(APP, "u-nobody", NULL, 0, "closed");
	CU_ASSERT_FATAL(mine && other && closed);
	session_path(path, sizeof(path), APP, mine, NULL);
	sky_http_res r;
	call("GET", path, NULL, tok_bob, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	const char *fields[] = {"applicationId", "sessionId",  "status",
				"isDraft",	 "version",    "name",
				"participants",	 "createdBy",  "createdAt",
				"modifiedBy",	 "modifiedAt", "properties"};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		CU_ASSERT_PTR_NOT_NULL(json_object_get(r.json, fields[i]));
	sky_http_res_free(&r);
	/* Invisible sessions do not reveal that they exist. */
	session_path(path, sizeof(path), APP, other, NULL);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_bob), 404);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_eve), 404);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_carol), 200);
	session_path(path, sizeof(path), APP, other, "/data");
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_bob), 404);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 200);
	/* Closed sessions are not listed but can be read. */
	session_path(path, sizeof(path), APP, closed, NULL);
	call("GET", path, NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_STRING_EQUAL(jstr(r.json, "status"), "closed");
	sky_http_res_free(&r);
	session_path(path, sizeof(path), APP, "no-such-session", NULL);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 404);
	session_path(path, sizeof(path), "nope", mine, NULL);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 404);
}

static void test_emu__create(void)
{
	ENV();
	json_t *s =
	    create(tok_int, APP,
		   "{\"name\":\"Created\",\"description\":\"d\","
		   "\"properties\":{\"site\":\"Plant-9\",\"line\":\"X\"},"
		   "\"clientRef\":\"outbox-42\",\"extra\":{\"n\":[1,2]},"
		   "\"sessionId\":\"mine\",\"status\":\"open\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	const char *sid = sid_of(s);
	CU_ASSERT(sid && strlen(sid) == 36 && sid[14] == '4' &&
		  strcmp(sid, "mine") != 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "status")),
			       "open");
	CU_ASSERT(json_is_false(json_object_get(s, "isDraft")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(s, "version")), 3);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(s, "createdBy")),
	    "u-integration");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(s, "modifiedBy")),
	    "u-integration");
	int64_t t;
	CU_ASSERT_EQUAL(
	    sky__parse_time(json_string_value(json_object_get(s, "createdAt")),
			    &t),
	    0);
	const char *ca = json_string_value(json_object_get(s, "createdAt"));
	CU_ASSERT(ca && strlen(ca) == 27 && ca[26] == 'Z'); /* microseconds */
	CU_ASSERT(jeq(json_object_get(s, "participants"),
		      "[{\"id\":\"u-integration\",\"type\":\"user\"}]"));
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(s, "clientRef")), "outbox-42");
	/* GET and the list return the unknown fields too (round trip). */
	char path[512];
	session_path(path, sizeof(path), APP, sid, NULL);
	json_t *g = get_json(path, tok_int);
	CU_ASSERT(json_equal(g, s));
	json_decref(g);
	json_t *list = get_json(SESSIONS, tok_int);
	size_t i;
	json_t *x;
	int found = 0;
	json_array_foreach(list, i, x)
		if (!strcmp(sid_of(x), sid))
			found = json_equal(json_object_get(x, "extra"),
					   json_object_get(s, "extra"));
	CU_ASSERT(found);
	json_decref(list);
	json_decref(s);

	/* version from the body; data starts empty */
	s = create(tok_int, APP2, "{\"name\":\"v\",\"version\":7}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(s, "version")), 7);
	CU_ASSERT(json_is_object(json_object_get(s, "properties")) &&
		  json_object_size(json_object_get(s, "properties")) == 0);
	session_path(path, sizeof(path), APP2, sid_of(s), "/data");
	g = get_json(path, tok_int);
	CU_ASSERT(json_is_object(g) && json_object_size(g) == 0);
	json_decref(g);
	json_decref(s);

	/* dave: supervisor in inspections, nothing in maintenance */
	s = create(tok_dave, APP, "{\"name\":\"by dave\"}");
	CU_ASSERT_PTR_NOT_NULL(s);
	json_decref(s);
}

static void test_emu__create_errors(void)
{
	ENV();
	sky_http_res r;
	call("POST", SESSIONS, "{\"description\":\"no name\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "name"));
	sky_http_res_free(&r);
	call("POST", SESSIONS, "{\"name\":5}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "name"));
	sky_http_res_free(&r);
	call("POST", SESSIONS, "{\"name\":\"p\",\"properties\":{\"site\":3}}",
	     tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "properties.site"));
	sky_http_res_free(&r);
	call("POST", SESSIONS, "{\"name\":\"p\",\"properties\":[\"a\"]}",
	     tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "properties"));
	sky_http_res_free(&r);
	call("POST", SESSIONS, "{\"name\":\"p\",\"version\":true}", tok_int,
	     &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "version"));
	sky_http_res_free(&r);
	call("POST", SESSIONS, "{\"name\":\"p\",\"status\":\"closed\"}",
	     tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "status"));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("POST", SESSIONS, "[1]", tok_int), 400);
	CU_ASSERT_EQUAL(status_of("POST", SESSIONS, "{\"name\":", tok_int),
			400);
	CU_ASSERT_EQUAL(status_of("POST", SESSIONS,
				  "{\"name\":\"a\",\"name\":\"b\"}", tok_int),
			400);
	CU_ASSERT_EQUAL(status_of("POST", SESSIONS, NULL, tok_int), 400);
	/* no session:create */
	CU_ASSERT_EQUAL(
	    status_of("POST", SESSIONS, "{\"name\":\"x\"}", tok_bob), 403);
	CU_ASSERT_EQUAL(
	    status_of("POST", SESSIONS, "{\"name\":\"x\"}", tok_carol), 403);
	CU_ASSERT_EQUAL(status_of("POST", "/v1/applications/" APP2 "/sessions",
				  "{\"name\":\"x\"}", tok_dave),
			403);
	CU_ASSERT_EQUAL(status_of("POST", "/v1/applications/nope/sessions",
				  "{\"name\":\"x\"}", tok_int),
			404);
}

static void test_emu__patch(void)
{
	ENV();
	json_t *s = create(tok_int, APP,
			   "{\"name\":\"P\",\"properties\":{\"a\":\"1\"},"
			   "\"tag\":\"t\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512];
	sky_http_res r;
	session_path(path, sizeof(path), APP, sid_of(s), NULL);
	call("PATCH", path,
	     "{\"name\":\"P2\",\"description\":\"D\",\"properties\":{\"b\":"
	     "\"2\"},"
	     "\"tag\":null,\"note\":\"n\"}",
	     tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(r.json, "name")), "P2");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(r.json, "description")), "D");
	/* properties are replaced whole */
	CU_ASSERT(jeq(json_object_get(r.json, "properties"), "{\"b\":\"2\"}"));
	CU_ASSERT_PTR_NULL(json_object_get(r.json, "tag"));
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(r.json, "note")), "n");
	CU_ASSERT(
	    strcmp(json_string_value(json_object_get(r.json, "modifiedAt")),
		   json_string_value(json_object_get(s, "modifiedAt"))) > 0);
	json_t *g = get_json(path, tok_int);
	CU_ASSERT(json_equal(g, r.json));
	json_decref(g);
	sky_http_res_free(&r);

	/* Read-only fields: the same value passes, another one is refused. */
	char body[512];
	snprintf(body, sizeof(body), "{\"sessionId\":\"%s\",\"name\":\"P3\"}",
		 sid_of(s));
	CU_ASSERT_EQUAL(status_of("PATCH", path, body, tok_int), 200);
	call("PATCH", path, "{\"createdBy\":\"u-eve\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "createdBy"));
	sky_http_res_free(&r);
	call("PATCH", path, "{\"status\":\"open\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "status"));
	sky_http_res_free(&r);
	call("PATCH", path, "{\"properties\":{\"x\":1}}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "properties.x"));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "\"name\"", tok_int), 400);
	json_decref(s);

	/* Permissions on a session bob takes part in but may not change. */
	const char *bobs = seed_session(APP, "u-bob", NULL, 1, "open");
	session_path(path, sizeof(path), APP, bobs, NULL);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"name\":\"b\"}", tok_bob),
			403);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"name\":\"c\"}", tok_carol),
			403);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"name\":\"e\"}", tok_eve),
			404);
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path, "{\"status\":\"closed\"}", tok_bob), 403);
	/* alice may update line A sessions (group) but not close them */
	const char *linea = seed_session(APP, NULL, "g-line-a", 1, "open");
	session_path(path, sizeof(path), APP, linea, NULL);
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path, "{\"description\":\"alice\"}", tok_alice),
	    200);
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path, "{\"status\":\"closed\"}", tok_alice),
	    403);
}

static void test_emu__close(void)
{
	ENV();
	json_t *s = create(tok_dave, APP, "{\"name\":\"to close\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512], dpath[512];
	session_path(path, sizeof(path), APP, sid_of(s), NULL);
	session_path(dpath, sizeof(dpath), APP, sid_of(s), "/data");
	/* dave may close but not update */
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"name\":\"x\"}", tok_dave),
			403);
	sky_http_res r;
	call("PATCH", path, "{\"status\":\"closed\"}", tok_dave, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_STRING_EQUAL(jstr(r.json, "status"), "closed");
	sky_http_res_free(&r);
	/* A closed session takes no more writes: 409. */
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path, "{\"status\":\"closed\"}", tok_int), 409);
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path, "{\"name\":\"late\"}", tok_int), 409);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"a\":1}", tok_int), 409);
	/* gone from the list, still readable */
	json_t *list = get_json(SESSIONS, tok_int);
	size_t i;
	json_t *x;
	json_array_foreach(list, i, x)
		CU_ASSERT(strcmp(sid_of(x), sid_of(s)) != 0);
	json_decref(list);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 200);
	json_decref(s);
}

static void test_emu__data(void)
{
	ENV();
	json_t *s = create(tok_int, APP, "{\"name\":\"D\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512];
	sky_http_res r;
	session_path(path, sizeof(path), APP, sid_of(s), "/data");
	call("PATCH", path, "{\"a\":{\"b\":1,\"c\":2},\"arr\":[1,2],\"x\":1}",
	     tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	sky_http_res_free(&r);
	call("PATCH", path,
	     "{\"a\":{\"c\":null,\"d\":3},\"arr\":[9],\"x\":null}", tok_int,
	     &r);
	CU_ASSERT_EQUAL(r.status, 200);
	SKY_ASSERT_JSON_EQ(r.body, "{\"a\":{\"b\":1,\"d\":3},\"arr\":[9]}");
	sky_http_res_free(&r);
	call("GET", path, NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	SKY_ASSERT_JSON_EQ(r.body, "{\"a\":{\"b\":1,\"d\":3},\"arr\":[9]}");
	sky_http_res_free(&r);
	call("PATCH", path, "[1,2]", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "object"));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "7", tok_int), 400);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"a\":", tok_int), 400);
	/* bob reads data of his sessions, may not patch */
	const char *bobs = seed_session(APP, "u-bob", NULL, 1, "open");
	session_path(path, sizeof(path), APP, bobs, "/data");
	call("GET", path, NULL, tok_bob, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT(json_is_object(r.json) && json_object_size(r.json) > 0);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"z\":1}", tok_bob), 403);
	session_path(path, sizeof(path), APP, "missing", "/data");
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"z\":1}", tok_int), 404);
	json_decref(s);
}

static void test_emu__participants(void)
{
	ENV();
	json_t *s = create(tok_int, APP, "{\"name\":\"parts\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512], ppath[512];
	sky_http_res r;
	session_path(path, sizeof(path), APP, sid_of(s), NULL);
	session_path(ppath, sizeof(ppath), APP, sid_of(s), "/participants");
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_bob), 404);
	call("POST", ppath, "{\"id\":\"u-bob\",\"type\":\"user\"}", tok_int,
	     &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_EQUAL(
	    json_array_size(json_object_get(r.json, "participants")), 2);
	sky_http_res_free(&r);
	/* now bob sees it */
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_bob), 200);
	/* the same participant again changes nothing */
	call("POST", ppath, "{\"id\":\"u-bob\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_EQUAL(
	    json_array_size(json_object_get(r.json, "participants")), 2);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("POST", ppath,
				  "{\"id\":\"g-quality\",\"type\":\"group\"}",
				  tok_int),
			200);
	call("POST", ppath, "{\"id\":\"u-ghost\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "id"));
	sky_http_res_free(&r);
	call("POST", ppath, "{\"id\":\"u-eve\",\"type\":\"robot\"}", tok_int,
	     &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "type"));
	sky_http_res_free(&r);
	call("POST", ppath, "{\"type\":\"user\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "id"));
	sky_http_res_free(&r);
	/* bob (a reader) may not add anyone */
	CU_ASSERT_EQUAL(status_of("POST", ppath, "{\"id\":\"u-eve\"}", tok_bob),
			403);
	json_decref(s);
}

static void test_emu__custom_event(void)
{
	ENV();
	json_t *s = create(tok_int, APP, "{\"name\":\"ev\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512];
	sky_http_res r;
	session_path(path, sizeof(path), APP, sid_of(s), "/events");
	call("POST", path, "{\"kind\":\"photo\",\"n\":[1,2]}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 201);
	CU_ASSERT(json_is_string(json_object_get(r.json, "eventId")));
	CU_ASSERT(jeq(json_object_get(r.json, "data"),
		      "{\"kind\":\"photo\",\"n\":[1,2]}"));
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("POST", path, NULL, tok_int), 400);
	CU_ASSERT_EQUAL(status_of("POST", path, "{oops", tok_int), 400);
	CU_ASSERT_EQUAL(status_of("POST", path, "{\"k\":1}", tok_carol), 403);
	json_decref(s);
}

static void test_emu__routes_and_limits(void)
{
	ENV();
	sky_http_res r;
	call("PUT", SESSIONS, "{}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 405);
	CU_ASSERT_STRING_EQUAL(r.allow, "GET, POST");
	sky_http_res_free(&r);
	call("DELETE", SESSIONS "/x", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 405);
	CU_ASSERT_STRING_EQUAL(r.allow, "GET, PATCH");
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    status_of("GET", SESSIONS "/x/participants", NULL, tok_int), 405);
	CU_ASSERT_EQUAL(status_of("GET", "/v2/applications", NULL, tok_int),
			404);
	CU_ASSERT_EQUAL(status_of("GET", "/", NULL, tok_int), 404);
	CU_ASSERT_EQUAL(status_of("GET", SESSIONS "/x/y/z", NULL, tok_int),
			404);
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications/", NULL, tok_int),
			404);
	/* over the 1 MiB body limit */
	size_t big = 1100 * 1024;
	char *body = malloc(big + 32);
	strcpy(body, "{\"blob\":\"");
	memset(body + 9, 'x', big);
	strcpy(body + 9 + big, "\"}");
	json_t *s = create(tok_int, APP, "{\"name\":\"big\"}");
	char path[512];
	session_path(path, sizeof(path), APP, sid_of(s), "/data");
	CU_ASSERT_EQUAL(status_of("PATCH", path, body, tok_int), 413);
	/* deeper than 64 levels */
	size_t k = 0;
	for (int d = 0; d < 70; d++)
		body[k++] = '[';
	for (int d = 0; d < 70; d++)
		body[k++] = ']';
	body[k] = '\0';
	char wrapped[256];
	snprintf(wrapped, sizeof(wrapped), "{\"deep\":%s}", body);
	sky_http_res r2;
	call("PATCH", path, wrapped, tok_int, &r2);
	CU_ASSERT_EQUAL(r2.status, 400);
	CU_ASSERT(message_has(&r2, "deep"));
	sky_http_res_free(&r2);
	free(body);
	json_decref(s);
	/* 500 and 503 only come from faults: see test_emu__fault_error */
}

static void test_emu__hostile_ids(void)
{
	ENV();
	const char *real = seed_session(APP, NULL, NULL, 0, "open");
	char path[512];
	/* Encoded slashes and dots stay inside one id. */
	const char *notfound[] = {
	    "/v1/applications/..%2F" APP "/sessions",
	    "/v1/applications/" APP "%2Fsessions",
	    SESSIONS "/..",
	    SESSIONS "/.",
	    SESSIONS "/..%2F..%2F" APP,
	    SESSIONS "/a%2Fb",
	    SESSIONS "/%2E%2E",
	    "/v1/applications/%2E%2E/sessions",
	};
	for (size_t i = 0; i < sizeof(notfound) / sizeof(notfound[0]); i++) {
		long st = status_of("GET", notfound[i], NULL, tok_int);
		if (st != 404)
			fprintf(stderr, "\n%s -> %ld\n", notfound[i], st);
		CU_ASSERT_EQUAL(st, 404);
	}
	/* Dot segments are not resolved: no route has them. */
	snprintf(path, sizeof(path), "/v1/applications/x/../" APP "/sessions");
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 404);
	/* An encoded id of a real session still names that session. */
	char enc[256] = "";
	for (const char *p = real; *p; p++)
		sprintf(enc + strlen(enc), "%%%02X", (unsigned char)*p);
	session_path(path, sizeof(path), APP, enc, NULL);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 200);
	/* Bad encodings, NUL, control characters, over-long ids: 400. */
	const char *bad[] = {
	    SESSIONS "/%zz",   SESSIONS "/abc%",  SESSIONS "/abc%4",
	    SESSIONS "/a%00b", SESSIONS "/a%0Ab", SESSIONS "/%FF%FE",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		long st = status_of("GET", bad[i], NULL, tok_int);
		if (st != 400)
			fprintf(stderr, "\n%s -> %ld\n", bad[i], st);
		CU_ASSERT_EQUAL(st, 400);
	}
	char longid[400];
	memset(longid, 'a', 300);
	longid[300] = '\0';
	session_path(path, sizeof(path), APP, longid, NULL);
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 400);
	/* A write to a hostile id lands nowhere. */
	CU_ASSERT_EQUAL(status_of("PATCH", SESSIONS "/..%2F..",
				  "{\"name\":\"x\"}", tok_int),
			404);
}

/* ---- tests: tokens ---- */

static void test_emu__token_expiry(void)
{
	ENV();
	sky_emu e;
	const char *args[] = {"--seed",	       seed_path, "--token-ttl", "1",
			      "--refresh-ttl", "3",	  NULL};
	CU_ASSERT_FATAL(sky_emu_start(&e, args) == 0);
	char *refresh = NULL;
	char *access =
	    sky_emu_login(&e, "integration", "integration-pass", &refresh);
	CU_ASSERT_PTR_NOT_NULL_FATAL(access);
	sky_http_res r;
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "GET", "/v1/applications", NULL, access, &r), 200);
	sky_http_res_free(&r);
	/* wait for the access token to expire */
	long st = 200;
	for (int i = 0; i < 200 && st == 200; i++) {
		sky_sleep_ms(50);
		st = sky_http(e.url, "GET", "/v1/applications", NULL, access,
			      &r);
		if (st == 401)
			CU_ASSERT(message_has(&r, "expired"));
		sky_http_res_free(&r);
	}
	CU_ASSERT_EQUAL(st, 401);
	/* the refresh token still works and gives a working pair */
	char body[2048];
	snprintf(body, sizeof(body), "{\"refreshToken\":\"%s\"}", refresh);
	sky_http(e.url, "POST", "/v1/authentication/token/refresh", body, NULL,
		 &r);
	CU_ASSERT_EQUAL(r.status, 200);
	const char *a2 =
	    json_string_value(json_object_get(r.json, "access_token"));
	CU_ASSERT_EQUAL(
	    json_integer_value(json_object_get(r.json, "expires_in")), 1);
	if (a2) {
		sky_http_res r2;
		CU_ASSERT_EQUAL(
		    sky_http(e.url, "GET", "/v1/applications", NULL, a2, &r2),
		    200);
		sky_http_res_free(&r2);
	}
	sky_http_res_free(&r);
	/* wait for the refresh token to expire too */
	st = 200;
	for (int i = 0; i < 200 && st == 200; i++) {
		sky_sleep_ms(50);
		st = sky_http(e.url, "POST", "/v1/authentication/token/refresh",
			      body, NULL, &r);
		sky_http_res_free(&r);
	}
	CU_ASSERT_EQUAL(st, 401);
	/* then only a new login helps */
	char *again =
	    sky_emu_login(&e, "integration", "integration-pass", NULL);
	CU_ASSERT_PTR_NOT_NULL(again);

	/* Early expiry from the admin endpoint. */
	char *r3 = NULL;
	char *a3 = sky_emu_login(&e, "alice", "alice-pass", &r3);
	sky_http(e.url, "POST", "/_admin/expire-tokens", NULL, NULL, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT(json_integer_value(json_object_get(r.json, "expired")) >= 1);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "GET", "/v1/applications", NULL, a3, &r), 401);
	sky_http_res_free(&r);
	snprintf(body, sizeof(body), "{\"refreshToken\":\"%s\"}", r3);
	CU_ASSERT_EQUAL(sky_http(e.url, "POST",
				 "/v1/authentication/token/refresh", body, NULL,
				 &r),
			200);
	sky_http_res_free(&r);
	sky_http(e.url, "POST", "/_admin/expire-tokens", "{\"refresh\":true}",
		 NULL, &r);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(sky_http(e.url, "POST",
				 "/v1/authentication/token/refresh", body, NULL,
				 &r),
			401);
	sky_http_res_free(&r);
	CU_ASSERT(fired(&e, "expire") >= 2);
	CU_ASSERT_EQUAL(sky_emu_stop(&e), 0);
	sky_emu_free(&e);
	free(access);
	free(refresh);
	free(again);
	free(a3);
	free(r3);
}

/* ---- tests: faults ---- */

static void test_emu__fault_error(void)
{
	ENV();
	long before = fired(&emu, "error");
	CU_ASSERT_EQUAL(add_fault(&emu, "\"error:code=503,next=3,retry=2\""),
			201);
	sky_http_res r;
	for (int i = 0; i < 3; i++) {
		call("GET", "/v1/applications", NULL, tok_int, &r);
		CU_ASSERT_EQUAL(r.status, 503);
		CU_ASSERT_STRING_EQUAL(r.retry_after, "2");
		CU_ASSERT(json_is_string(json_object_get(r.json, "message")));
		sky_http_res_free(&r);
	}
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
	CU_ASSERT_EQUAL(fired(&emu, "error") - before, 3);
	/* admin endpoints are never faulted */
	CU_ASSERT_EQUAL(add_fault(&emu, "{\"kind\":\"error\",\"code\":500}"),
			201);
	json_t *st = admin_stats(&emu);
	CU_ASSERT_PTR_NOT_NULL(st);
	json_decref(st);
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			500);
	clear_faults(&emu);
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
}

static void test_emu__fault_throttle_skip_filters(void)
{
	ENV();
	sky_http_res r;
	CU_ASSERT_EQUAL(add_fault(&emu, "\"throttle:next=1,retry=5\""), 201);
	call("GET", "/v1/applications", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 429);
	CU_ASSERT_STRING_EQUAL(r.retry_after, "5");
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
	/* skip: the third matching request fails, once */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"error:skip=2,next=1\""), 201);
	long want[] = {200, 200, 503, 200};
	for (int i = 0; i < 4; i++)
		CU_ASSERT_EQUAL(
		    status_of("GET", "/v1/applications", NULL, tok_int),
		    want[i]);
	/* method and path filters: only writes to data */
	CU_ASSERT_EQUAL(add_fault(&emu,
				  "{\"kind\":\"error\",\"method\":\"write\","
				  "\"path\":\"/v1/applications/*/data\","
				  "\"next\":2}"),
			201);
	json_t *s = create(tok_int, APP, "{\"name\":\"filters\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512];
	session_path(path, sizeof(path), APP, sid_of(s), "/data");
	CU_ASSERT_EQUAL(status_of("GET", path, NULL, tok_int), 200);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"a\":1}", tok_int), 503);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"a\":2}", tok_int), 503);
	CU_ASSERT_EQUAL(status_of("PATCH", path, "{\"a\":3}", tok_int), 200);
	/* not processed: the failed patches never landed */
	json_t *d = get_json(path, tok_int);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(d, "a")), 3);
	json_decref(d);
	json_decref(s);
	clear_faults(&emu);
	/* bad specs */
	call("POST", "/_admin/faults", "\"bogus\"", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	sky_http_res_free(&r);
	sky_http(emu.url, "POST", "/_admin/faults",
		 "{\"kind\":\"error\",\"p\":2}", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "p"));
	sky_http_res_free(&r);
	sky_http(emu.url, "POST", "/_admin/faults",
		 "[\"delay:ms=1\",\"error:nope=1\"]", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 400);
	CU_ASSERT(message_has(&r, "nope"));
	sky_http_res_free(&r);
	/* all or nothing: the good one of that array was not kept */
	sky_http(emu.url, "GET", "/_admin/faults", NULL, NULL, &r);
	CU_ASSERT_EQUAL(json_array_size(json_object_get(r.json, "faults")), 0);
	sky_http_res_free(&r);
	/* remove one by id */
	sky_http(emu.url, "POST", "/_admin/faults", "\"delay:ms=5,next=1\"",
		 NULL, &r);
	json_int_t id = json_integer_value(
	    json_array_get(json_object_get(r.json, "ids"), 0));
	sky_http_res_free(&r);
	snprintf(path, sizeof(path), "/_admin/faults/%lld", (long long)id);
	CU_ASSERT_EQUAL(sky_http(emu.url, "DELETE", path, NULL, NULL, &r), 200);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(sky_http(emu.url, "DELETE", path, NULL, NULL, &r), 404);
	sky_http_res_free(&r);
}

static void test_emu__fault_reset(void)
{
	ENV();
	long before = fired(&emu, "reset");
	CU_ASSERT_EQUAL(add_fault(&emu, "\"reset:next=2\""), 201);
	sky_http_res r;
	for (int i = 0; i < 2; i++) {
		call("GET", "/v1/applications", NULL, tok_int, &r);
		CU_ASSERT_EQUAL(r.status, 0);
		CU_ASSERT_NOT_EQUAL(r.curl_code, 0);
		sky_http_res_free(&r);
	}
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
	/* mid-answer: some bytes of an answer, then the reset */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"reset:next=1,bytes=40\""), 201);
	call("GET", "/v1/applications", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_NOT_EQUAL(r.curl_code, 0);
	sky_http_res_free(&r);
	/* a reset write is not carried out */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"reset:next=1,method=POST\""), 201);
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
	CU_ASSERT_EQUAL(
	    status_of("POST", SESSIONS, "{\"name\":\"never-made\"}", tok_int),
	    0);
	json_t *list = get_json(SESSIONS, tok_int);
	size_t i;
	json_t *x;
	json_array_foreach(list, i, x)
		CU_ASSERT(strcmp(json_string_value(json_object_get(x, "name")),
				 "never-made") != 0);
	json_decref(list);
	CU_ASSERT_EQUAL(fired(&emu, "reset") - before, 4);
	clear_faults(&emu);
}

static void test_emu__fault_drop(void)
{
	ENV();
	sky_sub *sub = sky_sub_start(broker.port, "test-drop", TOPIC);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
	json_t *s = create(tok_int, APP, "{\"name\":\"before drop\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	char path[512];
	session_path(path, sizeof(path), APP, sid_of(s), NULL);
	long before = fired(&emu, "drop");
	CU_ASSERT_EQUAL(
	    add_fault(&emu, "\"drop:next=1,method=PATCH,bytes=20\""), 201);
	sky_http_res r;
	call("PATCH", path, "{\"name\":\"after drop\"}", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 0); /* the client saw a failure... */
	CU_ASSERT_NOT_EQUAL(r.curl_code, 0);
	sky_http_res_free(&r);
	/* ...but the write happened, and its event went out */
	json_t *g = get_json(path, tok_int);
	CU_ASSERT_STRING_EQUAL(jstr(g, "name"), "after drop");
	json_decref(g);
	CU_ASSERT(
	    find_event(sub, sid_of(s), "session_updated", NULL, 0, 10000) >= 0);
	CU_ASSERT_EQUAL(fired(&emu, "drop") - before, 1);
	/* drop with no bytes at all: a create lands, the answer is lost */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"drop:next=1,method=POST\""), 201);
	CU_ASSERT_EQUAL(
	    status_of("POST", SESSIONS,
		      "{\"name\":\"lost answer\",\"clientRef\":\"r-77\"}",
		      tok_int),
	    0);
	json_t *list = get_json(SESSIONS, tok_int);
	size_t i, n = 0;
	json_t *x;
	json_array_foreach(list, i, x) {
		const char *ref =
		    json_string_value(json_object_get(x, "clientRef"));
		n += ref && !strcmp(ref, "r-77");
	}
	CU_ASSERT_EQUAL(n, 1); /* the client can find what it created */
	json_decref(list);
	json_decref(s);
	clear_faults(&emu);
	sky_sub_stop(sub);
}

static void test_emu__fault_delay(void)
{
	ENV();
	long before = fired(&emu, "delay");
	CU_ASSERT_EQUAL(add_fault(&emu, "\"delay:ms=4000,next=1,method=POST\""),
			201);
	/* The client gives up long before the server answers... */
	sky_http_set_timeout(500);
	sky_http_res r;
	call("POST", SESSIONS, "{\"name\":\"slow\",\"clientRef\":\"slow-1\"}",
	     tok_int, &r);
	sky_http_set_timeout(20000);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(r.curl_code, 28); /* CURLE_OPERATION_TIMEDOUT */
	sky_http_res_free(&r);
	json_t *st = admin_stats(&emu);
	CU_ASSERT_EQUAL(
	    json_integer_value(json_object_get(st, "pending_requests")), 1);
	json_decref(st);
	/* ...which still carries the request out when the delay is over. */
	int found = 0;
	for (int i = 0; i < 200 && !found; i++) {
		json_t *list = get_json(SESSIONS, tok_int);
		size_t k;
		json_t *x;
		json_array_foreach(list, k, x) {
			const char *ref =
			    json_string_value(json_object_get(x, "clientRef"));
			found |= ref && !strcmp(ref, "slow-1");
		}
		json_decref(list);
		if (!found)
			sky_sleep_ms(50);
	}
	CU_ASSERT(found);
	/* a delayed GET is answered normally */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"delay:ms=200,next=1\""), 201);
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
	CU_ASSERT_EQUAL(fired(&emu, "delay") - before, 2);
	clear_faults(&emu);
}

/* Poll until the emulator answers again. */
static int wait_serving(const sky_emu *e)
{
	for (int i = 0; i < 400; i++) {
		sky_http_res r;
		long st =
		    sky_http(e->url, "GET", "/_admin/stats", NULL, NULL, &r);
		sky_http_res_free(&r);
		if (st == 200)
			return 1;
		sky_sleep_ms(25);
	}
	return 0;
}

static void test_emu__fault_refuse(void)
{
	ENV();
	long before = fired(&emu, "refuse");
	CU_ASSERT_EQUAL(add_fault(&emu, "\"refuse:next=1,ms=1500\""), 201);
	sky_http_res r;
	call("GET", "/v1/applications", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 0);
	sky_http_res_free(&r);
	call("GET", "/v1/applications", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 0);
	CU_ASSERT_EQUAL(r.curl_code, 7); /* CURLE_COULDNT_CONNECT: refused */
	sky_http_res_free(&r);
	CU_ASSERT(wait_serving(&emu));
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok_int),
			200);
	/* from the admin endpoint, at once */
	sky_http(emu.url, "POST", "/_admin/refuse", "{\"ms\":800}", NULL, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	sky_http_res_free(&r);
	call("GET", "/v1/applications", NULL, tok_int, &r);
	CU_ASSERT_EQUAL(r.curl_code, 7);
	sky_http_res_free(&r);
	CU_ASSERT(wait_serving(&emu));
	CU_ASSERT_EQUAL(fired(&emu, "refuse") - before, 2);
	clear_faults(&emu);
}

static void test_emu__fault_expire(void)
{
	ENV();
	char *refresh = NULL;
	char *tok =
	    sky_emu_login(&emu, "integration", "integration-pass", &refresh);
	CU_ASSERT_PTR_NOT_NULL_FATAL(tok);
	long before = fired(&emu, "expire");
	CU_ASSERT_EQUAL(add_fault(&emu, "\"expire:next=1\""), 201);
	sky_http_res r;
	call("GET", "/v1/applications", NULL, tok, &r);
	CU_ASSERT_EQUAL(r.status, 401);
	CU_ASSERT(message_has(&r, "expired"));
	sky_http_res_free(&r);
	/* it stays expired; a refresh gives a working token */
	CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, tok), 401);
	char body[2048];
	snprintf(body, sizeof(body), "{\"refreshToken\":\"%s\"}", refresh);
	call("POST", "/v1/authentication/token/refresh", body, NULL, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	const char *a2 =
	    json_string_value(json_object_get(r.json, "access_token"));
	if (a2)
		CU_ASSERT_EQUAL(status_of("GET", "/v1/applications", NULL, a2),
				200);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(fired(&emu, "expire") - before, 1);
	free(tok);
	free(refresh);
	clear_faults(&emu);
}

/* 40 GETs as a string of 'x' (503) and '.' (200). */
static void draw_pattern(const sky_emu *e, const char *tok, char *out)
{
	for (int i = 0; i < 40; i++) {
		sky_http_res r;
		long st =
		    sky_http(e->url, "GET", "/v1/applications", NULL, tok, &r);
		sky_http_res_free(&r);
		out[i] = st == 503 ? 'x' : st == 200 ? '.' : '?';
		/* other paths are not matched by the filter */
		long other = sky_http(e->url, "GET", "/v1/applications/" APP,
				      NULL, tok, &r);
		sky_http_res_free(&r);
		CU_ASSERT_EQUAL(other, 200);
	}
	out[40] = '\0';
}

static void test_emu__fault_seed_repeatable(void)
{
	ENV();
	sky_emu e;
	const char *args[] = {
	    "--seed", seed_path, "--seed-random",
	    "42",     "--fault", "error:p=0.5,path=/v1/applications",
	    NULL};
	CU_ASSERT_FATAL(sky_emu_start(&e, args) == 0);
	char *tok = sky_emu_login(&e, "integration", "integration-pass", NULL);
	char a[41], b[41];
	draw_pattern(&e, tok, a);
	free(tok);
	CU_ASSERT(strchr(a, 'x') && strchr(a, '.') && !strchr(a, '?'));
	long n = 0;
	for (int i = 0; i < 40; i++)
		n += a[i] == 'x';
	CU_ASSERT_EQUAL(fired(&e, "error"), n);
	CU_ASSERT_EQUAL(sky_emu_restart(&e), 0);
	tok = sky_emu_login(&e, "integration", "integration-pass", NULL);
	draw_pattern(&e, tok, b);
	CU_ASSERT_STRING_EQUAL(a, b);
	/* reseeding at run time restarts the same sequence */
	sky_http_res r;
	sky_http(e.url, "POST", "/_admin/random-seed", "{\"seed\":42}", NULL,
		 &r);
	CU_ASSERT_EQUAL(r.status, 200);
	sky_http_res_free(&r);
	draw_pattern(&e, tok, b);
	CU_ASSERT_STRING_EQUAL(a, b);
	free(tok);
	CU_ASSERT_EQUAL(sky_emu_stop(&e), 0);
	sky_emu_free(&e);
}

/* ---- tests: events ---- */

static void check_envelope(const json_t *ev, const char *sid, const char *type)
{
	const char *fields[] = {"applicationId", "sessionId", "eventId",
				"source",	 "userId",    "createdAt",
				"timestamp",	 "version",   "eventType"};
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		CU_ASSERT_PTR_NOT_NULL(json_object_get(ev, fields[i]));
	CU_ASSERT_STRING_EQUAL(jstr(ev, "sessionId"), sid);
	CU_ASSERT_STRING_EQUAL(jstr(ev, "eventType"), type);
	CU_ASSERT_STRING_EQUAL(jstr(ev, "userId"), "u-integration");
	int64_t t;
	CU_ASSERT_EQUAL(
	    sky__parse_time(json_string_value(json_object_get(ev, "createdAt")),
			    &t),
	    0);
}

/* Wait for the event, check topic and envelope; the event (new ref). */
static json_t *expect_event(sky_sub *sub, const char *sid, const char *type)
{
	long i = find_event(sub, sid, type, NULL, 0, 10000);
	CU_ASSERT(i >= 0);
	if (i < 0)
		return NULL;
	char *topic = NULL;
	sky_sub_get(sub, (size_t)i, &topic, NULL);
	char want[512];
	snprintf(want, sizeof(want),
		 "realms/demo/applications/" APP "/sessions/%s/%s", sid, type);
	CU_ASSERT_STRING_EQUAL(topic ? topic : "", want);
	free(topic);
	json_t *ev = sky_sub_json(sub, (size_t)i);
	check_envelope(ev, sid, type);
	return ev;
}

/* Remember an event's id (to count distinct ids). */
static void note_id(json_t *ids, const json_t *ev)
{
	const char *id = json_string_value(json_object_get(ev, "eventId"));
	json_object_set(ids, id ? id : "?", json_true());
}

static void test_emu__events(void)
{
	ENV();
	sky_sub *sub = sky_sub_start(broker.port, "test-events", TOPIC);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
	char path[512], dpath[512], body[512];
	json_t *ids = json_object();

	/* session_created: the full session, as REST answered it */
	json_t *s = create(tok_int, APP,
			   "{\"name\":\"E\",\"properties\":"
			   "{\"k\":\"v\"}}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	const char *sid = sid_of(s);
	session_path(path, sizeof(path), APP, sid, NULL);
	session_path(dpath, sizeof(dpath), APP, sid, "/data");
	json_t *ev = expect_event(sub, sid, "session_created");
	CU_ASSERT(json_equal(json_object_get(ev, "session"), s));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(ev, "version")), 3);
	/* By the time the event arrives, REST has the session. */
	json_t *g = get_json(path, tok_int);
	CU_ASSERT(json_equal(g, json_object_get(ev, "session")));
	json_decref(g);
	note_id(ids, ev);
	json_decref(ev);

	/* one PATCH, two events: properties and the other fields */
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path,
		      "{\"name\":\"E2\",\"properties\":{\"k\":\"w\"}}",
		      tok_int),
	    200);
	ev = expect_event(sub, sid, "session_properties_updated");
	json_t *p = json_object_get(ev, "session");
	CU_ASSERT(jeq(json_object_get(p, "properties"), "{\"k\":\"w\"}"));
	CU_ASSERT_PTR_NULL(json_object_get(p, "name"));
	g = get_json(path, tok_int);
	CU_ASSERT(json_equal(json_object_get(g, "properties"),
			     json_object_get(p, "properties")));
	json_decref(g);
	note_id(ids, ev);
	json_decref(ev);
	ev = expect_event(sub, sid, "session_updated");
	p = json_object_get(ev, "session");
	CU_ASSERT_STRING_EQUAL(jstr(p, "name"), "E2");
	CU_ASSERT_PTR_NULL(json_object_get(p, "properties"));
	note_id(ids, ev);
	json_decref(ev);

	/* session_data_updated: the patch itself */
	const char *patch = "{\"a\":{\"b\":[1,2]},\"c\":null}";
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, patch, tok_int), 200);
	ev = expect_event(sub, sid, "session_data_updated");
	CU_ASSERT(jeq(json_object_get(ev, "data"), patch));
	g = get_json(dpath, tok_int);
	CU_ASSERT(jeq(g, "{\"a\":{\"b\":[1,2]}}"));
	json_decref(g);
	note_id(ids, ev);
	json_decref(ev);

	/* a participant: session_updated with the list */
	snprintf(body, sizeof(body),
		 "{\"id\":\"g-quality\",\"type\":\"group\"}");
	session_path(dpath, sizeof(dpath), APP, sid, "/participants");
	CU_ASSERT_EQUAL(status_of("POST", dpath, body, tok_int), 200);
	size_t from =
	    (size_t)find_event(sub, sid, "session_updated", NULL, 0, 0) + 1;
	long i = find_event(sub, sid, "session_updated", NULL, from, 10000);
	CU_ASSERT(i >= 0);
	ev = sky_sub_json(sub, (size_t)(i < 0 ? 0 : i));
	CU_ASSERT_EQUAL(json_array_size(json_object_get(
			    json_object_get(ev, "session"), "participants")),
			2);
	note_id(ids, ev);
	json_decref(ev);

	/* session_event_created: the custom body */
	sky_http_res r;
	session_path(dpath, sizeof(dpath), APP, sid, "/events");
	call("POST", dpath, "[\"any\",{\"json\":true}]", tok_int, &r);
	CU_ASSERT_EQUAL(r.status, 201);
	ev = expect_event(sub, sid, "session_event_created");
	CU_ASSERT(
	    jeq(json_object_get(ev, "data"), "[\"any\",{\"json\":true}]"));
	CU_ASSERT(json_equal(json_object_get(ev, "eventId"),
			     json_object_get(r.json, "eventId")));
	sky_http_res_free(&r);
	note_id(ids, ev);
	json_decref(ev);

	/* session_closed */
	CU_ASSERT_EQUAL(
	    status_of("PATCH", path, "{\"status\":\"closed\"}", tok_int), 200);
	ev = expect_event(sub, sid, "session_closed");
	CU_ASSERT_STRING_EQUAL(jstr(json_object_get(ev, "session"), "status"),
			       "closed");
	g = get_json(path, tok_int);
	CU_ASSERT_STRING_EQUAL(jstr(g, "status"), "closed");
	json_decref(g);
	note_id(ids, ev);
	json_decref(ev);

	/* seven events, seven distinct ids, times increasing */
	CU_ASSERT_EQUAL(json_object_size(ids), 7);
	int64_t last = 0;
	size_t n = sky_sub_count(sub);
	for (size_t k = 0; k < n; k++) {
		json_t *e = sky_sub_json(sub, k);
		int64_t t = 0;
		if (!strcmp(jstr(e, "sessionId"), sid)) {
			sky__parse_time(
			    json_string_value(json_object_get(e, "createdAt")),
			    &t);
			CU_ASSERT(t >= last);
			last = t;
		}
		json_decref(e);
	}
	json_decref(ids);
	json_decref(s);
	sky_sub_stop(sub);
}

static void test_emu__event_faults(void)
{
	ENV();
	sky_sub *sub = sky_sub_start(broker.port, "test-event-faults", TOPIC);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
	json_t *s = create(tok_int, APP, "{\"name\":\"EF\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	const char *sid = sid_of(s);
	char dpath[512];
	session_path(dpath, sizeof(dpath), APP, sid, "/data");
	CU_ASSERT(find_event(sub, sid, "session_created", NULL, 0, 10000) >= 0);
	json_t *d1 = json_pack("{s:i}", "step", 1);
	json_t *d2 = json_pack("{s:i}", "step", 2);
	json_t *d3 = json_pack("{s:i}", "step", 3);
	json_t *d4 = json_pack("{s:i}", "step", 4);

	long f_dup = fired(&emu, "event-dup"),
	     f_drop = fired(&emu, "event-drop");
	long f_re = fired(&emu, "event-reorder");
	long f_delay = fired(&emu, "event-delay");
	json_t *st0 = admin_stats(&emu);
	json_int_t dropped0 = json_integer_value(
	    json_object_get(json_object_get(st0, "events"), "dropped"));
	json_decref(st0);

	/* duplicate: the same event (same eventId) twice */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"event-dup:next=1\""), 201);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":1}", tok_int),
			200);
	long a = find_event(sub, sid, "session_data_updated", d1, 0, 10000);
	long b = a >= 0 ? find_event(sub, sid, "session_data_updated", d1,
				     (size_t)a + 1, 10000)
			: -1;
	CU_ASSERT(a >= 0 && b > a);
	if (b > a) {
		json_t *ea = sky_sub_json(sub, (size_t)a);
		json_t *eb = sky_sub_json(sub, (size_t)b);
		CU_ASSERT(json_equal(ea, eb));
		json_decref(ea);
		json_decref(eb);
	}

	/* drop: never published; the next one is */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"event-drop:next=1\""), 201);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":2}", tok_int),
			200);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":3}", tok_int),
			200);
	CU_ASSERT(find_event(sub, sid, "session_data_updated", d3, 0, 10000) >=
		  0);
	/* events keep their order, so step 2 would be there by now */
	CU_ASSERT_EQUAL(find_event(sub, sid, "session_data_updated", d2, 0, 0),
			-1);

	/* reorder: held back until the next one went out */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"event-reorder:next=1\""), 201);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":4}", tok_int),
			200);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":1}", tok_int),
			200);
	size_t mark = (size_t)b + 1;
	long i4 = find_event(sub, sid, "session_data_updated", d4, mark, 10000);
	long i1 = find_event(sub, sid, "session_data_updated", d1, mark, 10000);
	CU_ASSERT(i4 >= 0 && i1 >= 0 && i1 < i4);

	/* delay: published later, after the next one */
	mark = sky_sub_count(sub);
	CU_ASSERT_EQUAL(add_fault(&emu, "\"event-delay:ms=700,next=1\""), 201);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":2}", tok_int),
			200);
	CU_ASSERT_EQUAL(status_of("PATCH", dpath, "{\"step\":3}", tok_int),
			200);
	long i3 = find_event(sub, sid, "session_data_updated", d3, mark, 10000);
	long i2 = find_event(sub, sid, "session_data_updated", d2, mark, 10000);
	CU_ASSERT(i3 >= 0 && i2 > i3);

	CU_ASSERT_EQUAL(fired(&emu, "event-dup") - f_dup, 1);
	CU_ASSERT_EQUAL(fired(&emu, "event-drop") - f_drop, 1);
	CU_ASSERT_EQUAL(fired(&emu, "event-reorder") - f_re, 1);
	CU_ASSERT_EQUAL(fired(&emu, "event-delay") - f_delay, 1);
	json_t *st = admin_stats(&emu);
	CU_ASSERT(
	    json_integer_value(json_object_get(json_object_get(st, "events"),
					       "dropped")) == dropped0 + 1);
	json_decref(st);
	json_decref(d1);
	json_decref(d2);
	json_decref(d3);
	json_decref(d4);
	json_decref(s);
	clear_faults(&emu);
	sky_sub_stop(sub);
}

static long mqtt_stat(const char *key)
{
	json_t *st = admin_stats(&emu);
	long v = (long)json_integer_value(
	    json_object_get(json_object_get(st, "mqtt"), key));
	json_decref(st);
	return v;
}

static void test_emu__mqtt_drop(void)
{
	ENV();
	/* A client id the way docs/PROTOCOL.md builds it:
	 * {realm}-{sub}-{8 digits} */
	sky_sub *sub =
	    sky_sub_start(broker.port, "demo-u-integration-12345678", TOPIC);
	CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
	/* the emulator learns the client from the broker's notices */
	for (int i = 0; i < 200 && mqtt_stat("known_clients") < 1; i++)
		sky_sleep_ms(25);
	CU_ASSERT(mqtt_stat("known_clients") >= 1);
	long drops = mqtt_stat("drops");
	long f_mqtt = fired(&emu, "mqtt-drop");
	sky_http_res r;
	sky_http(emu.url, "POST", "/_admin/mqtt-drop", "{\"ms\":300}", NULL,
		 &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT(json_integer_value(json_object_get(r.json, "kicked")) >= 1);
	sky_http_res_free(&r);
	for (int i = 0; i < 200 && sky_sub_disconnects(sub) < 1; i++)
		sky_sleep_ms(25);
	CU_ASSERT(sky_sub_disconnects(sub) >= 1);
	/* both sides come back; events flow again */
	for (int i = 0;
	     i < 400 && (sky_sub_connects(sub) < 2 || !mqtt_stat("connected"));
	     i++)
		sky_sleep_ms(25);
	CU_ASSERT(sky_sub_connects(sub) >= 2);
	CU_ASSERT_EQUAL(mqtt_stat("drops"), drops + 1);
	json_t *s = create(tok_int, APP, "{\"name\":\"after mqtt drop\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT(
	    find_event(sub, sid_of(s), "session_created", NULL, 0, 15000) >= 0);
	json_decref(s);

	/*
	 * As a fault on the next event: the realm's client is kicked again
	 * (and, with a clean session, misses what is published while it is
	 * away); the emulator publishes the event once it is back, which a
	 * watcher outside the realm's client ids sees.
	 */
	sky_sub *watch = sky_sub_start(broker.port, "test-mqtt-watch", TOPIC);
	CU_ASSERT_PTR_NOT_NULL_FATAL(watch);
	unsigned gone = sky_sub_disconnects(sub);
	CU_ASSERT_EQUAL(add_fault(&emu, "\"mqtt-drop:next=1,ms=200\""), 201);
	s = create(tok_int, APP, "{\"name\":\"during mqtt drop\"}");
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	CU_ASSERT(find_event(watch, sid_of(s), "session_created", NULL, 0,
			     15000) >= 0);
	for (int i = 0; i < 200 && sky_sub_disconnects(sub) == gone; i++)
		sky_sleep_ms(25);
	CU_ASSERT(sky_sub_disconnects(sub) > gone);
	CU_ASSERT_EQUAL(mqtt_stat("drops"), drops + 2);
	sky_sub_stop(watch);
	CU_ASSERT_EQUAL(fired(&emu, "mqtt-drop") - f_mqtt, 2);
	json_decref(s);
	clear_faults(&emu);
	sky_sub_stop(sub);
}

/* ---- tests: state and lifecycle ---- */

static void test_emu__state(void)
{
	ENV();
	const char *dir = sky_test_tmpdir();
	char state[600];
	snprintf(state, sizeof(state), "%s/state", dir);
	sky_emu e;
	const char *args[] = {"--seed", seed_path, "--state", state, NULL};
	CU_ASSERT_FATAL(sky_emu_start(&e, args) == 0);
	char *tok = sky_emu_login(&e, "integration", "integration-pass", NULL);
	sky_http_res r;
	sky_http(e.url, "POST", SESSIONS, "{\"name\":\"kept\",\"ref\":\"k1\"}",
		 tok, &r);
	CU_ASSERT_EQUAL_FATAL(r.status, 201);
	char sid[64], path[512], dpath[512];
	snprintf(sid, sizeof(sid), "%s", sid_of(r.json));
	sky_http_res_free(&r);
	session_path(path, sizeof(path), APP, sid, NULL);
	session_path(dpath, sizeof(dpath), APP, sid, "/data");
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "PATCH", dpath, "{\"x\":{\"y\":1}}", tok, &r), 200);
	sky_http_res_free(&r);
	const char *seeded = seed_session(APP, NULL, NULL, 0, "open");
	char spath[512];
	session_path(spath, sizeof(spath), APP, seeded, NULL);
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "PATCH", spath, "{\"name\":\"renamed\"}", tok, &r),
	    200);
	sky_http_res_free(&r);

	/* clean restart: everything is back, the token too */
	CU_ASSERT_EQUAL(sky_emu_restart(&e), 0);
	sky_http(e.url, "GET", path, NULL, tok, &r);
	CU_ASSERT_EQUAL(r.status, 200);
	CU_ASSERT_STRING_EQUAL(jstr(r.json, "ref"), "k1");
	sky_http_res_free(&r);
	sky_http(e.url, "GET", dpath, NULL, tok, &r);
	SKY_ASSERT_JSON_EQ(r.body, "{\"x\":{\"y\":1}}");
	sky_http_res_free(&r);
	sky_http(e.url, "GET", spath, NULL, tok, &r);
	CU_ASSERT_STRING_EQUAL(jstr(r.json, "name"), "renamed");
	sky_http_res_free(&r);

	/* a crash right after a write loses nothing that was answered */
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "PATCH", dpath, "{\"x\":null,\"z\":2}", tok, &r),
	    200);
	sky_http_res_free(&r);
	sky_emu_kill(&e);
	CU_ASSERT_EQUAL(sky_emu_restart(&e), 0);
	sky_http(e.url, "GET", dpath, NULL, tok, &r);
	SKY_ASSERT_JSON_EQ(r.body, "{\"z\":2}");
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(sky_emu_stop(&e), 0);
	sky_emu_free(&e);

	/* the state is used instead of a seed, and no seed is needed */
	const char *noseed[] = {"--state", state, NULL};
	CU_ASSERT_FATAL(sky_emu_start(&e, noseed) == 0);
	CU_ASSERT_EQUAL(sky_http(e.url, "GET", path, NULL, tok, &r), 200);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(sky_emu_stop(&e), 0);
	sky_emu_free(&e);
	free(tok);
}

static void test_emu__no_broker(void)
{
	ENV();
	sky_emu e;
	const char *args[] = {"--seed", seed_path, NULL};
	CU_ASSERT_FATAL(sky_emu_start(&e, args) == 0);
	char *tok = sky_emu_login(&e, "integration", "integration-pass", NULL);
	sky_http_res r;
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "POST", SESSIONS, "{\"name\":\"n\"}", tok, &r),
	    201);
	sky_http_res_free(&r);
	json_t *st = admin_stats(&e);
	json_t *mq = json_object_get(st, "mqtt");
	CU_ASSERT(json_is_false(json_object_get(mq, "configured")));
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(
			    json_object_get(st, "events"), "built")),
			1);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(
			    json_object_get(st, "events"), "published")),
			0);
	json_decref(st);
	CU_ASSERT_EQUAL(
	    sky_http(e.url, "POST", "/_admin/mqtt-drop", NULL, NULL, &r), 409);
	sky_http_res_free(&r);
	CU_ASSERT_EQUAL(sky_emu_stop(&e), 0);
	sky_emu_free(&e);
	free(tok);
}

static void test_emu__shutdown(void)
{
	ENV();
	/* A request held by a delay when the signal comes is just dropped. */
	CU_ASSERT_EQUAL(add_fault(&emu, "\"delay:ms=60000,next=1\""), 201);
	sky_http_set_timeout(300);
	status_of("GET", "/v1/applications", NULL, tok_int);
	sky_http_set_timeout(20000);
	/* exit status 0 also means no leak under ASan */
	CU_ASSERT_EQUAL(sky_emu_stop(&emu), 0);
	sky_emu_free(&emu);
	sky_broker_stop(&broker);
	env_state = -1;
	free(tok_int);
	free(tok_alice);
	free(tok_bob);
	free(tok_carol);
	free(tok_dave);
	free(tok_eve);
	free(seed_path);
	json_decref(seed);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"cli", test_emu__cli},
	    {"login", test_emu__login},
	    {"refresh", test_emu__refresh},
	    {"bearer", test_emu__bearer},
	    {"applications", test_emu__applications},
	    {"sessions_list", test_emu__sessions_list},
	    {"session_get", test_emu__session_get},
	    {"create", test_emu__create},
	    {"create_errors", test_emu__create_errors},
	    {"patch", test_emu__patch},
	    {"close", test_emu__close},
	    {"data", test_emu__data},
	    {"participants", test_emu__participants},
	    {"custom_event", test_emu__custom_event},
	    {"routes_and_limits", test_emu__routes_and_limits},
	    {"hostile_ids", test_emu__hostile_ids},
	    {"token_expiry", test_emu__token_expiry},
	    {"fault_error", test_emu__fault_error},
	    {"fault_throttle_skip_filters",
	     test_emu__fault_throttle_skip_filters},
	    {"fault_reset", test_emu__fault_reset},
	    {"fault_drop", test_emu__fault_drop},
	    {"fault_delay", test_emu__fault_delay},
	    {"fault_refuse", test_emu__fault_refuse},
	    {"fault_expire", test_emu__fault_expire},
	    {"fault_seed_repeatable", test_emu__fault_seed_repeatable},
	    {"events", test_emu__events},
	    {"event_faults", test_emu__event_faults},
	    {"mqtt_drop", test_emu__mqtt_drop},
	    {"state", test_emu__state},
	    {"no_broker", test_emu__no_broker},
	    {"shutdown", test_emu__shutdown},
	    {NULL, NULL},
	};
	return sky_test_main("emu", cases);
}
