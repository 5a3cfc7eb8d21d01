/*
 * engine_core.c - the sync engine's core services, below all of its
 * parts (auth.c, broker.c, stream.c, resync.c, reconcile.c,
 * engine_options.c, deliver.c) and above none of them: logging, timers,
 * the state change with its table of legal transitions, failure, change
 * notices, the heartbeat, and the workers (the outbox). engine.c builds,
 * runs and stops the engine on top of the parts.
 *
 * Invariants kept here: everything runs on the engine's loop thread; the
 * state changes only in sky__engine_set_state(), which checks each
 * transition against legal_next (see engine.c, top, for the diagram);
 * the first failure of a run is the one kept.
 */
#include "config.h"

#include "engine_state.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "engine_core.h"
#include "error.h"
#include "repair.h"
#include "util.h"

#define HEARTBEAT_MS 5000 /* sync state into the cache while live */

typedef struct worker worker;

/* ------------------------------------------------------------------ */
/* Logging, timers, states                                             */
/* ------------------------------------------------------------------ */

static void vlog(sky_engine *e, sky_log_level level, const char *fmt,
		 va_list ap)
{
	if (!e->o.on_log)
		return;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	e->o.on_log(level, line, e->o.payload);
}

void sky__elog(sky_engine *e, sky_log_level level, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(e, level, fmt, ap);
	va_end(ap);
}

/* A warning about something retried: at most one a second. */
void sky__warn_retry(sky_engine *e, const char *msg, long delay_ms)
{
	snprintf(e->st.error, sizeof(e->st.error), "%s", msg);
	int64_t now = sky__now_us();
	if (now - e->last_warn_us < 1000000) {
		e->warns_suppressed++;
		return;
	}
	e->last_warn_us = now;
	if (e->warns_suppressed)
		sky__elog(e, SKY_LOG_WARN,
			  "%s; retrying in %.1f s (%u similar "
			  "messages suppressed)",
			  msg, delay_ms / 1000.0, e->warns_suppressed);
	else
		sky__elog(e, SKY_LOG_WARN, "%s; retrying in %.1f s", msg,
			  delay_ms / 1000.0);
	e->warns_suppressed = 0;
}

int64_t sky__mono_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void sky__arm_ms(struct event *ev, long ms)
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
	int64_t last =
	    e->st.last_sync_us ? e->st.last_sync_us : e->prev_sync_us;
	if (sky__repair_put_meta(
		e->cache, (uint64_t)e->state + 1, (uint64_t)last,
		(uint64_t)(e->st.event_lag_us > 0 ? e->st.event_lag_us : 0),
		(uint64_t)sky__now_us()) < 0)
		sky__elog(e, SKY_LOG_WARN, "cannot record the sync state: %s",
			  sky_error_last()->message);
}

/*
 * The legal transitions, from -> to (see the diagram at the top); the
 * state is changed only by sky__engine_set_state(), which checks them.
 * Setting the state the engine is in is no transition and always allowed.
 * A run starts over at IDLE without one (start_engine()). STOPPED or
 * FAILED may become FAILED: a new run that could not start.
 */
#define TO(s) (1u << SKY_ENGINE_##s)
#define ENDS (TO(STOPPED) | TO(FAILED))
static const unsigned legal_next[] = {
    [SKY_ENGINE_IDLE] = TO(LOGIN) | ENDS,
    [SKY_ENGINE_LOGIN] = TO(SUBSCRIBE) | TO(SNAPSHOT) | ENDS,
    [SKY_ENGINE_SUBSCRIBE] = TO(SNAPSHOT) | ENDS,
    [SKY_ENGINE_SNAPSHOT] = TO(LIVE) | TO(BACKOFF) | ENDS,
    [SKY_ENGINE_LIVE] = TO(SNAPSHOT) | ENDS,
    [SKY_ENGINE_BACKOFF] = TO(SNAPSHOT) | ENDS,
    [SKY_ENGINE_STOPPED] = TO(FAILED),
    [SKY_ENGINE_FAILED] = 0,
};
#undef ENDS
#undef TO

static int transition_legal(sky_engine_state from, sky_engine_state to)
{
	return (unsigned)from < sizeof(legal_next) / sizeof(legal_next[0]) &&
	       (unsigned)to < 32 && (legal_next[from] >> to & 1u);
}

void sky__engine_set_state(sky_engine *e, sky_engine_state s)
{
	if (e->state == s)
		return;
	if (!transition_legal(e->state, s)) {
		/* A bug in the engine: say so, and stop in a debug build. */
		sky__elog(e, SKY_LOG_ERROR,
			  "internal error: state %s cannot become %s",
			  sky_engine_state_name(e->state),
			  sky_engine_state_name(s));
		assert(!"illegal engine state transition");
	}
	e->state = s;
	e->st.state = s;
	sky__elog(e, SKY_LOG_DEBUG, "state: %s", sky_engine_state_name(s));
	write_meta(e);
	if (s == SKY_ENGINE_LIVE && e->ev_heartbeat)
		sky__arm_ms(e->ev_heartbeat, HEARTBEAT_MS);
	if (e->o.on_state)
		e->o.on_state(s, e->o.payload);
}

void sky__engine_notify(sky_engine *e, const char *app, const char *sid,
			unsigned what, const char *type, const char *eid)
{
	sky__engine_notify_event(e, app, sid, what, type, eid, NULL, 0);
}

void sky__engine_notify_event(sky_engine *e, const char *app, const char *sid,
			      unsigned what, const char *type, const char *eid,
			      const char *payload, size_t payload_len)
{
	if (!e->o.on_change || !what)
		return;
	sky_change ch;
	memset(&ch, 0, sizeof(ch));
	ch.app_id = app;
	ch.session_id = sid;
	ch.what = what;
	ch.event_type = type;
	ch.event_id = eid;
	ch.payload_json = payload;
	ch.payload_len = payload ? payload_len : 0;
	e->o.on_change(&ch, e->o.payload);
}

void sky__engine_notify_snap(sky_engine *e, const char *app, const char *sid,
			     unsigned what)
{
	if (!e->o.on_change || !what)
		return;
	if (e->o.snapshot_changes) {
		sky__engine_notify(e, app, sid, what, NULL, NULL);
		return;
	}
	/* A session is counted once, under the strongest of its bits. */
	if (what & SKY_CHANGE_REMOVED)
		e->snap_removed++;
	else if (what & SKY_CHANGE_ADDED)
		e->snap_added++;
	else
		e->snap_changed++;
}

void sky__engine_snap_summary(sky_engine *e)
{
	uint64_t a = e->snap_added, c = e->snap_changed, r = e->snap_removed;
	e->snap_added = e->snap_changed = e->snap_removed = 0;
	/* A snapshot that changed nothing says nothing, as before. */
	if (!e->o.on_change || (!a && !c && !r))
		return;
	sky_change ch;
	memset(&ch, 0, sizeof(ch));
	ch.what = SKY_CHANGE_SNAPSHOT;
	ch.added = a;
	ch.changed = c;
	ch.removed = r;
	e->o.on_change(&ch, e->o.payload);
}

void sky__engine_addressed(sky_engine *e, const char *app, const char *local,
			   const char *server)
{
	if (!e->o.on_change || !app || !local || !server)
		return;
	sky_change ch;
	memset(&ch, 0, sizeof(ch));
	ch.app_id = app;
	ch.session_id = server;
	ch.what = SKY_CHANGE_ADDRESSED;
	ch.local_id = local;
	ch.server_id = server;
	e->o.on_change(&ch, e->o.payload);
}

void sky__engine_after_login(sky_engine *e)
{
	e->after_login(e);
}

void sky__engine_resync(sky_engine *e)
{
	e->resync(e);
}

void sky__engine_on_heartbeat(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->state != SKY_ENGINE_LIVE)
		return;
	write_meta(e);
	sky__arm_ms(e->ev_heartbeat, HEARTBEAT_MS);
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

void sky__workers_online(sky_engine *e)
{
	e->online = 1;
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.online)
			w->w.online(w->ctx);
}

void sky__workers_offline(sky_engine *e)
{
	if (!e->online)
		return;
	e->online = 0;
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.offline)
			w->w.offline(w->ctx);
}

static int workers_busy(sky_engine *e)
{
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.busy && w->w.busy(w->ctx))
			return 1;
	return 0;
}

void sky__engine_check_once_done(sky_engine *e)
{
	if (e->once_waiting && !e->stopping && !workers_busy(e)) {
		e->once_waiting = 0;
		e->stopping = 1;
		event_active(e->ev_stop, 0, 0);
	}
}

void sky__engine_worker_changed(sky_engine *e)
{
	sky__engine_check_once_done(e);
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
/* Failure                                                             */
/* ------------------------------------------------------------------ */

void sky__engine_fail(sky_engine *e, int code, const char *fmt, ...)
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
