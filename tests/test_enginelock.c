/*
 * test_enginelock.c - one sync engine per cache, `skysync sync --wait`,
 * and the outbox's edges, against a real skylight-emu and mosquitto
 * (tests/harness.c) and the real skysync command.
 *
 * What it proves:
 * - A second engine on a cache, in this process or another, gets
 *   SKY_EBUSY naming the holder's pid; the lock is free again when the
 *   holder is freed or killed with SIGKILL.
 * - Two `skysync sync` started together on one cache, with a server that
 *   answers writes after 300 ms, never make a queued create twice (the
 *   emulator's session count after each round). SKY_LOCK_RUNS=N sets the
 *   rounds (default 5; tests/soak/lock runs 50).
 * - `sync --wait` beside a running `sync --follow` returns 0 once the
 *   writes queued before it are on the server; --timeout bounds it; the
 *   follower stopped by SIGTERM exits 0 with writes still queued.
 * - `outbox drop` of a write whose request is on the wire is refused (exit
 *   3), and the write lands; a custom event answered 5xx is in doubt and
 *   not sent again, one answered 429 is; dropping a create calls the
 *   rejected callback for the dropped write and each write it takes.
 *
 * No assertion depends on timing: waits poll with generous bounds.
 */
#include "config.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "harness.h"
#include "skysync.h"
#include "testutil.h"

#define APP "app-inspections"
#define WAIT_MS 60000

static sky_broker broker;
static int broker_started;

typedef struct {
	sky_emu emu;
	const char *dir; /* scratch: db/, pw, logs */
	char db[1024], pw[1024], bro[64];
	char *cli;
	sky_cache *cache; /* this process's handle on db/ (writes, reads) */
} fixture;

static int fx_start(fixture *fx, const char *const *faults)
{
	memset(fx, 0, sizeof(*fx));
	if (!broker_started) {
		if (sky_broker_start(&broker) < 0) {
			fprintf(stderr, "test_enginelock: no mosquitto\n");
			exit(99);
		}
		broker_started = 1;
	}
	char *seed = sky_harness_src_path("tools/examples/realm.json");
	char bro[64];
	snprintf(bro, sizeof(bro), "127.0.0.1:%d", broker.port);
	const char *args[16];
	int n = 0;
	args[n++] = "--seed";
	args[n++] = seed;
	args[n++] = "--broker";
	args[n++] = bro;
	for (int i = 0; faults && faults[i] && n < 14; i++) {
		args[n++] = "--fault";
		args[n++] = faults[i];
	}
	args[n] = NULL;
	int rc = sky_emu_start(&fx->emu, args);
	free(seed);
	if (rc < 0)
		return -1;
	fx->dir = sky_test_tmpdir();
	snprintf(fx->db, sizeof(fx->db), "%s/db", fx->dir);
	snprintf(fx->pw, sizeof(fx->pw), "%s/pw", fx->dir);
	snprintf(fx->bro, sizeof(fx->bro), "mqtt://127.0.0.1:%d", broker.port);
	FILE *f = fopen(fx->pw, "w");
	if (!f || fputs("integration-pass\n", f) < 0 || fclose(f) != 0)
		return -1;
	chmod(fx->pw, 0600);
	fx->cli = sky_test_build_path("tools/skysync");
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	return sky_cache_open(&fx->cache, fx->db, &o) < 0 ? -1 : 0;
}

static void fx_end(fixture *fx)
{
	sky_cache_close(fx->cache);
	sky_emu_stop(&fx->emu);
	sky_emu_free(&fx->emu);
	free(fx->cli);
}

/*
 * Start `skysync --db DB sync ... EXTRA...` (extra NULL-terminated), its
 * stderr to dir/NAME.err. Returns the pid.
 */
static pid_t sync_start(fixture *fx, const char *name, const char *const *extra)
{
	const char *argv[32];
	int n = 0;
	const char *base[] = {
	    fx->cli,	       "--db",	    fx->db,	"sync",
	    "--server",	       fx->emu.url, "--broker", fx->bro,
	    "--realm",	       "demo",	    "--user",	"integration",
	    "--password-file", fx->pw,	    NULL};
	for (int i = 0; base[i]; i++)
		argv[n++] = base[i];
	for (int i = 0; extra && extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	char err[1200];
	snprintf(err, sizeof(err), "%s/%s.err", fx->dir, name);
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		int e = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(null, 1);
		dup2(e, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	return pid;
}

static int wait_exit(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static int sync_run(fixture *fx, const char *name, const char *const *extra)
{
	return wait_exit(sync_start(fx, name, extra));
}

/* The stderr a child left in dir/NAME.err (free with free()). */
static char *err_of(fixture *fx, const char *name)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/%s.err", fx->dir, name);
	char *t = sky_test_read_file(path, NULL);
	return t ? t : strdup("");
}

/* The emulator's admin stats field `key` (a number), or -1. */
static long long emu_stat(fixture *fx, const char *key)
{
	sky_http_res res;
	long long v = -1;
	if (sky_http(fx->emu.url, "GET", "/_admin/stats", NULL, NULL, &res) ==
		200 &&
	    res.json)
		v = json_integer_value(json_object_get(res.json, key));
	sky_http_res_free(&res);
	return v;
}

static int admin_fault(fixture *fx, const char *spec)
{
	json_t *j = json_string(spec);
	char *body = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
	json_decref(j);
	sky_http_res res;
	long st = body ? sky_http(fx->emu.url, "POST", "/_admin/faults", body,
				  NULL, &res)
		       : 0;
	if (body)
		sky_http_res_free(&res);
	free(body);
	return st == 201 ? 0 : -1;
}

static void clear_faults(fixture *fx)
{
	sky_http_res res;
	sky_http(fx->emu.url, "DELETE", "/_admin/faults", NULL, NULL, &res);
	sky_http_res_free(&res);
}

/* The pid written in db/engine.lock (0 when none yet). */
static long lock_pid(fixture *fx)
{
	char path[1200];
	snprintf(path, sizeof(path), "%s/engine.lock", fx->db);
	char *t = sky_test_read_file(path, NULL);
	long pid = t && strchr(t, '\n') ? strtol(t, NULL, 10) : 0;
	free(t);
	return pid;
}

static int wait_lock_pid(fixture *fx, pid_t pid)
{
	for (int ms = 0; ms < WAIT_MS; ms += 20) {
		if (lock_pid(fx) == (long)pid)
			return 0;
		sky_sleep_ms(20);
	}
	return -1;
}

typedef struct {
	uint64_t ids[64];
	int states[64];
	unsigned attempts[64];
	int n;
} entries;

static int note_entry(const sky_outbox_entry *e, void *payload)
{
	entries *s = payload;
	if (s->n < 64) {
		s->ids[s->n] = e->id;
		s->attempts[s->n] = e->attempts;
		s->states[s->n++] = e->state;
	}
	return 0;
}

static entries outbox(fixture *fx)
{
	entries s;
	memset(&s, 0, sizeof(s));
	CU_ASSERT(sky_outbox_list(fx->cache, note_entry, &s) == 0);
	return s;
}

static sky_engine_options engine_options(fixture *fx)
{
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = fx->emu.url;
	o.broker = fx->bro;
	o.realm = "demo";
	o.user = "integration";
	o.password = "integration-pass";
	o.backoff_min_ms = 50;
	o.backoff_max_ms = 1000;
	return o;
}

/* ------------------------------------------------------------------ */

static void test_enginelock__second_engine_busy(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx, NULL) == 0);
	sky_engine_options o = engine_options(&fx);
	sky_engine *a = NULL, *b = NULL;
	CU_ASSERT_FATAL(sky_engine_new(&a, fx.cache, &o) == 0);
	/* A second engine in this process. */
	CU_ASSERT(sky_engine_new(&b, fx.cache, &o) == SKY_EBUSY);
	CU_ASSERT(b == NULL);
	char pid[32];
	snprintf(pid, sizeof(pid), "pid %ld", (long)getpid());
	CU_ASSERT(strstr(sky_error_last()->message, pid) != NULL);
	CU_ASSERT(strstr(sky_error_last()->message, "test_enginelock") != NULL);
	/* And in another process: `skysync sync` exits 1 naming us. */
	CU_ASSERT(sync_run(&fx, "busy", NULL) == 1);
	char *err = err_of(&fx, "busy");
	CU_ASSERT(strstr(err, pid) != NULL);
	CU_ASSERT(strstr(err, "--wait") != NULL);
	free(err);
	/* --timeout goes with --wait, and takes seconds. */
	CU_ASSERT(sync_run(&fx, "usage",
			   (const char *[]){"--timeout", "1", NULL}) == 1);
	CU_ASSERT(sync_run(&fx, "usage",
			   (const char *[]){"--wait", "--timeout", "soon",
					    NULL}) == 1);
	/* Freed, the lock is free. */
	sky_engine_free(a);
	CU_ASSERT(sky_engine_new(&b, fx.cache, &o) == 0);
	sky_engine_free(b);
	CU_ASSERT(sync_run(&fx, "free", (const char *[]){"--quiet", NULL}) ==
		  0);
	fx_end(&fx);
}

static void test_enginelock__kill9_frees_the_lock(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx, NULL) == 0);
	pid_t holder =
	    sync_start(&fx, "follow", (const char *[]){"--follow", NULL});
	CU_ASSERT_FATAL(wait_lock_pid(&fx, holder) == 0);
	sky_engine_options o = engine_options(&fx);
	sky_engine *e = NULL;
	CU_ASSERT(sky_engine_new(&e, fx.cache, &o) == SKY_EBUSY);
	kill(holder, SIGKILL);
	CU_ASSERT(wait_exit(holder) == 128 + SIGKILL);
	/* The kernel let go of it: the next engine starts at once. */
	CU_ASSERT(sky_engine_new(&e, fx.cache, &o) == 0);
	sky_engine_free(e);
	fx_end(&fx);
}

/*
 * The operator's case: 9 creates queued, two one-shot syncs started
 * together, the server slow to answer writes. Each round must add exactly
 * the queued sessions on the server.
 */
static void test_enginelock__two_syncs_never_duplicate(void)
{
	fixture fx;
	const char *faults[] = {"delay:ms=300,method=write", NULL};
	CU_ASSERT_FATAL(fx_start(&fx, faults) == 0);
	const char *quiet[] = {"--quiet", NULL};
	CU_ASSERT_FATAL(sync_run(&fx, "first", quiet) == 0);
	const char *env = getenv("SKY_LOCK_RUNS");
	int runs = env && atoi(env) > 0 ? atoi(env) : 5;
	int duplicated = 0, busy = 0;
	printf("\n  %d rounds of two syncs on one cache\n", runs);
	for (int r = 0; r < runs; r++) {
		long long before = emu_stat(&fx, "sessions");
		for (int i = 0; i < 9; i++) {
			char body[64];
			snprintf(body, sizeof(body), "{\"name\":\"r%d-%d\"}", r,
				 i);
			char *sid = NULL;
			CU_ASSERT(sky_session_create(fx.cache, APP, body,
						     strlen(body), &sid) == 0);
			sky_free(sid);
		}
		pid_t a = sync_start(&fx, "a", quiet);
		pid_t b = sync_start(&fx, "b", quiet);
		int ra = wait_exit(a), rb = wait_exit(b);
		/* One did the work (0); the other found it busy (1), unless it
		 * started after the first had finished (0 too). */
		CU_ASSERT((ra == 0 && (rb == 0 || rb == 1)) ||
			  (rb == 0 && ra == 1));
		busy += ra == 1 || rb == 1;
		long long after = emu_stat(&fx, "sessions");
		if (after != before + 9) {
			duplicated++;
			fprintf(stderr,
				"  round %d: %lld sessions made for 9\n", r,
				after - before);
		}
		CU_ASSERT(outbox(&fx).n == 0);
	}
	printf("  %d of %d rounds duplicated a create; %d found the cache "
	       "busy\n",
	       duplicated, runs, busy);
	CU_ASSERT(duplicated == 0);
	fx_end(&fx);
}

static void test_enginelock__wait_beside_follow(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx, NULL) == 0);
	const char *quiet[] = {"--quiet", NULL};
	CU_ASSERT_FATAL(sync_run(&fx, "first", quiet) == 0);
	pid_t follower =
	    sync_start(&fx, "follow", (const char *[]){"--follow", NULL});
	CU_ASSERT_FATAL(wait_lock_pid(&fx, follower) == 0);
	/* Slow writes, so that --wait really waits. */
	CU_ASSERT(admin_fault(&fx, "delay:ms=300,method=write") == 0);
	long long before = emu_stat(&fx, "sessions");
	for (int i = 0; i < 3; i++) {
		char body[64];
		snprintf(body, sizeof(body), "{\"name\":\"waited-%d\"}", i);
		char *sid = NULL;
		CU_ASSERT(sky_session_create(fx.cache, APP, body, strlen(body),
					     &sid) == 0);
		sky_free(sid);
	}
	CU_ASSERT(sync_run(&fx, "wait", (const char *[]){"--wait", NULL}) == 0);
	/* Returned: its writes are on the server. */
	CU_ASSERT(emu_stat(&fx, "sessions") == before + 3);
	CU_ASSERT(outbox(&fx).n == 0);
	char *err = err_of(&fx, "wait");
	char pid[32];
	snprintf(pid, sizeof(pid), "pid %ld", (long)follower);
	CU_ASSERT(strstr(err, pid) != NULL);
	free(err);

	/* A write the server refuses for now: --timeout ends the wait (4),
	 * and the follower stopped by SIGTERM exits 0 with it queued. */
	clear_faults(&fx);
	CU_ASSERT(admin_fault(&fx, "error:code=503,method=write") == 0);
	char *sid = NULL;
	const char *body = "{\"name\":\"refused for now\"}";
	CU_ASSERT(sky_session_create(fx.cache, APP, body, strlen(body), &sid) ==
		  0);
	sky_free(sid);
	CU_ASSERT(
	    sync_run(&fx, "timeout",
		     (const char *[]){"--wait", "--timeout", "1", NULL}) == 4);
	kill(follower, SIGTERM);
	CU_ASSERT(wait_exit(follower) == 0);
	CU_ASSERT(outbox(&fx).n == 1);
	/* With the follower gone, --wait takes over and delivers it. */
	clear_faults(&fx);
	CU_ASSERT(sync_run(&fx, "takeover",
			   (const char *[]){"--wait", "--quiet", NULL}) == 0);
	CU_ASSERT(outbox(&fx).n == 0);
	fx_end(&fx);
}

/* ------------------------------------------------------------------ */
/* The outbox's edges                                                  */
/* ------------------------------------------------------------------ */

static int first_open_session(const char *json, size_t len, void *payload)
{
	char *out = payload;
	json_t *s = json_loadb(json, len, 0, NULL);
	const char *id = json_string_value(json_object_get(s, "sessionId"));
	const char *st = json_string_value(json_object_get(s, "status"));
	if (!*out && id && st && !strcmp(st, "open"))
		snprintf(out, 128, "%s", id);
	json_decref(s);
	return 0;
}

static void test_outbox__drop_refused_on_the_wire(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx, NULL) == 0);
	CU_ASSERT_FATAL(
	    sync_run(&fx, "first", (const char *[]){"--quiet", NULL}) == 0);
	char sid[128] = "";
	CU_ASSERT_FATAL(
	    sky_session_list(fx.cache, APP, first_open_session, sid) == 0 &&
	    *sid);
	CU_ASSERT(admin_fault(&fx, "delay:ms=3000,method=PATCH") == 0);
	pid_t follower =
	    sync_start(&fx, "follow", (const char *[]){"--follow", NULL});
	CU_ASSERT_FATAL(wait_lock_pid(&fx, follower) == 0);
	const char *patch = "{\"landed\":true}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, sid, patch, strlen(patch)) ==
		  0);
	entries e = outbox(&fx);
	CU_ASSERT_FATAL(e.n == 1);
	/* The request is out once the emulator holds it. */
	int out = 0;
	for (int ms = 0; ms < WAIT_MS && !out; ms += 20) {
		out = emu_stat(&fx, "pending_requests") > 0;
		if (!out)
			sky_sleep_ms(20);
	}
	CU_ASSERT_FATAL(out);
	CU_ASSERT(sky_outbox_drop(fx.cache, e.ids[0]) == SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "on the wire") != NULL);
	char id[32];
	snprintf(id, sizeof(id), "%llu", (unsigned long long)e.ids[0]);
	const char *argv[] = {fx.cli, "--db", fx.db, "outbox",
			      "drop", id,     NULL};
	pid_t p = fork();
	if (p == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		dup2(null, 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	CU_ASSERT(wait_exit(p) == 3);
	/* It lands, and leaves the outbox. */
	int gone = 0;
	for (int ms = 0; ms < WAIT_MS && !gone; ms += 50) {
		gone = outbox(&fx).n == 0;
		if (!gone)
			sky_sleep_ms(50);
	}
	CU_ASSERT(gone);
	kill(follower, SIGTERM);
	CU_ASSERT(wait_exit(follower) == 0);
	char *data = NULL;
	CU_ASSERT(sky_data_get(fx.cache, APP, sid, &data, NULL) == 0);
	CU_ASSERT(data && strstr(data, "\"landed\":true"));
	sky_free(data);
	/* With no engine on the cache, a queued write drops at once. */
	CU_ASSERT(sky_data_patch(fx.cache, APP, sid, patch, strlen(patch)) ==
		  0);
	e = outbox(&fx);
	CU_ASSERT(e.n == 1 && sky_outbox_drop(fx.cache, e.ids[0]) == 0);
	fx_end(&fx);
}

static void test_outbox__event_5xx_in_doubt_429_resent(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx, NULL) == 0);
	const char *quiet[] = {"--quiet", NULL};
	CU_ASSERT_FATAL(sync_run(&fx, "first", quiet) == 0);
	char sid[128] = "";
	CU_ASSERT_FATAL(
	    sky_session_list(fx.cache, APP, first_open_session, sid) == 0 &&
	    *sid);
	/* 503: the server may have committed it. In doubt, not resent. */
	CU_ASSERT(admin_fault(&fx, "error:code=503,next=1,method=POST,"
				   "path=*/events") == 0);
	const char *ev = "{\"kind\":\"5xx\"}";
	CU_ASSERT(sky_session_event_send(fx.cache, APP, sid, ev, strlen(ev)) ==
		  0);
	CU_ASSERT(sync_run(&fx, "5xx", quiet) == 4);
	entries e = outbox(&fx);
	CU_ASSERT_FATAL(e.n == 1);
	CU_ASSERT(e.states[0] == SKY_OUTBOX_IN_DOUBT);
	unsigned attempts = e.attempts[0];
	CU_ASSERT(sync_run(&fx, "5xx-again", quiet) == 4);
	e = outbox(&fx);
	CU_ASSERT(e.n == 1 && e.states[0] == SKY_OUTBOX_IN_DOUBT &&
		  e.attempts[0] == attempts);
	CU_ASSERT(sky_outbox_drop(fx.cache, e.ids[0]) == 0);
	/* 429: refused before it was done, so sent again and delivered. */
	CU_ASSERT(admin_fault(&fx, "throttle:retry=1,next=1,method=POST,"
				   "path=*/events") == 0);
	ev = "{\"kind\":\"429\"}";
	CU_ASSERT(sky_session_event_send(fx.cache, APP, sid, ev, strlen(ev)) ==
		  0);
	CU_ASSERT(sync_run(&fx, "429", quiet) == 0);
	CU_ASSERT(outbox(&fx).n == 0);
	fx_end(&fx);
}

typedef struct {
	int count;
	uint64_t ids[8];
} notified;

static int on_rejected(const sky_outbox_entry *e, void *payload)
{
	notified *n = payload;
	if (n->count < 8)
		n->ids[n->count] = e->id;
	n->count++;
	return 0;
}

static void test_outbox__drop_create_notifies(void)
{
	fixture fx;
	CU_ASSERT_FATAL(fx_start(&fx, NULL) == 0);
	CU_ASSERT_FATAL(
	    sync_run(&fx, "first", (const char *[]){"--quiet", NULL}) == 0);
	char *sid = NULL;
	const char *body = "{\"name\":\"dropped\"}";
	CU_ASSERT_FATAL(
	    sky_session_create(fx.cache, APP, body, strlen(body), &sid) == 0);
	CU_ASSERT(sky_session_set_name(fx.cache, APP, sid, "renamed") == 0);
	const char *patch = "{\"a\":1}";
	CU_ASSERT(sky_data_patch(fx.cache, APP, sid, patch, strlen(patch)) ==
		  0);
	entries e = outbox(&fx);
	CU_ASSERT_FATAL(e.n == 3);
	notified n;
	memset(&n, 0, sizeof(n));
	sky_outbox_on_rejected(fx.cache, on_rejected, &n);
	CU_ASSERT(sky_outbox_drop(fx.cache, e.ids[0]) == 0);
	/* The create, then the two writes it took with it. */
	CU_ASSERT(n.count == 3);
	CU_ASSERT(n.ids[0] == e.ids[0] && n.ids[1] == e.ids[1] &&
		  n.ids[2] == e.ids[2]);
	/* Dropping a dead letter notifies nothing more: it was. */
	CU_ASSERT(sky_outbox_drop(fx.cache, e.ids[1]) == 0);
	CU_ASSERT(n.count == 3);
	sky_outbox_on_rejected(fx.cache, NULL, NULL);
	sky_free(sid);
	fx_end(&fx);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_enginelock__second_engine_busy",
	     test_enginelock__second_engine_busy},
	    {"test_enginelock__kill9_frees_the_lock",
	     test_enginelock__kill9_frees_the_lock},
	    {"test_enginelock__two_syncs_never_duplicate",
	     test_enginelock__two_syncs_never_duplicate},
	    {"test_enginelock__wait_beside_follow",
	     test_enginelock__wait_beside_follow},
	    {"test_outbox__drop_refused_on_the_wire",
	     test_outbox__drop_refused_on_the_wire},
	    {"test_outbox__event_5xx_in_doubt_429_resent",
	     test_outbox__event_5xx_in_doubt_429_resent},
	    {"test_outbox__drop_create_notifies",
	     test_outbox__drop_create_notifies},
	    {NULL, NULL},
	};
	int rc = sky_test_main("enginelock", cases);
	if (broker_started)
		sky_broker_stop(&broker);
	return rc;
}
