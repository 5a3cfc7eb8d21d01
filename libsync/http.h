/*
 * http.h - HTTP requests on libcurl's multi interface, driven by a libevent
 * loop: curl tells us which sockets to watch and when its timer should
 * fire (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION), libevent tells
 * curl when they are ready. Nothing here blocks: name resolution runs in
 * curl's resolver thread, connects and TLS handshakes are non-blocking.
 *
 * Connections are kept by the multi handle and reused by later requests
 * to the same host (keep-alive), up to `max_connections` at once.
 *
 * A request ends exactly once: its `done` callback runs from the loop
 * (never from inside sky__http_send), unless it was cancelled first.
 * Answers are held in memory up to a size limit; a larger answer fails the
 * request (too_large) instead of growing without bound.
 */
#ifndef SKY_HTTP_H
#define SKY_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct sky_http_client sky_http_client;
typedef struct sky_http_req sky_http_req;

typedef struct {
	const char *cafile;	  /* CA bundle (NULL: the system's) */
	int insecure;		  /* skip TLS peer and host verification */
	unsigned max_connections; /* per host and in total (0: 16) */
	long connect_timeout_ms;  /* 0: 10 s */
	long stall_timeout_s;	  /* abort under 1 byte/s this long (0: 60) */
	size_t max_answer;	  /* default answer limit (0: 16 MiB) */
	const char *user_agent;	  /* NULL: "skysync/VERSION" */
} sky_http_options;

typedef struct {
	const char *method; /* "GET", "POST", "PATCH" */
	const char *url;
	const char *bearer; /* access token for Authorization (NULL: none) */
	const char *body;   /* JSON request body (copied), or NULL */
	size_t body_len;
	size_t max_answer;  /* 0: the handle's default */
	int not_idempotent; /* must not be sent twice: a fresh connection,
			       never libcurl's silent resend */
} sky_http_spec;

typedef struct {
	int transport_ok; /* an HTTP answer arrived (status is valid) */
	int curl_code;	  /* CURLcode of the transfer */
	long status;	  /* HTTP status, 0 without an answer */
	const char *body; /* NUL-terminated, valid during the callback */
	size_t len;
	int64_t date_us;    /* the answer's Date header (µs), 0 when absent */
	long retry_after_s; /* Retry-After in seconds, -1 when absent */
	int too_large;	    /* the answer was over the limit */
	const char *error;  /* why the transfer failed ("" when it did not) */
} sky_http_response;

typedef void (*sky_http_done_fn)(const sky_http_response *res, void *ctx);

/* Create a client on `base`. Returns 0 or -1 (error recorded). */
int sky__http_new(struct event_base *base, const sky_http_options *opts,
		  sky_http_client **out);
/*
 * Cancel every request (no callbacks) and free the client. Must not be
 * called from inside a done callback of this client.
 */
void sky__http_free(sky_http_client *h);

/*
 * Start a request. `done(res, ctx)` runs once it ends, from the loop.
 * `*out` (may be NULL) is a handle for sky__http_cancel, valid until
 * done runs. Returns 0, or -1 when it could not even start (no callback).
 */
int sky__http_send(sky_http_client *h, const sky_http_spec *spec,
		   sky_http_done_fn done, void *ctx, sky_http_req **out);

/* Forget a request: its callback will not run. Safe from callbacks. */
void sky__http_cancel(sky_http_req *req);

/* Requests sent through this client so far (every attempt counts, retries
 * included), and the GETs among them. */
void sky__http_counts(const sky_http_client *h, uint64_t *all, uint64_t *gets);

#endif
