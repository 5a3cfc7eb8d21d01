/*
 * resync.c - the sync engine's snapshot: the list of applications, then
 * per application its roles and open sessions, then each session's data
 * (and each session the mirror holds open that the list no longer shows),
 * stored in batches, with prunes of what the lists no longer show
 * (applications, roles, sessions: they leave the mirror and are
 * remembered as gone) and the retention of closed sessions. A resync is a
 * snapshot while following; the resumed path ("Resuming", below) reads
 * the lists and only the sessions that differ from the mirror.
 *
 * Keeps true: every event received while a snapshot runs is held and
 * released over the stored reads, in server order, when it is done
 * (engine.c, "Events and REST reads"); a read is stored at an as_of no
 * later than the server's time of the read (engine.c, "Clocks"), and
 * reads wait a second after the SUBACK for it; one session's failed read
 * marks that session stale and the snapshot goes on, while a failed
 * application list fails the snapshot as a whole (BACKOFF while
 * following, the outbox delivered all the same in a one-shot sync).
 */
#include "config.h"

#include "resync.h"

#include <assert.h>
#include <inttypes.h>
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
#include "model.h"
#include "reconcile.h"
#include "mirror.h"
#include "repair.h"
#include "retain.h"
#include "store.h"
#include "stream.h"
#include "util.h"
#include "viewer.h"

#define PUT_BATCH 256		 /* sessions per write transaction */
#define FLUSH_DELAY_MS 20	 /* wait this long to fill a put batch */
#define AFTER_SUBACK_US 1100000	 /* snapshot reads wait this after SUBACK */
#define PROGRESS_EVERY_US 200000 /* progress reports, at most this often */

/* J_UNLISTED: one session the mirror holds open but the list did not
 * show (closed, or hidden from us since); its session is a stub. */
enum job_kind { J_ROLES, J_SESSIONS, J_DATA, J_UNLISTED };

typedef struct sjob {
	enum job_kind kind;
	struct snap *snap;
	char *app;
	json_t *session; /* J_DATA: the listed session */
	int64_t bound;	 /* J_DATA: read bound of the listed session */
	sky_engine_req *req;
	size_t index; /* its slot in snap->jobs */
} sjob;

/* ------------------------------------------------------------------ */
/* Snapshot                                                            */
/* ------------------------------------------------------------------ */

static void report_progress(sky_engine *e, int force)
{
	snap *s = e->snap;
	if (!s)
		return;
	e->st.progress = s->progress;
	int64_t now = sky__now_us();
	if (!force && now - s->last_report_us < PROGRESS_EVERY_US)
		return;
	s->last_report_us = now;
	if (e->o.on_progress)
		e->o.on_progress(&s->progress, e->o.payload);
}

static void snap_pump(sky_engine *e);
static void snap_check_done(sky_engine *e);
static void snap_flush(sky_engine *e);
static void once_deliver(sky_engine *e);

static void snap_job_free(sjob *j)
{
	if (!j)
		return;
	sky__engine_request_cancel(j->req);
	json_decref(j->session);
	free(j->app);
	free(j);
}

void sky__snap_free(snap *s)
{
	if (!s)
		return;
	sky__engine_request_cancel(s->apps_req);
	for (size_t i = 0; i < s->njobs; i++)
		snap_job_free(s->jobs[i]);
	free(s->jobs);
	for (size_t i = 0; i < s->nbatch; i++) {
		json_decref(s->batch[i].session);
		json_decref(s->batch[i].data);
	}
	free(s->batch);
	free(s->batch_what);
	sky__keyset_free(&s->visible);
	sky__keyset_free(&s->apps);
	free(s);
}

static int snap_add_job(snap *s, enum job_kind kind, const char *app,
			json_t *session, int64_t bound)
{
	if (s->njobs == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		sjob **v = realloc(s->jobs, cap * sizeof(*v));
		if (!v)
			return sky__error_nomem();
		s->jobs = v;
		s->cap = cap;
	}
	sjob *j = calloc(1, sizeof(*j));
	if (!j || !(j->app = strdup(app))) {
		free(j);
		return sky__error_nomem();
	}
	j->kind = kind;
	j->snap = s;
	j->session = json_incref(session);
	j->bound = bound;
	j->index = s->njobs;
	s->jobs[s->njobs++] = j;
	return 0;
}

/* The snapshot failed as a whole: back off and start again. */
static void snap_failed(sky_engine *e, const char *what)
{
	snap *s = e->snap;
	int resync = s ? s->resync : 0;
	e->snap = NULL;
	sky__snap_free(s);
	/* What it stored before it failed is in the mirror: say so. */
	sky__engine_snap_summary(e);
	evtimer_del(e->ev_flush);
	evtimer_del(e->ev_snap_go);
	sky__stream_read_failed(e, what);
	if (!e->follow_run) {
		/* Reads and writes fail separately: the outbox is delivered
		 * all the same, and the run's result names the failed read. */
		sky__elog(
		    e, SKY_LOG_WARN,
		    "cannot read the realm: %s; delivering the outbox anyway",
		    what);
		once_deliver(e);
		return;
	}
	long ms = sky__backoff_ms(e->snap_failures++, e->o.backoff_min_ms * 4,
				  e->o.backoff_max_ms);
	sky__warn_retry(e, what, ms);
	sky__engine_set_state(e, SKY_ENGINE_BACKOFF);
	/* The outbox goes on while the reads wait. */
	sky__workers_online(e);
	/* Events stay held: the next snapshot reads over them. */
	e->need_resync = resync;
	sky__arm_ms(e->ev_snap_retry, ms);
}

/* One-shot: the reads are over (done or not); the outbox goes now, and
 * the run ends when the workers are idle. */
static void once_deliver(sky_engine *e)
{
	sky__stream_apply_all(e);
	sky__engine_set_state(e, SKY_ENGINE_SNAPSHOT);
	e->once_waiting = 1;
	sky__workers_online(e);
	sky__engine_check_once_done(e);
}

void sky__resync_on_retry(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (!e->stopping && e->state == SKY_ENGINE_BACKOFF)
		sky__snapshot_start(e, e->first_done);
}

static void removed_cb(const char *app, const char *sid, void *ctx)
{
	sky_engine *e = ctx;
	sky__stream_note_gone(e, app, sid);
	sky__stream_stale_clear(e, app, sid);
	sky__engine_notify_snap(e, app, sid, SKY_CHANGE_REMOVED);
}

static int keep_listed_session(const char *app, const char *sid, void *ctx)
{
	sky_engine *e = ctx;
	return sky__keyset_has(&e->snap->visible, app, sid);
}

static int keep_listed_app(const char *app, const char *unused, void *ctx)
{
	sky_engine *e = ctx;
	(void)unused;
	return sky__keyset_has(&e->snap->apps, app, NULL);
}

static void on_apps(const sky_http_response *res, void *ctx)
{
	sky_engine *e = ctx;
	snap *s = e->snap;
	s->apps_req = NULL;
	json_t *list = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array(); /* no application visible to us */
	} else if (out != SKY_API_OK) {
		sky__api_error(SKY_API_APPS, NULL, res);
		snap_failed(e, sky_error_last()->message);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64},
					"applications", &list) < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	size_t i;
	json_t *app;
	json_array_foreach(list, i, app) {
		const char *id = sky__json_str(app, "applicationId");
		char *text = sky__json_dump(app, NULL);
		int rc = text ? sky_mirror_app_put(e->cache, text, strlen(text))
			      : -1;
		free(text);
		if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
			sky__elog(e, SKY_LOG_WARN,
				  "skipping an application the server "
				  "listed: %s",
				  sky_error_last()->message);
			continue;
		}
		if (rc < 0 || sky__keyset_add(&s->apps, id, NULL) < 0 ||
		    snap_add_job(s, J_ROLES, id, NULL, 0) < 0 ||
		    snap_add_job(s, J_SESSIONS, id, NULL, 0) < 0) {
			json_decref(list);
			snap_failed(e, sky_error_last()->message);
			return;
		}
		s->progress.applications++;
	}
	json_decref(list);
	/* Applications no longer listed leave, with their sessions. */
	long dropped =
	    sky__repair_prune_apps(e->cache, keep_listed_app, e, removed_cb);
	if (dropped < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	report_progress(e, 0);
	snap_pump(e);
	snap_check_done(e);
}

static int keep_listed_role(const char *app, const char *name, void *ctx)
{
	(void)app;
	return sky__keyset_has(ctx, name, NULL);
}

static void on_roles(sky_engine *e, sjob *j, const sky_http_response *res)
{
	json_t *list = NULL;
	sky__keyset names = {0};
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array();
	} else if (out != SKY_API_OK) {
		/* The roles stay as they were; the sessions go on. */
		sky__api_error(SKY_API_ROLES, j->app, res);
		char msg[300];
		snprintf(msg, sizeof(msg), "roles of %s: %s", j->app,
			 sky_error_last()->message);
		sky__elog(e, SKY_LOG_WARN, "cannot read the %s", msg);
		sky__stream_read_failed(e, msg);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64}, "roles",
					&list) < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	size_t i;
	json_t *role;
	int failed = 0;
	json_array_foreach(list, i, role) {
		char *text = sky__json_dump(role, NULL);
		int rc = text ? sky_mirror_role_put(e->cache, j->app, text,
						    strlen(text))
			      : -1;
		free(text);
		if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
			sky__elog(e, SKY_LOG_WARN, "skipping a role of %s: %s",
				  j->app, sky_error_last()->message);
			continue;
		}
		if (rc < 0 ||
		    sky__keyset_add(&names, sky__json_str(role, "name"), NULL) <
			0) {
			failed = 1;
			break;
		}
	}
	if (!failed && sky__repair_prune_roles(e->cache, j->app,
					       keep_listed_role, &names) < 0)
		failed = 1;
	json_decref(list);
	sky__keyset_free(&names);
	if (failed)
		snap_failed(e, sky_error_last()->message);
}

static int add_unlisted_job(const char *app, const char *sid, void *ctx)
{
	sky_engine *e = ctx;
	json_t *stub = json_pack("{s:s}", "sessionId", sid);
	int rc = stub ? snap_add_job(e->snap, J_UNLISTED, app, stub, 0)
		      : sky__error_nomem();
	json_decref(stub);
	return rc;
}

/*
 * The answer to the read of an unlisted session: 403 or 404, it is not
 * visible to us any more and leaves the mirror; else it is stored as the
 * server shows it (closed, usually) through the data read of a J_DATA
 * job, like a listed one.
 */
static void on_unlisted(sky_engine *e, sjob *j, const sky_http_response *res)
{
	snap *s = e->snap;
	const char *sid = sky__json_str(j->session, "sessionId");
	json_t *session = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		if (sky__repair_remove_session(e->cache, j->app, sid) > 0)
			sky__engine_notify_snap(e, j->app, sid,
						SKY_CHANGE_REMOVED);
		sky__repair_purge_pending(e->cache, j->app, sid);
		sky__stream_note_gone(e, j->app, sid);
		return;
	}
	if (out != SKY_API_OK) {
		sky__api_error(SKY_API_SESSION, j->app, res);
		if (out == SKY_API_REJECTED) {
			sky__elog(e, SKY_LOG_WARN, "session %s/%s: %s", j->app,
				  sid, sky_error_last()->message);
			return;
		}
		snap_failed(e, sky_error_last()->message);
		return;
	}
	if (sky__api_parse_object(res->body, res->len, &e->cache->event_limits,
				  "session", &session) < 0 ||
	    sky__validate_session(session, "session", 1) < 0 ||
	    strcmp(sky__json_str(session, "applicationId"), j->app) ||
	    strcmp(sky__json_str(session, "sessionId"), sid)) {
		sky__elog(e, SKY_LOG_WARN, "session %s/%s: bad answer: %s",
			  j->app, sid, sky_error_last()->message);
		json_decref(session);
		return;
	}
	if (sky__keyset_add(&s->visible, j->app, sid) < 0 ||
	    snap_add_job(s, J_DATA, j->app, session,
			 sky__engine_read_bound(res)) < 0)
		snap_failed(e, "out of memory reading an unlisted session");
	else
		s->progress.sessions_total++;
	json_decref(session);
}

/* A resumed snapshot reads a listed session only when its listed state
 * differs from the mirror (any field, version and modifiedAt included),
 * it is stale, or the backlog named it. */
static int resume_reads(sky_engine *e, const json_t *session, const char *app,
			const char *sid)
{
	return sky__repair_diff(e->cache, session, NULL) != 0 ||
	       sky__keyset_has(&e->stale, app, sid) ||
	       sky__keyset_has(&e->named, app, sid);
}

static void on_sessions(sky_engine *e, sjob *j, const sky_http_response *res)
{
	snap *s = e->snap;
	json_t *list = NULL;
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		list = json_array(); /* none visible */
	} else if (out != SKY_API_OK) {
		/* This application's sessions stay as they were, stale; the
		 * other applications go on. */
		sky__api_error(SKY_API_SESSIONS, j->app, res);
		char msg[300];
		snprintf(msg, sizeof(msg), "sessions of %s: %s", j->app,
			 sky_error_last()->message);
		sky__elog(e, SKY_LOG_WARN, "cannot list the %s", msg);
		sky__stream_read_failed(e, msg);
		sky__stream_stale_app(e, j->app, msg);
		return;
	} else if (sky__api_parse_array(res->body, res->len,
					&(sky_json_limits){0, 64}, "sessions",
					&list) < 0) {
		snap_failed(e, sky_error_last()->message);
		return;
	}
	int64_t bound = sky__engine_read_bound(res);
	size_t i;
	json_t *session;
	json_array_foreach(list, i, session) {
		const char *app = sky__json_str(session, "applicationId");
		const char *sid = sky__json_str(session, "sessionId");
		if (sky__validate_session(session, "session", 1) < 0 ||
		    strcmp(app, j->app) != 0) {
			char why[300];
			snprintf(why, sizeof(why), "listed in %s: %s", j->app,
				 app && strcmp(app, j->app)
				     ? "it belongs to another application"
				     : sky_error_last()->message);
			sky__stream_count_refused(e, "a listed session", app,
						  sid, why);
			/* Kept out of the prune: its copy stays, stale. */
			if (app && sid && !strcmp(app, j->app)) {
				if (sky__keyset_add(&s->visible, app, sid) <
				    0) {
					json_decref(list);
					snap_failed(e, "out of memory listing "
						       "sessions");
					return;
				}
				sky__stream_session_failed(e, app, sid, why);
			}
			continue;
		}
		if (s->resume && sky__keyset_add(&s->visible, app, sid) == 0 &&
		    !resume_reads(e, session, app, sid))
			continue;
		if (sky__keyset_add(&s->visible, app, sid) < 0 ||
		    snap_add_job(s, J_DATA, app, session, bound) < 0) {
			json_decref(list);
			snap_failed(e, "out of memory listing sessions");
			return;
		}
		s->progress.sessions_total++;
	}
	json_decref(list);
	/* Sessions of this application no longer listed: closed ones stay
	 * (retain.c decides how long); open ones may have closed or been
	 * hidden from us, which only a read of each can tell. */
	if (sky__repair_unlisted_open(e->cache, j->app, keep_listed_session, e,
				      add_unlisted_job) < 0)
		snap_failed(e, sky_error_last()->message);
}

static void on_data(sky_engine *e, sjob *j, const sky_http_response *res)
{
	snap *s = e->snap;
	const char *sid = sky__json_str(j->session, "sessionId");
	sky_api_outcome out = sky__api_classify(res);
	if (out == SKY_API_GONE) {
		/* Gone between the list and now: not visible any more. */
		if (sky__repair_remove_session(e->cache, j->app, sid) > 0)
			sky__engine_notify_snap(e, j->app, sid,
						SKY_CHANGE_REMOVED);
		sky__stream_note_gone(e, j->app, sid);
		s->progress.sessions_done++;
		return;
	}
	if (out != SKY_API_OK) {
		/* This session only, stale until read: the others go on. */
		sky__api_error(SKY_API_DATA, j->app, res);
		char why[300];
		snprintf(why, sizeof(why), "reading it: %s",
			 sky_error_last()->message);
		sky__stream_session_failed(e, j->app, sid, why);
		s->progress.sessions_done++;
		return;
	}
	if (s->nbatch % PUT_BATCH == 0) {
		size_t cap = s->nbatch + PUT_BATCH;
		sky__parsed_put *b = realloc(s->batch, cap * sizeof(*b));
		if (b)
			s->batch = b;
		unsigned *w = realloc(s->batch_what, cap * sizeof(*w));
		if (w)
			s->batch_what = w;
		if (!b || !w) {
			snap_failed(e, "out of memory");
			return;
		}
	}
	json_t *data = NULL;
	if (sky__stream_parse_data(e, res->body, res->len, &data) < 0) {
		/* This session only: the others go on. */
		char why[300];
		snprintf(why, sizeof(why), "the server's data was refused: %s",
			 sky_error_last()->message);
		sky__stream_count_refused(e, "the server's data", j->app, sid,
					  sky_error_last()->message);
		sky__stream_session_failed(e, j->app, sid, why);
		s->progress.sessions_done++;
		return;
	}
	unsigned what =
	    e->o.on_change ? sky__repair_diff(e->cache, j->session, data) : 0;
	int known;
	int64_t data_date = sky__engine_read_bound(res);
	int64_t as_of =
	    sky__read_as_of(e, j->session, j->bound, data_date, &known);
	sky__keyset_del(&e->gone, j->app, sid);
	/* For the release of the held events (snap_finish()). */
	sky__keyset_set(&s->visible, j->app, sid, as_of,
			sky__read_upper(j->bound, data_date));
	sky__parsed_put *it = &s->batch[s->nbatch];
	memset(it, 0, sizeof(*it));
	it->session = json_incref(j->session);
	it->data = data;
	it->as_of_us = as_of;
	s->batch_what[s->nbatch++] = what;
	if (s->nbatch >= PUT_BATCH)
		snap_flush(e);
	else if (!evtimer_pending(e->ev_flush, NULL))
		sky__arm_ms(e->ev_flush, FLUSH_DELAY_MS);
}

static void snap_flush(sky_engine *e)
{
	snap *s = e->snap;
	if (!s || !s->nbatch)
		return;
	evtimer_del(e->ev_flush);
	size_t n = s->nbatch;
	int rc = sky__session_put_parsed(e->cache, s->batch, n);
	for (size_t i = 0; i < n; i++) {
		sky__parsed_put *it = &s->batch[i];
		const char *app = sky__json_str(it->session, "applicationId");
		const char *sid = sky__json_str(it->session, "sessionId");
		if (rc == 0 && it->result) {
			char why[300];
			snprintf(why, sizeof(why),
				 "the server's answer was refused: %s",
				 it->error ? it->error : "not valid");
			sky__stream_count_refused(e, "the server's answer", app,
						  sid, it->error);
			sky__stream_session_failed(e, app, sid, why);
		} else if (rc == 0) {
			sky__stream_stale_clear(e, app, sid);
			if (s->batch_what[i])
				sky__engine_notify_snap(e, app, sid,
							s->batch_what[i]);
		}
		free(it->error);
		json_decref(it->session);
		json_decref(it->data);
	}
	s->nbatch = 0;
	s->progress.sessions_done += n;
	if (rc < 0) {
		char msg[300];
		snprintf(msg, sizeof(msg), "storing sessions: %s",
			 sky_error_last()->message);
		snap_failed(e, msg);
		return;
	}
	report_progress(e, 0);
}

void sky__resync_on_flush(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	snap_flush(e);
	snap_check_done(e);
}

/* ---- the end of a snapshot ---- */

/* Closed sessions past the cache's retention leave (retain.c). */
static void apply_retention(sky_engine *e)
{
	long n = sky__retain_closed(e->cache, removed_cb, e);
	if (n < 0)
		sky__elog(e, SKY_LOG_WARN,
			  "cannot apply the closed sessions' "
			  "retention: %s",
			  sky_error_last()->message);
	else if (n > 0)
		sky__elog(e, SKY_LOG_INFO,
			  "%ld closed sessions past their retention removed",
			  n);
}

/* How this sync read the realm and what it cost, for sky_engine_status
 * and, through the cache's meta, `skysync stats`. */
static void record_path(sky_engine *e, const snap *s)
{
	uint64_t all, gets;
	sky__http_counts(e->http, &all, &gets);
	e->st.last_sync_path =
	    s->resume ? SKY_SYNC_PATH_RESUMED : SKY_SYNC_PATH_FULL;
	e->st.last_sync_why = s->resume	    ? SKY_SYNC_WHY_NONE
			      : e->full_why ? e->full_why
			      : s->resync   ? SKY_SYNC_WHY_RESYNC
					    : SKY_SYNC_WHY_NEVER_SYNCED;
	e->st.last_sync_requests = all - e->req_base;
	e->full_why = 0;
	e->resume_next = 0;
	sky__keyset_free(&e->named);
	sky__elog(e, SKY_LOG_INFO, "sync path %s (%s): %" PRIu64 " requests",
		  s->resume ? "resumed" : "full",
		  sky_sync_why_name(e->st.last_sync_why),
		  e->st.last_sync_requests);
	/* Who the cache is synced as, for sky_query_set_viewer_self. */
	if (e->sub &&
	    sky__viewer_store(e->cache, e->realm, e->sub, e->groups) < 0)
		sky__elog(e, SKY_LOG_WARN, "cannot record the sync user: %s",
			  sky_error_last()->message);
	if (sky__repair_put_sync_path(e->cache, (uint64_t)e->st.last_sync_path,
				      (uint64_t)e->st.last_sync_why,
				      e->st.last_sync_requests) < 0)
		sky__elog(e, SKY_LOG_WARN, "cannot record the sync path: %s",
			  sky_error_last()->message);
}

static void snap_finish(sky_engine *e)
{
	snap *s = e->snap;
	int again = s->again;
	s->progress.done = 1;
	report_progress(e, 1);
	e->st.snapshots++;
	e->st.last_sync_us = sky__now_us();
	e->snap_failures = 0;
	e->first_done = 1;
	record_path(e, s);
	sky__elog(e, SKY_LOG_INFO,
		  "%s done: %" PRIu64 " sessions in %" PRIu64
		  " applications (%.1f s)",
		  s->resync ? "resync" : "snapshot", s->progress.sessions_done,
		  s->progress.applications,
		  (sky__now_us() - s->progress.started_us) / 1e6);
	/*
	 * A held event for a session that the lists did not show and that
	 * the mirror does not hold may be the late news of a session that
	 * was created and closed (or hidden) before the lists were read --
	 * a delayed session_created whose session_closed went missing would
	 * bring it back as open. Such sessions are marked gone, so their
	 * events wait for a read of the session (sky__stream_route()); one
	 * that is new since the lists costs one read.
	 */
	/*
	 * And a held event that the read of its session may or may not
	 * reflect (see unclear() in stream.c) waits for a second read of
	 * the session, a little later.
	 */
	for (size_t i = 0; i < e->held_all.n; i++) {
		const evitem *it = &e->held_all.v[e->held_all.head + i];
		int64_t wm, v[2];
		unsigned flags;
		if (!*it->app || !*it->sid)
			continue;
		if (sky__keyset_get(&s->visible, it->app, it->sid, v)) {
			if (v[1] > v[0] && it->created_us >= v[0] &&
			    it->created_us < v[1])
				sky__fetch_schedule_at(e, it->app, it->sid, 1,
						       SETTLE_US, 1);
		} else if (!sky__keyset_has(&e->gone, it->app, it->sid) &&
			   sky__repair_session_info(e->cache, it->app, it->sid,
						    &wm,
						    &flags) == SKY_ENOTFOUND) {
			sky__stream_note_gone(e, it->app, it->sid);
		}
	}
	e->snap = NULL;
	sky__snap_free(s);
	apply_retention(e);
	/* One summary for the snapshot (snapshot_changes 0), before the
	 * held events, which are told one by one as they apply. */
	sky__engine_snap_summary(e);
	/* The events held meanwhile, in server order, over the reads. */
	e->holding_all = 0;
	sky__evq_release(e, &e->held_all);
	if (!e->follow_run) {
		once_deliver(e);
		return;
	}
	sky__engine_set_state(e, SKY_ENGINE_LIVE);
	sky__workers_online(e);
	if (e->fq_head && !evtimer_pending(e->ev_fetch, NULL))
		sky__arm_ms(e->ev_fetch, FETCH_DELAY_MS);
	if (e->o.resync_interval_s)
		sky__arm_ms(e->ev_resync, (long)e->o.resync_interval_s * 1000);
	sky__reconcile_arm(e);
	if ((again || e->need_resync) && e->broker_up) {
		e->need_resync = 0;
		sky__snapshot_start(e, 1);
	}
}

static void snap_check_done(sky_engine *e)
{
	snap *s = e->snap;
	if (!s || !s->started || s->apps_req || s->next < s->njobs ||
	    s->inflight)
		return;
	if (s->nbatch) {
		snap_flush(e);
		if (e->snap != s)
			return; /* failed */
	}
	snap_finish(e);
}

static void on_snap_job(const sky_http_response *res, void *ctx);

static void snap_pump(sky_engine *e)
{
	snap *s = e->snap;
	while (s && e->snap == s && s->next < s->njobs &&
	       s->inflight < e->o.max_parallel) {
		sjob *j = s->jobs[s->next++];
		sky_api_call call = j->kind == J_ROLES	    ? SKY_API_ROLES
				    : j->kind == J_SESSIONS ? SKY_API_SESSIONS
				    : j->kind == J_UNLISTED ? SKY_API_SESSION
							    : SKY_API_DATA;
		const char *sid =
		    j->session ? sky__json_str(j->session, "sessionId") : NULL;
		s->inflight++;
		if (sky__engine_request(e, call, j->app, sid, NULL, 0,
					SKY_ENGINE_REQ_RETRY, on_snap_job, j,
					&j->req) < 0) {
			s->inflight--;
			snap_failed(e, sky_error_last()->message);
			return;
		}
	}
}

static void on_snap_job(const sky_http_response *res, void *ctx)
{
	sjob *j = ctx;
	snap *s = j->snap;
	sky_engine *e = s->e;
	j->req = NULL;
	s->inflight--;
	s->jobs[j->index] = NULL;
	switch (j->kind) {
	case J_ROLES: on_roles(e, j, res); break;
	case J_SESSIONS: on_sessions(e, j, res); break;
	case J_DATA: on_data(e, j, res); break;
	case J_UNLISTED: on_unlisted(e, j, res); break;
	}
	snap_job_free(j);
	if (e->snap != s)
		return; /* it failed and was freed */
	report_progress(e, 0);
	snap_pump(e);
	snap_check_done(e);
}

static void snap_request_apps(sky_engine *e)
{
	snap *s = e->snap;
	s->started = 1;
	if (sky__engine_request(e, SKY_API_APPS, NULL, NULL, NULL, 0,
				SKY_ENGINE_REQ_RETRY, on_apps, e,
				&s->apps_req) < 0)
		snap_failed(e, sky_error_last()->message);
}

void sky__snapshot_start(sky_engine *e, int resync)
{
	if (e->stopping)
		return;
	assert(!e->snap);
	sky__workers_offline(e);
	evtimer_del(e->ev_resync);
	evtimer_del(e->ev_snap_retry);
	/* The snapshot reads everything a reconcile would. */
	sky__reconcile_cancel(e);
	/*
	 * Events received so far are applied; from now on all are held until
	 * the snapshot is stored. Re-reads of single sessions give way to it.
	 */
	sky__stream_apply_all(e);
	if (e->follow_run || e->mqtt)
		e->holding_all = 1;
	sky__fetch_cancel_all(e);
	snap *s = calloc(1, sizeof(*s));
	if (!s) {
		sky__engine_fail(e, SKY_ERROR,
				 "out of memory starting a snapshot");
		return;
	}
	s->e = e;
	s->resync = resync;
	s->resume = e->resume_next;
	if (e->first_done) {
		uint64_t gets;
		sky__http_counts(e->http, &e->req_base, &gets);
	}
	s->progress.resync = resync;
	s->progress.started_us = sky__now_us();
	e->snap = s;
	sky__engine_set_state(e, SKY_ENGINE_SNAPSHOT);
	sky__elog(e, SKY_LOG_INFO, "%s",
		  resync ? "resync: reading the realm again"
			 : "snapshot: reading the realm");
	report_progress(e, 1);
	/*
	 * Events published before our SUBACK never reach us: that is fine
	 * when the reads reflect them and as_of (built from Date headers,
	 * whole seconds) lies after them. Reads that start a full second
	 * after the SUBACK have a Date floor after it, so no event we could
	 * have missed is newer than as_of, and the events we re-apply over
	 * the reads are a complete, ordered suffix (engine.c, "Clocks").
	 */
	/* A resumed snapshot needs no wait: with the session kept, no event
	 * went missing before the SUBACK. */
	int64_t wait_us =
	    (e->follow_run || e->mqtt) && e->suback_mono_us && !s->resume
		? e->suback_mono_us + AFTER_SUBACK_US - sky__mono_us()
		: 0;
	if (wait_us > 0)
		sky__arm_ms(e->ev_snap_go, (long)(wait_us / 1000) + 1);
	else
		snap_request_apps(e);
}

void sky__resync_on_go(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->snap && !e->snap->started && !e->stopping)
		snap_request_apps(e);
}

void sky__resync_on_timer(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->state == SKY_ENGINE_LIVE && !e->snap) {
		e->need_resync = 0;
		sky__snapshot_start(e, 1);
	}
}

/* ------------------------------------------------------------------ */
/* Resuming                                                            */
/* ------------------------------------------------------------------ */

/*
 * A sync of a cache that was synced before, whose broker session the
 * broker kept, does not read the whole realm (docs/PROTOCOL.md,
 * "Resuming"):
 *
 *   SUBACK --synced before, session present--> drain the backlog
 *     (apply the events queued for us while we were away; none is read
 *      meanwhile) --quiet for DRAIN_QUIET_MS, or DRAIN_MAX_US-->
 *       backlog < backlog_limit: a resumed snapshot (the lists as a full
 *         one, then only the sessions whose listed state differs from the
 *         mirror, the stale ones and those the backlog named: an event
 *         for a session we do not know, a refused or stale one)
 *       else: a full snapshot (the broker's queue may have overflowed)
 *   SUBACK --never synced, or session lost--> a full snapshot
 *   broker not reachable in time --> a full snapshot
 *
 * The lists show every field of a session but its data, so a resumed
 * sync relies on the backlog for data changes: the broker keeps QoS 1
 * messages of a persistent session up to its queue limit, which the
 * backlog_limit stands for (we cannot see an overflow: a backlog that
 * reaches the limit is taken for one).
 */
int sky__resync_synced_before(sky_engine *e)
{
	return e->prev_sync_us != 0;
}

/* Read when the run starts, before its first state is recorded. */
int64_t sky__resync_recorded_us(sky_engine *e)
{
	MDB_txn *txn;
	if (sky__store_read_begin(&e->cache->st, &txn) < 0)
		return 0; /* unknown: the full path is always right */
	uint64_t last = sky__meta_get_u64(txn, &e->cache->st, "sync_last_at");
	sky__store_read_end(&e->cache->st, txn);
	return (int64_t)last;
}

void sky__resync_begin(sky_engine *e)
{
	if (!sky__resync_synced_before(e)) {
		e->full_why = SKY_SYNC_WHY_NEVER_SYNCED;
	} else if (!e->resume_present) {
		e->full_why = SKY_SYNC_WHY_SESSION_LOST;
	} else {
		/* The backlog comes first: wait until it is in. */
		e->drain_start_us = sky__mono_us();
		sky__arm_ms(e->ev_drain, DRAIN_QUIET_MS);
		return;
	}
	e->counting_backlog = 0;
	sky__snapshot_start(e, 0);
}

void sky__resync_on_drain(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->stopping || e->state != SKY_ENGINE_SUBSCRIBE || e->snap)
		return;
	e->counting_backlog = 0;
	if (e->st.backlog_events >= e->o.backlog_limit) {
		sky__elog(
		    e, SKY_LOG_INFO,
		    "%" PRIu64 " events waited for us at the broker "
		    "(limit %u): its queue may have overflowed; reading the "
		    "whole realm",
		    e->st.backlog_events, e->o.backlog_limit);
		e->full_why = SKY_SYNC_WHY_OVERFLOW;
	} else {
		sky__elog(e, SKY_LOG_INFO,
			  "the broker kept our session: %" PRIu64
			  " events applied; reading what differs",
			  e->st.backlog_events);
		e->resume_next = 1;
	}
	sky__snapshot_start(e, 0);
}

const char *sky_sync_why_name(int why)
{
	switch (why) {
	case SKY_SYNC_WHY_NONE: return "resumed";
	case SKY_SYNC_WHY_NEVER_SYNCED: return "never synced";
	case SKY_SYNC_WHY_SESSION_LOST: return "broker session lost";
	case SKY_SYNC_WHY_OVERFLOW: return "broker backlog may have overflowed";
	case SKY_SYNC_WHY_NO_BROKER: return "broker not reachable";
	case SKY_SYNC_WHY_APPS_CHANGED: return "applications changed";
	case SKY_SYNC_WHY_RESYNC: return "resync";
	}
	return "unknown";
}
