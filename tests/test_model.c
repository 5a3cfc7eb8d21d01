/*
 * test_model.c - JSON parsing under limits, RFC 3339 times, ids, the
 * CRC-32C of journal records and sealed values, and the validation rules
 * of the Skylight objects (DESIGN.md §2).
 */
#include "config.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "model.h"
#include "skysync.h"
#include "testutil.h"
#include "util.h"

static void test_model__depth_scan(void)
{
	CU_ASSERT(sky__json_depth("{}", 2, 100) == 1);
	CU_ASSERT(sky__json_depth("[[[]]]", 6, 100) == 3);
	/* Brackets inside strings, with escaped quotes, do not count. */
	const char *s = "{\"a\":\"[[[\\\"{{{\"}";
	CU_ASSERT(sky__json_depth(s, strlen(s), 100) == 1);
	CU_ASSERT(sky__json_depth("[[[[[[", 6, 3) == 4); /* stops early */
}

static void test_model__parse_limits(void)
{
	sky_json_limits lim = {10, 2};
	json_t *v = NULL;
	CU_ASSERT(sky__json_parse("{\"a\":[1]}", 9, &lim, "x", &v) == 0);
	json_decref(v);
	CU_ASSERT(sky__json_parse("{\"a\":[[1]]}", 11, &lim, "x", &v) ==
		  SKY_ELIMIT);
	CU_ASSERT(sky__json_parse("[[[1]]]", 7, &lim, "x", &v) == SKY_ELIMIT);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "deeper"));
	CU_ASSERT(sky__json_parse("{\"a\":1,\"a\":2}", 13, NULL, "thing", &v) ==
		  SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_error_last()->message, "thing"));
	CU_ASSERT(sky__json_parse("\"\xc3\x28\"", 4, NULL, "x", &v) ==
		  SKY_EINVAL);
	CU_ASSERT(sky__json_parse("", 0, NULL, "x", &v) == SKY_EINVAL);

	/* The depth limit holds whichever loader takes the text: nests of
	 * objects and arrays 1..300 deep (past the one-pass loader's own
	 * bound), around a scalar or empty, under limits 1..70 and 0. */
	static const unsigned limits[] = {0, 1, 2, 3, 10, 64, 70};
	char text[4096];
	int bad = 0;
	for (unsigned d = 1; d <= 300; d++)
		for (int empty = 0; empty < 2; empty++) {
			size_t n = 0;
			for (unsigned i = 0; i < d; i++)
				n += (size_t)sprintf(text + n, "%s",
						     i % 2 ? "[" : "{\"k\":");
			if (!empty)
				text[n++] = '7';
			else if (d % 2)
				n += (size_t)sprintf(text + n, "[]");
			for (unsigned i = d; i-- > 0;)
				text[n++] = i % 2 ? ']' : '}';
			/* "{"k":" needs a value: an empty innermost is []
			 * one level deeper. */
			unsigned depth = empty && d % 2 ? d + 1 : d;
			for (size_t k = 0; k < sizeof(limits) / sizeof(*limits);
			     k++) {
				sky_json_limits l = {0, limits[k]};
				int rc = sky__json_parse(text, n, &l, "x", &v);
				int want = !limits[k] || depth <= limits[k]
					       ? 0
					       : SKY_ELIMIT;
				if (rc == 0)
					json_decref(v);
				bad += rc != want;
			}
		}
	CU_ASSERT(bad == 0);
}

static void test_model__times(void)
{
	int64_t us;
	CU_ASSERT(sky__parse_time("1970-01-01T00:00:00Z", &us) == 0 && us == 0);
	CU_ASSERT(sky__parse_time("2024-05-01T13:00:00Z", &us) == 0 &&
		  us == 1714568400LL * 1000000);
	CU_ASSERT(sky__parse_time("2024-05-01T15:00:00.5+02:00", &us) == 0 &&
		  us == 1714568400LL * 1000000 + 500000);
	CU_ASSERT(sky__parse_time("2024-05-01T13:00:00.1234567Z", &us) == 0 &&
		  us % 1000000 == 123456);
	CU_ASSERT(sky__parse_time("1969-12-31T23:59:59Z", &us) == 0 &&
		  us == -1000000);
	static const char *bad[] = {"",
				    "2024-05-01",
				    "2024-13-01T00:00:00Z",
				    "2024-05-01T24:00:00Z",
				    "2024-05-01T00:00:00",
				    "2024-05-01T00:00:00Zjunk",
				    "2024-05-01T00:00:00.Z",
				    "24-05-01T00:00:00Z"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CU_ASSERT(sky__parse_time(bad[i], &us) == -1);
	char buf[32];
	sky__format_time(1714568400LL * 1000000 + 7, buf);
	CU_ASSERT_STRING_EQUAL(buf, "2024-05-01T13:00:00.000007Z");
}

static void test_model__ids(void)
{
	char long_id[SKY_MAX_ID_BYTES + 2];
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	CU_ASSERT(sky__check_id("s-1", "id") == 0);
	CU_ASSERT(sky__check_id("Zürich", "id") == 0);
	CU_ASSERT(sky__check_id("", "id") == SKY_EINVAL);
	CU_ASSERT(sky__check_id(NULL, "id") == SKY_EINVAL);
	CU_ASSERT(sky__check_id("a\tb", "id") == SKY_EINVAL);
	CU_ASSERT(sky__check_id("\xc0\xaf", "id") == SKY_EINVAL);
	CU_ASSERT(sky__check_id(long_id, "id") == SKY_ELIMIT);
	long_id[SKY_MAX_ID_BYTES] = '\0';
	CU_ASSERT(sky__check_id(long_id, "id") == 0);
}

/* CRC-32C a bit at a time, straight from the definition (reflected). */
static uint32_t crc32c_bitwise(uint32_t crc, const unsigned char *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

static uint64_t crc_rng = 0x9e3779b97f4a7c15ull;

static uint64_t crc_rnd(void)
{
	/* xorshift64*: fixed seed, so a failure reproduces. */
	crc_rng ^= crc_rng >> 12;
	crc_rng ^= crc_rng << 25;
	crc_rng ^= crc_rng >> 27;
	return crc_rng * 0x2545f4914f6cdd1dull;
}

static int crc_case(uint32_t seed, const unsigned char *p, size_t len)
{
	uint32_t want = crc32c_bitwise(seed, p, len);
	uint32_t got = sky__crc32c(seed, p, len);
	if (got != want)
		fprintf(stderr,
			"\ncrc32c(%08x, %zu bytes at +%u): %08x, not %08x\n",
			(unsigned)seed, len, (unsigned)((uintptr_t)p % 8),
			(unsigned)got, (unsigned)want);
	return got == want;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x, y;
	memcpy(&x, a, 4);
	memcpy(&y, b, 4);
	return (x > y) - (x < y);
}

/* sky__sort orders as qsort does: every count to 40 (the insertion sort
 * to 16, qsort past it), in order, reversed, and random with repeats. */
static void test_model__sort(void)
{
	uint32_t a[40], b[40];
	int bad = 0;
	for (size_t n = 0; n <= 40; n++)
		for (int kind = 0; kind < 3; kind++)
			for (int round = 0; round < 20; round++) {
				for (size_t i = 0; i < n; i++)
					a[i] = kind == 0 ? (uint32_t)i
					       : kind == 1
						   ? (uint32_t)(n - i)
						   : (uint32_t)(crc_rnd() % 7);
				memcpy(b, a, n * sizeof(*a));
				sky__sort(a, n, sizeof(*a), cmp_u32);
				if (n > 1)
					qsort(b, n, sizeof(*b), cmp_u32);
				bad += memcmp(a, b, n * sizeof(*a)) != 0;
			}
	CU_ASSERT(bad == 0);
}

/*
 * Every length and alignment takes the paths of sky__crc32c that the CPU
 * offers (AVX-512 folding from 512 bytes, three chains of crc32 from 96
 * bytes, blocks of up to 6 KB, the 8-byte words, the last bytes) to the
 * value of the definition.
 */
static void test_model__crc32c(void)
{
	/* The check value of CRC-32C, and the iSCSI ones (RFC 3720 B.4). */
	CU_ASSERT(sky__crc32c(0, "123456789", 9) == 0xe3069283u);
	CU_ASSERT(crc32c_bitwise(0, (const unsigned char *)"123456789", 9) ==
		  0xe3069283u);
	unsigned char v[32];
	memset(v, 0, sizeof(v));
	CU_ASSERT(sky__crc32c(0, v, 32) == 0x8a9136aau);
	memset(v, 0xff, sizeof(v));
	CU_ASSERT(sky__crc32c(0, v, 32) == 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		v[i] = (unsigned char)i;
	CU_ASSERT(sky__crc32c(0, v, 32) == 0x46dd794eu);
	CU_ASSERT(sky__crc32c(0x12345678u, v, 0) == 0x12345678u);

	enum { MAX = 70000, SIZE = MAX + 8 };
	unsigned char *buf = malloc(SIZE);
	CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
	for (size_t i = 0; i < SIZE; i++)
		buf[i] = (unsigned char)(crc_rnd() >> 56);

	/* Every length up to three lanes of 16 words, at every alignment. */
	int bad = 0;
	for (size_t len = 0; len <= 400; len++)
		for (size_t off = 0; off < 8; off++)
			bad += !crc_case((uint32_t)crc_rnd(), buf + off, len);
	/* Every length of the folding (from 512 bytes, 256 at a time, then
	 * 64, with the rest by crc32 instructions) to past its third round,
	 * at every alignment. */
	for (size_t len = 500; len <= 1100; len++)
		for (size_t off = 0; off < 8; off++)
			bad += !crc_case((uint32_t)crc_rnd(), buf + off, len);
	/* Around the block size (3 lanes of 256 words) and its multiples. */
	static const size_t edges[] = {6143,	  6144,	     6145,  6144 + 95,
				       6144 + 96, 6144 + 97, 12287, 12288,
				       12289,	  18432 + 7};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		for (size_t off = 0; off < 8; off++)
			bad +=
			    !crc_case((uint32_t)crc_rnd(), buf + off, edges[i]);
	/* Random lengths, seeds and alignments; half of the inputs end where
	 * the buffer does, so that a read past the end is caught by ASan or
	 * valgrind. */
	int n = sky_test_workload(300, 30);
	for (int i = 0; i < n; i++) {
		size_t len = (size_t)(crc_rnd() % (MAX + 1));
		const unsigned char *p =
		    i % 2 ? buf + SIZE - len : buf + crc_rnd() % 8;
		bad += !crc_case((uint32_t)crc_rnd(), p, len);
	}
	CU_ASSERT(bad == 0);

	/* Continuing: the CRC of a||b is the CRC of b continued from a's. */
	for (int i = 0; i < n; i++) {
		size_t len = (size_t)(crc_rnd() % (MAX + 1));
		size_t cut = len ? (size_t)(crc_rnd() % (len + 1)) : 0;
		const unsigned char *p = buf + crc_rnd() % 8;
		uint32_t seed = (uint32_t)crc_rnd();
		uint32_t whole = sky__crc32c(seed, p, len);
		uint32_t a = sky__crc32c(seed, p, cut);
		if (sky__crc32c(a, p + cut, len - cut) != whole) {
			fprintf(stderr, "\ncrc32c of %zu bytes cut at %zu\n",
				len, cut);
			bad++;
		}
	}
	CU_ASSERT(bad == 0);
	free(buf);
}

static int valid_session(const char *text)
{
	json_t *s = json_loads(text, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(s);
	int rc = sky__validate_session(s, "session", 1);
	json_decref(s);
	return rc;
}

static void test_model__sessions(void)
{
	CU_ASSERT(valid_session(
		      "{\"applicationId\":\"a\",\"sessionId\":\"s\","
		      "\"unknown\":{\"deep\":[1]},\"description\":null}") == 0);
	CU_ASSERT(valid_session("{\"applicationId\":\"a\"}") == SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(sky_error_last()->message, "session.sessionId: missing"));
	CU_ASSERT(valid_session("{\"applicationId\":\"a\",\"sessionId\":\"s\","
				"\"properties\":{\"k\":null}}") == SKY_EINVAL);
	CU_ASSERT(valid_session("{\"applicationId\":\"a\",\"sessionId\":\"s\","
				"\"properties\":[]}") == SKY_EINVAL);
	CU_ASSERT(valid_session("{\"applicationId\":\"a\",\"sessionId\":\"s\","
				"\"isDraft\":\"no\"}") == SKY_EINVAL);
	CU_ASSERT(valid_session("{\"applicationId\":\"a\",\"sessionId\":\"s\","
				"\"modifiedAt\":\"soon\"}") == SKY_EINVAL);
	CU_ASSERT(valid_session("{\"applicationId\":\"a\",\"sessionId\":\"s\","
				"\"participants\":[{\"type\":\"user\"}]}") ==
		  SKY_EINVAL);
	CU_ASSERT_PTR_NOT_NULL(
	    strstr(sky_error_last()->message, "session.participants[0].id"));
	/* Over the property count and value size limits. */
	json_t *s = json_pack("{s:s,s:s,s:{}}", "applicationId", "a",
			      "sessionId", "s", "properties");
	json_t *props = json_object_get(s, "properties");
	for (unsigned i = 0; i <= SKY_MAX_PROPERTIES; i++) {
		char k[16];
		snprintf(k, sizeof(k), "k%u", i);
		json_object_set_new(props, k, json_string("v"));
	}
	CU_ASSERT(sky__validate_session(s, "session", 1) == SKY_ELIMIT);
	json_object_clear(props);
	char *big = malloc(SKY_MAX_PROPERTY_VALUE_BYTES + 2);
	memset(big, 'x', SKY_MAX_PROPERTY_VALUE_BYTES + 1);
	big[SKY_MAX_PROPERTY_VALUE_BYTES + 1] = '\0';
	json_object_set_new(props, "k", json_string(big));
	CU_ASSERT(sky__validate_session(s, "session", 1) == SKY_ELIMIT);
	free(big);
	json_decref(s);
}

static void test_model__errors(void)
{
	sky_error_clear();
	CU_ASSERT(sky_error_last()->code == 0);
	CU_ASSERT_STRING_EQUAL(sky_error_last()->message, "");
	sky__error_input("field %s", "x");
	sky__error_prefix("line %d", 3);
	CU_ASSERT_STRING_EQUAL(sky_error_last()->message, "line 3: field x");
	CU_ASSERT(sky_error_last()->source == SKY_ERRSRC_INPUT);
	CU_ASSERT(sky__error_lmdb(-30792 /* MDB_MAP_FULL */, "w") ==
		  SKY__EMAPFULL);
	CU_ASSERT(sky_error_last()->source == SKY_ERRSRC_LMDB);
	CU_ASSERT(sky_error_last()->native == -30792);
	CU_ASSERT_STRING_EQUAL(sky_version(), PACKAGE_VERSION);
}

/* Parse `text` (must succeed) and validate it as a session. */
static int session_rc(const char *text)
{
	json_t *v = NULL;
	int rc = sky__json_parse(text, strlen(text), NULL, "session", &v);
	CU_ASSERT_FATAL(rc == 0);
	rc = sky__validate_session(v, "session", 1);
	json_decref(v);
	return rc;
}

static void test_model__nul_and_big_values(void)
{
	/* U+0000 is fine in the strings the model keeps as text. */
	CU_ASSERT(
	    session_rc("{\"applicationId\":\"a\",\"sessionId\":\"s\","
		       "\"name\":\"x\\u0000\",\"description\":\"\\u0000\","
		       "\"properties\":{\"k\":\"v\\u0000w\"},"
		       "\"version\":100000000000000000000}") == 0);
	/* Not where a C string would be cut short or a word compared. */
	static const struct {
		const char *text, *needle;
	} bad[] = {
	    {"{\"applicationId\":\"a\\u0000\",\"sessionId\":\"s\"}",
	     "session.applicationId: holds U+0000"},
	    {"{\"applicationId\":\"a\",\"sessionId\":\"s\",\"participants\":"
	     "[{\"id\":\"u\\u0000x\"}]}",
	     "participants[0].id: holds U+0000"},
	    {"{\"applicationId\":\"a\",\"sessionId\":\"s\",\"status\":"
	     "\"open\\u0000\"}",
	     "session.status"},
	    {"{\"applicationId\":\"a\",\"sessionId\":\"s\",\"participants\":"
	     "[{\"id\":\"u\",\"type\":\"user\\u0000\"}]}",
	     "type"},
	    {"{\"applicationId\":\"a\",\"sessionId\":\"s\",\"createdAt\":"
	     "\"2024-05-01T10:00:00Z\\u0000\"}",
	     "session.createdAt"},
	    /* A big number is a number: not a string, not a property. */
	    {"{\"applicationId\":\"a\",\"sessionId\":\"s\",\"name\":"
	     "100000000000000000000}",
	     "session.name: must be a string, not a number"},
	    {"{\"applicationId\":\"a\",\"sessionId\":\"s\",\"properties\":"
	     "{\"k\":-100000000000000000000}}",
	     "strings, not a number"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		CU_ASSERT(session_rc(bad[i].text) == SKY_EINVAL);
		if (!strstr(sky_error_last()->message, bad[i].needle)) {
			fprintf(stderr, "\n'%s' lacks '%s'\n",
				sky_error_last()->message, bad[i].needle);
			CU_FAIL("message does not name the field");
		}
	}
	/* A member name with U+0000: refused by the parser, said clearly. */
	json_t *v = NULL;
	const char *t = "{\"p\":{\"a\\u0000\":1}}";
	CU_ASSERT(sky__json_parse(t, strlen(t), NULL, "patch", &v) ==
		  SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message,
			 "patch: the member name at line 1, column") != NULL);
	CU_ASSERT(strstr(sky_error_last()->message, "U+0000") != NULL);
	/* A raw NUL byte. */
	CU_ASSERT(sky__json_parse("{}\0", 3, NULL, "event", &v) == SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "raw NUL byte") != NULL);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_model__depth_scan", test_model__depth_scan},
	    {"test_model__parse_limits", test_model__parse_limits},
	    {"test_model__times", test_model__times},
	    {"test_model__ids", test_model__ids},
	    {"test_model__crc32c", test_model__crc32c},
	    {"test_model__sort", test_model__sort},
	    {"test_model__sessions", test_model__sessions},
	    {"test_model__errors", test_model__errors},
	    {"test_model__nul_and_big_values", test_model__nul_and_big_values},
	    {NULL, NULL},
	};
	return sky_test_main("model", cases);
}
