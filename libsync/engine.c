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
 * The state changes in one place, sky__engine_set_state(), which checks
 * each transition against the table of legal ones (legal_next, in
 * engine_core.c):
 *
 *   IDLE -> LOGIN; LOGIN -> SUBSCRIBE, SNAPSHOT; SUBSCRIBE -> SNAPSHOT;
 *   SNAPSHOT -> LIVE, BACKOFF; LIVE -> SNAPSHOT; BACKOFF -> SNAPSHOT;
 *   any of these -> STOPPED, FAILED; STOPPED -> FAILED (a new run that
 *   could not start). A new run starts over at IDLE.
 *
 * This file holds the engine object's life (new, free, status), the
 * state machine and run/attach/stop, and the workers; the rest is in
 * files named for what they do, all working on struct sky_engine
 * (engine_state.h):
 *   engine_options.c  the options: versions, checks, defaults
 *   auth.c            authenticated requests, login, token refresh
 *   broker.c          the broker connection and the broker identity
 *   stream.c          live events: queues, routing, batched apply,
 *                     re-reads of one session, stale marks
 *   resync.c          the snapshot: full and resumed paths, prunes
 *   reconcile.c       the periodic reconcile while LIVE
 *   keyset.c          the key sets they keep
 *
 * Change callbacks (on_change) are made here, for the parts: an applied
 * event with its payload (stream.c), a read that changed a session, an
 * offline create given its server id (deliver.c, SKY_CHANGE_ADDRESSED).
 * A snapshot's changes are counted (resync.c) and told as one
 * SKY_CHANGE_SNAPSHOT summary when it ends, done, failed or stopped, after
 * the retention's removals and before the held events apply; with
 * snapshot_changes they are told one by one instead. At the end of each
 * snapshot the user the engine syncs as (token sub and groups) is
 * recorded in the cache (viewer.c).
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

#include "engine_state.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "auth.h"
#include "broker.h"
#include "cache_types.h"
#include "deliver.h"
#include "engine_core.h"
#include "engine_options.h"
#include "enginelock.h"
#include "error.h"
#include "http.h"
#include "mqtt.h"
#include "outbox.h"
#include "protocol.h"
#include "reconcile.h"
#include "mirror.h"
#include "repair.h"
#include "resync.h"
#include "stream.h"
#include "util.h"

#define BROKER_WAIT_MS 10000	 /* snapshot without the broker after this */
#define BROKER_WAIT_ONCE_MS 3000 /* one-shot: full snapshot without it */

typedef struct worker worker;

/* sky__engine_after_login (engine_core.c) calls this one. */
static void engine_after_login(sky_engine *e)
{
	/* A one-shot sync of a cache never synced reads everything and
	 * needs no broker; one of a synced cache asks the broker first
	 * whether it kept our session (resync.c, "Resuming"). */
	if (!e->follow_run && !sky__resync_synced_before(e)) {
		e->full_why = SKY_SYNC_WHY_NEVER_SYNCED;
		sky__snapshot_start(e, 0);
		return;
	}
	sky__engine_set_state(e, SKY_ENGINE_SUBSCRIBE);
	if (!e->mqtt && sky__broker_start(e) < 0) {
		sky__engine_fail(
		    e, sky_error_last()->code ? sky_error_last()->code : -1,
		    "broker: %s", sky_error_last()->message);
		return;
	}
	sky__arm_ms(e->ev_broker_wait,
		    e->follow_run ? BROKER_WAIT_MS : BROKER_WAIT_ONCE_MS);
}

/* sky__engine_resync (engine_core.c) calls this one. */
static void engine_resync(sky_engine *e)
{
	sky__snapshot_start(e, 1);
}

/* ------------------------------------------------------------------ */
/* Start, stop, run                                                    */
/* ------------------------------------------------------------------ */

static void shutdown_engine(sky_engine *e, sky_engine_state final)
{
	if (!e->running)
		return;
	sky__workers_offline(e);
	for (worker *w = e->workers; w; w = w->next)
		if (w->w.stop)
			w->w.stop(w->ctx);
	sky__snap_free(e->snap);
	e->snap = NULL;
	/* What a snapshot cut short had stored is reported all the same. */
	sky__engine_snap_summary(e);
	sky__reconcile_cancel(e);
	sky__fetch_cancel_all(e);
	sky__engine_request_cancel_all(e);
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
		sky__stream_apply_all(e);
	sky__evq_clear(&e->incoming);
	sky__evq_clear(&e->held_all);
	sky__keyset_free(&e->gone);
	sky__keyset_free(&e->named);
	e->counting_backlog = 0;
	e->holding_all = 0;
	struct event **evs[] = {
	    &e->ev_apply,      &e->ev_fetch,	 &e->ev_flush,
	    &e->ev_snap_retry, &e->ev_snap_go,	 &e->ev_broker_wait,
	    &e->ev_refresh,    &e->ev_heartbeat, &e->ev_resync,
	    &e->ev_reconcile,  &e->ev_drain};
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
	sky__engine_set_state(e, final);
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
	e->ev_apply = evtimer_new(base, sky__stream_on_apply, e);
	e->ev_fetch = evtimer_new(base, sky__fetch_on_timer, e);
	e->ev_flush = evtimer_new(base, sky__resync_on_flush, e);
	e->ev_snap_retry = evtimer_new(base, sky__resync_on_retry, e);
	e->ev_snap_go = evtimer_new(base, sky__resync_on_go, e);
	e->ev_broker_wait = evtimer_new(base, sky__broker_on_wait, e);
	e->ev_refresh = evtimer_new(base, sky__auth_on_refresh_timer, e);
	e->ev_heartbeat = evtimer_new(base, sky__engine_on_heartbeat, e);
	e->ev_resync = evtimer_new(base, sky__resync_on_timer, e);
	e->ev_reconcile = evtimer_new(base, sky__reconcile_on_timer, e);
	e->ev_drain = evtimer_new(base, sky__resync_on_drain, e);
	e->resume_present = e->counting_backlog = 0;
	e->drain_start_us = 0;
	e->resume_next = e->full_why = 0;
	e->req_base = 0;
	sky_http_options ho = {
	    e->cafile, e->o.insecure, e->o.max_parallel, 0, 0, 0, NULL};
	if (!e->ev_stop || !e->ev_apply || !e->ev_fetch || !e->ev_flush ||
	    !e->ev_snap_retry || !e->ev_snap_go || !e->ev_broker_wait ||
	    !e->ev_refresh || !e->ev_heartbeat || !e->ev_resync ||
	    !e->ev_reconcile || !e->ev_drain ||
	    sky__http_new(base, &ho, &e->http) < 0) {
		e->running = 1;
		shutdown_engine(e, SKY_ENGINE_FAILED);
		return sky_error_last()->code ? -1 : sky__error_nomem();
	}
	e->running = 1;
	memset(&e->st, 0, sizeof(e->st));
	e->prev_sync_us = sky__resync_recorded_us(e);
	sky__stream_load_stale(e);
	e->state = SKY_ENGINE_IDLE;
	sky__engine_set_state(e, SKY_ENGINE_LOGIN);
	sky__elog(e, SKY_LOG_INFO, "connecting to %s (realm %s)", e->server,
		  e->realm);
	int64_t refresh_at = e->access_got_us + e->access_ttl_us / 10 * 8;
	if (e->access && sky__now_us() + 1000000 < refresh_at) {
		/* The token of an earlier run is still good for a while. */
		sky__arm_ms(e->ev_refresh,
			    (long)((refresh_at - sky__now_us()) / 1000));
		sky__engine_after_login(e);
	} else {
		sky__auth_ensure(e);
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

int sky_engine_new(sky_engine **out, sky_cache *cache,
		   const sky_engine_options *opts)
{
	assert(cache && out);
	int rc = sky__engine_options_check(opts);
	if (rc < 0)
		return rc;
	sky_engine *e = calloc(1, sizeof(*e));
	if (!e)
		return sky__error_nomem();
	e->cache = cache;
	e->lock_fd = -1;
	e->after_login = engine_after_login;
	e->resync = engine_resync;
	e->proto = sky__protocol_builtin();
	if ((rc = sky__engine_options_take(e, opts)) < 0)
		goto fail;
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
	sky__wipe_free(e->password);
	free(e->cafile);
	sky__wipe_free(e->access);
	sky__wipe_free(e->refresh);
	free(e->sub);
	json_decref(e->groups);
	sky__keyset_free(&e->stale);
	if (e->proto_file && e->cache->proto == e->proto_file)
		e->cache->proto = NULL;
	sky__protocol_free(e->proto_file);
	/* Last: until here this engine may still write to the cache. */
	sky__engine_lock_release(e->lock_fd);
	free(e);
}

/* The size of sky_sync_status in each version (index: the version). */
static const size_t status_size[SKY_SYNC_STATUS_VERSION + 1] = {
    0,
    sizeof(sky_sync_status),
};

int sky_engine_status(sky_engine *e, sky_sync_status *out)
{
	assert(e);
	int rc = sky__error_out_version("sky_sync_status",
					out ? &out->version : NULL,
					SKY_SYNC_STATUS_VERSION);
	if (rc < 0)
		return rc;
	sky_sync_status all = e->st;
	all.state = e->state;
	all.error_code = e->state == SKY_ENGINE_FAILED ? e->fail_code : 0;
	all.reads_pending = e->fetch_count;
	/* Only what the caller's version has: its struct may be shorter. */
	all.version = out->version;
	memcpy(out, &all, status_size[out->version]);
	return 0;
}

const char *sky_engine_user_id(sky_engine *e)
{
	assert(e);
	return e->sub;
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
	sky__wipe_free(e->password);
	e->password = p;
	return 0;
}
