/*
 * base64.h - the one base64url codec of the library (RFC 4648 section 5, no
 * padding written): JWT payloads read from access tokens (api.c), query
 * cursors (query.c) and the emulator's tokens.
 */
#ifndef SKY_BASE64_H
#define SKY_BASE64_H

#include <stddef.h>

#include "util.h"

/* Append the base64url text of n bytes (no '=' padding) to out. 0, or
 * -1 with an out-of-memory error recorded. */
int sky__b64url_append(sky_buf *out, const void *data, size_t n);

/* Decoding also takes the standard alphabet's '+' and '/', and stops at
 * the first '=' (padding), as JWTs from other servers may have them. */
#define SKY_B64_LAX 1u

/*
 * Decode len characters of base64url into out (at most cap bytes).
 * Returns the number of bytes, or -1 (nothing recorded) for a character
 * outside the alphabet, a length no encoding has (4k + 1), or more than
 * cap bytes. Bits left over after the last whole byte are ignored.
 */
long sky__b64url_decode(const char *in, size_t len, unsigned flags,
			unsigned char *out, size_t cap);

#endif
