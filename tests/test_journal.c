/*
 * test_journal.c - SKY_DURABILITY_JOURNAL: durable writes with one flush.
 *
 * The crash tests run a writer in a child process that queues outbox
 * writes in journal mode and reports each one on a pipe once the call has
 * returned (acknowledged). The parent SIGKILLs it at a random moment and
 * then makes things worse than a power cut could: it zeroes both of
 * LMDB's meta pages, so the cache can only open if recovery rolls LMDB
 * back to the journal's checkpoint. Every acknowledged write must then be
 * in the local view and in the outbox, and the cache must pass its full
 * check.
 *
 * Damage: a record damaged in the middle of the log is skipped and every
 * whole record after it replayed (and counted in stats); damage past
 * which no whole record can be found refuses the cache, keeping the
 * journal file as it was.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <jansson.h>

#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

#define APP "jrnl-app"

static sky_cache *open_mode(const char *dir, sky_durability d, int *rc_out)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = d;
	sky_cache *c = NULL;
	int rc = sky_cache_open(&c, dir, &o);
	if (rc_out)
		*rc_out = rc;
	return rc == 0 ? c : NULL;
}

/* The same with the deprecated durability flags (they still work). */
static sky_cache *open_flags(const char *dir, unsigned flags, int *rc_out)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = flags;
	sky_cache *c = NULL;
	int rc = sky_cache_open(&c, dir, &o);
	if (rc_out)
		*rc_out = rc;
	return rc == 0 ? c : NULL;
}

static void put_app(sky_cache *c)
{
	const char *app = "{\"applicationId\":\"" APP "\",\"name\":\"j\"}";
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app, strlen(app)) == 0);
}

/* The value of `key` in the session's data, or -1. */
static long data_value(sky_cache *c, const char *sid, const char *key)
{
	char *json = NULL;
	size_t len = 0;
	long v = -1;
	if (sky_data_get(c, APP, sid, &json, &len) == 0) {
		json_t *doc = json_loadb(json, len, 0, NULL);
		json_t *x = doc ? json_object_get(doc, key) : NULL;
		if (json_is_integer(x))
			v = (long)json_integer_value(x);
		json_decref(doc);
	}
	sky_free(json);
	return v;
}

static uint64_t queued(sky_cache *c)
{
	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	if (sky_outbox_counts_get(c, &n) != 0)
		return 0;
	return n.pending + n.in_flight + n.in_doubt + n.rejected;
}

/* A journal-mode cache in `dir` with the application and one session
 * created offline (its local id in *sid, the caller's). */
static sky_cache *journal_with_session(const char *dir, char **sid)
{
	sky_cache *c = open_mode(dir, SKY_DURABILITY_JOURNAL, NULL);
	CU_ASSERT_FATAL(c != NULL);
	put_app(c);
	const char *body = "{\"name\":\"one\"}";
	*sid = NULL;
	CU_ASSERT_FATAL(sky_session_create(c, APP, body, strlen(body), sid) ==
			0);
	return c;
}

static void test_journal__writes_survive_reopen(void)
{
	const char *dir = sky_test_tmpdir();
	int rc;
	char *sid;
	sky_cache *c = journal_with_session(dir, &sid);
	for (int i = 0; i < 20; i++) {
		char patch[64];
		snprintf(patch, sizeof(patch), "{\"k%d\":%d}", i, i);
		CU_ASSERT_FATAL(
		    sky_data_patch(c, APP, sid, patch, strlen(patch)) == 0);
	}
	CU_ASSERT(data_value(c, sid, "k19") == 19);
	sky_cache_close(c);

	char path[4200];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/journal", dir);
	CU_ASSERT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	CU_ASSERT(sb.st_size >= 4096);

	c = open_mode(dir, SKY_DURABILITY_JOURNAL, &rc);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(data_value(c, sid, "k0") == 0);
	CU_ASSERT(data_value(c, sid, "k19") == 19);
	CU_ASSERT(queued(c) == 21);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
	sky_free(sid);
}

/* Run fn(dir) in a child process; its exit status. */
static int in_child(const char *dir, int (*fn)(const char *dir))
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(fn(dir));
	int status = -1;
	waitpid(pid, &status, 0);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

/* While a journal-mode process runs: 0 when another process cannot open
 * the cache read-write (SKY_EBUSY, saying why) but can read it. */
static int other_process_view(const char *dir)
{
	int rc;
	if (open_mode(dir, 0, &rc) != NULL || rc != SKY_EBUSY ||
	    !strstr(sky_error_last()->message, "SKY_CACHE_JOURNAL"))
		return 1;
	sky_cache *r = open_flags(dir, SKY_CACHE_READONLY, &rc);
	if (!r)
		return 2;
	char *json = NULL;
	size_t len;
	rc = sky_app_get(r, APP, &json, &len);
	sky_free(json);
	sky_cache_close(r);
	return rc == 0 ? 0 : 3;
}

static int journal_open_refused(const char *dir)
{
	int rc;
	return open_mode(dir, SKY_DURABILITY_JOURNAL, &rc) == NULL &&
		       rc == SKY_EBUSY
		   ? 0
		   : 1;
}

static void test_journal__one_writer_process(void)
{
	const char *dir = sky_test_tmpdir();
	int rc;
	sky_cache *j = open_mode(dir, SKY_DURABILITY_JOURNAL, &rc);
	CU_ASSERT_FATAL(j != NULL);
	put_app(j);
	/* Other processes may read, not write. */
	CU_ASSERT(in_child(dir, other_process_view) == 0);
	/* In this process, a second handle of the same cache would clear the
	 * journal's pinned reader when closed (LMDB frees every reader slot
	 * of the process): refused. */
	CU_ASSERT(open_flags(dir, SKY_CACHE_READONLY, &rc) == NULL);
	CU_ASSERT(rc == SKY_EBUSY);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(sky_error_last()->message, "this process"));
	sky_cache_close(j);

	/* And the other way round: no journal mode while another writer. */
	sky_cache *w = open_mode(dir, 0, &rc);
	CU_ASSERT_FATAL(w != NULL);
	CU_ASSERT(in_child(dir, journal_open_refused) == 0);
	sky_cache_close(w);

	CU_ASSERT(open_flags(dir, SKY_CACHE_JOURNAL | SKY_CACHE_NOSYNC, &rc) ==
		  NULL);
	CU_ASSERT(rc == SKY_EINVAL);
}

/* A write to a session the cache shows closed is refused at once, in
 * either mode, and leaves nothing queued. */
static void test_journal__closed_session_refused(void)
{
	for (int mode = 0; mode < 2; mode++) {
		char dir[4200];
		snprintf(dir, sizeof(dir), "%s/m%d", sky_test_tmpdir(), mode);
		int rc;
		sky_cache *c = open_mode(
		    dir, mode ? SKY_DURABILITY_JOURNAL : SKY_DURABILITY_DEFAULT,
		    &rc);
		CU_ASSERT_FATAL(c != NULL);
		put_app(c);
		const char *open_s = "{\"applicationId\":\"" APP
				     "\",\"sessionId\":\"s-open\",\"status\":"
				     "\"open\",\"name\":\"o\",\"createdAt\":"
				     "\"2026-01-01T00:00:00Z\"}";
		const char *closed_s =
		    "{\"applicationId\":\"" APP
		    "\",\"sessionId\":\"s-done\",\"status\":"
		    "\"closed\",\"name\":\"c\",\"createdAt\":"
		    "\"2026-01-01T00:00:00Z\",\"properties\":"
		    "{\"status\":\"closed\"}}";
		CU_ASSERT_FATAL(sky_mirror_session_put(c, open_s,
						       strlen(open_s), "{}", 2,
						       1) == 0);
		CU_ASSERT_FATAL(sky_mirror_session_put(c, closed_s,
						       strlen(closed_s), "{}",
						       2, 1) == 0);
		const char *patch = "{\"k\":1}";
		CU_ASSERT(sky_data_patch(c, APP, "s-done", patch,
					 strlen(patch)) == SKY_EINVAL);
		CU_ASSERT_PTR_NOT_NULL(
		    strstr(sky_error_last()->message, "closed"));
		/* A property named status does not make a session closed. */
		const char *props = "{\"status\":\"closed\"}";
		CU_ASSERT(sky_session_set_properties(c, APP, "s-open", props,
						     strlen(props)) == 0);
		CU_ASSERT(sky_data_patch(c, APP, "s-open", patch,
					 strlen(patch)) == 0);
		CU_ASSERT(queued(c) == 2);
		sky_cache_close(c);
	}
}

/* Put the server's session `sid` (open, data {}), with `client_ref` (the
 * local id of a create it answers) unless NULL, as of `as_of_us`. */
static int put_server_session(sky_cache *c, const char *sid,
			      const char *client_ref, int64_t as_of_us)
{
	char json[512], ref[300] = "";
	if (client_ref)
		snprintf(ref, sizeof(ref), ",\"clientRef\":\"%s\"", client_ref);
	int len = snprintf(json, sizeof(json),
			   "{\"applicationId\":\"" APP
			   "\",\"sessionId\":\"%s\",\"status\":"
			   "\"open\",\"name\":\"s\",\"createdAt\":"
			   "\"2026-01-01T00:00:00Z\"%s}",
			   sid, ref);
	return sky_mirror_session_put(c, json, (size_t)len, "{}", 2, as_of_us);
}

/* ---- the crash writer ---- */

/* Queue writes, one line on `out` per acknowledged write: "c SID" for a
 * create, "d SID KEY VALUE" for a data patch ("D ..." for the writes of a
 * batch but its last). Every so often a write that is not journaled (an
 * application put) forces a checkpoint, and with `server` every tenth
 * call puts a session from the server and queues a write to it at once.
 * With `stop_after` the writer stops dead (no close, as in a crash) after
 * that many calls. */
static void crash_writer(const char *dir, int out, unsigned seed,
			 unsigned long stop_after, int server)
{
	sky_cache *c = open_mode(dir, SKY_DURABILITY_JOURNAL, NULL);
	const char *first = "{\"applicationId\":\"" APP "\",\"name\":\"j\"}";
	if (!c || sky_mirror_app_put(c, first, strlen(first)) != 0)
		_exit(3);
	srand(seed);
	char *sids[16];
	size_t n_sids = 0;
	char line[512];
	unsigned long calls = 0;
	for (unsigned long n = 0;; n++) {
		if (stop_after && calls++ == stop_after)
			_exit(0);
		if (n % 1500 == 1499) {
			const char *app = "{\"applicationId\":\"" APP
					  "\",\"name\":\"again\"}";
			if (sky_mirror_app_put(c, app, strlen(app)) != 0)
				_exit(4);
			continue;
		}
		if (server && n % 10 == 5) {
			/* A session from the server (a mirror write, folded in
			 * later) and at once a queued write to it: the
			 * record must not be replayed without the session. */
			char sid[64], patch[64], acked[256];
			snprintf(sid, sizeof(sid), "srv-%lu", n);
			if (put_server_session(c, sid, NULL, (int64_t)n + 1) !=
			    0)
				_exit(8);
			int plen = snprintf(patch, sizeof(patch),
					    "{\"w%lu\":%lu}", n, n);
			if (sky_data_patch(c, APP, sid, patch, (size_t)plen) !=
			    0)
				_exit(9);
			int k = snprintf(acked, sizeof(acked),
					 "d %s w%lu %lu\n", sid, n, n);
			if (write(out, acked, (size_t)k) != k)
				_exit(6);
			continue;
		}
		if (n_sids == 0 || (n_sids < 16 && rand() % 20 == 0)) {
			char body[128], *sid = NULL;
			snprintf(body, sizeof(body), "{\"name\":\"s%lu\"}", n);
			if (sky_session_create(c, APP, body, strlen(body),
					       &sid) != 0)
				_exit(5);
			sids[n_sids++] = sid;
			int k = snprintf(line, sizeof(line), "c %s\n", sid);
			if (write(out, line, (size_t)k) != k)
				_exit(6);
			continue;
		}
		/* One write alone, or a batch of up to four. */
		size_t k = rand() % 5 == 0 ? 2 + (size_t)rand() % 3 : 1;
		sky_write w[4];
		char bodies[4][64];
		for (size_t i = 0; i < k; i++) {
			snprintf(bodies[i], sizeof(bodies[i]), "{\"w%lu\":%lu}",
				 n + i, n + i);
			w[i] = (sky_write){SKY_WRITE_DATA,
					   APP,
					   sids[(size_t)rand() % n_sids],
					   bodies[i],
					   strlen(bodies[i]),
					   0,
					   NULL,
					   0,
					   NULL};
		}
		if (sky_write_batch(c, w, k) != 0)
			_exit(7);
		size_t used = 0;
		for (size_t i = 0; i < k; i++)
			used += (size_t)snprintf(
			    line + used, sizeof(line) - used,
			    "%c %s w%lu %lu\n", i + 1 < k ? 'D' : 'd',
			    w[i].session_id, n + i, n + i);
		/* One write(2) per batch: the parent reads whole batches. */
		if (write(out, line, used) != (ssize_t)used)
			_exit(6);
		n += k - 1;
	}
}

/*
 * Fork a writer process with a pipe back to this one: returns 0 in the
 * child, where *fd is the pipe's write end, and the child's pid here,
 * where *fd is its read end.
 */
static pid_t start_writer(int *fd)
{
	int fds[2];
	CU_ASSERT_FATAL(pipe(fds) == 0);
	fflush(NULL);
	pid_t pid = fork();
	CU_ASSERT_FATAL(pid >= 0);
	close(fds[pid == 0 ? 0 : 1]);
	*fd = fds[pid == 0 ? 1 : 0];
	return pid;
}

/* How run_and_kill's writer runs. */
#define WRITER_STOPS 1	   /* stops dead by itself after `target` calls */
#define WRITER_NO_SERVER 2 /* only queued writes, no server sessions */

/* Run the writer until it acknowledged about `target` writes, SIGKILL it,
 * and return every acknowledged line (the caller frees); `how` is
 * WRITER_* flags. */
static char *run_and_kill(const char *dir, unsigned long target, int how)
{
	int crash = how & WRITER_STOPS;
	int fd;
	pid_t pid = start_writer(&fd);
	if (pid == 0) {
		crash_writer(dir, fd, (unsigned)getpid(), crash ? target : 0,
			     !(how & WRITER_NO_SERVER));
		_exit(0);
	}
	size_t cap = 1 << 16, len = 0;
	char *acks = malloc(cap);
	unsigned long lines = 0;
	int killed = 0;
	for (;;) {
		if (len + 4096 > cap)
			acks = realloc(acks, cap *= 2);
		ssize_t n = read(fd, acks + len, cap - len - 1);
		if (n <= 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			lines += acks[len + (size_t)i] == '\n';
		len += (size_t)n;
		if (!crash && !killed && lines >= target) {
			kill(pid, SIGKILL);
			killed = 1;
		}
	}
	close(fd);
	int status;
	waitpid(pid, &status, 0);
	int ended_as_planned =
	    crash ? WIFEXITED(status) && WEXITSTATUS(status) == 0
		  : WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
	CU_ASSERT(ended_as_planned);
	acks[len] = '\0';
	return acks;
}

/* Worse than a power cut: neither meta page survives. */
static void zero_meta_pages(const char *dir)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	int fd = open(path, O_RDWR);
	CU_ASSERT_FATAL(fd >= 0);
	long psize = sysconf(_SC_PAGESIZE);
	char zeros[256] = {0};
	CU_ASSERT(pwrite(fd, zeros, sizeof(zeros), 0) ==
		  (ssize_t)sizeof(zeros));
	CU_ASSERT(pwrite(fd, zeros, sizeof(zeros), psize) ==
		  (ssize_t)sizeof(zeros));
	close(fd);
}

/* Open the cache after a crash, with `flags`: it must recover. */
static sky_cache *reopen_recovered(const char *dir, sky_durability d)
{
	sky_cache *c = open_mode(dir, d, NULL);
	if (!c)
		fprintf(stderr, "reopen: %s\n", sky_error_last()->message);
	CU_ASSERT_FATAL(c != NULL);
	return c;
}

/*
 * Every acknowledged write is in the local view; returns how many. A
 * write to a server session that the crash rolled back (the session was a
 * mirror write not yet folded in, journal.h) is queued without a view:
 * the session is put again, as the next sync would, and the write must
 * then show in it.
 */
static unsigned long verify_acks(sky_cache *c, char *acks)
{
	unsigned long checked = 0, missing = 0, back = 0;
	for (char *line = strtok(acks, "\n"); line; line = strtok(NULL, "\n")) {
		char sid[256], key[64];
		unsigned long v;
		checked++;
		if (sscanf(line, "c %255s", sid) == 1) {
			char *json = NULL;
			size_t len;
			if (sky_session_get(c, APP, sid, &json, &len) != 0) {
				fprintf(stderr, "missing create %s\n", sid);
				missing++;
			}
			sky_free(json);
		} else if (sscanf(line + 1, " %255s %63s %lu", sid, key, &v) ==
			       3 &&
			   (line[0] == 'd' || line[0] == 'D')) {
			char *json = NULL;
			size_t len;
			int rolled_back =
			    !strncmp(sid, "srv-", 4) &&
			    sky_session_get(c, APP, sid, &json, &len) ==
				SKY_ENOTFOUND;
			sky_free(json);
			if (rolled_back &&
			    put_server_session(c, sid, NULL, 1) != 0)
				missing++;
			back += rolled_back;
			if (data_value(c, sid, key) != (long)v) {
				fprintf(stderr, "missing %s on %s%s\n", key,
					sid, rolled_back ? " (put again)" : "");
				missing++;
			}
		} else {
			fprintf(stderr, "bad ack line: %s\n", line);
			missing++;
		}
	}
	CU_ASSERT(missing == 0);
	if (getenv("SKY_TEST_VERBOSE"))
		fprintf(stderr, "%lu acknowledged, %lu on sessions put again\n",
			checked, back);
	return checked;
}

static void crash_round(sky_durability reopen_mode)
{
	const char *dir = sky_test_tmpdir();
	unsigned long target = (unsigned long)sky_test_workload(2500, 150);
	target += (unsigned long)(getpid() % 500);
	char *acks = run_and_kill(dir, target, 0);
	zero_meta_pages(dir);
	sky_cache *c = reopen_recovered(dir, reopen_mode);
	/* Whole as recovered, before any session comes back. */
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	unsigned long acked = verify_acks(c, acks);
	CU_ASSERT(acked >= target);
	/* Queued writes: those acknowledged, and at most one more call (a
	 * batch of up to four) written but not acknowledged when the kill
	 * came. More would mean a write replayed on top of itself. */
	uint64_t q = queued(c);
	if (q < acked || q > acked + 4)
		fprintf(stderr, "%lu acknowledged, %lu queued\n", acked,
			(unsigned long)q);
	CU_ASSERT(q >= acked && q <= acked + 4);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
	free(acks);

	/* Recovered once: a second open has nothing to replay. */
	c = reopen_recovered(dir, SKY_DURABILITY_JOURNAL);
	CU_ASSERT(queued(c) >= acked);
	sky_cache_close(c);
}

static void test_journal__crash_recovered_in_journal_mode(void)
{
	crash_round(SKY_DURABILITY_JOURNAL);
}

static void test_journal__crash_recovered_by_plain_open(void)
{
	crash_round(SKY_DURABILITY_DEFAULT);
}

/* Offset of the last record in the journal file, or 0. */
static off_t last_record(const char *path, uint32_t *len_out)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	off_t off = 4096, last = 0;
	unsigned char head[32];
	uint64_t gen = 0;
	for (;;) {
		if (pread(fd, head, 32, off) != 32 || memcmp(head, "SKYR", 4))
			break;
		uint64_t g = 0;
		for (int i = 0; i < 8; i++)
			g = g << 8 | head[8 + i];
		if (gen && g != gen)
			break;
		gen = g;
		uint32_t len = (uint32_t)head[4] << 24 | head[5] << 16 |
			       head[6] << 8 | head[7];
		last = off;
		*len_out = len;
		off += 32 + ((len + 7) & ~7u);
	}
	close(fd);
	return last;
}

static void test_journal__torn_record_is_not_replayed(void)
{
	const char *dir = sky_test_tmpdir();
	/* Few enough writes that no checkpoint came between; the writer
	 * stops by itself and puts no server sessions (a queued write right
	 * after one goes without a record), so its last record is its last
	 * acknowledged call. */
	char *acks = run_and_kill(dir, 60, WRITER_STOPS | WRITER_NO_SERVER);
	char path[4200];
	snprintf(path, sizeof(path), "%s/journal", dir);
	uint32_t len = 0;
	off_t at = last_record(path, &len);
	CU_ASSERT_FATAL(at > 0 && len > 8);
	/* Flip a byte in the last record's payload: its CRC fails. */
	int fd = open(path, O_RDWR);
	unsigned char b;
	CU_ASSERT(pread(fd, &b, 1, at + 32 + len - 2) == 1);
	b ^= 0xff;
	CU_ASSERT(pwrite(fd, &b, 1, at + 32 + len - 2) == 1);
	close(fd);
	zero_meta_pages(dir);

	/* Split off the last call's lines: the last line and the 'D' lines
	 * of its batch before it. */
	size_t n = strlen(acks);
	while (n && acks[n - 1] == '\n')
		acks[--n] = '\0';
	char *cut = strrchr(acks, '\n');
	while (cut && cut > acks) {
		char *prev = cut - 1;
		while (prev > acks && *prev != '\n')
			prev--;
		char *start = *prev == '\n' ? prev + 1 : prev;
		if (*start != 'D')
			break;
		cut = prev > acks ? prev : NULL;
	}
	CU_ASSERT_FATAL(cut != NULL);
	char *lost = strdup(cut + 1);
	*cut = '\0';

	sky_cache *c = reopen_recovered(dir, SKY_DURABILITY_JOURNAL);
	unsigned long kept = verify_acks(c, acks);
	/* The torn call's writes are gone, and only they. */
	unsigned long gone = 0;
	for (char *line = strtok(lost, "\n"); line; line = strtok(NULL, "\n")) {
		char sid[256], key[64];
		unsigned long v;
		gone++;
		if (sscanf(line + 1, " %255s %63s %lu", sid, key, &v) == 3) {
			CU_ASSERT(data_value(c, sid, key) == -1);
		} else if (sscanf(line, "c %255s", sid) == 1) {
			char *json = NULL;
			size_t jl;
			CU_ASSERT(sky_session_get(c, APP, sid, &json, &jl) ==
				  SKY_ENOTFOUND);
			sky_free(json);
		}
	}
	CU_ASSERT(gone >= 1);
	CU_ASSERT(queued(c) == kept);
	sky_cache_close(c);
	free(lost);
	free(acks);
}

static void test_journal__reader_refuses_before_recovery(void)
{
	const char *dir = sky_test_tmpdir();
	char *acks = run_and_kill(dir, 30, WRITER_STOPS);
	free(acks);
	/* Same boot: the page cache still holds every write. */
	int rc;
	sky_cache *r = open_flags(dir, SKY_CACHE_READONLY, &rc);
	CU_ASSERT(r != NULL);
	sky_cache_close(r);
	/* After a restart LMDB may be torn until a writer recovers it. */
	char boot[4200];
	snprintf(boot, sizeof(boot), "%s/boot_id", dir);
	FILE *f = fopen(boot, "w");
	CU_ASSERT_FATAL(f != NULL);
	fputs("00000000-1111-2222-3333-444444444444\n", f);
	fclose(f);
	setenv("SKY_TEST_BOOT_ID_FILE", boot, 1);
	CU_ASSERT(open_flags(dir, SKY_CACHE_READONLY, &rc) == NULL);
	CU_ASSERT(rc == SKY_EBUSY);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "recover"));
	sky_cache *w = open_mode(dir, 0, &rc);
	CU_ASSERT_FATAL(w != NULL);
	sky_cache_close(w);
	r = open_flags(dir, SKY_CACHE_READONLY, &rc);
	CU_ASSERT(r != NULL);
	sky_cache_close(r);
	unsetenv("SKY_TEST_BOOT_ID_FILE");
}

/* A clean close leaves nothing to roll back: writes made afterwards by a
 * process without the journal stay when journal mode opens again. */
static void test_journal__clean_close_then_plain_writer(void)
{
	const char *dir = sky_test_tmpdir();
	int rc;
	char *sid;
	sky_cache *c = journal_with_session(dir, &sid);
	sky_cache_close(c);

	c = open_mode(dir, 0, &rc);
	CU_ASSERT_FATAL(c != NULL);
	const char *patch = "{\"later\":7}";
	CU_ASSERT(sky_data_patch(c, APP, sid, patch, strlen(patch)) == 0);
	sky_cache_close(c);

	c = open_mode(dir, SKY_DURABILITY_JOURNAL, &rc);
	CU_ASSERT_FATAL(c != NULL);
	CU_ASSERT(data_value(c, sid, "later") == 7);
	CU_ASSERT(queued(c) == 2);
	sky_cache_close(c);
	sky_free(sid);
}

/* The ids and bodies of APP/sid's queued writes, in queue order. */
typedef struct {
	const char *sid;
	uint64_t ids[8];
	char bodies[8][32];
	size_t n;
} queued_ctx;

static int collect_queued(const sky_outbox_entry *e, void *payload)
{
	queued_ctx *q = payload;
	if (strcmp(e->session_id, q->sid) != 0 || q->n == 8)
		return 0;
	q->ids[q->n] = e->id;
	snprintf(q->bodies[q->n], sizeof(q->bodies[0]), "%s", e->body);
	q->n++;
	return 0;
}

/*
 * A created session the server's copy adopts (its writes move to the
 * server's id: a mirror write that changes the outbox), then a write to
 * the server's id, then a crash: the adoption was made durable at once,
 * so after recovery both writes wait under the server's id in the order
 * they were made, and the later one shows in the session. Were the
 * adoption rolled back while the write's record replayed, the earlier
 * write would sit behind the create and reach the server last.
 */
static void test_journal__adoption_outlives_crash(void)
{
	const char *dir = sky_test_tmpdir();
	int fd;
	pid_t pid = start_writer(&fd);
	if (pid == 0) {
		sky_cache *c = open_mode(dir, SKY_DURABILITY_JOURNAL, NULL);
		const char *app = "{\"applicationId\":\"" APP "\"}";
		char *local = NULL;
		if (!c || sky_mirror_app_put(c, app, strlen(app)) != 0 ||
		    sky_session_create(c, APP, "{\"name\":\"n\"}", 12,
				       &local) != 0 ||
		    sky_data_patch(c, APP, local, "{\"k\":1}", 7) != 0)
			_exit(3);
		if (put_server_session(c, "srv-1", local, 1) != 0 ||
		    sky_data_patch(c, APP, "srv-1", "{\"k\":2}", 7) != 0)
			_exit(4);
		_exit(0); /* no close: a crash */
	}
	close(fd);
	int status;
	waitpid(pid, &status, 0);
	CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	sky_cache *c = reopen_recovered(dir, SKY_DURABILITY_JOURNAL);
	queued_ctx q = {"srv-1", {0}, {{0}}, 0};
	CU_ASSERT(sky_outbox_list(c, collect_queued, &q) == 0);
	CU_ASSERT(q.n == 2);
	CU_ASSERT(q.n == 2 && q.ids[0] < q.ids[1] &&
		  !strcmp(q.bodies[0], "{\"k\":1}") &&
		  !strcmp(q.bodies[1], "{\"k\":2}"));
	CU_ASSERT(data_value(c, "srv-1", "k") == 2);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* Mirror writes alone leave no record, yet they too commit unflushed:
 * after a crash the cache must still roll back to its checkpoint. */
static void test_journal__mirror_writes_alone_recover(void)
{
	const char *dir = sky_test_tmpdir();
	int fd;
	pid_t pid = start_writer(&fd);
	if (pid == 0) {
		sky_cache *c = open_mode(dir, SKY_DURABILITY_JOURNAL, NULL);
		if (!c)
			_exit(3);
		const char *app =
		    "{\"applicationId\":\"" APP "\",\"name\":\"j\"}";
		for (int i = 0; i < 200; i++)
			if (sky_mirror_app_put(c, app, strlen(app)) != 0)
				_exit(4);
		_exit(0); /* no close: as in a crash */
	}
	int status;
	waitpid(pid, &status, 0);
	close(fd);
	CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	zero_meta_pages(dir);
	sky_cache *c = reopen_recovered(dir, 0);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* The journal file's size and blocks. */
static void journal_stat(const char *dir, struct stat *sb)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/journal", dir);
	CU_ASSERT_FATAL(stat(path, sb) == 0);
}

/* An acknowledged write changes the journal's data only: neither its size
 * nor its blocks (the region is written with zeros before records go
 * there), so its one fdatasync() carries no metadata. */
static void test_journal__write_changes_no_metadata(void)
{
	const char *dir = sky_test_tmpdir();
	char *sid;
	sky_cache *c = journal_with_session(dir, &sid);
	struct stat before, after;
	journal_stat(dir, &before);
	CU_ASSERT(before.st_size >= 4 << 20);
	CU_ASSERT((uint64_t)before.st_blocks * 512 >= (uint64_t)before.st_size);
	for (int i = 0; i < 50; i++) {
		char patch[64];
		snprintf(patch, sizeof(patch), "{\"k%d\":%d}", i, i);
		CU_ASSERT_FATAL(
		    sky_data_patch(c, APP, sid, patch, strlen(patch)) == 0);
	}
	journal_stat(dir, &after);
	CU_ASSERT(after.st_size == before.st_size);
	CU_ASSERT(after.st_blocks == before.st_blocks);
	sky_cache_close(c);
	sky_free(sid);
}

#define GROW_WRITE_BYTES 8000

/* The records outgrow the journal's first region (4 MiB): it grows ahead
 * of them, and after a crash every acknowledged write comes back,
 * those past the first region too. */
static void test_journal__region_grows_then_crash(void)
{
	const char *dir = sky_test_tmpdir();
	const int n = 750; /* ~6 MiB of records */
	int fd;
	pid_t pid = start_writer(&fd);
	if (pid == 0) {
		sky_cache *c = open_mode(dir, SKY_DURABILITY_JOURNAL, NULL);
		const char *app =
		    "{\"applicationId\":\"" APP "\",\"name\":\"j\"}";
		const char *body = "{\"name\":\"grow\"}";
		char *sid = NULL;
		if (!c || sky_mirror_app_put(c, app, strlen(app)) != 0 ||
		    sky_session_create(c, APP, body, strlen(body), &sid))
			_exit(4);
		char line[160];
		int k = snprintf(line, sizeof(line), "%s\n", sid);
		if (write(fd, line, (size_t)k) != k)
			_exit(6);
		static char patch[GROW_WRITE_BYTES + 64];
		for (int i = 0; i < n; i++) {
			/* Eight keys rewritten: the records grow, the
			 * document does not. */
			int len = snprintf(patch, sizeof(patch),
					   "{\"k%d\":\"%0*d\",\"n\":%d}", i % 8,
					   GROW_WRITE_BYTES, i, i);
			if (sky_data_patch(c, APP, sid, patch, (size_t)len)) {
				fprintf(stderr, "patch %d: %s\n", i,
					sky_error_last()->message);
				_exit(5);
			}
			/* Past half the first region: let the checkpointer
			 * grow it (it would start the log again otherwise,
			 * which loses nothing but is not this case). */
			struct stat sb;
			for (int w = 0; i == 400 && w < 3000; w++) {
				char path[4200];
				snprintf(path, sizeof(path), "%s/journal", dir);
				if (stat(path, &sb) == 0 &&
				    sb.st_size > (4 << 20))
					break;
				usleep(10000);
			}
		}
		_exit(0); /* no close: as in a crash */
	}
	char sid[128] = {0};
	ssize_t got = read(fd, sid, sizeof(sid) - 1);
	int status;
	waitpid(pid, &status, 0);
	close(fd);
	CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_FATAL(got > 1);
	sid[strcspn(sid, "\n")] = '\0';
	struct stat sb;
	journal_stat(dir, &sb);
	CU_ASSERT(sb.st_size > 4 << 20);
	zero_meta_pages(dir);
	sky_cache *c = reopen_recovered(dir, SKY_DURABILITY_JOURNAL);
	CU_ASSERT(data_value(c, sid, "n") == n - 1);
	char *json = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(sky_data_get(c, APP, sid, &json, &len) == 0);
	json_t *doc = json_loadb(json, len, 0, NULL);
	for (int i = n - 8; i < n; i++) {
		char key[16], want[GROW_WRITE_BYTES + 1];
		snprintf(key, sizeof(key), "k%d", i % 8);
		snprintf(want, sizeof(want), "%0*d", GROW_WRITE_BYTES, i);
		const char *v = json_string_value(json_object_get(doc, key));
		CU_ASSERT(v && strcmp(v, want) == 0);
	}
	json_decref(doc);
	sky_free(json);
	CU_ASSERT(queued(c) == (uint64_t)n + 1);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* The map grows (LMDB's map resized under the pinned reader) while the
 * journal has records; then a crash: all acknowledged writes come back. */
static void test_journal__map_grows_then_crash(void)
{
	const char *dir = sky_test_tmpdir();
	int n = sky_test_workload(1500, 150);
	int fd;
	pid_t pid = start_writer(&fd);
	if (pid == 0) {
		sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
		o.durability = SKY_DURABILITY_JOURNAL;
		o.initial_map_bytes = (size_t)1 << 20;
		sky_cache *c = NULL;
		if (sky_cache_open(&c, dir, &o) != 0)
			_exit(3);
		const char *app =
		    "{\"applicationId\":\"" APP "\",\"name\":\"j\"}";
		char *sid = NULL, body[1200];
		const char *big = "{\"name\":\"big\"}";
		if (sky_mirror_app_put(c, app, strlen(app)) != 0 ||
		    sky_session_create(c, APP, big, strlen(big), &sid))
			_exit(4);
		char line[160];
		int k = snprintf(line, sizeof(line), "%s\n", sid);
		if (write(fd, line, (size_t)k) != k)
			_exit(6);
		for (int i = 0; i < n; i++) {
			/* ~1 KB of new data per write: the map must grow. */
			int len = snprintf(body, sizeof(body),
					   "{\"k%d\":\"%0*d\"}", i, 1000, i);
			if (sky_data_patch(c, APP, sid, body, (size_t)len) !=
			    0) {
				fprintf(stderr, "patch %d: %s\n", i,
					sky_error_last()->message);
				_exit(5);
			}
		}
		_exit(0); /* no close: as in a crash */
	}
	char sid[128] = {0};
	ssize_t got = read(fd, sid, sizeof(sid) - 1);
	int status;
	waitpid(pid, &status, 0);
	close(fd); /* after the writer is done with the pipe */
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "writer: exit %d, signal %d\n",
			WIFEXITED(status) ? WEXITSTATUS(status) : -1,
			WIFSIGNALED(status) ? WTERMSIG(status) : 0);
	CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CU_ASSERT_FATAL(got > 1);
	sid[strcspn(sid, "\n")] = '\0';
	zero_meta_pages(dir);
	sky_cache *c = reopen_recovered(dir, SKY_DURABILITY_JOURNAL);
	char key[32], *json = NULL;
	size_t len = 0;
	CU_ASSERT_FATAL(sky_data_get(c, APP, sid, &json, &len) == 0);
	json_t *doc = json_loadb(json, len, 0, NULL);
	sky_free(json);
	int missing = 0;
	for (int i = 0; i < n; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		missing += json_object_get(doc, key) == NULL;
	}
	json_decref(doc);
	CU_ASSERT(missing == 0);
	CU_ASSERT(queued(c) == (uint64_t)n + 1);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* Offsets and lengths of the records of the journal's current log, in
 * order (at most `max`); returns how many. */
static int all_records(const char *path, off_t *offs, uint32_t *lens, int max)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return 0;
	off_t off = 4096;
	unsigned char head[32];
	uint64_t gen = 0;
	int n = 0;
	while (n < max) {
		if (pread(fd, head, 32, off) != 32 || memcmp(head, "SKYR", 4))
			break;
		uint64_t g = 0;
		for (int i = 0; i < 8; i++)
			g = g << 8 | head[8 + i];
		if (gen && g != gen)
			break;
		gen = g;
		uint32_t len = (uint32_t)head[4] << 24 | head[5] << 16 |
			       head[6] << 8 | head[7];
		offs[n] = off;
		lens[n++] = len;
		off += 32 + ((len + 7) & ~7u);
	}
	close(fd);
	return n;
}

static void flip_payload_byte(const char *path, off_t at, uint32_t len)
{
	int fd = open(path, O_RDWR);
	CU_ASSERT_FATAL(fd >= 0);
	unsigned char b;
	CU_ASSERT(pread(fd, &b, 1, at + 32 + len / 2) == 1);
	b ^= 0xff;
	CU_ASSERT(pwrite(fd, &b, 1, at + 32 + len / 2) == 1);
	close(fd);
}

/* The writer's calls, one string each (its ack lines), in order. */
static int split_calls(char *acks, char **calls, int max)
{
	int n = 0;
	char *start = acks, *line = acks;
	for (char *p = acks; *p && n < max; p++) {
		if (*p != '\n')
			continue;
		/* A 'D' line belongs with the lines after it. */
		int more = *line == 'D' && p[1];
		line = p + 1;
		if (more)
			continue;
		*p = '\0';
		calls[n++] = start;
		start = p + 1;
	}
	return n;
}

static int call_present(sky_cache *c, char *call)
{
	int present = 0, lines = 0;
	char *save = NULL;
	for (char *line = strtok_r(call, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char sid[256], key[64];
		unsigned long v;
		lines++;
		if (sscanf(line + 1, " %255s %63s %lu", sid, key, &v) == 3)
			present += data_value(c, sid, key) == (long)v;
	}
	return lines && present == lines ? 1 : present == 0 ? 0 : -1;
}

static void test_journal__damaged_record_skipped(void)
{
	const char *dir = sky_test_tmpdir();
	char *acks = run_and_kill(dir, 60, WRITER_STOPS | WRITER_NO_SERVER);
	char path[4200];
	snprintf(path, sizeof(path), "%s/journal", dir);
	off_t offs[128];
	uint32_t lens[128];
	int nrec = all_records(path, offs, lens, 128);
	char *calls[128] = {NULL};
	int ncalls = split_calls(acks, calls, 128);
	/* One record per call: the writer stops before any checkpoint. */
	/* One record per call but perhaps the first (a write right after
	 * the application's put may go without one): align from the end. */
	CU_ASSERT_FATAL(nrec > 20 && (nrec == ncalls || nrec == ncalls - 1));
	int skew = ncalls - nrec;
	/* A data patch in the middle (a create's loss would leave later
	 * writes to its session without it). */
	int victim = ncalls / 2;
	while (victim < ncalls - 2 && calls[victim][0] == 'c')
		victim++;
	CU_ASSERT_FATAL(calls[victim][0] != 'c');
	flip_payload_byte(path, offs[victim - skew], lens[victim - skew]);
	zero_meta_pages(dir);

	sky_cache *c = reopen_recovered(dir, SKY_DURABILITY_JOURNAL);
	int bad = 0;
	for (int i = 0; i < ncalls; i++) {
		if (calls[i][0] == 'c')
			continue;
		int p = call_present(c, calls[i]);
		if (p != (i == victim ? 0 : 1)) {
			fprintf(stderr, "call %d of %d: %d\n", i, ncalls, p);
			bad++;
		}
	}
	/* Every intact record after the damaged one was applied, and the
	 * damage is counted. */
	CU_ASSERT(bad == 0);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.journal_damaged == 1);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
	free(acks);
}

static char *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(8 << 20);
	*len = buf ? fread(buf, 1, 8 << 20, f) : 0;
	fclose(f);
	return buf;
}

static void test_journal__damage_beyond_resync_refused(void)
{
	const char *dir = sky_test_tmpdir();
	char *acks = run_and_kill(dir, 40, WRITER_STOPS | WRITER_NO_SERVER);
	char path[4200];
	snprintf(path, sizeof(path), "%s/journal", dir);
	off_t offs[128];
	uint32_t lens[128];
	int nrec = all_records(path, offs, lens, 128);
	CU_ASSERT_FATAL(nrec > 10);
	/* Every record from the middle on fails its CRC: their heads say
	 * they were written, none can be read back. */
	for (int i = nrec / 2; i < nrec; i++)
		flip_payload_byte(path, offs[i], lens[i]);
	size_t before_len = 0, after_len = 0;
	char *before = read_all(path, &before_len);
	CU_ASSERT_FATAL(before != NULL);

	int rc = 0;
	sky_cache *c = open_mode(dir, SKY_DURABILITY_JOURNAL, &rc);
	CU_ASSERT(c == NULL && rc == SKY_EDAMAGED);
	CU_ASSERT(strstr(sky_error_last()->message, "journal is damaged") !=
		  NULL);
	CU_ASSERT(strstr(sky_error_last()->message, "salvage") != NULL);
	c = open_mode(dir, 0, &rc);
	CU_ASSERT(c == NULL && rc == SKY_EDAMAGED);
	sky_cache_close(c);
	/* The journal is kept byte for byte. */
	char *after = read_all(path, &after_len);
	CU_ASSERT_FATAL(after != NULL);
	CU_ASSERT(before_len == after_len &&
		  memcmp(before, after, before_len) == 0);
	free(before);
	free(after);
	free(acks);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_journal__writes_survive_reopen",
	     test_journal__writes_survive_reopen},
	    {"test_journal__one_writer_process",
	     test_journal__one_writer_process},
	    {"test_journal__closed_session_refused",
	     test_journal__closed_session_refused},
	    {"test_journal__crash_recovered_in_journal_mode",
	     test_journal__crash_recovered_in_journal_mode},
	    {"test_journal__crash_recovered_by_plain_open",
	     test_journal__crash_recovered_by_plain_open},
	    {"test_journal__torn_record_is_not_replayed",
	     test_journal__torn_record_is_not_replayed},
	    {"test_journal__reader_refuses_before_recovery",
	     test_journal__reader_refuses_before_recovery},
	    {"test_journal__clean_close_then_plain_writer",
	     test_journal__clean_close_then_plain_writer},
	    {"test_journal__adoption_outlives_crash",
	     test_journal__adoption_outlives_crash},
	    {"test_journal__mirror_writes_alone_recover",
	     test_journal__mirror_writes_alone_recover},
	    {"test_journal__map_grows_then_crash",
	     test_journal__map_grows_then_crash},
	    {"test_journal__write_changes_no_metadata",
	     test_journal__write_changes_no_metadata},
	    {"test_journal__region_grows_then_crash",
	     test_journal__region_grows_then_crash},
	    {"test_journal__damaged_record_skipped",
	     test_journal__damaged_record_skipped},
	    {"test_journal__damage_beyond_resync_refused",
	     test_journal__damage_beyond_resync_refused},
	    {NULL, NULL},
	};
	return sky_test_main("journal", cases);
}
