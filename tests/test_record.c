/*
 * test_record.c - the session record (libsync/record.c): the 48-byte
 * header reads back as written for every field at its limits, a value
 * too short, of another format or without its closing NUL is refused as
 * corrupt, and the JSON of a record parses back (out of memory reported as
 * such, not as damage). Against a cache: a header rewrite keeps the JSON,
 * and a delete takes the record with it. A delete under every jansson
 * allocation failing in turn removes the session or leaves it, and
 * sky_cache_check finds nothing after each.
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "error.h"
#include "record.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "testutil.h"

#define APP "app1"

static const char *app_json =
    "{\"applicationId\":\"app1\",\"name\":\"Inspections\"}";

/* A stored value: the header of `hdr`, then `json` and its NUL. */
static unsigned char *encode(const sky_record *hdr, const char *json,
			     MDB_val *val)
{
	size_t n = strlen(json);
	unsigned char *p = malloc(SKY_RECORD_HEADER + n + 1);
	CU_ASSERT_FATAL(p != NULL);
	sky__record_encode_header(p, hdr);
	memcpy(p + SKY_RECORD_HEADER, json, n + 1);
	val->mv_size = SKY_RECORD_HEADER + n + 1;
	val->mv_data = p;
	return p;
}

static void test_record__header_round_trip(void)
{
	static const sky_record hdrs[] = {
	    {0, 0, 0, 0, 0, 0, NULL, 0},
	    {SKY_REC_PENDING, 1, 1714568400000000LL, -1, 1, 2, NULL, 0},
	    {0xff, UINT64_MAX, INT64_MIN, INT64_MAX, INT64_MIN + 1,
	     INT64_MAX - 1, NULL, 0},
	    {0x80, 0x0102030405060708ULL, -1714568400000000LL, 0, -1, 1, NULL,
	     0},
	};
	const char *json = "{\"sessionId\":\"s1\"}";
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		MDB_val val;
		unsigned char *p = encode(&hdrs[i], json, &val);
		CU_ASSERT(p[0] == SKY_RECORD_FORMAT);
		CU_ASSERT(p[2] == 0 && p[3] == 0 && p[4] == 0 && p[7] == 0);
		sky_record r;
		CU_ASSERT_FATAL(sky__record_decode(&val, &r) == 0);
		CU_ASSERT(r.flags == hdrs[i].flags);
		CU_ASSERT(r.docid == hdrs[i].docid);
		CU_ASSERT(r.created_us == hdrs[i].created_us);
		CU_ASSERT(r.wm_session == hdrs[i].wm_session);
		CU_ASSERT(r.wm_props == hdrs[i].wm_props);
		CU_ASSERT(r.wm_data == hdrs[i].wm_data);
		CU_ASSERT(r.json_len == strlen(json));
		CU_ASSERT(r.json && !strcmp(r.json, json));
		/* Big-endian: the document id's first byte is its top. */
		CU_ASSERT(p[8] == (unsigned char)(hdrs[i].docid >> 56));
		CU_ASSERT(p[15] == (unsigned char)hdrs[i].docid);
		free(p);
	}
}

static void test_record__corrupt_refused(void)
{
	sky_record hdr = {0, 7, 1, 2, 3, 4, NULL, 0}, r;
	MDB_val val;
	unsigned char *p = encode(&hdr, "{}", &val);
	CU_ASSERT(sky__record_decode(&val, &r) == 0);
	/* The smallest record holds an empty text and its NUL. */
	MDB_val shorter = {SKY_RECORD_HEADER + 1, p};
	p[SKY_RECORD_HEADER] = '\0';
	CU_ASSERT(sky__record_decode(&shorter, &r) == 0);
	CU_ASSERT(r.json_len == 0);
	p[SKY_RECORD_HEADER] = '{';
	/* Shorter than that, another format, no NUL at the end. */
	size_t sizes[] = {0, 1, SKY_RECORD_HEADER - 1, SKY_RECORD_HEADER};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		MDB_val v = {sizes[i], p};
		CU_ASSERT(sky__record_decode(&v, &r) == SKY_EINVAL);
		CU_ASSERT(sky_error_last()->code == SKY_EINVAL);
		CU_ASSERT(strstr(sky_error_last()->message, "corrupt") != NULL);
	}
	unsigned char formats[] = {0, SKY_RECORD_FORMAT + 1, 0xff};
	for (size_t i = 0; i < sizeof(formats); i++) {
		p[0] = formats[i];
		CU_ASSERT(sky__record_decode(&val, &r) == SKY_EINVAL);
	}
	p[0] = SKY_RECORD_FORMAT;
	p[val.mv_size - 1] = '}';
	CU_ASSERT(sky__record_decode(&val, &r) == SKY_EINVAL);
	free(p);
}

static long alloc_calls, alloc_fail_at = -1;

static void *failing_malloc(size_t n)
{
	if (alloc_calls++ == alloc_fail_at)
		return NULL;
	return malloc(n);
}

static void test_record__json(void)
{
	sky_record hdr = {0, 1, 0, 0, 0, 0, NULL, 0}, r;
	MDB_val val;
	const char *text = "{\"sessionId\":\"s1\",\"at\":\"2023-01-01T00:00:"
			   "00Z\",\"name\":\"a name longer than sixteen\"}";
	unsigned char *p = encode(&hdr, text, &val);
	CU_ASSERT_FATAL(sky__record_decode(&val, &r) == 0);
	json_t *s = sky__record_json(&r);
	CU_ASSERT_FATAL(s != NULL);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(s, "at")),
			       "2023-01-01T00:00:00Z");
	json_decref(s);
	/* Each allocation of the parse failing: out of memory, never the
	 * record called corrupt, never a changed text. */
	json_malloc_t old_malloc;
	json_free_t old_free;
	json_get_alloc_funcs(&old_malloc, &old_free);
	long at, failures = 0;
	for (at = 0; at < 1000; at++) {
		json_set_alloc_funcs(failing_malloc, free);
		alloc_calls = 0;
		alloc_fail_at = at;
		s = sky__record_json(&r);
		long calls = alloc_calls;
		alloc_fail_at = -1;
		json_set_alloc_funcs(old_malloc, old_free);
		if (!s) {
			failures++;
			CU_ASSERT(sky_error_last()->code == SKY_ERROR);
			CU_ASSERT(strstr(sky_error_last()->message,
					 "corrupt") == NULL);
			continue;
		}
		CU_ASSERT_STRING_EQUAL(
		    json_string_value(json_object_get(s, "at")),
		    "2023-01-01T00:00:00Z");
		json_decref(s);
		if (calls <= at)
			break;
	}
	CU_ASSERT(at < 1000 && failures == at && failures > 0);
	/* Text that is not JSON is damage. */
	memcpy(p + SKY_RECORD_HEADER, "{\"x\"", 4);
	CU_ASSERT(sky__record_json(&r) == NULL);
	CU_ASSERT(sky_error_last()->code == SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "corrupt") != NULL);
	free(p);
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

static sky_cache *open_cache(void)
{
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	CU_ASSERT_FATAL(sky_mirror_app_put(c, app_json, strlen(app_json)) == 0);
	return c;
}

static void put_session(sky_cache *c, const char *sid)
{
	char s[256];
	snprintf(s, sizeof(s),
		 "{\"applicationId\":\"app1\",\"sessionId\":\"%s\",\"status\":"
		 "\"open\",\"name\":\"Line 3\",\"createdAt\":"
		 "\"2024-05-01T10:00:00Z\"}",
		 sid);
	CU_ASSERT_FATAL(sky_mirror_session_put(c, s, strlen(s), "{\"v\":[1,2]}",
					       11,
					       1714568400LL * 1000000) == 0);
}

/* The record of APP/sid: 0 and a copy of its header and text in *out. */
static int get_record(sky_cache *c, const char *sid, sky_record *out,
		      char **json)
{
	MDB_txn *txn;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	int rc = sky__record_get(txn, c, APP, sid, out);
	*json = rc == 0 ? strdup(out->json) : NULL;
	out->json = *json;
	sky__store_read_end(&c->st, txn);
	return rc;
}

typedef struct {
	sky_cache *c;
	const sky_record *hdr;
	const char *sid;
} write_ctx;

static int put_header(MDB_txn *txn, void *payload)
{
	write_ctx *w = payload;
	return sky__record_put_header(txn, w->c, w->hdr, APP, w->sid);
}

static int delete_record(MDB_txn *txn, void *payload)
{
	write_ctx *w = payload;
	return sky__record_delete(txn, w->c, APP, w->sid);
}

static void test_record__in_a_cache(void)
{
	sky_cache *c = open_cache();
	put_session(c, "s1");
	sky_record r;
	char *json;
	CU_ASSERT_FATAL(get_record(c, "s1", &r, &json) == 0);
	CU_ASSERT(r.docid != 0);
	CU_ASSERT(r.created_us == 1714557600LL * 1000000);
	CU_ASSERT(strstr(json, "\"sessionId\":\"s1\"") != NULL);
	/* A header rewrite keeps the text byte for byte. */
	sky_record hdr = r;
	hdr.wm_session = 12345;
	hdr.wm_data = -7;
	write_ctx w = {c, &hdr, "s1"};
	CU_ASSERT(sky__store_write(&c->st, put_header, &w) == 0);
	sky_record r2;
	char *json2;
	CU_ASSERT_FATAL(get_record(c, "s1", &r2, &json2) == 0);
	CU_ASSERT(r2.wm_session == 12345 && r2.wm_data == -7);
	CU_ASSERT(r2.docid == r.docid && r2.created_us == r.created_us);
	CU_ASSERT_STRING_EQUAL(json2, json);
	free(json);
	free(json2);
	/* A header for a session that is not there is refused. */
	w.sid = "nope";
	CU_ASSERT(sky__store_write(&c->st, put_header, &w) < 0);
	CU_ASSERT(get_record(c, "nope", &r2, &json2) == SKY_ENOTFOUND);
	/* An id that cannot be a key is not found rather than read. */
	CU_ASSERT(get_record(c, "", &r2, &json2) == SKY_ENOTFOUND);
	w.sid = "s1";
	CU_ASSERT(sky__store_write(&c->st, delete_record, &w) == 0);
	CU_ASSERT(get_record(c, "s1", &r2, &json2) == SKY_ENOTFOUND);
	char *data = NULL;
	size_t len;
	CU_ASSERT(sky_data_get(c, APP, "s1", &data, &len) < 0);
	free(data);
	expect_clean(c, "after the delete");
	sky_cache_close(c);
}

static unsigned sessions(sky_cache *c)
{
	sky_stats st = SKY_STATS_INIT;
	CU_ASSERT_FATAL(sky_cache_stats(c, &st) == 0);
	return (unsigned)st.sessions;
}

/* A delete under every jansson allocation failing in turn: the session
 * goes, or stays whole, and the cache stays clean. */
static void test_record__delete_allocation(void)
{
	sky_cache *c = open_cache();
	json_malloc_t old_malloc;
	json_free_t old_free;
	json_get_alloc_funcs(&old_malloc, &old_free);
	long at, failures = 0;
	for (at = 0; at < 1000; at++) {
		put_session(c, "s1");
		put_session(c, "s2");
		unsigned before = sessions(c);
		write_ctx w = {c, NULL, "s1"};
		json_set_alloc_funcs(failing_malloc, free);
		alloc_calls = 0;
		alloc_fail_at = at;
		int rc = sky__store_write(&c->st, delete_record, &w);
		long calls = alloc_calls;
		alloc_fail_at = -1;
		json_set_alloc_funcs(old_malloc, old_free);
		sky_record r;
		char *json = NULL;
		int found = get_record(c, "s1", &r, &json) == 0;
		free(json);
		if (rc == 0) {
			CU_ASSERT(!found && sessions(c) == before - 1);
		} else {
			failures++;
			CU_ASSERT(found && sessions(c) == before);
		}
		expect_clean(c, "after a delete");
		if (calls <= at)
			break;
	}
	CU_ASSERT(at < 1000 && failures > 0);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_record__header_round_trip", test_record__header_round_trip},
	    {"test_record__corrupt_refused", test_record__corrupt_refused},
	    {"test_record__json", test_record__json},
	    {"test_record__in_a_cache", test_record__in_a_cache},
	    {"test_record__delete_allocation", test_record__delete_allocation},
	    {NULL, NULL}};
	return sky_test_main("record", cases);
}
