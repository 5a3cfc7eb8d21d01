/*
 * obcheck.h - checking the outbox against the sessions (for
 * sky_cache_check and `skysync check`). Read-only; built on queue.h and
 * view.h.
 */
#ifndef SKY_OBCHECK_H
#define SKY_OBCHECK_H

#include <lmdb.h>

#include "cache_types.h"

/*
 * Check the outbox against the sessions: entries and their per-session
 * queue agree, SKY_REC_PENDING is set exactly on sessions with queued
 * writes, and those keep a server copy. Appends one line per problem;
 * 0, SKY_EINVAL (problems found) or an error.
 */
int sky__outbox_check(MDB_txn *txn, sky_cache *c, sky_buf *problems);

#endif
