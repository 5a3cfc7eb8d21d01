/*
 * bench_sync.c - the sync engine's two rates against a local skylight-emu
 * and mosquitto (both started here, on free loopback ports):
 *
 *   serve     what the emulator serves on this machine: the session list,
 *             then every session's data with the same parallelism and
 *             HTTP layer (libsync's http.c) as the engine, answers thrown
 *             away. This is the ceiling of a snapshot.
 *   snapshot  `sky_engine_sync_once` of N sessions into an empty cache
 *             (default durability): sessions/s, and its share of `serve`.
 *   live      N events published straight to the broker (QoS 1), applied
 *             by a following engine: events/s from the first publish to
 *             the last apply, and the event lag the engine reports.
 *   resync    (--resync, instead of the above) catching up after C
 *             changes made while no engine ran (C = 20, 200, 2000; a mix
 *             of renames, property updates and data patches over the
 *             realm): the requests and seconds of a one-shot sync of the
 *             synced cache (resumed: the broker kept our session) against
 *             a full snapshot (a fresh cache). The broker keeps every
 *             message here (no queue limit), and backlog_limit is raised
 *             so that 2000 changes resume too.
 *   drain     W data patches queued in the outbox (100 sessions), then
 *             delivered by the following engine: writes/s from the first
 *             enqueue until the outbox is empty. Against `one at a time`:
 *             the same W patches sent by one client that waits for each
 *             answer before the next (same HTTP layer, kept-alive).
 *
 * The emulator's seed (N sessions with small data, one application) is
 * generated in a temporary directory, removed at exit.
 *
 *   bench/bench_sync [--quick] [--sessions N] [--events N] [--writes W]
 * [--parallel P]
 *                    [--resync] [--emu PATH] [--mosquitto PATH]
 *
 * Full mode: 100k sessions, 50k events; --quick: 10k and 10k. One line per
 * phase, then one JSON object with every figure (for scripts).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <jansson.h>
#include <mosquitto.h>

#include "api.h"
#include "http.h"
#include "skysync.h"
#include "util.h"

#define APP "app-bench"

static char tmpdir[256];
static pid_t children[2];

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void cleanup(void)
{
	for (int i = 0; i < 2; i++)
		if (children[i] > 0) {
			kill(children[i], SIGTERM);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void remove_tmp(void)
{
	if (tmpdir[0] && !getenv("SKY_KEEP_TMP"))
		nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("bench_sync: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(1);
}

static int free_port(void)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(a);
	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(s, (struct sockaddr *)&a, &len) < 0)
		die("no free port: %s", strerror(errno));
	close(s);
	return ntohs(a.sin_port);
}

static int port_open(int port)
{
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	int ok = connect(s, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(s);
	return ok;
}

/* ---- the servers ---- */

/* The mosquitto log on stderr (the temporary directory goes at exit). */
static void print_log(const char *log)
{
	char buf[2048];
	FILE *f = fopen(log, "r");
	if (!f)
		return;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fprintf(stderr, "bench_sync: mosquitto's log:\n%s", buf);
}

/* One try of start_broker: the port, or -1 when mosquitto exited. */
static int try_broker(const char *path)
{
	int port = free_port();
	char conf[512], log[512];
	snprintf(conf, sizeof(conf), "%s/mosquitto.conf", tmpdir);
	snprintf(log, sizeof(log), "%s/mosquitto.log", tmpdir);
	FILE *f = fopen(conf, "w");
	if (!f)
		die("%s: %s", conf, strerror(errno));
	/* No queue limit: a burst must not be dropped for a busy client. */
	fprintf(f,
		"listener %d 127.0.0.1\nallow_anonymous true\n"
		"persistence false\nmax_queued_messages 0\n"
		"max_inflight_messages 0\nlog_dest stderr\n",
		port);
	fclose(f);
	chmod(tmpdir, 0755);
	chmod(conf, 0644);
	if ((children[0] = fork()) == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 2);
		execl(path, path, "-c", conf, (char *)NULL);
		_exit(127);
	}
	if (children[0] < 0)
		die("fork: %s", strerror(errno));
	double deadline = now_s() + 30;
	while (!port_open(port)) {
		if (waitpid(children[0], NULL, WNOHANG) == children[0]) {
			children[0] = 0;
			print_log(log);
			return -1;
		}
		if (now_s() > deadline) {
			print_log(log);
			die("mosquitto (%s) did not serve in 30 s", path);
		}
		usleep(10000);
	}
	return port;
}

/* Start mosquitto on a free port and wait until it serves, or exits (the
 * port was taken meanwhile: another one is tried), or 30 s passed
 * (generous: a busy machine is slow to start a process). */
static int start_broker(const char *path)
{
	for (int attempt = 0; attempt < 5; attempt++) {
		int port = try_broker(path);
		if (port > 0)
			return port;
	}
	die("mosquitto (%s) did not start", path);
	return -1;
}

static int start_emu(const char *path, const char *seed, int broker_port)
{
	int fds[2];
	char broker[64];
	snprintf(broker, sizeof(broker), "127.0.0.1:%d", broker_port);
	if (pipe(fds) < 0)
		die("pipe: %s", strerror(errno));
	if ((children[1] = fork()) == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		execl(path, path, "--listen", "127.0.0.1:0", "--seed", seed,
		      "--broker", broker, (char *)NULL);
		perror(path);
		_exit(127);
	}
	close(fds[1]);
	char buf[256];
	size_t len = 0;
	int port = -1;
	/* Its "listening on" line, its exit or 30 s (its stderr is ours). */
	double deadline = now_s() + 30;
	while (len < sizeof(buf) - 1) {
		struct pollfd pf = {fds[0], POLLIN, 0};
		int left_ms = (int)((deadline - now_s()) * 1000);
		int pr = left_ms > 0 ? poll(&pf, 1, left_ms) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		ssize_t r = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		char *p = strstr(buf, "listening on ");
		if (p && strchr(p, '\n')) {
			port = atoi(strrchr(p, ':') + 1);
			break;
		}
	}
	close(fds[0]);
	if (port <= 0)
		die("skylight-emu (%s) did not start", path);
	return port;
}

/* A realm of n sessions in one application, small data each. */
static void write_seed(const char *path, unsigned n)
{
	FILE *f = fopen(path, "w");
	if (!f)
		die("%s: %s", path, strerror(errno));
	fprintf(
	    f, "{\"format\":\"skylight-emu-seed/1\",\"realm\":\"demo\","
	       "\"groups\":[],\"users\":[{\"id\":\"u-integration\","
	       "\"username\":\"integration\",\"password\":\"integration-pass\","
	       "\"groups\":[]}],\"applications\":[{\"application\":"
	       "{\"applicationId\":\"" APP "\",\"name\":\"Bench\","
	       "\"publishedVersion\":1,\"createdBy\":\"u-integration\","
	       "\"createdAt\":\"2024-01-01T00:00:00.000000Z\"},\"roles\":[{"
	       "\"name\":\"all\",\"permissions\":[\"application:read\","
	       "\"session:read:any\",\"session:update\"],\"participants\":"
	       "[{\"id\":\"u-integration\",\"type\":\"user\"}]}]}],"
	       "\"sessions\":[");
	for (unsigned i = 0; i < n; i++)
		fprintf(f,
			"%s{\"session\":{\"applicationId\":\"" APP "\","
			"\"sessionId\":\"s-%07u\",\"name\":\"Session %u\","
			"\"createdBy\":\"u-integration\",\"createdAt\":"
			"\"2024-01-01T00:00:00.000000Z\",\"properties\":{"
			"\"site\":\"Plant-%u\",\"line\":\"L%u\",\"shift\":"
			"\"day\"}},"
			"\"data\":{\"checklist\":{\"steps\":8,\"done\":%u},"
			"\"readings\":{\"temperature\":21.5,\"pressure\":0.98},"
			"\"notes\":\"seeded for the benchmark\"}}",
			i ? "," : "", i, i, i % 20, i % 7, i % 8);
	fputs("]}\n", f);
	if (fclose(f) != 0)
		die("%s: write failed", path);
}

/* ---- serve: the same requests as a snapshot, answers dropped ---- */

typedef struct {
	sky_http_client *http;
	struct event_base *base;
	const char *url;
	char *token;
	json_t *sids;
	size_t next, done, total;
	unsigned inflight, parallel;
	int failed;
} serve_ctx;

static void serve_pump(serve_ctx *s);

static void serve_done(const sky_http_response *res, void *arg)
{
	serve_ctx *s = arg;
	s->inflight--;
	s->done++;
	if (res->status != 200)
		s->failed = 1;
	serve_pump(s);
}

static void serve_pump(serve_ctx *s)
{
	while (s->inflight < s->parallel && s->next < s->total) {
		const char *sid =
		    json_string_value(json_array_get(s->sids, s->next++));
		char *url;
		sky__api_url(s->url, SKY_API_DATA, "demo", APP, sid, &url);
		sky_http_spec spec = {"GET", url, s->token, NULL, 0, 0, 0};
		if (sky__http_send(s->http, &spec, serve_done, s, NULL) == 0)
			s->inflight++;
		else
			s->failed = 1;
		free(url);
	}
	if (s->done == s->total)
		event_base_loopbreak(s->base);
}

static void list_done(const sky_http_response *res, void *arg)
{
	serve_ctx *s = arg;
	json_t *list = json_loadb(res->body, res->len, 0, NULL);
	s->sids = json_array();
	size_t i;
	json_t *o;
	json_array_foreach(list, i, o)
		json_array_append(s->sids, json_object_get(o, "sessionId"));
	json_decref(list);
	s->total = json_array_size(s->sids);
	serve_pump(s);
}

static void token_done(const sky_http_response *res, void *arg)
{
	serve_ctx *s = arg;
	sky_api_tokens t;
	if (res->status != 200 ||
	    sky__api_parse_tokens(res->body, res->len, &t) < 0)
		die("cannot log in to the emulator");
	s->token = strdup(t.access_token);
	sky__api_tokens_clear(&t);
	char *url;
	sky__api_url(s->url, SKY_API_SESSIONS, "demo", APP, NULL, &url);
	sky_http_spec spec = {"GET",	       url, s->token, NULL, 0,
			      (size_t)1 << 30, 0};
	sky__http_send(s->http, &spec, list_done, s, NULL);
	free(url);
}

static double serve_rate(const char *url, unsigned parallel, size_t *count)
{
	serve_ctx s;
	memset(&s, 0, sizeof(s));
	s.url = url;
	s.parallel = parallel;
	s.base = event_base_new();
	sky_http_options ho = {NULL, 0, parallel, 0, 0, 0, NULL};
	if (sky__http_new(s.base, &ho, &s.http) < 0)
		die("http: %s", sky_error_last()->message);
	size_t len;
	char *body = sky__api_login_body("integration", "integration-pass",
					 "demo", &len);
	char *login;
	sky__api_url(url, SKY_API_LOGIN, "demo", NULL, NULL, &login);
	double t0 = now_s();
	sky_http_spec spec = {"POST", login, NULL, body, len, 0, 0};
	sky__http_send(s.http, &spec, token_done, &s, NULL);
	event_base_dispatch(s.base);
	double secs = now_s() - t0;
	if (s.failed)
		die("the serve phase saw failed requests");
	*count = s.total;
	free(login);
	sky__wipe_free(body);
	sky__http_free(s.http);
	event_base_free(s.base);
	json_decref(s.sids);
	free(s.token);
	return s.total / secs;
}

/* ---- the engine ---- */

typedef struct {
	struct event_base *base;
	atomic_int state;
	atomic_ulong applied;
} engine_ctx;

static void on_state(sky_engine_state st, void *payload)
{
	engine_ctx *c = payload;
	atomic_store(&c->state, (int)st);
	if ((st == SKY_ENGINE_STOPPED || st == SKY_ENGINE_FAILED) && c->base)
		event_base_loopbreak(c->base);
}

static void on_change(const sky_change *ch, void *payload)
{
	engine_ctx *c = payload;
	if (ch->event_id)
		atomic_fetch_add(&c->applied, 1);
}

static void *loop_thread(void *arg)
{
	event_base_dispatch(arg);
	return NULL;
}

static sky_sync_status status = SKY_SYNC_STATUS_INIT;
static atomic_int status_ready;

static void get_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sky_engine_status(arg, &status);
	atomic_store(&status_ready, 1);
}

static void stop_engine(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	sky_engine_stop(arg);
}

/* ---- one write at a time ---- */

typedef struct {
	struct event_base *base;
	int done;
	long status;
} one_ctx;

static void one_done(const sky_http_response *res, void *arg)
{
	one_ctx *o = arg;
	o->done = 1;
	o->status = res->status;
	if (res->status == 200 && o->base)
		event_base_loopbreak(o->base);
}

static int tokens_into(const sky_http_response *res, char **token)
{
	sky_api_tokens t;
	if (res->status != 200 ||
	    sky__api_parse_tokens(res->body, res->len, &t) < 0)
		return -1;
	*token = strdup(t.access_token);
	sky__api_tokens_clear(&t);
	return 0;
}

static char *login_token;

static void login_done(const sky_http_response *res, void *arg)
{
	one_ctx *o = arg;
	o->done = 1;
	if (tokens_into(res, &login_token) < 0)
		die("cannot log in to the emulator");
	event_base_loopbreak(o->base);
}

/* W data patches, each sent after the answer to the one before. */
static double one_at_a_time(const char *url, unsigned writes)
{
	one_ctx o = {event_base_new(), 0, 0};
	sky_http_client *http;
	sky_http_options ho = {NULL, 0, 1, 0, 0, 0, NULL};
	if (sky__http_new(o.base, &ho, &http) < 0)
		die("http: %s", sky_error_last()->message);
	size_t len;
	char *body = sky__api_login_body("integration", "integration-pass",
					 "demo", &len);
	char *login;
	sky__api_url(url, SKY_API_LOGIN, "demo", NULL, NULL, &login);
	sky_http_spec ls = {"POST", login, NULL, body, len, 0, 0};
	sky__http_send(http, &ls, login_done, &o, NULL);
	event_base_dispatch(o.base);
	double t0 = now_s();
	for (unsigned i = 0; i < writes; i++) {
		char sid[32], patch[64], *purl;
		snprintf(sid, sizeof(sid), "s-%07u", i % 100);
		int plen = snprintf(patch, sizeof(patch),
				    "{\"one\":{\"k%u\":%u}}", i % 50, i);
		sky__api_url(url, SKY_API_DATA_PATCH, "demo", APP, sid, &purl);
		sky_http_spec spec = {
		    "PATCH", purl, login_token, patch, (size_t)plen, 0, 0};
		o.done = 0;
		sky__http_send(http, &spec, one_done, &o, NULL);
		while (!o.done)
			event_base_loop(o.base, EVLOOP_ONCE);
		free(purl);
		if (o.status != 200)
			die("one at a time: HTTP %ld", o.status);
	}
	double secs = now_s() - t0;
	free(login);
	sky__wipe_free(body);
	sky__http_free(http);
	event_base_free(o.base);
	free(login_token);
	return writes / secs;
}

/*
 * n changes on the server, one after the other: of every four, a rename,
 * a property update and two data patches, spread over the realm.
 */
static void server_changes(const char *url, unsigned n, unsigned sessions)
{
	one_ctx o = {event_base_new(), 0, 0};
	sky_http_client *http;
	sky_http_options ho = {NULL, 0, 1, 0, 0, 0, NULL};
	if (sky__http_new(o.base, &ho, &http) < 0)
		die("http: %s", sky_error_last()->message);
	size_t len;
	char *body = sky__api_login_body("integration", "integration-pass",
					 "demo", &len);
	char *login;
	if (!body ||
	    sky__api_url(url, SKY_API_LOGIN, "demo", NULL, NULL, &login) < 0)
		die("out of memory");
	sky_http_spec ls = {"POST", login, NULL, body, len, 0, 0};
	if (sky__http_send(http, &ls, login_done, &o, NULL) < 0)
		die("http: %s", sky_error_last()->message);
	event_base_dispatch(o.base);
	for (unsigned i = 0; i < n; i++) {
		char sid[32], patch[128], *purl;
		unsigned k = (unsigned)(((unsigned long long)i * 7919u +
					 (unsigned)time(NULL)) %
					sessions);
		snprintf(sid, sizeof(sid), "s-%07u", k);
		int plen;
		sky_api_call call = SKY_API_DATA_PATCH;
		if (i % 4 == 0) {
			call = SKY_API_SESSION_PATCH;
			plen = snprintf(patch, sizeof(patch),
					"{\"name\":\"renamed %u\"}", i);
		} else if (i % 4 == 1) {
			call = SKY_API_SESSION_PATCH;
			plen =
			    snprintf(patch, sizeof(patch),
				     "{\"properties\":{\"shift\":\"n%u\"}}", i);
		} else {
			plen =
			    snprintf(patch, sizeof(patch),
				     "{\"offline\":{\"k%u\":%u}}", i % 50, i);
		}
		if (sky__api_url(url, call, "demo", APP, sid, &purl) < 0)
			die("out of memory");
		sky_http_spec spec = {
		    "PATCH", purl, login_token, patch, (size_t)plen, 0, 0};
		o.done = 0;
		if (sky__http_send(http, &spec, one_done, &o, NULL) < 0)
			die("http: %s", sky_error_last()->message);
		while (!o.done)
			event_base_loop(o.base, EVLOOP_ONCE);
		free(purl);
		if (o.status != 200)
			die("change: HTTP %ld", o.status);
	}
	free(login);
	sky__wipe_free(body);
	sky__http_free(http);
	event_base_free(o.base);
	free(login_token);
	login_token = NULL;
}

/* One one-shot sync of `db`: seconds, and its status in *st. */
static double timed_sync(const char *db, const sky_engine_options *o,
			 sky_sync_status *st)
{
	sky_cache *cache;
	sky_engine *e;
	if (sky_cache_open(&cache, db, NULL) < 0)
		die("cache: %s", sky_error_last()->message);
	if (sky_engine_new(&e, cache, o) < 0)
		die("engine: %s", sky_error_last()->message);
	double t0 = now_s();
	if (sky_engine_sync_once(e) < 0)
		die("sync: %s", sky_error_last()->message);
	double secs = now_s() - t0;
	sky_engine_status(e, st);
	sky_engine_free(e);
	sky_cache_close(cache);
	return secs;
}

/* The resync workload (see the top of the file). */
static int resync_bench(const char *url, const char *broker, unsigned sessions,
			unsigned parallel)
{
	char db[512], fresh[600];
	snprintf(db, sizeof(db), "%s/resync-cache", tmpdir);
	engine_ctx ec;
	memset(&ec, 0, sizeof(ec));
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = url;
	o.broker = broker;
	o.realm = "demo";
	o.user = "integration";
	o.password = "integration-pass";
	o.max_parallel = parallel;
	o.backlog_limit = 1000000;
	o.on_state = on_state;
	o.payload = &ec;
	/* A first sync that follows, so that the broker keeps our session. */
	sky_cache *cache;
	sky_engine *e;
	if (sky_cache_open(&cache, db, NULL) < 0)
		die("cache: %s", sky_error_last()->message);
	o.follow = 1;
	if (sky_engine_new(&e, cache, &o) < 0)
		die("engine: %s", sky_error_last()->message);
	ec.base = event_base_new();
	pthread_t thread;
	if (!ec.base || sky_engine_attach(e, ec.base) < 0 ||
	    pthread_create(&thread, NULL, loop_thread, ec.base) != 0)
		die("cannot start the engine");
	for (int i = 0; i < 12000 && atomic_load(&ec.state) != SKY_ENGINE_LIVE;
	     i++)
		usleep(10000);
	if (atomic_load(&ec.state) != SKY_ENGINE_LIVE)
		die("the engine did not get live");
	struct timeval zero = {0, 0};
	event_base_once(ec.base, -1, EV_TIMEOUT, stop_engine, e, &zero);
	pthread_join(thread, NULL);
	sky_engine_free(e);
	event_base_free(ec.base);
	ec.base = NULL;
	sky_cache_close(cache);
	o.follow = 0;

	static const unsigned counts[] = {20, 200, 2000};
	printf("resync    %u sessions: changes while offline, then one sync\n",
	       sessions);
	json_t *rows = json_array();
	for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
		server_changes(url, counts[c], sessions);
		sky_sync_status rs = SKY_SYNC_STATUS_INIT;
		sky_sync_status fs = SKY_SYNC_STATUS_INIT;
		double r_s = timed_sync(db, &o, &rs);
		snprintf(fresh, sizeof(fresh), "%s/fresh-%zu", tmpdir, c);
		double f_s = timed_sync(fresh, &o, &fs);
		printf("  %5u changes  resumed%s %6llu requests %6.2f s   "
		       "full %6llu requests %6.2f s\n",
		       counts[c],
		       rs.last_sync_path == SKY_SYNC_PATH_RESUMED ? ""
								  : "(NOT)",
		       (unsigned long long)rs.last_sync_requests, r_s,
		       (unsigned long long)fs.last_sync_requests, f_s);
		json_t *row = json_pack(
		    "{s:I,s:s,s:I,s:f,s:I,s:f,s:I,s:I}", "changes",
		    (json_int_t)counts[c], "path",
		    rs.last_sync_path == SKY_SYNC_PATH_RESUMED ? "resumed"
							       : "full",
		    "resumed_requests", (json_int_t)rs.last_sync_requests,
		    "resumed_s", r_s, "full_requests",
		    (json_int_t)fs.last_sync_requests, "full_s", f_s,
		    "backlog_events", (json_int_t)rs.backlog_events,
		    "events_received", (json_int_t)rs.events_received);
		if (!row || json_array_append_new(rows, row) < 0)
			die("out of memory");
	}
	json_t *out = json_pack("{s:s,s:I,s:o}", "bench", "sync-resync",
				"sessions", (json_int_t)sessions, "runs", rows);
	char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
	if (!text)
		die("out of memory");
	printf("%s\n", text);
	free(text);
	json_decref(out);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: bench/bench_sync [--quick] [--sessions N] "
			"[--events N] [--writes W] [--parallel P] [--resync] "
			"[--emu PATH] "
			"[--mosquitto PATH]\n");
	exit(1);
}

int main(int argc, char **argv)
{
	unsigned sessions = 100000, events = 50000, parallel = 16,
		 writes = 10000;
	int quick = 0, resync = 0;
	const char *emu = NULL, *mosq = getenv("MOSQUITTO_BIN");
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			quick = 1;
		else if (!strcmp(argv[i], "--resync"))
			resync = 1;
		else if (!strcmp(argv[i], "--sessions") && i + 1 < argc)
			sessions = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--events") && i + 1 < argc)
			events = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--writes") && i + 1 < argc)
			writes = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--parallel") && i + 1 < argc)
			parallel = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--emu") && i + 1 < argc)
			emu = argv[++i];
		else if (!strcmp(argv[i], "--mosquitto") && i + 1 < argc)
			mosq = argv[++i];
		else
			usage();
	}
	if (quick) {
		sessions = sessions == 100000 ? 10000 : sessions;
		events = events == 50000 ? 10000 : events;
	}
	if (!mosq || !*mosq)
		mosq = access("/usr/sbin/mosquitto", X_OK) == 0
			   ? "/usr/sbin/mosquitto"
			   : "mosquitto";
	char emu_default[4200];
	if (!emu) {
		/* Beside this program: bench/../tools/skylight-emu. */
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		self[n > 0 ? n : 0] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		/* libtool may run us from bench/.libs/ */
		if ((slash = strstr(self, "/.libs")) && !slash[6])
			*slash = '\0';
		snprintf(emu_default, sizeof(emu_default),
			 "%s/../tools/skylight-emu", self);
		emu = emu_default;
	}
	evthread_use_pthreads();
	signal(SIGPIPE, SIG_IGN);
	snprintf(tmpdir, sizeof(tmpdir), "%s/bench_sync.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	if (!mkdtemp(tmpdir))
		die("mkdtemp: %s", strerror(errno));
	atexit(remove_tmp);
	atexit(cleanup);

	char seed[512], db[512], url[64], broker[64];
	snprintf(seed, sizeof(seed), "%s/seed.json", tmpdir);
	snprintf(db, sizeof(db), "%s/cache", tmpdir);
	fprintf(stderr, "bench_sync: %u sessions, %u events, %u in flight\n",
		sessions, events, parallel);
	write_seed(seed, sessions);
	int bport = start_broker(mosq);
	int eport = start_emu(emu, seed, bport);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", eport);
	snprintf(broker, sizeof(broker), "mqtt://127.0.0.1:%d", bport);
	if (resync)
		return resync_bench(url, broker, sessions, parallel);

	/* 1. What the emulator serves. */
	size_t served;
	double serve = serve_rate(url, parallel, &served);
	printf("serve     %8zu sessions  %9.0f sessions/s  (list + data, "
	       "answers dropped)\n",
	       served, serve);

	/* 2. Snapshot into an empty cache. */
	sky_cache *cache;
	if (sky_cache_open(&cache, db, NULL) < 0)
		die("cache: %s", sky_error_last()->message);
	engine_ctx ec;
	memset(&ec, 0, sizeof(ec));
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	o.server = url;
	o.broker = broker;
	o.realm = "demo";
	o.user = "integration";
	o.password = "integration-pass";
	o.max_parallel = parallel;
	o.on_state = on_state;
	o.payload = &ec; /* no on_change while snapshotting: not measured */
	sky_engine *e;
	if (sky_engine_new(&e, cache, &o) < 0)
		die("engine: %s", sky_error_last()->message);
	double t0 = now_s();
	if (sky_engine_sync_once(e) < 0)
		die("snapshot: %s", sky_error_last()->message);
	double snap_s = now_s() - t0;
	sky_engine_status(e, &status);
	double snap = status.progress.sessions_done / snap_s;
	printf("snapshot  %8llu sessions  %9.0f sessions/s  %5.1f s  %3.0f %% "
	       "of serve\n",
	       (unsigned long long)status.progress.sessions_done, snap, snap_s,
	       100 * snap / serve);
	sky_engine_free(e);

	/* 3. Live: a following engine; events straight to the broker. */
	o.follow = 1;
	o.on_change = on_change; /* counts the applied events */
	if (sky_engine_new(&e, cache, &o) < 0)
		die("engine: %s", sky_error_last()->message);
	ec.base = event_base_new();
	pthread_t thread;
	if (sky_engine_attach(e, ec.base) < 0 ||
	    pthread_create(&thread, NULL, loop_thread, ec.base) != 0)
		die("cannot start the engine");
	for (int i = 0; i < 6000 && atomic_load(&ec.state) != SKY_ENGINE_LIVE;
	     i++)
		usleep(10000);
	if (atomic_load(&ec.state) != SKY_ENGINE_LIVE)
		die("the engine did not get live");
	atomic_store(&ec.applied, 0);

	mosquitto_lib_init();
	struct mosquitto *pub = mosquitto_new(NULL, true, NULL);
	mosquitto_max_inflight_messages_set(pub, 1000);
	if (!pub || mosquitto_connect(pub, "127.0.0.1", bport, 30) != 0 ||
	    mosquitto_loop_start(pub) != 0)
		die("cannot connect a publisher");
	double t1 = now_s();
	for (unsigned i = 0; i < events; i++) {
		char topic[256], payload[640], at[32];
		unsigned s = i % sessions;
		sky__format_time(sky__now_us(), at);
		snprintf(topic, sizeof(topic),
			 "realms/demo/applications/" APP
			 "/sessions/s-%07u/session_data_updated",
			 s);
		int len = snprintf(
		    payload, sizeof(payload),
		    "{\"applicationId\":\"" APP "\",\"sessionId\":\"s-%07u\","
		    "\"eventId\":\"bench-%u-%u\",\"source\":\"bench\","
		    "\"userId\":\"u-integration\",\"createdAt\":\"%s\","
		    "\"timestamp\":\"%s\",\"version\":1,\"eventType\":"
		    "\"session_data_updated\",\"data\":{\"checklist\":"
		    "{\"done\":%u},\"last\":%u}}",
		    s, (unsigned)getpid(), i, at, at, i % 9, i);
		int rc;
		while ((rc = mosquitto_publish(pub, NULL, topic, len, payload,
					       1, false)) == MOSQ_ERR_NOMEM)
			usleep(1000);
		if (rc != MOSQ_ERR_SUCCESS)
			die("publish: %s", mosquitto_strerror(rc));
	}
	double pub_s = now_s() - t1;
	for (int i = 0; i < 30000 && atomic_load(&ec.applied) < events; i++)
		usleep(2000);
	double live_s = now_s() - t1;
	unsigned long applied = atomic_load(&ec.applied);
	struct timeval zero = {0, 0};
	event_base_once(ec.base, -1, EV_TIMEOUT, get_status, e, &zero);
	while (!atomic_load(&status_ready))
		usleep(1000);
	printf("live      %8lu events    %9.0f events/s    %5.1f s  (published "
	       "in %.1f s; last lag %.1f ms)\n",
	       applied, applied / live_s, live_s, pub_s,
	       status.event_lag_us / 1000.0);
	if (applied < events)
		fprintf(stderr, "bench_sync: only %lu of %u events applied\n",
			applied, events);

	/* 4. Drain: W queued data patches over 100 sessions, delivered by
	 * the live engine (it looks at the outbox every 100 ms). */
	unsigned nsess = sessions < 100 ? sessions : 100;
	sky_write *ws = calloc(1000, sizeof(*ws));
	char(*bodies)[64] = calloc(1000, 64);
	char(*sids)[32] = calloc(1000, 32);
	double t2 = now_s();
	for (unsigned done = 0; done < writes;) {
		unsigned k = writes - done < 1000 ? writes - done : 1000;
		for (unsigned i = 0; i < k; i++) {
			unsigned n = done + i;
			snprintf(sids[i], 32, "s-%07u", n % nsess);
			int bl = snprintf(bodies[i], 64, "{\"q\":{\"k%u\":%u}}",
					  n % 50, n);
			ws[i] = (sky_write){SKY_WRITE_DATA, APP,	sids[i],
					    bodies[i],	    (size_t)bl, 0,
					    NULL,	    0,		NULL};
		}
		if (sky_write_batch(cache, ws, k) < 0)
			die("queue: %s", sky_error_last()->message);
		done += k;
	}
	double queued_s = now_s() - t2;
	sky_outbox_counts oc = SKY_OUTBOX_COUNTS_INIT;
	for (int i = 0; i < 60000; i++) {
		if (sky_outbox_counts_get(cache, &oc) == 0 &&
		    oc.pending + oc.in_flight + oc.in_doubt + oc.rejected == 0)
			break;
		usleep(1000);
	}
	double drain_s = now_s() - t2;
	if (oc.pending + oc.in_flight + oc.in_doubt + oc.rejected)
		die("the outbox did not drain");
	free(ws);
	free(bodies);
	free(sids);
	printf("drain     %8u writes    %9.0f writes/s    %5.2f s  (queued in "
	       "%.2f s)\n",
	       writes, writes / drain_s, drain_s, queued_s);
	double one = one_at_a_time(url, writes);
	printf("one-by-one%8u writes    %9.0f writes/s    (each waits for its "
	       "answer)\n",
	       writes, one);

	printf("{\"bench\":\"sync\",\"sessions\":%u,\"parallel\":%u,"
	       "\"serve_sessions_per_s\":%.0f,\"snapshot_sessions_per_s\":%.0f,"
	       "\"snapshot_s\":%.2f,\"snapshot_share_of_serve\":%.3f,"
	       "\"events\":%lu,\"live_events_per_s\":%.0f,"
	       "\"last_event_lag_ms\":%.1f,\"drain_writes\":%u,"
	       "\"drain_writes_per_s\":%.0f,\"one_at_a_time_writes_per_s\":%."
	       "0f}\n",
	       sessions, parallel, serve, snap, snap_s, snap / serve, applied,
	       applied / live_s, status.event_lag_us / 1000.0, writes,
	       writes / drain_s, one);

	mosquitto_disconnect(pub);
	mosquitto_loop_stop(pub, false);
	mosquitto_destroy(pub);
	event_base_once(ec.base, -1, EV_TIMEOUT, stop_engine, e, &zero);
	pthread_join(thread, NULL);
	sky_engine_free(e);
	event_base_free(ec.base);
	sky_cache_close(cache);
	return applied < events ? 1 : 0;
}
