/*
 * test_merge.c - RFC 7396 merge on jansson values (sky__merge_patch) and as
 * text (sky_merge_patch_text).
 *
 * The 15 cases of RFC 7396 Appendix A (tests/data/merge/rfc7396.json) and
 * our own edge cases (tests/data/merge/edge.json: odd keys, escapes,
 * unicode, 64-bit integers, floats, non-object targets) run through both;
 * a copy of the RFC cases kept outside the project gets the same pass
 * when it is there. Beyond them: the result never shares a value with the
 * patch, the patch is never modified, the target is patched in place,
 * nulls delete at any depth, arrays replace whole at any depth, a merge
 * allocates in proportion to the patch, and every allocation failure is
 * survived without a leak.
 */
#include "config.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "merge.h"
#include "outbox.h"
#include "testutil.h"

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!j)
		fprintf(stderr, "bad test JSON %s: %s\n", text, jerr.text);
	return j;
}

/* sky__merge_patch on two texts, compared with the expected text. */
static int merge_equals(const char *target, const char *patch,
			const char *expect)
{
	json_t *t = parse(target), *p = parse(patch), *e = parse(expect);
	json_t *r = sky__merge_patch(t, p);
	int ok = r && json_equal(r, e);
	if (!ok) {
		char *got = r ? json_dumps(r, JSON_ENCODE_ANY) : NULL;
		fprintf(stderr, "\nmerge %s + %s = %s, want %s\n", target,
			patch, got ? got : "(null)", expect);
		free(got);
	}
	json_decref(r);
	json_decref(p);
	json_decref(e);
	return ok;
}

/* A case file: {"cases": [{"name", "original", "patch", "result"}]}. */
static json_t *load_cases(const char *path)
{
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr);
	if (!doc)
		fprintf(stderr, "%s: %s\n", path, jerr.text);
	else if (!json_is_array(json_object_get(doc, "cases"))) {
		fprintf(stderr, "%s: no cases array\n", path);
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

/*
 * Every case of the file at `path` through sky__merge_patch and
 * sky_merge_patch_text; returns the number of cases run. The external copy
 * of the RFC cases names its fields "case" and "target": both spellings
 * are read.
 */
static size_t run_cases(const char *path)
{
	json_t *doc = load_cases(path), *c;
	size_t i, n = 0;

	CU_ASSERT_FATAL(doc != NULL);
	json_array_foreach(json_object_get(doc, "cases"), i, c) {
		json_t *target = json_object_get(c, "original");
		if (!target)
			target = json_object_get(c, "target");
		json_t *patch = json_object_get(c, "patch");
		json_t *expect = json_object_get(c, "result");
		const char *name =
		    json_string_value(json_object_get(c, "name"));
		char label[32];
		if (!name) {
			snprintf(label, sizeof(label), "%d",
				 (int)json_integer_value(
				     json_object_get(c, "case")));
			name = label;
		}
		CU_ASSERT_FATAL(target && patch && expect);
		json_t *patch_before = json_deep_copy(patch);
		CU_ASSERT_FATAL(patch_before != NULL);

		json_t *r = sky__merge_patch(json_deep_copy(target), patch);
		CU_ASSERT(r != NULL && json_equal(r, expect));
		CU_ASSERT(json_equal(patch, patch_before));
		if (!r || !json_equal(r, expect))
			fprintf(stderr, "\n%s: case %s failed\n", path, name);
		json_decref(r);

		char *tt = json_dumps(target, JSON_ENCODE_ANY);
		char *pt = json_dumps(patch, JSON_ENCODE_ANY);
		char *et = json_dumps(expect, JSON_ENCODE_ANY);
		char *out = NULL;
		size_t out_len = 0;
		CU_ASSERT_FATAL(tt && pt && et);
		CU_ASSERT_EQUAL(sky_merge_patch_text(tt, strlen(tt), pt,
						     strlen(pt), &out,
						     &out_len),
				0);
		if (out) {
			CU_ASSERT_EQUAL(out_len, strlen(out));
			if (!sky_test_json_equal(out, et)) {
				CU_FAIL("text merge differs");
				fprintf(stderr, "%s: case %s (text)\n", path,
					name);
			}
		}
		sky_free(out);
		free(tt);
		free(pt);
		free(et);
		json_decref(patch_before);
		n++;
	}
	json_decref(doc);
	return n;
}

static void test_merge__rfc7396_cases(void)
{
	char *path = sky_test_data("merge/rfc7396.json");
	CU_ASSERT_EQUAL(run_cases(path), 15);
	free(path);
}

static void test_merge__edge_cases(void)
{
	char *path = sky_test_data("merge/edge.json");
	CU_ASSERT(run_cases(path) >= 41);
	free(path);
}

/* The same pass over a copy of the RFC cases kept outside the project,
 * when there is one: two transcriptions that must agree. */
static void test_merge__rfc7396_external(void)
{
	char *path = sky_test_fixture("rfc7396.json");
	if (!path)
		return;
	CU_ASSERT_EQUAL(run_cases(path), 15);
	free(path);
}

static void test_merge__target_patched_in_place(void)
{
	json_t *target = parse("{\"a\":{\"b\":1},\"big\":[1,2,3]}");
	json_t *inner = json_object_get(target, "a");
	json_t *big = json_object_get(target, "big");
	json_t *patch = parse("{\"a\":{\"c\":2}}");

	json_t *r = sky__merge_patch(target, patch);
	/* The same objects, not copies: nothing of the target is copied. */
	CU_ASSERT_PTR_EQUAL(r, target);
	CU_ASSERT_PTR_EQUAL(json_object_get(r, "a"), inner);
	CU_ASSERT_PTR_EQUAL(json_object_get(r, "big"), big);
	json_t *want = parse("{\"a\":{\"b\":1,\"c\":2},\"big\":[1,2,3]}");
	CU_ASSERT(json_equal(r, want));
	json_decref(want);
	json_decref(r);
	json_decref(patch);

	/* A missing target (NULL) is taken as {}. */
	patch = parse("{\"a\":null,\"b\":{\"c\":null,\"d\":1}}");
	r = sky__merge_patch(NULL, patch);
	want = parse("{\"b\":{\"d\":1}}");
	CU_ASSERT(r && json_equal(r, want));
	json_decref(want);
	json_decref(r);
	json_decref(patch);
}

static void test_merge__patch_not_aliased(void)
{
	json_t *patch = parse("{\"new\":{\"x\":{\"y\":1}},\"arr\":[{\"k\":1}],"
			      "\"s\":\"str\",\"deep\":{\"n\":{\"m\":[1]}}}");
	json_t *saved = json_deep_copy(patch);
	json_t *r =
	    sky__merge_patch(parse("{\"deep\":{\"n\":{\"old\":true}}}"), patch);

	CU_ASSERT_FATAL(r != NULL);
	/* No value of the result is a value of the patch... */
	CU_ASSERT_PTR_NOT_EQUAL(json_object_get(r, "new"),
				json_object_get(patch, "new"));
	CU_ASSERT_PTR_NOT_EQUAL(json_object_get(r, "arr"),
				json_object_get(patch, "arr"));
	CU_ASSERT_PTR_NOT_EQUAL(json_object_get(r, "s"),
				json_object_get(patch, "s"));
	/* ...so changing the result in place leaves the patch alone. */
	json_object_set_new(json_object_get(json_object_get(r, "new"), "x"),
			    "z", json_true());
	json_object_set_new(json_array_get(json_object_get(r, "arr"), 0), "k",
			    json_integer(99));
	json_array_append_new(json_object_get(r, "arr"), json_null());
	json_string_set(json_object_get(r, "s"), "changed");
	json_array_clear(json_object_get(
	    json_object_get(json_object_get(r, "deep"), "n"), "m"));
	CU_ASSERT(json_equal(patch, saved));

	/* A patch that is not an object is the result, but as a copy. */
	json_t *arr = parse("[{\"a\":1}]");
	json_t *r2 = sky__merge_patch(json_object(), arr);
	CU_ASSERT(r2 && r2 != arr && json_equal(r2, arr));
	json_object_set_new(json_array_get(r2, 0), "a", json_integer(2));
	CU_ASSERT_EQUAL(
	    json_integer_value(json_object_get(json_array_get(arr, 0), "a")),
	    1);

	/* A second patch merged into the first result must not reach back
	 * into the first patch either. */
	json_t *p2 = parse("{\"new\":{\"x\":{\"w\":2}}}");
	r = sky__merge_patch(r, p2);
	CU_ASSERT(json_equal(patch, saved));

	json_decref(r);
	json_decref(r2);
	json_decref(arr);
	json_decref(p2);
	json_decref(patch);
	json_decref(saved);
}

static void test_merge__nested_null_deletion(void)
{
	CU_ASSERT(merge_equals("{\"a\":{\"b\":{\"c\":1,\"d\":2}},\"e\":1}",
			       "{\"a\":{\"b\":{\"c\":null}}}",
			       "{\"a\":{\"b\":{\"d\":2}},\"e\":1}"));
	/* Deleting what is not there is no error. */
	CU_ASSERT(merge_equals("{\"a\":1}", "{\"zz\":null,\"a\":{\"q\":null}}",
			       "{\"a\":{}}"));
	/* Nulls in a patch object landing where there was no object are
	 * dropped at every depth (MergePatch({}, value)). */
	CU_ASSERT(merge_equals(
	    "{\"x\":5}", "{\"x\":{\"y\":null,\"z\":{\"w\":null,\"v\":1}}}",
	    "{\"x\":{\"z\":{\"v\":1}}}"));
	/* Nulls inside arrays are values, kept as they are. */
	CU_ASSERT(merge_equals("{}", "{\"a\":[null,{\"b\":null}]}",
			       "{\"a\":[null,{\"b\":null}]}"));
	/* A null already in the target stays until a patch removes it. */
	CU_ASSERT(
	    merge_equals("{\"n\":null}", "{\"m\":1}", "{\"n\":null,\"m\":1}"));
	CU_ASSERT(merge_equals("{\"n\":null}", "{\"n\":null}", "{}"));
	/* Deleting a whole subtree. */
	CU_ASSERT(merge_equals("{\"a\":{\"b\":{\"c\":{\"d\":1}}},\"k\":1}",
			       "{\"a\":null}", "{\"k\":1}"));
}

static void test_merge__arrays_replaced_whole(void)
{
	CU_ASSERT(
	    merge_equals("{\"a\":{\"b\":{\"list\":[1,2,3],\"keep\":true}}}",
			 "{\"a\":{\"b\":{\"list\":[4]}}}",
			 "{\"a\":{\"b\":{\"list\":[4],\"keep\":true}}}"));
	/* Objects inside arrays are not merged: the array is replaced. */
	CU_ASSERT(merge_equals("{\"a\":[{\"x\":1,\"y\":2}]}",
			       "{\"a\":[{\"x\":3}]}", "{\"a\":[{\"x\":3}]}"));
	/* An object replaces an array, an array replaces an object. */
	CU_ASSERT(merge_equals("{\"a\":[1],\"b\":{\"c\":1}}",
			       "{\"a\":{\"k\":1},\"b\":[2]}",
			       "{\"a\":{\"k\":1},\"b\":[2]}"));
	CU_ASSERT(
	    merge_equals("{\"a\":{\"b\":1}}", "{\"a\":[]}", "{\"a\":[]}"));
	/* Scalars of every kind replace. */
	CU_ASSERT(merge_equals("{\"a\":{\"b\":1}}",
			       "{\"a\":true,\"b\":1.5,\"c\":\"s\",\"d\":-7}",
			       "{\"a\":true,\"b\":1.5,\"c\":\"s\",\"d\":-7}"));
	/* Non-object targets and patches at the top (RFC cases 9-14). */
	CU_ASSERT(merge_equals("\"x\"", "{\"a\":1}", "{\"a\":1}"));
	CU_ASSERT(merge_equals("{\"a\":1}", "7", "7"));
	CU_ASSERT(merge_equals("null", "{}", "{}"));
}

/* ------------------------------------------------------------------ */
/* Allocation: counting and failing allocators for jansson             */
/* ------------------------------------------------------------------ */

static long alloc_live, alloc_calls, alloc_fail_at = -1;

static void *counting_malloc(size_t n)
{
	if (alloc_calls++ == alloc_fail_at)
		return NULL;
	/* A header keeps the count exact without a table. */
	void *p = malloc(n + 16);
	if (!p)
		return NULL;
	alloc_live++;
	return (char *)p + 16;
}

static void counting_free(void *p)
{
	if (!p)
		return;
	alloc_live--;
	free((char *)p - 16);
}

static void test_merge__allocation(void)
{
	json_malloc_t old_malloc;
	json_free_t old_free;
	char key[32];

	json_get_alloc_funcs(&old_malloc, &old_free);
	json_set_alloc_funcs(counting_malloc, counting_free);
	alloc_live = alloc_calls = 0;
	alloc_fail_at = -1;

	/* A big target and a small patch. */
	json_t *target = json_object();
	for (int i = 0; i < 10000; i++) {
		snprintf(key, sizeof(key), "member-%d", i);
		json_object_set_new(
		    target, key, json_pack("{s:i,s:[i,i]}", "n", i, "l", i, i));
	}
	json_t *patch = json_pack("{s:{s:i},s:n,s:[i]}", "member-5", "n", -1,
				  "member-6", "new", 1);
	long live_before = alloc_live;

	alloc_calls = 0;
	json_t *r = sky__merge_patch(target, patch);
	CU_ASSERT_FATAL(r != NULL);
	/* Proportional to the patch: a handful of allocations, where a copy
	 * of the target would take tens of thousands. */
	CU_ASSERT(alloc_calls < 20);
	/* member-6 (an object, a pair and their keys) was freed; "new" and
	 * its array were added: the live count barely moves. */
	CU_ASSERT(alloc_live < live_before + 10);
	json_decref(r);
	json_decref(patch);
	CU_ASSERT_EQUAL(alloc_live, 0);

	/*
	 * Every allocation failing in turn: the merge returns NULL with an
	 * out-of-memory error, or succeeds; either way nothing leaks.
	 */
	int failures = 0, done = 0;
	for (long n = 0; n < 1000 && !done; n++) {
		alloc_fail_at = -1;
		json_t *t = json_pack("{s:{s:i,s:{s:i}},s:[i],s:s}", "a", "b",
				      1, "c", "d", 2, "e", 3, "f", "g");
		json_t *p = json_pack("{s:{s:n,s:{s:i,s:{s:n,s:[i]}}},s:{s:s},"
				      "s:[i,{s:i}],s:n}",
				      "a", "b", "c", "x", 1, "y", "z", "w", 5,
				      "h", "i", "j", "k", 7, "m", 8, "f");
		alloc_calls = 0;
		alloc_fail_at = n;
		sky_error_clear();
		json_t *res = sky__merge_patch(t, p);
		alloc_fail_at = -1;
		if (res) {
			json_t *want = json_pack(
			    "{s:{s:{s:i,s:i,s:{s:[i]}}},s:[i],s:{s:s},"
			    "s:[i,{s:i}]}",
			    "a", "c", "d", 2, "x", 1, "y", "w", 5, "e", 3, "h",
			    "i", "j", "k", 7, "m", 8);
			done = 1;
			CU_ASSERT(json_equal(res, want));
			json_decref(want);
		} else {
			failures++;
			CU_ASSERT_EQUAL(sky_error_last()->source,
					SKY_ERRSRC_NOMEM);
		}
		json_decref(res);
		json_decref(p);
		CU_ASSERT_EQUAL(alloc_live, 0);
	}
	CU_ASSERT(done);
	CU_ASSERT(failures > 5);

	json_set_alloc_funcs(old_malloc, old_free);
}

static void test_merge__text_errors(void)
{
	char *out = (char *)"untouched";
	size_t len = 12345;

	CU_ASSERT_EQUAL(sky_merge_patch_text("{\"a\":", 5, "{}", 2, &out, &len),
			SKY_EINVAL);
	CU_ASSERT_EQUAL(sky_error_last()->code, SKY_EINVAL);
	CU_ASSERT_EQUAL(sky_error_last()->source, SKY_ERRSRC_JSON);
	CU_ASSERT(strstr(sky_error_last()->message, "target") != NULL);
	CU_ASSERT(strstr(sky_error_last()->message, "line 1") != NULL);
	CU_ASSERT(strcmp(out, "untouched") == 0 && len == 12345);

	CU_ASSERT_EQUAL(sky_merge_patch_text("{}", 2, "{\n\"a\":1,\n\"a\":2}",
					     15, &out, &len),
			SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "patch") != NULL);
	CU_ASSERT(strstr(sky_error_last()->message, "line 3") != NULL);
	CU_ASSERT(strstr(sky_error_last()->message, "duplicate") != NULL);

	/* The lengths count: text past them is not read. */
	CU_ASSERT_EQUAL(
	    sky_merge_patch_text("{}garbage", 2, "{\"a\":1}xx", 7, &out, &len),
	    0);
	CU_ASSERT_STRING_EQUAL(out, "{\"a\":1}");
	CU_ASSERT_EQUAL(len, 7);
	sky_free(out);

	CU_ASSERT_EQUAL(sky_merge_patch_text("", 0, "{}", 2, &out, &len),
			SKY_EINVAL);
}

static void test_merge__text_any_values(void)
{
	static const struct {
		const char *target, *patch, *want;
	} cases[] = {
	    {"1", "null", "null"},
	    {"[1]", "{\"a\":1}", "{\"a\":1}"},
	    {"{\"a\":\"\\u00e9\\\"\"}", "{\"b\":[true,false,0.5]}",
	     "{\"a\":\"\xc3\xa9\\\"\",\"b\":[true,false,0.5]}"},
	    {"{\"a\":{\"b\":1}}", "{\"a\":{\"b\":null}}", "{\"a\":{}}"},
	    {"\"s\"", "\"t\"", "\"t\""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL;
		size_t len;
		CU_ASSERT_EQUAL(sky_merge_patch_text(
				    cases[i].target, strlen(cases[i].target),
				    cases[i].patch, strlen(cases[i].patch),
				    &out, &len),
				0);
		if (!out)
			continue;
		/* Compact output: exactly the expected bytes. */
		CU_ASSERT_STRING_EQUAL(out, cases[i].want);
		CU_ASSERT_EQUAL(len, strlen(cases[i].want));
		sky_free(out);
	}
	/* out_len may be NULL. */
	char *out = NULL;
	CU_ASSERT_EQUAL(sky_merge_patch_text("{}", 2, "{}", 2, &out, NULL), 0);
	CU_ASSERT(out && strcmp(out, "{}") == 0);
	sky_free(out);
}

/* ---- coalescing (queue.c: sky__patch_compose) ---- */

static unsigned long long compose_rng = 7;

static unsigned pick(unsigned n)
{
	compose_rng =
	    compose_rng * 6364136223846793005ull + 1442695040888963407ull;
	return (unsigned)((compose_rng >> 33) % n);
}

/* A small random JSON value over keys a..c, nested up to `depth`. */
static json_t *random_json(int depth, int allow_null)
{
	switch (pick(depth > 0 ? 7 : 4)) {
	case 0: return json_integer(pick(3));
	case 1: return json_string(pick(2) ? "s" : "t");
	case 2: return json_pack("[i]", pick(3));
	case 3: return allow_null ? json_null() : json_true();
	default: {
		json_t *o = json_object();
		unsigned n = pick(4);
		for (unsigned i = 0; i < n; i++) {
			char k[2] = {(char)('a' + pick(3)), 0};
			json_object_set_new(o, k,
					    random_json(depth - 1, allow_null));
		}
		return o;
	}
	}
}

static json_t *random_object(int depth, int allow_null)
{
	json_t *o = json_object();
	unsigned n = 1 + pick(3);
	for (unsigned i = 0; i < n; i++) {
		char k[2] = {(char)('a' + pick(3)), 0};
		json_object_set_new(o, k, random_json(depth, allow_null));
	}
	return o;
}

/*
 * The outbox sends two queued data patches as one only when
 * sky__patch_compose says they compose; then applying the one must equal
 * applying the two in turn, on every document. Checked on random
 * documents and patches, null-then-object traps included, and the
 * classic trap must be refused.
 */
static void test_merge__compose_equals_sequential(void)
{
	const unsigned rounds = (unsigned)sky_test_workload(50000, 2000);
	unsigned composed = 0, refused = 0;
	for (unsigned r = 0; r < rounds; r++) {
		json_t *doc = random_object(3, 0);
		json_t *p1 = random_object(2, 1);
		json_t *p2 = random_object(2, 1);
		json_t *one = sky__patch_compose(p1, p2);
		if (!one) {
			refused++;
		} else {
			composed++;
			json_t *seq = sky__merge_patch(json_deep_copy(doc), p1);
			seq = sky__merge_patch(seq, p2);
			json_t *both =
			    sky__merge_patch(json_deep_copy(doc), one);
			int eq = json_equal(seq, both);
			CU_ASSERT(eq);
			if (!eq) {
				char *a = json_dumps(doc, JSON_COMPACT);
				char *b = json_dumps(p1, JSON_COMPACT);
				char *c = json_dumps(p2, JSON_COMPACT);
				fprintf(stderr, "  doc %s p1 %s p2 %s\n", a, b,
					c);
				free(a);
				free(b);
				free(c);
			}
			json_decref(seq);
			json_decref(both);
			json_decref(one);
		}
		json_decref(doc);
		json_decref(p1);
		json_decref(p2);
	}
	/* Both kinds occur, so the check means something. */
	CU_ASSERT(composed > rounds / 4);
	CU_ASSERT(refused > 0);
	/* The trap: a null (or a scalar), then an object, does not compose. */
	json_t *n = json_loads("{\"k\":null}", 0, NULL);
	json_t *o = json_loads("{\"k\":{\"x\":1}}", 0, NULL);
	json_t *s = json_loads("{\"k\":5}", 0, NULL);
	CU_ASSERT_PTR_NULL(sky__patch_compose(n, o));
	CU_ASSERT_PTR_NULL(sky__patch_compose(s, o));
	json_t *ok = sky__patch_compose(o, n);
	CU_ASSERT(ok && json_equal(ok, n));
	json_decref(ok);
	json_decref(n);
	json_decref(o);
	json_decref(s);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_merge__rfc7396_cases", test_merge__rfc7396_cases},
	    {"test_merge__edge_cases", test_merge__edge_cases},
	    {"test_merge__rfc7396_external", test_merge__rfc7396_external},
	    {"test_merge__target_patched_in_place",
	     test_merge__target_patched_in_place},
	    {"test_merge__patch_not_aliased", test_merge__patch_not_aliased},
	    {"test_merge__nested_null_deletion",
	     test_merge__nested_null_deletion},
	    {"test_merge__arrays_replaced_whole",
	     test_merge__arrays_replaced_whole},
	    {"test_merge__allocation", test_merge__allocation},
	    {"test_merge__compose_equals_sequential",
	     test_merge__compose_equals_sequential},
	    {"test_merge__text_errors", test_merge__text_errors},
	    {"test_merge__text_any_values", test_merge__text_any_values},
	    {NULL, NULL},
	};
	return sky_test_main("merge", cases);
}
