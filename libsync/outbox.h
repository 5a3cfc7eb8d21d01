/*
 * outbox.h - offline writes (DESIGN.md §5): what the rest of the library
 * calls of outbox.c (the write calls' internals and the results of
 * delivery), and, for the code that reads or writes queue entries
 * directly (deliver.c, salvage.c, cache.c), the queue (queue.h) and the
 * outbox's check (obcheck.h).
 *
 * The local view of a session with queued writes is its record in
 * `sessions` (flag SKY_REC_PENDING); the server's copy is kept aside in
 * `server` (view.h). Server state never lands on the local view
 * directly: whoever changes it goes through server.h.
 *
 * Arrows point one way: outbox.c -> server.h -> view.h -> queue.h;
 * nothing below includes this header.
 */
#ifndef SKY_OUTBOX_H
#define SKY_OUTBOX_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache_types.h"
#include "obcheck.h"
#include "queue.h"

/*
 * The server made the session that local id `local` stands for: record
 * the alias, move the queued writes of the local session to `server_sid`,
 * drop the local record and store `session` (the server's) as the server
 * copy at `as_of_us`, with the remaining writes over it. Idempotent.
 */
int sky__outbox_adopt(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *local, json_t *session, int64_t as_of_us);

/*
 * A delivered write: remove the entries `ids` (delivered together), apply
 * their effect to the server copy and, when nothing else is queued for the
 * session, make the local view the server copy. *drained is set to 1 then.
 */
int sky__outbox_delivered(MDB_txn *txn, sky_cache *c, const uint64_t *ids,
			  size_t n, int *drained);

/*
 * A permanent rejection: entry `id` becomes a dead letter with `status`
 * and `answer`; its effect is undone. A rejected create takes the writes
 * queued for its local session with it. The ids of every entry made a
 * dead letter are appended to `dead` (8 bytes big-endian each) when it
 * is not NULL, for the notifications.
 */
int sky__outbox_reject(MDB_txn *txn, sky_cache *c, uint64_t id, int status,
		       const char *answer, sky_buf *dead);

/* At open: replay the writes the journal kept past its checkpoint
 * (SKY_CACHE_JOURNAL after a crash), then fold them in. */
int sky__outbox_replay_journal(sky_cache *c);

#endif
