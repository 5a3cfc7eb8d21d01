/*
 * journal.h - one disk flush per durable write: a checksummed journal
 * beside LMDB, folded into it in batches (SKY_CACHE_JOURNAL).
 *
 * LMDB makes a commit durable with two ordered flushes (data pages, then
 * the meta page). In journal mode the environment commits without
 * flushing, and a durable write is instead appended to the file
 * `journal` as a logical record and flushed once. Every so often (and
 * before any write that is not journaled) a checkpoint flushes LMDB and
 * writes a new journal header holding a copy of LMDB's two meta pages.
 *
 * Checkpoints come in two kinds. A background thread folds the records
 * in every RECORDS_PER_CHECKPOINT writes without stopping writers: it
 * notes the newest snapshot and the first record after it under the
 * writer lock, then flushes LMDB and writes the header while writers go
 * on appending. A synchronous checkpoint (before any write that is not
 * journaled, when the file is full, at close) holds the writer lock
 * throughout and starts the log again at its beginning in a new epoch.
 *
 * What keeps it crash safe:
 * - A reader transaction of this process stays on the checkpoint's
 *   snapshot until the next checkpoint, so LMDB never reuses a page that
 *   snapshot needs: the on-disk state of the checkpoint stays whole
 *   whatever the OS writes out or loses later.
 * - After a crash (process or power), recovery writes the saved meta
 *   pages back -- rolling LMDB back to the checkpoint -- and replays the
 *   journal's records in order. A record counts only if its header,
 *   generation, sequence number and CRC all check out, so a torn last
 *   record is ignored: its write was never acknowledged.
 * - The header is written to two slots in turn, each with a CRC, so a
 *   torn header write leaves the previous one (and its records) valid.
 * - Only one process may write: journal mode takes an exclusive lock on
 *   the journal file, and other read-write opens take a shared one, so
 *   they exclude each other (SKY_EBUSY). Recovery also requires that no
 *   other process has the environment open, since it rewrites meta pages.
 * - A close ends with a checkpoint marked clean; any other header means
 *   commits may follow the checkpoint unflushed (records, or mirror
 *   writes that have none), so the next read-write open rolls back and
 *   replays even when there is no record.
 * - Read-only opens take no lock; they refuse a cache whose journal is
 *   not clean and was written before the machine restarted (LMDB may be
 *   torn until a read-write open recovers it).
 *
 * The meta pages are copied as bytes; the layout (LMDB 0.9 on-disk
 * format 1) is checked against the running library at every checkpoint,
 * and journal mode refuses to start if it does not match.
 */
#ifndef SKY_JOURNAL_H
#define SKY_JOURNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#define SKY_JOURNAL_META_BYTES 192u

typedef struct sky_journal {
	int fd;                /* the journal file; -1 when absent */
	int active;            /* journal mode: writes go through it */
	int broken;            /* a flush failed: journaled writes refused */
	int recovering;        /* rolled back at open: replay, then fold */
	uint32_t psize;        /* LMDB page size */
	uint64_t gen;          /* generation of the current header */
	uint64_t epoch;        /* records' epoch: new each time the log
				  starts again at its beginning */
	/* Written under LMDB's writer lock; read by the checkpointer. */
	uint64_t tail;         /* where the next record goes */
	uint64_t seq;          /* sequence number of the next record */
	uint64_t ck_seq;       /* first sequence number not yet folded in */
	uint64_t mirror_commits; /* mirror writes committed (writer lock) */
	uint64_t mirror_folded;  /* ...of which a durable checkpoint holds */
	int64_t ck_at_us;        /* when the last checkpoint was durable */
	uint64_t ck_pgno;        /* LMDB's last page at that checkpoint */
	MDB_txn *pin;          /* reader on the checkpoint's snapshot */
	pthread_mutex_t ck_lock; /* one checkpoint at a time; guards pin */
	/* The background checkpointer (journal mode). */
	pthread_t bg;
	int bg_running, bg_due, bg_stop;
	pthread_mutex_t bg_lock;
	pthread_cond_t bg_wake;
	unsigned char *replay; /* records found at open, to replay */
	unsigned replay_count;
	uint64_t damaged;      /* records the replay skips as damaged */
} sky_journal;

struct sky_store;

/*
 * Before mdb_env_open: take the journal's lock and, when it holds records,
 * roll LMDB back to the checkpoint and keep the records for replay.
 * `journal_mode`: this open wants SKY_CACHE_JOURNAL. Read-only opens only
 * check that the cache is readable.
 */
int sky__journal_open(sky_journal *j, const char *dir, int journal_mode,
		      int readonly);

/* After mdb_env_open: pin the snapshot; in journal mode checkpoint when
 * there is nothing to replay. */
int sky__journal_start(struct sky_store *st);

/*
 * Append one record while the write transaction is open (under LMDB's
 * writer lock). sky__journal_flush() makes it durable after the commit.
 */
int sky__journal_append(sky_journal *j, const void *payload, size_t len);
int sky__journal_flush(struct sky_store *st);

/*
 * Mirror writes (server state) in journal mode: noted in their
 * transaction, folded in by the next checkpoint (within a second).
 * A logged write must not leave a record after one that is not folded in
 * yet (the record would be replayed without it): it goes without a
 * record and checkpoints after its commit instead.
 */
void sky__journal_mirror_note(sky_journal *j);
void sky__journal_mirror_committed(struct sky_store *st);
int sky__journal_mirror_unfolded(sky_journal *j);

/* Would this record run past the file? Then checkpoint first. */
int sky__journal_full(const sky_journal *j, size_t len);

/*
 * Flush LMDB and write a new header: every record so far is folded in and
 * the log starts again. Takes the writer lock itself; the caller must
 * hold no transaction. Outside journal mode (after a replay) it empties
 * the journal.
 */
int sky__journal_checkpoint(struct sky_store *st);

/* Walk the records kept for replay: fn(payload, len, ctx) for each. */
int sky__journal_each_replay(sky_journal *j,
			     int (*fn)(const unsigned char *p, size_t len,
				       void *ctx),
			     void *ctx);
void sky__journal_replay_done(sky_journal *j);

/* Checkpoint (journal mode), drop the pin, release the lock. */
void sky__journal_close(struct sky_store *st);
/* Free the locks sky__journal_open() made (after close). */
void sky__journal_destroy(sky_journal *j);

/* sky__crc32c() lives in util.h (the store's sealed values use it too). */

#endif
