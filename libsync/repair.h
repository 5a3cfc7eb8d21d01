/*
 * repair.h - the cache-side helpers of sync (engine.c): what the mirror
 * holds for a session (watermark, pending local writes), what a REST read
 * would change (for change notifications), and the removals that make the
 * mirror match the server after a snapshot: sessions no longer visible,
 * roles and applications no longer listed, and events still waiting for a
 * session that will never come. (Closed sessions past their retention:
 * retain.h; storing what REST read: mirror.h.)
 *
 * Each function runs its own short transaction; none is held across
 * network I/O (the engine calls these between requests).
 */
#ifndef SKY_REPAIR_H
#define SKY_REPAIR_H

#include <jansson.h>
#include <stdint.h>

#include "skysync.h"
/* The REST writes repair and the sync engine use (mirror.c). */
#include "mirror.h"

/* Keys of the sync bookkeeping in the cache's meta table (u64 values). */
#define SKY_META_SYNC_STATE "sync_state"	 /* sky_engine_state + 1 */
#define SKY_META_SYNC_LAST_AT "sync_last_at"	 /* µs, last snapshot done */
#define SKY_META_SYNC_EVENT_LAG "sync_event_lag" /* µs */
#define SKY_META_SYNC_UPDATED "sync_updated_at"	 /* µs, heartbeat */
#define SKY_META_SYNC_PATH "sync_path"	  /* SKY_SYNC_PATH_* of the last sync */
#define SKY_META_SYNC_WHY "sync_path_why" /* SKY_SYNC_WHY_* */
#define SKY_META_SYNC_REQUESTS "sync_requests" /* REST requests it made */

/*
 * The newest of a session's watermarks (its fields, properties, data) and
 * its record flags (SKY_REC_*). Returns 0, or SKY_ENOTFOUND (then *wm is
 * INT64_MIN and *flags 0), or -1.
 */
int sky__repair_session_info(sky_cache *c, const char *app, const char *sid,
			     int64_t *wm, unsigned *flags);

/*
 * The SKY_CHANGE_* bits that storing `session` (and `data`, when not NULL)
 * would make against what the mirror holds now: ADDED when it is not
 * there; else PROPERTIES, CLOSED, SESSION (any other field), DATA.
 */
unsigned sky__repair_diff(sky_cache *c, const json_t *session,
			  const json_t *data);

/* Called for each session a prune removed. */
typedef void (*sky_repair_removed_fn)(const char *app, const char *sid,
				      void *ctx);
/* Whether a listed id is kept (non-zero) or pruned. */
typedef int (*sky_repair_keep_fn)(const char *app, const char *sid, void *ctx);

/* Called for each session found; a negative return stops the walk. */
typedef int (*sky_repair_each_fn)(const char *app, const char *sid, void *ctx);

/*
 * The sessions of `app` that keep() rejects and that the mirror holds as
 * open (closed ones stay: the list shows open sessions only), except those
 * with local writes pending. each() is called for each, after the read
 * transaction ended. Returns how many, or a negative code (each()'s too).
 */
long sky__repair_unlisted_open(sky_cache *c, const char *app,
			       sky_repair_keep_fn keep, void *ctx,
			       sky_repair_each_fn each);

/*
 * Remove applications that keep(app, NULL) rejects, with their roles and
 * sessions (except sessions with pending local writes, whose application
 * then stays). Returns the number of applications removed or a code.
 */
long sky__repair_prune_apps(sky_cache *c, sky_repair_keep_fn keep, void *ctx,
			    sky_repair_removed_fn removed);

/* Remove the roles of `app` whose name keep(app, name) rejects. */
long sky__repair_prune_roles(sky_cache *c, const char *app,
			     sky_repair_keep_fn keep, void *ctx);

/* Remove one session (no-op when absent) unless it has pending writes.
 * Returns 1 when removed, 0 when not, or a negative code. */
int sky__repair_remove_session(sky_cache *c, const char *app, const char *sid);

/* Forget the events waiting for session app/sid (it will not come). */
int sky__repair_purge_pending(sky_cache *c, const char *app, const char *sid);

/* Store the sync bookkeeping (each value a u64 under SKY_META_SYNC_*). */
int sky__repair_put_meta(sky_cache *c, uint64_t state, uint64_t last_at,
			 uint64_t lag, uint64_t updated);

/* Store how the last sync read the realm (SKY_META_SYNC_PATH, _WHY,
 * _REQUESTS). */
int sky__repair_put_sync_path(sky_cache *c, uint64_t path, uint64_t why,
			      uint64_t requests);

#endif
