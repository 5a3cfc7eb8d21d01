/*
 * realm.c - users, groups, applications, roles, sessions and session data
 * of skylight-emu, the permission rules, seed loading, and the events each
 * change produces. See realm.h for the rules.
 *
 * Everything is kept as jansson values (objects keyed by id, which keep
 * insertion order, so lists come out in creation order). Invariants:
 * - every session in `sessions` has a data object in `data` (maybe {});
 * - a stored session always has applicationId, sessionId, status, isDraft,
 *   version, name, participants, properties (strings only), createdBy,
 *   createdAt, modifiedBy, modifiedAt; unknown fields given by clients are
 *   kept beside them and returned (round trip);
 * - ids of applications and sessions are valid ids (sky__check_id) and
 *   contain no '/', '+' or '#', so they are safe as MQTT topic levels;
 * - change times come from a clock that never goes backwards and never
 *   repeats, so createdAt/modifiedAt and event times strictly increase;
 * - an operation either fails with nothing changed or succeeds with its
 *   events built; answers and events are copies, never shared with the
 *   stored values (later changes cannot leak into a queued event).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu.h"
#include "rand.h"
#include "jcheck.h"
#include "json.h"
#include "merge.h"
#include "model.h"
#include "realm.h"
#include "skysync.h"
#include "util.h"

/* The one table of eventType strings (DESIGN.md §3). */
static const char *const event_type_names[EMU_EV_COUNT] = {
    [EMU_EV_SESSION_CREATED] = "session_created",
    [EMU_EV_SESSION_UPDATED] = "session_updated",
    [EMU_EV_PROPERTIES_UPDATED] = "session_properties_updated",
    [EMU_EV_DATA_UPDATED] = "session_data_updated",
    [EMU_EV_EVENT_CREATED] = "session_event_created",
    [EMU_EV_SESSION_CLOSED] = "session_closed",
};

const char *emu_event_type_name(enum emu_event_type t)
{
	return event_type_names[t];
}

/* Permission bits. */
enum {
	P_APP_READ = 1 << 0,
	P_READ_PART = 1 << 1,
	P_READ_ANY = 1 << 2,
	P_CREATE = 1 << 3,
	P_UPDATE = 1 << 4,
	P_CLOSE = 1 << 5,
};

static const struct {
	const char *name;
	unsigned bit;
} permissions[] = {
    {"application:read", P_APP_READ}, {"session:read:participant", P_READ_PART},
    {"session:read:any", P_READ_ANY}, {"session:create", P_CREATE},
    {"session:update", P_UPDATE},     {"session:close", P_CLOSE},
};

/* Fields of a session the server sets; a client may not change them. */
static const char *const read_only_fields[] = {
    "applicationId", "sessionId", "isDraft",	"version",    "participants",
    "createdBy",     "createdAt", "modifiedBy", "modifiedAt",
};

struct emu_realm {
	char *name;
	json_t *users;	  /* id -> {id, username, password, groups[]} */
	json_t *groups;	  /* id -> {id, name} */
	json_t *apps;	  /* id -> {application, roles} */
	json_t *sessions; /* appId -> {sessionId -> session} */
	json_t *data;	  /* appId -> {sessionId -> data} */
	size_t n_sessions;
	int64_t last_change_us;
};

/* ---- results ---- */

void emu_result_clear(emu_result *res)
{
	json_decref(res->body);
	json_decref(res->events);
	res->body = res->events = NULL;
	res->status = 0;
	res->changed_session = res->changed_data = 0;
}

static const char *error_name(int status)
{
	switch (status) {
	case 400: return "bad_request";
	case 401: return "unauthorized";
	case 403: return "forbidden";
	case 404: return "not_found";
	case 405: return "method_not_allowed";
	case 409: return "conflict";
	case 413: return "payload_too_large";
	case 429: return "too_many_requests";
	case 500: return "internal_error";
	case 502: return "bad_gateway";
	case 503: return "service_unavailable";
	case 504: return "gateway_timeout";
	default: return status >= 500 ? "server_error" : "client_error";
	}
}

void emu_result_error(emu_result *res, int status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	json_decref(res->body);
	json_decref(res->events);
	res->events = NULL;
	res->status = status;
	res->body = json_pack("{s:s, s:s, s:i}", "error", error_name(status),
			      "message", msg, "status", status);
}

static void ok(emu_result *res, int status, json_t *body)
{
	res->status = status;
	res->body = body;
	if (!body)
		emu_result_error(res, 500, "out of memory");
}

/* ---- small helpers ---- */

static int64_t change_time(struct emu_realm *r)
{
	int64_t now = sky__now_us();
	if (now <= r->last_change_us)
		now = r->last_change_us + 1;
	r->last_change_us = now;
	return now;
}

static json_t *time_string(int64_t us)
{
	char buf[32];
	sky__format_time(us, buf);
	return json_string(buf);
}

/* A valid id that is also a safe MQTT topic level. */
static int check_topic_id(const char *id, const char *field, char *err,
			  size_t errlen)
{
	if (sky__check_id(id, field) < 0) {
		snprintf(err, errlen, "%s", sky_error_last()->message);
		return -1;
	}
	if (strpbrk(id, "/+#")) {
		snprintf(err, errlen, "%s: must not contain '/', '+' or '#'",
			 field);
		return -1;
	}
	return 0;
}

static unsigned role_bits(const json_t *role)
{
	unsigned bits = 0;
	size_t i;
	const json_t *p;
	json_array_foreach(json_object_get(role, "permissions"), i, p) {
		const char *s = json_string_value(p);
		for (size_t k = 0;
		     s && k < sizeof(permissions) / sizeof(permissions[0]); k++)
			if (strcmp(s, permissions[k].name) == 0)
				bits |= permissions[k].bit;
	}
	return bits;
}

static int in_groups(const json_t *user, const char *gid)
{
	size_t i;
	const json_t *g;
	json_array_foreach(json_object_get(user, "groups"), i, g)
		if (json_is_string(g) && strcmp(json_string_value(g), gid) == 0)
			return 1;
	return 0;
}

/* Does the participant list name the user, directly or by a group? */
static int names_user(const json_t *parts, const char *uid, const json_t *user)
{
	size_t i;
	const json_t *p;
	json_array_foreach(parts, i, p) {
		const char *id = json_string_value(json_object_get(p, "id"));
		const char *type =
		    json_string_value(json_object_get(p, "type"));
		if (!id)
			continue;
		if (!type || strcmp(type, "user") == 0) {
			if (strcmp(id, uid) == 0)
				return 1;
		} else if (strcmp(type, "group") == 0 && in_groups(user, id)) {
			return 1;
		}
	}
	return 0;
}

static unsigned perms(const struct emu_realm *r, const char *uid,
		      const char *app)
{
	const json_t *user = json_object_get(r->users, uid);
	const json_t *a = json_object_get(r->apps, app);
	unsigned bits = 0;
	size_t i;
	const json_t *role;
	if (!user || !a)
		return 0;
	json_array_foreach(json_object_get(a, "roles"), i, role)
		if (names_user(json_object_get(role, "participants"), uid,
			       user))
			bits |= role_bits(role);
	return bits;
}

static int can_see(const struct emu_realm *r, const char *uid, unsigned bits,
		   const json_t *session)
{
	if (bits & P_READ_ANY)
		return 1;
	if (!(bits & P_READ_PART))
		return 0;
	return names_user(json_object_get(session, "participants"), uid,
			  json_object_get(r->users, uid));
}

static int is_read_only(const char *key)
{
	for (size_t i = 0;
	     i < sizeof(read_only_fields) / sizeof(read_only_fields[0]); i++)
		if (strcmp(key, read_only_fields[i]) == 0)
			return 1;
	return 0;
}

static const char *perm_name(unsigned bit)
{
	for (size_t k = 0; k < sizeof(permissions) / sizeof(permissions[0]);
	     k++)
		if (permissions[k].bit == bit)
			return permissions[k].name;
	return "?";
}

/*
 * Find a session the caller may see. On failure res holds the error
 * (404 for an unknown application or an unknown or invisible session).
 */
static json_t *find_session(struct emu_realm *r, const char *uid,
			    const char *app, const char *sid, unsigned *bits,
			    emu_result *res)
{
	if (!json_object_get(r->apps, app)) {
		emu_result_error(res, 404, "application not found");
		return NULL;
	}
	json_t *s = json_object_get(json_object_get(r->sessions, app), sid);
	*bits = perms(r, uid, app);
	if (!s || !can_see(r, uid, *bits, s)) {
		emu_result_error(res, 404, "session not found");
		return NULL;
	}
	return s;
}

/* Check a permission on a visible session that must still be open. */
static int writable(json_t *s, unsigned bits, unsigned need, emu_result *res)
{
	if (!(bits & need)) {
		emu_result_error(res, 403, "permission %s required",
				 perm_name(need));
		return 0;
	}
	const char *st = json_string_value(json_object_get(s, "status"));
	if (st && strcmp(st, "closed") == 0) {
		emu_result_error(res, 409, "session is closed");
		return 0;
	}
	return 1;
}

/* ---- events ---- */

static json_t *make_event(const json_t *s, const char *uid,
			  enum emu_event_type type, json_t *payload,
			  int64_t at_us)
{
	char eid[37];
	emu_uuid4(eid);
	json_t *ev = json_object();
	json_t *version = json_object_get(s, "version");
	EMU_JSON(json_object_set(ev, "applicationId",
				 json_object_get(s, "applicationId")));
	EMU_JSON(
	    json_object_set(ev, "sessionId", json_object_get(s, "sessionId")));
	EMU_JSON(json_object_set_new(ev, "eventId", json_string(eid)));
	EMU_JSON(json_object_set_new(ev, "source", json_string("api")));
	EMU_JSON(json_object_set_new(ev, "userId", json_string(uid)));
	EMU_JSON(json_object_set_new(ev, "createdAt", time_string(at_us)));
	EMU_JSON(json_object_set_new(ev, "timestamp", time_string(at_us)));
	EMU_JSON(json_object_set_new(
	    ev, "version", version ? json_deep_copy(version) : json_null()));
	EMU_JSON(json_object_set_new(ev, "eventType",
				     json_string(event_type_names[type])));
	EMU_JSON(json_object_set_new(ev,
				     type == EMU_EV_DATA_UPDATED ||
					     type == EMU_EV_EVENT_CREATED
					 ? "data"
					 : "session",
				     payload));
	return ev;
}

static void add_event(emu_result *res, json_t *ev)
{
	if (!res->events)
		res->events = json_array();
	EMU_JSON(json_array_append_new(res->events, ev));
}

/* The ids of a session as the start of a partial event payload. */
static json_t *ids_of(const json_t *s)
{
	json_t *o = json_object();
	EMU_JSON(json_object_set(o, "applicationId",
				 json_object_get(s, "applicationId")));
	EMU_JSON(
	    json_object_set(o, "sessionId", json_object_get(s, "sessionId")));
	return o;
}

static void mark_changed(emu_result *res, const char *app, const char *sid,
			 int session, int data)
{
	snprintf(res->app, sizeof(res->app), "%s", app);
	snprintf(res->sid, sizeof(res->sid), "%s", sid);
	res->changed_session |= session;
	res->changed_data |= data;
}

/* ---- loading ---- */

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

static int load_groups(struct emu_realm *r, const json_t *list, char *err,
		       size_t errlen)
{
	size_t i;
	const json_t *g;
	if (list && !json_is_array(list))
		return fail(err, errlen, "groups: must be an array");
	json_array_foreach(list, i, g) {
		char f[64];
		snprintf(f, sizeof(f), "groups[%zu].id", i);
		const char *id = json_string_value(json_object_get(g, "id"));
		if (!json_is_object(g) || !id)
			return fail(err, errlen, "%s: missing", f);
		if (sky__json_check_id(json_object_get(g, "id"), f) < 0)
			return fail(err, errlen, "%s",
				    sky_error_last()->message);
		if (json_object_get(r->groups, id))
			return fail(err, errlen, "%s: duplicate id '%s'", f,
				    id);
		EMU_JSON(json_object_set_new(r->groups, id, json_deep_copy(g)));
	}
	return 0;
}

static int load_users(struct emu_realm *r, const json_t *list, char *err,
		      size_t errlen)
{
	size_t i, j;
	const json_t *u, *g;
	if (!json_is_array(list))
		return fail(err, errlen, "users: missing or not an array");
	json_array_foreach(list, i, u) {
		const char *id = json_string_value(json_object_get(u, "id"));
		const char *name =
		    json_string_value(json_object_get(u, "username"));
		char f[64];
		snprintf(f, sizeof(f), "users[%zu]", i);
		if (!json_is_object(u))
			return fail(err, errlen, "%s: must be an object", f);
		if (!id ||
		    sky__json_check_id(json_object_get(u, "id"), "id") < 0)
			return fail(err, errlen,
				    "%s.id: missing or not a valid id", f);
		if (!name || !*name)
			return fail(err, errlen, "%s.username: missing", f);
		if (!json_is_string(json_object_get(u, "password")))
			return fail(err, errlen, "%s.password: missing", f);
		if (json_object_get(r->users, id))
			return fail(err, errlen, "%s.id: duplicate id '%s'", f,
				    id);
		if (emu_realm_login(r, name, NULL))
			return fail(err, errlen,
				    "%s.username: duplicate username '%s'", f,
				    name);
		const json_t *groups = json_object_get(u, "groups");
		if (groups && !json_is_array(groups))
			return fail(err, errlen, "%s.groups: must be an array",
				    f);
		json_array_foreach(groups, j, g) {
			if (!json_is_string(g) ||
			    !json_object_get(r->groups, json_string_value(g)))
				return fail(err, errlen,
					    "%s.groups[%zu]: unknown group", f,
					    j);
		}
		json_t *copy = json_deep_copy(u);
		if (!groups)
			EMU_JSON(
			    json_object_set_new(copy, "groups", json_array()));
		EMU_JSON(json_object_set_new(r->users, id, copy));
	}
	return 0;
}

static int check_participants_exist(const struct emu_realm *r,
				    const json_t *parts, const char *path,
				    char *err, size_t errlen)
{
	size_t i;
	const json_t *p;
	json_array_foreach(parts, i, p) {
		const char *id = json_string_value(json_object_get(p, "id"));
		const char *type =
		    json_string_value(json_object_get(p, "type"));
		int group = type && strcmp(type, "group") == 0;
		if (!json_object_get(group ? r->groups : r->users, id))
			return fail(err, errlen, "%s[%zu].id: unknown %s '%s'",
				    path, i, group ? "group" : "user", id);
	}
	return 0;
}

static int load_apps(struct emu_realm *r, const json_t *list, char *err,
		     size_t errlen)
{
	size_t i, j;
	const json_t *entry, *role;
	if (!json_is_array(list))
		return fail(err, errlen,
			    "applications: missing or not an array");
	json_array_foreach(list, i, entry) {
		char f[96];
		const json_t *app = json_object_get(entry, "application");
		const json_t *roles = json_object_get(entry, "roles");
		snprintf(f, sizeof(f), "applications[%zu].application", i);
		if (!app)
			return fail(err, errlen, "%s: missing", f);
		if (sky__validate_app(app, f) < 0)
			return fail(err, errlen, "%s",
				    sky_error_last()->message);
		const char *id =
		    json_string_value(json_object_get(app, "applicationId"));
		char idf[128];
		snprintf(idf, sizeof(idf), "%s.applicationId", f);
		if (check_topic_id(id, idf, err, errlen) < 0)
			return -1;
		if (json_object_get(r->apps, id))
			return fail(err, errlen, "%s: duplicate id '%s'", idf,
				    id);
		if (roles && !json_is_array(roles))
			return fail(err, errlen,
				    "applications[%zu].roles: must be an array",
				    i);
		json_array_foreach(roles, j, role) {
			snprintf(f, sizeof(f), "applications[%zu].roles[%zu]",
				 i, j);
			if (sky__validate_role(role, f) < 0)
				return fail(err, errlen, "%s",
					    sky_error_last()->message);
			const char *rname =
			    json_string_value(json_object_get(role, "name"));
			for (size_t k = 0; k < j; k++)
				if (!strcmp(
					rname,
					json_string_value(json_object_get(
					    json_array_get(roles, k), "name"))))
					return fail(
					    err, errlen,
					    "%s.name: duplicate role '%s'", f,
					    rname);
			char pf[128];
			snprintf(pf, sizeof(pf), "%s.participants", f);
			if (check_participants_exist(
				r, json_object_get(role, "participants"), pf,
				err, errlen) < 0)
				return -1;
		}
		/* Deep copies: the realm must not share values with the seed.
		 */
		json_t *copy = json_pack(
		    "{s:o, s:o}", "application", json_deep_copy(app), "roles",
		    roles ? json_deep_copy(roles) : json_array());
		EMU_JSON(json_object_set_new(r->apps, id, copy));
		EMU_JSON(json_object_set_new(r->sessions, id, json_object()));
		EMU_JSON(json_object_set_new(r->data, id, json_object()));
	}
	return 0;
}

/* Fill what a seed session may leave out, as the server would have. */
static void session_defaults(json_t *s, const json_t *app, int64_t now)
{
	if (!json_object_get(s, "status"))
		EMU_JSON(json_object_set_new(s, "status", json_string("open")));
	if (!json_object_get(s, "isDraft"))
		EMU_JSON(json_object_set_new(s, "isDraft", json_false()));
	if (!json_object_get(s, "version")) {
		json_t *v = json_object_get(app, "publishedVersion");
		EMU_JSON(json_object_set_new(
		    s, "version", v ? json_deep_copy(v) : json_integer(1)));
	}
	if (!json_object_get(s, "name"))
		EMU_JSON(json_object_set_new(s, "name", json_string("")));
	if (!json_object_get(s, "participants"))
		EMU_JSON(json_object_set_new(s, "participants", json_array()));
	if (!json_object_get(s, "properties"))
		EMU_JSON(json_object_set_new(s, "properties", json_object()));
	if (!json_object_get(s, "createdAt"))
		EMU_JSON(json_object_set_new(s, "createdAt", time_string(now)));
	if (!json_object_get(s, "modifiedAt"))
		EMU_JSON(json_object_set(s, "modifiedAt",
					 json_object_get(s, "createdAt")));
	if (!json_object_get(s, "createdBy"))
		EMU_JSON(
		    json_object_set_new(s, "createdBy", json_string("system")));
	if (!json_object_get(s, "modifiedBy"))
		EMU_JSON(json_object_set(s, "modifiedBy",
					 json_object_get(s, "createdBy")));
}

static int load_sessions(struct emu_realm *r, const json_t *list, char *err,
			 size_t errlen)
{
	size_t i;
	const json_t *entry;
	int64_t now = sky__now_us();
	if (list && !json_is_array(list))
		return fail(err, errlen, "sessions: must be an array");
	json_array_foreach(list, i, entry) {
		char f[64];
		const json_t *s = json_object_get(entry, "session");
		const json_t *d = json_object_get(entry, "data");
		snprintf(f, sizeof(f), "sessions[%zu].session", i);
		if (!s)
			return fail(err, errlen, "%s: missing", f);
		if (sky__validate_session(s, f, 1) < 0)
			return fail(err, errlen, "%s",
				    sky_error_last()->message);
		const char *app =
		    json_string_value(json_object_get(s, "applicationId"));
		const char *sid =
		    json_string_value(json_object_get(s, "sessionId"));
		char idf[96];
		snprintf(idf, sizeof(idf), "%s.sessionId", f);
		if (check_topic_id(sid, idf, err, errlen) < 0)
			return -1;
		const json_t *a = json_object_get(r->apps, app);
		if (!a)
			return fail(
			    err, errlen,
			    "%s.applicationId: unknown application '%s'", f,
			    app);
		json_t *bucket = json_object_get(r->sessions, app);
		if (json_object_get(bucket, sid))
			return fail(err, errlen, "%s: duplicate id '%s'", idf,
				    sid);
		char pf[96];
		snprintf(pf, sizeof(pf), "%s.participants", f);
		if (check_participants_exist(r,
					     json_object_get(s, "participants"),
					     pf, err, errlen) < 0)
			return -1;
		if (d && !json_is_object(d))
			return fail(err, errlen,
				    "sessions[%zu].data: must be an object", i);
		json_t *copy = json_deep_copy(s);
		session_defaults(copy, json_object_get(a, "application"), now);
		EMU_JSON(json_object_set_new(bucket, sid, copy));
		EMU_JSON(
		    json_object_set_new(json_object_get(r->data, app), sid,
					d ? json_deep_copy(d) : json_object()));
		r->n_sessions++;
		int64_t t;
		const char *m =
		    json_string_value(json_object_get(copy, "modifiedAt"));
		if (m && sky__parse_time(m, &t) == 0 && t > r->last_change_us)
			r->last_change_us = t;
	}
	return 0;
}

int emu_realm_load(struct emu_realm **out, const json_t *seed, char *err,
		   size_t errlen)
{
	struct emu_realm *r = calloc(1, sizeof(*r));
	if (!r)
		return fail(err, errlen, "out of memory");
	r->users = json_object();
	r->groups = json_object();
	r->apps = json_object();
	r->sessions = json_object();
	r->data = json_object();
	const char *name = json_string_value(json_object_get(seed, "realm"));
	if (!json_is_object(seed)) {
		fail(err, errlen, "the seed must be a JSON object");
		goto failed;
	}
	if (!name) {
		fail(err, errlen, "realm: missing or not a string");
		goto failed;
	}
	const json_t *format = json_object_get(seed, "format");
	if (format &&
	    (!json_is_string(format) ||
	     strcmp(json_string_value(format), "skylight-emu-seed/1"))) {
		fail(err, errlen, "format: expected \"skylight-emu-seed/1\"");
		goto failed;
	}
	if (check_topic_id(name, "realm", err, errlen) < 0)
		goto failed;
	r->name = strdup(name);
	if (load_groups(r, json_object_get(seed, "groups"), err, errlen) < 0 ||
	    load_users(r, json_object_get(seed, "users"), err, errlen) < 0 ||
	    load_apps(r, json_object_get(seed, "applications"), err, errlen) <
		0 ||
	    load_sessions(r, json_object_get(seed, "sessions"), err, errlen) <
		0)
		goto failed;
	*out = r;
	return 0;
failed:
	emu_realm_free(r);
	return -1;
}

void emu_realm_free(struct emu_realm *r)
{
	if (!r)
		return;
	free(r->name);
	json_decref(r->users);
	json_decref(r->groups);
	json_decref(r->apps);
	json_decref(r->sessions);
	json_decref(r->data);
	free(r);
}

json_t *emu_realm_export(const struct emu_realm *r)
{
	json_t *users = json_array(), *groups = json_array();
	json_t *apps = json_array(), *sessions = json_array();
	const char *key, *sid;
	json_t *v, *s;
	json_object_foreach(r->users, key, v)
		EMU_JSON(json_array_append(users, v));
	json_object_foreach(r->groups, key, v)
		EMU_JSON(json_array_append(groups, v));
	json_object_foreach(r->apps, key, v) {
		EMU_JSON(json_array_append(apps, v));
		json_t *data = json_object_get(r->data, key);
		json_object_foreach(json_object_get(r->sessions, key), sid, s)
			EMU_JSON(json_array_append_new(
			    sessions,
			    json_pack("{s:O, s:O}", "session", s, "data",
				      json_object_get(data, sid))));
	}
	return json_pack("{s:s, s:s, s:o, s:o, s:o, s:o}", "format",
			 "skylight-emu-seed/1", "realm", r->name, "groups",
			 groups, "users", users, "applications", apps,
			 "sessions", sessions);
}

const char *emu_realm_name(const struct emu_realm *r)
{
	return r->name;
}

size_t emu_realm_session_count(const struct emu_realm *r)
{
	return r->n_sessions;
}

const char *emu_realm_login(const struct emu_realm *r, const char *username,
			    const char *password)
{
	const char *id;
	json_t *u;
	json_object_foreach(r->users, id, u) {
		const char *name =
		    json_string_value(json_object_get(u, "username"));
		if (!name || strcmp(name, username) != 0)
			continue;
		/* NULL password: a lookup by name (for duplicate checks). */
		if (!password)
			return id;
		const char *pw =
		    json_string_value(json_object_get(u, "password"));
		return pw && strcmp(pw, password) == 0 ? id : NULL;
	}
	return NULL;
}

int emu_realm_user_exists(const struct emu_realm *r, const char *uid)
{
	return json_object_get(r->users, uid) != NULL;
}

const json_t *emu_realm_user_groups(const struct emu_realm *r, const char *uid)
{
	return json_object_get(json_object_get(r->users, uid), "groups");
}

const json_t *emu_realm_session(const struct emu_realm *r, const char *app,
				const char *sid)
{
	return json_object_get(json_object_get(r->sessions, app), sid);
}

const json_t *emu_realm_data(const struct emu_realm *r, const char *app,
			     const char *sid)
{
	return json_object_get(json_object_get(r->data, app), sid);
}

/* ---- reads ---- */

void emu_realm_list_apps(struct emu_realm *r, const char *uid, emu_result *res)
{
	json_t *list = json_array();
	const char *id;
	json_t *a;
	json_object_foreach(r->apps, id, a)
		if (perms(r, uid, id) & P_APP_READ)
			EMU_JSON(json_array_append_new(
			    list,
			    json_deep_copy(json_object_get(a, "application"))));
	ok(res, 200, list);
}

static const json_t *readable_app(struct emu_realm *r, const char *uid,
				  const char *app, emu_result *res)
{
	const json_t *a = json_object_get(r->apps, app);
	if (!a) {
		emu_result_error(res, 404, "application not found");
		return NULL;
	}
	if (!(perms(r, uid, app) & P_APP_READ)) {
		emu_result_error(res, 403,
				 "permission application:read "
				 "required");
		return NULL;
	}
	return a;
}

void emu_realm_get_app(struct emu_realm *r, const char *uid, const char *app,
		       emu_result *res)
{
	const json_t *a = readable_app(r, uid, app, res);
	if (a)
		ok(res, 200, json_deep_copy(json_object_get(a, "application")));
}

void emu_realm_list_roles(struct emu_realm *r, const char *uid, const char *app,
			  emu_result *res)
{
	const json_t *a = readable_app(r, uid, app, res);
	if (a)
		ok(res, 200, json_deep_copy(json_object_get(a, "roles")));
}

void emu_realm_list_sessions(struct emu_realm *r, const char *uid,
			     const char *app, emu_result *res)
{
	if (!json_object_get(r->apps, app)) {
		emu_result_error(res, 404, "application not found");
		return;
	}
	unsigned bits = perms(r, uid, app);
	if (!(bits & (P_READ_ANY | P_READ_PART))) {
		emu_result_error(res, 403,
				 "permission session:read:any or "
				 "session:read:participant required");
		return;
	}
	json_t *list = json_array();
	const char *sid;
	json_t *s;
	json_object_foreach(json_object_get(r->sessions, app), sid, s) {
		const char *st =
		    json_string_value(json_object_get(s, "status"));
		if (st && strcmp(st, "open") == 0 && can_see(r, uid, bits, s))
			EMU_JSON(
			    json_array_append_new(list, json_deep_copy(s)));
	}
	ok(res, 200, list);
}

void emu_realm_get_session(struct emu_realm *r, const char *uid,
			   const char *app, const char *sid, emu_result *res)
{
	unsigned bits;
	json_t *s = find_session(r, uid, app, sid, &bits, res);
	if (s)
		ok(res, 200, json_deep_copy(s));
}

void emu_realm_get_data(struct emu_realm *r, const char *uid, const char *app,
			const char *sid, emu_result *res)
{
	unsigned bits;
	if (find_session(r, uid, app, sid, &bits, res))
		ok(res, 200,
		   json_deep_copy(
		       json_object_get(json_object_get(r->data, app), sid)));
}

/* ---- writes ---- */

/* Validate a field a client may set; 0 or -1 with res set to 400. */
static int check_field(const char *key, const json_t *v, int creating,
		       emu_result *res)
{
	if (strcmp(key, "name") == 0) {
		if (!sky__json_is_text(v)) {
			emu_result_error(res, 400, "name: must be a string");
			return -1;
		}
	} else if (strcmp(key, "description") == 0) {
		if (!sky__json_is_text(v) && !json_is_null(v)) {
			emu_result_error(res, 400,
					 "description: must be a string");
			return -1;
		}
	} else if (strcmp(key, "properties") == 0) {
		if (sky__validate_properties(v, "properties") < 0) {
			emu_result_error(res, 400, "%s",
					 sky_error_last()->message);
			return -1;
		}
	} else if (strcmp(key, "status") == 0) {
		/* A new session is open (saying so is harmless); a patch
		 * may only close one. */
		const char *want = creating ? "open" : "closed";
		if (!sky__json_streq(v, want)) {
			emu_result_error(res, 400,
					 creating
					     ? "status: a new session is "
					       "\"open\""
					     : "status: only \"closed\" may "
					       "be set, to close the "
					       "session");
			return -1;
		}
	} else if (strcmp(key, "version") == 0 && creating) {
		/* A big number (beyond 64 bits) is an integer too. */
		if (!json_is_integer(v) && !json_is_string(v)) {
			emu_result_error(res, 400,
					 "version: must be an integer or a "
					 "string");
			return -1;
		}
	}
	return 0;
}

void emu_realm_create_session(struct emu_realm *r, const char *uid,
			      const char *app, const json_t *body,
			      emu_result *res)
{
	const json_t *a = json_object_get(r->apps, app);
	if (!a) {
		emu_result_error(res, 404, "application not found");
		return;
	}
	if (!(perms(r, uid, app) & P_CREATE)) {
		emu_result_error(res, 403,
				 "permission session:create required");
		return;
	}
	if (!json_is_object(body)) {
		emu_result_error(res, 400, "body: must be a JSON object");
		return;
	}
	if (!json_object_get(body, "name")) {
		emu_result_error(res, 400, "name: missing");
		return;
	}
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)body, key, v)
		if (check_field(key, v, 1, res) < 0)
			return;

	char sid[37];
	emu_uuid4(sid);
	int64_t now = change_time(r);
	json_t *s = json_object();
	const json_t *version = json_object_get(body, "version");
	if (!version)
		version = json_object_get(json_object_get(a, "application"),
					  "publishedVersion");
	EMU_JSON(json_object_set_new(s, "applicationId", json_string(app)));
	EMU_JSON(json_object_set_new(s, "sessionId", json_string(sid)));
	EMU_JSON(json_object_set_new(s, "status", json_string("open")));
	EMU_JSON(json_object_set_new(s, "isDraft", json_false()));
	EMU_JSON(json_object_set_new(
	    s, "version", version ? json_deep_copy(version) : json_integer(1)));
	EMU_JSON(json_object_set(s, "name", json_object_get(body, "name")));
	const json_t *desc = json_object_get(body, "description");
	if (json_is_string(desc))
		EMU_JSON(json_object_set_new(s, "description",
					     json_deep_copy(desc)));
	EMU_JSON(json_object_set_new(
	    s, "participants",
	    json_pack("[{s:s, s:s}]", "id", uid, "type", "user")));
	EMU_JSON(json_object_set_new(s, "createdBy", json_string(uid)));
	EMU_JSON(json_object_set_new(s, "createdAt", time_string(now)));
	EMU_JSON(json_object_set_new(s, "modifiedBy", json_string(uid)));
	EMU_JSON(json_object_set_new(s, "modifiedAt", time_string(now)));
	const json_t *props = json_object_get(body, "properties");
	EMU_JSON(json_object_set_new(
	    s, "properties", props ? json_deep_copy(props) : json_object()));
	/* Unknown fields round-trip; server fields in the body are ignored. */
	json_object_foreach((json_t *)body, key, v) {
		if (json_object_get(s, key) || is_read_only(key) ||
		    strcmp(key, "description") == 0 || json_is_null(v))
			continue;
		EMU_JSON(json_object_set_new(s, key, json_deep_copy(v)));
	}
	EMU_JSON(
	    json_object_set_new(json_object_get(r->sessions, app), sid, s));
	EMU_JSON(json_object_set_new(json_object_get(r->data, app), sid,
				     json_object()));
	r->n_sessions++;

	add_event(res, make_event(s, uid, EMU_EV_SESSION_CREATED,
				  json_deep_copy(s), now));
	mark_changed(res, app, sid, 1, 1);
	ok(res, 201, json_deep_copy(s));
}

void emu_realm_patch_session(struct emu_realm *r, const char *uid,
			     const char *app, const char *sid,
			     const json_t *body, emu_result *res)
{
	unsigned bits;
	json_t *s = find_session(r, uid, app, sid, &bits, res);
	if (!s)
		return;
	if (!json_is_object(body)) {
		emu_result_error(res, 400, "body: must be a JSON object");
		return;
	}
	const char *key;
	const json_t *v;
	int closing = json_object_get(body, "status") != NULL;
	int updating = json_object_size(body) > (size_t)closing;
	if (updating && !writable(s, bits, P_UPDATE, res))
		return;
	if (closing && !writable(s, bits, P_CLOSE, res))
		return;
	json_object_foreach((json_t *)body, key, v) {
		if (check_field(key, v, 0, res) < 0)
			return;
		if (is_read_only(key) &&
		    !json_equal(v, json_object_get(s, key))) {
			emu_result_error(res, 400, "%s: read-only", key);
			return;
		}
	}

	/* All checked: apply, noting what actually changed. */
	json_t *changed = json_object();
	int props_changed = 0;
	json_object_foreach((json_t *)body, key, v) {
		json_t *cur = json_object_get(s, key);
		if (is_read_only(key) || strcmp(key, "status") == 0)
			continue;
		if (strcmp(key, "properties") == 0) {
			if (!json_equal(cur, v)) {
				EMU_JSON(json_object_set_new(
				    s, key, json_deep_copy(v)));
				props_changed = 1;
			}
		} else if (json_is_null(v)) {
			/* null removes an optional field, as a merge would */
			if (cur) {
				(void)json_object_del(s,
						      key); /* present: cur */
				EMU_JSON(json_object_set_new(changed, key,
							     json_null()));
			}
		} else if (!cur || !json_equal(cur, v)) {
			EMU_JSON(
			    json_object_set_new(s, key, json_deep_copy(v)));
			EMU_JSON(json_object_set_new(changed, key,
						     json_deep_copy(v)));
		}
	}
	int closed = 0;
	if (closing) {
		EMU_JSON(
		    json_object_set_new(s, "status", json_string("closed")));
		closed = 1;
	}
	if (!props_changed && !json_object_size(changed) && !closed) {
		json_decref(changed);
		ok(res, 200, json_deep_copy(s));
		return;
	}
	int64_t now = change_time(r);
	EMU_JSON(json_object_set_new(s, "modifiedBy", json_string(uid)));
	EMU_JSON(json_object_set_new(s, "modifiedAt", time_string(now)));

	if (props_changed) {
		json_t *p = ids_of(s);
		EMU_JSON(json_object_set_new(
		    p, "properties",
		    json_deep_copy(json_object_get(s, "properties"))));
		add_event(
		    res, make_event(s, uid, EMU_EV_PROPERTIES_UPDATED, p, now));
	}
	if (json_object_size(changed)) {
		json_t *p = ids_of(s);
		EMU_JSON(json_object_update(p, changed));
		EMU_JSON(
		    json_object_set_new(p, "modifiedBy", json_string(uid)));
		EMU_JSON(
		    json_object_set_new(p, "modifiedAt", time_string(now)));
		add_event(res,
			  make_event(s, uid, EMU_EV_SESSION_UPDATED, p, now));
	}
	if (closed) {
		json_t *p = ids_of(s);
		EMU_JSON(
		    json_object_set_new(p, "status", json_string("closed")));
		add_event(res,
			  make_event(s, uid, EMU_EV_SESSION_CLOSED, p, now));
	}
	json_decref(changed);
	mark_changed(res, app, sid, 1, 0);
	ok(res, 200, json_deep_copy(s));
}

void emu_realm_patch_data(struct emu_realm *r, const char *uid, const char *app,
			  const char *sid, const json_t *patch, emu_result *res)
{
	unsigned bits;
	json_t *s = find_session(r, uid, app, sid, &bits, res);
	if (!s || !writable(s, bits, P_UPDATE, res))
		return;
	if (!json_is_object(patch)) {
		emu_result_error(res, 400,
				 "body: a data patch must be a JSON object");
		return;
	}
	json_t *bucket = json_object_get(r->data, app);
	json_t *data = json_incref(json_object_get(bucket, sid));
	json_t *merged = sky__merge_patch(data, (json_t *)patch);
	if (!merged) {
		emu_result_error(res, 500, "out of memory");
		return;
	}
	EMU_JSON(json_object_set_new(bucket, sid, merged));
	int64_t now = change_time(r);
	add_event(res, make_event(s, uid, EMU_EV_DATA_UPDATED,
				  json_deep_copy(patch), now));
	mark_changed(res, app, sid, 0, 1);
	ok(res, 200, json_deep_copy(merged));
}

void emu_realm_add_participant(struct emu_realm *r, const char *uid,
			       const char *app, const char *sid,
			       const json_t *body, emu_result *res)
{
	unsigned bits;
	json_t *s = find_session(r, uid, app, sid, &bits, res);
	if (!s || !writable(s, bits, P_UPDATE, res))
		return;
	if (!json_is_object(body)) {
		emu_result_error(res, 400, "body: must be a JSON object");
		return;
	}
	const char *id = json_string_value(json_object_get(body, "id"));
	const json_t *tv = json_object_get(body, "type");
	const char *type =
	    tv && !json_is_null(tv) ? json_string_value(tv) : "user";
	if (!json_object_get(body, "id")) {
		emu_result_error(res, 400, "id: missing");
		return;
	}
	if (!id || sky__json_check_id(json_object_get(body, "id"), "id") < 0) {
		emu_result_error(res, 400, "id: must be a valid id string");
		return;
	}
	if (!type || (strcmp(type, "user") && strcmp(type, "group")) ||
	    sky__json_has_nul(tv)) {
		emu_result_error(res, 400,
				 "type: must be \"user\" or \"group\"");
		return;
	}
	int group = strcmp(type, "group") == 0;
	if (!json_object_get(group ? r->groups : r->users, id)) {
		emu_result_error(res, 400, "id: no %s '%s' in this realm",
				 group ? "group" : "user", id);
		return;
	}
	json_t *parts = json_object_get(s, "participants");
	size_t i;
	json_t *p;
	json_array_foreach(parts, i, p) {
		const char *pid = json_string_value(json_object_get(p, "id"));
		const char *pt = json_string_value(json_object_get(p, "type"));
		if (pid && strcmp(pid, id) == 0 &&
		    strcmp(pt ? pt : "user", type) == 0) {
			/* Already there: idempotent, so a retried add is fine.
			 */
			ok(res, 200, json_deep_copy(s));
			return;
		}
	}
	EMU_JSON(json_array_append_new(
	    parts, json_pack("{s:s, s:s}", "id", id, "type", type)));
	int64_t now = change_time(r);
	EMU_JSON(json_object_set_new(s, "modifiedBy", json_string(uid)));
	EMU_JSON(json_object_set_new(s, "modifiedAt", time_string(now)));
	json_t *payload = ids_of(s);
	EMU_JSON(json_object_set_new(payload, "participants",
				     json_deep_copy(parts)));
	EMU_JSON(json_object_set_new(payload, "modifiedBy", json_string(uid)));
	EMU_JSON(json_object_set_new(payload, "modifiedAt", time_string(now)));
	add_event(res,
		  make_event(s, uid, EMU_EV_SESSION_UPDATED, payload, now));
	mark_changed(res, app, sid, 1, 0);
	ok(res, 200, json_deep_copy(s));
}

void emu_realm_add_event(struct emu_realm *r, const char *uid, const char *app,
			 const char *sid, const json_t *body, emu_result *res)
{
	unsigned bits;
	json_t *s = find_session(r, uid, app, sid, &bits, res);
	if (!s || !writable(s, bits, P_UPDATE, res))
		return;
	if (!body) {
		emu_result_error(res, 400, "body: the event data is missing");
		return;
	}
	int64_t now = change_time(r);
	json_t *ev =
	    make_event(s, uid, EMU_EV_EVENT_CREATED, json_deep_copy(body), now);
	ok(res, 201, json_deep_copy(ev));
	add_event(res, ev);
}
