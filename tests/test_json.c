/*
 * test_json.c - the JSON codec (libsync/json.c): U+0000 in strings kept,
 * raw NUL bytes and member names with U+0000 refused, numbers beyond 64
 * bits or beyond double kept as their text, reals written in the shortest
 * text that reads back exactly, and everything else written byte for byte
 * as jansson's compact dump writes it. The randomised cases take a fixed
 * seed (printed; SEED=N replays one) and a fixed count.
 */
#include "config.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "json.h"
#include "testutil.h"

/* Parse `in`, dump it, and expect `out` (NULL: `in` itself). */
static int roundtrip(const char *in, const char *out)
{
	json_error_t err;
	json_t *v = sky__json_loadb(in, strlen(in), JSON_DECODE_ANY, &err);
	if (!v) {
		fprintf(stderr, "\n%s: %s\n", in, err.text);
		return 0;
	}
	size_t len;
	char *text = sky__json_dumps(v, &len);
	json_decref(v);
	int ok = text && strlen(text) == len && !strcmp(text, out ? out : in);
	if (!ok)
		fprintf(stderr, "\n%s -> %s\n", in, text ? text : "(null)");
	free(text);
	return ok;
}

static uint64_t seed_from_env(uint64_t dflt)
{
	const char *s = getenv("SEED");
	uint64_t seed = s && *s ? strtoull(s, NULL, 0) : dflt;
	printf("\n  SEED=%" PRIu64 " ", seed);
	return seed ? seed : 1;
}

/* xorshift64*: fixed seed, so a failure reproduces. */
static uint64_t next_rand(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static void test_json__nul_in_strings(void)
{
	/* Kept whole, with their length, and written back as \u0000. */
	json_t *v = sky__json_loadb("\"a\\u0000b\"", 10, JSON_DECODE_ANY, NULL);
	CU_ASSERT_FATAL(v != NULL);
	CU_ASSERT(json_string_length(v) == 3);
	CU_ASSERT(memcmp(json_string_value(v), "a\0b", 3) == 0);
	CU_ASSERT(sky__json_has_nul(v));
	CU_ASSERT(!sky__json_streq(v, "a"));
	json_decref(v);
	CU_ASSERT(
	    roundtrip("{\"name\":\"Line\\u00003\",\"e\":\"\\u0000\"}", NULL));
	CU_ASSERT(roundtrip("[\"\\u0000\\u0000\",\"x\\u0000\"]", NULL));
	/* The other escapes as jansson writes them. */
	CU_ASSERT(roundtrip("\"\\u0001\\u001f\\b\\f\\n\\r\\t\\\"\\\\/\x7f\"",
			    "\"\\u0001\\u001F\\b\\f\\n\\r\\t\\\"\\\\/\x7f\""));
	/* A string the dumper built from a C string with a NUL inside. */
	v = json_stringn("p\0q", 3);
	char *t = sky__json_dumps(v, NULL);
	CU_ASSERT(t && !strcmp(t, "\"p\\u0000q\""));
	free(t);
	json_decref(v);
}

static void test_json__raw_nul_refused(void)
{
	/* Wherever it is: after the value, inside it, inside a string. */
	static const char *const texts[] = {
	    "{\"v\":1}\0", "{\"v\":1\0}", "{\"v\":\"a\0b\"}",
	    "\0{}",	   "[1,\0 2]",
	};
	static const size_t lens[] = {8, 8, 11, 3, 7};
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		json_error_t err;
		json_t *v =
		    sky__json_loadb(texts[i], lens[i], JSON_DECODE_ANY, &err);
		CU_ASSERT(v == NULL);
		CU_ASSERT(json_error_code(&err) == json_error_null_character);
		CU_ASSERT(strstr(err.text, "NUL byte") != NULL);
		json_decref(v);
	}
}

static void test_json__nul_in_names_refused(void)
{
	json_error_t err;
	const char *t = "{\"a\\u0000b\":1}";
	json_t *v = sky__json_loadb(t, strlen(t), 0, &err);
	CU_ASSERT(v == NULL);
	CU_ASSERT(json_error_code(&err) == json_error_null_byte_in_key);
	json_decref(v);
}

static void test_json__big_numbers(void)
{
	/* Beyond int64 or beyond double: the text as it came, everywhere. */
	CU_ASSERT(roundtrip("100000000000000000000", NULL));
	CU_ASSERT(roundtrip("-9223372036854775809", NULL));
	CU_ASSERT(
	    roundtrip("[9223372036854775807,-9223372036854775808]", NULL));
	CU_ASSERT(roundtrip("[1,184467440737095516160,{\"a\":[2,"
			    "-99999999999999999999999,{\"b\":3}],\"c\":1e400},"
			    "3.5,\"1\",-1.5E+99999,null,true]",
			    NULL));
	CU_ASSERT(roundtrip("{\"x\":123456789012345678901,\"y\":0.94}", NULL));
	json_t *v = sky__json_loads("[12,123456789012345678901,\"t\"]",
				    JSON_DECODE_ANY, NULL);
	CU_ASSERT_FATAL(v != NULL);
	size_t n = 0;
	const char *text = sky__json_bignum(json_array_get(v, 1), &n);
	CU_ASSERT(text && n == 21 &&
		  !memcmp(text, "123456789012345678901", 21));
	CU_ASSERT(json_is_integer(json_array_get(v, 0)));
	CU_ASSERT(!sky__json_bignum(json_array_get(v, 0), NULL));
	CU_ASSERT(!sky__json_bignum(json_array_get(v, 2), NULL));
	CU_ASSERT(!sky__json_is_text(json_array_get(v, 1)));
	CU_ASSERT(sky__json_is_text(json_array_get(v, 2)));
	/* A copy is still one, and equal to its original. */
	json_t *copy = json_deep_copy(v);
	CU_ASSERT(copy && json_equal(copy, v));
	CU_ASSERT(sky__json_bignum(json_array_get(copy, 1), NULL) != NULL);
	json_decref(copy);
	json_decref(v);
	/* No parsed string is ever taken for one: U+00FF is C3 BF. */
	v = sky__json_loads("\"\\u00ff123\"", JSON_DECODE_ANY, NULL);
	CU_ASSERT(v && !sky__json_bignum(v, NULL) && sky__json_is_text(v));
	json_decref(v);
	/* A syntax error next to a big number is still reported, and a
	 * malformed number is never kept as text. */
	static const char *const bad[] = {
	    "[100000000000000000000,]",
	    "[100000000000000000000",
	    "[1e400,01e400]",
	    "[1e400,-01]",
	    "[1e400,1.e5]",
	    "[1e400,1e]",
	    "[1e400,+1]",
	    "[1e400,1e+]",
	    "[1e400,.5]",
	    "[1e400,1-2]",
	    "[1e400,-]",
	    "[1e400,100000000000000000000.]",
	    "[1e400,0100000000000000000000]",
	    "[1e400,1E400e1]",
	};
	/* Without JSON_REJECT_DUPLICATES a later member would replace an
	 * earlier one out of text order: refused when big numbers are kept. */
	v = sky__json_loads("{\"a\":\"x\",\"b\":1e400,\"a\":7}", 0, NULL);
	CU_ASSERT(v == NULL);
	json_decref(v);
	v = sky__json_loads("{\"a\":\"x\",\"b\":1,\"a\":7}", 0, NULL);
	CU_ASSERT(v && json_integer_value(json_object_get(v, "a")) == 7);
	json_decref(v);
	CU_ASSERT(sky__json_loadb(NULL, 0, 0, NULL) == NULL);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = sky__json_loads(bad[i], 0, NULL);
		CU_ASSERT(v == NULL);
		if (v)
			fprintf(stderr, "\naccepted %s\n", bad[i]);
		json_decref(v);
	}
}

static void test_json__shortest_reals(void)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"0.94", "0.94"},
	    {"0.1", "0.1"},
	    {"[1.0,-0.0]", "[1.0,-0.0]"},
	    {"1e300", "1e300"},
	    {"1e+300", "1e300"},
	    {"5e-324", "5e-324"},
	    {"1E2", "100.0"},
	    {"0.30000000000000004", "0.30000000000000004"},
	    {"123456789.125", "123456789.125"},
	    {"1.7976931348623157e308", "1.7976931348623157e308"},
	    {"0.000001", "1e-6"},
	    {"1e21", "1e21"},
	    {"1e16", "10000000000000000.0"},
	    {"1e17", "1e17"},
	    {"0.001", "0.001"},
	    {"123e-2", "1.23"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT(roundtrip(cases[i].in, cases[i].out));

	/* Short decimals take a way of their own: it must give exactly
	 * what the general search gives, at the edges of its range too. */
	static const double edges[] = {
	    1e-4,	   -1e-4,      0.00011,
	    1e14 - 1,	   1e14 - 0.5, 99999999999999.0,
	    1e13 + 0.5,	   0.1,	       0.2,
	    0.3,	   1.5,	       -2.25,
	    100.0,	   1e6,	       0.000123,
	    123456.654321, 0.999999,   9.999999,
	    0.00005,	   0.000012,   1e14,
	    -0.0,	   0.0};
	uint64_t r = seed_from_env(4);
	int shorts = sky_test_workload(100000, 10000);
	for (int i = 0; i < shorts + (int)(sizeof(edges) / sizeof(edges[0]));
	     i++) {
		double d;
		if (i < (int)(sizeof(edges) / sizeof(edges[0])))
			d = edges[i];
		else
			d = (double)(int64_t)(next_rand(&r) %
						  200000000000001ULL -
					      100000000000000LL) /
			    pow(10, (double)(next_rand(&r) % 9));
		char fast[40], slow[40];
		size_t nf = sky__json_real_text(d, fast, sizeof(fast));
		size_t ns = sky__json_real_text_searched(d, slow, sizeof(slow));
		if (nf != ns || strcmp(fast, slow) != 0) {
			CU_FAIL("short decimal text differs from the search");
			fprintf(stderr, "\n%.17g: %s vs %s\n", d, fast, slow);
			break;
		}
	}

	/* Random doubles: the text reads back to the same bits, is never
	 * longer than jansson's 17 digits (plus its ".0"), has a '.' or an
	 * exponent, and uses an exponent exactly when jansson's would. */
	uint64_t s = seed_from_env(20261203);
	int count = sky_test_workload(200000, 20000);
	for (int i = 0; i < count; i++) {
		uint64_t bits = next_rand(&s);
		double d;
		memcpy(&d, &bits, sizeof(d));
		/* Every other one a decimal as people write them, 0.94 or
		 * 31.5 or 123456789012345678, where the notation is chosen. */
		if (i & 1)
			d = (double)(bits % 1000000000000000000ULL) /
			    pow(10, (double)(next_rand(&s) % 24));
		if (!isfinite(d))
			continue;
		char buf[40];
		size_t n = sky__json_real_text(d, buf, sizeof(buf));
		double back = strtod(buf, NULL);
		char j17[40];
		snprintf(j17, sizeof(j17), "%.17g", d);
		if (memcmp(&back, &d, sizeof(d)) != 0 || n != strlen(buf) ||
		    n > strlen(j17) + 2 ||
		    (!strchr(buf, '.') && !strchr(buf, 'e')) ||
		    !strchr(buf, 'e') != !strchr(j17, 'e')) {
			CU_FAIL("real text does not read back");
			fprintf(stderr, "\n%.17g -> %s\n", d, buf);
			break;
		}
	}
}

/* A random JSON value without reals (those differ from jansson's on
 * purpose), strings with every kind of byte that needs escaping. */
static json_t *random_value(uint64_t *s, int depth)
{
	static const char *const pieces[] = {
	    "a",    "\"",	"\\",		"/",
	    "\n",   "\t",	"\x01",		"\x1f",
	    "\x7f", "\xc3\xa9", "\xe2\x80\xae", "\xf0\x9f\x98\x80",
	    " ",    "z",
	};
	unsigned kind = (unsigned)(next_rand(s) % (depth > 4 ? 5 : 7));
	switch (kind) {
	case 0: return json_null();
	case 1: return json_boolean(next_rand(s) & 1);
	case 2:
		return json_integer((json_int_t)next_rand(s) >>
				    (next_rand(s) % 64));
	case 3:
	case 4: {
		char buf[64] = "";
		size_t n = next_rand(s) % 8;
		for (size_t i = 0; i < n; i++)
			strcat(buf, pieces[next_rand(s) % (sizeof(pieces) /
							   sizeof(pieces[0]))]);
		return json_string(buf);
	}
	case 5: {
		json_t *a = json_array();
		size_t n = next_rand(s) % 4;
		for (size_t i = 0; a && i < n; i++)
			if (json_array_append_new(
				a, random_value(s, depth + 1)) < 0)
				CU_FAIL("json_array_append_new");
		return a;
	}
	default: {
		json_t *o = json_object();
		size_t n = next_rand(s) % 4;
		for (size_t i = 0; o && i < n; i++) {
			char key[16];
			snprintf(key, sizeof(key), "%c\x7f%u", (int)('a' + i),
				 (unsigned)(next_rand(s) % 100));
			if (json_object_set_new(o, key,
						random_value(s, depth + 1)) < 0)
				CU_FAIL("json_object_set_new");
		}
		return o;
	}
	}
}

static void test_json__same_as_jansson(void)
{
	uint64_t s = seed_from_env(7);
	int count = sky_test_workload(5000, 500);
	/* Integers at the edges of their digits and of 64 bits. */
	static const json_int_t edges[] = {0,
					   -1,
					   1,
					   9,
					   10,
					   -9,
					   -10,
					   99,
					   100,
					   -99999,
					   1000000,
					   INT64_MAX,
					   INT64_MIN,
					   INT64_MAX - 1,
					   INT64_MIN + 1};
	for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		json_t *v = json_integer(edges[i]);
		char *ours = sky__json_dumps(v, NULL);
		char want[32];
		snprintf(want, sizeof(want), "%" JSON_INTEGER_FORMAT, edges[i]);
		CU_ASSERT(ours && !strcmp(ours, want));
		free(ours);
		json_decref(v);
	}
	for (int i = 0; i < count; i++) {
		json_t *v = random_value(&s, 0);
		CU_ASSERT_FATAL(v != NULL);
		char *ours = sky__json_dumps(v, NULL);
		char *theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
		int same = ours && theirs && !strcmp(ours, theirs);
		if (!same) {
			CU_FAIL("dump differs from jansson's");
			fprintf(stderr, "\nours:   %s\njansson: %s\n", ours,
				theirs);
		}
		/* And it parses back to an equal value. */
		json_t *back =
		    ours ? sky__json_loads(ours, JSON_DECODE_ANY, NULL) : NULL;
		CU_ASSERT(back && json_equal(back, v));
		json_decref(back);
		free(ours);
		free(theirs);
		json_decref(v);
		if (!same)
			break;
	}
}

/* base64url (base64.h), the codec of the JSON inside tokens and cursors:
 * RFC 4648's vectors unpadded, the url alphabet, strict by default. */
static void test_json__base64url(void)
{
	static const char *vec[][2] = {
	    {"", ""},
	    {"f", "Zg"},
	    {"fo", "Zm8"},
	    {"foo", "Zm9v"},
	    {"foob", "Zm9vYg"},
	    {"fooba", "Zm9vYmE"},
	    {"foobar", "Zm9vYmFy"},
	};
	unsigned char out[64];
	for (size_t i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		sky_buf b = SKY_BUF_INIT;
		CU_ASSERT_EQUAL(
		    sky__b64url_append(&b, vec[i][0], strlen(vec[i][0])), 0);
		CU_ASSERT_STRING_EQUAL(b.data ? b.data : "", vec[i][1]);
		sky__buf_free(&b);
		long n = sky__b64url_decode(vec[i][1], strlen(vec[i][1]), 0,
					    out, sizeof(out));
		CU_ASSERT_EQUAL(n, (long)strlen(vec[i][0]));
		CU_ASSERT(n >= 0 && memcmp(out, vec[i][0], (size_t)n) == 0);
	}
	/* 0xfb 0xff: "-_8" in the url alphabet, "+/8=" in the standard one,
	 * which only SKY_B64_LAX takes. */
	sky_buf b = SKY_BUF_INIT;
	CU_ASSERT_EQUAL(sky__b64url_append(&b, "\xfb\xff", 2), 0);
	CU_ASSERT_STRING_EQUAL(b.data, "-_8");
	sky__buf_free(&b);
	CU_ASSERT_EQUAL(sky__b64url_decode("+/8", 3, 0, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(sky__b64url_decode("Zg==", 4, 0, out, sizeof(out)), -1);
	CU_ASSERT_EQUAL(
	    sky__b64url_decode("+/8=", 4, SKY_B64_LAX, out, sizeof(out)), 2);
	CU_ASSERT(out[0] == 0xfb && out[1] == 0xff);
	/* No encoding is 4k + 1 characters long; no overflow of out. */
	CU_ASSERT_EQUAL(sky__b64url_decode("Zm9vY", 5, 0, out, sizeof(out)),
			-1);
	CU_ASSERT_EQUAL(sky__b64url_decode("Zm9vYmFy", 8, 0, out, 5), -1);
	/* Every length round-trips. */
	unsigned char raw[48];
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof(raw); len++) {
		sky_buf e = SKY_BUF_INIT;
		CU_ASSERT_EQUAL(sky__b64url_append(&e, raw, len), 0);
		long n = sky__b64url_decode(e.data ? e.data : "", e.len, 0, out,
					    sizeof(out));
		CU_ASSERT(n == (long)len && memcmp(out, raw, len) == 0);
		sky__buf_free(&e);
	}
}

/* jansson's allocator that fails its Nth call (from 0), then all others
 * succeed; counts every call. */
static long alloc_calls, alloc_fail_at = -1;

static void *failing_malloc(size_t n)
{
	if (alloc_calls++ == alloc_fail_at)
		return NULL;
	return malloc(n);
}

/*
 * Every allocation of a parse fails in turn, until a parse allocates less
 * than the failure point. jansson 2.14 can drop a byte of a string when an
 * allocation fails in its lexer and still return the tree
 * ("2023-01-01T00:0:00Z"); the codec must then fail instead. Each text is
 * its own compact dump, so a parse that succeeds must dump back to it
 * exactly. The strings outgrow jansson's first string buffer, so that its
 * lexer reallocates while reading them.
 */
static void test_json__allocation_failures(void)
{
	static const char *texts[] = {
	    "{\"at\":\"2023-01-01T00:00:00Z\",\"name\":\"Line 3 of the "
	    "northern route\",\"tags\":[\"a\",\"bcdefghijklmnopqrstuvwxyz\"],"
	    "\"n\":12,\"r\":0.94,\"ok\":true,\"none\":null}",
	    "\"2023-01-01T00:00:00Z and then a good deal more text\"",
	    "[\"x\\u0000y 0123456789abcdef0123456789\",{\"k\":{\"deep\":"
	    "\"value that is longer than sixteen bytes\"}}]",
	    "{\"big\":123456789012345678901234567890,\"s\":"
	    "\"after a big number, a long string\"}",
	};
	json_malloc_t old_malloc;
	json_free_t old_free;
	json_get_alloc_funcs(&old_malloc, &old_free);
	for (size_t t = 0; t < sizeof(texts) / sizeof(texts[0]); t++) {
		const char *in = texts[t];
		long at, failures = 0;
		for (at = 0; at < 10000; at++) {
			json_error_t err;
			json_set_alloc_funcs(failing_malloc, free);
			alloc_calls = 0;
			alloc_fail_at = at;
			json_t *v = sky__json_loadb(in, strlen(in),
						    JSON_DECODE_ANY, &err);
			long calls = alloc_calls;
			alloc_fail_at = -1;
			json_set_alloc_funcs(old_malloc, old_free);
			if (!v) {
				failures++;
				CU_ASSERT(json_error_code(&err) ==
					  json_error_out_of_memory);
				if (calls <= at)
					CU_FAIL("refused with no failure");
				continue;
			}
			char *back = sky__json_dumps(v, NULL);
			json_decref(v);
			if (!back || strcmp(back, in)) {
				CU_FAIL("a parse that lost an allocation "
					"returned other text");
				fprintf(stderr, "\nallocation %ld:\n%s\n%s\n",
					at, in, back ? back : "(null)");
			}
			free(back);
			if (calls <= at)
				break; /* nothing failed: every one was tried */
		}
		CU_ASSERT(at < 10000);
		CU_ASSERT(failures > 0);
		/* Each parse that lost an allocation was refused. */
		CU_ASSERT(failures == at);
	}
	/* And the functions a program set are the ones in place after. */
	json_malloc_t m;
	json_free_t f;
	json_get_alloc_funcs(&m, &f);
	CU_ASSERT(m == old_malloc && f == old_free);
}

/*
 * The one-pass loader (json_load.c) against jansson: whenever it builds a
 * tree, jansson builds an equal one with the same member order and the
 * same types, on random values, random edits of their text, tricky
 * numbers and escapes, and the corpus of tests/data/json. Some of each
 * must be taken, or the comparison proves nothing.
 */
static int fast_agrees(const char *text, size_t len, size_t flags)
{
	int oom;
	json_t *fast = sky__json_fast_load(text, len, flags, &oom);
	CU_ASSERT(!oom);
	if (!fast)
		return 0;
	json_error_t err;
	json_t *ref = json_loadb(text, len, flags | JSON_ALLOW_NUL, &err);
	char *a = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY);
	char *b = ref ? json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	if (!ref || !json_equal(fast, ref) || !a || !b || strcmp(a, b) != 0) {
		CU_FAIL("the one-pass loader differs from jansson");
		fprintf(stderr, "\ntext: %.*s\nfast: %s\njansson: %s\n",
			(int)len, text, a ? a : "?",
			ref ? (b ? b : "?") : err.text);
	}
	free(a);
	free(b);
	json_decref(fast);
	json_decref(ref);
	return 1;
}

static void test_json__fast_load_same_as_jansson(void)
{
	static const size_t flag_sets[] = {
	    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, JSON_DECODE_ANY, 0};
	static const char *const tricky[] = {
	    "1.5",
	    "-0.0",
	    "-0",
	    "0",
	    "1e400",
	    "-1e400",
	    "1e-400",
	    "4.9e-324",
	    "2.2250738585072014e-308",
	    "123456789012345678",
	    "1234567890123456789",
	    "-123456789012345678",
	    "0.1e1",
	    "1E+2",
	    "1e-2",
	    "-",
	    "01",
	    "1.",
	    ".5",
	    "1e",
	    "1e+",
	    "--1",
	    "[1,]",
	    "[,1]",
	    "{\"a\":1,}",
	    "{\"a\" : [ 1 , 2 ] }",
	    "{\"a\":1,\"a\":2}",
	    "\"\\u00e9\\u20ac\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
	    "\"\\u0000\"",
	    "\"\\ud83d\\ude00\"",
	    "\"\\ud83d\"",
	    "\"\\u12\"",
	    "\"\\x\"",
	    "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
	    "\"\xc0\xaf\"",
	    "\"\xed\xa0\x80\"",
	    "\"\xf4\x90\x80\x80\"",
	    "\"\xe0\x9f\xbf\"",
	    "\"a\tb\"",
	    " \t\r\n[true,false,null] \n",
	    "tru",
	    "nul",
	    "[]",
	    "{}",
	    "[[]]",
	    "{\"\":{\"\":[]}}",
	    "\xef\xbb\xbf{}",
	    "{} x",
	    "",
	    "   "};
	uint64_t s = seed_from_env(11);
	unsigned taken = 0, tries = 0, taken_edits = 0;

	for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++)
		for (size_t f = 0; f < 3; f++)
			taken += (unsigned)fast_agrees(
			    tricky[i], strlen(tricky[i]), flag_sets[f]);
	CU_ASSERT(taken > 20);

	int count = sky_test_workload(4000, 400);
	for (int i = 0; i < count; i++) {
		json_t *v = random_value(&s, 0);
		char *text =
		    json_dumps(v, JSON_ENCODE_ANY |
				      (i & 1 ? JSON_INDENT(1) : JSON_COMPACT));
		json_decref(v);
		CU_ASSERT_FATAL(text != NULL);
		size_t len = strlen(text);
		tries++;
		if (fast_agrees(text, len, flag_sets[i % 3]))
			taken++;
		/* A few random edits of the same text. */
		char buf[4096];
		if (len + 8 < sizeof(buf)) {
			static const char edits[] =
			    "{}[]\",:\\u0123456789.eE-+ "
			    "tnf\x01\x7f\xc3\xa9\xff";
			memcpy(buf, text, len);
			size_t n = len;
			for (int k = 0; k < 3; k++) {
				size_t at = n ? next_rand(&s) % n : 0;
				char ch =
				    edits[next_rand(&s) % (sizeof(edits) - 1)];
				switch (next_rand(&s) % 3) {
				case 0:
					if (n) {
						memmove(buf + at, buf + at + 1,
							n - at - 1);
						n--;
					}
					break;
				case 1:
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = ch;
					n++;
					break;
				default:
					if (n)
						buf[at] = ch;
				}
				if (fast_agrees(buf, n, flag_sets[k]))
					taken_edits++;
			}
		}
		free(text);
	}
	CU_ASSERT(taken > tries / 2);
	CU_ASSERT(taken_edits > 0);

	/* The corpus: every valid input it takes agrees; it takes some. */
	static const char *const dirs[] = {"json/valid", "json/invalid"};
	unsigned corpus_taken = 0;
	for (size_t d = 0; d < 2; d++) {
		char *dir = sky_test_data(dirs[d]);
		DIR *dh = opendir(dir);
		CU_ASSERT_FATAL(dh != NULL);
		struct dirent *de;
		while ((de = readdir(dh))) {
			if (de->d_name[0] == '.')
				continue;
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
			FILE *fp = fopen(path, "rb");
			if (!fp)
				continue;
			static char data[1 << 16];
			size_t n = fread(data, 1, sizeof(data), fp);
			fclose(fp);
			corpus_taken +=
			    (unsigned)fast_agrees(data, n, JSON_DECODE_ANY);
		}
		closedir(dh);
		free(dir);
	}
	CU_ASSERT(corpus_taken > 10);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_json__nul_in_strings", test_json__nul_in_strings},
	    {"test_json__raw_nul_refused", test_json__raw_nul_refused},
	    {"test_json__nul_in_names_refused",
	     test_json__nul_in_names_refused},
	    {"test_json__big_numbers", test_json__big_numbers},
	    {"test_json__shortest_reals", test_json__shortest_reals},
	    {"test_json__same_as_jansson", test_json__same_as_jansson},
	    {"test_json__fast_load_same_as_jansson",
	     test_json__fast_load_same_as_jansson},
	    {"test_json__base64url", test_json__base64url},
	    {"test_json__allocation_failures", test_json__allocation_failures},
	    {NULL, NULL},
	};
	return sky_test_main("json", cases);
}
