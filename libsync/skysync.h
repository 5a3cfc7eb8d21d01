/*
 * skysync.h - the public API of libsync, a persistent local mirror of a
 * Skylight realm kept in LMDB.
 *
 * Everything public is prefixed sky_ (functions, types) or SKY_ (macros and
 * codes). Functions return 0 on success, one of the small negative SKY_E*
 * codes listed in their documentation, or -1 (SKY_ERROR) for anything else;
 * sky_error_last() then tells what happened, where (LMDB, JSON, OS, input,
 * server) and keeps the native code.
 *
 * Ownership: a `**out` parameter receives something the caller frees with the
 * matching sky_*_free (strings with sky_free). A pointer returned through a
 * `const char **` is borrowed; its documentation says how long it lives.
 *
 * Threads: a sky_cache may be shared by threads. Each sky_reader belongs to
 * the thread that uses it (one at a time). sky_error_last() is per thread.
 */
#ifndef SKYSYNC_H
#define SKYSYNC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SKY_BUILDING_LIBRARY) && defined(__GNUC__)
#define SKY_EXTERN __attribute__((visibility("default")))
#else
#define SKY_EXTERN
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/** Return codes. Functions document which of these they can return. */
enum {
	SKY_OK = 0,
	SKY_ERROR = -1,     /**< anything unexpected: see sky_error_last() */
	SKY_ENOTFOUND = -2, /**< no such application, session, entry */
	SKY_EINVAL = -3,    /**< the input was rejected; nothing changed */
	SKY_ELIMIT = -4,    /**< the input is over a configured limit */
	SKY_EEXISTS = -5,   /**< already there */
	SKY_EPERM = -6,     /**< refused: permissions or file safety */
	SKY_ENETWORK = -7,  /**< network or server failure */
};

/** Where an error came from. */
typedef enum {
	SKY_ERRSRC_NONE = 0,
	SKY_ERRSRC_OS,     /**< a system call; native is errno */
	SKY_ERRSRC_LMDB,   /**< LMDB; native is the MDB_* code */
	SKY_ERRSRC_JSON,   /**< JSON text that could not be parsed */
	SKY_ERRSRC_INPUT,  /**< input that parsed but breaks a rule */
	SKY_ERRSRC_NOMEM,  /**< out of memory */
	SKY_ERRSRC_NET,    /**< network; native is the CURLcode */
	SKY_ERRSRC_SERVER, /**< the server; native is the HTTP status */
} sky_error_source;

typedef struct {
	int code;                /**< the SKY_E* code returned */
	sky_error_source source; /**< where it came from */
	int native;              /**< the native code (errno, MDB_*, HTTP) */
	const char *message;     /**< one line, no trailing newline */
} sky_error;

/**
 * The last error of the calling thread. Never NULL; when no error was
 * recorded, code is 0 and message is "". Valid until the next sky_ call on
 * this thread.
 */
SKY_EXTERN const sky_error *sky_error_last(void);

/** Forget the last error of the calling thread. */
SKY_EXTERN void sky_error_clear(void);

/** Free memory the library handed out (strings from sky_*_get, ...). */
SKY_EXTERN void sky_free(void *ptr);

/** The library version, "MAJOR.MINOR.PATCH". */
SKY_EXTERN const char *sky_version(void);

/* ------------------------------------------------------------------ */
/* Cache                                                               */
/* ------------------------------------------------------------------ */

typedef struct sky_cache sky_cache;

/** Open the cache read-only: no writes, no directory creation. */
#define SKY_CACHE_READONLY 0x1u
/**
 * Commit without waiting for the disk (survives a process crash, not a
 * power cut). Off by default.
 */
#define SKY_CACHE_NOSYNC 0x2u

typedef struct {
	unsigned version;          /**< SKY_CACHE_OPTIONS_VERSION */
	unsigned flags;            /**< SKY_CACHE_* */
	size_t max_event_bytes;    /**< largest accepted event (default 1 MiB) */
	unsigned max_depth;        /**< deepest nesting accepted (default 64) */
	unsigned event_log_size;   /**< event ids remembered (default 100000) */
	unsigned pending_limit;    /**< events kept for unknown sessions (default 100000) */
	size_t initial_map_bytes;  /**< first LMDB map size (default 64 MiB) */
} sky_cache_options;

#define SKY_CACHE_OPTIONS_VERSION 1
#define SKY_CACHE_OPTIONS_INIT {SKY_CACHE_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0}

/** Default limits (also used when an option is 0). */
#define SKY_DEFAULT_MAX_EVENT_BYTES (1024u * 1024u)
#define SKY_DEFAULT_MAX_DEPTH 64u
#define SKY_DEFAULT_EVENT_LOG_SIZE 100000u
#define SKY_DEFAULT_PENDING_LIMIT 100000u
/** Longest id (application, session, event, role name) in bytes. */
#define SKY_MAX_ID_BYTES 200u
/** Most properties on one session, longest property key and value. */
#define SKY_MAX_PROPERTIES 1000u
#define SKY_MAX_PROPERTY_KEY_BYTES 1024u
#define SKY_MAX_PROPERTY_VALUE_BYTES (64u * 1024u)

/**
 * Open (creating if needed) the cache in directory `dir`. The directory is
 * created 0700 and its files 0600; a cache directory or file writable by
 * group or others is refused (SKY_EPERM). Stale reader slots left by dead
 * processes are cleared. `opts` may be NULL for the defaults.
 *
 * Returns 0, SKY_EPERM, SKY_EINVAL (bad options, a newer schema) or -1.
 * On success *out is the caller's, freed with sky_cache_close().
 */
SKY_EXTERN int sky_cache_open(sky_cache **out, const char *dir,
			      const sky_cache_options *opts);

/** Close the cache. All readers must have ended. NULL is a no-op. */
SKY_EXTERN void sky_cache_close(sky_cache *cache);

/**
 * Write a compacted copy of the cache into directory `dest_dir`, which
 * must not hold a cache already (created 0700 if missing). Consistent
 * even while another thread or process writes.
 */
SKY_EXTERN int sky_cache_backup(sky_cache *cache, const char *dest_dir);

/** Counts and sizes, for `skysync stats`. */
typedef struct {
	uint64_t applications;
	uint64_t roles;
	uint64_t sessions;
	uint64_t open_sessions;
	uint64_t data_entries;     /**< stored nodes of session data */
	uint64_t event_log;        /**< event ids remembered */
	uint64_t pending_events;   /**< events waiting for their session */
	uint64_t custom_events;    /**< session_event_created recorded */
	uint64_t events_applied;   /**< lifetime count */
	uint64_t events_skipped;   /**< duplicates and stale, lifetime */
	uint64_t events_rejected;  /**< malformed, lifetime */
	int64_t last_event_at_us;  /**< createdAt of the newest applied event */
	int64_t last_apply_us;     /**< wall clock of the last apply, 0 never */
	uint64_t map_bytes;        /**< current LMDB map size */
	uint64_t used_bytes;       /**< pages in use * page size */
	unsigned schema_version;
} sky_stats;

SKY_EXTERN int sky_cache_stats(sky_cache *cache, sky_stats *out);

/**
 * Verify the whole cache: every record parses and validates, every data
 * document is well formed, every index entry matches its record and every
 * record has its index entries. Problems are reported one line each to
 * `report(line, payload)` (may be NULL). Returns 0 when all is well,
 * SKY_EINVAL when problems were found, -1 when the check could not run.
 */
typedef void (*sky_report_cb)(const char *line, void *payload);
SKY_EXTERN int sky_cache_check(sky_cache *cache, sky_report_cb report,
			       void *payload);

/* ------------------------------------------------------------------ */
/* Events                                                              */
/* ------------------------------------------------------------------ */

/** What became of one event. */
typedef enum {
	SKY_EVENT_APPLIED = 0,  /**< state changed (or was recorded) */
	SKY_EVENT_DUPLICATE,    /**< its eventId was applied before */
	SKY_EVENT_STALE,        /**< older than the state it would change */
	SKY_EVENT_DEFERRED,     /**< session unknown yet: kept for later */
	SKY_EVENT_REJECTED,     /**< malformed or over a limit: see message */
} sky_event_outcome;

/** Short name of an outcome ("applied", "duplicate", ...). */
SKY_EXTERN const char *sky_event_outcome_name(sky_event_outcome outcome);

/**
 * Apply one event (§3 of DESIGN.md), given as JSON text of `len` bytes.
 * Atomic: it lands whole or not at all. A duplicate or stale event changes
 * nothing and returns 0 with that outcome.
 *
 * Returns 0 (see *outcome), SKY_EINVAL or SKY_ELIMIT for a rejected event
 * (nothing changed; sky_error_last() names the field), -1 on storage
 * failure. `outcome` may be NULL.
 */
SKY_EXTERN int sky_event_apply(sky_cache *cache, const char *json, size_t len,
			       sky_event_outcome *outcome);

/** One event of a batch and, after sky_event_apply_batch, its outcome. */
typedef struct {
	const char *json;          /**< in: the event text */
	size_t len;                /**< in: its length */
	sky_event_outcome outcome; /**< out */
	char *error;               /**< out: why rejected (free with sky_free) */
} sky_event_item;

/**
 * Apply `count` events in one write transaction, in order. Rejected events
 * are skipped (each with its error) and change nothing; the others land
 * together, or none of them if storage fails. Returns 0 when the batch was
 * committed (even with rejects), -1 on storage failure.
 */
SKY_EXTERN int sky_event_apply_batch(sky_cache *cache, sky_event_item *items,
				     size_t count);

/* ------------------------------------------------------------------ */
/* Direct writes of server state (used by sync after a REST read)      */
/* ------------------------------------------------------------------ */

/**
 * Store server state read at `as_of_us` (microseconds since the epoch,
 * server clock): events created before that time are stale for these
 * records. sky_session_put replaces the session (JSON object of §2) and, if
 * `data_json` is not NULL, its whole session data. Pending events for the
 * session are applied after it.
 */
SKY_EXTERN int sky_app_put(sky_cache *cache, const char *app_json, size_t len);
SKY_EXTERN int sky_role_put(sky_cache *cache, const char *app_id,
			    const char *role_json, size_t len);
SKY_EXTERN int sky_session_put(sky_cache *cache, const char *session_json,
			       size_t len, const char *data_json,
			       size_t data_len, int64_t as_of_us);
/** Remove a session and its data (closed or no longer visible). */
SKY_EXTERN int sky_session_remove(sky_cache *cache, const char *app_id,
				  const char *session_id);

/* ------------------------------------------------------------------ */
/* Reads                                                               */
/* ------------------------------------------------------------------ */

/**
 * A read snapshot: every read through it sees the cache as it was when it
 * began, whatever other threads or processes write meanwhile. Cheap to
 * begin and end (the transaction is reused). Borrowed pointers returned
 * through a reader live until sky_reader_end().
 */
typedef struct sky_reader sky_reader;

SKY_EXTERN int sky_reader_begin(sky_cache *cache, sky_reader **out);
SKY_EXTERN void sky_reader_end(sky_reader *reader);

/**
 * The session as JSON text (the local view), borrowed from the reader:
 * NUL-terminated, valid until sky_reader_end(). Returns 0, SKY_ENOTFOUND.
 */
SKY_EXTERN int sky_reader_session(sky_reader *reader, const char *app_id,
				  const char *session_id, const char **json,
				  size_t *len);

/** Convenience forms with their own snapshot; *json is the caller's. */
SKY_EXTERN int sky_session_get(sky_cache *cache, const char *app_id,
			       const char *session_id, char **json,
			       size_t *len);
/** The whole session data object as JSON text; *json is the caller's. */
SKY_EXTERN int sky_data_get(sky_cache *cache, const char *app_id,
			    const char *session_id, char **json, size_t *len);
SKY_EXTERN int sky_reader_data(sky_reader *reader, const char *app_id,
			       const char *session_id, char **json,
			       size_t *len);
SKY_EXTERN int sky_app_get(sky_cache *cache, const char *app_id, char **json,
			   size_t *len);

/**
 * Called once per object, in key order, with borrowed NUL-terminated JSON
 * text valid during the call. Return non-zero to stop early (that value is
 * then returned by the listing function).
 */
typedef int (*sky_json_cb)(const char *json, size_t len, void *payload);

SKY_EXTERN int sky_app_list(sky_cache *cache, sky_json_cb cb, void *payload);
SKY_EXTERN int sky_role_list(sky_cache *cache, const char *app_id,
			     sky_json_cb cb, void *payload);
/** Sessions of one application (NULL: all), in key order. */
SKY_EXTERN int sky_session_list(sky_cache *cache, const char *app_id,
				sky_json_cb cb, void *payload);
/** Custom events (session_event_created) recorded for a session, oldest first. */
SKY_EXTERN int sky_session_events(sky_cache *cache, const char *app_id,
				  const char *session_id, sky_json_cb cb,
				  void *payload);

/* ------------------------------------------------------------------ */
/* Merge (RFC 7396), exposed for tools and tests                       */
/* ------------------------------------------------------------------ */

/**
 * Apply the JSON Merge Patch `patch` to `target` (both JSON text) and
 * return the result as new JSON text in *out (the caller's). Any JSON value
 * is accepted for both, as RFC 7396 says. Returns 0, SKY_EINVAL, -1.
 */
SKY_EXTERN int sky_merge_patch_text(const char *target, size_t target_len,
				    const char *patch, size_t patch_len,
				    char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif /* SKYSYNC_H */
