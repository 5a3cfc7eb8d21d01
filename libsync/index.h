/*
 * index.h - the query indexes, kept in the same write transaction as the
 * session record they describe (record.c calls these on every put and
 * delete), so an index can never disagree with its record.
 */
#ifndef SKY_INDEX_H
#define SKY_INDEX_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache.h"

/*
 * Replace the index entries of one session: remove those of `old` (NULL
 * when the session is new) and add those of `now` (NULL when it is being
 * deleted). Both are session objects with applicationId and sessionId.
 */
int sky__index_update(MDB_txn *txn, sky_cache *c, const json_t *old,
		      int64_t old_created_us, const json_t *now,
		      int64_t now_created_us);

/*
 * Verify the indexes against the records in both directions: every index
 * entry names a record that has that value, and every record has all its
 * entries. Appends one line per problem to `problems`; returns 0 when
 * clean, SKY_EINVAL when problems were found, another negative code when
 * the check could not run.
 */
int sky__index_check(MDB_txn *txn, sky_cache *c, sky_buf *problems);

#endif
