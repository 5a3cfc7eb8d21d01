/*
 * test_store.c - the LMDB environment: file modes and the refusal of
 * unsafe directories, schema version checks, read-only opens, map growth
 * (no MDB_MAP_FULL reaches a caller), stale reader slots of dead
 * processes, backup, and a second process reading while one writes.
 */
#include "config.h"

#include <jansson.h>
#include <lmdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

static void test_store__creates_private_files(void)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/a/b/cache", sky_test_tmpdir());
	sky_cache *c = NULL;
	mode_t old = umask(0);
	int rc = sky_cache_open(&c, dir, NULL);
	umask(old);
	CU_ASSERT_FATAL(rc == 0);
	sky_cache_close(c);
	struct stat sb;
	CU_ASSERT(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	char path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	CU_ASSERT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	CU_ASSERT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
}

static void test_store__refuses_unsafe_directory(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(chmod(dir, 0777) == 0);
	CU_ASSERT(sky_cache_open(&c, dir, NULL) == SKY_EPERM);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "writable"));
	CU_ASSERT(chmod(dir, 0700) == 0);
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	sky_cache_close(c);
	char path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	CU_ASSERT(chmod(path, 0666) == 0);
	CU_ASSERT(sky_cache_open(&c, dir, NULL) == SKY_EPERM);
}

static void test_store__readonly_missing(void)
{
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/none", sky_test_tmpdir());
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = SKY_CACHE_READONLY;
	sky_cache *c = NULL;
	CU_ASSERT(sky_cache_open(&c, dir, &o) < 0);
	struct stat sb;
	CU_ASSERT(stat(dir, &sb) < 0); /* nothing created */
	sky_cache_options bad = SKY_CACHE_OPTIONS_INIT;
	bad.version = 99;
	CU_ASSERT(sky_cache_open(&c, dir, &bad) == SKY_EINVAL);
}

/*
 * A write (or, with MDB_RDONLY, read) transaction on the LMDB environment
 * of the cache directory `dir`, opened raw, past the library: what an
 * older library or damage on disk would leave is written this way.
 */
static MDB_txn *raw_txn(const char *dir, unsigned flags, MDB_env **env)
{
	MDB_txn *txn;
	CU_ASSERT_FATAL(mdb_env_create(env) == 0);
	mdb_env_set_maxdbs(*env, 16);
	CU_ASSERT_FATAL(mdb_env_open(*env, dir, flags, 0600) == 0);
	CU_ASSERT_FATAL(mdb_txn_begin(*env, NULL, flags, &txn) == 0);
	return txn;
}

static void test_store__schema_version_checked(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	sky_cache_close(c);
	/* Pretend a newer release wrote this cache. */
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	txn = raw_txn(dir, 0, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	unsigned char v[4] = {0, 0, 0, 99};
	MDB_val key = {6, "schema"}, val = {4, v};
	CU_ASSERT(mdb_put(txn, dbi, &key, &val, 0) == 0);
	CU_ASSERT(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	CU_ASSERT(sky_cache_open(&c, dir, NULL) == SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "schema"));
}

static char *session_json(int i)
{
	char *s;
	CU_ASSERT_FATAL(
	    asprintf(&s,
		     "{\"applicationId\":\"app\",\"sessionId\":\"s%06d\","
		     "\"status\":\"open\",\"name\":\"n%d\",\"createdAt\":"
		     "\"2024-05-01T10:00:00Z\",\"properties\":{\"k\":\"v%d\"}}",
		     i, i, i % 7) > 0);
	return s;
}

static void test_store__map_grows(void)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.initial_map_bytes = 256 * 1024; /* a few dozen pages */
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	uint64_t first = st.map_bytes;
	/* ~8 MB of session data: far past the first map. Under valgrind
	 * ~2 MB, still eight times the first map. */
	int count = sky_test_workload(128, 32);
	char *data = malloc(64 * 1024);
	for (int i = 0; i < count; i++) {
		char *s = session_json(i);
		int n = sprintf(data, "{\"blob\":\"");
		memset(data + n, 'a' + i % 26, 60000);
		strcpy(data + n + 60000, "\"}");
		int rc = sky_mirror_session_put(c, s, strlen(s), data,
						strlen(data), 1);
		if (rc)
			fprintf(stderr, "\nput: %s\n",
				sky_error_last()->message);
		CU_ASSERT(rc == 0);
		free(s);
	}
	free(data);
	sky_cache_stats(c, &st);
	CU_ASSERT(st.sessions == (uint64_t)count);
	CU_ASSERT(st.map_bytes > first);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

static void test_store__clears_stale_readers(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	sky_cache_close(c);
	/* A child takes a reader slot and dies without releasing it. */
	pid_t pid = fork();
	if (pid == 0) {
		sky_cache *cc;
		sky_reader *r;
		if (sky_cache_open(&cc, dir, NULL) || sky_reader_begin(&r, cc))
			_exit(1);
		kill(getpid(), SIGKILL);
		_exit(2);
	}
	int status;
	waitpid(pid, &status, 0);
	CU_ASSERT(WIFSIGNALED(status));
	MDB_env *env;
	int dead = -1;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	sky_cache_close(c);
	/* Opening cleared it: nothing is left for a second check to clear. */
	CU_ASSERT_FATAL(mdb_env_create(&env) == 0);
	mdb_env_set_maxdbs(env, 16);
	CU_ASSERT_FATAL(mdb_env_open(env, dir, 0, 0600) == 0);
	CU_ASSERT(mdb_reader_check(env, &dead) == 0);
	CU_ASSERT(dead == 0);
	mdb_env_close(env);
}

static void test_store__backup(void)
{
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), NULL) == 0);
	for (int i = 0; i < 50; i++) {
		char *s = session_json(i);
		CU_ASSERT(sky_mirror_session_put(c, s, strlen(s),
						 "{\"a\":[1,2]}", 11, 1) == 0);
		free(s);
	}
	char dest[4096];
	snprintf(dest, sizeof(dest), "%s/copy", sky_test_tmpdir());
	CU_ASSERT(sky_cache_backup(c, dest) == 0);
	CU_ASSERT(sky_cache_backup(c, dest) == SKY_EEXISTS);
	sky_cache_close(c);
	CU_ASSERT_FATAL(sky_cache_open(&c, dest, NULL) == 0);
	sky_stats st = SKY_STATS_INIT;
	sky_cache_stats(c, &st);
	CU_ASSERT(st.sessions == 50);
	char *d;
	CU_ASSERT(sky_data_get(c, "app", "s000007", &d, NULL) == 0);
	SKY_ASSERT_JSON_EQ(d, "{\"a\":[1,2]}");
	free(d);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/*
 * A writer process applies a stream of batches, each renaming all K
 * sessions to the same generation and setting matching name/description
 * in one event; a reader process checks in every snapshot that all
 * sessions agree, so it never sees half an event or half a batch.
 */
#define K 20
/* Batches the writer applies (fewer under valgrind, where the reader
 * still sees many of them go by). */
#define ROUNDS sky_test_workload(300, 100)

static int reader_loop(const char *dir, const char *stop_file)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = SKY_CACHE_READONLY;
	sky_cache *c;
	if (sky_cache_open(&c, dir, &o))
		return 10;
	int snapshots = 0, changes = 0, last = -1;
	for (;;) {
		int done = access(stop_file, F_OK) == 0;
		sky_reader *r;
		if (sky_reader_begin(&r, c))
			return 11;
		int gen = -1;
		for (int i = 0; i < K; i++) {
			char sid[16];
			const char *json;
			snprintf(sid, sizeof(sid), "s%d", i);
			if (sky_reader_session(r, "app", sid, &json, NULL))
				return 12;
			int n = -1, d = -2;
			const char *pn = strstr(json, "\"name\":\"g");
			const char *pd = strstr(json, "\"description\":\"g");
			if (!pn || !pd)
				return 13;
			n = atoi(pn + 9);
			d = atoi(pd + 16);
			if (n != d)
				return 14; /* half an event */
			if (gen == -1)
				gen = n;
			else if (gen != n)
				return 15; /* half a batch */
		}
		sky_reader_end(r);
		if (gen != last)
			changes++;
		last = gen;
		snapshots++;
		if (done)
			break;
	}
	sky_cache_close(c);
	return snapshots > 0 && changes > 1 ? 0 : 16;
}

/* Fill items[] with one event per session: creation (gen 0) or renaming
 * to generation `gen`, with a createdAt that grows with gen. */
static void make_round(sky_mirror_event_item *items, char **texts, int gen)
{
	for (int i = 0; i < K; i++) {
		CU_ASSERT_FATAL(
		    asprintf(
			&texts[i],
			"{\"applicationId\":\"app\",\"sessionId\":"
			"\"s%d\",\"eventId\":\"g%d-%d\",\"eventType\":"
			"\"%s\",\"createdAt\":\"2024-01-01T00:%02d:%02dZ\","
			"\"session\":{\"name\":\"g%d\",\"description\":"
			"\"g%d\"}}",
			i, gen, i, gen ? "session_updated" : "session_created",
			gen / 60, gen % 60, gen, gen) > 0);
		items[i].json = texts[i];
		items[i].len = strlen(texts[i]);
	}
}

static void test_store__reader_process_sees_whole_events(void)
{
	const char *dir = sky_test_tmpdir();
	char stop[4200];
	snprintf(stop, sizeof(stop), "%s.stop", dir);
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	sky_mirror_event_item items[K];
	char *texts[K];
	make_round(items, texts, 0);
	CU_ASSERT(sky_mirror_event_apply_batch(c, items, K) == 0);
	for (int i = 0; i < K; i++)
		free(texts[i]);

	pid_t pid = fork();
	if (pid == 0)
		_exit(reader_loop(dir, stop));
	/* Keep writing while the reader reads. */
	for (int gen = 1; gen <= ROUNDS; gen++) {
		make_round(items, texts, gen);
		CU_ASSERT(sky_mirror_event_apply_batch(c, items, K) == 0);
		for (int i = 0; i < K; i++) {
			CU_ASSERT(items[i].outcome == SKY_MIRROR_APPLIED);
			free(texts[i]);
		}
	}
	FILE *f = fopen(stop, "w");
	if (f)
		fclose(f);
	int status;
	waitpid(pid, &status, 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fprintf(stderr, "\nreader exit %d\n", WEXITSTATUS(status));
	CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	unlink(stop);
	sky_cache_close(c);
}

/* The whole of `path`, for comparing a file before and after. */
static char *file_bytes(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char *buf = malloc(4 << 20);
	*len = buf ? fread(buf, 1, 4 << 20, f) : 0;
	fclose(f);
	return buf;
}

/* Change the meta database of the cache in `dir` raw: delete the schema
 * record (how 1), give it a bad seal (2), or drop the database (3). */
static void hurt_meta(const char *dir, int how)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	txn = raw_txn(dir, 0, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "meta", 0, &dbi) == 0);
	MDB_val key = {6, "schema"};
	if (how == 1) {
		CU_ASSERT(mdb_del(txn, dbi, &key, NULL) == 0);
	} else if (how == 2) {
		unsigned char v[8] = {0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef};
		MDB_val val = {8, v};
		CU_ASSERT(mdb_put(txn, dbi, &key, &val, 0) == 0);
	} else {
		CU_ASSERT(mdb_drop(txn, dbi, 1) == 0);
	}
	CU_ASSERT(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
}

/* A cache whose meta record is missing or damaged is refused, for
 * writing and reading, and left as it is: never started afresh. */
static void test_store__damaged_meta_refused(void)
{
	for (int how = 1; how <= 3; how++) {
		const char *dir = sky_test_tmpdir();
		sky_cache *c = NULL;
		CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
		const char *app = "{\"applicationId\":\"a\",\"name\":\"n\"}";
		CU_ASSERT(sky_mirror_app_put(c, app, strlen(app)) == 0);
		sky_cache_close(c);
		hurt_meta(dir, how);
		char path[4200];
		snprintf(path, sizeof(path), "%s/data.mdb", dir);
		size_t blen = 0, alen = 0;
		char *before = file_bytes(path, &blen);
		CU_ASSERT_FATAL(before != NULL);
		c = NULL;
		CU_ASSERT(sky_cache_open(&c, dir, NULL) == SKY_EDAMAGED);
		CU_ASSERT(strstr(sky_error_last()->message,
				 "meta record is damaged") != NULL);
		sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
		o.flags = SKY_CACHE_READONLY;
		CU_ASSERT(sky_cache_open(&c, dir, &o) == SKY_EDAMAGED);
		char *after = file_bytes(path, &alen);
		CU_ASSERT_FATAL(after != NULL);
		CU_ASSERT(alen == blen && memcmp(before, after, blen) == 0);
		free(before);
		free(after);
	}
}

/* A cache of schema 1 (no seals) is read as it is, and sealed by its
 * first read-write open. */
static void test_store__schema1_upgraded(void)
{
	const char *dir = sky_test_tmpdir();
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, apps;
	txn = raw_txn(dir, 0, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta) == 0);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "apps", MDB_CREATE, &apps) == 0);
	/* The databases every cache of schema 1 has. */
	static const char *const others[] = {
	    "roles",   "sessions", "data",
	    "evlog",   "evseq",	   "pending",
	    "sevents", "outbox",   "outbox_by_session",
	    "server",  "alias"};
	for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
		MDB_dbi d;
		CU_ASSERT(mdb_dbi_open(txn, others[i], MDB_CREATE, &d) == 0);
	}
	MDB_dbi idx;
	CU_ASSERT(mdb_dbi_open(txn, "index", MDB_CREATE | MDB_DUPSORT, &idx) ==
		  0);
	unsigned char v[4] = {0, 0, 0, 1};
	MDB_val key = {6, "schema"}, val = {4, v};
	CU_ASSERT(mdb_put(txn, meta, &key, &val, 0) == 0);
	const char *app = "{\"applicationId\":\"old\",\"name\":\"o\"}";
	MDB_val ak = {3, "old"}, av = {strlen(app) + 1, (void *)app};
	CU_ASSERT(mdb_put(txn, apps, &ak, &av, 0) == 0);
	CU_ASSERT(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);

	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = SKY_CACHE_READONLY;
	sky_cache *c = NULL;
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 1);
	char *json = NULL;
	size_t len = 0;
	CU_ASSERT(sky_app_get(c, "old", &json, &len) == 0);
	sky_free(json);
	sky_cache_close(c);
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 2);
	json = NULL;
	CU_ASSERT(sky_app_get(c, "old", &json, &len) == 0);
	CU_ASSERT(json && strstr(json, "\"o\"") != NULL);
	sky_free(json);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* Seals a stored value as the library does (sealed.c): p has room for
 * len + 4 bytes. */
void sky__seal_write(unsigned char *p, size_t len);

/*
 * Turn the cache in `dir` into one schema 2 wrote: the schema record says
 * 2, and every whole document's text lacks the NUL schema 3 writes after
 * it. Returns the number of documents changed.
 */
static int make_schema2(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, data;
	MDB_cursor *cur;
	MDB_val k, v;
	int changed = 0;
	txn = raw_txn(dir, 0, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "data", 0, &data) == 0);
	unsigned char version[8] = {0, 0, 0, 2};
	sky__seal_write(version, 4);
	MDB_val key = {6, "schema"}, val = {8, version};
	CU_ASSERT(mdb_put(txn, meta, &key, &val, 0) == 0);
	CU_ASSERT_FATAL(mdb_cursor_open(txn, data, &cur) == 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		const unsigned char *p = v.mv_data;
		size_t n = v.mv_size - 4; /* without the seal */
		if (k.mv_size != 8 || n < 3 || p[0] != '{' || p[n - 1] != 0)
			continue;
		unsigned char *b = malloc(n + 3);
		memcpy(b, p, n - 1);
		sky__seal_write(b, n - 1);
		MDB_val nv = {n + 3, b};
		CU_ASSERT(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT) == 0);
		free(b);
		changed++;
	}
	mdb_cursor_close(cur);
	CU_ASSERT(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	return changed;
}

/* The header value of session s000001's document, raw: whether it ends
 * with the NUL of schema 3 (before its seal). */
static int stored_with_nul(const char *dir)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi data;
	MDB_cursor *cur;
	MDB_val k, v;
	int nul = -1;
	txn = raw_txn(dir, MDB_RDONLY, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "data", 0, &data) == 0);
	CU_ASSERT_FATAL(mdb_cursor_open(txn, data, &cur) == 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		if (k.mv_size == 8 && v.mv_size > 5)
			nul = ((unsigned char *)v.mv_data)[v.mv_size - 5] == 0;
	mdb_cursor_close(cur);
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return nul;
}

/* sky_reader_data's text (NUL-terminated, of the length it says),
 * sky_reader_data_copy's and sky_data_get's copies, and what
 * sky_reader_data_into writes into a new, a too small and a too large
 * buffer, all equal `want`. */
static void data_reads(sky_cache *c, const char *want)
{
	sky_reader *r;
	const char *text = NULL;
	size_t len = 0;
	char *copy = NULL;
	CU_ASSERT_FATAL(sky_reader_begin(&r, c) == 0);
	CU_ASSERT(sky_reader_data(r, "app", "s000001", &text, &len) == 0);
	CU_ASSERT(text && len == strlen(want) && strlen(text) == len &&
		  memcmp(text, want, len) == 0);
	len = 0;
	CU_ASSERT(sky_reader_data_copy(r, "app", "s000001", &copy, &len) == 0);
	CU_ASSERT(copy && copy != text && len == strlen(want) &&
		  strcmp(copy, want) == 0);
	sky_free(copy);
	copy = NULL;
	CU_ASSERT(sky_reader_data_copy(r, "app", "s999999", &copy, &len) ==
		  SKY_ENOTFOUND);
	CU_ASSERT(copy == NULL);

	char *buf = NULL;
	size_t size = 12345;
	len = 0;
	CU_ASSERT(
	    sky_reader_data_into(r, "app", "s000001", &buf, &size, &len) == 0);
	CU_ASSERT(buf && size > len && len == strlen(want) &&
		  strcmp(buf, want) == 0);
	/* Too small: grown. */
	free(buf);
	buf = malloc(size = 3);
	CU_ASSERT_FATAL(buf != NULL);
	memcpy(buf, "xy", 3);
	CU_ASSERT(
	    sky_reader_data_into(r, "app", "s000001", &buf, &size, NULL) == 0);
	CU_ASSERT(buf && size > strlen(want) && strcmp(buf, want) == 0);
	/* Too large, holding other text: replaced, the buffer kept. */
	size_t big = strlen(want) * 2 + 64;
	char *large = realloc(buf, big);
	CU_ASSERT_FATAL(large != NULL);
	memset(large, 'x', big - 1);
	large[big - 1] = '\0';
	buf = large;
	size = big;
	CU_ASSERT(
	    sky_reader_data_into(r, "app", "s000001", &buf, &size, &len) == 0);
	CU_ASSERT(buf == large && size == big && len == strlen(want) &&
		  strcmp(buf, want) == 0);
	/* A miss leaves the buffer the caller's, as it was. */
	CU_ASSERT(sky_reader_data_into(r, "app", "s999999", &buf, &size,
				       &len) == SKY_ENOTFOUND);
	CU_ASSERT(buf == large && size == big);
	CU_ASSERT(sky_reader_data_into(r, "app", "s000001", NULL, &size,
				       &len) == SKY_EINVAL);
	free(buf);
	sky_reader_end(r);
	CU_ASSERT(sky_data_get(c, "app", "s000001", &copy, &len) == 0);
	CU_ASSERT(copy && len == strlen(want) && strcmp(copy, want) == 0);
	sky_free(copy);
}

/*
 * Set the cache's schema record to `version` (2 on), and count the runs of
 * members stored in its documents (doc_layout.h).
 */
static size_t set_schema_count_runs(const char *dir, unsigned version)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi meta, data;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t runs = 0;
	txn = raw_txn(dir, 0, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "meta", 0, &meta) == 0);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "data", 0, &data) == 0);
	if (version) {
		unsigned char vb[8] = {0, 0, 0, (unsigned char)version};
		sky__seal_write(vb, 4);
		MDB_val key = {6, "schema"}, val = {8, vb};
		CU_ASSERT(mdb_put(txn, meta, &key, &val, 0) == 0);
	}
	CU_ASSERT_FATAL(mdb_cursor_open(txn, data, &cur) == 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0)
		runs += k.mv_size >= 12 && v.mv_size > 0 &&
			((unsigned char *)v.mv_data)[0] == 'r';
	mdb_cursor_close(cur);
	CU_ASSERT(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	return runs;
}

/* A document of `items` small objects, member by member when large. */
static char *items_doc(unsigned items, unsigned rev)
{
	size_t cap = 64 + (size_t)items * 64, len = 0;
	char *b = malloc(cap);
	len += (size_t)snprintf(b + len, cap - len, "{\"items\":{");
	for (unsigned i = 0; i < items; i++)
		len += (size_t)snprintf(b + len, cap - len,
					"%s\"i%04u\":{\"n\":%u,\"s\":"
					"\"status-%u\"}",
					i ? "," : "", i, i, rev);
	snprintf(b + len, cap - len, "},\"rev\":%u}", rev);
	return b;
}

/*
 * Runs of members: a new cache stores a large document's small members
 * in runs (schema 4); one of schema 3 keeps its schema and writes its
 * documents without them, while still reading those it has.
 */
static void test_store__schema3_no_runs(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	sky_stats st = SKY_STATS_INIT;
	char *s = session_json(1);
	char *big = items_doc(600, 1), *again = items_doc(600, 2);
	CU_ASSERT_FATAL(strlen(big) > 16384);
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 4);
	CU_ASSERT_FATAL(
	    sky_mirror_session_put(c, s, strlen(s), big, strlen(big), 1) == 0);
	data_reads(c, big);
	sky_cache_close(c);
	size_t runs = set_schema_count_runs(dir, 3);
	CU_ASSERT(runs > 10 && runs < 600);

	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 3);
	data_reads(c, big);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	CU_ASSERT(sky_mirror_session_put(c, s, strlen(s), again, strlen(again),
					 1) == 0);
	data_reads(c, again);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
	CU_ASSERT(set_schema_count_runs(dir, 0) == 0);
	free(big);
	free(again);
	free(s);
}

/*
 * Flip one byte in the middle of the value of the `nth` member entry of
 * type `type` ('r' a run, 'o' an object member) of the cache's documents,
 * as damage on disk would, leaving its seal as it was. Returns whether it
 * found one.
 */
static int damage_member(const char *dir, char type, unsigned nth)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi data;
	MDB_cursor *cur;
	MDB_val k, v;
	int found = 0;
	txn = raw_txn(dir, 0, &env);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, "data", 0, &data) == 0);
	CU_ASSERT_FATAL(mdb_cursor_open(txn, data, &cur) == 0);
	while (!found && mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		if (k.mv_size <= 12 || v.mv_size < 6 ||
		    ((unsigned char *)v.mv_data)[0] != (unsigned char)type ||
		    nth-- > 0)
			continue;
		unsigned char *copy = malloc(v.mv_size);
		CU_ASSERT_FATAL(copy != NULL);
		memcpy(copy, v.mv_data, v.mv_size);
		/* The middle of a run's text; the last byte of an object's
		 * child id. */
		copy[type == 'r' ? (v.mv_size - 4) / 2 : 4] ^= 0x01;
		MDB_val nv = {v.mv_size, copy};
		CU_ASSERT(mdb_cursor_put(cur, &k, &nv, MDB_CURRENT) == 0);
		free(copy);
		found = 1;
	}
	mdb_cursor_close(cur);
	CU_ASSERT(mdb_txn_commit(txn) == 0);
	mdb_env_close(env);
	return found;
}

/*
 * A large document (member form, in runs) whose stored bytes are damaged:
 * every read of its text (borrowed, copied, into a buffer, its own
 * snapshot) says so (SKY_EDAMAGED, naming the checksum), never hands
 * out the damaged text, and the cache refuses writes from then on; a
 * damaged object member (its child's id) is caught before it is
 * followed. The other session's document still reads in a new cache of
 * the same content.
 */
static void test_store__damaged_member_document(void)
{
	for (int round = 0; round < 2; round++) {
		const char *dir = sky_test_tmpdir();
		sky_cache *c = NULL;
		char *s = session_json(1);
		char *big = items_doc(600, 1);
		CU_ASSERT_FATAL(strlen(big) > 16384);
		CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
		CU_ASSERT_FATAL(sky_mirror_session_put(c, s, strlen(s), big,
						       strlen(big), 1) == 0);
		data_reads(c, big);
		sky_cache_close(c);
		CU_ASSERT_FATAL(
		    damage_member(dir, round ? 'o' : 'r', round ? 0 : 3));

		CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
		sky_reader *r;
		const char *text = NULL;
		char *copy = NULL, *buf = NULL;
		size_t size = 0;
		CU_ASSERT_FATAL(sky_reader_begin(&r, c) == 0);
		CU_ASSERT(sky_reader_data_into(r, "app", "s000001", &buf, &size,
					       NULL) == SKY_EDAMAGED);
		CU_ASSERT(strstr(sky_error_last()->message,
				 "fails its checksum") != NULL);
		CU_ASSERT(sky_reader_data(r, "app", "s000001", &text, NULL) ==
			  SKY_EDAMAGED);
		CU_ASSERT(text == NULL);
		CU_ASSERT(sky_reader_data_copy(r, "app", "s000001", &copy,
					       NULL) == SKY_EDAMAGED);
		CU_ASSERT(copy == NULL);
		sky_reader_end(r);
		free(buf);
		CU_ASSERT(sky_data_get(c, "app", "s000001", &copy, NULL) ==
			  SKY_EDAMAGED);
		CU_ASSERT(copy == NULL);
		CU_ASSERT(sky_mirror_session_put(c, s, strlen(s), "{}", 2, 2) ==
			  SKY_EDAMAGED);
		sky_cache_close(c);
		free(big);
		free(s);
	}
}

/*
 * A new cache (schema 3 on) ends its whole documents in a NUL. One of
 * schema 2 (whole documents without it) reads as it is, read-only and
 * read-write, stays schema 2 (a process of an older library may have it
 * open) and keeps writing its documents without the NUL; both read the
 * same through sky_reader_data and sky_data_get, and pass check. A
 * 12-byte text never gets the NUL (it would read as a member header).
 */
static void test_store__schema2_kept(void)
{
	const char *dir = sky_test_tmpdir();
	const char *data = "{\"a\":1,\"bb\":[true,null,\"x\"]}";
	const char *again = "{\"a\":2}";
	const char *twelve = "{\"ab\":12345}";
	sky_cache *c = NULL;
	sky_stats st = SKY_STATS_INIT;
	char *s = session_json(1);
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 4);
	CU_ASSERT_FATAL(sky_mirror_session_put(c, s, strlen(s), data,
					       strlen(data), 1) == 0);
	data_reads(c, data);
	sky_cache_close(c);
	CU_ASSERT(stored_with_nul(dir) == 1);
	CU_ASSERT(make_schema2(dir) == 1);
	CU_ASSERT(stored_with_nul(dir) == 0);

	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = SKY_CACHE_READONLY;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 2);
	data_reads(c, data);
	sky_cache_close(c);

	/* The raw reads need the cache closed: a second LMDB handle of the
	 * directory in this process would drop the cache's reader slots. */
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 2);
	data_reads(c, data);
	CU_ASSERT(sky_mirror_session_put(c, s, strlen(s), again, strlen(again),
					 1) == 0);
	data_reads(c, again);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
	CU_ASSERT(stored_with_nul(dir) == 0);

	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_cache_stats(c, &st) == 0 && st.schema_version == 2);
	sky_cache_close(c);

	/* A new cache, and the 12-byte text. */
	dir = sky_test_tmpdir();
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(strlen(twelve) == 12);
	CU_ASSERT(sky_mirror_session_put(c, s, strlen(s), twelve,
					 strlen(twelve), 1) == 0);
	data_reads(c, twelve);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
	CU_ASSERT(stored_with_nul(dir) == 0);
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT(sky_mirror_session_put(c, s, strlen(s), again, strlen(again),
					 1) == 0);
	sky_cache_close(c);
	CU_ASSERT(stored_with_nul(dir) == 1);
	free(s);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_store__creates_private_files",
	     test_store__creates_private_files},
	    {"test_store__refuses_unsafe_directory",
	     test_store__refuses_unsafe_directory},
	    {"test_store__readonly_missing", test_store__readonly_missing},
	    {"test_store__schema_version_checked",
	     test_store__schema_version_checked},
	    {"test_store__damaged_meta_refused",
	     test_store__damaged_meta_refused},
	    {"test_store__schema1_upgraded", test_store__schema1_upgraded},
	    {"test_store__schema2_kept", test_store__schema2_kept},
	    {"test_store__schema3_no_runs", test_store__schema3_no_runs},
	    {"test_store__damaged_member_document",
	     test_store__damaged_member_document},
	    {"test_store__map_grows", test_store__map_grows},
	    {"test_store__clears_stale_readers",
	     test_store__clears_stale_readers},
	    {"test_store__backup", test_store__backup},
	    {"test_store__reader_process_sees_whole_events",
	     test_store__reader_process_sees_whole_events},
	    {NULL, NULL},
	};
	return sky_test_main("store", cases);
}
