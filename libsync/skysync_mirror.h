/*
 * skysync_mirror.h - the calls that feed server state into the mirror: for
 * a custom transport, one that reads the server by other means than the
 * sync engine (sky_engine_*) and hands what it read to the cache.
 *
 * Every sky_mirror_* call changes the cache's copy of the server (the
 * confirmed state, and with it the local view, rebuilt as that state plus
 * the writes still queued). Nothing here ever reaches the server: to change
 * the server, queue a write (sky_session_patch(), sky_write_batch(), ...
 * in skysync.h) and let an engine deliver it. A transport that feeds the
 * mirror while an engine runs on the same cache races the engine for the
 * same sessions; run one or the other.
 *
 * This header is separate from skysync.h so that an application that only
 * reads and queues writes does not see calls that overwrite the server
 * copy: a program that includes skysync_mirror.h says it is a transport.
 * It includes skysync.h, never the other way round. The deprecated 0.1
 * names of these calls are defined here (at the end), so a 0.1 caller of
 * sky_event_apply() and the other feeding calls adds
 * `#include <skysync_mirror.h>` (0.2 changes argument orders anyway).
 * It follows the conventions at the top of skysync.h.
 */
#ifndef SKYSYNC_MIRROR_H
#define SKYSYNC_MIRROR_H

#include "skysync.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ */
/* Server events                                                       */
/* ------------------------------------------------------------------ */

/** What became of one server event fed to the mirror. */
typedef enum {
	SKY_MIRROR_APPLIED = 0, /**< state changed (or was recorded) */
	SKY_MIRROR_DUPLICATE,	/**< its eventId was applied before */
	SKY_MIRROR_STALE,	/**< older than the state it would change */
	SKY_MIRROR_DEFERRED,	/**< session unknown yet: kept for later */
	SKY_MIRROR_REJECTED,	/**< malformed or over a limit: see message */
} sky_mirror_outcome;

/** Short name of an outcome ("applied", "duplicate", ...; static). */
SKY_EXTERN const char *sky_mirror_outcome_name(sky_mirror_outcome outcome);

/**
 * Apply one server event (§3 of DESIGN.md), given as JSON text of `len`
 * bytes, to the mirror. Atomic: it lands whole or not at all. A duplicate
 * or stale event changes nothing and returns 0 with that outcome.
 *
 * Returns 0 (see *outcome), SKY_EINVAL or SKY_ELIMIT for a rejected event
 * (nothing changed; sky_error_last() names the field), -1 on storage
 * failure. `outcome` may be NULL. Live-query callbacks registered on the
 * cache run inside this call, after the commit, on the calling thread.
 */
SKY_EXTERN int sky_mirror_event_apply(sky_cache *cache, const char *json,
				      size_t len, sky_mirror_outcome *outcome);

/** One event of a batch and, after sky_mirror_event_apply_batch, its
 * outcome. An array element: its layout is fixed for the 0.x series. */
typedef struct {
	const char *json;	    /**< in: the event text */
	size_t len;		    /**< in: its length */
	sky_mirror_outcome outcome; /**< out */
	char *error;		    /**< out: why rejected, owned (sky_free) */
} sky_mirror_event_item;

/**
 * Apply `count` events in one write transaction, in order. Rejected events
 * are skipped (each with its error) and change nothing; the others land
 * together, or none of them if storage fails. Returns 0 when the batch was
 * committed (even with rejects), -1 on storage failure. `error` is NULL
 * for items that were not rejected.
 */
SKY_EXTERN int sky_mirror_event_apply_batch(sky_cache *cache,
					    sky_mirror_event_item *items,
					    size_t count);

/* ------------------------------------------------------------------ */
/* Server state read over REST                                         */
/* ------------------------------------------------------------------ */

/**
 * Store server state read over REST. sky_mirror_app_put and
 * sky_mirror_role_put take an application / role JSON object
 * (DESIGN.md §2) and replace the cached one. sky_mirror_session_put
 * replaces the session (DESIGN.md §2) and, if `data_json` is not NULL, its
 * whole session data, as read at `as_of_us` (microseconds since the epoch,
 * server clock): events created before that time are stale for it, and
 * parts of the cache newer than that time are kept. Events waiting for the
 * session are applied after it. Each returns 0, SKY_EINVAL or SKY_ELIMIT
 * (rejected; nothing changed), or -1. sky_mirror_session_remove returns 0,
 * SKY_ENOTFOUND or -1.
 */
SKY_EXTERN int sky_mirror_app_put(sky_cache *cache, const char *app_json,
				  size_t len);
SKY_EXTERN int sky_mirror_role_put(sky_cache *cache, const char *app_id,
				   const char *role_json, size_t len);
SKY_EXTERN int sky_mirror_session_put(sky_cache *cache,
				      const char *session_json, size_t len,
				      const char *data_json, size_t data_len,
				      int64_t as_of_us);

/** One session of sky_mirror_session_put_batch and, after it, its result.
 * An array element: its layout is fixed for the 0.x series. */
typedef struct {
	const char *session_json; /**< in: the session (DESIGN.md §2) */
	size_t len;
	const char *data_json; /**< in: its whole session data, or NULL */
	size_t data_len;
	int64_t as_of_us; /**< in: server read time, as for
			       sky_mirror_session_put */
	int result;	  /**< out: 0, or SKY_EINVAL / SKY_ELIMIT */
	char *error;	  /**< out: why rejected, owned (sky_free) */
} sky_mirror_session_item;

/**
 * sky_mirror_session_put for `count` sessions in one write transaction, in
 * order. Rejected items change nothing (each gets its error); the others
 * land together, or none if storage fails. Returns 0 when committed (even
 * with rejects), -1 on storage failure.
 */
SKY_EXTERN int sky_mirror_session_put_batch(sky_cache *cache,
					    sky_mirror_session_item *items,
					    size_t count);

/** Remove a session and its data from the mirror (closed or no longer
 * visible on the server). */
SKY_EXTERN int sky_mirror_session_remove(sky_cache *cache, const char *app_id,
					 const char *session_id);

/* ------------------------------------------------------------------ */
/* BEGIN DEPRECATED NAMES (0.1 names, removed in 0.3)                  */
/* ------------------------------------------------------------------ */
#ifndef SKY_NO_DEPRECATED
typedef sky_mirror_outcome sky_event_outcome SKY_DEPRECATED;
typedef sky_mirror_event_item sky_event_item SKY_DEPRECATED;
typedef sky_mirror_session_item sky_session_item SKY_DEPRECATED;
#define SKY_EVENT_APPLIED SKY_MIRROR_APPLIED
#define SKY_EVENT_DUPLICATE SKY_MIRROR_DUPLICATE
#define SKY_EVENT_STALE SKY_MIRROR_STALE
#define SKY_EVENT_DEFERRED SKY_MIRROR_DEFERRED
#define SKY_EVENT_REJECTED SKY_MIRROR_REJECTED

/** Deprecated: sky_mirror_outcome_name(). */
SKY_DEPRECATED static inline const char *
sky_event_outcome_name(sky_mirror_outcome outcome)
{
	return sky_mirror_outcome_name(outcome);
}
/** Deprecated: sky_mirror_event_apply(). */
SKY_DEPRECATED static inline int sky_event_apply(sky_cache *cache,
						 const char *json, size_t len,
						 sky_mirror_outcome *outcome)
{
	return sky_mirror_event_apply(cache, json, len, outcome);
}
/** Deprecated: sky_mirror_event_apply_batch(). */
SKY_DEPRECATED static inline int
sky_event_apply_batch(sky_cache *cache, sky_mirror_event_item *items,
		      size_t count)
{
	return sky_mirror_event_apply_batch(cache, items, count);
}
/** Deprecated: sky_mirror_app_put(). */
SKY_DEPRECATED static inline int sky_app_put(sky_cache *cache,
					     const char *app_json, size_t len)
{
	return sky_mirror_app_put(cache, app_json, len);
}
/** Deprecated: sky_mirror_role_put(). */
SKY_DEPRECATED static inline int sky_role_put(sky_cache *cache,
					      const char *app_id,
					      const char *role_json, size_t len)
{
	return sky_mirror_role_put(cache, app_id, role_json, len);
}
/** Deprecated: sky_mirror_session_put(). */
SKY_DEPRECATED static inline int
sky_session_put(sky_cache *cache, const char *session_json, size_t len,
		const char *data_json, size_t data_len, int64_t as_of_us)
{
	return sky_mirror_session_put(cache, session_json, len, data_json,
				      data_len, as_of_us);
}
/** Deprecated: sky_mirror_session_put_batch(). */
SKY_DEPRECATED static inline int
sky_session_put_batch(sky_cache *cache, sky_mirror_session_item *items,
		      size_t count)
{
	return sky_mirror_session_put_batch(cache, items, count);
}
/** Deprecated: sky_mirror_session_remove(). */
SKY_DEPRECATED static inline int
sky_session_remove(sky_cache *cache, const char *app_id, const char *session_id)
{
	return sky_mirror_session_remove(cache, app_id, session_id);
}
#endif /* SKY_NO_DEPRECATED */
/* END DEPRECATED NAMES                                                */

#ifdef __cplusplus
}
#endif
#endif /* SKYSYNC_MIRROR_H */
