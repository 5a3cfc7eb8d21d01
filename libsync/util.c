/*
 * util.c - growable buffers, time parsing, hashing, id checks, the retry
 * delay, wiping secrets.
 * See util.h for the invariants.
 */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "error.h"
#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

int sky__buf_reserve(sky_buf *buf, size_t extra)
{
	size_t need = buf->len + extra + 1;
	if (need <= buf->cap)
		return 0;
	size_t cap = buf->cap ? buf->cap : 64;
	while (cap < need)
		cap *= 2;
	char *p = realloc(buf->data, cap);
	if (!p)
		return sky__error_nomem();
	buf->data = p;
	buf->cap = cap;
	return 0;
}

int sky__buf_append_grow(sky_buf *buf, const void *data, size_t len)
{
	if (sky__buf_reserve(buf, len) < 0)
		return -1;
	if (len)
		memcpy(buf->data + buf->len, data, len);
	buf->len += len;
	buf->data[buf->len] = '\0';
	return 0;
}

void sky__sort(void *base, size_t n, size_t size,
	       int (*cmp)(const void *, const void *))
{
	unsigned char *a = base, tmp[64];
	if (n > 16 || size > sizeof(tmp)) {
		if (n > 1)
			qsort(base, n, size, cmp);
		return;
	}
	for (size_t i = 1; i < n; i++) {
		unsigned char *x = a + i * size;
		if (cmp(x - size, x) <= 0)
			continue;
		memcpy(tmp, x, size);
		size_t j = i - 1;
		while (j > 0 && cmp(a + (j - 1) * size, tmp) > 0)
			j--;
		memmove(a + (j + 1) * size, a + j * size, (i - j) * size);
		memcpy(a + j * size, tmp, size);
	}
}

int sky__buf_puts(sky_buf *buf, const char *str)
{
	return sky__buf_append(buf, str, strlen(str));
}

int sky__buf_putc_grow(sky_buf *buf, char c)
{
	return sky__buf_append_grow(buf, &c, 1);
}

int sky__buf_printf(sky_buf *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, 0,
				      "bad format");
	if (sky__buf_reserve(buf, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	buf->len += (size_t)n;
	return 0;
}

int sky__buf_json_string(sky_buf *buf, const char *str, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	/* Worst case every byte becomes \u00XX. */
	if (sky__buf_reserve(buf, len * 6 + 2) < 0)
		return -1;
	char *out = buf->data + buf->len;
	*out++ = '"';
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)str[i];
		switch (c) {
		case '"':
			*out++ = '\\';
			*out++ = '"';
			break;
		case '\\':
			*out++ = '\\';
			*out++ = '\\';
			break;
		case '\n':
			*out++ = '\\';
			*out++ = 'n';
			break;
		case '\r':
			*out++ = '\\';
			*out++ = 'r';
			break;
		case '\t':
			*out++ = '\\';
			*out++ = 't';
			break;
		case '\b':
			*out++ = '\\';
			*out++ = 'b';
			break;
		case '\f':
			*out++ = '\\';
			*out++ = 'f';
			break;
		default:
			if (c < 0x20) {
				*out++ = '\\';
				*out++ = 'u';
				*out++ = '0';
				*out++ = '0';
				*out++ = hex[c >> 4];
				*out++ = hex[c & 15];
			} else {
				*out++ = (char)c;
			}
		}
	}
	*out++ = '"';
	buf->len = (size_t)(out - buf->data);
	buf->data[buf->len] = '\0';
	return 0;
}

void sky__buf_clear(sky_buf *buf)
{
	buf->len = 0;
	if (buf->data)
		buf->data[0] = '\0';
}

void sky__buf_free(sky_buf *buf)
{
	free(buf->data);
	buf->data = NULL;
	buf->len = buf->cap = 0;
}

char *sky__buf_detach(sky_buf *buf, size_t *len)
{
	if (!buf->data && sky__buf_reserve(buf, 0) < 0)
		return NULL;
	char *p = buf->data;
	if (len)
		*len = buf->len;
	buf->data = NULL;
	buf->len = buf->cap = 0;
	return p;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), H. Hinnant's algorithm.
 */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return 0;
}

int sky__parse_time(const char *s, int64_t *out_us)
{
	int y, mo, d, h, mi, sec;
	const char *p = s;
	if (!s)
		return -1;
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) ||
	    *p++ != '-' || digits(&p, 2, &d))
		return -1;
	if (*p != 'T' && *p != 't' && *p != ' ')
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) ||
	    *p++ != ':' || digits(&p, 2, &sec))
		return -1;
	/* Seconds may be 60 (a leap second, RFC 3339 5.7); the day must
	 * exist in its month (February 29 only in leap years). */
	static const int mdays[12] = {31, 29, 31, 30, 31, 30,
				      31, 31, 30, 31, 30, 31};
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 ||
	    mi > 59 || sec > 60)
		return -1;
	if (mo == 2 && d == 29 &&
	    !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)))
		return -1;
	int64_t frac_us = 0;
	if (*p == '.') {
		p++;
		int n = 0;
		while (*p >= '0' && *p <= '9') {
			if (n < 6)
				frac_us = frac_us * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0)
			return -1;
		for (; n < 6; n++)
			frac_us *= 10;
	}
	int64_t offset_s = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, oh, om;
		p++;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) ||
		    oh > 23 || om > 59)
			return -1;
		offset_s = sign * (oh * 3600 + om * 60);
	} else {
		return -1;
	}
	if (*p != '\0')
		return -1;
	int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
	int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - offset_s;
	*out_us = secs * 1000000 + frac_us;
	return 0;
}

void sky__format_time(int64_t us, char buf[32])
{
	int64_t secs = us / 1000000, frac = us % 1000000;
	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	time_t t = (time_t)secs;
	struct tm tm;
	gmtime_r(&t, &tm);
	/* Formatted into a larger buffer: the compiler cannot prove the
	 * fields fit, though a valid struct tm always does. */
	char tmp[96];
	snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
		 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
		 tm.tm_min, tm.tm_sec, (int)frac);
	memcpy(buf, tmp, 31);
	buf[31] = '\0';
}

int64_t sky__now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

uint64_t sky__hash64(const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

/* Length of the valid UTF-8 sequence at p (max n bytes), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	uint32_t cp;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

int sky__check_id(const char *id, const char *field)
{
	if (!id)
		return sky__error_input("%s: missing", field);
	size_t n = strlen(id);
	if (n == 0)
		return sky__error_input("%s: must not be empty", field);
	if (n > SKY_MAX_ID_BYTES)
		return sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
				      "%s: longer than %u bytes", field,
				      SKY_MAX_ID_BYTES);
	const unsigned char *p = (const unsigned char *)id;
	for (size_t i = 0; i < n;) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return sky__error_input(
			    "%s: control character at byte %zu", field, i);
		size_t l = utf8_seq(p + i, n - i);
		if (!l)
			return sky__error_input("%s: invalid UTF-8 at byte %zu",
						field, i);
		/* C1 controls (U+0080..U+009F, NEL among them) and the line
		 * and paragraph separators U+2028/U+2029 break lines in some
		 * readers of logs and NDJSON, as the ASCII controls do. */
		if ((l == 2 && p[i] == 0xc2 && p[i + 1] <= 0x9f) ||
		    (l == 3 && p[i] == 0xe2 && p[i + 1] == 0x80 &&
		     (p[i + 2] == 0xa8 || p[i + 2] == 0xa9)))
			return sky__error_input(
			    "%s: control or line-break character U+%04X "
			    "at byte %zu",
			    field,
			    l == 2 ? (unsigned)p[i + 1]
				   : 0x2000u + (p[i + 2] - 0x80u),
			    i);
		i += l;
	}
	return 0;
}

/* ---- CRC-32C ---- */

/*
 * Polynomials mod P are kept bit-reflected, as the crc32 instruction and
 * the table keep the CRC: bit 31 is the coefficient of x^0, bit 0 that of
 * x^31.
 */
#define CRC_POLY 0x82f63b78u
/*
 * One crc32 instruction takes 3 cycles before the next one of its chain can
 * start, while the CPU can start one per cycle: a single chain over the
 * whole input uses a third of it. Long inputs therefore go as blocks of
 * three equal lanes of up to CRC_LANE_MAX 8-byte words, three chains run side
 * by side and the three CRCs combined at the end of the block. Each lane
 * has CRC_LANE_MIN words at least (inputs from 96 bytes on), so that the
 * combining (about 15 cycles) costs less than it saves; CRC_LANE_MAX keeps
 * the constants of crc_shift within 2 KB.
 */
#define CRC_LANE_MAX 256
#define CRC_LANE_MIN 4

static uint32_t crc_table[256];
#if defined(__x86_64__) && defined(__GNUC__)
/*
 * crc_shift[w] = x^(64w - 33) mod P for w = 1..2 * CRC_LANE_MAX: a CRC
 * multiplied by it (carry-less, 64-bit product) and reduced by a crc32
 * instruction (the two multiply by x^33 more, see crc_sse42_3way) is that
 * CRC followed by w words of zeros.
 */
static uint32_t crc_shift[2 * CRC_LANE_MAX + 1];
#endif
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
/* 0: the table; 1: SSE 4.2, one chain; 2: SSE 4.2 and PCLMULQDQ, three;
 * 3: as 2, and AVX-512 with VPCLMULQDQ for inputs from CRC_FOLD_MIN on */
static int crc_hw;
#if defined(__x86_64__) && defined(__GNUC__)
/*
 * The folding constants of crc_fold512: for a fold over F bits, the pair
 * (x^(F+31) mod P, x^(F-33) mod P), for the low and the high 8 bytes of a
 * 16-byte lane; F = 2048 (the loop), 512 (one 64-byte register onto the
 * next), 128 (one lane onto the next).
 */
static uint64_t crc_fold_k[3][2];
#endif

/* a * x mod P */
static uint32_t crc_times_x(uint32_t a)
{
	return a & 1 ? (a >> 1) ^ CRC_POLY : a >> 1;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* a * b mod P, a bit at a time: only crc_init needs it. */
static uint32_t crc_multiply(uint32_t a, uint32_t b)
{
	uint32_t p = 0;
	for (int i = 0; i < 32; i++) {
		if (a & (0x80000000u >> i))
			p ^= b;
		b = crc_times_x(b);
	}
	return p;
}
#endif

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = crc_times_x(c);
		crc_table[i] = c;
	}
#if defined(__x86_64__) && defined(__GNUC__)
	uint32_t x64 = 0x80000000u; /* x^0 */
	for (int k = 0; k < 64; k++)
		x64 = crc_times_x(x64);
	crc_shift[1] = 1; /* x^31 */
	for (int w = 2; w <= 2 * CRC_LANE_MAX; w++)
		crc_shift[w] = crc_multiply(crc_shift[w - 1], x64);
	static const unsigned fold_bits[3] = {2048, 512, 128};
	for (int f = 0; f < 3; f++)
		for (int half = 0; half < 2; half++) {
			unsigned e = fold_bits[f] + (half ? -33 : 31);
			uint32_t k = 0x80000000u; /* x^0 */
			while (e--)
				k = crc_times_x(k);
			crc_fold_k[f][half] = k;
		}
	__builtin_cpu_init();
	if (__builtin_cpu_supports("sse4.2"))
		crc_hw = __builtin_cpu_supports("pclmul") ? 2 : 1;
	if (crc_hw == 2 && __builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("vpclmulqdq"))
		crc_hw = 3;
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
/* Eight bytes per instruction: a sealed value costs a few nanoseconds
 * per hundred bytes instead of about one per byte. */
__attribute__((target("sse4.2"))) static uint32_t
crc_sse42(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}

/* a * crc_shift[w] as a 64-bit carry-less product */
__attribute__((target("sse4.2,pclmul"))) static __m128i crc_clmul(uint32_t a,
								  size_t w)
{
	return _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)a),
				    _mm_cvtsi32_si128((int)crc_shift[w]), 0);
}

/*
 * Three chains (see CRC_LANE_MAX), about three times as fast from a few
 * hundred bytes on. The crc32 instruction is linear: over lanes A, B, C of
 * n bytes each, crc(c, ABC) = crc(c, A) x^16n + crc(0, B) x^8n + crc(0, C)
 * mod P. In the reflected form the carry-less product of two 32-bit
 * polynomials a and b reads, as a 64-bit one, a b x, and crc32 of 64 bits
 * v from 0 is v x^32 mod P: hence the x^-33 in crc_shift.
 */
__attribute__((target("sse4.2,pclmul"))) static uint32_t
crc_sse42_3way(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len >= 3 * 8 * CRC_LANE_MIN) {
		size_t w = len / 24;
		if (w > CRC_LANE_MAX)
			w = CRC_LANE_MAX;
		size_t lane = 8 * w;
		const unsigned char *end = p + lane;
		uint64_t c0 = crc, c1 = 0, c2 = 0;
		do {
			uint64_t a, b, c;
			memcpy(&a, p, 8);
			memcpy(&b, p + lane, 8);
			memcpy(&c, p + 2 * lane, 8);
			c0 = _mm_crc32_u64(c0, a);
			c1 = _mm_crc32_u64(c1, b);
			c2 = _mm_crc32_u64(c2, c);
			p += 8;
		} while (p < end);
		__m128i v = _mm_xor_si128(crc_clmul((uint32_t)c0, 2 * w),
					  crc_clmul((uint32_t)c1, w));
		crc =
		    (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(v)) ^
		    (uint32_t)c2;
		p += 2 * lane;
		len -= 3 * lane;
	}
	return crc_sse42(crc, p, len);
}

/*
 * Folding, for long inputs on CPUs with 512-bit carry-less multiplies:
 * four times the bytes per cycle of the three crc32 chains (a 10 KB
 * document's seal, which every read of it checks: ~360 ns -> ~100 ns).
 *
 * The input is taken as a polynomial M, bit-reflected like the CRC. A
 * 16-byte lane whose low 8 bytes read A and high 8 bytes B (each
 * reflected, the low ones of higher degree) and that F bits of the input
 * follow stands for (A x^64 + B) x^F; with kA = x^(F+31) and kB = x^(F-33)
 * mod P it is congruent to (A kA + B kB) x^33, and the carry-less products
 * of the reflected operands read, as a 128-bit lane, exactly that times
 * x^-33 (see crc_sse42_3way): so the two products, XORed into the lane F
 * bits on, leave M mod P as it was, and the input a lane shorter. The
 * loop folds four 64-byte registers over 256 bytes at a time; the four
 * are then folded onto the last one, which folds on over the whole
 * 64-byte blocks left, its four lanes onto the last lane, and that lane
 * and the rest of the input (under 64 bytes) go through the crc32
 * instruction from 0 (the CRC of M from 0 depends only on M mod P). The
 * CRC's starting value enters as the XOR of the first four bytes, which
 * is what the crc32 instruction makes of it.
 */
#define CRC_FOLD_MIN 512

__attribute__((target("avx512f,vpclmulqdq"))) static __m512i
crc_fold512(__m512i x, __m512i k, __m512i next)
{
	return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(x, k, 0x00),
					 _mm512_clmulepi64_epi128(x, k, 0x11),
					 next, 0x96);
}

__attribute__((target("sse4.2,pclmul"))) static __m128i
crc_fold128(__m128i x, __m128i k, __m128i next)
{
	return _mm_xor_si128(_mm_xor_si128(_mm_clmulepi64_si128(x, k, 0x00),
					   _mm_clmulepi64_si128(x, k, 0x11)),
			     next);
}

__attribute__((target("avx512f,vpclmulqdq,sse4.2,pclmul"))) static uint32_t
crc_avx512_fold(uint32_t crc, const unsigned char *p, size_t len)
{
	__m512i k2048 = _mm512_broadcast_i32x4(_mm_set_epi64x(
		    (long long)crc_fold_k[0][1], (long long)crc_fold_k[0][0])),
		k512 = _mm512_broadcast_i32x4(_mm_set_epi64x(
		    (long long)crc_fold_k[1][1], (long long)crc_fold_k[1][0]));
	__m128i k128 = _mm_set_epi64x((long long)crc_fold_k[2][1],
				      (long long)crc_fold_k[2][0]);
	__m512i x0 = _mm512_xor_si512(
		    _mm512_loadu_si512(p),
		    _mm512_zextsi128_si512(_mm_cvtsi32_si128((int)crc))),
		x1 = _mm512_loadu_si512(p + 64),
		x2 = _mm512_loadu_si512(p + 128),
		x3 = _mm512_loadu_si512(p + 192);
	for (p += 256, len -= 256; len >= 256; p += 256, len -= 256) {
		x0 = crc_fold512(x0, k2048, _mm512_loadu_si512(p));
		x1 = crc_fold512(x1, k2048, _mm512_loadu_si512(p + 64));
		x2 = crc_fold512(x2, k2048, _mm512_loadu_si512(p + 128));
		x3 = crc_fold512(x3, k2048, _mm512_loadu_si512(p + 192));
	}
	x1 = crc_fold512(x0, k512, x1);
	x2 = crc_fold512(x1, k512, x2);
	x3 = crc_fold512(x2, k512, x3);
	/* Whole 64-byte blocks of the rest fold in the same way, 512 bits
	 * on at a time, so that at most 63 bytes are left for the tail. */
	for (; len >= 64; p += 64, len -= 64)
		x3 = crc_fold512(x3, k512, _mm512_loadu_si512(p));
	__m128i a = _mm512_extracti32x4_epi32(x3, 0);
	a = crc_fold128(a, k128, _mm512_extracti32x4_epi32(x3, 1));
	a = crc_fold128(a, k128, _mm512_extracti32x4_epi32(x3, 2));
	a = crc_fold128(a, k128, _mm512_extracti32x4_epi32(x3, 3));
	uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(a));
	c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(a, 1));
	/* The rest goes through legacy-SSE code: with the upper halves of
	 * the vector registers dirty, each of its instructions would wait
	 * on them (a tail of 176 bytes or more took ~200 ns instead of
	 * ~10), and the compiler emits no vzeroupper before a tail call. */
	_mm256_zeroupper();
	return crc_sse42_3way((uint32_t)c, p, len);
}
#endif

uint32_t sky__crc32c(uint32_t crc, const void *data, size_t len)
{
	pthread_once(&crc_once, crc_init);
	const unsigned char *p = data;
	crc = ~crc;
#if defined(__x86_64__) && defined(__GNUC__)
	if (crc_hw == 3 && len >= CRC_FOLD_MIN)
		return ~crc_avx512_fold(crc, p, len);
	if (crc_hw >= 2)
		return ~crc_sse42_3way(crc, p, len);
	if (crc_hw)
		return ~crc_sse42(crc, p, len);
#endif
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- retry policy ---- */

uint64_t sky__random_u64(void)
{
	/* xorshift64*, seeded per thread from the kernel. */
	static _Thread_local uint64_t state;
	if (!state) {
		if (getrandom(&state, sizeof(state), GRND_NONBLOCK) !=
		    (ssize_t)sizeof(state))
			state =
			    (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&state;
		state |= 1;
	}
	state ^= state >> 12;
	state ^= state << 25;
	state ^= state >> 27;
	return state * 0x2545F4914F6CDD1Dull;
}

long sky__backoff_ms(unsigned attempt, long min_ms, long max_ms)
{
	long d = min_ms > 0 ? min_ms : 1;
	for (unsigned i = 0; i < attempt && d < max_ms; i++)
		d *= 2;
	if (d > max_ms)
		d = max_ms;
	long half = d / 2;
	return d - half +
	       (half > 0 ? (long)(sky__random_u64() % (uint64_t)(half + 1))
			 : 0);
}

/* ---- report lines ---- */

void sky__report(void (*report)(const char *line, void *payload), void *payload,
		 const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	if (!report)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	report(line, payload);
}

/* ---- secrets ---- */

void sky__wipe(char *s)
{
	if (s) {
		volatile char *p = s;
		while (*p)
			*p++ = 0;
	}
}

void sky__wipe_free(char *secret)
{
	sky__wipe(secret);
	free(secret);
}
