/*
 * stream.h - the sync engine's live event path (stream.c): received events
 * and their queues, routing, the batched apply, re-reads of one session
 * ("fetches") and the stale marks of sessions whose read failed.
 */
#ifndef SKY_STREAM_H
#define SKY_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include <event2/util.h>
#include <jansson.h>

#include "engine_state.h"

#define FETCH_DELAY_MS 200 /* coalesce refetch triggers */
#define SETTLE_US 1100000  /* re-read this long after an unclear read */

/* ---- events and their queues ---- */

/* Read the ids, type and time of an event (payload, len) into *out, with
 * its own copy of the text; unreadable ones get "" (or, for the ids, what
 * the topic names). 0, or -1 out of memory. */
int sky__evitem_make(const sky_engine *e, const char *payload, size_t len,
		     size_t max_bytes, uint64_t seq, const char *topic,
		     evitem *out);
/* Free every item of q; q is empty. */
void sky__evq_clear(evq *q);
/* Route every item of q in createdAt order, as released after a read;
 * q ends empty. */
void sky__evq_release(sky_engine *e, evq *q);
/* Hand an event to where it waits: held for a snapshot or a fetch, or
 * queued for the apply. Takes the item's text. */
void sky__stream_route(sky_engine *e, evitem *it);
/* Remember a session that left the mirror: its events need a read. */
void sky__stream_note_gone(sky_engine *e, const char *app, const char *sid);

/* ---- the batched apply ---- */

/* Apply every queued event now. */
void sky__stream_apply_all(sky_engine *e);
/* Timer (ev_apply): apply one batch. */
void sky__stream_on_apply(evutil_socket_t fd, short what, void *arg);

/* ---- re-reads of one session ---- */

/* Re-read app/sid soon (stale: a stale event asked for it, else a
 * deferred one); from now on its events wait in the fetch. */
void sky__fetch_schedule(sky_engine *e, const char *app, const char *sid,
			 int stale);
/* The same, at the earliest delay_us from now, `rounds` unclear reads in a
 * row so far. */
void sky__fetch_schedule_at(sky_engine *e, const char *app, const char *sid,
			    int stale, int64_t delay_us, unsigned rounds);
/* Cancel every fetch; their held events join held_all (a snapshot). */
void sky__fetch_cancel_all(sky_engine *e);
/* Timer (ev_fetch): send the fetches that are due. */
void sky__fetch_on_timer(evutil_socket_t fd, short what, void *arg);

/* ---- reads and their time (engine.c, "Clocks") ---- */

/* Session data as the server sent it: an object under the depth limit. */
int sky__stream_parse_data(sky_engine *e, const char *text, size_t len,
			   json_t **out);
/* as_of for storing a session read at bound_s (session) and bound_d
 * (data); *known says whether the mirror holds the session. */
int64_t sky__read_as_of(sky_engine *e, const json_t *session, int64_t bound_s,
			int64_t bound_d, int *known);
/* The latest server time a read can have happened at; 0 when unknown. */
int64_t sky__read_upper(int64_t date_a, int64_t date_b);

/* ---- failed reads and stale sessions ---- */

/* A read failed: counted, and the first one kept for the run's result. */
void sky__stream_read_failed(sky_engine *e, const char *what);
/* A read of app/sid failed (or its answer was refused): counted, and the
 * session is marked stale. */
void sky__stream_session_failed(sky_engine *e, const char *app, const char *sid,
				const char *why);
/* A read of app/sid was stored, or the session left the mirror. */
void sky__stream_stale_clear(sky_engine *e, const char *app, const char *sid);
/* Every session the mirror holds of `app` is stale (its list failed). */
void sky__stream_stale_app(sky_engine *e, const char *app, const char *why);
/* The cache refused a server event or answer (`what`) for app/sid. */
void sky__stream_count_refused(sky_engine *e, const char *what, const char *app,
			       const char *sid, const char *why);
/* The marks the cache holds (from earlier runs) become the engine's. */
void sky__stream_load_stale(sky_engine *e);

#endif
