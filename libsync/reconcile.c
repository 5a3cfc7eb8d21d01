/*
 * reconcile.c - the sync engine's periodic reconcile. While following,
 * every reconcile_interval_s: list the applications and each one's open
 * sessions (the lists of a snapshot, without its data reads), and re-read
 * (fetch) each session whose listed state differs from the mirror's
 * (version, modifiedAt or any other field), each one the mirror holds
 * open that is not listed, and each stale one. This repairs what an event
 * the broker lost left behind (a QoS 1 message does not survive every
 * broker restart) long before the next full resync. A change in the set
 * of applications starts a resync instead. Events keep flowing meanwhile:
 * each fetch reconciles its read with them as always. The listing shows
 * session fields only: a lost data event is found once the session's
 * fields changed since, or by the next resync.
 *
 * Keeps true: the engine stays LIVE throughout (a reconcile never holds
 * events nor moves the state; a changed set of applications asks the
 * engine for a resync), one reconcile runs at a time, and a snapshot
 * cancels it (it reads everything a reconcile would) and re-arms it.
 */
#include "config.h"

#include "reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "api.h"
#include "cache_types.h"
#include "engine_core.h"
#include "engine_state.h"
#include "error.h"
#include "json.h"
#include "record.h"
#include "repair.h"
#include "stream.h"
#include "util.h"

typedef struct rjob {
	sky_engine *e;
	char *app;
	sky_engine_req *req;
	struct rjob *next;
} rjob;

void sky__reconcile_arm(sky_engine *e)
{
	if (!e->ev_reconcile ||
	    e->o.reconcile_interval_s == SKY_RECONCILE_NEVER)
		return;
	evtimer_del(e->ev_reconcile);
	sky__arm_ms(e->ev_reconcile, (long)e->o.reconcile_interval_s * 1000);
}

void sky__reconcile_cancel(sky_engine *e)
{
	sky__engine_request_cancel(e->rec_apps_req);
	e->rec_apps_req = NULL;
	while (e->rjobs) {
		rjob *j = e->rjobs;
		e->rjobs = j->next;
		sky__engine_request_cancel(j->req);
		free(j->app);
		free(j);
	}
	e->rec_running = 0;
	if (e->ev_reconcile)
		evtimer_del(e->ev_reconcile);
}

static void reconcile_end(sky_engine *e, const char *failed)
{
	e->rec_running = 0;
	if (failed) {
		sky__elog(e, SKY_LOG_WARN, "reconcile: %s; trying again later",
			  failed);
	} else {
		e->st.reconciles++;
		sky__elog(e, SKY_LOG_INFO,
			  "reconcile: %u session%s to read again",
			  e->rec_refetches, e->rec_refetches == 1 ? "" : "s");
	}
	sky__reconcile_arm(e);
}

static void rec_refetch(sky_engine *e, const char *app, const char *sid)
{
	e->rec_refetches++;
	sky__fetch_schedule(e, app, sid, 1);
}

typedef struct {
	sky_engine *e;
	const char *app;
	sky__keyset *listed;
} rec_mirror;

/* A session of the mirror: open there but not listed means a read. */
static int rec_mirror_one(const char *json, size_t len, void *payload)
{
	rec_mirror *m = payload;
	json_t *s = sky__json_loadb(json, len, 0, NULL);
	const char *sid = sky__json_str(s, "sessionId");
	const char *st = sky__json_str(s, "status");
	int64_t wm;
	unsigned flags = 0;
	if (sid && (!st || strcmp(st, "closed")) &&
	    !sky__keyset_has(m->listed, m->app, sid) &&
	    sky__repair_session_info(m->e->cache, m->app, sid, &wm, &flags) ==
		0 &&
	    !(flags & SKY_REC_PENDING))
		rec_refetch(m->e, m->app, sid);
	json_decref(s);
	return 0;
}

static void on_rec_sessions(const sky_http_response *res, void *ctx)
{
	rjob *j = ctx;
	sky_engine *e = j->e;
	j->req = NULL;
	json_t *list = NULL;
	sky__keyset listed = {0};
	const char *failed = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array();
	} else if (out != SKY_API_OK) {
		sky__api_error(SKY_API_SESSIONS, j->app, res);
		failed = sky_error_last()->message;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64}, "sessions",
					&list) < 0) {
		failed = sky_error_last()->message;
	}
	size_t i;
	json_t *session;
	json_array_foreach(list, i, session) {
		const char *app = sky__json_str(session, "applicationId");
		const char *sid = sky__json_str(session, "sessionId");
		if (!app || !sid || strcmp(app, j->app) ||
		    sky__keyset_add(&listed, app, sid) < 0)
			continue;
		/* Any difference, the version and modifiedAt included. */
		if (sky__repair_diff(e->cache, session, NULL))
			rec_refetch(e, app, sid);
	}
	if (!failed) {
		rec_mirror m = {e, j->app, &listed};
		if (sky_session_list(e->cache, j->app, rec_mirror_one, &m) < 0)
			failed = sky_error_last()->message;
	}
	char why[300] = "";
	if (failed)
		snprintf(why, sizeof(why), "sessions of %s: %s", j->app,
			 failed);
	json_decref(list);
	sky__keyset_free(&listed);
	for (rjob **pp = &e->rjobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			break;
		}
	free(j->app);
	free(j);
	if (!e->rjobs)
		reconcile_end(e, why[0] ? why : NULL);
	else if (why[0])
		sky__elog(e, SKY_LOG_WARN, "reconcile: %s", why);
}

static int rec_cached_app(const char *json, size_t len, void *payload)
{
	sky__keyset *apps = payload;
	json_t *a = sky__json_loadb(json, len, 0, NULL);
	const char *id = sky__json_str(a, "applicationId");
	int rc =
	    id && sky__keyset_add(apps, id, NULL) < 0 ? sky__error_nomem() : 0;
	json_decref(a);
	return rc;
}

static void on_rec_apps(const sky_http_response *res, void *ctx)
{
	sky_engine *e = ctx;
	e->rec_apps_req = NULL;
	json_t *list = NULL;
	sky__keyset cached = {0};
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array();
	} else if (out != SKY_API_OK) {
		sky__api_error(SKY_API_APPS, NULL, res);
		reconcile_end(e, sky_error_last()->message);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64},
					"applications", &list) < 0) {
		reconcile_end(e, sky_error_last()->message);
		return;
	}
	if (sky_app_list(e->cache, rec_cached_app, &cached) < 0) {
		json_decref(list);
		sky__keyset_free(&cached);
		reconcile_end(e, sky_error_last()->message);
		return;
	}
	/* The same applications, or a resync reads the new set. */
	int same = json_array_size(list) == cached.n;
	size_t i;
	json_t *app;
	json_array_foreach(list, i, app) {
		const char *id = sky__json_str(app, "applicationId");
		if (!id || !sky__keyset_has(&cached, id, NULL))
			same = 0;
	}
	sky__keyset_free(&cached);
	if (!same) {
		json_decref(list);
		e->rec_running = 0;
		sky__elog(e, SKY_LOG_INFO,
			  "reconcile: the applications changed: resync");
		e->full_why = SKY_SYNC_WHY_APPS_CHANGED;
		sky__engine_resync(e);
		return;
	}
	json_array_foreach(list, i, app) {
		const char *id = sky__json_str(app, "applicationId");
		rjob *j = calloc(1, sizeof(*j));
		if (!j || !(j->app = strdup(id))) {
			free(j);
			break;
		}
		j->e = e;
		j->next = e->rjobs;
		e->rjobs = j;
		if (sky__engine_request(e, SKY_API_SESSIONS, id, NULL, NULL, 0,
					SKY_ENGINE_REQ_RETRY, on_rec_sessions,
					j, &j->req) < 0) {
			e->rjobs = j->next;
			free(j->app);
			free(j);
			sky__elog(e, SKY_LOG_WARN, "reconcile: %s",
				  sky_error_last()->message);
		}
	}
	json_decref(list);
	if (!e->rjobs)
		reconcile_end(e, NULL);
}

void sky__reconcile_on_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->stopping || e->rec_running)
		return;
	if (e->state != SKY_ENGINE_LIVE || e->snap) {
		sky__reconcile_arm(e); /* a snapshot re-arms it too */
		return;
	}
	e->rec_running = 1;
	e->rec_refetches = 0;
	sky__elog(e, SKY_LOG_DEBUG, "reconcile: listing the realm");
	/* Stale sessions are read again whatever the lists say. */
	for (size_t i = 0; i < e->stale.cap; i++) {
		const char *k = e->stale.slot[i];
		if (k)
			rec_refetch(e, k, k + strlen(k) + 1);
	}
	if (sky__engine_request(e, SKY_API_APPS, NULL, NULL, NULL, 0,
				SKY_ENGINE_REQ_RETRY, on_rec_apps, e,
				&e->rec_apps_req) < 0)
		reconcile_end(e, sky_error_last()->message);
}
