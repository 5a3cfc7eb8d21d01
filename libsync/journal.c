/*
 * journal.c - the journal of SKY_CACHE_JOURNAL mode: its file format,
 * locking, checkpoints and recovery (see journal.h for why it is safe).
 *
 * The file `journal` in the cache directory:
 *
 *   offset 0 and 512   two header slots, written in turn; the valid one
 *                      (magic, version, CRC) with the higher generation
 *                      is current
 *   offset 4096...     records, back to back
 *
 *   header  "SKYJRNL\0" | version u32 | page size u32 | generation u64 |
 *           checkpoint txnid u64 | boot id (40 bytes) |
 *           LMDB meta page 0 (192 bytes) | meta page 1 (192 bytes) |
 *           epoch u64 | first record's offset u64 and sequence u64 |
 *           clean u32 (1: written by a close, nothing after it) | CRC
 *   record  magic u32 | length u32 | epoch u64 | sequence u64 |
 *           CRC u32 | 0 u32 | payload, padded to 8 bytes
 *
 * Numbers are big-endian; CRCs are CRC-32C over everything before them
 * (and, for a record, its payload). Records are numbered from 1 in each
 * epoch; those to replay start at the header's offset and sequence, and
 * the log ends at the first slot that does not hold the next number of
 * the header's epoch with a good CRC.
 *
 * The records' region (JOURNAL_BYTES at first) is allocated and written
 * with zeros, and flushed, before any record goes there: appending a
 * record changes neither the file's size nor its block map (ext4 would
 * otherwise convert an unwritten extent at every fdatasync()), so the
 * flush carries the record alone. The checkpointer grows the region by
 * JOURNAL_GROW_BYTES while records are still JOURNAL_ROOM_BYTES short of
 * its end, up to JOURNAL_MAX_BYTES; there the log starts again at its
 * beginning.
 *
 * This file knows LMDB only through the environment it is handed; the
 * store (store.c) drives it: it holds the writer lock for it, decides
 * when to checkpoint and runs the checkpointer thread.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "error.h"
#include "journal.h"
#include "util.h"

#define HEADER_SLOT 512u
#define HEADER_CRC_AT 484u /* the header's CRC covers bytes before it */
#define RECORDS_START 4096u
#define RECORD_HEAD 32u
#define RECORD_MAGIC 0x534b5952u /* "SKYR" */
#define JOURNAL_VERSION 1u
/* The region written with zeros at open, the steps it grows by (always
 * this far ahead of the records), and its largest size; the records
 * folded in per checkpoint: a bound on both the replay work after a crash
 * and on the pages LMDB cannot reuse while the checkpoint's snapshot is
 * pinned. */
#define JOURNAL_BYTES ((uint64_t)4 << 20)
#define JOURNAL_GROW_BYTES ((uint64_t)4 << 20)
#define JOURNAL_ROOM_BYTES ((uint64_t)2 << 20)
#define JOURNAL_MAX_BYTES ((uint64_t)32 << 20)
#define RECORDS_PER_CHECKPOINT 512u
#define MAX_RECORD_BYTES ((uint64_t)256 << 20)
/* Mirror writes wait at most this long, or this many commits, for a
 * checkpoint to make them durable. The time bound is the promise; the
 * count only keeps a burst from piling up unflushed commits. At 64 a
 * stream of single live events paid a checkpoint (an fdatasync of every
 * page dirtied since) every 64 events, a third of their cost; at 1024 the
 * page bound below usually comes first (bench mixed, events alone: 153 ->
 * 117 us per event). */
#define MIRROR_FOLD_US 1000000
#define MIRROR_COMMITS_PER_CHECKPOINT 1024u
/* ...or before the file grows by this many pages: while the checkpoint is
 * pinned LMDB cannot reuse pages, so every commit takes new ones. */
#define PAGES_PER_CHECKPOINT 4096u

/* LMDB 0.9 meta page: page header (16 bytes), then mm_magic, mm_version,
 * ..., mm_txnid at byte 144 on 64-bit builds. Checked at run time. */
#define LMDB_META_MAGIC_AT 16u
#define LMDB_META_TXNID_AT 144u
#define LMDB_MAGIC 0xBEEFC0DEu
#define LMDB_DATA_VERSION 1u

static const char header_magic[8] = "SKYJRNL";

/* This boot's id: a crash report for a cache names the boot it was
 * written in, so a reader can tell a process crash (page cache intact)
 * from a restart (LMDB may be torn until recovered). */
static void boot_id(char out[40])
{
	memset(out, 0, 40);
	const char *path = getenv("SKY_TEST_BOOT_ID_FILE");
	FILE *f = fopen(path ? path : "/proc/sys/kernel/random/boot_id", "re");
	if (!f)
		return;
	if (fgets(out, 40, f))
		out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

/* All `len` bytes at `off`, or -1: pwrite() when writing, else pread()
 * (which also fails at the end of the file). */
static int full_io(int fd, void *buf, size_t len, uint64_t off, int writing)
{
	unsigned char *p = buf;
	while (len) {
		ssize_t n = writing ? pwrite(fd, p, len, (off_t)off)
				    : pread(fd, p, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int full_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	return full_io(fd, (void *)buf, len, off, 1);
}

static int full_pread(int fd, void *buf, size_t len, uint64_t off)
{
	return full_io(fd, buf, len, off, 0);
}

/* ---- header ---- */

typedef struct {
	uint32_t psize;
	uint64_t gen;
	uint64_t txnid;
	char boot[40];
	unsigned char meta[2][SKY_JOURNAL_META_BYTES];
	uint64_t epoch, first_off, first_seq;
	uint32_t clean;
} header;

static void header_encode(const header *h, unsigned char out[HEADER_SLOT])
{
	memset(out, 0, HEADER_SLOT);
	memcpy(out, header_magic, 8);
	sky__put_be32(out + 8, JOURNAL_VERSION);
	sky__put_be32(out + 12, h->psize);
	sky__put_be64(out + 16, h->gen);
	sky__put_be64(out + 24, h->txnid);
	memcpy(out + 32, h->boot, 40);
	memcpy(out + 72, h->meta[0], SKY_JOURNAL_META_BYTES);
	memcpy(out + 72 + SKY_JOURNAL_META_BYTES, h->meta[1],
	       SKY_JOURNAL_META_BYTES);
	sky__put_be64(out + 456, h->epoch);
	sky__put_be64(out + 464, h->first_off);
	sky__put_be64(out + 472, h->first_seq);
	sky__put_be32(out + 480, h->clean);
	sky__put_be32(out + HEADER_CRC_AT, sky__crc32c(0, out, HEADER_CRC_AT));
}

static int header_decode(const unsigned char in[HEADER_SLOT], header *h)
{
	if (memcmp(in, header_magic, 8) ||
	    sky__get_be32(in + 8) != JOURNAL_VERSION ||
	    sky__get_be32(in + HEADER_CRC_AT) !=
		sky__crc32c(0, in, HEADER_CRC_AT))
		return -1;
	h->psize = sky__get_be32(in + 12);
	h->gen = sky__get_be64(in + 16);
	h->txnid = sky__get_be64(in + 24);
	memcpy(h->boot, in + 32, 40);
	h->boot[39] = '\0';
	memcpy(h->meta[0], in + 72, SKY_JOURNAL_META_BYTES);
	memcpy(h->meta[1], in + 72 + SKY_JOURNAL_META_BYTES,
	       SKY_JOURNAL_META_BYTES);
	h->epoch = sky__get_be64(in + 456);
	h->first_off = sky__get_be64(in + 464);
	h->first_seq = sky__get_be64(in + 472);
	h->clean = sky__get_be32(in + 480);
	if (h->first_off < RECORDS_START)
		return -1;
	return 0;
}

/* The current header: 0 found, 1 none (new or emptied journal). */
static int header_read(int fd, header *out)
{
	unsigned char slot[2][HEADER_SLOT];
	header h[2];
	int ok[2];
	for (int i = 0; i < 2; i++)
		ok[i] = full_pread(fd, slot[i], HEADER_SLOT,
				   (uint64_t)i * HEADER_SLOT) == 0 &&
			header_decode(slot[i], &h[i]) == 0;
	if (!ok[0] && !ok[1])
		return 1;
	int best = ok[0] && ok[1] ? h[1].gen > h[0].gen : ok[1];
	*out = h[best];
	return 0;
}

/* ---- records ---- */

static size_t padded(size_t len)
{
	return (len + 7) & ~(size_t)7;
}

/* Is there a whole record of epoch `gen` at `off`? 1 yes (its sequence
 * in *seq), 0 no, -1 a record head of that epoch whose payload fails
 * its CRC (a record was there). */
static int record_at(int fd, uint64_t off, uint64_t gen, uint64_t *seq,
		     uint32_t *len_out, unsigned char **payload)
{
	unsigned char head[RECORD_HEAD];
	if (full_pread(fd, head, RECORD_HEAD, off) < 0 ||
	    sky__get_be32(head) != RECORD_MAGIC ||
	    sky__get_be64(head + 8) != gen || sky__get_be32(head + 28) != 0)
		return 0;
	uint32_t len = sky__get_be32(head + 4);
	*seq = sky__get_be64(head + 16);
	if (len > MAX_RECORD_BYTES)
		return -1;
	unsigned char *p = realloc(*payload, len ? len : 1);
	if (!p)
		return -2;
	*payload = p;
	if (full_pread(fd, p, len, off + RECORD_HEAD) < 0)
		return -1;
	uint32_t crc = sky__crc32c(0, head, 24);
	crc = sky__crc32c(crc, p, len);
	if (crc != sky__get_be32(head + 24))
		return -1;
	*len_out = len;
	return 1;
}

/*
 * After a damaged slot at `off` (expecting sequence `seq`): the next whole
 * record of the epoch with a higher sequence, at an 8-byte boundary
 * (records are padded to 8). 1 found (*next_off, *next_seq), 0 none, -1
 * none but heads of later records were seen (their payloads damaged too:
 * the log cannot be resynchronised), -2 out of memory.
 */
static int resync(int fd, uint64_t off, uint64_t gen, uint64_t seq,
		  uint64_t *next_off, uint64_t *next_seq,
		  unsigned char **payload)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size <= off + RECORD_HEAD)
		return 0;
	/* One read of the rest of the file (the journal is a few MiB): the
	 * end of every log after a crash comes this way. */
	size_t n = (size_t)((uint64_t)sb.st_size - off);
	unsigned char *buf = malloc(n);
	if (!buf)
		return -2;
	if (full_pread(fd, buf, n, off) < 0) {
		free(buf);
		return 0;
	}
	int later = 0, found = 0;
	for (size_t o = 8; o + RECORD_HEAD <= n; o += 8) {
		const unsigned char *hd = buf + o;
		if (sky__get_be32(hd) != RECORD_MAGIC ||
		    sky__get_be64(hd + 8) != gen ||
		    sky__get_be64(hd + 16) <= seq)
			continue;
		uint64_t s = 0;
		uint32_t len;
		int r = record_at(fd, off + o, gen, &s, &len, payload);
		if (r == -2) {
			free(buf);
			return -2;
		}
		if (r == 1) {
			*next_off = off + o;
			*next_seq = s;
			found = 1;
			break;
		}
		later = 1;
	}
	free(buf);
	return found ? 1 : later ? -1 : 0;
}

/*
 * Walk the records to replay after header `h` and keep their payloads, as
 * u32 length + bytes, in *keep (the caller's); *count of them.
 *
 * The log ends at the first slot that holds no record of the epoch and
 * after which no later record of the epoch follows (a record torn by a
 * crash was never acknowledged). A damaged record with whole records
 * after it is skipped: those after it are kept, and *damaged counts the
 * sequence numbers skipped (the first range's bytes in *bad_from,
 * *bad_to). If later records are there but none is whole, the log cannot
 * be resynchronised: SKY_EDAMAGED, unless `lenient` (salvage), which
 * keeps what it read.
 */
static int records_scan(int fd, const header *h, int lenient,
			unsigned char **keep, unsigned *count,
			uint64_t *damaged, uint64_t *bad_from, uint64_t *bad_to)
{
	uint64_t off = h->first_off, seq = h->first_seq, gen = h->epoch;
	unsigned n = 0;
	size_t klen = 0, kcap = 0;
	unsigned char *kbuf = NULL, *payload = NULL;
	*damaged = 0;
	for (;;) {
		uint64_t s = 0;
		uint32_t len = 0;
		int r = record_at(fd, off, gen, &s, &len, &payload);
		if (r == -2)
			goto nomem;
		if (r != 1 || s != seq) {
			uint64_t noff, nseq;
			int f =
			    resync(fd, off, gen, seq, &noff, &nseq, &payload);
			if (f == -2)
				goto nomem;
			if (f == -1 && !lenient) {
				free(payload);
				free(kbuf);
				return sky__error_set(
				    SKY_EDAMAGED, SKY_ERRSRC_OS, EIO,
				    "the journal is damaged from byte %llu "
				    "(record %llu of its log) on, and no "
				    "whole record follows although later "
				    "ones were written: their writes "
				    "cannot be replayed, so the cache is "
				    "not opened for writing; the journal "
				    "file is kept as it is: run `skysync "
				    "salvage DEST` to copy what can be read",
				    (unsigned long long)off,
				    (unsigned long long)seq);
			}
			if (f != 1)
				break;
			if (*damaged == 0) {
				*bad_from = off;
				*bad_to = noff;
			}
			*damaged += nseq - seq;
			off = noff;
			seq = nseq;
			continue;
		}
		if (klen + 4 + len > kcap) {
			size_t cap = (kcap + 4 + len) * 2;
			unsigned char *k = realloc(kbuf, cap);
			if (!k)
				goto nomem;
			kbuf = k;
			kcap = cap;
		}
		sky__put_be32(kbuf + klen, len);
		memcpy(kbuf + klen + 4, payload, len);
		klen += 4 + (size_t)len;
		n++;
		seq++;
		off += RECORD_HEAD + padded(len);
	}
	free(payload);
	*count = n;
	*keep = kbuf;
	return 0;
nomem:
	free(payload);
	free(kbuf);
	return sky__error_nomem();
}

int sky__journal_full(const sky_journal *j, size_t len)
{
	uint64_t tail = __atomic_load_n(&j->tail, __ATOMIC_RELAXED);
	return tail > RECORDS_START &&
	       tail + RECORD_HEAD + padded(len) >
		   __atomic_load_n(&j->cap, __ATOMIC_ACQUIRE);
}

int sky__journal_append(sky_journal *j, const void *payload, size_t len)
{
	if (len > MAX_RECORD_BYTES)
		return sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
				      "write of %zu bytes is too large for "
				      "the journal",
				      len);
	unsigned char head[RECORD_HEAD] = {0}, pad[8] = {0};
	sky__put_be32(head, RECORD_MAGIC);
	sky__put_be32(head + 4, (uint32_t)len);
	sky__put_be64(head + 8, j->epoch);
	sky__put_be64(head + 16, j->seq);
	uint32_t crc = sky__crc32c(0, head, 24);
	sky__put_be32(head + 24, sky__crc32c(crc, payload, len));
	struct iovec iov[3] = {{head, RECORD_HEAD},
			       {(void *)payload, len},
			       {pad, padded(len) - len}};
	size_t total = RECORD_HEAD + padded(len);
	/* Only a record larger than the whole region goes past its end (at
	 * the log's start); the region must not grow over it meanwhile. */
	int past = j->tail + total > __atomic_load_n(&j->cap, __ATOMIC_ACQUIRE);
	if (past)
		pthread_mutex_lock(&j->grow_lock);
	ssize_t n;
	do
		n = pwritev(j->fd, iov, 3, (off_t)j->tail);
	while (n < 0 && errno == EINTR);
	if (n == (ssize_t)total)
		__atomic_store_n(&j->tail, j->tail + total, __ATOMIC_RELAXED);
	if (past)
		pthread_mutex_unlock(&j->grow_lock);
	if (n != (ssize_t)total) {
		/* A short write is an error like any other: the caller aborts
		 * the transaction and the next checkpoint voids the slot. */
		if (n >= 0)
			errno = EIO;
		return sky__error_os("writing the journal");
	}
	__atomic_store_n(&j->seq, j->seq + 1, __ATOMIC_RELEASE);
	return 0;
}

void sky__journal_mirror_note(sky_journal *j)
{
	__atomic_store_n(&j->mirror_commits, j->mirror_commits + 1,
			 __ATOMIC_RELEASE);
}

int sky__journal_mirror_unfolded(sky_journal *j)
{
	return __atomic_load_n(&j->mirror_commits, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&j->mirror_folded, __ATOMIC_ACQUIRE);
}

static uint64_t records_behind(sky_journal *j)
{
	return __atomic_load_n(&j->seq, __ATOMIC_ACQUIRE) -
	       __atomic_load_n(&j->ck_seq, __ATOMIC_ACQUIRE);
}

/* Do the records come within JOURNAL_ROOM_BYTES of the region's end? */
static int room_low(sky_journal *j)
{
	return __atomic_load_n(&j->tail, __ATOMIC_RELAXED) +
		   JOURNAL_ROOM_BYTES >
	       __atomic_load_n(&j->cap, __ATOMIC_ACQUIRE);
}

/* After a commit in journal mode: wake the checkpointer when records or
 * mirror writes pile up, when LMDB's file has grown too much, or when the
 * region needs room. */
int sky__journal_wake(sky_journal *j, uint64_t last_pgno)
{
	uint64_t unfolded =
	    __atomic_load_n(&j->mirror_commits, __ATOMIC_ACQUIRE) -
	    __atomic_load_n(&j->mirror_folded, __ATOMIC_ACQUIRE);
	uint64_t grown =
	    last_pgno - __atomic_load_n(&j->ck_pgno, __ATOMIC_RELAXED);
	if (records_behind(j) >= RECORDS_PER_CHECKPOINT ||
	    unfolded >= MIRROR_COMMITS_PER_CHECKPOINT ||
	    grown >= PAGES_PER_CHECKPOINT || room_low(j))
		return SKY_JOURNAL_WAKE_DUE;
	if (unfolded == 1)
		return SKY_JOURNAL_WAKE_CLOCK;
	return 0;
}

int sky__journal_flush(sky_journal *j)
{
	if (fdatasync(j->fd) == 0)
		return 0;
	/* After a failed flush the kernel may have dropped the dirty pages:
	 * retrying would report success for data that is gone. */
	j->broken = 1;
	return sky__error_os("flushing the journal (the last write is in "
			     "the cache but may not survive a power cut; "
			     "reopen the cache)");
}

/* ---- LMDB's meta pages ---- */

/* Read both meta pages of the environment and check their layout; the
 * newer must be `expect_txnid`. */
static int metas_read(MDB_env *env, uint32_t psize,
		      unsigned char out[2][SKY_JOURNAL_META_BYTES],
		      uint64_t expect_txnid)
{
	int fd;
	if (mdb_env_get_fd(env, &fd) != 0)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, 0,
				      "no file descriptor for the cache");
	uint64_t newest = 0;
	for (int i = 0; i < 2; i++) {
		if (full_pread(fd, out[i], SKY_JOURNAL_META_BYTES,
			       (uint64_t)i * psize) < 0)
			return sky__error_os("reading the cache's meta pages");
		uint32_t magic, version;
		uint64_t txnid;
		memcpy(&magic, out[i] + LMDB_META_MAGIC_AT, 4);
		memcpy(&version, out[i] + LMDB_META_MAGIC_AT + 4, 4);
		memcpy(&txnid, out[i] + LMDB_META_TXNID_AT, 8);
		if (magic != LMDB_MAGIC || version != LMDB_DATA_VERSION)
			goto layout;
		if (txnid > newest)
			newest = txnid;
	}
	if (newest == expect_txnid)
		return 0;
layout:
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, 0,
			      "SKY_CACHE_JOURNAL does not know this LMDB "
			      "build's file layout: open the cache without it");
}

/* Write the checkpoint's meta pages back: LMDB opens at the checkpoint. */
static int metas_restore(const char *dir, const header *h)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return sky__error_os(path);
	int rc = 0;
	for (int i = 0; i < 2 && rc == 0; i++)
		rc = full_pwrite(fd, h->meta[i], SKY_JOURNAL_META_BYTES,
				 (uint64_t)i * h->psize);
	if (rc == 0)
		rc = fdatasync(fd);
	if (rc < 0)
		rc = sky__error_os("rolling the cache back to its checkpoint");
	close(fd);
	return rc;
}

/* Does another process have the LMDB environment open? (LMDB holds a
 * read lock on the first byte of lock.mdb in every process using it.) */
static int env_in_use(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0;
	struct flock lk = {
	    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
	int busy = fcntl(fd, F_GETLK, &lk) == 0 && lk.l_type != F_UNLCK;
	close(fd);
	return busy;
}

/* ---- open, checkpoint, close ---- */

static int busy(const char *why)
{
	return sky__error_set(SKY_EBUSY, SKY_ERRSRC_OS, EWOULDBLOCK, "%s", why);
}

static int open_readonly(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return 0; /* no journal: never written in journal mode */
	header h;
	int rc = 0;
	if (header_read(fd, &h) == 0 && !h.clean) {
		/* Commits after the checkpoint were never flushed: after a
		 * restart LMDB may be torn until recovery rolls it back. */
		char now[40];
		boot_id(now);
		if (strcmp(now, h.boot) != 0)
			rc = busy("the cache was being written in journal "
				  "mode when the machine stopped: open it "
				  "read-write once to recover it (start the "
				  "program that owns it, or run `skysync "
				  "sync`)");
	}
	close(fd);
	return rc;
}

int sky__journal_open(sky_journal *j, const char *dir, int journal_mode,
		      int readonly)
{
	memset(j, 0, sizeof(*j));
	j->fd = -1;
	pthread_mutex_init(&j->grow_lock, NULL);
	char path[4096];
	snprintf(path, sizeof(path), "%s/journal", dir);
	if (readonly)
		return open_readonly(path);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return sky__error_os(path);
	int rc = 0;
	if (flock(fd, (journal_mode ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
		rc = journal_mode
			 ? busy("another process has the cache open for "
				"writing: SKY_CACHE_JOURNAL needs to be "
				"its only writer")
			 : busy("another process has the cache open with "
				"SKY_CACHE_JOURNAL: it must be the only "
				"writer while it runs");
		goto fail;
	}
	j->fd = fd;
	j->active = journal_mode;
	header h;
	if (header_read(fd, &h) != 0)
		return 0;
	j->gen = h.gen;
	j->epoch = h.epoch;
	j->psize = h.psize;
	if (h.clean)
		return 0; /* closed cleanly: LMDB is the checkpoint */
	/* Commits after the checkpoint may be torn by a power cut: roll
	 * back to it and replay the records (there may be none). */
	j->recovering = 1;
	uint64_t bad_from = 0, bad_to = 0;
	if ((rc = records_scan(fd, &h, 0, &j->replay, &j->replay_count,
			       &j->damaged, &bad_from, &bad_to)) < 0)
		goto fail;
	if (j->damaged)
		fprintf(stderr,
			"skysync: %s: %llu damaged record%s skipped (bytes "
			"%llu-%llu and any later range); the %u whole records "
			"are replayed\n",
			path, (unsigned long long)j->damaged,
			j->damaged == 1 ? "" : "s",
			(unsigned long long)bad_from,
			(unsigned long long)bad_to, j->replay_count);
	if (!journal_mode && flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = busy("another process has the cache open: recovering "
			  "its journal needs the cache alone");
		goto fail;
	}
	if (env_in_use(dir)) {
		rc = busy("another process has the cache open: recovering "
			  "its journal needs the cache alone; close it and "
			  "open again");
		goto fail;
	}
	if ((rc = metas_restore(dir, &h)) < 0)
		goto fail;
	return 0;
fail:
	free(j->replay);
	j->replay = NULL;
	j->replay_count = 0;
	j->recovering = 0;
	j->damaged = 0;
	close(fd);
	j->fd = -1;
	return rc;
}

/*
 * Make [from, to) of the file real zeros on disk: allocated in one piece
 * where the file system can (without changing the size yet), then
 * written, then flushed with the new size. Records written there later
 * change no metadata. Written and flushed by the MiB, so that a writer's
 * fdatasync() meanwhile never carries more than that of zeros.
 */
static int zero_region(int fd, uint64_t from, uint64_t to)
{
	static const unsigned char zeros[65536];
	if (from >= to)
		return 0;
	/* Best effort: the zeros written below allocate the blocks anyway. */
	(void)fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)from,
			(off_t)(to - from));
	for (uint64_t off = from; off < to;) {
		size_t n = sizeof(zeros);
		if (to - off < n)
			n = (size_t)(to - off);
		if (full_pwrite(fd, zeros, n, off) < 0)
			return sky__error_os("preparing the journal");
		off += n;
		if ((off % ((uint64_t)1 << 20) == 0 || off == to) &&
		    fdatasync(fd) < 0)
			return sky__error_os("preparing the journal");
	}
	return 0;
}

/* Zeros up to JOURNAL_BYTES at open (a larger file was grown, and its
 * size only covers zeros already flushed); records go below `cap`. */
static int preallocate(sky_journal *j)
{
	struct stat sb;
	if (fstat(j->fd, &sb) < 0)
		return sky__error_os("journal");
	uint64_t size = (uint64_t)sb.st_size;
	int rc = zero_region(j->fd, size, JOURNAL_BYTES);
	if (rc < 0)
		return rc;
	if (size < JOURNAL_BYTES)
		size = JOURNAL_BYTES;
	if (size > JOURNAL_MAX_BYTES)
		size = JOURNAL_MAX_BYTES;
	__atomic_store_n(&j->cap, size & ~(uint64_t)7, __ATOMIC_RELEASE);
	return 0;
}

int sky__journal_make_room(sky_journal *j)
{
	if (!room_low(j) || j->broken)
		return 0;
	uint64_t cap = __atomic_load_n(&j->cap, __ATOMIC_ACQUIRE);
	if (cap >= JOURNAL_MAX_BYTES || j->no_grow)
		return 1; /* start the log again instead */
	uint64_t next = cap + JOURNAL_GROW_BYTES;
	if (next > JOURNAL_MAX_BYTES)
		next = JOURNAL_MAX_BYTES;
	/* Writers stay below `cap` meanwhile (but for one record larger
	 * than the region, which the lock keeps clear of); the new part
	 * counts only once its zeros and the file's size are on disk. */
	pthread_mutex_lock(&j->grow_lock);
	uint64_t tail = __atomic_load_n(&j->tail, __ATOMIC_RELAXED);
	uint64_t from = tail > cap ? tail : cap;
	int rc = from < next ? zero_region(j->fd, from, next) : 0;
	if (rc == 0 && from < next)
		__atomic_store_n(&j->cap, next, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&j->grow_lock);
	if (rc < 0) {
		/* The disk is full, say: the log starts again at the end of
		 * the region it has, as it did before it could grow. */
		j->no_grow = 1;
		sky__error_prefix("growing the journal (it starts again at "
				  "%llu bytes instead)",
				  (unsigned long long)cap);
		fprintf(stderr, "skysync: %s\n", sky_error_last()->message);
	}
	return rc;
}

int sky__journal_start(sky_journal *j, MDB_env *env)
{
	if (j->fd < 0)
		return 0;
	MDB_stat ms;
	int rc = mdb_env_stat(env, &ms);
	if (rc)
		return sky__error_lmdb(rc, "reading the page size");
	j->psize = ms.ms_psize;
	if (j->active && (rc = preallocate(j)) < 0)
		return rc;
	if (j->recovering || j->active) {
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &j->pin);
		if (rc)
			return sky__error_lmdb(rc, "pinning the checkpoint");
	}
	return 0;
}

/* Write an encoded header of generation `gen` to its slot and make it
 * durable. */
static int slot_write(sky_journal *j, const unsigned char *slot, uint64_t gen)
{
	if (full_pwrite(j->fd, slot, HEADER_SLOT,
			(gen & 1) * (uint64_t)HEADER_SLOT) < 0 ||
	    fdatasync(j->fd) < 0)
		return sky__error_os("writing the journal header");
	return 0;
}

/* Write header `h` (the next generation) and make it durable. */
static int header_write(sky_journal *j, const header *h)
{
	unsigned char slot[HEADER_SLOT];
	header_encode(h, slot);
	return slot_write(j, slot, h->gen);
}

/* Where LMDB's file ends at a checkpoint (the writer lock held). */
static void note_pgno(sky_journal *j, MDB_env *env)
{
	MDB_envinfo info;
	mdb_env_info(env, &info);
	__atomic_store_n(&j->ck_pgno, (uint64_t)info.me_last_pgno,
			 __ATOMIC_RELAXED);
}

/* Fill the parts of the next header that describe the newest snapshot
 * (the caller holds the writer lock in `w`). */
static int header_next(sky_journal *j, MDB_env *env, MDB_txn *w, header *h)
{
	memset(h, 0, sizeof(*h));
	h->psize = j->psize;
	h->gen = j->gen + 1;
	h->txnid = mdb_txn_id(w) - 1;
	boot_id(h->boot);
	return metas_read(env, j->psize, h->meta, h->txnid);
}

int sky__journal_empty(sky_journal *j)
{
	if (j->fd < 0 || j->active)
		return 0;
	/* A replay outside journal mode committed durably: empty the
	 * journal and let other writers in again. */
	if (ftruncate(j->fd, 0) < 0 || fdatasync(j->fd) < 0)
		return sky__error_os("emptying the journal");
	if (j->pin)
		mdb_txn_abort(j->pin);
	j->pin = NULL;
	flock(j->fd, LOCK_SH);
	return 0;
}

int sky__journal_fold(sky_journal *j, MDB_env *env, MDB_txn *w, int clean)
{
	header h;
	int rc;
	if ((rc = mdb_env_sync(env, 1)) != 0) {
		rc = sky__error_lmdb(rc, "flushing the cache");
		goto broken;
	}
	if ((rc = header_next(j, env, w, &h)) < 0)
		goto broken;
	note_pgno(j, env);
	h.epoch = j->epoch + 1;
	h.first_off = RECORDS_START;
	h.first_seq = 1;
	h.clean = clean ? 1 : 0;
	if ((rc = header_write(j, &h)) < 0)
		goto broken;
	/* Holding the writer lock, the renewed reader sees exactly the
	 * snapshot just written down. */
	if (j->pin) {
		mdb_txn_reset(j->pin);
		rc = mdb_txn_renew(j->pin);
	} else {
		rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &j->pin);
	}
	if (rc) {
		if (j->pin)
			mdb_txn_abort(j->pin);
		j->pin = NULL;
		rc = sky__error_lmdb(rc, "pinning the checkpoint");
		goto broken;
	}
	j->gen = h.gen;
	j->epoch = h.epoch;
	j->tail = RECORDS_START;
	__atomic_store_n(&j->seq, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&j->ck_seq, 1, __ATOMIC_RELEASE);
	__atomic_store_n(&j->mirror_folded, j->mirror_commits,
			 __ATOMIC_RELEASE);
	__atomic_store_n(&j->ck_at_us, sky__now_us(), __ATOMIC_RELAXED);
	return 0;
broken:
	/* The previous header and its pinned snapshot still recover
	 * everything acknowledged; new writes must not pile on. */
	j->broken = 1;
	return rc;
}

/* A checkpoint behind the writers failed: no more journaled writes. */
static int behind_broken(sky_journal *j, int rc)
{
	j->broken = 1;
	sky__error_prefix("journal checkpoint");
	fprintf(stderr, "skysync: %s\n", sky_error_last()->message);
	return rc;
}

int sky__journal_behind_note(sky_journal *j, MDB_env *env, MDB_txn *w,
			     sky_journal_ck *ck)
{
	header h;
	int rc;
	memset(ck, 0, sizeof(*ck));
	ck->mirror = j->mirror_commits;
	if (j->seq == j->ck_seq && ck->mirror == j->mirror_folded)
		return 0; /* a synchronous checkpoint came first */
	if ((rc = header_next(j, env, w, &h)) < 0)
		return behind_broken(j, rc);
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &ck->pin)) != 0) {
		ck->pin = NULL;
		return behind_broken(
		    j, sky__error_lmdb(rc, "pinning the checkpoint"));
	}
	h.epoch = j->epoch;
	h.first_off = j->tail;
	h.first_seq = j->seq;
	note_pgno(j, env);
	header_encode(&h, ck->slot);
	ck->gen = h.gen;
	ck->first_seq = h.first_seq;
	return 1;
}

int sky__journal_behind_write(sky_journal *j, MDB_env *env, sky_journal_ck *ck)
{
	int rc;
	if ((rc = mdb_env_sync(env, 1)) != 0) {
		rc = sky__error_lmdb(rc, "flushing the cache");
		goto broken;
	}
	if ((rc = slot_write(j, ck->slot, ck->gen)) < 0)
		goto broken;
	mdb_txn_abort(j->pin);
	j->pin = ck->pin;
	j->gen = ck->gen;
	__atomic_store_n(&j->ck_seq, ck->first_seq, __ATOMIC_RELEASE);
	__atomic_store_n(&j->mirror_folded, ck->mirror, __ATOMIC_RELEASE);
	__atomic_store_n(&j->ck_at_us, sky__now_us(), __ATOMIC_RELAXED);
	return 0;
broken:
	mdb_txn_abort(ck->pin);
	ck->pin = NULL;
	return behind_broken(j, rc);
}

/* Is a background checkpoint due? Records piling up, or mirror writes
 * waiting for long enough or in numbers. */
int sky__journal_due(sky_journal *j, int asked)
{
	if (records_behind(j) >= RECORDS_PER_CHECKPOINT)
		return 1;
	if (!sky__journal_mirror_unfolded(j))
		return 0;
	int64_t since =
	    sky__now_us() - __atomic_load_n(&j->ck_at_us, __ATOMIC_RELAXED);
	return asked || since >= MIRROR_FOLD_US;
}

int sky__journal_each_replay(sky_journal *j,
			     int (*fn)(const unsigned char *p, size_t len,
				       void *ctx),
			     void *ctx)
{
	size_t off = 0;
	for (unsigned i = 0; i < j->replay_count; i++) {
		uint32_t len = sky__get_be32(j->replay + off);
		int rc = fn(j->replay + off + 4, len, ctx);
		if (rc < 0) {
			sky__error_prefix("replaying journal record %u of %u",
					  i + 1, j->replay_count);
			return rc;
		}
		off += 4 + (size_t)len;
	}
	return 0;
}

void sky__journal_replay_done(sky_journal *j)
{
	free(j->replay);
	j->replay = NULL;
	j->replay_count = 0;
}

void sky__journal_close(sky_journal *j)
{
	if (j->fd < 0)
		return;
	if (j->pin)
		mdb_txn_abort(j->pin);
	j->pin = NULL;
	sky__journal_replay_done(j);
	close(j->fd);
	j->fd = -1;
}

void sky__journal_destroy(sky_journal *j)
{
	pthread_mutex_destroy(&j->grow_lock);
}
