/*
 * validate.h - the checks every write argument passes before anything
 * changes: text that must be valid UTF-8 within a length, ids that name
 * a REST path segment and an MQTT topic level, and the write bodies'
 * simple scalar fields. Each check names the argument it refuses in the
 * error (SKY_EINVAL, or SKY_ELIMIT for a length) and changes nothing.
 */
#ifndef SKY_VALIDATE_H
#define SKY_VALIDATE_H

#include <stddef.h>

#include <jansson.h>

/* Offset of the first byte of `s` (n bytes) that does not start a valid
 * UTF-8 sequence (overlong forms, surrogates and code points past
 * U+10FFFF are invalid), or n when all of it is valid. */
size_t sky__utf8_bad_offset(const char *s, size_t n);

/*
 * `text` is a C string of valid UTF-8, at most `max_bytes` long (0: no
 * limit). Returns 0, SKY_EINVAL (NULL or invalid UTF-8) or SKY_ELIMIT,
 * naming `field`.
 */
int sky__check_text(const char *text, size_t max_bytes, const char *field);

/*
 * An application or session id given to a write: a valid id
 * (sky__check_id) that can also stand as one REST path segment and one
 * MQTT topic level, so without '/', '+' and '#': the server publishes a
 * session's events on .../sessions/{sid}/{eventType}, where such a
 * character would split the level or be a wildcard.
 */
int sky__check_write_id(const char *id, const char *field);

/*
 * The application version a session is created with (the "version" of a
 * create body): a JSON integer >= 0, so that the create carries it as a
 * number. A string ("4"), a real (1.5, and 4.0 as well), a boolean, null,
 * an array or an object is refused with SKY_EINVAL naming `field`.
 */
int sky__check_app_version(const json_t *v, const char *field);

#endif
