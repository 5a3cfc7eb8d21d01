/*
 * http.c - the HTTP server of skylight-emu on libevent's evhttp: the
 * loopback listener, each request's path decoding, the HTTP faults, the
 * answer, and the hand-over of a change's events to the publisher.
 *
 * A request goes through these steps:
 *
 *   control route (/_admin/...: admin.c) -> answered at once (never
 *                   faulted)
 *   refusing     -> reset (the listener is closed: requests on kept-alive
 *                   connections fail too, as if the server were down)
 *   fault drawn  -> refuse | reset | error | throttle  (not processed)
 *                   delay  (processed when the timer fires)
 *                   expire (the token expires, then processed: 401)
 *                   drop   (processed, the answer is cut and reset)
 *   processed    -> its route's handler (api.c); answer sent
 *                   (answer.c); then its events are published
 *
 * Invariants:
 * - Events are handed to the publisher only after the answer has been
 *   given to evhttp (or deliberately dropped), never before: a client
 *   that receives an event can read the change back.
 * - Ids are percent-decoded one path segment at a time after splitting on
 *   '/', so an encoded "/" ("a%2Fb") stays inside its id and "." or ".."
 *   are plain ids; decoding errors and NUL bytes are refused (400).
 * - A request held by a timer (delay, reset after a partial answer) is in
 *   the pending list until the timer fires or the server shuts down; the
 *   evhttp request is looked up again when the timer fires, because
 *   libevent detaches it if the client went away meanwhile.
 * - A reset closes the socket with SO_LINGER 0 so the peer gets a TCP RST,
 *   not an orderly FIN: the client cannot mistake it for a short answer.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "auth.h"
#include "emu.h"
#include "faults.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "publish.h"
#include "util.h"

#define MAX_SEGMENTS 16
#define MAX_BODY_BYTES (2u * 1024u * 1024u)
/* Time the peer gets to read a partial answer before the reset. */
#define PARTIAL_GRACE_MS 50

enum hold_kind { HOLD_DELAY, HOLD_RESET };

struct emu_req {
	struct emu_http *h;
	struct evhttp_request *req;
	int64_t t0;
	char method[8];
	char *path;
	const emu_route *route;
	/* The fault being applied, copied: it may be removed meanwhile. */
	int faulted;
	enum emu_fault_kind kind;
	int64_t bytes;
	enum hold_kind hold;
	struct event *timer;
	struct emu_req *prev, *next;
};

struct emu_http {
	struct emu *emu;
	const emu_route *routes;
	size_t nroutes;
	struct evhttp *evh;
	struct evhttp_bound_socket *bound; /* NULL while refusing */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	int port;
	int64_t refuse_until_us;
	struct event *ev_reopen;
	struct emu_req *pending;
	unsigned n_pending;
	int devnull;
};

/* ---- the listener ---- */

static int listen_now(struct emu_http *h, char *err, size_t errlen)
{
	int fd = socket(h->addr.ss_family,
			SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&h->addr, h->addrlen) < 0 ||
	    listen(fd, 128) < 0) {
		snprintf(err, errlen, "cannot listen on %s:%d: %s",
			 h->emu->cfg.listen_host, h->port, strerror(errno));
		close(fd);
		return -1;
	}
	struct sockaddr_storage got;
	socklen_t len = sizeof(got);
	getsockname(fd, (struct sockaddr *)&got, &len);
	int port = got.ss_family == AF_INET6
		       ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
		       : ntohs(((struct sockaddr_in *)&got)->sin_port);
	h->bound = evhttp_accept_socket_with_handle(h->evh, fd);
	if (!h->bound) {
		snprintf(err, errlen, "evhttp could not take the socket");
		close(fd);
		return -1;
	}
	/* Later binds (after a refuse window) reuse the same port. */
	h->port = port;
	if (h->addr.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&h->addr)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&h->addr)->sin_port = htons(port);
	return 0;
}

static void reopen(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct emu_http *h = arg;
	int64_t left = h->refuse_until_us - sky__now_us();
	char err[256];
	if (left > 0) {
		struct timeval tv = {(time_t)(left / 1000000),
				     (suseconds_t)(left % 1000000)};
		event_add(h->ev_reopen, &tv);
		return;
	}
	if (listen_now(h, err, sizeof(err)) < 0) {
		emu_warn("%s; retrying", err);
		struct timeval tv = {0, 100000};
		event_add(h->ev_reopen, &tv);
		return;
	}
	emu_log(h->emu, "listening again on %s:%d", h->emu->cfg.listen_host,
		h->port);
}

void emu_http_refuse(struct emu_http *h, int64_t ms)
{
	if (ms <= 0)
		return;
	int64_t until = sky__now_us() + ms * 1000;
	if (until > h->refuse_until_us)
		h->refuse_until_us = until;
	if (h->bound) {
		evhttp_del_accept_socket(h->evh, h->bound);
		h->bound = NULL;
		emu_log(h->emu, "refusing connections for %lld ms",
			(long long)ms);
	}
	struct timeval tv = {(time_t)(ms / 1000),
			     (suseconds_t)(ms % 1000) * 1000};
	event_add(h->ev_reopen, &tv);
}

int emu_http_port(const struct emu_http *h)
{
	return h->port;
}

unsigned emu_http_pending(const struct emu_http *h)
{
	return h->n_pending;
}

/* ---- request bookkeeping ---- */

static void req_free(struct emu_req *c)
{
	if (c->timer)
		event_free(c->timer);
	free(c->path);
	free(c);
}

static void pending_add(struct emu_req *c)
{
	struct emu_http *h = c->h;
	c->prev = NULL;
	c->next = h->pending;
	if (h->pending)
		h->pending->prev = c;
	h->pending = c;
	h->n_pending++;
}

static void pending_remove(struct emu_req *c)
{
	struct emu_http *h = c->h;
	if (c->prev)
		c->prev->next = c->next;
	else
		h->pending = c->next;
	if (c->next)
		c->next->prev = c->prev;
	h->n_pending--;
}

static void log_request(struct emu_req *c, int status, const char *note)
{
	struct emu *emu = c->h->emu;
	if (status >= 100 && status < 600)
		emu->stats.status[status / 100]++;
	if (!emu->cfg.verbose)
		return;
	double ms = (double)(sky__now_us() - c->t0) / 1000.0;
	if (status)
		emu_log(emu, "%s %s %d %.1fms%s%s", c->method, c->path, status,
			ms, note ? " " : "", note ? note : "");
	else
		emu_log(emu, "%s %s - %.1fms %s", c->method, c->path, ms,
			note ? note : "");
}

static void on_timer(evutil_socket_t fd, short what, void *arg);

static void hold(struct emu_req *c, enum hold_kind kind, int64_t ms)
{
	c->hold = kind;
	c->timer = evtimer_new(c->h->emu->base, on_timer, c);
	pending_add(c);
	struct timeval tv = {(time_t)(ms / 1000),
			     (suseconds_t)(ms % 1000) * 1000};
	evtimer_add(c->timer, &tv);
}

/* ---- resets ---- */

static void reset_now(struct emu_req *c)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
	if (!evcon) {
		/* The client left first; libevent handed the request to us. */
		evhttp_request_free(c->req);
		return;
	}
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	evutil_socket_t fd = bev ? bufferevent_getfd(bev) : -1;
	if (fd >= 0) {
		struct linger lg = {1, 0};
		setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		/*
		 * Replace the socket by /dev/null under the same number: the
		 * socket's last descriptor closes now, with linger 0, which
		 * sends the RST. evhttp's own shutdown(2) and close(2) below
		 * then act on the /dev/null copy, and so cannot send a FIN
		 * first.
		 */
		dup2(c->h->devnull, fd);
	}
	evhttp_connection_free(evcon);
}

/*
 * Write the first n bytes of `bytes` (a partial answer), then reset the
 * connection: at once, or after a short grace when something was written
 * so the client reads it before the RST. Consumes c.
 */
static void abort_conn(struct emu_req *c, const char *bytes, size_t n,
		       int status, const char *note)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
	if (evcon && n) {
		struct bufferevent *bev =
		    evhttp_connection_get_bufferevent(evcon);
		evutil_socket_t fd = bufferevent_getfd(bev);
		if (fd >= 0 &&
		    send(fd, bytes, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			n = 0;
	}
	log_request(c, status, note);
	hold(c, HOLD_RESET, n ? PARTIAL_GRACE_MS : 0);
}

/* ---- decoding ---- */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Percent-decode one segment; -1 on a bad escape or an encoded NUL. */
static int decode_segment(const char *s, size_t len, char **out)
{
	char *d = malloc(len + 1);
	size_t j = 0;
	if (!d)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			d[j++] = s[i];
			continue;
		}
		int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
		int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(d);
			return -1;
		}
		d[j++] = (char)(hi * 16 + lo);
		i += 2;
	}
	d[j] = '\0';
	*out = d;
	return 0;
}

static void free_segments(char **seg, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(seg[i]);
}

/*
 * Split "/a/b%2Fc" into {"a", "b/c"}. Returns 0, or -1 with a message
 * (bad escape, too many segments). An empty segment ("//", a trailing
 * "/") is kept as "" and matches no route.
 */
static int split_path(const char *path, char **seg, size_t *nseg,
		      const char **why)
{
	size_t n = 0;
	*nseg = 0;
	if (path[0] != '/') {
		*why = "path: must start with '/'";
		return -1;
	}
	const char *p = path + 1;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (n == MAX_SEGMENTS) {
			free_segments(seg, n);
			*why = "path: too many segments";
			return -1;
		}
		if (decode_segment(p, len, &seg[n]) < 0) {
			free_segments(seg, n);
			*why = "path: bad percent-encoding (or an encoded NUL)";
			return -1;
		}
		n++;
		if (!end)
			break;
		p = end + 1;
	}
	*nseg = n;
	return 0;
}

/* ---- answering ---- */

static void send_answer(struct emu_req *c, const emu_answer *ans,
			const char *note)
{
	log_request(c, emu_answer_send(c->req, ans), note);
}

static void publish_events(struct emu *emu, const json_t *events)
{
	size_t i;
	const json_t *ev;
	json_array_foreach(events, i, ev) {
		emu->stats.events_built++;
		if (emu->pub)
			emu_pub_event(emu->pub, ev);
	}
}

/* Process the request (handlers), answer it (or cut the answer short when
 * a drop fault fired), then publish. Consumes c unless it is held. */
static void process(struct emu_req *c)
{
	struct emu_http *h = c->h;
	struct emu *emu = h->emu;
	struct evhttp_request *req = c->req;
	emu_answer ans = EMU_ANSWER_INIT;
	char *seg[MAX_SEGMENTS];
	size_t nseg = 0;
	const char *why = NULL;
	char *body = NULL;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t blen = in ? evbuffer_get_length(in) : 0;

	if (blen) {
		body = malloc(blen + 1);
		if (body) {
			evbuffer_copyout(in, body, blen);
			body[blen] = '\0';
		}
	}
	if (split_path(c->path, seg, &nseg, &why) < 0) {
		emu_result_error(&ans.r, 400, "%s", why);
	} else if (blen && !body) {
		emu_result_error(&ans.r, 500, "out of memory");
	} else {
		emu_request rq = {
		    c->method,
		    c->path,
		    seg,
		    nseg,
		    body,
		    blen,
		    evhttp_find_header(evhttp_request_get_input_headers(req),
				       "Authorization")};
		if (c->route)
			c->route->handle(emu, &rq, &ans);
		else
			emu_result_error(&ans.r, 404, "no such path: %s",
					 c->path);
	}
	free_segments(seg, nseg);
	free(body);

	if (c->faulted && c->kind == EMU_F_DROP) {
		size_t len;
		char *raw = emu_answer_raw(&ans, &len);
		size_t n = (size_t)c->bytes < len ? (size_t)c->bytes : len;
		abort_conn(c, raw ? raw : "", raw ? n : 0, ans.r.status,
			   "[fault drop: processed, answer dropped]");
		free(raw);
	} else {
		const char *note = NULL;
		if (c->faulted && c->kind == EMU_F_DELAY)
			note = "[fault delay]";
		else if (c->faulted && c->kind == EMU_F_EXPIRE)
			note = "[fault expire]";
		send_answer(c, &ans, note);
		req_free(c);
	}
	publish_events(emu, ans.r.events);
	if (ans.after_refuse_ms > 0)
		emu_http_refuse(h, ans.after_refuse_ms);
	emu_result_clear(&ans.r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct emu_req *c = arg;
	pending_remove(c);
	event_free(c->timer);
	c->timer = NULL;
	if (c->hold == HOLD_RESET) {
		reset_now(c);
		req_free(c);
	} else {
		process(c);
	}
}

/* The bearer token of a request, copied into buf (or "" if none). */
static void bearer_of(struct evhttp_request *req, char *buf, size_t cap)
{
	const char *a = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");
	buf[0] = '\0';
	if (a && strncasecmp(a, "Bearer ", 7) == 0)
		snprintf(buf, cap, "%s", a + 7);
}

static const char *method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_PATCH: return "PATCH";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	default: return "OTHER";
	}
}

/* The first route whose prefix is path, or a leading part of it that ends
 * at a '/'; NULL when none. */
static const emu_route *route_of(const struct emu_http *h, const char *path)
{
	for (size_t i = 0; i < h->nroutes; i++) {
		const char *p = h->routes[i].prefix;
		size_t n = strlen(p);
		if (strncmp(path, p, n) == 0 &&
		    (path[n] == '\0' || path[n] == '/' ||
		     (n && p[n - 1] == '/')))
			return &h->routes[i];
	}
	return NULL;
}

static void on_request(struct evhttp_request *req, void *arg)
{
	struct emu_http *h = arg;
	struct emu *emu = h->emu;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	struct emu_req *c = calloc(1, sizeof(*c));
	if (!c || !(c->path = strdup(path && *path ? path : "/"))) {
		free(c);
		evhttp_send_error(req, 500, NULL);
		return;
	}
	c->h = h;
	c->req = req;
	c->t0 = sky__now_us();
	snprintf(c->method, sizeof(c->method), "%s",
		 method_name(evhttp_request_get_command(req)));
	emu->stats.requests++;

	c->route = route_of(h, c->path);
	if (c->route && c->route->control) {
		emu->stats.admin_requests++;
		process(c);
		return;
	}
	emu->stats.api_requests++;
	if (sky__now_us() < h->refuse_until_us) {
		emu->stats.refused_in_window++;
		abort_conn(c, NULL, 0, 0, "[refusing: reset]");
		return;
	}
	const struct emu_fault *f =
	    emu_faults_draw(emu->faults, EMU_SCOPE_HTTP, c->method, c->path);
	if (!f) {
		process(c);
		return;
	}
	c->faulted = 1;
	c->kind = f->kind;
	c->bytes = f->bytes;
	emu_answer ans = EMU_ANSWER_INIT;
	char token[4096];
	static const char canned[] =
	    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
	    "Content-Length: 4096\r\n\r\n{\"applicationId\":\"";
	switch (f->kind) {
	case EMU_F_REFUSE:
		abort_conn(c, NULL, 0, 0, "[fault refuse]");
		emu_http_refuse(h, f->ms);
		break;
	case EMU_F_RESET: {
		size_t n = (size_t)f->bytes < sizeof(canned) - 1
			       ? (size_t)f->bytes
			       : sizeof(canned) - 1;
		abort_conn(c, canned, n, 0, "[fault reset: not processed]");
		break;
	}
	case EMU_F_DROP: process(c); break;
	case EMU_F_DELAY: hold(c, HOLD_DELAY, f->ms); break;
	case EMU_F_ERROR:
		emu_result_error(&ans.r, f->code, "injected fault: %d",
				 f->code);
		ans.retry_after = f->retry_after;
		send_answer(c, &ans, "[fault error: not processed]");
		emu_result_clear(&ans.r);
		req_free(c);
		break;
	case EMU_F_THROTTLE:
		emu_result_error(&ans.r, 429,
				 "injected fault: too many "
				 "requests");
		ans.retry_after = f->retry_after;
		send_answer(c, &ans, "[fault throttle: not processed]");
		emu_result_clear(&ans.r);
		req_free(c);
		break;
	case EMU_F_EXPIRE:
		bearer_of(req, token, sizeof(token));
		if (token[0])
			emu_auth_expire(emu->auth, token);
		process(c);
		break;
	default: process(c); break;
	}
}

/* ---- start and stop ---- */

static int parse_listen(struct emu_http *h, char *err, size_t errlen)
{
	const struct emu_config *cfg = &h->emu->cfg;
	const char *host = cfg->listen_host;
	struct addrinfo hints = {0}, *ai = NULL;
	char port[16];
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (strcmp(host, "localhost") == 0)
		host = "127.0.0.1";
	else
		hints.ai_flags |= AI_NUMERICHOST;
	snprintf(port, sizeof(port), "%d", cfg->listen_port);
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0 || !ai) {
		snprintf(err, errlen, "--listen %s: %s", cfg->listen_host,
			 gai_strerror(rc));
		return -1;
	}
	memcpy(&h->addr, ai->ai_addr, ai->ai_addrlen);
	h->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	int loopback = 0;
	if (h->addr.ss_family == AF_INET) {
		uint32_t a =
		    ntohl(((struct sockaddr_in *)&h->addr)->sin_addr.s_addr);
		loopback = (a >> 24) == 127;
	} else if (h->addr.ss_family == AF_INET6) {
		loopback = IN6_IS_ADDR_LOOPBACK(
		    &((struct sockaddr_in6 *)&h->addr)->sin6_addr);
	}
	if (!loopback && !cfg->allow_remote) {
		snprintf(err, errlen,
			 "--listen %s: not a loopback address (the emulator "
			 "has no real security; add --allow-remote to insist)",
			 cfg->listen_host);
		return -1;
	}
	h->port = cfg->listen_port;
	return 0;
}

int emu_http_start(struct emu_http **out, struct emu *emu,
		   const emu_route *routes, size_t nroutes, char *err,
		   size_t errlen)
{
	struct emu_http *h = calloc(1, sizeof(*h));
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	h->emu = emu;
	h->routes = routes;
	h->nroutes = nroutes;
	h->devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	h->evh = evhttp_new(emu->base);
	h->ev_reopen = evtimer_new(emu->base, reopen, h);
	if (h->devnull < 0 || !h->evh || !h->ev_reopen) {
		snprintf(err, errlen, "cannot set up the HTTP server");
		goto fail;
	}
	evhttp_set_allowed_methods(
	    h->evh, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PATCH |
			EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_max_body_size(h->evh, MAX_BODY_BYTES);
	evhttp_set_gencb(h->evh, on_request, h);
	if (parse_listen(h, err, errlen) < 0 || listen_now(h, err, errlen) < 0)
		goto fail;
	*out = h;
	return 0;
fail:
	emu_http_free(h);
	return -1;
}

void emu_http_free(struct emu_http *h)
{
	if (!h)
		return;
	while (h->pending) {
		struct emu_req *c = h->pending;
		pending_remove(c);
		/* A request libevent detached (client gone) is ours to free;
		 * the others go with their connections in evhttp_free. */
		if (!evhttp_request_get_connection(c->req))
			evhttp_request_free(c->req);
		req_free(c);
	}
	if (h->ev_reopen)
		event_free(h->ev_reopen);
	if (h->evh)
		evhttp_free(h->evh);
	if (h->devnull >= 0)
		close(h->devnull);
	free(h);
}
