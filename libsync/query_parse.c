/*
 * query_parse.c - query predicates (DESIGN.md §6): parsing their text into
 * a sky_pred and evaluating one against a session.
 *
 * Predicates. `key=v`, `key=a|b|c`, `key!=v` (also a|b), `key^=prefix`
 * (also a|b), `key?`, and the ranges `key>=n`, `key>n`, `key<n`, `key<=n`.
 * The reserved names are the session's fields: `status`, `name`,
 * `participant` (any participant id, user or group), `createdBy`,
 * `modifiedBy`, `isDraft` (true|false), `version` (an integer; also
 * ranges), `createdAt` and `modifiedAt` (RFC 3339 times; ranges only).
 * Other session fields (sessionId, description, ...) are refused, and so
 * is a key that only looks like a reserved name (created_by, CreatedAt):
 * a misspelt field must not be read as a property and match nothing.
 * Any other key is a property, and `props.KEY` always means the property
 * KEY (a property named "status" is written props.status). A backslash
 * makes the next character literal: `site=A\|B` is the one value "A|B",
 * `a\=b=1` the property "a=b", `version\>=1` the property "version>".
 *
 * Invariants kept here:
 * - sky__pred_eval() is the meaning of a predicate: the planner's index
 *   keys (query_plan.c) select exactly the sessions it accepts, or a
 *   superset that is then checked with it.
 * - A parsed predicate's values are distinct and valid UTF-8.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "query_parse.h"
#include "model.h"
#include "util.h"

/* ---- predicates ---- */

static int valid_utf8(const char *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	if (!j)
		return 0;
	json_decref(j);
	return 1;
}

void sky__pred_clear(sky_pred *p)
{
	free(p->text);
	free(p->prop);
	for (size_t i = 0; i < p->n_values; i++)
		free(p->values[i]);
	free(p->values);
	free(p->nums);
	memset(p, 0, sizeof(*p));
}

static int bad_pred(const char *text, const char *why)
{
	return sky__error_input("predicate '%.80s%s': %s", text,
				strlen(text) > 80 ? "..." : "", why);
}

/* Add a value unless the predicate already has it. */
static int add_value(sky_pred *p, sky_buf *v)
{
	const char *s = v->data ? v->data : "";
	for (size_t i = 0; i < p->n_values; i++)
		if (strcmp(p->values[i], s) == 0)
			return 0;
	char **vals = realloc(p->values, (p->n_values + 1) * sizeof(*vals));
	if (!vals)
		return sky__error_nomem();
	p->values = vals;
	if (!(vals[p->n_values] = strdup(s)))
		return sky__error_nomem();
	p->n_values++;
	return 0;
}

/* Operators a field takes. */
#define OPS_STRING                                                             \
	(1u << SKY_OP_EQ | 1u << SKY_OP_NE | 1u << SKY_OP_PREFIX |             \
	 1u << SKY_OP_EXISTS)
#define OPS_RANGE                                                              \
	(1u << SKY_OP_GE | 1u << SKY_OP_GT | 1u << SKY_OP_LT | 1u << SKY_OP_LE)

/*
 * The reserved names: the session's fields. A bare reserved name is the
 * field (props.KEY names a property of that name); `ops` 0 marks a field
 * that cannot be queried, which is refused rather than read as a property.
 */
static const struct {
	const char *name;
	sky_field field;
	unsigned ops;
	const char *why; /* for ops the field does not take */
} reserved[] = {
    {"status", SKY_FIELD_STATUS, OPS_STRING, NULL},
    {"name", SKY_FIELD_NAME, OPS_STRING, NULL},
    {"participant", SKY_FIELD_PARTICIPANT, OPS_STRING, NULL},
    {"createdBy", SKY_FIELD_CREATED_BY, OPS_STRING, NULL},
    {"modifiedBy", SKY_FIELD_MODIFIED_BY, OPS_STRING, NULL},
    {"isDraft", SKY_FIELD_IS_DRAFT, 1u << SKY_OP_EQ | 1u << SKY_OP_NE,
     "isDraft takes = or != with true or false"},
    {"version", SKY_FIELD_VERSION,
     1u << SKY_OP_EQ | 1u << SKY_OP_NE | OPS_RANGE,
     "version takes =, !=, >=, >, <, <= with integers"},
    {"createdAt", SKY_FIELD_CREATED_AT, OPS_RANGE,
     "createdAt takes a range: >=, >, <, <= with an RFC 3339 time"},
    {"modifiedAt", SKY_FIELD_MODIFIED_AT, OPS_RANGE,
     "modifiedAt takes a range: >=, >, <, <= with an RFC 3339 time"},
    {"applicationId", SKY_FIELD_PROP, 0, NULL},
    {"sessionId", SKY_FIELD_PROP, 0, NULL},
    {"description", SKY_FIELD_PROP, 0, NULL},
    {"participants", SKY_FIELD_PROP, 0, NULL},
    {"properties", SKY_FIELD_PROP, 0, NULL},
};
#define N_RESERVED (sizeof(reserved) / sizeof(reserved[0]))

/* A name folded for the look-alike test: lower case, no _ - or space. */
static void fold(const char *s, size_t n, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 1 < cap; i++) {
		char ch = s[i];
		if (ch == '_' || ch == '-' || ch == ' ')
			continue;
		out[o++] =
		    (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
	}
	out[o] = '\0';
}

/*
 * Does a key read so far name (or look like) a field that takes ranges?
 * Then < and > are operators; elsewhere they belong to the key, as they
 * always did, so properties named "a>b" keep their meaning.
 */
static int range_key(const sky_buf *key, int escaped)
{
	char f[16];
	if (escaped || !key->len || key->len >= sizeof(f) * 2)
		return 0;
	fold(key->data, key->len, f, sizeof(f));
	return !strcmp(f, "version") || !strcmp(f, "createdat") ||
	       !strcmp(f, "modifiedat");
}

/*
 * The field of a bare key: a reserved name, else a property. A key that
 * only looks like a reserved name (created_by, CreatedAt) is refused, so
 * a misspelt field is never silently read as a property.
 */
static int key_field(const char *text, const char *key, size_t *which)
{
	char a[64], b[64];
	for (size_t i = 0; i < N_RESERVED; i++)
		if (strcmp(key, reserved[i].name) == 0) {
			*which = i;
			return reserved[i].ops
				   ? 1
				   : sky__error_input("predicate '%.80s': %s "
						      "is a session field that "
						      "queries do not cover "
						      "(props.%s names the "
						      "property)",
						      text, key, key);
		}
	if (strlen(key) >= sizeof(a))
		return 0;
	fold(key, strlen(key), a, sizeof(a));
	for (size_t i = 0; i < N_RESERVED; i++) {
		/* Reserved names are letters alone: folding them is lower
		 * case, and a first letter that differs decides at once. */
		const char *name = reserved[i].name;
		if ((name[0] | 0x20) != a[0])
			continue;
		fold(name, strlen(name), b, sizeof(b));
		if (strcmp(a, b) == 0)
			return sky__error_input(
			    "predicate '%.80s': '%s' looks like the field "
			    "%s: write %s for the field, or props.%s for a "
			    "property of that name",
			    text, key, reserved[i].name, reserved[i].name, key);
	}
	return 0;
}

/* Parse the numbers of a numeric predicate into p->nums. */
static int parse_numbers(const char *text, sky_pred *p)
{
	if (!(p->nums =
		  calloc(p->n_values ? p->n_values : 1, sizeof(*p->nums))))
		return sky__error_nomem();
	if (sky__op_range(p->op) && p->n_values != 1)
		return bad_pred(text, "a range has one bound");
	for (size_t i = 0; i < p->n_values; i++) {
		const char *v = p->values[i];
		if (p->field == SKY_FIELD_VERSION) {
			char *end;
			errno = 0;
			long long n = strtoll(v, &end, 10);
			if (!*v || *end || errno || *v == ' ' || *v == '+')
				return bad_pred(text, "version is an integer");
			p->nums[i] = n;
		} else if (sky__parse_time(v, &p->nums[i]) < 0) {
			return bad_pred(text, "expected an RFC 3339 time such "
					      "as 2024-05-01T12:00:00Z");
		}
	}
	return 0;
}

int sky__pred_interval(const sky_pred *p, int64_t *lo, int64_t *hi)
{
	int64_t b = p->nums[0];
	*lo = INT64_MIN;
	*hi = INT64_MAX;
	switch (p->op) {
	case SKY_OP_GE: *lo = b; break;
	case SKY_OP_GT:
		if (b == INT64_MAX)
			return 0;
		*lo = b + 1;
		break;
	case SKY_OP_LT: *hi = b; break;
	case SKY_OP_LE:
		/* INT64_MAX itself stays out: no time or version is that. */
		*hi = b == INT64_MAX ? b : b + 1;
		break;
	default: return 0;
	}
	return *lo < *hi;
}

int sky__pred_parse(const char *text, sky_pred *out)
{
	sky_buf key = SKY_BUF_INIT, val = SKY_BUF_INIT;
	sky_pred p;
	int rc = 0, op = -1, escaped = 0;
	size_t i = 0, n = strlen(text), which = 0;
	memset(&p, 0, sizeof(p));

	/* The key, up to the first unescaped operator. */
	while (i < n && op < 0) {
		char ch = text[i];
		if (ch == '\\') {
			if (i + 1 == n) {
				rc = bad_pred(text,
					      "ends with a lone backslash");
				goto fail;
			}
			if (sky__buf_putc(&key, text[i + 1]) < 0)
				goto nomem;
			escaped = 1;
			i += 2;
		} else if ((ch == '>' || ch == '<') &&
			   range_key(&key, escaped)) {
			int eq = text[i + 1] == '=';
			op = ch == '>' ? (eq ? SKY_OP_GE : SKY_OP_GT)
				       : (eq ? SKY_OP_LE : SKY_OP_LT);
			i += eq ? 2 : 1;
		} else if (ch == '=') {
			op = SKY_OP_EQ;
			i++;
		} else if ((ch == '!' || ch == '^') && text[i + 1] == '=') {
			op = ch == '!' ? SKY_OP_NE : SKY_OP_PREFIX;
			i += 2;
		} else if (ch == '?' && i + 1 == n) {
			op = SKY_OP_EXISTS;
			i++;
		} else {
			if (sky__buf_putc(&key, ch) < 0)
				goto nomem;
			i++;
		}
	}
	if (op < 0) {
		rc = bad_pred(text, "expected key=value, key!=value, "
				    "key^=prefix, key? or key=a|b|c");
		goto fail;
	}
	if (key.len == 0) {
		rc = bad_pred(text, "the key is empty");
		goto fail;
	}
	if (!valid_utf8(key.data, key.len)) {
		rc = bad_pred(text, "the key is not valid UTF-8");
		goto fail;
	}

	/* Which field. */
	if (strncmp(key.data, "props.", 6) == 0) {
		if (key.len == 6) {
			rc = bad_pred(text, "props. needs a property name");
			goto fail;
		}
		p.field = SKY_FIELD_PROP;
		if (!(p.prop = strdup(key.data + 6)))
			goto nomem;
	} else if ((rc = key_field(text, key.data, &which)) != 0) {
		if (rc < 0)
			goto fail;
		rc = 0;
		p.field = reserved[which].field;
		if (!(reserved[which].ops & (1u << op))) {
			rc = bad_pred(text, reserved[which].why
						? reserved[which].why
						: "not an operator this "
						  "field takes");
			goto fail;
		}
	} else {
		p.field = SKY_FIELD_PROP;
		p.prop = sky__buf_detach(&key, NULL);
		if (!p.prop)
			goto nomem;
	}
	p.op = op;

	/* The values, split on unescaped '|'. */
	if (op != SKY_OP_EXISTS) {
		for (;;) {
			char ch = i < n ? text[i] : '\0';
			if (ch == '\\') {
				if (i + 1 == n) {
					rc = bad_pred(text, "ends with a lone "
							    "backslash");
					goto fail;
				}
				if (sky__buf_putc(&val, text[i + 1]) < 0)
					goto nomem;
				i += 2;
				continue;
			}
			if (ch == '|' || ch == '\0') {
				if (val.len && !valid_utf8(val.data, val.len)) {
					rc = bad_pred(text, "a value is not "
							    "valid UTF-8");
					goto fail;
				}
				if (add_value(&p, &val) < 0)
					goto nomem;
				sky__buf_clear(&val);
				if (ch == '\0')
					break;
				i++;
				continue;
			}
			if (sky__buf_putc(&val, ch) < 0)
				goto nomem;
			i++;
		}
	}
	if (p.field == SKY_FIELD_STATUS &&
	    (op == SKY_OP_EQ || op == SKY_OP_NE)) {
		for (size_t v = 0; v < p.n_values; v++)
			if (strcmp(p.values[v], "open") &&
			    strcmp(p.values[v], "closed")) {
				rc = bad_pred(text, "status is \"open\" or "
						    "\"closed\"");
				goto fail;
			}
	}
	if (p.field == SKY_FIELD_IS_DRAFT) {
		for (size_t v = 0; v < p.n_values; v++)
			if (strcmp(p.values[v], "true") &&
			    strcmp(p.values[v], "false")) {
				rc = bad_pred(text, "isDraft is true or false");
				goto fail;
			}
	}
	if (sky__field_numeric(p.field) && (rc = parse_numbers(text, &p)) < 0)
		goto fail;
	if (!(p.text = strdup(text)))
		goto nomem;
	sky__buf_free(&key);
	sky__buf_free(&val);
	*out = p;
	return 0;

nomem:
	rc = sky__error_nomem();
fail:
	sky__buf_free(&key);
	sky__buf_free(&val);
	sky__pred_clear(&p);
	return rc;
}

/* Does one string value satisfy the positive form of the predicate? */
static int value_matches(const sky_pred *p, const json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	for (size_t i = 0; i < p->n_values; i++) {
		size_t m = strlen(p->values[i]);
		int fits = p->op == SKY_OP_PREFIX ? m <= n : m == n;
		if (fits && memcmp(s, p->values[i], m) == 0)
			return 1;
	}
	return 0;
}

/* The number of a numeric field of the session; 0 when it has none. */
static int field_number(const sky_pred *p, const json_t *s, int64_t *out)
{
	const json_t *v;
	const char *t;
	switch (p->field) {
	case SKY_FIELD_VERSION:
		v = json_object_get(s, "version");
		if (!json_is_integer(v))
			return 0;
		*out = (int64_t)json_integer_value(v);
		return 1;
	case SKY_FIELD_CREATED_AT:
		/* As the index orders it: no createdAt counts as 0. */
		*out = sky__session_created_us(s);
		return 1;
	case SKY_FIELD_MODIFIED_AT:
		t = sky__json_str(s, "modifiedAt");
		return t && sky__parse_time(t, out) == 0;
	default: return 0;
	}
}

/* The session's string for a single-valued string field, or NULL. */
static const json_t *field_string(const sky_pred *p, const json_t *s)
{
	switch (p->field) {
	case SKY_FIELD_PROP:
		return json_object_get(json_object_get(s, "properties"),
				       p->prop);
	case SKY_FIELD_STATUS: return json_object_get(s, "status");
	case SKY_FIELD_NAME: return json_object_get(s, "name");
	case SKY_FIELD_CREATED_BY: return json_object_get(s, "createdBy");
	case SKY_FIELD_MODIFIED_BY: return json_object_get(s, "modifiedBy");
	default: return NULL;
	}
}

int sky__pred_eval(const sky_pred *p, const json_t *s)
{
	int has = 0, hit = 0;
	if (sky__field_numeric(p->field)) {
		int64_t x, lo, hi;
		has = field_number(p, s, &x);
		if (has && sky__op_range(p->op))
			return sky__pred_interval(p, &lo, &hi) && x >= lo &&
			       x < hi;
		for (size_t i = 0; has && i < p->n_values; i++)
			if (p->nums[i] == x)
				hit = 1;
		if (sky__op_range(p->op))
			return 0;
	} else if (p->field == SKY_FIELD_IS_DRAFT) {
		const json_t *v = json_object_get(s, "isDraft");
		has = json_is_boolean(v);
		for (size_t i = 0; has && i < p->n_values; i++)
			if (strcmp(p->values[i],
				   json_is_true(v) ? "true" : "false") == 0)
				hit = 1;
	} else if (p->field == SKY_FIELD_PARTICIPANT) {
		size_t i;
		const json_t *e;
		json_array_foreach((json_t *)json_object_get(s, "participants"),
				   i, e) {
			const json_t *id = json_object_get(e, "id");
			if (!json_is_string(id))
				continue;
			has = 1;
			if (p->op != SKY_OP_EXISTS && value_matches(p, id))
				hit = 1;
		}
	} else {
		const json_t *v = field_string(p, s);
		has = json_is_string(v);
		hit = has && p->op != SKY_OP_EXISTS && value_matches(p, v);
	}
	switch (p->op) {
	case SKY_OP_EQ:
	case SKY_OP_PREFIX: return hit;
	case SKY_OP_NE: return !hit;
	case SKY_OP_EXISTS: return has;
	default: return 0;
	}
}
