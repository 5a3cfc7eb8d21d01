/*
 * test_sync.c - the sync engine against a real skylight-emu and mosquitto
 * (started through tests/harness.c): snapshots, live events, faults,
 * reconnects, restarts, token expiry, and a randomised soak; plus the
 * pure parts of api.c and mqtt.c (URLs, tokens, broker URLs, backoff).
 *
 * Every scenario ends the same way: wait (polling, generous timeouts, no
 * timing assertions) until the mirror equals what the server holds, and
 * fail with the first difference if it never does. "Equal" compares
 * every application, role, open session (all fields but modifiedAt and
 * modifiedBy, which session_properties_updated and session_closed events
 * do not carry, DESIGN.md §3) and its data. The last word is always a
 * comparison made through the REST API as the synced user sees it.
 *
 * Environment: SKY_SOAK_CHANGES=N for a longer soak (default 400);
 * SKY_TEST_VERBOSE=1 for the engine's and the emulator's logs.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>

#include "api.h"
#include "engine_core.h"
#include "error.h"
#include "harness.h"
#include "identity.h"
#include "json.h"
#include "merge.h"
#include "util.h"
#include "mqtt.h"
#include "protocol.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

#define CONVERGE_MS 60000

static sky_broker broker;
static int broker_started;
static int verbose;

/* ------------------------------------------------------------------ */
/* Fixture: one emulator, one cache, one engine (maybe on a thread)    */
/* ------------------------------------------------------------------ */

typedef struct {
	sky_emu emu;
	int emu_up;
	char *token;
	const char *dir;
	sky_cache *cache;
	sky_engine *engine;
	struct event_base *base;
	pthread_t thread;
	int threaded;
	atomic_int state;
	atomic_ulong changes;
	atomic_ulong live_reached;
	unsigned max_parallel;
	unsigned resync_interval_s;
	unsigned reconcile_s;	   /* 0: the engine's default */
	unsigned backlog_limit;	   /* 0: the engine's default */
	const char *broker_url;	   /* NULL: the test broker, plain MQTT */
	const char *protocol_file; /* NULL: the built-in layout */
	int snapshot_changes;	   /* the engine option */
} fixture;

static void ensure_broker(void)
{
	if (broker_started)
		return;
	memset(&broker, 0, sizeof(broker));
	if (sky_broker_start(&broker) < 0) {
		fprintf(stderr, "test_sync: cannot start mosquitto\n");
		exit(99);
	}
	broker_started = 1;
}

static char *realm_seed(void)
{
	return sky_harness_src_path("tools/examples/realm.json");
}

/* The durability the fixture opens its cache with (SKY_DURABILITY_JOURNAL
 * for the journal-mode variants). */
static sky_durability fx_durability;

/* Start the emulator on `seed` with extra arguments (NULL-terminated). */
static int fx_start(fixture *fx, const char *seed, const char *const *extra)
{
	memset(fx, 0, sizeof(*fx));
	ensure_broker();
	char bro[64];
	snprintf(bro, sizeof(bro), "127.0.0.1:%d", broker.port);
	const char *args[SKY_EMU_MAX_ARGS];
	int n = 0;
	args[n++] = "--seed";
	args[n++] = seed;
	args[n++] = "--broker";
	args[n++] = bro;
	for (int i = 0; extra && extra[i] && n < SKY_EMU_MAX_ARGS - 1; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	if (sky_emu_start(&fx->emu, args) < 0)
		return -1;
	fx->emu_up = 1;
	fx->token =
	    sky_emu_login(&fx->emu, "integration", "integration-pass", NULL);
	fx->dir = sky_test_tmpdir();
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = fx_durability;
	if (!fx->token || sky_cache_open(&fx->cache, fx->dir, &o) < 0)
		return -1;
	return 0;
}

/* ---- REST as another client ---- */

/* A REST call with the fixture's token, logging in again after a 401. */
static long rest(fixture *fx, const char *method, const char *path,
		 const char *body, sky_http_res *res)
{
	for (int tries = 0; tries < 20; tries++) {
		long st =
		    sky_http(fx->emu.url, method, path, body, fx->token, res);
		if (st == 401) {
			sky_http_res_free(res);
			free(fx->token);
			fx->token = sky_emu_login(&fx->emu, "integration",
						  "integration-pass", NULL);
			continue;
		}
		if (st == 0) { /* e.g. while the emulator restarts */
			sky_http_res_free(res);
			sky_sleep_ms(100);
			continue;
		}
		return st;
	}
	return res->status;
}

static long admin(fixture *fx, const char *method, const char *path,
		  const char *body)
{
	sky_http_res res;
	long st = sky_http(fx->emu.url, method, path, body, NULL, &res);
	sky_http_res_free(&res);
	return st;
}

/* ---- the engine ---- */

static void on_state(sky_engine_state s, void *payload)
{
	fixture *fx = payload;
	atomic_store(&fx->state, (int)s);
	if (s == SKY_ENGINE_LIVE)
		atomic_fetch_add(&fx->live_reached, 1);
	if ((s == SKY_ENGINE_STOPPED || s == SKY_ENGINE_FAILED) && fx->base)
		event_base_loopbreak(fx->base);
}

/* Every change the engine reports, while a test records them (recorded
 * not NULL): {what, app, sid, type, payload, added, changed, removed, local,
 * server}, appended on the engine's thread, read under rec_lock. */
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static json_t *recorded;

static void rec_change(const sky_change *c)
{
	json_t *o = json_pack(
	    "{s:I, s:I, s:I, s:I}", "what", (json_int_t)c->what, "added",
	    (json_int_t)c->added, "changed", (json_int_t)c->changed, "removed",
	    (json_int_t)c->removed);
	if (c->app_id)
		json_object_set_new(o, "app", json_string(c->app_id));
	if (c->session_id)
		json_object_set_new(o, "sid", json_string(c->session_id));
	if (c->event_type)
		json_object_set_new(o, "type", json_string(c->event_type));
	if (c->local_id)
		json_object_set_new(o, "local", json_string(c->local_id));
	if (c->server_id)
		json_object_set_new(o, "server", json_string(c->server_id));
	if (c->payload_json) {
		/* Borrowed text, NUL-terminated at payload_len. */
		CU_ASSERT(strlen(c->payload_json) == c->payload_len);
		json_t *p =
		    json_loadb(c->payload_json, c->payload_len, 0, NULL);
		CU_ASSERT(p != NULL);
		json_object_set_new(o, "payload", p ? p : json_null());
	}
	json_array_append_new(recorded, o);
}

static void on_change(const sky_change *c, void *payload)
{
	fixture *fx = payload;
	atomic_fetch_add(&fx->changes, 1);
	pthread_mutex_lock(&rec_lock);
	if (recorded)
		rec_change(c);
	pthread_mutex_unlock(&rec_lock);
}

static void rec_start(void)
{
	pthread_mutex_lock(&rec_lock);
	json_decref(recorded);
	recorded = json_array();
	pthread_mutex_unlock(&rec_lock);
}

static void rec_stop(void)
{
	pthread_mutex_lock(&rec_lock);
	json_decref(recorded);
	recorded = NULL;
	pthread_mutex_unlock(&rec_lock);
}

/* The recorded changes with any of the `what` bits (and of session sid
 * when not NULL), a new array. */
static json_t *rec_find(unsigned what, const char *sid)
{
	json_t *out = json_array();
	size_t i;
	json_t *o;
	pthread_mutex_lock(&rec_lock);
	json_array_foreach(recorded, i, o) {
		const char *s = json_string_value(json_object_get(o, "sid"));
		if ((json_integer_value(json_object_get(o, "what")) & what) &&
		    (!sid || (s && !strcmp(s, sid))))
			json_array_append(out, o);
	}
	pthread_mutex_unlock(&rec_lock);
	return out;
}

/* Wait (at most ms) for a recorded change as rec_find finds it; the
 * first one, a new reference, or NULL. */
static json_t *rec_wait(unsigned what, const char *sid, long ms)
{
	for (long waited = 0; waited <= ms; waited += 20) {
		json_t *all = rec_find(what, sid);
		json_t *first = json_incref(json_array_get(all, 0));
		json_decref(all);
		if (first)
			return first;
		sky_sleep_ms(20);
	}
	return NULL;
}

static void on_log(sky_log_level level, const char *line, void *payload)
{
	(void)payload;
	if (verbose || level == SKY_LOG_ERROR)
		fprintf(stderr, "  engine %s: %s\n",
			level == SKY_LOG_ERROR	? "error"
			: level == SKY_LOG_WARN ? "warn"
						: "info",
			line);
}

static int fx_engine(fixture *fx, int follow)
{
	char bro[64];
	snprintf(bro, sizeof(bro), "mqtt://127.0.0.1:%d", broker.port);
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = fx->emu.url;
	o.broker = fx->broker_url ? fx->broker_url : bro;
	o.reconcile_interval_s = fx->reconcile_s;
	o.protocol_file = fx->protocol_file;
	o.backlog_limit = fx->backlog_limit;
	o.snapshot_changes = fx->snapshot_changes;
	o.realm = "demo";
	o.user = "integration";
	o.password = "integration-pass";
	o.follow = follow;
	o.max_parallel = fx->max_parallel;
	o.resync_interval_s = fx->resync_interval_s;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 1000;
	o.retry_limit = 12;
	o.on_state = on_state;
	o.on_change = on_change;
	o.on_log = on_log;
	o.payload = fx;
	return sky_engine_new(&fx->engine, fx->cache, &o);
}

static void *loop_thread(void *arg)
{
	fixture *fx = arg;
	event_base_dispatch(fx->base);
	return NULL;
}

/* Run the engine (follow) on a thread of its own. */
static int fx_follow(fixture *fx)
{
	if (fx_engine(fx, 1) < 0)
		return -1;
	if (!(fx->base = event_base_new()) ||
	    sky_engine_attach(fx->engine, fx->base) < 0)
		return -1;
	fx->threaded = 1;
	return pthread_create(&fx->thread, NULL, loop_thread, fx) == 0 ? 0 : -1;
}

typedef struct {
	void (*fn)(fixture *fx);
	fixture *fx;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;
} in_loop_call;

static void in_loop_cb(evutil_socket_t fd, short what, void *arg)
{
	in_loop_call *c = arg;
	(void)fd;
	(void)what;
	c->fn(c->fx);
	pthread_mutex_lock(&c->lock);
	c->done = 1;
	pthread_cond_signal(&c->cond);
	pthread_mutex_unlock(&c->lock);
}

/* Run fn on the engine's loop thread and wait for it. */
static void in_loop(fixture *fx, void (*fn)(fixture *))
{
	in_loop_call c = {fn, fx, PTHREAD_MUTEX_INITIALIZER,
			  PTHREAD_COND_INITIALIZER, 0};
	struct timeval zero = {0, 0};
	event_base_once(fx->base, -1, EV_TIMEOUT, in_loop_cb, &c, &zero);
	pthread_mutex_lock(&c.lock);
	while (!c.done)
		pthread_cond_wait(&c.cond, &c.lock);
	pthread_mutex_unlock(&c.lock);
}

static void do_stop(fixture *fx)
{
	sky_engine_stop(fx->engine);
}

static void do_drop_broker(fixture *fx)
{
	sky__engine_drop_broker(fx->engine);
}

static sky_sync_status status_copy = SKY_SYNC_STATUS_INIT;

static void do_status(fixture *fx)
{
	sky_engine_status(fx->engine, &status_copy);
}

static sky_sync_status fx_status(fixture *fx)
{
	if (fx->threaded)
		in_loop(fx, do_status);
	else
		sky_engine_status(fx->engine, &status_copy);
	return status_copy;
}

static int wait_state(fixture *fx, sky_engine_state s, long ms)
{
	for (long waited = 0; waited < ms; waited += 20) {
		if (atomic_load(&fx->state) == (int)s)
			return 0;
		sky_sleep_ms(20);
	}
	fprintf(stderr, "  timed out waiting for state %s (now %s)\n",
		sky_engine_state_name(s),
		sky_engine_state_name(atomic_load(&fx->state)));
	return -1;
}

static void fx_stop_engine(fixture *fx)
{
	if (fx->threaded) {
		in_loop(fx, do_stop);
		pthread_join(fx->thread, NULL);
		fx->threaded = 0;
	}
	sky_engine_free(fx->engine);
	fx->engine = NULL;
	if (fx->base)
		event_base_free(fx->base);
	fx->base = NULL;
}

static void fx_end(fixture *fx)
{
	fx_stop_engine(fx);
	sky_cache_close(fx->cache);
	if (fx->emu_up)
		sky_emu_stop(&fx->emu);
	sky_emu_free(&fx->emu);
	free(fx->token);
	memset(fx, 0, sizeof(*fx));
}

/* ------------------------------------------------------------------ */
/* Comparing the mirror with the server                                */
/* ------------------------------------------------------------------ */

/* Set while a test compares every field, modifiedAt/modifiedBy too. */
static int exact_fields;

static json_t *without_modified(const json_t *s)
{
	json_t *c = json_deep_copy(s);
	if (exact_fields)
		return c;
	json_object_del(c, "modifiedAt");
	json_object_del(c, "modifiedBy");
	return c;
}

static int collect_json(const char *json, size_t len, void *payload)
{
	json_array_append_new(payload, json_loadb(json, len, 0, NULL));
	return 0;
}

static json_t *mirror_sessions(fixture *fx, const char *app)
{
	json_t *arr = json_array();
	sky_session_list(fx->cache, app, collect_json, arr);
	json_t *by_id = json_object();
	size_t i;
	json_t *s;
	json_array_foreach(arr, i, s)
		json_object_set(
		    by_id, json_string_value(json_object_get(s, "sessionId")),
		    s);
	json_decref(arr);
	return by_id;
}

static json_t *mirror_data(fixture *fx, const char *app, const char *sid)
{
	char *text = NULL;
	size_t len;
	if (sky_data_get(fx->cache, app, sid, &text, &len) < 0)
		return NULL;
	json_t *d = json_loadb(text, len, 0, NULL);
	sky_free(text);
	return d;
}

/*
 * The server's realm as the synced user sees it: {app: {application,
 * roles: {name: role}, sessions: {sid: session}, data: {sid: data}}},
 * open sessions only. `full` reads every session and its data one by one
 * through the REST API; otherwise the admin export is used (fast, same
 * content for a user who may read everything).
 */
static json_t *server_view(fixture *fx, int full)
{
	json_t *view = json_object();
	sky_http_res res;
	if (!full) {
		if (sky_http(fx->emu.url, "GET", "/_admin/realm", NULL, NULL,
			     &res) != 200) {
			sky_http_res_free(&res);
			json_decref(view);
			return NULL;
		}
		size_t i;
		json_t *a;
		json_array_foreach(json_object_get(res.json, "applications"), i,
				   a) {
			json_t *app = json_object_get(a, "application");
			json_t *roles = json_object();
			size_t k;
			json_t *r;
			json_array_foreach(json_object_get(a, "roles"), k, r)
				json_object_set(roles,
						json_string_value(
						    json_object_get(r, "name")),
						r);
			json_object_set_new(
			    view,
			    json_string_value(
				json_object_get(app, "applicationId")),
			    json_pack("{s:O,s:o,s:{},s:{}}", "application", app,
				      "roles", roles, "sessions", "data"));
		}
		json_t *s;
		json_array_foreach(json_object_get(res.json, "sessions"), i,
				   s) {
			json_t *session = json_object_get(s, "session");
			const char *st = json_string_value(
			    json_object_get(session, "status"));
			const char *app = json_string_value(
			    json_object_get(session, "applicationId"));
			const char *sid = json_string_value(
			    json_object_get(session, "sessionId"));
			json_t *va = json_object_get(view, app);
			if (!va || !st || strcmp(st, "open"))
				continue;
			json_object_set(json_object_get(va, "sessions"), sid,
					session);
			json_object_set(json_object_get(va, "data"), sid,
					json_object_get(s, "data"));
		}
		sky_http_res_free(&res);
		return view;
	}
	if (rest(fx, "GET", "/v1/applications", NULL, &res) != 200) {
		sky_http_res_free(&res);
		json_decref(view);
		return NULL;
	}
	json_t *apps = json_incref(res.json);
	sky_http_res_free(&res);
	size_t i;
	json_t *app;
	json_array_foreach(apps, i, app) {
		const char *id =
		    json_string_value(json_object_get(app, "applicationId"));
		char path[1024];
		json_t *va = json_pack("{s:O,s:{},s:{},s:{}}", "application",
				       app, "roles", "sessions", "data");
		json_object_set_new(view, id, va);
		snprintf(path, sizeof(path), "/v1/applications/%s/roles", id);
		if (rest(fx, "GET", path, NULL, &res) == 200) {
			size_t k;
			json_t *r;
			json_array_foreach(res.json, k, r)
				json_object_set(json_object_get(va, "roles"),
						json_string_value(
						    json_object_get(r, "name")),
						r);
		}
		sky_http_res_free(&res);
		snprintf(path, sizeof(path), "/v1/applications/%s/sessions",
			 id);
		if (rest(fx, "GET", path, NULL, &res) != 200) {
			sky_http_res_free(&res);
			continue;
		}
		json_t *list = json_incref(res.json);
		sky_http_res_free(&res);
		size_t k;
		json_t *s;
		json_array_foreach(list, k, s) {
			const char *sid =
			    json_string_value(json_object_get(s, "sessionId"));
			/* Each session read again on its own, then its data. */
			snprintf(path, sizeof(path),
				 "/v1/applications/%s/sessions/%s", id, sid);
			if (rest(fx, "GET", path, NULL, &res) == 200)
				json_object_set(json_object_get(va, "sessions"),
						sid, res.json);
			sky_http_res_free(&res);
			snprintf(path, sizeof(path),
				 "/v1/applications/%s/sessions/%s/data", id,
				 sid);
			if (rest(fx, "GET", path, NULL, &res) == 200)
				json_object_set(json_object_get(va, "data"),
						sid, res.json);
			sky_http_res_free(&res);
		}
		json_decref(list);
	}
	json_decref(apps);
	return view;
}

/* 1 when the mirror equals `view`; else 0 with the first difference. */
static int mirror_equals(fixture *fx, json_t *view, char *why, size_t cap)
{
	json_t *apps = json_array();
	sky_app_list(fx->cache, collect_json, apps);
	if (json_array_size(apps) != json_object_size(view)) {
		snprintf(why, cap,
			 "%zu applications in the mirror, %zu on the "
			 "server",
			 json_array_size(apps), json_object_size(view));
		json_decref(apps);
		return 0;
	}
	json_decref(apps);
	const char *app;
	json_t *va;
	json_object_foreach(view, app, va) {
		char *text = NULL;
		size_t len;
		if (sky_app_get(fx->cache, app, &text, &len) < 0) {
			snprintf(why, cap, "application %s missing", app);
			return 0;
		}
		json_t *mine = json_loadb(text, len, 0, NULL);
		sky_free(text);
		int eq = json_equal(mine, json_object_get(va, "application"));
		json_decref(mine);
		if (!eq) {
			snprintf(why, cap, "application %s differs", app);
			return 0;
		}
		json_t *roles = json_array();
		sky_role_list(fx->cache, app, collect_json, roles);
		json_t *sroles = json_object_get(va, "roles");
		size_t i;
		json_t *r;
		int ok = json_array_size(roles) == json_object_size(sroles);
		json_array_foreach(roles, i, r)
			ok = ok && json_equal(
				       r, json_object_get(
					      sroles,
					      json_string_value(
						  json_object_get(r, "name"))));
		json_decref(roles);
		if (!ok) {
			snprintf(why, cap, "roles of %s differ", app);
			return 0;
		}
		json_t *mine_s = mirror_sessions(fx, app);
		json_t *theirs = json_object_get(va, "sessions");
		const char *sid;
		json_t *s;
		/* Every open server session is in the mirror, equal. */
		json_object_foreach(theirs, sid, s) {
			json_t *m = json_object_get(mine_s, sid);
			json_t *a = m ? without_modified(m) : NULL;
			json_t *b = without_modified(s);
			int same = a && json_equal(a, b);
			json_decref(a);
			json_decref(b);
			if (!same) {
				char *x = m ? json_dumps(m, JSON_COMPACT |
								JSON_SORT_KEYS)
					    : strdup("(missing)");
				char *y = json_dumps(s, JSON_COMPACT |
							    JSON_SORT_KEYS);
				snprintf(why, cap,
					 "session %s/%s: mirror %.400s, server "
					 "%.400s",
					 app, sid, x, y);
				free(x);
				free(y);
				json_decref(mine_s);
				return 0;
			}
			json_t *d = mirror_data(fx, app, sid);
			json_t *sd =
			    json_object_get(json_object_get(va, "data"), sid);
			same = d && json_equal(d, sd);
			if (!same) {
				char *x = d ? json_dumps(d, JSON_COMPACT |
								JSON_SORT_KEYS)
					    : strdup("(missing)");
				char *y = json_dumps(sd, JSON_COMPACT |
							     JSON_SORT_KEYS);
				snprintf(why, cap,
					 "data of %s/%s: mirror %.400s, server "
					 "%.400s",
					 app, sid, x, y);
				free(x);
				free(y);
			}
			json_decref(d);
			if (!same) {
				json_decref(mine_s);
				return 0;
			}
		}
		/* The mirror holds nothing open that the server does not. */
		json_object_foreach(mine_s, sid, s) {
			const char *st =
			    json_string_value(json_object_get(s, "status"));
			if (!json_object_get(theirs, sid) && st &&
			    !strcmp(st, "open")) {
				snprintf(why, cap,
					 "session %s/%s is open in the mirror "
					 "only",
					 app, sid);
				json_decref(mine_s);
				return 0;
			}
		}
		json_decref(mine_s);
	}
	return 1;
}

/* Every event published, when a test records them (for diagnosis). */
static sky_sub *recorder;

static void dump_events_of(const char *why)
{
	/* "session APP/SID..." or "data of APP/SID: ..." */
	const char *p = strchr(why, '/');
	if (!recorder || !p)
		return;
	char sid[128];
	size_t n = strcspn(p + 1, ": ");
	snprintf(sid, sizeof(sid), "%.*s", (int)n, p + 1);
	size_t count = sky_sub_count(recorder);
	fprintf(stderr, "  events for %s:\n", sid);
	for (size_t i = 0; i < count; i++) {
		char *topic, *payload;
		if (sky_sub_get(recorder, i, &topic, &payload) < 0)
			continue;
		if (strstr(topic, sid))
			fprintf(stderr, "    %.600s\n", payload);
		free(topic);
		free(payload);
	}
}

/* The engine has nothing left to do: no snapshot, no re-read waiting. */
static int engine_idle(fixture *fx)
{
	if (!fx->engine)
		return 1;
	sky_sync_status st = fx_status(fx);
	return st.reads_pending == 0 && st.state != SKY_ENGINE_SNAPSHOT &&
	       st.state != SKY_ENGINE_BACKOFF;
}

/*
 * Poll until the engine is idle and the mirror equals the server (admin
 * view), then confirm through the REST API. The mirror may be briefly
 * behind (events in flight, re-reads waiting): only a mirror that never
 * catches up fails.
 */
static int converge(fixture *fx, int full_rest)
{
	char why[1200] = "";
	int eq = 0;
	for (long waited = 0; waited < CONVERGE_MS && !eq; waited += 250) {
		if (engine_idle(fx)) {
			json_t *view = server_view(fx, 0);
			eq = view && mirror_equals(fx, view, why, sizeof(why));
			json_decref(view);
			if (eq) {
				/* Stays equal: nothing in flight undoes it. */
				sky_sleep_ms(600);
				view = server_view(fx, 0);
				eq = engine_idle(fx) && view &&
				     mirror_equals(fx, view, why, sizeof(why));
				json_decref(view);
			}
			if (eq && full_rest) {
				view = server_view(fx, 1);
				eq = view &&
				     mirror_equals(fx, view, why, sizeof(why));
				json_decref(view);
			}
		}
		if (!eq)
			sky_sleep_ms(250);
	}
	if (!eq) {
		fprintf(stderr, "  mirror != server: %s\n", why);
		dump_events_of(why);
	}
	return eq;
}

/* ------------------------------------------------------------------ */
/* Server-side changes                                                 */
/* ------------------------------------------------------------------ */

typedef struct {
	char app[128];
	char sid[128];
} sref;

typedef struct {
	sref *v;
	size_t n, cap;
	unsigned long long rng;
} slist;

static unsigned rnd(slist *l, unsigned n)
{
	l->rng = l->rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((l->rng >> 33) % n);
}

static void slist_add(slist *l, const char *app, const char *sid)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 256;
		l->v = realloc(l->v, l->cap * sizeof(*l->v));
	}
	snprintf(l->v[l->n].app, sizeof(l->v[l->n].app), "%s", app);
	snprintf(l->v[l->n].sid, sizeof(l->v[l->n].sid), "%s", sid);
	l->n++;
}

/* The open sessions on the server now. */
static void slist_load(fixture *fx, slist *l, unsigned long long seed)
{
	memset(l, 0, sizeof(*l));
	l->rng = seed;
	json_t *view = server_view(fx, 0);
	const char *app;
	json_t *va;
	json_object_foreach(view, app, va) {
		const char *sid;
		json_t *s;
		json_object_foreach(json_object_get(va, "sessions"), sid, s)
			slist_add(l, app, sid);
	}
	json_decref(view);
}

/* One random change through REST; returns the HTTP status. */
static long random_change(fixture *fx, slist *l)
{
	if (!l->n)
		return 0;
	unsigned i = rnd(l, (unsigned)l->n);
	sref *s = &l->v[i];
	char path[512], body[512];
	sky_http_res res;
	long st;
	unsigned op = rnd(l, 100);
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s", s->app,
		 s->sid);
	if (op < 40) {
		static const char *keys[] = {"a", "b", "c", "readings",
					     "notes"};
		const char *k = keys[rnd(l, 5)];
		unsigned v = rnd(l, 1000);
		switch (rnd(l, 4)) {
		case 0:
			snprintf(body, sizeof(body), "{\"%s\":%u}", k, v);
			break;
		case 1:
			snprintf(body, sizeof(body),
				 "{\"%s\":{\"x\":%u,\"y\":[%u]}}", k, v, v + 1);
			break;
		case 2: snprintf(body, sizeof(body), "{\"%s\":null}", k); break;
		default:
			snprintf(body, sizeof(body),
				 "{\"%s\":{\"x\":null,\"z\":\"s%u\"}}", k, v);
			break;
		}
		strcat(path, "/data");
		st = rest(fx, "PATCH", path, body, &res);
	} else if (op < 55) {
		snprintf(body, sizeof(body), "{\"name\":\"renamed %u\"}",
			 rnd(l, 100000));
		st = rest(fx, "PATCH", path, body, &res);
	} else if (op < 65) {
		snprintf(body, sizeof(body), "{\"description\":\"d%u\"}",
			 rnd(l, 100));
		st = rest(fx, "PATCH", path, body, &res);
	} else if (op < 80) {
		snprintf(
		    body, sizeof(body),
		    "{\"properties\":{\"site\":\"Plant-%u\",\"k%u\":\"v\"}}",
		    rnd(l, 9), rnd(l, 5));
		st = rest(fx, "PATCH", path, body, &res);
	} else if (op < 85) {
		snprintf(body, sizeof(body),
			 "{\"id\":\"%s\",\"type\":\"user\"}",
			 rnd(l, 2) ? "u-alice" : "u-bob");
		strcat(path, "/participants");
		st = rest(fx, "POST", path, body, &res);
	} else if (op < 90) {
		snprintf(body, sizeof(body), "{\"note\":\"custom %u\"}",
			 rnd(l, 100));
		strcat(path, "/events");
		st = rest(fx, "POST", path, body, &res);
	} else if (op < 95) {
		snprintf(path, sizeof(path), "/v1/applications/%s/sessions",
			 s->app);
		snprintf(
		    body, sizeof(body),
		    "{\"name\":\"soak %u\",\"properties\":{\"site\":\"S\"}}",
		    rnd(l, 100000));
		st = rest(fx, "POST", path, body, &res);
		const char *sid =
		    json_string_value(json_object_get(res.json, "sessionId"));
		char app[128]; /* s moves if the list grows */
		snprintf(app, sizeof(app), "%s", s->app);
		if (st == 201 && sid)
			slist_add(l, app, sid);
	} else {
		st = rest(fx, "PATCH", path, "{\"status\":\"closed\"}", &res);
		if (st == 200) {
			l->v[i] = l->v[l->n - 1];
			l->n--;
		}
	}
	sky_http_res_free(&res);
	return st;
}

/* ---- seeds with many sessions ---- */

/* A realm like the example's, with `n` sessions; returns its path. */
static char *big_seed(unsigned n)
{
	const char *dir = sky_test_tmpdir();
	char *path = malloc(strlen(dir) + 16);
	sprintf(path, "%s/seed.json", dir);
	json_t *all =
	    json_pack("[s,s,s,s,s,s]", "application:read",
		      "session:read:participant", "session:read:any",
		      "session:create", "session:update", "session:close");
	json_t *apps = json_array();
	const char *app_ids[2] = {"app-a", "app-b"};
	for (int a = 0; a < 2; a++)
		json_array_append_new(
		    apps,
		    json_pack(
			"{s:{s:s,s:s,s:i,s:s,s:s},s:[{s:s,s:O,s:[{s:s,s:s}],"
			"s:s,s:s}]}",
			"application", "applicationId", app_ids[a], "name",
			app_ids[a], "publishedVersion", 1, "createdBy",
			"u-integration", "createdAt",
			"2024-03-01T06:00:00.000000Z", "roles", "name",
			"integration", "permissions", all, "participants", "id",
			"u-integration", "type", "user", "createdBy",
			"u-integration", "createdAt",
			"2024-03-01T06:00:00.000000Z"));
	json_t *sessions = json_array();
	for (unsigned i = 0; i < n; i++) {
		char sid[64], name[64];
		snprintf(sid, sizeof(sid), "s-%06u", i);
		snprintf(name, sizeof(name), "Session %u", i);
		json_array_append_new(
		    sessions,
		    json_pack(
			"{s:{s:s,s:s,s:s,s:{s:s,s:s},s:s,s:s},s:{s:{s:i,s:i},"
			"s:[i,i,i],s:s}}",
			"session", "applicationId", app_ids[i % 2], "sessionId",
			sid, "name", name, "properties", "site",
			i % 3 ? "Plant-1" : "Plant-2", "line", "A", "createdBy",
			"u-integration", "createdAt",
			"2024-03-01T07:00:00.000000Z", "data", "checklist",
			"steps", 8, "done", (int)(i % 8), "readings", 1, 2, 3,
			"note", "seeded"));
	}
	json_t *seed = json_pack(
	    "{s:s,s:s,s:[],s:[{s:s,s:s,s:s,s:[]},{s:s,s:s,s:s,s:[]},"
	    "{s:s,s:s,s:s,s:[]}],s:o,s:o}",
	    "format", "skylight-emu-seed/1", "realm", "demo", "groups", "users",
	    "id", "u-integration", "username", "integration", "password",
	    "integration-pass", "groups", "id", "u-alice", "username", "alice",
	    "password", "alice-pass", "groups", "id", "u-bob", "username",
	    "bob", "password", "bob-pass", "groups", "applications", apps,
	    "sessions", sessions);
	json_dump_file(seed, path, JSON_COMPACT);
	json_decref(seed);
	json_decref(all);
	return path;
}

/* ------------------------------------------------------------------ */
/* Pure parts: api.c and mqtt.c                                        */
/* ------------------------------------------------------------------ */

static void test_sync__api_urls_and_tokens(void)
{
	char *url = NULL;
	CU_ASSERT_EQUAL(sky__api_url("https://api.x.io/", SKY_API_DATA, "demo",
				     "a/b", "s 1?x#..", &url),
			0);
	CU_ASSERT_STRING_EQUAL(url, "https://api.x.io/v1/applications/a%2Fb/"
				    "sessions/s%201%3Fx%23../data");
	free(url);
	CU_ASSERT_EQUAL(sky__api_url("http://h", SKY_API_SESSION, "demo", "..",
				     "\xc3\xa9", &url),
			0);
	CU_ASSERT_STRING_EQUAL(url, "http://h/v1/applications/%2E%2E/sessions/"
				    "%C3%A9");
	free(url);
	CU_ASSERT_EQUAL(sky__api_url("http://h", SKY_API_LOGIN, "my realm",
				     NULL, NULL, &url),
			0);
	CU_ASSERT_STRING_EQUAL(url, "http://h/v1/authentication/login/realms/"
				    "my%20realm");
	free(url);
	CU_ASSERT(sky__api_url("http://h", SKY_API_DATA, "r", "a", NULL, &url) <
		  0);

	/* JWT sub, base64url without padding: {"sub":"u-1"} */
	char *sub = sky__api_jwt_sub("x.eyJzdWIiOiJ1LTEifQ.sig");
	CU_ASSERT_PTR_NOT_NULL_FATAL(sub);
	CU_ASSERT_STRING_EQUAL(sub, "u-1");
	free(sub);
	CU_ASSERT_PTR_NULL(sky__api_jwt_sub("not-a-jwt"));
	CU_ASSERT_PTR_NULL(sky__api_jwt_sub("a.!!!.c"));

	sky_api_tokens t;
	const char *good =
	    "{\"access_token\":\"A\",\"expires_in\":60,"
	    "\"refresh_token\":\"R\",\"refresh_expires_in\":600}";
	CU_ASSERT_EQUAL(sky__api_parse_tokens(good, strlen(good), &t), 0);
	CU_ASSERT_STRING_EQUAL(t.access_token, "A");
	CU_ASSERT_EQUAL(t.expires_in_s, 60);
	CU_ASSERT_EQUAL(t.refresh_expires_in_s, 600);
	sky__api_tokens_clear(&t);
	const char *bad = "{\"access_token\":\"A\",\"expires_in\":\"60\","
			  "\"refresh_token\":\"R\"}";
	CU_ASSERT_EQUAL(sky__api_parse_tokens(bad, strlen(bad), &t),
			SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "expires_in"));

	/* Login bodies escape what they carry. */
	size_t len;
	char *body = sky__api_login_body("u\"x", "p\\w", "r", &len);
	json_t *o = json_loadb(body, len, 0, NULL);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(o, "password")), "p\\w");
	json_decref(o);
	sky__wipe_free(body);

	char *b = sky__api_default_broker("https://api.example.com/base");
	CU_ASSERT_STRING_EQUAL(b, "ssl://mqtt.example.com:8883");
	free(b);
	CU_ASSERT_PTR_NULL(sky__api_default_broker("http://127.0.0.1:80"));

	/* Answers must have the right shape. */
	json_t *v = NULL;
	sky_json_limits lim = {0, 64};
	CU_ASSERT_EQUAL(sky__api_parse_array("[{}]", 4, &lim, "x", &v), 0);
	json_decref(v);
	CU_ASSERT_EQUAL(sky__api_parse_array("[1]", 3, &lim, "x", &v),
			SKY_EINVAL);
	CU_ASSERT_EQUAL(sky__api_parse_array("{}", 2, &lim, "x", &v),
			SKY_EINVAL);
	CU_ASSERT_EQUAL(sky__api_parse_object("[]", 2, &lim, "x", &v),
			SKY_EINVAL);
}

static void test_sync__classify_and_backoff(void)
{
	sky_http_response r;
	memset(&r, 0, sizeof(r));
	CU_ASSERT_EQUAL(sky__api_classify(&r), SKY_API_RETRY);
	r.transport_ok = 1;
	long codes[] = {200, 201, 401, 403, 404, 400, 409, 429, 408, 500, 503};
	sky_api_outcome want[] = {
	    SKY_API_OK,	   SKY_API_OK,	     SKY_API_AUTH,     SKY_API_GONE,
	    SKY_API_GONE,  SKY_API_REJECTED, SKY_API_REJECTED, SKY_API_RETRY,
	    SKY_API_RETRY, SKY_API_RETRY,    SKY_API_RETRY};
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		r.status = codes[i];
		CU_ASSERT_EQUAL(sky__api_classify(&r), want[i]);
	}
	r.too_large = 1;
	CU_ASSERT_EQUAL(sky__api_classify(&r), SKY_API_REJECTED);
	/* Delays grow, stay within [half, full] of the capped step. */
	for (unsigned a = 0; a < 20; a++) {
		long full = 100L << (a < 10 ? a : 10);
		if (full > 5000)
			full = 5000;
		for (int k = 0; k < 50; k++) {
			long d = sky__backoff_ms(a, 100, 5000);
			CU_ASSERT(d >= full - full / 2 && d <= full);
		}
	}
	char *host = NULL;
	int port, tls;
	CU_ASSERT_EQUAL(
	    sky__mqtt_parse_url("ssl://mqtt.x.io:8883", &host, &port, &tls), 0);
	CU_ASSERT_STRING_EQUAL(host, "mqtt.x.io");
	CU_ASSERT(port == 8883 && tls == 1);
	free(host);
	CU_ASSERT_EQUAL(
	    sky__mqtt_parse_url("mqtt://127.0.0.1", &host, &port, &tls), 0);
	CU_ASSERT(port == 1883 && tls == 0);
	free(host);
	CU_ASSERT_EQUAL(
	    sky__mqtt_parse_url("mqtts://[::1]:9", &host, &port, &tls), 0);
	CU_ASSERT_STRING_EQUAL(host, "::1");
	CU_ASSERT(port == 9 && tls == 1);
	free(host);
	CU_ASSERT_EQUAL(sky__mqtt_parse_url("http://x", &host, &port, &tls),
			SKY_EINVAL);
	CU_ASSERT_EQUAL(
	    sky__mqtt_parse_url("mqtt://x:99999", &host, &port, &tls),
	    SKY_EINVAL);
}

static void test_sync__options_checked(void)
{
	sky_cache *c;
	CU_ASSERT_EQUAL_FATAL(sky_cache_open(&c, sky_test_tmpdir(), NULL), 0);
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	sky_engine *e = NULL;
	o.server = "https://api.example.com";
	o.realm = "demo";
	o.user = "u";
	CU_ASSERT_EQUAL(sky_engine_new(&e, c, &o),
			SKY_EINVAL); /* no password */
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "password"));
	o.password = "p";
	o.server = "ftp://x";
	CU_ASSERT_EQUAL(sky_engine_new(&e, c, &o), SKY_EINVAL);
	o.server = "http://127.0.0.1:1"; /* no default broker for it */
	CU_ASSERT_EQUAL(sky_engine_new(&e, c, &o), SKY_EINVAL);
	o.server = "https://api.example.com";
	CU_ASSERT_EQUAL(sky_engine_new(&e, c, &o), 0); /* broker derived */
	sky_engine_free(e);
	sky_cache_close(c);
}

/* ------------------------------------------------------------------ */
/* Against the emulator                                                */
/* ------------------------------------------------------------------ */

static void test_sync__snapshot_equals_server(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_engine(&fx, 0), 0);
	CU_ASSERT_EQUAL(sky_engine_sync_once(fx.engine), 0);
	sky_sync_status st = SKY_SYNC_STATUS_INIT;
	sky_engine_status(fx.engine, &st);
	CU_ASSERT_EQUAL(st.state, SKY_ENGINE_STOPPED);
	CU_ASSERT_EQUAL(st.snapshots, 1);
	CU_ASSERT(st.last_sync_us > 0);
	CU_ASSERT_EQUAL(st.progress.sessions_done, st.progress.sessions_total);
	/* Every session and its data, read one by one through REST. */
	CU_ASSERT(converge(&fx, 1));

	/* Change the server while offline; the next sync repairs it: the
	 * closed session stays in the mirror, closed, the rest is updated. */
	slist l;
	slist_load(&fx, &l, 7);
	CU_ASSERT_FATAL(l.n > 10);
	sky_http_res res;
	char path[512];
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s",
		 l.v[0].app, l.v[0].sid);
	CU_ASSERT_EQUAL(
	    rest(&fx, "PATCH", path, "{\"status\":\"closed\"}", &res), 200);
	sky_http_res_free(&res);
	for (int i = 0; i < 30; i++)
		random_change(&fx, &l);
	atomic_store(&fx.changes, 0);
	CU_ASSERT_EQUAL(sky_engine_sync_once(fx.engine), 0);
	CU_ASSERT(converge(&fx, 1));
	char *json = NULL;
	CU_ASSERT_EQUAL(
	    sky_session_get(fx.cache, l.v[0].app, l.v[0].sid, &json, NULL), 0);
	CU_ASSERT(json && strstr(json, "\"status\":\"closed\""));
	sky_free(json);
	CU_ASSERT(atomic_load(&fx.changes) > 0); /* changes were reported */
	/* A sync with nothing new reports nothing. */
	atomic_store(&fx.changes, 0);
	CU_ASSERT_EQUAL(sky_engine_sync_once(fx.engine), 0);
	CU_ASSERT_EQUAL(atomic_load(&fx.changes), 0);
	/* The state is recorded in the cache for `skysync stats`. */
	sky_stats stats = SKY_STATS_INIT;
	CU_ASSERT_EQUAL(sky_cache_stats(fx.cache, &stats), 0);
	free(l.v);
	fx_end(&fx);
	free(seed);
}

static void test_sync__live_changes(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	slist l;
	slist_load(&fx, &l, 11);
	atomic_store(&fx.changes, 0);
	for (int i = 0; i < 150; i++)
		random_change(&fx, &l);
	CU_ASSERT(converge(&fx, 1));
	CU_ASSERT(atomic_load(&fx.changes) > 0);
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT(st.events_applied > 0);
	CU_ASSERT(st.broker_up);
	CU_ASSERT_EQUAL(st.snapshots, 1); /* no resync was needed */
	free(l.v);
	fx_end(&fx);
	free(seed);
}

typedef struct {
	fixture *fx;
	slist *l;
	int n;
	atomic_int done;
} writer_arg;

static void *writer(void *arg)
{
	writer_arg *w = arg;
	for (int i = 0; i < w->n; i++)
		random_change(w->fx, w->l);
	atomic_store(&w->done, 1);
	return NULL;
}

static void test_sync__events_during_snapshot(void)
{
	fixture fx;
	char *seed = big_seed(1200);
	/* Slow data reads so the snapshot lasts while changes happen. */
	const char *extra[] = {"--fault", "delay:ms=15,path=*/data", NULL};
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, extra), 0);
	slist l;
	slist_load(&fx, &l, 13);
	fx.max_parallel = 4;
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_SNAPSHOT, 30000), 0);
	writer_arg w = {&fx, &l, 250, 0};
	pthread_t t;
	pthread_create(&t, NULL, writer, &w);
	pthread_join(t, NULL);
	sky_sync_status st = fx_status(&fx);
	/* The point of the test: the changes raced the snapshot. */
	if (atomic_load(&fx.live_reached))
		fprintf(stderr,
			"  note: the snapshot ended before the writer\n");
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000), 0);
	admin(&fx, "DELETE", "/_admin/faults", NULL);
	CU_ASSERT(converge(&fx, 0));
	(void)st;
	free(l.v);
	fx_end(&fx);
	free(seed);
}

static void test_sync__event_faults(void)
{
	fixture fx;
	char *seed = realm_seed();
	const char *extra[] = {"--fault",
			       "event-dup:p=0.2",
			       "--fault",
			       "event-reorder:p=0.2,ms=200",
			       "--fault",
			       "event-delay:p=0.15,ms=400",
			       "--seed-random",
			       "5",
			       NULL};
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, extra), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	slist l;
	slist_load(&fx, &l, 17);
	/* Few sessions, many changes each: reordering matters. */
	l.n = 12;
	for (int i = 0; i < 250; i++)
		random_change(&fx, &l);
	CU_ASSERT(converge(&fx, 0));
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT(st.events_skipped > 0); /* duplicates were seen */
	free(l.v);
	fx_end(&fx);
	free(seed);
}

static void test_sync__broker_drop_and_reconnect(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	slist l;
	slist_load(&fx, &l, 19);

	/* A network failure: the broker keeps our session and queues for us,
	 * so we catch up without a resync. */
	in_loop(&fx, do_drop_broker);
	for (int i = 0; i < 60; i++)
		random_change(&fx, &l);
	CU_ASSERT(converge(&fx, 0));
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT(st.broker_connects >= 2);
	CU_ASSERT_EQUAL(st.snapshots, 1);

	/* The emulator's mqtt-drop takes our client id over with a clean
	 * session: the broker forgets us, events are lost, we must resync. */
	CU_ASSERT_EQUAL(admin(&fx, "POST", "/_admin/mqtt-drop", "{\"ms\":300}"),
			200);
	for (int i = 0; i < 60; i++)
		random_change(&fx, &l);
	for (int i = 0; i < 300 && fx_status(&fx).snapshots < 2; i++)
		sky_sleep_ms(100);
	st = fx_status(&fx);
	CU_ASSERT(st.snapshots >= 2);
	CU_ASSERT(converge(&fx, 0));
	free(l.v);
	fx_end(&fx);
	free(seed);
}

static void test_sync__emulator_restart(void)
{
	fixture fx;
	char *seed = realm_seed();
	char *state = strdup(sky_test_tmpdir());
	const char *extra[] = {"--state", state, NULL};
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, extra), 0);
	slist l;
	slist_load(&fx, &l, 23);

	/* An engine that starts while the server is down retries (login,
	 * then the snapshot) and gets there once it is back. */
	CU_ASSERT_EQUAL_FATAL(sky_emu_stop(&fx.emu), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	sky_sleep_ms(500);
	CU_ASSERT_EQUAL_FATAL(sky_emu_restart(&fx.emu), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	for (int i = 0; i < 40; i++)
		random_change(&fx, &l);
	CU_ASSERT(converge(&fx, 0));

	/* Restart while live: the realm and tokens survive (--state). */
	CU_ASSERT_EQUAL(sky_emu_stop(&fx.emu), 0);
	CU_ASSERT_EQUAL_FATAL(sky_emu_restart(&fx.emu), 0);
	for (int i = 0; i < 40; i++)
		random_change(&fx, &l);
	CU_ASSERT(converge(&fx, 1));
	free(l.v);
	fx_end(&fx);
	free(state);
	free(seed);
}

static void test_sync__token_expiry_mid_snapshot(void)
{
	fixture fx;
	char *seed = big_seed(800);
	const char *extra[] = {"--token-ttl",
			       "1",
			       "--refresh-ttl",
			       "3",
			       "--fault",
			       "delay:ms=10,path=*/data",
			       "--fault",
			       "expire:p=0.03,method=read",
			       "--seed-random",
			       "3",
			       NULL};
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, extra), 0);
	fx.max_parallel = 4;
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_SNAPSHOT, 30000), 0);
	sky_sleep_ms(700);
	/* Refresh tokens too: the engine must log in again. */
	CU_ASSERT_EQUAL(
	    admin(&fx, "POST", "/_admin/expire-tokens", "{\"refresh\":true}"),
	    200);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000), 0);
	sky_http_res res;
	sky_http(fx.emu.url, "GET", "/_admin/stats", NULL, NULL, &res);
	json_int_t logins =
	    json_integer_value(json_object_get(res.json, "logins"));
	json_int_t refreshes =
	    json_integer_value(json_object_get(res.json, "refreshes"));
	sky_http_res_free(&res);
	CU_ASSERT(refreshes >= 1);
	CU_ASSERT(logins >= 3); /* ours twice, the test's at least once */
	admin(&fx, "DELETE", "/_admin/faults", NULL);
	CU_ASSERT(converge(&fx, 0));
	fx_end(&fx);
	free(seed);
}

static void test_sync__soak(void)
{
	const char *env = getenv("SKY_SOAK_CHANGES");
	int n = env ? atoi(env) : sky_test_workload(400, 100);
	fixture fx;
	char *seed = realm_seed();
	const char *extra[] = {"--seed-random", "42", NULL};
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, extra), 0);
	recorder = sky_sub_start(broker.port, NULL,
				 "realms/demo/applications/+/sessions/#");
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	/* Faults on our reads only (the writer here is not under test). */
	const char *faults =
	    "[{\"kind\":\"error\",\"code\":503,\"p\":0.03,\"method\":\"read\"},"
	    "{\"kind\":\"reset\",\"p\":0.03,\"method\":\"read\"},"
	    "{\"kind\":\"throttle\",\"retry\":1,\"p\":0.01,\"method\":\"read\"}"
	    ","
	    "{\"kind\":\"delay\",\"ms\":200,\"p\":0.03,\"method\":\"read\"},"
	    "{\"kind\":\"expire\",\"p\":0.01,\"method\":\"read\"},"
	    "{\"kind\":\"event-dup\",\"p\":0.1},"
	    "{\"kind\":\"event-reorder\",\"p\":0.1,\"ms\":200},"
	    "{\"kind\":\"event-delay\",\"p\":0.05,\"ms\":500}]";
	CU_ASSERT_EQUAL(admin(&fx, "POST", "/_admin/faults", faults), 201);
	slist l;
	slist_load(&fx, &l, 29);
	l.n = l.n > 40 ? 40 : l.n; /* concentrate: more collisions */
	for (int i = 0; i < n; i++) {
		random_change(&fx, &l);
		if (i == n / 3)
			in_loop(&fx, do_drop_broker);
		if (i == 2 * n / 3)
			admin(&fx, "POST", "/_admin/mqtt-drop", "{\"ms\":200}");
	}
	admin(&fx, "DELETE", "/_admin/faults", NULL);
	CU_ASSERT(converge(&fx, 1));
	sky_sync_status st = fx_status(&fx);
	if (verbose)
		fprintf(stderr,
			"  soak: %d changes, %llu events applied, %llu "
			"skipped, %llu refetches, %llu snapshots\n",
			n, (unsigned long long)st.events_applied,
			(unsigned long long)st.events_skipped,
			(unsigned long long)st.refetches,
			(unsigned long long)st.snapshots);
	free(l.v);
	fx_end(&fx);
	sky_sub_stop(recorder);
	recorder = NULL;
	free(seed);
}

/* `skysync sync` exit codes and the password rules. */
static int run_cli(const char *const *argv)
{
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		if (!verbose)
			dup2(null, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_sync__cli(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	char *cli = sky_test_build_path("tools/skysync");
	const char *dir = sky_test_tmpdir();
	char db[1024], pw[1024], bad[1024], bro[64];
	snprintf(db, sizeof(db), "%s/db", dir);
	snprintf(pw, sizeof(pw), "%s/pw", dir);
	snprintf(bad, sizeof(bad), "%s/bad", dir);
	snprintf(bro, sizeof(bro), "mqtt://127.0.0.1:%d", broker.port);
	FILE *f = fopen(pw, "w");
	fputs("integration-pass\n", f);
	fclose(f);
	f = fopen(bad, "w");
	fputs("wrong\n", f);
	fclose(f);
	chmod(pw, 0600);
	chmod(bad, 0600);
	const char *ok[] = {cli,
			    "--db",
			    db,
			    "sync",
			    "--server",
			    fx.emu.url,
			    "--broker",
			    bro,
			    "--realm",
			    "demo",
			    "--user",
			    "integration",
			    "--password-file",
			    pw,
			    "--quiet",
			    NULL};
	CU_ASSERT_EQUAL(run_cli(ok), 0);
	const char *refused[] = {cli,
				 "--db",
				 db,
				 "sync",
				 "--server",
				 fx.emu.url,
				 "--broker",
				 bro,
				 "--realm",
				 "demo",
				 "--user",
				 "integration",
				 "--password-file",
				 bad,
				 "--quiet",
				 NULL};
	CU_ASSERT_EQUAL(run_cli(refused), 4);
	const char *argv_pw[] = {
	    cli,	  "--db",    db,     "sync",   "--server",
	    fx.emu.url,	  "--realm", "demo", "--user", "integration",
	    "--password", "x",	     NULL};
	CU_ASSERT_EQUAL(run_cli(argv_pw), 1);
	/* Nothing listens there: retries, then 4. */
	char dead[64];
	snprintf(dead, sizeof(dead), "http://127.0.0.1:%d",
		 sky_harness_free_port());
	const char *down[] = {cli,
			      "--db",
			      db,
			      "sync",
			      "--server",
			      dead,
			      "--broker",
			      bro,
			      "--realm",
			      "demo",
			      "--user",
			      "integration",
			      "--password-file",
			      pw,
			      "--quiet",
			      NULL};
	CU_ASSERT_EQUAL(run_cli(down), 4);
	free(cli);
	fx_end(&fx);
	free(seed);
}

/* ------------------------------------------------------------------ */
/* Offline writes (the outbox, DESIGN.md §5)                           */
/* ------------------------------------------------------------------ */

#define APP "app-inspections"

/* A one-shot sync (snapshot, then the outbox delivered). */
static int fx_sync_once(fixture *fx)
{
	if (fx_engine(fx, 0) < 0)
		return -1;
	int rc = sky_engine_sync_once(fx->engine);
	sky_engine_free(fx->engine);
	fx->engine = NULL;
	return rc;
}

static int collect_sid(const char *json, size_t len, void *payload)
{
	json_t *s = json_loadb(json, len, 0, NULL);
	const char *st = json_string_value(json_object_get(s, "status"));
	if (st && !strcmp(st, "open"))
		json_array_append(payload, json_object_get(s, "sessionId"));
	json_decref(s);
	return 0;
}

/* Up to n open session ids of APP in the mirror (a new array). */
static json_t *open_sessions(fixture *fx, size_t n)
{
	json_t *all = json_array();
	sky_session_list(fx->cache, APP, collect_sid, all);
	while (json_array_size(all) > n)
		json_array_remove(all, json_array_size(all) - 1);
	return all;
}

/*
 * The usual start of a write test: the emulator on the demo realm, one
 * sync, and `n` of the mirror's open sessions (the caller frees `*seed`
 * and the array). Fails the test when any step does.
 */
static json_t *fx_start_synced(fixture *fx, char **seed, size_t n)
{
	*seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(fx, *seed, NULL), 0);
	CU_ASSERT_FATAL(fx_sync_once(fx) == 0);
	json_t *ids = open_sessions(fx, n);
	CU_ASSERT_FATAL(json_array_size(ids) == n);
	return ids;
}

static uint64_t outbox_left(fixture *fx, uint64_t *rejected)
{
	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	if (sky_outbox_counts_get(fx->cache, &n) < 0)
		return UINT64_MAX;
	if (rejected)
		*rejected = n.rejected;
	return n.pending + n.in_flight + n.in_doubt;
}

/* The server's copy of a session and its data, through REST. */
static json_t *server_session(fixture *fx, const char *sid, int data)
{
	char path[512];
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s%s", APP,
		 sid, data ? "/data" : "");
	sky_http_res res;
	json_t *out = NULL;
	if (rest(fx, "GET", path, NULL, &res) == 200)
		out = json_loads(res.body, 0, NULL);
	sky_http_res_free(&res);
	return out;
}

/* How many server sessions of APP carry clientRef `ref`. */
static int server_count_ref(fixture *fx, const char *ref)
{
	sky_http_res res;
	int n = 0;
	if (rest(fx, "GET", "/v1/applications/" APP "/sessions", NULL, &res) ==
	    200) {
		json_t *list = json_loads(res.body, 0, NULL);
		size_t i;
		json_t *s;
		json_array_foreach(list, i, s) {
			const char *r =
			    json_string_value(json_object_get(s, "clientRef"));
			n += r && !strcmp(r, ref);
		}
		json_decref(list);
	}
	sky_http_res_free(&res);
	return n;
}

static int count_hit(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	(void)json;
	(void)len;
	/* Every hit here has writes pending, and the result says so. */
	CU_ASSERT(flags & SKY_RESULT_PENDING);
	(*(size_t *)payload)++;
	return 0;
}

static void test_sync__outbox_offline_then_online(void)
{
	fixture fx;
	char *seed;
	json_t *ids = fx_start_synced(&fx, &seed, 2);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	const char *s2 = json_string_value(json_array_get(ids, 1));

	/* The server goes away; writes are queued and shown at once. */
	CU_ASSERT_FATAL(sky_emu_stop(&fx.emu) == 0);
	fx.emu_up = 0;
	const char *p1 = "{\"k\":1,\"keep\":{\"a\":1}}";
	const char *p2 = "{\"k\":null}";
	const char *p3 = "{\"k\":{\"x\":[1,2]},\"keep\":{\"b\":2}}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, s1, p1, strlen(p1)) == 0);
	CU_ASSERT(sky_data_patch(fx.cache, APP, s1, p2, strlen(p2)) == 0);
	CU_ASSERT(sky_data_patch(fx.cache, APP, s1, p3, strlen(p3)) == 0);
	CU_ASSERT(sky_session_set_name(fx.cache, APP, s1, "Renamed offline") ==
		  0);
	const char *props = "{\"site\":\"Plant-9\",\"line\":\"Z\"}";
	CU_ASSERT(sky_session_set_properties(fx.cache, APP, s2, props,
					     strlen(props)) == 0);
	CU_ASSERT(sky_participant_add(fx.cache, APP, s2, "u-alice", 0) == 0);
	char *local = NULL;
	const char *cr = "{\"name\":\"Made offline\",\"properties\":"
			 "{\"site\":\"Plant-9\"}}";
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, cr, strlen(cr), &local) == 0);
	CU_ASSERT(strncmp(local, "local-", 6) == 0);
	const char *p4 = "{\"made\":\"offline\"}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, local, p4, strlen(p4)) == 0);
	CU_ASSERT(sky_session_set_description(fx.cache, APP, local, "later") ==
		  0);

	/* The local view shows the writes; the confirmed state does not. */
	unsigned pending = 0;
	CU_ASSERT(sky_session_pending(fx.cache, APP, s1, &pending) == 0);
	CU_ASSERT_EQUAL(pending, 4);
	char *text = NULL;
	CU_ASSERT(sky_data_get(fx.cache, APP, s1, &text, NULL) == 0);
	json_t *d = json_loads(text, 0, NULL);
	sky_free(text);
	CU_ASSERT(json_is_array(json_object_get(json_object_get(d, "k"), "x")));
	json_decref(d);
	CU_ASSERT(sky_session_get_confirmed(fx.cache, APP, s1, &text, NULL) ==
		  0);
	CU_ASSERT(text && !strstr(text, "Renamed offline"));
	sky_free(text);
	CU_ASSERT(sky_session_get_confirmed(fx.cache, APP, local, &text,
					    NULL) == SKY_ENOTFOUND);
	const char *preds[] = {"site=Plant-9"};
	sky_query *q;
	CU_ASSERT_FATAL(sky_query_new(&q, fx.cache, APP, preds, 1) == 0);
	size_t hits = 0;
	CU_ASSERT(sky_query_run(q, count_hit, &hits) == 0);
	sky_query_free(q);
	CU_ASSERT_EQUAL(hits, 2);

	/* A sync while the server is down delivers nothing and says so. */
	uint64_t rejected = 0;
	CU_ASSERT(outbox_left(&fx, &rejected) == 9);
	CU_ASSERT_EQUAL(sky_cache_check(fx.cache, NULL, NULL), 0);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT_EQUAL(st.outbox_delivered, 0);
	CU_ASSERT_EQUAL(st.outbox_last_delivery_us, 0);

	/* Back online: everything is delivered, in order. */
	CU_ASSERT_FATAL(sky_emu_restart(&fx.emu) == 0);
	fx.emu_up = 1;
	CU_ASSERT(fx_sync_once(&fx) == 0);
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 0);
	/* Each of the nine writes counted once, the create included. */
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT_EQUAL(st.outbox_delivered, 9);
	CU_ASSERT(st.outbox_last_delivery_us > 0);
	json_t *srv = server_session(&fx, s1, 1);
	json_t *want = json_loads("{\"k\":{\"x\":[1,2]},\"keep\":{\"a\":1,"
				  "\"b\":2}}",
				  0, NULL);
	/* The seed's data stays beside the keys written here. */
	CU_ASSERT(srv && json_equal(json_object_get(srv, "k"),
				    json_object_get(want, "k")));
	CU_ASSERT(srv && json_equal(json_object_get(srv, "keep"),
				    json_object_get(want, "keep")));
	json_decref(srv);
	json_decref(want);
	srv = server_session(&fx, s1, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(srv, "name")),
			       "Renamed offline");
	json_decref(srv);
	/* The created session exists once, under its server id, and the
	 * local id still finds it. */
	CU_ASSERT_EQUAL(server_count_ref(&fx, local), 1);
	CU_ASSERT(sky_session_get(fx.cache, APP, local, &text, NULL) == 0);
	json_t *made = json_loads(text, 0, NULL);
	sky_free(text);
	const char *server_id =
	    json_string_value(json_object_get(made, "sessionId"));
	CU_ASSERT(server_id && strncmp(server_id, "local-", 6) != 0);
	srv = server_id ? server_session(&fx, server_id, 1) : NULL;
	CU_ASSERT(srv && json_is_string(json_object_get(srv, "made")));
	json_decref(srv);
	srv = server_id ? server_session(&fx, server_id, 0) : NULL;
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(srv, "description")), "later");
	json_decref(srv);
	json_decref(made);
	pending = 9;
	CU_ASSERT(sky_session_pending(fx.cache, APP, s1, &pending) == 0);
	CU_ASSERT_EQUAL(pending, 0);
	/* And the mirror equals the server. */
	CU_ASSERT(converge(&fx, 1));
	sky_free(local);
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/* The application version of a delivered create is a number on the wire.
 * The emulator keeps a create's "version" as it was sent (it takes an
 * integer or a string, as the server does), so the server's session
 * holding the integer 4 says what the body carried. */
static void test_sync__create_version_on_wire(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	CU_ASSERT_FATAL(fx_sync_once(&fx) == 0);
	char *local = NULL, *text = NULL;
	const char *cr = "{\"name\":\"Versioned\",\"version\":4}";
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, cr, strlen(cr), &local) == 0);
	CU_ASSERT(fx_sync_once(&fx) == 0);
	CU_ASSERT_EQUAL(server_count_ref(&fx, local), 1);
	CU_ASSERT(sky_session_get(fx.cache, APP, local, &text, NULL) == 0);
	json_t *made = json_loads(text, 0, NULL);
	sky_free(text);
	const char *server_id =
	    json_string_value(json_object_get(made, "sessionId"));
	CU_ASSERT(server_id && strncmp(server_id, "local-", 6) != 0);
	json_t *srv = server_id ? server_session(&fx, server_id, 0) : NULL;
	json_t *v = json_object_get(srv, "version");
	CU_ASSERT(json_is_integer(v) && json_integer_value(v) == 4);
	/* And the mirror shows the server's number. */
	v = json_object_get(made, "version");
	CU_ASSERT(json_is_integer(v) && json_integer_value(v) == 4);
	json_decref(srv);
	json_decref(made);
	sky_free(local);
	fx_end(&fx);
	free(seed);
}

static int admin_fault(fixture *fx, const char *spec)
{
	json_t *j = json_string(spec);
	char *body = json_dumps(j, JSON_ENCODE_ANY);
	json_decref(j);
	long st = admin(fx, "POST", "/_admin/faults", body);
	free(body);
	return st == 201 ? 0 : -1;
}

typedef struct {
	int count;
	int statuses[8];
} rejections;

static int on_rejected(const sky_outbox_entry *e, void *payload)
{
	rejections *r = payload;
	if (r->count < 8)
		r->statuses[r->count] = e->http_status;
	r->count++;
	return 0;
}

static int has_status(const rejections *r, int status)
{
	for (int i = 0; i < r->count && i < 8; i++)
		if (r->statuses[i] == status)
			return 1;
	return 0;
}

typedef struct {
	uint64_t ids[16];
	int states[16];
	int n;
} entry_states;

static int note_entry(const sky_outbox_entry *e, void *payload)
{
	entry_states *s = payload;
	if (s->n < 16) {
		s->ids[s->n] = e->id;
		s->states[s->n++] = e->state;
	}
	return 0;
}

static void test_sync__outbox_rejections(void)
{
	fixture fx;
	char *seed;
	json_t *ids = fx_start_synced(&fx, &seed, 4);
	const char *a = json_string_value(json_array_get(ids, 0));
	const char *b = json_string_value(json_array_get(ids, 1));
	const char *c = json_string_value(json_array_get(ids, 2));
	const char *d = json_string_value(json_array_get(ids, 3));
	char spec[512];
	/* A's data is forbidden (403), C is gone (404); B gets a participant
	 * the realm does not have (the emulator answers 400). */
	snprintf(spec, sizeof(spec),
		 "error:code=403,method=PATCH,"
		 "path=*/sessions/%s/data",
		 a);
	CU_ASSERT_FATAL(admin_fault(&fx, spec) == 0);
	snprintf(spec, sizeof(spec), "error:code=404,next=1,path=*/%s", c);
	CU_ASSERT_FATAL(admin_fault(&fx, spec) == 0);
	char *before = NULL;
	CU_ASSERT_FATAL(sky_data_get(fx.cache, APP, a, &before, NULL) == 0);
	const char *px = "{\"rejected\":true}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, a, px, strlen(px)) == 0);
	CU_ASSERT(sky_participant_add(fx.cache, APP, b, "u-nobody", 0) == 0);
	CU_ASSERT(sky_session_set_name(fx.cache, APP, b, "after the bad one") ==
		  0);
	CU_ASSERT(sky_session_set_name(fx.cache, APP, c, "gone") == 0);
	const char *pd = "{\"delivered\":true}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, d, pd, strlen(pd)) == 0);
	rejections r = {0, {0}};
	sky_outbox_on_rejected(fx.cache, on_rejected, &r);

	CU_ASSERT(fx_sync_once(&fx) == 0);
	uint64_t rejected = 0;
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 3);
	CU_ASSERT_EQUAL(r.count, 3);
	CU_ASSERT(has_status(&r, 403) && has_status(&r, 404) &&
		  has_status(&r, 400));
	/* The rejected writes' effects are undone; the others landed. */
	char *after = NULL;
	CU_ASSERT(sky_data_get(fx.cache, APP, a, &after, NULL) == 0);
	CU_ASSERT(after && before && strcmp(after, before) == 0);
	sky_free(after);
	json_t *srv = server_session(&fx, b, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(srv, "name")),
			       "after the bad one");
	json_decref(srv);
	srv = server_session(&fx, d, 1);
	CU_ASSERT(json_is_true(json_object_get(srv, "delivered")));
	json_decref(srv);
	char *text = NULL;
	CU_ASSERT(sky_session_get(fx.cache, APP, c, &text, NULL) == 0);
	CU_ASSERT(text && !strstr(text, "\"gone\""));
	sky_free(text);

	/* A dead letter sent again once the server accepts it. */
	CU_ASSERT(admin(&fx, "DELETE", "/_admin/faults", NULL) == 200 ||
		  admin(&fx, "DELETE", "/_admin/faults", NULL) == 204);
	entry_states es = {{0}, {0}, 0};
	sky_outbox_list(fx.cache, note_entry, &es);
	CU_ASSERT_EQUAL(es.n, 3);
	uint64_t a_id = es.ids[0];
	CU_ASSERT_EQUAL(es.states[0], SKY_OUTBOX_REJECTED);
	CU_ASSERT_EQUAL(sky_outbox_retry(fx.cache, a_id), 0);
	CU_ASSERT_EQUAL(sky_outbox_retry(fx.cache, a_id), SKY_EINVAL);
	CU_ASSERT(sky_data_get(fx.cache, APP, a, &after, NULL) == 0);
	CU_ASSERT(after && strstr(after, "\"rejected\":true"));
	sky_free(after);
	CU_ASSERT(fx_sync_once(&fx) == 0);
	srv = server_session(&fx, a, 1);
	CU_ASSERT(json_is_true(json_object_get(srv, "rejected")));
	json_decref(srv);
	/* The other two are dropped by hand: the outbox is empty. */
	CU_ASSERT_EQUAL(sky_outbox_drop(fx.cache, es.ids[1]), 0);
	CU_ASSERT_EQUAL(sky_outbox_drop(fx.cache, es.ids[2]), 0);
	CU_ASSERT_EQUAL(sky_outbox_drop(fx.cache, es.ids[2]), SKY_ENOTFOUND);
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 0);
	CU_ASSERT(converge(&fx, 1));
	sky_free(before);
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

static void test_sync__outbox_lost_create_answer(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	CU_ASSERT_FATAL(fx_sync_once(&fx) == 0);
	/* The first create lands and its answer is lost; the second create
	 * fails before it lands (503) and must still be made once. */
	CU_ASSERT_FATAL(admin_fault(&fx, "drop:next=1,method=POST,"
					 "path=*/sessions") == 0);
	char *l1 = NULL, *l2 = NULL;
	const char *c1 = "{\"name\":\"lost answer\"}";
	const char *c2 = "{\"name\":\"failed first\"}";
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, c1, strlen(c1), &l1) == 0);
	CU_ASSERT(fx_sync_once(&fx) == 0);
	CU_ASSERT_FATAL(admin_fault(&fx, "error:code=503,next=1,method=POST,"
					 "path=*/sessions") == 0);
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, c2, strlen(c2), &l2) == 0);
	const char *p = "{\"after\":\"create\"}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, l2, p, strlen(p)) == 0);
	CU_ASSERT(fx_sync_once(&fx) == 0);
	CU_ASSERT_EQUAL(outbox_left(&fx, NULL), 0);
	CU_ASSERT_EQUAL(server_count_ref(&fx, l1), 1);
	CU_ASSERT_EQUAL(server_count_ref(&fx, l2), 1);
	char *text = NULL;
	CU_ASSERT(sky_data_get(fx.cache, APP, l2, &text, NULL) == 0);
	CU_ASSERT(text && strstr(text, "\"after\""));
	sky_free(text);
	CU_ASSERT(converge(&fx, 1));

	/* A create refused for good takes the writes to its session along,
	 * each one notified, and the local session goes away. */
	CU_ASSERT_FATAL(admin_fault(&fx, "error:code=400,next=1,method=POST,"
					 "path=*/sessions") == 0);
	char *l3 = NULL;
	const char *c3 = "{\"name\":\"refused\"}";
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, c3, strlen(c3), &l3) == 0);
	CU_ASSERT(sky_data_patch(fx.cache, APP, l3, p, strlen(p)) == 0);
	rejections r = {0, {0}};
	sky_outbox_on_rejected(fx.cache, on_rejected, &r);
	CU_ASSERT(fx_sync_once(&fx) == 0);
	uint64_t rejected = 0;
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 2);
	CU_ASSERT_EQUAL(r.count, 2);
	CU_ASSERT_EQUAL(sky_session_get(fx.cache, APP, l3, &text, NULL),
			SKY_ENOTFOUND);
	CU_ASSERT_EQUAL(server_count_ref(&fx, l3), 0);
	CU_ASSERT_EQUAL(sky_cache_check(fx.cache, NULL, NULL), 0);
	sky_outbox_on_rejected(fx.cache, NULL, NULL);
	sky_free(l3);
	sky_free(l1);
	sky_free(l2);
	fx_end(&fx);
	free(seed);
}

/* One random write of the flaky test, applied to the model too. */
typedef struct {
	char sid[128]; /* server id, or the local id of a created one */
	json_t *name;  /* string */
	json_t *props; /* object */
	json_t *data;  /* object */
	json_t *added; /* participant ids added */
	int created;
} model_session;

static json_t *random_value(slist *rng, int depth)
{
	switch (rnd(rng, depth > 1 ? 4 : 6)) {
	case 0: return json_integer(rnd(rng, 100));
	case 1: return json_null();
	case 2: return json_string(rnd(rng, 2) ? "x" : "yy");
	case 3: return json_pack("[ii]", rnd(rng, 9), rnd(rng, 9));
	default: {
		json_t *o = json_object();
		unsigned n = 1 + rnd(rng, 3);
		for (unsigned i = 0; i < n; i++) {
			char k[2] = {(char)('a' + rnd(rng, 4)), 0};
			json_object_set_new(o, k, random_value(rng, depth + 1));
		}
		return o;
	}
	}
}

static void test_sync__outbox_flaky_network(void);

/* The same with the gateway's one-flush mode: the engine's deliveries
 * checkpoint, events are folded in the background, writes journaled. */
static void test_sync__outbox_flaky_network_journal(void)
{
	fx_durability = SKY_DURABILITY_JOURNAL;
	test_sync__outbox_flaky_network();
	fx_durability = SKY_DURABILITY_DEFAULT;
}

static void test_sync__outbox_flaky_network(void)
{
	fixture fx;
	char *seed = realm_seed();
	/* tests/soak/network sets SKY_SOAK_SECONDS: write for that long,
	 * with event faults and broker drops too, and a second client
	 * writing to other sessions meanwhile. */
	const char *soak_env = getenv("SKY_SOAK_SECONDS");
	const double soak_s = soak_env ? atof(soak_env) : 0;
	const size_t n_writes =
	    soak_s > 0 ? SIZE_MAX : (size_t)sky_test_workload(2000, 200);
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	fx.max_parallel = 8;
	if (soak_s > 0)
		fx.resync_interval_s = 20; /* dropped events are found again */
	CU_ASSERT_FATAL(fx_follow(&fx) == 0);
	CU_ASSERT_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000) == 0);
	const char *faults[] = {
	    "error:code=503,p=0.08,method=write",
	    "throttle:retry=1,p=0.02,method=write",
	    "drop:p=0.05,method=write",
	    "reset:p=0.03",
	    "expire:p=0.01",
	    "delay:ms=200,p=0.02",
	};
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++)
		CU_ASSERT_FATAL(admin_fault(&fx, faults[i]) == 0);
	const char *soak_faults[] = {
	    "event-dup:p=0.05",	    "event-delay:ms=300,p=0.05",
	    "event-reorder:p=0.02", "event-drop:p=0.01",
	    "mqtt-drop:p=0.002",
	};
	for (size_t i = 0; soak_s > 0 && i < 5; i++)
		CU_ASSERT_FATAL(admin_fault(&fx, soak_faults[i]) == 0);
	admin(&fx, "POST", "/_admin/random-seed", "{\"seed\": 12345}");
	double soak_t0 = (double)sky__now_us() / 1e6;

	/* The model starts from the mirror, equal to the server now. */
	json_t *ids = open_sessions(&fx, 24);
	size_t n = json_array_size(ids);
	model_session m[40];
	memset(m, 0, sizeof(m));
	for (size_t i = 0; i < n; i++) {
		const char *sid = json_string_value(json_array_get(ids, i));
		snprintf(m[i].sid, sizeof(m[i].sid), "%s", sid);
		char *text = NULL;
		sky_session_get(fx.cache, APP, sid, &text, NULL);
		json_t *s = json_loads(text, 0, NULL);
		sky_free(text);
		m[i].name = json_incref(json_object_get(s, "name"));
		m[i].props = json_incref(json_object_get(s, "properties"));
		json_decref(s);
		sky_data_get(fx.cache, APP, sid, &text, NULL);
		m[i].data = json_loads(text, 0, NULL);
		sky_free(text);
		m[i].added = json_array();
	}
	slist rng = {NULL, 0, 0, 42};
	static const char *users[] = {"u-alice", "u-bob", "u-carol", "u-dave"};
	json_t *others = soak_s > 0 ? open_sessions(&fx, 48) : json_array();
	size_t written = 0;
	for (size_t w = 0; w < n_writes; w++, written++) {
		if (soak_s > 0) {
			if ((double)sky__now_us() / 1e6 - soak_t0 > soak_s)
				break;
			sky_sleep_ms(2);
			/* The other client: sessions the model does not hold.
			 */
			if (w % 16 == 0 && json_array_size(others) > 24) {
				const char *o =
				    json_string_value(json_array_get(
					others,
					24 +
					    rnd(&rng, (unsigned)json_array_size(
							  others) -
							  24)));
				char path[256], body[64];
				snprintf(path, sizeof(path),
					 "/v1/applications/" APP
					 "/sessions/%s/data",
					 o);
				snprintf(body, sizeof(body), "{\"other\":%zu}",
					 w);
				sky_http_res res;
				rest(&fx, "PATCH", path, body, &res);
				sky_http_res_free(&res);
			}
		}
		unsigned pick = rnd(&rng, 100);
		if (pick < 1 && n < 40) {
			char name[64];
			snprintf(name, sizeof(name), "flaky %zu", w);
			json_t *b = json_pack("{s:s, s:{s:s}}", "name", name,
					      "properties", "site", "flaky");
			char *t = json_dumps(b, JSON_COMPACT);
			char *local = NULL;
			CU_ASSERT_FATAL(sky_session_create(fx.cache, APP, t,
							   strlen(t),
							   &local) == 0);
			model_session *x = &m[n++];
			snprintf(x->sid, sizeof(x->sid), "%s", local);
			x->name = json_incref(json_object_get(b, "name"));
			x->props =
			    json_incref(json_object_get(b, "properties"));
			x->data = json_object();
			x->added = json_array();
			x->created = 1;
			sky_free(local);
			free(t);
			json_decref(b);
			continue;
		}
		model_session *x = &m[rnd(&rng, (unsigned)n)];
		int rc;
		if (pick < 70) {
			json_t *patch = json_object();
			char k[2] = {(char)('a' + rnd(&rng, 4)), 0};
			json_object_set_new(patch, k, random_value(&rng, 1));
			char *t = json_dumps(patch, JSON_COMPACT);
			rc =
			    sky_data_patch(fx.cache, APP, x->sid, t, strlen(t));
			x->data = sky__merge_patch(x->data, patch);
			free(t);
			json_decref(patch);
		} else if (pick < 82) {
			char name[64];
			snprintf(name, sizeof(name), "name %zu", w);
			rc = sky_session_set_name(fx.cache, APP, x->sid, name);
			json_decref(x->name);
			x->name = json_string(name);
		} else if (pick < 94) {
			char v[32];
			snprintf(v, sizeof(v), "v%zu", w);
			json_t *p =
			    json_pack("{s:s, s:s}", "site", "flaky", "step", v);
			char *t = json_dumps(p, JSON_COMPACT);
			rc = sky_session_set_properties(fx.cache, APP, x->sid,
							t, strlen(t));
			free(t);
			json_decref(x->props);
			x->props = p;
		} else {
			const char *u = users[rnd(&rng, 4)];
			rc = sky_participant_add(fx.cache, APP, x->sid, u, 0);
			json_array_append_new(x->added, json_string(u));
		}
		CU_ASSERT_EQUAL(rc, 0);
		if ((w & 63) == 0)
			sky_sleep_ms(5); /* let delivery interleave */
	}
	if (soak_s > 0 || verbose)
		fprintf(stderr, "  %zu writes queued\n", written);
	/* Everything is delivered, whatever the faults did. */
	long waited = 0;
	while (outbox_left(&fx, NULL) > 0 && waited < 180000) {
		sky_sleep_ms(200);
		waited += 200;
	}
	uint64_t rejected = 0;
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 0);
	/* The faults did fire: lost answers, errors, throttling, expiry. */
	sky_http_res fres;
	sky_http(fx.emu.url, "GET", "/_admin/faults", NULL, NULL, &fres);
	json_t *fdoc = json_loads(fres.body, 0, NULL);
	json_t *fired = json_object_get(fdoc, "fired");
	const char *kinds[] = {"drop", "error", "throttle", "reset", "expire"};
	for (size_t i = 0; i < 5; i++) {
		json_int_t k =
		    json_integer_value(json_object_get(fired, kinds[i]));
		if (verbose || soak_s > 0)
			fprintf(stderr, "  fault %s fired %lld times\n",
				kinds[i], (long long)k);
		CU_ASSERT(k > 0);
	}
	json_decref(fdoc);
	sky_http_res_free(&fres);
	admin(&fx, "DELETE", "/_admin/faults", NULL);
	/* The server holds what the writes say, no create twice. */
	for (size_t i = 0; i < n; i++) {
		model_session *x = &m[i];
		const char *sid = x->sid;
		char *text = NULL;
		json_t *mine = NULL;
		if (x->created) {
			CU_ASSERT_EQUAL(server_count_ref(&fx, x->sid), 1);
			CU_ASSERT(sky_session_get(fx.cache, APP, x->sid, &text,
						  NULL) == 0);
			mine = json_loads(text, 0, NULL);
			sky_free(text);
			sid = json_string_value(
			    json_object_get(mine, "sessionId"));
		}
		json_t *s = server_session(&fx, sid, 0);
		json_t *d = server_session(&fx, sid, 1);
		CU_ASSERT(json_equal(json_object_get(s, "name"), x->name));
		CU_ASSERT(
		    json_equal(json_object_get(s, "properties"), x->props));
		int data_ok = json_equal(d, x->data);
		CU_ASSERT(data_ok);
		if (!data_ok) {
			char *a = json_dumps(d, JSON_COMPACT | JSON_SORT_KEYS);
			char *b =
			    json_dumps(x->data, JSON_COMPACT | JSON_SORT_KEYS);
			fprintf(stderr, "  %s: server %s, expected %s\n", sid,
				a, b);
			free(a);
			free(b);
		}
		size_t j;
		json_t *u;
		json_array_foreach(x->added, j, u) {
			int found = 0;
			size_t k;
			json_t *p;
			json_array_foreach(json_object_get(s, "participants"),
					   k, p)
				found |=
				    json_equal(json_object_get(p, "id"), u);
			CU_ASSERT(found);
		}
		json_decref(s);
		json_decref(d);
		json_decref(mine);
		json_decref(x->name);
		json_decref(x->props);
		json_decref(x->data);
		json_decref(x->added);
	}
	/* And the mirror equals the server. */
	CU_ASSERT(converge(&fx, 1));
	/* The outbox and the local views agree with each other. */
	CU_ASSERT_EQUAL(sky_cache_check(fx.cache, NULL, NULL), 0);
	json_decref(others);
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/* ---- reads and writes fail apart; stale sessions; reconcile ---- */

static json_int_t emu_stat(fixture *fx, const char *name)
{
	sky_http_res res;
	json_int_t v = -1;
	if (sky_http(fx->emu.url, "GET", "/_admin/stats", NULL, NULL, &res) ==
	    200)
		v = json_integer_value(json_object_get(res.json, name));
	sky_http_res_free(&res);
	return v;
}

static int is_stale(fixture *fx, const char *sid, char **why)
{
	return sky_session_stale(fx->cache, APP, sid, why, NULL) == 0;
}

static void test_sync__read_failure_still_delivers(void)
{
	fixture fx;
	char *seed;
	json_t *ids = fx_start_synced(&fx, &seed, 2);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	const char *s2 = json_string_value(json_array_get(ids, 1));
	/* Every read of s1's data fails (500); writes are not touched. */
	char spec[256];
	snprintf(spec, sizeof(spec),
		 "error:code=500,method=GET,path=*/sessions/%s/data", s1);
	CU_ASSERT_FATAL(admin_fault(&fx, spec) == 0);
	const char *p1 = "{\"during\":\"failed read\"}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, s1, p1, strlen(p1)) == 0);
	CU_ASSERT(sky_session_set_name(fx.cache, APP, s1, "written anyway") ==
		  0);
	const char *p2 = "{\"other\":true}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, s2, p2, strlen(p2)) == 0);

	/* The sync reports the failed read, and delivered every write. */
	CU_ASSERT_EQUAL(fx_sync_once(&fx), SKY_ENETWORK);
	CU_ASSERT(strstr(sky_error_last()->message, "reads failed") != NULL);
	CU_ASSERT(strstr(sky_error_last()->message, s1) != NULL);
	uint64_t rejected = 9;
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 0);
	json_t *srv = server_session(&fx, s1, 0);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(srv, "name")),
			       "written anyway");
	json_decref(srv);
	srv = server_session(&fx, s2, 1);
	CU_ASSERT(json_is_true(json_object_get(srv, "other")));
	json_decref(srv);
	/* s1 is stale, in the cache, with the reason; s2 is not. */
	char *why = NULL;
	CU_ASSERT(is_stale(&fx, s1, &why));
	CU_ASSERT(why && strstr(why, "500"));
	sky_free(why);
	CU_ASSERT(!is_stale(&fx, s2, NULL));
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT_EQUAL(st.stale_sessions, 1);
	/* Stale is not damage. */
	CU_ASSERT_EQUAL(sky_cache_check(fx.cache, NULL, NULL), 0);

	/* The server reads again: the next sync clears the mark. */
	CU_ASSERT(admin(&fx, "DELETE", "/_admin/faults", NULL) / 100 == 2);
	CU_ASSERT_EQUAL(fx_sync_once(&fx), 0);
	CU_ASSERT(!is_stale(&fx, s1, NULL));
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &st) == 0);
	CU_ASSERT_EQUAL(st.stale_sessions, 0);

	/* The realm cannot be listed at all: the outbox still goes. */
	CU_ASSERT_FATAL(admin_fault(&fx, "error:code=503,method=GET,"
					 "path=/v1/applications") == 0);
	const char *p3 = "{\"unlisted\":true}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, s2, p3, strlen(p3)) == 0);
	CU_ASSERT_EQUAL(fx_sync_once(&fx), SKY_ENETWORK);
	CU_ASSERT(strstr(sky_error_last()->message, "reads failed") != NULL);
	CU_ASSERT_EQUAL(outbox_left(&fx, NULL), 0);
	srv = server_session(&fx, s2, 1);
	CU_ASSERT(json_is_true(json_object_get(srv, "unlisted")));
	json_decref(srv);
	CU_ASSERT(admin(&fx, "DELETE", "/_admin/faults", NULL) / 100 == 2);
	CU_ASSERT(converge(&fx, 1));
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/*
 * A followed engine whose snapshot fails as a whole (the realm cannot be
 * listed) waits in BACKOFF and retries; meanwhile the outbox is delivered,
 * and once the server lists again the engine goes LIVE and converges.
 */
static void test_sync__backoff_delivers_then_recovers(void)
{
	fixture fx;
	char *seed;
	json_t *ids = fx_start_synced(&fx, &seed, 1);
	const char *sid = json_string_value(json_array_get(ids, 0));
	CU_ASSERT_FATAL(admin_fault(&fx, "error:code=400,method=GET,"
					 "path=/v1/applications") == 0);
	CU_ASSERT_FATAL(fx_follow(&fx) == 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_BACKOFF, 30000), 0);
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT_EQUAL(st.snapshots, 0);
	CU_ASSERT(strstr(st.error, "400") != NULL);

	/* A write made while the reads wait goes out all the same. */
	const char *patch = "{\"during\":\"backoff\"}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, sid, patch, strlen(patch)) ==
		  0);
	for (int i = 0; i < 300 && outbox_left(&fx, NULL) != 0; i++)
		sky_sleep_ms(100);
	CU_ASSERT_EQUAL(outbox_left(&fx, NULL), 0);
	json_t *srv = server_session(&fx, sid, 1);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(srv, "during")), "backoff");
	json_decref(srv);
	/* Still waiting: nothing has listed the realm. */
	CU_ASSERT_EQUAL(fx_status(&fx).snapshots, 0);

	/* The server lists again: the retry snapshots and goes LIVE. */
	CU_ASSERT(admin(&fx, "DELETE", "/_admin/faults", NULL) / 100 == 2);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000), 0);
	CU_ASSERT(fx_status(&fx).snapshots >= 1);
	CU_ASSERT(converge(&fx, 1));
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

static void test_sync__relogin_after_refresh(void)
{
	fixture fx;
	char *seed;
	json_t *ids = fx_start_synced(&fx, &seed, 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	char spec[256];
	/* Two 401s: the first is answered by a refresh, the second (right
	 * after the refresh) by one new login; then the read succeeds. */
	snprintf(spec, sizeof(spec),
		 "error:code=401,next=2,method=GET,path=*/sessions/%s/data",
		 s1);
	CU_ASSERT_FATAL(admin_fault(&fx, spec) == 0);
	json_int_t logins = emu_stat(&fx, "logins");
	json_int_t refreshes = emu_stat(&fx, "refreshes");
	CU_ASSERT_EQUAL(fx_sync_once(&fx), 0);
	/* The run's own login, and exactly one more. */
	CU_ASSERT_EQUAL(emu_stat(&fx, "logins") - logins, 2);
	CU_ASSERT_EQUAL(emu_stat(&fx, "refreshes") - refreshes, 1);
	CU_ASSERT(!is_stale(&fx, s1, NULL));

	/* Three: after the login the engine gives up that read alone. */
	snprintf(spec, sizeof(spec),
		 "error:code=401,next=3,method=GET,path=*/sessions/%s/data",
		 s1);
	CU_ASSERT_FATAL(admin_fault(&fx, spec) == 0);
	const char *p = "{\"after\":\"401s\"}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, s1, p, strlen(p)) == 0);
	/* The broker kept our session, so this sync would resume and not
	 * read s1's data; without it (lost at a restart) the sync is full. */
	CU_ASSERT_FATAL(sky_broker_restart(&broker) == 0);
	logins = emu_stat(&fx, "logins");
	CU_ASSERT_EQUAL(fx_sync_once(&fx), SKY_ENETWORK);
	CU_ASSERT_EQUAL(emu_stat(&fx, "logins") - logins, 2);
	CU_ASSERT(is_stale(&fx, s1, NULL));
	CU_ASSERT_EQUAL(outbox_left(&fx, NULL), 0);
	json_t *srv = server_session(&fx, s1, 1);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(srv, "after")),
			       "401s");
	json_decref(srv);
	CU_ASSERT_EQUAL(fx_sync_once(&fx), 0);
	CU_ASSERT(!is_stale(&fx, s1, NULL));
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/* Wait (polling) until cond(fx) holds; 0 on time. */
static int wait_for(fixture *fx, int (*cond)(fixture *), long ms)
{
	for (long waited = 0; waited < ms; waited += 50) {
		if (cond(fx))
			return 0;
		sky_sleep_ms(50);
	}
	return -1;
}

static const char *watched_sid;
static const char *watched_key;

static int data_has_key(fixture *fx)
{
	char *text = NULL;
	int has = 0;
	if (sky_data_get(fx->cache, APP, watched_sid, &text, NULL) == 0) {
		json_t *d = json_loads(text, 0, NULL);
		has = json_object_get(d, watched_key) != NULL;
		json_decref(d);
	}
	sky_free(text);
	return has;
}

static void test_sync__refused_event_reread(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	/* A cache that accepts events up to 4 KiB: a data patch of 8 KiB
	 * is over the limit as an event, not as the data read after it. */
	sky_cache_close(fx.cache);
	sky_cache_options co = SKY_CACHE_OPTIONS_INIT;
	co.durability = fx_durability;
	co.max_event_bytes = 4096;
	CU_ASSERT_FATAL(sky_cache_open(&fx.cache, fx.dir, &co) == 0);
	CU_ASSERT_FATAL(fx_follow(&fx) == 0);
	CU_ASSERT_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000) == 0);
	json_t *ids = open_sessions(&fx, 1);
	CU_ASSERT_FATAL(json_array_size(ids) == 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	char *big = malloc(8200);
	CU_ASSERT_FATAL(big != NULL);
	memset(big, 'x', 8192);
	big[8192] = '\0';
	json_t *patch = json_pack("{s:s}", "big", big);
	char *body = json_dumps(patch, JSON_COMPACT);
	char path[256];
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s/data",
		 APP, s1);
	sky_http_res res;
	CU_ASSERT_EQUAL(rest(&fx, "PATCH", path, body, &res), 200);
	sky_http_res_free(&res);
	/* The event is refused, counted, and the session read again. */
	watched_sid = s1;
	watched_key = "big";
	CU_ASSERT_EQUAL(wait_for(&fx, data_has_key, CONVERGE_MS), 0);
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT(st.server_events_refused >= 1);
	CU_ASSERT(st.events_rejected >= 1);
	CU_ASSERT(st.refetches >= 1);
	sky_stats cs = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &cs) == 0);
	CU_ASSERT(cs.server_events_refused >= 1);
	CU_ASSERT(!is_stale(&fx, s1, NULL));
	CU_ASSERT(converge(&fx, 0));
	free(body);
	json_decref(patch);
	free(big);
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

static int is_stale_watched(fixture *fx)
{
	return is_stale(fx, watched_sid, NULL);
}

static void test_sync__refused_event_reread_refused(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	/* Nesting deeper than the cache's limit: the event is refused, and
	 * so is the data the re-read brings: the session ends up stale. */
	sky_cache_close(fx.cache);
	sky_cache_options co = SKY_CACHE_OPTIONS_INIT;
	co.durability = fx_durability;
	co.max_depth = 8;
	CU_ASSERT_FATAL(sky_cache_open(&fx.cache, fx.dir, &co) == 0);
	CU_ASSERT_FATAL(fx_follow(&fx) == 0);
	CU_ASSERT_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000) == 0);
	json_t *ids = open_sessions(&fx, 1);
	CU_ASSERT_FATAL(json_array_size(ids) == 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	char body[256] = "";
	for (int i = 0; i < 12; i++)
		strcat(body, "{\"d\":");
	strcat(body, "1");
	for (int i = 0; i < 12; i++)
		strcat(body, "}");
	char path[256];
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s/data",
		 APP, s1);
	sky_http_res res;
	CU_ASSERT_EQUAL(rest(&fx, "PATCH", path, body, &res), 200);
	sky_http_res_free(&res);
	watched_sid = s1;
	CU_ASSERT_EQUAL(wait_for(&fx, is_stale_watched, CONVERGE_MS), 0);
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT(st.server_events_refused >= 2); /* the event, the read */
	CU_ASSERT(st.stale_sessions == 1);
	char *why = NULL;
	CU_ASSERT(sky_session_stale(fx.cache, APP, s1, &why, NULL) == 0);
	CU_ASSERT(why && strstr(why, "refused"));
	sky_free(why);
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

static const char *watched_name;

static int name_is(fixture *fx)
{
	char *text = NULL;
	int is = 0;
	if (sky_session_get(fx->cache, APP, watched_sid, &text, NULL) == 0) {
		json_t *s = json_loads(text, 0, NULL);
		const char *n = json_string_value(json_object_get(s, "name"));
		is = n && !strcmp(n, watched_name);
		json_decref(s);
	}
	sky_free(text);
	return is;
}

static int reconciled(fixture *fx)
{
	return fx_status(fx).reconciles >= 1;
}

static void test_sync__reconcile_repairs_dropped_event(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	fx.reconcile_s = 1;
	CU_ASSERT_FATAL(fx_follow(&fx) == 0);
	CU_ASSERT_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 60000) == 0);
	json_t *ids = open_sessions(&fx, 1);
	CU_ASSERT_FATAL(json_array_size(ids) == 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	/* The broker never delivers the rename's event; no resync runs. */
	CU_ASSERT_FATAL(admin_fault(&fx, "event-drop:next=1") == 0);
	char path[256];
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s", APP,
		 s1);
	sky_http_res res;
	CU_ASSERT_EQUAL(rest(&fx, "PATCH", path,
			     "{\"name\":\"renamed, event lost\"}", &res),
			200);
	sky_http_res_free(&res);
	watched_sid = s1;
	watched_name = "renamed, event lost";
	CU_ASSERT_EQUAL(wait_for(&fx, name_is, CONVERGE_MS), 0);
	CU_ASSERT_EQUAL(wait_for(&fx, reconciled, CONVERGE_MS), 0);
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT_EQUAL(st.snapshots, 1); /* repaired without a resync */
	CU_ASSERT(st.refetches >= 1);
	CU_ASSERT(converge(&fx, 0));
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

static int broker_error_named(fixture *fx)
{
	return strstr(fx_status(fx).error, "TLS") != NULL;
}

static void test_sync__broker_tls_error(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_FATAL(fx_start(&fx, seed, NULL) == 0);
	/* TLS to a plain MQTT port: the error says it is about TLS. */
	char url[64];
	snprintf(url, sizeof(url), "ssl://127.0.0.1:%d", broker.port);
	fx.broker_url = url;
	CU_ASSERT_FATAL(fx_follow(&fx) == 0);
	CU_ASSERT_EQUAL(wait_for(&fx, broker_error_named, CONVERGE_MS), 0);
	if (verbose)
		fprintf(stderr, "  broker error: %s\n", fx_status(&fx).error);
	fx_end(&fx);
	free(seed);
}

/* Run a CLI command with stdout and stderr into files; its exit status. */
static int run_cli_to(const char *const *argv, const char *out, const char *err)
{
	pid_t pid = fork();
	if (pid == 0) {
		int o = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (o < 0 || e < 0)
			_exit(126);
		dup2(o, 1);
		dup2(e, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int file_has(const char *path, const char *text)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	char buf[65536];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

static void test_sync__cli_stale(void)
{
	fixture fx;
	char *seed;
	json_t *ids = fx_start_synced(&fx, &seed, 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	char *cli = sky_test_build_path("tools/skysync");
	const char *dir = sky_test_tmpdir();
	char db[1024], pw[1024], out[1024], err[1024], bro[64];
	snprintf(db, sizeof(db), "%s/db", dir);
	snprintf(pw, sizeof(pw), "%s/pw", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(err, sizeof(err), "%s/err", dir);
	snprintf(bro, sizeof(bro), "mqtt://127.0.0.1:%d", broker.port);
	FILE *f = fopen(pw, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs("integration-pass\n", f);
	fclose(f);
	chmod(pw, 0600);
	const char *sync[] = {cli,
			      "--db",
			      db,
			      "sync",
			      "--server",
			      fx.emu.url,
			      "--broker",
			      bro,
			      "--realm",
			      "demo",
			      "--user",
			      "integration",
			      "--password-file",
			      pw,
			      NULL};
	CU_ASSERT_EQUAL(run_cli_to(sync, out, err), 0);
	char spec[256];
	snprintf(spec, sizeof(spec),
		 "error:code=500,method=GET,path=*/sessions/%s/data", s1);
	CU_ASSERT_FATAL(admin_fault(&fx, spec) == 0);
	const char *patch[] = {cli,	"--db", db, "data",
			       "patch", APP,	s1, "{\"cli\":\"delivered\"}",
			       NULL};
	CU_ASSERT_EQUAL(run_cli_to(patch, out, err), 0);

	/* 4, naming the failed read; the write went all the same. */
	CU_ASSERT_EQUAL(run_cli_to(sync, out, err), 4);
	CU_ASSERT(file_has(err, "sync incomplete: reads failed"));
	CU_ASSERT(file_has(err, s1));
	CU_ASSERT(!file_has(err, "not delivered"));
	const char *outbox[] = {cli, "--db", db, "outbox", "list", NULL};
	CU_ASSERT_EQUAL(run_cli_to(outbox, out, err), 0);
	CU_ASSERT(!file_has(out, "{")); /* empty: the write went */
	const char *get[] = {cli, "--db", db, "get", APP, s1, NULL};
	CU_ASSERT_EQUAL(run_cli_to(get, out, err), 0);
	CU_ASSERT(file_has(err, "is stale since"));
	CU_ASSERT(file_has(out, s1));
	const char *check[] = {cli, "--db", db, "check", NULL};
	CU_ASSERT_EQUAL(run_cli_to(check, out, err), 0);
	CU_ASSERT(file_has(err, "skysync: stale: "));
	const char *prom[] = {cli,	    "--db",  db,  "--format",
			      "prometheus", "stats", NULL};
	CU_ASSERT_EQUAL(run_cli_to(prom, out, err), 0);
	CU_ASSERT(file_has(out, "\nskysync_stale_sessions 1\n"));
	CU_ASSERT(file_has(out, "\nskysync_server_events_refused_total 0\n"));

	/* The next sync reads it: no more note. (The server's data is read
	 * only now: the fault answers this test's reads too.) */
	CU_ASSERT(admin(&fx, "DELETE", "/_admin/faults", NULL) / 100 == 2);
	json_t *srv = server_session(&fx, s1, 1);
	const char *v = json_string_value(json_object_get(srv, "cli"));
	CU_ASSERT(v && !strcmp(v, "delivered"));
	json_decref(srv);
	CU_ASSERT_EQUAL(run_cli_to(sync, out, err), 0);
	CU_ASSERT_EQUAL(run_cli_to(get, out, err), 0);
	CU_ASSERT(!file_has(err, "stale"));
	CU_ASSERT_EQUAL(run_cli_to(prom, out, err), 0);
	CU_ASSERT(file_has(out, "\nskysync_stale_sessions 0\n"));
	free(cli);
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/* The mirror's text of a session (data: its data), or NULL. */
static char *mirror_text(fixture *fx, const char *app, const char *sid,
			 int data)
{
	char *json = NULL;
	int rc = data ? sky_data_get(fx->cache, app, sid, &json, NULL)
		      : sky_session_get(fx->cache, app, sid, &json, NULL);
	return rc == 0 ? json : NULL;
}

/* A file of tests/data/values/ without its final newline. */
static char *values_file(const char *name)
{
	char rel[128];
	snprintf(rel, sizeof(rel), "tests/data/values/%s", name);
	char *path = sky_harness_src_path(rel);
	size_t len = 0;
	char *text = path ? sky_test_read_file(path, &len) : NULL;
	free(path);
	if (text && len && text[len - 1] == '\n')
		text[len - 1] = '\0';
	return text;
}

/*
 * Values the server keeps exactly reach the mirror exactly, by snapshot
 * and by live events over MQTT: U+0000 in a name, a description, a
 * property value and data, integers beyond 64 bits, the real 0.94.
 */
static void test_sync__exact_values(void)
{
	fixture fx;
	char *seed = sky_harness_src_path("tests/data/values/realm.json");
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);

	/* The snapshot: the seeded session, byte for byte. */
	char *want = values_file("s-nul.json");
	char *got = mirror_text(&fx, "app-values", "s-nul", 0);
	CU_ASSERT(want && got && strcmp(got, want) == 0);
	free(want);
	free(got);
	want = values_file("s-nul.data.json");
	got = mirror_text(&fx, "app-values", "s-nul", 1);
	CU_ASSERT(want && got && strcmp(got, want) == 0);
	free(want);
	free(got);

	/* Live: a session created and its data patched by another client. */
	sky_http_res res;
	long st = rest(&fx, "POST", "/v1/applications/app-values/sessions",
		       "{\"name\":\"N\\u00001\",\"description\":\"\\u0000\","
		       "\"properties\":{\"site\":\"P\\u00002\"}}",
		       &res);
	CU_ASSERT_EQUAL_FATAL(st, 201);
	json_t *created = sky__json_loadb(res.body, res.len, 0, NULL);
	sky_http_res_free(&res);
	CU_ASSERT_FATAL(created != NULL);
	const char *sid =
	    json_string_value(json_object_get(created, "sessionId"));
	CU_ASSERT_FATAL(sid != NULL);
	CU_ASSERT(json_string_length(json_object_get(created, "name")) == 3);
	char path[256];
	snprintf(path, sizeof(path),
		 "/v1/applications/app-values/sessions/%s/data", sid);
	st = rest(&fx, "PATCH", path,
		  "{\"big\":123456789012345678901,\"r\":0.94,\"s\":"
		  "\"a\\u0000\",\"o\":{\"n\":-100000000000000000000}}",
		  &res);
	CU_ASSERT_EQUAL(st, 200);
	sky_http_res_free(&res);
	const char *want_data = "{\"big\":123456789012345678901,\"o\":{\"n\":"
				"-100000000000000000000},\"r\":0.94,\"s\":"
				"\"a\\u0000\"}";
	int same = 0;
	for (long waited = 0; waited < CONVERGE_MS && !same; waited += 100) {
		got = mirror_text(&fx, "app-values", sid, 1);
		same = got && strcmp(got, want_data) == 0;
		free(got);
		if (!same)
			sky_sleep_ms(100);
	}
	CU_ASSERT(same);
	got = mirror_text(&fx, "app-values", sid, 0);
	json_t *mirrored = got ? sky__json_loads(got, 0, NULL) : NULL;
	CU_ASSERT_FATAL(mirrored != NULL);
	static const char *const fields[] = {"name", "description",
					     "properties"};
	for (size_t i = 0; i < 3; i++)
		CU_ASSERT(json_equal(json_object_get(mirrored, fields[i]),
				     json_object_get(created, fields[i])));
	CU_ASSERT(json_string_length(json_object_get(
		      json_object_get(mirrored, "properties"), "site")) == 3);
	json_decref(mirrored);
	free(got);
	json_decref(created);
	fx_end(&fx);
	free(seed);
}

static void test_sync__disk_full_message(void)
{
	/* A full disk at commit names itself and what was kept. */
	sky__error_lmdb(ENOSPC, "committing");
	const sky_error *err = sky_error_last();
	CU_ASSERT(strstr(err->message, "disk full") != NULL);
	CU_ASSERT(strstr(err->message, "not committed") != NULL);
	CU_ASSERT(strstr(err->message, "outbox") != NULL);
	CU_ASSERT_EQUAL(err->native, ENOSPC);
	errno = ENOSPC;
	sky__error_os("writing the journal");
	CU_ASSERT(strstr(sky_error_last()->message, "disk full") != NULL);
	sky__error_lmdb(EIO, "committing");
	CU_ASSERT(strstr(sky_error_last()->message, "disk full") == NULL);
}

/* ------------------------------------------------------------------ */
/* A field-exact mirror                                                */
/* ------------------------------------------------------------------ */

/*
 * Every session the mirror holds (open and closed) equals, field for
 * field, what the emulator answers to its GET, and its data too. Returns
 * the number of sessions that differ (printing the first few); *closed
 * counts the closed ones among them.
 */
static int mirror_vs_server_gets(fixture *fx, size_t *checked, size_t *closed)
{
	int differ = 0;
	*checked = *closed = 0;
	const char *apps[] = {"app-inspections", "app-maintenance"};
	for (int a = 0; a < 2; a++) {
		json_t *mine = mirror_sessions(fx, apps[a]);
		const char *sid;
		json_t *m;
		json_object_foreach(mine, sid, m) {
			char path[512];
			sky_http_res res;
			snprintf(path, sizeof(path),
				 "/v1/applications/%s/sessions/%s", apps[a],
				 sid);
			long st = rest(fx, "GET", path, NULL, &res);
			int same = st == 200 && json_equal(m, res.json);
			if (!same && differ < 5) {
				char *x = json_dumps(m, JSON_COMPACT |
							    JSON_SORT_KEYS);
				char *y = res.json
					      ? json_dumps(res.json,
							   JSON_COMPACT |
							       JSON_SORT_KEYS)
					      : strdup("(none)");
				fprintf(
				    stderr,
				    "  %s/%s (HTTP %ld):\n    mirror %.500s\n"
				    "    server %.500s\n",
				    apps[a], sid, st, x, y);
				free(x);
				free(y);
			}
			sky_http_res_free(&res);
			strcat(path, "/data");
			json_t *d = mirror_data(fx, apps[a], sid);
			if (same) {
				same =
				    rest(fx, "GET", path, NULL, &res) == 200 &&
				    d && json_equal(d, res.json);
				sky_http_res_free(&res);
				if (!same && differ < 5)
					fprintf(stderr,
						"  data of %s/%s differs\n",
						apps[a], sid);
			}
			json_decref(d);
			differ += !same;
			(*checked)++;
			const char *status =
			    json_string_value(json_object_get(m, "status"));
			*closed += status && !strcmp(status, "closed");
		}
		json_decref(mine);
	}
	return differ;
}

/*
 * A few hundred mixed live changes (property updates, renames,
 * description edits, closes, data patches, participant adds, custom
 * events, creates) made through the emulator's API while the engine
 * follows: every field of every session of the mirror then equals the
 * emulator's GET, modifiedAt and modifiedBy included.
 */
static void test_sync__mirror_field_exact(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	unsigned long long seed_n = 31;
	const char *env = getenv("SEED");
	if (env)
		seed_n = strtoull(env, NULL, 10);
	fprintf(stderr, "  SEED=%llu\n", seed_n);
	slist l;
	slist_load(&fx, &l, seed_n);
	for (int i = 0; i < 400; i++)
		random_change(&fx, &l);
	exact_fields = 1;
	CU_ASSERT(converge(&fx, 0));
	size_t checked = 0, closed = 0;
	CU_ASSERT_EQUAL(mirror_vs_server_gets(&fx, &checked, &closed), 0);
	exact_fields = 0;
	CU_ASSERT(checked > 200);
	CU_ASSERT(closed > 0); /* closes were among the changes, and stay */
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT_EQUAL(st.snapshots, 1); /* all of it through events */
	free(l.v);
	fx_end(&fx);
	free(seed);
}

/* ------------------------------------------------------------------ */
/* One broker identity per cache                                       */
/* ------------------------------------------------------------------ */

/* The size of the broker's log now (later connections are read after it). */
static long broker_log_size(void)
{
	struct stat sb;
	return stat(broker.log, &sb) == 0 ? (long)sb.st_size : 0;
}

/*
 * The distinct client ids starting with `prefix` that connected to the
 * broker after log offset `from`, with clean session `clean` (mosquitto
 * logs "New client connected from H:P as ID (p2, c0, k30, ...)"), as a
 * JSON object of id -> true. NULL when the log cannot be read.
 */
static json_t *broker_clients(long from, const char *prefix, int clean)
{
	FILE *f = fopen(broker.log, "r");
	if (!f)
		return NULL;
	fseek(f, from, SEEK_SET);
	json_t *ids = json_object();
	char line[1024], flag[8];
	snprintf(flag, sizeof(flag), "c%d,", clean);
	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "New client connected from ");
		char *as = p ? strstr(p, " as ") : NULL;
		if (!as || strncmp(as + 4, prefix, strlen(prefix)))
			continue;
		char *id = as + 4, *end = strchr(id, ' ');
		if (!end || !strstr(end, flag))
			continue;
		*end = '\0';
		json_object_set_new(ids, id, json_true());
	}
	fclose(f);
	return ids;
}

static int count_json(const char *json, size_t len, void *payload)
{
	(void)json;
	(void)len;
	(*(size_t *)payload)++;
	return 0;
}

/* An engine on the fixture's cache as another user of the realm. */
static int fx_engine_as(fixture *fx, const char *user, const char *password)
{
	char bro[64];
	snprintf(bro, sizeof(bro), "mqtt://127.0.0.1:%d", broker.port);
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = fx->emu.url;
	o.broker = bro;
	o.realm = "demo";
	o.user = user;
	o.password = password;
	o.follow = 1;
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 1000;
	o.on_state = on_state;
	o.on_log = on_log;
	o.payload = fx;
	if (sky_engine_new(&fx->engine, fx->cache, &o) < 0 ||
	    !(fx->base = event_base_new()) ||
	    sky_engine_attach(fx->engine, fx->base) < 0)
		return -1;
	fx->threaded = 1;
	return pthread_create(&fx->thread, NULL, loop_thread, fx) == 0 ? 0 : -1;
}

/*
 * Three restarts of a following engine use one client id, so the broker
 * holds one persistent session for the cache, not one per run; what was
 * published while the engine was down arrives through that session when it
 * comes back -- custom events too, which no snapshot reads, so they prove
 * the backlog was delivered and applied. Another user on the same cache
 * gets a new id and ends the old session (a clean-session connect with it).
 */
static void test_sync__one_identity_per_cache(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	long from = broker_log_size();
	slist l;
	slist_load(&fx, &l, 23);
	CU_ASSERT_FATAL(l.n > 0);
	char *first_id = NULL;
	for (int run = 0; run < 4; run++) {
		CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
		CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000),
				      0);
		char *id = sky__identity_stored(fx.cache);
		CU_ASSERT_PTR_NOT_NULL_FATAL(id);
		CU_ASSERT(strncmp(id, "demo-u-integration-", 19) == 0 &&
			  strlen(id) == 19 + 8);
		if (!first_id)
			first_id = strdup(id);
		CU_ASSERT_STRING_EQUAL(id, first_id);
		free(id);
		if (run > 0) {
			/* The custom event sent while we were down. */
			const sref *s = &l.v[run];
			size_t n = 0;
			for (int i = 0; i < 200 && n < 1; i++) {
				n = 0;
				sky_session_event_list(fx.cache, s->app, s->sid,
						       count_json, &n);
				if (!n)
					sky_sleep_ms(50);
			}
			CU_ASSERT_EQUAL(n, 1);
			CU_ASSERT(fx_status(&fx).events_received > 0);
		}
		CU_ASSERT(converge(&fx, 0));
		fx_stop_engine(&fx);
		if (run < 3) {
			/* Published while no engine runs. */
			const sref *s = &l.v[run + 1];
			char path[512];
			sky_http_res res;
			snprintf(path, sizeof(path),
				 "/v1/applications/%s/sessions/%s/events",
				 s->app, s->sid);
			CU_ASSERT_EQUAL(rest(&fx, "POST", path,
					     "{\"note\":\"while away\"}", &res),
					201);
			sky_http_res_free(&res);
			snprintf(path, sizeof(path),
				 "/v1/applications/%s/sessions/%s", s->app,
				 s->sid);
			CU_ASSERT_EQUAL(
			    rest(&fx, "PATCH", path,
				 "{\"properties\":{\"away\":\"yes\"}}", &res),
			    200);
			sky_http_res_free(&res);
		}
	}
	/* Four runs, one persistent session at the broker. */
	json_t *ids = broker_clients(from, "demo-u-integration-", 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(ids);
	if (json_object_size(ids) != 1) {
		char *t = json_dumps(ids, JSON_COMPACT);
		fprintf(stderr, "  persistent client ids: %s\n", t);
		free(t);
	}
	CU_ASSERT_EQUAL(json_object_size(ids), 1);
	CU_ASSERT_PTR_NOT_NULL(json_object_get(ids, first_id));
	json_decref(ids);

	/* Another user on this cache: a new identity; the old session is
	 * ended with a clean-session connect under the old id. */
	long from2 = broker_log_size();
	CU_ASSERT_EQUAL_FATAL(fx_engine_as(&fx, "alice", "alice-pass"), 0);
	CU_ASSERT_EQUAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	char *id = sky__identity_stored(fx.cache);
	CU_ASSERT_PTR_NOT_NULL_FATAL(id);
	CU_ASSERT(strncmp(id, "demo-u-alice-", 13) == 0);
	free(id);
	json_t *retired = NULL;
	for (int i = 0; i < 100; i++) {
		json_decref(retired);
		retired = broker_clients(from2, first_id, 1);
		if (retired && json_object_size(retired))
			break;
		sky_sleep_ms(100);
	}
	CU_ASSERT(retired && json_object_size(retired) == 1);
	json_decref(retired);
	fx_stop_engine(&fx);
	free(first_id);
	free(l.v);
	fx_end(&fx);
	free(seed);
}

/* ------------------------------------------------------------------ */
/* Closed sessions stay in the mirror                                  */
/* ------------------------------------------------------------------ */

/* Restart the emulator on the seed at `path` (a new port, same broker). */
static int fx_reseed(fixture *fx, const char *path)
{
	if (fx->emu_up)
		sky_emu_stop(&fx->emu);
	sky_emu_free(&fx->emu);
	fx->emu_up = 0;
	char bro[64];
	snprintf(bro, sizeof(bro), "127.0.0.1:%d", broker.port);
	const char *args[] = {"--seed", path, "--broker", bro, NULL};
	if (sky_emu_start(&fx->emu, args) < 0)
		return -1;
	fx->emu_up = 1;
	free(fx->token);
	fx->token =
	    sky_emu_login(&fx->emu, "integration", "integration-pass", NULL);
	return fx->token ? 0 : -1;
}

/* The emulator's realm (seed format), edited by `edit`, as a new seed. */
static char *export_seed(fixture *fx, const char *name,
			 void (*edit)(json_t *realm, void *arg), void *arg)
{
	sky_http_res res;
	if (sky_http(fx->emu.url, "GET", "/_admin/realm", NULL, NULL, &res) !=
		200 ||
	    !res.json) {
		sky_http_res_free(&res);
		return NULL;
	}
	json_t *realm = json_incref(res.json);
	sky_http_res_free(&res);
	edit(realm, arg);
	char *path = NULL;
	if (asprintf(&path, "%s/%s", sky_test_tmpdir(), name) < 0 ||
	    json_dump_file(realm, path, JSON_COMPACT) < 0) {
		free(path);
		path = NULL;
	}
	json_decref(realm);
	return path;
}

/* The integration user sees sessions it takes part in only. */
static void participant_only(json_t *realm, void *arg)
{
	(void)arg;
	size_t i, k;
	json_t *a, *r;
	json_array_foreach(json_object_get(realm, "applications"), i, a)
		json_array_foreach(json_object_get(a, "roles"), k, r) {
			if (strcmp(
				json_string_value(json_object_get(r, "name")),
				"integration"))
				continue;
			json_t *perms = json_object_get(r, "permissions");
			for (size_t p = json_array_size(perms); p-- > 0;)
				if (!strcmp(json_string_value(
						json_array_get(perms, p)),
					    "session:read:any"))
					json_array_remove(perms, p);
		}
}

/* Session `arg` loses its participants (the integration user among them). */
static void drop_participants(json_t *realm, void *arg)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(realm, "sessions"), i, s) {
		json_t *session = json_object_get(s, "session");
		if (!strcmp(json_string_value(
				json_object_get(session, "sessionId")),
			    arg))
			json_object_set_new(session, "participants",
					    json_array());
	}
}

static char *mirror_status(fixture *fx, const char *sid)
{
	char *text = NULL;
	if (sky_session_get(fx->cache, APP, sid, &text, NULL) < 0)
		return NULL;
	json_t *j = json_loads(text, 0, NULL);
	sky_free(text);
	const char *st = json_string_value(json_object_get(j, "status"));
	char *out = st ? strdup(st) : NULL;
	json_decref(j);
	return out;
}

static int count_row(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	(void)json;
	(void)len;
	(void)flags;
	(*(size_t *)payload)++;
	return 0;
}

static size_t closed_in_query(fixture *fx)
{
	const char *pred[] = {"status=closed"};
	sky_query *q = NULL;
	size_t n = 0;
	if (sky_query_new(&q, fx->cache, APP, pred, 1) == 0)
		sky_query_run(q, count_row, &n);
	sky_query_free(q);
	return n;
}

static long close_on_server(fixture *fx, const char *sid)
{
	char path[512];
	sky_http_res res;
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s", APP,
		 sid);
	long st = rest(fx, "PATCH", path, "{\"status\":\"closed\"}", &res);
	sky_http_res_free(&res);
	return st;
}

/*
 * A session closed on the server while no engine runs stays in the mirror
 * after the next one-shot sync, closed and equal to the server's copy
 * (get, data and queries answer it); a session the user can no longer see
 * leaves; retention by count removes the earliest closed first.
 */
static void test_sync__closed_sessions_stay(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	char *seed2 =
	    export_seed(&fx, "participant-only.json", participant_only, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(seed2);
	CU_ASSERT_EQUAL_FATAL(fx_reseed(&fx, seed2), 0);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	json_t *sids = open_sessions(&fx, 6);
	CU_ASSERT_EQUAL_FATAL(json_array_size(sids), 6);
	const char *closed = json_string_value(json_array_get(sids, 0));
	const char *hidden = json_string_value(json_array_get(sids, 1));
	sky_stats st0 = SKY_STATS_INIT;
	CU_ASSERT_EQUAL(sky_cache_stats(fx.cache, &st0), 0);

	/* Closed while no engine runs; the other one hidden from us. */
	CU_ASSERT_EQUAL(close_on_server(&fx, closed), 200);
	char *seed3 =
	    export_seed(&fx, "hidden.json", drop_participants, (void *)hidden);
	CU_ASSERT_PTR_NOT_NULL_FATAL(seed3);
	CU_ASSERT_EQUAL_FATAL(fx_reseed(&fx, seed3), 0);
	json_t *theirs = server_session(&fx, closed, 0);
	CU_ASSERT_PTR_NOT_NULL_FATAL(theirs);
	json_t *theirs_d = server_session(&fx, closed, 1);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);

	char *status = mirror_status(&fx, closed);
	CU_ASSERT_PTR_NOT_NULL(status);
	if (status)
		CU_ASSERT_STRING_EQUAL(status, "closed");
	free(status);
	char *text = NULL;
	CU_ASSERT_EQUAL(sky_session_get(fx.cache, APP, closed, &text, NULL), 0);
	json_t *mine = text ? json_loads(text, 0, NULL) : NULL;
	CU_ASSERT(json_equal(mine, theirs)); /* every field, modifiedAt too */
	json_decref(mine);
	sky_free(text);
	json_t *d = mirror_data(&fx, APP, closed);
	CU_ASSERT(d && json_equal(d, theirs_d));
	json_decref(d);
	CU_ASSERT_EQUAL(sky_session_get(fx.cache, APP, hidden, &text, NULL),
			SKY_ENOTFOUND);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 1);
	sky_stats st1 = SKY_STATS_INIT;
	CU_ASSERT_EQUAL(sky_cache_stats(fx.cache, &st1), 0);
	CU_ASSERT_EQUAL(st1.sessions, st0.sessions - 1);
	CU_ASSERT_EQUAL(st1.sessions - st1.open_sessions,
			st0.sessions - st0.open_sessions + 1);

	/* The CLI answers the closed session too. */
	char *cli = sky_test_build_path("tools/skysync");
	const char *get_argv[] = {cli, "--db", fx.dir, "get",
				  APP, closed, NULL};
	CU_ASSERT_EQUAL(run_cli(get_argv), 0);
	const char *q_argv[] = {cli, "--db",	      fx.dir, "query",
				APP, "status=closed", NULL};
	CU_ASSERT_EQUAL(run_cli(q_argv), 0);
	free(cli);

	/* Three more closed, one at a time; then at most 2 closed kept:
	 * the first two closed leave at the next snapshot (not on open). */
	for (int i = 2; i < 5; i++)
		CU_ASSERT_EQUAL(
		    close_on_server(&fx,
				    json_string_value(json_array_get(sids, i))),
		    200);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 4);
	sky_cache_close(fx.cache);
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = fx_durability;
	o.closed_keep_max = 2;
	CU_ASSERT_EQUAL_FATAL(sky_cache_open(&fx.cache, fx.dir, &o), 0);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 4);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 2);
	CU_ASSERT_EQUAL(sky_session_get(fx.cache, APP, closed, &text, NULL),
			SKY_ENOTFOUND);
	CU_ASSERT_EQUAL(
	    sky_session_get(fx.cache, APP,
			    json_string_value(json_array_get(sids, 2)), &text,
			    NULL),
	    SKY_ENOTFOUND);
	status = mirror_status(&fx, json_string_value(json_array_get(sids, 4)));
	CU_ASSERT(status && !strcmp(status, "closed"));
	free(status);
	/* A fifth closed: the next snapshot again keeps the newest two. */
	CU_ASSERT_EQUAL(
	    close_on_server(&fx, json_string_value(json_array_get(sids, 5))),
	    200);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 2);
	CU_ASSERT_EQUAL(
	    sky_session_get(fx.cache, APP,
			    json_string_value(json_array_get(sids, 3)), &text,
			    NULL),
	    SKY_ENOTFOUND);
	CU_ASSERT_EQUAL(sky_cache_check(fx.cache, NULL, NULL), 0);

	/* A version 1 options struct still opens (defaults for the rest). */
	sky_cache_close(fx.cache);
	sky_cache_options v1 = SKY_CACHE_OPTIONS_INIT;
	v1.version = 1;
	/* Version 1 has no durability field: the deprecated flag. */
	v1.flags =
	    fx_durability == SKY_DURABILITY_JOURNAL ? SKY_CACHE_JOURNAL : 0;
	CU_ASSERT_EQUAL_FATAL(sky_cache_open(&fx.cache, fx.dir, &v1), 0);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 2);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0); /* 30 days: both stay */
	CU_ASSERT_EQUAL(closed_in_query(&fx), 2);

	/* By age: kept for 1 s, and every close is older than that now. */
	sky_cache_close(fx.cache);
	sky_cache_options aged = SKY_CACHE_OPTIONS_INIT;
	aged.durability = fx_durability;
	aged.closed_keep_s = 1;
	CU_ASSERT_EQUAL_FATAL(sky_cache_open(&fx.cache, fx.dir, &aged), 0);
	sky_sleep_ms(1100);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	CU_ASSERT_EQUAL(closed_in_query(&fx), 0);
	CU_ASSERT(sky_cache_stats(fx.cache, &st1) == 0 &&
		  st1.sessions == st1.open_sessions);
	json_decref(theirs);
	json_decref(theirs_d);
	json_decref(sids);
	free(seed2);
	free(seed3);
	fx_end(&fx);
	free(seed);
}

/* ------------------------------------------------------------------ */
/* Protocol files: another layout, the same file on both sides          */
/* ------------------------------------------------------------------ */

/* Parse protocol text; 0, or the code with the message in msg. */
static int proto_try(const char *text, char *msg, size_t cap)
{
	sky_protocol *p = NULL;
	int rc = sky__protocol_parse(text, strlen(text), "t", &p);
	snprintf(msg, cap, "%s", rc < 0 ? sky_error_last()->message : "");
	sky__protocol_free(p);
	return rc;
}

static void test_sync__protocol_files_checked(void)
{
	static const struct {
		const char *text, *want; /* want: part of the message */
	} bad[] = {
	    {"[]", "must be a JSON object"},
	    {"{\"calls\":{\"sesion\":{\"path\":\"/x\"}}}",
	     "calls.sesion: unknown entry"},
	    {"{\"calls\":{\"session\":{\"path\":\"/x/{sid}\"}}}",
	     "calls.session.path: '/x/{sid}' must name {app}"},
	    {"{\"calls\":{\"data\":{\"path\":\"/a/{app}/d\"}}}",
	     "calls.data.path: '/a/{app}/d' must name {sid}"},
	    {"{\"calls\":{\"apps\":{\"path\":\"/a/{app}\"}}}",
	     "calls.apps.path: '/a/{app}': placeholder {app} is not allowed"},
	    {"{\"calls\":{\"app\":{\"path\":\"/a/x{app}\"}}}",
	     "calls.app.path: '/a/x{app}': level 'x{app}'"},
	    {"{\"calls\":{\"app\":{\"path\":\"a/{app}\"}}}",
	     "calls.app.path: 'a/{app}' must start with '/'"},
	    {"{\"calls\":{\"app\":{\"path\":\"/a//{app}\"}}}",
	     "calls.app.path: '/a//{app}' has an empty level"},
	    {"{\"calls\":{\"app\":{\"method\":\"FETCH\"}}}",
	     "calls.app.method: 'FETCH' is not one of"},
	    {"{\"calls\":{\"app\":{\"method\":1}}}",
	     "calls.app.method: must be a string"},
	    {"{\"calls\":{\"app\":{\"verb\":\"GET\"}}}",
	     "calls.app.verb: unknown entry"},
	    {"{\"calls\":{\"roles\":{\"path\":\"/v1/applications/{app}\"}}}",
	     "calls.roles.path: GET /v1/applications/{app} is also calls.app"},
	    {"{\"topics\":{\"subscribe\":\"realms/+/#\"}}",
	     "topics.subscribe: 'realms/+/#' must name {realm}"},
	    {"{\"topics\":{\"subscribe\":\"r/{realm}/#/x\"}}",
	     "'#' must be the last level"},
	    {"{\"topics\":{\"publish\":\"r/{realm}/{app}\"}}",
	     "topics.publish: 'r/{realm}/{app}' must name {realm}, {app} and "
	     "{sid}"},
	    {"{\"topics\":{\"publish\":\"other/{realm}/{app}/{sid}\"}}",
	     "topics.subscribe: 'realms/{realm}/applications/+/sessions/#' "
	     "does not match topics.publish"},
	    {"{\"eventTypes\":{\"session_closed\":\"session_updated\"}}",
	     "eventTypes.session_closed: 'session_updated' is also "
	     "eventTypes.session_updated"},
	    {"{\"eventTypes\":{\"session_closed\":\"a/b\"}}",
	     "eventTypes.session_closed: 'a/b' must be"},
	    {"{\"eventTypes\":{\"session_gone\":\"x\"}}",
	     "eventTypes.session_gone: unknown entry"},
	    {"{\"version\":2}", "version: must be 1"},
	    {"{\"calls\":{},\"calls\":{}}", "duplicate"},
	};
	char msg[512];
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = proto_try(bad[i].text, msg, sizeof(msg));
		CU_ASSERT_EQUAL(rc, SKY_EINVAL);
		if (!strstr(msg, bad[i].want))
			fprintf(stderr, "  %s: got '%s', want '%s'\n",
				bad[i].text, msg, bad[i].want);
		CU_ASSERT(strstr(msg, bad[i].want) != NULL);
	}
	/* The built-in table as a file reads back as itself, and a partial
	 * file keeps the built-in entries it leaves out. */
	char *dump = sky__protocol_dump(sky__protocol_builtin());
	CU_ASSERT_FATAL(dump != NULL);
	sky_protocol *p = NULL;
	CU_ASSERT_EQUAL_FATAL(sky__protocol_parse(dump, strlen(dump), "t", &p),
			      0);
	char *again = sky__protocol_dump(p);
	CU_ASSERT(again && !strcmp(dump, again));
	free(again);
	free(dump);
	sky__protocol_free(p);
	const char *part = "{\"calls\":{\"data\":{\"method\":\"GET\",\"path\":"
			   "\"/d/{app}/{sid}\"}}}";
	CU_ASSERT_EQUAL_FATAL(sky__protocol_parse(part, strlen(part), "t", &p),
			      0);
	CU_ASSERT_STRING_EQUAL(p->path[SKY_API_DATA], "/d/{app}/{sid}");
	CU_ASSERT_STRING_EQUAL(
	    p->path[SKY_API_DATA_PATCH],
	    sky__protocol_builtin()->path[SKY_API_DATA_PATCH]);
	char *url = NULL;
	CU_ASSERT_EQUAL(
	    sky__api_url_p(p, "http://h/", SKY_API_DATA, "r", "a/b", "s", &url),
	    0);
	CU_ASSERT_STRING_EQUAL(url, "http://h/d/a%2Fb/s");
	free(url);
	sky__protocol_free(p);
	/* Topics: ids read back from the publish template; another realm's
	 * topic is not ours. */
	const sky_protocol *b = sky__protocol_builtin();
	char buf[128];
	const char *app, *sid, *type;
	CU_ASSERT_EQUAL(sky__protocol_topic_read(
			    b, "realms/demo/applications/A/sessions/S/T",
			    "demo", buf, sizeof(buf), &app, &sid, &type),
			1);
	CU_ASSERT(!strcmp(app, "A") && !strcmp(sid, "S") && !strcmp(type, "T"));
	CU_ASSERT_EQUAL(sky__protocol_topic_read(
			    b, "realms/other/applications/A/sessions/S/T",
			    "demo", buf, sizeof(buf), &app, &sid, &type),
			0);
	CU_ASSERT_EQUAL(sky__protocol_topic_read(b, "realms/demo/x", "demo",
						 buf, sizeof(buf), &app, &sid,
						 &type),
			1);
	CU_ASSERT_STRING_EQUAL(app, "");
	/* Ids may stand before {realm}; the levels before it still say
	 * whose topic it is. */
	const char *mid = "{\"topics\":{\"subscribe\":\"x/+/{realm}/#\","
			  "\"publish\":\"x/{app}/{realm}/{sid}\"}}";
	CU_ASSERT_EQUAL_FATAL(sky__protocol_parse(mid, strlen(mid), "t", &p),
			      0);
	CU_ASSERT_EQUAL(sky__protocol_topic_read(p, "x/A/demo/S", "demo", buf,
						 sizeof(buf), &app, &sid,
						 &type),
			1);
	CU_ASSERT(!strcmp(app, "A") && !strcmp(sid, "S") && !*type);
	CU_ASSERT_EQUAL(sky__protocol_topic_read(p, "y/A/demo/S", "demo", buf,
						 sizeof(buf), &app, &sid,
						 &type),
			0);
	CU_ASSERT_EQUAL(sky__protocol_topic_read(p, "x/A/other/S", "demo", buf,
						 sizeof(buf), &app, &sid,
						 &type),
			0);
	sky__protocol_free(p);
	/* An engine is refused a bad file, naming the file and the entry. */
	const char *dir = sky_test_tmpdir();
	char file[512];
	snprintf(file, sizeof(file), "%s/bad.json", dir);
	FILE *f = fopen(file, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs("{\"eventTypes\":{\"session_created\":\"session_closed\"}}", f);
	fclose(f);
	sky_cache *c = NULL;
	sky_cache_options co = SKY_CACHE_OPTIONS_INIT;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &co) == 0);
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = "http://127.0.0.1:9";
	o.broker = "mqtt://127.0.0.1:9";
	o.realm = "demo";
	o.user = "u";
	o.password = "p";
	o.protocol_file = file;
	sky_engine *e = NULL;
	CU_ASSERT_EQUAL(sky_engine_new(&e, c, &o), SKY_EINVAL);
	if (!strstr(sky_error_last()->message, file))
		fprintf(stderr, "  %s\n", sky_error_last()->message);
	CU_ASSERT(strstr(sky_error_last()->message, file) != NULL);
	CU_ASSERT(strstr(sky_error_last()->message,
			 "eventTypes.session_closed") != NULL);
	/* A version 2 caller's struct has no protocol_file: never read. */
	o.version = 2;
	CU_ASSERT_EQUAL(sky_engine_new(&e, c, &o), 0);
	sky_engine_free(e);
	sky_cache_close(c);
}

/* Log in to the emulator serving protocol-alt.json. */
static char *alt_login(fixture *fx)
{
	sky_http_res res;
	char *tok = NULL;
	if (sky_http(fx->emu.url, "POST", "/api/v2/auth/demo/login",
		     "{\"username\":\"integration\",\"password\":"
		     "\"integration-pass\"}",
		     NULL, &res) == 200) {
		const char *a = json_string_value(
		    json_object_get(res.json, "access_token"));
		tok = a ? strdup(a) : NULL;
	}
	sky_http_res_free(&res);
	return tok;
}

static long alt_rest(fixture *fx, const char *method, const char *path,
		     const char *body)
{
	sky_http_res res;
	long st = sky_http(fx->emu.url, method, path, body, fx->token, &res);
	sky_http_res_free(&res);
	return st;
}

static int collect_all_sid(const char *json, size_t len, void *payload)
{
	json_t *s = json_loadb(json, len, 0, NULL);
	json_array_append(payload, json_object_get(s, "sessionId"));
	json_decref(s);
	return 0;
}

static json_t *event_types_seen;
static int collect_event(const char *json, size_t len, void *payload)
{
	(void)payload;
	json_t *ev = json_loadb(json, len, 0, NULL);
	json_array_append(event_types_seen, json_object_get(ev, "eventType"));
	json_decref(ev);
	return 0;
}

static void test_sync__protocol_file_layout(void)
{
	fixture fx;
	char *seed = realm_seed();
	char *proto = sky_harness_src_path("tests/data/protocol-alt.json");
	const char *extra[] = {"--protocol", proto, NULL};
	memset(&fx, 0, sizeof(fx));
	ensure_broker();
	char bro[64];
	snprintf(bro, sizeof(bro), "127.0.0.1:%d", broker.port);
	const char *args[] = {"--seed", seed,	  "--broker", bro,
			      extra[0], extra[1], NULL};
	CU_ASSERT_FATAL(sky_emu_start(&fx.emu, args) == 0);
	fx.emu_up = 1;
	/* The built-in paths are not served there. */
	CU_ASSERT(sky_emu_login(&fx.emu, "integration", "integration-pass",
				NULL) == NULL);
	fx.token = alt_login(&fx);
	CU_ASSERT_FATAL(fx.token != NULL);
	fx.dir = sky_test_tmpdir();
	sky_cache_options co = SKY_CACHE_OPTIONS_INIT;
	CU_ASSERT_FATAL(sky_cache_open(&fx.cache, fx.dir, &co) == 0);

	/* Without the file the engine fails, and says what it asked for. */
	CU_ASSERT_EQUAL(fx_sync_once(&fx), SKY_ENETWORK);
	const char *m = sky_error_last()->message;
	CU_ASSERT(strstr(m, "404") != NULL);
	if (!strstr(m, "404"))
		fprintf(stderr, "  without the file: %s\n", m);
	json_t *none = json_array();
	sky_session_list(fx.cache, APP, collect_all_sid, none);
	CU_ASSERT_EQUAL(json_array_size(none), 0);
	json_decref(none);

	/* With it: the snapshot equals the server. */
	fx.protocol_file = proto;
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	CU_ASSERT(converge(&fx, 0));

	/* Live: events on the other topics, with the other eventTypes. */
	sky_sub *rec = sky_sub_start(broker.port, NULL, "sky/demo/events/#");
	CU_ASSERT_FATAL(rec != NULL);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	json_t *ids = open_sessions(&fx, 3);
	CU_ASSERT_FATAL(json_array_size(ids) == 3);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	const char *s2 = json_string_value(json_array_get(ids, 1));
	const char *s3 = json_string_value(json_array_get(ids, 2));
	char path[512];
	atomic_store(&fx.changes, 0);
	snprintf(path, sizeof(path), "/api/v2/apps/%s/s/%s", APP, s1);
	CU_ASSERT_EQUAL(alt_rest(&fx, "PUT", path, "{\"name\":\"Elsewhere\"}"),
			200);
	CU_ASSERT_EQUAL(alt_rest(&fx, "PATCH", path, "{\"name\":\"x\"}"), 405);
	snprintf(path, sizeof(path), "/api/v2/apps/%s/s/%s/state", APP, s1);
	CU_ASSERT_EQUAL(alt_rest(&fx, "PATCH", path, "{\"other\":{\"n\":1}}"),
			200);
	CU_ASSERT(converge(&fx, 0));
	CU_ASSERT(atomic_load(&fx.changes) > 0);
	CU_ASSERT(sky_sub_wait(rec, 2, 10000) == 0);
	char *topic = NULL, *payload = NULL;
	CU_ASSERT(sky_sub_get(rec, 0, &topic, &payload) == 0);
	CU_ASSERT(topic && !strncmp(topic, "sky/demo/events/Session", 23));
	CU_ASSERT(payload && strstr(payload, "\"eventType\":\"Session"));
	free(topic);
	free(payload);

	/* Every write kind, through the outbox, on the other paths. */
	char *local = NULL;
	const char *cr = "{\"name\":\"Made elsewhere\"}";
	CU_ASSERT(sky_session_create(fx.cache, APP, cr, strlen(cr), &local) ==
		  0);
	const char *pt = "{\"description\":\"patched\"}";
	CU_ASSERT(sky_session_patch(fx.cache, APP, s1, pt, strlen(pt)) == 0);
	const char *props = "{\"site\":\"Plant-7\"}";
	CU_ASSERT(sky_session_set_properties(fx.cache, APP, s2, props,
					     strlen(props)) == 0);
	const char *dp = "{\"alt\":true}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, s2, dp, strlen(dp)) == 0);
	CU_ASSERT(sky_participant_add(fx.cache, APP, s2, "u-alice", 0) == 0);
	const char *ev = "{\"kind\":\"alt-ping\"}";
	CU_ASSERT(sky_session_event_send(fx.cache, APP, s2, ev, strlen(ev)) ==
		  0);
	CU_ASSERT(sky_session_close(fx.cache, APP, s3) == 0);
	uint64_t rejected = 1;
	long waited;
	for (waited = 0; waited < CONVERGE_MS && outbox_left(&fx, &rejected);
	     waited += 100)
		sky_sleep_ms(100);
	CU_ASSERT_EQUAL(outbox_left(&fx, &rejected), 0);
	CU_ASSERT_EQUAL(rejected, 0);
	CU_ASSERT(converge(&fx, 0));
	/* The created session has its server id; the other one is closed. */
	char *text = NULL;
	CU_ASSERT(sky_session_get(fx.cache, APP, local, &text, NULL) == 0);
	CU_ASSERT(text && !strstr(text, "\"sessionId\":\"local-"));
	sky_free(text);
	text = NULL;
	if (sky_session_get(fx.cache, APP, s3, &text, NULL) == 0)
		CU_ASSERT(strstr(text, "\"status\":\"closed\"") != NULL);
	sky_free(text);
	json_t *srv = server_view(&fx, 0);
	CU_ASSERT(
	    srv &&
	    !json_object_get(
		json_object_get(json_object_get(srv, APP), "sessions"), s3));
	json_decref(srv);
	/* The custom event came back as SessionEventCreated and was kept. */
	event_types_seen = json_array();
	for (waited = 0; waited < CONVERGE_MS; waited += 100) {
		json_array_clear(event_types_seen);
		sky_session_event_list(fx.cache, APP, s2, collect_event, NULL);
		if (json_array_size(event_types_seen))
			break;
		sky_sleep_ms(100);
	}
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_array_get(event_types_seen, 0)),
	    "SessionEventCreated");
	json_decref(event_types_seen);
	sky_sync_status st = fx_status(&fx);
	/* None refused: every eventType was read with the file's names (how
	 * many were applied rather than skipped as already known depends on
	 * when the write answers came back). */
	CU_ASSERT_EQUAL(st.events_rejected, 0);
	CU_ASSERT_EQUAL(st.server_events_refused, 0);
	CU_ASSERT(st.events_received >= 2);
	sky_sub_stop(rec);
	sky_free(local);
	json_decref(ids);
	fx_end(&fx);
	free(proto);
	free(seed);
}

/* ------------------------------------------------------------------ */
/* Resuming: a sync in proportion to what changed                      */
/* ------------------------------------------------------------------ */

/* A one-shot sync; its status (path, why, requests) in *st. */
static int fx_sync_once_status(fixture *fx, sky_sync_status *st)
{
	if (fx_engine(fx, 0) < 0)
		return -1;
	int rc = sky_engine_sync_once(fx->engine);
	sky_engine_status(fx->engine, st);
	sky_engine_free(fx->engine);
	fx->engine = NULL;
	return rc;
}

/* `n` random changes on the server (fixed seed, SEED= to replay). */
static void offline_changes(fixture *fx, unsigned long long seed_n, int n)
{
	const char *env = getenv("SEED");
	if (env)
		seed_n = strtoull(env, NULL, 10);
	fprintf(stderr, "  SEED=%llu\n", seed_n);
	slist l;
	slist_load(fx, &l, seed_n);
	int ok = 0;
	for (int i = 0; i < n; i++)
		ok += random_change(fx, &l) / 100 == 2;
	CU_ASSERT(ok > n / 2);
	free(l.v);
}

/*
 * A first sync with --follow leaves a persistent broker session; with the
 * engine down, 28 changes on the server (renames, properties, data
 * patches, closes, creates...) queue there. The next one-shot sync takes
 * the resumed path: the backlog applied, the lists read, and only what
 * differs read, in at most 60 GETs (a full sync of the example realm
 * makes 255); afterwards every field of every session of the mirror and
 * its data equal the server's GETs.
 */
static void test_sync__resume_after_offline_changes(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	sky_sync_status st = fx_status(&fx);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_FULL);
	CU_ASSERT_EQUAL(st.last_sync_why, SKY_SYNC_WHY_NEVER_SYNCED);
	fx_stop_engine(&fx);

	offline_changes(&fx, 28, 28);
	json_int_t req0 = emu_stat(&fx, "api_requests");
	json_int_t log0 = emu_stat(&fx, "logins");
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	json_int_t req1 = emu_stat(&fx, "api_requests");
	json_int_t log1 = emu_stat(&fx, "logins");
	json_int_t gets = (req1 - req0) - (log1 - log0);
	fprintf(stderr,
		"  resumed: %lld requests (%lld GETs), %llu backlog "
		"events\n",
		(long long)(req1 - req0), (long long)gets,
		(unsigned long long)st.backlog_events);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_RESUMED);
	CU_ASSERT_EQUAL(st.last_sync_why, SKY_SYNC_WHY_NONE);
	CU_ASSERT(st.backlog_events >= 20); /* the changes' events came */
	CU_ASSERT(gets > 0 && gets <= 60);
	/* The engine counts what the server saw. */
	CU_ASSERT_EQUAL((json_int_t)st.last_sync_requests, req1 - req0);

	size_t checked = 0, closed = 0;
	CU_ASSERT_EQUAL(mirror_vs_server_gets(&fx, &checked, &closed), 0);
	CU_ASSERT(checked > 200);

	/* skysync stats reads the same from the cache. */
	sky_stats cs = SKY_STATS_INIT;
	CU_ASSERT_EQUAL(sky_cache_stats(fx.cache, &cs), 0);
	CU_ASSERT_EQUAL(cs.sync_path, SKY_SYNC_PATH_RESUMED);
	CU_ASSERT_EQUAL(cs.sync_requests, st.last_sync_requests);
	fx_end(&fx);
	free(seed);
}

/*
 * The full path when resuming cannot be trusted: a cache never synced; a
 * new broker client id (the broker has no session for it: a one-shot
 * sync after a one-shot sync that never connected); the broker restarted
 * without persistence (session lost); a backlog at the limit (the
 * broker's queue may have overflowed). Each time the mirror equals the
 * server afterwards.
 */
static void test_sync__resume_falls_back_to_full(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	sky_sync_status st = SKY_SYNC_STATUS_INIT;
	size_t checked = 0, closed = 0;

	/* Never synced: full, without asking the broker. */
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_FULL);
	CU_ASSERT_EQUAL(st.last_sync_why, SKY_SYNC_WHY_NEVER_SYNCED);
	CU_ASSERT_EQUAL(st.broker_connects, 0);

	/* Synced, but the broker has never seen our client id. */
	offline_changes(&fx, 5, 5);
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_FULL);
	CU_ASSERT_EQUAL(st.last_sync_why, SKY_SYNC_WHY_SESSION_LOST);
	CU_ASSERT_EQUAL(mirror_vs_server_gets(&fx, &checked, &closed), 0);

	/* The broker restarts without persistence: our session is gone. */
	CU_ASSERT_EQUAL_FATAL(sky_broker_restart(&broker), 0);
	offline_changes(&fx, 6, 6);
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_FULL);
	CU_ASSERT_EQUAL(st.last_sync_why, SKY_SYNC_WHY_SESSION_LOST);
	CU_ASSERT_EQUAL(mirror_vs_server_gets(&fx, &checked, &closed), 0);

	/* The session is kept now; a backlog at the limit reads it all. */
	fx.backlog_limit = 3;
	offline_changes(&fx, 7, 12);
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	CU_ASSERT(st.backlog_events >= 3);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_FULL);
	CU_ASSERT_EQUAL(st.last_sync_why, SKY_SYNC_WHY_OVERFLOW);
	CU_ASSERT_EQUAL(mirror_vs_server_gets(&fx, &checked, &closed), 0);

	/* Under the limit, the same session resumes. */
	fx.backlog_limit = 0;
	offline_changes(&fx, 8, 4);
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	CU_ASSERT_EQUAL(st.last_sync_path, SKY_SYNC_PATH_RESUMED);
	CU_ASSERT_EQUAL(mirror_vs_server_gets(&fx, &checked, &closed), 0);
	fx_end(&fx);
	free(seed);
}

/* ---- what on_change carries ---- */

/* Live events hand their payload to on_change: the data patch, the
 * custom event's data, the session fields an update sends. */
static void test_sync__change_payloads(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_follow(&fx), 0);
	CU_ASSERT_EQUAL_FATAL(wait_state(&fx, SKY_ENGINE_LIVE, 30000), 0);
	json_t *ids = open_sessions(&fx, 1);
	CU_ASSERT_FATAL(json_array_size(ids) == 1);
	const char *s1 = json_string_value(json_array_get(ids, 0));
	rec_start();
	char path[512];
	sky_http_res res;
	const char *patch = "{\"probe\":{\"n\":7,\"gone\":null}}";
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s/data",
		 APP, s1);
	CU_ASSERT_EQUAL(rest(&fx, "PATCH", path, patch, &res), 200);
	sky_http_res_free(&res);
	const char *custom = "{\"kind\":\"probe\",\"n\":3}";
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s/events",
		 APP, s1);
	long st = rest(&fx, "POST", path, custom, &res);
	CU_ASSERT(st == 200 || st == 201);
	sky_http_res_free(&res);
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s", APP,
		 s1);
	CU_ASSERT_EQUAL(
	    rest(&fx, "PATCH", path, "{\"name\":\"Payload probe\"}", &res),
	    200);
	sky_http_res_free(&res);

	json_t *want = json_loads(patch, 0, NULL);
	json_t *c = rec_wait(SKY_CHANGE_DATA, s1, 10000);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(json_equal(json_object_get(c, "payload"), want));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "type")),
			       "session_data_updated");
	json_decref(want);
	json_decref(c);

	want = json_loads(custom, 0, NULL);
	c = rec_wait(SKY_CHANGE_EVENT, s1, 10000);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(json_equal(json_object_get(c, "payload"), want));
	json_decref(want);
	json_decref(c);

	c = rec_wait(SKY_CHANGE_SESSION, s1, 10000);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(
				   json_object_get(c, "payload"), "name")),
			       "Payload probe");
	json_decref(c);
	/* Live events are told one by one: no snapshot summary here. */
	json_t *sums = rec_find(SKY_CHANGE_SNAPSHOT, NULL);
	CU_ASSERT_EQUAL(json_array_size(sums), 0);
	json_decref(sums);
	rec_stop();
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/* Sessions in the mirror, open or closed. */
static size_t mirror_count(fixture *fx)
{
	json_t *all = json_array();
	sky_session_list(fx->cache, APP, collect_all_sid, all);
	size_t n = json_array_size(all);
	json_decref(all);
	return n;
}

/* A snapshot gives one summary with its counts, not one call per
 * session; snapshot_changes = 1 gives those calls and no summary. */
static void test_sync__snapshot_summary(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	/* Never synced: no user to see as. */
	sky_query *q = NULL;
	CU_ASSERT_FATAL(sky_query_new(&q, fx.cache, APP, NULL, 0) == 0);
	CU_ASSERT_EQUAL(sky_query_set_viewer_self(q), SKY_ENOTFOUND);
	CU_ASSERT(strstr(sky_error_last()->message, "never synced") != NULL);
	rec_start();
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	size_t n_app = mirror_count(&fx);
	size_t hits = 0;
	CU_ASSERT_EQUAL(sky_query_set_viewer_self(q), 0);
	CU_ASSERT_EQUAL(sky_query_run(q, count_row, &hits), 0);
	CU_ASSERT_EQUAL(hits, n_app); /* integration may read any */
	sky_query_free(q);
	sky_stats stats = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(fx.cache, &stats) == 0);
	CU_ASSERT_FATAL(n_app > 3);
	json_t *sums = rec_find(SKY_CHANGE_SNAPSHOT, NULL);
	CU_ASSERT_EQUAL(json_array_size(sums), 1);
	json_t *sum = json_array_get(sums, 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sum, "added")),
			(json_int_t)stats.sessions);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sum, "changed")), 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sum, "removed")), 0);
	CU_ASSERT(json_object_get(sum, "app") == NULL);
	json_decref(sums);
	json_t *each = rec_find(SKY_CHANGE_ADDED, NULL);
	CU_ASSERT_EQUAL(json_array_size(each), 0);
	json_decref(each);

	/* Two renamed, one created on the server; one the mirror holds
	 * open that the server never had. */
	json_t *ids = open_sessions(&fx, 2);
	CU_ASSERT_FATAL(json_array_size(ids) == 2);
	char path[512];
	sky_http_res res;
	for (size_t i = 0; i < 2; i++) {
		snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s",
			 APP, json_string_value(json_array_get(ids, i)));
		CU_ASSERT_EQUAL(rest(&fx, "PATCH", path,
				     "{\"name\":\"Renamed for the summary\"}",
				     &res),
				200);
		sky_http_res_free(&res);
	}
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions", APP);
	CU_ASSERT_EQUAL(
	    rest(&fx, "POST", path, "{\"name\":\"New for the summary\"}", &res),
	    201);
	sky_http_res_free(&res);
	const char *phantom =
	    "{\"applicationId\":\"" APP "\",\"sessionId\":\"s-phantom\","
	    "\"status\":\"open\",\"name\":\"Never on the server\","
	    "\"createdBy\":\"u-integration\","
	    "\"createdAt\":\"2024-03-01T07:00:00.000000Z\"}";
	CU_ASSERT_EQUAL(sky_mirror_session_put(fx.cache, phantom,
					       strlen(phantom), "{}", 2,
					       1709276400000000LL),
			0);
	rec_start();
	sky_sync_status st = SKY_SYNC_STATUS_INIT;
	CU_ASSERT_EQUAL(fx_sync_once_status(&fx, &st), 0);
	sums = rec_find(SKY_CHANGE_SNAPSHOT, NULL);
	CU_ASSERT_EQUAL(json_array_size(sums), 1);
	sum = json_array_get(sums, 0);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sum, "added")), 1);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sum, "changed")), 2);
	CU_ASSERT_EQUAL(json_integer_value(json_object_get(sum, "removed")), 1);
	if (json_array_size(sums) != 1 ||
	    json_integer_value(json_object_get(sum, "changed")) != 2) {
		char *t = json_dumps(recorded, JSON_COMPACT);
		fprintf(stderr, "  recorded: %s (path %d)\n", t,
			st.last_sync_path);
		free(t);
	}
	json_decref(sums);
	/* The new one in, the phantom out. */
	CU_ASSERT_EQUAL(mirror_count(&fx), n_app + 1);

	/* Asked for, one call per session and no summary. */
	snprintf(path, sizeof(path), "/v1/applications/%s/sessions/%s", APP,
		 json_string_value(json_array_get(ids, 0)));
	CU_ASSERT_EQUAL(
	    rest(&fx, "PATCH", path, "{\"name\":\"Renamed again\"}", &res),
	    200);
	sky_http_res_free(&res);
	rec_start();
	fx.snapshot_changes = 1;
	CU_ASSERT_EQUAL(fx_sync_once(&fx), 0);
	sums = rec_find(SKY_CHANGE_SNAPSHOT, NULL);
	CU_ASSERT_EQUAL(json_array_size(sums), 0);
	json_decref(sums);
	each = rec_find(SKY_CHANGE_SESSION,
			json_string_value(json_array_get(ids, 0)));
	CU_ASSERT_EQUAL(json_array_size(each), 1);
	json_decref(each);
	rec_stop();
	json_decref(ids);
	fx_end(&fx);
	free(seed);
}

/* A session created offline: on delivery, one ADDRESSED call with its
 * local id and the id the server gave it. */
static void test_sync__create_addressed(void)
{
	fixture fx;
	char *seed = realm_seed();
	CU_ASSERT_EQUAL_FATAL(fx_start(&fx, seed, NULL), 0);
	CU_ASSERT_EQUAL_FATAL(fx_sync_once(&fx), 0);
	char *local = NULL;
	const char *cr = "{\"name\":\"Addressed one\"}";
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, cr, strlen(cr), &local) == 0);
	rec_start();
	/* The engine says whom it syncs as once it logged in. */
	CU_ASSERT_FATAL(fx_engine(&fx, 0) == 0);
	CU_ASSERT(sky_engine_user_id(fx.engine) == NULL);
	CU_ASSERT_EQUAL(sky_engine_sync_once(fx.engine), 0);
	const char *uid = sky_engine_user_id(fx.engine);
	CU_ASSERT(uid && !strcmp(uid, "u-integration"));
	sky_engine_free(fx.engine);
	fx.engine = NULL;
	/* And the cache remembers it, with its groups (none here). */
	char *user = NULL;
	CU_ASSERT_EQUAL(sky_sync_user_get(fx.cache, &user, NULL), 0);
	json_t *u = user ? json_loads(user, 0, NULL) : NULL;
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(u, "userId")),
			       "u-integration");
	CU_ASSERT(json_is_array(json_object_get(u, "groups")) &&
		  json_array_size(json_object_get(u, "groups")) == 0);
	json_decref(u);
	sky_free(user);
	json_t *all = rec_find(SKY_CHANGE_ADDRESSED, NULL);
	CU_ASSERT_EQUAL(json_array_size(all), 1);
	json_t *c = json_array_get(all, 0);
	const char *lid = json_string_value(json_object_get(c, "local"));
	const char *sid = json_string_value(json_object_get(c, "server"));
	CU_ASSERT(lid && !strcmp(lid, local));
	CU_ASSERT(sid && strncmp(sid, "local-", 6) != 0);
	CU_ASSERT(sid && json_string_value(json_object_get(c, "sid")) &&
		  !strcmp(json_string_value(json_object_get(c, "sid")), sid));
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(c, "app")),
			       APP);
	/* The server id is the session the cache now holds for the local
	 * id, and the server knows it. */
	char *json = NULL;
	CU_ASSERT_EQUAL(sky_session_get(fx.cache, APP, local, &json, NULL), 0);
	json_t *s = json ? json_loads(json, 0, NULL) : NULL;
	CU_ASSERT(
	    sid && s &&
	    !strcmp(json_string_value(json_object_get(s, "sessionId")), sid));
	json_decref(s);
	sky_free(json);
	json_t *srv = sid ? server_session(&fx, sid, 0) : NULL;
	CU_ASSERT(srv != NULL);
	json_decref(srv);
	json_decref(all);
	rec_stop();
	sky_free(local);
	fx_end(&fx);
	free(seed);
}

int main(void)
{
	verbose = getenv("SKY_TEST_VERBOSE") != NULL;
	evthread_use_pthreads();
	static const sky_test_case cases[] = {
	    {"test_sync__api_urls_and_tokens", test_sync__api_urls_and_tokens},
	    {"test_sync__classify_and_backoff",
	     test_sync__classify_and_backoff},
	    {"test_sync__options_checked", test_sync__options_checked},
	    {"test_sync__protocol_files_checked",
	     test_sync__protocol_files_checked},
	    {"test_sync__protocol_file_layout",
	     test_sync__protocol_file_layout},
	    {"test_sync__snapshot_equals_server",
	     test_sync__snapshot_equals_server},
	    {"test_sync__live_changes", test_sync__live_changes},
	    {"test_sync__events_during_snapshot",
	     test_sync__events_during_snapshot},
	    {"test_sync__event_faults", test_sync__event_faults},
	    {"test_sync__broker_drop_and_reconnect",
	     test_sync__broker_drop_and_reconnect},
	    {"test_sync__emulator_restart", test_sync__emulator_restart},
	    {"test_sync__token_expiry_mid_snapshot",
	     test_sync__token_expiry_mid_snapshot},
	    {"test_sync__soak", test_sync__soak},
	    {"test_sync__cli", test_sync__cli},
	    {"test_sync__outbox_offline_then_online",
	     test_sync__outbox_offline_then_online},
	    {"test_sync__create_version_on_wire",
	     test_sync__create_version_on_wire},
	    {"test_sync__outbox_rejections", test_sync__outbox_rejections},
	    {"test_sync__outbox_lost_create_answer",
	     test_sync__outbox_lost_create_answer},
	    {"test_sync__outbox_flaky_network",
	     test_sync__outbox_flaky_network},
	    {"test_sync__read_failure_still_delivers",
	     test_sync__read_failure_still_delivers},
	    {"test_sync__backoff_delivers_then_recovers",
	     test_sync__backoff_delivers_then_recovers},
	    {"test_sync__relogin_after_refresh",
	     test_sync__relogin_after_refresh},
	    {"test_sync__refused_event_reread",
	     test_sync__refused_event_reread},
	    {"test_sync__refused_event_reread_refused",
	     test_sync__refused_event_reread_refused},
	    {"test_sync__reconcile_repairs_dropped_event",
	     test_sync__reconcile_repairs_dropped_event},
	    {"test_sync__broker_tls_error", test_sync__broker_tls_error},
	    {"test_sync__disk_full_message", test_sync__disk_full_message},
	    {"test_sync__cli_stale", test_sync__cli_stale},
	    {"test_sync__outbox_flaky_network_journal",
	     test_sync__outbox_flaky_network_journal},
	    {"test_sync__exact_values", test_sync__exact_values},
	    {"test_sync__mirror_field_exact", test_sync__mirror_field_exact},
	    {"test_sync__one_identity_per_cache",
	     test_sync__one_identity_per_cache},
	    {"test_sync__closed_sessions_stay",
	     test_sync__closed_sessions_stay},
	    {"test_sync__resume_after_offline_changes",
	     test_sync__resume_after_offline_changes},
	    {"test_sync__resume_falls_back_to_full",
	     test_sync__resume_falls_back_to_full},
	    {"test_sync__change_payloads", test_sync__change_payloads},
	    {"test_sync__snapshot_summary", test_sync__snapshot_summary},
	    {"test_sync__create_addressed", test_sync__create_addressed},
	    {NULL, NULL},
	};
	int rc = sky_test_main("sync", cases);
	if (broker_started)
		sky_broker_stop(&broker);
	return rc;
}
