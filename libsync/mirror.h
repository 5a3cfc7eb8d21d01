/*
 * mirror.h - storing server state read over REST (mirror.c): the parsed
 * form of sky_mirror_session_put_batch for the sync engine's snapshot, and one
 * session written in the caller's transaction (for the session a
 * delivered create made). Both go through server.h for the session, so
 * local writes queued over it stay over it.
 */
#ifndef SKY_MIRROR_H
#define SKY_MIRROR_H

#include <jansson.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_types.h"

/*
 * sky_mirror_session_put_batch on parsed JSON: `session` (validated here as a
 * whole session) and `data` (an object, or NULL to keep the data) are
 * borrowed. An item whose
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
	/* Instead of `data`: the data as the whole form's text, already
	 * sorted and within both bounds (sky__json_sorted_text), borrowed. */
	const char *data_text;
	size_t data_text_len;
} sky__parsed_put;

int sky__session_put_parsed(sky_cache *c, sky__parsed_put *items, size_t count);

/* Store one server session (and data, or NULL) read at as_of_us in the
 * caller's write transaction, as sky_mirror_session_put does. */
int sky__mirror_session_write(MDB_txn *txn, sky_cache *c, json_t *session,
			      json_t *data, int64_t as_of_us);

#endif
