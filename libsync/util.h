/*
 * util.h - small helpers shared by every module: a growable byte buffer,
 * big-endian integer codecs for LMDB keys (so that keys sort numerically),
 * RFC 3339 time parsing, a 64-bit hash, id validation, the retry delay,
 * and wiping secrets.
 *
 * sky_buf keeps one invariant: when data is not NULL, data[len] == '\0', so
 * its contents can always be used as a C string.
 */
#ifndef SKY_UTIL_H
#define SKY_UTIL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
	char *data;
	size_t len;
	size_t cap;
} sky_buf;

#define SKY_BUF_INIT                                                           \
	{                                                                      \
		NULL, 0, 0                                                     \
	}

/* Each returns 0, or -1 with an out-of-memory error recorded. */
int sky__buf_reserve(sky_buf *buf, size_t extra);
int sky__buf_puts(sky_buf *buf, const char *str);
/* The out-of-line halves of the two below: they grow the buffer. */
int sky__buf_append_grow(sky_buf *buf, const void *data, size_t len);
int sky__buf_putc_grow(sky_buf *buf, char c);

/* Inline while the bytes fit: the JSON writers call these once per
 * token, and the call cost as much as the copy. */
static inline int sky__buf_append(sky_buf *buf, const void *data, size_t len)
{
	if (len < buf->cap && buf->len < buf->cap - len) {
		if (len) /* data may be NULL then */
			__builtin_memcpy(buf->data + buf->len, data, len);
		buf->len += len;
		buf->data[buf->len] = '\0';
		return 0;
	}
	return sky__buf_append_grow(buf, data, len);
}

static inline int sky__buf_putc(sky_buf *buf, char c)
{
	if (buf->len + 1 < buf->cap) {
		buf->data[buf->len++] = c;
		buf->data[buf->len] = '\0';
		return 0;
	}
	return sky__buf_putc_grow(buf, c);
}
int sky__buf_printf(sky_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append `str` as a JSON string literal (quotes and escapes). */
int sky__buf_json_string(sky_buf *buf, const char *str, size_t len);
void sky__buf_clear(sky_buf *buf);
void sky__buf_free(sky_buf *buf);
/* Hand the contents over (NUL-terminated, never NULL on success). */
char *sky__buf_detach(sky_buf *buf, size_t *len);

/*
 * qsort(), with an insertion sort for the few elements (up to 16, of up
 * to 64 bytes) that objects' members usually are: no indirect copies, and
 * n - 1 comparisons when they come in order.
 */
void sky__sort(void *base, size_t n, size_t size,
	       int (*cmp)(const void *, const void *));

/*
 * Big-endian codecs. On a little-endian GCC or clang target they are one
 * load or store and a byte swap: the byte-at-a-time forms below cost ~50
 * instructions a 64-bit field, and a session record's header has five.
 */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) &&                            \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define SKY__BSWAP_CODECS 1
#endif

static inline void sky__put_be64(unsigned char *p, uint64_t v)
{
#ifdef SKY__BSWAP_CODECS
	v = __builtin_bswap64(v);
	__builtin_memcpy(p, &v, 8);
#else
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
#endif
}

static inline uint64_t sky__get_be64(const unsigned char *p)
{
#ifdef SKY__BSWAP_CODECS
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return __builtin_bswap64(v);
#else
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
#endif
}

static inline void sky__put_be32(unsigned char *p, uint32_t v)
{
#ifdef SKY__BSWAP_CODECS
	v = __builtin_bswap32(v);
	__builtin_memcpy(p, &v, 4);
#else
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
#endif
}

static inline uint32_t sky__get_be32(const unsigned char *p)
{
#ifdef SKY__BSWAP_CODECS
	uint32_t v;
	__builtin_memcpy(&v, p, 4);
	return __builtin_bswap32(v);
#else
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) |
	       ((uint32_t)p[2] << 8) | p[3];
#endif
}

/*
 * Signed microseconds encoded so that byte order equals numeric order
 * (flip the sign bit).
 */
static inline void sky__put_time(unsigned char *p, int64_t us)
{
	sky__put_be64(p, (uint64_t)us ^ 0x8000000000000000ull);
}

static inline int64_t sky__get_time(const unsigned char *p)
{
	return (int64_t)(sky__get_be64(p) ^ 0x8000000000000000ull);
}

/*
 * Parse an RFC 3339 time ("2024-05-01T12:00:00Z", fractions and offsets
 * allowed) into microseconds since the epoch, UTC. Returns 0 or -1 (no
 * error recorded: callers name the field).
 */
int sky__parse_time(const char *text, int64_t *out_us);
/* Format microseconds as "YYYY-MM-DDTHH:MM:SS.ffffffZ" into buf[32]. */
void sky__format_time(int64_t us, char buf[32]);
/* Wall clock, microseconds since the epoch. */
int64_t sky__now_us(void);

/* FNV-1a, 64 bits: for hashing long keys; collisions are checked by callers. */
uint64_t sky__hash64(const void *data, size_t len);

/*
 * An id (application, session, event, role name) is 1..SKY_MAX_ID_BYTES
 * bytes of valid UTF-8 with no control characters. Returns 0 or -1 and
 * records SKY_EINVAL naming `field`.
 */
int sky__check_id(const char *id, const char *field);

/*
 * CRC-32C (Castagnoli) of `len` bytes, continuing from `crc` (0 to
 * start): the journal's records and the store's sealed values. Uses the
 * SSE 4.2 instruction where the CPU has it (from 96 bytes on, three chains
 * of it at once where PCLMULQDQ combines them), a table otherwise; all
 * give the same value.
 */
uint32_t sky__crc32c(uint32_t crc, const void *data, size_t len);

/*
 * The retry policy shared by REST calls and broker reconnects: the delay
 * before try number `attempt` (0 for the first retry) is min_ms * 2^attempt
 * capped at max_ms, with "equal jitter" (a uniformly random half of it on
 * top of the other half), so clients that failed together do not retry
 * together. A server's Retry-After overrides it where one was given.
 */
long sky__backoff_ms(unsigned attempt, long min_ms, long max_ms);

/* A random number (not for secrets: jitter and client id digits). */
uint64_t sky__random_u64(void);

/* Overwrite the string's bytes with zeros (a password, a token) in a way
 * the compiler keeps; NULL is fine. */
void sky__wipe(char *s);
/* sky__wipe, then free(). */
void sky__wipe_free(char *secret);

/* Format one line (at most 1023 bytes, cut beyond) and hand it to
 * report(line, payload) (a sky_report_cb); nothing when report is NULL. */
void sky__report(void (*report)(const char *line, void *payload), void *payload,
		 const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
