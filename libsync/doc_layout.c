/*
 * doc_layout.c - the stored layout of session data documents
 * (doc_layout.h): telling the header forms apart and decoding a member
 * entry, with the checks that keep a reader from trusting bytes that break
 * the layout. It only reads; nothing here writes or walks a document.
 *
 * What it keeps true: sky__doc_parse_entry() accepts only entries of the
 * layout (a name in the key when short, in the value when long, a known
 * type with a payload of its size), so that every caller can rely on the
 * lengths it returns; anything else is a reason, never a guess.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "doc_layout.h"
#include "error.h"

/* Declared in doc_names.h: tests replace it, stored keys depend on it. */
uint64_t (*sky__doc_name_hash)(const void *name, size_t len) = sky__hash64;

/*
 * The forms cannot be mistaken for each other: compact JSON text of an
 * object is never 4 bytes long ("{}" is 2, the next shortest 6) and ends
 * with '}', where the member header of today ends with a 0 byte.
 */
int sky__doc_header_form(const MDB_val *v)
{
	const unsigned char *p = v->mv_data;
	size_t n = v->mv_size;
	if (n == 4)
		return sky__get_be32(p) == ROOT_NODE ? FORM_BAD
						     : FORM_MEMBERS_OLD;
	if (n == MEMBERS_HEADER_LEN && p[12] == 0)
		return sky__get_be32(p) == ROOT_NODE ? FORM_BAD : FORM_MEMBERS;
	if (n >= 2 && p[0] == '{' && p[n - 1] == '}')
		return FORM_WHOLE;
	return FORM_BAD;
}

/* The message names the document, so that a report can be traced. */
int sky__doc_corrupt(uint64_t docid, const char *why)
{
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, MDB_CORRUPTED,
			      "session data %016" PRIx64 ": corrupt: %s", docid,
			      why);
}

/*
 * Decode the member entry k -> v (a key longer than the header). Returns 0,
 * or -1 with the reason in *why when it breaks the layout.
 */
int sky__doc_parse_entry(const MDB_val *k, const MDB_val *v, sky_doc_entry *e,
			 const char **why)
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
	if (e->type != TYPE_OBJECT && e->type != TYPE_VALUE) {
		*why = "unknown member type";
		return -1;
	}
	return 0;
}
