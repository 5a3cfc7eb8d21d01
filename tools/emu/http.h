/*
 * http.h - the HTTP side of skylight-emu: the listener, request plumbing
 * on libevent's evhttp, the HTTP faults. It calls the handlers through
 * the routes it is started with, so it depends on none of them.
 */
#ifndef EMU_HTTP_H
#define EMU_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "answer.h"

struct emu;
struct emu_http;

/*
 * Where a request goes: the first route whose prefix is the path or a
 * leading part of it ending at a '/' ("/" takes every path). A control
 * route (the /_admin/ endpoints) is answered at once, never faulted nor
 * refused, and counted apart from the API's requests.
 */
typedef struct {
	const char *prefix;
	emu_handler *handle;
	int control;
} emu_route;

/* Bind the listener (cfg.listen_host/port; port 0 picks one) and serve
 * the routes (nroutes of them, kept by reference: static storage). */
int emu_http_start(struct emu_http **out, struct emu *emu,
		   const emu_route *routes, size_t nroutes, char *err,
		   size_t errlen);
/* The port actually bound. */
int emu_http_port(const struct emu_http *h);
/* Close the listening socket for ms, so connections are refused. */
void emu_http_refuse(struct emu_http *h, int64_t ms);
/* Requests held by delay faults or waiting for a reset. */
unsigned emu_http_pending(const struct emu_http *h);
/* Drop pending requests, close the listener and connections, free. */
void emu_http_free(struct emu_http *h);

#endif
