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
 * Threads: a sky_cache may be shared by threads. Each sky_reader belongs to
 * the thread that uses it (one at a time). sky_error_last() is per thread.
 *
 * Conventions (every declaration here and in skysync_mirror.h follows them):
 *
 *  1. Argument order. A call that creates an object (a constructor, an
 *     opener, a begin: sky_cache_open, sky_reader_begin, sky_query_new,
 *     sky_engine_new, sky_live_query_add) takes the created object's out
 *     parameter first: sky_engine_new(&engine, cache, opts). Every other
 *     call takes the handle it works on first, then its inputs (callbacks
 *     and their payload included), then its outputs.
 *
 *  2. Ownership is in the type. A `char **` (or a struct field `char *`
 *     the library fills) receives an owned copy: the caller frees it with
 *     sky_free; sky_*_get calls return owned copies. A `const char **`
 *     receives a borrowed pointer: everything handed out through a
 *     sky_reader is borrowed and valid until sky_reader_end; other
 *     borrowed pointers say how long they live (during a callback, until
 *     the next run). Created objects are freed with their sky_*_free,
 *     sky_*_close, sky_*_end or sky_*_remove.
 *
 *  3. Option structs (sky_cache_options, sky_engine_options) begin with
 *     `unsigned version`; start from their SKY_*_OPTIONS_INIT. Every
 *     version from 1 to the current one is accepted: fields a caller's
 *     version does not have take their defaults. 0 and versions newer than
 *     the library are refused with SKY_EINVAL.
 *
 *  4. Output structs the caller provides and the library fills (sky_stats,
 *     sky_sync_status, sky_outbox_counts, sky_salvage_report) begin with
 *     `unsigned version`, which the caller sets: declare them as
 *     `sky_stats st = SKY_STATS_INIT;`. The library fills only the fields
 *     that version has and refuses 0 or a newer version with SKY_EINVAL.
 *     Structs the library hands to a callback are borrowed and may grow at
 *     their end; the in/out array elements of the batch calls (sky_write,
 *     sky_mirror_*_item) keep their layout for the 0.x series.
 *
 *  5. Names say which side they touch. sky_mirror_* (skysync_mirror.h)
 *     changes the cache's copy of the server and never reaches the server:
 *     a custom transport calls it. The offline writes (sky_session_patch,
 *     sky_write_batch, sky_session_event_send, ...) go through the outbox
 *     and reach the server when an engine delivers them. "Event" alone is
 *     never a name: sky_mirror_event_* are server events fed to the
 *     mirror, sky_session_event_* custom session events, and
 *     sky_mirror_outcome what became of a server event.
 *
 *  6. Return codes: 0 on success, a SKY_E* code documented per call, or -1.
 *
 *  7. Deprecated names (the 0.1 names) stay for the 0.2 series, declared
 *     deprecated; defining SKY_NO_DEPRECATED hides them.
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

/* The initializer of an output struct: its version set, the rest 0. */
#ifdef __cplusplus
#define SKY_OUT_INIT(v)                                                        \
	{                                                                      \
		v                                                              \
	}
#else
#define SKY_OUT_INIT(v)                                                        \
	{                                                                      \
		.version = (v)                                                 \
	}
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SKY_DEPRECATED __attribute__((deprecated))
#else
#define SKY_DEPRECATED
#endif

/* ------------------------------------------------------------------ */
/* Errors                                                              */
/* ------------------------------------------------------------------ */

/** Return codes. Functions document which of these they can return. */
enum {
	SKY_OK = 0,
	SKY_ERROR = -1,	    /**< anything unexpected: see sky_error_last() */
	SKY_ENOTFOUND = -2, /**< no such application, session, entry */
	SKY_EINVAL = -3,    /**< the input was rejected; nothing changed */
	SKY_ELIMIT = -4,    /**< the input is over a configured limit */
	SKY_EEXISTS = -5,   /**< already there */
	SKY_EPERM = -6,	    /**< refused: permissions or file safety */
	SKY_ENETWORK = -7,  /**< network or server failure */
	SKY_EBUSY = -8,	    /**< another process holds the cache (journal) */
	SKY_EDAMAGED = -9,  /**< the cache file or its journal is damaged:
				 the message names where; nothing was
				 changed; `skysync salvage` saves what can
				 be read */
};

/** Where an error came from. */
typedef enum {
	SKY_ERRSRC_NONE = 0,
	SKY_ERRSRC_OS,	   /**< a system call; native is errno */
	SKY_ERRSRC_LMDB,   /**< LMDB; native is the MDB_* code */
	SKY_ERRSRC_JSON,   /**< JSON text that could not be parsed */
	SKY_ERRSRC_INPUT,  /**< input that parsed but breaks a rule */
	SKY_ERRSRC_NOMEM,  /**< out of memory */
	SKY_ERRSRC_NET,	   /**< network; native is the CURLcode */
	SKY_ERRSRC_SERVER, /**< the server; native is the HTTP status */
} sky_error_source;

typedef struct {
	int code;		 /**< the SKY_E* code returned */
	sky_error_source source; /**< where it came from */
	int native;		 /**< the native code (errno, MDB_*, HTTP) */
	const char *message;	 /**< one line, no trailing newline */
} sky_error;

/**
 * The last error of the calling thread. Never NULL; when no error was
 * recorded, code is 0 and message is "". Valid until the next sky_ call on
 * this thread.
 */
SKY_EXTERN const sky_error *sky_error_last(void);

/** Forget the last error of the calling thread. */
SKY_EXTERN void sky_error_clear(void);

/** Free memory the library handed out (strings from sky_*_get, ...).
 * NULL is allowed. */
SKY_EXTERN void sky_free(void *ptr);

/** The library version, "MAJOR.MINOR.PATCH" (a static string). */
SKY_EXTERN const char *sky_version(void);

/* ------------------------------------------------------------------ */
/* Cache                                                               */
/* ------------------------------------------------------------------ */

typedef struct sky_cache sky_cache;

/** Open the cache read-only: no writes, no directory creation. */
#define SKY_CACHE_READONLY 0x1u
/**
 * How writes reach the disk (sky_cache_options.durability): one mode, so
 * modes cannot be combined.
 */
typedef enum {
	/**
	 * Power-loss safe: every commit waits for the disk (two flushes).
	 */
	SKY_DURABILITY_DEFAULT = 0,
	/**
	 * One disk flush instead of two (LMDB's MDB_NOMETASYNC): an
	 * acknowledged write survives a process crash at once, and a power
	 * cut never corrupts the cache but may undo the writes of its last
	 * instants. For users who prefer write speed to power-loss safety.
	 */
	SKY_DURABILITY_FAST,
	/**
	 * Durable writes with one disk flush (for a gateway process that
	 * owns its cache). Outbox writes (sky_write_batch() and the
	 * functions built on it) are appended to a checksummed journal
	 * beside LMDB (the file `journal` in the cache directory) and
	 * flushed once before the call returns; LMDB commits without
	 * flushing and a background thread folds the journal into it at
	 * checkpoints (every 512 writes, and when LMDB's file has grown by
	 * 4096 pages). A crash or power cut loses nothing acknowledged: the
	 * next read-write open rolls LMDB back to the last checkpoint, whose
	 * pages a pinned reader kept intact, and replays the journal.
	 *
	 * Server state (sky_mirror_* calls, the sync engine's mirror)
	 * becomes durable at the next checkpoint, within a second, like
	 * SQLite's synchronous=NORMAL: a power cut may take the mirror back
	 * to that checkpoint, never further and never torn, and the next
	 * sync brings it up to date. Other writes (outbox delivery, retry,
	 * drop, housekeeping) are as durable as by default.
	 *
	 * The process must be the cache's only writer: while it has the
	 * cache open, read-write opens by other processes fail with
	 * SKY_EBUSY, and it cannot open while another process has the cache
	 * open read-write. Other processes may always open it read-only. In
	 * this process it must be the cache's only handle (a second one,
	 * even read-only, is refused with SKY_EBUSY: share the handle
	 * between threads).
	 */
	SKY_DURABILITY_JOURNAL,
	/**
	 * Commit without waiting for the disk: survives a process crash, not
	 * a power cut (tests, throw-away caches).
	 */
	SKY_DURABILITY_NONE,
} sky_durability;

/*
 * BEGIN DEPRECATED NAMES: the durability flags of sky_cache_options
 * version 1 and 2. Still honoured (for any version) when `durability` is
 * SKY_DURABILITY_DEFAULT, mapped as before: NOSYNC is SKY_DURABILITY_NONE,
 * FAST_WRITES SKY_DURABILITY_FAST, JOURNAL SKY_DURABILITY_JOURNAL (over
 * FAST_WRITES; JOURNAL with NOSYNC is SKY_EINVAL). With another
 * `durability` they are refused (SKY_EINVAL). Use `durability`.
 * END DEPRECATED NAMES
 */
#define SKY_CACHE_NOSYNC 0x2u
#define SKY_CACHE_FAST_WRITES 0x4u
#define SKY_CACHE_JOURNAL 0x8u

typedef struct {
	unsigned version;	  /**< SKY_CACHE_OPTIONS_VERSION */
	unsigned flags;		  /**< SKY_CACHE_READONLY (and the
				       deprecated durability flags) */
	size_t max_event_bytes;	  /**< largest accepted event (default 1 MiB) */
	unsigned max_depth;	  /**< deepest nesting accepted (default 64) */
	unsigned event_log_size;  /**< event ids remembered (default 100000) */
	unsigned pending_limit;	  /**< events kept for unknown sessions (default
				     100000) */
	size_t initial_map_bytes; /**< first LMDB map size (default 64 MiB) */
	/* Since version 2. A session closed on the server stays in the
	 * mirror with status "closed" until one of these removes it, at the
	 * end of each snapshot of the sync engine (opening the cache never
	 * removes anything); its age counts from its modifiedAt, which the
	 * close moved. */
	int64_t closed_keep_s;	  /**< keep closed sessions this long (0: the
				       default, 30 days; SKY_KEEP_FOREVER:
				       no age limit) */
	uint64_t closed_keep_max; /**< keep at most this many closed
				       sessions, the most recently closed
				       (0: no limit) */
	/* Since version 3. */
	sky_durability durability; /**< how writes reach the disk (0:
					SKY_DURABILITY_DEFAULT) */
} sky_cache_options;

/* Versions 1 to 3 are accepted: version 1 has no closed_keep_*, versions 1
 * and 2 no durability (defaults, or the deprecated flags). */
#define SKY_CACHE_OPTIONS_VERSION 3
#define SKY_CACHE_OPTIONS_INIT                                                 \
	{                                                                      \
		SKY_CACHE_OPTIONS_VERSION, 0, 0, 0, 0, 0, 0, 0, 0,             \
		    SKY_DURABILITY_DEFAULT                                     \
	}
/** closed_keep_s: closed sessions are never removed for their age. */
#define SKY_KEEP_FOREVER (-1)
/** Default closed_keep_s: 30 days. */
#define SKY_DEFAULT_CLOSED_KEEP_S (30 * 86400)

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
 * Returns 0, SKY_EPERM, SKY_EINVAL (bad options, a newer schema),
 * SKY_ENOTFOUND (SKY_CACHE_READONLY and no cache there), SKY_EBUSY (the
 * journal's single-writer rule, see SKY_DURABILITY_JOURNAL, or a journal to
 * recover while another process has the cache open) or -1.
 * On success *out is the caller's, freed with sky_cache_close().
 * Every write function returns SKY_EPERM on a read-only cache.
 */
SKY_EXTERN int sky_cache_open(sky_cache **out, const char *dir,
			      const sky_cache_options *opts);

/**
 * Close the cache. No other thread may be using it; readers, queries,
 * live queries and engines on it must have been ended or freed first.
 * NULL is a no-op.
 */
SKY_EXTERN void sky_cache_close(sky_cache *cache);

/**
 * Write a compacted copy of the cache into directory `dest_dir`, which
 * must not hold a cache already (created 0700 if missing). Consistent
 * even while another thread or process writes. Returns 0, SKY_EEXISTS
 * (DEST holds a cache) or -1.
 */
SKY_EXTERN int sky_cache_backup(sky_cache *cache, const char *dest_dir);

/** Counts and sizes, for `skysync stats`. An output struct: set version
 * (SKY_STATS_INIT). */
typedef struct {
	unsigned version; /**< in: SKY_STATS_VERSION */
	uint64_t applications;
	uint64_t roles;
	uint64_t sessions;
	uint64_t open_sessions;
	uint64_t data_entries;	  /**< stored nodes of session data */
	uint64_t event_log;	  /**< event ids remembered */
	uint64_t pending_events;  /**< events waiting for their session */
	uint64_t custom_events;	  /**< session_event_created recorded */
	uint64_t events_applied;  /**< lifetime count */
	uint64_t events_skipped;  /**< duplicates and stale, lifetime */
	uint64_t events_rejected; /**< malformed, lifetime */
	int64_t last_event_at_us; /**< createdAt of the newest applied event */
	int64_t last_apply_us;	  /**< wall clock of the last apply, 0 never */
	uint64_t map_bytes;	  /**< current LMDB map size */
	uint64_t used_bytes;	  /**< pages in use * page size */
	unsigned schema_version;
	/* Recorded by the sync engine (0 when it never ran on this cache). */
	int sync_state; /**< sky_engine_state + 1 of the last run */
	int64_t
	    sync_last_at_us; /**< wall clock of the last completed snapshot */
	int64_t sync_event_lag_us; /**< event lag when last recorded */
	int64_t sync_updated_us;   /**< when sync last recorded these (heartbeat
					every 5 s while live) */
	uint64_t server_events_refused; /**< server events and answers the
					     cache refused (over a limit,
					     malformed), lifetime */
	uint64_t stale_sessions;  /**< sessions marked stale (sky_stale_list) */
	uint64_t journal_damaged; /**< journal records found damaged and
				       skipped at a replay, lifetime */
	uint64_t outbox_delivered; /**< writes confirmed delivered, lifetime */
	int64_t outbox_last_delivery_us; /**< wall clock of the last one, 0
					      never */
	/* Recorded by the sync engine at the end of its last sync (0: none). */
	int sync_path;		/**< SKY_SYNC_PATH_FULL or _RESUMED */
	int sync_path_why;	/**< SKY_SYNC_WHY_*: why it was full */
	uint64_t sync_requests; /**< REST requests that sync made */
} sky_stats;

#define SKY_STATS_VERSION 1
#define SKY_STATS_INIT SKY_OUT_INIT(SKY_STATS_VERSION)

/** Fill *out (the fields of its version). Returns 0, SKY_EINVAL (version
 * 0 or newer than the library) or -1. */
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

/**
 * A session whose last read from the server failed, or whose server
 * answer or event the cache refused: the mirror may be behind the server
 * for it until a sync reads it again (which clears the mark). Strings live
 * during the callback.
 */
typedef struct {
	const char *app_id;
	const char *session_id;
	const char *reason; /**< one line: what failed */
	int64_t since_us;   /**< wall clock when it was marked */
} sky_stale_session;

typedef int (*sky_stale_cb)(const sky_stale_session *s, void *payload);

/** Call cb for each stale session (in key order; a non-zero return
 * stops and is returned). Returns 0 or -1. */
SKY_EXTERN int sky_stale_list(sky_cache *cache, sky_stale_cb cb, void *payload);

/**
 * Whether a session is marked stale: 0 when it is (*reason, when not
 * NULL, is the caller's to sky_free; *since_us when not NULL), else
 * SKY_ENOTFOUND, or -1.
 */
SKY_EXTERN int sky_session_stale(sky_cache *cache, const char *app_id,
				 const char *session_id, char **reason,
				 int64_t *since_us);
/** What sky_cache_salvage() saved. An output struct: set version
 * (SKY_SALVAGE_REPORT_INIT). */
typedef struct {
	unsigned version;	 /**< in: SKY_SALVAGE_REPORT_VERSION */
	uint64_t entries;	 /**< entries copied, all databases */
	uint64_t outbox;	 /**< queued writes among them */
	uint64_t sessions;	 /**< session records among them */
	uint64_t damaged_ranges; /**< places that could not be read (each
				      reported as a line) */
} sky_salvage_report;

#define SKY_SALVAGE_REPORT_VERSION 1
#define SKY_SALVAGE_REPORT_INIT SKY_OUT_INIT(SKY_SALVAGE_REPORT_VERSION)

/**
 * Copy what can still be read out of the (damaged) cache in `damaged_dir`
 * into a new cache in `dest_dir` (which must not hold one): every entry
 * whose pages read and whose checksum holds, the queued writes and what
 * delivering them needs included; the indexes are rebuilt from the
 * session records saved. The damaged files are opened read-only, without
 * their lock file, and never changed. Each place that could not be read
 * is reported as one line to `report` (may be NULL). The next sync brings
 * the mirror up to date. Returns 0 (see *out for what was saved),
 * SKY_EEXISTS, SKY_ENOTFOUND, SKY_EINVAL (out's version) or -1. `out`
 * may be NULL.
 */
SKY_EXTERN int sky_cache_salvage(const char *damaged_dir, const char *dest_dir,
				 sky_report_cb report, void *payload,
				 sky_salvage_report *out);

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

/** Begin a snapshot: 0 or -1; *out is ended with sky_reader_end(). */
SKY_EXTERN int sky_reader_begin(sky_reader **out, sky_cache *cache);
/** End a snapshot; its borrowed pointers (and what sky_reader_data built)
 * die with it. NULL is a no-op. */
SKY_EXTERN void sky_reader_end(sky_reader *reader);

/**
 * The session as JSON text (the local view), borrowed from the reader:
 * NUL-terminated, valid until sky_reader_end(). `len` may be NULL.
 * Returns 0, SKY_ENOTFOUND, SKY_EINVAL (a malformed id) or -1.
 */
SKY_EXTERN int sky_reader_session(sky_reader *reader, const char *app_id,
				  const char *session_id, const char **json,
				  size_t *len);

/**
 * The whole session data object as compact NUL-terminated JSON text,
 * borrowed from the reader like sky_reader_session(): a small document
 * (stored whole) is handed out from the memory map, without a copy; a
 * larger one is built, kept by the reader and freed at sky_reader_end().
 * Either way it stays valid until then. `len` may be NULL.
 * Returns 0, SKY_ENOTFOUND, SKY_EINVAL (a malformed id) or -1.
 */
SKY_EXTERN int sky_reader_data(sky_reader *reader, const char *app_id,
			       const char *session_id, const char **json,
			       size_t *len);

/**
 * sky_reader_data() as a copy that is the caller's (free with sky_free),
 * in the reader's snapshot: for reading many large documents in one
 * reader, each freed when done with instead of all kept until
 * sky_reader_end(). Returns like sky_reader_data().
 */
SKY_EXTERN int sky_reader_data_copy(sky_reader *reader, const char *app_id,
				    const char *session_id, char **json,
				    size_t *len);

/**
 * sky_reader_data() into a buffer the caller keeps and reuses, as
 * getline(3) does: *buf is NULL or memory from malloc() (an earlier call's
 * result included) of *size bytes; it is grown with realloc() when the
 * text does not fit, and *buf and *size are updated whatever the result.
 * The text replaces what the buffer held, NUL-terminated, `len` (may be
 * NULL) bytes. The caller frees *buf with sky_free() or free() when done.
 * A loop over large documents allocates nothing once the buffer has
 * grown to the largest. Returns like sky_reader_data(), or SKY_EINVAL
 * when `buf` or `size` is NULL.
 */
SKY_EXTERN int sky_reader_data_into(sky_reader *reader, const char *app_id,
				    const char *session_id, char **buf,
				    size_t *size, size_t *len);

/**
 * Convenience forms with their own snapshot; *json is an owned copy, the
 * caller's (free with sky_free), `len` may be NULL. sky_session_get gives
 * the session, sky_data_get its whole data object (compact JSON text),
 * sky_app_get one application. Each returns 0, SKY_ENOTFOUND, SKY_EINVAL
 * or -1.
 */
SKY_EXTERN int sky_session_get(sky_cache *cache, const char *app_id,
			       const char *session_id, char **json,
			       size_t *len);
SKY_EXTERN int sky_data_get(sky_cache *cache, const char *app_id,
			    const char *session_id, char **json, size_t *len);
SKY_EXTERN int sky_app_get(sky_cache *cache, const char *app_id, char **json,
			   size_t *len);

/**
 * Called once per object, in key order, with borrowed NUL-terminated JSON
 * text valid during the call, on the calling thread. Return non-zero to
 * stop early (that value is then returned by the listing function, which
 * otherwise returns 0, SKY_EINVAL for a malformed id, SKY_ENOTFOUND for
 * sky_session_event_list of an unknown session, or -1).
 */
typedef int (*sky_json_cb)(const char *json, size_t len, void *payload);

SKY_EXTERN int sky_app_list(sky_cache *cache, sky_json_cb cb, void *payload);
SKY_EXTERN int sky_role_list(sky_cache *cache, const char *app_id,
			     sky_json_cb cb, void *payload);
/** Sessions of one application (NULL: all), in key order. */
SKY_EXTERN int sky_session_list(sky_cache *cache, const char *app_id,
				sky_json_cb cb, void *payload);
/** Custom session events (session_event_created) recorded for a session,
 * oldest first (sky_session_event_send() queues one). */
SKY_EXTERN int sky_session_event_list(sky_cache *cache, const char *app_id,
				      const char *session_id, sky_json_cb cb,
				      void *payload);

/* ------------------------------------------------------------------ */
/* Sync engine                                                         */
/* ------------------------------------------------------------------ */

/*
 * The engine keeps a cache current with a Skylight server: it logs in,
 * subscribes to the realm's events (MQTT, QoS 1, persistent session),
 * reads applications, roles, open sessions and their data over REST (the
 * snapshot), then applies events as they arrive; it refreshes its token,
 * reconnects with backoff, and re-reads the realm (resync) when events may
 * have been lost. It runs on a libevent loop: its own (sky_engine_run) or
 * the caller's (sky_engine_attach). All callbacks run on that loop's
 * thread; engine calls must be made from it too.
 */
struct event_base;

typedef struct sky_engine sky_engine;

/** Where the engine is (engine.c has the state diagram). */
typedef enum {
	SKY_ENGINE_IDLE = 0,  /**< created, not started */
	SKY_ENGINE_LOGIN,     /**< logging in */
	SKY_ENGINE_SUBSCRIBE, /**< connecting to the broker and subscribing */
	SKY_ENGINE_SNAPSHOT,  /**< reading the realm over REST (or a resync) */
	SKY_ENGINE_LIVE,      /**< the mirror is current; applying events */
	SKY_ENGINE_BACKOFF,   /**< waiting to retry after a failed snapshot */
	SKY_ENGINE_STOPPED,   /**< stopped, or done after a one-shot sync */
	SKY_ENGINE_FAILED,    /**< gave up: see sky_engine_status().error */
} sky_engine_state;

/** Short name of a state ("live", "snapshot", ...). */
SKY_EXTERN const char *sky_engine_state_name(sky_engine_state state);

/** What changed in a session (bits of sky_change.what). */
#define SKY_CHANGE_ADDED 0x01u /**< new in the mirror */
#define SKY_CHANGE_SESSION                                                     \
	0x02u /**< fields: name, description, participants... */
#define SKY_CHANGE_PROPERTIES 0x04u /**< its properties */
#define SKY_CHANGE_DATA 0x08u	    /**< its session data */
#define SKY_CHANGE_CLOSED 0x10u	    /**< its status became "closed" */
#define SKY_CHANGE_REMOVED 0x20u    /**< gone: closed or no longer visible */
#define SKY_CHANGE_EVENT 0x40u	    /**< a custom session event was recorded */
/** A snapshot (first sync or resync) ended and changed the mirror: one
 * summary (added, changed, removed) instead of a call per session, unless
 * snapshot_changes asks for those; app_id and session_id are NULL. */
#define SKY_CHANGE_SNAPSHOT 0x80u
/** A session created offline was given its id by the server: local_id
 * and server_id (session_id is the server id). */
#define SKY_CHANGE_ADDRESSED 0x100u

/** One change made to the mirror by sync. Strings live during the call. */
typedef struct {
	const char *app_id;
	const char *session_id;
	unsigned what; /**< SKY_CHANGE_* bits */
	const char
	    *event_type;      /**< eventType when an event made it, else NULL */
	const char *event_id; /**< its eventId, else NULL */
	/* Added later; a caller that does not read them loses nothing. */
	const char *payload_json; /**< what the event carried, borrowed JSON
				       text (NUL-terminated) valid during the
				       call: the data patch (session_data_
				       updated), the custom event's data
				       (session_event_created), the session's
				       fields it sent (the other events);
				       NULL when the change is no event */
	size_t payload_len;	  /**< its length, 0 when NULL */
	uint64_t added;		  /**< SKY_CHANGE_SNAPSHOT: sessions new */
	uint64_t changed;	  /**< ... changed */
	uint64_t removed;	  /**< ... removed */
	const char *local_id;	  /**< SKY_CHANGE_ADDRESSED: the local id */
	const char *server_id;	  /**< ... and the server's */
} sky_change;

typedef void (*sky_change_cb)(const sky_change *change, void *payload);

/** Progress of a snapshot (first sync or resync). */
typedef struct {
	int resync;		 /**< 0: the first snapshot of this run */
	uint64_t applications;	 /**< applications listed */
	uint64_t sessions_total; /**< open sessions listed so far */
	uint64_t sessions_done;	 /**< sessions stored (or found gone) */
	uint64_t requests;	 /**< REST answers received */
	int64_t started_us;	 /**< wall clock when it began */
	int done;		 /**< 1 on the last report of a snapshot */
} sky_sync_progress;

typedef void (*sky_progress_cb)(const sky_sync_progress *progress,
				void *payload);

typedef enum {
	SKY_LOG_DEBUG,
	SKY_LOG_INFO,
	SKY_LOG_WARN,
	SKY_LOG_ERROR
} sky_log_level;

/** One line (no newline) about what the engine does; never a secret. */
typedef void (*sky_log_cb)(sky_log_level level, const char *line,
			   void *payload);
/** Called on every state change. */
typedef void (*sky_state_cb)(sky_engine_state state, void *payload);

typedef struct {
	unsigned version;   /**< SKY_ENGINE_OPTIONS_VERSION */
	const char *server; /**< REST base URL, "https://api.HOST" (required) */
	const char *broker; /**< "ssl://mqtt.HOST:8883", "mqtt://H:P"; NULL:
				 derived from server (docs/PROTOCOL.md) */
	const char *realm;  /**< required */
	const char *user;   /**< required */
	const char *password;  /**< required; copied, wiped when freed, never
				    written anywhere */
	const char *cafile;    /**< CA bundle for REST and broker TLS (NULL:
				    the system's) */
	int insecure;	       /**< 1: no TLS verification (explicit only) */
	int follow;	       /**< 1: stay live; 0: sync once, then stop */
	unsigned max_parallel; /**< REST requests in flight (0: 16) */
	unsigned resync_after_offline_s; /**< resync after a broker outage this
					      long even if the broker kept our
					      session (0: 300) */
	unsigned resync_interval_s; /**< also resync every N s (0: never) */
	unsigned retry_limit;	 /**< one-shot sync: tries of a request before
				      giving up (0: 6); an outbox write that
				      used them stays queued for the next
				      sync; follow retries forever */
	long backoff_min_ms;	 /**< first retry delay (0: 250) */
	long backoff_max_ms;	 /**< longest retry delay (0: 30000) */
	sky_change_cb on_change; /**< may be NULL */
	sky_progress_cb on_progress;
	sky_log_cb on_log;
	sky_state_cb on_state;
	void *payload; /**< given to every callback */
	/* Version 2: */
	unsigned reconcile_interval_s; /**< while following, re-list every
					    application this often and re-read
					    the sessions whose listed state
					    differs from the mirror, and the
					    stale ones (0: 600;
					    SKY_RECONCILE_NEVER: never) */
	/* Version 3: */
	const char *protocol_file; /**< a protocol file (docs/PROTOCOL.md)
					giving the REST paths, topics and
					eventType strings; read and checked
					by sky_engine_new (SKY_EINVAL names
					the bad entry); NULL: built in */
	/* Version 4: */
	unsigned backlog_limit; /**< at start, a broker backlog of this many
				     events or more may have overflowed the
				     broker's queue: read the whole realm
				     instead of resuming (0: 1000, mosquitto's
				     default max_queued_messages) */
	/* Version 5: */
	int snapshot_changes; /**< 0: a snapshot reports one
				   SKY_CHANGE_SNAPSHOT summary; 1: one
				   on_change per session it changed (as
				   before version 5) and then no summary */
} sky_engine_options;

#define SKY_RECONCILE_NEVER 0xffffffffu
#define SKY_ENGINE_OPTIONS_VERSION 5
#define SKY_ENGINE_OPTIONS_INIT                                                \
	{                                                                      \
		SKY_ENGINE_OPTIONS_VERSION, NULL, NULL, NULL, NULL, NULL,      \
		    NULL, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL, NULL,      \
		    NULL, 0, NULL, 0, 0                                        \
	}

/**
 * Create an engine for `cache` (which must outlive it). Options are
 * copied. One engine runs per cache directory at a time: the engine holds
 * a lock on the file engine.lock in it (with its pid and command line)
 * from here to sky_engine_free(), released by the kernel if the process
 * dies. Returns 0, SKY_EINVAL (a required option is missing or a URL is
 * malformed; the message names it), SKY_EBUSY (another engine, in this
 * process or another, holds the cache; the message names its pid and
 * command) or -1. *out is the caller's, freed with sky_engine_free().
 */
SKY_EXTERN int sky_engine_new(sky_engine **out, sky_cache *cache,
			      const sky_engine_options *opts);

/**
 * Start the engine on the caller's loop and return at once; it works as
 * the loop runs, until sky_engine_stop() (or, without `follow`, until the
 * one-shot sync is done: state STOPPED, or FAILED). Returns 0 or -1.
 */
SKY_EXTERN int sky_engine_attach(sky_engine *engine, struct event_base *base);

/**
 * Run the engine on a loop of its own until it stops: with `follow`, until
 * sky_engine_stop() (from a callback) or a failure; without, until the
 * one-shot sync is done (the realm read and the outbox delivered as far as
 * it can be). Returns 0, or SKY_ENETWORK (server or network failure, login
 * refused) or -1, with sky_error_last() set. Writes left in the outbox or
 * rejected do not make it fail: see sky_outbox_counts_get().
 *
 * Reads and writes fail apart. A read that fails (retries spent, a
 * refusal, a 401 after a refresh and one new login) or whose answer the
 * cache refuses marks its session stale in the cache (sky_stale_list())
 * and does not stop the run: the outbox is delivered all the same. A
 * following engine reads a stale session again after a capped, jittered
 * backoff; a one-shot run then returns SKY_ENETWORK with a message that
 * starts "reads failed:" (sky_engine_status(): reads_failed, read_error),
 * and the next run reads it again.
 */
SKY_EXTERN int sky_engine_run(sky_engine *engine);

/**
 * Blocking one-shot sync, whatever `follow` says: log in, read the realm
 * into the cache (removing sessions no longer open or visible), deliver
 * the outbox (each write gets `retry_limit` tries), and return.
 * The same engine as sky_engine_run, on a loop of its own. Returns like it.
 */
SKY_EXTERN int sky_engine_sync_once(sky_engine *engine);

/**
 * Replace the password (copied; the old copy is wiped): the next login
 * uses it, the current tokens stay. Call from the engine's loop (a
 * signal event: `sync --follow` on SIGHUP). Returns 0, SKY_EINVAL (empty)
 * or -1.
 */
SKY_EXTERN int sky_engine_set_password(sky_engine *engine,
				       const char *password);

/**
 * Stop: cancel requests, disconnect from the broker, apply the events
 * already received, record the state in the cache; sky_engine_run returns.
 * Call from the engine's loop (a callback or a signal event). Idempotent.
 */
SKY_EXTERN void sky_engine_stop(sky_engine *engine);

/** Stop if needed and free. NULL is a no-op. Not from a callback. */
SKY_EXTERN void sky_engine_free(sky_engine *engine);

/** The engine's state and counters. An output struct: set version
 * (SKY_SYNC_STATUS_INIT). */
typedef struct {
	unsigned version; /**< in: SKY_SYNC_STATUS_VERSION */
	sky_engine_state state;
	int broker_up;	       /**< connected and subscribed */
	int rest_ok;	       /**< the last REST request got an answer */
	int64_t last_sync_us;  /**< wall clock of the last completed snapshot */
	int64_t last_event_us; /**< createdAt of the newest event applied */
	int64_t event_lag_us;  /**< apply time - createdAt of the last event
				    applied (includes clock skew) */
	uint64_t events_received;
	uint64_t events_applied;
	uint64_t events_skipped; /**< duplicates and stale */
	uint64_t events_rejected;
	uint64_t refetches; /**< sessions re-read to resolve an event */
	uint64_t snapshots; /**< completed, first sync and resyncs */
	uint64_t broker_connects;
	unsigned reads_pending;	    /**< sessions waiting to be re-read */
	sky_sync_progress progress; /**< of the current or last snapshot */
	int error_code;		    /**< when FAILED: SKY_ENETWORK (server or
					 network, login refused) or -1 */
	char error[256];       /**< why FAILED, or the last retried failure */
	uint64_t reads_failed; /**< reads that failed in this run (the
				    realm's lists, or a session: then marked
				    stale); the outbox is delivered anyway */
	uint64_t server_events_refused; /**< events and answers refused by
					     the cache in this run */
	uint64_t reconciles;		/**< periodic reconciles completed */
	uint64_t stale_sessions;	/**< sessions marked stale now */
	char read_error[256];	     /**< the first failed read of this run */
	int last_sync_path;	     /**< SKY_SYNC_PATH_*: how the last sync of
					  this run read the realm (0: none yet) */
	int last_sync_why;	     /**< SKY_SYNC_WHY_*: why it was full */
	uint64_t last_sync_requests; /**< REST requests from the run's start
					  (or the resync's) to its end */
	uint64_t backlog_events;     /**< events the broker delivered from our
					  kept session before the first sync */
} sky_sync_status;

#define SKY_SYNC_STATUS_VERSION 1
#define SKY_SYNC_STATUS_INIT SKY_OUT_INIT(SKY_SYNC_STATUS_VERSION)

/*
 * How a sync read the realm. FULL: every application's lists and every
 * listed session's data (a snapshot). RESUMED: the cache was synced before
 * and the broker kept our session, so the events it queued meanwhile
 * (the backlog) are applied, the lists are read, and only the sessions
 * whose listed state differs from the mirror, the stale ones and those the
 * backlog could not apply are read (docs/PROTOCOL.md, "Resuming").
 */
#define SKY_SYNC_PATH_FULL 1
#define SKY_SYNC_PATH_RESUMED 2
/* Why a sync was full. */
#define SKY_SYNC_WHY_NONE 0	    /* it was resumed */
#define SKY_SYNC_WHY_NEVER_SYNCED 1 /* the cache has no completed sync */
#define SKY_SYNC_WHY_SESSION_LOST 2 /* CONNACK: session present = false */
#define SKY_SYNC_WHY_OVERFLOW 3	    /* backlog >= backlog_limit */
#define SKY_SYNC_WHY_NO_BROKER 4    /* the broker was not reachable */
#define SKY_SYNC_WHY_APPS_CHANGED 5 /* the set of applications changed */
#define SKY_SYNC_WHY_RESYNC 6	    /* a resync while following */

/** Words for a SKY_SYNC_WHY_* code (a static string). */
SKY_EXTERN const char *sky_sync_why_name(int why);

/** Fill *out with the engine's state and counters (the fields of its
 * version). Returns 0 or SKY_EINVAL (version 0 or newer than the
 * library). */
SKY_EXTERN int sky_engine_status(sky_engine *engine, sky_sync_status *out);

/**
 * The id of the user the engine syncs as (the access token's `sub`, or
 * the user name when the token has none), valid until the engine is freed;
 * NULL before its first login.
 */
SKY_EXTERN const char *sky_engine_user_id(sky_engine *engine);

/**
 * The user the cache was last synced as, recorded by every snapshot:
 * {"realm", "userId", "groups"?} as JSON text, the caller's (sky_free).
 * "groups" (the access token's `groups` claim) is absent when the server
 * did not say. Returns 0, SKY_ENOTFOUND (never synced) or -1.
 */
SKY_EXTERN int sky_sync_user_get(sky_cache *cache, char **json, size_t *len);

/* ------------------------------------------------------------------ */
/* Offline writes: the outbox (DESIGN.md §5)                            */
/* ------------------------------------------------------------------ */

/*
 * Every write goes through the outbox. A write call checks its input,
 * then in one LMDB write transaction queues the write and applies it to
 * the local view (optimistic): when the call returns the write is on
 * disk (by default safe against a power cut; SKY_DURABILITY_FAST keeps
 * it across a process crash, a power cut may undo the last writes;
 * SKY_DURABILITY_NONE is weaker still) and every read of this cache, from
 * any thread or process, shows it. Query rows with queued writes carry
 * SKY_RESULT_PENDING; sky_session_pending() counts them; the
 * sky_*_get_confirmed() calls read the server's state alone.
 *
 * A sync engine (sky_engine_*, `skysync sync`) delivers queued writes
 * whenever it is online: in queue order within a session (one request at
 * a time per session), sessions in parallel, retrying transient failures
 * (no answer, 408, 425, 429 -- honouring Retry-After --, 5xx, 401 after
 * a token refresh) with capped, jittered backoff. Consecutive data patches
 * of a session may go as one request where the combination provably
 * equals applying them in turn, consecutive session patches unless one
 * but the last closes the session; a combined request the server refuses
 * is sent again one write at a time. A following engine looks at the
 * outbox every 100 ms, so it also delivers writes queued by other
 * threads or processes. One engine runs per cache at a time
 * (sky_engine_new refuses a second with SKY_EBUSY): a second one would
 * take the first one's creates and events in flight for ones whose answer
 * was lost, and send them again.
 *
 * A session created offline gets a local id ("local-" + 32 hex digits),
 * sent to the server as "clientRef" in the create. Writes to it wait for
 * the create and are then re-addressed to the server's id; the local id
 * keeps working for reads and writes after that (an alias). A create is
 * never sent twice blindly: one whose answer was lost (or that was in
 * flight at a crash) is looked for in the server's session list, by
 * clientRef, before it is sent again. A custom event whose answer was lost
 * (none came, a 5xx came -- the server may have committed it before
 * failing --, or it was in flight at a crash or a stop) becomes
 * SKY_OUTBOX_IN_DOUBT and is sent again only by sky_outbox_retry() (which
 * may deliver it twice); it holds up no other write.
 *
 * A permanent rejection by the server (any other 4xx, 403 and 404
 * included) moves the write to the dead-letter list (SKY_OUTBOX_REJECTED)
 * with the server's status and answer, undoes its optimistic effect (the
 * local view is rebuilt from the server state and the writes still
 * queued) and calls the callback set with sky_outbox_on_rejected().
 * Writes to other sessions go on; later writes to the same session are
 * still sent (the server judges them), except that a rejected create
 * takes the writes queued for its session with it (they become dead
 * letters too, each with its callback). Dead letters stay until
 * sky_outbox_retry() or sky_outbox_drop(). When server state for a
 * session arrives, its local view is rebuilt as that state plus the
 * writes still queued.
 *
 * The write calls (sky_write_batch to sky_session_event_send) return 0,
 * SKY_EINVAL (bad input -- the message names the field --, or a session
 * the local view shows closed, whose writes the server would refuse),
 * SKY_ENOTFOUND (the session, or for a create the application, is not in
 * the cache), SKY_ELIMIT (an id, the body or a property over its limit),
 * SKY_EPERM (a read-only cache) or -1; nothing is queued unless they
 * return 0. Every argument is checked before anything changes: application
 * and session ids of writes may not hold '/', '+' or '#' either (they are
 * REST path segments and MQTT topic levels). Session ids may be local ids.
 * They may be called from any thread, also while an engine runs on
 * another; live queries of the cache see these writes like any other.
 */

/** What a queued write does. */
typedef enum {
	SKY_WRITE_CREATE = 1,  /**< create a session: json {name, description?,
				    properties?, version? (an integer >= 0)} */
	SKY_WRITE_PATCH,       /**< patch a session: json with any of name,
				    description (null removes it), properties
				    (the whole dictionary), status ("closed") */
	SKY_WRITE_DATA,	       /**< merge-patch session data: json an object */
	SKY_WRITE_PARTICIPANT, /**< add a participant: json {id, type?} */
	SKY_WRITE_EVENT,       /**< a custom session event: json its data
				    (an object) */
} sky_write_op;

/** One write of a batch (sky_write_batch). The out fields are reset by
 * the call; `id` and `new_session_id` are meaningful only when it
 * returned 0. */
typedef struct {
	sky_write_op op;	/**< in */
	const char *app_id;	/**< in */
	const char *session_id; /**< in (ignored for SKY_WRITE_CREATE); may be
				     a local id */
	const char *json;	/**< in: the body, as for the op */
	size_t len;		/**< in */
	uint64_t id;		/**< out: the outbox entry's id */
	char *new_session_id;	/**< out, CREATE only (else NULL): the local
				     id, the caller's (free with sky_free) */
	int result;		/**< out: 0 or the SKY_E* code */
	char *error;		/**< out: why rejected, the caller's (free
				     with sky_free); NULL when not rejected */
} sky_write;

/**
 * Queue several writes in one transaction and one disk flush: all or none.
 * All are checked first; a rejected one (bad input, unknown or closed
 * session...) gets result/error and the call returns its code with
 * nothing queued; the items after it are not looked at. Writes are queued
 * and applied in array order. An item cannot address a session created in
 * the same batch (its local id is made by the call). Returns like the
 * other write calls.
 */
SKY_EXTERN int sky_write_batch(sky_cache *cache, sky_write *writes,
			       size_t count);

/** Create a session (json as SKY_WRITE_CREATE) in application `app_id`,
 * which must be in the cache (SKY_ENOTFOUND otherwise). On success
 * *session_id receives its local id, the caller's (free with sky_free);
 * the local view of the session carries it as "clientRef" too. */
SKY_EXTERN int sky_session_create(sky_cache *cache, const char *app_id,
				  const char *json, size_t len,
				  char **session_id);
/** Patch a session (json as SKY_WRITE_PATCH). */
SKY_EXTERN int sky_session_patch(sky_cache *cache, const char *app_id,
				 const char *session_id, const char *json,
				 size_t len);
/** Replace a session's properties, the whole dictionary (json an object
 * of string values; {} removes them all). */
SKY_EXTERN int sky_session_set_properties(sky_cache *cache, const char *app_id,
					  const char *session_id,
					  const char *json, size_t len);
/** Rename a session (`name` a non-empty UTF-8 string: SKY_EINVAL
 * otherwise, as for a description that is not UTF-8). */
SKY_EXTERN int sky_session_set_name(sky_cache *cache, const char *app_id,
				    const char *session_id, const char *name);
/** Set a session's description (NULL removes it). */
SKY_EXTERN int sky_session_set_description(sky_cache *cache, const char *app_id,
					   const char *session_id,
					   const char *description);
/** Close a session; later writes to it are refused (SKY_EINVAL). */
SKY_EXTERN int sky_session_close(sky_cache *cache, const char *app_id,
				 const char *session_id);
/** Merge-patch a session's data (RFC 7396; json must be an object). */
SKY_EXTERN int sky_data_patch(sky_cache *cache, const char *app_id,
			      const char *session_id, const char *json,
			      size_t len);
/** Add a participant: a user, or a group when is_group is 1 (any other
 * value is SKY_EINVAL). */
SKY_EXTERN int sky_participant_add(sky_cache *cache, const char *app_id,
				   const char *session_id,
				   const char *participant_id, int is_group);
/** Queue a custom session event (json: its data, a JSON object) for the
 * server. It has no effect on the local view: sky_session_event_list()
 * shows it once a following engine received the server's
 * session_event_created. Not idempotent: one whose answer was lost is
 * left SKY_OUTBOX_IN_DOUBT. */
SKY_EXTERN int sky_session_event_send(sky_cache *cache, const char *app_id,
				      const char *session_id, const char *json,
				      size_t len);

/**
 * The confirmed server state of a session alone (without queued writes),
 * and its data, as the cache last received them. The id may be a local
 * id. Returns 0, SKY_ENOTFOUND (not in the cache, or created offline and
 * not made by the server yet), SKY_EINVAL / SKY_ELIMIT (a malformed id)
 * or -1. On success *json is the caller's (sky_free); `len` may be NULL.
 */
SKY_EXTERN int sky_session_get_confirmed(sky_cache *cache, const char *app_id,
					 const char *session_id, char **json,
					 size_t *len);
SKY_EXTERN int sky_data_get_confirmed(sky_cache *cache, const char *app_id,
				      const char *session_id, char **json,
				      size_t *len);

/**
 * How many writes of the session are queued and not yet delivered, in
 * doubt included, dead letters not (0: the local view is the server's).
 * The session id may be a local id. Returns 0 (*count set), SKY_ENOTFOUND
 * for a session not in the cache, SKY_EINVAL / SKY_ELIMIT for a malformed
 * id, or -1.
 */
SKY_EXTERN int sky_session_pending(sky_cache *cache, const char *app_id,
				   const char *session_id, unsigned *count);

/** The state of an outbox entry. */
typedef enum {
	SKY_OUTBOX_PENDING = 0, /**< waiting to be sent (or to retry); a
				     patch, data patch or participant stays
				     pending while its request is out */
	SKY_OUTBOX_IN_FLIGHT,	/**< a create or custom event sent, no answer
				     yet (recorded on disk before sending) */
	SKY_OUTBOX_IN_DOUBT,	/**< sent, the answer was lost; being resolved
				     (a create is looked for on the server; a
				     custom event waits for sky_outbox_retry) */
	SKY_OUTBOX_REJECTED,	/**< dead letter: refused by the server */
} sky_outbox_state;

/** "pending", "in flight", "in doubt", "rejected" ("unknown" for any
 * other value); a static string. */
SKY_EXTERN const char *sky_outbox_state_name(sky_outbox_state state);
/** "create", "patch", "data", "participant", "event" ("unknown" for any
 * other value); a static string. */
SKY_EXTERN const char *sky_write_op_name(sky_write_op op);

/** An outbox entry; it and its strings are borrowed for the duration of
 * the callback. */
typedef struct {
	uint64_t id; /**< increasing in queue order */
	sky_write_op op;
	sky_outbox_state state;
	const char *app_id;
	const char *session_id; /**< where it goes: the server id once known,
				     else the local id */
	const char *local_id;	/**< the local id of a session created
				     offline, else NULL */
	const char *body;	/**< the write's JSON */
	int64_t queued_us;	/**< wall clock when queued */
	unsigned attempts;	/**< transient failures so far (reset by
				     sky_outbox_retry) */
	int64_t next_try_us;	/**< not before (wall clock), 0: now */
	int http_status;	/**< last answer's status (0: none) */
	const char *answer;	/**< rejected: the server's body; else the
				     last failure, or "" */
} sky_outbox_entry;

typedef int (*sky_outbox_cb)(const sky_outbox_entry *entry, void *payload);

/** Call cb for each entry in queue order, dead letters included, on the
 * calling thread, in one read snapshot; a non-zero return stops the walk
 * and is returned. Otherwise returns 0 or a negative code. The callback
 * may call the other outbox functions, though a write from it fails (-1)
 * if the cache map must grow just then: better collect ids and act after
 * the walk. */
SKY_EXTERN int sky_outbox_list(sky_cache *cache, sky_outbox_cb cb,
			       void *payload);

/**
 * Send a dead letter (or an in-doubt entry) again: it becomes pending
 * (attempts and answer cleared), its optimistic effect is applied again,
 * and the next delivery sends it -- after the writes of its session that
 * went meanwhile. A retried create is sent as new, without looking for it
 * on the server first: retry a create only when the server does not have
 * the session (an in-doubt create needs no retry, the engine resolves it).
 * Retrying a rejected create does not retry the writes rejected with it.
 * Returns 0, SKY_ENOTFOUND (no entry with that id), SKY_EINVAL (the entry
 * is pending or in flight), SKY_EPERM (read-only cache) or -1.
 */
SKY_EXTERN int sky_outbox_retry(sky_cache *cache, uint64_t id);

/**
 * Remove an entry that is not in flight, whatever its state; a pending
 * one's optimistic effect is undone. Dropping a create turns the writes
 * queued for its session into dead letters. A write whose request is on
 * the wire (in flight, or a patch being sent by an engine running on the
 * cache) may still land, so it is refused until its answer came. The
 * sky_outbox_on_rejected callback runs after the commit, on the calling
 * thread, for the dropped write (unless it was a dead letter already; its
 * answer is "dropped") and for each write its create took. Returns 0,
 * SKY_ENOTFOUND (no such entry), SKY_EINVAL (in flight, or on the wire),
 * SKY_EPERM (read-only cache) or -1.
 */
SKY_EXTERN int sky_outbox_drop(sky_cache *cache, uint64_t id);

/** Counts by state. An output struct: set version
 * (SKY_OUTBOX_COUNTS_INIT). */
typedef struct {
	unsigned version; /**< in: SKY_OUTBOX_COUNTS_VERSION */
	uint64_t pending, in_flight, in_doubt, rejected;
} sky_outbox_counts;

#define SKY_OUTBOX_COUNTS_VERSION 1
#define SKY_OUTBOX_COUNTS_INIT SKY_OUT_INIT(SKY_OUTBOX_COUNTS_VERSION)

/** Count the entries by state into *out (the caller's storage, the fields
 * of its version), in one snapshot. Nothing left to deliver: pending +
 * in_flight + in_doubt == 0. Returns 0, SKY_EINVAL (version 0 or newer
 * than the library) or -1. */
SKY_EXTERN int sky_outbox_counts_get(sky_cache *cache, sky_outbox_counts *out);

/**
 * Set the callback run when the server rejected a write for good:
 * cb(entry, payload) runs on the loop thread of the engine of this cache
 * handle that got the answer, after the dead letter and the undone local
 * view were committed, once per write that left the queue without being
 * applied: each rejected write, each write a rejected or dropped create
 * takes with it, and a write dropped by sky_outbox_drop() (on its
 * caller's thread); not for what engines of other processes see. The
 * entry is borrowed for the call; the return value
 * is ignored. The callback may call sky_outbox_retry() or
 * sky_outbox_drop() (see sky_outbox_list() about writing from a
 * callback). One callback per cache handle: set it before starting an
 * engine, not while one runs; NULL unsets.
 */
SKY_EXTERN void sky_outbox_on_rejected(sky_cache *cache, sky_outbox_cb cb,
				       void *payload);

/* ------------------------------------------------------------------ */
/* Queries (DESIGN.md §6)                                               */
/* ------------------------------------------------------------------ */

/**
 * A query: the sessions of one application that satisfy every one of its
 * predicates, in (createdAt, sessionId) order, answered from the indexes
 * of the cache (the local view, pending writes included).
 *
 * Predicates:
 *   key=value      the field has this value
 *   key=a|b|c      the field has one of these values
 *   key!=value     the field is absent or has another value (also a|b)
 *   key^=prefix    the field has a value starting with prefix (also a|b)
 *   key?           the field is present
 *   key>=v key>v key<v key<=v   a range (version, createdAt, modifiedAt)
 * `status`, `participant` (any participant id, user or group), `name`,
 * `createdBy`, `modifiedBy`, `isDraft` (true|false), `version` (an
 * integer), `createdAt` and `modifiedAt` (RFC 3339 times; ranges only)
 * are the session's fields; other session fields and look-alikes of
 * these names (created_by) are refused; any other key names a property, and
 * `props.KEY` always names property KEY (a property called "status" is
 * `props.status`). A backslash makes the next character literal:
 * `site=A\|B` is the one value "A|B", `a\=b=1` the property "a=b".
 *
 * A sky_query is used by one thread at a time; queries of one cache may
 * run on any number of threads at once.
 */
typedef struct sky_query sky_query;

/**
 * Parse a query over application `app_id`: `n_preds` predicates (none:
 * every session). Returns 0 (*out is the caller's, freed with
 * sky_query_free), SKY_EINVAL naming the bad predicate, or -1. The query
 * refers to `cache`, which must outlive it.
 */
SKY_EXTERN int sky_query_new(sky_query **out, sky_cache *cache,
			     const char *app_id, const char *const *preds,
			     size_t n_preds);
SKY_EXTERN void sky_query_free(sky_query *q);

/** Return at most `limit` rows per run (0, the default: all). */
SKY_EXTERN void sky_query_set_limit(sky_query *q, size_t limit);

/**
 * Start after the row a previous page ended with: `cursor` is what
 * sky_query_next_cursor() gave (NULL: from the start). A cursor is a
 * position, so pages stay correct when sessions are added or removed in
 * between: no row is repeated, none that stayed is skipped. Returns 0 or
 * SKY_EINVAL for text that is not a cursor.
 */
SKY_EXTERN int sky_query_set_cursor(sky_query *q, const char *cursor);

/**
 * Apply the visibility rule of user `user_id`, member of `groups`, with
 * the cached roles of the application: a role applies when its
 * participants name the user (type user) or one of the groups (type
 * group); with `session:read:any` the user sees every session, with
 * `session:read:participant` those it takes part in, directly or through a
 * group; else none. NULL user_id: no rule (the default).
 */
SKY_EXTERN int sky_query_set_viewer(sky_query *q, const char *user_id,
				    const char *const *groups, size_t n_groups);

/**
 * sky_query_set_viewer with the user the cache is synced as, and its
 * groups (sky_sync_user_get; none when the server did not say). Returns
 * 0, SKY_ENOTFOUND (the cache never recorded a sync user: sync first)
 * or -1.
 */
SKY_EXTERN int sky_query_set_viewer_self(sky_query *q);

/** The row has local writes not yet confirmed by the server. */
#define SKY_RESULT_PENDING 0x1u

/**
 * Called once per row, in order, with the session as borrowed
 * NUL-terminated JSON text (the local view) and SKY_RESULT_* flags.
 * Return non-zero to stop: that value is then returned by the run, and
 * the next cursor points after this row.
 */
typedef int (*sky_result_cb)(const char *json, size_t len, unsigned flags,
			     void *payload);

/**
 * Run the query in a snapshot of its own; `json` lives during the
 * callback. Returns 0, the callback's non-zero value, or a negative code.
 */
SKY_EXTERN int sky_query_run(sky_query *q, sky_result_cb cb, void *payload);

/** Run the query in the reader's snapshot; `json` lives until it ends. */
SKY_EXTERN int sky_reader_query(sky_reader *reader, sky_query *q,
				sky_result_cb cb, void *payload);

/** The orders of results (sky_query_set_order). */
typedef enum {
	SKY_ORDER_CREATED_AT = 0, /* createdAt, then sessionId (default) */
	SKY_ORDER_MODIFIED_AT = 1 /* modifiedAt (none: first), then as above */
} sky_query_order;

/**
 * Order the rows by `by`, descending when `descending` is non-zero (ties
 * broken by createdAt and sessionId, in the same direction). Cursors are
 * of one order: a cursor given out in another order is refused by the run
 * (SKY_EINVAL). The default order streams from the indexes page by page;
 * the others sort the whole result set on each run (its size, never the
 * application's, is the cost). Returns 0 or SKY_EINVAL.
 */
SKY_EXTERN int sky_query_set_order(sky_query *q, sky_query_order by,
				   int descending);

/**
 * The number of sessions the query selects (limit and cursor aside), in
 * a snapshot of its own, answered from the indexes without reading the
 * records; only predicates the index answers inexactly (values longer
 * than an index key keeps, very wide prefixes) read the records they
 * leave in doubt. sky_query_explain() then tells the plan.
 */
SKY_EXTERN int sky_query_count(sky_query *q, uint64_t *count);

/**
 * After a run: the cursor of the next page, or NULL when the run reached
 * the end. Borrowed; valid until the next run or sky_query_free().
 */
SKY_EXTERN const char *sky_query_next_cursor(const sky_query *q);

/**
 * After a run: the plan as one JSON object (NULL before any run or when
 * out of memory), borrowed like the cursor:
 * {"application", "predicates", "viewer"?, "steps": [{"step": "scan" |
 * "intersect" | "exclude" | "filter", "what", "using", "estimated",
 * "actual"}], "rows", "more", "limit"?}. `estimated` is the number of
 * sessions under the step's index keys; `actual` the candidates that
 * passed the step in this run.
 */
SKY_EXTERN const char *sky_query_explain(sky_query *q);

/* ------------------------------------------------------------------ */
/* Live queries                                                        */
/* ------------------------------------------------------------------ */

typedef struct sky_live_query sky_live_query;

/** How a live query's result set changed. Ids are sorted, borrowed. */
typedef struct {
	const char *app_id;
	const char *const *entered; /**< sessions now in the results */
	size_t n_entered;
	const char *const *left; /**< sessions no longer in them */
	size_t n_left;
	const char *const *changed; /**< written, and still in them */
	size_t n_changed;
} sky_live_change;

typedef void (*sky_live_cb)(const sky_live_change *change, void *payload);

/**
 * Watch the result set of `q` (limit and cursor aside): after every write
 * through this cache handle that commits and changes which sessions match
 * (or writes one that matches), `cb` is called after the commit, with no
 * lock of the library held, so it may read, write and remove live
 * queries. It runs on the writing thread, before the write call returns,
 * unless another thread is delivering to this live query at that moment:
 * that thread then delivers this change too, right after its own, since
 * the calls of one live query never overlap and come in the order the
 * result set changed. Writes by other processes are not seen. The query
 * is copied: `q` may be freed at once. *out is the caller's, freed with
 * sky_live_query_remove(); all must be removed before sky_cache_close().
 * Returns 0 or -1.
 */
SKY_EXTERN int sky_live_query_add(sky_live_query **out, const sky_query *q,
				  sky_live_cb cb, void *payload);

/**
 * Stop watching. When it returns, the callback is not running (unless
 * called from the callback itself) and will not run again. NULL is a no-op.
 */
SKY_EXTERN void sky_live_query_remove(sky_live_query *lq);

/** The number of sessions in the live query's result set now. */
SKY_EXTERN size_t sky_live_query_size(sky_live_query *lq);

/* ------------------------------------------------------------------ */
/* Protocol files                                                      */
/* ------------------------------------------------------------------ */

/**
 * The wire layout (REST methods and paths, MQTT topics, eventType
 * strings) as a protocol file (docs/PROTOCOL.md), new JSON text in *out
 * (the caller's, sky_free()): the built-in table when `file` is NULL,
 * else `file` read and checked, with the entries it leaves out filled in.
 * Returns 0, SKY_EINVAL (the message names the bad entry) or -1.
 */
SKY_EXTERN int sky_protocol_dump(const char *file, char **out);

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

/* ------------------------------------------------------------------ */
/* BEGIN DEPRECATED NAMES (0.1 names, removed in 0.3)                  */
/* ------------------------------------------------------------------ */
#ifndef SKY_NO_DEPRECATED
/** Deprecated: sky_session_event_send(). */
SKY_DEPRECATED static inline int sky_event_send(sky_cache *cache,
						const char *app_id,
						const char *session_id,
						const char *json, size_t len)
{
	return sky_session_event_send(cache, app_id, session_id, json, len);
}
/** Deprecated: sky_session_event_list(). */
SKY_DEPRECATED static inline int
sky_session_events(sky_cache *cache, const char *app_id, const char *session_id,
		   sky_json_cb cb, void *payload)
{
	return sky_session_event_list(cache, app_id, session_id, cb, payload);
}
#endif /* SKY_NO_DEPRECATED */
/* END DEPRECATED NAMES                                                */

#ifdef __cplusplus
}
#endif

/*
 * The mirror-feeding calls (sky_mirror_*, and their deprecated 0.1 names)
 * are declared in skysync_mirror.h, which includes this header: a program
 * that feeds the mirror includes it by name.
 */
#endif /* SKYSYNC_H */
