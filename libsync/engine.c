/*
 * engine.c - the sync engine: keeps a cache equal to what a Skylight
 * server shows one user (DESIGN.md §10), on one libevent loop, with
 * REST through http.c/api.c and events through mqtt.c.
 *
 * States (sky_engine_state), and what moves them:
 *
 *   IDLE --attach/run--> LOGIN --token--+--follow--> SUBSCRIBE
 *                          |            |               | SUBACK (or broker not
 *                 refused  |            +--one-shot--+  | up after 10 s: go on,
 *                          v                         |  v  resync on SUBACK)
 *                        FAILED <--retries spent--- SNAPSHOT <-----------+
 *                          ^       (one-shot)        |    | failed       |
 *                          |                         |    v              |
 *                          |                         |  BACKOFF --timer--+
 *                          |              done       v                   |
 *                          |     one-shot: workers idle --> STOPPED      |
 *                          |     follow:   LIVE ------------------------+
 *                          |               resync: CONNACK without our session,
 *                          |               broker away too long,
 *                          |               resync_interval_s, store failure
 *   any --sky_engine_stop--> STOPPED
 *
 * A one-shot sync of a cache synced before goes through SUBSCRIBE too (at
 * most BROKER_WAIT_ONCE_MS); on the SUBACK of a kept broker session the
 * engine drains the backlog in SUBSCRIBE, then its SNAPSHOT is a resumed
 * one that reads only what differs (see "Resuming").
 *
 * Token refresh (timer at 80 % of the access token's life, or a 401) runs
 * beside the states: requests that met a 401 wait for the new token and
 * are sent again; a refused refresh falls back to a new login, and so does
 * a 401 right after a refresh (once: a third 401 ends that request); a
 * refused login is FAILED (retrying a wrong password helps nobody).
 *
 * Reads and writes fail apart. A failed read never moves the engine to
 * FAILED: one session's read (retries spent, refused, or its answer
 * refused by the cache) marks that session stale (stale.c, persisted) and
 * the snapshot goes on; an application's lists likewise. A snapshot that
 * fails as a whole (the application list) goes to BACKOFF while
 * following, with the outbox workers online, and in a one-shot sync
 * straight to the delivery (SNAPSHOT with workers online, then STOPPED);
 * the one-shot result then names the failed read. A stale session is
 * read again (a fetch) after a capped, jittered backoff while following,
 * else by the next sync; a stored read clears the mark. A server event the
 * cache refuses is counted and its session read again. While LIVE, a
 * periodic reconcile (see "Reconcile") re-lists the realm and re-reads
 * what differs, without leaving LIVE.
 *
 * Events and REST reads are reconciled by holding events:
 * - The subscription is made before the snapshot's first request, so no
 *   change can fall between the two (a change before the SUBACK is in the
 *   reads, one after it arrives as an event).
 * - While a snapshot runs, every event received is held (held_all); while
 *   one session is re-read (a "fetch"), its events are held (fetch->held).
 *   Before a read is sent, the events already received are applied. So
 *   between sending a read and storing its answer, nothing but that answer
 *   changes the session in the cache.
 * - The answer is stored (sky__session_put_parsed) at a time `as_of` such
 *   that every event created before as_of is reflected in the answer
 *   (see "Clocks" below); events created before as_of are then stale for
 *   the cache and skipped, later ones apply on top.
 * - Held events are then released in createdAt order. One created before
 *   as_of is in the answer: "stale" is expected for it. One created after
 *   the latest time the read can have happened (its Date + 1 s) is news
 *   and applies. One in between may or may not be in the answer: it waits
 *   in a second read of the session a second later (unclear()), whose
 *   as_of then lies after it. A session changing faster than that gets the
 *   events re-applied in order after SETTLE_ROUNDS reads, which is exact
 *   as long as no newer event is still on its way.
 * - A live event that is stale (it arrived after a newer one: reordering)
 *   may carry a change the cache skipped, and an event for a session we do
 *   not know waits (deferred): both make us re-read that session.
 * - A session that left the mirror (not visible any more, or past the
 *   retention of closed sessions) is remembered as gone: its late events
 *   (a delayed session_created whose session_closed went missing...) wait
 *   for a read instead of reviving it. A closed session stays in the
 *   mirror until its retention ends; a snapshot reads each session it
 *   holds open but the list no longer shows (J_UNLISTED).
 * - The MQTT client id is the cache's (identity.c), the same for every run
 *   on it, so a restart resumes the broker session and its backlog.
 *
 * Clocks. as_of must not be later than the server's time of either read
 * (session and data), or an event created between the read and as_of
 * would be skipped though the read did not include it. It may be earlier
 * (above: such events are settled by a second read). Events go missing
 * only before a SUBACK (a new or lost broker session), so a snapshot's
 * reads start a second after the SUBACK (start_snapshot()): as_of then
 * lies after every event we cannot have seen. We take
 *   as_of = max( min( max(Date of the session read, session.modifiedAt),
 *                     Date of the data read ),
 *                the session's newest watermark in the cache )
 * - Date headers have 1 s precision; their floor is at or before the read.
 * - modifiedAt is server time of the last change to the session's fields,
 *   so at or before the session read.
 * - The watermark comes from events applied (or reads stored) before this
 *   read was sent (the holding above guarantees it), i.e. from server
 *   changes before the read; and the server orders changes by time, so an
 *   event created before the watermark is before the read too. Taking it
 *   also means the put always replaces the session: the cache never keeps
 *   an older state because a Date was coarse.
 * Local clocks are never compared with server clocks; the only local time
 * used is for delays and for the reported lag. The server is assumed to
 * stamp createdAt, modifiedAt and Date from one clock, in commit order.
 *
 * Other invariants:
 * - No LMDB write transaction is open while waiting for the network: every
 *   cache write is a complete call (a batch put, an event batch, a prune).
 * - Secrets (password, tokens) never reach a log line or an error message;
 *   the password is wiped when the engine is freed.
 * - A request ends exactly once (its callback, or a cancel); stopping
 *   cancels every request and timer, then applies the events already
 *   received (they are safe alone), then records the state in the cache.
 * - Work that frees engine parts (stop, failure) runs from its own loop
 *   callback (ev_stop), never inside a curl or libmosquitto callback.
 */
#include "config.h"

#include <assert.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "api.h"
#include "cache_types.h"
#include "deliver.h"
#include "engine.h"
#include "enginelock.h"
#include "json.h"
#include "mirror.h"
#include "outbox.h"
#include "error.h"
#include "protocol.h"
#include "http.h"
#include "identity.h"
#include "model.h"
#include "mqtt.h"
#include "record.h"
#include "repair.h"
#include "retain.h"
#include "stale.h"
#include "util.h"

#define APPLY_BATCH 2000	 /* events per write transaction, at most */
#define PUT_BATCH 256		 /* sessions per write transaction */
#define FLUSH_DELAY_MS 20	 /* wait this long to fill a put batch */
#define FETCH_DELAY_MS 200	 /* coalesce refetch triggers */
#define BROKER_WAIT_MS 10000	 /* snapshot without the broker after this */
#define AFTER_SUBACK_US 1100000	 /* snapshot reads wait this after SUBACK */
#define SETTLE_US 1100000	 /* re-read this long after an unclear read */
#define SETTLE_ROUNDS 2		 /* unclear reads before re-applying instead */
#define HEARTBEAT_MS 5000	 /* sync state into the cache while live */
#define PROGRESS_EVERY_US 200000 /* progress reports, at most this often */
#define HELD_LIMIT 500000u	 /* held events beyond this: resync instead */
#define FETCH_BUCKETS 1024
#define GONE_LIMIT 100000 /* sessions remembered as gone */
#define RECONCILE_DEFAULT_S 600 /* periodic reconcile while following */
#define BACKLOG_LIMIT_DEFAULT 1000 /* mosquitto's max_queued_messages */
#define DRAIN_QUIET_MS 300	   /* the backlog is in after this quiet */
#define DRAIN_MAX_US 5000000	   /* ... or after this long */
#define BROKER_WAIT_ONCE_MS 3000   /* one-shot: full snapshot without it */

/* ------------------------------------------------------------------ */
/* Structures                                                          */
/* ------------------------------------------------------------------ */

/* One received event. The strings share one allocation with the text. */
typedef struct {
	char *text; /* the JSON text, NUL-terminated */
	size_t len;
	const char *app, *sid, *eid, *type; /* from the payload, or "" */
	int64_t created_us;		    /* 0 when not readable */
	uint64_t seq;			    /* arrival order */
	int after_read;			    /* released after a read */
} evitem;

typedef struct {
	evitem *v;
	size_t head, n, cap;
} evq;

/* A session being re-read. */
typedef struct fetch {
	sky_engine *e;
	char *app, *sid;
	struct fetch *hnext; /* hash chain */
	struct fetch *qnext; /* the scheduled queue */
	int inflight;
	int stale;	    /* triggered by a stale event (else: deferred) */
	unsigned rounds;    /* re-reads in a row because of unclear reads */
	int64_t not_before; /* monotonic µs: do not send before */
	int again;	    /* triggered again while in flight */
	evq held;
	sky_engine_req *req_s, *req_d;
	int parts_left;
	json_t *session; /* answer of the session read, or NULL */
	char *data;	 /* answer of the data read */
	size_t data_len;
	int64_t bound_s, bound_d;
	int gone, failed;
	char why[200]; /* why it failed, for the stale mark */
} fetch;

/* J_UNLISTED: one session the mirror holds open but the list did not
 * show (closed, or hidden from us since); its session is a stub. */
enum job_kind { J_ROLES, J_SESSIONS, J_DATA, J_UNLISTED };

typedef struct sjob {
	enum job_kind kind;
	struct snap *snap;
	char *app;
	json_t *session; /* J_DATA: the listed session */
	int64_t bound;	 /* J_DATA: read bound of the listed session */
	sky_engine_req *req;
	size_t index; /* its slot in snap->jobs */
} sjob;

/* A set of "a \0 b" keys, each with two optional values (open
 * addressing, linear probing; cap is a power of two). */
typedef struct {
	char **slot;
	int64_t (*val)[2];
	size_t cap, n;
} keyset;

typedef struct snap {
	sky_engine *e;
	int resync;
	int resume;  /* resumed: read only what differs (see "Resuming") */
	int started; /* the application list was asked for */
	int again;   /* events may have been lost meanwhile: redo */
	sky_engine_req *apps_req;
	sjob **jobs;
	size_t njobs, cap, next;
	unsigned inflight;
	keyset visible;		/* app \0 sid of every listed session, with the
				   as_of and the read's upper bound it was
				   stored with (0 until stored) */
	keyset apps;		/* listed application ids */
	sky__parsed_put *batch; /* sessions (refs) and data (owned) to store */
	unsigned *batch_what;
	size_t nbatch;
	sky_sync_progress progress;
	int64_t last_report_us;
} snap;

struct sky_engine_req {
	sky_engine *e;
	int fail_pending; /* end with a failure from the timer */
	char fail_why[160];
	sky_api_call call;
	char *app, *sid;
	char *body;
	size_t body_len;
	unsigned flags;
	unsigned attempts;   /* transient failures so far */
	unsigned auth_tries; /* 401s so far */
	unsigned auth_gen;   /* token generation it was sent with */
	unsigned auth_resends; /* resent because a newer token had come */
	int waiting_auth;
	sky_http_req *http;
	struct event *timer;
	sky_engine_req_fn done;
	void *ctx;
	sky_engine_req *prev, *next;
};

typedef struct worker {
	sky_engine_worker w;
	void *ctx;
	struct worker *next;
} worker;

struct sky_engine {
	sky_cache *cache;
	int lock_fd; /* engine.lock, held for the engine's life (enginelock.c) */
	sky_engine_options o; /* strings point at the copies below */
	char *server, *broker, *realm, *user, *password, *cafile;
	const sky_protocol *proto; /* the built-in table or proto_file's */
	sky_protocol *proto_file;

	struct event_base *base;
	int own_base;
	int running;	/* started and not yet shut down */
	int follow_run; /* this run stays live */
	int stopping;	/* a stop or failure is on its way */
	sky_engine_state state;
	int fail_code;
	char fail_msg[256];

	sky_http_client *http;
	sky_mqtt *mqtt;
	sky_mqtt *mqtt_retire; /* ending the broker session of an old identity */
	struct event *ev_retire; /* stops it, outside its callbacks */
	struct event *ev_stop, *ev_apply, *ev_fetch, *ev_flush, *ev_snap_retry,
	    *ev_snap_go, *ev_broker_wait, *ev_refresh, *ev_heartbeat,
	    *ev_resync;
	sky_engine_req *reqs;

	/* authentication */
	char *access, *refresh, *sub;
	int64_t access_got_us, access_ttl_us, refresh_exp_us;
	unsigned auth_gen;
	int auth_busy;
	int token_from_refresh; /* the access token came from a refresh */

	/* broker */
	int broker_up;
	int broker_seen; /* a CONNACK was accepted before */
	int64_t broker_lost_us;
	int64_t suback_mono_us; /* local monotonic time of the last SUBACK */
	int need_resync;

	/* events */
	evq incoming, held_all;
	int holding_all;
	int apply_armed;
	uint64_t seq;

	/* re-reads */
	keyset gone; /* sessions found gone: events need a read */
	fetch *ftab[FETCH_BUCKETS];
	fetch *fq_head, *fq_tail;
	unsigned fetch_inflight;
	unsigned fetch_count; /* scheduled or in flight */

	snap *snap;
	unsigned snap_failures;
	int first_done;	  /* a snapshot completed in this run */
	int online;	  /* workers were told online */
	int once_waiting; /* one-shot: snapshot done, waiting for workers */

	worker *workers;
	/* Sessions marked stale (their last read failed), loaded from the
	 * cache at start; val[0] counts failures, for the backoff. */
	keyset stale;
	/* The periodic reconcile (see "Reconcile" below). */
	struct event *ev_reconcile;
	struct rjob *rjobs;
	sky_engine_req *rec_apps_req;
	int rec_running;
	unsigned rec_refetches;
	/* Resuming (see "Resuming" below). */
	int resume_present;   /* the run's first CONNACK kept our session */
	int counting_backlog; /* from that CONNACK until the backlog is in */
	int64_t drain_start_us;
	struct event *ev_drain;
	keyset named;	  /* sessions the backlog could not apply alone */
	int resume_next;  /* the next snapshot is a resumed one */
	int full_why;	  /* else why it is full (SKY_SYNC_WHY_*) */
	uint64_t req_base; /* http requests sent before this sync */
	int64_t prev_sync_us; /* the cache's last snapshot when this run began */
	sky_sync_status st;
	int64_t last_warn_us;
	unsigned warns_suppressed;
};

static void start_snapshot(sky_engine *e, int resync);
static void begin_sync(sky_engine *e);
static int synced_before(sky_engine *e);
static int64_t recorded_sync_us(sky_engine *e);
static int keyset_has(const keyset *s, const char *a, const char *b);
static int keyset_add(keyset *s, const char *a, const char *b);
static void keyset_del(keyset *s, const char *a, const char *b);
static int keyset_get(const keyset *s, const char *a, const char *b,
		      int64_t val[2]);
static int keyset_set(keyset *s, const char *a, const char *b, int64_t v0,
		      int64_t v1);
static void keyset_free(keyset *s);
static void note_gone(sky_engine *e, const char *app, const char *sid);
static void schedule_apply(sky_engine *e);
static void route(sky_engine *e, evitem *it);
static void engine_fail(sky_engine *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void check_once_done(sky_engine *e);
static void fetch_schedule(sky_engine *e, const char *app, const char *sid,
			   int stale);
static void count_refused(sky_engine *e, const char *what, const char *app,
			  const char *sid, const char *why);

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static void elog(sky_engine *e, sky_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vlog(sky_engine *e, sky_log_level level, const char *fmt,
		 va_list ap)
{
	if (!e->o.on_log)
		return;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	e->o.on_log(level, line, e->o.payload);
}

static void elog(sky_engine *e, sky_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(e, level, fmt, ap);
	va_end(ap);
}

/* A warning about something retried: at most one a second. */
static void warn_retry(sky_engine *e, const char *msg, long delay_ms)
{
	snprintf(e->st.error, sizeof(e->st.error), "%s", msg);
	int64_t now = sky__now_us();
	if (now - e->last_warn_us < 1000000) {
		e->warns_suppressed++;
		return;
	}
	e->last_warn_us = now;
	if (e->warns_suppressed)
		elog(e, SKY_LOG_WARN,
		     "%s; retrying in %.1f s (%u similar "
		     "messages suppressed)",
		     msg, delay_ms / 1000.0, e->warns_suppressed);
	else
		elog(e, SKY_LOG_WARN, "%s; retrying in %.1f s", msg,
		     delay_ms / 1000.0);
	e->warns_suppressed = 0;
}

static int64_t mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void arm_ms(struct event *ev, long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	evtimer_add(ev, &tv);
}

const char *sky_engine_state_name(sky_engine_state s)
{
	static const char *names[] = {"idle",	  "login", "subscribe",
				      "snapshot", "live",  "backoff",
				      "stopped",  "failed"};
	if ((unsigned)s < sizeof(names) / sizeof(names[0]))
		return names[s];
	return "unknown";
}

static void write_meta(sky_engine *e)
{
	/* Bookkeeping only: a failure here must not stop the sync. */
	/* An earlier run's snapshot stays recorded until this run's. */
	int64_t last = e->st.last_sync_us ? e->st.last_sync_us : e->prev_sync_us;
	if (sky__repair_put_meta(
		e->cache, (uint64_t)e->state + 1, (uint64_t)last,
		(uint64_t)(e->st.event_lag_us > 0 ? e->st.event_lag_us : 0),
		(uint64_t)sky__now_us()) < 0)
		elog(e, SKY_LOG_WARN, "cannot record the sync state: %s",
		     sky_error_last()->message);
}

static void set_state(sky_engine *e, sky_engine_state s)
{
	if (e->state == s)
		return;
	e->state = s;
	e->st.state = s;
	elog(e, SKY_LOG_DEBUG, "state: %s", sky_engine_state_name(s));
	write_meta(e);
	if (s == SKY_ENGINE_LIVE && e->ev_heartbeat)
		arm_ms(e->ev_heartbeat, HEARTBEAT_MS);
	if (e->o.on_state)
		e->o.on_state(s, e->o.payload);
}

static void notify(sky_engine *e, const char *app, const char *sid,
		   unsigned what, const char *type, const char *eid)
{
	if (!e->o.on_change || !what)
		return;
	sky_change ch = {app, sid, what, type, eid};
	e->o.on_change(&ch, e->o.payload);
}

static void report_progress(sky_engine *e, int force)
{
	snap *s = e->snap;
	if (!s)
		return;
	e->st.progress = s->progress;
	int64_t now = sky__now_us();
	if (!force && now - s->last_report_us < PROGRESS_EVERY_US)
		return;
	s->last_report_us = now;
	if (e->o.on_progress)
		e->o.on_progress(&s->progress, e->o.payload);
}

/* ------------------------------------------------------------------ */
/* Event queues                                                        */
/* ------------------------------------------------------------------ */

static int evq_push(evq *q, const evitem *it)
{
	if (q->head && q->head + q->n == q->cap) {
		memmove(q->v, q->v + q->head, q->n * sizeof(*q->v));
		q->head = 0;
	}
	if (q->head + q->n == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 64;
		evitem *v = realloc(q->v, cap * sizeof(*v));
		if (!v)
			return -1;
		q->v = v;
		q->cap = cap;
	}
	q->v[q->head + q->n++] = *it;
	return 0;
}

static void evq_clear(evq *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->v[q->head + i].text);
	free(q->v);
	memset(q, 0, sizeof(*q));
}

static int by_time(const void *a, const void *b)
{
	const evitem *x = a, *y = b;
	if (x->created_us != y->created_us)
		return x->created_us < y->created_us ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/*
 * Hand every item of `q` to route() in createdAt order (the server's
 * order), marked as released after a read. `q` ends empty.
 */
static void evq_release(sky_engine *e, evq *q)
{
	evq take = *q;
	memset(q, 0, sizeof(*q));
	if (take.n > 1)
		qsort(take.v + take.head, take.n, sizeof(evitem), by_time);
	for (size_t i = 0; i < take.n; i++) {
		evitem *it = &take.v[take.head + i];
		it->after_read = 1;
		route(e, it);
	}
	free(take.v);
}

/*
 * The application, session and event type a topic names (the publish
 * template of the protocol), copied into buf; "" when it names none. For
 * events whose payload cannot be read.
 */
static void topic_ids(const sky_engine *e, const char *topic, char *buf,
		      size_t cap, const char **app, const char **sid,
		      const char **type)
{
	const char *ta, *ts, *tt;
	*app = *sid = "";
	sky__protocol_topic_read(e->proto, topic ? topic : "", e->realm, buf,
				 cap, &ta, &ts, &tt);
	if (!*ta || !*ts)
		return;
	*app = ta;
	*sid = ts;
	if (!**type && *tt)
		*type = tt;
}

/* Read the ids, type and time of an event; unreadable ones get "" (or,
 * for the ids, what the topic names). */
static int evitem_make(const sky_engine *e, const char *payload, size_t len,
		       size_t max_bytes,
		       uint64_t seq, const char *topic, evitem *out)
{
	const char *app = "", *sid = "", *eid = "", *type = "";
	char ids[3 * SKY_MAX_ID_BYTES + 8];
	int64_t created = 0;
	/* An event over the limit is rejected by the apply: do not parse it. */
	json_t *ev = len <= max_bytes
			 ? sky__json_loadb(payload, len, JSON_ALLOW_NUL, NULL)
			 : NULL;
	if (json_is_object(ev)) {
		const char *s;
		if ((s = sky__json_str(ev, "applicationId")))
			app = s;
		if ((s = sky__json_str(ev, "sessionId")))
			sid = s;
		if ((s = sky__json_str(ev, "eventId")))
			eid = s;
		if ((s = sky__json_str(ev, "eventType")))
			type = s;
		if ((s = sky__json_str(ev, "createdAt")))
			sky__parse_time(s, &created);
	}
	if (!*app || !*sid)
		topic_ids(e, topic, ids, sizeof(ids), &app, &sid, &type);
	size_t la = strlen(app), ls = strlen(sid), le = strlen(eid),
	       lt = strlen(type);
	char *block = malloc(len + la + ls + le + lt + 5);
	if (!block) {
		json_decref(ev);
		return -1;
	}
	char *p = block;
	memcpy(p, payload, len);
	p[len] = '\0';
	p += len + 1;
	out->app = memcpy(p, app, la + 1);
	p += la + 1;
	out->sid = memcpy(p, sid, ls + 1);
	p += ls + 1;
	out->eid = memcpy(p, eid, le + 1);
	p += le + 1;
	out->type = memcpy(p, type, lt + 1);
	out->text = block;
	out->len = len;
	out->created_us = created;
	out->seq = seq;
	out->after_read = 0;
	json_decref(ev);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Requests                                                            */
/* ------------------------------------------------------------------ */

static void req_send(sky_engine_req *r);
static void ensure_auth(sky_engine *e);

static void req_free(sky_engine_req *r)
{
	sky_engine *e = r->e;
	if (r->prev)
		r->prev->next = r->next;
	else
		e->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->timer)
		event_free(r->timer);
	free(r->app);
	free(r->sid);
	/* A login or refresh body holds a secret. */
	sky__api_wipe_free(r->body);
	free(r);
}

static void req_finish(sky_engine_req *r, const sky_http_response *res)
{
	sky_engine_req_fn done = r->done;
	void *ctx = r->ctx;
	req_free(r);
	done(res, ctx);
}

static void req_fail_now(sky_engine_req *r, const char *why)
{
	sky_http_response res;
	memset(&res, 0, sizeof(res));
	res.retry_after_s = -1;
	res.body = "";
	res.error = why;
	req_finish(r, &res);
}

static void req_on_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine_req *r = arg;
	(void)fd;
	(void)what;
	if (r->fail_pending)
		req_fail_now(r, r->fail_why);
	else
		req_send(r);
}

/* End a request with a failure, from the loop (never inside the call
 * that started it, so callers never see their callback run early). */
static void req_fail_later(sky_engine_req *r, const char *why)
{
	r->fail_pending = 1;
	snprintf(r->fail_why, sizeof(r->fail_why), "%s", why);
	if (!r->timer && !(r->timer = evtimer_new(r->e->base, req_on_timer, r)))
		return; /* out of memory: it ends when the engine stops */
	arm_ms(r->timer, 0);
}

/* Try again later; `in_send` when called from inside req_send(). */
static void req_retry(sky_engine_req *r, const sky_http_response *res,
		      int in_send)
{
	sky_engine *e = r->e;
	unsigned limit = e->o.retry_limit;
	if (!e->follow_run && r->attempts + 1 >= limit) {
		if (in_send)
			req_fail_later(r, res->error);
		else
			req_finish(r, res);
		return;
	}
	long ms = sky__backoff_ms(r->attempts++, e->o.backoff_min_ms,
				  e->o.backoff_max_ms);
	if (res->retry_after_s >= 0 && res->retry_after_s * 1000 > ms)
		ms = res->retry_after_s * 1000 > 3600000
			 ? 3600000
			 : res->retry_after_s * 1000;
	sky__api_error(r->call, r->app, res);
	warn_retry(e, sky_error_last()->message, ms);
	if (!r->timer && !(r->timer = evtimer_new(e->base, req_on_timer, r)))
		return; /* out of memory: it ends when the engine stops */
	arm_ms(r->timer, ms);
}

static void req_http_done(const sky_http_response *res, void *arg)
{
	sky_engine_req *r = arg;
	sky_engine *e = r->e;
	r->http = NULL;
	e->st.rest_ok = res->transport_ok;
	if (e->snap)
		e->snap->progress.requests++;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_AUTH && sky__api_route(r->call)->needs_token &&
	    r->auth_gen != e->auth_gen && e->access && r->auth_resends < 8) {
		/* Sent with an older token: a newer one came meanwhile. */
		r->auth_resends++;
		req_send(r);
		return;
	}
	if (out == SKY_API_AUTH && sky__api_route(r->call)->needs_token &&
	    r->auth_tries < 2) {
		/*
		 * Our token is refused: drop it and get another -- a refresh
		 * first; a token refused right after a refresh means the
		 * refresh token is no better, so one new login with the
		 * stored credentials; a 401 after that ends the request.
		 */
		r->auth_tries++;
		if (r->auth_gen == e->auth_gen && e->access) {
			sky__api_wipe_free(e->access);
			e->access = NULL;
			if (e->token_from_refresh && e->refresh) {
				elog(e, SKY_LOG_INFO,
				     "token refused after a refresh: "
				     "logging in again");
				sky__api_wipe_free(e->refresh);
				e->refresh = NULL;
			}
		}
		r->waiting_auth = 1;
		if (e->access)
			req_send(r); /* a newer token came meanwhile */
		else
			ensure_auth(e);
		return;
	}
	if (out == SKY_API_RETRY && (r->flags & SKY_ENGINE_REQ_RETRY)) {
		req_retry(r, res, 0);
		return;
	}
	req_finish(r, res);
}

static void req_send(sky_engine_req *r)
{
	sky_engine *e = r->e;
	const sky_api_route *route_ = sky__api_route(r->call);
	if (route_->needs_token && !e->access) {
		r->waiting_auth = 1;
		ensure_auth(e);
		return;
	}
	r->waiting_auth = 0;
	char *url = NULL;
	if (sky__api_url_p(e->proto, e->server, r->call, e->realm, r->app,
			   r->sid, &url) < 0) {
		req_fail_later(r, sky_error_last()->message);
		return;
	}
	sky_http_spec spec = {
	    e->proto->method[r->call], url, route_->needs_token ? e->access : NULL,
	    r->body,	    r->body_len, 0, 0};
	spec.not_idempotent = r->call == SKY_API_SESSION_CREATE ||
			      r->call == SKY_API_EVENT_SEND;
	/* Lists may be long (100k sessions); single objects are bounded. */
	if (r->call == SKY_API_SESSIONS || r->call == SKY_API_APPS ||
	    r->call == SKY_API_ROLES)
		spec.max_answer = (size_t)1 << 30;
	r->auth_gen = e->auth_gen;
	int rc = sky__http_send(e->http, &spec, req_http_done, r, &r->http);
	free(url);
	if (rc < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", sky_error_last()->message);
		sky_http_response res;
		memset(&res, 0, sizeof(res));
		res.retry_after_s = -1;
		res.body = "";
		res.error = why;
		if (r->flags & SKY_ENGINE_REQ_RETRY)
			req_retry(r, &res, 1);
		else
			req_fail_later(r, res.error);
	}
}

int sky__engine_request(sky_engine *e, sky_api_call call, const char *app,
			const char *sid, const char *body, size_t body_len,
			unsigned flags, sky_engine_req_fn done, void *ctx,
			sky_engine_req **out)
{
	assert(e && done);
	if (!e->running)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_NONE, 0,
				      "the sync engine is not running");
	char *url = NULL;
	if (sky__api_url_p(e->proto, e->server, call, e->realm, app, sid, &url) <
	    0)
		return -1;
	free(url);
	sky_engine_req *r = calloc(1, sizeof(*r));
	if (!r)
		return sky__error_nomem();
	r->e = e;
	r->call = call;
	r->flags = flags;
	r->done = done;
	r->ctx = ctx;
	if ((app && !(r->app = strdup(app))) ||
	    (sid && !(r->sid = strdup(sid))) ||
	    (body && !(r->body = malloc(body_len + 1)))) {
		free(r->app);
		free(r->sid);
		free(r);
		return sky__error_nomem();
	}
	if (body) {
		memcpy(r->body, body, body_len);
		r->body[body_len] = '\0';
		r->body_len = body_len;
	}
	r->next = e->reqs;
	if (e->reqs)
		e->reqs->prev = r;
	e->reqs = r;
	if (out)
		*out = r;
	req_send(r);
	return 0;
}

void sky__engine_request_cancel(sky_engine_req *r)
{
	if (!r)
		return;
	if (r->http)
		sky__http_cancel(r->http);
	req_free(r);
}

static void cancel_all_requests(sky_engine *e)
{
	while (e->reqs)
		sky__engine_request_cancel(e->reqs);
}

/* ------------------------------------------------------------------ */
/* Authentication                                                      */
/* ------------------------------------------------------------------ */

static void auth_send_login(sky_engine *e);
static void after_login(sky_engine *e);

static void auth_got_tokens(sky_engine *e, const sky_http_response *res)
{
	sky_api_tokens t;
	if (sky__api_parse_tokens(res->body, res->len, &t) < 0) {
		/* A server that answers 200 with nonsense: try again later. */
		sky__error_prefix("login answer");
		e->auth_busy = 0;
		warn_retry(e, sky_error_last()->message, e->o.backoff_max_ms);
		arm_ms(e->ev_refresh, e->o.backoff_max_ms);
		return;
	}
	sky__api_wipe_free(e->access);
	sky__api_wipe_free(e->refresh);
	e->access = t.access_token;
	e->refresh = t.refresh_token;
	int64_t now = sky__now_us();
	e->access_got_us = now;
	e->access_ttl_us = t.expires_in_s * 1000000;
	e->refresh_exp_us = t.refresh_expires_in_s > 0
				? now + t.refresh_expires_in_s * 1000000
				: 0;
	e->auth_gen++;
	e->auth_busy = 0;
	if (!e->sub) {
		e->sub = sky__api_jwt_sub(e->access);
		if (!e->sub) {
			/* No JWT sub: the user name is the next best id. */
			elog(e, SKY_LOG_WARN,
			     "the access token has no readable "
			     "'sub' claim; using the user name "
			     "in the broker client id");
			e->sub = strdup(e->user);
		}
	}
	if (e->mqtt)
		sky__mqtt_set_password(e->mqtt, e->access);
	/* Refresh at 80 % of the token's life (at least 200 ms from now). */
	long ms = (long)(e->access_ttl_us / 1000 * 8 / 10);
	arm_ms(e->ev_refresh, ms < 200 ? 200 : ms);
	/* Send what waited for a token. */
	for (sky_engine_req *r = e->reqs, *next; r; r = next) {
		next = r->next;
		if (r->waiting_auth)
			req_send(r);
	}
	if (e->state == SKY_ENGINE_LOGIN)
		after_login(e);
}

static void auth_login_done(const sky_http_response *res, void *arg)
{
	sky_engine *e = arg;
	switch (sky__api_classify(res)) {
	case SKY_API_OK:
		elog(e, SKY_LOG_INFO, "logged in to realm %s as %s", e->realm,
		     e->user);
		e->token_from_refresh = 0;
		auth_got_tokens(e, res);
		break;
	case SKY_API_RETRY: /* retries spent (one-shot sync) */
		e->auth_busy = 0;
		sky__api_error(SKY_API_LOGIN, NULL, res);
		engine_fail(e, SKY_ENETWORK, "%s", sky_error_last()->message);
		break;
	default:
		e->auth_busy = 0;
		sky__api_error(SKY_API_LOGIN, NULL, res);
		engine_fail(e, SKY_ENETWORK, "login refused: %s",
			    sky_error_last()->message);
		break;
	}
}

static void auth_refresh_done(const sky_http_response *res, void *arg)
{
	sky_engine *e = arg;
	switch (sky__api_classify(res)) {
	case SKY_API_OK:
		elog(e, SKY_LOG_DEBUG, "access token refreshed");
		e->token_from_refresh = 1;
		auth_got_tokens(e, res);
		break;
	case SKY_API_RETRY:
		e->auth_busy = 0;
		sky__api_error(SKY_API_REFRESH, NULL, res);
		engine_fail(e, SKY_ENETWORK, "%s", sky_error_last()->message);
		break;
	default:
		/* The refresh token expired or is unknown: log in again. */
		elog(e, SKY_LOG_INFO,
		     "token refresh refused (HTTP %ld): "
		     "logging in again",
		     res->status);
		sky__api_wipe_free(e->refresh);
		e->refresh = NULL;
		auth_send_login(e);
		break;
	}
}

static void auth_send_login(sky_engine *e)
{
	size_t len;
	char *body = sky__api_login_body(e->user, e->password, e->realm, &len);
	e->auth_busy = 1;
	if (!body || sky__engine_request(e, SKY_API_LOGIN, NULL, NULL, body,
					 len, SKY_ENGINE_REQ_RETRY,
					 auth_login_done, e, NULL) < 0) {
		e->auth_busy = 0;
		engine_fail(e, SKY_ERROR, "cannot log in: %s",
			    sky_error_last()->message);
	}
	if (body)
		sky__api_wipe_free(body);
}

static void auth_send_refresh(sky_engine *e)
{
	size_t len;
	char *body = sky__api_refresh_body(e->refresh, &len);
	e->auth_busy = 1;
	if (!body || sky__engine_request(e, SKY_API_REFRESH, NULL, NULL, body,
					 len, SKY_ENGINE_REQ_RETRY,
					 auth_refresh_done, e, NULL) < 0) {
		e->auth_busy = 0;
		engine_fail(e, SKY_ERROR, "cannot refresh the token: %s",
			    sky_error_last()->message);
	}
	if (body)
		sky__api_wipe_free(body);
}

/* Get a token if we have none and none is on its way. */
static void ensure_auth(sky_engine *e)
{
	if (e->auth_busy || e->stopping)
		return;
	int64_t now = sky__now_us();
	/* A refresh token about to expire would only earn a 401 first. */
	if (e->refresh &&
	    (!e->refresh_exp_us || now + 1000000 < e->refresh_exp_us))
		auth_send_refresh(e);
	else
		auth_send_login(e);
}

/* Timer: refresh before the access token expires. */
static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (!e->auth_busy && !e->stopping)
		ensure_auth(e); /* keeps the current token until the new one */
}

/* ------------------------------------------------------------------ */
/* Broker                                                              */
/* ------------------------------------------------------------------ */

static void on_mqtt_connected(int session_present, void *ctx)
{
	sky_engine *e = ctx;
	int64_t now = sky__now_us();
	e->st.broker_connects++;
	if (e->broker_seen) {
		int64_t away = e->broker_lost_us ? now - e->broker_lost_us : 0;
		if (!session_present) {
			elog(e, SKY_LOG_INFO,
			     "the broker lost our session: "
			     "events may be missing, resync");
			e->need_resync = 1;
		} else if (away >
			   (int64_t)e->o.resync_after_offline_s * 1000000) {
			elog(e, SKY_LOG_INFO,
			     "away from the broker for %.0f s: "
			     "resync",
			     away / 1e6);
			e->need_resync = 1;
		}
	}
	if (!e->broker_seen && !e->first_done) {
		e->resume_present = session_present;
		e->counting_backlog = session_present;
	}
	e->broker_seen = 1;
	elog(e, SKY_LOG_DEBUG, "broker connected (session %s)",
	     session_present ? "kept" : "new");
}

static void on_mqtt_subscribed(int ok, void *ctx)
{
	sky_engine *e = ctx;
	if (!ok) {
		warn_retry(e, "the broker refused our subscription",
			   e->o.backoff_max_ms);
		sky__mqtt_drop(e->mqtt);
		return;
	}
	e->broker_up = 1;
	e->broker_lost_us = 0;
	e->suback_mono_us = mono_us();
	e->st.broker_up = 1;
	elog(e, SKY_LOG_INFO, "subscribed to the realm's events");
	if (e->state == SKY_ENGINE_SUBSCRIBE) {
		evtimer_del(e->ev_broker_wait);
		e->need_resync = 0;
		begin_sync(e);
		return;
	}
	if (!e->need_resync)
		return;
	if (e->state == SKY_ENGINE_LIVE) {
		e->need_resync = 0;
		start_snapshot(e, 1);
	} else if (e->state == SKY_ENGINE_SNAPSHOT && e->snap) {
		e->need_resync = 0;
		e->snap->again = 1;
	} else if (e->state == SKY_ENGINE_BACKOFF) {
		e->need_resync = 0; /* the coming snapshot covers it */
	}
}

static void on_mqtt_lost(const char *why, void *ctx)
{
	sky_engine *e = ctx;
	if (e->broker_up) {
		e->broker_up = 0;
		e->st.broker_up = 0;
		e->broker_lost_us = sky__now_us();
		elog(e, SKY_LOG_WARN, "broker connection lost: %s", why);
	} else {
		elog(e, SKY_LOG_DEBUG, "broker: %s", why);
		snprintf(e->st.error, sizeof(e->st.error), "broker: %s", why);
	}
}

static void on_mqtt_refused(int rc, const char *why, void *ctx)
{
	sky_engine *e = ctx;
	snprintf(e->st.error, sizeof(e->st.error), "broker: %s", why);
	elog(e, SKY_LOG_WARN, "broker: %s", why);
	/* 4: bad user name or password, 5: not authorised: maybe our token
	 * expired; the next attempt uses a fresh one. */
	if ((rc == 4 || rc == 5) && !e->auth_busy && e->access &&
	    sky__now_us() - e->access_got_us > 5000000) {
		sky__api_wipe_free(e->access);
		e->access = NULL;
		ensure_auth(e);
	}
}

static void on_mqtt_message(const char *topic, const char *payload, size_t len,
			    void *ctx)
{
	sky_engine *e = ctx;
	/* Only our realm's topics (the {realm} level of the publish topic). */
	char tbuf[3 * SKY_MAX_ID_BYTES + 8];
	const char *ta, *ts, *tt;
	if (!sky__protocol_topic_read(e->proto, topic, e->realm, tbuf,
				      sizeof(tbuf), &ta, &ts, &tt))
		return;
	e->st.events_received++;
	if (e->counting_backlog) {
		e->st.backlog_events++;
		if (e->drain_start_us &&
		    mono_us() - e->drain_start_us < DRAIN_MAX_US)
			arm_ms(e->ev_drain, DRAIN_QUIET_MS);
	}
	evitem it;
	if (evitem_make(e, payload, len, e->cache->opts.max_event_bytes, ++e->seq,
			topic, &it) < 0) {
		engine_fail(e, SKY_ERROR, "out of memory keeping an event");
		return;
	}
	route(e, &it);
}

static void on_broker_wait(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->state != SKY_ENGINE_SUBSCRIBE)
		return;
	/* Fresh data beats waiting: read now, resync once subscribed. */
	e->full_why = SKY_SYNC_WHY_NO_BROKER;
	e->counting_backlog = 0;
	elog(e, SKY_LOG_WARN,
	     "the broker is not reachable yet: reading the "
	     "realm now, again once subscribed");
	e->need_resync = 1;
	start_snapshot(e, 0);
}

/*
 * Ending the broker session of the cache's previous identity (another
 * realm or user): one connection with that client id and a clean session
 * makes the broker drop what it kept, then we disconnect. Best effort, one
 * attempt: whatever happens is logged and the retiring connection stops
 * (from a timer: stopping inside libmosquitto's callbacks would close the
 * socket under the loop's feet).
 */
static void on_retire_stop(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	sky__mqtt_stop(e->mqtt_retire);
}

static void on_retire_connected(int session_present, void *ctx)
{
	sky_engine *e = ctx;
	(void)session_present;
	elog(e, SKY_LOG_INFO,
	     "ended the broker session of the cache's previous identity");
	arm_ms(e->ev_retire, 0);
}

static void on_retire_lost(const char *why, void *ctx)
{
	sky_engine *e = ctx;
	elog(e, SKY_LOG_WARN,
	     "could not end the broker session of the cache's previous "
	     "identity: %s",
	     why);
	arm_ms(e->ev_retire, 0);
}

static void on_retire_refused(int rc, const char *why, void *ctx)
{
	(void)rc;
	on_retire_lost(why, ctx);
}

static void retire_identity(sky_engine *e, const char *old_id,
			    const char *user)
{
	elog(e, SKY_LOG_INFO,
	     "the cache changes realm or user: a new broker identity; "
	     "ending the broker session of %s",
	     old_id);
	sky_mqtt_options mo = {0};
	mo.url = e->broker;
	mo.client_id = old_id;
	mo.username = user;
	mo.password = e->access;
	mo.cafile = e->cafile;
	mo.insecure = e->o.insecure;
	mo.clean_session = 1;
	sky_mqtt_callbacks cb = {on_retire_connected, NULL, NULL,
				 on_retire_lost, on_retire_refused};
	if (!(e->ev_retire = evtimer_new(e->base, on_retire_stop, e)))
		sky__error_nomem();
	if (!e->ev_retire ||
	    sky__mqtt_new(e->base, &mo, &cb, e, &e->mqtt_retire) < 0 ||
	    sky__mqtt_start(e->mqtt_retire) < 0)
		elog(e, SKY_LOG_WARN,
		     "could not end the broker session of %s: %s", old_id,
		     sky_error_last()->message);
}

static int start_broker(sky_engine *e)
{
	char *topic = NULL, *user = NULL, *client = NULL, *retired = NULL;
	int rc = -1;
	topic = sky__protocol_topic(e->proto->subscribe, e->realm, NULL, NULL,
				    NULL);
	if (asprintf(&user, "%s/%s", e->realm, e->sub) < 0)
		user = NULL;
	if (!topic || !user) {
		sky__error_nomem();
		goto done;
	}
	/* One client id per cache, realm and user (identity.c): every run
	 * resumes the broker session, with what it queued meanwhile. */
	if ((rc = sky__identity_client_id(e->cache, e->realm, e->sub, &client,
					  &retired)) < 0) {
		sky__error_prefix("choosing the broker client id");
		goto done;
	}
	elog(e, SKY_LOG_DEBUG, "broker client id %s", client);
	sky_mqtt_options mo = {
	    e->broker,		 client, user,
	    e->access,		 topic,	 e->cafile,
	    e->o.insecure,	 30,	 e->o.backoff_min_ms * 2,
	    e->o.backoff_max_ms, 0};
	sky_mqtt_callbacks cb = {on_mqtt_connected, on_mqtt_subscribed,
				 on_mqtt_message, on_mqtt_lost,
				 on_mqtt_refused};
	if ((rc = sky__mqtt_new(e->base, &mo, &cb, e, &e->mqtt)) == 0)
		rc = sky__mqtt_start(e->mqtt);
	if (rc == 0 && retired && !e->mqtt_retire)
		retire_identity(e, retired, user);
done:
	free(topic);
	free(user);
	free(client);
	free(retired);
	return rc;
}

static void after_login(sky_engine *e)
{
	/* A one-shot sync of a cache never synced reads everything and
	 * needs no broker; one of a synced cache asks the broker first
	 * whether it kept our session (see "Resuming"). */
	if (!e->follow_run && !synced_before(e)) {
		e->full_why = SKY_SYNC_WHY_NEVER_SYNCED;
		start_snapshot(e, 0);
		return;
	}
	set_state(e, SKY_ENGINE_SUBSCRIBE);
	if (!e->mqtt && start_broker(e) < 0) {
		engine_fail(
		    e, sky_error_last()->code ? sky_error_last()->code : -1,
		    "broker: %s", sky_error_last()->message);
		return;
	}
	arm_ms(e->ev_broker_wait,
	       e->follow_run ? BROKER_WAIT_MS : BROKER_WAIT_ONCE_MS);
}

void sky__engine_drop_broker(sky_engine *e)
{
	if (e && e->mqtt)
		sky__mqtt_drop(e->mqtt);
}

/* ------------------------------------------------------------------ */
/* Applying events                                                     */
/* ------------------------------------------------------------------ */

static unsigned change_of(const sky_engine *e, const char *wire)
{
	int t = sky__protocol_event_type(e->proto, wire);
	const char *type = t < 0 ? wire : sky__protocol_event_key(t);
	static const struct {
		const char *type;
		unsigned what;
	} map[] = {{"session_created", SKY_CHANGE_ADDED},
		   {"session_updated", SKY_CHANGE_SESSION},
		   {"session_properties_updated", SKY_CHANGE_PROPERTIES},
		   {"session_data_updated", SKY_CHANGE_DATA},
		   {"session_event_created", SKY_CHANGE_EVENT},
		   {"session_closed", SKY_CHANGE_CLOSED}};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(map[i].type, type))
			return map[i].what;
	return SKY_CHANGE_SESSION;
}

/* Apply up to `limit` queued events in one transaction. */
static void apply_some(sky_engine *e, size_t limit)
{
	evq *q = &e->incoming;
	size_t n = q->n < limit ? q->n : limit;
	if (!n)
		return;
	evitem *its = malloc(n * sizeof(*its));
	sky_event_item *items = calloc(n, sizeof(*items));
	if (!its || !items) {
		free(its);
		free(items);
		engine_fail(e, SKY_ERROR, "out of memory applying events");
		return;
	}
	memcpy(its, q->v + q->head, n * sizeof(*its));
	q->head += n;
	q->n -= n;
	if (!q->n)
		q->head = 0;
	for (size_t i = 0; i < n; i++) {
		items[i].json = its[i].text;
		items[i].len = its[i].len;
	}
	if (sky_event_apply_batch(e->cache, items, n) < 0) {
		/* Storage failed: these events are lost to us; read again. */
		elog(e, SKY_LOG_ERROR, "cannot apply %zu events: %s", n,
		     sky_error_last()->message);
		e->need_resync = 1;
		if (e->state == SKY_ENGINE_LIVE && e->ev_resync)
			arm_ms(e->ev_resync, e->o.backoff_max_ms);
		goto done;
	}
	int64_t now = sky__now_us();
	for (size_t i = 0; i < n; i++) {
		evitem *it = &its[i];
		switch (items[i].outcome) {
		case SKY_EVENT_APPLIED:
			e->st.events_applied++;
			if (it->created_us) {
				if (it->created_us > e->st.last_event_us)
					e->st.last_event_us = it->created_us;
				e->st.event_lag_us = now - it->created_us;
			}
			notify(e, it->app, it->sid, change_of(e, it->type),
			       it->type, it->eid);
			break;
		case SKY_EVENT_DUPLICATE: e->st.events_skipped++; break;
		case SKY_EVENT_STALE:
			e->st.events_skipped++;
			elog(e, SKY_LOG_DEBUG,
			     "event %s (%s) for %s/%s is stale%s", it->eid,
			     it->type, it->app, it->sid,
			     it->after_read ? " (in the read)"
					    : ": re-reading");
			/* A live event older than what we hold arrived late: a
			 * change may have been skipped with it. Re-read. */
			if (!it->after_read)
				fetch_schedule(e, it->app, it->sid, 1);
			break;
		case SKY_EVENT_DEFERRED:
			fetch_schedule(e, it->app, it->sid, 0);
			break;
		case SKY_EVENT_REJECTED:
			/* Refused by the cache (malformed, over a limit): the
			 * server changed the session all the same, so it is
			 * read again rather than left to diverge. */
			e->st.events_rejected++;
			char what[SKY_MAX_ID_BYTES + 80];
			snprintf(what, sizeof(what), "event %s (%s)",
				 *it->eid ? it->eid : "without a readable id",
				 *it->type ? it->type : "unknown type");
			count_refused(e, what, it->app, it->sid,
				      items[i].error);
			fetch_schedule(e, it->app, it->sid, 1);
			break;
		}
		sky_free(items[i].error);
	}
done:
	for (size_t i = 0; i < n; i++)
		free(its[i].text);
	free(its);
	free(items);
}

static void on_apply(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	e->apply_armed = 0;
	if (e->stopping)
		return;
	apply_some(e, APPLY_BATCH);
	if (e->incoming.n)
		schedule_apply(e);
}

static void schedule_apply(sky_engine *e)
{
	if (e->apply_armed || !e->ev_apply)
		return;
	e->apply_armed = 1;
	/* After the loop's other ready events: events read together batch. */
	arm_ms(e->ev_apply, 0);
}

static void apply_all(sky_engine *e)
{
	while (e->incoming.n)
		apply_some(e, APPLY_BATCH);
}

/* ------------------------------------------------------------------ */
/* Re-reading one session ("fetch")                                    */
/* ------------------------------------------------------------------ */

static size_t fetch_bucket(const char *app, const char *sid)
{
	uint64_t h = sky__hash64(app, strlen(app) + 1) * 31 +
		     sky__hash64(sid, strlen(sid));
	return (size_t)(h % FETCH_BUCKETS);
}

static fetch *fetch_find(sky_engine *e, const char *app, const char *sid)
{
	for (fetch *f = e->ftab[fetch_bucket(app, sid)]; f; f = f->hnext)
		if (!strcmp(f->app, app) && !strcmp(f->sid, sid))
			return f;
	return NULL;
}

static void fetch_unlink(sky_engine *e, fetch *f)
{
	fetch **pp = &e->ftab[fetch_bucket(f->app, f->sid)];
	while (*pp && *pp != f)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = f->hnext;
		e->fetch_count--;
	}
	if (!f->inflight) {
		fetch **qp = &e->fq_head;
		fetch *prev = NULL;
		while (*qp && *qp != f) {
			prev = *qp;
			qp = &(*qp)->qnext;
		}
		if (*qp) {
			*qp = f->qnext;
			if (e->fq_tail == f)
				e->fq_tail = prev;
		}
	} else {
		e->fetch_inflight--;
	}
}

static void fetch_free(fetch *f)
{
	sky__engine_request_cancel(f->req_s);
	sky__engine_request_cancel(f->req_d);
	evq_clear(&f->held);
	json_decref(f->session);
	free(f->data);
	free(f->app);
	free(f->sid);
	free(f);
}

/*
 * Schedule a re-read of app/sid, at the earliest `delay_us` from now (or
 * FETCH_DELAY_MS, which gathers the triggers of a burst). From now on the
 * session's events wait in the fetch.
 */
static void fetch_schedule_at(sky_engine *e, const char *app, const char *sid,
			      int stale, int64_t delay_us, unsigned rounds)
{
	if (!*app || !*sid || e->stopping)
		return;
	/* While the backlog comes in, a session that needs a read is read
	 * by the resumed snapshot (see "Resuming"). */
	if (e->counting_backlog && keyset_add(&e->named, app, sid) < 0)
		elog(e, SKY_LOG_ERROR, "out of memory noting a session");
	fetch *f = fetch_find(e, app, sid);
	if (f) {
		f->stale |= stale;
		if (f->inflight)
			f->again = 1;
		return;
	}
	if (!(f = calloc(1, sizeof(*f))) || !(f->app = strdup(app)) ||
	    !(f->sid = strdup(sid))) {
		if (f) {
			free(f->app);
			free(f);
		}
		elog(e, SKY_LOG_ERROR, "out of memory scheduling a re-read");
		return;
	}
	f->e = e;
	f->stale = stale;
	f->rounds = rounds;
	f->not_before = delay_us > 0 ? mono_us() + delay_us : 0;
	e->fetch_count++;
	size_t b = fetch_bucket(app, sid);
	f->hnext = e->ftab[b];
	e->ftab[b] = f;
	if (e->fq_tail)
		e->fq_tail->qnext = f;
	else
		e->fq_head = f;
	e->fq_tail = f;
	if (!evtimer_pending(e->ev_fetch, NULL))
		arm_ms(e->ev_fetch, delay_us > 0 ? (long)(delay_us / 1000) + 1
						 : FETCH_DELAY_MS);
}

static void fetch_schedule(sky_engine *e, const char *app, const char *sid,
			   int stale)
{
	fetch_schedule_at(e, app, sid, stale, 0, 0);
}

void sky__engine_refetch(sky_engine *e, const char *app, const char *sid)
{
	fetch_schedule(e, app, sid, 1);
}

/* ---- stale sessions and refused answers ---- */

/* A read failed: counted, and the first one kept for the run's result. */
static void read_failed(sky_engine *e, const char *what)
{
	e->st.reads_failed++;
	if (!e->st.read_error[0]) {
		/* Cut to fit (a message may be longer than the field). */
		size_t n = strlen(what);
		if (n >= sizeof(e->st.read_error))
			n = sizeof(e->st.read_error) - 1;
		memcpy(e->st.read_error, what, n);
		e->st.read_error[n] = '\0';
	}
}

/*
 * The mirror may be behind the server for app/sid: the mark goes into
 * the cache (readers see it), and a following engine reads the session
 * again after a capped, jittered backoff that grows with each failure
 * in a row; a one-shot sync leaves it to the next sync.
 */
static void stale_mark(sky_engine *e, const char *app, const char *sid,
		       const char *why)
{
	if (!app || !sid || !*app || !*sid)
		return;
	int64_t v[2] = {0, 0};
	keyset_get(&e->stale, app, sid, v);
	unsigned fails = (unsigned)v[0];
	if (keyset_set(&e->stale, app, sid, (int64_t)fails + 1, 0) < 0)
		elog(e, SKY_LOG_ERROR, "out of memory noting a stale session");
	e->st.stale_sessions = e->stale.n;
	if (sky__stale_mark(e->cache, app, sid, why) < 0)
		elog(e, SKY_LOG_ERROR, "cannot mark session %s/%s stale: %s",
		     app, sid, sky_error_last()->message);
	if (!e->follow_run || e->stopping) {
		elog(e, SKY_LOG_WARN,
		     "session %s/%s is stale (%s): the next sync reads it "
		     "again",
		     app, sid, why);
		return;
	}
	long ms = sky__backoff_ms(fails, e->o.backoff_min_ms * 4,
				  e->o.backoff_max_ms);
	elog(e, SKY_LOG_WARN, "session %s/%s is stale (%s): reading it again "
	     "in %.1f s", app, sid, why, ms / 1000.0);
	fetch_schedule_at(e, app, sid, 1, (int64_t)ms * 1000, 0);
}

/* A read of app/sid failed (or its answer was refused): counted for the
 * run's result, naming the session, and the session is stale. */
static void session_failed(sky_engine *e, const char *app, const char *sid,
			   const char *why)
{
	char what[SKY_MAX_ID_BYTES * 2 + 220];
	snprintf(what, sizeof(what), "session %s/%s: %.200s", app ? app : "?",
		 sid ? sid : "?", why);
	read_failed(e, what);
	stale_mark(e, app, sid, why);
}

/* A read of app/sid was stored, or the session left the mirror. */
static void stale_clear(sky_engine *e, const char *app, const char *sid)
{
	if (!e->stale.n || !app || !sid || !keyset_has(&e->stale, app, sid))
		return;
	keyset_del(&e->stale, app, sid);
	e->st.stale_sessions = e->stale.n;
	if (sky__stale_clear(e->cache, app, sid) < 0)
		elog(e, SKY_LOG_ERROR, "cannot clear the stale mark of %s/%s: %s",
		     app, sid, sky_error_last()->message);
	else
		elog(e, SKY_LOG_INFO, "session %s/%s is current again", app,
		     sid);
}

/* The cache refused a server event or answer (`what`) for app/sid. */
static void count_refused(sky_engine *e, const char *what, const char *app,
			  const char *sid, const char *why)
{
	e->st.server_events_refused++;
	if (sky__stale_count_refused(e->cache, 1) < 0)
		elog(e, SKY_LOG_ERROR, "cannot count a refused %s: %s", what,
		     sky_error_last()->message);
	elog(e, SKY_LOG_WARN, "%s for session %s/%s refused by the cache: %s",
	     what, app && *app ? app : "?", sid && *sid ? sid : "?",
	     why ? why : "malformed");
}

typedef struct {
	sky_engine *e;
	json_t *sids;
} app_sessions;

static int collect_sid(const char *json, size_t len, void *payload)
{
	app_sessions *a = payload;
	json_t *s = sky__json_loadb(json, len, 0, NULL);
	const char *sid = sky__json_str(s, "sessionId");
	int rc = sid && json_array_append_new(a->sids, json_string(sid)) < 0
		     ? sky__error_nomem()
		     : 0;
	json_decref(s);
	return rc;
}

/* Every session the mirror holds of `app` is stale (its list failed). */
static void stale_app(sky_engine *e, const char *app, const char *why)
{
	app_sessions a = {e, json_array()};
	if (!a.sids || sky_session_list(e->cache, app, collect_sid, &a) < 0) {
		elog(e, SKY_LOG_ERROR, "cannot mark the sessions of %s stale",
		     app);
	} else {
		size_t i;
		json_t *v;
		json_array_foreach(a.sids, i, v)
			stale_mark(e, app, json_string_value(v), why);
	}
	json_decref(a.sids);
}

static int load_stale_one(const sky_stale_session *s, void *payload)
{
	sky_engine *e = payload;
	return keyset_set(&e->stale, s->app_id, s->session_id, 0, 0) < 0
		   ? sky__error_nomem()
		   : 0;
}

/* The marks the cache holds (from earlier runs) become ours. */
static void load_stale(sky_engine *e)
{
	keyset_free(&e->stale);
	if (sky_stale_list(e->cache, load_stale_one, e) < 0)
		elog(e, SKY_LOG_WARN, "cannot read the stale sessions: %s",
		     sky_error_last()->message);
	e->st.stale_sessions = e->stale.n;
}

/*
 * Release a finished fetch: its held events go on, after a read or not.
 * `settle` (after an unclear read) first schedules the next read of the
 * session, so the held events wait in it instead (route()).
 */
static void fetch_end(sky_engine *e, fetch *f, int after_read, int settle)
{
	fetch_unlink(e, f);
	int again = f->again;
	unsigned rounds = f->rounds;
	char *app = f->app, *sid = f->sid;
	f->app = f->sid = NULL;
	evq held = f->held;
	memset(&f->held, 0, sizeof(f->held));
	fetch_free(f);
	if (settle) {
		fetch_schedule_at(e, app, sid, 1, SETTLE_US, rounds + 1);
		again = 0;
	}
	if (after_read) {
		evq_release(e, &held);
	} else {
		for (size_t i = 0; i < held.n; i++)
			route(e, &held.v[held.head + i]);
		free(held.v);
	}
	if (again)
		fetch_schedule(e, app, sid, 1);
	free(app);
	free(sid);
	schedule_apply(e);
	if (e->fq_head && !evtimer_pending(e->ev_fetch, NULL))
		arm_ms(e->ev_fetch, 0);
}

/* Session data as the server sent it: an object, under the depth limit
 * (its size is bounded by the answer limit already). */
static int parse_data(sky_engine *e, const char *text, size_t len, json_t **out)
{
	sky_json_limits lim = {0, e->cache->opts.max_depth};
	return sky__api_parse_object(text, len, &lim, "session data", out);
}

static int64_t modified_us(const json_t *session)
{
	int64_t t = 0;
	const char *m = sky__json_str(session, "modifiedAt");
	if (m && sky__parse_time(m, &t) < 0)
		t = 0;
	return t;
}

/*
 * as_of for storing a session read at bound_s (session) and bound_d
 * (data), per "Clocks" at the top.
 */
static int64_t read_as_of(sky_engine *e, const json_t *session, int64_t bound_s,
			  int64_t bound_d, int *known)
{
	int64_t s = bound_s, m = modified_us(session);
	if (m > s)
		s = m;
	/* No Date on the data read: nothing is proven about it but the wm. */
	int64_t as_of = bound_d < s ? bound_d : s;
	int64_t wm;
	unsigned flags;
	*known = sky__repair_session_info(
		     e->cache, sky__json_str(session, "applicationId"),
		     sky__json_str(session, "sessionId"), &wm, &flags) == 0;
	if (*known && wm > as_of)
		as_of = wm;
	return as_of;
}

/*
 * The latest server time a read can have happened at: its Date (whole
 * seconds) plus one second. 0 when a Date is missing (nothing known).
 */
static int64_t read_upper(int64_t date_a, int64_t date_b)
{
	if (!date_a || !date_b)
		return 0;
	return (date_a > date_b ? date_a : date_b) + 1000000;
}

/*
 * Whether events held over a read stored at `as_of` include one that the
 * read may or may not reflect (created in [as_of, upper)). Such an event
 * cannot be re-applied safely if a newer change it would cover is still
 * on its way, nor skipped if the read missed it; a read a second later
 * settles it (it is then older than that read's as_of). After
 * SETTLE_ROUNDS unclear reads in a row (a session changing all the time)
 * the events are re-applied in order instead, which is exact whenever no
 * event is late.
 */
static int unclear(unsigned rounds, const evq *held, int64_t as_of,
		   int64_t upper)
{
	if (rounds >= SETTLE_ROUNDS || upper <= as_of)
		return 0;
	for (size_t i = 0; i < held->n; i++) {
		int64_t t = held->v[held->head + i].created_us;
		if (t >= as_of && t < upper)
			return 1;
	}
	return 0;
}

static void fetch_complete(sky_engine *e, fetch *f)
{
	if (f->failed) {
		/* Retries spent or a permanent error: apply what waited, and
		 * the session is stale until a read of it is stored. */
		char *app = strdup(f->app), *sid = strdup(f->sid);
		char why[sizeof(f->why)];
		snprintf(why, sizeof(why), "%s",
			 f->why[0] ? f->why : "the re-read failed");
		fetch_end(e, f, 0, 0);
		if (app && sid) {
			session_failed(e, app, sid, why);
		}
		free(app);
		free(sid);
		return;
	}
	e->st.refetches++;
	if (f->gone) {
		/*
		 * Not visible to us (any more): it leaves the mirror, and we
		 * remember that, so that a late event (a delayed
		 * session_created...) cannot bring it back: events for it are
		 * checked by a read first (route()).
		 */
		int rc = sky__repair_remove_session(e->cache, f->app, f->sid);
		if (rc > 0)
			notify(e, f->app, f->sid, SKY_CHANGE_REMOVED, NULL,
			       NULL);
		sky__repair_purge_pending(e->cache, f->app, f->sid);
		note_gone(e, f->app, f->sid);
		stale_clear(e, f->app, f->sid);
		evq_clear(&f->held);
		fetch_end(e, f, 1, 0);
		return;
	}
	/*
	 * Stored even when closed and new to us: a late session_created
	 * could otherwise bring it back as open; stored, that event is stale.
	 * Closed sessions stay until their retention ends (retain.c).
	 */
	int known;
	int64_t as_of =
	    read_as_of(e, f->session, f->bound_s, f->bound_d, &known);
	keyset_del(&e->gone, f->app, f->sid);
	if (e->o.on_log) {
		char t[32];
		sky__format_time(as_of, t);
		elog(e, SKY_LOG_DEBUG,
		     "re-read %s/%s: stored as of %s, %zu "
		     "events held",
		     f->app, f->sid, t, f->held.n);
	}
	json_t *data = NULL;
	sky__parsed_put item = {f->session, NULL, as_of, 0, NULL};
	if (parse_data(e, f->data, f->data_len, &data) < 0) {
		item.result = SKY_EINVAL;
		item.error = sky__error_dup();
	}
	item.data = data;
	unsigned what = e->o.on_change && data
			    ? sky__repair_diff(e->cache, f->session, data)
			    : 0;
	/* The outcome for the stale mark, acted on once the fetch ended
	 * (a mark schedules the next read of this same session). */
	char why[200] = "";
	int ok = 0;
	if (sky__session_put_parsed(e->cache, &item, 1) < 0) {
		elog(e, SKY_LOG_ERROR, "cannot store session %s/%s: %s", f->app,
		     f->sid, sky_error_last()->message);
		snprintf(why, sizeof(why), "storing its read: %s",
			 sky_error_last()->message);
	} else if (item.result) {
		snprintf(why, sizeof(why), "the server's answer was refused: %s",
			 item.error ? item.error : "not valid");
		count_refused(e, "the server's answer", f->app, f->sid,
			      item.error);
	} else {
		ok = 1;
		notify(e, f->app, f->sid, what, NULL, NULL);
	}
	free(item.error);
	json_decref(data);
	char *app = strdup(f->app), *sid = strdup(f->sid);
	int64_t upper = read_upper(f->bound_s, f->bound_d);
	fetch_end(e, f, 1, unclear(f->rounds, &f->held, as_of, upper));
	if (app && sid && ok) {
		stale_clear(e, app, sid);
	} else if (app && sid) {
		session_failed(e, app, sid, why);
	}
	free(app);
	free(sid);
}

static void fetch_part_done(sky_engine *e, fetch *f, int is_data,
			    const sky_http_response *res)
{
	if (is_data)
		f->req_d = NULL;
	else
		f->req_s = NULL;
	switch (sky__api_classify(res)) {
	case SKY_API_OK:
		if (is_data) {
			f->bound_d = sky__engine_read_bound(res);
			if (!(f->data = malloc(res->len + 1))) {
				f->failed = 1;
				break;
			}
			memcpy(f->data, res->body, res->len);
			f->data[res->len] = '\0';
			f->data_len = res->len;
		} else {
			f->bound_s = sky__engine_read_bound(res);
			if (sky__api_parse_object(res->body, res->len,
						  &e->cache->event_limits,
						  "session", &f->session) < 0 ||
			    sky__validate_session(f->session, "session", 1) <
				0 ||
			    strcmp(sky__json_str(f->session, "applicationId"),
				   f->app) ||
			    strcmp(sky__json_str(f->session, "sessionId"),
				   f->sid)) {
				snprintf(f->why, sizeof(f->why),
					 "the server's answer was refused: %s",
					 sky_error_last()->message);
				count_refused(e, "the server's answer", f->app,
					      f->sid, sky_error_last()->message);
				f->failed = 1;
			}
		}
		break;
	case SKY_API_GONE: f->gone = 1; break;
	default:
		sky__api_error(is_data ? SKY_API_DATA : SKY_API_SESSION, f->app,
			       res);
		elog(e, SKY_LOG_WARN, "re-reading session %s/%s: %s", f->app,
		     f->sid, sky_error_last()->message);
		snprintf(f->why, sizeof(f->why), "reading it: %s",
			 sky_error_last()->message);
		f->failed = 1;
		break;
	}
	if (--f->parts_left == 0)
		fetch_complete(e, f);
}

static void fetch_session_http_done(const sky_http_response *res, void *ctx)
{
	fetch *f = ctx;
	fetch_part_done(f->e, f, 0, res);
}

static void fetch_data_http_done(const sky_http_response *res, void *ctx)
{
	fetch *f = ctx;
	fetch_part_done(f->e, f, 1, res);
}

static int fetch_send_part(sky_engine *e, fetch *f, int is_data)
{
	return sky__engine_request(
	    e, is_data ? SKY_API_DATA : SKY_API_SESSION, f->app, f->sid, NULL,
	    0, SKY_ENGINE_REQ_RETRY,
	    is_data ? fetch_data_http_done : fetch_session_http_done, f,
	    is_data ? &f->req_d : &f->req_s);
}

static void on_fetch_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->stopping || e->snap || !e->running || e->counting_backlog)
		return;
	/*
	 * Every event received before these reads are sent must be in the
	 * cache first (see the top of the file): apply the queue now.
	 */
	apply_all(e);
	int64_t now = mono_us(), next = 0;
	fetch *prev = NULL, *f = e->fq_head;
	while (f && e->fetch_inflight < e->o.max_parallel) {
		fetch *following = f->qnext;
		if (f->not_before > now) {
			/* Waiting to settle: keep its place, note when. */
			if (!next || f->not_before < next)
				next = f->not_before;
			prev = f;
			f = following;
			continue;
		}
		if (prev)
			prev->qnext = following;
		else
			e->fq_head = following;
		if (e->fq_tail == f)
			e->fq_tail = prev;
		f->qnext = NULL;
		f->inflight = 1;
		e->fetch_inflight++;
		if (!f->stale) {
			/* Deferred events: the session may have come since. */
			int64_t wm;
			unsigned flags;
			if (sky__repair_session_info(e->cache, f->app, f->sid,
						     &wm, &flags) == 0) {
				fetch_end(e, f, 0, 0);
				f = following;
				continue;
			}
		}
		f->parts_left = 2;
		if (fetch_send_part(e, f, 0) < 0) {
			f->parts_left = 0;
			fetch_end(e, f, 0, 0);
			f = following;
			continue;
		}
		if (fetch_send_part(e, f, 1) < 0) {
			f->failed = 1;
			f->parts_left--; /* the session part still comes */
		}
		f = following;
	}
	if (next && !evtimer_pending(e->ev_fetch, NULL))
		arm_ms(e->ev_fetch, (long)((next - now) / 1000) + 1);
}

/* Cancel every fetch; their held events join held_all (a snapshot). */
static void fetch_cancel_all(sky_engine *e)
{
	for (size_t b = 0; b < FETCH_BUCKETS; b++) {
		while (e->ftab[b]) {
			fetch *f = e->ftab[b];
			fetch_unlink(e, f);
			for (size_t i = 0; i < f->held.n; i++) {
				evitem *it = &f->held.v[f->held.head + i];
				if (evq_push(&e->held_all, it) < 0)
					free(it->text);
			}
			f->held.n = 0;
			fetch_free(f);
		}
	}
	e->fq_head = e->fq_tail = NULL;
	e->fetch_inflight = 0;
}

/* ------------------------------------------------------------------ */
/* Routing received events                                             */
/* ------------------------------------------------------------------ */

static void route(sky_engine *e, evitem *it)
{
	evq *q = &e->incoming;
	fetch *f;
	if (e->holding_all) {
		q = &e->held_all;
	} else if ((f = fetch_find(e, it->app, it->sid))) {
		q = &f->held;
	} else if (e->gone.n && keyset_has(&e->gone, it->app, it->sid)) {
		/* Believed gone: a read decides whether this event counts. */
		fetch_schedule(e, it->app, it->sid, 1);
		if ((f = fetch_find(e, it->app, it->sid)))
			q = &f->held;
	}
	if (q == &e->held_all && q->n >= HELD_LIMIT) {
		/* A snapshot that takes this long: this event is lost to us,
		 * so read everything again afterwards. */
		if (e->snap)
			e->snap->again = 1;
		free(it->text);
		return;
	}
	if (evq_push(q, it) < 0) {
		free(it->text);
		engine_fail(e, SKY_ERROR, "out of memory holding an event");
		return;
	}
	if (q == &e->incoming)
		schedule_apply(e);
}

/* ------------------------------------------------------------------ */
/* Key sets (listed applications and sessions)                         */
/* ------------------------------------------------------------------ */

static uint64_t key_hash(const char *a, const char *b)
{
	return sky__hash64(a, strlen(a) + 1) * 1099511628211ull ^
	       (b ? sky__hash64(b, strlen(b)) : 0);
}

static int key_eq(const char *k, const char *a, const char *b)
{
	size_t la = strlen(a);
	if (strncmp(k, a, la + 1) != 0)
		return 0;
	return b ? strcmp(k + la + 1, b) == 0 : k[la + 1] == '\0';
}

/* The slot of a key, or -1. */
static long keyset_find(const keyset *s, const char *a, const char *b)
{
	if (!s->cap)
		return -1;
	for (size_t i = key_hash(a, b) & (s->cap - 1);;
	     i = (i + 1) & (s->cap - 1)) {
		if (!s->slot[i])
			return -1;
		if (key_eq(s->slot[i], a, b))
			return (long)i;
	}
}

static int keyset_has(const keyset *s, const char *a, const char *b)
{
	return keyset_find(s, a, b) >= 0;
}

/* The two values stored with a key; 0 when absent. */
static int keyset_get(const keyset *s, const char *a, const char *b,
		      int64_t val[2])
{
	long i = keyset_find(s, a, b);
	if (i < 0)
		return 0;
	val[0] = s->val[i][0];
	val[1] = s->val[i][1];
	return 1;
}

static size_t key_home(const keyset *s, const char *k)
{
	size_t la = strlen(k);
	return key_hash(k, k[la + 1] ? k + la + 1 : NULL) & (s->cap - 1);
}

static int keyset_grow(keyset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	keyset n = {calloc(cap, sizeof(char *)), calloc(cap, sizeof(*n.val)),
		    cap, 0};
	if (!n.slot || !n.val) {
		free(n.slot);
		free(n.val);
		return -1;
	}
	for (size_t i = 0; i < s->cap; i++) {
		char *k = s->slot[i];
		if (!k)
			continue;
		size_t j = key_home(&n, k);
		while (n.slot[j])
			j = (j + 1) & (n.cap - 1);
		n.slot[j] = k;
		n.val[j][0] = s->val[i][0];
		n.val[j][1] = s->val[i][1];
		n.n++;
	}
	free(s->slot);
	free(s->val);
	*s = n;
	return 0;
}

/* Add a key (values 0) or find it; its slot, or -1 out of memory. */
static long keyset_put(keyset *s, const char *a, const char *b)
{
	if ((s->n + 1) * 2 > s->cap && keyset_grow(s) < 0)
		return -1;
	size_t i = key_hash(a, b) & (s->cap - 1);
	for (; s->slot[i]; i = (i + 1) & (s->cap - 1))
		if (key_eq(s->slot[i], a, b))
			return (long)i;
	size_t la = strlen(a), lb = b ? strlen(b) : 0;
	char *k = malloc(la + lb + 3);
	if (!k)
		return -1;
	memcpy(k, a, la + 1);
	memcpy(k + la + 1, b ? b : "", lb + 1);
	k[la + lb + 2] = '\0';
	s->slot[i] = k;
	s->val[i][0] = s->val[i][1] = 0;
	s->n++;
	return (long)i;
}

static int keyset_add(keyset *s, const char *a, const char *b)
{
	return keyset_put(s, a, b) < 0 ? -1 : 0;
}

static int keyset_set(keyset *s, const char *a, const char *b, int64_t v0,
		      int64_t v1)
{
	long i = keyset_put(s, a, b);
	if (i < 0)
		return -1;
	s->val[i][0] = v0;
	s->val[i][1] = v1;
	return 0;
}

/* Remove a key, shifting back the entries of its probe run. */
static void keyset_del(keyset *s, const char *a, const char *b)
{
	long found = keyset_find(s, a, b);
	if (found < 0)
		return;
	size_t mask = s->cap - 1, i = (size_t)found;
	free(s->slot[i]);
	s->slot[i] = NULL;
	s->n--;
	for (size_t j = (i + 1) & mask; s->slot[j]; j = (j + 1) & mask) {
		size_t home = key_home(s, s->slot[j]);
		/* Move the entry back to the hole unless its home lies in
		 * (i, j], where the hole does not break its probe run. */
		int between =
		    i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			s->slot[i] = s->slot[j];
			s->val[i][0] = s->val[j][0];
			s->val[i][1] = s->val[j][1];
			s->slot[j] = NULL;
			i = j;
		}
	}
}

static void keyset_free(keyset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	free(s->val);
	memset(s, 0, sizeof(*s));
}

/* ------------------------------------------------------------------ */
/* Snapshot                                                            */
/* ------------------------------------------------------------------ */

static void snap_pump(sky_engine *e);
static void snap_check_done(sky_engine *e);
static void snap_flush(sky_engine *e);
static void once_deliver(sky_engine *e);
static void reconcile_arm(sky_engine *e);
static void reconcile_cancel(sky_engine *e);
static void on_reconcile_timer(evutil_socket_t fd, short what, void *arg);
static void workers_online(sky_engine *e);

static void snap_job_free(sjob *j)
{
	if (!j)
		return;
	sky__engine_request_cancel(j->req);
	json_decref(j->session);
	free(j->app);
	free(j);
}

static void snap_free(snap *s)
{
	if (!s)
		return;
	sky__engine_request_cancel(s->apps_req);
	for (size_t i = 0; i < s->njobs; i++)
		snap_job_free(s->jobs[i]);
	free(s->jobs);
	for (size_t i = 0; i < s->nbatch; i++) {
		json_decref(s->batch[i].session);
		json_decref(s->batch[i].data);
	}
	free(s->batch);
	free(s->batch_what);
	keyset_free(&s->visible);
	keyset_free(&s->apps);
	free(s);
}

static int snap_add_job(snap *s, enum job_kind kind, const char *app,
			json_t *session, int64_t bound)
{
	if (s->njobs == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		sjob **v = realloc(s->jobs, cap * sizeof(*v));
		if (!v)
			return sky__error_nomem();
		s->jobs = v;
		s->cap = cap;
	}
	sjob *j = calloc(1, sizeof(*j));
	if (!j || !(j->app = strdup(app))) {
		free(j);
		return sky__error_nomem();
	}
	j->kind = kind;
	j->snap = s;
	j->session = json_incref(session);
	j->bound = bound;
	j->index = s->njobs;
	s->jobs[s->njobs++] = j;
	return 0;
}

/* The snapshot failed as a whole: back off and start again. */
static void snap_failed(sky_engine *e, const char *what)
{
	snap *s = e->snap;
	int resync = s ? s->resync : 0;
	e->snap = NULL;
	snap_free(s);
	evtimer_del(e->ev_flush);
	evtimer_del(e->ev_snap_go);
	read_failed(e, what);
	if (!e->follow_run) {
		/* Reads and writes fail separately: the outbox is delivered
		 * all the same, and the run's result names the failed read. */
		elog(e, SKY_LOG_WARN,
		     "cannot read the realm: %s; delivering the outbox anyway",
		     what);
		once_deliver(e);
		return;
	}
	long ms = sky__backoff_ms(e->snap_failures++, e->o.backoff_min_ms * 4,
				  e->o.backoff_max_ms);
	warn_retry(e, what, ms);
	set_state(e, SKY_ENGINE_BACKOFF);
	/* The outbox goes on while the reads wait. */
	workers_online(e);
	/* Events stay held: the next snapshot reads over them. */
	e->need_resync = resync;
	arm_ms(e->ev_snap_retry, ms);
}

/* One-shot: the reads are over (done or not); the outbox goes now, and
 * the run ends when the workers are idle. */
static void once_deliver(sky_engine *e)
{
	apply_all(e);
	set_state(e, SKY_ENGINE_SNAPSHOT);
	e->once_waiting = 1;
	workers_online(e);
	check_once_done(e);
}

static void on_snap_retry(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (!e->stopping && e->state == SKY_ENGINE_BACKOFF)
		start_snapshot(e, e->first_done);
}

/* Remember a session that left the mirror (see route()). */
static void note_gone(sky_engine *e, const char *app, const char *sid)
{
	if (e->gone.n >= GONE_LIMIT)
		keyset_free(&e->gone);
	keyset_add(&e->gone, app, sid);
}

static void removed_cb(const char *app, const char *sid, void *ctx)
{
	sky_engine *e = ctx;
	note_gone(e, app, sid);
	stale_clear(e, app, sid);
	notify(e, app, sid, SKY_CHANGE_REMOVED, NULL, NULL);
}

static int keep_listed_session(const char *app, const char *sid, void *ctx)
{
	sky_engine *e = ctx;
	return keyset_has(&e->snap->visible, app, sid);
}

static int keep_listed_app(const char *app, const char *unused, void *ctx)
{
	sky_engine *e = ctx;
	(void)unused;
	return keyset_has(&e->snap->apps, app, NULL);
}

static void on_apps(const sky_http_response *res, void *ctx)
{
	sky_engine *e = ctx;
	snap *s = e->snap;
	s->apps_req = NULL;
	json_t *list = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array(); /* no application visible to us */
	} else if (out != SKY_API_OK) {
		sky__api_error(SKY_API_APPS, NULL, res);
		snap_failed(e, sky_error_last()->message);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64},
					"applications", &list) < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	size_t i;
	json_t *app;
	json_array_foreach(list, i, app)
	{
		const char *id = sky__json_str(app, "applicationId");
		char *text = sky__json_dump(app, NULL);
		int rc = text ? sky_app_put(e->cache, text, strlen(text)) : -1;
		free(text);
		if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
			elog(e, SKY_LOG_WARN,
			     "skipping an application the server "
			     "listed: %s",
			     sky_error_last()->message);
			continue;
		}
		if (rc < 0 || keyset_add(&s->apps, id, NULL) < 0 ||
		    snap_add_job(s, J_ROLES, id, NULL, 0) < 0 ||
		    snap_add_job(s, J_SESSIONS, id, NULL, 0) < 0) {
			json_decref(list);
			snap_failed(e, sky_error_last()->message);
			return;
		}
		s->progress.applications++;
	}
	json_decref(list);
	/* Applications no longer listed leave, with their sessions. */
	long dropped =
	    sky__repair_prune_apps(e->cache, keep_listed_app, e, removed_cb);
	if (dropped < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	report_progress(e, 0);
	snap_pump(e);
	snap_check_done(e);
}

static int keep_listed_role(const char *app, const char *name, void *ctx)
{
	(void)app;
	return keyset_has(ctx, name, NULL);
}

static void on_roles(sky_engine *e, sjob *j, const sky_http_response *res)
{
	json_t *list = NULL;
	keyset names = {0};
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array();
	} else if (out != SKY_API_OK) {
		/* The roles stay as they were; the sessions go on. */
		sky__api_error(SKY_API_ROLES, j->app, res);
		char msg[300];
		snprintf(msg, sizeof(msg), "roles of %s: %s", j->app,
			 sky_error_last()->message);
		elog(e, SKY_LOG_WARN, "cannot read the %s", msg);
		read_failed(e, msg);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64}, "roles",
					&list) < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	size_t i;
	json_t *role;
	int failed = 0;
	json_array_foreach(list, i, role)
	{
		char *text = sky__json_dump(role, NULL);
		int rc =
		    text ? sky_role_put(e->cache, j->app, text, strlen(text))
			 : -1;
		free(text);
		if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
			elog(e, SKY_LOG_WARN, "skipping a role of %s: %s",
			     j->app, sky_error_last()->message);
			continue;
		}
		if (rc < 0 ||
		    keyset_add(&names, sky__json_str(role, "name"), NULL) < 0) {
			failed = 1;
			break;
		}
	}
	if (!failed && sky__repair_prune_roles(e->cache, j->app,
					       keep_listed_role, &names) < 0)
		failed = 1;
	json_decref(list);
	keyset_free(&names);
	if (failed)
		snap_failed(e, sky_error_last()->message);
}

static int add_unlisted_job(const char *app, const char *sid, void *ctx)
{
	sky_engine *e = ctx;
	json_t *stub = json_pack("{s:s}", "sessionId", sid);
	int rc = stub ? snap_add_job(e->snap, J_UNLISTED, app, stub, 0)
		      : sky__error_nomem();
	json_decref(stub);
	return rc;
}

/*
 * The answer to the read of an unlisted session: 403 or 404, it is not
 * visible to us any more and leaves the mirror; else it is stored as the
 * server shows it (closed, usually) through the data read of a J_DATA
 * job, like a listed one.
 */
static void on_unlisted(sky_engine *e, sjob *j, const sky_http_response *res)
{
	snap *s = e->snap;
	const char *sid = sky__json_str(j->session, "sessionId");
	json_t *session = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		if (sky__repair_remove_session(e->cache, j->app, sid) > 0)
			notify(e, j->app, sid, SKY_CHANGE_REMOVED, NULL, NULL);
		sky__repair_purge_pending(e->cache, j->app, sid);
		note_gone(e, j->app, sid);
		return;
	}
	if (out != SKY_API_OK) {
		sky__api_error(SKY_API_SESSION, j->app, res);
		if (out == SKY_API_REJECTED) {
			elog(e, SKY_LOG_WARN, "session %s/%s: %s", j->app, sid,
			     sky_error_last()->message);
			return;
		}
		snap_failed(e, sky_error_last()->message);
		return;
	}
	if (sky__api_parse_object(res->body, res->len, &e->cache->event_limits,
				  "session", &session) < 0 ||
	    sky__validate_session(session, "session", 1) < 0 ||
	    strcmp(sky__json_str(session, "applicationId"), j->app) ||
	    strcmp(sky__json_str(session, "sessionId"), sid)) {
		elog(e, SKY_LOG_WARN, "session %s/%s: bad answer: %s", j->app,
		     sid, sky_error_last()->message);
		json_decref(session);
		return;
	}
	if (keyset_add(&s->visible, j->app, sid) < 0 ||
	    snap_add_job(s, J_DATA, j->app, session,
			 sky__engine_read_bound(res)) < 0)
		snap_failed(e, "out of memory reading an unlisted session");
	else
		s->progress.sessions_total++;
	json_decref(session);
}

/* A resumed snapshot reads a listed session only when its listed state
 * differs from the mirror (any field, version and modifiedAt included),
 * it is stale, or the backlog named it. */
static int resume_reads(sky_engine *e, const json_t *session, const char *app,
			const char *sid)
{
	return sky__repair_diff(e->cache, session, NULL) != 0 ||
	       keyset_has(&e->stale, app, sid) ||
	       keyset_has(&e->named, app, sid);
}

static void on_sessions(sky_engine *e, sjob *j, const sky_http_response *res)
{
	snap *s = e->snap;
	json_t *list = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array(); /* none visible */
	} else if (out != SKY_API_OK) {
		/* This application's sessions stay as they were, stale; the
		 * other applications go on. */
		sky__api_error(SKY_API_SESSIONS, j->app, res);
		char msg[300];
		snprintf(msg, sizeof(msg), "sessions of %s: %s", j->app,
			 sky_error_last()->message);
		elog(e, SKY_LOG_WARN, "cannot list the %s", msg);
		read_failed(e, msg);
		stale_app(e, j->app, msg);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64}, "sessions",
					&list) < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	int64_t bound = sky__engine_read_bound(res);
	size_t i;
	json_t *session;
	json_array_foreach(list, i, session)
	{
		const char *app = sky__json_str(session, "applicationId");
		const char *sid = sky__json_str(session, "sessionId");
		if (sky__validate_session(session, "session", 1) < 0 ||
		    strcmp(app, j->app) != 0) {
			char why[300];
			snprintf(why, sizeof(why), "listed in %s: %s", j->app,
				 app && strcmp(app, j->app)
				     ? "it belongs to another application"
				     : sky_error_last()->message);
			count_refused(e, "a listed session", app, sid, why);
			/* Kept out of the prune: its copy stays, stale. */
			if (app && sid && !strcmp(app, j->app)) {
				if (keyset_add(&s->visible, app, sid) < 0) {
					json_decref(list);
					snap_failed(e, "out of memory listing "
						       "sessions");
					return;
				}
				session_failed(e, app, sid, why);
			}
			continue;
		}
		if (s->resume && keyset_add(&s->visible, app, sid) == 0 &&
		    !resume_reads(e, session, app, sid))
			continue;
		if (keyset_add(&s->visible, app, sid) < 0 ||
		    snap_add_job(s, J_DATA, app, session, bound) < 0) {
			json_decref(list);
			snap_failed(e, "out of memory listing sessions");
			return;
		}
		s->progress.sessions_total++;
	}
	json_decref(list);
	/* Sessions of this application no longer listed: closed ones stay
	 * (retain.c decides how long); open ones may have closed or been
	 * hidden from us, which only a read of each can tell. */
	if (sky__repair_unlisted_open(e->cache, j->app, keep_listed_session, e,
				      add_unlisted_job) < 0)
		snap_failed(e, sky_error_last()->message);
}

static void on_data(sky_engine *e, sjob *j, const sky_http_response *res)
{
	snap *s = e->snap;
	const char *sid = sky__json_str(j->session, "sessionId");
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		/* Gone between the list and now: not visible any more. */
		if (sky__repair_remove_session(e->cache, j->app, sid) > 0)
			notify(e, j->app, sid, SKY_CHANGE_REMOVED, NULL, NULL);
		note_gone(e, j->app, sid);
		s->progress.sessions_done++;
		return;
	}
	if (out != SKY_API_OK) {
		/* This session only, stale until read: the others go on. */
		sky__api_error(SKY_API_DATA, j->app, res);
		char why[300];
		snprintf(why, sizeof(why), "reading it: %s",
			 sky_error_last()->message);
		session_failed(e, j->app, sid, why);
		s->progress.sessions_done++;
		return;
	}
	if (s->nbatch % PUT_BATCH == 0) {
		size_t cap = s->nbatch + PUT_BATCH;
		sky__parsed_put *b = realloc(s->batch, cap * sizeof(*b));
		if (b)
			s->batch = b;
		unsigned *w = realloc(s->batch_what, cap * sizeof(*w));
		if (w)
			s->batch_what = w;
		if (!b || !w) {
			snap_failed(e, "out of memory");
			return;
		}
	}
	json_t *data = NULL;
	if (parse_data(e, res->body, res->len, &data) < 0) {
		/* This session only: the others go on. */
		char why[300];
		snprintf(why, sizeof(why), "the server's data was refused: %s",
			 sky_error_last()->message);
		count_refused(e, "the server's data", j->app, sid,
			      sky_error_last()->message);
		session_failed(e, j->app, sid, why);
		s->progress.sessions_done++;
		return;
	}
	unsigned what =
	    e->o.on_change ? sky__repair_diff(e->cache, j->session, data) : 0;
	int known;
	int64_t data_date = sky__engine_read_bound(res);
	int64_t as_of = read_as_of(e, j->session, j->bound, data_date, &known);
	keyset_del(&e->gone, j->app, sid);
	/* For the release of the held events (snap_finish()). */
	keyset_set(&s->visible, j->app, sid, as_of,
		   read_upper(j->bound, data_date));
	sky__parsed_put *it = &s->batch[s->nbatch];
	memset(it, 0, sizeof(*it));
	it->session = json_incref(j->session);
	it->data = data;
	it->as_of_us = as_of;
	s->batch_what[s->nbatch++] = what;
	if (s->nbatch >= PUT_BATCH)
		snap_flush(e);
	else if (!evtimer_pending(e->ev_flush, NULL))
		arm_ms(e->ev_flush, FLUSH_DELAY_MS);
}

static void snap_flush(sky_engine *e)
{
	snap *s = e->snap;
	if (!s || !s->nbatch)
		return;
	evtimer_del(e->ev_flush);
	size_t n = s->nbatch;
	int rc = sky__session_put_parsed(e->cache, s->batch, n);
	for (size_t i = 0; i < n; i++) {
		sky__parsed_put *it = &s->batch[i];
		const char *app = sky__json_str(it->session, "applicationId");
		const char *sid = sky__json_str(it->session, "sessionId");
		if (rc == 0 && it->result) {
			char why[300];
			snprintf(why, sizeof(why),
				 "the server's answer was refused: %s",
				 it->error ? it->error : "not valid");
			count_refused(e, "the server's answer", app, sid,
				      it->error);
			session_failed(e, app, sid, why);
		} else if (rc == 0) {
			stale_clear(e, app, sid);
			if (s->batch_what[i])
				notify(e, app, sid, s->batch_what[i], NULL,
				       NULL);
		}
		free(it->error);
		json_decref(it->session);
		json_decref(it->data);
	}
	s->nbatch = 0;
	s->progress.sessions_done += n;
	if (rc < 0) {
		char msg[300];
		snprintf(msg, sizeof(msg), "storing sessions: %s",
			 sky_error_last()->message);
		snap_failed(e, msg);
		return;
	}
	report_progress(e, 0);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	snap_flush(e);
	snap_check_done(e);
}

/* ---- the end of a snapshot ---- */

static void workers_online(sky_engine *e)
{
	e->online = 1;
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.online)
			w->w.online(w->ctx);
}

static void workers_offline(sky_engine *e)
{
	if (!e->online)
		return;
	e->online = 0;
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.offline)
			w->w.offline(w->ctx);
}

/* Closed sessions past the cache's retention leave (retain.c). */
static void apply_retention(sky_engine *e)
{
	long n = sky__retain_closed(e->cache, removed_cb, e);
	if (n < 0)
		elog(e, SKY_LOG_WARN, "cannot apply the closed sessions' "
				      "retention: %s",
		     sky_error_last()->message);
	else if (n > 0)
		elog(e, SKY_LOG_INFO,
		     "%ld closed sessions past their retention removed", n);
}

/* How this sync read the realm and what it cost, for sky_engine_status
 * and, through the cache's meta, `skysync stats`. */
static void record_path(sky_engine *e, const snap *s)
{
	uint64_t all, gets;
	sky__http_counts(e->http, &all, &gets);
	e->st.last_sync_path =
	    s->resume ? SKY_SYNC_PATH_RESUMED : SKY_SYNC_PATH_FULL;
	e->st.last_sync_why =
	    s->resume ? SKY_SYNC_WHY_NONE
	    : e->full_why ? e->full_why
	    : s->resync	  ? SKY_SYNC_WHY_RESYNC
			  : SKY_SYNC_WHY_NEVER_SYNCED;
	e->st.last_sync_requests = all - e->req_base;
	e->full_why = 0;
	e->resume_next = 0;
	keyset_free(&e->named);
	elog(e, SKY_LOG_INFO, "sync path %s (%s): %" PRIu64 " requests",
	     s->resume ? "resumed" : "full",
	     sky_sync_why_name(e->st.last_sync_why), e->st.last_sync_requests);
	if (sky__repair_put_sync_path(e->cache, (uint64_t)e->st.last_sync_path,
				      (uint64_t)e->st.last_sync_why,
				      e->st.last_sync_requests) < 0)
		elog(e, SKY_LOG_WARN, "cannot record the sync path: %s",
		     sky_error_last()->message);
}

static void snap_finish(sky_engine *e)
{
	snap *s = e->snap;
	int again = s->again;
	s->progress.done = 1;
	report_progress(e, 1);
	e->st.snapshots++;
	e->st.last_sync_us = sky__now_us();
	e->snap_failures = 0;
	e->first_done = 1;
	record_path(e, s);
	elog(e, SKY_LOG_INFO,
	     "%s done: %" PRIu64 " sessions in %" PRIu64
	     " applications (%.1f s)",
	     s->resync ? "resync" : "snapshot", s->progress.sessions_done,
	     s->progress.applications,
	     (sky__now_us() - s->progress.started_us) / 1e6);
	/*
	 * A held event for a session that the lists did not show and that
	 * the mirror does not hold may be the late news of a session that
	 * was created and closed (or hidden) before the lists were read --
	 * a delayed session_created whose session_closed went missing would
	 * bring it back as open. Such sessions are marked gone, so their
	 * events wait for a read of the session (route()); one that is new
	 * since the lists costs one read.
	 */
	/*
	 * And a held event that the read of its session may or may not
	 * reflect (see unclear()) waits for a second read of the session,
	 * a little later.
	 */
	for (size_t i = 0; i < e->held_all.n; i++) {
		const evitem *it = &e->held_all.v[e->held_all.head + i];
		int64_t wm, v[2];
		unsigned flags;
		if (!*it->app || !*it->sid)
			continue;
		if (keyset_get(&s->visible, it->app, it->sid, v)) {
			if (v[1] > v[0] && it->created_us >= v[0] &&
			    it->created_us < v[1])
				fetch_schedule_at(e, it->app, it->sid, 1,
						  SETTLE_US, 1);
		} else if (!keyset_has(&e->gone, it->app, it->sid) &&
			   sky__repair_session_info(e->cache, it->app, it->sid,
						    &wm,
						    &flags) == SKY_ENOTFOUND) {
			note_gone(e, it->app, it->sid);
		}
	}
	e->snap = NULL;
	snap_free(s);
	apply_retention(e);
	/* The events held meanwhile, in server order, over the reads. */
	e->holding_all = 0;
	evq_release(e, &e->held_all);
	if (!e->follow_run) {
		once_deliver(e);
		return;
	}
	set_state(e, SKY_ENGINE_LIVE);
	workers_online(e);
	if (e->fq_head && !evtimer_pending(e->ev_fetch, NULL))
		arm_ms(e->ev_fetch, FETCH_DELAY_MS);
	if (e->o.resync_interval_s)
		arm_ms(e->ev_resync, (long)e->o.resync_interval_s * 1000);
	reconcile_arm(e);
	if ((again || e->need_resync) && e->broker_up) {
		e->need_resync = 0;
		start_snapshot(e, 1);
	}
}

static void snap_check_done(sky_engine *e)
{
	snap *s = e->snap;
	if (!s || !s->started || s->apps_req || s->next < s->njobs ||
	    s->inflight)
		return;
	if (s->nbatch) {
		snap_flush(e);
		if (e->snap != s)
			return; /* failed */
	}
	snap_finish(e);
}

static void on_snap_job(const sky_http_response *res, void *ctx);

static void snap_pump(sky_engine *e)
{
	snap *s = e->snap;
	while (s && e->snap == s && s->next < s->njobs &&
	       s->inflight < e->o.max_parallel) {
		sjob *j = s->jobs[s->next++];
		sky_api_call call = j->kind == J_ROLES	    ? SKY_API_ROLES
				    : j->kind == J_SESSIONS ? SKY_API_SESSIONS
				    : j->kind == J_UNLISTED ? SKY_API_SESSION
							    : SKY_API_DATA;
		const char *sid =
		    j->session ? sky__json_str(j->session, "sessionId") : NULL;
		s->inflight++;
		if (sky__engine_request(e, call, j->app, sid, NULL, 0,
					SKY_ENGINE_REQ_RETRY, on_snap_job, j,
					&j->req) < 0) {
			s->inflight--;
			snap_failed(e, sky_error_last()->message);
			return;
		}
	}
}

static void on_snap_job(const sky_http_response *res, void *ctx)
{
	sjob *j = ctx;
	snap *s = j->snap;
	sky_engine *e = s->e;
	j->req = NULL;
	s->inflight--;
	s->jobs[j->index] = NULL;
	switch (j->kind) {
	case J_ROLES: on_roles(e, j, res); break;
	case J_SESSIONS: on_sessions(e, j, res); break;
	case J_DATA: on_data(e, j, res); break;
	case J_UNLISTED: on_unlisted(e, j, res); break;
	}
	snap_job_free(j);
	if (e->snap != s)
		return; /* it failed and was freed */
	report_progress(e, 0);
	snap_pump(e);
	snap_check_done(e);
}

static void snap_request_apps(sky_engine *e)
{
	snap *s = e->snap;
	s->started = 1;
	if (sky__engine_request(e, SKY_API_APPS, NULL, NULL, NULL, 0,
				SKY_ENGINE_REQ_RETRY, on_apps, e,
				&s->apps_req) < 0)
		snap_failed(e, sky_error_last()->message);
}

static void start_snapshot(sky_engine *e, int resync)
{
	if (e->stopping)
		return;
	assert(!e->snap);
	workers_offline(e);
	evtimer_del(e->ev_resync);
	evtimer_del(e->ev_snap_retry);
	/* The snapshot reads everything a reconcile would. */
	reconcile_cancel(e);
	/*
	 * Events received so far are applied; from now on all are held until
	 * the snapshot is stored. Re-reads of single sessions give way to it.
	 */
	apply_all(e);
	if (e->follow_run || e->mqtt)
		e->holding_all = 1;
	fetch_cancel_all(e);
	snap *s = calloc(1, sizeof(*s));
	if (!s) {
		engine_fail(e, SKY_ERROR, "out of memory starting a snapshot");
		return;
	}
	s->e = e;
	s->resync = resync;
	s->resume = e->resume_next;
	if (e->first_done) {
		uint64_t gets;
		sky__http_counts(e->http, &e->req_base, &gets);
	}
	s->progress.resync = resync;
	s->progress.started_us = sky__now_us();
	e->snap = s;
	set_state(e, SKY_ENGINE_SNAPSHOT);
	elog(e, SKY_LOG_INFO, "%s",
	     resync ? "resync: reading the realm again"
		    : "snapshot: reading the realm");
	report_progress(e, 1);
	/*
	 * Events published before our SUBACK never reach us: that is fine
	 * when the reads reflect them and as_of (built from Date headers,
	 * whole seconds) lies after them. Reads that start a full second
	 * after the SUBACK have a Date floor after it, so no event we could
	 * have missed is newer than as_of, and the events we re-apply over
	 * the reads are a complete, ordered suffix (see "Clocks" above).
	 */
	/* A resumed snapshot needs no wait: with the session kept, no event
	 * went missing before the SUBACK. */
	int64_t wait_us = (e->follow_run || e->mqtt) && e->suback_mono_us &&
				  !s->resume
			      ? e->suback_mono_us + AFTER_SUBACK_US - mono_us()
			      : 0;
	if (wait_us > 0)
		arm_ms(e->ev_snap_go, (long)(wait_us / 1000) + 1);
	else
		snap_request_apps(e);
}

static void on_snap_go(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->snap && !e->snap->started && !e->stopping)
		snap_request_apps(e);
}

static void on_resync_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->state == SKY_ENGINE_LIVE && !e->snap) {
		e->need_resync = 0;
		start_snapshot(e, 1);
	}
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->state != SKY_ENGINE_LIVE)
		return;
	write_meta(e);
	arm_ms(e->ev_heartbeat, HEARTBEAT_MS);
}

/* ------------------------------------------------------------------ */
/* Resuming                                                            */
/* ------------------------------------------------------------------ */

/*
 * A sync of a cache that was synced before, whose broker session the
 * broker kept, does not read the whole realm (docs/PROTOCOL.md,
 * "Resuming"):
 *
 *   SUBACK --synced before, session present--> drain the backlog
 *     (apply the events queued for us while we were away; none is read
 *      meanwhile) --quiet for DRAIN_QUIET_MS, or DRAIN_MAX_US-->
 *       backlog < backlog_limit: a resumed snapshot (the lists as a full
 *         one, then only the sessions whose listed state differs from the
 *         mirror, the stale ones and those the backlog named: an event
 *         for a session we do not know, a refused or stale one)
 *       else: a full snapshot (the broker's queue may have overflowed)
 *   SUBACK --never synced, or session lost--> a full snapshot
 *   broker not reachable in time --> a full snapshot
 *
 * The lists show every field of a session but its data, so a resumed
 * sync relies on the backlog for data changes: the broker keeps QoS 1
 * messages of a persistent session up to its queue limit, which the
 * backlog_limit stands for (we cannot see an overflow: a backlog that
 * reaches the limit is taken for one).
 */
static int synced_before(sky_engine *e)
{
	return e->prev_sync_us != 0;
}

/* Read when the run starts, before its first state is recorded. */
static int64_t recorded_sync_us(sky_engine *e)
{
	MDB_txn *txn;
	if (sky__store_read_begin(&e->cache->st, &txn) < 0)
		return 0; /* unknown: the full path is always right */
	uint64_t last = sky__meta_get_u64(txn, &e->cache->st, "sync_last_at");
	sky__store_read_end(&e->cache->st, txn);
	return (int64_t)last;
}

static void begin_sync(sky_engine *e)
{
	if (!synced_before(e)) {
		e->full_why = SKY_SYNC_WHY_NEVER_SYNCED;
	} else if (!e->resume_present) {
		e->full_why = SKY_SYNC_WHY_SESSION_LOST;
	} else {
		/* The backlog comes first: wait until it is in. */
		e->drain_start_us = mono_us();
		arm_ms(e->ev_drain, DRAIN_QUIET_MS);
		return;
	}
	e->counting_backlog = 0;
	start_snapshot(e, 0);
}

static void on_drain(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->stopping || e->state != SKY_ENGINE_SUBSCRIBE || e->snap)
		return;
	e->counting_backlog = 0;
	if (e->st.backlog_events >= e->o.backlog_limit) {
		elog(e, SKY_LOG_INFO,
		     "%" PRIu64 " events waited for us at the broker "
		     "(limit %u): its queue may have overflowed; reading the "
		     "whole realm",
		     e->st.backlog_events, e->o.backlog_limit);
		e->full_why = SKY_SYNC_WHY_OVERFLOW;
	} else {
		elog(e, SKY_LOG_INFO,
		     "the broker kept our session: %" PRIu64
		     " events applied; reading what differs",
		     e->st.backlog_events);
		e->resume_next = 1;
	}
	start_snapshot(e, 0);
}

const char *sky_sync_why_name(int why)
{
	switch (why) {
	case SKY_SYNC_WHY_NONE: return "resumed";
	case SKY_SYNC_WHY_NEVER_SYNCED: return "never synced";
	case SKY_SYNC_WHY_SESSION_LOST: return "broker session lost";
	case SKY_SYNC_WHY_OVERFLOW: return "broker backlog may have overflowed";
	case SKY_SYNC_WHY_NO_BROKER: return "broker not reachable";
	case SKY_SYNC_WHY_APPS_CHANGED: return "applications changed";
	case SKY_SYNC_WHY_RESYNC: return "resync";
	}
	return "unknown";
}

/* ------------------------------------------------------------------ */
/* Reconcile                                                           */
/* ------------------------------------------------------------------ */

/*
 * While following, every reconcile_interval_s: list the applications and
 * each one's open sessions (the lists of a snapshot, without its data
 * reads), and re-read (fetch) each session whose listed state differs
 * from the mirror's (version, modifiedAt or any other field), each one
 * the mirror holds open that is not listed, and each stale one. This
 * repairs what an event the broker lost left behind (a QoS 1 message does
 * not survive every broker restart) long before the next full resync. A
 * change in the set of applications starts a resync instead. Events keep
 * flowing meanwhile: each fetch reconciles its read with them as always.
 * The listing shows session fields only: a lost data event is found once
 * the session's fields changed since, or by the next resync.
 */
typedef struct rjob {
	sky_engine *e;
	char *app;
	sky_engine_req *req;
	struct rjob *next;
} rjob;

static void reconcile_arm(sky_engine *e)
{
	if (!e->ev_reconcile ||
	    e->o.reconcile_interval_s == SKY_RECONCILE_NEVER)
		return;
	evtimer_del(e->ev_reconcile);
	arm_ms(e->ev_reconcile, (long)e->o.reconcile_interval_s * 1000);
}

static void reconcile_cancel(sky_engine *e)
{
	sky__engine_request_cancel(e->rec_apps_req);
	e->rec_apps_req = NULL;
	while (e->rjobs) {
		rjob *j = e->rjobs;
		e->rjobs = j->next;
		sky__engine_request_cancel(j->req);
		free(j->app);
		free(j);
	}
	e->rec_running = 0;
	if (e->ev_reconcile)
		evtimer_del(e->ev_reconcile);
}

static void reconcile_end(sky_engine *e, const char *failed)
{
	e->rec_running = 0;
	if (failed) {
		elog(e, SKY_LOG_WARN, "reconcile: %s; trying again later",
		     failed);
	} else {
		e->st.reconciles++;
		elog(e, SKY_LOG_INFO,
		     "reconcile: %u session%s to read again", e->rec_refetches,
		     e->rec_refetches == 1 ? "" : "s");
	}
	reconcile_arm(e);
}

static void rec_refetch(sky_engine *e, const char *app, const char *sid)
{
	e->rec_refetches++;
	fetch_schedule(e, app, sid, 1);
}

typedef struct {
	sky_engine *e;
	const char *app;
	keyset *listed;
} rec_mirror;

/* A session of the mirror: open there but not listed means a read. */
static int rec_mirror_one(const char *json, size_t len, void *payload)
{
	rec_mirror *m = payload;
	json_t *s = sky__json_loadb(json, len, 0, NULL);
	const char *sid = sky__json_str(s, "sessionId");
	const char *st = sky__json_str(s, "status");
	int64_t wm;
	unsigned flags = 0;
	if (sid && (!st || strcmp(st, "closed")) &&
	    !keyset_has(m->listed, m->app, sid) &&
	    sky__repair_session_info(m->e->cache, m->app, sid, &wm, &flags) ==
		0 &&
	    !(flags & SKY_REC_PENDING))
		rec_refetch(m->e, m->app, sid);
	json_decref(s);
	return 0;
}

static void on_rec_sessions(const sky_http_response *res, void *ctx)
{
	rjob *j = ctx;
	sky_engine *e = j->e;
	j->req = NULL;
	json_t *list = NULL;
	keyset listed = {0};
	const char *failed = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array();
	} else if (out != SKY_API_OK) {
		sky__api_error(SKY_API_SESSIONS, j->app, res);
		failed = sky_error_last()->message;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64}, "sessions",
					&list) < 0) {
		failed = sky_error_last()->message;
	}
	size_t i;
	json_t *session;
	json_array_foreach(list, i, session)
	{
		const char *app = sky__json_str(session, "applicationId");
		const char *sid = sky__json_str(session, "sessionId");
		if (!app || !sid || strcmp(app, j->app) ||
		    keyset_add(&listed, app, sid) < 0)
			continue;
		/* Any difference, the version and modifiedAt included. */
		if (sky__repair_diff(e->cache, session, NULL))
			rec_refetch(e, app, sid);
	}
	if (!failed) {
		rec_mirror m = {e, j->app, &listed};
		if (sky_session_list(e->cache, j->app, rec_mirror_one, &m) < 0)
			failed = sky_error_last()->message;
	}
	char why[300] = "";
	if (failed)
		snprintf(why, sizeof(why), "sessions of %s: %s", j->app,
			 failed);
	json_decref(list);
	keyset_free(&listed);
	for (rjob **pp = &e->rjobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	free(j->app);
	free(j);
	if (!e->rjobs)
		reconcile_end(e, why[0] ? why : NULL);
	else if (why[0])
		elog(e, SKY_LOG_WARN, "reconcile: %s", why);
}

static int rec_cached_app(const char *json, size_t len, void *payload)
{
	keyset *apps = payload;
	json_t *a = sky__json_loadb(json, len, 0, NULL);
	const char *id = sky__json_str(a, "applicationId");
	int rc = id && keyset_add(apps, id, NULL) < 0 ? sky__error_nomem() : 0;
	json_decref(a);
	return rc;
}

static void on_rec_apps(const sky_http_response *res, void *ctx)
{
	sky_engine *e = ctx;
	e->rec_apps_req = NULL;
	json_t *list = NULL;
	keyset cached = {0};
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array();
	} else if (out != SKY_API_OK) {
		sky__api_error(SKY_API_APPS, NULL, res);
		reconcile_end(e, sky_error_last()->message);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64},
					"applications", &list) < 0) {
		reconcile_end(e, sky_error_last()->message);
		return;
	}
	if (sky_app_list(e->cache, rec_cached_app, &cached) < 0) {
		json_decref(list);
		keyset_free(&cached);
		reconcile_end(e, sky_error_last()->message);
		return;
	}
	/* The same applications, or a resync reads the new set. */
	int same = json_array_size(list) == cached.n;
	size_t i;
	json_t *app;
	json_array_foreach(list, i, app)
	{
		const char *id = sky__json_str(app, "applicationId");
		if (!id || !keyset_has(&cached, id, NULL))
			same = 0;
	}
	keyset_free(&cached);
	if (!same) {
		json_decref(list);
		e->rec_running = 0;
		elog(e, SKY_LOG_INFO,
		     "reconcile: the applications changed: resync");
		e->full_why = SKY_SYNC_WHY_APPS_CHANGED;
		start_snapshot(e, 1);
		return;
	}
	json_array_foreach(list, i, app)
	{
		const char *id = sky__json_str(app, "applicationId");
		rjob *j = calloc(1, sizeof(*j));
		if (!j || !(j->app = strdup(id))) {
			free(j);
			break;
		}
		j->e = e;
		j->next = e->rjobs;
		e->rjobs = j;
		if (sky__engine_request(e, SKY_API_SESSIONS, id, NULL, NULL, 0,
					SKY_ENGINE_REQ_RETRY, on_rec_sessions,
					j, &j->req) < 0) {
			e->rjobs = j->next;
			free(j->app);
			free(j);
			elog(e, SKY_LOG_WARN, "reconcile: %s",
			     sky_error_last()->message);
		}
	}
	json_decref(list);
	if (!e->rjobs)
		reconcile_end(e, NULL);
}

static void on_reconcile_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->stopping || e->rec_running)
		return;
	if (e->state != SKY_ENGINE_LIVE || e->snap) {
		reconcile_arm(e); /* a snapshot re-arms it too */
		return;
	}
	e->rec_running = 1;
	e->rec_refetches = 0;
	elog(e, SKY_LOG_DEBUG, "reconcile: listing the realm");
	/* Stale sessions are read again whatever the lists say. */
	for (size_t i = 0; i < e->stale.cap; i++) {
		const char *k = e->stale.slot[i];
		if (k)
			rec_refetch(e, k, k + strlen(k) + 1);
	}
	if (sky__engine_request(e, SKY_API_APPS, NULL, NULL, NULL, 0,
				SKY_ENGINE_REQ_RETRY, on_rec_apps, e,
				&e->rec_apps_req) < 0)
		reconcile_end(e, sky_error_last()->message);
}

/* ------------------------------------------------------------------ */
/* Workers (the outbox)                                                */
/* ------------------------------------------------------------------ */

int sky__engine_add_worker(sky_engine *e, const sky_engine_worker *w, void *ctx)
{
	worker *k = calloc(1, sizeof(*k));
	if (!k)
		return sky__error_nomem();
	k->w = *w;
	k->ctx = ctx;
	k->next = e->workers;
	e->workers = k;
	if (e->online && w->online)
		w->online(ctx);
	return 0;
}

static int workers_busy(sky_engine *e)
{
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.busy && w->w.busy(w->ctx))
			return 1;
	return 0;
}

static void check_once_done(sky_engine *e)
{
	if (e->once_waiting && !e->stopping && !workers_busy(e)) {
		e->once_waiting = 0;
		e->stopping = 1;
		event_active(e->ev_stop, 0, 0);
	}
}

void sky__engine_worker_changed(sky_engine *e)
{
	check_once_done(e);
}

const sky_engine_options *sky__engine_options(sky_engine *e)
{
	return &e->o;
}

int sky__engine_follows(sky_engine *e)
{
	return e->follow_run;
}

void sky__engine_log(sky_engine *e, sky_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(e, level, fmt, ap);
	va_end(ap);
}

struct event_base *sky__engine_base(sky_engine *e)
{
	return e->base;
}

sky_cache *sky__engine_cache(sky_engine *e)
{
	return e->cache;
}

int64_t sky__engine_read_bound(const sky_http_response *res)
{
	/* Date has whole seconds: its value is the floor of the read time. */
	return res->date_us > 0 ? res->date_us : 0;
}

/* ------------------------------------------------------------------ */
/* Start, stop, run                                                    */
/* ------------------------------------------------------------------ */

static void shutdown_engine(sky_engine *e, sky_engine_state final)
{
	if (!e->running)
		return;
	workers_offline(e);
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.stop)
			w->w.stop(w->ctx);
	snap_free(e->snap);
	e->snap = NULL;
	reconcile_cancel(e);
	fetch_cancel_all(e);
	cancel_all_requests(e);
	if (e->mqtt) {
		sky__mqtt_stop(e->mqtt);
		sky__mqtt_free(e->mqtt);
		e->mqtt = NULL;
	}
	if (e->mqtt_retire) {
		sky__mqtt_stop(e->mqtt_retire);
		sky__mqtt_free(e->mqtt_retire);
		e->mqtt_retire = NULL;
	}
	if (e->ev_retire) {
		event_free(e->ev_retire);
		e->ev_retire = NULL;
	}
	/* Live events already received are safe to apply alone; held ones
	 * need the reads that did not finish, and the next run redoes those. */
	if (final != SKY_ENGINE_FAILED || e->fail_code != SKY_ERROR)
		apply_all(e);
	evq_clear(&e->incoming);
	evq_clear(&e->held_all);
	keyset_free(&e->gone);
	keyset_free(&e->named);
	e->counting_backlog = 0;
	e->holding_all = 0;
	struct event **evs[] = {
	    &e->ev_apply,      &e->ev_fetch,	 &e->ev_flush,
	    &e->ev_snap_retry, &e->ev_snap_go,	 &e->ev_broker_wait,
	    &e->ev_refresh,    &e->ev_heartbeat, &e->ev_resync,
	    &e->ev_reconcile, &e->ev_drain};
	for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
		if (*evs[i]) {
			event_free(*evs[i]);
			*evs[i] = NULL;
		}
	sky__http_free(e->http);
	e->http = NULL;
	e->broker_up = e->st.broker_up = 0;
	e->apply_armed = 0;
	e->running = 0;
	e->once_waiting = 0;
	set_state(e, final);
	if (e->own_base)
		event_base_loopbreak(e->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	shutdown_engine(e,
			e->fail_code ? SKY_ENGINE_FAILED : SKY_ENGINE_STOPPED);
}

static void engine_fail(sky_engine *e, int code, const char *fmt, ...)
{
	if (e->fail_code)
		return; /* the first failure is the one to report */
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->fail_msg, sizeof(e->fail_msg), fmt, ap);
	va_end(ap);
	e->fail_code = code < 0 ? code : SKY_ERROR;
	snprintf(e->st.error, sizeof(e->st.error), "%s", e->fail_msg);
	/* Not logged: the caller reports it once (run's result, FAILED). */
	e->stopping = 1;
	if (e->ev_stop)
		event_active(e->ev_stop, 0, 0);
}

void sky_engine_stop(sky_engine *e)
{
	if (!e || !e->running || e->stopping)
		return;
	e->stopping = 1;
	event_active(e->ev_stop, 0, 0);
}

static int start_engine(sky_engine *e, struct event_base *base, int follow)
{
	if (e->running)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_NONE, 0,
				      "the sync engine is already running");
	e->base = base;
	e->follow_run = follow;
	e->stopping = 0;
	e->fail_code = 0;
	e->fail_msg[0] = '\0';
	e->first_done = 0;
	e->broker_seen = 0;
	e->need_resync = 0;
	e->suback_mono_us = 0;
	if (e->ev_stop)
		event_free(e->ev_stop); /* it may belong to an earlier loop */
	e->ev_stop = event_new(base, -1, 0, on_stop, e);
	e->ev_apply = evtimer_new(base, on_apply, e);
	e->ev_fetch = evtimer_new(base, on_fetch_timer, e);
	e->ev_flush = evtimer_new(base, on_flush, e);
	e->ev_snap_retry = evtimer_new(base, on_snap_retry, e);
	e->ev_snap_go = evtimer_new(base, on_snap_go, e);
	e->ev_broker_wait = evtimer_new(base, on_broker_wait, e);
	e->ev_refresh = evtimer_new(base, on_refresh_timer, e);
	e->ev_heartbeat = evtimer_new(base, on_heartbeat, e);
	e->ev_resync = evtimer_new(base, on_resync_timer, e);
	e->ev_reconcile = evtimer_new(base, on_reconcile_timer, e);
	e->ev_drain = evtimer_new(base, on_drain, e);
	e->resume_present = e->counting_backlog = 0;
	e->drain_start_us = 0;
	e->resume_next = e->full_why = 0;
	e->req_base = 0;
	sky_http_options ho = {
	    e->cafile, e->o.insecure, e->o.max_parallel, 0, 0, 0, NULL};
	if (!e->ev_stop || !e->ev_apply || !e->ev_fetch || !e->ev_flush ||
	    !e->ev_snap_retry || !e->ev_snap_go || !e->ev_broker_wait ||
	    !e->ev_refresh || !e->ev_heartbeat || !e->ev_resync ||
	    !e->ev_reconcile || !e->ev_drain || sky__http_new(base, &ho, &e->http) < 0) {
		e->running = 1;
		shutdown_engine(e, SKY_ENGINE_FAILED);
		return sky_error_last()->code ? -1 : sky__error_nomem();
	}
	e->running = 1;
	memset(&e->st, 0, sizeof(e->st));
	e->prev_sync_us = recorded_sync_us(e);
	load_stale(e);
	e->state = SKY_ENGINE_IDLE;
	set_state(e, SKY_ENGINE_LOGIN);
	elog(e, SKY_LOG_INFO, "connecting to %s (realm %s)", e->server,
	     e->realm);
	int64_t refresh_at = e->access_got_us + e->access_ttl_us / 10 * 8;
	if (e->access && sky__now_us() + 1000000 < refresh_at) {
		/* The token of an earlier run is still good for a while. */
		arm_ms(e->ev_refresh,
		       (long)((refresh_at - sky__now_us()) / 1000));
		after_login(e);
	} else {
		ensure_auth(e);
	}
	return 0;
}

int sky_engine_attach(sky_engine *e, struct event_base *base)
{
	assert(e && base);
	e->own_base = 0;
	return start_engine(e, base, e->o.follow);
}

static int run_own(sky_engine *e, int follow)
{
	struct event_base *base = event_base_new();
	if (!base)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, 0,
				      "cannot create an event loop");
	e->own_base = 1;
	int rc = start_engine(e, base, follow);
	if (rc == 0) {
		event_base_dispatch(base);
		/* The loop may also end when nothing is left to wait for. */
		if (e->running)
			shutdown_engine(e, e->fail_code ? SKY_ENGINE_FAILED
							: SKY_ENGINE_STOPPED);
		rc = e->fail_code;
		if (rc == 0 && !follow && e->st.reads_failed) {
			/* The outbox was delivered; the reads were not all
			 * done: say which. */
			snprintf(e->fail_msg, sizeof(e->fail_msg),
				 "reads failed: %.160s (%" PRIu64
				 " failed read%s, "
				 "%" PRIu64 " session%s stale); the outbox "
				 "was delivered",
				 e->st.read_error, e->st.reads_failed,
				 e->st.reads_failed == 1 ? "" : "s",
				 e->st.stale_sessions,
				 e->st.stale_sessions == 1 ? "" : "s");
			rc = SKY_ENETWORK;
		}
	}
	if (e->ev_stop) {
		event_free(e->ev_stop);
		e->ev_stop = NULL;
	}
	event_base_free(base);
	e->base = NULL;
	e->own_base = 0;
	if (rc < 0) {
		int code =
		    rc == SKY_ERROR || rc == SKY_ENETWORK ? rc : SKY_ERROR;
		sky__error_set(code,
			       code == SKY_ENETWORK ? SKY_ERRSRC_NET
						    : SKY_ERRSRC_NONE,
			       0, "%s", e->fail_msg);
		return code;
	}
	return 0;
}

int sky_engine_run(sky_engine *e)
{
	assert(e);
	return run_own(e, e->o.follow);
}

int sky_engine_sync_once(sky_engine *e)
{
	assert(e);
	return run_own(e, 0);
}

/* ------------------------------------------------------------------ */
/* Creating and freeing                                                */
/* ------------------------------------------------------------------ */

static int dup_opt(char **dst, const char *src, const char *name, int needed)
{
	if (!src || !*src) {
		if (needed)
			return sky__error_input("sync options: %s is required",
						name);
		*dst = NULL;
		return 0;
	}
	if (!(*dst = strdup(src)))
		return sky__error_nomem();
	return 0;
}

int sky_engine_new(sky_cache *cache, const sky_engine_options *opts,
		   sky_engine **out)
{
	assert(cache && out);
	if (!opts || opts->version < 1 ||
	    opts->version > SKY_ENGINE_OPTIONS_VERSION)
		return sky__error_input("sync options: unknown version (use "
					"SKY_ENGINE_OPTIONS_INIT)");
	sky_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return sky__error_nomem();
	e->cache = cache;
	e->lock_fd = -1;
	e->proto = sky__protocol_builtin();
	/* Each version's struct ends before the fields the next one added:
	 * version 1 before reconcile_interval_s, 2 before protocol_file, 3
	 * before backlog_limit. */
	memcpy(&e->o, opts,
	       opts->version == 1   ? offsetof(sky_engine_options,
					   reconcile_interval_s)
	       : opts->version == 2 ? offsetof(sky_engine_options, protocol_file)
	       : opts->version == 3 ? offsetof(sky_engine_options, backlog_limit)
				    : sizeof(*opts));
	int rc;
	if ((rc = dup_opt(&e->server, opts->server, "server", 1)) < 0 ||
	    (rc = dup_opt(&e->realm, opts->realm, "realm", 1)) < 0 ||
	    (rc = dup_opt(&e->user, opts->user, "user", 1)) < 0 ||
	    (rc = dup_opt(&e->password, opts->password, "password", 1)) < 0 ||
	    (rc = dup_opt(&e->cafile, opts->cafile, "cafile", 0)) < 0 ||
	    (rc = dup_opt(&e->broker, opts->broker, "broker", 0)) < 0)
		goto fail;
	if (strncmp(e->server, "https://", 8) &&
	    strncmp(e->server, "http://", 7)) {
		rc = sky__error_input("server URL %s: must start with https:// "
				      "(or http:// for a local server)",
				      e->server);
		goto fail;
	}
	if ((rc = sky__check_id(e->realm, "realm")) < 0 ||
	    (rc = sky__check_id(e->user, "user")) < 0)
		goto fail;
	if (strpbrk(e->realm, "/+#")) {
		rc =
		    sky__error_input("realm: must not contain '/', '+' or '#'");
		goto fail;
	}
	if (!e->broker && !(e->broker = sky__api_default_broker(e->server))) {
		rc = sky_error_last()->code ? sky_error_last()->code
					    : SKY_EINVAL;
		goto fail;
	}
	char *host = NULL;
	int port, tls;
	if ((rc = sky__mqtt_parse_url(e->broker, &host, &port, &tls)) < 0)
		goto fail;
	free(host);
	e->o.server = e->server;
	e->o.broker = e->broker;
	e->o.realm = e->realm;
	e->o.user = e->user;
	e->o.password = NULL; /* only e->password holds it */
	e->o.cafile = e->cafile;
	if (!e->o.max_parallel)
		e->o.max_parallel = 16;
	if (!e->o.resync_after_offline_s)
		e->o.resync_after_offline_s = 300;
	if (!e->o.retry_limit)
		e->o.retry_limit = 6;
	if (!e->o.reconcile_interval_s)
		e->o.reconcile_interval_s = RECONCILE_DEFAULT_S;
	if (!e->o.backlog_limit)
		e->o.backlog_limit = BACKLOG_LIMIT_DEFAULT;
	if (e->o.backoff_min_ms <= 0)
		e->o.backoff_min_ms = 250;
	if (e->o.backoff_max_ms <= 0)
		e->o.backoff_max_ms = 30000;
	if (e->o.backoff_max_ms < e->o.backoff_min_ms)
		e->o.backoff_max_ms = e->o.backoff_min_ms;
	if (e->o.protocol_file) {
		if ((rc = sky__protocol_load(e->o.protocol_file,
					     &e->proto_file)) < 0)
			goto fail;
		e->proto = e->proto_file;
	}
	e->o.protocol_file = NULL; /* read now, not kept */
	e->state = SKY_ENGINE_IDLE;
	/* One engine per cache, for as long as this one lives. */
	if ((rc = sky__engine_lock_take(cache->dir, &e->lock_fd)) < 0)
		goto fail;
	/* The outbox is delivered whenever the engine is online. */
	if ((rc = sky__deliver_attach(e)) < 0)
		goto fail;
	/* Events are read with the same eventType strings. */
	cache->proto = e->proto_file;
	*out = e;
	return 0;
fail:
	sky_engine_free(e);
	return rc;
}

void sky_engine_free(sky_engine *e)
{
	if (!e)
		return;
	if (e->running)
		shutdown_engine(e, e->fail_code ? SKY_ENGINE_FAILED
						: SKY_ENGINE_STOPPED);
	if (e->ev_stop)
		event_free(e->ev_stop);
	while (e->workers) {
		worker *w = e->workers;
		e->workers = w->next;
		if (w->w.destroy)
			w->w.destroy(w->ctx);
		free(w);
	}
	free(e->server);
	free(e->broker);
	free(e->realm);
	free(e->user);
	sky__api_wipe_free(e->password);
	free(e->cafile);
	sky__api_wipe_free(e->access);
	sky__api_wipe_free(e->refresh);
	free(e->sub);
	keyset_free(&e->stale);
	if (e->proto_file && e->cache->proto == e->proto_file)
		e->cache->proto = NULL;
	sky__protocol_free(e->proto_file);
	/* Last: until here this engine may still write to the cache. */
	sky__engine_lock_release(e->lock_fd);
	free(e);
}

int sky_engine_status(sky_engine *e, sky_sync_status *out)
{
	assert(e && out);
	*out = e->st;
	out->state = e->state;
	out->error_code = e->state == SKY_ENGINE_FAILED ? e->fail_code : 0;
	out->reads_pending = e->fetch_count;
	return 0;
}

int sky_engine_set_password(sky_engine *e, const char *password)
{
	assert(e);
	if (!password || !*password)
		return sky__error_input("sync: the password is empty");
	char *p = strdup(password);
	if (!p)
		return sky__error_nomem();
	/* The access token stays valid: the new password is used by the
	 * next login (a refused refresh, a new run of the snapshot). */
	sky__api_wipe_free(e->password);
	e->password = p;
	return 0;
}
