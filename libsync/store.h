/*
 * store.h - the LMDB environment of one cache directory.
 *
 * One environment per directory, with these named databases:
 *
 *   meta      "schema" -> u32 schema version; counters and stats
 *   apps      appId -> application JSON text (NUL-terminated)
 *   roles     appId \0 roleName -> role JSON text
 *   sessions  appId \0 sessionId -> session record (record.h)
 *   data      docId(8, big-endian) ... -> session data nodes (doc.h)
 *   evlog     eventId -> u64 sequence (the bounded idempotency log)
 *   evseq     u64 sequence -> eventId (oldest first, for trimming)
 *   pending   appId \0 sessionId \0 seq(8) -> event JSON (session unknown)
 *   sevents   docId(8) seq(8) -> custom session event JSON
 *   index     (query indexes, DUPSORT; index.h)
 *   outbox    u64 id -> queued write (queue.c)
 *   outbox_by_session  appId \0 sessionId \0 id(8) -> "" (a session's
 *             queued writes in order)
 *   server    appId \0 sessionId -> the confirmed server copy of a session
 *             with pending writes (record format; its data under its own
 *             docId)
 *   alias     appId \0 localId -> server sessionId (sessions created
 *             offline, once the server made them)
 *
 * Invariants kept here:
 * - No MDB_MAP_FULL reaches a caller: sky__store_write() runs the write in
 *   a function that may be run again; on MAP_FULL the transaction is
 *   aborted, the map is grown and the function runs again from scratch.
 * - The map is only resized when no transaction of this process is open
 *   (LMDB requires it); readers are counted and resizes wait for them.
 *   A map grown by another process is adopted (MDB_MAP_RESIZED) the same way.
 * - Stale reader slots of dead processes are cleared at open.
 * - A write's observer (changes.c) hears of it only after it committed;
 *   an aborted or rerun attempt is reported as not committed.
 * - A cache with damage (sealed.h) is refused: once a call saw damage no
 *   transaction begins and a write that saw it is aborted, all with
 *   SKY_EDAMAGED and the same message. A cache whose databases exist but
 *   whose "schema" record is missing or damaged is refused at open the
 *   same way, never taken for a new cache.
 */
#ifndef SKY_STORE_H
#define SKY_STORE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <lmdb.h>

#include "journal.h"
#include "sealed.h"
#include "skysync.h"

enum sky_db {
	SKY_DB_META,
	SKY_DB_APPS,
	SKY_DB_ROLES,
	SKY_DB_SESSIONS,
	SKY_DB_DATA,
	SKY_DB_EVLOG,
	SKY_DB_EVSEQ,
	SKY_DB_PENDING,
	SKY_DB_SEVENTS,
	SKY_DB_INDEX,
	SKY_DB_OUTBOX,
	SKY_DB_OBSESS,
	SKY_DB_SERVER,
	SKY_DB_ALIAS,
	SKY_DB_COUNT
};

/*
 * 2: every value but the index's carries a CRC-32C seal (sealed.h). A
 * cache of schema 1 (the same layout without seals) is read as it is and
 * upgraded at its first read-write open: every value sealed in one
 * transaction. The "schema" record itself is sealed from 2 on, so its
 * size tells the two apart (4 bytes, or 4 + seal).
 * 3: a document stored whole ends its text with a NUL (doc_layout.h), so
 * that a read hands out the stored bytes instead of a copy. Only a new
 * cache is 3. One of schema 2 stays 2 and is written in its form (reads
 * copy its texts): a process of an older library may have it open, and
 * that library would read a text ending in a NUL as an empty document.
 * A library of schema 2 refuses to open a cache of 3.
 * 4: documents stored member by member keep small members in runs, several
 * to an entry (doc_layout.h), so that reading a large document copies
 * runs instead of stepping through every member; and the query index is
 * of version 3, without exists keys (index.h). Only a new cache is 4,
 * for the same reason: a cache of 2 or 3 keeps its schema, its documents
 * are written without runs and its index keeps version 2 (a library of 3
 * would not know runs, and would look for exists keys); every schema's
 * documents read alike.
 */
#define SKY_SCHEMA_VERSION 4u

/*
 * Watches this process's write transactions (changes.c). `take` runs right
 * after the write function, while the transaction is still open (so under
 * LMDB's writer lock), and takes what the function noted; `done` runs
 * after the commit (committed = 1) or the abort (0) with what `take`
 * returned, outside any transaction; `destroy` runs at close.
 */
typedef struct sky_txn_observer {
	void *(*take)(struct sky_txn_observer *obs);
	void (*done)(struct sky_txn_observer *obs, void *taken, int committed);
	void (*destroy)(struct sky_txn_observer *obs);
} sky_txn_observer;

typedef struct sky_store {
	MDB_env *env;
	MDB_dbi dbi[SKY_DB_COUNT];
	unsigned flags;		   /* SKY_CACHE_* */
	pthread_mutex_t lock;	   /* guards the fields below */
	pthread_cond_t idle;	   /* signalled when active_txns drops to 0 */
	unsigned active_txns;	   /* open transactions of this process */
	int resizing;		   /* a resize waits: new txns wait too */
	MDB_txn *free_readers[16]; /* reset read txns kept for reuse */
	unsigned n_free_readers;
	_Atomic(sky_txn_observer *) observer; /* set once, NULL if none */
	sky_journal journal; /* SKY_CACHE_JOURNAL (journal.h) */
	/* The journal's checkpoints, which the store drives: one at a
	 * time (ck_lock, taken before the writer lock), and the thread
	 * that folds records in behind the writers. */
	pthread_mutex_t ck_lock;
	pthread_t ck_thread;
	int ck_running, ck_due, ck_stop;
	pthread_mutex_t ck_wake_lock;
	pthread_cond_t ck_wake;
	struct open_dir *open_dir; /* this handle in the process's list */
	sky_seal_env seal;	   /* seals and the fault guard (sealed.h) */
	unsigned schema;	   /* the cache's schema version */
	/* The counters sky__meta_next hands out in the write transaction
	 * of store_write (under LMDB's writer lock, so one at a time):
	 * each read once and written back once, before the commit, however
	 * many ids the transaction takes. */
	MDB_txn *counters_txn;
	struct {
		const char *name;
		uint64_t next;
	} counters[4];
	unsigned n_counters;
	int mirror_settles; /* see sky__store_settle_mirror */
	/* Settling mirror writes committed whose checkpoint has not
	 * completed: until then a queued write settles too (store_write). */
	atomic_uint settles_pending;
} sky_store;

/*
 * In journal mode a mirror write (server state) is folded in by the next
 * checkpoint, and a crash before it rolls the write back while the
 * journal's records replay: a queued write after it replays on the older
 * state. That is sound for the session's server copy (the replay queues
 * the write whatever the copy says, and the sync brings the copy back),
 * but not for what orders or addresses queued writes: the outbox itself
 * (a create adopted, its writes moved to the server's id and an alias
 * put), or an application a create was queued in. A mirror write that
 * changes those calls this from inside its transaction, and commits
 * durably, with a checkpoint. They are rare: once per create, once per
 * new application.
 */
static inline void sky__store_settle_mirror(sky_store *st)
{
	st->mirror_settles = 1;
}

/* Open/close the environment in `dir` (checks and creates permissions). */
int sky__store_open(sky_store *st, const char *dir, unsigned flags,
		    size_t initial_map_bytes);
void sky__store_close(sky_store *st);

/*
 * Run `fn(txn, ctx)` in a write transaction and commit. fn returns 0 to
 * commit, a negative code to abort (returned as is), or SKY__EMAPFULL (what
 * sky__error_lmdb gives for MDB_MAP_FULL) to have the map grown and fn run
 * again in a new transaction. fn must therefore not change anything outside
 * the transaction that a second run would see.
 */
typedef int (*sky_write_fn)(MDB_txn *txn, void *ctx);
int sky__store_write(sky_store *st, sky_write_fn fn, void *ctx);

/*
 * The same for a durable write that can be replayed from `record` (an
 * outbox batch): in journal mode the record is appended to the journal
 * and flushed instead of flushing LMDB; otherwise as sky__store_write().
 */
int sky__store_write_logged(sky_store *st, sky_write_fn fn, void *ctx,
			    const void *record, size_t record_len);

/*
 * The same for a write of server state (events, snapshots): in journal
 * mode it becomes durable at the next checkpoint (within a second),
 * like SQLite's synchronous=NORMAL; a power cut may take the mirror back
 * to that checkpoint, never further, and the next sync brings it up to
 * date. Otherwise as sky__store_write().
 */
int sky__store_write_mirror(sky_store *st, sky_write_fn fn, void *ctx);

/* An empty write transaction: returns once the writes in flight have
 * committed and their observers heard of them. Nothing to make durable. */
int sky__store_barrier(sky_store *st);

/*
 * In journal mode: fold every record so far into LMDB and start the log
 * again (a synchronous checkpoint; takes the writer lock, the caller must
 * hold no transaction). Outside journal mode (after a replay) it empties
 * the journal.
 */
int sky__store_checkpoint(sky_store *st);
/* The name callers used when journal.c took the store. */
#define sky__journal_checkpoint(st) sky__store_checkpoint(st)

/* Begin/end a read-only transaction (reused from a pool). */
int sky__store_read_begin(sky_store *st, MDB_txn **out);
void sky__store_read_end(sky_store *st, MDB_txn *txn);

/* Meta counter: journal records a replay found damaged and skipped. */
#define SKY_META_JOURNAL_DAMAGED "journal_damaged"

/* After a replay that skipped damaged journal records: add them to
 * SKY_META_JOURNAL_DAMAGED (shown by stats). 0 when there were none. */
int sky__store_count_journal_damage(sky_store *st);

/* Meta counters: read a u64 (0 when absent), add to one, set one. */
uint64_t sky__meta_get_u64(MDB_txn *txn, sky_store *st, const char *name);
int sky__meta_put_u64(MDB_txn *txn, sky_store *st, const char *name,
		      uint64_t value);
/* Return the counter's value and store value+1 (for ids and sequences);
 * in a write of sky__store_write and friends the store is written once,
 * before the commit. */
int sky__meta_next(MDB_txn *txn, sky_store *st, const char *name,
		   uint64_t *out);

/*
 * Composite keys: "a \0 b" (b may be NULL for a prefix "a \0"). Returns the
 * key length, or 0 when it would not fit the buffer.
 */
size_t sky__key2(unsigned char *buf, size_t cap, const char *a, const char *b);
#define SKY_KEY_MAX 511

#endif
