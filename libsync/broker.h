/*
 * broker.h - the sync engine's broker connection (broker.c): the realm's
 * events over MQTT, and the broker session of the cache's identity.
 */
#ifndef SKY_BROKER_H
#define SKY_BROKER_H

#include <event2/util.h>

#include "skysync.h"

/* Connect to the broker with the cache's client id and subscribe to the
 * realm's events; ends the session of a previous identity. 0 or -1. */
int sky__broker_start(sky_engine *e);
/* Timer (ev_broker_wait): the broker is not up in time: read the realm
 * without it (a resync follows the SUBACK). */
void sky__broker_on_wait(evutil_socket_t fd, short what, void *arg);

#endif
