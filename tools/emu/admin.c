/*
 * admin.c - the /_admin/ endpoints of skylight-emu: install and remove
 * faults, expire tokens, drop MQTT connections, refuse connections, read
 * counters. They share the loopback listener with the API, need no token
 * and are never faulted (README.md lists them).
 *
 *   GET    /_admin/stats          counters, faults, broker state
 *   GET    /_admin/faults         installed faults with their counters
 *   POST   /_admin/faults         add: spec string, JSON object, or array
 *   DELETE /_admin/faults         remove all
 *   DELETE /_admin/faults/{id}    remove one
 *   POST   /_admin/expire-tokens  {"refresh": bool} expire tokens now
 *   POST   /_admin/mqtt-drop      {"ms": N} drop MQTT connections
 *   POST   /_admin/refuse         {"ms": N} stop listening for N ms
 *   POST   /_admin/random-seed    {"seed": N} restart the random draws
 *   GET    /_admin/realm          the whole realm in the seed format
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "auth.h"
#include "emu.h"
#include "jcheck.h"
#include "faults.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "publish.h"
#include "realm.h"

static int is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

/* An optional JSON body: NULL when empty; -1 with a 400 when not JSON. */
static int body_of(const emu_request *rq, json_t **out, emu_answer *ans)
{
	json_error_t e;
	*out = NULL;
	if (!rq->body || !rq->body_len)
		return 0;
	*out = sky__json_loadb(rq->body, rq->body_len, JSON_DECODE_ANY, &e);
	if (!*out) {
		emu_result_error(&ans->r, 400, "body: %s", e.text);
		return -1;
	}
	return 0;
}

static int64_t int_field(const json_t *body, const char *key, int64_t dflt)
{
	const json_t *v = json_object_get(body, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

static void reply(emu_answer *ans, int status, json_t *body)
{
	ans->r.status = status;
	ans->r.body = body;
}

static json_t *stats_json(struct emu *emu)
{
	const struct emu_stats *s = &emu->stats;
	json_t *o = json_object();
	json_t *by_class = json_object();
	for (int i = 1; i <= 5; i++) {
		char k[4] = {(char)('0' + i), 'x', 'x', 0};
		EMU_JSON(json_object_set_new(
		    by_class, k, json_integer((json_int_t)s->status[i])));
	}
	EMU_JSON(json_object_set_new(o, "requests",
				     json_integer((json_int_t)s->requests)));
	EMU_JSON(json_object_set_new(
	    o, "api_requests", json_integer((json_int_t)s->api_requests)));
	EMU_JSON(json_object_set_new(
	    o, "admin_requests", json_integer((json_int_t)s->admin_requests)));
	EMU_JSON(json_object_set_new(o, "status", by_class));
	EMU_JSON(json_object_set_new(o, "logins",
				     json_integer((json_int_t)s->logins)));
	EMU_JSON(json_object_set_new(o, "refreshes",
				     json_integer((json_int_t)s->refreshes)));
	EMU_JSON(json_object_set_new(o, "changes",
				     json_integer((json_int_t)s->changes)));
	EMU_JSON(json_object_set_new(
	    o, "refused_in_window",
	    json_integer((json_int_t)s->refused_in_window)));
	EMU_JSON(json_object_set_new(
	    o, "pending_requests", json_integer(emu_http_pending(emu->http))));
	EMU_JSON(json_object_set_new(
	    o, "sessions",
	    json_integer((json_int_t)emu_realm_session_count(emu->realm))));
	EMU_JSON(json_object_set_new(o, "live_tokens",
				     json_integer(emu_auth_live(emu->auth))));
	json_t *ev = json_object();
	EMU_JSON(json_object_set_new(
	    ev, "built", json_integer((json_int_t)s->events_built)));
	EMU_JSON(json_object_set_new(
	    ev, "published", json_integer((json_int_t)s->events_published)));
	EMU_JSON(json_object_set_new(
	    ev, "dropped", json_integer((json_int_t)s->events_dropped)));
	EMU_JSON(json_object_set_new(o, "events", ev));
	json_t *mq = json_object();
	EMU_JSON(json_object_set_new(mq, "configured",
				     json_boolean(emu->pub != NULL)));
	EMU_JSON(json_object_set_new(
	    mq, "connected",
	    json_boolean(emu->pub && emu_pub_connected(emu->pub))));
	EMU_JSON(json_object_set_new(
	    mq, "queued",
	    json_integer(emu->pub ? emu_pub_queued(emu->pub) : 0)));
	EMU_JSON(json_object_set_new(
	    mq, "known_clients",
	    json_integer(emu->pub ? emu_pub_known_clients(emu->pub) : 0)));
	EMU_JSON(json_object_set_new(
	    mq, "connects", json_integer((json_int_t)s->mqtt_connects)));
	EMU_JSON(json_object_set_new(mq, "drops",
				     json_integer((json_int_t)s->mqtt_drops)));
	EMU_JSON(json_object_set_new(
	    mq, "clients_kicked", json_integer((json_int_t)s->clients_kicked)));
	EMU_JSON(json_object_set_new(o, "mqtt", mq));
	json_t *faults = emu_faults_to_json(emu->faults);
	EMU_JSON(json_object_update(o, faults));
	json_decref(faults);
	return o;
}

static void add_faults(struct emu *emu, const json_t *body, emu_answer *ans)
{
	char err[256];
	json_t *ids = json_array();
	if (!body) {
		emu_result_error(&ans->r, 400,
				 "body: a fault spec, object or array is "
				 "expected");
		json_decref(ids);
		return;
	}
	/* All or nothing: on a bad entry the ones added before go again. */
	size_t n = json_is_array(body) ? json_array_size(body) : 1;
	for (size_t i = 0; i < n; i++) {
		const json_t *f =
		    json_is_array(body) ? json_array_get(body, i) : body;
		unsigned id;
		if (emu_faults_add_json(emu->faults, f, &id, err, sizeof(err)) <
		    0) {
			size_t k;
			json_t *v;
			json_array_foreach(ids, k, v)
				emu_faults_remove(
				    emu->faults,
				    (unsigned)json_integer_value(v));
			json_decref(ids);
			if (json_is_array(body))
				emu_result_error(&ans->r, 400, "[%zu]: %s", i,
						 err);
			else
				emu_result_error(&ans->r, 400, "%s", err);
			return;
		}
		EMU_JSON(json_array_append_new(ids, json_integer(id)));
	}
	emu_log(emu, "admin: %zu fault(s) added", n);
	reply(ans, 201, json_pack("{s:o}", "ids", ids));
}

void emu_admin_handle(struct emu *emu, const emu_request *rq, emu_answer *ans)
{
	char **s = rq->seg;
	size_t n = rq->nseg;
	const char *m = rq->method;
	json_t *body = NULL;
	if (n < 2 || !is(s[0], "_admin")) {
		emu_result_error(&ans->r, 404, "no such admin endpoint");
		return;
	}
	if (!is(m, "GET") && body_of(rq, &body, ans) < 0)
		return;
	const char *what = s[1];
	if (n == 2 && is(what, "stats") && is(m, "GET")) {
		reply(ans, 200, stats_json(emu));
	} else if (n == 2 && is(what, "faults") && is(m, "GET")) {
		reply(ans, 200, emu_faults_to_json(emu->faults));
	} else if (n == 2 && is(what, "faults") && is(m, "POST")) {
		add_faults(emu, body, ans);
	} else if (n == 2 && is(what, "faults") && is(m, "DELETE")) {
		emu_faults_clear(emu->faults);
		emu_log(emu, "admin: faults cleared");
		reply(ans, 200, json_pack("{s:b}", "cleared", 1));
	} else if (n == 3 && is(what, "faults") && is(m, "DELETE")) {
		char *end;
		unsigned long id = strtoul(s[2], &end, 10);
		if (*end || emu_faults_remove(emu->faults, (unsigned)id) < 0)
			emu_result_error(&ans->r, 404, "no fault with id %s",
					 s[2]);
		else
			reply(ans, 200, json_pack("{s:i}", "removed", (int)id));
	} else if (n == 2 && is(what, "expire-tokens") && is(m, "POST")) {
		int refresh = json_is_true(json_object_get(body, "refresh"));
		unsigned k = emu_auth_expire_all(emu->auth, refresh);
		emu_faults_count(emu->faults, EMU_F_EXPIRE);
		emu_log(emu, "admin: %u token(s) expired", k);
		reply(ans, 200, json_pack("{s:i}", "expired", (int)k));
	} else if (n == 2 && is(what, "mqtt-drop") && is(m, "POST")) {
		if (!emu->pub) {
			emu_result_error(&ans->r, 409, "no broker configured");
		} else {
			unsigned k =
			    emu_pub_drop(emu->pub, int_field(body, "ms", 1000));
			emu_faults_count(emu->faults, EMU_F_MQTT_DROP);
			reply(ans, 200, json_pack("{s:i}", "kicked", (int)k));
		}
	} else if (n == 2 && is(what, "refuse") && is(m, "POST")) {
		int64_t ms = int_field(body, "ms", 1000);
		if (ms <= 0 || ms > 600000) {
			emu_result_error(&ans->r, 400, "ms: must be 1..600000");
		} else {
			emu_faults_count(emu->faults, EMU_F_REFUSE);
			ans->after_refuse_ms = (int)ms;
			reply(ans, 200,
			      json_pack("{s:I}", "ms", (json_int_t)ms));
		}
	} else if (n == 2 && is(what, "random-seed") && is(m, "POST")) {
		const json_t *seed = json_object_get(body, "seed");
		if (!json_is_integer(seed)) {
			emu_result_error(&ans->r, 400,
					 "seed: must be an integer");
		} else {
			emu_faults_reseed(emu->faults,
					  (uint64_t)json_integer_value(seed));
			reply(ans, 200, json_pack("{s:O}", "seed", seed));
		}
	} else if (n == 2 && is(what, "realm") && is(m, "GET")) {
		reply(ans, 200, emu_realm_export(emu->realm));
	} else {
		emu_result_error(&ans->r, 404, "no such admin endpoint: %s %s",
				 m, rq->path);
	}
	json_decref(body);
}
