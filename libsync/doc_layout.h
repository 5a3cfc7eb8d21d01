/*
 * doc_layout.h - how a session data document is laid out in its LMDB
 * database (doc.h): the keys, the two header forms, and the decoding of
 * one member entry, shared by the code that reads, writes and checks
 * documents (doc.c, doc_members.c, doc_text.c, doc_check.c) and by
 * nothing else. Every key of a document begins with its docid, 8 bytes
 * big-endian, so that a document is one contiguous key range.
 *
 * Header values tell the forms apart (sky__doc_header_form()): the text of
 * the whole form starts with '{' and ends with '}', followed by a NUL from
 * schema 3 on (so that a read can hand out the stored bytes as a C
 * string; not after a text of 12 bytes, which would look like a member
 * header; a cache of schema 2 keeps writing its texts without, see
 * store.h, and they read as they are, copied); the member form's
 * header is next id (4) + weight (8) + a 0 byte; a header of 4 bytes (next
 * id only) is a member-form document written before headers kept the
 * weight. Such documents read as before; their first patch walks their
 * keys once to learn the weight and then converts them like any other (to
 * the whole form when they are small), and any sky__doc_write() stores the
 * form of its size.
 *
 * Member layout. Every JSON object of a document is a "node" with a 32-bit
 * id; the document itself is node 0. Each member of an object is one LMDB
 * entry:
 *
 *   header   docid(8)                        -> next free node id (u32)
 *   member   docid(8) node(4) name           -> type payload
 *   long     docid(8) node(4) FF hash(8) n(1) -> namelen(4) name type payload
 *
 * with all integers big-endian, and
 *
 *   type 'o', payload child(4): the value is the object held by node child
 *             (an empty object is a node without entries);
 *   type 'v', payload text:     the value is a scalar or an array, as compact
 *             JSON text (sky__json_dump_buf: compact, reals in their
 *             shortest form, big numbers as the text they came as);
 *   type 'r', payload members:  a run of small members of the object, as
 *             the text between an object's braces (`"a":1,"b":{"c":2}`,
 *             the whole form's text, objects included), the first of them
 *             the member the key names (schema 4 on, see below).
 *
 * Names of more than SKY__DOC_NAME_INLINE_MAX bytes would not fit LMDB's
 * 511-byte keys, so they are stored in the "long" form: the key holds a
 * 64-bit hash of the name and a counter n that tells apart names with the
 * same hash, and the value holds the name itself. A lookup scans the few
 * keys with the name's hash and compares whole names, so it is exact. A
 * name also takes the long form when it starts with byte 0xFF, which valid
 * UTF-8 never does: the byte after the node id then always says which form
 * a key has.
 *
 * Runs. A document read whole would otherwise cost a cursor step per
 * member and per object; a run holds up to sky__doc_run_max bytes of
 * consecutive members whose names are short and need no escapes and
 * whose values are at most sky__doc_run_member_max bytes of text
 * (doc_bounds.h), so a read copies a run's bytes as they are, and a 1 MB
 * document of small objects is some 700 entries instead of 70000. A run
 * stands for every name from its key up to the next key of its node: a
 * lookup that misses its key looks at the entry before, and a member the
 * run cannot hold (too large, or a name that needs escapes) splits it
 * there. A 'r' entry's name is never long. Only a cache of schema 4 on
 * writes runs (store.h); every schema reads them.
 *
 * Invariants (sky__doc_check verifies them):
 * - A whole-form document is its header and nothing else; its text is a
 *   JSON object. A member-form header's weight is the sum over its
 *   entries.
 * - All keys of a document start with its docid: a document is one
 *   contiguous key range, and deleting or copying it is a range walk.
 * - A document is stored iff its header is. Node ids below the header's
 *   next id may be in use; ids are never reused within a document, so a
 *   member pointing at a node id that has no entries is an empty object.
 * - A child node's id is greater than its parent's (a node is created after
 *   the object holding it, and ids only grow), so the nodes form a tree by
 *   construction and a reader meeting a smaller id knows the data is
 *   corrupt instead of looping. Each node is referenced by exactly one
 *   member, and every node with entries other than the root is referenced.
 * - Objects are never stored as 'v' text: each is a node, or a member of
 *   a run (small), so a patch reaches any member by key, parsing at most
 *   the one run that holds it.
 * - A run's members have names in the short form that need no escapes,
 *   sorted strictly by name bytes, the first its key's name and the last
 *   below the next key of its node.
 */
#ifndef SKY_DOC_LAYOUT_H
#define SKY_DOC_LAYOUT_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#include "doc_names.h"
#include "util.h"

#define ROOT_NODE 0u
#define HEADER_LEN 8	   /* docid */
#define NODE_PREFIX_LEN 12 /* docid + node id */
#define LONG_MARK 0xffu
#define LONG_PREFIX_LEN (NODE_PREFIX_LEN + 1 + 8) /* ... FF hash */
#define LONG_KEY_LEN (LONG_PREFIX_LEN + 1)	  /* ... counter */
#define TYPE_OBJECT 'o'
#define TYPE_VALUE 'v'
#define TYPE_RUN 'r'

#define MEMBERS_HEADER_LEN 13 /* next(4) weight(8) 0 */
#define EMPTY_WEIGHT 2	      /* "{}" */

/* What a header value says the document is (sky__doc_header_form). */
enum { FORM_BAD, FORM_WHOLE, FORM_MEMBERS, FORM_MEMBERS_OLD };

static inline int sky__doc_is_long_name(const char *name, size_t len)
{
	return len > SKY__DOC_NAME_INLINE_MAX ||
	       (len > 0 && (unsigned char)name[0] == LONG_MARK);
}

static inline void sky__doc_node_prefix(unsigned char *key, uint64_t docid,
					uint32_t node)
{
	sky__put_be64(key, docid);
	sky__put_be32(key + 8, node);
}

/* One member entry, decoded; the pointers borrow the stored bytes. */
typedef struct {
	const unsigned char *name;
	const unsigned char *payload;
	uint32_t name_len;
	uint32_t payload_len;
	uint32_t node;
	unsigned char type;
	unsigned char is_long;
} sky_doc_entry;

/*
 * Which form the header value `v` says the document is stored in: one of
 * the FORM_ values above. For FORM_WHOLE, `v` is narrowed to the text
 * (without the NUL that follows it when written by schema 3 on).
 */
int sky__doc_header_form(MDB_val *v);

/* Record stored data that breaks the layout. Returns -1. */
int sky__doc_corrupt(uint64_t docid, const char *why);

/*
 * What a member adds to the document's text, give or take its escapes and
 * a comma: quotes, colon and comma around name and value, "{}" for an
 * object. The member form keeps the sum (plus 2 for the root's braces) in
 * its header, so that a patch knows when the document has become small
 * without reading it.
 */
static inline uint64_t sky__doc_entry_weight(const sky_doc_entry *e)
{
	/* A run's text is its members' weights less the last comma. */
	if (e->type == TYPE_RUN)
		return (uint64_t)e->payload_len + 1;
	return (uint64_t)e->name_len +
	       (e->type == TYPE_OBJECT ? 6 : (uint64_t)e->payload_len + 4);
}

/*
 * Whether a member named so may be held by a run: a name in the short
 * form whose text needs no escapes, so that its stored bytes between the
 * quotes are the name itself (and compare as the key's do).
 */
static inline int sky__doc_run_name(const char *name, size_t len)
{
	if (sky__doc_is_long_name(name, len))
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c < 0x20 || c == '"' || c == '\\')
			return 0;
	}
	return 1;
}

/*
 * Decode the member entry k -> v (a key longer than the header). Returns 0,
 * or -1 with the reason in *why when it breaks the layout. It accepts only
 * entries of the layout (a name in the key when short, in the value when
 * long, a known type with a payload of its size), so that every caller can
 * rely on the lengths it gives. Inline: it is the inner loop of every read
 * of the member form.
 */
static inline int sky__doc_parse_entry(const MDB_val *k, const MDB_val *v,
				       sky_doc_entry *e, const char **why)
{
	const unsigned char *key = k->mv_data, *val = v->mv_data;
	size_t vlen = v->mv_size;

	if (k->mv_size < NODE_PREFIX_LEN) {
		*why = "key too short";
		return -1;
	}
	e->node = sky__get_be32(key + 8);
	e->is_long =
	    k->mv_size > NODE_PREFIX_LEN && key[NODE_PREFIX_LEN] == LONG_MARK;
	if (e->is_long) {
		if (k->mv_size != LONG_KEY_LEN) {
			*why = "long-name key of the wrong length";
			return -1;
		}
		if (vlen < 4 || sky__get_be32(val) > vlen - 4) {
			*why = "long-name value shorter than its name";
			return -1;
		}
		e->name_len = sky__get_be32(val);
		e->name = val + 4;
		val += 4 + e->name_len;
		vlen -= 4 + (size_t)e->name_len;
		if (!sky__doc_is_long_name((const char *)e->name,
					   e->name_len)) {
			*why = "short name stored in the long form";
			return -1;
		}
	} else {
		e->name = key + NODE_PREFIX_LEN;
		e->name_len = (uint32_t)(k->mv_size - NODE_PREFIX_LEN);
		if (e->name_len > SKY__DOC_NAME_INLINE_MAX) {
			*why = "long name stored in the key";
			return -1;
		}
	}
	if (vlen < 1) {
		*why = "empty value";
		return -1;
	}
	e->type = val[0];
	e->payload = val + 1;
	e->payload_len = (uint32_t)(vlen - 1);
	if (e->type == TYPE_OBJECT && e->payload_len != 4) {
		*why = "object member of the wrong size";
		return -1;
	}
	if (e->type == TYPE_VALUE && e->payload_len == 0) {
		*why = "empty JSON value";
		return -1;
	}
	if (e->type == TYPE_RUN &&
	    (e->is_long || e->payload_len < 4 || e->payload[0] != '"')) {
		*why = "run of members malformed";
		return -1;
	}
	if (e->type != TYPE_OBJECT && e->type != TYPE_VALUE &&
	    e->type != TYPE_RUN) {
		*why = "unknown member type";
		return -1;
	}
	return 0;
}

#endif
