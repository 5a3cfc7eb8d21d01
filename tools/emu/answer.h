/*
 * answer.h - the request a handler is given and the answer it fills in
 * (answer.c writes the answer out). Handlers (api.c, admin.c) and the
 * server (http.c) both stand on this; it includes neither.
 */
#ifndef EMU_ANSWER_H
#define EMU_ANSWER_H

#include <stddef.h>
#include <stdint.h>

#include "realm.h"

struct emu;
struct evhttp_request;

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

/* A handler: decode rq, act on emu, fill ans (never left without a
 * status: an empty answer is sent as a 500). */
typedef void emu_handler(struct emu *emu, const emu_request *rq,
			 emu_answer *ans);

/* The reason phrase of an HTTP status ("Not Found"). */
const char *emu_answer_reason(int status);
/* The answer's body as JSON text (a new string, length in *len). */
char *emu_answer_text(const emu_answer *ans, size_t *len);
/* Send the answer as req's reply; returns the status sent. */
int emu_answer_send(struct evhttp_request *req, const emu_answer *ans);
/* The whole answer as raw HTTP bytes (a new string), for cutting it
 * short. */
char *emu_answer_raw(const emu_answer *ans, size_t *len);

#endif
