/*
 * api.c - the one table of Skylight REST calls (docs/PROTOCOL.md) and the
 * parsing of their answers.
 *
 * The paths themselves are in the protocol table (protocol.c): the
 * built-in one, or a protocol file for a deployment whose paths differ.
 *
 * Rules kept here:
 * - Ids go into paths percent-encoded byte by byte (only RFC 3986
 *   unreserved characters stay as they are), so "a/b", "..", "?x" or
 *   non-ASCII ids always stay one path segment.
 * - Answers are parsed with the cache's JSON parser (duplicate keys,
 *   invalid UTF-8, depth and size limits rejected) and their shape is
 *   checked before anyone uses them.
 * - Secrets (password, tokens) never go into an error message; buffers
 *   that held them are wiped before they are freed.
 */
#include "config.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "base64.h"
#include "error.h"
#include "json.h"
#include "protocol.h"
#include "util.h"

/* Each call's method and path template are in the protocol table
 * (protocol.c, or a protocol file); what the code needs of a call is here. */
static const sky_api_route routes[SKY_API_COUNT] = {
    [SKY_API_LOGIN] = {0, "log in"},
    [SKY_API_REFRESH] = {0, "refresh the token"},
    [SKY_API_APPS] = {1, "list applications"},
    [SKY_API_APP] = {1, "get application"},
    [SKY_API_ROLES] = {1, "list roles"},
    [SKY_API_SESSIONS] = {1, "list sessions"},
    [SKY_API_SESSION_CREATE] = {1, "create session"},
    [SKY_API_SESSION] = {1, "get session"},
    [SKY_API_SESSION_PATCH] = {1, "patch session"},
    [SKY_API_DATA] = {1, "get session data"},
    [SKY_API_DATA_PATCH] = {1, "patch session data"},
    [SKY_API_PARTICIPANT_ADD] = {1, "add participant"},
    [SKY_API_EVENT_SEND] = {1, "send session event"},
};

const sky_api_route *sky__api_route(sky_api_call call)
{
	assert((unsigned)call < SKY_API_COUNT);
	return &routes[call];
}

static int encode_id(sky_buf *b, const char *id)
{
	static const char hex[] = "0123456789ABCDEF";
	/* "." and ".." alone are dot-segments that a URL parser would
	 * squash: encode their dots too. */
	int dot_segment = !strcmp(id, ".") || !strcmp(id, "..");
	for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
		int keep = (*p >= 'A' && *p <= 'Z') ||
			   (*p >= 'a' && *p <= 'z') ||
			   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' ||
			   *p == '~' || (*p == '.' && !dot_segment);
		if (keep) {
			if (sky__buf_putc(b, (char)*p) < 0)
				return -1;
		} else {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			if (sky__buf_append(b, esc, 3) < 0)
				return -1;
		}
	}
	return 0;
}

int sky__api_url(const char *base, sky_api_call call, const char *realm,
		 const char *app, const char *sid, char **out)
{
	return sky__api_url_p(sky__protocol_builtin(), base, call, realm, app,
			      sid, out);
}

int sky__api_url_p(const sky_protocol *proto, const char *base,
		   sky_api_call call, const char *realm, const char *app,
		   const char *sid, char **out)
{
	const sky_api_route *r = sky__api_route(call);
	sky_buf b = SKY_BUF_INIT;
	size_t blen = strlen(base);
	while (blen && base[blen - 1] == '/')
		blen--;
	if (sky__buf_append(&b, base, blen) < 0)
		goto fail;
	for (const char *p = proto->path[call]; *p;) {
		const char *id = NULL;
		size_t skip = 0;
		if (!strncmp(p, "{realm}", 7))
			id = realm, skip = 7;
		else if (!strncmp(p, "{app}", 5))
			id = app, skip = 5;
		else if (!strncmp(p, "{sid}", 5))
			id = sid, skip = 5;
		if (skip) {
			if (!id || !*id) {
				sky__buf_free(&b);
				return sky__error_input("%s: an id is missing",
							r->name);
			}
			if (encode_id(&b, id) < 0)
				goto fail;
			p += skip;
		} else {
			if (sky__buf_putc(&b, *p++) < 0)
				goto fail;
		}
	}
	*out = sky__buf_detach(&b, NULL);
	return 0;
fail:
	sky__buf_free(&b);
	return -1;
}

sky_api_outcome sky__api_classify(const sky_http_response *res)
{
	if (res->too_large)
		return SKY_API_REJECTED;
	if (!res->transport_ok)
		return SKY_API_RETRY;
	long s = res->status;
	if (s >= 200 && s < 300)
		return SKY_API_OK;
	if (s == 401)
		return SKY_API_AUTH;
	if (s == 403 || s == 404)
		return SKY_API_GONE;
	if (s == 408 || s == 425 || s == 429 || s >= 500)
		return SKY_API_RETRY;
	return SKY_API_REJECTED;
}

void sky__api_server_message(const char *body, size_t len, char *buf,
			     size_t cap)
{
	buf[0] = '\0';
	if (!body || !len || cap < 2)
		return;
	json_t *o = sky__json_loadb(body, len < 65536 ? len : 65536, 0, NULL);
	const char *m = o ? sky__json_str(o, "message") : NULL;
	if (!m && o)
		m = sky__json_str(o, "error");
	if (m) {
		snprintf(buf, cap, "%s", m);
	} else {
		size_t n = len < cap - 1 ? len : cap - 1;
		memcpy(buf, body, n);
		buf[n] = '\0';
	}
	/* One line, printable. */
	for (char *p = buf; *p; p++)
		if ((unsigned char)*p < 0x20)
			*p = ' ';
	json_decref(o);
}

int sky__api_error(sky_api_call call, const char *app,
		   const sky_http_response *res)
{
	const sky_api_route *r = sky__api_route(call);
	char what[300];
	if (app)
		snprintf(what, sizeof(what), "%s of %.200s", r->name, app);
	else
		snprintf(what, sizeof(what), "%s", r->name);
	if (res->too_large)
		return sky__error_set(
		    SKY_ENETWORK, SKY_ERRSRC_SERVER, (int)res->status,
		    "%s: the answer is over the size limit", what);
	if (!res->transport_ok)
		return sky__error_set(SKY_ENETWORK, SKY_ERRSRC_NET,
				      res->curl_code, "%s: %s", what,
				      res->error);
	char msg[256];
	sky__api_server_message(res->body, res->len, msg, sizeof(msg));
	return sky__error_set(SKY_ENETWORK, SKY_ERRSRC_SERVER, (int)res->status,
			      "%s: HTTP %ld%s%s", what, res->status,
			      *msg ? ": " : "", msg);
}

/* ---- tokens ---- */

void sky__api_tokens_clear(sky_api_tokens *t)
{
	sky__wipe_free(t->access_token);
	sky__wipe_free(t->refresh_token);
	memset(t, 0, sizeof(*t));
}

int sky__api_parse_tokens(const char *body, size_t len, sky_api_tokens *out)
{
	sky_json_limits lim = {64 * 1024, 8};
	json_t *o = NULL;
	memset(out, 0, sizeof(*out));
	int rc = sky__json_parse(body, len, &lim, "token answer", &o);
	if (rc < 0)
		return rc;
	const json_t *at = json_object_get(o, "access_token");
	const json_t *rt = json_object_get(o, "refresh_token");
	const json_t *ex = json_object_get(o, "expires_in");
	const json_t *rex = json_object_get(o, "refresh_expires_in");
	if (!json_is_object(o))
		rc = sky__error_input("token answer: must be a JSON object");
	else if (!sky__json_is_text(at) || !json_string_length(at) ||
		 sky__json_has_nul(at))
		rc = sky__error_input("token answer.access_token: must be a "
				      "non-empty string without U+0000");
	else if (!sky__json_is_text(rt) || !json_string_length(rt) ||
		 sky__json_has_nul(rt))
		rc = sky__error_input("token answer.refresh_token: must be a "
				      "non-empty string without U+0000");
	else if (!json_is_integer(ex) || json_integer_value(ex) <= 0)
		rc = sky__error_input("token answer.expires_in: must be a "
				      "positive integer");
	else if (rex && !json_is_integer(rex))
		rc =
		    sky__error_input("token answer.refresh_expires_in: must be "
				     "an integer");
	if (rc == 0) {
		out->access_token = strdup(json_string_value(at));
		out->refresh_token = strdup(json_string_value(rt));
		out->expires_in_s = json_integer_value(ex);
		out->refresh_expires_in_s = rex ? json_integer_value(rex) : 0;
		if (!out->access_token || !out->refresh_token) {
			sky__api_tokens_clear(out);
			rc = sky__error_nomem();
		}
	}
	/* The parsed copy held the tokens too. */
	if (json_is_string(at))
		sky__wipe((char *)json_string_value(at));
	if (json_is_string(rt))
		sky__wipe((char *)json_string_value(rt));
	json_decref(o);
	return rc;
}

char *sky__api_login_body(const char *user, const char *password,
			  const char *realm, size_t *len)
{
	sky_buf b = SKY_BUF_INIT;
	if (sky__buf_puts(&b, "{\"username\":") < 0 ||
	    sky__buf_json_string(&b, user, strlen(user)) < 0 ||
	    sky__buf_puts(&b, ",\"password\":") < 0 ||
	    sky__buf_json_string(&b, password, strlen(password)) < 0 ||
	    sky__buf_puts(&b, ",\"realm\":") < 0 ||
	    sky__buf_json_string(&b, realm, strlen(realm)) < 0 ||
	    sky__buf_putc(&b, '}') < 0) {
		if (b.data)
			memset(b.data, 0, b.cap);
		sky__buf_free(&b);
		return NULL;
	}
	return sky__buf_detach(&b, len);
}

char *sky__api_refresh_body(const char *refresh_token, size_t *len)
{
	sky_buf b = SKY_BUF_INIT;
	if (sky__buf_puts(&b, "{\"refreshToken\":") < 0 ||
	    sky__buf_json_string(&b, refresh_token, strlen(refresh_token)) <
		0 ||
	    sky__buf_putc(&b, '}') < 0) {
		if (b.data)
			memset(b.data, 0, b.cap);
		sky__buf_free(&b);
		return NULL;
	}
	return sky__buf_detach(&b, len);
}

/* The claims of a JWT-shaped token (its middle part), or NULL. */
static json_t *jwt_claims(const char *token)
{
	const char *p = strchr(token, '.');
	if (!p)
		return NULL;
	const char *end = strchr(++p, '.');
	if (!end || end - p > 64 * 1024)
		return NULL;
	size_t n = (size_t)(end - p);
	unsigned char *dec = malloc(n + 1);
	if (!dec)
		return NULL;
	long o = sky__b64url_decode(p, n, SKY_B64_LAX, dec, n);
	if (o < 0) {
		free(dec);
		return NULL;
	}
	json_t *claims = sky__json_loadb((const char *)dec, (size_t)o, 0, NULL);
	free(dec);
	return claims;
}

char *sky__api_jwt_sub(const char *token)
{
	char *sub = NULL;
	json_t *claims = jwt_claims(token);
	const char *s = sky__json_str(claims, "sub");
	if (s && *s && sky__check_id(s, "token sub") == 0)
		sub = strdup(s);
	json_decref(claims);
	return sub;
}

json_t *sky__api_jwt_groups(const char *token)
{
	json_t *claims = jwt_claims(token);
	json_t *g = json_object_get(claims, "groups");
	json_t *out = NULL;
	if (json_is_array(g) && (out = json_array())) {
		size_t i;
		json_t *v;
		json_array_foreach(g, i, v) {
			/* Keycloak's group mapper may give paths ("/a/b"):
			 * the ids the roles name are what counts, so a value
			 * that is no valid id is left out. */
			const char *s = json_string_value(v);
			if (s && *s && sky__check_id(s, "token group") == 0 &&
			    json_array_append(out, v) < 0) {
				json_decref(out);
				out = NULL;
				break;
			}
		}
	}
	json_decref(claims);
	return out;
}

/* ---- answers ---- */

int sky__api_parse_array(const char *body, size_t len,
			 const sky_json_limits *limits, const char *what,
			 json_t **out)
{
	json_t *v = NULL;
	int rc = sky__json_parse(body, len, limits, what, &v);
	if (rc < 0)
		return rc;
	if (!json_is_array(v)) {
		json_decref(v);
		return sky__error_input("%s: the answer must be a JSON array",
					what);
	}
	size_t i;
	json_t *item;
	json_array_foreach(v, i, item) {
		if (!json_is_object(item)) {
			json_decref(v);
			return sky__error_input(
			    "%s[%zu]: must be a JSON object", what, i);
		}
	}
	*out = v;
	return 0;
}

int sky__api_parse_object(const char *body, size_t len,
			  const sky_json_limits *limits, const char *what,
			  json_t **out)
{
	json_t *v = NULL;
	int rc = sky__json_parse(body, len, limits, what, &v);
	if (rc < 0)
		return rc;
	if (!json_is_object(v)) {
		json_decref(v);
		return sky__error_input("%s: the answer must be a JSON object",
					what);
	}
	*out = v;
	return 0;
}

char *sky__api_default_broker(const char *server)
{
	const char *prefix = "https://api.";
	size_t pl = strlen(prefix);
	if (strncmp(server, prefix, pl) != 0 || !server[pl]) {
		sky__error_input("no default broker for %s: only a server "
				 "https://api.HOST has one "
				 "(ssl://mqtt.HOST:8883); give the broker URL",
				 server);
		return NULL;
	}
	const char *host = server + pl;
	size_t hl = strcspn(host, ":/?#");
	if (!hl) {
		sky__error_input("server URL %s: no host", server);
		return NULL;
	}
	char *out = NULL;
	if (asprintf(&out, "ssl://mqtt.%.*s:8883", (int)hl, host) < 0) {
		sky__error_nomem();
		return NULL;
	}
	return out;
}
