/*
 * main.c - skylight-emu: arguments, logging, signals, and the order in
 * which the modules start and stop.
 *
 * Start: faults (so --fault errors are reported before anything binds),
 * state, realm (from --state when it holds one, else from --seed, then
 * saved to --state), tokens, HTTP listener, broker connection; then the
 * `listening on HOST:PORT` line is printed and flushed, and only then is
 * the server ready (a test waiting for the line can call at once).
 * Stop (SIGTERM, SIGINT): the loop ends; held requests are dropped, events
 * on timers are published, the broker is told goodbye, state is synced to
 * disk, and everything is freed so leak checkers see a clean exit.
 *
 * Exit status: 0 after a signal, 1 for bad arguments, 2 when the server
 * cannot start (seed, state, listener).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <mosquitto.h>

#include "admin.h"
#include "api.h"
#include "auth.h"
#include "emu.h"
#include "faults.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "protocol.h"
#include "publish.h"
#include "rand.h"
#include "realm.h"
#include "skysync.h"
#include "state.h"
#include "util.h"

/* Kept in step with skylight-emu.1 (same options, same words);
 * tests/test_cli.sh compares their option lists. */
static const char usage_text[] =
    "usage: skylight-emu [--listen HOST:PORT] [--broker HOST:PORT]\n"
    "                    [--seed FILE] [--state DIR] [--token-ttl S]\n"
    "                    [--refresh-ttl S] [--fault SPEC]... [--seed-random "
    "N]\n"
    "                    [--protocol FILE] [--allow-remote] [-v] [--help]\n"
    "\n"
    "A local Skylight server (REST API + MQTT events) for tests and demos.\n"
    "\n"
    "  --listen HOST:PORT   serve HTTP on this address (default 127.0.0.1:0;\n"
    "                       port 0 picks a free port); only loopback\n"
    "                       addresses (127.0.0.0/8, [::1], localhost)\n"
    "  --broker HOST:PORT   publish events to this MQTT broker (mosquitto;\n"
    "                       an mqtt:// prefix is allowed), retried in the\n"
    "                       background; without it no events are published\n"
    "  --seed FILE          the realm to start from (JSON, see README.md);\n"
    "                       required unless --state already holds a realm\n"
    "  --state DIR          keep the realm and the tokens in LMDB in DIR\n"
    "                       across restarts; a realm there is loaded and the\n"
    "                       seed ignored (default: in memory)\n"
    "  --token-ttl S        access token lifetime in seconds (default 3600)\n"
    "  --refresh-ttl S      refresh token lifetime in seconds (default 86400)\n"
    "  --fault SPEC         install a fault, KIND[:KEY=VALUE,...]; repeatable\n"
    "                       kinds: refuse reset drop delay error throttle\n"
    "                       expire (HTTP requests); event-delay event-dup\n"
    "                       event-reorder event-drop mqtt-drop (events)\n"
    "                       keys: p next skip path method code ms bytes retry\n"
    "  --seed-random N      seed of the random draws of faults with p < 1,\n"
    "                       for repeatable runs (default: random, shown by "
    "-v)\n"
    "  --protocol FILE      serve the REST paths, topics and eventType\n"
    "                       strings of this protocol file (docs/PROTOCOL.md,\n"
    "                       `skysync protocol`) instead of the built-in ones\n"
    "  --allow-remote       accept a --listen address that is not loopback\n"
    "                       (the emulator has no real security)\n"
    "  -v, --verbose        log one line per request (method, path, status,\n"
    "                       ms, fault) and broker events to stderr; never\n"
    "                       passwords, tokens or bodies\n"
    "  -h, --help           show this help and exit\n"
    "\n"
    "Prints \"listening on HOST:PORT\" on stdout once it serves. Admin\n"
    "endpoints live under /_admin/ on the same listener. SIGTERM or SIGINT\n"
    "stop it cleanly. Exit status: 0 after a signal, 1 for bad arguments,\n"
    "2 when the server cannot start.\n";

/* "HOST:PORT", "[v6]:PORT" or "mqtt://HOST:PORT"; 0 or -1. */
static int parse_hostport(const char *arg, char *host, size_t hostcap,
			  int *port)
{
	if (strncmp(arg, "mqtt://", 7) == 0)
		arg += 7;
	const char *colon = strrchr(arg, ':');
	if (!colon || colon == arg)
		return -1;
	const char *h = arg;
	size_t hlen = (size_t)(colon - arg);
	if (h[0] == '[' && hlen >= 2 && h[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= hostcap)
		return -1;
	char *end;
	errno = 0;
	long p = strtol(colon + 1, &end, 10);
	if (errno || end == colon + 1 || *end || p < 0 || p > 65535)
		return -1;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (int)p;
	return 0;
}

static int parse_seconds(const char *arg, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(arg, &end, 10);
	if (errno || end == arg || *end || v < 1 || v > 10LL * 365 * 86400)
		return -1;
	*out = v;
	return 0;
}

static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("skylight-emu: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputs("\n(try --help)\n", stderr);
	va_end(ap);
	return 1;
}

/* The server's routes: the admin endpoints first, the API takes the rest. */
static const emu_route routes[] = {
    {"/_admin", emu_admin_handle, 1},
    {"/", emu_api_handle, 0},
};

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	struct emu *emu = arg;
	emu_log(emu, "signal %d: shutting down", (int)sig);
	event_base_loopbreak(emu->base);
}

static json_t *read_seed(const char *path, char *err, size_t errlen)
{
	/* Read whole, then the core's parser: a seed holds what a server
	 * holds, \u0000 in strings and numbers beyond 64 bits included. */
	json_error_t e;
	sky_buf text = SKY_BUF_INIT;
	char chunk[65536];
	size_t n;
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return NULL;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		if (sky__buf_append(&text, chunk, n) < 0)
			break;
	if (ferror(f) || n > 0) {
		snprintf(err, errlen, "%s: cannot read it", path);
		fclose(f);
		sky__buf_free(&text);
		return NULL;
	}
	fclose(f);
	json_t *seed = sky__json_loadb(text.data ? text.data : "", text.len,
				       JSON_REJECT_DUPLICATES, &e);
	sky__buf_free(&text);
	if (!seed)
		snprintf(err, errlen, "%s:%d: %s", path, e.line, e.text);
	return seed;
}

/* Load the realm from --state or --seed (saving it to --state). */
static int load_realm(struct emu *emu, char *err, size_t errlen)
{
	json_t *seed = NULL, *tokens = NULL;
	int from_state = emu->state && emu_state_has_realm(emu->state);
	if (from_state) {
		if (emu_state_load(emu->state, &seed, &tokens, err, errlen) < 0)
			return -1;
	} else {
		if (!emu->cfg.seed_path) {
			snprintf(err, errlen,
				 "--seed FILE is required (no "
				 "realm in --state yet)");
			return -1;
		}
		if (!(seed = read_seed(emu->cfg.seed_path, err, errlen)))
			return -1;
	}
	int rc = emu_realm_load(&emu->realm, seed, err, errlen);
	json_decref(seed);
	if (rc < 0) {
		json_decref(tokens);
		return -1;
	}
	if (emu->state && !from_state) {
		json_t *all = emu_realm_export(emu->realm);
		rc = all ? emu_state_save_seed(emu->state, all) : -1;
		json_decref(all);
		if (rc < 0) {
			snprintf(err, errlen, "cannot save the realm to %s",
				 emu->cfg.state_dir);
			return -1;
		}
	}
	emu_log(emu, "realm %s: %zu sessions (from %s)",
		emu_realm_name(emu->realm), emu_realm_session_count(emu->realm),
		from_state ? emu->cfg.state_dir : emu->cfg.seed_path);
	if (emu_auth_new(&emu->auth, emu) < 0) {
		json_decref(tokens);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (tokens)
		emu_auth_adopt(emu->auth, tokens);
	return 0;
}

static void shutdown_all(struct emu *emu)
{
	emu_http_free(emu->http);
	emu_pub_close(emu->pub);
	emu_auth_free(emu->auth);
	emu_realm_free(emu->realm);
	emu_state_close(emu->state);
	emu_faults_free(emu->faults);
	sky__protocol_free(emu->proto);
	if (emu->base)
		event_base_free(emu->base);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"broker", required_argument, NULL, 'b'},
	    {"seed", required_argument, NULL, 's'},
	    {"state", required_argument, NULL, 'S'},
	    {"token-ttl", required_argument, NULL, 't'},
	    {"refresh-ttl", required_argument, NULL, 'r'},
	    {"fault", required_argument, NULL, 'f'},
	    {"seed-random", required_argument, NULL, 'R'},
	    {"protocol", required_argument, NULL, 'P'},
	    {"allow-remote", no_argument, NULL, 'A'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	struct emu emu;
	const char **fault_specs = NULL;
	size_t n_faults = 0;
	char err[512];
	int status = 2;
	memset(&emu, 0, sizeof(emu));
	snprintf(emu.cfg.listen_host, sizeof(emu.cfg.listen_host), "127.0.0.1");
	emu.cfg.token_ttl_s = 3600;
	emu.cfg.refresh_ttl_s = 86400;

	int c;
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			if (parse_hostport(optarg, emu.cfg.listen_host,
					   sizeof(emu.cfg.listen_host),
					   &emu.cfg.listen_port) < 0)
				return usage_error(
				    "--listen %s: expected HOST:PORT", optarg);
			break;
		case 'b':
			if (parse_hostport(optarg, emu.cfg.broker_host,
					   sizeof(emu.cfg.broker_host),
					   &emu.cfg.broker_port) < 0 ||
			    emu.cfg.broker_port == 0)
				return usage_error(
				    "--broker %s: expected HOST:PORT", optarg);
			break;
		case 's': emu.cfg.seed_path = optarg; break;
		case 'S': emu.cfg.state_dir = optarg; break;
		case 't':
			if (parse_seconds(optarg, &emu.cfg.token_ttl_s) < 0)
				return usage_error("--token-ttl %s: expected "
						   "seconds >= 1",
						   optarg);
			break;
		case 'r':
			if (parse_seconds(optarg, &emu.cfg.refresh_ttl_s) < 0)
				return usage_error("--refresh-ttl %s: expected "
						   "seconds >= 1",
						   optarg);
			break;
		case 'f': {
			const char **p =
			    realloc(fault_specs, (n_faults + 1) * sizeof(*p));
			if (!p)
				return 2;
			fault_specs = p;
			fault_specs[n_faults++] = optarg;
			break;
		}
		case 'R': {
			char *end;
			errno = 0;
			emu.cfg.random_seed = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end) {
				free(fault_specs);
				return usage_error("--seed-random %s: expected "
						   "an integer",
						   optarg);
			}
			emu.cfg.have_random_seed = 1;
			break;
		}
		case 'P': emu.cfg.protocol_path = optarg; break;
		case 'A': emu.cfg.allow_remote = 1; break;
		case 'v': emu.cfg.verbose = 1; break;
		case 'h':
			fputs(usage_text, stdout);
			free(fault_specs);
			return 0;
		default: free(fault_specs); return usage_error("bad arguments");
		}
	}
	if (optind < argc) {
		free(fault_specs);
		return usage_error("unexpected argument '%s'", argv[optind]);
	}
	if (emu.cfg.protocol_path &&
	    sky__protocol_load(emu.cfg.protocol_path, &emu.proto) < 0) {
		free(fault_specs);
		return usage_error("--protocol: %s", sky_error_last()->message);
	}
	if (!emu.cfg.have_random_seed)
		emu_random_bytes(&emu.cfg.random_seed,
				 sizeof(emu.cfg.random_seed));

	/* Sockets to clients that went away must not kill the server. */
	signal(SIGPIPE, SIG_IGN);
	if (emu_faults_new(&emu.faults, emu.cfg.random_seed) < 0) {
		free(fault_specs);
		return 2;
	}
	for (size_t i = 0; i < n_faults; i++) {
		if (emu_faults_add_spec(emu.faults, fault_specs[i], NULL, err,
					sizeof(err)) < 0) {
			usage_error("--fault %s: %s", fault_specs[i], err);
			free(fault_specs);
			emu_faults_free(emu.faults);
			return 1;
		}
	}
	free(fault_specs);
	emu_log(&emu, "fault draws seeded with %llu (--seed-random)",
		(unsigned long long)emu.cfg.random_seed);

	mosquitto_lib_init();
	struct event *sigterm = NULL, *sigint = NULL;
	emu.base = event_base_new();
	if (!emu.base) {
		emu_warn("cannot create the event loop");
		goto done;
	}
	if (emu.cfg.state_dir && emu_state_open(&emu.state, emu.cfg.state_dir,
						err, sizeof(err)) < 0) {
		emu_warn("--state: %s", err);
		goto done;
	}
	if (load_realm(&emu, err, sizeof(err)) < 0) {
		emu_warn("%s", err);
		goto done;
	}
	if (emu_http_start(&emu.http, &emu, routes,
			   sizeof(routes) / sizeof(routes[0]), err,
			   sizeof(err)) < 0) {
		emu_warn("%s", err);
		goto done;
	}
	if (emu.cfg.broker_port) {
		if (emu_pub_open(&emu.pub, &emu) < 0) {
			emu_warn("cannot set up the MQTT client");
			goto done;
		}
	} else {
		emu_log(&emu, "no --broker: events are not published");
	}
	sigterm = evsignal_new(emu.base, SIGTERM, on_signal, &emu);
	sigint = evsignal_new(emu.base, SIGINT, on_signal, &emu);
	if (!sigterm || !sigint || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0) {
		emu_warn("cannot install signal handlers");
		goto done;
	}
	if (strchr(emu.cfg.listen_host, ':'))
		printf("listening on [%s]:%d\n", emu.cfg.listen_host,
		       emu_http_port(emu.http));
	else
		printf("listening on %s:%d\n", emu.cfg.listen_host,
		       emu_http_port(emu.http));
	fflush(stdout);

	event_base_dispatch(emu.base);
	status = 0;
done:
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	shutdown_all(&emu);
	mosquitto_lib_cleanup();
	libevent_global_shutdown();
	return status;
}
