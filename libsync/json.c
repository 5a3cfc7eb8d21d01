/*
 * json.c - the JSON text codec every module and program uses: parsing
 * that keeps U+0000 in strings and big numbers as their text, refuses raw
 * NUL bytes, and a dumper that writes reals as their shortest round-trip
 * text and big numbers verbatim. See json.h for the rules it keeps.
 *
 * Big numbers. jansson refuses an integer outside int64 or a real beyond
 * double ("too big integer", "real number overflow"). Only then, so that
 * ordinary input costs one jansson parse, the text is scanned for number
 * tokens, the ones jansson would refuse are replaced by 0, and the result
 * is parsed again. A walk of the tree in document order (arrays by index,
 * objects in insertion order, which is text order since this second parse
 * refuses duplicate members) then meets the number values in the
 * order the scan met the number tokens, and puts each kept text back where
 * its 0 landed. The walk checks that it met as many numbers as the scan.
 *
 * Allocation failures. jansson (2.14) can lose a byte of a string when an
 * allocation fails inside its lexer and still return the tree, so a parse
 * under memory pressure could hand back altered text as if it were the
 * input. jansson's allocation functions are therefore wrapped (at the
 * first parse, and again whenever a program has installed its own) by
 * ones that count failures per thread; a parse during which one failed is
 * an out-of-memory error, whatever jansson returned.
 *
 * The dumper is ours rather than jansson's because jansson writes reals
 * with 17 significant digits and cannot write a number it does not hold;
 * everything else it writes exactly as jansson's JSON_COMPACT does.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "json.h"

/* ---- errors ---- */

/* Fill `err` the way jansson does for an error at byte `pos` of `text`. */
static void set_error(json_error_t *err, const char *text, size_t pos,
		      enum json_error_code code, const char *msg)
{
	int line = 1, column = 0;
	for (size_t i = 0; i < pos; i++) {
		if (text[i] == '\n') {
			line++;
			column = 0;
		} else {
			column++;
		}
	}
	err->line = line;
	err->column = column + 1;
	err->position = (int)pos;
	snprintf(err->source, sizeof(err->source), "<buffer>");
	snprintf(err->text, sizeof(err->text) - 1, "%s", msg);
	err->text[sizeof(err->text) - 1] = (char)code;
}

/* ---- allocation failures ---- */

/* The functions wrapped; set before the wrappers are installed. */
static json_malloc_t inner_malloc = malloc;
static json_free_t inner_free = free;
/* Allocations that failed on this thread, ever (compared, never reset). */
static _Thread_local unsigned long alloc_failures;

static void *tracking_malloc(size_t n)
{
	void *p = inner_malloc(n);
	if (!p)
		alloc_failures++;
	return p;
}

static void tracking_free(void *p)
{
	inner_free(p);
}

/*
 * Make sure jansson allocates through the wrappers. A program that sets
 * its own functions later (a test failing the Nth allocation) has them
 * wrapped at its next parse. jansson asks that its functions be set
 * before other threads use it; two threads' first parses meeting here
 * store the same values. A program that puts back the pair it read after
 * a parse (the wrappers) keeps the functions wrapped last.
 */
static void track_allocations(void)
{
	json_malloc_t m;
	json_free_t f;
	json_get_alloc_funcs(&m, &f);
	if (m == tracking_malloc)
		return;
	inner_malloc = m ? m : malloc;
	inner_free = f ? f : free;
	json_set_alloc_funcs(tracking_malloc, tracking_free);
}

/* ---- big numbers ---- */

const char *sky__json_bignum(const json_t *v, size_t *len)
{
	if (!json_is_string(v))
		return NULL;
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	if (n < 2 || s[0] != SKY_JSON_BIGNUM_MARK)
		return NULL;
	if (len)
		*len = n - 1;
	return s + 1;
}

json_t *sky__json_bignum_new(const char *text, size_t len)
{
	char *s = malloc(len + 1);
	if (!s)
		return NULL;
	s[0] = SKY_JSON_BIGNUM_MARK;
	memcpy(s + 1, text, len);
	/* nocheck: the mark byte is not UTF-8, which is the point. */
	json_t *v = json_stringn_nocheck(s, len + 1);
	free(s);
	return v;
}

int sky__json_is_text(const json_t *v)
{
	return json_is_string(v) && !sky__json_bignum(v, NULL);
}

int sky__json_streq(const json_t *v, const char *s)
{
	size_t n = strlen(s);
	return sky__json_is_text(v) && json_string_length(v) == n &&
	       memcmp(json_string_value(v), s, n) == 0;
}

int sky__json_has_nul(const json_t *v)
{
	return json_is_string(v) &&
	       memchr(json_string_value(v), '\0', json_string_length(v));
}

int sky__json_check_id(const json_t *v, const char *field)
{
	if (!v)
		return sky__error_input("%s: missing", field);
	if (!sky__json_is_text(v))
		return sky__error_input("%s: must be a string", field);
	if (sky__json_has_nul(v))
		return sky__error_input(
		    "%s: holds U+0000 (\\u0000), which an id cannot", field);
	return sky__check_id(json_string_value(v), field);
}

/* One number token of the input: where, and whether jansson refuses it. */
typedef struct {
	size_t off, len;
	int big;
} numtok;

/* Is tok a number by RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int valid_number(const char *tok, size_t len)
{
	size_t i = 0, d;
	if (i < len && tok[i] == '-')
		i++;
	if (i < len && tok[i] == '0')
		i++;
	else if (i < len && tok[i] >= '1' && tok[i] <= '9')
		while (i < len && tok[i] >= '0' && tok[i] <= '9')
			i++;
	else
		return 0;
	if (i < len && tok[i] == '.') {
		for (d = ++i; i < len && tok[i] >= '0' && tok[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	if (i < len && (tok[i] == 'e' || tok[i] == 'E')) {
		i++;
		if (i < len && (tok[i] == '+' || tok[i] == '-'))
			i++;
		for (d = i; i < len && tok[i] >= '0' && tok[i] <= '9'; i++)
			;
		if (i == d)
			return 0;
	}
	return i == len;
}

/*
 * Would jansson refuse this number token as out of range? The same calls
 * it makes (strtoll for an integer, strtod for a real, both in the current
 * locale), so the two cannot disagree. A token that is not a JSON number
 * is never "big": it stays in the text for the parser to refuse, so that
 * no malformed number is kept as text.
 */
static int token_is_big(const char *tok, size_t len)
{
	if (!valid_number(tok, len))
		return 0;
	char small[64], *copy = len < sizeof(small) ? small : malloc(len + 1);
	int is_real = 0, big;
	if (!copy)
		return -1;
	memcpy(copy, tok, len);
	copy[len] = '\0';
	const char *point = localeconv()->decimal_point;
	for (size_t i = 0; i < len; i++) {
		if (copy[i] == '.' || copy[i] == 'e' || copy[i] == 'E')
			is_real = 1;
		if (copy[i] == '.' && point && point[0] && !point[1])
			copy[i] = point[0];
	}
	errno = 0;
	if (is_real) {
		double d = strtod(copy, NULL);
		big = errno == ERANGE && (d == HUGE_VAL || d == -HUGE_VAL);
	} else {
		(void)strtoll(copy, NULL, 10);
		big = errno == ERANGE;
	}
	if (copy != small)
		free(copy);
	return big;
}

/*
 * The number tokens of `text` in order. Strings are skipped (a '-' or a
 * digit outside one always starts a number in valid JSON; in invalid JSON
 * the second parse reports the error). Returns the count, or -1.
 */
static long scan_numbers(const char *text, size_t len, numtok **out)
{
	numtok *t = NULL;
	size_t n = 0, cap = 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (c == '"') {
			for (i++; i < len && text[i] != '"'; i++)
				if (text[i] == '\\')
					i++;
			continue;
		}
		if (c != '-' && (c < '0' || c > '9'))
			continue;
		size_t j = i;
		while (j < len && text[j] && strchr("0123456789+-.eE", text[j]))
			j++;
		if (n == cap) {
			size_t nc = cap ? 2 * cap : 16;
			numtok *p = realloc(t, nc * sizeof(*t));
			if (!p)
				goto nomem;
			t = p;
			cap = nc;
		}
		int big = token_is_big(text + i, j - i);
		if (big < 0)
			goto nomem;
		t[n].off = i;
		t[n].len = j - i;
		t[n].big = big;
		n++;
		i = j - 1;
	}
	*out = t;
	return (long)n;
nomem:
	free(t);
	return -1;
}

typedef struct {
	const char *text;
	const numtok *t;
	size_t n, k;
} restorer;

/* The value to put where number `v` is: NULL to keep it, else new. */
static int next_number(restorer *r, json_t **repl)
{
	*repl = NULL;
	if (r->k >= r->n)
		return -1; /* more numbers than tokens: cannot happen */
	const numtok *t = &r->t[r->k++];
	if (!t->big)
		return 0;
	*repl = sky__json_bignum_new(r->text + t->off, t->len);
	return *repl ? 0 : -1;
}

static int restore(restorer *r, json_t *v)
{
	json_t *repl;
	if (json_is_object(v)) {
		for (void *it = json_object_iter(v); it;
		     it = json_object_iter_next(v, it)) {
			json_t *m = json_object_iter_value(it);
			if (json_is_number(m)) {
				if (next_number(r, &repl) < 0 ||
				    (repl &&
				     json_object_iter_set_new(v, it, repl) < 0))
					return -1;
			} else if (restore(r, m) < 0) {
				return -1;
			}
		}
	} else if (json_is_array(v)) {
		for (size_t i = 0; i < json_array_size(v); i++) {
			json_t *m = json_array_get(v, i);
			if (json_is_number(m)) {
				if (next_number(r, &repl) < 0 ||
				    (repl &&
				     json_array_set_new(v, i, repl) < 0))
					return -1;
			} else if (restore(r, m) < 0) {
				return -1;
			}
		}
	}
	return 0;
}

static json_t *load_big(const char *text, size_t len, size_t flags,
			json_error_t *err)
{
	numtok *t = NULL;
	json_t *v = NULL;
	long n = scan_numbers(text, len, &t);
	if (n < 0)
		goto nomem;
	/* Each refused token becomes "0": the text can only shrink. */
	char *copy = malloc(len + 1);
	if (!copy)
		goto nomem;
	size_t at = 0, from = 0;
	for (long i = 0; i < n; i++) {
		if (!t[i].big)
			continue;
		memcpy(copy + at, text + from, t[i].off - from);
		at += t[i].off - from;
		copy[at++] = '0';
		from = t[i].off + t[i].len;
	}
	memcpy(copy + at, text + from, len - from);
	at += len - from;
	/* Duplicate members always refused here: a later one replaces the
	 * value in place, out of text order, and the walk would put a kept
	 * text in the wrong place. */
	v = json_loadb(copy, at, flags | JSON_REJECT_DUPLICATES, err);
	free(copy);
	if (!v)
		goto done;
	restorer r = {text, t, (size_t)n, 0};
	if (json_is_number(v)) {
		json_t *repl;
		if (next_number(&r, &repl) < 0)
			goto fail;
		if (repl) {
			json_decref(v);
			v = repl;
		}
	} else if (restore(&r, v) < 0) {
		goto fail;
	}
	if (r.k != r.n)
		goto fail;
	goto done;
fail:
	/* Out of memory, or (cannot happen) the walk and the scan disagree. */
	json_decref(v);
	v = NULL;
nomem:
	set_error(err, text, 0, json_error_out_of_memory,
		  "cannot keep a big number (out of memory)");
done:
	free(t);
	return v;
}

static json_t *loadb(const char *text, size_t len, size_t flags,
		     json_error_t *err)
{
	json_error_t local;
	if (!err)
		err = &local;
	if (!text) {
		set_error(err, "", 0, json_error_invalid_argument, "no text");
		return NULL;
	}
	const char *nul = memchr(text, '\0', len);
	if (nul) {
		set_error(err, text, (size_t)(nul - text),
			  json_error_null_character,
			  "raw NUL byte (inside a string U+0000 is written "
			  "\\u0000)");
		return NULL;
	}
	flags |= JSON_ALLOW_NUL;
	json_t *v = json_loadb(text, len, flags, err);
	if (v || json_error_code(err) != json_error_numeric_overflow)
		return v;
	return load_big(text, len, flags, err);
}

json_t *sky__json_loadb(const char *text, size_t len, size_t flags,
			json_error_t *err)
{
	json_error_t local;
	if (!err)
		err = &local;
	track_allocations();
	/* jansson leaves `err` untouched when its first allocation fails. */
	err->text[0] = '\0';
	err->text[sizeof(err->text) - 1] = (char)json_error_unknown;
	/* The common case in one pass (json_load.c); jansson for the rest,
	 * errors included. */
	int oom;
	json_t *v = sky__json_fast_load(text, len, flags, &oom);
	if (v)
		return v;
	if (oom) {
		set_error(err, "", 0, json_error_out_of_memory,
			  "out of memory while parsing");
		return NULL;
	}
	unsigned long failures = alloc_failures;
	v = loadb(text, len, flags, err);
	if (alloc_failures == failures)
		return v;
	/* Whatever jansson made of it, the tree may not be the text. */
	json_decref(v);
	set_error(err, "", 0, json_error_out_of_memory,
		  "out of memory while parsing");
	return NULL;
}

json_t *sky__json_loads(const char *text, size_t flags, json_error_t *err)
{
	return sky__json_loadb(text, strlen(text), flags, err);
}

/* ---- dumping ---- */

/*
 * The text of a real that is a short decimal, as people write them (1.5,
 * 0.25, 31.125, 2.0): at most six places, magnitude in [1e-4, 1e14). The
 * search below would settle on the same text, at four to six printf and
 * strtod calls. Why they agree: with m = d * 10^k rounded, for the least
 * k such that m / 10^k reads back as d, the decimal D = m / 10^k has the
 * fewest digits of any decimal that reads back as d (one with fewer would
 * be a multiple of 10^-(k-1), and k-1 would have been found: m below 2^50
 * keeps d * 10^(k-1) within 1/4 of it), %.Pg of d prints D for every P
 * from D's digit count to 15, and no P below it reads back; so the search
 * (which never probes beyond 15 digits when D has at most 14) ends on D,
 * which %g writes in fixed notation here. Returns its length, or 0 when d
 * is not such a number.
 */
static size_t short_decimal_text(double d, char *buf)
{
	static const double scale[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
	static const uint64_t iscale[] = {1,	 10,	 100,	 1000,
					  10000, 100000, 1000000};
	double a = fabs(d);
	if (!(a >= 1e-4 && a < 1e14)) /* NaN fails too */
		return 0;
	for (size_t k = 0; k < sizeof(scale) / sizeof(scale[0]); k++) {
		double scaled = a * scale[k];
		if (scaled >= 1e14)
			return 0;
		uint64_t m = (uint64_t)(scaled + 0.5);
		if ((double)m / scale[k] != a)
			continue;
		char digits[24];
		size_t n = 0, len = 0;
		uint64_t ip = m / iscale[k], frac = m % iscale[k];
		do {
			digits[n++] = (char)('0' + ip % 10);
			ip /= 10;
		} while (ip);
		if (d < 0)
			buf[len++] = '-';
		while (n)
			buf[len++] = digits[--n];
		buf[len++] = '.';
		if (k == 0) {
			buf[len++] = '0';
			buf[len] = '\0';
			return len;
		}
		for (size_t i = k; i > 0; i--) {
			buf[len + i - 1] = (char)('0' + frac % 10);
			frac /= 10;
		}
		len += k;
		buf[len] = '\0';
		return len;
	}
	return 0;
}

size_t sky__json_real_text(double d, char *buf, size_t size)
{
	assert(size >= 32);
	size_t n = short_decimal_text(d, buf);
	if (n)
		return n;
	return sky__json_real_text_searched(d, buf, size);
}

size_t sky__json_real_text_searched(double d, char *buf, size_t size)
{
	assert(size >= 32);
	int n = 0;
	/*
	 * The shortest precision that reads back exactly; 17 always does.
	 * When p digits read back, more digits almost always do too (the text
	 * gets closer to d), so a binary search finds it in at most five
	 * tries. Where that fails (next to a power of two, whose interval is
	 * narrower below) the search may settle on more digits than needed,
	 * never on a text that does not read back: it stops only on a
	 * precision it checked, or 17.
	 */
	int lo = 1, hi = 17;
	while (lo < hi) {
		int mid = (lo + hi) / 2;
		n = snprintf(buf, size, "%.*g", mid, d);
		if (n > 0 && (size_t)n < size && strtod(buf, NULL) == d)
			hi = mid;
		else
			lo = mid + 1;
	}
	n = snprintf(buf, size, "%.*g", lo, d);
	if (n < 0 || (size_t)n >= size - 3) {
		buf[0] = '\0'; /* cannot happen with 32 bytes */
		return 0;
	}
	/*
	 * Keep jansson's choice between fixed and exponent notation (that of
	 * %.17g): 100 is "100.0", not "1e2". With as many digits as the
	 * integer part has, the text is d's own integer part (below 1e17),
	 * so it still reads back as d; checked anyway.
	 */
	const char *e = strchr(buf, 'e');
	int x = e ? atoi(e + 1) : -1;
	if (x >= 0 && x < 17) {
		char alt[40];
		int m = snprintf(alt, sizeof(alt), "%.*g", x + 1, d);
		if (m > 0 && (size_t)m < size - 3 && strtod(alt, NULL) == d) {
			memcpy(buf, alt, (size_t)m + 1);
			n = m;
		}
	}
	size_t len = (size_t)n;
	/* The locale's decimal point, if it is not '.', becomes '.'. */
	const char *point = localeconv()->decimal_point;
	if (point && point[0] && point[0] != '.' && !point[1]) {
		char *p = strchr(buf, point[0]);
		if (p)
			*p = '.';
	}
	/* jansson's form: a real keeps a '.' or an exponent, so that it reads
	 * back as a real, and the exponent loses '+' and leading zeros. */
	if (!strchr(buf, '.') && !strchr(buf, 'e')) {
		memcpy(buf + len, ".0", 3);
		len += 2;
	}
	char *exp = strchr(buf, 'e');
	if (exp) {
		char *start = exp + 1, *end = exp + 2;
		if (*start == '-')
			start++;
		while (*end == '0' && end[1])
			end++;
		if (end != start) {
			memmove(start, end, len - (size_t)(end - buf) + 1);
			len -= (size_t)(end - start);
		}
	}
	return len;
}

/* A string literal with jansson's escapes. */
int sky__json_dump_string(sky_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	if (sky__buf_putc(b, '"') < 0)
		return -1;
	size_t from = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];
		size_t elen = 2;
		if (c == '"' || c == '\\') {
			esc[1] = (char)c;
		} else if (c >= 0x20) {
			continue;
		} else if (c == '\b') {
			esc[1] = 'b';
		} else if (c == '\f') {
			esc[1] = 'f';
		} else if (c == '\n') {
			esc[1] = 'n';
		} else if (c == '\r') {
			esc[1] = 'r';
		} else if (c == '\t') {
			esc[1] = 't';
		} else {
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			elen = 6;
		}
		esc[0] = '\\';
		if (sky__buf_append(b, s + from, i - from) < 0 ||
		    sky__buf_append(b, esc, elen) < 0)
			return -1;
		from = i + 1;
	}
	if (sky__buf_append(b, s + from, n - from) < 0)
		return -1;
	return sky__buf_putc(b, '"');
}

/*
 * The decimal text of an integer into buf (at least 21 bytes), as printf's
 * "%lld" would write it; a call of printf costs more than the rest of a
 * small value's dump.
 */
static size_t integer_text(json_int_t i, char *buf)
{
	char rev[24];
	size_t n = 0, len = 0;
	/* Negated as unsigned: -INT64_MIN does not fit the signed type. */
	unsigned long long u =
	    i < 0 ? 0ull - (unsigned long long)i : (unsigned long long)i;
	do {
		rev[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (i < 0)
		buf[len++] = '-';
	while (n)
		buf[len++] = rev[--n];
	return len;
}

int sky__json_dump_buf(sky_buf *b, const json_t *v)
{
	char num[40];
	size_t n;
	const char *text;
	switch (json_typeof(v)) {
	case JSON_NULL: return sky__buf_puts(b, "null");
	case JSON_TRUE: return sky__buf_puts(b, "true");
	case JSON_FALSE: return sky__buf_puts(b, "false");
	case JSON_INTEGER:
		n = integer_text(json_integer_value(v), num);
		return sky__buf_append(b, num, n);
	case JSON_REAL:
		n = sky__json_real_text(json_real_value(v), num, sizeof(num));
		return sky__buf_append(b, num, n);
	case JSON_STRING:
		if ((text = sky__json_bignum(v, &n)))
			return sky__buf_append(b, text, n);
		return sky__json_dump_string(b, json_string_value(v),
					     json_string_length(v));
	case JSON_ARRAY:
		if (sky__buf_putc(b, '[') < 0)
			return -1;
		for (size_t i = 0; i < json_array_size(v); i++)
			if ((i && sky__buf_putc(b, ',') < 0) ||
			    sky__json_dump_buf(b, json_array_get(v, i)) < 0)
				return -1;
		return sky__buf_putc(b, ']');
	case JSON_OBJECT: {
		if (sky__buf_putc(b, '{') < 0)
			return -1;
		int first = 1;
		for (void *it = json_object_iter((json_t *)v); it;
		     it = json_object_iter_next((json_t *)v, it)) {
			if ((!first && sky__buf_putc(b, ',') < 0) ||
			    sky__json_dump_string(
				b, json_object_iter_key(it),
				json_object_iter_key_len(it)) < 0 ||
			    sky__buf_putc(b, ':') < 0 ||
			    sky__json_dump_buf(b, json_object_iter_value(it)) <
				0)
				return -1;
			first = 0;
		}
		return sky__buf_putc(b, '}');
	}
	}
	return sky__buf_puts(b, "null"); /* not reached: all types above */
}

char *sky__json_dumps(const json_t *value, size_t *len)
{
	sky_buf b = SKY_BUF_INIT;
	if (!value)
		return NULL; /* as json_dumps(NULL) */
	if (sky__json_dump_buf(&b, value) < 0) {
		sky__buf_free(&b);
		return NULL;
	}
	return sky__buf_detach(&b, len);
}
