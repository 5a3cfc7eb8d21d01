/*
 * auth.c - the sync engine's REST requests and its authentication: every
 * request goes out with the current access token, transient failures are
 * retried with capped, jittered backoff (honouring Retry-After), and a 401
 * gets a new token and a resend; the login, the token refresh (at 80 % of
 * the access token's life) and the fall-back from a refused refresh to a
 * new login live here too.
 *
 * Keeps true: a request ends exactly once (its callback, or a cancel),
 * never inside the call that started it; a request that met a 401 waits
 * for the next token and is sent again, one 401 right after a refresh
 * drops the refresh token for a new login, and a third 401 ends the
 * request; a refused login fails the run (a wrong password stays wrong).
 * Secrets (password, tokens, login and refresh bodies) are wiped when
 * freed and never reach a log line or an error message.
 */
#include "config.h"

#include "auth.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "api.h"
#include "engine_core.h"
#include "engine_state.h"
#include "error.h"
#include "http.h"
#include "mqtt.h"
#include "util.h"

struct sky_engine_req {
	sky_engine *e;
	int fail_pending; /* end with a failure from the timer */
	char fail_why[160];
	sky_api_call call;
	char *app, *sid;
	char *body;
	size_t body_len;
	unsigned flags;
	unsigned attempts;     /* transient failures so far */
	unsigned auth_tries;   /* 401s so far */
	unsigned auth_gen;     /* token generation it was sent with */
	unsigned auth_resends; /* resent because a newer token had come */
	int waiting_auth;
	sky_http_req *http;
	struct event *timer;
	sky_engine_req_fn done;
	void *ctx;
	sky_engine_req *prev, *next;
};

static void req_send(sky_engine_req *r);

static void req_free(sky_engine_req *r)
{
	sky_engine *e = r->e;
	if (r->prev)
		r->prev->next = r->next;
	else
		e->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->timer)
		event_free(r->timer);
	free(r->app);
	free(r->sid);
	/* A login or refresh body holds a secret. */
	sky__wipe_free(r->body);
	free(r);
}

static void req_finish(sky_engine_req *r, const sky_http_response *res)
{
	sky_engine_req_fn done = r->done;
	void *ctx = r->ctx;
	req_free(r);
	done(res, ctx);
}

static void req_fail_now(sky_engine_req *r, const char *why)
{
	sky_http_response res;
	memset(&res, 0, sizeof(res));
	res.retry_after_s = -1;
	res.body = "";
	res.error = why;
	req_finish(r, &res);
}

static void req_on_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine_req *r = arg;
	(void)fd;
	(void)what;
	if (r->fail_pending)
		req_fail_now(r, r->fail_why);
	else
		req_send(r);
}

/* End a request with a failure, from the loop (never inside the call
 * that started it, so callers never see their callback run early). */
static void req_fail_later(sky_engine_req *r, const char *why)
{
	r->fail_pending = 1;
	snprintf(r->fail_why, sizeof(r->fail_why), "%s", why);
	if (!r->timer && !(r->timer = evtimer_new(r->e->base, req_on_timer, r)))
		return; /* out of memory: it ends when the engine stops */
	sky__arm_ms(r->timer, 0);
}

/* Try again later; `in_send` when called from inside req_send(). */
static void req_retry(sky_engine_req *r, const sky_http_response *res,
		      int in_send)
{
	sky_engine *e = r->e;
	unsigned limit = e->o.retry_limit;
	if (!e->follow_run && r->attempts + 1 >= limit) {
		if (in_send)
			req_fail_later(r, res->error);
		else
			req_finish(r, res);
		return;
	}
	long ms = sky__backoff_ms(r->attempts++, e->o.backoff_min_ms,
				  e->o.backoff_max_ms);
	if (res->retry_after_s >= 0 && res->retry_after_s * 1000 > ms)
		ms = res->retry_after_s * 1000 > 3600000
			 ? 3600000
			 : res->retry_after_s * 1000;
	sky__api_error(r->call, r->app, res);
	sky__warn_retry(e, sky_error_last()->message, ms);
	if (!r->timer && !(r->timer = evtimer_new(e->base, req_on_timer, r)))
		return; /* out of memory: it ends when the engine stops */
	sky__arm_ms(r->timer, ms);
}

static void req_http_done(const sky_http_response *res, void *arg)
{
	sky_engine_req *r = arg;
	sky_engine *e = r->e;
	r->http = NULL;
	e->st.rest_ok = res->transport_ok;
	if (e->snap)
		e->snap->progress.requests++;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_AUTH && sky__api_route(r->call)->needs_token &&
	    r->auth_gen != e->auth_gen && e->access && r->auth_resends < 8) {
		/* Sent with an older token: a newer one came meanwhile. */
		r->auth_resends++;
		req_send(r);
		return;
	}
	if (out == SKY_API_AUTH && sky__api_route(r->call)->needs_token &&
	    r->auth_tries < 2) {
		/*
		 * Our token is refused: drop it and get another -- a refresh
		 * first; a token refused right after a refresh means the
		 * refresh token is no better, so one new login with the
		 * stored credentials; a 401 after that ends the request.
		 */
		r->auth_tries++;
		if (r->auth_gen == e->auth_gen && e->access) {
			sky__wipe_free(e->access);
			e->access = NULL;
			if (e->token_from_refresh && e->refresh) {
				sky__elog(e, SKY_LOG_INFO,
					  "token refused after a refresh: "
					  "logging in again");
				sky__wipe_free(e->refresh);
				e->refresh = NULL;
			}
		}
		r->waiting_auth = 1;
		if (e->access)
			req_send(r); /* a newer token came meanwhile */
		else
			sky__auth_ensure(e);
		return;
	}
	if (out == SKY_API_RETRY && (r->flags & SKY_ENGINE_REQ_RETRY)) {
		req_retry(r, res, 0);
		return;
	}
	req_finish(r, res);
}

static void req_send(sky_engine_req *r)
{
	sky_engine *e = r->e;
	const sky_api_route *route_ = sky__api_route(r->call);
	if (route_->needs_token && !e->access) {
		r->waiting_auth = 1;
		sky__auth_ensure(e);
		return;
	}
	r->waiting_auth = 0;
	char *url = NULL;
	if (sky__api_url_p(e->proto, e->server, r->call, e->realm, r->app,
			   r->sid, &url) < 0) {
		req_fail_later(r, sky_error_last()->message);
		return;
	}
	sky_http_spec spec = {e->proto->method[r->call],
			      url,
			      route_->needs_token ? e->access : NULL,
			      r->body,
			      r->body_len,
			      0,
			      0};
	spec.not_idempotent =
	    r->call == SKY_API_SESSION_CREATE || r->call == SKY_API_EVENT_SEND;
	/* Lists may be long (100k sessions); single objects are bounded. */
	if (r->call == SKY_API_SESSIONS || r->call == SKY_API_APPS ||
	    r->call == SKY_API_ROLES)
		spec.max_answer = (size_t)1 << 30;
	r->auth_gen = e->auth_gen;
	int rc = sky__http_send(e->http, &spec, req_http_done, r, &r->http);
	free(url);
	if (rc < 0) {
		char why[256];
		snprintf(why, sizeof(why), "%s", sky_error_last()->message);
		sky_http_response res;
		memset(&res, 0, sizeof(res));
		res.retry_after_s = -1;
		res.body = "";
		res.error = why;
		if (r->flags & SKY_ENGINE_REQ_RETRY)
			req_retry(r, &res, 1);
		else
			req_fail_later(r, res.error);
	}
}

int sky__engine_request(sky_engine *e, sky_api_call call, const char *app,
			const char *sid, const char *body, size_t body_len,
			unsigned flags, sky_engine_req_fn done, void *ctx,
			sky_engine_req **out)
{
	assert(e && done);
	if (!e->running)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_NONE, 0,
				      "the sync engine is not running");
	char *url = NULL;
	if (sky__api_url_p(e->proto, e->server, call, e->realm, app, sid,
			   &url) < 0)
		return -1;
	free(url);
	sky_engine_req *r = calloc(1, sizeof(*r));
	if (!r)
		return sky__error_nomem();
	r->e = e;
	r->call = call;
	r->flags = flags;
	r->done = done;
	r->ctx = ctx;
	if ((app && !(r->app = strdup(app))) ||
	    (sid && !(r->sid = strdup(sid))) ||
	    (body && !(r->body = malloc(body_len + 1)))) {
		free(r->app);
		free(r->sid);
		free(r);
		return sky__error_nomem();
	}
	if (body) {
		memcpy(r->body, body, body_len);
		r->body[body_len] = '\0';
		r->body_len = body_len;
	}
	r->next = e->reqs;
	if (e->reqs)
		e->reqs->prev = r;
	e->reqs = r;
	if (out)
		*out = r;
	req_send(r);
	return 0;
}

void sky__engine_request_cancel(sky_engine_req *r)
{
	if (!r)
		return;
	if (r->http)
		sky__http_cancel(r->http);
	req_free(r);
}

void sky__engine_request_cancel_all(sky_engine *e)
{
	while (e->reqs)
		sky__engine_request_cancel(e->reqs);
}

/* ------------------------------------------------------------------ */
/* Authentication                                                      */
/* ------------------------------------------------------------------ */

static void auth_send_login(sky_engine *e);

static void auth_got_tokens(sky_engine *e, const sky_http_response *res)
{
	sky_api_tokens t;
	if (sky__api_parse_tokens(res->body, res->len, &t) < 0) {
		/* A server that answers 200 with nonsense: try again later. */
		sky__error_prefix("login answer");
		e->auth_busy = 0;
		sky__warn_retry(e, sky_error_last()->message,
				e->o.backoff_max_ms);
		sky__arm_ms(e->ev_refresh, e->o.backoff_max_ms);
		return;
	}
	sky__wipe_free(e->access);
	sky__wipe_free(e->refresh);
	e->access = t.access_token;
	e->refresh = t.refresh_token;
	int64_t now = sky__now_us();
	e->access_got_us = now;
	e->access_ttl_us = t.expires_in_s * 1000000;
	e->refresh_exp_us = t.refresh_expires_in_s > 0
				? now + t.refresh_expires_in_s * 1000000
				: 0;
	e->auth_gen++;
	e->auth_busy = 0;
	if (!e->sub) {
		e->sub = sky__api_jwt_sub(e->access);
		if (!e->sub) {
			/* No JWT sub: the user name is the next best id. */
			sky__elog(e, SKY_LOG_WARN,
				  "the access token has no readable "
				  "'sub' claim; using the user name "
				  "in the broker client id");
			e->sub = strdup(e->user);
		}
	}
	/* The groups come with every token (a refresh may change them);
	 * the next snapshot records them with the user (viewer.c). */
	json_decref(e->groups);
	e->groups = sky__api_jwt_groups(e->access);
	if (e->mqtt)
		sky__mqtt_set_password(e->mqtt, e->access);
	/* Refresh at 80 % of the token's life (at least 200 ms from now). */
	long ms = (long)(e->access_ttl_us / 1000 * 8 / 10);
	sky__arm_ms(e->ev_refresh, ms < 200 ? 200 : ms);
	/* Send what waited for a token. */
	for (sky_engine_req *r = e->reqs, *next; r; r = next) {
		next = r->next;
		if (r->waiting_auth)
			req_send(r);
	}
	if (e->state == SKY_ENGINE_LOGIN)
		sky__engine_after_login(e);
}

static void auth_login_done(const sky_http_response *res, void *arg)
{
	sky_engine *e = arg;
	switch (sky__api_classify(res)) {
	case SKY_API_OK:
		sky__elog(e, SKY_LOG_INFO, "logged in to realm %s as %s",
			  e->realm, e->user);
		e->token_from_refresh = 0;
		auth_got_tokens(e, res);
		break;
	case SKY_API_RETRY: /* retries spent (one-shot sync) */
		e->auth_busy = 0;
		sky__api_error(SKY_API_LOGIN, NULL, res);
		sky__engine_fail(e, SKY_ENETWORK, "%s",
				 sky_error_last()->message);
		break;
	default:
		e->auth_busy = 0;
		sky__api_error(SKY_API_LOGIN, NULL, res);
		sky__engine_fail(e, SKY_ENETWORK, "login refused: %s",
				 sky_error_last()->message);
		break;
	}
}

static void auth_refresh_done(const sky_http_response *res, void *arg)
{
	sky_engine *e = arg;
	switch (sky__api_classify(res)) {
	case SKY_API_OK:
		sky__elog(e, SKY_LOG_DEBUG, "access token refreshed");
		e->token_from_refresh = 1;
		auth_got_tokens(e, res);
		break;
	case SKY_API_RETRY:
		e->auth_busy = 0;
		sky__api_error(SKY_API_REFRESH, NULL, res);
		sky__engine_fail(e, SKY_ENETWORK, "%s",
				 sky_error_last()->message);
		break;
	default:
		/* The refresh token expired or is unknown: log in again. */
		sky__elog(e, SKY_LOG_INFO,
			  "token refresh refused (HTTP %ld): "
			  "logging in again",
			  res->status);
		sky__wipe_free(e->refresh);
		e->refresh = NULL;
		auth_send_login(e);
		break;
	}
}

static void auth_send_login(sky_engine *e)
{
	size_t len;
	char *body = sky__api_login_body(e->user, e->password, e->realm, &len);
	e->auth_busy = 1;
	if (!body || sky__engine_request(e, SKY_API_LOGIN, NULL, NULL, body,
					 len, SKY_ENGINE_REQ_RETRY,
					 auth_login_done, e, NULL) < 0) {
		e->auth_busy = 0;
		sky__engine_fail(e, SKY_ERROR, "cannot log in: %s",
				 sky_error_last()->message);
	}
	if (body)
		sky__wipe_free(body);
}

static void auth_send_refresh(sky_engine *e)
{
	size_t len;
	char *body = sky__api_refresh_body(e->refresh, &len);
	e->auth_busy = 1;
	if (!body || sky__engine_request(e, SKY_API_REFRESH, NULL, NULL, body,
					 len, SKY_ENGINE_REQ_RETRY,
					 auth_refresh_done, e, NULL) < 0) {
		e->auth_busy = 0;
		sky__engine_fail(e, SKY_ERROR, "cannot refresh the token: %s",
				 sky_error_last()->message);
	}
	if (body)
		sky__wipe_free(body);
}

/* Get a token if we have none and none is on its way. */
void sky__auth_ensure(sky_engine *e)
{
	if (e->auth_busy || e->stopping)
		return;
	int64_t now = sky__now_us();
	/* A refresh token about to expire would only earn a 401 first. */
	if (e->refresh &&
	    (!e->refresh_exp_us || now + 1000000 < e->refresh_exp_us))
		auth_send_refresh(e);
	else
		auth_send_login(e);
}

/* Timer: refresh before the access token expires. */
void sky__auth_on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (!e->auth_busy && !e->stopping)
		sky__auth_ensure(
		    e); /* keeps the current token until the new one */
}
