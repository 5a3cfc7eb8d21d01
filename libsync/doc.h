/*
 * doc.h - session data documents stored in LMDB so that a merge patch costs
 * in proportion to the patch, not to the document it lands on.
 *
 * A document is any JSON object, identified by a 64-bit docid. It lives in
 * one plain (not DUPSORT) database given by the caller, where every key of a
 * document begins with the docid as 8 big-endian bytes: a document is one
 * contiguous key range, shared with nothing else. doc_layout.h explains the
 * layout, doc.c the two forms a document is stored in.
 *
 * Reading gives objects with their keys sorted by name bytes (in the member
 * form, names longer than SKY__DOC_NAME_INLINE_MAX bytes come after the
 * others, in no useful order); JSON objects are unordered, so nothing may
 * depend on the order.
 *
 * Every function returns 0 or a negative code with the error recorded
 * (error.h). An LMDB failure is returned as sky__error_lmdb() gives it, so
 * MDB_MAP_FULL arrives as SKY__EMAPFULL and sky__store_write() grows the
 * map and runs the whole write again. A failed write leaves the transaction
 * half changed: the caller aborts it. Stored data that breaks the layout
 * gives -1 with SKY_ERRSRC_LMDB and native MDB_CORRUPTED; sky__doc_check()
 * says what is wrong.
 */
#ifndef SKY_DOC_H
#define SKY_DOC_H

#include <stdint.h>

#include <jansson.h>
#include <lmdb.h>

/* For the callers too: the bounds of the whole form, SKY__DOC_WHOLE_MAX
 * and SKY__DOC_WHOLE_DEPTH_MAX (doc_bounds.h), sky__doc_check()
 * (doc_check.h), and how member names go into keys,
 * SKY__DOC_NAME_INLINE_MAX and sky__doc_name_hash (doc_names.h). */
#include "doc_bounds.h"
#include "doc_check.h"
#include "doc_names.h"
#include "util.h"

/*
 * Replace the whole document `docid` with the object `obj` (borrowed).
 * Null members are stored like any value. Returns 0, SKY_EINVAL (not an
 * object), SKY_ELIMIT (over 2^32 - 1 objects), SKY__EMAPFULL or -1.
 */
int sky__doc_write(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t *obj);

/*
 * Replace the whole document `docid` with the whole form holding `text`:
 * the text sky__json_sorted_text() gave, of at most sky__doc_whole_max
 * bytes and sky__doc_whole_depth_max levels (what sky__doc_write() would
 * store of its tree). Returns 0, SKY__EMAPFULL or -1.
 */
int sky__doc_write_whole_text(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			      const char *text, size_t len);

/*
 * Apply the RFC 7396 merge patch `patch` (an object, borrowed) to the
 * document; a missing document is taken as {}. Only the members the patch
 * names are read or written, plus the subtrees it replaces or deletes. The
 * result is what sky__merge_patch() gives on the whole document. Returns
 * 0, SKY_EINVAL (not an object), SKY_ELIMIT, SKY__EMAPFULL or -1.
 */
int sky__doc_patch(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t *patch);

/*
 * Append the whole document as compact JSON text to `out` ("{}" when it
 * does not exist), straight from the stored bytes. On failure `out` is as
 * it was. Returns 0 or -1.
 */
int sky__doc_read(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, sky_buf *out);

/*
 * The text of a document stored whole, borrowed from the map (valid until
 * the transaction writes or ends): 2 with *text and *len set when a NUL
 * follows the text (stored from schema 3 on), 1 when it does not (text
 * written by schema 2, or of 12 bytes: see doc_layout.h), 0 when the
 * document is stored member by member or does not exist, or -1.
 */
int sky__doc_read_whole(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			const char **text, size_t *len);

/* The document as a new jansson object (the caller's), {} when missing. */
int sky__doc_read_json(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t **out);

/* Remove the document (nothing to do when it does not exist). */
int sky__doc_delete(MDB_txn *txn, MDB_dbi dbi, uint64_t docid);

/*
 * Replace document `to` with a copy of document `from` (removing `to` when
 * `from` does not exist), whichever form it is stored in: code that
 * copies a document must call this, never copy key ranges itself. Returns
 * 0, SKY__EMAPFULL or -1.
 */
int sky__doc_copy(MDB_txn *txn, MDB_dbi dbi, uint64_t from, uint64_t to);

/*
 * Whether document `docid` is stored (written, patched or copied, and not
 * deleted since). Returns 1, 0, or a negative code.
 */
int sky__doc_exists(MDB_txn *txn, MDB_dbi dbi, uint64_t docid);

#endif
