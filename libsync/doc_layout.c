/*
 * doc_layout.c - the parts of the stored layout of session data documents
 * (doc_layout.h) that are not inline there: telling the header forms
 * apart, recording stored data that breaks the layout, and the hash of
 * long member names. It only reads; nothing here writes or walks a
 * document.
 *
 * What it keeps true: every header value is given exactly one form, and
 * one that fits none is FORM_BAD, never a guess; a corrupt document is
 * reported as MDB_CORRUPTED with its docid, so a caller can tell damaged
 * data from a failed call.
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
 * object is never 3 or 4 bytes long ("{}" is 2, the next shortest 6) and
 * ends with '}' (then the NUL of schema 3, see put_whole() in doc.c, which
 * leaves it off a 12-byte text), where the member header of today is 13
 * bytes ending with a 0 byte.
 */
int sky__doc_header_form(MDB_val *v)
{
	const unsigned char *p = v->mv_data;
	size_t n = v->mv_size;
	if (n == 4)
		return sky__get_be32(p) == ROOT_NODE ? FORM_BAD
						     : FORM_MEMBERS_OLD;
	if (n == MEMBERS_HEADER_LEN && p[12] == 0)
		return sky__get_be32(p) == ROOT_NODE ? FORM_BAD : FORM_MEMBERS;
	/* The whole form's text, with its NUL (schema 3 on) or without. */
	if (n >= 3 && p[n - 1] == '\0')
		n--;
	if (n >= 2 && p[0] == '{' && p[n - 1] == '}') {
		v->mv_size = n;
		return FORM_WHOLE;
	}
	return FORM_BAD;
}

/* The message names the document, so that a report can be traced. */
int sky__doc_corrupt(uint64_t docid, const char *why)
{
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, MDB_CORRUPTED,
			      "session data %016" PRIx64 ": corrupt: %s", docid,
			      why);
}
