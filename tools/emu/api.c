/*
 * api.c - the /v1 calls of docs/PROTOCOL.md: routing on decoded path segments,
 * the Bearer check, request bodies, and the hand-off to realm.c and
 * auth.c. Changes are persisted (with --state) before the answer leaves.
 *
 * Order of checks, as an API gateway in front of a real deployment would
 * do them: unknown route (404) before the token; the token (401) before
 * the method (405) and before any id or body is looked at; then ids
 * (400 when not valid ids), then the body (400, 413 when over 1 MiB),
 * then realm.c's rules (403, 404, 409).
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "answer.h"
#include "api.h"
#include "auth.h"
#include "emu.h"
#include "model.h"
#include "protocol.h"
#include "realm.h"
#include "skysync.h"
#include "state.h"
#include "util.h"

enum route {
	R_NONE,
	R_LOGIN,
	R_REFRESH,
	R_APPS,
	R_APP,
	R_ROLES,
	R_SESSIONS,
	R_SESSION,
	R_DATA,
	R_PARTICIPANTS,
	R_EVENTS,
};

static int is(const char *a, const char *b)
{
	return strcmp(a, b) == 0;
}

static enum route match(char **s, size_t n)
{
	if (n < 2 || !is(s[0], "v1"))
		return R_NONE;
	/* "//" or a trailing "/" leaves an empty segment: no such route. */
	for (size_t i = 0; i < n; i++)
		if (!*s[i])
			return R_NONE;
	if (is(s[1], "authentication")) {
		if (n == 5 && is(s[2], "login") && is(s[3], "realms"))
			return R_LOGIN;
		if (n == 4 && is(s[2], "token") && is(s[3], "refresh"))
			return R_REFRESH;
		return R_NONE;
	}
	if (!is(s[1], "applications"))
		return R_NONE;
	switch (n) {
	case 2: return R_APPS;
	case 3: return R_APP;
	case 4:
		return is(s[3], "roles")      ? R_ROLES
		       : is(s[3], "sessions") ? R_SESSIONS
					      : R_NONE;
	case 5: return is(s[3], "sessions") ? R_SESSION : R_NONE;
	case 6:
		if (!is(s[3], "sessions"))
			return R_NONE;
		return is(s[5], "data")		  ? R_DATA
		       : is(s[5], "participants") ? R_PARTICIPANTS
		       : is(s[5], "events")	  ? R_EVENTS
						  : R_NONE;
	default: return R_NONE;
	}
}

/* The methods a route allows, as an Allow header. */
static const char *allowed(enum route r)
{
	switch (r) {
	case R_LOGIN:
	case R_REFRESH:
	case R_PARTICIPANTS:
	case R_EVENTS: return "POST";
	case R_SESSIONS: return "GET, POST";
	case R_SESSION:
	case R_DATA: return "GET, PATCH";
	default: return "GET";
	}
}

static int method_ok(const char *allow, const char *method)
{
	size_t n = strlen(method);
	for (const char *p = allow; (p = strstr(p, method)); p += n)
		if ((p == allow || p[-1] == ' ') && (p[n] == ',' || !p[n]))
			return 1;
	return 0;
}

/* Parse the body as JSON; 0, or -1 with ans set (400 / 413). */
static int parse_body(const emu_request *rq, json_t **out, emu_answer *ans)
{
	sky_json_limits lim = {SKY_DEFAULT_MAX_EVENT_BYTES,
			       SKY_DEFAULT_MAX_DEPTH};
	*out = NULL;
	if (!rq->body || rq->body_len == 0) {
		emu_result_error(&ans->r, 400,
				 "body: missing (a JSON value "
				 "is expected)");
		return -1;
	}
	if (rq->body_len > lim.max_bytes) {
		emu_result_error(&ans->r, 413, "body: longer than %zu bytes",
				 lim.max_bytes);
		return -1;
	}
	/* Too deep is a bad body, not a large one: 400. */
	if (sky__json_parse(rq->body, rq->body_len, &lim, "body", out) < 0) {
		emu_result_error(&ans->r, 400, "%s", sky_error_last()->message);
		return -1;
	}
	return 0;
}

static int valid_id(const char *id, const char *field, emu_answer *ans)
{
	if (sky__check_id(id, field) < 0) {
		emu_result_error(&ans->r, 400, "%s", sky_error_last()->message);
		return 0;
	}
	return 1;
}

static const char *string_field(const json_t *body, const char *key,
				emu_answer *ans)
{
	const json_t *v = json_object_get(body, key);
	if (!v) {
		emu_result_error(&ans->r, 400, "%s: missing", key);
		return NULL;
	}
	if (!json_is_string(v)) {
		emu_result_error(&ans->r, 400, "%s: must be a string", key);
		return NULL;
	}
	return json_string_value(v);
}

static void login(struct emu *emu, const emu_request *rq, const char *realm,
		  emu_answer *ans)
{
	json_t *body;
	if (!is(realm, emu_realm_name(emu->realm))) {
		emu_result_error(&ans->r, 404, "realm not found");
		return;
	}
	if (parse_body(rq, &body, ans) < 0)
		return;
	if (!json_is_object(body)) {
		emu_result_error(&ans->r, 400, "body: must be a JSON object");
		goto done;
	}
	const char *user = string_field(body, "username", ans);
	const char *pass = user ? string_field(body, "password", ans) : NULL;
	if (!pass)
		goto done;
	const json_t *br = json_object_get(body, "realm");
	if (br && (!json_is_string(br) || !is(json_string_value(br), realm))) {
		emu_result_error(&ans->r, 400,
				 "realm: does not match the realm of the path");
		goto done;
	}
	const char *uid = emu_realm_login(emu->realm, user, pass);
	if (!uid) {
		emu_result_error(&ans->r, 401, "invalid username or password");
		goto done;
	}
	emu->stats.logins++;
	ans->r.status = 200;
	ans->r.body = emu_auth_issue(emu->auth, uid);
	if (!ans->r.body)
		emu_result_error(&ans->r, 500, "out of memory");
done:
	json_decref(body);
}

static void refresh(struct emu *emu, const emu_request *rq, emu_answer *ans)
{
	json_t *body;
	const char *why = NULL;
	if (parse_body(rq, &body, ans) < 0)
		return;
	if (!json_is_object(body)) {
		emu_result_error(&ans->r, 400, "body: must be a JSON object");
		goto done;
	}
	const char *tok = string_field(body, "refreshToken", ans);
	if (!tok)
		goto done;
	json_t *pair = emu_auth_refresh(emu->auth, tok, &why);
	if (!pair) {
		emu_result_error(&ans->r, 401, "refresh token: %s",
				 why ? why : "out of memory");
		goto done;
	}
	emu->stats.refreshes++;
	ans->r.status = 200;
	ans->r.body = pair;
done:
	json_decref(body);
}

/* The caller's user id, or NULL with a 401 in ans. */
static const char *authenticate(struct emu *emu, const emu_request *rq,
				emu_answer *ans)
{
	const char *a = rq->authorization;
	const char *why = "missing bearer token";
	const char *uid = NULL;
	if (a && strncasecmp(a, "Bearer ", 7) == 0) {
		const char *tok = a + 7;
		while (*tok == ' ')
			tok++;
		uid = emu_auth_check(emu->auth, tok, &why);
		/* A token for a user no longer in the realm is no token. */
		if (uid && !emu_realm_user_exists(emu->realm, uid)) {
			uid = NULL;
			why = "invalid token";
		}
	} else if (a) {
		why = "the Authorization header must be \"Bearer <token>\"";
	}
	if (!uid) {
		emu_result_error(&ans->r, 401, "%s", why);
		ans->bearer_challenge = 1;
	}
	return uid;
}

static void persist(struct emu *emu, const emu_result *res)
{
	if (!res->changed_session && !res->changed_data)
		return;
	emu->stats.changes++;
	if (!emu->state)
		return;
	const json_t *s = emu_realm_session(emu->realm, res->app, res->sid);
	const json_t *d = emu_realm_data(emu->realm, res->app, res->sid);
	emu_state_put_session(emu->state, res->app, res->sid,
			      res->changed_session ? s : NULL,
			      res->changed_data ? d : NULL);
}

/* Built-in paths have at most 6 segments. */
#define CANON_SEGMENTS 8

/* Does `tmpl` (a protocol path) name the segments seg[0..n)? Its
 * placeholders' values go to ids[realm, app, sid]. */
static int tmpl_match(const char *tmpl, char **seg, size_t n,
		      const char *ids[3])
{
	size_t i = 0;
	ids[0] = ids[1] = ids[2] = NULL;
	for (const char *p = tmpl + 1;; i++) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		if (i == n || !*seg[i])
			return 0;
		if (*p == '{')
			ids[p[1] == 'r' ? 0 : p[1] == 'a' ? 1 : 2] = seg[i];
		else if (strlen(seg[i]) != len || strncmp(seg[i], p, len))
			return 0;
		if (!end)
			return i + 1 == n;
		p = end + 1;
	}
}

/*
 * With --protocol, the request as the built-in layout names it: the call
 * whose method and path match, its built-in path filled with the ids
 * (segments into canon[], strings in store) and its built-in method.
 * 0, or -1 with ans set: 404 for no such path, 405 for a path whose calls
 * take other methods.
 */
static int to_builtin(struct emu *emu, const emu_request *rq, emu_request *out,
		      char **canon, char *store, size_t cap, emu_answer *ans)
{
	static char allow[64]; /* ans->allow must outlive the call */
	const sky_protocol *pr = emu->proto, *bi = sky__protocol_builtin();
	const char *ids[3];
	int call = -1;
	allow[0] = '\0';
	for (int c = 0; c < SKY_API_COUNT && call < 0; c++) {
		if (!tmpl_match(pr->path[c], rq->seg, rq->nseg, ids))
			continue;
		if (is(pr->method[c], rq->method))
			call = c;
		else if (strlen(allow) + strlen(pr->method[c]) + 3 <
			 sizeof(allow))
			snprintf(allow + strlen(allow),
				 sizeof(allow) - strlen(allow), "%s%s",
				 *allow ? ", " : "", pr->method[c]);
	}
	if (call < 0 && !*allow) {
		emu_result_error(&ans->r, 404, "no such endpoint: %s",
				 rq->path);
		return -1;
	}
	if (call < 0) {
		emu_result_error(&ans->r, 405, "method %s not allowed",
				 rq->method);
		ans->allow = allow;
		return -1;
	}
	if (!ids[0])
		ids[0] = emu_realm_name(emu->realm);
	*out = *rq;
	out->method = bi->method[call];
	out->seg = canon;
	out->nseg = 0;
	size_t used = 0;
	for (const char *p = bi->path[call] + 1;;) {
		const char *end = strchr(p, '/');
		size_t len = end ? (size_t)(end - p) : strlen(p);
		const char *v = p;
		if (*p == '{') {
			v = ids[p[1] == 'r' ? 0 : p[1] == 'a' ? 1 : 2];
			len = strlen(v);
		}
		if (used + len + 1 > cap || out->nseg == CANON_SEGMENTS) {
			emu_result_error(&ans->r, 414, "path: too long");
			return -1;
		}
		memcpy(store + used, v, len);
		store[used + len] = '\0';
		canon[out->nseg++] = store + used;
		used += len + 1;
		if (!end)
			return 0;
		p = end + 1;
	}
}

void emu_api_handle(struct emu *emu, const emu_request *rq, emu_answer *ans)
{
	emu_request built;
	char *canon[CANON_SEGMENTS], store[4096];
	if (emu->proto) {
		if (to_builtin(emu, rq, &built, canon, store, sizeof(store),
			       ans) < 0)
			return;
		rq = &built;
	}
	char **s = rq->seg;
	enum route r = match(s, rq->nseg);
	if (r == R_NONE) {
		emu_result_error(&ans->r, 404, "no such endpoint: %s",
				 rq->path);
		return;
	}
	const char *allow = allowed(r);
	if (r == R_LOGIN || r == R_REFRESH) {
		if (!method_ok(allow, rq->method)) {
			emu_result_error(&ans->r, 405, "method %s not allowed",
					 rq->method);
			ans->allow = allow;
		} else if (r == R_LOGIN) {
			login(emu, rq, s[4], ans);
		} else {
			refresh(emu, rq, ans);
		}
		return;
	}
	const char *uid = authenticate(emu, rq, ans);
	if (!uid)
		return;
	if (!method_ok(allow, rq->method)) {
		emu_result_error(&ans->r, 405, "method %s not allowed",
				 rq->method);
		ans->allow = allow;
		return;
	}
	const char *app = rq->nseg > 2 ? s[2] : NULL;
	const char *sid = rq->nseg > 4 ? s[4] : NULL;
	if ((app && !valid_id(app, "applicationId", ans)) ||
	    (sid && !valid_id(sid, "sessionId", ans)))
		return;
	int get = is(rq->method, "GET");
	json_t *body = NULL;
	if (!get && parse_body(rq, &body, ans) < 0)
		return;

	struct emu_realm *realm = emu->realm;
	emu_result *res = &ans->r;
	switch (r) {
	case R_APPS: emu_realm_list_apps(realm, uid, res); break;
	case R_APP: emu_realm_get_app(realm, uid, app, res); break;
	case R_ROLES: emu_realm_list_roles(realm, uid, app, res); break;
	case R_SESSIONS:
		if (get)
			emu_realm_list_sessions(realm, uid, app, res);
		else
			emu_realm_create_session(realm, uid, app, body, res);
		break;
	case R_SESSION:
		if (get)
			emu_realm_get_session(realm, uid, app, sid, res);
		else
			emu_realm_patch_session(realm, uid, app, sid, body,
						res);
		break;
	case R_DATA:
		if (get)
			emu_realm_get_data(realm, uid, app, sid, res);
		else
			emu_realm_patch_data(realm, uid, app, sid, body, res);
		break;
	case R_PARTICIPANTS:
		emu_realm_add_participant(realm, uid, app, sid, body, res);
		break;
	case R_EVENTS:
		emu_realm_add_event(realm, uid, app, sid, body, res);
		break;
	default: emu_result_error(res, 404, "no such endpoint"); break;
	}
	json_decref(body);
	persist(emu, res);
}
