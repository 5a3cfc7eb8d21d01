/*
 * record.h - writing sessions (record.c): a record is put, has its header
 * rewritten or is deleted here; its layout and reading it back are in
 * record_read.h, which this header includes for its callers.
 *
 * Every write of a session goes through sky__record_put/delete, which keep
 * the query indexes in the same transaction (index.h): a record and its
 * index entries never disagree.
 */
#ifndef SKY_RECORD_H
#define SKY_RECORD_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache_types.h"
#include "record_read.h"

/*
 * Store `session` (validated, with applicationId and sessionId) under the
 * header fields of `hdr` (json fields ignored). `old` is the session being
 * replaced (NULL when new) so its index entries can be removed.
 */
int sky__record_put(MDB_txn *txn, sky_cache *c, const sky_record *hdr,
		    json_t *session, json_t *old, int64_t old_created_us);

/* Rewrite only the header of an existing record (watermarks, flags). */
int sky__record_put_header(MDB_txn *txn, sky_cache *c, const sky_record *hdr,
			   const char *app, const char *sid);

/* Remove a session, its data, its custom events and its index entries. */
int sky__record_delete(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid);

/* A fresh document id for a new session's data. */
int sky__record_new_docid(MDB_txn *txn, sky_cache *c, uint64_t *out);

#endif
