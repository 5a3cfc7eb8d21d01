/*
 * mqtt.h - the event subscription: libmosquitto in non-threaded mode on a
 * libevent loop (its socket is a libevent event; mosquitto_loop_read,
 * _write and _misc run from callbacks), one topic at QoS 1, a persistent
 * broker session (clean_session = false), and reconnection with capped
 * exponential backoff and jitter.
 *
 * The owner learns, through callbacks run from the loop:
 *   connected(session_present)  CONNACK accepted; session_present false
 *                               means the broker forgot our session (and
 *                               whatever it had queued for us)
 *   subscribed(ok)              SUBACK for the topic
 *   message(topic, payload)     one event (QoS 1: the broker redelivers
 *                               it if the connection drops before PUBACK)
 *   lost(why)                   the connection is gone; a reconnect is
 *                               already scheduled
 *   refused(rc)                 CONNACK refused (e.g. bad credentials);
 *                               a reconnect is scheduled too, so the owner
 *                               may set a fresh password meanwhile
 */
#ifndef SKY_MQTT_H
#define SKY_MQTT_H

#include <stddef.h>

struct event_base;

typedef struct sky_mqtt sky_mqtt;

typedef struct {
	void (*connected)(int session_present, void *ctx);
	void (*subscribed)(int ok, void *ctx);
	void (*message)(const char *topic, const char *payload, size_t len,
			void *ctx);
	void (*lost)(const char *why, void *ctx);
	void (*refused)(int rc, const char *why, void *ctx);
} sky_mqtt_callbacks;

typedef struct {
	const char *url; /* mqtt:// or tcp://H:P; mqtts:// or ssl:// */
	const char *client_id;
	const char *username;
	const char *password; /* the access token; may change: set_password */
	const char *topic;    /* subscribed at QoS 1 on every CONNACK;
				 NULL (only with clean_session): none */
	const char *cafile;   /* TLS: CA bundle; NULL: the system CA path */
	int insecure;	      /* TLS without verification (explicit choice) */
	int keepalive_s;      /* 0: 30 */
	long backoff_min_ms;  /* 0: 500 */
	long backoff_max_ms;  /* 0: 30000 */
	int clean_session;    /* 1: a session that ends with the connection
				 (to end an old persistent one: connect
				 with its id, then stop); 0: persistent */
} sky_mqtt_options;

/*
 * Split a broker URL. *host is the caller's; *tls is 1 for mqtts:// and
 * ssl://. Default ports 1883 and 8883. 0 or SKY_EINVAL.
 */
int sky__mqtt_parse_url(const char *url, char **host, int *port, int *tls);

int sky__mqtt_new(struct event_base *base, const sky_mqtt_options *opts,
		  const sky_mqtt_callbacks *cb, void *ctx, sky_mqtt **out);
/* Start connecting (and keep reconnecting until stopped). 0 or -1. */
int sky__mqtt_start(sky_mqtt *m);
/* The password for the next connect (the access token after a refresh). */
int sky__mqtt_set_password(sky_mqtt *m, const char *password);
/* Send DISCONNECT (the broker keeps our session) and stay down. */
void sky__mqtt_stop(sky_mqtt *m);
/* Free; must not be called from inside one of its callbacks. */
void sky__mqtt_free(sky_mqtt *m);
/*
 * Close the socket abruptly, as a network failure would (no DISCONNECT:
 * the broker keeps the session and queues for us). For tests.
 */
void sky__mqtt_drop(sky_mqtt *m);

#endif
