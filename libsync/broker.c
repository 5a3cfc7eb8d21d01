/*
 * broker.c - the sync engine's broker connection: the MQTT client of the
 * realm's events (mqtt.c), what its CONNACK, SUBACK, loss and refusal
 * mean for the sync, the received events handed to the event path
 * (stream.c), and the broker identity: one client id per cache, realm and
 * user (identity.c), with the session of a previous identity ended.
 *
 * Keeps true: only topics of our realm become events; a CONNACK without
 * our session, or after too long away, asks for a resync (events may be
 * missing), and the SUBACK is what a snapshot's reads wait for (engine.c,
 * "Clocks"); while a kept session's backlog comes in, its events are
 * counted for the resumed path (resync.c, "Resuming"). Nothing is stopped
 * or freed inside a libmosquitto callback (a timer does it).
 */
#include "config.h"

#include "broker.h"

#include <stdio.h>
#include <stdlib.h>

#include <event2/event.h>

#include "api.h"
#include "auth.h"
#include "cache_types.h"
#include "engine_core.h"
#include "engine_state.h"
#include "error.h"
#include "identity.h"
#include "mqtt.h"
#include "protocol.h"
#include "resync.h"
#include "stream.h"
#include "util.h"

static void on_mqtt_connected(int session_present, void *ctx)
{
	sky_engine *e = ctx;
	int64_t now = sky__now_us();
	e->st.broker_connects++;
	if (e->broker_seen) {
		int64_t away = e->broker_lost_us ? now - e->broker_lost_us : 0;
		if (!session_present) {
			sky__elog(e, SKY_LOG_INFO,
				  "the broker lost our session: "
				  "events may be missing, resync");
			e->need_resync = 1;
		} else if (away >
			   (int64_t)e->o.resync_after_offline_s * 1000000) {
			sky__elog(e, SKY_LOG_INFO,
				  "away from the broker for %.0f s: "
				  "resync",
				  away / 1e6);
			e->need_resync = 1;
		}
	}
	if (!e->broker_seen && !e->first_done) {
		e->resume_present = session_present;
		e->counting_backlog = session_present;
	}
	e->broker_seen = 1;
	sky__elog(e, SKY_LOG_DEBUG, "broker connected (session %s)",
		  session_present ? "kept" : "new");
}

static void on_mqtt_subscribed(int ok, void *ctx)
{
	sky_engine *e = ctx;
	if (!ok) {
		sky__warn_retry(e, "the broker refused our subscription",
				e->o.backoff_max_ms);
		sky__mqtt_drop(e->mqtt);
		return;
	}
	e->broker_up = 1;
	e->broker_lost_us = 0;
	e->suback_mono_us = sky__mono_us();
	e->st.broker_up = 1;
	sky__elog(e, SKY_LOG_INFO, "subscribed to the realm's events");
	if (e->state == SKY_ENGINE_SUBSCRIBE) {
		evtimer_del(e->ev_broker_wait);
		e->need_resync = 0;
		sky__resync_begin(e);
		return;
	}
	if (!e->need_resync)
		return;
	if (e->state == SKY_ENGINE_LIVE) {
		e->need_resync = 0;
		sky__snapshot_start(e, 1);
	} else if (e->state == SKY_ENGINE_SNAPSHOT && e->snap) {
		e->need_resync = 0;
		e->snap->again = 1;
	} else if (e->state == SKY_ENGINE_BACKOFF) {
		e->need_resync = 0; /* the coming snapshot covers it */
	}
}

static void on_mqtt_lost(const char *why, void *ctx)
{
	sky_engine *e = ctx;
	if (e->broker_up) {
		e->broker_up = 0;
		e->st.broker_up = 0;
		e->broker_lost_us = sky__now_us();
		sky__elog(e, SKY_LOG_WARN, "broker connection lost: %s", why);
	} else {
		sky__elog(e, SKY_LOG_DEBUG, "broker: %s", why);
		snprintf(e->st.error, sizeof(e->st.error), "broker: %s", why);
	}
}

static void on_mqtt_refused(int rc, const char *why, void *ctx)
{
	sky_engine *e = ctx;
	snprintf(e->st.error, sizeof(e->st.error), "broker: %s", why);
	sky__elog(e, SKY_LOG_WARN, "broker: %s", why);
	/* 4: bad user name or password, 5: not authorised: maybe our token
	 * expired; the next attempt uses a fresh one. */
	if ((rc == 4 || rc == 5) && !e->auth_busy && e->access &&
	    sky__now_us() - e->access_got_us > 5000000) {
		sky__wipe_free(e->access);
		e->access = NULL;
		sky__auth_ensure(e);
	}
}

static void on_mqtt_message(const char *topic, const char *payload, size_t len,
			    void *ctx)
{
	sky_engine *e = ctx;
	/* Only our realm's topics (the {realm} level of the publish topic). */
	char tbuf[3 * SKY_MAX_ID_BYTES + 8];
	const char *ta, *ts, *tt;
	if (!sky__protocol_topic_read(e->proto, topic, e->realm, tbuf,
				      sizeof(tbuf), &ta, &ts, &tt))
		return;
	e->st.events_received++;
	if (e->counting_backlog) {
		e->st.backlog_events++;
		if (e->drain_start_us &&
		    sky__mono_us() - e->drain_start_us < DRAIN_MAX_US)
			sky__arm_ms(e->ev_drain, DRAIN_QUIET_MS);
	}
	evitem it;
	if (sky__evitem_make(e, payload, len, e->cache->opts.max_event_bytes,
			     ++e->seq, topic, &it) < 0) {
		sky__engine_fail(e, SKY_ERROR,
				 "out of memory keeping an event");
		return;
	}
	sky__stream_route(e, &it);
}

void sky__broker_on_wait(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	if (e->state != SKY_ENGINE_SUBSCRIBE)
		return;
	/* Fresh data beats waiting: read now, resync once subscribed. */
	e->full_why = SKY_SYNC_WHY_NO_BROKER;
	e->counting_backlog = 0;
	sky__elog(e, SKY_LOG_WARN,
		  "the broker is not reachable yet: reading the "
		  "realm now, again once subscribed");
	e->need_resync = 1;
	sky__snapshot_start(e, 0);
}

/*
 * Ending the broker session of the cache's previous identity (another
 * realm or user): one connection with that client id and a clean session
 * makes the broker drop what it kept, then we disconnect. Best effort, one
 * attempt: whatever happens is logged and the retiring connection stops
 * (from a timer: stopping inside libmosquitto's callbacks would close the
 * socket under the loop's feet).
 */
static void on_retire_stop(evutil_socket_t fd, short what, void *arg)
{
	sky_engine *e = arg;
	(void)fd;
	(void)what;
	sky__mqtt_stop(e->mqtt_retire);
}

static void on_retire_connected(int session_present, void *ctx)
{
	sky_engine *e = ctx;
	(void)session_present;
	sky__elog(e, SKY_LOG_INFO,
		  "ended the broker session of the cache's previous identity");
	sky__arm_ms(e->ev_retire, 0);
}

static void on_retire_lost(const char *why, void *ctx)
{
	sky_engine *e = ctx;
	sky__elog(e, SKY_LOG_WARN,
		  "could not end the broker session of the cache's previous "
		  "identity: %s",
		  why);
	sky__arm_ms(e->ev_retire, 0);
}

static void on_retire_refused(int rc, const char *why, void *ctx)
{
	(void)rc;
	on_retire_lost(why, ctx);
}

static void retire_identity(sky_engine *e, const char *old_id, const char *user)
{
	sky__elog(e, SKY_LOG_INFO,
		  "the cache changes realm or user: a new broker identity; "
		  "ending the broker session of %s",
		  old_id);
	sky_mqtt_options mo = {0};
	mo.url = e->broker;
	mo.client_id = old_id;
	mo.username = user;
	mo.password = e->access;
	mo.cafile = e->cafile;
	mo.insecure = e->o.insecure;
	mo.clean_session = 1;
	sky_mqtt_callbacks cb = {on_retire_connected, NULL, NULL,
				 on_retire_lost, on_retire_refused};
	if (!(e->ev_retire = evtimer_new(e->base, on_retire_stop, e)))
		sky__error_nomem();
	if (!e->ev_retire ||
	    sky__mqtt_new(e->base, &mo, &cb, e, &e->mqtt_retire) < 0 ||
	    sky__mqtt_start(e->mqtt_retire) < 0)
		sky__elog(e, SKY_LOG_WARN,
			  "could not end the broker session of %s: %s", old_id,
			  sky_error_last()->message);
}

int sky__broker_start(sky_engine *e)
{
	char *topic = NULL, *user = NULL, *client = NULL, *retired = NULL;
	int rc = -1;
	topic = sky__protocol_topic(e->proto->subscribe, e->realm, NULL, NULL,
				    NULL);
	if (asprintf(&user, "%s/%s", e->realm, e->sub) < 0)
		user = NULL;
	if (!topic || !user) {
		sky__error_nomem();
		goto done;
	}
	/* One client id per cache, realm and user (identity.c): every run
	 * resumes the broker session, with what it queued meanwhile. */
	if ((rc = sky__identity_client_id(e->cache, e->realm, e->sub, &client,
					  &retired)) < 0) {
		sky__error_prefix("choosing the broker client id");
		goto done;
	}
	sky__elog(e, SKY_LOG_DEBUG, "broker client id %s", client);
	sky_mqtt_options mo = {
	    e->broker,		 client, user,
	    e->access,		 topic,	 e->cafile,
	    e->o.insecure,	 30,	 e->o.backoff_min_ms * 2,
	    e->o.backoff_max_ms, 0};
	sky_mqtt_callbacks cb = {on_mqtt_connected, on_mqtt_subscribed,
				 on_mqtt_message, on_mqtt_lost,
				 on_mqtt_refused};
	if ((rc = sky__mqtt_new(e->base, &mo, &cb, e, &e->mqtt)) == 0)
		rc = sky__mqtt_start(e->mqtt);
	if (rc == 0 && retired && !e->mqtt_retire)
		retire_identity(e, retired, user);
done:
	free(topic);
	free(user);
	free(client);
	free(retired);
	return rc;
}

void sky__engine_drop_broker(sky_engine *e)
{
	if (e && e->mqtt)
		sky__mqtt_drop(e->mqtt);
}
