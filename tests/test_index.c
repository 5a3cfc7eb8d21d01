/*
 * test_index.c - the query indexes (index.h): the key encoding of long
 * values, the entries a session gets and loses as it is written and
 * removed, and the check in both directions, which must stay clean after
 * any sequence of writes and catch an injected inconsistency of each kind
 * (a missing entry, an entry for no session, an entry with another value,
 * an entry at another createdAt).
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "index.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

static sky_cache *open_cache(void)
{
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	return c;
}

static int event_seq;

static void apply(sky_cache *c, const char *sid, const char *type,
		  json_t *session)
{
	char eid[32], at[40];
	event_seq++;
	snprintf(eid, sizeof(eid), "e%d", event_seq);
	snprintf(at, sizeof(at), "2024-01-01T00:00:00.%06dZ", event_seq);
	json_t *ev =
	    json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "applicationId", "app1",
		      "sessionId", sid, "eventId", eid, "createdAt", at,
		      "eventType", type, "session", session);
	char *text = json_dumps(ev, JSON_COMPACT);
	int rc = sky_mirror_event_apply(c, text, strlen(text), NULL);
	if (rc)
		fprintf(stderr, "\napply: %s\n", sky_error_last()->message);
	CU_ASSERT(rc == 0);
	free(text);
	json_decref(ev);
}

/* Sessions under one key (0 when the key is absent). */
static size_t count_key(sky_cache *c, const sky_ixkey *k)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	size_t n = 0;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	CU_ASSERT_FATAL(mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_INDEX), &cur) ==
			0);
	MDB_val key = {k->len, (void *)k->data}, val;
	if (mdb_cursor_get(cur, &key, &val, MDB_SET) == 0)
		mdb_cursor_count(cur, &n);
	mdb_cursor_close(cur);
	sky__store_read_end(&c->st, txn);
	return n;
}

static size_t count_value(sky_cache *c, char code, const char *prop,
			  const char *value)
{
	sky_ixkey k;
	sky__ixkey_value(&k, "app1", code, prop, value, strlen(value));
	return count_key(c, &k);
}

static size_t index_items(sky_cache *c)
{
	MDB_txn *txn;
	MDB_stat st;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	mdb_stat(txn, SKY_DBI(c, SKY_DB_INDEX), &st);
	sky__store_read_end(&c->st, txn);
	return st.ms_entries;
}

/* Run the index check; returns its code and leaves the lines in *out. */
static int check(sky_cache *c, char **out)
{
	MDB_txn *txn;
	sky_buf problems = SKY_BUF_INIT;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	int rc = sky__index_check(txn, c, &problems);
	sky__store_read_end(&c->st, txn);
	*out = problems.data ? problems.data : strdup("");
	return rc;
}

static void test_index__key_encoding(void)
{
	char a[800], b[800];
	sky_ixkey ka, kb, kc, kp;
	memset(a, 'x', 700);
	a[700] = '\0';
	memcpy(b, a, 701);
	b[650] = 'y';
	sky__ixkey_value(&ka, "app1", SKY_IXF_PROP, "site", "short", 5);
	CU_ASSERT(!ka.hashed);
	CU_ASSERT(ka.len ==
		  4 + 1 + 1 + 1 + 4 + 1 + 5); /* app1 \0 V p site \0 short */
	CU_ASSERT(!sky__ixkey_is_hashed(ka.data, ka.len));
	sky__ixkey_value(&ka, "app1", SKY_IXF_PROP, "site", a, 700);
	sky__ixkey_value(&kb, "app1", SKY_IXF_PROP, "site", b, 700);
	CU_ASSERT(ka.hashed && kb.hashed);
	CU_ASSERT(ka.len == SKY_KEY_MAX && kb.len == SKY_KEY_MAX);
	CU_ASSERT(ka.data[SKY_IX_KEEP] == 0xFF);
	CU_ASSERT(sky__ixkey_is_hashed(ka.data, ka.len));
	/* Same kept bytes, different keys (the hash covers everything). */
	CU_ASSERT(memcmp(ka.data, kb.data, SKY_IX_KEEP) == 0);
	CU_ASSERT(memcmp(ka.data, kb.data, SKY_KEY_MAX) != 0);
	/* Deterministic. */
	sky__ixkey_value(&kc, "app1", SKY_IXF_PROP, "site", a, 700);
	CU_ASSERT(memcmp(ka.data, kc.data, SKY_KEY_MAX) == 0);
	/* A key that just fits is stored as is. */
	size_t fit = SKY_KEY_MAX - (4 + 1 + 1 + 1 + 4 + 1);
	sky__ixkey_value(&kc, "app1", SKY_IXF_PROP, "site", a, fit);
	CU_ASSERT(!kc.hashed && kc.len == SKY_KEY_MAX);
	sky__ixkey_value(&kc, "app1", SKY_IXF_PROP, "site", a, fit + 1);
	CU_ASSERT(kc.hashed);
	/* The stored form of a long key starts with any short prefix of it. */
	sky__ixkey_value(&kp, "app1", SKY_IXF_PROP, "site", a, 100);
	CU_ASSERT(memcmp(kp.data, ka.data, kp.len) == 0);
	/* Positions sort by time, then id bytes, shorter first. */
	sky_ixpos p1, p2, p3, p4;
	sky__ixpos_make(&p1, -5, "b");
	sky__ixpos_make(&p2, 3, "a");
	sky__ixpos_make(&p3, 3, "ab");
	sky__ixpos_make(&p4, 3, "b");
	CU_ASSERT(sky__ixpos_cmp(&p1, &p2) < 0);
	CU_ASSERT(sky__ixpos_cmp(&p2, &p3) < 0);
	CU_ASSERT(sky__ixpos_cmp(&p3, &p4) < 0);
	CU_ASSERT(sky__ixpos_created(&p1) == -5);
	char sid[SKY_MAX_ID_BYTES + 1];
	sky__ixpos_sid(&p3, sid);
	CU_ASSERT_STRING_EQUAL(sid, "ab");
}

/* Sessions of app1 matching one predicate, counted by a query. */
static uint64_t count_query(sky_cache *c, const char *pred)
{
	const char *preds[] = {pred};
	sky_query *q = NULL;
	uint64_t n = UINT64_MAX;
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", preds, 1) == 0);
	CU_ASSERT(sky_query_count(q, &n) == 0);
	sky_query_free(q);
	return n;
}

static void test_index__entries_follow_writes(void)
{
	sky_cache *c = open_cache();
	char longv[900];
	memset(longv, 'v', 899);
	longv[899] = '\0';
	apply(c, "s1", "session_created",
	      json_pack("{s:s,s:s,s:s,s:[{s:s},{s:s,s:s}],s:{s:s,s:s}}",
			"createdAt", "2023-01-01T00:00:00Z", "status", "open",
			"name", "Line 1", "participants", "id", "u1", "id",
			"g1", "type", "group", "properties", "site", "Plant-7",
			"long", longv));
	apply(c, "s2", "session_created",
	      json_pack("{s:s,s:s,s:{s:s}}", "createdAt",
			"2023-01-01T00:00:01Z", "status", "open", "properties",
			"site", "Plant-7"));
	CU_ASSERT(count_value(c, SKY_IXF_PROP, "site", "Plant-7") == 2);
	CU_ASSERT(count_value(c, SKY_IXF_PROP, "long", longv) == 1);
	CU_ASSERT(count_value(c, SKY_IXF_STATUS, NULL, "open") == 2);
	CU_ASSERT(count_value(c, SKY_IXF_NAME, NULL, "Line 1") == 1);
	CU_ASSERT(count_value(c, SKY_IXF_USER, NULL, "u1") == 1);
	CU_ASSERT(count_value(c, SKY_IXF_GROUP, NULL, "g1") == 1);
	CU_ASSERT(count_value(c, SKY_IXF_USER, NULL, "g1") == 0);
	sky_ixkey k;
	sky__ixkey_all(&k, "app1");
	CU_ASSERT(count_key(c, &k) == 2);
	/* A new cache's index (version 3) has no exists keys: the query
	 * "long?" walks the values of the property instead. */
	sky__ixkey_exists(&k, "app1", SKY_IXF_PROP, "long");
	CU_ASSERT(count_key(c, &k) == 0);
	CU_ASSERT(count_query(c, "long?") == 1);
	CU_ASSERT(count_query(c, "site?") == 2);

	/* Properties are replaced whole: the old entries go. */
	apply(c, "s1", "session_properties_updated",
	      json_pack("{s:{s:s}}", "properties", "site", "Plant-8"));
	CU_ASSERT(count_value(c, SKY_IXF_PROP, "site", "Plant-7") == 1);
	CU_ASSERT(count_value(c, SKY_IXF_PROP, "site", "Plant-8") == 1);
	CU_ASSERT(count_value(c, SKY_IXF_PROP, "long", longv) == 0);
	CU_ASSERT(count_query(c, "long?") == 0);
	apply(c, "s1", "session_closed",
	      json_pack("{s:s}", "status", "closed"));
	CU_ASSERT(count_value(c, SKY_IXF_STATUS, NULL, "open") == 1);
	CU_ASSERT(count_value(c, SKY_IXF_STATUS, NULL, "closed") == 1);
	/* A new createdAt moves every entry of the session. */
	apply(c, "s2", "session_updated",
	      json_pack("{s:s}", "createdAt", "2020-01-01T00:00:00Z"));
	CU_ASSERT(count_value(c, SKY_IXF_PROP, "site", "Plant-7") == 1);
	char *lines;
	CU_ASSERT(check(c, &lines) == 0);
	CU_ASSERT_STRING_EQUAL(lines, "");
	free(lines);

	/* Removing every session leaves no entry at all. */
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "s1") == 0);
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "s2") == 0);
	CU_ASSERT(index_items(c) == 0);
	sky_cache_close(c);
}

static void test_index__check_clean_after_random_writes(void)
{
	sky_cache *c = open_cache();
	static const char *keys[] = {"a", "b", "ü", "c=d"};
	static const char *vals[] = {"1", "2", "日本", ""};
	srand(7);
	for (int i = 0; i < 400; i++) {
		char sid[16];
		snprintf(sid, sizeof(sid), "s%d", rand() % 40);
		json_t *props = json_object();
		for (int p = rand() % 4; p > 0; p--)
			json_object_set_new(props, keys[rand() % 4],
					    json_string(vals[rand() % 4]));
		switch (rand() % 5) {
		case 0:
		case 1:
			apply(c, sid, "session_created",
			      json_pack("{s:s,s:o,s:[{s:s}]}", "createdAt",
					rand() % 2 ? "2023-01-01T00:00:00Z"
						   : "2023-01-02T00:00:00Z",
					"properties", props, "participants",
					"id", vals[rand() % 3]));
			break;
		case 2:
			apply(c, sid, "session_properties_updated",
			      json_pack("{s:o}", "properties", props));
			break;
		case 3:
			json_decref(props);
			apply(c, sid, "session_updated",
			      json_pack("{s:s}", "name", vals[rand() % 4]));
			break;
		default:
			json_decref(props);
			sky_mirror_session_remove(c, "app1", sid);
			break;
		}
	}
	char *lines;
	CU_ASSERT(check(c, &lines) == 0);
	CU_ASSERT_STRING_EQUAL(lines, "");
	free(lines);
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == 0);
	sky_cache_close(c);
}

/* ---- injected inconsistencies ---- */

typedef struct {
	sky_cache *c;
	sky_ixkey key;
	sky_ixpos pos;
	int del;
} inject_ctx;

static int inject(MDB_txn *txn, void *arg)
{
	inject_ctx *i = arg;
	MDB_val k = {i->key.len, i->key.data}, v = {i->pos.len, i->pos.data};
	int rc = i->del ? mdb_del(txn, SKY_DBI(i->c, SKY_DB_INDEX), &k, &v)
			: mdb_put(txn, SKY_DBI(i->c, SKY_DB_INDEX), &k, &v, 0);
	return rc ? -1 : 0;
}

static int64_t t0_us = 1672531200000000ll; /* 2023-01-01T00:00:00Z */

static sky_cache *one_session(void)
{
	sky_cache *c = open_cache();
	apply(c, "s1", "session_created",
	      json_pack("{s:s,s:{s:s}}", "createdAt", "2023-01-01T00:00:00Z",
			"properties", "site", "Plant-7"));
	return c;
}

static void expect_problem(sky_cache *c, const char *needle)
{
	char *lines;
	CU_ASSERT(check(c, &lines) == SKY_EINVAL);
	if (!strstr(lines, needle)) {
		fprintf(stderr, "\nproblems '%s' lack '%s'\n", lines, needle);
		CU_FAIL("the check did not name the problem");
	}
	free(lines);
	/* The public check reports it too. */
	CU_ASSERT(sky_cache_check(c, NULL, NULL) == SKY_EINVAL);
}

static void test_index__check_finds_missing_entry(void)
{
	sky_cache *c = one_session();
	inject_ctx i = {c, {{0}, 0, 0, 0, 0}, {{0}, 0}, 1};
	sky__ixkey_value(&i.key, "app1", SKY_IXF_PROP, "site", "Plant-7", 7);
	sky__ixpos_make(&i.pos, t0_us, "s1");
	CU_ASSERT_FATAL(sky__store_write(&c->st, inject, &i) == 0);
	expect_problem(c, "session app1/s1 has no entry under");
	sky_cache_close(c);
}

static void test_index__check_finds_orphan_entry(void)
{
	sky_cache *c = one_session();
	inject_ctx i = {c, {{0}, 0, 0, 0, 0}, {{0}, 0}, 0};
	sky__ixkey_value(&i.key, "app1", SKY_IXF_PROP, "site", "Plant-7", 7);
	sky__ixpos_make(&i.pos, t0_us, "ghost");
	CU_ASSERT_FATAL(sky__store_write(&c->st, inject, &i) == 0);
	expect_problem(c,
		       "names session app1/ghost, which is not in the cache");
	sky_cache_close(c);
}

static void test_index__check_finds_wrong_value(void)
{
	sky_cache *c = one_session();
	inject_ctx i = {c, {{0}, 0, 0, 0, 0}, {{0}, 0}, 0};
	sky__ixkey_value(&i.key, "app1", SKY_IXF_PROP, "site", "Plant-9", 7);
	sky__ixpos_make(&i.pos, t0_us, "s1");
	CU_ASSERT_FATAL(sky__store_write(&c->st, inject, &i) == 0);
	expect_problem(c, "does not match the record");
	sky_cache_close(c);
}

static void test_index__check_finds_wrong_time(void)
{
	sky_cache *c = one_session();
	inject_ctx i = {c, {{0}, 0, 0, 0, 0}, {{0}, 0}, 0};
	sky__ixkey_value(&i.key, "app1", SKY_IXF_PROP, "site", "Plant-7", 7);
	sky__ixpos_make(&i.pos, t0_us + 1, "s1");
	CU_ASSERT_FATAL(sky__store_write(&c->st, inject, &i) == 0);
	expect_problem(c, "createdAt that differs");
	sky_cache_close(c);
}

/* Values that share their first 600 bytes still find exactly theirs. */
static int count_row(const char *json, size_t len, unsigned flags, void *p)
{
	(void)json;
	(void)len;
	(void)flags;
	++*(int *)p;
	return 0;
}

static void test_index__long_values_stay_exact(void)
{
	sky_cache *c = open_cache();
	char v1[1000], v2[1000], pred[1100], lkey[700];
	memset(v1, 'z', 999);
	v1[999] = '\0';
	memcpy(v2, v1, 1000);
	v2[990] = 'y';
	memset(lkey, 'k', 699);
	lkey[699] = '\0';
	apply(c, "s1", "session_created",
	      json_pack("{s:{s:s,s:s}}", "properties", "p", v1, lkey, "1"));
	apply(c, "s2", "session_created",
	      json_pack("{s:{s:s,s:s}}", "properties", "p", v2, lkey, "2"));
	static const struct {
		const char *fmt;
		const char *arg;
		int cut;
		int want;
	} cases[] = {
	    {"p=%s", NULL, 0, 1},    /* v1 exactly */
	    {"p^=%s", NULL, 600, 2}, /* 600 shared bytes */
	    {"p^=%s", NULL, 995, 1}, /* past the difference */
	    {"p^=%s", NULL, 40, 2},  {"p!=%s", NULL, 0, 1},
	    {"%s?", "lkey", 0, 2},   {"%s=1", "lkey", 0, 1},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char val[1000];
		snprintf(val, sizeof(val), "%s", cases[i].arg ? lkey : v1);
		if (cases[i].cut)
			val[cases[i].cut] = '\0';
		snprintf(pred, sizeof(pred), cases[i].fmt, val);
		const char *pv = pred;
		sky_query *q;
		CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", &pv, 1) == 0);
		int n = 0;
		CU_ASSERT(sky_query_run(q, count_row, &n) == 0);
		if (n != cases[i].want)
			fprintf(stderr, "\ncase %zu: %d rows, want %d\n", i, n,
				cases[i].want);
		CU_ASSERT(n == cases[i].want);
		sky_query_free(q);
	}
	char *lines;
	CU_ASSERT(check(c, &lines) == 0);
	free(lines);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_index__key_encoding", test_index__key_encoding},
	    {"test_index__entries_follow_writes",
	     test_index__entries_follow_writes},
	    {"test_index__check_clean_after_random_writes",
	     test_index__check_clean_after_random_writes},
	    {"test_index__check_finds_missing_entry",
	     test_index__check_finds_missing_entry},
	    {"test_index__check_finds_orphan_entry",
	     test_index__check_finds_orphan_entry},
	    {"test_index__check_finds_wrong_value",
	     test_index__check_finds_wrong_value},
	    {"test_index__check_finds_wrong_time",
	     test_index__check_finds_wrong_time},
	    {"test_index__long_values_stay_exact",
	     test_index__long_values_stay_exact},
	    {NULL, NULL},
	};
	return sky_test_main("index", cases);
}
