/*
 * model.h - Skylight objects as JSON: parsing text under limits, and the
 * validation rules of DESIGN.md §2 for applications, roles, sessions and
 * their properties.
 *
 * Validation never changes its input and names the offending field in the
 * error message ("session.properties.site: must be a string"). Unknown
 * fields are allowed everywhere and kept by callers (round-trip).
 */
#ifndef SKY_MODEL_H
#define SKY_MODEL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	size_t max_bytes;   /* 0: no size limit */
	unsigned max_depth; /* 0: jansson's own limit */
} sky_json_limits;

/*
 * Parse `len` bytes of JSON text under `limits`. `what` names the input in
 * errors ("event", "patch"). Duplicate object keys are rejected (a client
 * and a server could otherwise disagree on which value counts), as are
 * invalid UTF-8, raw NUL bytes and member names holding U+0000; strings
 * holding U+0000 and numbers beyond 64 bits are kept (json.h). Any JSON
 * value is accepted; callers check the type. Returns 0 with *out a new
 * reference, SKY_EINVAL or SKY_ELIMIT.
 */
int sky__json_parse(const char *text, size_t len, const sky_json_limits *limits,
		    const char *what, json_t **out);

/*
 * Deepest nesting of `text` (arrays and objects), found without parsing,
 * stopping early once past `stop_at`. Strings are skipped correctly.
 */
unsigned sky__json_depth(const char *text, size_t len, unsigned stop_at);

/* Compact JSON text of `value` into a fresh buffer (NULL on out of memory),
 * by sky__json_dumps (json.h): shortest reals, big numbers verbatim. */
char *sky__json_dump(const json_t *value, size_t *len);

/* Validators: 0, or SKY_EINVAL / SKY_ELIMIT with the field named. `path`
 * is the name of the object in messages ("session", "event.session"). */
int sky__validate_properties(const json_t *props, const char *path);
int sky__validate_participants(const json_t *parts, const char *path);
/*
 * A session object. `full` requires what a whole session must have
 * (applicationId, sessionId); partial ones (event payloads) need only the
 * ids when `need_ids`. Every known field present must have its type.
 */
int sky__validate_session(const json_t *session, const char *path, int full);
int sky__validate_app(const json_t *app, const char *path);
int sky__validate_role(const json_t *role, const char *path);

/* The string at `key`, or NULL if absent or not a string. */
const char *sky__json_str(const json_t *obj, const char *key);
/* createdAt of a session in microseconds, 0 when absent. */
int64_t sky__session_created_us(const json_t *session);

#endif
