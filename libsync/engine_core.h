/*
 * engine_core.h - the sync engine's core (engine_core.c) and its interface
 * for the modules that plug into it (the outbox of DESIGN.md §5):
 * authenticated REST requests that survive token expiry (auth.c), notice
 * of when the mirror is current ("online") and when it is not, session
 * refetches (stream.c), and the loop the engine runs on; then the core's
 * services for the engine's own parts: logging, timers, the state change,
 * failure and change notices.
 *
 * It sits below every part of the engine and below engine.c, which
 * builds and runs it; engine_state.h (the engine object) is included
 * beside it, never by it. Everything here runs on the engine's loop
 * thread.
 */
#ifndef SKY_ENGINE_CORE_H
#define SKY_ENGINE_CORE_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>

#include "api.h"
#include "http.h"
#include "skysync.h"

struct event;
struct event_base;

typedef struct sky_engine_req sky_engine_req;

/*
 * The answer to a request. On a 401 the engine refreshes the token (or
 * logs in again) and resends before calling back, so callers never see a
 * 401 unless authentication itself fails.
 */
typedef void (*sky_engine_req_fn)(const sky_http_response *res, void *ctx);

/* Retry transient failures (sky__api_classify RETRY) with capped,
 * jittered backoff, honouring Retry-After; without it the caller decides. */
#define SKY_ENGINE_REQ_RETRY 0x1u

/*
 * Send `call` for app/sid (as the template needs) with `body` (copied;
 * NULL for none). `done` runs once, unless cancelled; `*out` (may be NULL)
 * is valid until then. Returns 0 or -1 (nothing sent, no callback).
 */
int sky__engine_request(sky_engine *e, sky_api_call call, const char *app,
			const char *sid, const char *body, size_t body_len,
			unsigned flags, sky_engine_req_fn done, void *ctx,
			sky_engine_req **out);
void sky__engine_request_cancel(sky_engine_req *req);

/*
 * A module that delivers work when the engine is online. `online` runs
 * when the mirror has become current (after each snapshot) and REST works;
 * `offline` when a resync starts or the engine stops; `busy` says whether
 * deliverable work remains (a one-shot sync waits until it returns 0);
 * `stop` runs when the engine stops and must cancel the module's requests.
 */
typedef struct {
	void (*online)(void *ctx);
	void (*offline)(void *ctx);
	int (*busy)(void *ctx);
	void (*stop)(void *ctx);
	void (*destroy)(void *ctx); /* when the engine is freed (may be NULL) */
} sky_engine_worker;

int sky__engine_add_worker(sky_engine *e, const sky_engine_worker *w,
			   void *ctx);
/* A worker's busy() may have changed: a one-shot sync re-checks. */
void sky__engine_worker_changed(sky_engine *e);

/* A create queued offline was given server_id: tell the application
 * (SKY_CHANGE_ADDRESSED). */
void sky__engine_addressed(sky_engine *e, const char *app, const char *local,
			   const char *server);

/* Re-read one session (and its data) soon, e.g. after a write landed. */
void sky__engine_refetch(sky_engine *e, const char *app, const char *sid);

/*
 * The server read time a REST answer proves: events created before it are
 * reflected in the answer. The Date header has 1 s precision, so this is
 * its second, floored (see engine.c on clocks). 0 when unknown.
 */
int64_t sky__engine_read_bound(const sky_http_response *res);

struct event_base *sky__engine_base(sky_engine *e);
/* The engine's options, with defaults filled in. */
const sky_engine_options *sky__engine_options(sky_engine *e);
/* 1 when this run stays live (follow), 0 for a one-shot sync. */
int sky__engine_follows(sky_engine *e);
/* A line for the application's log callback. */
void sky__engine_log(sky_engine *e, sky_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
sky_cache *sky__engine_cache(sky_engine *e);

/* For tests: drop the broker connection as a network failure would. */
void sky__engine_drop_broker(sky_engine *e);

/* One worker added with sky__engine_add_worker (the engine's list). */
struct worker {
	sky_engine_worker w;
	void *ctx;
	struct worker *next;
};

/* The heartbeat timer: records the sync state while LIVE. */
void sky__engine_on_heartbeat(evutil_socket_t fd, short what, void *arg);

/* ---- the engine's core (engine_core.c), for its parts ---- */

/* A line for the application's log callback (no secrets in it). */
void sky__elog(sky_engine *e, sky_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A warning about something retried: at most one a second. */
void sky__warn_retry(sky_engine *e, const char *msg, long delay_ms);
/* Local monotonic time, for delays only (never compared with server
 * times). */
int64_t sky__mono_us(void);
/* Arm a timer event to fire in `ms` milliseconds. */
void sky__arm_ms(struct event *ev, long ms);

/* The one place the state changes; the transition must be legal (the
 * table in engine_core.c). Records it in the cache and tells the application.
 */
void sky__engine_set_state(sky_engine *e, sky_engine_state s);
/* The run ends with this failure (the first one is kept), from the loop. */
void sky__engine_fail(sky_engine *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* LOGIN got its token: on to SUBSCRIBE, or straight to a snapshot
 * (engine.c's step, through the engine's after_login hook). */
void sky__engine_after_login(sky_engine *e);
/* LIVE, and the realm must be read again now: a resync (engine.c's
 * step, through the engine's resync hook). */
void sky__engine_resync(sky_engine *e);
/* Tell the application about a change of app/sid (what: SKY_CHANGE_*). */
void sky__engine_notify(sky_engine *e, const char *app, const char *sid,
			unsigned what, const char *type, const char *eid);
/* The same for an applied event, with what it carried (borrowed JSON
 * text, or NULL) for sky_change.payload_json. */
void sky__engine_notify_event(sky_engine *e, const char *app, const char *sid,
			      unsigned what, const char *type, const char *eid,
			      const char *payload, size_t payload_len);
/* A change a snapshot made: counted for its summary, or told at once
 * when the application asked for one call per session
 * (snapshot_changes). */
void sky__engine_notify_snap(sky_engine *e, const char *app, const char *sid,
			     unsigned what);
/* The snapshot's summary (SKY_CHANGE_SNAPSHOT) if it changed anything;
 * the counts start again from zero. */
void sky__engine_snap_summary(sky_engine *e);

/* The workers (the outbox): online when the mirror is current. */
void sky__workers_online(sky_engine *e);
void sky__workers_offline(sky_engine *e);
/* One-shot: the run ends once the reads are over and no worker is busy. */
void sky__engine_check_once_done(sky_engine *e);

#endif
