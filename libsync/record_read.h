/*
 * record_read.h - how a session is stored and read back (record_read.c):
 * a fixed binary header followed by the session's JSON text, under the
 * key  appId \0 sessionId  in `sessions`.
 *
 * Header (48 bytes, big-endian):
 *   u8 format (1) | u8 flags | u16 0 | u32 0
 *   u64 docid       the session data document (doc.h)
 *   i64 created_us  createdAt, for ordering and the indexes
 *   i64 wm_session  newest event time applied to the session's fields
 *   i64 wm_props    ... to its properties
 *   i64 wm_data     ... to its session data
 * then the compact JSON text of the session and a NUL, so readers can hand
 * out a borrowed C string without copying.
 *
 * Reading only: writes go through record.h, which keeps the query indexes
 * with them. The index (index.c) reads records back through this module,
 * so it sits below both.
 */
#ifndef SKY_RECORD_READ_H
#define SKY_RECORD_READ_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache_types.h"

#define SKY_RECORD_HEADER 48
#define SKY_RECORD_FORMAT 1

/* Record flags. */
#define SKY_REC_PENDING 0x01 /* local writes pending (outbox overlay) */

typedef struct {
	unsigned flags;
	uint64_t docid;
	int64_t created_us;
	int64_t wm_session;
	int64_t wm_props;
	int64_t wm_data;
	const char *json; /* borrowed from the transaction */
	size_t json_len;  /* without the NUL */
} sky_record;

/* Decode a stored value. Returns 0 or SKY_EINVAL (corrupt record). */
int sky__record_decode(const MDB_val *val, sky_record *out);

/* Write the 48-byte header of `hdr` at p (for copies kept elsewhere). */
void sky__record_encode_header(unsigned char *p, const sky_record *hdr);

/* Look a session up. Returns 0, SKY_ENOTFOUND, or an LMDB error. */
int sky__record_get(MDB_txn *txn, sky_cache *c, const char *app,
		    const char *sid, sky_record *out);

/* Parse the JSON of a decoded record (new reference) or NULL + error. */
json_t *sky__record_json(const sky_record *rec);

#endif
