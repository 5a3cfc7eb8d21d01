/*
 * changes.h - which sessions each committed write transaction touched,
 * and the listeners that hear of it after the commit (live queries, and
 * later the engine's change callbacks).
 *
 * Write paths call sky__changes_note() inside their transaction for every
 * session they put or delete (record.c does it for all session writes),
 * and with sid NULL when something application-wide that affects queries
 * changed (the roles, which decide visibility). The notes are taken under
 * LMDB's writer lock when the write function returns and handed to the
 * listeners only if the transaction commits: an aborted attempt, or one
 * rerun after the map grew, is never reported.
 */
#ifndef SKY_CHANGES_H
#define SKY_CHANGES_H

#include <stddef.h>

#include "cache_types.h"

typedef struct {
	const char *app; /* NULL: anything, in any application */
	const char *sid; /* NULL: anything in the application */
} sky_touch;

/*
 * A listener: called on the committing thread after the commit, outside
 * any transaction, with the distinct changes of one transaction sorted by
 * (app, sid) (NULLs first).
 */
typedef void (*sky_changes_fn)(sky_cache *c, const sky_touch *changes, size_t n,
			       void *arg);

/* Note a touched session (in the write transaction). Never fails: out of
 * memory turns the notes into "anything may have changed". */
void sky__changes_note(sky_cache *c, const char *app, const char *sid);

/*
 * The argument of fn's listener, registering fn with arg = create(c) the
 * first time (*created set then). Listeners stay until the cache closes,
 * when destroy(arg) runs. Returns NULL when out of memory.
 *
 * A transaction that was already running when the first listener was
 * registered may not have noted its changes: callers that need every
 * change from now on run an empty write transaction after registering
 * (sky__changes_barrier), which waits for it to end.
 */
void *sky__changes_listener(sky_cache *c, sky_changes_fn fn,
			    void *(*create)(sky_cache *c),
			    void (*destroy)(void *arg), int *created);

/* Wait until no write transaction that began before this call is open. */
int sky__changes_barrier(sky_cache *c);

#endif
