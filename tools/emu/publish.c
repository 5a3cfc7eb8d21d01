/*
 * publish.c - the libmosquitto publisher of skylight-emu, driven by the
 * emulator's libevent loop (no libmosquitto thread), and the event faults.
 *
 * Connection states:
 *
 *     DOWN --connect() ok--> WAITING --CONNACK--> UP
 *      ^  \__fails: retry timer__/        |         |
 *      |                                  |  socket closed, lost, dropped
 *      +----------------------------------+---------+
 *
 * Invariants:
 * - Events are published in the order they are given, except where an
 *   event fault (delay, reorder) changes it on purpose.
 * - An event given while not UP is queued and published on the next
 *   CONNACK, in order; nothing is dropped unless an event-drop fault says
 *   so or the queue limit is hit (which is logged).
 * - The libevent read/write events exist exactly while libmosquitto has a
 *   socket; after every libmosquitto call the socket is checked, since
 *   libmosquitto closes it itself on errors.
 * - After an mqtt-drop the emulator stays disconnected for the requested
 *   time before it reconnects.
 *
 * Client kicking: the broker's notices ($SYS/broker/log/N, present when
 * mosquitto.conf has `log_dest topic`) tell which client ids connect and
 * disconnect. mqtt-drop connects once with each id of the realm
 * ("{realm}-...") that is connected, which makes the broker close the
 * client's connection (MQTT client-id takeover), then disconnects.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <mosquitto.h>

#include "emu.h"
#include "log.h"
#include "rand.h"
#include "faults.h"
#include "json.h"
#include "protocol.h"
#include "publish.h"
#include "realm.h"
#include "util.h"

#define QUEUE_LIMIT 100000u
#define RETRY_MS 250
#define KEEPALIVE_S 30

enum pub_conn { PUB_DOWN, PUB_WAITING, PUB_UP };

struct pub_item {
	char *topic;
	char *payload;
	size_t len;
	struct pub_item *next;
};

/* An event waiting on a timer (event-delay, or the reorder hold). */
struct pub_timer {
	struct emu_pub *pub;
	struct pub_item *item;
	struct event *ev;
	struct pub_timer *prev, *next;
};

struct emu_pub {
	struct emu *emu;
	struct mosquitto *mosq;
	char client_id[64];
	enum pub_conn conn;
	int fd;
	struct event *ev_read, *ev_write, *ev_misc, *ev_retry;
	int64_t down_until_us;
	int logged_failure;
	struct pub_item *q_head, **q_tail;
	unsigned q_len;
	struct pub_timer *timers; /* delayed events */
	struct pub_timer *held;	  /* the event held back by a reorder */
	json_t *clients;	  /* client ids of the realm now connected */
};

static void item_free(struct pub_item *it)
{
	if (!it)
		return;
	free(it->topic);
	free(it->payload);
	free(it);
}

static struct pub_item *item_copy(const struct pub_item *it)
{
	struct pub_item *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->topic = strdup(it->topic);
	c->payload = malloc(it->len + 1);
	if (!c->topic || !c->payload) {
		item_free(c);
		return NULL;
	}
	memcpy(c->payload, it->payload, it->len + 1);
	c->len = it->len;
	return c;
}

/* ---- the connection ---- */

static void schedule_retry(struct emu_pub *p, int64_t ms);
static void update_write(struct emu_pub *p);

static void teardown(struct emu_pub *p)
{
	if (p->ev_read) {
		event_free(p->ev_read);
		p->ev_read = NULL;
	}
	if (p->ev_write) {
		event_free(p->ev_write);
		p->ev_write = NULL;
	}
	if (p->ev_misc) {
		event_free(p->ev_misc);
		p->ev_misc = NULL;
	}
	p->fd = -1;
	if (p->conn != PUB_DOWN)
		emu_log(p->emu, "mqtt: disconnected from the broker");
	p->conn = PUB_DOWN;
	(void)json_object_clear(p->clients); /* fails only on a non-object */
}

/* After any libmosquitto call: did it close the socket? */
static int check_socket(struct emu_pub *p)
{
	if (p->fd >= 0 && mosquitto_socket(p->mosq) == p->fd)
		return 0;
	teardown(p);
	int64_t wait = p->down_until_us - sky__now_us();
	schedule_retry(p, wait > 0 ? (wait + 999) / 1000 : RETRY_MS);
	return -1;
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct emu_pub *p = arg;
	mosquitto_loop_read(p->mosq, 64);
	if (check_socket(p) == 0)
		update_write(p);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct emu_pub *p = arg;
	mosquitto_loop_write(p->mosq, 64);
	if (check_socket(p) == 0)
		update_write(p);
}

static void on_misc(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct emu_pub *p = arg;
	mosquitto_loop_misc(p->mosq);
	if (check_socket(p) == 0)
		update_write(p);
}

static void update_write(struct emu_pub *p)
{
	if (p->ev_write && mosquitto_want_write(p->mosq) &&
	    !event_pending(p->ev_write, EV_WRITE, NULL))
		event_add(p->ev_write, NULL);
}

static void try_connect(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct emu_pub *p = arg;
	int64_t wait = p->down_until_us - sky__now_us();
	if (wait > 0) {
		schedule_retry(p, (wait + 999) / 1000);
		return;
	}
	int rc = mosquitto_connect(p->mosq, p->emu->cfg.broker_host,
				   p->emu->cfg.broker_port, KEEPALIVE_S);
	if (rc != MOSQ_ERR_SUCCESS) {
		if (!p->logged_failure)
			emu_log(p->emu,
				"mqtt: cannot connect to %s:%d (%s), "
				"retrying",
				p->emu->cfg.broker_host,
				p->emu->cfg.broker_port,
				mosquitto_strerror(rc));
		p->logged_failure = 1;
		schedule_retry(p, RETRY_MS);
		return;
	}
	p->fd = mosquitto_socket(p->mosq);
	p->conn = PUB_WAITING;
	p->ev_read =
	    event_new(p->emu->base, p->fd, EV_READ | EV_PERSIST, on_read, p);
	p->ev_write = event_new(p->emu->base, p->fd, EV_WRITE, on_write, p);
	p->ev_misc = event_new(p->emu->base, -1, EV_PERSIST, on_misc, p);
	struct timeval second = {1, 0};
	event_add(p->ev_read, NULL);
	event_add(p->ev_misc, &second);
	update_write(p);
}

static void schedule_retry(struct emu_pub *p, int64_t ms)
{
	struct timeval tv = {(time_t)(ms / 1000),
			     (suseconds_t)(ms % 1000) * 1000};
	event_add(p->ev_retry, &tv);
}

/* Hand an item to libmosquitto; 0 when accepted. */
static int send_now(struct emu_pub *p, struct pub_item *it)
{
	int rc = mosquitto_publish(p->mosq, NULL, it->topic, (int)it->len,
				   it->payload, 1, false);
	if (rc != MOSQ_ERR_SUCCESS)
		return -1;
	p->emu->stats.events_published++;
	return 0;
}

static void enqueue(struct emu_pub *p, struct pub_item *it)
{
	if (p->q_len >= QUEUE_LIMIT) {
		struct pub_item *old = p->q_head;
		p->q_head = old->next;
		if (!p->q_head)
			p->q_tail = &p->q_head;
		p->q_len--;
		emu_warn("mqtt: queue full, oldest event dropped (%s)",
			 old->topic);
		item_free(old);
	}
	it->next = NULL;
	*p->q_tail = it;
	p->q_tail = &it->next;
	p->q_len++;
}

static void flush_queue(struct emu_pub *p)
{
	while (p->conn == PUB_UP && p->q_head) {
		struct pub_item *it = p->q_head;
		if (send_now(p, it) < 0)
			break;
		p->q_head = it->next;
		if (!p->q_head)
			p->q_tail = &p->q_head;
		p->q_len--;
		item_free(it);
	}
	update_write(p);
}

/* Publish now if connected and nothing is waiting before it; else queue.
 * Takes the item. */
static void publish_item(struct emu_pub *p, struct pub_item *it)
{
	if (p->conn == PUB_UP && !p->q_head && send_now(p, it) == 0) {
		item_free(it);
		update_write(p);
		return;
	}
	enqueue(p, it);
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
	struct emu_pub *p = arg;
	if (rc != 0) {
		/* The broker closes the socket next; retries follow. */
		if (!p->logged_failure)
			emu_warn("mqtt: the broker refused the connection (%s)",
				 mosquitto_connack_string(rc));
		p->logged_failure = 1;
		return;
	}
	p->conn = PUB_UP;
	p->logged_failure = 0;
	p->emu->stats.mqtt_connects++;
	emu_log(p->emu, "mqtt: connected to %s:%d", p->emu->cfg.broker_host,
		p->emu->cfg.broker_port);
	mosquitto_subscribe(m, NULL, "$SYS/broker/log/N", 0);
	flush_queue(p);
}

/* Track the realm's client ids from the broker's connection notices. */
static void on_message(struct mosquitto *m, void *arg,
		       const struct mosquitto_message *msg)
{
	(void)m;
	struct emu_pub *p = arg;
	char text[512], id[256];
	if (!msg->payload || msg->payloadlen <= 0)
		return;
	size_t n = (size_t)msg->payloadlen < sizeof(text) - 1
		       ? (size_t)msg->payloadlen
		       : sizeof(text) - 1;
	memcpy(text, msg->payload, n);
	text[n] = '\0';
	const char *realm = emu_realm_name(p->emu->realm);
	size_t rlen = strlen(realm);
	const char *s;
	int connected;
	if ((s = strstr(text, "New client connected from "))) {
		s = strstr(s, " as ");
		if (!s)
			return;
		s += 4;
		connected = 1;
	} else if ((s = strstr(text, ": Client "))) {
		s += 9;
		connected = 0;
	} else {
		return;
	}
	size_t i = 0;
	while (s[i] && s[i] != ' ' && i < sizeof(id) - 1) {
		id[i] = s[i];
		i++;
	}
	id[i] = '\0';
	if (strncmp(id, realm, rlen) != 0 || id[rlen] != '-' ||
	    strcmp(id, p->client_id) == 0)
		return;
	/* An id that is not UTF-8 cannot be a key: that client is not
	 * tracked (so not kicked), which is said once here. */
	if (connected) {
		if (json_object_set_new(p->clients, id, json_true()) < 0)
			emu_log(p->emu, "mqtt: cannot track client '%.60s'",
				id);
	} else if (!strstr(s, "already connected")) {
		(void)json_object_del(p->clients, id); /* may be untracked */
	}
}

int emu_pub_open(struct emu_pub **out, struct emu *emu)
{
	struct emu_pub *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	p->emu = emu;
	p->fd = -1;
	p->q_tail = &p->q_head;
	p->clients = json_object();
	unsigned char r[4];
	emu_random_bytes(r, sizeof(r));
	snprintf(p->client_id, sizeof(p->client_id),
		 "skylight-emu-%d-%02x%02x%02x%02x", (int)getpid(), r[0], r[1],
		 r[2], r[3]);
	p->mosq = mosquitto_new(p->client_id, true, p);
	p->ev_retry = event_new(emu->base, -1, 0, try_connect, p);
	if (!p->mosq || !p->ev_retry || !p->clients) {
		emu_pub_close(p);
		return -1;
	}
	mosquitto_connect_callback_set(p->mosq, on_connect);
	mosquitto_message_callback_set(p->mosq, on_message);
	schedule_retry(p, 0);
	*out = p;
	return 0;
}

static void timer_unlink(struct emu_pub *p, struct pub_timer *t)
{
	if (t == p->held) {
		p->held = NULL;
		return;
	}
	if (t->prev)
		t->prev->next = t->next;
	else
		p->timers = t->next;
	if (t->next)
		t->next->prev = t->prev;
}

static void timer_free(struct pub_timer *t)
{
	event_free(t->ev);
	item_free(t->item);
	free(t);
}

void emu_pub_close(struct emu_pub *p)
{
	if (!p)
		return;
	/* Events still on timers are published now rather than lost. */
	while (p->timers) {
		struct pub_timer *t = p->timers;
		timer_unlink(p, t);
		publish_item(p, t->item);
		t->item = NULL;
		timer_free(t);
	}
	if (p->held) {
		struct pub_timer *t = p->held;
		p->held = NULL;
		publish_item(p, t->item);
		t->item = NULL;
		timer_free(t);
	}
	if (p->conn == PUB_UP) {
		/* Best effort: give the socket a moment to take what is
		 * queued, then say goodbye. */
		int64_t until = sky__now_us() + 500000;
		while (mosquitto_want_write(p->mosq) && sky__now_us() < until &&
		       mosquitto_socket(p->mosq) >= 0)
			mosquitto_loop(p->mosq, 10, 1);
		mosquitto_disconnect(p->mosq);
		mosquitto_loop(p->mosq, 10, 1);
	}
	if (p->q_len)
		emu_log(p->emu, "mqtt: %u queued events not published",
			p->q_len);
	teardown(p);
	while (p->q_head) {
		struct pub_item *it = p->q_head;
		p->q_head = it->next;
		item_free(it);
	}
	if (p->ev_retry)
		event_free(p->ev_retry);
	if (p->mosq)
		mosquitto_destroy(p->mosq);
	json_decref(p->clients);
	free(p);
}

/* ---- event faults ---- */

static void timer_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct pub_timer *t = arg;
	struct emu_pub *p = t->pub;
	timer_unlink(p, t);
	publish_item(p, t->item);
	t->item = NULL;
	timer_free(t);
}

static struct pub_timer *start_timer(struct emu_pub *p, struct pub_item *it,
				     int64_t ms, int hold)
{
	struct pub_timer *t = calloc(1, sizeof(*t));
	if (!t) {
		publish_item(p, it);
		return NULL;
	}
	t->pub = p;
	t->item = it;
	t->ev = event_new(p->emu->base, -1, 0, timer_fired, t);
	if (hold) {
		p->held = t;
	} else {
		t->next = p->timers;
		if (p->timers)
			p->timers->prev = t;
		p->timers = t;
	}
	struct timeval tv = {(time_t)(ms / 1000),
			     (suseconds_t)(ms % 1000) * 1000};
	event_add(t->ev, &tv);
	return t;
}

/* Publish the event held back by a reorder fault, if any. */
static void release_held(struct emu_pub *p)
{
	struct pub_timer *t = p->held;
	if (!t)
		return;
	p->held = NULL;
	publish_item(p, t->item);
	t->item = NULL;
	timer_free(t);
}

void emu_pub_event(struct emu_pub *p, const json_t *event)
{
	const char *app =
	    json_string_value(json_object_get(event, "applicationId"));
	const char *sid =
	    json_string_value(json_object_get(event, "sessionId"));
	const char *type =
	    json_string_value(json_object_get(event, "eventType"));
	/* The realm names types as the built-in table does; the wire
	 * strings and the topic are those of the protocol (--protocol). */
	const sky_protocol *proto =
	    p->emu->proto ? p->emu->proto : sky__protocol_builtin();
	int t =
	    type ? sky__protocol_event_type(sky__protocol_builtin(), type) : -1;
	json_t *wire = t >= 0 ? json_copy((json_t *)event) : NULL;
	if (wire && json_object_set_new(wire, "eventType",
					json_string(proto->event[t])) < 0) {
		json_decref(wire);
		wire = NULL;
	}
	struct pub_item *it = calloc(1, sizeof(*it));
	if (!it || !app || !sid || !wire ||
	    !(it->topic = sky__protocol_topic(proto->publish,
					      emu_realm_name(p->emu->realm),
					      app, sid, proto->event[t])) ||
	    !(it->payload = sky__json_dumps(wire, NULL))) {
		emu_warn("mqtt: could not build an event");
		json_decref(wire);
		item_free(it);
		return;
	}
	json_decref(wire);
	it->len = strlen(it->payload);

	const struct emu_fault *f =
	    emu_faults_draw(p->emu->faults, EMU_SCOPE_EVENT, NULL, it->topic);
	if (f)
		emu_log(p->emu, "fault %s on event %s",
			emu_fault_kind_name(f->kind), it->topic);
	if (f && f->kind == EMU_F_EVENT_REORDER) {
		if (!p->held) {
			start_timer(p, it, f->ms, 1);
			return;
		}
		/* One is held already: this one goes first, then that. */
		publish_item(p, it);
		release_held(p);
		return;
	}
	if (!f) {
		publish_item(p, it);
	} else if (f->kind == EMU_F_EVENT_DROP) {
		p->emu->stats.events_dropped++;
		item_free(it);
	} else if (f->kind == EMU_F_EVENT_DUP) {
		struct pub_item *twin = item_copy(it);
		publish_item(p, it);
		if (twin)
			publish_item(p, twin);
	} else if (f->kind == EMU_F_EVENT_DELAY) {
		start_timer(p, it, f->ms, 0);
	} else if (f->kind == EMU_F_MQTT_DROP) {
		emu_pub_drop(p, f->ms);
		publish_item(p, it);
	} else {
		publish_item(p, it);
	}
	release_held(p);
}

/* ---- dropping connections ---- */

static void kick_connected(struct mosquitto *m, void *arg, int rc)
{
	(void)m;
	*(int *)arg = rc == 0 ? 1 : -1;
}

/* Take over one client id at the broker, then leave. */
static int kick(struct emu_pub *p, const char *id)
{
	int state = 0;
	struct mosquitto *m = mosquitto_new(id, true, &state);
	if (!m)
		return -1;
	mosquitto_connect_callback_set(m, kick_connected);
	int rc = mosquitto_connect(m, p->emu->cfg.broker_host,
				   p->emu->cfg.broker_port, 5);
	int64_t until = sky__now_us() + 2000000;
	while (rc == MOSQ_ERR_SUCCESS && state == 0 && sky__now_us() < until)
		rc = mosquitto_loop(m, 50, 1);
	if (state == 1) {
		mosquitto_disconnect(m);
		mosquitto_loop(m, 10, 1);
	}
	mosquitto_destroy(m);
	return state == 1 ? 0 : -1;
}

unsigned emu_pub_drop(struct emu_pub *p, int64_t ms)
{
	unsigned kicked = 0;
	p->emu->stats.mqtt_drops++;
	/* Copy the ids: kicking feeds notices back that edit the set. */
	json_t *ids = json_deep_copy(p->clients);
	const char *id;
	json_t *v;
	json_object_foreach(ids, id, v) {
		if (kick(p, id) == 0) {
			kicked++;
			emu_log(p->emu, "mqtt: dropped client %s", id);
		}
	}
	json_decref(ids);
	p->emu->stats.clients_kicked += kicked;
	p->down_until_us = sky__now_us() + ms * 1000;
	if (p->fd >= 0) {
		/* Abruptly, like a network failure: no DISCONNECT packet. */
		shutdown(p->fd, SHUT_RDWR);
		on_read(p->fd, EV_READ, p);
	}
	if (p->conn != PUB_DOWN && p->fd < 0)
		teardown(p);
	return kicked;
}

int emu_pub_connected(const struct emu_pub *p)
{
	return p->conn == PUB_UP;
}

unsigned emu_pub_queued(const struct emu_pub *p)
{
	return p->q_len;
}

unsigned emu_pub_known_clients(const struct emu_pub *p)
{
	return (unsigned)json_object_size(p->clients);
}
