/*
 * test_cache.c - the public face of a cache (libsync/cache.c): which
 * versions of sky_cache_options are taken and which option values are
 * refused; a read-only handle reads, refuses every write with SKY_EPERM
 * and leaves the file as it was; the counts of sky_cache_stats; a backup
 * is a private, checked copy and never lands over a cache. Two loops show
 * a session put is all or nothing: every allocation of jansson failing in
 * turn, and a tiny first map that must grow many times; sky_cache_check
 * finds nothing after each step.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"
#include "util.h"

#define APP "app1"

static const char *app_json =
    "{\"applicationId\":\"app1\",\"name\":\"Inspections\"}";

static char *session_json(const char *sid, const char *status, const char *name)
{
	char *s = malloc(512);
	CU_ASSERT_FATAL(s != NULL);
	snprintf(s, 512,
		 "{\"applicationId\":\"app1\",\"sessionId\":\"%s\",\"status\":"
		 "\"%s\",\"name\":\"%s\",\"createdAt\":"
		 "\"2024-05-01T10:00:00Z\"}",
		 sid, status, name);
	return s;
}

static int put(sky_cache *c, const char *sid, const char *status,
	       const char *name, const char *data, int64_t as_of)
{
	char *s = session_json(sid, status, name);
	int rc = sky_mirror_session_put(c, s, strlen(s), data,
					data ? strlen(data) : 0, as_of);
	free(s);
	return rc;
}

static void collect_line(const char *line, void *payload)
{
	sky_buf *b = payload;
	CU_ASSERT(sky__buf_printf(b, "%s\n", line) == 0);
}

static void expect_clean(sky_cache *c, const char *state)
{
	sky_buf buf = SKY_BUF_INIT;
	int rc = sky_cache_check(c, collect_line, &buf);
	CU_ASSERT_FATAL(sky__buf_putc(&buf, '\0') == 0);
	if (rc != 0 || *buf.data)
		fprintf(stderr, "\n%s: check says (%d):\n%s", state, rc,
			buf.data);
	CU_ASSERT(rc == 0);
	CU_ASSERT_STRING_EQUAL(buf.data, "");
	sky__buf_free(&buf);
}

static void test_cache__options_versions(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	CU_ASSERT(sky_cache_open(&c, NULL, NULL) == SKY_EINVAL);
	CU_ASSERT(sky_cache_open(&c, "", NULL) == SKY_EINVAL);
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	unsigned bad_versions[] = {0, SKY_CACHE_OPTIONS_VERSION + 1, 1000};
	for (size_t i = 0; i < sizeof(bad_versions) / sizeof(unsigned); i++) {
		o.version = bad_versions[i];
		CU_ASSERT(sky_cache_open(&c, dir, &o) == SKY_EINVAL);
		CU_ASSERT(strstr(sky_error_last()->message,
				 "SKY_CACHE_OPTIONS_INIT") != NULL);
	}
	/* Version 2 checks closed_keep_s; version 1 has no such field, so
	 * whatever lies there is not read. */
	o.version = 2;
	o.closed_keep_s = -5;
	CU_ASSERT(sky_cache_open(&c, dir, &o) == SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "closed_keep_s") != NULL);
	o.version = 1;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	sky_cache_close(c);
	o.version = 2;
	o.closed_keep_s = SKY_KEEP_FOREVER;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	sky_cache_close(c);
	o.closed_keep_s = 0;
	o.flags = SKY_CACHE_JOURNAL | SKY_CACHE_NOSYNC;
	CU_ASSERT(sky_cache_open(&c, dir, &o) == SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "exclude") != NULL);
	/* A refused open leaves no handle behind: a journal-mode handle,
	 * the only one its directory may have, opens afterwards. */
	o.flags = SKY_CACHE_JOURNAL; /* version 2: the flag */
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	sky_cache_close(c);
	sky_cache_close(NULL); /* a no-op */
}

static void test_cache__readonly(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	CU_ASSERT_FATAL(put(c, "s1", "open", "Line 3", "{\"v\":1}", 1) == 0);
	sky_cache_close(c);
	char path[4200];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	size_t before_len, after_len;
	char *before = sky_test_read_file(path, &before_len);
	CU_ASSERT_FATAL(before != NULL);

	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = SKY_CACHE_READONLY;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	char *json = NULL;
	size_t len;
	CU_ASSERT(sky_session_get(c, APP, "s1", &json, &len) == 0);
	CU_ASSERT(json && strstr(json, "\"name\":\"Line 3\"") != NULL);
	free(json);
	CU_ASSERT(sky_mirror_app_put(c, app_json, strlen(app_json)) ==
		  SKY_EPERM);
	CU_ASSERT(put(c, "s2", "open", "x", NULL, 2) == SKY_EPERM);
	CU_ASSERT(put(c, "s1", "open", "changed", NULL, 2) == SKY_EPERM);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.sessions == 1 && st.applications == 1);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	/* A backup needs only a read. */
	char dest[4200];
	snprintf(dest, sizeof(dest), "%s/copy", sky_test_tmpdir());
	CU_ASSERT(sky_cache_backup(c, dest) == 0);
	sky_cache_close(c);
	char *after = sky_test_read_file(path, &after_len);
	CU_ASSERT(after && after_len == before_len &&
		  !memcmp(before, after, before_len));
	free(before);
	free(after);
	CU_ASSERT_FATAL(sky_cache_open(&c, dest, &o) == 0);
	CU_ASSERT(sky_session_get(c, APP, "s1", &json, &len) == 0);
	free(json);
	sky_cache_close(c);
}

static void test_cache__permissions(void)
{
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.flags = SKY_CACHE_READONLY;
	/* Read-only finds nothing to open, and creates nothing. */
	char sub[4200];
	snprintf(sub, sizeof(sub), "%s/none", dir);
	CU_ASSERT(sky_cache_open(&c, sub, &o) == SKY_ENOTFOUND);
	struct stat sb;
	CU_ASSERT(stat(sub, &sb) < 0);
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	sky_cache_close(c);
	/* Read-only is refused on an unsafe cache as well. */
	CU_ASSERT_FATAL(chmod(dir, 0770) == 0);
	CU_ASSERT(sky_cache_open(&c, dir, &o) == SKY_EPERM);
	CU_ASSERT(sky_cache_open(&c, dir, NULL) == SKY_EPERM);
	CU_ASSERT_FATAL(chmod(dir, 0700) == 0);
	/* A backup is private whatever the umask. */
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, NULL) == 0);
	char dest[4200], path[4300];
	snprintf(dest, sizeof(dest), "%s/copy", sky_test_tmpdir());
	mode_t old = umask(0);
	int rc = sky_cache_backup(c, dest);
	umask(old);
	CU_ASSERT(rc == 0);
	CU_ASSERT(stat(dest, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	snprintf(path, sizeof(path), "%s/data.mdb", dest);
	CU_ASSERT(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	/* Never over a cache, its own directory included; not into a file. */
	CU_ASSERT(sky_cache_backup(c, dest) == SKY_EEXISTS);
	CU_ASSERT(sky_cache_backup(c, dir) == SKY_EEXISTS);
	CU_ASSERT(sky_cache_backup(c, path) < 0);
	sky_cache_close(c);
}

static void test_cache__stats(void)
{
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), NULL) == 0);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.applications == 0 && st.sessions == 0 &&
		  st.open_sessions == 0 && st.data_entries == 0);
	CU_ASSERT(st.schema_version >= 2);
	CU_ASSERT(st.map_bytes > 0 && st.used_bytes > 0 &&
		  st.used_bytes <= st.map_bytes);
	CU_ASSERT(st.sync_state == 0 && st.outbox_delivered == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	CU_ASSERT(put(c, "s1", "open", "a", "{\"v\":[1,2,3]}", 1) == 0);
	CU_ASSERT(put(c, "s2", "closed", "b", "{}", 1) == 0);
	CU_ASSERT(put(c, "s3", "open", "c", NULL, 1) == 0);
	CU_ASSERT_FATAL(sky_cache_stats(c, &st) == 0);
	CU_ASSERT(st.applications == 1);
	CU_ASSERT(st.sessions == 3);
	CU_ASSERT(st.open_sessions == 2);
	CU_ASSERT(st.data_entries > 0);
	CU_ASSERT(st.pending_events == 0 && st.custom_events == 0);
	sky_cache_close(c);
}

static long alloc_calls, alloc_fail_at = -1;

static void *failing_malloc(size_t n)
{
	if (alloc_calls++ == alloc_fail_at)
		return NULL;
	return malloc(n);
}

static char *get(sky_cache *c, const char *sid, int data)
{
	char *json = NULL;
	size_t len;
	int rc = data ? sky_data_get(c, APP, sid, &json, &len)
		      : sky_session_get(c, APP, sid, &json, &len);
	return rc == 0 ? json : NULL;
}

static int same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* Every jansson allocation failing in turn during a put that replaces a
 * session and its data: the put is whole or absent. */
static void test_cache__put_allocation(void)
{
	sky_cache *c = NULL;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), NULL) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	CU_ASSERT_FATAL(put(c, "s1", "open", "first", "{\"v\":0}", 1) == 0);
	json_malloc_t old_malloc;
	json_free_t old_free;
	json_get_alloc_funcs(&old_malloc, &old_free);
	long at, failures = 0, successes = 0;
	for (at = 0; at < 5000; at++) {
		char name[32], data[96];
		snprintf(name, sizeof(name), "name %ld", at);
		snprintf(data, sizeof(data),
			 "{\"v\":%ld,\"at\":\"2023-01-01T00:00:00Z\","
			 "\"list\":[\"abcdefghijklmnopq\",2]}",
			 at);
		char *s0 = get(c, "s1", 0), *d0 = get(c, "s1", 1);
		char *n0 = get(c, "s2", 0);
		json_set_alloc_funcs(failing_malloc, free);
		alloc_calls = 0;
		alloc_fail_at = at;
		int rc = put(c, "s1", "open", name, data, 2 + at);
		int rc2 =
		    rc == 0 ? put(c, "s2", "open", name, NULL, 2 + at) : 0;
		long calls = alloc_calls;
		alloc_fail_at = -1;
		json_set_alloc_funcs(old_malloc, old_free);
		char *s1 = get(c, "s1", 0), *d1 = get(c, "s1", 1);
		if (rc == 0) {
			successes++;
			CU_ASSERT(s1 && strstr(s1, name) != NULL);
			SKY_ASSERT_JSON_EQ(d1 ? d1 : "null", data);
		} else {
			failures++;
			CU_ASSERT(same(s0, s1) && same(d0, d1));
		}
		char *n1 = get(c, "s2", 0);
		if (rc2 != 0) {
			failures++;
			CU_ASSERT(same(n0, n1));
		}
		free(s0);
		free(d0);
		free(s1);
		free(d1);
		free(n0);
		free(n1);
		expect_clean(c, "after a put");
		if (calls <= at)
			break;
	}
	CU_ASSERT(at < 5000 && failures > 0 && successes > 0);
	sky_cache_close(c);
}

/* A first map of 64 KiB: the puts below grow it many times; each put
 * succeeds (the store retries after growing) or fails leaving nothing. */
static void test_cache__map_grows(void)
{
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	o.initial_map_bytes = 64 * 1024;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(c, &st) == 0);
	uint64_t first = st.map_bytes;
	char *body = malloc(4001);
	CU_ASSERT_FATAL(body != NULL);
	memset(body, 'x', 4000);
	body[4000] = '\0';
	int n = sky_test_workload(300, 100), ok = 0;
	for (int i = 0; i < n; i++) {
		char sid[16], data[4100];
		snprintf(sid, sizeof(sid), "s%04d", i);
		snprintf(data, sizeof(data), "{\"b\":\"%s\",\"i\":%d}", body,
			 i);
		uint64_t before = st.sessions;
		int rc = put(c, sid, "open", sid, data, 1);
		CU_ASSERT_FATAL(sky_cache_stats(c, &st) == 0);
		if (rc == 0) {
			ok++;
			CU_ASSERT(st.sessions == before + 1);
		} else {
			CU_ASSERT(st.sessions == before);
		}
	}
	free(body);
	CU_ASSERT(ok == n); /* growth is the store's business, not ours */
	CU_ASSERT(st.map_bytes > first);
	CU_ASSERT(st.map_bytes >= st.used_bytes);
	char *d = get(c, "s0007", 1);
	CU_ASSERT(d && strstr(d, "\"i\":7") != NULL);
	free(d);
	expect_clean(c, "after the map grew");
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_cache__options_versions", test_cache__options_versions},
	    {"test_cache__readonly", test_cache__readonly},
	    {"test_cache__permissions", test_cache__permissions},
	    {"test_cache__stats", test_cache__stats},
	    {"test_cache__put_allocation", test_cache__put_allocation},
	    {"test_cache__map_grows", test_cache__map_grows},
	    {NULL, NULL}};
	return sky_test_main("cache", cases);
}
