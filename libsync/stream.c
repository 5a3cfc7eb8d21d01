/*
 * stream.c - the sync engine's live event path: every received event is
 * routed to where it waits (held while a snapshot runs, held in the fetch
 * of its session while that session is re-read, else queued), queued
 * events are applied in batches of one write transaction each, and one
 * session is re-read (a "fetch") when an event says the mirror may have
 * missed something: a stale or deferred event, a session believed gone, a
 * write that landed, an unclear read. A read that fails marks its session
 * stale (stale.c, persisted) and is retried after a capped, jittered
 * backoff while following.
 *
 * Keeps true (engine.c, "Events and REST reads" and "Clocks"): before a
 * read is sent, the events already received are applied, and the events
 * of its session are held until its answer is stored, so between sending
 * a read and storing it nothing but that answer changes the session;
 * held events are then released in server (createdAt) order; an event
 * the read may or may not reflect waits for a second read a second later
 * (at most SETTLE_ROUNDS times). No write transaction stays open while
 * waiting for the network.
 */
#include "config.h"

#include "stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "api.h"
#include "cache_types.h"
#include "engine_core.h"
#include "engine_state.h"
#include "error.h"
#include "json.h"
#include "model.h"
#include "protocol.h"
#include "mirror.h"
#include "repair.h"
#include "stale.h"
#include "util.h"

#define APPLY_BATCH 2000   /* events per write transaction, at most */
#define SETTLE_ROUNDS 2	   /* unclear reads before re-applying instead */
#define HELD_LIMIT 500000u /* held events beyond this: resync instead */
#define GONE_LIMIT 100000  /* sessions remembered as gone */

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

void sky__evq_clear(evq *q)
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
 * Hand every item of `q` to sky__stream_route() in createdAt order (the
 * server's order), marked as released after a read. `q` ends empty.
 */
void sky__evq_release(sky_engine *e, evq *q)
{
	evq take = *q;
	memset(q, 0, sizeof(*q));
	if (take.n > 1)
		qsort(take.v + take.head, take.n, sizeof(evitem), by_time);
	for (size_t i = 0; i < take.n; i++) {
		evitem *it = &take.v[take.head + i];
		it->after_read = 1;
		sky__stream_route(e, it);
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
int sky__evitem_make(const sky_engine *e, const char *payload, size_t len,
		     size_t max_bytes, uint64_t seq, const char *topic,
		     evitem *out)
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
/* Applying events                                                     */
/* ------------------------------------------------------------------ */

static void schedule_apply(sky_engine *e);

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

/*
 * The end of the JSON value that starts at t[i] (t[0..n) is text the
 * cache accepted, so valid JSON; the bounds are checked all the same), or
 * n when it runs off the end.
 */
static size_t skip_value(const char *t, size_t n, size_t i)
{
	int depth = 0;
	do {
		if (i >= n)
			return n;
		char c = t[i];
		if (c == '"') {
			for (i++; i < n && t[i] != '"'; i++)
				if (t[i] == '\\')
					i++;
			i++;
		} else if (c == '{' || c == '[') {
			depth++;
			i++;
		} else if (c == '}' || c == ']') {
			depth--;
			i++;
		} else if (depth > 0) {
			i++; /* separators, whitespace, scalars inside */
		} else {
			while (i < n && !strchr(",}] \t\r\n", t[i]))
				i++;
		}
	} while (depth > 0);
	return i < n ? i : n;
}

static size_t skip_ws(const char *t, size_t n, size_t i)
{
	while (i < n && strchr(" \t\r\n", t[i]))
		i++;
	return i;
}

/*
 * The span of top-level member `key` of the object text t[0..n): 1 with
 * *at, *len set (the last one, as the parser keeps the last of duplicate
 * keys), 0 when absent, -1 when the text has a key with an escape (it
 * might spell `key`: the caller parses instead).
 */
static int member_span(const char *t, size_t n, const char *key, size_t *at,
		       size_t *len)
{
	size_t klen = strlen(key), i = skip_ws(t, n, 0);
	int found = 0;
	if (i >= n || t[i] != '{')
		return 0;
	i = skip_ws(t, n, i + 1);
	while (i < n && t[i] == '"') {
		size_t k = ++i;
		while (i < n && t[i] != '"') {
			if (t[i] == '\\')
				return -1;
			i++;
		}
		int match = i - k == klen && !memcmp(t + k, key, klen);
		i = skip_ws(t, n, i + 1);
		if (i >= n || t[i] != ':')
			return 0;
		i = skip_ws(t, n, i + 1);
		size_t end = skip_value(t, n, i);
		if (match) {
			*at = i;
			*len = end - i;
			found = 1;
		}
		i = skip_ws(t, n, end);
		if (i >= n || t[i] != ',')
			break;
		i = skip_ws(t, n, i + 1);
	}
	return found;
}

/*
 * What an applied event carried, for sky_change.payload_json: its "data"
 * (the merge patch of session_data_updated, a custom event's data) or
 * its "session" (the fields the other events send), as the event's text
 * has it, in a copy the caller frees; NULL when it has none. Made only
 * for an application that listens, by a scan of the text the cache just
 * accepted (a parse would cost more than the apply).
 */
static char *event_payload(const sky_engine *e, const evitem *it, size_t *len)
{
	int t = sky__protocol_event_type(e->proto, it->type);
	const char *type = t < 0 ? it->type : sky__protocol_event_key(t);
	const char *field = !strcmp(type, "session_data_updated") ||
				    !strcmp(type, "session_event_created")
				? "data"
				: "session";
	size_t at = 0, n = 0;
	int rc = member_span(it->text, it->len, field, &at, &n);
	if (rc < 0) {
		json_t *ev = sky__json_loadb(it->text, it->len, 0, NULL);
		const json_t *v = json_object_get(ev, field);
		char *text = v ? sky__json_dumps(v, len) : NULL;
		json_decref(ev);
		return text;
	}
	char *text = rc > 0 && n > 0 ? malloc(n + 1) : NULL;
	if (text) {
		memcpy(text, it->text + at, n);
		text[n] = '\0';
		*len = n;
	}
	return text;
}

/* Apply up to `limit` queued events in one transaction. */
static void apply_some(sky_engine *e, size_t limit)
{
	evq *q = &e->incoming;
	size_t n = q->n < limit ? q->n : limit;
	if (!n)
		return;
	evitem *its = malloc(n * sizeof(*its));
	sky_mirror_event_item *items = calloc(n, sizeof(*items));
	if (!its || !items) {
		free(its);
		free(items);
		sky__engine_fail(e, SKY_ERROR, "out of memory applying events");
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
	if (sky_mirror_event_apply_batch(e->cache, items, n) < 0) {
		/* Storage failed: these events are lost to us; read again. */
		sky__elog(e, SKY_LOG_ERROR, "cannot apply %zu events: %s", n,
			  sky_error_last()->message);
		e->need_resync = 1;
		if (e->state == SKY_ENGINE_LIVE && e->ev_resync)
			sky__arm_ms(e->ev_resync, e->o.backoff_max_ms);
		goto done;
	}
	int64_t now = sky__now_us();
	for (size_t i = 0; i < n; i++) {
		evitem *it = &its[i];
		switch (items[i].outcome) {
		case SKY_MIRROR_APPLIED:
			e->st.events_applied++;
			if (it->created_us) {
				if (it->created_us > e->st.last_event_us)
					e->st.last_event_us = it->created_us;
				e->st.event_lag_us = now - it->created_us;
			}
			if (e->o.on_change) {
				size_t plen = 0;
				char *payload = event_payload(e, it, &plen);
				sky__engine_notify_event(
				    e, it->app, it->sid, change_of(e, it->type),
				    it->type, it->eid, payload, plen);
				free(payload);
			}
			break;
		case SKY_MIRROR_DUPLICATE: e->st.events_skipped++; break;
		case SKY_MIRROR_STALE:
			e->st.events_skipped++;
			sky__elog(e, SKY_LOG_DEBUG,
				  "event %s (%s) for %s/%s is stale%s", it->eid,
				  it->type, it->app, it->sid,
				  it->after_read ? " (in the read)"
						 : ": re-reading");
			/* A live event older than what we hold arrived late: a
			 * change may have been skipped with it. Re-read. */
			if (!it->after_read)
				sky__fetch_schedule(e, it->app, it->sid, 1);
			break;
		case SKY_MIRROR_DEFERRED:
			sky__fetch_schedule(e, it->app, it->sid, 0);
			break;
		case SKY_MIRROR_REJECTED:
			/* Refused by the cache (malformed, over a limit): the
			 * server changed the session all the same, so it is
			 * read again rather than left to diverge. */
			e->st.events_rejected++;
			char what[SKY_MAX_ID_BYTES + 80];
			snprintf(what, sizeof(what), "event %s (%s)",
				 *it->eid ? it->eid : "without a readable id",
				 *it->type ? it->type : "unknown type");
			sky__stream_count_refused(e, what, it->app, it->sid,
						  items[i].error);
			sky__fetch_schedule(e, it->app, it->sid, 1);
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

void sky__stream_on_apply(evutil_socket_t fd, short what, void *arg)
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
	sky__arm_ms(e->ev_apply, 0);
}

void sky__stream_apply_all(sky_engine *e)
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
	sky__evq_clear(&f->held);
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
void sky__fetch_schedule_at(sky_engine *e, const char *app, const char *sid,
			    int stale, int64_t delay_us, unsigned rounds)
{
	if (!*app || !*sid || e->stopping)
		return;
	/* While the backlog comes in, a session that needs a read is read
	 * by the resumed snapshot (resync.c, "Resuming"). */
	if (e->counting_backlog && sky__keyset_add(&e->named, app, sid) < 0)
		sky__elog(e, SKY_LOG_ERROR, "out of memory noting a session");
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
		sky__elog(e, SKY_LOG_ERROR,
			  "out of memory scheduling a re-read");
		return;
	}
	f->e = e;
	f->stale = stale;
	f->rounds = rounds;
	f->not_before = delay_us > 0 ? sky__mono_us() + delay_us : 0;
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
		sky__arm_ms(e->ev_fetch, delay_us > 0
					     ? (long)(delay_us / 1000) + 1
					     : FETCH_DELAY_MS);
}

void sky__fetch_schedule(sky_engine *e, const char *app, const char *sid,
			 int stale)
{
	sky__fetch_schedule_at(e, app, sid, stale, 0, 0);
}

void sky__engine_refetch(sky_engine *e, const char *app, const char *sid)
{
	sky__fetch_schedule(e, app, sid, 1);
}

/* ---- stale sessions and refused answers ---- */

/* A read failed: counted, and the first one kept for the run's result. */
void sky__stream_read_failed(sky_engine *e, const char *what)
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
	sky__keyset_get(&e->stale, app, sid, v);
	unsigned fails = (unsigned)v[0];
	if (sky__keyset_set(&e->stale, app, sid, (int64_t)fails + 1, 0) < 0)
		sky__elog(e, SKY_LOG_ERROR,
			  "out of memory noting a stale session");
	e->st.stale_sessions = e->stale.n;
	if (sky__stale_mark(e->cache, app, sid, why) < 0)
		sky__elog(e, SKY_LOG_ERROR,
			  "cannot mark session %s/%s stale: %s", app, sid,
			  sky_error_last()->message);
	if (!e->follow_run || e->stopping) {
		sky__elog(e, SKY_LOG_WARN,
			  "session %s/%s is stale (%s): the next sync reads it "
			  "again",
			  app, sid, why);
		return;
	}
	long ms = sky__backoff_ms(fails, e->o.backoff_min_ms * 4,
				  e->o.backoff_max_ms);
	sky__elog(e, SKY_LOG_WARN,
		  "session %s/%s is stale (%s): reading it again "
		  "in %.1f s",
		  app, sid, why, ms / 1000.0);
	sky__fetch_schedule_at(e, app, sid, 1, (int64_t)ms * 1000, 0);
}

/* A read of app/sid failed (or its answer was refused): counted for the
 * run's result, naming the session, and the session is stale. */
void sky__stream_session_failed(sky_engine *e, const char *app, const char *sid,
				const char *why)
{
	char what[SKY_MAX_ID_BYTES * 2 + 220];
	snprintf(what, sizeof(what), "session %s/%s: %.200s", app ? app : "?",
		 sid ? sid : "?", why);
	sky__stream_read_failed(e, what);
	stale_mark(e, app, sid, why);
}

/* A read of app/sid was stored, or the session left the mirror. */
void sky__stream_stale_clear(sky_engine *e, const char *app, const char *sid)
{
	if (!e->stale.n || !app || !sid ||
	    !sky__keyset_has(&e->stale, app, sid))
		return;
	sky__keyset_del(&e->stale, app, sid);
	e->st.stale_sessions = e->stale.n;
	if (sky__stale_clear(e->cache, app, sid) < 0)
		sky__elog(e, SKY_LOG_ERROR,
			  "cannot clear the stale mark of %s/%s: %s", app, sid,
			  sky_error_last()->message);
	else
		sky__elog(e, SKY_LOG_INFO, "session %s/%s is current again",
			  app, sid);
}

/* The cache refused a server event or answer (`what`) for app/sid. */
void sky__stream_count_refused(sky_engine *e, const char *what, const char *app,
			       const char *sid, const char *why)
{
	e->st.server_events_refused++;
	if (sky__stale_count_refused(e->cache, 1) < 0)
		sky__elog(e, SKY_LOG_ERROR, "cannot count a refused %s: %s",
			  what, sky_error_last()->message);
	sky__elog(e, SKY_LOG_WARN,
		  "%s for session %s/%s refused by the cache: %s", what,
		  app && *app ? app : "?", sid && *sid ? sid : "?",
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
void sky__stream_stale_app(sky_engine *e, const char *app, const char *why)
{
	app_sessions a = {e, json_array()};
	if (!a.sids || sky_session_list(e->cache, app, collect_sid, &a) < 0) {
		sky__elog(e, SKY_LOG_ERROR,
			  "cannot mark the sessions of %s stale", app);
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
	return sky__keyset_set(&e->stale, s->app_id, s->session_id, 0, 0) < 0
		   ? sky__error_nomem()
		   : 0;
}

/* The marks the cache holds (from earlier runs) become ours. */
void sky__stream_load_stale(sky_engine *e)
{
	sky__keyset_free(&e->stale);
	if (sky_stale_list(e->cache, load_stale_one, e) < 0)
		sky__elog(e, SKY_LOG_WARN, "cannot read the stale sessions: %s",
			  sky_error_last()->message);
	e->st.stale_sessions = e->stale.n;
}

/*
 * Release a finished fetch: its held events go on, after a read or not.
 * `settle` (after an unclear read) first schedules the next read of the
 * session, so the held events wait in it instead (sky__stream_route()).
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
		sky__fetch_schedule_at(e, app, sid, 1, SETTLE_US, rounds + 1);
		again = 0;
	}
	if (after_read) {
		sky__evq_release(e, &held);
	} else {
		for (size_t i = 0; i < held.n; i++)
			sky__stream_route(e, &held.v[held.head + i]);
		free(held.v);
	}
	if (again)
		sky__fetch_schedule(e, app, sid, 1);
	free(app);
	free(sid);
	schedule_apply(e);
	if (e->fq_head && !evtimer_pending(e->ev_fetch, NULL))
		sky__arm_ms(e->ev_fetch, 0);
}

/* Session data as the server sent it: an object, under the depth limit
 * (its size is bounded by the answer limit already). */
int sky__stream_parse_data(sky_engine *e, const char *text, size_t len,
			   json_t **out)
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
int64_t sky__read_as_of(sky_engine *e, const json_t *session, int64_t bound_s,
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
int64_t sky__read_upper(int64_t date_a, int64_t date_b)
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
			sky__stream_session_failed(e, app, sid, why);
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
		 * checked by a read first (sky__stream_route()).
		 */
		int rc = sky__repair_remove_session(e->cache, f->app, f->sid);
		if (rc > 0)
			sky__engine_notify(e, f->app, f->sid,
					   SKY_CHANGE_REMOVED, NULL, NULL);
		sky__repair_purge_pending(e->cache, f->app, f->sid);
		sky__stream_note_gone(e, f->app, f->sid);
		sky__stream_stale_clear(e, f->app, f->sid);
		sky__evq_clear(&f->held);
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
	    sky__read_as_of(e, f->session, f->bound_s, f->bound_d, &known);
	sky__keyset_del(&e->gone, f->app, f->sid);
	if (e->o.on_log) {
		char t[32];
		sky__format_time(as_of, t);
		sky__elog(e, SKY_LOG_DEBUG,
			  "re-read %s/%s: stored as of %s, %zu "
			  "events held",
			  f->app, f->sid, t, f->held.n);
	}
	json_t *data = NULL;
	sky__parsed_put item = {f->session, NULL, as_of, 0, NULL, NULL, 0};
	if (sky__stream_parse_data(e, f->data, f->data_len, &data) < 0) {
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
		sky__elog(e, SKY_LOG_ERROR, "cannot store session %s/%s: %s",
			  f->app, f->sid, sky_error_last()->message);
		snprintf(why, sizeof(why), "storing its read: %s",
			 sky_error_last()->message);
	} else if (item.result) {
		snprintf(why, sizeof(why),
			 "the server's answer was refused: %s",
			 item.error ? item.error : "not valid");
		sky__stream_count_refused(e, "the server's answer", f->app,
					  f->sid, item.error);
	} else {
		ok = 1;
		sky__engine_notify(e, f->app, f->sid, what, NULL, NULL);
	}
	free(item.error);
	json_decref(data);
	char *app = strdup(f->app), *sid = strdup(f->sid);
	int64_t upper = sky__read_upper(f->bound_s, f->bound_d);
	fetch_end(e, f, 1, unclear(f->rounds, &f->held, as_of, upper));
	if (app && sid && ok) {
		sky__stream_stale_clear(e, app, sid);
	} else if (app && sid) {
		sky__stream_session_failed(e, app, sid, why);
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
				sky__stream_count_refused(
				    e, "the server's answer", f->app, f->sid,
				    sky_error_last()->message);
				f->failed = 1;
			}
		}
		break;
	case SKY_API_GONE: f->gone = 1; break;
	default:
		sky__api_error(is_data ? SKY_API_DATA : SKY_API_SESSION, f->app,
			       res);
		sky__elog(e, SKY_LOG_WARN, "re-reading session %s/%s: %s",
			  f->app, f->sid, sky_error_last()->message);
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

void sky__fetch_on_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->stopping || e->snap || !e->running || e->counting_backlog)
		return;
	/*
	 * Every event received before these reads are sent must be in the
	 * cache first (see engine.c, top): apply the queue now.
	 */
	sky__stream_apply_all(e);
	int64_t now = sky__mono_us(), next = 0;
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
		sky__arm_ms(e->ev_fetch, (long)((next - now) / 1000) + 1);
}

/* Cancel every fetch; their held events join held_all (a snapshot). */
void sky__fetch_cancel_all(sky_engine *e)
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

void sky__stream_route(sky_engine *e, evitem *it)
{
	evq *q = &e->incoming;
	fetch *f;
	if (e->holding_all) {
		q = &e->held_all;
	} else if ((f = fetch_find(e, it->app, it->sid))) {
		q = &f->held;
	} else if (e->gone.n && sky__keyset_has(&e->gone, it->app, it->sid)) {
		/* Believed gone: a read decides whether this event counts. */
		sky__fetch_schedule(e, it->app, it->sid, 1);
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
		sky__engine_fail(e, SKY_ERROR,
				 "out of memory holding an event");
		return;
	}
	if (q == &e->incoming)
		schedule_apply(e);
}

/* Remember a session that left the mirror (see sky__stream_route()). */
void sky__stream_note_gone(sky_engine *e, const char *app, const char *sid)
{
	if (e->gone.n >= GONE_LIMIT)
		sky__keyset_free(&e->gone);
	sky__keyset_add(&e->gone, app, sid);
}
