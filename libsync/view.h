/*
 * view.h - the local view of a session with queued writes (DESIGN.md §5):
 * the server's state with the writes still queued laid over it in queue
 * order. The view is the session's record in `sessions` (flag
 * SKY_REC_PENDING); the server's copy is kept aside in `server` with a
 * data document of its own, except for a session created offline, which
 * the server has not made yet and which has no server copy.
 *
 * Built on queue.h; server.h (the entry point for server-state writes)
 * and outbox.h (the write calls) are built on this. Every function runs
 * in the caller's write (or read) transaction.
 */
#ifndef SKY_VIEW_H
#define SKY_VIEW_H

#include <jansson.h>
#include <lmdb.h>

#include "cache_types.h"
#include "queue.h"
#include "record.h"

/* The data documents' database (session data, and the server copies'). */
static inline MDB_dbi sky__data_dbi(sky_cache *c)
{
	return SKY_DBI(c, SKY_DB_DATA);
}

/* The server copy of app/sid, if kept. 0, SKY_ENOTFOUND or an error. */
int sky__view_server_get(MDB_txn *txn, sky_cache *c, const char *app,
			 const char *sid, sky_record *out);
/* Remove the server copy's record (not its data document). */
int sky__view_server_del(MDB_txn *txn, sky_cache *c, const char *app,
			 const char *sid);

/*
 * Put the server copy of app/sid back as its record (or remove the record
 * of a session created offline, which has none). *had_server tells which.
 * Returns 1 when the record was a local view, 0 when it was not.
 */
int sky__view_restore(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, int *had_server);

/*
 * Lay the live entries of `l` over the record of app/sid (the server copy,
 * or nothing for a session created offline) and store the local view,
 * keeping the server copy aside. Nothing when `l` is empty.
 */
int sky__view_overlay(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, const sky_ob_list *l);

/*
 * Rebuild the local view of app/sid from its server copy (or nothing,
 * for a session created offline) and the writes queued for it that are
 * not dead letters: restore, then overlay.
 */
int sky__view_rebuild(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid);

/* The same, for a rebuild right after storing entry `e` whose body the
 * caller has parsed as `body` (used instead of parsing its text again;
 * not changed). */
int sky__view_rebuild_with(MDB_txn *txn, sky_cache *c, const char *app,
			   const char *sid, const sky_ob_entry *e,
			   json_t *body);

/* Apply the session-field part of a write (a patch or a participant) to
 * the session object `s`; other writes leave it as it is. */
int sky__view_apply(json_t *s, const sky_ob_entry *e, json_t *body);

/* Apply one write to the local view `rec` of a session with writes
 * queued already (the same result as a rebuild, at the cost of this
 * write alone). */
int sky__view_lay_on(MDB_txn *txn, sky_cache *c, sky_record *rec,
		     const sky_ob_entry *e, json_t *body);

#endif
