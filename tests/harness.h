/*
 * harness.h - integration test harness: a real mosquitto broker and a real
 * skylight-emu, started as child processes on free loopback ports, with
 * helpers to call the emulator over HTTP (libcurl) and to collect what it
 * publishes over MQTT (libmosquitto).
 *
 * Every child runs in its own process group, dies with the test program
 * (PR_SET_PDEATHSIG), and is killed at exit (atexit) and on fatal signals,
 * so a failing or crashing test never leaves servers behind.
 *
 * Environment: $MOSQUITTO_BIN (set by make check; else /usr/sbin/mosquitto
 * or mosquitto on $PATH), $SKY_TOP_BUILDDIR (to find tools/skylight-emu),
 * $SKY_TOP_SRCDIR (to find tools/examples/realm.json), SKY_TEST_VERBOSE=1
 * (run the emulator with -v; its log goes to the test's stderr).
 */
#ifndef SKY_HARNESS_H
#define SKY_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

/* A free TCP port on 127.0.0.1 (bound and released; racy but short). */
int sky_harness_free_port(void);

/* $SKY_TOP_SRCDIR/rel (default "."); free with free(). */
char *sky_harness_src_path(const char *rel);

/* ---- mosquitto ---- */

typedef struct {
	pid_t pid;
	int port;
	char conf[512]; /* generated mosquitto.conf */
	char log[512];	/* its stderr */
} sky_broker;

/*
 * Start mosquitto on a free port (or b->port when it is not 0, e.g. for
 * a restart) with a generated config: listener on 127.0.0.1, anonymous
 * clients, no persistence, connection notices on $SYS/broker/log/N (which
 * the emulator's mqtt-drop uses). Waits until it accepts connections
 * or exits (30 s at most); on a failure its log goes to stderr. A port
 * another process holds is retried: a new free port (5 tries) when
 * b->port is 0, the same port for 30 s on a restart. Returns 0 or -1.
 */
int sky_broker_start(sky_broker *b);
/* SIGTERM and wait (SIGKILL after 10 s). */
void sky_broker_stop(sky_broker *b);
/* Stop, then start again on the same port. */
int sky_broker_restart(sky_broker *b);

/* ---- skylight-emu ---- */

#define SKY_EMU_MAX_ARGS 48

typedef struct {
	pid_t pid;
	int port;		      /* HTTP port */
	char url[64];		      /* "http://127.0.0.1:PORT" */
	char *args[SKY_EMU_MAX_ARGS]; /* the extra arguments (owned) */
	int nargs;
} sky_emu;

/*
 * Start tools/skylight-emu with `args` (NULL-terminated; e.g. "--seed",
 * path, "--broker", "127.0.0.1:1883") plus --listen 127.0.0.1:0 unless
 * args has --listen, and wait for its "listening on" line or its exit
 * (30 s at most; its stderr is the test's). Returns 0 or -1.
 */
int sky_emu_start(sky_emu *e, const char *const *args);
/* SIGTERM and wait (SIGKILL after 30 s); returns the exit status (or -1;
 * 128+N for signal N). */
int sky_emu_stop(sky_emu *e);
/* SIGKILL and wait (a crash). */
void sky_emu_kill(sky_emu *e);
/* Start again with the same arguments on the same port (retried for 30 s
 * while another process holds it). */
int sky_emu_restart(sky_emu *e);
/* Forget the arguments (after the emulator is stopped). */
void sky_emu_free(sky_emu *e);

/*
 * Run tools/skylight-emu with `args` to completion (for --help and bad
 * arguments); returns its exit status and, if out is not NULL, its stdout
 * and stderr together (free with free()).
 */
int sky_emu_run(const char *const *args, char **out);

/* ---- HTTP ---- */

typedef struct {
	long status;   /* HTTP status; 0 when the transfer failed */
	int curl_code; /* CURLcode of the transfer */
	char *body;    /* NUL-terminated (maybe ""), owned */
	size_t len;
	char retry_after[32]; /* the Retry-After header, or "" */
	char allow[64];	      /* the Allow header, or "" */
	json_t *json;	      /* body parsed as JSON, or NULL */
} sky_http_res;

/* Transfers time out after this many ms (default 20000). */
void sky_http_set_timeout(long ms);

/*
 * One request on a fresh connection: `method` to url + `path` (sent as is,
 * no dot-segment squashing), `body` (NULL: none) with Content-Type
 * application/json, `bearer` (NULL: no Authorization header). Returns
 * res->status (0 when the transfer failed; res->curl_code says why).
 */
long sky_http(const char *url, const char *method, const char *path,
	      const char *body, const char *bearer, sky_http_res *res);
void sky_http_res_free(sky_http_res *res);

/* Log in; the access token (and the refresh token) or NULL; free both. */
char *sky_emu_login(const sky_emu *e, const char *user, const char *password,
		    char **refresh);

/* ---- MQTT subscriber ---- */

typedef struct sky_sub sky_sub;

/*
 * Connect with `client_id` (NULL: a random one) to the broker and
 * subscribe to `topic` at QoS 1; waits for the SUBACK (30 s). The client
 * reconnects and resubscribes by itself when its connection drops.
 */
sky_sub *sky_sub_start(int port, const char *client_id, const char *topic);
void sky_sub_stop(sky_sub *s);
/* Messages received so far. */
size_t sky_sub_count(sky_sub *s);
/* Wait until at least `count` messages arrived; 0, or -1 on timeout. */
int sky_sub_wait(sky_sub *s, size_t count, int timeout_ms);
/* Message i (copies; free with free()); -1 when out of range. */
int sky_sub_get(sky_sub *s, size_t i, char **topic, char **payload);
/* Message i parsed as JSON (new reference) or NULL. */
json_t *sky_sub_json(sky_sub *s, size_t i);
/* Forget the messages received so far. */
void sky_sub_clear(sky_sub *s);
/* How many times the connection was lost, and connected (CONNACK ok). */
unsigned sky_sub_disconnects(sky_sub *s);
unsigned sky_sub_connects(sky_sub *s);

/* Sleep ms milliseconds (for polling loops). */
void sky_sleep_ms(long ms);

#endif
