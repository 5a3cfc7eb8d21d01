/*
 * http.h - the HTTP side of skylight-emu: the listener, request plumbing
 * on libevent's evhttp, the HTTP faults, and what handlers hand back.
 */
#ifndef EMU_HTTP_H
#define EMU_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "realm.h"

struct emu;
struct emu_http;
struct evbuffer;

/* What a handler (api.c, admin.c) answers. */
typedef struct {
	emu_result r;	      /* status, body, events */
	const char *allow;    /* 405: the Allow header */
	int64_t retry_after;  /* > 0: a Retry-After header (seconds) */
	int bearer_challenge; /* 401: WWW-Authenticate: Bearer */
	int after_refuse_ms;  /* admin: stop listening after answering */
} emu_answer;

#define EMU_ANSWER_INIT                                                        \
	{                                                                      \
		EMU_RESULT_INIT, NULL, 0, 0, 0                                 \
	}

/* A decoded request as handlers see it. */
typedef struct {
	const char *method; /* "GET", "PATCH", ... */
	const char *path;   /* raw path, for messages */
	char **seg;	    /* percent-decoded path segments */
	size_t nseg;
	const char *body; /* NUL-terminated; NULL when empty */
	size_t body_len;
	const char *authorization; /* the Authorization header or NULL */
} emu_request;

/* Bind the listener (cfg.listen_host/port; port 0 picks one). */
int emu_http_start(struct emu_http **out, struct emu *emu, char *err,
		   size_t errlen);
/* The port actually bound. */
int emu_http_port(const struct emu_http *h);
/* Close the listening socket for ms, so connections are refused. */
void emu_http_refuse(struct emu_http *h, int64_t ms);
/* Requests held by delay faults or waiting for a reset. */
unsigned emu_http_pending(const struct emu_http *h);
/* Drop pending requests, close the listener and connections, free. */
void emu_http_free(struct emu_http *h);

/* Handlers. */
void emu_api_handle(struct emu *emu, const emu_request *rq, emu_answer *ans);
void emu_admin_handle(struct emu *emu, const emu_request *rq, emu_answer *ans);

#endif
