/*
 * server.h - the one way server state reaches a session (DESIGN.md §5):
 * events.c (events), mirror.c (sessions read over REST, and the session a
 * delivered create made) and the outbox (a write the server confirmed)
 * change the server's state of a session only through these calls, which
 * keep the local view (view.h) over it. Callers need not know how the
 * server copy is kept while writes are queued.
 *
 * Built on view.h and queue.h; nothing below includes this header.
 */
#ifndef SKY_SERVER_H
#define SKY_SERVER_H

#include <jansson.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

#include "cache_types.h"

/* A change of server state, run in the caller's write transaction. */
typedef int (*sky_server_change_fn)(MDB_txn *txn, void *arg);

/*
 * Run `change` on the server's state of session app/sid, in `txn`: with
 * writes queued for it, the server copy is put in place of the local
 * view first, and the view is laid over the changed state again after a
 * change that succeeded or was refused (SKY_EINVAL, SKY_ELIMIT: a caller
 * may commit a refusal, so the view must stand again). `incoming` (may
 * be NULL) is the server's session about to be stored: if it is one this
 * cache created offline (its clientRef names a local session) the local
 * session is adopted first -- its queued writes move to the server id and
 * the local id becomes an alias. Returns what `change` returned, or the
 * error of the outbox's part.
 */
int sky__server_write(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, const json_t *incoming,
		      sky_server_change_fn change, void *arg);

/*
 * Writes the server confirmed: remove the entries `ids` (delivered
 * together), apply their effect to the server copy and, when nothing else
 * is queued for the session, make the local view the server copy
 * (*drained is set to 1 then).
 */
int sky__server_delivered(MDB_txn *txn, sky_cache *c, const uint64_t *ids,
			  size_t n, int *drained);

#endif
