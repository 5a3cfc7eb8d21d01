/*
 * event_scan.c - the fast path of sky__event_parse() for data events: one
 * pass over the envelope's text that builds nothing but the patch.
 *
 * A session_data_updated event is ~200 bytes of envelope (three ids, the
 * type, two times, a version, a source and a user) around a ~100-byte
 * patch. Parsing all of it into a jansson tree made a string object and a
 * hash entry per envelope member, about half the cost of applying the
 * event. Here the envelope is read in place, and only the `data` member is
 * given to jansson, as the patch the merge needs.
 *
 * What it keeps true: sky__event_scan() accepts an event only when the
 * full parse (sky__event_parse_tree) would accept it and give the same
 * result: the same ids, type, time and an equal patch. It takes the plain
 * case only, and gives up (returns 0, records nothing, owns nothing) on
 * anything else: a member it does not know, a duplicate, a string that
 * is not printable ASCII or holds an escape, a number that is not a small
 * integer, an event type other than session_data_updated, a value of the
 * wrong type, text after the object, a limit reached. The full parse then
 * runs and says precisely what is wrong, or accepts what the scan would
 * not take; so no event is ever rejected here, and its messages are the
 * full parse's by construction. tests/test_events.c holds the two paths
 * against each other on mutated events.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "json.h"
#include "protocol.h"
#include "skysync.h"
#include "util.h"

/* The members the scan knows, as bits of `seen`. */
enum {
	M_APP = 1 << 0,
	M_SID = 1 << 1,
	M_EID = 1 << 2,
	M_TYPE = 1 << 3,
	M_CREATED = 1 << 4,
	M_SOURCE = 1 << 5,
	M_USER = 1 << 6,
	M_VERSION = 1 << 7,
	M_TIMESTAMP = 1 << 8,
	M_DATA = 1 << 9,
	M_REQUIRED = M_APP | M_SID | M_EID | M_TYPE | M_CREATED | M_DATA,
};

static const struct {
	const char *name;
	size_t len;
	unsigned bit;
} members[] = {
    {"applicationId", 13, M_APP},  {"sessionId", 9, M_SID},
    {"eventId", 7, M_EID},	   {"eventType", 9, M_TYPE},
    {"createdAt", 9, M_CREATED},   {"source", 6, M_SOURCE},
    {"userId", 6, M_USER},	   {"version", 7, M_VERSION},
    {"timestamp", 9, M_TIMESTAMP}, {"data", 4, M_DATA},
};

/* A span of the text: a string's bytes between its quotes, or a value. */
typedef struct {
	const char *p;
	size_t n;
} span;

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/*
 * A string of printable ASCII without escapes, p at its opening quote.
 * Returns the byte after the closing quote, or NULL: anything else is the
 * full parse's to judge (escapes, UTF-8, control characters).
 */
static const char *plain_string(const char *p, const char *end, span *s)
{
	const char *q = ++p;
	while (q < end && *q != '"') {
		unsigned char ch = (unsigned char)*q;
		if (ch < 0x20 || ch > 0x7e || ch == '\\')
			return NULL;
		q++;
	}
	if (q == end)
		return NULL;
	s->p = p;
	s->n = (size_t)(q - p);
	return q + 1;
}

/* The literal `null` at p: the byte after it, or NULL. */
static const char *null_literal(const char *p, const char *end)
{
	return end - p >= 4 && !memcmp(p, "null", 4) ? p + 4 : NULL;
}

/*
 * An integer token that jansson reads as a JSON integer for certain:
 * -?(0|[1-9][0-9]*), at most 18 digits (so within 64 bits), not followed
 * by a fraction, exponent or another digit. Returns the byte after it or
 * NULL; *negative tells the sign.
 */
static const char *small_integer(const char *p, const char *end, int *negative)
{
	const char *q = p;
	*negative = q < end && *q == '-';
	if (*negative)
		q++;
	const char *digits = q;
	if (q < end && *q == '0')
		q++;
	else
		while (q < end && *q >= '0' && *q <= '9')
			q++;
	if (q == digits || q - digits > 18)
		return NULL;
	if (q < end &&
	    ((*q >= '0' && *q <= '9') || *q == '.' || *q == 'e' || *q == 'E'))
		return NULL;
	return q;
}

/*
 * The end of the object or array starting at p (the byte after its
 * closing bracket) and its nesting depth, counting brackets outside
 * strings. It does not validate: jansson parses the span afterwards and
 * refuses it unless it is exactly one well-formed value.
 */
static const char *container_end(const char *p, const char *end,
				 unsigned *depth)
{
	unsigned d = 0, max = 0;
	for (; p < end; p++) {
		char ch = *p;
		if (ch == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (p >= end)
				return NULL;
		} else if (ch == '{' || ch == '[') {
			if (++d > max)
				max = d;
		} else if (ch == '}' || ch == ']') {
			if (--d == 0) {
				*depth = max;
				return p + 1;
			}
		}
	}
	return NULL;
}

/* A span as a C string in buf[cap], or 0 when it does not fit. */
static int to_cstr(const span *s, char *buf, size_t cap)
{
	if (s->n >= cap)
		return 0;
	memcpy(buf, s->p, s->n);
	buf[s->n] = '\0';
	return 1;
}

int sky__event_scan(const sky_json_limits *limits,
		    const struct sky_protocol *proto, const char *text,
		    size_t len, sky_parsed_event *out)
{
	const char *p = text, *end = text + len, *q;
	span ids[3] = {{0}}, type = {0}, created = {0}, data = {0};
	unsigned seen = 0, data_depth = 0;
	int negative;

	if (limits && limits->max_bytes && len > limits->max_bytes)
		return 0;
	p = skip_ws(p, end);
	if (p == end || *p++ != '{')
		return 0;
	for (;;) {
		span name;
		size_t m;
		p = skip_ws(p, end);
		if (p == end || *p != '"' || !(p = plain_string(p, end, &name)))
			return 0;
		for (m = 0; m < sizeof(members) / sizeof(members[0]); m++)
			if (members[m].len == name.n &&
			    !memcmp(members[m].name, name.p, name.n))
				break;
		if (m == sizeof(members) / sizeof(members[0]) ||
		    (seen & members[m].bit))
			return 0; /* unknown or repeated: the full parse's */
		seen |= members[m].bit;
		p = skip_ws(p, end);
		if (p == end || *p++ != ':')
			return 0;
		p = skip_ws(p, end);
		if (p == end)
			return 0;
		span s = {0};
		switch (members[m].bit) {
		case M_APP:
		case M_SID:
		case M_EID:
		case M_TYPE:
		case M_CREATED:
			if (*p != '"' || !(p = plain_string(p, end, &s)))
				return 0;
			if (members[m].bit == M_TYPE)
				type = s;
			else if (members[m].bit == M_CREATED)
				created = s;
			else
				ids[members[m].bit == M_APP   ? 0
				    : members[m].bit == M_SID ? 1
							      : 2] = s;
			break;
		case M_SOURCE:
		case M_USER: /* a string or null */
			q = *p == '"' ? plain_string(p, end, &s)
				      : null_literal(p, end);
			if (!(p = q))
				return 0;
			break;
		case M_VERSION: /* an integer or null */
			q = *p == 'n' ? null_literal(p, end)
				      : small_integer(p, end, &negative);
			if (!(p = q))
				return 0;
			break;
		case M_TIMESTAMP: { /* ms since 1970, or an RFC 3339 time */
			char t[64];
			int64_t us;
			if (*p == '"') {
				if (!(p = plain_string(p, end, &s)) ||
				    !to_cstr(&s, t, sizeof(t)) ||
				    sky__parse_time(t, &us) < 0)
					return 0;
			} else if (!(p = small_integer(p, end, &negative)) ||
				   negative) {
				return 0;
			}
			break;
		}
		case M_DATA: /* a patch: an object */
			if (*p != '{')
				return 0;
			data.p = p;
			if (!(p = container_end(p, end, &data_depth)))
				return 0;
			data.n = (size_t)(p - data.p);
			break;
		}
		p = skip_ws(p, end);
		if (p == end)
			return 0;
		if (*p == '}')
			break;
		if (*p++ != ',')
			return 0;
	}
	if (skip_ws(p + 1, end) != end || (seen & M_REQUIRED) != M_REQUIRED)
		return 0;
	/* The envelope nests one level, around the patch. */
	if (limits && limits->max_depth && data_depth + 1 > limits->max_depth)
		return 0;
	for (size_t i = 0; i < 3; i++)
		if (ids[i].n == 0 || ids[i].n > SKY_MAX_ID_BYTES)
			return 0;

	char tbuf[64];
	int64_t created_us;
	if (!to_cstr(&type, tbuf, sizeof(tbuf)) ||
	    sky__protocol_event_type(proto, tbuf) != SKY_EV_DATA_UPDATED)
		return 0;
	if (!to_cstr(&created, tbuf, sizeof(tbuf)) ||
	    sky__parse_time(tbuf, &created_us) < 0)
		return 0;

	/* The ids as C strings, in one allocation the event owns. */
	char *owned = malloc(ids[0].n + ids[1].n + ids[2].n + 3);
	if (!owned)
		return 0;
	json_error_t jerr;
	json_t *patch = sky__json_loadb(
	    data.p, data.n, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
	if (!patch || !json_is_object(patch)) {
		json_decref(patch);
		free(owned);
		return 0;
	}
	memset(out, 0, sizeof(*out));
	const char **dst[3] = {&out->app, &out->sid, &out->eid};
	char *w = owned;
	for (size_t i = 0; i < 3; i++) {
		memcpy(w, ids[i].p, ids[i].n);
		w[ids[i].n] = '\0';
		*dst[i] = w;
		w += ids[i].n + 1;
	}
	out->owned = owned;
	out->text = text;
	out->len = len;
	out->type = SKY_EV_DATA_UPDATED;
	out->created_us = created_us;
	out->payload = patch;
	return 1;
}
