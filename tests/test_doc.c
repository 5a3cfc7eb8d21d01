/*
 * test_doc.c - session data stored member by member (doc.c), on a raw LMDB
 * environment of its own (no store.c).
 *
 * The reference for every result is sky__merge_patch on jansson values
 * (itself held to RFC 7396 by test_merge): the RFC's cases and our edge
 * cases (tests/data/merge/, and an external copy of the RFC cases when
 * there is one), thousands of
 * random documents and patches must read back the same through
 * sky__doc_read and sky__doc_read_json, pass sky__doc_check, and hold
 * exactly one entry per object member plus the header (so nothing a patch
 * replaced or deleted is left behind). The rest covers the edges of the
 * layout: neighbouring docids, deletion, copies, deep documents, long names
 * and hash collisions, running out of node ids, corrupt entries and a full
 * map.
 */
#include "config.h"

#include <jansson.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "doc_text.h"
#include "error.h"
#include "json.h"
#include "merge.h"
#include "model.h"
#include "testutil.h"

static MDB_env *env;
static MDB_dbi dbi;

static MDB_txn *begin(unsigned flags)
{
	MDB_txn *txn = NULL;
	int rc = mdb_txn_begin(env, NULL, flags, &txn);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	return txn;
}

static void commit(MDB_txn *txn)
{
	CU_ASSERT_EQUAL_FATAL(mdb_txn_commit(txn), 0);
}

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!j)
		fprintf(stderr, "bad JSON %s: %s\n", text, jerr.text);
	return j;
}

/* Entries stored under docid (header included). */
static size_t count_entries(MDB_txn *txn, uint64_t docid)
{
	unsigned char prefix[8];
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n = 0;

	sky__put_be64(prefix, docid);
	CU_ASSERT_FATAL(mdb_cursor_open(txn, dbi, &cur) == 0);
	k.mv_data = prefix;
	k.mv_size = 8;
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 8 || memcmp(k.mv_data, prefix, 8) != 0)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	return n;
}

/* Members of every object in `j` (what the layout stores, one each). */
static size_t count_members(json_t *j)
{
	const char *key;
	json_t *value;
	size_t n = 0;

	if (!json_is_object(j))
		return 0;
	json_object_foreach(j, key, value) {
		n += 1 + count_members(value);
	}
	return n;
}

/* Read the document both ways; they must agree. NULL on failure. */
static json_t *read_doc(MDB_txn *txn, uint64_t docid)
{
	sky_buf buf = SKY_BUF_INIT;
	json_t *via_text = NULL, *via_json = NULL;

	if (sky__doc_read(txn, dbi, docid, &buf) != 0) {
		fprintf(stderr, "doc_read: %s\n", sky_error_last()->message);
		goto done;
	}
	via_text = json_loadb(buf.data, buf.len,
			      JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
	if (!via_text) {
		fprintf(stderr, "doc_read gave bad JSON: %s\n", buf.data);
		goto done;
	}
	if (sky__doc_read_json(txn, dbi, docid, &via_json) != 0) {
		fprintf(stderr, "doc_read_json: %s\n",
			sky_error_last()->message);
		json_decref(via_text);
		via_text = NULL;
		goto done;
	}
	if (!json_equal(via_text, via_json)) {
		fprintf(stderr, "doc_read and doc_read_json differ\n");
		json_decref(via_text);
		via_text = NULL;
	}
done:
	json_decref(via_json);
	sky__buf_free(&buf);
	return via_text;
}

/* The document is clean by doc_check. */
static int check_clean(MDB_txn *txn, uint64_t docid)
{
	sky_buf problems = SKY_BUF_INIT;
	int rc = sky__doc_check(txn, dbi, docid, &problems);
	if (rc != 0 || problems.len)
		fprintf(stderr, "doc_check %d:\n%s", rc,
			problems.data ? problems.data : "");
	sky__buf_free(&problems);
	return rc == 0;
}

/* The stored document equals `want`, is clean, and has no extra entry. */
static int doc_is(MDB_txn *txn, uint64_t docid, json_t *want)
{
	json_t *got = read_doc(txn, docid);
	int ok = got && json_equal(got, want);
	if (got && !ok) {
		char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
		char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS);
		fprintf(stderr, "\ndocument %s\n    want %s\n", g, w);
		free(g);
		free(w);
	}
	json_decref(got);
	if (!check_clean(txn, docid))
		ok = 0;
	size_t entries = count_entries(txn, docid);
	size_t expect = count_members(want) + 1;
	/* A missing document (no entries at all) is {} too. Runs hold
	 * several members an entry: then at most one entry a member. */
	if (sky__doc_run_max
		? entries > expect
		: entries != expect && !(entries == 0 && expect == 1)) {
		fprintf(stderr, "%zu entries, want %zu\n", entries, expect);
		ok = 0;
	}
	return ok;
}

/*
 * Every case of the file at `path` (see test_merge.c) through the document
 * store, from docid `first` on; returns the number run. A data patch must
 * be an object: a case whose patch is not one must be refused and leave no
 * entry (*refused counts them). A document is always an object: a target
 * that is not one is a missing document, which RFC 7396 also takes as {}.
 */
static size_t run_doc_cases(const char *path, uint64_t first, size_t *refused)
{
	json_t *cases = json_load_file(path, 0, NULL), *c;
	size_t i, ran = 0;

	*refused = 0;
	if (!cases)
		fprintf(stderr, "%s: cannot load\n", path);
	CU_ASSERT_FATAL(cases != NULL);
	MDB_txn *txn = begin(0);
	json_array_foreach(json_object_get(cases, "cases"), i, c) {
		json_t *target = json_object_get(c, "original");
		if (!target)
			target = json_object_get(c, "target");
		json_t *patch = json_object_get(c, "patch");
		json_t *expect = json_object_get(c, "result");
		const char *name =
		    json_string_value(json_object_get(c, "name"));
		uint64_t docid = first + i;

		CU_ASSERT_FATAL(target && patch && expect);
		if (!json_is_object(patch)) {
			CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, docid, patch),
					SKY_EINVAL);
			CU_ASSERT_EQUAL(count_entries(txn, docid), 0);
			(*refused)++;
			continue;
		}
		if (json_is_object(target))
			CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, docid, target),
					0);
		CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, docid, patch), 0);
		if (!doc_is(txn, docid, expect)) {
			CU_FAIL("document differs");
			if (name)
				fprintf(stderr, "%s: case %s failed\n", path,
					name);
			else
				fprintf(stderr, "%s: case %d failed\n", path,
					(int)json_integer_value(
					    json_object_get(c, "case")));
		}
		ran++;
	}
	commit(txn);
	json_decref(cases);
	return ran;
}

static void test_doc__rfc7396_cases(void)
{
	char *path = sky_test_data("merge/rfc7396.json");
	size_t refused;
	/* Cases 9-12 have a patch that is not an object. */
	CU_ASSERT_EQUAL(run_doc_cases(path, 1000, &refused), 11);
	CU_ASSERT_EQUAL(refused, 4);
	free(path);
}

static void test_doc__edge_cases(void)
{
	char *path = sky_test_data("merge/edge.json");
	size_t refused;
	CU_ASSERT(run_doc_cases(path, 2000, &refused) >= 40);
	CU_ASSERT_EQUAL(refused, 1);
	free(path);
}

/* The cases again, with members in runs (the default of a cache). */
static void test_doc__cases_in_runs(void)
{
	char *rfc = sky_test_data("merge/rfc7396.json");
	char *edge = sky_test_data("merge/edge.json");
	size_t refused;
	sky__doc_run_max = SKY__DOC_RUN_MAX;
	CU_ASSERT_EQUAL(run_doc_cases(rfc, 5000, &refused), 11);
	CU_ASSERT(run_doc_cases(edge, 6000, &refused) >= 40);
	sky__doc_run_max = 0;
	free(rfc);
	free(edge);
}

static void test_doc__rfc7396_external(void)
{
	char *path = sky_test_fixture("rfc7396.json");
	size_t refused;
	if (!path)
		return;
	CU_ASSERT_EQUAL(run_doc_cases(path, 3000, &refused), 11);
	CU_ASSERT_EQUAL(refused, 4);
	free(path);
}

/* ------------------------------------------------------------------ */
/* Random documents and patches                                        */
/* ------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	/* xorshift64*: fixed seed, so a failure reproduces. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static unsigned rnd_below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

static char long_a[402], long_b[520], long_c[402], edge_400[401];

static void init_names(void)
{
	memset(long_a, 'a', 401);
	memset(long_b, 'b', 519);
	/* 400 bytes of 2-byte UTF-8, one more ASCII byte: 401, long. */
	for (int i = 0; i < 400; i += 2) {
		long_c[i] = (char)0xc3;
		long_c[i + 1] = (char)0xa9;
	}
	long_c[400] = 'z';
	/* The longest name kept in the key. */
	memset(edge_400, 'e', 400);
}

/* A small set of names, so patches often meet the members they change. */
static const char *rnd_name(void)
{
	static const char *names[] = {
	    "",
	    "a",
	    "b",
	    "c",
	    "quote\"d",
	    "back\\slash",
	    "ctl\x01\x1f\n\t",
	    "\xc3\xa9t\xc3\xa9",
	    "\xe6\x97\xa5\xe6\x9c\xac",
	    "emoji \xf0\x9f\x98\x80",
	    "a0",
	    "a\x7f",
	    NULL,
	    NULL,
	    NULL,
	    NULL,
	};
	unsigned i = rnd_below(sizeof(names) / sizeof(names[0]));
	switch (i) {
	case 12: return long_a;
	case 13: return long_b;
	case 14: return long_c;
	case 15: return edge_400;
	default: return names[i];
	}
}

static json_t *rnd_scalar(void)
{
	static const char *strings[] = {
	    "",
	    "x",
	    "with \"quotes\" and \\",
	    "line\nbreak\x01",
	    "\xc3\xa9\xe6\x97\xa5\xf0\x9f\x98\x80",
	    "{\"not\":\"an object\"}",
	};
	switch (rnd_below(6)) {
	case 0: return json_true();
	case 1: return json_false();
	case 2: return json_integer((json_int_t)rnd());
	case 3: return json_real((double)(int64_t)rnd() / 1024.0);
	case 4: return json_string(strings[rnd_below(6)]);
	default: return json_integer(rnd_below(10));
	}
}

static json_t *rnd_value(int depth, int in_patch);

static json_t *rnd_object(int depth, int in_patch)
{
	json_t *obj = json_object();
	unsigned n = rnd_below(in_patch ? 4 : 6);
	for (unsigned i = 0; i < n; i++)
		json_object_set_new(obj, rnd_name(),
				    rnd_value(depth + 1, in_patch));
	return obj;
}

static json_t *rnd_array(int depth)
{
	json_t *arr = json_array();
	unsigned n = rnd_below(4);
	for (unsigned i = 0; i < n; i++)
		json_array_append_new(arr, rnd_value(depth + 1, 0));
	return arr;
}

/*
 * A random value. In a patch, null means delete and objects merge; in a
 * document, nulls are values and objects are stored as nodes.
 */
static json_t *rnd_value(int depth, int in_patch)
{
	unsigned r = rnd_below(10);
	if (depth > 4 && r < 5)
		r += 5;
	if (r < 4)
		return rnd_object(depth, in_patch);
	if (r < 6)
		return json_null();
	if (r < 7)
		return rnd_array(depth);
	return rnd_scalar();
}

static void test_doc__random(void)
{
	const uint64_t docs[] = {7, 8, 0x00000000ffffffffull,
				 0x0000000100000000ull};
	json_t *model[4] = {NULL, NULL, NULL, NULL};
	int failures = 0;

	rng_state = 0x9e3779b97f4a7c15ull;
	init_names();
	MDB_txn *txn = begin(0);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, docs[i]), 0);
		model[i] = json_object();
	}
	/* Under valgrind a quarter of the operations: still ~40 whole
	 * rewrites and ten commits, with the reads across them. */
	int iters = sky_test_workload(4000, 1000);
	for (int iter = 0; iter < iters && failures < 3; iter++) {
		unsigned d = rnd_below(4);
		if (rnd_below(25) == 0) {
			json_t *obj = rnd_object(0, 0);
			CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, docs[d], obj),
					0);
			json_decref(model[d]);
			model[d] = obj;
		} else {
			json_t *patch = rnd_object(0, 1);
			int rc = sky__doc_patch(txn, dbi, docs[d], patch);
			CU_ASSERT_EQUAL(rc, 0);
			if (rc)
				fprintf(stderr, "doc_patch: %s\n",
					sky_error_last()->message);
			model[d] = sky__merge_patch(model[d], patch);
			json_decref(patch);
		}
		if (!doc_is(txn, docs[d], model[d])) {
			fprintf(stderr, "iteration %d, document %u\n", iter, d);
			failures++;
		}
		/* Commit now and then: reads must agree across commits. */
		if (iter % 97 == 96) {
			commit(txn);
			txn = begin(MDB_RDONLY);
			for (int j = 0; j < 4; j++)
				if (!doc_is(txn, docs[j], model[j]))
					failures++;
			mdb_txn_abort(txn);
			txn = begin(0);
		}
	}
	CU_ASSERT_EQUAL(failures, 0);
	/* The neighbours never mixed: each document is still its model. */
	for (int i = 0; i < 4; i++) {
		CU_ASSERT(doc_is(txn, docs[i], model[i]));
		json_decref(model[i]);
	}
	commit(txn);
}

/* Entries of the docid that are runs. */
static size_t count_runs(MDB_txn *txn, uint64_t docid)
{
	unsigned char prefix[8];
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n = 0;
	sky__put_be64(prefix, docid);
	k.mv_data = prefix;
	k.mv_size = 8;
	CU_ASSERT_EQUAL_FATAL(mdb_cursor_open(txn, dbi, &cur), 0);
	for (int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < 8 || memcmp(k.mv_data, prefix, 8) != 0)
			break;
		n += k.mv_size >= 12 && v.mv_size > 0 &&
		     ((unsigned char *)v.mv_data)[0] == 'r';
	}
	mdb_cursor_close(cur);
	return n;
}

/*
 * Whether the document reads the same bytes as `want` written member by
 * member without runs (docid `scratch`, written and deleted here): runs
 * change how a document is stored, never what a reader gets.
 */
static int same_bytes_as_nodes(MDB_txn *txn, uint64_t docid, json_t *want,
			       uint64_t scratch)
{
	sky_buf got = SKY_BUF_INIT, nodes = SKY_BUF_INIT;
	size_t run_max = sky__doc_run_max;
	sky__doc_run_max = 0;
	CU_ASSERT_EQUAL_FATAL(sky__doc_write(txn, dbi, scratch, want), 0);
	sky__doc_run_max = run_max;
	CU_ASSERT_EQUAL_FATAL(sky__doc_read(txn, dbi, scratch, &nodes), 0);
	CU_ASSERT_EQUAL_FATAL(sky__doc_read(txn, dbi, docid, &got), 0);
	int ok =
	    got.len == nodes.len && memcmp(got.data, nodes.data, got.len) == 0;
	if (!ok)
		fprintf(stderr, "read  %s\nnodes %s\n", got.data, nodes.data);
	CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, scratch), 0);
	sky__buf_free(&got);
	sky__buf_free(&nodes);
	return ok;
}

/*
 * Members in runs, at bounds from a few bytes (a run of one member, runs
 * split at every patch) to the default: random writes and patches read
 * as the in-memory merge, byte for byte as the same document without
 * runs, and pass the check (doc_is), across commits.
 */
static void test_doc__runs_random(void)
{
	const uint64_t docs[] = {700, 701, 702};
	static const size_t run_bounds[] = {1, 24, 80, 300, SKY__DOC_RUN_MAX};
	static const size_t member_bounds[] = {2, 12, 60,
					       SKY__DOC_RUN_MEMBER_MAX};
	json_t *model[3];
	int failures = 0;
	size_t runs_seen = 0, most_runs = 0;

	rng_state = 0x452821e638d01377ull;
	init_names();
	MDB_txn *txn = begin(0);
	for (int i = 0; i < 3; i++) {
		CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, docs[i]), 0);
		model[i] = json_object();
	}
	int iters = sky_test_workload(4000, 1000);
	for (int iter = 0; iter < iters && failures < 3; iter++) {
		unsigned d = rnd_below(3);
		if (iter % 120 == 0) {
			sky__doc_run_max = run_bounds[rnd_below(5)];
			sky__doc_run_member_max = member_bounds[rnd_below(4)];
		}
		if (rnd_below(25) == 0) {
			json_t *obj = rnd_object(0, 0);
			CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, docs[d], obj),
					0);
			json_decref(model[d]);
			model[d] = obj;
		} else {
			json_t *patch = rnd_object(0, 1);
			if (rnd_below(4) == 0) {
				const char *key;
				json_t *value;
				json_object_foreach(model[d], key, value) {
					if (rnd_below(2))
						json_object_set_new(
						    patch, key, json_null());
				}
			}
			int rc = sky__doc_patch(txn, dbi, docs[d], patch);
			CU_ASSERT_EQUAL(rc, 0);
			if (rc)
				fprintf(stderr, "doc_patch: %s\n",
					sky_error_last()->message);
			model[d] = sky__merge_patch(model[d], patch);
			json_decref(patch);
		}
		size_t runs = count_runs(txn, docs[d]);
		runs_seen += runs > 0;
		if (runs > most_runs)
			most_runs = runs;
		if (!doc_is(txn, docs[d], model[d]) ||
		    !same_bytes_as_nodes(txn, docs[d], model[d], 799)) {
			fprintf(stderr, "iteration %d, document %u\n", iter, d);
			failures++;
		}
		if (iter % 97 == 96) {
			commit(txn);
			txn = begin(MDB_RDONLY);
			for (int j = 0; j < 3; j++)
				if (!doc_is(txn, docs[j], model[j]))
					failures++;
			mdb_txn_abort(txn);
			txn = begin(0);
		}
	}
	CU_ASSERT_EQUAL(failures, 0);
	/* The run stored runs, and documents of several. */
	CU_ASSERT(runs_seen > (size_t)iters / 2);
	CU_ASSERT(most_runs >= 3);
	for (int i = 0; i < 3; i++)
		json_decref(model[i]);
	commit(txn);
	sky__doc_run_max = 0;
	sky__doc_run_member_max = SKY__DOC_RUN_MEMBER_MAX;
}

static void test_doc__adjacent_docids(void)
{
	const uint64_t ids[] = {0, 1, 2, 0xfffffffffffffffeull,
				0xffffffffffffffffull};
	json_t *docs[5];
	MDB_txn *txn = begin(0);

	for (int i = 0; i < 5; i++) {
		docs[i] = json_pack("{s:i,s:{s:[i]},s:{}}", "id", i, "nest",
				    "v", i, "empty");
		CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, ids[i], docs[i]), 0);
	}
	/* Patch the middle one and delete its neighbours in turn. */
	json_t *patch = parse("{\"nest\":{\"w\":1},\"empty\":null}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, ids[2], patch), 0);
	docs[2] = sky__merge_patch(docs[2], patch);
	json_decref(patch);
	for (int i = 0; i < 5; i++)
		CU_ASSERT(doc_is(txn, ids[i], docs[i]));
	CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, ids[1]), 0);
	CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, ids[4]), 0);
	CU_ASSERT(doc_is(txn, ids[0], docs[0]));
	CU_ASSERT(doc_is(txn, ids[2], docs[2]));
	CU_ASSERT(doc_is(txn, ids[3], docs[3]));
	CU_ASSERT_EQUAL(count_entries(txn, ids[1]), 0);
	CU_ASSERT_EQUAL(count_entries(txn, ids[4]), 0);
	for (int i = 0; i < 5; i++) {
		CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, ids[i]), 0);
		json_decref(docs[i]);
	}
	commit(txn);
}

static void test_doc__delete_and_missing(void)
{
	MDB_txn *txn = begin(0);
	MDB_stat st;
	sky_buf buf = SKY_BUF_INIT;
	json_t *doc = json_object();

	CU_ASSERT_EQUAL(mdb_drop(txn, dbi, 0), 0);
	for (int i = 0; i < 3000; i++) {
		char key[16];
		snprintf(key, sizeof(key), "k%d", i);
		json_object_set_new(doc, key,
				    json_pack("{s:{s:s}}", "x", "y", "zzzz"));
	}
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 42, doc), 0);
	CU_ASSERT_EQUAL(sky__doc_exists(txn, dbi, 42), 1);
	CU_ASSERT_EQUAL(count_entries(txn, 42), 9001);
	CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, 42), 0);
	CU_ASSERT_EQUAL(mdb_stat(txn, dbi, &st), 0);
	CU_ASSERT_EQUAL(st.ms_entries, 0);
	CU_ASSERT_EQUAL(sky__doc_exists(txn, dbi, 42), 0);
	/* Deleting a missing document is fine; it reads as {}. */
	CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, 42), 0);
	CU_ASSERT_EQUAL(sky__buf_puts(&buf, "prefix:"), 0);
	CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 42, &buf), 0);
	CU_ASSERT_STRING_EQUAL(buf.data, "prefix:{}");
	CU_ASSERT(check_clean(txn, 42));

	/* A patch to a missing document starts from {}, and the document
	 * then exists even when the result is {}. */
	json_t *patch = parse("{\"gone\":null}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 43, patch), 0);
	CU_ASSERT_EQUAL(sky__doc_exists(txn, dbi, 43), 1);
	CU_ASSERT_EQUAL(count_entries(txn, 43), 1);
	json_decref(patch);
	/* Replacing a big document with a small one leaves nothing behind. */
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 43, doc), 0);
	json_t *small = parse("{\"only\":{\"one\":1}}");
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 43, small), 0);
	CU_ASSERT(doc_is(txn, 43, small));
	CU_ASSERT_EQUAL(count_entries(txn, 43), 3);
	CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, 43), 0);

	json_decref(small);
	json_decref(doc);
	sky__buf_free(&buf);
	commit(txn);
}

static void test_doc__invalid_input(void)
{
	MDB_txn *txn = begin(0);
	json_t *arr = parse("[1]"), *str = parse("\"s\"");

	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 50, arr), SKY_EINVAL);
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 50, NULL), SKY_EINVAL);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 50, str), SKY_EINVAL);
	CU_ASSERT_EQUAL(sky_error_last()->code, SKY_EINVAL);
	CU_ASSERT(strstr(sky_error_last()->message, "object") != NULL);
	CU_ASSERT_EQUAL(count_entries(txn, 50), 0);
	json_decref(arr);
	json_decref(str);
	mdb_txn_abort(txn);
}

static void test_doc__copy(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc = json_object();
	char value[200];

	/* Over 64 KiB, so the copy takes several chunks. */
	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	for (int i = 0; i < 1500; i++) {
		char key[16];
		snprintf(key, sizeof(key), "m%04d", i);
		json_object_set_new(doc, key,
				    i % 3
					? json_string(value)
					: json_pack("{s:{s:i}}", "o", "i", i));
	}
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 60, doc), 0);
	/* 61 is in the way: replaced. 62 sits right after: untouched. */
	json_t *other = parse("{\"old\":{\"x\":1}}");
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 61, other), 0);
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 62, other), 0);
	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 60, 61), 0);
	CU_ASSERT(doc_is(txn, 61, doc));
	CU_ASSERT(doc_is(txn, 62, other));

	/* The copy is independent of the original. */
	json_t *patch = parse("{\"m0000\":{\"o\":{\"j\":2}},\"m0001\":null}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 61, patch), 0);
	CU_ASSERT(doc_is(txn, 60, doc));
	json_t *patched = sky__merge_patch(json_deep_copy(doc), patch);
	CU_ASSERT(doc_is(txn, 61, patched));

	/* Copying onto itself changes nothing; a missing source removes. */
	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 60, 60), 0);
	CU_ASSERT(doc_is(txn, 60, doc));
	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 63, 61), 0);
	CU_ASSERT_EQUAL(count_entries(txn, 61), 0);
	CU_ASSERT_EQUAL(sky__doc_exists(txn, dbi, 61), 0);
	/* Copy backwards onto a lower docid too. */
	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 62, 59), 0);
	CU_ASSERT(doc_is(txn, 59, other));
	CU_ASSERT(doc_is(txn, 60, doc));

	json_decref(patch);
	json_decref(patched);
	json_decref(other);
	json_decref(doc);
	mdb_txn_abort(txn);
}

static void test_doc__deep(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc = json_object(), *cur = doc;
	json_t *patch = json_object(), *pcur = patch;

	/* 300 levels: deeper than any event may be, to show the stack. */
	for (int i = 0; i < 300; i++) {
		json_t *next = json_object();
		json_object_set_new(cur, "n", next);
		json_object_set_new(cur, "level", json_integer(i));
		cur = next;
		next = json_object();
		json_object_set_new(pcur, "n", next);
		pcur = next;
	}
	json_object_set_new(pcur, "bottom", json_true());
	json_object_set_new(pcur, "level", json_null());
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 70, doc), 0);
	CU_ASSERT(doc_is(txn, 70, doc));
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 70, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT(doc_is(txn, 70, doc));
	json_decref(patch);

	/* Deleting the top deletes all 300 nodes below it. */
	patch = parse("{\"n\":null}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 70, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT(doc_is(txn, 70, doc));
	CU_ASSERT_EQUAL(count_entries(txn, 70), 2);
	json_decref(patch);
	json_decref(doc);
	mdb_txn_abort(txn);
}

/* ------------------------------------------------------------------ */
/* Long names and hash collisions                                      */
/* ------------------------------------------------------------------ */

/* Every name hashes alike: every long name collides with every other. */
static uint64_t constant_hash(const void *name, size_t len)
{
	(void)name;
	(void)len;
	return 0x0123456789abcdefull;
}

static char *long_name(int i)
{
	char *s = malloc(501);
	memset(s, 'x', 500);
	snprintf(s + 490, 11, "%010d", i);
	return s;
}

static void test_doc__hash_collisions(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc = json_object(), *patch;
	char *names[300];
	sky_buf problems = SKY_BUF_INIT;

	sky__doc_name_hash = constant_hash;
	for (int i = 0; i < 300; i++)
		names[i] = long_name(i);
	/* Five colliding names in the root and in a nested object. */
	for (int i = 0; i < 5; i++) {
		json_object_set_new(doc, names[i], json_integer(i));
	}
	json_object_set_new(doc, "sub", json_deep_copy(doc));
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 80, doc), 0);
	CU_ASSERT(doc_is(txn, 80, doc));

	/* Each is found exactly: change one, delete another, add a sixth
	 * (it takes the counter the deleted one freed), then re-add. */
	patch = json_pack("{s:s,s:n,s:{s:[i]},s:{s:n}}", names[2], "two",
			  names[1], names[5], "k", 5, "sub", names[4]);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 80, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT(doc_is(txn, 80, doc));
	json_decref(patch);
	unsigned char key[22];
	MDB_val k = {22, key}, v;
	sky__put_be64(key, 80);
	sky__put_be32(key + 8, 0);
	key[12] = 0xff;
	sky__put_be64(key + 13, constant_hash(NULL, 0));
	key[21] = 1;
	CU_ASSERT_EQUAL_FATAL(mdb_get(txn, dbi, &k, &v), 0);
	CU_ASSERT(v.mv_size > 504 &&
		  memcmp((char *)v.mv_data + 4, names[5], 500) == 0);
	patch = json_pack("{s:{s:b}}", names[1], "back", 1);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 80, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT(doc_is(txn, 80, doc));
	json_decref(patch);
	/* Replace the object member with a scalar: its node goes. */
	patch = json_pack("{s:i}", names[5], 0);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 80, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT(doc_is(txn, 80, doc));
	json_decref(patch);

	/* 256 names share a hash at most; the 257th is refused. */
	json_t *many = json_object();
	for (int i = 0; i < 256; i++)
		json_object_set_new(many, names[i], json_integer(i));
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 81, many), 0);
	CU_ASSERT(doc_is(txn, 81, many));
	patch = json_pack("{s:i}", names[256], 1);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 81, patch), SKY_ELIMIT);
	json_decref(patch);

	/* Stored with one hash, checked with another: doc_check sees it. */
	sky__doc_name_hash = sky__hash64;
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, 80, &problems), SKY_EINVAL);
	CU_ASSERT(strstr(problems.data, "hash does not match") != NULL);

	sky__buf_free(&problems);
	json_decref(many);
	json_decref(doc);
	for (int i = 0; i < 300; i++)
		free(names[i]);
	mdb_txn_abort(txn);
}

static void test_doc__long_names_real_hash(void)
{
	MDB_txn *txn = begin(0);
	char *a = long_name(1), *b = long_name(2);
	/* 400 bytes stay in the key; 401 go to the long form; a name that
	 * starts with 0xFF (not UTF-8, but jansson's API can set one) too. */
	char edge[402];
	memset(edge, 'q', 401);
	edge[401] = '\0';
	json_t *doc = json_object();
	json_object_set_new(doc, a, json_pack("{s:{s:i}}", b, a, 1));
	json_object_set_new(doc, edge, json_integer(401));
	edge[400] = '\0';
	json_object_set_new(doc, edge, json_integer(400));
	json_object_setn_new_nocheck(doc, "\xff\x01", 2, json_integer(255));
	json_object_setn_new_nocheck(doc, "nul\0in", 6, json_integer(0));

	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 90, doc), 0);
	json_t *got = NULL;
	CU_ASSERT_EQUAL(sky__doc_read_json(txn, dbi, 90, &got), SKY_ERROR);
	/* The 0xFF name is not UTF-8, so it does not read back through
	 * jansson; without it, everything does. */
	json_object_deln(doc, "\xff\x01", 2);
	json_t *patch = json_pack("{s:n}", "x");
	json_object_setn_new_nocheck(patch, "\xff\x01", 2, json_null());
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 90, patch), 0);
	json_decref(patch);
	CU_ASSERT_EQUAL(sky__doc_read_json(txn, dbi, 90, &got), 0);
	/* json_equal() and json_deep_copy() handle keys as C strings, so
	 * compare the name with a NUL apart, then the rest. */
	CU_ASSERT(json_integer_value(json_object_getn(got, "nul\0in", 6)) ==
		      0 &&
		  json_object_getn(got, "nul\0in", 6) != NULL);
	CU_ASSERT_EQUAL(count_entries(txn, 90), count_members(doc) + 1);
	json_object_deln(got, "nul\0in", 6);
	json_object_deln(doc, "nul\0in", 6);
	CU_ASSERT(got && json_equal(got, doc));
	CU_ASSERT_EQUAL(json_object_size(got), 3);
	json_decref(got);
	CU_ASSERT(check_clean(txn, 90));

	/* The text form escapes the NUL in the name. */
	sky_buf buf = SKY_BUF_INIT;
	CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 90, &buf), 0);
	CU_ASSERT(strstr(buf.data, "\"nul\\u0000in\":0") != NULL);
	sky__buf_free(&buf);

	json_decref(doc);
	free(a);
	free(b);
	mdb_txn_abort(txn);
}

/* ------------------------------------------------------------------ */
/* Node ids, corruption, full map                                      */
/* ------------------------------------------------------------------ */

static void put_raw(MDB_txn *txn, const void *key, size_t klen, const void *val,
		    size_t vlen)
{
	MDB_val k = {klen, (void *)key}, v = {vlen, (void *)val};
	CU_ASSERT_EQUAL(mdb_put(txn, dbi, &k, &v, 0), 0);
}

static void test_doc__node_ids_run_out(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc = parse("{\"a\":{\"b\":{}},\"c\":{\"d\":1}}");
	unsigned char key[8], val[4];
	MDB_val k = {8, key}, v;

	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 100, doc), 0);
	/* Pretend four billion objects were created and dropped. */
	sky__put_be64(key, 100);
	sky__put_be32(val, UINT32_MAX - 2);
	put_raw(txn, key, 8, val, 4);
	json_t *patch = parse("{\"a\":{\"x\":{\"y\":{\"z\":{}}}},"
			      "\"e\":{\"f\":{}}}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 100, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT(doc_is(txn, 100, doc));
	/* The document was renumbered: ids start again from 1. */
	CU_ASSERT_EQUAL(mdb_get(txn, dbi, &k, &v), 0);
	CU_ASSERT(sky__get_be32(v.mv_data) < 20);
	json_decref(patch);
	json_decref(doc);
	mdb_txn_abort(txn);
}

/* The stored document reads as `want` both ways and is clean. */
static int doc_is_equal(MDB_txn *txn, uint64_t docid, json_t *want)
{
	json_t *got = read_doc(txn, docid);
	int ok = got && json_equal(got, want);
	json_decref(got);
	return check_clean(txn, docid) && ok;
}
/* ---- the two forms ---- */

/* How the document is stored: 'w' whole, 'm' members, 'o' members under
 * a header of before the weight, 0 missing. */
static int form_of(MDB_txn *txn, uint64_t docid)
{
	unsigned char key[8];
	MDB_val k = {8, key}, v;
	sky__put_be64(key, docid);
	if (mdb_get(txn, dbi, &k, &v) != 0)
		return 0;
	if (v.mv_size == 4)
		return 'o';
	if (v.mv_size == 13 && ((unsigned char *)v.mv_data)[12] == 0)
		return 'm';
	return 'w';
}

/* Objects in `j`, itself included. */
static size_t count_objects_in(json_t *j)
{
	const char *key;
	json_t *value;
	size_t n = 1;
	json_object_foreach(j, key, value) {
		if (json_is_object(value))
			n += count_objects_in(value);
	}
	return n;
}

/* Nesting depth as jansson counts it: objects and arrays, the document
 * itself level 1, a scalar 0. */
static size_t depth_of(json_t *j)
{
	const char *key;
	json_t *value;
	size_t i, d, max = 0;

	if (json_is_object(j)) {
		json_object_foreach(j, key, value) {
			if ((d = depth_of(value)) > max)
				max = d;
		}
	} else if (json_is_array(j)) {
		json_array_foreach(j, i, value) {
			if ((d = depth_of(value)) > max)
				max = d;
		}
	} else {
		return 0;
	}
	return 1 + max;
}

/* The stored document equals `want`, is clean, and is in a form its size
 * and depth allow under the bounds `max` and `depth` in use when it was
 * last written. */
static int doc_in_form(MDB_txn *txn, uint64_t docid, json_t *want, size_t max,
		       size_t depth)
{
	sky_buf text = SKY_BUF_INIT;
	json_t *got = read_doc(txn, docid);
	int ok = got && json_equal(got, want), form = form_of(txn, docid);
	size_t d = depth_of(want);

	json_decref(got);
	if (!check_clean(txn, docid))
		ok = 0;
	CU_ASSERT_EQUAL_FATAL(sky__doc_read(txn, dbi, docid, &text), 0);
	if (form == 'w' &&
	    (text.len > max || d > depth || count_entries(txn, docid) != 1))
		ok = 0;
	/* Members: the weight kept it there (at least half the bound; it
	 * exceeds the text by at most one per object), or the text is
	 * over the bound, or it nests too deep for the whole form. */
	if (form == 'm' && text.len + count_objects_in(want) < max / 2 &&
	    d <= depth)
		ok = 0;
	if (form == 'o')
		ok = 0; /* every write leaves today's header */
	if (!ok)
		fprintf(stderr,
			"form %c, %zu bytes, depth %zu, bounds %zu, %zu\n",
			form, text.len, d, max, depth);
	sky__buf_free(&text);
	return ok;
}

/* The length of the document's text. */
static size_t doc_text_len(MDB_txn *txn, uint64_t docid)
{
	sky_buf text = SKY_BUF_INIT;
	int rc = sky__doc_read(txn, dbi, docid, &text);
	if (rc)
		fprintf(stderr, "doc_read: %s\n", sky_error_last()->message);
	CU_ASSERT_EQUAL_FATAL(rc, 0);
	size_t n = text.len;
	sky__buf_free(&text);
	return n;
}

/* Put back the header of before the weight (next id only), as a cache
 * written by an older version holds it. */
static void make_old_header(MDB_txn *txn, uint64_t docid)
{
	unsigned char key[8];
	MDB_val k = {8, key}, v;
	sky__put_be64(key, docid);
	CU_ASSERT_EQUAL_FATAL(mdb_get(txn, dbi, &k, &v), 0);
	CU_ASSERT_EQUAL_FATAL(v.mv_size, 13);
	unsigned char old[4];
	memcpy(old, v.mv_data, 4);
	put_raw(txn, key, 8, old, 4);
}

/*
 * Random patches, writes and copies on four documents with the bounds
 * between the forms (size and depth) changing under them: every read (as
 * text and as JSON) equals the in-memory merge, check finds nothing, each
 * document is in a form its size and depth allow, and documents cross the
 * bounds both ways, the depth bound alone too.
 */
static void test_doc__forms_random(void)
{
	const uint64_t docs[] = {200, 201, 202, 203};
	static const size_t bounds[] = {64, 256, 1024, 4096, SKY__DOC_WHOLE_MAX,
					0};
	static const size_t depths[] = {2, 3, 4, 6, SKY__DOC_WHOLE_DEPTH_MAX};
	const size_t n_bounds = sizeof(bounds) / sizeof(bounds[0]);
	const size_t n_depths = sizeof(depths) / sizeof(depths[0]);
	json_t *model[4];
	int failures = 0, to_members = 0, to_whole = 0, old_patched = 0;
	int deep_to_members = 0, deep_to_whole = 0;
	size_t max = bounds[0], depth = depths[n_depths - 1];

	rng_state = 0x243f6a8885a308d3ull;
	init_names();
	MDB_txn *txn = begin(0);
	for (int i = 0; i < 4; i++) {
		CU_ASSERT_EQUAL(sky__doc_delete(txn, dbi, docs[i]), 0);
		model[i] = json_object();
	}
	int iters = sky_test_workload(6000, 1500);
	for (int iter = 0; iter < iters && failures < 3; iter++) {
		unsigned d = rnd_below(4), r = rnd_below(100);
		int before = form_of(txn, docs[d]), copied = 0;
		size_t depth_before = 0;
		if (iter % 150 == 0) {
			max = bounds[rnd_below(n_bounds)];
			sky__doc_whole_max = max;
		}
		if (iter % 110 == 0) {
			depth = depths[rnd_below(n_depths)];
			sky__doc_whole_depth_max = depth;
		}
		if (r < 3) {
			json_t *obj = rnd_object(0, 0);
			CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, docs[d], obj),
					0);
			json_decref(model[d]);
			model[d] = obj;
		} else if (r < 8) {
			unsigned from = rnd_below(4);
			CU_ASSERT_EQUAL(
			    sky__doc_copy(txn, dbi, docs[from], docs[d]), 0);
			if (from != d) {
				json_decref(model[d]);
				model[d] = json_deep_copy(model[from]);
			}
			CU_ASSERT_EQUAL(form_of(txn, docs[d]),
					form_of(txn, docs[from]));
			copied = 1;
		} else {
			json_t *patch = rnd_object(0, 1);
			/* Now and then drop members, so documents shrink back
			 * below the bound as well as grow past it. */
			if (rnd_below(3) == 0) {
				const char *key;
				json_t *value;
				json_object_foreach(model[d], key, value) {
					if (rnd_below(2))
						json_object_set_new(
						    patch, key, json_null());
				}
			}
			if (before == 'm' && rnd_below(16) == 0) {
				make_old_header(txn, docs[d]);
				old_patched++;
			}
			depth_before = depth_of(model[d]);
			int rc = sky__doc_patch(txn, dbi, docs[d], patch);
			CU_ASSERT_EQUAL(rc, 0);
			if (rc)
				fprintf(stderr, "doc_patch: %s\n",
					sky_error_last()->message);
			model[d] = sky__merge_patch(model[d], patch);
			json_decref(patch);
			int after = form_of(txn, docs[d]);
			to_members += before == 'w' && after == 'm';
			to_whole += before == 'm' && after == 'w';
			/* Conversions the depth alone called for: small
			 * documents, members because of their depth. */
			int small = doc_text_len(txn, docs[d]) < max / 2;
			deep_to_members += before == 'w' && after == 'm' &&
					   small && depth_of(model[d]) > depth;
			deep_to_whole += before == 'm' && after == 'w' &&
					 small && depth_before > depth;
		}
		if (copied ? !doc_is_equal(txn, docs[d], model[d])
			   : !doc_in_form(txn, docs[d], model[d], max, depth)) {
			fprintf(stderr, "iteration %d, document %u\n", iter, d);
			failures++;
		}
		if (iter % 101 == 100) {
			commit(txn);
			txn = begin(MDB_RDONLY);
			for (int j = 0; j < 4; j++)
				if (!doc_is_equal(txn, docs[j], model[j]))
					failures++;
			mdb_txn_abort(txn);
			txn = begin(0);
		}
	}
	CU_ASSERT_EQUAL(failures, 0);
	/* The run did what it is for: conversions both ways, and patches of
	 * documents stored under the old header. */
	int enough = iters / 300;
	CU_ASSERT(to_members >= enough);
	CU_ASSERT(to_whole >= enough);
	CU_ASSERT(old_patched >= enough);
	CU_ASSERT(deep_to_members >= enough);
	CU_ASSERT(deep_to_whole >= enough);
	if (to_members < enough || to_whole < enough || old_patched < enough ||
	    deep_to_members < enough || deep_to_whole < enough)
		fprintf(stderr,
			"%d to members, %d to whole, %d old, "
			"by depth %d to members, %d to whole\n",
			to_members, to_whole, old_patched, deep_to_members,
			deep_to_whole);
	for (int i = 0; i < 4; i++)
		json_decref(model[i]);
	commit(txn);
	sky__doc_whole_max = 0;
	sky__doc_whole_depth_max = SKY__DOC_WHOLE_DEPTH_MAX;
}

/*
 * The whole form under check, old headers, and copies across forms: what
 * check finds in a damaged whole form, that a member-form document under
 * a 4-byte header reads and converts, and that a copy keeps the form.
 */
static void test_doc__forms_check_and_old(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc =
	    parse("{\"b\":{\"c\":[1,{\"z\":1,\"a\":2}]},\"a\":\"x\"}");
	unsigned char key[8], extra[13];
	sky_buf text = SKY_BUF_INIT, problems = SKY_BUF_INIT;

	sky__doc_whole_max = SKY__DOC_WHOLE_MAX;
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 300, doc), 0);
	CU_ASSERT_EQUAL(form_of(txn, 300), 'w');
	CU_ASSERT_EQUAL(count_entries(txn, 300), 1);
	/* Sorted as the member form reads, arrays as they came. */
	CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 300, &text), 0);
	CU_ASSERT_STRING_EQUAL(
	    text.data, "{\"a\":\"x\",\"b\":{\"c\":[1,{\"z\":1,\"a\":2}]}}");
	CU_ASSERT(check_clean(txn, 300));
	CU_ASSERT_EQUAL(sky__doc_exists(txn, dbi, 300), 1);

	/* A copy keeps the form, to a target of the other form too. */
	sky__doc_whole_max = 0;
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 301, doc), 0);
	CU_ASSERT_EQUAL(form_of(txn, 301), 'm');
	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 300, 301), 0);
	CU_ASSERT_EQUAL(form_of(txn, 301), 'w');
	CU_ASSERT(doc_is_equal(txn, 301, doc));
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 302, doc), 0);
	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 302, 300), 0);
	CU_ASSERT_EQUAL(form_of(txn, 300), 'm');
	CU_ASSERT_EQUAL(count_entries(txn, 300), count_members(doc) + 1);
	CU_ASSERT(doc_is_equal(txn, 300, doc));

	/* An old header: readable, clean, and the first patch converts. */
	make_old_header(txn, 302);
	CU_ASSERT_EQUAL(form_of(txn, 302), 'o');
	CU_ASSERT(doc_is_equal(txn, 302, doc));
	sky__doc_whole_max = SKY__DOC_WHOLE_MAX;
	json_t *patch = parse("{\"d\":{\"e\":null,\"f\":1}}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 302, patch), 0);
	doc = sky__merge_patch(doc, patch);
	CU_ASSERT_EQUAL(form_of(txn, 302), 'w');
	CU_ASSERT(doc_in_form(txn, 302, doc, SKY__DOC_WHOLE_MAX,
			      SKY__DOC_WHOLE_DEPTH_MAX));

	/* Check: text that is no object, members beside the text, a
	 * weight that does not add up. */
	sky__put_be64(key, 302);
	put_raw(txn, key, 8, "{\"a\":}", 6);
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, 302, &problems), SKY_EINVAL);
	CU_ASSERT(problems.data && strstr(problems.data, "not a JSON object"));
	json_t *j = NULL;
	CU_ASSERT_EQUAL(sky__doc_read_json(txn, dbi, 302, &j), SKY_ERROR);
	CU_ASSERT_EQUAL(sky_error_last()->native, MDB_CORRUPTED);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 302, patch), SKY_ERROR);
	put_raw(txn, key, 8, "{}", 2);
	sky__put_be64(extra, 302);
	sky__put_be32(extra + 8, 0);
	extra[12] = 'x';
	put_raw(txn, extra, 13, "v1", 2);
	sky__buf_clear(&problems);
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, 302, &problems), SKY_EINVAL);
	CU_ASSERT(problems.data &&
		  strstr(problems.data, "members beside a whole document"));
	sky__doc_whole_max = 0;
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 303, doc), 0);
	sky__put_be64(key, 303);
	MDB_val k = {8, key}, v;
	CU_ASSERT_EQUAL_FATAL(mdb_get(txn, dbi, &k, &v), 0);
	unsigned char hdr[13];
	memcpy(hdr, v.mv_data, 13);
	sky__put_be64(hdr + 4, sky__get_be64(hdr + 4) + 1);
	put_raw(txn, key, 8, hdr, 13);
	sky__buf_clear(&problems);
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, 303, &problems), SKY_EINVAL);
	CU_ASSERT(problems.data && strstr(problems.data, "header weight"));

	sky__buf_free(&text);
	sky__buf_free(&problems);
	json_decref(patch);
	json_decref(doc);
	mdb_txn_abort(txn);
}

/* A document of `items` items of ~90 bytes (bench/'s shape): ~10 KB at
 * 105. */
static json_t *items_doc(int items)
{
	json_t *doc =
	    json_pack("{s:{s:i,s:s}}", "meta", "rev", 0, "site", "Plant-7");
	json_t *all = json_object();
	for (int i = 0; i < items; i++) {
		char key[16], name[32];
		snprintf(key, sizeof(key), "i%05d", i);
		snprintf(name, sizeof(name), "item-%d", i);
		json_object_set_new(
		    all, key,
		    json_pack("{s:s,s:i,s:s,s:[s,s],s:{s:f,s:i}}", "name", name,
			      "qty", i % 50, "status", "new", "tags", "a", "b",
			      "pos", "x", 1.5, "y", 2));
	}
	json_object_set_new(doc, "items", all);
	return doc;
}

/*
 * A 10 KB document is stored whole under the default bound: one entry,
 * read back equal; a patch keeps it whole, and growing past the bound
 * takes it to members.
 */
static void test_doc__whole_10kb(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc = items_doc(105);

	sky__doc_whole_max = SKY__DOC_WHOLE_MAX;
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 500, doc), 0);
	size_t len = doc_text_len(txn, 500);
	CU_ASSERT(len > 9000 && len <= SKY__DOC_WHOLE_MAX);
	CU_ASSERT_EQUAL(form_of(txn, 500), 'w');
	CU_ASSERT_EQUAL(count_entries(txn, 500), 1);
	CU_ASSERT(doc_in_form(txn, 500, doc, SKY__DOC_WHOLE_MAX,
			      SKY__DOC_WHOLE_DEPTH_MAX));

	/* A ~100-byte patch: merged into the text, still whole. */
	json_t *patch = parse("{\"items\":{\"i00042\":{\"qty\":7,\"status\":"
			      "\"checked\",\"pos\":{\"x\":3},\"by\":"
			      "\"operator-7\"}},\"meta\":{\"rev\":1}}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 500, patch), 0);
	doc = sky__merge_patch(doc, patch);
	json_decref(patch);
	CU_ASSERT_EQUAL(form_of(txn, 500), 'w');
	CU_ASSERT(doc_in_form(txn, 500, doc, SKY__DOC_WHOLE_MAX,
			      SKY__DOC_WHOLE_DEPTH_MAX));

	/* Past the bound: member by member, one entry per member. */
	json_t *more = items_doc(200);
	patch = json_pack("{s:O}", "items", json_object_get(more, "items"));
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 500, patch), 0);
	doc = sky__merge_patch(doc, patch);
	json_decref(patch);
	json_decref(more);
	CU_ASSERT(doc_text_len(txn, 500) > SKY__DOC_WHOLE_MAX);
	CU_ASSERT_EQUAL(form_of(txn, 500), 'm');
	CU_ASSERT(doc_is(txn, 500, doc));

	json_decref(doc);
	mdb_txn_abort(txn);
	sky__doc_whole_max = 0;
}

/* `levels` objects, one in the other under "n", each with a "level"; the
 * innermost holds `bottom` (taken) when there is one. */
static json_t *chain(int levels, json_t *bottom)
{
	json_t *doc = json_object(), *cur = doc;
	for (int i = 1; i < levels; i++) {
		json_t *next = json_object();
		json_object_set_new(cur, "level", json_integer(i));
		json_object_set_new(cur, "n", next);
		cur = next;
	}
	if (bottom)
		json_object_set_new(cur, "bottom", bottom);
	return doc;
}

/* A patch down the "n" path of chain(): `levels` objects, `bottom` in the
 * innermost. */
static json_t *chain_patch(int levels, json_t *bottom)
{
	json_t *patch = json_object(), *cur = patch;
	for (int i = 1; i < levels; i++) {
		json_t *next = json_object();
		json_object_set_new(cur, "n", next);
		cur = next;
	}
	json_object_set_new(cur, "bottom", bottom);
	return patch;
}

/*
 * The depth bound: a small document nested deeper than
 * SKY__DOC_WHOLE_DEPTH_MAX goes member by member, by write and by patch,
 * and reads back equal; one at the bound stays whole; a patch that deepens
 * a whole document past the bound converts it, and one that takes the
 * depth away brings it back; a whole text deeper than the bound in use
 * converts at its first patch, however shallow; check reports a whole
 * text deeper than the bound.
 */
static void test_doc__whole_depth(void)
{
	const int D = SKY__DOC_WHOLE_DEPTH_MAX;
	MDB_txn *txn = begin(0);
	json_t *at = chain(D, NULL), *over = chain(D + 1, NULL), *patch;
	sky_buf problems = SKY_BUF_INIT;

	sky__doc_whole_max = SKY__DOC_WHOLE_MAX;
	CU_ASSERT_EQUAL(depth_of(at), (size_t)D);

	/* By write: at the bound whole, one level more members, though
	 * both are a few KB. */
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 510, at), 0);
	CU_ASSERT_EQUAL(form_of(txn, 510), 'w');
	CU_ASSERT(doc_in_form(txn, 510, at, SKY__DOC_WHOLE_MAX, D));
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 511, over), 0);
	CU_ASSERT(doc_text_len(txn, 511) < SKY__DOC_WHOLE_MAX / 2);
	CU_ASSERT_EQUAL(form_of(txn, 511), 'm');
	CU_ASSERT(doc_is(txn, 511, over));
	/* Arrays count as levels too. */
	json_t *arr = json_integer(1);
	for (int i = 0; i < D; i++) {
		json_t *a = json_array();
		json_array_append_new(a, arr);
		arr = a;
	}
	json_t *deep_array = json_pack("{s:o}", "a", arr);
	CU_ASSERT_EQUAL(depth_of(deep_array), (size_t)D + 1);
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 512, deep_array), 0);
	CU_ASSERT_EQUAL(form_of(txn, 512), 'm');
	CU_ASSERT(doc_is(txn, 512, deep_array));

	/* By patch: a deep patch to a missing document. */
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 513, over), 0);
	CU_ASSERT_EQUAL(form_of(txn, 513), 'm');
	CU_ASSERT(doc_is(txn, 513, over));
	/* The array reaches the bound through a shallow patch of a whole
	 * document: the text merge measures it. */
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 514, at), 0);
	patch = json_pack("{s:O}", "a", json_array_get(arr, 0));
	json_t *doc = sky__merge_patch(json_deep_copy(at), patch);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 514, patch), 0);
	json_decref(patch);
	CU_ASSERT_EQUAL(depth_of(doc), (size_t)D);
	CU_ASSERT_EQUAL(form_of(txn, 514), 'w');
	CU_ASSERT(doc_in_form(txn, 514, doc, SKY__DOC_WHOLE_MAX, D));

	/* A patch that takes a whole document one level past the bound
	 * converts it; one that deletes the depth brings it back. */
	patch = chain_patch(D, json_pack("{s:b}", "deeper", 1));
	CU_ASSERT_EQUAL(depth_of(patch), (size_t)D + 1);
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 514, patch), 0);
	doc = sky__merge_patch(doc, patch);
	json_decref(patch);
	CU_ASSERT_EQUAL(depth_of(doc), (size_t)D + 1);
	CU_ASSERT_EQUAL(form_of(txn, 514), 'm');
	CU_ASSERT(doc_is(txn, 514, doc));
	patch = parse("{\"n\":null}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 514, patch), 0);
	doc = sky__merge_patch(doc, patch);
	json_decref(patch);
	CU_ASSERT_EQUAL(form_of(txn, 514), 'w');
	CU_ASSERT(doc_in_form(txn, 514, doc, SKY__DOC_WHOLE_MAX, D));
	json_decref(doc);
	/* A shallow patch leaves a small deep document in members. */
	patch = parse("{\"level\":0}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 511, patch), 0);
	over = sky__merge_patch(over, patch);
	json_decref(patch);
	CU_ASSERT_EQUAL(form_of(txn, 511), 'm');
	CU_ASSERT(doc_is(txn, 511, over));

	/* A whole text deeper than the bound in use (stored under a larger
	 * one, as before the bound existed): the first patch converts it,
	 * however shallow. */
	sky__doc_whole_depth_max = 8;
	patch = parse("{\"level\":0}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 510, patch), 0);
	at = sky__merge_patch(at, patch);
	json_decref(patch);
	CU_ASSERT_EQUAL(form_of(txn, 510), 'm');
	CU_ASSERT(doc_in_form(txn, 510, at, SKY__DOC_WHOLE_MAX, 8));
	sky__doc_whole_depth_max = D;

	/* The danger the bound is for: 2100 levels of {"":...}, ~10 KB, under
	 * the byte bound, but deeper than jansson parses. Whole, it could
	 * never be read as JSON again; member by member it reads. */
	json_t *abyss = json_object(), *cur = abyss;
	for (int i = 1; i < 2100; i++) {
		json_t *next = json_object();
		json_object_set_new(cur, "", next);
		cur = next;
	}
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 515, abyss), 0);
	CU_ASSERT_EQUAL(form_of(txn, 515), 'm');
	CU_ASSERT_EQUAL(count_entries(txn, 515), 2100);
	sky_buf text = SKY_BUF_INIT, want = SKY_BUF_INIT;
	for (int i = 1; i < 2100; i++)
		CU_ASSERT_EQUAL_FATAL(sky__buf_puts(&want, "{\"\":"), 0);
	CU_ASSERT_EQUAL_FATAL(sky__buf_puts(&want, "{}"), 0);
	for (int i = 1; i < 2100; i++)
		CU_ASSERT_EQUAL_FATAL(sky__buf_putc(&want, '}'), 0);
	CU_ASSERT(want.len < SKY__DOC_WHOLE_MAX);
	CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 515, &text), 0);
	CU_ASSERT(text.len == want.len &&
		  memcmp(text.data, want.data, want.len) == 0);
	json_t *got = NULL;
	CU_ASSERT_EQUAL(sky__doc_read_json(txn, dbi, 515, &got), 0);
	CU_ASSERT(got && json_equal(got, abyss));
	json_decref(got);
	CU_ASSERT(check_clean(txn, 515));
	/* And by patch, onto a whole document. */
	json_t *x1 = parse("{\"x\":1}");
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 516, x1), 0);
	json_decref(x1);
	CU_ASSERT_EQUAL(form_of(txn, 516), 'w');
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 516, abyss), 0);
	CU_ASSERT_EQUAL(form_of(txn, 516), 'm');
	CU_ASSERT_EQUAL(count_entries(txn, 516), 2101);
	sky__buf_clear(&text);
	CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 516, &text), 0);
	want.len--; /* {"":...} becomes {"":...,"x":1} */
	CU_ASSERT_EQUAL_FATAL(sky__buf_puts(&want, ",\"x\":1}"), 0);
	CU_ASSERT(text.len == want.len &&
		  memcmp(text.data, want.data, want.len) == 0);
	CU_ASSERT(check_clean(txn, 516));

	/* Check: a whole text one level deeper than the bound. */
	sky__buf_clear(&text);
	CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 511, &text), 0);
	unsigned char key[8];
	sky__put_be64(key, 517);
	put_raw(txn, key, 8, text.data, text.len);
	CU_ASSERT_EQUAL(form_of(txn, 517), 'w');
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, 517, &problems), SKY_EINVAL);
	CU_ASSERT(problems.data && strstr(problems.data, "nested deeper"));
	/* It still reads, and its first patch converts it. */
	json_t *back = read_doc(txn, 517);
	CU_ASSERT(back && json_equal(back, over));
	json_decref(back);
	patch = parse("{\"x\":1}");
	CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 517, patch), 0);
	over = sky__merge_patch(over, patch);
	json_decref(patch);
	CU_ASSERT_EQUAL(form_of(txn, 517), 'm');
	CU_ASSERT(doc_is(txn, 517, over));

	sky__buf_free(&text);
	sky__buf_free(&want);
	sky__buf_free(&problems);
	json_decref(abyss);
	json_decref(deep_array);
	json_decref(at);
	json_decref(over);
	mdb_txn_abort(txn);
	sky__doc_whole_max = 0;
}

/* doc_check on a copy of `base` corrupted by `key -> val`. */
static void expect_problem(MDB_txn *txn, uint64_t docid, const void *key,
			   size_t klen, const void *val, size_t vlen,
			   const char *what, int read_fails)
{
	sky_buf problems = SKY_BUF_INIT, text = SKY_BUF_INIT;

	CU_ASSERT_EQUAL(sky__doc_copy(txn, dbi, 110, docid), 0);
	if (val)
		put_raw(txn, key, klen, val, vlen);
	else {
		MDB_val k = {klen, (void *)key};
		CU_ASSERT_EQUAL(mdb_del(txn, dbi, &k, NULL), 0);
	}
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, docid, &problems), SKY_EINVAL);
	if (!problems.data || !strstr(problems.data, what)) {
		fprintf(stderr, "\nwant problem \"%s\", got:\n%s", what,
			problems.data ? problems.data : "(none)\n");
		CU_FAIL("problem not reported");
	}
	if (read_fails) {
		CU_ASSERT_EQUAL(sky__buf_puts(&text, "keep"), 0);
		CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, docid, &text),
				SKY_ERROR);
		CU_ASSERT_EQUAL(sky_error_last()->native, MDB_CORRUPTED);
		/* A failed read leaves the buffer as it was. */
		CU_ASSERT_STRING_EQUAL(text.data, "keep");
	}
	sky__buf_free(&problems);
	sky__buf_free(&text);
}

static void test_doc__check_finds_corruption(void)
{
	MDB_txn *txn = begin(0);
	json_t *doc = parse("{\"a\":{\"b\":{\"c\":1}},\"d\":[1,2],\"e\":{}}");
	sky_buf problems = SKY_BUF_INIT;
	unsigned char key[512], val[16];
	uint64_t id = 111;

	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 110, doc), 0);
	CU_ASSERT_EQUAL(sky__doc_check(txn, dbi, 110, &problems), 0);
	CU_ASSERT_EQUAL(problems.len, 0);

	/* Node ids as doc_write numbers them: a=1, b=2 (in a), e=3. */
#define MEMBER_KEY(docid, node, name)                                          \
	(sky__put_be64(key, (docid)), sky__put_be32(key + 8, (node)),          \
	 memcpy(key + 12, (name), strlen(name)), 12 + strlen(name))

	size_t kl = MEMBER_KEY(id, 0, "d");
	expect_problem(txn, id, key, kl, "v[1,", 4, "not JSON", 0);
	/* The text read copies values as stored; the jansson read parses. */
	json_t *j = NULL;
	CU_ASSERT_EQUAL(sky__doc_read_json(txn, dbi, id, &j), SKY_ERROR);
	CU_ASSERT(j == NULL);
	id++;
	kl = MEMBER_KEY(id, 0, "d");
	expect_problem(txn, id, key, kl, "x1", 2, "unknown member type", 1);
	id++;
	kl = MEMBER_KEY(id, 0, "d");
	expect_problem(txn, id, key, kl, "v{\"o\":1}", 8,
		       "object stored as text", 0);
	id++;
	/* A member pointing back up the tree (a loop for a naive reader). */
	kl = MEMBER_KEY(id, 2, "up");
	val[0] = 'o';
	sky__put_be32(val + 1, 1);
	expect_problem(txn, id, key, kl, val, 5, "not after its own", 1);
	id++;
	/* A member pointing to the root: the same, from the bottom. */
	kl = MEMBER_KEY(id, 3, "root");
	sky__put_be32(val + 1, 0);
	expect_problem(txn, id, key, kl, val, 5, "not after its own", 1);
	id++;
	/* Two members pointing to one node. */
	kl = MEMBER_KEY(id, 0, "twin");
	sky__put_be32(val + 1, 2);
	expect_problem(txn, id, key, kl, val, 5, "referenced twice", 1);
	id++;
	/* A node nobody points to. */
	kl = MEMBER_KEY(id, 7, "orphan");
	expect_problem(txn, id, key, kl, "v1", 2, "no member points to it", 0);
	id++;
	/* A node id at or past the header's next id. */
	kl = MEMBER_KEY(id, 0, "far");
	sky__put_be32(val + 1, 4000);
	expect_problem(txn, id, key, kl, val, 5, "not below the header", 0);
	id++;
	/* The header gone. */
	sky__put_be64(key, id);
	expect_problem(txn, id, key, 8, NULL, 0, "without a header", 0);
	id++;
	/* A long-form key whose value is too short to hold its name. */
	kl = MEMBER_KEY(id, 0, "");
	key[12] = 0xff;
	memset(key + 13, 0, 9);
	kl = 22;
	sky__put_be32(val, 1000);
	expect_problem(txn, id, key, kl, val, 6, "shorter than its name", 1);
	id++;
	/* A truncated object member. */
	kl = MEMBER_KEY(id, 0, "a");
	expect_problem(txn, id, key, kl, "o\x00", 2, "wrong size", 1);
	id++;
	/* An empty value. */
	kl = MEMBER_KEY(id, 0, "d");
	expect_problem(txn, id, key, kl, "", 0, "empty value", 1);
	id++;
	/* A name too long for the key, stored in it all the same. */
	char name[402];
	memset(name, 'n', 401);
	name[401] = '\0';
	kl = MEMBER_KEY(id, 0, name);
	expect_problem(txn, id, key, kl, "v1", 2, "long name stored in the key",
		       1);
	id++;
	/* A short name stored in the long form. */
	kl = MEMBER_KEY(id, 0, "");
	key[12] = 0xff;
	memset(key + 13, 0, 9);
	kl = 22;
	sky__put_be32(val, 1);
	memcpy(val + 4, "sv1", 3);
	expect_problem(txn, id, key, kl, val, 7,
		       "short name stored in the long", 1);
	id++;
	/* A header of the wrong size. */
	sky__put_be64(key, id);
	expect_problem(txn, id, key, 8, "abc", 3, "bad header", 0);
#undef MEMBER_KEY

	sky__buf_free(&problems);
	json_decref(doc);
	mdb_txn_abort(txn);
}

static void test_doc__map_full(void)
{
	MDB_env *small;
	MDB_txn *txn;
	MDB_dbi sdbi;
	char dir[4096];
	json_t *doc = json_object();

	snprintf(dir, sizeof(dir), "%s", sky_test_tmpdir());
	CU_ASSERT_FATAL(mdb_env_create(&small) == 0);
	CU_ASSERT_FATAL(mdb_env_set_mapsize(small, 64 * 1024) == 0);
	CU_ASSERT_FATAL(mdb_env_open(small, dir, MDB_NOSYNC, 0600) == 0);
	CU_ASSERT_FATAL(mdb_txn_begin(small, NULL, 0, &txn) == 0);
	CU_ASSERT_FATAL(mdb_dbi_open(txn, NULL, 0, &sdbi) == 0);
	for (int i = 0; i < 5000; i++) {
		char key[16];
		snprintf(key, sizeof(key), "key%d", i);
		json_object_set_new(doc, key, json_string("some value"));
	}
	/* MDB_MAP_FULL comes back as SKY__EMAPFULL, for the store to grow
	 * the map and run the write again. */
	CU_ASSERT_EQUAL(sky__doc_write(txn, sdbi, 1, doc), SKY__EMAPFULL);
	CU_ASSERT_EQUAL(sky_error_last()->source, SKY_ERRSRC_LMDB);
	CU_ASSERT_EQUAL(sky_error_last()->native, MDB_MAP_FULL);
	mdb_txn_abort(txn);
	CU_ASSERT_FATAL(mdb_txn_begin(small, NULL, 0, &txn) == 0);
	json_t *patch = json_pack("{s:o}", "big", json_incref(doc));
	CU_ASSERT_EQUAL(sky__doc_patch(txn, sdbi, 1, patch), SKY__EMAPFULL);
	mdb_txn_abort(txn);
	json_decref(patch);
	json_decref(doc);
	mdb_env_close(small);
}

/*
 * Values kept exactly, member by member: U+0000 in strings, numbers beyond
 * 64 bits or beyond double as their text, reals in their shortest form;
 * sky__doc_read writes them back byte for byte, sky__doc_read_json gives
 * the same values, and patches replace and add such members in place.
 */
static void test_doc__exact_values(void)
{
	static const char *const steps[][2] = {
	    /* patch, then the whole document as sky__doc_read writes it */
	    {"{\"n\":\"x\\u0000y\",\"big\":100000000000000000000,\"r\":0.94,"
	     "\"o\":{\"a\":[0.1,-123456789012345678901,\"\\u0000\"]}}",
	     "{\"big\":100000000000000000000,\"n\":\"x\\u0000y\",\"o\":{\"a\":"
	     "[0.1,-123456789012345678901,\"\\u0000\"]},\"r\":0.94}"},
	    {"{\"big\":-1e99999,\"o\":{\"b\":18446744073709551616},\"r\":null}",
	     "{\"big\":-1e99999,\"n\":\"x\\u0000y\",\"o\":{\"a\":"
	     "[0.1,-123456789012345678901,\"\\u0000\"],\"b\":"
	     "18446744073709551616}}"},
	};
	MDB_txn *txn = begin(0);
	json_t *empty = json_object();
	CU_ASSERT_FATAL(empty != NULL);
	CU_ASSERT_EQUAL(sky__doc_write(txn, dbi, 90, empty), 0);
	json_decref(empty);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		json_t *patch = sky__json_loads(steps[i][0], 0, NULL);
		CU_ASSERT_FATAL(patch != NULL);
		CU_ASSERT_EQUAL(sky__doc_patch(txn, dbi, 90, patch), 0);
		json_decref(patch);
		sky_buf buf = SKY_BUF_INIT;
		CU_ASSERT_EQUAL(sky__doc_read(txn, dbi, 90, &buf), 0);
		int same = buf.data && !strcmp(buf.data, steps[i][1]);
		CU_ASSERT(same);
		if (!same)
			fprintf(stderr, "\ngot  %s\nwant %s\n",
				buf.data ? buf.data : "", steps[i][1]);
		json_t *j = NULL;
		CU_ASSERT_EQUAL(sky__doc_read_json(txn, dbi, 90, &j), 0);
		json_t *want = sky__json_loads(steps[i][1], 0, NULL);
		CU_ASSERT(j && want && json_equal(j, want));
		json_decref(want);
		json_decref(j);
		sky__buf_free(&buf);
		CU_ASSERT(check_clean(txn, 90));
	}
	mdb_txn_abort(txn);
}

/*
 * Cases of sky__json_sorted_text named one by one: integers are copied as
 * they came but for "-0", members come out sorted by name bytes at every
 * level of objects but inside arrays, whether they came in order or not,
 * and a name repeated (next to itself or not) sends the text the usual
 * way (not taken).
 */
/* The text sky__doc_dump_sorted writes of `text`'s tree (jansson's
 * parse): what the sorted text must equal. */
static char *dump_of_tree(const char *text)
{
	sky_json_limits lim = {0, 64};
	json_t *tree = NULL;
	sky_buf out = SKY_BUF_INIT;
	CU_ASSERT_FATAL(
	    sky__json_parse(text, strlen(text), &lim, "doc", &tree) == 0);
	CU_ASSERT_FATAL(sky__doc_dump_sorted(&out, tree, SIZE_MAX, 64, 0) == 0);
	json_decref(tree);
	return out.data;
}

/*
 * Numbers in the sorted text: integers and short decimals are copied as
 * they came, every other number is written as the dump writes it; on
 * decimals made to sit on either side of each rule (places, trailing
 * zeros, significant digits, magnitude), the text equals the tree's.
 */
static void test_doc__sorted_text_numbers(void)
{
	static const char *const fixed[] = {"0.0",
					    "-0.0",
					    "2.0",
					    "2.00",
					    "2.50",
					    "0.0001",
					    "0.00001",
					    "0.00012",
					    "-0.5",
					    "1e3",
					    "1E-2",
					    "1.5e0",
					    "123456.789012",
					    "1234567.1234567",
					    "99999999999999.5",
					    "100000000000000.5",
					    "123456789012.345",
					    "1234567890123.456",
					    "0.000123456789012345",
					    "-0",
					    "-12",
					    "123456789012345678"};
	char text[128], want[128];
	rng_state = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]) + 4000; i++) {
		char num[64];
		if (i < sizeof(fixed) / sizeof(fixed[0])) {
			snprintf(num, sizeof(num), "%s", fixed[i]);
		} else {
			size_t n = 0;
			if (rnd_below(3) == 0)
				num[n++] = '-';
			unsigned ints = rnd_below(17);
			if (ints == 0)
				num[n++] = '0';
			for (unsigned d = 0; d < ints; d++)
				num[n++] =
				    (char)('0' + (d == 0 ? 1 + rnd_below(9)
							 : rnd_below(10)));
			num[n++] = '.';
			unsigned places = 1 + rnd_below(8);
			for (unsigned d = 0; d < places; d++)
				num[n++] = (char)('0' + (rnd_below(3) == 0
							     ? 0
							     : rnd_below(10)));
			num[n] = '\0';
		}
		snprintf(text, sizeof(text), "{\"b\":%s,\"a\":[%s]}", num, num);
		sky_buf out = SKY_BUF_INIT;
		size_t depth = 0;
		int oom = 0;
		CU_ASSERT_FATAL(sky__json_sorted_text(text, strlen(text), 64,
						      &out, &depth, &oom) == 1);
		char *tree = dump_of_tree(text);
		snprintf(want, sizeof(want), "%s", tree);
		if (strcmp(out.data, want) != 0) {
			CU_FAIL("a number's sorted text differs from the dump");
			fprintf(stderr, "\n%s: %s, dump %s\n", num, out.data,
				want);
		}
		free(tree);
		sky__buf_free(&out);
	}
}

static void test_doc__sorted_text_cases(void)
{
	static const struct {
		const char *in, *out; /* out NULL: not taken */
	} cases[] = {
	    {"{}", "{}"},
	    {"{\"a\":-0,\"b\":-12,\"c\":0,\"d\":123456789012345678}",
	     "{\"a\":0,\"b\":-12,\"c\":0,\"d\":123456789012345678}"},
	    {"{\"z\":1,\"a\":{\"y\":[1,-0,{\"b\":1,\"a\":2}],\"x\":2}}",
	     "{\"a\":{\"x\":2,\"y\":[1,0,{\"b\":1,\"a\":2}]},\"z\":1}"},
	    {" { \"b\" : true , \"a\" : null , \"ab\" : \"s\" } ",
	     "{\"a\":null,\"ab\":\"s\",\"b\":true}"},
	    {"{\"a\":1,\"a\":2}", NULL},
	    {"{\"a\":1,\"b\":2,\"a\":3}", NULL},
	    {"{\"x\":[{\"a\":1,\"b\":2,\"a\":3}]}", NULL},
	    {"{\"a\":01}", NULL},
	    {"{\"a\":1234567890123456789}", NULL}, /* jansson's to read */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sky_buf out = SKY_BUF_INIT;
		size_t depth = 0;
		int oom = 1;
		int taken = sky__json_sorted_text(
		    cases[i].in, strlen(cases[i].in), 64, &out, &depth, &oom);
		CU_ASSERT(!oom);
		if (!cases[i].out) {
			CU_ASSERT(!taken && out.len == 0);
		} else {
			CU_ASSERT(taken && out.data &&
				  strcmp(out.data, cases[i].out) == 0);
			if (!taken || !out.data ||
			    strcmp(out.data, cases[i].out) != 0)
				fprintf(stderr, "\n%s -> %s\n", cases[i].in,
					out.data ? out.data : "(nothing)");
		}
		sky__buf_free(&out);
	}
}

/*
 * A snapshot's data goes straight from its text to the whole form's
 * (sky__json_sorted_text): whenever that is taken, the text is what
 * sky__doc_dump_sorted() writes of the parsed tree, byte for byte, with
 * the same depth; on random documents, in compact and indented text, and
 * on random edits of them.
 */
static void test_doc__sorted_text_same_as_dump(void)
{
	rng_state = 0x5851f42d4c957f2dull;
	unsigned taken = 0, tries = 0, edits_taken = 0;
	sky_json_limits lim = {0, 64};
	for (int i = 0; i < 3000; i++) {
		json_t *doc = rnd_object(0, 0);
		char *text =
		    json_dumps(doc, i % 3 == 0 ? JSON_INDENT(2) : JSON_COMPACT);
		json_decref(doc);
		CU_ASSERT_FATAL(text != NULL);
		char buf[8192];
		size_t len = strlen(text);
		if (len >= sizeof(buf) - 8) {
			free(text);
			continue;
		}
		memcpy(buf, text, len);
		free(text);
		for (int e = 0; e < 3; e++) {
			if (e > 0) { /* an edit: delete, insert or replace */
				static const char set[] =
				    "{}[]\",: \\0.e-9tnfu";
				size_t at = rnd_below((unsigned)len);
				char ch = set[rnd_below(sizeof(set) - 1)];
				unsigned op = rnd_below(3);
				if (op == 0 && len > 1) {
					memmove(buf + at, buf + at + 1,
						len - at - 1);
					len--;
				} else if (op == 1) {
					memmove(buf + at + 1, buf + at,
						len - at);
					buf[at] = ch;
					len++;
				} else {
					buf[at] = ch;
				}
			}
			sky_buf fast = SKY_BUF_INIT, slow = SKY_BUF_INIT;
			size_t depth = 0;
			int oom;
			tries += e == 0;
			if (!sky__json_sorted_text(buf, len, 64, &fast, &depth,
						   &oom)) {
				CU_ASSERT(!oom && fast.len == 0);
				sky__buf_free(&fast);
				continue;
			}
			taken += e == 0;
			edits_taken += e > 0;
			json_t *tree = NULL;
			if (sky__json_parse(buf, len, &lim, "doc", &tree) !=
				0 ||
			    !json_is_object(tree)) {
				CU_FAIL("sorted text taken from invalid JSON");
				fprintf(stderr, "\n%.*s\n", (int)len, buf);
			} else {
				int rc = sky__doc_dump_sorted(&slow, tree,
							      SIZE_MAX, 64, 0);
				CU_ASSERT(rc == 0);
				CU_ASSERT(depth == sky__doc_depth(tree, 100));
				if (fast.len != slow.len ||
				    memcmp(fast.data, slow.data, fast.len)) {
					CU_FAIL("sorted text differs from the "
						"dump of its tree");
					fprintf(stderr, "\n%s\n%s\n", fast.data,
						slow.data);
				}
			}
			json_decref(tree);
			sky__buf_free(&fast);
			sky__buf_free(&slow);
		}
	}
	/* Names needing escapes send some documents the usual way; most
	 * must be taken, and some edits too. */
	CU_ASSERT(taken > tries / 4);
	CU_ASSERT(edits_taken > 0);
}

/*
 * The merge skips stored strings eight bytes at a time: strings of every
 * length to 40 with a quote, a backslash or a control character at every
 * position, as names and as values, are kept byte for byte when a patch
 * changes a member after them.
 */
static void test_doc__merge_skips_every_string(void)
{
	MDB_txn *txn = begin(0);
	static const char specials[] = {'"', '\\', '\n', 'x'};
	uint64_t docid = 900;
	sky__doc_whole_max = SKY__DOC_WHOLE_MAX;
	for (size_t len = 0; len <= 40; len++)
		for (size_t at = 0; at <= len; at++)
			for (size_t k = 0; k < sizeof(specials); k++) {
				char str[48];
				memset(str, 'a', len);
				if (at < len)
					str[at] = specials[k];
				str[len] = '\0';
				json_t *doc =
				    json_pack("{s:s,s:{s:s},s:i}", str, str,
					      "n", str, str, "z", 1);
				json_t *patch = json_pack("{s:i}", "z", 2);
				CU_ASSERT_FATAL(doc && patch);
				CU_ASSERT(
				    sky__doc_write(txn, dbi, docid, doc) == 0);
				CU_ASSERT(form_of(txn, docid) == 'w');
				CU_ASSERT(sky__doc_patch(txn, dbi, docid,
							 patch) == 0);
				doc = sky__merge_patch(doc, patch);
				json_t *back = read_doc(txn, docid);
				if (!back || !json_equal(back, doc)) {
					CU_FAIL("a merge lost a stored string");
					len = 41, at = 42; /* report once */
				}
				json_decref(back);
				json_decref(doc);
				json_decref(patch);
				docid++;
			}
	commit(txn);
	sky__doc_whole_max = 0; /* the suite's default: member by member */
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_doc__rfc7396_cases", test_doc__rfc7396_cases},
	    {"test_doc__edge_cases", test_doc__edge_cases},
	    {"test_doc__rfc7396_external", test_doc__rfc7396_external},
	    {"test_doc__random", test_doc__random},
	    {"test_doc__cases_in_runs", test_doc__cases_in_runs},
	    {"test_doc__runs_random", test_doc__runs_random},
	    {"test_doc__merge_skips_every_string",
	     test_doc__merge_skips_every_string},
	    {"test_doc__sorted_text_cases", test_doc__sorted_text_cases},
	    {"test_doc__sorted_text_numbers", test_doc__sorted_text_numbers},
	    {"test_doc__sorted_text_same_as_dump",
	     test_doc__sorted_text_same_as_dump},
	    {"test_doc__adjacent_docids", test_doc__adjacent_docids},
	    {"test_doc__delete_and_missing", test_doc__delete_and_missing},
	    {"test_doc__invalid_input", test_doc__invalid_input},
	    {"test_doc__copy", test_doc__copy},
	    {"test_doc__deep", test_doc__deep},
	    {"test_doc__hash_collisions", test_doc__hash_collisions},
	    {"test_doc__long_names_real_hash", test_doc__long_names_real_hash},
	    {"test_doc__node_ids_run_out", test_doc__node_ids_run_out},
	    {"test_doc__check_finds_corruption",
	     test_doc__check_finds_corruption},
	    {"test_doc__map_full", test_doc__map_full},
	    {"test_doc__exact_values", test_doc__exact_values},
	    {"test_doc__forms_random", test_doc__forms_random},
	    {"test_doc__forms_check_and_old", test_doc__forms_check_and_old},
	    {"test_doc__whole_10kb", test_doc__whole_10kb},
	    {"test_doc__whole_depth", test_doc__whole_depth},
	    {NULL, NULL},
	};
	MDB_txn *txn;
	int rc;

	if (mdb_env_create(&env) || mdb_env_set_mapsize(env, 1ull << 30) ||
	    mdb_env_set_maxdbs(env, 4) ||
	    mdb_env_open(env, sky_test_tmpdir(), MDB_NOSYNC, 0600) ||
	    mdb_txn_begin(env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, "data", MDB_CREATE, &dbi) ||
	    mdb_txn_commit(txn)) {
		fprintf(stderr, "cannot open the test environment\n");
		return 99;
	}
	/* The cases above check the member form entry by entry, without
	 * runs; the tests of both forms and of runs set the bounds
	 * themselves. */
	sky__doc_whole_max = 0;
	sky__doc_run_max = 0;
	rc = sky_test_main("doc", cases);
	mdb_env_close(env);
	return rc;
}
