/*
 * protocol.c - the wire layout (REST paths, MQTT topics, eventType
 * strings) as a table: the built-in one, and protocol files that replace
 * entries of it (docs/PROTOCOL.md "Protocol file").
 *
 * Only login, refresh, the Bearer header, the broker address and the
 * client id are published; the rest is reconstructed, so a deployment
 * that differs is described in a file rather than patched into the code.
 *
 * Rules kept here:
 * - A table that passed sky__protocol_parse is usable as it is: every
 *   path starts with '/', its placeholders are whole segments and are the
 *   ids the call has ({app} and {sid} where the call needs them); no two
 *   calls share a method and path shape; the publish topic names {realm},
 *   {app} and {sid} and is matched by the subscription; the eventType
 *   strings are distinct and safe as one topic level.
 * - Every message names the file and the entry ("calls.session.path").
 */
#include "config.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "error.h"
#include "model.h"
#include "protocol.h"
#include "util.h"

/* Which ids a call's path may and must use. */
enum { NEED_NONE, NEED_APP, NEED_SID };

static const struct {
	const char *key;
	int need;
} calls[SKY_API_COUNT] = {
    [SKY_API_LOGIN] = {"login", NEED_NONE},
    [SKY_API_REFRESH] = {"refresh", NEED_NONE},
    [SKY_API_APPS] = {"apps", NEED_NONE},
    [SKY_API_APP] = {"app", NEED_APP},
    [SKY_API_ROLES] = {"roles", NEED_APP},
    [SKY_API_SESSIONS] = {"sessions", NEED_APP},
    [SKY_API_SESSION_CREATE] = {"session_create", NEED_APP},
    [SKY_API_SESSION] = {"session", NEED_SID},
    [SKY_API_SESSION_PATCH] = {"session_patch", NEED_SID},
    [SKY_API_DATA] = {"data", NEED_SID},
    [SKY_API_DATA_PATCH] = {"data_patch", NEED_SID},
    [SKY_API_PARTICIPANT_ADD] = {"participant_add", NEED_SID},
    [SKY_API_EVENT_SEND] = {"event_send", NEED_SID},
};

/* The canonical names are the built-in wire strings. */
static const char *const event_keys[SKY_EV_COUNT] = {
    [SKY_EV_SESSION_CREATED] = "session_created",
    [SKY_EV_SESSION_UPDATED] = "session_updated",
    [SKY_EV_PROPERTIES_UPDATED] = "session_properties_updated",
    [SKY_EV_DATA_UPDATED] = "session_data_updated",
    [SKY_EV_EVENT_CREATED] = "session_event_created",
    [SKY_EV_SESSION_CLOSED] = "session_closed",
};

static const sky_protocol builtin = {
    .method =
	{
	    [SKY_API_LOGIN] = "POST",
	    [SKY_API_REFRESH] = "POST",
	    [SKY_API_APPS] = "GET",
	    [SKY_API_APP] = "GET",
	    [SKY_API_ROLES] = "GET",
	    [SKY_API_SESSIONS] = "GET",
	    [SKY_API_SESSION_CREATE] = "POST",
	    [SKY_API_SESSION] = "GET",
	    [SKY_API_SESSION_PATCH] = "PATCH",
	    [SKY_API_DATA] = "GET",
	    [SKY_API_DATA_PATCH] = "PATCH",
	    [SKY_API_PARTICIPANT_ADD] = "POST",
	    [SKY_API_EVENT_SEND] = "POST",
	},
    .path =
	{
	    /* published */
	    [SKY_API_LOGIN] = "/v1/authentication/login/realms/{realm}",
	    [SKY_API_REFRESH] = "/v1/authentication/token/refresh",
	    /* reconstructed */
	    [SKY_API_APPS] = "/v1/applications",
	    [SKY_API_APP] = "/v1/applications/{app}",
	    [SKY_API_ROLES] = "/v1/applications/{app}/roles",
	    [SKY_API_SESSIONS] = "/v1/applications/{app}/sessions",
	    [SKY_API_SESSION_CREATE] = "/v1/applications/{app}/sessions",
	    [SKY_API_SESSION] = "/v1/applications/{app}/sessions/{sid}",
	    [SKY_API_SESSION_PATCH] = "/v1/applications/{app}/sessions/{sid}",
	    [SKY_API_DATA] = "/v1/applications/{app}/sessions/{sid}/data",
	    [SKY_API_DATA_PATCH] = "/v1/applications/{app}/sessions/{sid}/data",
	    [SKY_API_PARTICIPANT_ADD] =
		"/v1/applications/{app}/sessions/{sid}/participants",
	    [SKY_API_EVENT_SEND] =
		"/v1/applications/{app}/sessions/{sid}/events",
	},
    .subscribe = "realms/{realm}/applications/+/sessions/#",
    .publish = "realms/{realm}/applications/{app}/sessions/{sid}/{type}",
    .event =
	{
	    [SKY_EV_SESSION_CREATED] = "session_created",
	    [SKY_EV_SESSION_UPDATED] = "session_updated",
	    [SKY_EV_PROPERTIES_UPDATED] = "session_properties_updated",
	    [SKY_EV_DATA_UPDATED] = "session_data_updated",
	    [SKY_EV_EVENT_CREATED] = "session_event_created",
	    [SKY_EV_SESSION_CLOSED] = "session_closed",
	},
};

#define MAX_TEMPLATE 512
#define MAX_EVENT_TYPE 128
#define PROTOCOL_FILE_MAX (1 << 20)

const sky_protocol *sky__protocol_builtin(void)
{
	return &builtin;
}

const char *sky__protocol_call_key(sky_api_call call)
{
	return (unsigned)call < SKY_API_COUNT ? calls[call].key : NULL;
}

const char *sky__protocol_event_key(sky_event_type type)
{
	return (unsigned)type < SKY_EV_COUNT ? event_keys[type] : NULL;
}

int sky__protocol_event_type(const sky_protocol *p, const char *wire)
{
	for (int t = 0; t < SKY_EV_COUNT; t++)
		if (!strcmp(p->event[t], wire))
			return t;
	return -1;
}

void sky__protocol_free(sky_protocol *p)
{
	if (!p)
		return;
	for (int i = 0; i < SKY_API_COUNT; i++) {
		free(p->method[i]);
		free(p->path[i]);
	}
	for (int i = 0; i < SKY_EV_COUNT; i++)
		free(p->event[i]);
	free(p->subscribe);
	free(p->publish);
	free(p);
}

/* ---- validation ---- */

/* Which placeholder `s` (len bytes) is: "realm", "app", "sid", "type", or
 * NULL. */
static const char *placeholder(const char *s, size_t len)
{
	static const char *const names[] = {"{realm}", "{app}", "{sid}",
					    "{type}"};
	for (size_t i = 0; i < 4; i++)
		if (strlen(names[i]) == len && !strncmp(s, names[i], len))
			return names[i];
	return NULL;
}

static int literal_ok(const char *s, size_t len, const char *extra)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			 (ch >= '0' && ch <= '9') || strchr("-._~", ch) ||
			 (extra && strchr(extra, ch));
		if (!ok || !ch)
			return 0;
	}
	return 1;
}

/*
 * Check a '/'-separated template: every level non-empty, placeholders
 * whole levels and each at most once. `allowed` lists the placeholders
 * that may appear; the counts of each go to seen[realm, app, sid, type].
 * `lead` 1: it starts with '/'. `wild` 1: '+' and a last '#' may appear.
 */
static int check_template(const char *what, const char *entry, const char *t,
			  int lead, int wild, const char *allowed, int seen[4])
{
	static const char *const names[] = {"{realm}", "{app}", "{sid}",
					    "{type}"};
	memset(seen, 0, 4 * sizeof(int));
	size_t n = strlen(t);
	if (!n || n > MAX_TEMPLATE)
		return sky__error_input("%s: %s: must be 1 to %d bytes", what,
					entry, MAX_TEMPLATE);
	if (lead && t[0] != '/')
		return sky__error_input("%s: %s: '%s' must start with '/'",
					what, entry, t);
	if (!lead && t[0] == '/')
		return sky__error_input("%s: %s: '%s' must not start with '/'",
					what, entry, t);
	const char *p = lead ? t + 1 : t;
	for (;;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *ph = placeholder(p, len);
		if (!len)
			return sky__error_input("%s: %s: '%s' has an empty "
						"level (\"//\" or a trailing "
						"'/')",
						what, entry, t);
		if (ph) {
			if (!strstr(allowed, ph))
				return sky__error_input(
				    "%s: %s: '%s': placeholder %s is not "
				    "allowed here (allowed: %s)",
				    what, entry, t, ph,
				    *allowed ? allowed : "none");
			for (int i = 0; i < 4; i++)
				if (ph == names[i] && ++seen[i] > 1)
					return sky__error_input(
					    "%s: %s: '%s': placeholder %s "
					    "appears twice",
					    what, entry, t, ph);
		} else if (wild && len == 1 && (*p == '+' || *p == '#')) {
			if (*p == '#' && end)
				return sky__error_input(
				    "%s: %s: '%s': '#' must be the last level",
				    what, entry, t);
		} else if (!literal_ok(p, len, ":@")) {
			return sky__error_input(
			    "%s: %s: '%s': level '%.*s' may hold only "
			    "letters, digits, \"-._~:@\" or a whole "
			    "placeholder ({realm}, {app}, {sid}%s)",
			    what, entry, t, (int)len, p,
			    lead ? "" : ", {type}");
		}
		if (!end)
			break;
		p = end + 1;
	}
	return 0;
}

/* MQTT filter matching (levels; '+' one level, '#' the rest). */
static int topic_matches(const char *filter, const char *topic)
{
	for (;;) {
		const char *fe = strchr(filter, '/'), *te = strchr(topic, '/');
		size_t fl = fe ? (size_t)(fe - filter) : strlen(filter);
		size_t tl = te ? (size_t)(te - topic) : strlen(topic);
		if (fl == 1 && *filter == '#')
			return 1;
		if (!(fl == 1 && *filter == '+') &&
		    (fl != tl || strncmp(filter, topic, fl)))
			return 0;
		if (!fe || !te)
			return !fe && !te;
		filter = fe + 1;
		topic = te + 1;
	}
}

/* The shape of a path: placeholders as "*", for finding twins. */
static int same_shape(const char *a, const char *b)
{
	while (*a && *b) {
		if (*a == '{' && *b == '{') {
			a = strchr(a, '}') + 1;
			b = strchr(b, '}') + 1;
			continue;
		}
		if (*a != *b)
			return 0;
		a++, b++;
	}
	return !*a && !*b;
}

static int validate(const sky_protocol *p, const char *what)
{
	int seen[4];
	for (int c = 0; c < SKY_API_COUNT; c++) {
		char entry[64];
		static const char *const methods[] = {"GET", "POST", "PATCH",
						      "PUT", "DELETE"};
		size_t m;
		for (m = 0; m < 5; m++)
			if (!strcmp(p->method[c], methods[m]))
				break;
		if (m == 5)
			return sky__error_input(
			    "%s: calls.%s.method: '%.20s' is not one of GET, "
			    "POST, PATCH, PUT, DELETE",
			    what, calls[c].key, p->method[c]);
		snprintf(entry, sizeof(entry), "calls.%s.path", calls[c].key);
		const char *allowed =
		    calls[c].need == NEED_SID	? "{realm} {app} {sid}"
		    : calls[c].need == NEED_APP ? "{realm} {app}"
						: "{realm}";
		int rc = check_template(what, entry, p->path[c], 1, 0, allowed,
					seen);
		if (rc < 0)
			return rc;
		if (calls[c].need >= NEED_APP && !seen[1])
			return sky__error_input("%s: %s: '%s' must name {app}",
						what, entry, p->path[c]);
		if (calls[c].need == NEED_SID && !seen[2])
			return sky__error_input("%s: %s: '%s' must name {sid}",
						what, entry, p->path[c]);
		for (int o = 0; o < c; o++)
			if (!strcmp(p->method[o], p->method[c]) &&
			    same_shape(p->path[o], p->path[c]))
				return sky__error_input(
				    "%s: %s: %s %s is also calls.%s: a server "
				    "could not tell the two apart",
				    what, entry, p->method[c], p->path[c],
				    calls[o].key);
	}
	int rc = check_template(what, "topics.subscribe", p->subscribe, 0, 1,
				"{realm}", seen);
	if (rc < 0)
		return rc;
	if (!seen[0])
		return sky__error_input("%s: topics.subscribe: '%s' must name "
					"{realm}",
					what, p->subscribe);
	if ((rc = check_template(what, "topics.publish", p->publish, 0, 0,
				 "{realm} {app} {sid} {type}", seen)) < 0)
		return rc;
	if (!seen[0] || !seen[1] || !seen[2])
		return sky__error_input("%s: topics.publish: '%s' must name "
					"{realm}, {app} and {sid}",
					what, p->publish);
	for (int t = 0; t < SKY_EV_COUNT; t++) {
		const char *s = p->event[t];
		size_t n = strlen(s);
		if (!n || n > MAX_EVENT_TYPE || !literal_ok(s, n, ":@"))
			return sky__error_input(
			    "%s: eventTypes.%s: '%.60s' must be 1 to %d "
			    "letters, digits or \"-._~:@\" (it is a topic "
			    "level)",
			    what, event_keys[t], s, MAX_EVENT_TYPE);
		for (int o = 0; o < t; o++)
			if (!strcmp(p->event[o], s))
				return sky__error_input(
				    "%s: eventTypes.%s: '%s' is also "
				    "eventTypes.%s",
				    what, event_keys[t], s, event_keys[o]);
	}
	/* What the emulator publishes must reach the subscription. */
	char *sub = sky__protocol_topic(p->subscribe, "r", NULL, NULL, NULL);
	char *pub = sky__protocol_topic(p->publish, "r", "a", "s", p->event[0]);
	if (!sub || !pub) {
		free(sub);
		free(pub);
		return sky__error_nomem();
	}
	int match = topic_matches(sub, pub);
	free(sub);
	free(pub);
	if (!match)
		return sky__error_input("%s: topics.subscribe: '%s' does not "
					"match topics.publish '%s'",
					what, p->subscribe, p->publish);
	return 0;
}

/* ---- loading ---- */

/* Replace *slot with a copy of `key` of obj when present (a string). */
static int take_string(const json_t *obj, const char *key, char **slot,
		       const char *what, const char *entry)
{
	const json_t *v = json_object_get(obj, key);
	if (!v)
		return 0;
	if (!json_is_string(v))
		return sky__error_input("%s: %s: must be a string", what,
					entry);
	char *s = strdup(json_string_value(v));
	if (!s)
		return sky__error_nomem();
	free(*slot);
	*slot = s;
	return 0;
}

static int only_keys(const json_t *obj, const char *what, const char *entry,
		     const char *const *keys, size_t nkeys)
{
	const char *k;
	const json_t *v;
	json_object_foreach((json_t *)obj, k, v) {
		size_t i;
		for (i = 0; i < nkeys; i++)
			if (keys[i] && !strcmp(k, keys[i]))
				break;
		if (i == nkeys)
			return sky__error_input("%s: %s%s%.60s: unknown entry",
						what, entry, *entry ? "." : "",
						k);
	}
	return 0;
}

static int copy_builtin(sky_protocol *p)
{
	for (int i = 0; i < SKY_API_COUNT; i++)
		if (!(p->method[i] = strdup(builtin.method[i])) ||
		    !(p->path[i] = strdup(builtin.path[i])))
			return sky__error_nomem();
	for (int i = 0; i < SKY_EV_COUNT; i++)
		if (!(p->event[i] = strdup(builtin.event[i])))
			return sky__error_nomem();
	if (!(p->subscribe = strdup(builtin.subscribe)) ||
	    !(p->publish = strdup(builtin.publish)))
		return sky__error_nomem();
	return 0;
}

int sky__protocol_parse(const char *text, size_t len, const char *what,
			sky_protocol **out)
{
	static const char *const top[] = {"version", "calls", "topics",
					  "eventTypes"};
	static const char *const call_fields[] = {"method", "path"};
	static const char *const topic_fields[] = {"subscribe", "publish"};
	const char *call_keys[SKY_API_COUNT];
	for (int i = 0; i < SKY_API_COUNT; i++)
		call_keys[i] = calls[i].key;
	sky_json_limits lim = {PROTOCOL_FILE_MAX, 8};
	json_t *root = NULL;
	int rc = sky__json_parse(text, len, &lim, what, &root);
	if (rc < 0)
		return rc;
	sky_protocol *p = calloc(1, sizeof(*p));
	if (!p) {
		rc = sky__error_nomem();
		goto fail;
	}
	if ((rc = copy_builtin(p)) < 0)
		goto fail;
	if (!json_is_object(root)) {
		rc = sky__error_input("%s: must be a JSON object", what);
		goto fail;
	}
	if ((rc = only_keys(root, what, "", top, 4)) < 0)
		goto fail;
	const json_t *v = json_object_get(root, "version");
	if (v && (!json_is_integer(v) || json_integer_value(v) != 1)) {
		rc = sky__error_input("%s: version: must be 1", what);
		goto fail;
	}
	const json_t *cs = json_object_get(root, "calls");
	if (cs) {
		if (!json_is_object(cs)) {
			rc = sky__error_input("%s: calls: must be an object",
					      what);
			goto fail;
		}
		if ((rc = only_keys(cs, what, "calls", call_keys,
				    SKY_API_COUNT)) < 0)
			goto fail;
		for (int c = 0; c < SKY_API_COUNT; c++) {
			const json_t *o = json_object_get(cs, calls[c].key);
			char entry[2][64];
			if (!o)
				continue;
			snprintf(entry[0], sizeof(entry[0]), "calls.%s",
				 calls[c].key);
			if (!json_is_object(o)) {
				rc = sky__error_input("%s: %s: must be an "
						      "object {method, path}",
						      what, entry[0]);
				goto fail;
			}
			if ((rc = only_keys(o, what, entry[0], call_fields,
					    2)) < 0)
				goto fail;
			snprintf(entry[1], sizeof(entry[1]), "calls.%s.method",
				 calls[c].key);
			if ((rc = take_string(o, "method", &p->method[c], what,
					      entry[1])) < 0)
				goto fail;
			snprintf(entry[1], sizeof(entry[1]), "calls.%s.path",
				 calls[c].key);
			if ((rc = take_string(o, "path", &p->path[c], what,
					      entry[1])) < 0)
				goto fail;
		}
	}
	const json_t *ts = json_object_get(root, "topics");
	if (ts) {
		if (!json_is_object(ts)) {
			rc = sky__error_input("%s: topics: must be an object",
					      what);
			goto fail;
		}
		if ((rc = only_keys(ts, what, "topics", topic_fields, 2)) < 0 ||
		    (rc = take_string(ts, "subscribe", &p->subscribe, what,
				      "topics.subscribe")) < 0 ||
		    (rc = take_string(ts, "publish", &p->publish, what,
				      "topics.publish")) < 0)
			goto fail;
	}
	const json_t *es = json_object_get(root, "eventTypes");
	if (es) {
		if (!json_is_object(es)) {
			rc = sky__error_input("%s: eventTypes: must be an "
					      "object",
					      what);
			goto fail;
		}
		if ((rc = only_keys(es, what, "eventTypes", event_keys,
				    SKY_EV_COUNT)) < 0)
			goto fail;
		for (int t = 0; t < SKY_EV_COUNT; t++) {
			char entry[64];
			snprintf(entry, sizeof(entry), "eventTypes.%s",
				 event_keys[t]);
			if ((rc = take_string(es, event_keys[t], &p->event[t],
					      what, entry)) < 0)
				goto fail;
		}
	}
	if ((rc = validate(p, what)) < 0)
		goto fail;
	json_decref(root);
	*out = p;
	return 0;
fail:
	json_decref(root);
	sky__protocol_free(p);
	return rc;
}

int sky__protocol_load(const char *file, sky_protocol **out)
{
	char what[300];
	snprintf(what, sizeof(what), "protocol file %s", file);
	FILE *f = fopen(file, "rb");
	if (!f)
		return sky__error_os(what);
	sky_buf b = SKY_BUF_INIT;
	char chunk[4096];
	size_t n;
	int rc = 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (b.len + n > PROTOCOL_FILE_MAX) {
			rc = sky__error_input("%s: longer than %d bytes", what,
					      PROTOCOL_FILE_MAX);
			goto done;
		}
		if ((rc = sky__buf_append(&b, chunk, n)) < 0)
			goto done;
	}
	if (ferror(f)) {
		rc = sky__error_os(what);
		goto done;
	}
	rc = sky__protocol_parse(b.len ? b.data : "", b.len, what, out);
done:
	fclose(f);
	sky__buf_free(&b);
	return rc;
}

/* ---- output and topics ---- */

char *sky__protocol_dump(const sky_protocol *p)
{
	json_t *root = json_object(), *cs = json_object(), *ts = json_object(),
	       *es = json_object();
	char *text = NULL;
	if (!root || !cs || !ts || !es)
		goto done;
	if (json_object_set_new(root, "version", json_integer(1)) < 0 ||
	    json_object_set(root, "calls", cs) < 0 ||
	    json_object_set(root, "topics", ts) < 0 ||
	    json_object_set(root, "eventTypes", es) < 0)
		goto done;
	for (int c = 0; c < SKY_API_COUNT; c++) {
		json_t *o = json_object();
		if (!o || json_object_set_new(cs, calls[c].key, o) < 0 ||
		    json_object_set_new(o, "method",
					json_string(p->method[c])) < 0 ||
		    json_object_set_new(o, "path", json_string(p->path[c])) < 0)
			goto done;
	}
	if (json_object_set_new(ts, "subscribe", json_string(p->subscribe)) <
		0 ||
	    json_object_set_new(ts, "publish", json_string(p->publish)) < 0)
		goto done;
	for (int t = 0; t < SKY_EV_COUNT; t++)
		if (json_object_set_new(es, event_keys[t],
					json_string(p->event[t])) < 0)
			goto done;
	text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
done:
	json_decref(cs);
	json_decref(ts);
	json_decref(es);
	json_decref(root);
	return text;
}

char *sky__protocol_topic(const char *tmpl, const char *realm, const char *app,
			  const char *sid, const char *type)
{
	sky_buf b = SKY_BUF_INIT;
	for (const char *p = tmpl; *p;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *ph = placeholder(p, len), *id = NULL;
		if (ph)
			id = ph[1] == 'r'   ? realm
			     : ph[1] == 'a' ? app
			     : ph[1] == 's' ? sid
					    : type;
		if (ph && !id)
			goto fail;
		if (sky__buf_append(&b, ph ? id : p, ph ? strlen(id) : len) <
			0 ||
		    (end && sky__buf_putc(&b, '/') < 0))
			goto fail;
		p += len + (end ? 1 : 0);
	}
	if (sky__buf_putc(&b, '\0') < 0)
		goto fail;
	return sky__buf_detach(&b, NULL);
fail:
	sky__buf_free(&b);
	return NULL;
}

int sky__protocol_topic_read(const sky_protocol *p, const char *topic,
			     const char *realm, char *buf, size_t cap,
			     const char **app, const char **sid,
			     const char **type)
{
	const char *t = p->publish, *v = topic;
	int realm_ok = 0, whole = 1;
	size_t used = 0;
	const char *got[3] = {"", "", ""};
	*app = *sid = *type = "";
	for (;;) {
		const char *te = strchr(t, '/'), *ve = strchr(v, '/');
		size_t tl = te ? (size_t)(te - t) : strlen(t);
		size_t vl = ve ? (size_t)(ve - v) : strlen(v);
		const char *ph = placeholder(t, tl);
		if (!ph) {
			/* Before {realm} the levels say whose topic it is. */
			if (tl != vl || strncmp(t, v, tl)) {
				if (!realm_ok)
					return 0;
				whole = 0;
				break;
			}
		} else if (ph[1] == 'r') {
			if (vl != strlen(realm) || strncmp(v, realm, vl))
				return 0;
			realm_ok = 1;
		} else if (!vl || used + vl + 1 > cap) {
			whole =
			    0; /* no ids from it; keep looking for {realm} */
		} else {
			int i = ph[1] == 'a' ? 0 : ph[1] == 's' ? 1 : 2;
			memcpy(buf + used, v, vl);
			buf[used + vl] = '\0';
			got[i] = buf + used;
			used += vl + 1;
		}
		if (!te || !ve) {
			whole = whole && !te && !ve;
			break;
		}
		t = te + 1;
		v = ve + 1;
	}
	if (realm_ok && whole) {
		*app = got[0];
		*sid = got[1];
		*type = got[2];
	}
	return realm_ok;
}

int sky_protocol_dump(const char *file, char **out)
{
	assert(out);
	sky_protocol *p = NULL;
	int rc;
	if (file && (rc = sky__protocol_load(file, &p)) < 0)
		return rc;
	char *text = sky__protocol_dump(p ? p : &builtin);
	sky__protocol_free(p);
	if (!text)
		return sky__error_nomem();
	*out = text;
	return 0;
}
