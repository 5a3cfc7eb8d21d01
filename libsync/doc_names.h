/*
 * doc_names.h - how the member names of session data documents go into
 * keys: the two parameters that the stored layout (doc_layout.h) and its
 * readers share, apart so that doc.h can offer them to tests without
 * showing the layout to the rest of the library.
 *
 * Changing either changes which key a stored name has: both are fixed for
 * stored data, and only tests may replace the hash.
 */
#ifndef SKY_DOC_NAMES_H
#define SKY_DOC_NAMES_H

#include <stddef.h>
#include <stdint.h>

/* Member names up to this many bytes are stored in the key itself. */
#define SKY__DOC_NAME_INLINE_MAX 400

/*
 * The hash of long member names (sky__hash64 by default; defined in
 * doc_layout.c). Tests replace it to force collisions; nothing else may,
 * since stored keys depend on it.
 */
extern uint64_t (*sky__doc_name_hash)(const void *name, size_t len);

#endif
