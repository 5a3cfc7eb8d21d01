/*
 * mqtt.c - the event subscription on libmosquitto, driven by a libevent
 * loop (see mqtt.h).
 *
 * libmosquitto runs in non-threaded mode: it never blocks and never starts
 * a thread (broker host names are resolved by mosquitto_connect_async()
 * with getaddrinfo; give an address to avoid even that). We watch its
 * socket for reading always and for writing while mosquitto_want_write(),
 * and call mosquitto_loop_misc() from a 1 s timer for keepalive pings.
 *
 *     IDLE --start--> CONNECTING --CONNACK ok--> UP
 *                      ^     |  \--refused/lost--.    |
 *                      |     v                   v    | lost
 *                      +-- (retry timer) <----- DOWN <+
 *     any --stop--> STOPPED (DISCONNECT sent; no retry)
 *
 * Invariants:
 * - The libevent events exist exactly while we hold libmosquitto's
 *   socket. libmosquitto closes the socket itself on errors (and calls
 *   its disconnect callback), so after every libmosquitto call
 *   after_lib_call() compares mosquitto_socket() with the fd we watch and
 *   tears the events down before the fd number can be reused.
 * - One retry timer at most; its delay grows with consecutive failures
 *   (capped, jittered) and resets on an accepted CONNACK.
 * - The session is persistent (clean_session = false, unless the owner
 *   asks for a clean one to end an old session) and the client id never
 *   changes (the owner keeps it across runs, identity.c), so a reconnect
 *   within the broker's session lifetime receives the QoS 1 messages
 *   published meanwhile; the owner learns from session_present whether
 *   that was the case.
 * - The password (an access token) is never logged.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <mosquitto.h>

#include "error.h"
#include "mqtt.h"
#include "util.h"

#define CONNECT_DEADLINE_US (20 * 1000000LL)
#define READ_ROUNDS 64

enum mq_state { MQ_IDLE, MQ_CONNECTING, MQ_UP, MQ_DOWN, MQ_STOPPED };

struct sky_mqtt {
	struct event_base *base;
	struct mosquitto *mosq;
	sky_mqtt_callbacks cb;
	void *ctx;
	char *host;
	int port;
	int tls;
	char *client_id, *username, *password, *topic;
	int keepalive_s;
	int clean;
	long backoff_min_ms, backoff_max_ms;
	enum mq_state state;
	int fd; /* the socket we watch, -1 when none */
	struct event *ev_read, *ev_write, *ev_misc, *ev_retry;
	int write_armed;
	unsigned attempt; /* consecutive failed connects */
	int64_t connect_started_us;
	char why[192];	   /* why the last connection ended (fits every
			      message describe_failure() writes) */
	char tls_err[160]; /* the last TLS error libmosquitto logged */
};

static pthread_once_t mosq_once = PTHREAD_ONCE_INIT;

static void mosq_init(void)
{
	mosquitto_lib_init();
}

int sky__mqtt_parse_url(const char *url, char **host, int *port, int *tls)
{
	static const struct {
		const char *scheme;
		int tls, port;
	} schemes[] = {{"mqtt://", 0, 1883},
		       {"tcp://", 0, 1883},
		       {"mqtts://", 1, 8883},
		       {"ssl://", 1, 8883}};
	const char *rest = NULL;
	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t n = strlen(schemes[i].scheme);
		if (strncmp(url, schemes[i].scheme, n) == 0) {
			rest = url + n;
			*tls = schemes[i].tls;
			*port = schemes[i].port;
			break;
		}
	}
	if (!rest)
		return sky__error_input(
		    "broker URL %s: must start with mqtt://, "
		    "mqtts://, ssl:// or tcp://",
		    url);
	size_t hl;
	const char *after;
	if (*rest == '[') { /* [v6 address] */
		const char *close = strchr(rest, ']');
		if (!close)
			return sky__error_input("broker URL %s: unclosed '['",
						url);
		rest++;
		hl = (size_t)(close - rest);
		after = close + 1;
	} else {
		hl = strcspn(rest, ":/");
		after = rest + hl;
	}
	if (!hl)
		return sky__error_input("broker URL %s: no host", url);
	if (*after == ':') {
		char *end;
		long p = strtol(after + 1, &end, 10);
		if (end == after + 1 || p <= 0 || p > 65535 ||
		    (*end && strcmp(end, "/")))
			return sky__error_input("broker URL %s: bad port", url);
		*port = (int)p;
	} else if (*after && strcmp(after, "/")) {
		return sky__error_input("broker URL %s: unexpected '%s'", url,
					after);
	}
	if (!(*host = strndup(rest, hl)))
		return sky__error_nomem();
	return 0;
}

/* ---- socket events ---- */

static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static void schedule_retry(sky_mqtt *m);

static void detach(sky_mqtt *m)
{
	if (m->ev_read) {
		event_free(m->ev_read);
		m->ev_read = NULL;
	}
	if (m->ev_write) {
		event_free(m->ev_write);
		m->ev_write = NULL;
	}
	if (m->ev_misc)
		evtimer_del(m->ev_misc);
	m->write_armed = 0;
	m->fd = -1;
}

static int attach(sky_mqtt *m, int fd)
{
	m->fd = fd;
	m->ev_read = event_new(m->base, fd, EV_READ | EV_PERSIST, on_read, m);
	m->ev_write =
	    event_new(m->base, fd, EV_WRITE | EV_PERSIST, on_write, m);
	struct timeval sec = {1, 0};
	if (!m->ev_read || !m->ev_write || event_add(m->ev_read, NULL) < 0 ||
	    evtimer_add(m->ev_misc, &sec) < 0) {
		detach(m);
		return -1;
	}
	return 0;
}

/* The connection ended (attempt or established): tell, then retry. */
static void connection_over(sky_mqtt *m)
{
	enum mq_state was = m->state;
	detach(m);
	if (was == MQ_STOPPED)
		return;
	m->state = MQ_DOWN;
	if (!m->why[0])
		snprintf(m->why, sizeof(m->why), "connection closed");
	schedule_retry(m);
	if (m->cb.lost)
		m->cb.lost(m->why, m->ctx);
}

/*
 * libmosquitto's log: it drains OpenSSL's error queue into MOSQ_LOG_ERR
 * lines ("OpenSSL Error[0]: error:...:certificate verify failed") before
 * it returns MOSQ_ERR_TLS, so ERR_get_error() finds nothing afterwards:
 * the line is the only place the cause survives. Only the first such
 * line of an attempt is kept (the root cause comes first).
 */
static void on_mosq_log(struct mosquitto *mosq, void *obj, int level,
			const char *line)
{
	sky_mqtt *m = obj;
	(void)mosq;
	if (!m || !(level & MOSQ_LOG_ERR) || !line || m->tls_err[0])
		return;
	const char *p = strstr(line, "OpenSSL Error");
	if (!p)
		return;
	/* "OpenSSL Error[0]: error:0A000086:SSL routines::certificate verify
	 * failed": keep what follows the last "::" or ":" code groups. */
	const char *reason = strrchr(p, ':');
	snprintf(m->tls_err, sizeof(m->tls_err), "%s",
		 reason && reason[1] ? reason + 1 : p);
}

/* Words for why a connection attempt or connection failed (rc from
 * libmosquitto): TLS failures name their cause. */
static void describe_failure(sky_mqtt *m, int rc, int err, char *buf,
			     size_t cap)
{
	const char *t = m->tls_err;
	if (m->tls && (rc == MOSQ_ERR_TLS || t[0])) {
		const char *kind =
		    !t[0] ? "handshake failed"
		    : strstr(t, "certificate") || strstr(t, "verify")
			? "certificate not accepted"
		    : strstr(t, "hostname") || strstr(t, "Hostname") ||
			    strstr(t, "host name")
			? "host name does not match the certificate"
		    : strstr(t, "eof") || strstr(t, "EOF")
			? "the broker closed the connection during the "
			  "handshake (is this a TLS port?)"
		    : strstr(t, "version") || strstr(t, "protocol") ||
			    strstr(t, "packet length") || strstr(t, "record")
			? "protocol mismatch (is this a TLS port?)"
			: "TLS error";
		snprintf(buf, cap, "TLS: %s%s%.100s", kind, t[0] ? ": " : "",
			 t[0] ? t
			 : rc == MOSQ_ERR_ERRNO && err
			     ? strerror(err)
			     : " (the broker closed the connection: is this a "
			       "TLS port?)");
		return;
	}
	if (rc == MOSQ_ERR_ERRNO && err)
		snprintf(buf, cap, "%s", strerror(err));
	else
		snprintf(buf, cap, "%s", mosquitto_strerror(rc));
}

/* After any libmosquitto call: follow its socket and its write needs. */
static void after_lib_call(sky_mqtt *m, int rc)
{
	int err = errno;
	if (m->fd < 0)
		return;
	int now_fd = mosquitto_socket(m->mosq);
	if (now_fd != m->fd) {
		if (!m->why[0] && rc != MOSQ_ERR_SUCCESS)
			describe_failure(m, rc, err, m->why, sizeof(m->why));
		connection_over(m);
		return;
	}
	int want = mosquitto_want_write(m->mosq);
	if (want && !m->write_armed) {
		event_add(m->ev_write, NULL);
		m->write_armed = 1;
	} else if (!want && m->write_armed) {
		event_del(m->ev_write);
		m->write_armed = 0;
	}
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	sky_mqtt *m = arg;
	int rc = MOSQ_ERR_SUCCESS;
	(void)fd;
	(void)what;
	/*
	 * Read until the socket is drained: TLS may hold decrypted bytes that
	 * the socket no longer signals, and libmosquitto stops after a few
	 * packets. errno tells whether it stopped on EAGAIN.
	 */
	for (int i = 0; i < READ_ROUNDS; i++) {
		errno = 0;
		rc = mosquitto_loop_read(m->mosq, 1);
		int e = errno;
		if (rc != MOSQ_ERR_SUCCESS ||
		    mosquitto_socket(m->mosq) != m->fd)
			break;
		if (e == EAGAIN || e == EWOULDBLOCK)
			break;
		if (i == READ_ROUNDS - 1)
			event_active(m->ev_read, EV_READ, 0); /* more later */
	}
	after_lib_call(m, rc);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	sky_mqtt *m = arg;
	(void)fd;
	(void)what;
	after_lib_call(m, mosquitto_loop_write(m->mosq, 1));
}

static void on_misc(evutil_socket_t fd, short what, void *arg)
{
	sky_mqtt *m = arg;
	(void)fd;
	(void)what;
	if (m->fd < 0)
		return;
	int rc = mosquitto_loop_misc(m->mosq);
	if (m->state == MQ_CONNECTING &&
	    sky__now_us() - m->connect_started_us > CONNECT_DEADLINE_US) {
		/* No CONNACK in time: fail the socket; reading tears down. */
		snprintf(m->why, sizeof(m->why), "no CONNACK within %lld s",
			 CONNECT_DEADLINE_US / 1000000);
		shutdown(m->fd, SHUT_RDWR);
		event_active(m->ev_read, EV_READ, 0);
	}
	after_lib_call(m, rc);
	if (m->fd >= 0) {
		struct timeval sec = {1, 0};
		evtimer_add(m->ev_misc, &sec);
	}
}

/* ---- libmosquitto callbacks (run inside mosquitto_loop_*) ---- */

static void on_connack(struct mosquitto *mosq, void *obj, int rc, int flags)
{
	sky_mqtt *m = obj;
	(void)mosq;
	if (m->state != MQ_CONNECTING)
		return;
	if (rc != 0) {
		snprintf(m->why, sizeof(m->why), "connection refused: %s",
			 mosquitto_connack_string(rc));
		if (m->cb.refused)
			m->cb.refused(rc, mosquitto_connack_string(rc), m->ctx);
		return; /* libmosquitto closes the socket; we retry */
	}
	m->state = MQ_UP;
	m->attempt = 0;
	m->why[0] = '\0';
	int mid;
	int src = m->topic ? mosquitto_subscribe(m->mosq, &mid, m->topic, 1)
			   : MOSQ_ERR_SUCCESS;
	if (m->cb.connected)
		m->cb.connected(flags & 1, m->ctx);
	if (src != MOSQ_ERR_SUCCESS && m->cb.subscribed && m->state == MQ_UP)
		m->cb.subscribed(0, m->ctx);
}

static void on_suback(struct mosquitto *mosq, void *obj, int mid, int qos_count,
		      const int *granted)
{
	sky_mqtt *m = obj;
	(void)mosq;
	(void)mid;
	if (m->state == MQ_UP && m->cb.subscribed)
		m->cb.subscribed(qos_count > 0 && granted[0] >= 0 &&
				     granted[0] <= 2,
				 m->ctx);
}

static void on_message(struct mosquitto *mosq, void *obj,
		       const struct mosquitto_message *msg)
{
	sky_mqtt *m = obj;
	(void)mosq;
	if (m->state == MQ_UP && m->cb.message && msg->payloadlen >= 0)
		m->cb.message(msg->topic, msg->payload, (size_t)msg->payloadlen,
			      m->ctx);
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc)
{
	sky_mqtt *m = obj;
	(void)mosq;
	int err = errno;
	if (!m->why[0] && rc)
		describe_failure(m, rc, err, m->why, sizeof(m->why));
	else if (!m->why[0])
		snprintf(m->why, sizeof(m->why), "disconnected");
}

/* ---- connecting ---- */

static void try_connect(sky_mqtt *m)
{
	m->why[0] = '\0';
	m->tls_err[0] = '\0';
	int rc = mosquitto_username_pw_set(m->mosq, m->username, m->password);
	if (rc == MOSQ_ERR_SUCCESS)
		rc = mosquitto_connect_async(m->mosq, m->host, m->port,
					     m->keepalive_s);
	int fd = rc == MOSQ_ERR_SUCCESS ? mosquitto_socket(m->mosq) : -1;
	if (rc != MOSQ_ERR_SUCCESS || fd < 0 || attach(m, fd) < 0) {
		snprintf(m->why, sizeof(m->why), "cannot connect to %s:%d: %s",
			 m->host, m->port,
			 rc == MOSQ_ERR_ERRNO ? strerror(errno)
					      : mosquitto_strerror(rc));
		m->state = MQ_DOWN;
		schedule_retry(m);
		if (m->cb.lost)
			m->cb.lost(m->why, m->ctx);
		return;
	}
	m->state = MQ_CONNECTING;
	m->connect_started_us = sky__now_us();
	after_lib_call(m, MOSQ_ERR_SUCCESS);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	sky_mqtt *m = arg;
	(void)fd;
	(void)what;
	if (m->state == MQ_DOWN)
		try_connect(m);
}

static void schedule_retry(sky_mqtt *m)
{
	long ms =
	    sky__backoff_ms(m->attempt++, m->backoff_min_ms, m->backoff_max_ms);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(m->ev_retry, &tv);
}

/* ---- public ---- */

int sky__mqtt_new(struct event_base *base, const sky_mqtt_options *o,
		  const sky_mqtt_callbacks *cb, void *ctx, sky_mqtt **out)
{
	assert(base && o && o->url && o->client_id &&
	       (o->topic || o->clean_session) && cb && out);
	pthread_once(&mosq_once, mosq_init);
	sky_mqtt *m = calloc(1, sizeof(*m));
	if (!m)
		return sky__error_nomem();
	m->base = base;
	m->cb = *cb;
	m->ctx = ctx;
	m->fd = -1;
	m->keepalive_s = o->keepalive_s > 0 ? o->keepalive_s : 30;
	m->clean = o->clean_session != 0;
	m->backoff_min_ms = o->backoff_min_ms > 0 ? o->backoff_min_ms : 500;
	m->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 30000;
	int rc = sky__mqtt_parse_url(o->url, &m->host, &m->port, &m->tls);
	if (rc < 0) {
		free(m);
		return rc;
	}
	if (!(m->client_id = strdup(o->client_id)) ||
	    (o->topic && !(m->topic = strdup(o->topic))) ||
	    (o->username && !(m->username = strdup(o->username))) ||
	    (o->password && !(m->password = strdup(o->password))))
		goto nomem;
	m->ev_misc = evtimer_new(base, on_misc, m);
	m->ev_retry = evtimer_new(base, on_retry, m);
	/* clean_session = false: the broker keeps our subscription and
	 * queues QoS 1 messages while we are away. */
	m->mosq = mosquitto_new(m->client_id, m->clean ? true : false, m);
	if (!m->ev_misc || !m->ev_retry || !m->mosq)
		goto nomem;
	mosquitto_int_option(m->mosq, MOSQ_OPT_PROTOCOL_VERSION,
			     MQTT_PROTOCOL_V311);
	mosquitto_int_option(m->mosq, MOSQ_OPT_TCP_NODELAY, 1);
	mosquitto_connect_with_flags_callback_set(m->mosq, on_connack);
	mosquitto_subscribe_callback_set(m->mosq, on_suback);
	mosquitto_message_callback_set(m->mosq, on_message);
	mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
	mosquitto_log_callback_set(m->mosq, on_mosq_log);
	if (m->tls) {
		/* With no CA file, the system's CA directory. */
		rc = mosquitto_tls_set(m->mosq, o->cafile,
				       o->cafile ? NULL : "/etc/ssl/certs",
				       NULL, NULL, NULL);
		if (rc == MOSQ_ERR_SUCCESS && o->insecure) {
			rc = mosquitto_tls_insecure_set(m->mosq, true);
			if (rc == MOSQ_ERR_SUCCESS) /* 0 = SSL_VERIFY_NONE */
				rc = mosquitto_tls_opts_set(m->mosq, 0, NULL,
							    NULL);
		}
		if (rc != MOSQ_ERR_SUCCESS) {
			sky__error_set(SKY_EINVAL, SKY_ERRSRC_NET, rc,
				       "broker TLS setup%s%s: %s",
				       o->cafile ? " with " : "",
				       o->cafile ? o->cafile : "",
				       mosquitto_strerror(rc));
			sky__mqtt_free(m);
			return SKY_EINVAL;
		}
	}
	m->state = MQ_IDLE;
	*out = m;
	return 0;
nomem:
	sky__mqtt_free(m);
	return sky__error_nomem();
}

int sky__mqtt_start(sky_mqtt *m)
{
	if (m->state != MQ_IDLE && m->state != MQ_STOPPED)
		return 0;
	m->attempt = 0;
	m->state = MQ_DOWN;
	try_connect(m);
	return 0;
}

int sky__mqtt_set_password(sky_mqtt *m, const char *password)
{
	char *copy = password ? strdup(password) : NULL;
	if (password && !copy)
		return sky__error_nomem();
	sky__wipe_free(m->password);
	m->password = copy;
	return 0;
}

void sky__mqtt_stop(sky_mqtt *m)
{
	if (!m || m->state == MQ_STOPPED)
		return;
	enum mq_state was = m->state;
	m->state = MQ_STOPPED;
	evtimer_del(m->ev_retry);
	if (m->fd >= 0) {
		if (was == MQ_UP) {
			/* Written at once (or on the next write event when
			 * called from a callback); libmosquitto then closes. */
			after_lib_call(m, mosquitto_disconnect(m->mosq));
		} else {
			detach(m);
			mosquitto_disconnect(m->mosq);
		}
	}
}

void sky__mqtt_drop(sky_mqtt *m)
{
	if (!m || m->fd < 0)
		return;
	snprintf(m->why, sizeof(m->why), "connection dropped (test)");
	shutdown(m->fd, SHUT_RDWR);
	event_active(m->ev_read, EV_READ, 0);
}

void sky__mqtt_free(sky_mqtt *m)
{
	if (!m)
		return;
	m->state = MQ_STOPPED;
	detach(m);
	if (m->mosq)
		mosquitto_destroy(m->mosq); /* closes the socket */
	if (m->ev_misc)
		event_free(m->ev_misc);
	if (m->ev_retry)
		event_free(m->ev_retry);
	free(m->host);
	free(m->client_id);
	free(m->username);
	sky__wipe_free(m->password);
	free(m->topic);
	free(m);
}
