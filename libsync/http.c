/*
 * http.c - libcurl's multi interface on a libevent loop (see http.h).
 *
 * The glue is curl's "multi_socket" API: curl calls on_socket() to say
 * which events a socket needs (we keep one libevent event per socket,
 * attached to it with curl_multi_assign) and on_timer_change() to ask for
 * a timeout; libevent calls back on_socket_ready() / on_timeout(), which
 * hand control to curl_multi_socket_action() and then collect finished
 * transfers in collect_finished().
 *
 * Invariants:
 * - Done callbacks run only from collect_finished(), after curl returned,
 *   never inside a curl callback and never inside sky__http_send(): a
 *   callback may therefore start, cancel or finish other requests freely.
 * - Every request is on the `active` list from send until it is handed to
 *   collect_finished(); the list is what sky__http_free() cancels.
 * - A request that finished but whose callback has not run yet may still
 *   be cancelled (state FINISHED -> CANCELLED); collect_finished() frees it
 *   without calling back.
 * - The bearer token goes only into the Authorization header: it is never
 *   part of an error message or a log line.
 * - Finished easy handles are reset (curl_easy_reset forgets every option,
 *   the token header included) and kept for the next request, up to
 *   2 * max_connections: setting one up costs more than the request on a
 *   kept-alive loopback connection.
 */
#include "config.h"

#include <assert.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "error.h"
#include "http.h"
#include "util.h"

enum req_state { REQ_ACTIVE, REQ_FINISHED, REQ_CANCELLED };

struct sky_http_req {
	sky_http_client *h;
	CURL *easy;
	struct curl_slist *headers;
	char *req_body;
	sky_buf answer;
	size_t max_answer;
	int too_large;
	int64_t date_us;
	long retry_after_s;
	CURLcode result;
	enum req_state state;
	sky_http_done_fn done;
	void *ctx;
	char errbuf[CURL_ERROR_SIZE];
	sky_http_req *prev, *next; /* the active list, or the finished batch */
};

struct sky_http_client {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	sky_http_options opts;
	char *cafile;
	char *user_agent;
	sky_http_req *active;
	CURL **spare; /* reset easy handles, ready for reuse */
	unsigned nspare, spare_cap;
	uint64_t sent, sent_get; /* requests handed to curl, GETs of them */
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- the active list ---- */

static void list_add(sky_http_req **head, sky_http_req *r)
{
	r->prev = NULL;
	r->next = *head;
	if (*head)
		(*head)->prev = r;
	*head = r;
}

static void list_del(sky_http_req **head, sky_http_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		*head = r->next;
	if (r->next)
		r->next->prev = r->prev;
	r->prev = r->next = NULL;
}

static void req_free(sky_http_req *r)
{
	sky_http_client *h = r->h;
	if (r->easy && h && h->nspare < h->spare_cap) {
		curl_easy_reset(r->easy);
		h->spare[h->nspare++] = r->easy;
	} else if (r->easy) {
		curl_easy_cleanup(r->easy);
	}
	curl_slist_free_all(r->headers);
	free(r->req_body);
	sky__buf_free(&r->answer);
	free(r);
}

/* ---- finishing ---- */

/*
 * Take every finished transfer out of the multi handle first, then call
 * back: a callback that cancels a request of the same batch only marks it.
 */
static void collect_finished(sky_http_client *h)
{
	sky_http_req *batch = NULL, *tail = NULL;
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(h->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		sky_http_req *r = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
				  (char **)&r);
		CURLcode result = msg->data.result;
		curl_multi_remove_handle(h->multi, msg->easy_handle);
		if (!r)
			continue;
		r->result = result;
		list_del(&h->active, r);
		r->state = REQ_FINISHED;
		/* Keep completion order: append. */
		r->next = NULL;
		r->prev = tail;
		if (tail)
			tail->next = r;
		else
			batch = r;
		tail = r;
	}
	while (batch) {
		sky_http_req *r = batch;
		batch = r->next;
		if (r->state == REQ_FINISHED) {
			sky_http_response res;
			memset(&res, 0, sizeof(res));
			res.curl_code = (int)r->result;
			res.date_us = r->date_us;
			res.retry_after_s = r->retry_after_s;
			res.too_large = r->too_large;
			res.body = r->answer.data ? r->answer.data : "";
			res.len = r->answer.len;
			res.error = "";
			if (r->result == CURLE_OK) {
				res.transport_ok = 1;
				curl_easy_getinfo(r->easy,
						  CURLINFO_RESPONSE_CODE,
						  &res.status);
			} else if (r->too_large) {
				res.error = "answer over the size limit";
			} else {
				res.error = r->errbuf[0]
						? r->errbuf
						: curl_easy_strerror(r->result);
			}
			r->done(&res, r->ctx);
		}
		req_free(r);
	}
}

/* ---- libevent <-> curl ---- */

static void on_socket_ready(evutil_socket_t fd, short what, void *arg)
{
	sky_http_client *h = arg;
	int running = 0;
	int flags = (what & EV_READ ? CURL_CSELECT_IN : 0) |
		    (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	curl_multi_socket_action(h->multi, fd, flags, &running);
	collect_finished(h);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	sky_http_client *h = arg;
	int running = 0;
	(void)fd;
	(void)what;
	curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	collect_finished(h);
}

/* curl says what a socket needs; one libevent event per socket. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
		     void *socketp)
{
	sky_http_client *h = userp;
	struct event *ev = socketp;
	(void)easy;
	if (what == CURL_POLL_REMOVE) {
		if (ev) {
			event_free(ev);
			curl_multi_assign(h->multi, s, NULL);
		}
		return 0;
	}
	short kind = EV_PERSIST | (what & CURL_POLL_IN ? EV_READ : 0) |
		     (what & CURL_POLL_OUT ? EV_WRITE : 0);
	if (ev) {
		event_del(ev);
		event_assign(ev, h->base, s, kind, on_socket_ready, h);
	} else {
		ev = event_new(h->base, s, kind, on_socket_ready, h);
		if (!ev)
			return -1;
		curl_multi_assign(h->multi, s, ev);
	}
	return event_add(ev, NULL) == 0 ? 0 : -1;
}

/* curl asks to be called after timeout_ms (-1: never). */
static int on_timer_change(CURLM *multi, long timeout_ms, void *userp)
{
	sky_http_client *h = userp;
	(void)multi;
	if (timeout_ms < 0) {
		evtimer_del(h->timer);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	return evtimer_add(h->timer, &tv) == 0 ? 0 : -1;
}

/* ---- request plumbing ---- */

static size_t on_body(char *ptr, size_t size, size_t n, void *arg)
{
	sky_http_req *r = arg;
	size_t len = size * n;
	if (r->answer.len + len > r->max_answer) {
		r->too_large = 1;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	if (sky__buf_append(&r->answer, ptr, len) < 0)
		return 0;
	return len;
}

/* The value of header `name` in `line` (NUL-terminated copy) or 0. */
static int header_value(const char *line, size_t n, const char *name, char *out,
			size_t cap)
{
	size_t nl = strlen(name);
	if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return 0;
	const char *v = line + nl + 1;
	const char *end = line + n;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v &&
	       (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	size_t vl = (size_t)(end - v);
	if (vl >= cap)
		vl = cap - 1;
	memcpy(out, v, vl);
	out[vl] = '\0';
	return 1;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *arg)
{
	sky_http_req *r = arg;
	size_t len = size * n;
	char value[128];
	if (len >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		/* A new answer (after a 1xx): forget the previous headers. */
		r->date_us = 0;
		r->retry_after_s = -1;
	} else if (header_value(ptr, len, "Date", value, sizeof(value))) {
		time_t t = curl_getdate(value, NULL);
		if (t > 0)
			r->date_us = (int64_t)t * 1000000;
	} else if (header_value(ptr, len, "Retry-After", value,
				sizeof(value))) {
		char *end;
		long secs = strtol(value, &end, 10);
		if (end != value && *end == '\0' && secs >= 0) {
			r->retry_after_s = secs;
		} else {
			time_t t = curl_getdate(value, NULL);
			time_t now = time(NULL);
			if (t > 0)
				r->retry_after_s =
				    t > now ? (long)(t - now) : 0;
		}
	}
	return len;
}

static int add_header(sky_http_req *r, const char *text)
{
	struct curl_slist *l = curl_slist_append(r->headers, text);
	if (!l)
		return -1;
	r->headers = l;
	return 0;
}

int sky__http_send(sky_http_client *h, const sky_http_spec *spec,
		   sky_http_done_fn done, void *ctx, sky_http_req **out)
{
	assert(h && spec && spec->method && spec->url && done);
	sky_http_req *r = calloc(1, sizeof(*r));
	if (!r)
		return sky__error_nomem();
	r->h = h;
	r->done = done;
	r->ctx = ctx;
	r->retry_after_s = -1;
	h->sent++;
	if (!strcmp(spec->method, "GET"))
		h->sent_get++;
	r->max_answer =
	    spec->max_answer ? spec->max_answer : h->opts.max_answer;
	if (h->nspare)
		r->easy = h->spare[--h->nspare];
	else if (!(r->easy = curl_easy_init()))
		goto nomem;

	CURL *e = r->easy;
	int is_get = strcmp(spec->method, "GET") == 0;
	curl_easy_setopt(e, CURLOPT_URL, spec->url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent);
	/* Never follow redirects: the bearer token must not travel on. */
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			 h->opts.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, h->opts.stall_timeout_s);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, h->opts.insecure ? 0L : 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, h->opts.insecure ? 0L : 2L);
	if (h->cafile)
		curl_easy_setopt(e, CURLOPT_CAINFO, h->cafile);

	if (add_header(r, "Accept: application/json") < 0 ||
	    add_header(r, "Expect:") < 0)
		goto nomem;
	if (spec->bearer) {
		sky_buf auth = SKY_BUF_INIT;
		int rc = sky__buf_printf(&auth, "Authorization: Bearer %s",
					 spec->bearer);
		if (rc == 0)
			rc = add_header(r, auth.data);
		/* The token text is wiped from the heap copy we made. */
		if (auth.data)
			memset(auth.data, 0, auth.len);
		sky__buf_free(&auth);
		if (rc < 0)
			goto nomem;
	}
	if (!is_get) {
		if (add_header(r, "Content-Type: application/json") < 0)
			goto nomem;
		size_t blen = spec->body ? spec->body_len : 0;
		if (!(r->req_body = malloc(blen + 1)))
			goto nomem;
		if (blen)
			memcpy(r->req_body, spec->body, blen);
		r->req_body[blen] = '\0';
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)blen);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->req_body);
		if (strcmp(spec->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST,
					 spec->method);
	}
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
	/*
	 * libcurl sends a request again by itself when a reused connection
	 * dies before any answer -- which is also what a server that did the
	 * work and then lost the connection looks like. A request that must
	 * not run twice goes on a connection of its own, so it never does.
	 */
	if (spec->not_idempotent) {
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
	}

	CURLMcode mc = curl_multi_add_handle(h->multi, e);
	if (mc != CURLM_OK) {
		sky__error_set(SKY_ERROR, SKY_ERRSRC_NET, (int)mc,
			       "cannot start a request: %s",
			       curl_multi_strerror(mc));
		req_free(r);
		return -1;
	}
	r->state = REQ_ACTIVE;
	list_add(&h->active, r);
	if (out)
		*out = r;
	return 0;

nomem:
	req_free(r);
	return sky__error_nomem();
}

void sky__http_cancel(sky_http_req *r)
{
	if (!r)
		return;
	if (r->state == REQ_ACTIVE) {
		sky_http_client *h = r->h;
		curl_multi_remove_handle(h->multi, r->easy);
		list_del(&h->active, r);
		req_free(r);
	} else if (r->state == REQ_FINISHED) {
		r->state = REQ_CANCELLED; /* collect_finished() frees it */
	}
}

int sky__http_new(struct event_base *base, const sky_http_options *opts,
		  sky_http_client **out)
{
	assert(base && out);
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_NET,
				      (int)curl_init_rc, "curl_global_init: %s",
				      curl_easy_strerror(curl_init_rc));
	sky_http_client *h = calloc(1, sizeof(*h));
	if (!h)
		return sky__error_nomem();
	h->base = base;
	if (opts)
		h->opts = *opts;
	if (!h->opts.max_connections)
		h->opts.max_connections = 16;
	if (h->opts.connect_timeout_ms <= 0)
		h->opts.connect_timeout_ms = 10000;
	if (h->opts.stall_timeout_s <= 0)
		h->opts.stall_timeout_s = 60;
	if (!h->opts.max_answer)
		h->opts.max_answer = 16u * 1024 * 1024;
	h->opts.cafile = h->opts.user_agent = NULL; /* copies below */
	if (opts && opts->cafile && !(h->cafile = strdup(opts->cafile)))
		goto nomem;
	if (opts && opts->user_agent)
		h->user_agent = strdup(opts->user_agent);
	else if (asprintf(&h->user_agent, "skysync/%s", PACKAGE_VERSION) < 0)
		h->user_agent = NULL;
	if (!h->user_agent)
		goto nomem;
	if (!(h->timer = evtimer_new(base, on_timeout, h)))
		goto nomem;
	h->spare_cap = 2 * h->opts.max_connections;
	if (!(h->spare = calloc(h->spare_cap, sizeof(CURL *))))
		goto nomem;
	if (!(h->multi = curl_multi_init()))
		goto nomem;
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
	curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
			  (long)h->opts.max_connections);
	curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
			  (long)h->opts.max_connections);
	/* Keep every connection we may use in the cache, so they are reused. */
	curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS,
			  (long)h->opts.max_connections);
	*out = h;
	return 0;
nomem:
	sky__http_free(h);
	return sky__error_nomem();
}

void sky__http_free(sky_http_client *h)
{
	if (!h)
		return;
	while (h->active)
		sky__http_cancel(h->active);
	if (h->multi)
		curl_multi_cleanup(h->multi);
	for (unsigned i = 0; i < h->nspare; i++)
		curl_easy_cleanup(h->spare[i]);
	free(h->spare);
	if (h->timer)
		event_free(h->timer);
	free(h->cafile);
	free(h->user_agent);
	free(h);
}

void sky__http_counts(const sky_http_client *h, uint64_t *all, uint64_t *gets)
{
	*all = h ? h->sent : 0;
	*gets = h ? h->sent_get : 0;
}
