/*
 * bench_emu.c - how many requests per second skylight-emu serves on
 * loopback, so the sync benchmarks know their ceiling.
 *
 * It starts tools/skylight-emu (without a broker unless --broker is
 * given, so publishing is measured only when asked), logs in, then drives
 * it with libcurl's multi interface: C concurrent kept-alive connections,
 * each sending its next request as soon as the previous answer arrived,
 * for D seconds per phase:
 *
 *   get    GET  /v1/applications/{app}/sessions/{sid}   (seeded sessions)
 *   patch  PATCH /v1/applications/{app}/sessions/{sid}/data  (small patch)
 *
 * Output: one line per phase with requests, req/s and latency percentiles,
 * then the same as one JSON object per line (for scripts).
 *
 *   bench/bench_emu [--emu PATH] [--seed FILE] [--seconds D] [--conns C]
 *                   [--broker HOST:PORT] [--quick]
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#define MAX_CONNS 256

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t emu_pid;

static void stop_emu(void)
{
	if (emu_pid > 0) {
		kill(emu_pid, SIGTERM);
		waitpid(emu_pid, NULL, 0);
		emu_pid = 0;
	}
}

/* Start the emulator and wait for its "listening on" line, its exit, or
 * 30 s (generous: a busy machine is slow to start a process, and its
 * stderr, this program's, says why it failed); its port, or -1. */
static int start_emu(const char *path, const char *seed, const char *broker)
{
	int fds[2];
	if (pipe(fds) < 0)
		return -1;
	emu_pid = fork();
	if (emu_pid == 0) {
		dup2(fds[1], 1);
		close(fds[0]);
		close(fds[1]);
		if (broker)
			execl(path, path, "--listen", "127.0.0.1:0", "--seed",
			      seed, "--broker", broker, (char *)NULL);
		else
			execl(path, path, "--listen", "127.0.0.1:0", "--seed",
			      seed, (char *)NULL);
		perror(path);
		_exit(127);
	}
	close(fds[1]);
	atexit(stop_emu);
	char buf[256];
	size_t len = 0;
	int port = -1;
	double deadline = now_s() + 30;
	while (port < 0 && len < sizeof(buf) - 1) {
		struct pollfd p = {fds[0], POLLIN, 0};
		int left_ms = (int)((deadline - now_s()) * 1000);
		int pr = left_ms > 0 ? poll(&p, 1, left_ms) : 0;
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			break;
		ssize_t r = read(fds[0], buf + len, sizeof(buf) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		buf[len] = '\0';
		char *l = strstr(buf, "listening on ");
		if (l && strchr(l, '\n'))
			port = atoi(strrchr(l, ':') + 1);
	}
	close(fds[0]);
	return port;
}

struct sink {
	char *data;
	size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
	struct sink *s = arg;
	size_t add = size * n;
	char *d = realloc(s->data, s->len + add + 1);
	if (!d)
		return 0;
	memcpy(d + s->len, p, add);
	s->len += add;
	d[s->len] = '\0';
	s->data = d;
	return add;
}

/* One blocking request; the parsed answer or NULL. */
static json_t *request(const char *url, const char *method, const char *body,
		       const char *bearer)
{
	CURL *c = curl_easy_init();
	struct sink s = {NULL, 0};
	struct curl_slist *h =
	    curl_slist_append(NULL, "Content-Type: application/json");
	char auth[4096];
	if (bearer) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s",
			 bearer);
		h = curl_slist_append(h, auth);
	}
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	json_t *j = NULL;
	if (curl_easy_perform(c) == CURLE_OK && s.data)
		j = json_loads(s.data, 0, NULL);
	free(s.data);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return j;
}

struct conn {
	CURL *easy;
	struct curl_slist *headers;
	struct sink sink;
	unsigned next;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct result {
	const char *name;
	unsigned long ok, failed;
	double seconds, rps, p50_ms, p99_ms;
};

/* Drive `conns` connections for `seconds`: GET (patch == 0) or PATCH. */
static struct result run_phase(const char *name, const char *base,
			       const char *bearer, char **sids, size_t nsids,
			       int conns, double seconds, int patch)
{
	struct result res = {name, 0, 0, 0, 0, 0, 0};
	CURLM *m = curl_multi_init();
	struct conn *cs = calloc((size_t)conns, sizeof(*cs));
	size_t lat_cap = 1 << 20, nlat = 0;
	double *lat = malloc(lat_cap * sizeof(double));
	char auth[4096], url[1024];
	snprintf(auth, sizeof(auth), "Authorization: Bearer %s", bearer);
	static const char *body = "{\"bench\":{\"n\":1,\"tag\":\"x\"}}";

	for (int i = 0; i < conns; i++) {
		struct conn *c = &cs[i];
		c->easy = curl_easy_init();
		c->headers =
		    curl_slist_append(NULL, "Content-Type: application/json");
		c->headers = curl_slist_append(c->headers, auth);
		c->next = (unsigned)i;
		curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->headers);
		curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, on_data);
		curl_easy_setopt(c->easy, CURLOPT_WRITEDATA, &c->sink);
		curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
		curl_easy_setopt(c->easy, CURLOPT_CUSTOMREQUEST,
				 patch ? "PATCH" : "GET");
		if (patch)
			curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
		snprintf(url, sizeof(url), "%s/%s%s", base,
			 sids[c->next % nsids], patch ? "/data" : "");
		curl_easy_setopt(c->easy, CURLOPT_URL, url);
		curl_multi_add_handle(m, c->easy);
	}
	double start = now_s(), end = start + seconds;
	int running = 1;
	while (now_s() < end) {
		curl_multi_perform(m, &running);
		int left;
		CURLMsg *msg;
		while ((msg = curl_multi_info_read(m, &left))) {
			if (msg->msg != CURLMSG_DONE)
				continue;
			CURL *e = msg->easy_handle;
			struct conn *c;
			long status = 0;
			curl_off_t t_us = 0;
			curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&c);
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
			curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &t_us);
			if (msg->data.result == CURLE_OK && status == 200) {
				res.ok++;
				if (nlat < lat_cap)
					lat[nlat++] = (double)t_us / 1000.0;
			} else {
				res.failed++;
			}
			free(c->sink.data);
			c->sink.data = NULL;
			c->sink.len = 0;
			curl_multi_remove_handle(m, e);
			c->next += (unsigned)conns;
			snprintf(url, sizeof(url), "%s/%s%s", base,
				 sids[c->next % nsids], patch ? "/data" : "");
			curl_easy_setopt(e, CURLOPT_URL, url);
			curl_multi_add_handle(m, e);
		}
		curl_multi_poll(m, NULL, 0, 50, NULL);
	}
	res.seconds = now_s() - start;
	res.rps = (double)res.ok / res.seconds;
	if (nlat) {
		qsort(lat, nlat, sizeof(double), cmp_double);
		res.p50_ms = lat[nlat / 2];
		res.p99_ms = lat[(size_t)((double)nlat * 0.99)];
	}
	for (int i = 0; i < conns; i++) {
		curl_multi_remove_handle(m, cs[i].easy);
		curl_easy_cleanup(cs[i].easy);
		curl_slist_free_all(cs[i].headers);
		free(cs[i].sink.data);
	}
	curl_multi_cleanup(m);
	free(cs);
	free(lat);
	return res;
}

static void usage(void)
{
	fputs("usage: bench_emu [--emu PATH] [--seed FILE] [--seconds D] "
	      "[--conns C]\n                 [--broker HOST:PORT] [--quick]\n",
	      stderr);
	exit(1);
}

int main(int argc, char **argv)
{
	const char *emu = "tools/skylight-emu";
	const char *seed = NULL;
	const char *broker = NULL;
	double seconds = 5;
	int conns = 8;
	char seed_buf[4096];
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--emu") && i + 1 < argc)
			emu = argv[++i];
		else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
			seed = argv[++i];
		else if (!strcmp(argv[i], "--broker") && i + 1 < argc)
			broker = argv[++i];
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--conns") && i + 1 < argc)
			conns = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--quick"))
			seconds = 1;
		else
			usage();
	}
	if (conns < 1 || conns > MAX_CONNS || seconds <= 0)
		usage();
	if (!seed) {
		const char *src = getenv("SKY_TOP_SRCDIR");
		snprintf(seed_buf, sizeof(seed_buf),
			 "%s/tools/examples/realm.json", src ? src : ".");
		if (access(seed_buf, R_OK) != 0)
			snprintf(seed_buf, sizeof(seed_buf),
				 "%s/tools/examples/realm.json", SKY_SRCDIR);
		seed = seed_buf;
	}
	signal(SIGPIPE, SIG_IGN);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int port = start_emu(emu, seed, broker);
	if (port <= 0) {
		fprintf(stderr, "bench_emu: %s did not start (seed %s)\n", emu,
			seed);
		return 2;
	}
	char url[256], base[256];
	snprintf(url, sizeof(url),
		 "http://127.0.0.1:%d/v1/authentication/login/realms/demo",
		 port);
	json_t *login = request(url, "POST",
				"{\"username\":\"integration\",\"password\":"
				"\"integration-pass\",\"realm\":\"demo\"}",
				NULL);
	const char *tok =
	    json_string_value(json_object_get(login, "access_token"));
	if (!tok) {
		fprintf(stderr, "bench_emu: login failed\n");
		return 2;
	}
	snprintf(base, sizeof(base),
		 "http://127.0.0.1:%d/v1/applications/app-inspections/sessions",
		 port);
	json_t *list = request(base, "GET", NULL, tok);
	size_t n = json_array_size(list);
	if (!n) {
		fprintf(stderr, "bench_emu: no sessions to read\n");
		return 2;
	}
	char **sids = calloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++)
		sids[i] = strdup(json_string_value(
		    json_object_get(json_array_get(list, i), "sessionId")));

	printf(
	    "skylight-emu on 127.0.0.1:%d, %d connections, %.0f s per phase, "
	    "%s\n",
	    port, conns, seconds,
	    broker ? "publishing to the broker" : "no broker");
	struct result r[2];
	r[0] = run_phase("get", base, tok, sids, n, conns, seconds, 0);
	r[1] = run_phase("patch", base, tok, sids, n, conns, seconds, 1);
	printf("%-6s %10s %8s %10s %9s %9s\n", "phase", "requests", "failed",
	       "req/s", "p50 ms", "p99 ms");
	for (int i = 0; i < 2; i++)
		printf("%-6s %10lu %8lu %10.0f %9.3f %9.3f\n", r[i].name,
		       r[i].ok, r[i].failed, r[i].rps, r[i].p50_ms,
		       r[i].p99_ms);
	for (int i = 0; i < 2; i++)
		printf("{\"bench\":\"emu\",\"phase\":\"%s\",\"conns\":%d,"
		       "\"requests\":%lu,\"failed\":%lu,\"rps\":%.1f,"
		       "\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
		       r[i].name, conns, r[i].ok, r[i].failed, r[i].rps,
		       r[i].p50_ms, r[i].p99_ms);
	for (size_t i = 0; i < n; i++)
		free(sids[i]);
	free(sids);
	json_decref(list);
	json_decref(login);
	stop_emu();
	curl_global_cleanup();
	return r[0].failed || r[1].failed ? 1 : 0;
}
