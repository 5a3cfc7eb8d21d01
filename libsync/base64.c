/*
 * base64.c - base64url without padding, both ways. The decoder is strict
 * by default (the url alphabet only, no '='), so a cursor or token that
 * was changed on the way is refused rather than read as other bytes.
 */
#include "config.h"

#include "base64.h"
#include "util.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int sky__b64url_append(sky_buf *out, const void *data, size_t n)
{
	const unsigned char *p = data;
	char quad[4];
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t k = 2;
		if (i + 1 < n) {
			v |= (uint32_t)p[i + 1] << 8;
			k = 3;
		}
		if (i + 2 < n) {
			v |= p[i + 2];
			k = 4;
		}
		quad[0] = alphabet[(v >> 18) & 63];
		quad[1] = alphabet[(v >> 12) & 63];
		quad[2] = alphabet[(v >> 6) & 63];
		quad[3] = alphabet[v & 63];
		if (sky__buf_append(out, quad, k) < 0)
			return -1;
	}
	return 0;
}

static int value_of(int c, unsigned flags)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-' || (c == '+' && (flags & SKY_B64_LAX)))
		return 62;
	if (c == '_' || (c == '/' && (flags & SKY_B64_LAX)))
		return 63;
	return -1;
}

long sky__b64url_decode(const char *in, size_t len, unsigned flags,
			unsigned char *out, size_t cap)
{
	size_t n = 0, used = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (size_t i = 0; i < len; i++, used++) {
		if (in[i] == '=' && (flags & SKY_B64_LAX))
			break;
		int v = value_of((unsigned char)in[i], flags);
		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n == cap)
				return -1;
			out[n++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (used % 4 == 1)
		return -1;
	return (long)n;
}
