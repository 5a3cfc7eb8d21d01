/*
 * resync.h - the sync engine's snapshot (resync.c): reading the whole
 * realm, or on the resumed path only what differs, and storing it under
 * the events received meanwhile.
 */
#ifndef SKY_RESYNC_H
#define SKY_RESYNC_H

#include <stdint.h>

#include <event2/util.h>

#include "skysync.h"

#define DRAIN_QUIET_MS 300   /* the backlog is in after this quiet */
#define DRAIN_MAX_US 5000000 /* ... or after this long */

struct snap;

/* Start a snapshot (resync: the realm was read before in this run): the
 * workers go offline, events are held, fetches give way. The engine is in
 * SNAPSHOT afterwards (or failing). */
void sky__snapshot_start(sky_engine *e, int resync);
/* Free a snapshot and cancel its requests (s may be NULL). */
void sky__snap_free(struct snap *s);

/* SUBSCRIBE got its SUBACK: drain a kept session's backlog first, else a
 * full snapshot. */
void sky__resync_begin(sky_engine *e);
/* Whether the cache was synced before this run. */
int sky__resync_synced_before(sky_engine *e);
/* The cache's last recorded snapshot time, read when a run starts. */
int64_t sky__resync_recorded_us(sky_engine *e);

/* Timers: ev_drain (the backlog is in), ev_flush (store a put batch),
 * ev_snap_go (the reads may start, a second after the SUBACK),
 * ev_snap_retry (BACKOFF is over), ev_resync (resync_interval_s). */
void sky__resync_on_drain(evutil_socket_t fd, short what, void *arg);
void sky__resync_on_flush(evutil_socket_t fd, short what, void *arg);
void sky__resync_on_go(evutil_socket_t fd, short what, void *arg);
void sky__resync_on_retry(evutil_socket_t fd, short what, void *arg);
void sky__resync_on_timer(evutil_socket_t fd, short what, void *arg);

#endif
