/*
 * mirror.h - writing server state read over REST into the cache
 * (mirror.c): whole sessions with their data, one or a batch, in the
 * caller's transaction or in one of their own.
 */
#ifndef SKY_MIRROR_H
#define SKY_MIRROR_H

#include <jansson.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "skysync.h"

/*
 * sky_session_put_batch on parsed JSON (beside the single put):
 * `session` (validated here as a whole session) and `data` (an object,
 * or NULL to keep the data) are borrowed. An item whose
 * result is already negative is skipped. Each item gets result 0, or
 * SKY_EINVAL/SKY_ELIMIT with an error (free with free()); the valid ones
 * land in one transaction. Returns 0 or the storage failure.
 */
typedef struct {
	json_t *session;
	json_t *data;
	int64_t as_of_us;
	int result;
	char *error;
} sky__parsed_put;

int sky__session_put_parsed(sky_cache *c, sky__parsed_put *items, size_t count);

/* Store one server session (and data, or NULL) read at as_of_us in the
 * caller's write transaction, as sky_session_put does. */
int sky__mirror_session_write(MDB_txn *txn, sky_cache *c, json_t *session,
			      json_t *data, int64_t as_of_us);

#endif
