/*
 * auth.h - authenticated REST requests of the sync engine and the tokens
 * they carry (auth.c). sky__engine_request() itself is declared in
 * engine_core.h, for the modules that plug into the engine.
 */
#ifndef SKY_AUTH_H
#define SKY_AUTH_H

#include <event2/util.h>

#include "skysync.h"

/* Get a token if we have none and none is on its way (a refresh while
 * the refresh token is good, else a login). */
void sky__auth_ensure(sky_engine *e);
/* Timer (ev_refresh): refresh before the access token expires. */
void sky__auth_on_refresh_timer(evutil_socket_t fd, short what, void *arg);
/* Cancel every request of the engine (they end without a callback). */
void sky__engine_request_cancel_all(sky_engine *e);

#endif
