/*
 * doc_members.h - the member form of a session data document: one LMDB
 * entry per member (doc_layout.h), read by rebuilding the text from the
 * entries and patched member by member (doc_members.c). doc.c chooses the
 * form and calls these; nothing else should.
 *
 * A write goes through a sky_doc_writer, the state of one operation on
 * one document: its cursor, the header's next id and weight as the
 * operation changes them, and scratch space. The functions that change
 * entries leave the header to the caller: they set header_dirty, and
 * sky__doc_write_header() writes it. Every function returns 0 or a
 * negative code with the error recorded, as doc.h says.
 */
#ifndef SKY_DOC_MEMBERS_H
#define SKY_DOC_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <lmdb.h>

#include "doc_layout.h"
#include "util.h"

/* The longest member key: a short name of the longest length. */
#define MEMBER_KEY_MAX (NODE_PREFIX_LEN + SKY__DOC_NAME_INLINE_MAX)
_Static_assert(MEMBER_KEY_MAX >= LONG_KEY_LEN, "long keys fit the slot");
_Static_assert(MEMBER_KEY_MAX <= 511, "keys fit LMDB's default limit");

/* Where one member of one node is, or would go. */
typedef struct {
	unsigned char key[MEMBER_KEY_MAX];
	size_t key_len;
	int found;
	int is_long;
	unsigned char type; /* when found */
	uint32_t child;	    /* when found with type 'o' */
	uint64_t weight;    /* when found or in_run: the entry's weight */
	int in_run;	    /* the member is, or would be, in the run at
			       run_key (not found then) */
	unsigned char run_key[MEMBER_KEY_MAX];
	size_t run_key_len;
} sky_doc_slot;

/*
 * The state of one write operation. The slot is scratch shared by the
 * recursion (each level is done with it before it recurses), so that deep
 * documents do not put a key buffer on the C stack per level.
 */
typedef struct {
	MDB_txn *txn;
	MDB_dbi dbi;
	uint64_t docid;
	MDB_cursor *cur; /* opened on first need */
	uint32_t next;	 /* the next free node id */
	int header_dirty;
	int whole;	 /* read_header found the whole form */
	uint64_t weight; /* of the member form, see sky__doc_entry_weight() */
	sky_doc_slot sl;
	int runs;	   /* whether this cache writes runs (doc_layout.h) */
	sky_buf val;	   /* scratch for building values */
	sky_buf run, wrap; /* a run being rewritten: merged, and its input */
	uint32_t *pending; /* nodes waiting to be deleted */
	size_t n_pending, cap_pending;
} sky_doc_writer;

/*
 * Append the member-form document as compact JSON text to `out` ("{}" when
 * it has no entries), from one walk of its key range. On failure `out` is
 * as it was.
 */
int sky__doc_members_read(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			  sky_buf *out);

/* The member-form document as a new jansson object (the caller's). */
int sky__doc_members_read_json(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			       json_t **out);

/* Start a write to document `docid`; sky__doc_writer_free() ends it. */
void sky__doc_writer_init(sky_doc_writer *w, MDB_txn *txn, MDB_dbi dbi,
			  uint64_t docid);
void sky__doc_writer_free(sky_doc_writer *w);

/* Open the writer's cursor unless it is open. */
int sky__doc_writer_cursor(sky_doc_writer *w);

/* Write the member form's header: next id, weight, and its closing 0. */
int sky__doc_write_header(sky_doc_writer *w);

/* Delete the whole document, header included, in either form. */
int sky__doc_delete_doc(sky_doc_writer *w);

/*
 * Replace the document with `obj` in the member form, nodes from 1, header
 * written.
 */
int sky__doc_write_members(sky_doc_writer *w, json_t *obj);

/*
 * MergePatch(node, patch) in place, for the object `patch`: only the
 * members it names are looked up, written or deleted (with the subtrees
 * they replace). New nodes take ids from w->next; the caller has made sure
 * there are enough (sky__doc_count_objects).
 */
int sky__doc_patch_object(sky_doc_writer *w, uint32_t node, json_t *patch);

/* The number of objects nested in `obj` (not counting obj). */
size_t sky__doc_count_objects(json_t *obj);

/*
 * Set w->weight to the sum over all the document's entries, for a header
 * written before headers kept it (FORM_MEMBERS_OLD).
 */
int sky__doc_scan_weight(sky_doc_writer *w);

#endif
