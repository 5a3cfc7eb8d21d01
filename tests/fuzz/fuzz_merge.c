/*
 * fuzz_merge.c - libFuzzer target for the RFC 7396 merge: the input is
 * split at the first NUL-free newline into a target and a patch. Checks:
 * no crash; the merge is idempotent for object patches (applying the same
 * patch twice equals applying it once, a property RFC 7396 guarantees);
 * and the session-data store (one entry per member) agrees with the
 * in-memory merge on the same inputs.
 */
#include <jansson.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "merge.h"
#include "model.h"
#include "util.h"

static MDB_env *env;
static MDB_dbi dbi;

static void open_env(void)
{
	char tmpl[] = "/tmp/skyfuzzm.XXXXXX";
	MDB_txn *txn;
	if (!mkdtemp(tmpl) || mdb_env_create(&env) ||
	    mdb_env_set_mapsize(env, (size_t)1 << 30) ||
	    mdb_env_open(env, tmpl, MDB_NOSYNC, 0600) ||
	    mdb_txn_begin(env, NULL, 0, &txn) ||
	    mdb_dbi_open(txn, NULL, 0, &dbi) || mdb_txn_commit(txn))
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *text = (const char *)data;
	const char *nl = memchr(text, '\n', size);
	if (!nl)
		return 0;
	/* The cache never stores anything deeper than its limit (64). */
	if (sky__json_depth(text, size, 64) > 64)
		return 0;
	json_error_t err;
	json_t *target =
	    json_loadb(text, (size_t)(nl - text),
		       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
	json_t *patch =
	    json_loadb(nl + 1, size - (size_t)(nl - text) - 1,
		       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
	if (!target || !patch) {
		json_decref(target);
		json_decref(patch);
		return 0;
	}
	json_t *once = sky__merge_patch(json_deep_copy(target), patch);
	json_t *twice = sky__merge_patch(json_deep_copy(once), patch);
	if (!json_equal(once, twice))
		abort();

	if (json_is_object(target) && json_is_object(patch)) {
		if (!env)
			open_env();
		MDB_txn *txn;
		if (mdb_txn_begin(env, NULL, 0, &txn))
			abort();
		json_t *stored = NULL;
		if (sky__doc_write(txn, dbi, 1, target) ||
		    sky__doc_patch(txn, dbi, 1, patch) ||
		    sky__doc_read_json(txn, dbi, 1, &stored))
			abort();
		if (!json_equal(stored, once))
			abort();
		json_decref(stored);
		mdb_txn_abort(txn);
	}
	json_decref(once);
	json_decref(twice);
	json_decref(target);
	json_decref(patch);
	return 0;
}
