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
 * Checkpoints come in two kinds. A background thread (the store's) folds
 * the records in every RECORDS_PER_CHECKPOINT writes without stopping
 * writers: it notes the newest snapshot and the first record after it
 * under the writer lock, then flushes LMDB and writes the header while
 * writers go on appending. A synchronous checkpoint (before any write
 * that is not journaled, when the region is as large as it gets, at
 * close) holds the writer lock throughout and starts the log again at its
 * beginning in a new epoch.
 *
 * One flush per write: the records' region is written with zeros and
 * flushed before any record goes there, so a record's fdatasync() carries
 * its data alone (no block allocation, no unwritten extent to convert, no
 * file size). The same thread grows the region by large steps before the
 * records reach its end, outside any acknowledged write.
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
#define SKY_JOURNAL_HEADER_BYTES 512u

/*
 * The journal is a layer under the store: it owns its file and the pinned
 * snapshot, and never takes LMDB's writer lock itself. The store decides
 * when to checkpoint, holds the writer lock (its transaction `w` is passed
 * in) and runs one checkpoint at a time; the journal reads LMDB only
 * through the environment it is given (its meta pages, its file's end).
 */
typedef struct sky_journal {
	int fd;		/* the journal file; -1 when absent */
	int active;	/* journal mode: writes go through it */
	int broken;	/* a flush failed: journaled writes refused */
	int recovering; /* rolled back at open: replay, then fold */
	uint32_t psize; /* LMDB page size */
	uint64_t gen;	/* generation of the current header */
	uint64_t epoch; /* records' epoch: new each time the log
			   starts again at its beginning */
	/* Written under LMDB's writer lock; read by the checkpointer. */
	uint64_t tail;		   /* where the next record goes */
	uint64_t seq;		   /* sequence number of the next record */
	uint64_t ck_seq;	   /* first sequence number not yet folded in */
	uint64_t mirror_commits;   /* mirror writes committed (writer lock) */
	uint64_t mirror_folded;	   /* ...of which a durable checkpoint holds */
	int64_t ck_at_us;	   /* when the last checkpoint was durable */
	uint64_t ck_pgno;	   /* LMDB's last page at that checkpoint */
	uint64_t cap;		   /* end of the region written with zeros and
				      flushed: records go below it (grown by
				      the checkpointer, read by writers) */
	int no_grow;		   /* growing failed: start again instead */
	pthread_mutex_t grow_lock; /* growth vs a record past `cap` */
	MDB_txn *pin;		   /* reader on the checkpoint's snapshot
				      (guarded by the store's checkpoint lock) */
	unsigned char *replay;	   /* records found at open, to replay */
	unsigned replay_count;
	uint64_t damaged; /* records the replay skips as damaged */
} sky_journal;

/* A checkpoint that lets writers go on, between its two halves. */
typedef struct sky_journal_ck {
	unsigned char slot[SKY_JOURNAL_HEADER_BYTES]; /* the header */
	uint64_t gen, first_seq, mirror;
	MDB_txn *pin; /* the new checkpoint's reader */
} sky_journal_ck;

/*
 * Before mdb_env_open: take the journal's lock and, when it holds records,
 * roll LMDB back to the checkpoint and keep the records for replay.
 * `journal_mode`: this open wants SKY_CACHE_JOURNAL. Read-only opens only
 * check that the cache is readable.
 */
int sky__journal_open(sky_journal *j, const char *dir, int journal_mode,
		      int readonly);

/* After mdb_env_open: note the page size, write the region's zeros and
 * pin the snapshot. In journal mode the store then checkpoints when there
 * is nothing to replay, and starts its checkpointer. */
int sky__journal_start(sky_journal *j, MDB_env *env);

/*
 * Append one record while the write transaction is open (under LMDB's
 * writer lock). sky__journal_flush() makes it durable after the commit:
 * one fdatasync() of a region whose blocks and size are already on disk.
 */
int sky__journal_append(sky_journal *j, const void *payload, size_t len);
int sky__journal_flush(sky_journal *j);

/*
 * Mirror writes (server state) in journal mode: noted in their
 * transaction, folded in by the next checkpoint (within a second). A
 * logged write after one not folded in yet keeps its record and its one
 * flush: a crash rolls the mirror write back, and the replay takes the
 * record on the older state (a write whose session only that state held
 * stays queued, outbox.c enqueue_one).
 */
void sky__journal_mirror_note(sky_journal *j);
int sky__journal_mirror_unfolded(sky_journal *j);

/* Would this record run past the region? Then checkpoint first. */
int sky__journal_full(const sky_journal *j, size_t len);

/*
 * After a commit in journal mode, with LMDB's last page: what the
 * checkpointer should do. SKY_JOURNAL_WAKE_DUE: run now (records, mirror
 * writes or LMDB's file piled up, or the region needs room);
 * SKY_JOURNAL_WAKE_CLOCK: start the clock of the mirror writes; 0: nothing.
 */
#define SKY_JOURNAL_WAKE_DUE 1
#define SKY_JOURNAL_WAKE_CLOCK 2
int sky__journal_wake(sky_journal *j, uint64_t last_pgno);

/* For the checkpointer: is a checkpoint that lets writers go on due
 * (`asked`: a commit asked for one)? */
int sky__journal_due(sky_journal *j, int asked);

/*
 * For the checkpointer: keep room ahead of the records. 0 when there is
 * room (the region grown by a large step if it ran low), 1 when the region
 * is as large as it gets and the log should start again (a synchronous
 * checkpoint), <0 on error.
 */
int sky__journal_make_room(sky_journal *j);

/*
 * The synchronous checkpoint: flush LMDB and write a new header: every
 * record so far is folded in and the log starts again. The caller holds
 * the writer lock in `w`; `clean` marks the last one, at close. Only in
 * journal mode; sky__journal_empty() is its counterpart after a replay
 * outside journal mode (no transaction needed).
 */
int sky__journal_fold(sky_journal *j, MDB_env *env, MDB_txn *w, int clean);
int sky__journal_empty(sky_journal *j);

/*
 * The checkpoint that lets writers go on, in two halves. _note (under the
 * writer lock in `w`) notes the newest snapshot and the first record
 * after it: 1 noted, 0 nothing to fold in, <0 failed. _write (without the
 * writer lock) flushes LMDB and writes the header, while the old pin still
 * guards the old checkpoint and the new one guards the new.
 */
int sky__journal_behind_note(sky_journal *j, MDB_env *env, MDB_txn *w,
			     sky_journal_ck *ck);
int sky__journal_behind_write(sky_journal *j, MDB_env *env, sky_journal_ck *ck);

/* Walk the records kept for replay: fn(payload, len, ctx) for each. */
int sky__journal_each_replay(sky_journal *j,
			     int (*fn)(const unsigned char *p, size_t len,
				       void *ctx),
			     void *ctx);
void sky__journal_replay_done(sky_journal *j);

/* Drop the pin and the records, release the lock (the store checkpoints
 * first). */
void sky__journal_close(sky_journal *j);
/* Free the lock sky__journal_open() made (after close). */
void sky__journal_destroy(sky_journal *j);

/* sky__crc32c() lives in util.h (the store's sealed values use it too). */

#endif
