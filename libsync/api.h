/*
 * api.h - the Skylight REST calls (docs/PROTOCOL.md) in one table, and the
 * parsing of their answers under limits.
 *
 * Every request any module sends to the server is named here by a
 * sky_api_call; its method and path template live in the protocol table
 * (protocol.h), built in or read from a protocol file. Ids are
 * percent-encoded into paths (every byte but RFC 3986 unreserved ones), so
 * an id can never add a path segment or a query.
 */
#ifndef SKY_API_H
#define SKY_API_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "model.h"
#include "protocol_types.h"

typedef struct {
	int needs_token;  /* sends Authorization: Bearer */
	const char *name; /* for messages: "list sessions" */
} sky_api_route;

/* The route of a call (never NULL for a valid call). */
const sky_api_route *sky__api_route(sky_api_call call);

/*
 * base + the call's path with the placeholders percent-encoded, as a new
 * string in *out. Ids the template needs must not be NULL. 0 or -1.
 */
int sky__api_url(const char *base, sky_api_call call, const char *realm,
		 const char *app, const char *sid, char **out);
/* The same with the paths of `proto` (sky__api_url: the built-in ones). */
struct sky_protocol;
int sky__api_url_p(const struct sky_protocol *proto, const char *base,
		   sky_api_call call, const char *realm, const char *app,
		   const char *sid, char **out);

/* What to make of an answer. */
typedef enum {
	SKY_API_OK,	  /* 2xx */
	SKY_API_RETRY,	  /* no answer, 408, 425, 429, 5xx: transient */
	SKY_API_AUTH,	  /* 401: the token expired or is not valid */
	SKY_API_GONE,	  /* 403 or 404: not there, or not visible to us */
	SKY_API_REJECTED, /* any other 4xx, or an answer over the limit */
} sky_api_outcome;

sky_api_outcome sky__api_classify(const sky_http_response *res);

/*
 * Record a SKY_ENETWORK error describing a failed call: "GET sessions of
 * app X: HTTP 503: <server message>" or the transfer error. Returns
 * SKY_ENETWORK.
 */
int sky__api_error(sky_api_call call, const char *app,
		   const sky_http_response *res);

/* The server's message in an error answer {error, message}, into buf. */
void sky__api_server_message(const char *body, size_t len, char *buf,
			     size_t cap);

/* Tokens of a login or refresh answer. Strings are the caller's. */
typedef struct {
	char *access_token;
	char *refresh_token;
	int64_t expires_in_s;
	int64_t refresh_expires_in_s; /* 0 when the server gave none */
} sky_api_tokens;

/* Parse a token answer; 0, or SKY_EINVAL naming the field. */
int sky__api_parse_tokens(const char *body, size_t len, sky_api_tokens *out);
/* Free the strings, wiping them first. */
void sky__api_tokens_clear(sky_api_tokens *t);

/* Request bodies (new strings; the login body holds the password, so
 * callers wipe it with sky__wipe_free(), util.h). */
char *sky__api_login_body(const char *user, const char *password,
			  const char *realm, size_t *len);
char *sky__api_refresh_body(const char *refresh_token, size_t *len);
/*
 * The `sub` claim of a JWT access token (base64url payload), as a new
 * string, or NULL when the token is not a JWT or has no string `sub`.
 */
char *sky__api_jwt_sub(const char *token);

/*
 * The `groups` claim of a JWT access token (as Keycloak's group mapper
 * puts it there): a new JSON array of the values that are valid ids, or
 * NULL when the token is not a JWT or has no `groups` array.
 */
json_t *sky__api_jwt_groups(const char *token);

/*
 * Parse an answer that must be a JSON array of objects (lists), or a
 * JSON object (single reads), under `limits`. `what` names it in errors.
 * 0 with *out a new reference, SKY_EINVAL or SKY_ELIMIT.
 */
int sky__api_parse_array(const char *body, size_t len,
			 const sky_json_limits *limits, const char *what,
			 json_t **out);
int sky__api_parse_object(const char *body, size_t len,
			  const sky_json_limits *limits, const char *what,
			  json_t **out);

/*
 * The default broker of a server (docs/PROTOCOL.md): "https://api.HOST[...]"
 * gives "ssl://mqtt.HOST:8883". NULL (and an error) when the server URL
 * does not have that shape and the broker must be given.
 */
char *sky__api_default_broker(const char *server);

#endif
