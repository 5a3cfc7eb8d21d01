/*
 * query_parse.c - query predicates (DESIGN.md §6): parsing their text into
 * a sky_pred and evaluating one against a session.
 *
 * Predicates. `key=v`, `key=a|b|c`, `key!=v` (also a|b), `key^=prefix`
 * (also a|b) and `key?`. The keys `status`, `participant` (any participant
 * id, user or group) and `name` are the session's fields; any other key is
 * a property, and `props.KEY` always means the property KEY (so a property
 * named "status" is written props.status). A backslash makes the next
 * character literal: `site=A\|B` is the one value "A|B", `a\=b=1` the
 * property "a=b".
 *
 * Invariants kept here:
 * - sky__pred_eval() is the meaning of a predicate: the planner's index
 *   keys (query_plan.c) select exactly the sessions it accepts, or a
 *   superset that is then checked with it.
 * - A parsed predicate's values are distinct and valid UTF-8.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "query_parse.h"
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

int sky__pred_parse(const char *text, sky_pred *out)
{
	sky_buf key = SKY_BUF_INIT, val = SKY_BUF_INIT;
	sky_pred p;
	int rc = 0, op = -1;
	size_t i = 0, n = strlen(text);
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
			i += 2;
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
	} else if (strcmp(key.data, "status") == 0) {
		p.field = SKY_FIELD_STATUS;
	} else if (strcmp(key.data, "participant") == 0) {
		p.field = SKY_FIELD_PARTICIPANT;
	} else if (strcmp(key.data, "name") == 0) {
		p.field = SKY_FIELD_NAME;
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

int sky__pred_eval(const sky_pred *p, const json_t *s)
{
	int has = 0, hit = 0;
	if (p->field == SKY_FIELD_PARTICIPANT) {
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
		const json_t *v;
		if (p->field == SKY_FIELD_PROP)
			v = json_object_get(json_object_get(s, "properties"),
					    p->prop);
		else
			v = json_object_get(s, p->field == SKY_FIELD_STATUS
						       ? "status"
						       : "name");
		has = json_is_string(v);
		hit = has && p->op != SKY_OP_EXISTS && value_matches(p, v);
	}
	switch (p->op) {
	case SKY_OP_EQ:
	case SKY_OP_PREFIX: return hit;
	case SKY_OP_NE: return !hit;
	case SKY_OP_EXISTS: return has;
	}
	return 0;
}

