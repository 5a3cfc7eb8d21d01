/*
 * doc_check.h - the check of one stored session data document: what is
 * wrong with it, one line per finding, for repair and the cache's check
 * (doc.h includes this, so callers of the document API have it too).
 *
 * The check only reads, and it reads every entry of the document whatever
 * it finds, so one run reports every problem, not the first.
 */
#ifndef SKY_DOC_CHECK_H
#define SKY_DOC_CHECK_H

#include <stdint.h>

#include <lmdb.h>

#include "util.h"

/*
 * Verify the stored structure of the document: the header, every key and
 * value, that every object member points to a node the document may hold,
 * that no node is referenced twice or by nobody, and that every value is
 * valid JSON; of a whole document, that it is one JSON object nested no
 * deeper than SKY__DOC_WHOLE_DEPTH_MAX (doc_bounds.h). Appends one line
 * ("...\n") per problem to `problems`. Returns 0 when clean, SKY_EINVAL when
 * problems were found, or a negative code when the check could not run.
 */
int sky__doc_check(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
		   sky_buf *problems);

#endif
