/*
 * stale.h - the cache's record of sessions whose last read from the
 * server failed ("stale": the mirror may be behind the server for them),
 * and of the server answers and events the cache refused.
 *
 * The engine marks a session when a read of it fails or its answer or
 * event is refused, and clears the mark once a read of it is stored (or
 * the session left the mirror). Readers (`skysync get`, `check`, stats)
 * see the marks from any process.
 */
#ifndef SKY_STALE_H
#define SKY_STALE_H

#include <stdint.h>

#include "skysync.h"

/* Meta counter: server events and answers the cache refused (lifetime). */
#define SKY_META_SERVER_REFUSED "server_events_refused"

/* Mark app/sid stale with a one-line reason (kept, cut at 200 bytes). */
int sky__stale_mark(sky_cache *c, const char *app, const char *sid,
		    const char *reason);
/* Clear a mark (0 whether there was one or not). */
int sky__stale_clear(sky_cache *c, const char *app, const char *sid);
/* Add n to the refused counter. */
int sky__stale_count_refused(sky_cache *c, uint64_t n);
/* How many sessions are marked (0 on any failure). */
uint64_t sky__stale_count(sky_cache *c);

#endif
