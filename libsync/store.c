/*
 * store.c - the LMDB environment of a cache directory: opening it safely,
 * the named databases, write transactions that survive a full map, pooled
 * read transactions, and small metadata counters.
 *
 * Map growth. LMDB fails a write with MDB_MAP_FULL when the memory map is
 * too small. Every write goes through sky__store_write(), which runs the
 * caller's function in a fresh transaction; on MAP_FULL it aborts, doubles
 * the map and runs the function again, so the failure never reaches a user.
 * mdb_env_set_mapsize() may only run while this process has no transaction
 * open, so transactions are counted (active_txns) and a resize waits for
 * the count to drop to zero while new transactions wait for the resize.
 * A thread that holds a reader while its own write needs a resize would
 * wait on itself: that case fails with a clear error instead.
 *
 * Other processes. When another process grew the map, our next
 * transaction begin returns MDB_MAP_RESIZED; we adopt the new size the
 * same way (mdb_env_set_mapsize(env, 0)) and begin again.
 */
#include "config.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "store.h"
#include "util.h"

#define DEFAULT_MAP_BYTES ((size_t)256 << 20)
#define MAX_WRITE_RETRIES 40

static const struct {
	const char *name;
	unsigned flags;
} db_specs[SKY_DB_COUNT] = {
    [SKY_DB_META] = {"meta", 0},
    [SKY_DB_APPS] = {"apps", 0},
    [SKY_DB_ROLES] = {"roles", 0},
    [SKY_DB_SESSIONS] = {"sessions", 0},
    [SKY_DB_DATA] = {"data", 0},
    [SKY_DB_EVLOG] = {"evlog", 0},
    [SKY_DB_EVSEQ] = {"evseq", 0},
    [SKY_DB_PENDING] = {"pending", 0},
    [SKY_DB_SEVENTS] = {"sevents", 0},
    [SKY_DB_INDEX] = {"index", MDB_DUPSORT},
    [SKY_DB_OUTBOX] = {"outbox", 0},
    [SKY_DB_OBSESS] = {"outbox_by_session", 0},
    [SKY_DB_SERVER] = {"server", 0},
    [SKY_DB_ALIAS] = {"alias", 0},
};

/* Readers this thread holds, so a resize can tell it would wait on itself. */
static _Thread_local unsigned thread_txns;

static int check_private(const char *path, int must_be_dir)
{
	struct stat sb;
	if (stat(path, &sb) < 0) {
		if (errno == ENOENT)
			return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_OS,
					      ENOENT, "%s: does not exist",
					      path);
		return sky__error_os(path);
	}
	if (must_be_dir && !S_ISDIR(sb.st_mode))
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_OS, ENOTDIR,
				      "%s: not a directory", path);
	if (sb.st_mode & (S_IWGRP | S_IWOTH))
		return sky__error_set(
		    SKY_EPERM, SKY_ERRSRC_OS, EPERM,
		    "%s: writable by group or others (mode %03o); refusing "
		    "to use it: run chmod go-w on it",
		    path, (unsigned)(sb.st_mode & 0777));
	if (sb.st_uid != geteuid())
		return sky__error_set(SKY_EPERM, SKY_ERRSRC_OS, EPERM,
				      "%s: owned by another user (uid %u)",
				      path, (unsigned)sb.st_uid);
	return 0;
}

static int prepare_dir(const char *dir, unsigned flags)
{
	if (!(flags & SKY_CACHE_READONLY)) {
		/* mkdir -p with 0700 for the parts we create. */
		char *path = strdup(dir);
		if (!path)
			return sky__error_nomem();
		for (char *p = path + 1; *p; p++) {
			if (*p != '/')
				continue;
			*p = '\0';
			if (mkdir(path, 0700) < 0 && errno != EEXIST) {
				int rc = sky__error_os(path);
				free(path);
				return rc;
			}
			*p = '/';
		}
		free(path);
		if (mkdir(dir, 0700) < 0 && errno != EEXIST)
			return sky__error_os(dir);
	}
	int rc = check_private(dir, 1);
	if (rc < 0)
		return rc;
	static const char *files[] = {"data.mdb", "lock.mdb", "journal"};
	for (size_t i = 0; i < 3; i++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (access(path, F_OK) == 0 &&
		    (rc = check_private(path, 0)) < 0)
			return rc;
	}
	return 0;
}

/* Wait until no resize is pending, then count one more transaction. */
static void txn_enter(sky_store *st)
{
	pthread_mutex_lock(&st->lock);
	while (st->resizing)
		pthread_cond_wait(&st->idle, &st->lock);
	st->active_txns++;
	pthread_mutex_unlock(&st->lock);
	thread_txns++;
}

static void txn_leave(sky_store *st)
{
	pthread_mutex_lock(&st->lock);
	st->active_txns--;
	if (st->active_txns == 0)
		pthread_cond_broadcast(&st->idle);
	pthread_mutex_unlock(&st->lock);
	thread_txns--;
}

/*
 * Set the map size to `bytes` (0: adopt the size another process set),
 * once no transaction of this process is open. The caller holds none.
 */
static int resize_map(sky_store *st, size_t bytes)
{
	if (thread_txns > 0)
		return sky__error_set(
		    SKY_ERROR, SKY_ERRSRC_LMDB, MDB_MAP_FULL,
		    "cache map is full and cannot grow while this thread "
		    "holds a reader: end the reader and retry");
	pthread_mutex_lock(&st->lock);
	st->resizing++;
	while (st->active_txns > 0)
		pthread_cond_wait(&st->idle, &st->lock);
	/* Pooled reset readers count as open transactions to LMDB. */
	for (unsigned i = 0; i < st->n_free_readers; i++)
		mdb_txn_abort(st->free_readers[i]);
	st->n_free_readers = 0;
	int rc = mdb_env_set_mapsize(st->env, bytes);
	if (rc == 0)
		sky__seal_refresh(&st->seal, st->env);
	st->resizing--;
	pthread_cond_broadcast(&st->idle);
	pthread_mutex_unlock(&st->lock);
	if (rc)
		return sky__error_lmdb(rc, "growing the cache map");
	return 0;
}

static int grow_map(sky_store *st)
{
	MDB_envinfo info;
	mdb_env_info(st->env, &info);
	size_t next = info.me_mapsize * 2;
	if (next < info.me_mapsize)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, MDB_MAP_FULL,
				      "cache map cannot grow further");
	return resize_map(st, next);
}

/* Begin a transaction, adopting a map grown by another process. */
static int txn_begin(sky_store *st, unsigned flags, MDB_txn **out)
{
	for (int tries = 0;; tries++) {
		txn_enter(st);
		int rc = mdb_txn_begin(st->env, NULL, flags, out);
		if (rc == 0)
			return 0;
		txn_leave(st);
		if (rc != MDB_MAP_RESIZED || tries > 3)
			return sky__error_lmdb(rc, "beginning a transaction");
		if ((rc = resize_map(st, 0)) < 0)
			return rc;
	}
}

/* ---- the journal's checkpoints (journal.h) ---- */

static int journal_broken(void)
{
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, EIO,
			      "the journal failed earlier: reopen the cache");
}

/* The synchronous checkpoint; `clean` marks the last one, at close. */
static int checkpoint_sync(sky_store *st, int clean)
{
	sky_journal *j = &st->journal;
	if (j->fd < 0)
		return 0;
	if (!j->active)
		return sky__journal_empty(j);
	pthread_mutex_lock(&st->ck_lock);
	MDB_txn *w;
	int rc;
	if (j->broken)
		rc = journal_broken();
	else if ((rc = txn_begin(st, 0, &w)) == 0) {
		rc = sky__journal_fold(j, st->env, w, clean);
		mdb_txn_abort(w);
		txn_leave(st);
	}
	pthread_mutex_unlock(&st->ck_lock);
	return rc;
}

int sky__store_checkpoint(sky_store *st)
{
	return checkpoint_sync(st, 0);
}

/* The checkpoint behind the writers: the writer lock only while the
 * journal notes the snapshot, not for the flushes. */
static void checkpoint_behind(sky_store *st)
{
	sky_journal *j = &st->journal;
	sky_journal_ck ck;
	MDB_txn *w;
	pthread_mutex_lock(&st->ck_lock);
	if (!j->broken && txn_begin(st, 0, &w) == 0) {
		int noted = sky__journal_behind_note(j, st->env, w, &ck);
		mdb_txn_abort(w);
		txn_leave(st);
		if (noted == 1)
			(void)sky__journal_behind_write(j, st->env, &ck);
	}
	pthread_mutex_unlock(&st->ck_lock);
}

/* Wake the checkpointer: `due` asks for a checkpoint now; otherwise it
 * only starts its clock for the mirror writes waiting. */
static void wake_checkpointer(sky_store *st, int due)
{
	pthread_mutex_lock(&st->ck_wake_lock);
	if (due)
		st->ck_due = 1;
	pthread_cond_signal(&st->ck_wake);
	pthread_mutex_unlock(&st->ck_wake_lock);
}

/* After a commit in journal mode (a logged or a mirror write). */
static void journal_committed(sky_store *st)
{
	if (!st->ck_running)
		return;
	MDB_envinfo info;
	mdb_env_info(st->env, &info);
	int wake = sky__journal_wake(&st->journal, (uint64_t)info.me_last_pgno);
	if (wake)
		wake_checkpointer(st, wake == SKY_JOURNAL_WAKE_DUE);
}

/*
 * The checkpointer: folds records and mirror writes in behind the
 * writers, and keeps room in the journal's region ahead of the records
 * (growing it, or starting the log again once it is as large as it
 * gets), so that no acknowledged write waits for either.
 */
static void *checkpointer_main(void *arg)
{
	sky_store *st = arg;
	sky_journal *j = &st->journal;
	pthread_mutex_lock(&st->ck_wake_lock);
	while (!st->ck_stop) {
		int asked = st->ck_due;
		st->ck_due = 0;
		pthread_mutex_unlock(&st->ck_wake_lock);
		if (sky__journal_due(j, asked))
			checkpoint_behind(st);
		/* A failure to grow is reported there, and the log starts
		 * again at the end of the region it has instead. */
		if (sky__journal_make_room(j) == 1)
			(void)checkpoint_sync(st, 0);
		pthread_mutex_lock(&st->ck_wake_lock);
		if (st->ck_stop || st->ck_due)
			continue;
		if (sky__journal_mirror_unfolded(j)) {
			/* Mirror writes wait at most about a second. */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += 100 * 1000 * 1000;
			if (until.tv_nsec >= 1000000000) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000;
			}
			pthread_cond_timedwait(&st->ck_wake, &st->ck_wake_lock,
					       &until);
		} else {
			pthread_cond_wait(&st->ck_wake, &st->ck_wake_lock);
		}
	}
	pthread_mutex_unlock(&st->ck_wake_lock);
	return NULL;
}

/* After the environment opened: the journal pins its snapshot; in
 * journal mode a first checkpoint (unless a replay comes first, whose
 * checkpoint follows it) and the checkpointer. */
static int journal_start(sky_store *st)
{
	sky_journal *j = &st->journal;
	int rc = sky__journal_start(j, st->env);
	if (rc < 0 || j->fd < 0 || !j->active)
		return rc;
	if (!j->recovering && (rc = checkpoint_sync(st, 0)) < 0)
		return rc;
	if ((rc = pthread_create(&st->ck_thread, NULL, checkpointer_main,
				 st)) != 0) {
		errno = rc;
		return sky__error_os("starting the journal's checkpointer");
	}
	st->ck_running = 1;
	return 0;
}

/* Stop the checkpointer, fold everything in and mark the journal clean,
 * so the next open has nothing to recover (if that fails the next open
 * recovers), then close the journal. */
static void journal_close(sky_store *st)
{
	sky_journal *j = &st->journal;
	if (j->fd < 0)
		return;
	if (st->ck_running) {
		pthread_mutex_lock(&st->ck_wake_lock);
		st->ck_stop = 1;
		pthread_cond_signal(&st->ck_wake);
		pthread_mutex_unlock(&st->ck_wake_lock);
		pthread_join(st->ck_thread, NULL);
		st->ck_running = 0;
	}
	if (st->env && j->active && !j->broken && !j->recovering)
		(void)checkpoint_sync(st, 1);
	sky__journal_close(j);
}

static void journal_locks_init(sky_store *st)
{
	pthread_mutex_init(&st->ck_lock, NULL);
	pthread_mutex_init(&st->ck_wake_lock, NULL);
	pthread_cond_init(&st->ck_wake, NULL);
}

static void journal_locks_destroy(sky_store *st)
{
	sky__journal_destroy(&st->journal);
	pthread_mutex_destroy(&st->ck_lock);
	pthread_mutex_destroy(&st->ck_wake_lock);
	pthread_cond_destroy(&st->ck_wake);
}

static int meta_damaged(void)
{
	return sky__error_set(SKY_EDAMAGED, SKY_ERRSRC_LMDB, MDB_CORRUPTED,
			      "the cache's meta record is damaged: run "
			      "`skysync salvage DEST` to copy its queued "
			      "writes into a new cache");
}

static int open_databases(sky_store *st)
{
	MDB_txn *txn;
	unsigned ro = st->flags & SKY_CACHE_READONLY;
	int rc = mdb_txn_begin(st->env, NULL, ro ? MDB_RDONLY : 0, &txn);
	if (rc)
		return sky__error_lmdb(rc, "opening the cache");
	/* A new environment has no named database yet. One that has some
	 * but lacks its schema record is damaged, not new: starting afresh
	 * over it would lose its queued writes. */
	MDB_dbi main_dbi;
	MDB_stat ms;
	if ((rc = mdb_dbi_open(txn, NULL, 0, &main_dbi)) != 0 ||
	    (rc = mdb_stat(txn, main_dbi, &ms)) != 0) {
		mdb_txn_abort(txn);
		return sky__error_lmdb(rc, "opening the cache");
	}
	int fresh = ms.ms_entries == 0;
	for (int i = 0; i < SKY_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, db_specs[i].name,
				  db_specs[i].flags | (ro ? 0 : MDB_CREATE),
				  &st->dbi[i]);
		if (rc) {
			mdb_txn_abort(txn);
			if (rc == MDB_NOTFOUND && i == SKY_DB_META && !fresh)
				return meta_damaged();
			if (rc == MDB_NOTFOUND)
				return sky__error_set(
				    SKY_ENOTFOUND, SKY_ERRSRC_LMDB, rc,
				    "no cache here yet (database '%s' is "
				    "missing): run a sync or apply first",
				    db_specs[i].name);
			return sky__error_lmdb(rc, db_specs[i].name);
		}
	}
	/* The schema version: written once, checked on every open; read
	 * before the seals are known (sealed.h), so as raw bytes. */
	MDB_val key = {6, (void *)"schema"}, val;
	rc = mdb_get(txn, st->dbi[SKY_DB_META], &key, &val);
	uint32_t version = 0;
	int write_version = 0;
	if (rc == MDB_NOTFOUND && !fresh) {
		mdb_txn_abort(txn);
		return meta_damaged();
	} else if (rc == MDB_NOTFOUND) {
		version = SKY_SCHEMA_VERSION; /* written below */
		write_version = !ro;
		rc = 0;
	} else if (rc == 0) {
		/* 4 bytes: schema 1 (or a version that wrote no seal). */
		if (val.mv_size != 4 &&
		    (val.mv_size != 4 + SKY_SEAL_BYTES ||
		     sky__seal_check(val.mv_data, val.mv_size) < 0)) {
			mdb_txn_abort(txn);
			return meta_damaged();
		}
		version = sky__get_be32(val.mv_data);
		if (!(version == 1 && val.mv_size == 4) &&
		    !(version >= 2 && version <= SKY_SCHEMA_VERSION &&
		      val.mv_size == 4 + SKY_SEAL_BYTES)) {
			mdb_txn_abort(txn);
			return sky__error_set(
			    SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
			    "cache schema version %u is not one this "
			    "library knows (1 to %u): use a matching "
			    "skysync or a new cache directory",
			    version, SKY_SCHEMA_VERSION);
		}
	}
	if (rc) {
		mdb_txn_abort(txn);
		return sky__error_lmdb(rc, "reading the schema version");
	}
	for (int i = 0; i < SKY_DB_COUNT; i++)
		if (i != SKY_DB_INDEX)
			sky__seal_db(&st->seal, st->dbi[i]);
	if (version == 1 && !ro) {
		/* The one-time upgrade: seal every value, in this txn. */
		for (int i = 0; i < SKY_DB_COUNT && rc == 0; i++)
			if (i != SKY_DB_INDEX)
				rc = sky__seal_upgrade(txn, st->dbi[i],
						       db_specs[i].name);
		if (rc < 0) {
			mdb_txn_abort(txn);
			return rc;
		}
		version = 2;
		write_version = 1;
	}
	/* A cache of schema 2 or 3 keeps its schema: a process of an older
	 * library may have it open, and would read a whole text ending in a
	 * NUL (schema 3) as an empty document, or find runs of members
	 * (schema 4) corrupt. So documents go on being written in its form
	 * (doc.c and doc_members.c ask the seal context), and only a new
	 * cache is of this library's schema. */
	st->schema = version;
	st->seal.schema = version;
	st->seal.sealed = version >= 2;
	if (write_version) {
		unsigned char v[4];
		sky__put_be32(v, version);
		MDB_val nv = {4, v};
		if ((rc = mdb_put(txn, st->dbi[SKY_DB_META], &key, &nv, 0)) !=
		    0) {
			mdb_txn_abort(txn);
			return sky__error_lmdb(rc,
					       "writing the schema version");
		}
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		return sky__error_lmdb(rc, "opening the cache");
	return 0;
}

/*
 * The caches this process has open, by directory. LMDB wants one handle
 * per environment and process: closing a second handle clears every
 * reader slot of the process, the journal's pinned reader included. So a
 * journal-mode handle is the only one of its directory in this process.
 */
typedef struct open_dir {
	dev_t dev;
	ino_t ino;
	pid_t pid; /* a forked child does not own its parent's handles */
	int journal;
	struct open_dir *next;
} open_dir;

static pthread_mutex_t open_dirs_lock = PTHREAD_MUTEX_INITIALIZER;
static open_dir *open_dirs;

static int open_dirs_add(sky_store *st, const char *dir, int journal)
{
	struct stat sb;
	if (stat(dir, &sb) < 0)
		return sky__error_os(dir);
	int rc = 0;
	pthread_mutex_lock(&open_dirs_lock);
	for (open_dir *d = open_dirs; d; d = d->next) {
		if (d->dev != sb.st_dev || d->ino != sb.st_ino ||
		    d->pid != getpid() || !(d->journal || journal))
			continue;
		rc = sky__error_set(SKY_EBUSY, SKY_ERRSRC_NONE, 0,
				    "%s is already open in this process%s: "
				    "use that handle (SKY_CACHE_JOURNAL wants "
				    "one per process)",
				    dir, d->journal ? " in journal mode" : "");
		break;
	}
	open_dir *d = rc == 0 ? calloc(1, sizeof(*d)) : NULL;
	if (rc == 0 && !d)
		rc = sky__error_nomem();
	if (d) {
		d->dev = sb.st_dev;
		d->ino = sb.st_ino;
		d->pid = getpid();
		d->journal = journal;
		d->next = open_dirs;
		open_dirs = d;
		st->open_dir = d;
	}
	pthread_mutex_unlock(&open_dirs_lock);
	return rc;
}

static void open_dirs_remove(sky_store *st)
{
	pthread_mutex_lock(&open_dirs_lock);
	for (open_dir **p = &open_dirs; *p; p = &(*p)->next) {
		if (*p == st->open_dir) {
			*p = st->open_dir->next;
			free(st->open_dir);
			break;
		}
	}
	st->open_dir = NULL;
	pthread_mutex_unlock(&open_dirs_lock);
}

int sky__store_open(sky_store *st, const char *dir, unsigned flags,
		    size_t initial_map_bytes)
{
	int rc;
	memset(st, 0, sizeof(*st));
	st->flags = flags;
	if ((rc = prepare_dir(dir, flags)) < 0)
		return rc;
	/* Before LMDB opens: the journal may roll it back (journal.h). */
	int journal_mode =
	    (flags & SKY_CACHE_JOURNAL) != 0 && !(flags & SKY_CACHE_READONLY);
	if ((rc = open_dirs_add(st, dir, journal_mode)) < 0)
		return rc;
	journal_locks_init(st);
	if ((rc = sky__journal_open(&st->journal, dir, journal_mode,
				    (flags & SKY_CACHE_READONLY) != 0)) < 0) {
		journal_locks_destroy(st);
		open_dirs_remove(st);
		return rc;
	}
	pthread_mutex_init(&st->lock, NULL);
	pthread_cond_init(&st->idle, NULL);
	if ((rc = mdb_env_create(&st->env)) != 0) {
		rc = sky__error_lmdb(rc, "creating the LMDB environment");
		goto fail_env;
	}
	mdb_env_set_maxdbs(st->env, SKY_DB_COUNT + 2);
	mdb_env_set_maxreaders(st->env, 254);
	if (!initial_map_bytes)
		initial_map_bytes = DEFAULT_MAP_BYTES;
	mdb_env_set_mapsize(st->env, initial_map_bytes);
	/*
	 * MDB_NOTLS: readers are pooled and may move between threads.
	 * MDB_NORDAHEAD: without it the kernel reads ahead around every
	 * page fault of the map, which for the first lookups after an open
	 * (a cold B-tree walk) reads megabytes the answer does not need:
	 * bench/run's cold_start measured 99 ms with readahead against
	 * 8 ms without on the floor's LMDB file (bench/README.md).
	 * MDB_NOSYNC only when the user chose speed over power-loss safety;
	 * MDB_NOMETASYNC (one flush per commit; a power cut may undo the
	 * last commits but never corrupts) for SKY_CACHE_FAST_WRITES.
	 * In journal mode LMDB never flushes on commit: the journal and its
	 * checkpoints make writes durable.
	 */
	unsigned envflags = MDB_NOTLS | MDB_NORDAHEAD;
	if (flags & SKY_CACHE_READONLY)
		envflags |= MDB_RDONLY;
	if ((flags & SKY_CACHE_NOSYNC) || journal_mode)
		envflags |= MDB_NOSYNC;
	else if (flags & SKY_CACHE_FAST_WRITES)
		envflags |= MDB_NOMETASYNC;
	rc = mdb_env_open(st->env, dir, envflags, 0600);
	if (rc) {
		if (rc == ENOENT && (flags & SKY_CACHE_READONLY))
			rc = sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_OS, rc,
					    "%s: no cache here", dir);
		else
			rc = sky__error_lmdb(rc, dir);
		goto fail_open;
	}
	/* Files are created 0600 by mdb_env_open; existing ones were checked
	 * by prepare_dir. Reader slots of dead processes are freed here. */
	int dead = 0;
	mdb_reader_check(st->env, &dead);
	sky__seal_attach(&st->seal, st->env);
	/* Only the schema upgrade can fill the map here. */
	while ((rc = open_databases(st)) == SKY__EMAPFULL)
		if ((rc = grow_map(st)) < 0)
			break;
	if (rc < 0)
		goto fail_open;
	if ((rc = journal_start(st)) < 0)
		goto fail_open;
	return 0;

fail_open:
	journal_close(st);
	mdb_env_close(st->env);
	st->env = NULL;
fail_env:
	journal_close(st);
	journal_locks_destroy(st);
	open_dirs_remove(st);
	pthread_cond_destroy(&st->idle);
	pthread_mutex_destroy(&st->lock);
	return rc;
}

void sky__store_close(sky_store *st)
{
	if (!st->env)
		return;
	for (unsigned i = 0; i < st->n_free_readers; i++)
		mdb_txn_abort(st->free_readers[i]);
	st->n_free_readers = 0;
	sky_txn_observer *obs = atomic_exchange(&st->observer, NULL);
	if (obs)
		obs->destroy(obs);
	journal_close(st);
	mdb_env_close(st->env);
	st->env = NULL;
	journal_locks_destroy(st);
	open_dirs_remove(st);
	pthread_cond_destroy(&st->idle);
	pthread_mutex_destroy(&st->lock);
}

/* What a write needs to become durable in journal mode (none for a
 * barrier, which writes nothing). */
enum write_kind { WRITE_DURABLE, WRITE_LOGGED, WRITE_MIRROR, WRITE_BARRIER };

/*
 * After a commit in journal mode: flush the journal record (a logged
 * write), let the next checkpoint make it durable (a mirror write), or
 * checkpoint now (any other write, which has no record to replay).
 */
static int journal_after_commit(sky_store *st, enum write_kind kind)
{
	int rc;
	switch (kind) {
	case WRITE_LOGGED:
		if ((rc = sky__journal_flush(&st->journal)) == 0)
			journal_committed(st);
		return rc;
	case WRITE_MIRROR: journal_committed(st); return 0;
	case WRITE_BARRIER: return 0;
	default: return checkpoint_sync(st, 0);
	}
}

static int store_write(sky_store *st, sky_write_fn fn, void *ctx,
		       enum write_kind kind, const void *record,
		       size_t record_len)
{
	if (st->flags & SKY_CACHE_READONLY)
		return sky__error_set(SKY_EPERM, SKY_ERRSRC_INPUT, 0,
				      "the cache was opened read-only");
	sky_journal *j = &st->journal;
	int journaled = j->active;
	if (!journaled)
		kind = WRITE_DURABLE;
	int logged = kind == WRITE_LOGGED;
	for (int attempt = 0; attempt < MAX_WRITE_RETRIES; attempt++) {
		if (st->seal.damaged)
			return sky__seal_refuse(&st->seal);
		if (journaled && j->broken)
			return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, EIO,
					      "the journal failed earlier: "
					      "reopen the cache");
		int rc;
		if (logged && sky__journal_full(j, record_len) &&
		    (rc = checkpoint_sync(st, 0)) < 0)
			return rc;
		MDB_txn *txn;
		if ((rc = txn_begin(st, 0, &txn)) < 0)
			return rc;
		/*
		 * A record is replayed on its checkpoint's state, which lacks
		 * the mirror writes not folded in yet: a crash rolls them
		 * back. The replay takes the write all the same (outbox.c,
		 * enqueue_one), so the record goes even after such writes,
		 * with its one flush; the mirror writes it must not outlive
		 * were made durable at once (sky__store_settle_mirror).
		 */
		enum write_kind as = kind;
		st->counters_txn = txn;
		st->n_counters = 0;
		st->mirror_settles = 0;
		rc = fn(txn, ctx);
		/* A settling mirror write commits durably, with a checkpoint
		 * after its commit, which is outside the writer lock: until
		 * that checkpoint is done, a queued write (which may depend
		 * on it: the server id of an adoption) must not be
		 * acknowledged on its record alone, so it checkpoints too. */
		int settling = kind == WRITE_MIRROR && st->mirror_settles;
		if (settling)
			as = WRITE_DURABLE;
		if (as == WRITE_LOGGED && atomic_load(&st->settles_pending))
			as = WRITE_DURABLE;
		/* Damage the function did not report (a counter read as 0)
		 * must not be written back. */
		if (st->seal.damaged)
			rc = sky__seal_refuse(&st->seal);
		for (unsigned i = 0; rc == 0 && i < st->n_counters; i++)
			rc = sky__meta_put_u64(txn, st, st->counters[i].name,
					       st->counters[i].next);
		st->counters_txn = NULL;
		if (rc == 0 && as == WRITE_LOGGED)
			rc = sky__journal_append(j, record, record_len);
		if (rc == 0 && kind == WRITE_MIRROR)
			sky__journal_mirror_note(j);
		/* Taken while the writer lock is held, delivered after it. */
		sky_txn_observer *obs = atomic_load(&st->observer);
		void *noted = obs ? obs->take(obs) : NULL;
		if (rc == 0) {
			if (settling)
				atomic_fetch_add(&st->settles_pending, 1);
			int mrc = mdb_txn_commit(txn);
			txn_leave(st);
			if (mrc == 0 && journaled)
				rc = journal_after_commit(st, as);
			else if (mrc != 0 && as == WRITE_LOGGED)
				/* The appended record names a write that
				 * did not happen: a checkpoint voids it. */
				(void)checkpoint_sync(st, 0);
			/* Done settling, unless its checkpoint failed: then
			 * every queued write goes on checkpointing. */
			if (settling && (mrc != 0 || rc == 0))
				atomic_fetch_sub(&st->settles_pending, 1);
			if (obs)
				obs->done(obs, noted, mrc == 0);
			if (mrc == 0)
				return rc;
			rc = sky__error_lmdb(mrc, "committing");
		} else {
			mdb_txn_abort(txn);
			txn_leave(st);
			if (obs)
				obs->done(obs, noted, 0);
		}
		if (rc != SKY__EMAPFULL)
			return rc;
		if ((rc = grow_map(st)) < 0)
			return rc;
	}
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, MDB_MAP_FULL,
			      "cache map full after %d growths",
			      MAX_WRITE_RETRIES);
}

int sky__store_write(sky_store *st, sky_write_fn fn, void *ctx)
{
	return store_write(st, fn, ctx, WRITE_DURABLE, NULL, 0);
}

int sky__store_write_logged(sky_store *st, sky_write_fn fn, void *ctx,
			    const void *record, size_t record_len)
{
	return store_write(st, fn, ctx, WRITE_LOGGED, record, record_len);
}

int sky__store_write_mirror(sky_store *st, sky_write_fn fn, void *ctx)
{
	return store_write(st, fn, ctx, WRITE_MIRROR, NULL, 0);
}

static int write_nothing(MDB_txn *txn, void *ctx)
{
	(void)txn;
	(void)ctx;
	return 0;
}

int sky__store_barrier(sky_store *st)
{
	return store_write(st, write_nothing, NULL, WRITE_BARRIER, NULL, 0);
}

int sky__store_read_begin(sky_store *st, MDB_txn **out)
{
	MDB_txn *txn = NULL;
	if (st->seal.damaged)
		return sky__seal_refuse(&st->seal);
	for (int tries = 0;; tries++) {
		txn_enter(st);
		pthread_mutex_lock(&st->lock);
		if (st->n_free_readers)
			txn = st->free_readers[--st->n_free_readers];
		pthread_mutex_unlock(&st->lock);
		int rc = txn ? mdb_txn_renew(txn)
			     : mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
		if (rc == 0) {
			*out = txn;
			return 0;
		}
		if (txn)
			mdb_txn_abort(txn);
		txn = NULL;
		txn_leave(st);
		if (rc != MDB_MAP_RESIZED || tries > 3)
			return sky__error_lmdb(rc, "beginning a read");
		if ((rc = resize_map(st, 0)) < 0)
			return rc;
	}
}

void sky__store_read_end(sky_store *st, MDB_txn *txn)
{
	if (!txn)
		return;
	mdb_txn_reset(txn);
	pthread_mutex_lock(&st->lock);
	int pooled = st->n_free_readers < 16 && !st->resizing;
	if (pooled)
		st->free_readers[st->n_free_readers++] = txn;
	pthread_mutex_unlock(&st->lock);
	if (!pooled)
		mdb_txn_abort(txn);
	txn_leave(st);
}

uint64_t sky__meta_get_u64(MDB_txn *txn, sky_store *st, const char *name)
{
	MDB_val key = {strlen(name), (void *)name}, val;
	if (mdb_get(txn, st->dbi[SKY_DB_META], &key, &val) != 0 ||
	    val.mv_size != 8)
		return 0;
	return sky__get_be64(val.mv_data);
}

int sky__meta_put_u64(MDB_txn *txn, sky_store *st, const char *name,
		      uint64_t value)
{
	unsigned char v[8];
	sky__put_be64(v, value);
	MDB_val key = {strlen(name), (void *)name}, val = {8, v};
	int rc = mdb_put(txn, st->dbi[SKY_DB_META], &key, &val, 0);
	return rc ? sky__error_lmdb(rc, "writing cache metadata") : 0;
}

int sky__meta_next(MDB_txn *txn, sky_store *st, const char *name, uint64_t *out)
{
	if (txn == st->counters_txn) {
		unsigned i;
		for (i = 0; i < st->n_counters; i++)
			if (!strcmp(st->counters[i].name, name)) {
				*out = st->counters[i].next++;
				return 0;
			}
		if (i < sizeof(st->counters) / sizeof(st->counters[0])) {
			*out = sky__meta_get_u64(txn, st, name);
			st->counters[i].name = name;
			st->counters[i].next = *out + 1;
			st->n_counters++;
			return 0;
		}
	}
	uint64_t v = sky__meta_get_u64(txn, st, name);
	int rc = sky__meta_put_u64(txn, st, name, v + 1);
	if (rc == 0)
		*out = v;
	return rc;
}

size_t sky__key2(unsigned char *buf, size_t cap, const char *a, const char *b)
{
	size_t la = strlen(a), lb = b ? strlen(b) : 0;
	size_t n = la + 1 + lb;
	if (n > cap)
		return 0;
	memcpy(buf, a, la);
	buf[la] = '\0';
	if (lb)
		memcpy(buf + la + 1, b, lb);
	return n;
}

static int add_journal_damage(MDB_txn *txn, void *ctx)
{
	sky_store *st = ctx;
	uint64_t v = sky__meta_get_u64(txn, st, SKY_META_JOURNAL_DAMAGED);
	return sky__meta_put_u64(txn, st, SKY_META_JOURNAL_DAMAGED,
				 v + st->journal.damaged);
}

int sky__store_count_journal_damage(sky_store *st)
{
	if (!st->journal.damaged)
		return 0;
	int rc = sky__store_write(st, add_journal_damage, st);
	if (rc == 0)
		st->journal.damaged = 0;
	return rc;
}
