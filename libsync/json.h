/*
 * json.h - the one JSON text codec of the library and of the programs
 * built on its core (skysync, skylight-emu): every parse of JSON that came
 * from a server, a user or the cache, and every dump, goes through here, so
 * that a value read anywhere is written back the same everywhere.
 *
 * What it keeps true beyond jansson's own codec:
 * - Strings may hold U+0000 ("\u0000" is valid JSON): they are kept with
 *   their length and written back as \u0000. Object member names holding
 *   U+0000 are refused with a clear error, since jansson's parser cannot
 *   hold them (its objects are keyed by C strings when parsed).
 * - A raw NUL byte anywhere in the text is an error: JSON never allows one,
 *   and jansson would otherwise stop reading at it.
 * - Integers outside the int64 range and numbers beyond the range of a
 *   double ("big numbers") are kept as the exact text the input wrote and
 *   written back verbatim. In memory one is a jansson string whose first
 *   byte is 0xFF, a byte no valid UTF-8 holds, so no parsed string can be
 *   mistaken for one; sky__json_bignum() tells them apart.
 * - Reals are written as the shortest text that reads back as the same
 *   double (0.94, not 0.93999999999999995).
 * Apart from that the output is byte for byte jansson's JSON_COMPACT |
 * JSON_ENCODE_ANY: members in insertion order, no spaces, the same escapes.
 */
#ifndef SKY_JSON_H
#define SKY_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "util.h"

/* The first byte of the string holding a big number's text. */
#define SKY_JSON_BIGNUM_MARK '\xFF'

/*
 * json_loadb() with the rules above: JSON_ALLOW_NUL is always added to
 * `flags`, and a text holding a big number is refused if it has duplicate
 * members even without JSON_REJECT_DUPLICATES. Returns a new reference, or NULL
 * with `err` (may be NULL) set as jansson sets it; json_error_code(err) is
 * json_error_null_byte_in_key for a member name holding U+0000 and
 * json_error_null_character for a raw NUL byte.
 */
json_t *sky__json_loadb(const char *text, size_t len, size_t flags,
			json_error_t *err);
/* The same for a NUL-terminated text. */
json_t *sky__json_loads(const char *text, size_t flags, json_error_t *err);

/*
 * Append the compact text of `value` to `buf`. Returns 0, or -1 with an
 * out-of-memory error recorded.
 */
int sky__json_dump_buf(sky_buf *buf, const json_t *value);
/*
 * The compact text of `value` in a fresh NUL-terminated buffer (free with
 * free()), its length in *len when `len` is not NULL. The text never holds
 * a NUL byte (U+0000 is escaped), so strlen() of it is its length. NULL on
 * out of memory.
 */
char *sky__json_dumps(const json_t *value, size_t *len);

/*
 * The shortest text that strtod() reads back as `d` (a finite double), in
 * jansson's form: always with a '.' or an exponent, exponent without '+'
 * or leading zeros. Returns its length; `buf` holds at least 32 bytes.
 */
/*
 * The tree json_loadb(text, len, flags) would give, built in one pass over
 * the text, for the common case (json_load.c); NULL, with nothing recorded,
 * when the text is anything else (errors included), for the caller to give
 * to jansson, or NULL with *out_of_memory set when an allocation failed.
 * sky__json_loadb() tries it first.
 */
json_t *sky__json_fast_load(const char *text, size_t len, size_t flags,
			    int *out_of_memory);
/* The same, giving up (NULL, nothing recorded) on any value nested more
 * than `max_depth` levels deep (the outermost value is at level 1): a
 * tree it returns nests at most max_depth brackets deep. */
json_t *sky__json_fast_load_within(const char *text, size_t len, size_t flags,
				   unsigned max_depth, int *out_of_memory);

/*
 * The compact text of the JSON object `text` with the members of each
 * object sorted by name bytes, except inside arrays (where objects keep
 * their order): byte for byte what sky__doc_dump_sorted() writes of the
 * tree sky__json_parse() builds, straight from the text (json_load.c).
 * Appends it to `out` and sets *depth to its nesting (objects and arrays,
 * the outermost 1); returns 1. Returns 0 with `out` as it was when the
 * text is not the common case sky__json_fast_load() takes, repeats a name,
 * is not an object or nests deeper than `max_depth`; then the caller
 * parses it (*out_of_memory set: it failed for want of memory).
 */
int sky__json_sorted_text(const char *text, size_t len, size_t max_depth,
			  sky_buf *out, size_t *depth, int *out_of_memory);

/* A string as sky__json_dump_buf() writes it, quotes and escapes. */
int sky__json_dump_string(sky_buf *b, const char *s, size_t n);

size_t sky__json_real_text(double d, char *buf, size_t size);
/* The same by the general search alone (printf and strtod), which
 * sky__json_real_text() skips for short decimals; for tests. */
size_t sky__json_real_text_searched(double d, char *buf, size_t size);

/*
 * If `v` is a big number, its text (not NUL-terminated) and length;
 * otherwise NULL. The text is borrowed from `v`.
 */
const char *sky__json_bignum(const json_t *v, size_t *len);
/* A new big number of `len` bytes of number text (not checked). */
json_t *sky__json_bignum_new(const char *text, size_t len);
/* A JSON string proper: a string and not a big number. */
int sky__json_is_text(const json_t *v);

/* Is `v` a string equal to `s`, all of it (a U+0000 in `v` counts)? */
int sky__json_streq(const json_t *v, const char *s);
/* Does string `v` hold a U+0000 (so that C string calls would cut it)? */
int sky__json_has_nul(const json_t *v);

/*
 * sky__check_id() for a JSON value: 0, or SKY_EINVAL naming `field` when
 * `v` is not a string, or holds U+0000 (an id names a path and a key, where
 * a NUL would cut it short), or is not a valid id.
 */
int sky__json_check_id(const json_t *v, const char *field);

#endif
