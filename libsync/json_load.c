/*
 * json_load.c - the fast way into a jansson tree for the JSON a cache
 * meets every day: sessions, documents, patches and events, parsed in one
 * pass over the text that builds the tree directly.
 *
 * jansson's own loader reads its input a character at a time through a
 * callback and copies every token into a buffer before it builds the
 * value: most of the cost of taking a snapshot's sessions (~250
 * instructions a byte), and half of applying a small event. This parser
 * walks the bytes in place and calls jansson's constructors with what it
 * found, so the tree is the one json_loadb() builds: the same values,
 * types and member order.
 *
 * What it keeps true: sky__json_fast_load() returns a tree only when
 * json_loadb() with the same flags would return an equal one (same
 * types, same member order). It takes the common case and gives up,
 * returning NULL with nothing allocated, on anything else: text that is
 * not valid JSON, a duplicate member, \u0000 or a surrogate escape, an
 * integer of more than 18 digits, a real strtod() does not read exactly
 * into a finite double (or a locale whose decimal point is not '.'),
 * nesting deeper than FAST_MAX_DEPTH, flags other than JSON_DECODE_ANY,
 * JSON_REJECT_DUPLICATES and JSON_ALLOW_NUL. The caller (sky__json_loadb)
 * then runs jansson, which gives every error and every rare form its own
 * answer; nothing is ever refused here for what the text says. A failed
 * allocation is the one thing it reports itself (as jansson would: the
 * parse fails, out of memory), rather than retry with less to spare.
 * tests/test_json.c holds the two against each other on random values,
 * random edits of them and the JSON corpus of tests/data/json.
 */
#include "config.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "json.h"

/* Deeper than this goes to jansson (whose limit is 2048), so that the
 * recursion here stays a few tens of kilobytes of stack. */
#define FAST_MAX_DEPTH 256

typedef struct {
	const unsigned char *p, *end;
	unsigned max_depth; /* values nested deeper go to jansson */
	int oom;	    /* an allocation failed: say so, do not hand on */
	char *buf;	    /* decoded strings with escapes */
	size_t cap;
	char inline_buf[256];
} parser;

static json_t *parse_value(parser *ps, unsigned depth);

static void skip_ws(parser *ps)
{
	while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' ||
				   *ps->p == '\r' || *ps->p == '\t'))
		ps->p++;
}

/*
 * After a member or element: 1 when `close` ends the container (consumed),
 * 0 when a ',' says another follows (consumed, with the white space after
 * it), -1 for anything else.
 */
static int next_item(parser *ps, char close)
{
	skip_ws(ps);
	if (ps->p >= ps->end)
		return -1;
	if (*ps->p == close) {
		ps->p++;
		return 1;
	}
	if (*ps->p++ != ',')
		return -1;
	skip_ws(ps);
	return 0;
}

/*
 * The length of the UTF-8 sequence at p (its first byte >= 0x80), or 0
 * when it is not a valid one: no overlong forms, no surrogates, nothing
 * above U+10FFFF (RFC 3629, as jansson checks).
 */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
	unsigned c = p[0];
	size_t n;
	unsigned lo = 0x80, hi = 0xbf;
	if (c < 0xc2 || c > 0xf4)
		return 0;
	if (c < 0xe0) {
		n = 2;
	} else if (c < 0xf0) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	}
	if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return n;
}

static int buf_room(parser *ps, size_t need)
{
	if (need <= ps->cap)
		return 0;
	size_t cap = ps->cap * 2 > need ? ps->cap * 2 : need;
	char *b =
	    ps->buf == ps->inline_buf ? malloc(cap) : realloc(ps->buf, cap);
	if (!b) {
		ps->oom = 1;
		return -1;
	}
	if (ps->buf == ps->inline_buf)
		memcpy(b, ps->inline_buf, sizeof(ps->inline_buf));
	ps->buf = b;
	ps->cap = cap;
	return 0;
}

static int hex4(const unsigned char *p, unsigned *out)
{
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i], d;
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return -1;
		v = v * 16 + d;
	}
	*out = v;
	return 0;
}

/*
 * The string at ps->p (its opening quote): *s and *n give its bytes,
 * pointing into the text when it has no escapes, else into ps->buf.
 * Returns 0, or -1 to give up.
 */
static int parse_string(parser *ps, const char **s, size_t *n)
{
	const unsigned char *p = ps->p + 1, *end = ps->end, *start = p;
	/* The plain run: most strings are nothing else. */
	while (p < end) {
#ifdef __SSE2__
		/* Sixteen bytes at a time past plain ASCII: a quote, a
		 * backslash, a control byte or one of 0x80 and up (the signed
		 * compare takes both of the last as below 0x20) stops it. */
		const __m128i quote = _mm_set1_epi8('"'),
			      backslash = _mm_set1_epi8('\\'),
			      space = _mm_set1_epi8(0x20);
		while (end - p >= 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			unsigned stop =
			    (unsigned)_mm_movemask_epi8(_mm_or_si128(
				_mm_or_si128(_mm_cmpeq_epi8(v, quote),
					     _mm_cmpeq_epi8(v, backslash)),
				_mm_cmplt_epi8(v, space)));
			if (stop) {
				p += __builtin_ctz(stop);
				break;
			}
			p += 16;
		}
		if (p >= end)
			break;
#endif
		unsigned c = *p;
		if (c == '"') {
			*s = (const char *)start;
			*n = (size_t)(p - start);
			ps->p = p + 1;
			return 0;
		}
		if (c == '\\' || c < 0x20)
			break;
		if (c < 0x80) {
			p++;
		} else {
			size_t k = utf8_seq(p, end);
			if (!k)
				return -1;
			p += k;
		}
	}
	if (p >= end || *p < 0x20)
		return -1;
	/* Escapes: decode into the buffer, the plain run first. */
	size_t len = (size_t)(p - start);
	if (buf_room(ps, len + 64) < 0)
		return -1;
	memcpy(ps->buf, start, len);
	while (p < end) {
		unsigned c = *p;
		if (buf_room(ps, len + 4) < 0)
			return -1;
		if (c == '"') {
			*s = ps->buf;
			*n = len;
			ps->p = p + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c >= 0x80) {
			size_t k = utf8_seq(p, end);
			if (!k)
				return -1;
			memcpy(ps->buf + len, p, k);
			len += k;
			p += k;
			continue;
		}
		if (c != '\\') {
			ps->buf[len++] = (char)c;
			p++;
			continue;
		}
		if (end - p < 2)
			return -1;
		switch (p[1]) {
		case '"': ps->buf[len++] = '"'; break;
		case '\\': ps->buf[len++] = '\\'; break;
		case '/': ps->buf[len++] = '/'; break;
		case 'b': ps->buf[len++] = '\b'; break;
		case 'f': ps->buf[len++] = '\f'; break;
		case 'n': ps->buf[len++] = '\n'; break;
		case 'r': ps->buf[len++] = '\r'; break;
		case 't': ps->buf[len++] = '\t'; break;
		case 'u': {
			unsigned u;
			/* U+0000 and surrogates (pairs or lone): jansson's. */
			if (end - p < 6 || hex4(p + 2, &u) < 0 || u == 0 ||
			    (u >= 0xd800 && u <= 0xdfff))
				return -1;
			if (u < 0x80) {
				ps->buf[len++] = (char)u;
			} else if (u < 0x800) {
				ps->buf[len++] = (char)(0xc0 | (u >> 6));
				ps->buf[len++] = (char)(0x80 | (u & 0x3f));
			} else {
				ps->buf[len++] = (char)(0xe0 | (u >> 12));
				ps->buf[len++] =
				    (char)(0x80 | ((u >> 6) & 0x3f));
				ps->buf[len++] = (char)(0x80 | (u & 0x3f));
			}
			p += 6;
			continue;
		}
		default: return -1;
		}
		p += 2;
	}
	return -1;
}

static int is_digit(unsigned c)
{
	return c >= '0' && c <= '9';
}

/* A number token, RFC 8259's grammar; integers of up to 18 digits and
 * reals that strtod() reads exactly into a finite double. */
/* A number token at ps->p, JSON's grammar: where it ends, whether it is
 * a real (a fraction or an exponent), and its integer digits. */
typedef struct {
	const unsigned char *start, *digits, *end;
	int negative, real;
} number_token;

static int scan_number(const parser *ps, number_token *t)
{
	const unsigned char *p = ps->p, *end = ps->end;
	t->start = p;
	t->negative = 0;
	t->real = 0;
	if (*p == '-') {
		t->negative = 1;
		p++;
	}
	t->digits = p;
	if (p < end && *p == '0')
		p++;
	else
		while (p < end && is_digit(*p))
			p++;
	if (p == t->digits)
		return -1;
	if (p < end && *p == '.') {
		t->real = 1;
		const unsigned char *f = ++p;
		while (p < end && is_digit(*p))
			p++;
		if (p == f)
			return -1;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		t->real = 1;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		const unsigned char *x = p;
		while (p < end && is_digit(*p))
			p++;
		if (p == x)
			return -1;
	}
	if (p < end && is_digit(*p))
		return -1; /* "01": a leading zero */
	t->end = p;
	return 0;
}

/* Integers of more digits are jansson's to read (or refuse). */
#define FAST_INTEGER_DIGITS 18

/*
 * Is a real token a short decimal that the dump writes back as it is
 * (json.c, short_decimal_text)? That is: no exponent, one to six places
 * ending in a non-zero digit (or the one place "0" of a whole number),
 * at most 15 significant digits (two such decimals are never the same
 * double, so no shorter text reads back as it), magnitude in [1e-4,
 * 1e14). "1.50", "2.00", "0.0" and "1e3" are not: they are written
 * otherwise ("1.5", "2.0", "0.0" by the search, "1000.0").
 */
static int plain_decimal(const number_token *t)
{
	const unsigned char *point = t->digits;
	while (point < t->end && *point != '.')
		point++;
	if (point == t->end)
		return 0;
	const unsigned char *frac = point + 1;
	size_t places = (size_t)(t->end - frac),
	       ints = (size_t)(point - t->digits);
	for (const unsigned char *q = frac; q < t->end; q++)
		if (!is_digit(*q))
			return 0; /* an exponent */
	if (places == 0 || places > 6 || ints > 14)
		return 0;
	if (t->end[-1] == '0' && places != 1)
		return 0;
	if (*t->digits != '0')
		return ints + places <= 15;
	/* 0.F: F's first non-zero digit within four places, and F is not
	 * "0" (zero itself). */
	const unsigned char *nz = frac;
	while (nz < t->end && *nz == '0')
		nz++;
	return nz < t->end && nz - frac < 4 && (size_t)(t->end - nz) <= 15;
}

static json_t *parse_number(parser *ps)
{
	number_token t;
	if (scan_number(ps, &t) < 0)
		return NULL;
	const unsigned char *p = t.end, *start = t.start;
	if (!t.real) {
		if ((size_t)(p - t.digits) > FAST_INTEGER_DIGITS)
			return NULL;
		long long v = 0;
		for (const unsigned char *q = t.digits; q < p; q++)
			v = v * 10 + (*q - '0');
		ps->p = p;
		json_t *i = json_integer(t.negative ? -v : v);
		ps->oom |= !i;
		return i;
	}
	/* strtod needs a terminated token in the C notation. */
	char tok[64];
	size_t n = (size_t)(p - start);
	const char *point = localeconv()->decimal_point;
	if (n >= sizeof(tok) || !point || strcmp(point, ".") != 0)
		return NULL;
	memcpy(tok, start, n);
	tok[n] = '\0';
	char *stop;
	errno = 0;
	double d = strtod(tok, &stop);
	if (stop != tok + n || errno == ERANGE || !isfinite(d))
		return NULL;
	ps->p = p;
	json_t *r = json_real(d);
	ps->oom |= !r;
	return r;
}

static json_t *parse_object(parser *ps, unsigned depth)
{
	json_t *obj = json_object();
	if (!obj) {
		ps->oom = 1;
		return NULL;
	}
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return obj;
	}
	while (ps->p < ps->end && *ps->p == '"') {
		const char *key;
		size_t klen;
		if (parse_string(ps, &key, &klen) < 0)
			break;
		/* A key with escapes lives in ps->buf, which the value may
		 * reuse: jansson copies it, but only when it is set. */
		char kcopy[128], *kheap = NULL;
		if (key == ps->buf) {
			if (klen <= sizeof(kcopy)) {
				memcpy(kcopy, key, klen);
				key = kcopy;
			} else if ((kheap = malloc(klen))) {
				memcpy(kheap, key, klen);
				key = kheap;
			} else {
				ps->oom = 1;
				break;
			}
		}
		/* A repeated name is jansson's to refuse or to keep. */
		if (json_object_getn(obj, key, klen)) {
			free(kheap);
			break;
		}
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p++ != ':') {
			free(kheap);
			break;
		}
		skip_ws(ps);
		json_t *v = parse_value(ps, depth + 1);
		if (!v) {
			free(kheap);
			break;
		}
		/* Fails only for want of memory (the value is consumed). */
		int rc = json_object_setn_new_nocheck(obj, key, klen, v);
		free(kheap);
		if (rc < 0) {
			ps->oom = 1;
			break;
		}
		if ((rc = next_item(ps, '}')) != 0) {
			if (rc > 0)
				return obj;
			break;
		}
	}
	json_decref(obj);
	return NULL;
}

static json_t *parse_array(parser *ps, unsigned depth)
{
	json_t *arr = json_array();
	if (!arr) {
		ps->oom = 1;
		return NULL;
	}
	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return arr;
	}
	for (;;) {
		json_t *v = parse_value(ps, depth + 1);
		if (!v)
			break;
		if (json_array_append_new(arr, v) < 0) {
			ps->oom = 1;
			break;
		}
		int next = next_item(ps, ']');
		if (next > 0)
			return arr;
		if (next < 0)
			break;
	}
	json_decref(arr);
	return NULL;
}

static json_t *literal(parser *ps, const char *word, size_t n, json_t *v)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
		return NULL;
	ps->p += n;
	return v;
}

/* One value at ps->p (whitespace before it skipped), or NULL. */
static json_t *parse_value(parser *ps, unsigned depth)
{
	if (ps->p >= ps->end || depth > ps->max_depth)
		return NULL;
	switch (*ps->p) {
	case '{': return parse_object(ps, depth);
	case '[': return parse_array(ps, depth);
	case '"': {
		const char *s;
		size_t n;
		if (parse_string(ps, &s, &n) < 0)
			return NULL;
		json_t *str = json_stringn_nocheck(s, n);
		ps->oom |= !str;
		return str;
	}
	case 't': return literal(ps, "true", 4, json_true());
	case 'f': return literal(ps, "false", 5, json_false());
	case 'n': return literal(ps, "null", 4, json_null());
	default:
		if (*ps->p == '-' || is_digit(*ps->p))
			return parse_number(ps);
		return NULL;
	}
}

json_t *sky__json_fast_load(const char *text, size_t len, size_t flags,
			    int *out_of_memory)
{
	return sky__json_fast_load_within(text, len, flags, FAST_MAX_DEPTH,
					  out_of_memory);
}

json_t *sky__json_fast_load_within(const char *text, size_t len, size_t flags,
				   unsigned max_depth, int *out_of_memory)
{
	*out_of_memory = 0;
	if (!text ||
	    (flags & ~(size_t)(JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
			       JSON_ALLOW_NUL)))
		return NULL;
	parser ps;
	ps.p = (const unsigned char *)text;
	ps.end = ps.p + len;
	ps.max_depth = max_depth < FAST_MAX_DEPTH ? max_depth : FAST_MAX_DEPTH;
	ps.oom = 0;
	ps.buf = ps.inline_buf;
	ps.cap = sizeof(ps.inline_buf);
	skip_ws(&ps);
	json_t *v = NULL;
	if (ps.p < ps.end &&
	    ((flags & JSON_DECODE_ANY) || *ps.p == '{' || *ps.p == '['))
		v = parse_value(&ps, 1);
	if (v) {
		skip_ws(&ps);
		if (ps.p != ps.end) {
			json_decref(v);
			v = NULL;
		}
	}
	if (ps.buf != ps.inline_buf)
		free(ps.buf);
	*out_of_memory = ps.oom;
	return v;
}

/* ------------------------------------------------------------------ */
/* Sorted compact text straight from the text                          */
/* ------------------------------------------------------------------ */

/* One member of an object being sorted: its name in the input, its
 * value's text in the output buffer. */
typedef struct {
	const char *name;
	size_t len, off, vlen;
} sorted_member;

static int cmp_sorted_member(const void *a, const void *b)
{
	const sorted_member *x = a, *y = b;
	int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

typedef struct {
	size_t max_depth; /* give up beyond */
	size_t deepest;
	sky_buf scratch; /* an object's members while they are reordered */
} sort_ctx;

static int sorted_value(parser *ps, sky_buf *out, size_t depth, int sorted,
			sort_ctx *sx);

/*
 * A string that parse_string() handed out of the text itself (not out of
 * ps->buf, where it decodes escapes): it holds no quote, backslash or
 * control byte, so every writer of JSON text writes it as it is, between
 * quotes.
 */
static int put_plain_string(sky_buf *out, const char *s, size_t n)
{
	if (out->cap - out->len <= n + 2 && sky__buf_reserve(out, n + 2) < 0)
		return -1;
	char *o = out->data + out->len;
	o[0] = '"';
	memcpy(o + 1, s, n);
	o[n + 1] = '"';
	out->len += n + 2;
	out->data[out->len] = '\0';
	return 0;
}

/*
 * An object: its members are written to `out` as they come, each
 * `"name":value`, and then, when `sorted` and they did not come in order
 * of their name bytes, moved into that order (an object inside an array
 * keeps the order it came in, as jansson's dump does). A repeated name
 * gives up either way.
 */
static int sorted_object(parser *ps, sky_buf *out, size_t depth, int sorted,
			 sort_ctx *sx)
{
	sorted_member local[32], *m = local, *copy = NULL;
	size_t n = 0, cap = sizeof(local) / sizeof(local[0]);
	int rc = -1;

	ps->p++;
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return sky__buf_append(out, "{}", 2) < 0 ? (ps->oom = 1, -1)
							 : 0;
	}
	if (sky__buf_putc(out, '{') < 0)
		goto nomem;
	size_t body = out->len;
	while (ps->p < ps->end && *ps->p == '"') {
		const char *key;
		size_t klen;
		/* Names with escapes: jansson's (the bytes to sort by are
		 * decoded ones, and ps->buf is reused by the value). */
		if (parse_string(ps, &key, &klen) < 0 || key == ps->buf)
			goto done;
		if (n == cap) {
			sorted_member *g =
			    m == local ? malloc(2 * cap * sizeof(*m))
				       : realloc(m, 2 * cap * sizeof(*m));
			if (!g)
				goto nomem;
			if (m == local)
				memcpy(g, local, sizeof(local));
			m = g;
			cap *= 2;
		}
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p++ != ':')
			goto done;
		skip_ws(ps);
		if (n && sky__buf_putc(out, ',') < 0)
			goto nomem;
		m[n].name = key;
		m[n].len = klen;
		m[n].off = out->len;
		/* Taken from the text (above): no escapes to write. */
		if (put_plain_string(out, key, klen) < 0 ||
		    sky__buf_putc(out, ':') < 0)
			goto nomem;
		if (sorted_value(ps, out, depth + 1, sorted, sx) < 0)
			goto done;
		m[n].vlen = out->len - m[n].off;
		n++;
		int next = next_item(ps, '}');
		if (next < 0)
			goto done;
		if (next > 0) {
			rc = 0;
			break;
		}
	}
	if (rc < 0)
		goto done;
	rc = -1;
	/* Names strictly rising: in order, and no name repeated. */
	size_t i = 1;
	while (i < n && cmp_sorted_member(&m[i - 1], &m[i]) < 0)
		i++;
	if (i < n) {
		/* Sorted to find repeats: the members themselves when they
		 * are to be written in that order, else a copy. */
		sorted_member *order = m;
		if (!sorted) {
			if (!(order = copy = malloc(n * sizeof(*m))))
				goto nomem;
			memcpy(order, m, n * sizeof(*m));
		}
		sky__sort(order, n, sizeof(*m), cmp_sorted_member);
		for (i = 1; i < n; i++)
			if (cmp_sorted_member(&order[i - 1], &order[i]) == 0)
				goto done;
		if (sorted) {
			/* The same bytes in another order: move them aside,
			 * then back member by member. */
			size_t len = out->len - body;
			sx->scratch.len = 0;
			if (sky__buf_append(&sx->scratch, out->data + body,
					    len) < 0)
				goto nomem;
			out->len = body;
			for (i = 0; i < n; i++) {
				if (i)
					out->data[out->len++] = ',';
				memcpy(out->data + out->len,
				       sx->scratch.data + (m[i].off - body),
				       m[i].vlen);
				out->len += m[i].vlen;
			}
		}
	}
	if (sky__buf_putc(out, '}') < 0)
		goto nomem;
	rc = 0;
	goto done;
nomem:
	ps->oom = 1;
done:
	free(copy);
	if (m != local)
		free(m);
	return rc;
}

static int sorted_array(parser *ps, sky_buf *out, size_t depth, sort_ctx *sx)
{
	ps->p++;
	if (sky__buf_putc(out, '[') < 0) {
		ps->oom = 1;
		return -1;
	}
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return sky__buf_putc(out, ']') < 0 ? (ps->oom = 1, -1) : 0;
	}
	for (int first = 1;; first = 0) {
		if (!first && sky__buf_putc(out, ',') < 0) {
			ps->oom = 1;
			return -1;
		}
		if (sorted_value(ps, out, depth + 1, 0, sx) < 0)
			return -1;
		int next = next_item(ps, ']');
		if (next < 0)
			return -1;
		if (next > 0)
			return sky__buf_putc(out, ']') < 0 ? (ps->oom = 1, -1)
							   : 0;
	}
}

/* One value's compact text: what sky__json_dump_buf() writes of the
 * value parse_value() would build. */
static int sorted_value(parser *ps, sky_buf *out, size_t depth, int sorted,
			sort_ctx *sx)
{
	if (ps->p >= ps->end)
		return -1;
	unsigned c = *ps->p;
	if (c == '{' || c == '[') {
		if (depth > sx->max_depth || depth > FAST_MAX_DEPTH)
			return -1;
		if (depth > sx->deepest)
			sx->deepest = depth;
		return c == '{' ? sorted_object(ps, out, depth, sorted, sx)
				: sorted_array(ps, out, depth, sx);
	}
	int rc;
	if (c == '"') {
		const char *str;
		size_t n;
		if (parse_string(ps, &str, &n) < 0)
			return -1;
		rc = str == ps->buf ? sky__json_dump_string(out, str, n)
				    : put_plain_string(out, str, n);
	} else if (c == 't' || c == 'f' || c == 'n') {
		static const char *const words[] = {"true", "false", "null"};
		const char *w = words[c == 't' ? 0 : c == 'f' ? 1 : 2];
		size_t n = strlen(w);
		if (!literal(ps, w, n, json_null()))
			return -1;
		rc = sky__buf_append(out, w, n);
	} else {
		/* An integer is written as it came: its text has no leading
		 * zeros, so it is what jansson would dump, but for "-0"; so
		 * is a real that is a short decimal (plain_decimal). */
		number_token t;
		if (scan_number(ps, &t) == 0 &&
		    (t.real
			 ? plain_decimal(&t)
			 : (size_t)(t.end - t.digits) <= FAST_INTEGER_DIGITS)) {
			int minus_zero =
			    !t.real && t.negative && *t.digits == '0';
			const unsigned char *from = t.start + minus_zero;
			ps->p = t.end;
			rc = sky__buf_append(out, from, (size_t)(t.end - from));
			if (rc < 0)
				ps->oom = 1;
			return rc;
		}
		/* The number as jansson reads it, written as it dumps it. */
		json_t *num = parse_number(ps);
		if (!num)
			return -1;
		rc = sky__json_dump_buf(out, num);
		json_decref(num);
	}
	if (rc < 0)
		ps->oom = 1;
	return rc;
}

int sky__json_sorted_text(const char *text, size_t len, size_t max_depth,
			  sky_buf *out, size_t *depth, int *out_of_memory)
{
	parser ps;
	sort_ctx sx = {max_depth, 0, SKY_BUF_INIT};
	size_t old_len = out->len;

	*out_of_memory = 0;
	ps.p = (const unsigned char *)text;
	ps.end = ps.p + len;
	ps.oom = 0;
	ps.buf = ps.inline_buf;
	ps.cap = sizeof(ps.inline_buf);
	skip_ws(&ps);
	int rc = ps.p < ps.end && *ps.p == '{'
		     ? sorted_value(&ps, out, 1, 1, &sx)
		     : -1;
	if (rc == 0) {
		skip_ws(&ps);
		if (ps.p != ps.end)
			rc = -1;
	}
	if (ps.buf != ps.inline_buf)
		free(ps.buf);
	sky__buf_free(&sx.scratch);
	if (rc < 0) {
		out->len = old_len;
		if (out->data)
			out->data[old_len] = '\0';
		*out_of_memory = ps.oom;
		return 0;
	}
	*depth = sx.deepest;
	return 1;
}
