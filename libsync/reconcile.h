/*
 * reconcile.h - the sync engine's periodic reconcile while LIVE
 * (reconcile.c): the lists of a snapshot, and a re-read of each session
 * that differs from the mirror.
 */
#ifndef SKY_RECONCILE_H
#define SKY_RECONCILE_H

#include <event2/util.h>

#include "skysync.h"

/* (Re)arm the timer for the next reconcile (none if configured never). */
void sky__reconcile_arm(sky_engine *e);
/* Stop a reconcile under way and its timer (a snapshot or a stop). */
void sky__reconcile_cancel(sky_engine *e);
/* Timer (ev_reconcile): list the realm and re-read what differs. */
void sky__reconcile_on_timer(evutil_socket_t fd, short what, void *arg);

#endif
