/*
 * doc.c - session data documents in LMDB (doc.h): small ones whole, as one
 * value, so that reading one is a single lookup; larger ones member by
 * member, so that an RFC 7396 merge patch reads and writes only what it
 * names. This file is the document API: it reads the header, chooses the
 * form, converts between the forms, and copies and deletes documents. The
 * forms themselves are doc_text.c (whole) and doc_members.c (member by
 * member), their stored layout doc_layout.h, the check doc_check.c.
 *
 * Two forms. A document whose compact text is at most sky__doc_whole_max
 * bytes (SKY__DOC_WHOLE_MAX, 16 KiB) and that nests at most
 * sky__doc_whole_depth_max levels (SKY__DOC_WHOLE_DEPTH_MAX, 128) is stored
 * whole: its header entry (key: the docid alone) holds the text, written
 * by sky__doc_dump_sorted() with the members of every object sorted by
 * name bytes, and nothing else of the document is stored. A read returns
 * that text as it is (the seal was checked by the lookup); a patch merges
 * into the text in one pass (sky__doc_text_merge(), no parse of the
 * document) and writes it back. A larger or deeper document is stored
 * member by member (doc_layout.h). The form follows the document within
 * the transaction that changes it: a write picks the form of its text; a
 * patch that takes a whole document past either bound stores it member by
 * member, and a patch that leaves a member-form document under half the
 * byte bound (by the weight its header keeps, see sky__doc_entry_weight())
 * and within the depth stores it whole. The half keeps a document near the
 * bound from changing form on every patch. Both forms read alike, byte for
 * byte (the member form reads names sorted too, long names last), so
 * readers never know.
 *
 * The depth. jansson refuses to parse text nested deeper than 2048 levels,
 * and a 16 KiB text can nest 8000 deep (`[` and `]` are two bytes a
 * level), so the size alone no longer keeps a whole text parseable. Every
 * path that writes the whole form measures the depth (objects and arrays,
 * as jansson counts): write_doc() and the switch back at the end of
 * sky__doc_patch() through sky__doc_dump_sorted(), which stops at the
 * bound; patch_whole() through the text merge, which counts the brackets
 * of what it keeps of the stored text (the result nests no deeper than
 * that or the patch, and a patch deeper than the bound is merged in memory
 * instead, so the merge never recurses past it). A stored text deeper than
 * the bound (written under a larger one) therefore converts at its first
 * patch, and sky__doc_check() reports one. 128 is twice the default depth
 * limit on session data (SKY_DEFAULT_MAX_DEPTH), so documents a cache
 * takes in by default can always be whole.
 *
 * The bound. Measured with callgrind (instructions per call, one document
 * of ~90-byte items among 50, one ~100-byte patch per transaction, the
 * commit counted with the patch): at 4 KB a whole-form read costs 1.3k
 * against 167k member by member, a patch 70k against 45k; at 10 KB 10.6k
 * against 431k and 159k against 47k; at 16 KB 16.5k against 655k and 238k
 * against 49k. A merge into text grows with the text (~14 instructions a
 * byte, the scan and the copy, and LMDB copies a large value's overflow
 * pages whole on every write) while a member patch stays flat. A read
 * saves 6.6 (4 KB) to 3.4 (16 KB) times what a patch adds, so whole wins
 * wherever a document is read once per three patches; but a whole patch
 * grows with the text, five times a member patch at 16 KiB. 16 KiB makes
 * a 10 KB read forty times cheaper and keeps a patch within that.
 *
 * What it keeps true: after every call that succeeds, the document is
 * stored in one form only, the one its size and depth call for as above
 * (a whole text it writes never nests deeper than the depth bound), with
 * a header that says which (doc_layout.h), and reads the same bytes
 * whichever form that is.
 */
#include "config.h"

#include <assert.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "doc.h"
#include "doc_layout.h"
#include "doc_members.h"
#include "doc_text.h"
#include "error.h"
#include "merge.h"

size_t sky__doc_whole_max = SKY__DOC_WHOLE_MAX;
size_t sky__doc_whole_depth_max = SKY__DOC_WHOLE_DEPTH_MAX;

_Static_assert(SKY__DOC_WHOLE_DEPTH_MAX < JSON_PARSER_MAX_DEPTH,
	       "a whole text always parses");

/* Whether `patch` nests deeper than a whole document may. */
static int too_deep(json_t *patch)
{
	return sky__doc_depth(patch, sky__doc_whole_depth_max) >
	       sky__doc_whole_depth_max;
}

/*
 * The header of the document: 1 with *v set, 0 when there is none, or a
 * negative code.
 */
static int get_header(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, MDB_val *v)
{
	unsigned char key[HEADER_LEN];
	MDB_val k = {HEADER_LEN, key};
	int rc;

	sky__put_be64(key, docid);
	rc = mdb_get(txn, dbi, &k, v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return sky__error_lmdb(rc, "session data: read header");
	return 1;
}

int sky__doc_read(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, sky_buf *out)
{
	MDB_val v;
	int rc;

	assert(txn && out);
	/* The whole form: one lookup, and its text (seal checked by the
	 * read) is the answer. A missing document has no entries at all. */
	if ((rc = get_header(txn, dbi, docid, &v)) <= 0)
		return rc < 0 ? rc : sky__buf_append(out, "{}", 2);
	if (sky__doc_header_form(&v) == FORM_WHOLE)
		return sky__buf_append(out, v.mv_data, v.mv_size);
	return sky__doc_members_read(txn, dbi, docid, out);
}

int sky__doc_read_whole(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			const char **text, size_t *len)
{
	MDB_val v;
	int rc;

	assert(txn && text && len);
	if ((rc = get_header(txn, dbi, docid, &v)) <= 0)
		return rc;
	size_t stored = v.mv_size;
	if (sky__doc_header_form(&v) != FORM_WHOLE)
		return 0;
	*text = v.mv_data;
	*len = v.mv_size;
	/* Written with its NUL (schema 3), or before (schema 2): the form
	 * check took the NUL off the text. */
	return v.mv_size < stored ? 2 : 1;
}

int sky__doc_read_json(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t **out)
{
	MDB_val v;
	int rc;

	assert(txn && out);
	if ((rc = get_header(txn, dbi, docid, &v)) < 0)
		return rc;
	if (rc == 1 && sky__doc_header_form(&v) == FORM_WHOLE)
		return sky__doc_parse_whole(docid, &v, out);
	return sky__doc_members_read_json(txn, dbi, docid, out);
}

/*
 * Read the header. *exists tells whether there is one; for the member form
 * it fills w->next and w->weight (weight_known says whether the header
 * carried it), for the whole form it sets w->whole and points *text at the
 * stored text, valid until the transaction writes.
 */
static int read_header(sky_doc_writer *w, int *exists, int *weight_known,
		       const char **text, size_t *text_len)
{
	unsigned char key[HEADER_LEN];
	MDB_val k = {HEADER_LEN, key}, v;
	int rc;

	sky__put_be64(key, w->docid);
	w->whole = 0;
	*weight_known = 1;
	w->weight = EMPTY_WEIGHT;
	rc = mdb_get(w->txn, w->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		*exists = 0;
		w->next = ROOT_NODE + 1;
		return 0;
	}
	if (rc != 0)
		return sky__error_lmdb(rc, "session data: read header");
	*exists = 1;
	switch (sky__doc_header_form(&v)) {
	case FORM_WHOLE:
		w->whole = 1;
		if (text) {
			*text = v.mv_data;
			*text_len = v.mv_size;
		}
		return 0;
	case FORM_MEMBERS:
		w->weight = sky__get_be64((unsigned char *)v.mv_data + 4);
		break;
	case FORM_MEMBERS_OLD: *weight_known = 0; break;
	default: return sky__doc_corrupt(w->docid, "bad header");
	}
	w->next = sky__get_be32(v.mv_data);
	return 0;
}

static int write_whole(sky_doc_writer *w);

/*
 * Replace the document with `obj` in the form its size and depth call for:
 * the whole form when its text is at most sky__doc_whole_max bytes and it
 * nests at most sky__doc_whole_depth_max levels.
 */
static int write_doc(sky_doc_writer *w, json_t *obj)
{
	int rc;

	sky__buf_clear(&w->val);
	if ((rc = sky__doc_dump_sorted(&w->val, obj, sky__doc_whole_max,
				       sky__doc_whole_depth_max, 0)) < 0)
		return rc;
	if (rc == 1)
		return sky__doc_write_members(w, obj);
	return write_whole(w);
}

/*
 * Whether whole texts get their NUL in this cache: from schema 3 on
 * (store.h), and in an environment that is no cache's (a test's own).
 */
static int whole_ends_in_nul(MDB_txn *txn)
{
	const sky_seal_env *se = mdb_env_get_userctx(mdb_txn_env(txn));
	return !se || se->schema >= 3;
}

/*
 * Store the text in w->val as the document's header, whole form, with the
 * NUL that lets a reader hand the stored bytes out as a C string
 * (doc_layout.h). A 12-byte text goes without: 13 bytes ending in 0 are
 * the member form's header, and its reader copies it instead. w->val
 * keeps the NUL.
 */
static int put_whole(sky_doc_writer *w)
{
	unsigned char key[HEADER_LEN];
	MDB_val k = {HEADER_LEN, key}, v;
	int rc;

	if (w->val.len != MEMBERS_HEADER_LEN - 1 && whole_ends_in_nul(w->txn) &&
	    (rc = sky__buf_putc(&w->val, '\0')) < 0)
		return rc;
	sky__put_be64(key, w->docid);
	v.mv_data = w->val.data;
	v.mv_size = w->val.len;
	if ((rc = mdb_put(w->txn, w->dbi, &k, &v, 0)) != 0)
		return sky__error_lmdb(rc, "session data: write");
	return 0;
}

/* Replace the document with the whole form holding the text in w->val. */
static int write_whole(sky_doc_writer *w)
{
	int rc;

	/* Only the header holds anything in the whole form. */
	if ((rc = sky__doc_delete_doc(w)) < 0)
		return rc;
	return put_whole(w);
}

int sky__doc_write(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t *obj)
{
	sky_doc_writer w;
	int rc;

	assert(txn);
	if (!json_is_object(obj))
		return sky__error_input("session data: not a JSON object");
	sky__doc_writer_init(&w, txn, dbi, docid);
	rc = write_doc(&w, obj);
	sky__doc_writer_free(&w);
	return rc;
}

int sky__doc_write_whole_text(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			      const char *text, size_t len)
{
	sky_doc_writer w;
	int rc;

	assert(txn && len <= sky__doc_whole_max);
	sky__doc_writer_init(&w, txn, dbi, docid);
	rc = sky__buf_append(&w.val, text, len);
	if (rc == 0)
		rc = write_whole(&w);
	sky__doc_writer_free(&w);
	return rc;
}

/*
 * The patch applied to the whole document in memory, the result written
 * in whichever form it needs. `doc` is consumed (NULL: a missing one).
 */
static int patch_in_memory(sky_doc_writer *w, json_t *doc, json_t *patch)
{
	int rc;
	if (!(doc = sky__merge_patch(doc ? doc : json_object(), patch)))
		return sky__error_nomem();
	rc = write_doc(w, doc);
	json_decref(doc);
	return rc;
}

/*
 * Patch the whole form (or a missing document, text "{}"): merge the patch
 * into the stored text, and store the result whole, or member by member
 * when it has outgrown the bound or nests deeper than the whole form may.
 */
static int patch_whole(sky_doc_writer *w, const char *stored, size_t len,
		       json_t *patch)
{
	json_t *doc;
	MDB_val v = {len, (void *)stored};
	size_t depth;
	int rc;

	/* A patch deeper than a whole document may be is merged in memory:
	 * the text merge would recurse as deep as the patch, and the result
	 * is likely as deep (write_doc() measures it). A patch within the
	 * bound leaves the result within it exactly when what the merge
	 * keeps of the stored text is (the depth it gives). */
	if (too_deep(patch)) {
		if ((rc = sky__doc_parse_whole(w->docid, &v, &doc)) < 0)
			return rc;
		return patch_in_memory(w, doc, patch);
	}
	sky__buf_clear(&w->val);
	rc = sky__doc_text_merge(&w->val, stored, len, patch, &depth);
	if (rc == SKY__DOC_MALFORMED) {
		/* Not text sky__doc_dump_sorted() wrote: parse it (or say it is
		 * corrupt) and merge in memory. */
		if ((rc = sky__doc_parse_whole(w->docid, &v, &doc)) < 0)
			return rc;
		return patch_in_memory(w, doc, patch);
	}
	if (rc < 0)
		return rc;
	if (w->val.len <= sky__doc_whole_max &&
	    depth <= sky__doc_whole_depth_max)
		return put_whole(w);
	/* Grown past the bound, or deeper than the whole form may be (when
	 * the stored text already was: written under a larger bound, or
	 * before there was one): member by member from now on. The result
	 * nests no deeper than the stored text or the patch, so it parses
	 * as the stored text did. */
	if ((rc = sky__doc_parse_whole(
		 w->docid, &(MDB_val){w->val.len, w->val.data}, &doc)) < 0)
		return rc;
	rc = sky__doc_write_members(w, doc);
	json_decref(doc);
	return rc;
}

int sky__doc_patch(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t *patch)
{
	sky_doc_writer w;
	const char *text = NULL;
	size_t text_len = 0;
	int exists, weight_known, rc;

	assert(txn);
	if (!json_is_object(patch))
		return sky__error_input(
		    "session data patch: not a JSON object");
	sky__doc_writer_init(&w, txn, dbi, docid);
	if ((rc = read_header(&w, &exists, &weight_known, &text, &text_len)) <
	    0)
		goto done;
	if (!exists || w.whole) {
		rc = patch_whole(&w, exists ? text : "{}",
				 exists ? text_len : 2, patch);
		goto done;
	}
	size_t need = sky__doc_count_objects(patch);
	if (need > UINT32_MAX - w.next) {
		/* Out of ids: rewrite the document, nodes from 1. */
		json_t *doc;
		if ((rc = sky__doc_read_json(txn, dbi, docid, &doc)) < 0)
			goto done;
		if (need > UINT32_MAX - 1 - sky__doc_count_objects(doc)) {
			json_decref(doc);
			rc = sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
					    "session data %016" PRIx64
					    ": more than 2^32 - 1 objects",
					    docid);
			goto done;
		}
		rc = patch_in_memory(&w, doc, patch);
		goto done;
	}
	/* A document stored before headers carried the weight: learn it
	 * once (one walk of its keys); the header below keeps it. */
	if (!weight_known && (rc = sky__doc_scan_weight(&w)) < 0)
		goto done;
	if ((rc = sky__doc_patch_object(&w, ROOT_NODE, patch)) < 0)
		goto done;
	if (w.weight < sky__doc_whole_max / 2) {
		/* Small again (the half keeps a document near the bound
		 * from changing form at every patch): whole form, unless it
		 * nests too deep. The header does not say how deep, so a
		 * small deep document is read at every patch to find out:
		 * a cost of the same order as a whole-form patch. */
		json_t *doc;
		if ((rc = sky__doc_read_json(txn, dbi, docid, &doc)) < 0)
			goto done;
		sky__buf_clear(&w.val);
		rc = sky__doc_dump_sorted(&w.val, doc, sky__doc_whole_max,
					  sky__doc_whole_depth_max, 0);
		json_decref(doc);
		if (rc == 0) {
			rc = write_whole(&w);
			goto done;
		}
		/* Too deep, or names that need escapes made the text
		 * longer than the weight says: it stays in members. */
		if (rc < 0)
			goto done;
		w.header_dirty = 1;
	}
	if (w.header_dirty)
		rc = sky__doc_write_header(&w);
done:
	sky__doc_writer_free(&w);
	return rc;
}

int sky__doc_delete(MDB_txn *txn, MDB_dbi dbi, uint64_t docid)
{
	sky_doc_writer w;
	int rc;

	assert(txn);
	sky__doc_writer_init(&w, txn, dbi, docid);
	rc = sky__doc_delete_doc(&w);
	sky__doc_writer_free(&w);
	return rc;
}

int sky__doc_exists(MDB_txn *txn, MDB_dbi dbi, uint64_t docid)
{
	sky_doc_writer w;
	int exists, weight_known, rc;

	assert(txn);
	sky__doc_writer_init(&w, txn, dbi, docid);
	rc = read_header(&w, &exists, &weight_known, NULL, NULL);
	sky__doc_writer_free(&w);
	return rc < 0 ? rc : exists;
}

int sky__doc_copy(MDB_txn *txn, MDB_dbi dbi, uint64_t from, uint64_t to)
{
	unsigned char prefix[HEADER_LEN];
	sky_buf chunk = SKY_BUF_INIT, last = SKY_BUF_INIT;
	sky_doc_writer w;
	MDB_val k, v;
	int rc, more = 1;

	assert(txn);
	if (from == to)
		return 0;
	sky__doc_writer_init(&w, txn, dbi, to);
	if ((rc = sky__doc_delete_doc(&w)) < 0 ||
	    (rc = sky__doc_writer_cursor(&w)) < 0)
		goto done;
	/*
	 * Entries are copied in chunks: read some into memory with the new
	 * docid, write them, then seek back to where the reading stopped.
	 * Values read from LMDB may move when the transaction writes, so
	 * nothing read is used after a write.
	 */
	sky__put_be64(prefix, from);
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	rc = mdb_cursor_get(w.cur, &k, &v, MDB_SET_RANGE);
	while (more) {
		sky__buf_clear(&chunk);
		for (; rc == 0; rc = mdb_cursor_get(w.cur, &k, &v, MDB_NEXT)) {
			uint32_t kl = (uint32_t)k.mv_size;
			uint32_t vl = (uint32_t)v.mv_size;
			unsigned char hdr[8];
			if (k.mv_size < HEADER_LEN ||
			    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
				break;
			if (chunk.len >= 64 * 1024)
				break;
			sky__put_be32(hdr, kl);
			sky__put_be32(hdr + 4, vl);
			if (sky__buf_append(&chunk, hdr, 8) < 0 ||
			    sky__buf_append(&chunk, k.mv_data, kl) < 0 ||
			    sky__buf_append(&chunk, v.mv_data, vl) < 0) {
				rc = -1;
				goto done;
			}
		}
		if (rc != 0 && rc != MDB_NOTFOUND) {
			rc = sky__error_lmdb(rc, "session data: copy");
			goto done;
		}
		more = rc == 0 && k.mv_size >= HEADER_LEN &&
		       memcmp(k.mv_data, prefix, HEADER_LEN) == 0;
		if (more) {
			/* Resume at the first key not copied. */
			sky__buf_clear(&last);
			if (sky__buf_append(&last, k.mv_data, k.mv_size) < 0) {
				rc = -1;
				goto done;
			}
		}
		for (size_t off = 0; off < chunk.len;) {
			unsigned char *p = (unsigned char *)chunk.data + off;
			uint32_t kl = sky__get_be32(p),
				 vl = sky__get_be32(p + 4);
			MDB_val nk = {kl, p + 8}, nv = {vl, p + 8 + kl};
			sky__put_be64(p + 8, to);
			if ((rc = mdb_put(txn, dbi, &nk, &nv, 0)) != 0) {
				rc = sky__error_lmdb(rc, "session data: copy");
				goto done;
			}
			off += 8 + (size_t)kl + vl;
		}
		if (more) {
			k.mv_data = last.data;
			k.mv_size = last.len;
			rc = mdb_cursor_get(w.cur, &k, &v, MDB_SET_RANGE);
		}
	}
	rc = 0;
done:
	sky__buf_free(&chunk);
	sky__buf_free(&last);
	sky__doc_writer_free(&w);
	return rc;
}
