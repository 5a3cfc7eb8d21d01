/*
 * harness.c - see harness.h. Children are tracked in a small table; the
 * table is what the exit and signal handlers kill, so every spawn goes
 * through spawn() and every reaped child leaves the table.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <mosquitto.h>

#include "harness.h"
#include "testutil.h"

#define MAX_CHILDREN 64

/* How long a server may take to start (its readiness line, or its port
 * open) and how long a restart keeps retrying a port another process
 * holds: generous, since a machine busy with other builds can take
 * seconds to start a process, and a slow start is not a failure. */
#define START_WAIT_MS 30000

static pid_t children[MAX_CHILDREN];
static int harness_ready;

void sky_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* ---- children ---- */

static void kill_children(void)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] > 0) {
			kill(-children[i], SIGKILL);
			kill(children[i], SIGKILL);
			waitpid(children[i], NULL, 0);
			children[i] = 0;
		}
	}
}

static void on_fatal(int sig)
{
	/* Async-signal-safe: kill(2) and waitpid(2) only. */
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] > 0)
			kill(-children[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void harness_init(void)
{
	if (harness_ready)
		return;
	harness_ready = 1;
	atexit(kill_children);
	int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGABRT, SIGQUIT};
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], on_fatal);
	/* A server that dies mid-answer must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	atexit(curl_global_cleanup);
	mosquitto_lib_init();
	atexit((void (*)(void))mosquitto_lib_cleanup);
}

static void track(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++) {
		if (children[i] == 0) {
			children[i] = pid;
			return;
		}
	}
}

static void untrack(pid_t pid)
{
	for (int i = 0; i < MAX_CHILDREN; i++)
		if (children[i] == pid)
			children[i] = 0;
}

/* fork + exec argv with stdout/stderr on the given fds (-1: inherit). */
static pid_t spawn(char *const argv[], int out_fd, int err_fd)
{
	harness_init();
	pid_t parent = getpid();
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (out_fd >= 0)
			dup2(out_fd, 1);
		if (err_fd >= 0)
			dup2(err_fd, 2);
		execv(argv[0], argv);
		fprintf(stderr, "harness: exec %s: %s\n", argv[0],
			strerror(errno));
		_exit(127);
	}
	if (pid > 0) {
		setpgid(pid, pid);
		track(pid);
	}
	return pid;
}

/* Wait for pid up to timeout_ms; its exit status (128+N for signal N) or
 * -1 when it is still running. */
static int wait_for(pid_t pid, long timeout_ms)
{
	long deadline = now_ms() + timeout_ms;
	for (;;) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			untrack(pid);
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		}
		if (r < 0 && errno != EINTR) {
			untrack(pid);
			return -1;
		}
		if (now_ms() > deadline)
			return -1;
		sky_sleep_ms(5);
	}
}

static int terminate(pid_t pid, long grace_ms)
{
	if (pid <= 0)
		return -1;
	kill(pid, SIGTERM);
	int st = wait_for(pid, grace_ms);
	if (st < 0) {
		fprintf(stderr, "harness: pid %d ignored SIGTERM, killing\n",
			(int)pid);
		kill(-pid, SIGKILL);
		kill(pid, SIGKILL);
		st = wait_for(pid, 10000);
	}
	return st;
}

int sky_harness_free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {0};
	socklen_t len = sizeof(a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return ntohs(a.sin_port);
}

char *sky_harness_src_path(const char *rel)
{
	const char *base = getenv("SKY_TOP_SRCDIR");
	if (!base)
		base = ".";
	char *p = malloc(strlen(base) + strlen(rel) + 2);
	sprintf(p, "%s/%s", base, rel);
	return p;
}

static int port_open(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {0};
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* ---- mosquitto ---- */

static const char *mosquitto_path(void)
{
	const char *env = getenv("MOSQUITTO_BIN");
	if (env && *env)
		return env;
	if (access("/usr/sbin/mosquitto", X_OK) == 0)
		return "/usr/sbin/mosquitto";
	return "/usr/bin/mosquitto";
}

/* The end of a server's log on stderr, when a start failed. */
static void print_log_tail(const char *what, const char *path)
{
	char buf[2048];
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	/* A log shorter than buf cannot seek back that far: read it all. */
	if (fseek(f, -(long)(sizeof(buf) - 1), SEEK_END) != 0)
		rewind(f);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	fprintf(stderr, "harness: the end of %s's log (%s):\n%s%s", what, path,
		buf, n && buf[n - 1] != '\n' ? "\n" : "");
}

/* Whether the file holds `needle` after its first `from` bytes. */
static int file_has_since(const char *path, long from, const char *needle)
{
	char buf[4096];
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	int found = 0;
	if (fseek(f, from, SEEK_SET) == 0) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		found = strstr(buf, needle) != NULL;
	}
	fclose(f);
	return found;
}

static int broker_try(sky_broker *b, int port)
{
	const char *dir = sky_test_tmpdir();
	snprintf(b->conf, sizeof(b->conf), "%s/mosquitto.conf", dir);
	snprintf(b->log, sizeof(b->log), "%s/mosquitto.log", dir);
	FILE *f = fopen(b->conf, "w");
	if (!f)
		return -1;
	fprintf(f,
		"listener %d 127.0.0.1\n"
		"allow_anonymous true\n"
		"persistence false\n"
		"log_dest stderr\n"
		"log_dest topic\n"
		"log_type error\nlog_type warning\nlog_type notice\n"
		"log_type information\n"
		"connection_messages true\n",
		port);
	fclose(f);
	/* mosquitto may drop root privileges; let it read its files. */
	chmod(dir, 0755);
	chmod(b->conf, 0644);
	int logfd =
	    open(b->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	/* The log keeps earlier runs: only what this one writes counts. */
	struct stat lst;
	long from =
	    logfd >= 0 && fstat(logfd, &lst) == 0 ? (long)lst.st_size : 0;
	char *argv[] = {(char *)mosquitto_path(), "-c", b->conf, NULL};
	pid_t pid = spawn(argv, logfd, logfd);
	if (logfd >= 0)
		close(logfd);
	if (pid < 0)
		return -1;
	long deadline = now_ms() + START_WAIT_MS;
	int st = -1;
	while (now_ms() < deadline) {
		/* Its "running" line, logged once its listener is open, and
		 * not just an open port, which another process may hold. */
		if (file_has_since(b->log, from, " running") &&
		    port_open(port)) {
			b->pid = pid;
			b->port = port;
			return 0;
		}
		if ((st = wait_for(pid, 0)) >= 0)
			break; /* it exited: the port was taken? */
		sky_sleep_ms(10);
	}
	if (st < 0) {
		fprintf(stderr,
			"harness: mosquitto did not open port %d in %d s\n",
			port, START_WAIT_MS / 1000);
		terminate(pid, 2000);
	}
	return -1;
}

int sky_broker_start(sky_broker *b)
{
	if (b->port) {
		if (broker_try(b, b->port) == 0)
			return 0;
		print_log_tail("mosquitto", b->log);
		return -1;
	}
	for (int attempt = 0; attempt < 5; attempt++) {
		int port = sky_harness_free_port();
		if (port > 0 && broker_try(b, port) == 0)
			return 0;
	}
	fprintf(stderr, "harness: could not start %s\n", mosquitto_path());
	print_log_tail("mosquitto", b->log);
	return -1;
}

void sky_broker_stop(sky_broker *b)
{
	if (b->pid > 0)
		terminate(b->pid, 10000);
	b->pid = 0;
}

int sky_broker_restart(sky_broker *b)
{
	sky_broker_stop(b);
	/* The old socket may linger briefly, or another process may hold
	 * the port a moment: retry the same port for the start bound. */
	long deadline = now_ms() + START_WAIT_MS;
	do {
		if (broker_try(b, b->port) == 0)
			return 0;
		sky_sleep_ms(100);
	} while (now_ms() < deadline);
	fprintf(stderr, "harness: mosquitto did not restart on port %d\n",
		b->port);
	print_log_tail("mosquitto", b->log);
	return -1;
}

/* ---- skylight-emu ---- */

static char *emu_path(void)
{
	return sky_test_build_path("tools/skylight-emu");
}

/* Launch with e->args; wait for the line; fills port and url. */
static int emu_launch(sky_emu *e, int port)
{
	char *argv[SKY_EMU_MAX_ARGS + 8];
	char listen[64];
	int n = 0, has_listen = 0;
	char *path = emu_path();
	argv[n++] = path;
	for (int i = 0; i < e->nargs; i++) {
		if (strcmp(e->args[i], "--listen") == 0)
			has_listen = 1;
		argv[n++] = e->args[i];
	}
	if (!has_listen) {
		snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
		argv[n++] = "--listen";
		argv[n++] = listen;
	}
	if (getenv("SKY_TEST_VERBOSE"))
		argv[n++] = "-v";
	argv[n] = NULL;

	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		free(path);
		return -1;
	}
	pid_t pid = spawn(argv, fds[1], -1);
	close(fds[1]);
	free(path);
	if (pid < 0) {
		close(fds[0]);
		return -1;
	}
	char buf[512];
	size_t len = 0;
	long deadline = now_ms() + START_WAIT_MS;
	int got = -1;
	while (now_ms() < deadline && got < 0) {
		struct pollfd p = {fds[0], POLLIN, 0};
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t r = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break; /* it exited before serving */
		len += (size_t)r;
		buf[len] = '\0';
		const char *line = strstr(buf, "listening on ");
		if (line && strchr(line, '\n')) {
			const char *colon = strrchr(line, ':');
			got = colon ? atoi(colon + 1) : -1;
		}
		if (len == sizeof(buf) - 1)
			break;
	}
	close(fds[0]);
	if (got <= 0) {
		fprintf(stderr, "harness: skylight-emu did not start (%s)\n",
			len ? buf : "no output");
		terminate(pid, 2000);
		return -1;
	}
	e->pid = pid;
	e->port = got;
	snprintf(e->url, sizeof(e->url), "http://127.0.0.1:%d", got);
	return 0;
}

int sky_emu_start(sky_emu *e, const char *const *args)
{
	memset(e, 0, sizeof(*e));
	for (int i = 0; args && args[i]; i++) {
		if (e->nargs == SKY_EMU_MAX_ARGS)
			return -1;
		e->args[e->nargs++] = strdup(args[i]);
	}
	return emu_launch(e, 0);
}

int sky_emu_stop(sky_emu *e)
{
	int st = terminate(e->pid, START_WAIT_MS);
	e->pid = 0;
	return st;
}

void sky_emu_kill(sky_emu *e)
{
	if (e->pid > 0) {
		kill(e->pid, SIGKILL);
		wait_for(e->pid, 10000);
	}
	e->pid = 0;
}

int sky_emu_restart(sky_emu *e)
{
	if (e->pid > 0)
		sky_emu_stop(e);
	/* The port is free again at once (SO_REUSEADDR); retry for the
	 * start bound in case another process raced for it (a launch that
	 * finds the port taken fails at once, the emulator exiting). */
	long deadline = now_ms() + START_WAIT_MS;
	do {
		if (emu_launch(e, e->port) == 0)
			return 0;
		sky_sleep_ms(100);
	} while (now_ms() < deadline);
	fprintf(stderr, "harness: skylight-emu did not restart on port %d\n",
		e->port);
	return -1;
}

void sky_emu_free(sky_emu *e)
{
	for (int i = 0; i < e->nargs; i++)
		free(e->args[i]);
	e->nargs = 0;
}

int sky_emu_run(const char *const *args, char **out)
{
	char *argv[SKY_EMU_MAX_ARGS + 2];
	int n = 0;
	char *path = emu_path();
	argv[n++] = path;
	for (int i = 0; args[i] && n < SKY_EMU_MAX_ARGS; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0) {
		free(path);
		return -1;
	}
	pid_t pid = spawn(argv, fds[1], fds[1]);
	close(fds[1]);
	free(path);
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t r;
	while ((r = read(fds[0], buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (cap - len < 2)
			buf = realloc(buf, cap *= 2);
	}
	buf[len] = '\0';
	close(fds[0]);
	int st = pid > 0 ? wait_for(pid, 20000) : -1;
	if (out)
		*out = buf;
	else
		free(buf);
	return st;
}

/* ---- HTTP ---- */

static long http_timeout_ms = 20000;

void sky_http_set_timeout(long ms)
{
	http_timeout_ms = ms;
}

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	sky_http_res *res = arg;
	size_t add = size * n;
	char *b = realloc(res->body, res->len + add + 1);
	if (!b)
		return 0;
	memcpy(b + res->len, p, add);
	res->len += add;
	b[res->len] = '\0';
	res->body = b;
	return add;
}

static void header_value(const char *line, size_t n, const char *name,
			 char *out, size_t cap)
{
	size_t k = strlen(name);
	if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':')
		return;
	const char *v = line + k + 1;
	size_t vlen = n - k - 1;
	while (vlen && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n'))
		vlen--;
	if (vlen >= cap)
		vlen = cap - 1;
	memcpy(out, v, vlen);
	out[vlen] = '\0';
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
	sky_http_res *res = arg;
	header_value(p, size * n, "Retry-After", res->retry_after,
		     sizeof(res->retry_after));
	header_value(p, size * n, "Allow", res->allow, sizeof(res->allow));
	return size * n;
}

long sky_http(const char *url, const char *method, const char *path,
	      const char *body, const char *bearer, sky_http_res *res)
{
	harness_init();
	memset(res, 0, sizeof(*res));
	res->body = calloc(1, 1);
	char full[8192], auth[8192];
	snprintf(full, sizeof(full), "%s%s", url, path);
	CURL *c = curl_easy_init();
	struct curl_slist *h = NULL;
	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Expect:");
	if (bearer) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
			 bearer);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, full);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FORBID_REUSE, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, http_timeout_ms);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, res);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, res);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	CURLcode rc = curl_easy_perform(c);
	res->curl_code = (int)rc;
	if (rc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &res->status);
		res->json =
		    json_loadb(res->body, res->len, JSON_DECODE_ANY, NULL);
	}
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return res->status;
}

void sky_http_res_free(sky_http_res *res)
{
	free(res->body);
	json_decref(res->json);
	memset(res, 0, sizeof(*res));
}

char *sky_emu_login(const sky_emu *e, const char *user, const char *password,
		    char **refresh)
{
	char body[512], path[128];
	sky_http_res res;
	snprintf(body, sizeof(body),
		 "{\"username\":\"%s\",\"password\":\"%s\",\"realm\":\"demo\"}",
		 user, password);
	snprintf(path, sizeof(path), "/v1/authentication/login/realms/demo");
	sky_http(e->url, "POST", path, body, NULL, &res);
	char *tok = NULL;
	const char *a =
	    json_string_value(json_object_get(res.json, "access_token"));
	const char *r =
	    json_string_value(json_object_get(res.json, "refresh_token"));
	if (res.status == 200 && a) {
		tok = strdup(a);
		if (refresh)
			*refresh = r ? strdup(r) : NULL;
	}
	sky_http_res_free(&res);
	return tok;
}

/* ---- MQTT subscriber ---- */

struct sub_msg {
	char *topic;
	char *payload;
};

struct sky_sub {
	struct mosquitto *m;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *topic;
	struct sub_msg *msgs;
	size_t n, cap;
	int subscribed;
	unsigned connects, disconnects;
};

static void sub_on_connect(struct mosquitto *m, void *arg, int rc)
{
	sky_sub *s = arg;
	if (rc != 0)
		return;
	pthread_mutex_lock(&s->lock);
	s->connects++;
	pthread_mutex_unlock(&s->lock);
	/* Subscribe again on every connect: sessions are clean. */
	mosquitto_subscribe(m, NULL, s->topic, 1);
}

static void sub_on_subscribe(struct mosquitto *m, void *arg, int mid,
			     int qos_count, const int *granted)
{
	(void)m;
	(void)mid;
	(void)qos_count;
	(void)granted;
	sky_sub *s = arg;
	pthread_mutex_lock(&s->lock);
	s->subscribed = 1;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void sub_on_disconnect(struct mosquitto *m, void *arg, int rc)
{
	(void)m;
	(void)rc;
	sky_sub *s = arg;
	pthread_mutex_lock(&s->lock);
	s->disconnects++;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static void sub_on_message(struct mosquitto *m, void *arg,
			   const struct mosquitto_message *msg)
{
	(void)m;
	sky_sub *s = arg;
	pthread_mutex_lock(&s->lock);
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct sub_msg *p = realloc(s->msgs, cap * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->lock);
			return;
		}
		s->msgs = p;
		s->cap = cap;
	}
	struct sub_msg *x = &s->msgs[s->n++];
	x->topic = strdup(msg->topic);
	x->payload = malloc((size_t)msg->payloadlen + 1);
	memcpy(x->payload, msg->payload, (size_t)msg->payloadlen);
	x->payload[msg->payloadlen] = '\0';
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
}

static int wait_cond(sky_sub *s, int (*done)(sky_sub *, size_t), size_t arg,
		     int timeout_ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	int ok = 0;
	pthread_mutex_lock(&s->lock);
	while (!(ok = done(s, arg)))
		if (pthread_cond_timedwait(&s->cond, &s->lock, &until) ==
		    ETIMEDOUT)
			break;
	ok = done(s, arg);
	pthread_mutex_unlock(&s->lock);
	return ok ? 0 : -1;
}

static int is_subscribed(sky_sub *s, size_t unused)
{
	(void)unused;
	return s->subscribed;
}

static int has_count(sky_sub *s, size_t count)
{
	return s->n >= count;
}

sky_sub *sky_sub_start(int port, const char *client_id, const char *topic)
{
	harness_init();
	sky_sub *s = calloc(1, sizeof(*s));
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	s->topic = strdup(topic);
	s->m = mosquitto_new(client_id, true, s);
	if (!s->m)
		goto fail;
	mosquitto_connect_callback_set(s->m, sub_on_connect);
	mosquitto_subscribe_callback_set(s->m, sub_on_subscribe);
	mosquitto_disconnect_callback_set(s->m, sub_on_disconnect);
	mosquitto_message_callback_set(s->m, sub_on_message);
	mosquitto_reconnect_delay_set(s->m, 1, 1, false);
	if (mosquitto_connect(s->m, "127.0.0.1", port, 30) !=
		MOSQ_ERR_SUCCESS ||
	    mosquitto_loop_start(s->m) != MOSQ_ERR_SUCCESS)
		goto fail;
	if (wait_cond(s, is_subscribed, 0, START_WAIT_MS) < 0) {
		fprintf(stderr, "harness: no SUBACK for %s\n", topic);
		sky_sub_stop(s);
		return NULL;
	}
	return s;
fail:
	if (s->m)
		mosquitto_destroy(s->m);
	free(s->topic);
	free(s);
	return NULL;
}

void sky_sub_clear(sky_sub *s)
{
	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < s->n; i++) {
		free(s->msgs[i].topic);
		free(s->msgs[i].payload);
	}
	s->n = 0;
	pthread_mutex_unlock(&s->lock);
}

void sky_sub_stop(sky_sub *s)
{
	if (!s)
		return;
	mosquitto_disconnect(s->m);
	mosquitto_loop_stop(s->m, false);
	mosquitto_destroy(s->m);
	sky_sub_clear(s);
	free(s->msgs);
	free(s->topic);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->cond);
	free(s);
}

size_t sky_sub_count(sky_sub *s)
{
	pthread_mutex_lock(&s->lock);
	size_t n = s->n;
	pthread_mutex_unlock(&s->lock);
	return n;
}

int sky_sub_wait(sky_sub *s, size_t count, int timeout_ms)
{
	return wait_cond(s, has_count, count, timeout_ms);
}

int sky_sub_get(sky_sub *s, size_t i, char **topic, char **payload)
{
	int rc = -1;
	pthread_mutex_lock(&s->lock);
	if (i < s->n) {
		if (topic)
			*topic = strdup(s->msgs[i].topic);
		if (payload)
			*payload = strdup(s->msgs[i].payload);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

json_t *sky_sub_json(sky_sub *s, size_t i)
{
	char *payload = NULL;
	if (sky_sub_get(s, i, NULL, &payload) < 0)
		return NULL;
	json_t *j = json_loads(payload, 0, NULL);
	free(payload);
	return j;
}

unsigned sky_sub_disconnects(sky_sub *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = s->disconnects;
	pthread_mutex_unlock(&s->lock);
	return n;
}

unsigned sky_sub_connects(sky_sub *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = s->connects;
	pthread_mutex_unlock(&s->lock);
	return n;
}
