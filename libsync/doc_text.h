/*
 * doc_text.h - the whole form of a session data document: its compact
 * text, with the members of every object sorted by name bytes, stored as
 * the header's value (doc.c: "Two forms"). doc_text.c writes that text,
 * merges a patch into it and parses it.
 *
 * The functions take the stored bytes as they are; none reads or writes
 * LMDB, so the caller decides where the text lives.
 */
#ifndef SKY_DOC_TEXT_H
#define SKY_DOC_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <lmdb.h>

#include "util.h"

/* sky__doc_text_merge: the stored text is not what this form writes. */
#define SKY__DOC_MALFORMED (-2)

/*
 * The nesting depth of `v`: 0 for a scalar, 1 for an empty object or
 * array, one more for each level of objects or arrays within, as jansson
 * counts against its parse limit. Stops looking once it is over `cap`
 * (then returns cap + 1), so the recursion is at most cap + 1 deep.
 */
size_t sky__doc_depth(json_t *v, size_t cap);

/*
 * Append the compact text of the object `obj` with the members of every
 * object sorted by name bytes (arrays and what they hold as they are, as
 * the member form stores them), the order the member form reads in, so a
 * conversion between the forms changes no reader's bytes. With `strip`,
 * null members are left out at every depth (MergePatch({}, obj)). Stops as
 * soon as `out` holds more than `limit` bytes or the object turns out to
 * nest deeper than `depth` levels (sky__doc_depth()): returns 0, 1 when
 * over either bound (`out` then holds a part), or -1. The recursion is at
 * most `depth` deep.
 */
int sky__doc_dump_sorted(sky_buf *out, json_t *obj, size_t limit, size_t depth,
			 int strip);

/*
 * Append MergePatch(stored, patch) to `out` as text of this form, for the
 * stored text [text, text + len) of a whole-form document and the object
 * `patch` (borrowed), in one pass that parses nothing but names and the
 * extent of each value, and set *depth to the depth of the result (as
 * sky__doc_depth() counts) without the levels the patch's values bring:
 * the result nests as deep as the larger of *depth and the patch's depth
 * at most, and exactly *depth when that is the larger. The recursion is
 * as deep as the patch, which the caller bounds. Returns 0, -1 (error
 * recorded), or
 * SKY__DOC_MALFORMED when the text is not one object as
 * sky__doc_dump_sorted() writes it; then `out` holds a part and the
 * caller parses the text instead.
 */
int sky__doc_text_merge(sky_buf *out, const char *text, size_t len,
			json_t *patch, size_t *depth);

/*
 * sky__doc_text_merge() for the patch of one member, {name: value}, with
 * `value` borrowed: the merge of a run of the member form (doc_layout.h),
 * given its text between braces, without building a patch object.
 */
int sky__doc_text_merge_member(sky_buf *out, const char *text, size_t len,
			       const char *name, size_t name_len,
			       json_t *value);

/*
 * Read the member at *p of the members' text [*p, end) (an object's text
 * between its braces, as this form writes it): its name as stored between
 * the quotes, escapes and all, and its value's text. Moves *p past the
 * member and the comma after it. Returns 0, or SKY__DOC_MALFORMED when the
 * text there is not a member followed by a comma or the end.
 */
int sky__doc_text_member(const char **p, const char *end, const char **name,
			 size_t *name_len, const char **value,
			 size_t *value_len);

/*
 * Parse the stored text of the whole form `v` into a new object (the
 * caller's). Returns 0, or -1 (MDB_CORRUPTED, doc_layout.h) when it is not
 * a JSON object.
 */
int sky__doc_parse_whole(uint64_t docid, const MDB_val *v, json_t **out);

#endif
