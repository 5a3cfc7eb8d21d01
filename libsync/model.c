/*
 * model.c - JSON parsing under limits and the validation of Skylight
 * objects (DESIGN.md §2).
 *
 * Parsing first measures the nesting depth with a cheap scan, because
 * jansson's own limit (2048) is far above ours and deep input would make
 * it recurse before we could object. Validation checks only the fields
 * the model knows; everything else is kept untouched by the callers.
 */
#include "config.h"

#include <string.h>

#include "error.h"
#include "json.h"
#include "model.h"
#include "skysync.h"
#include "util.h"

unsigned sky__json_depth(const char *text, size_t len, unsigned stop_at)
{
	unsigned depth = 0, max = 0;
	int in_string = 0;
	for (size_t i = 0; i < len; i++) {
		char c = text[i];
		if (in_string) {
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = 0;
			continue;
		}
		switch (c) {
		case '"': in_string = 1; break;
		case '[':
		case '{':
			if (++depth > max) {
				max = depth;
				if (max > stop_at)
					return max;
			}
			break;
		case ']':
		case '}':
			if (depth)
				depth--;
			break;
		}
	}
	return max;
}

int sky__json_parse(const char *text, size_t len, const sky_json_limits *limits,
		    const char *what, json_t **out)
{
	if (limits && limits->max_bytes && len > limits->max_bytes)
		return sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
				      "%s is %zu bytes, over the limit of %zu",
				      what, len, limits->max_bytes);
	const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;
	if (limits && limits->max_depth) {
		/* The one-pass loader bounds the depth itself: a tree from it
		 * is within the limit, and no scan comes first. Anything it
		 * leaves (too deep, rare, an error) takes the scan below. */
		int oom;
		json_t *v = sky__json_fast_load_within(text, len, flags,
						       limits->max_depth, &oom);
		if (v) {
			*out = v;
			return 0;
		}
		if (oom)
			return sky__error_nomem();
		unsigned d = sky__json_depth(text, len, limits->max_depth);
		if (d > limits->max_depth)
			return sky__error_set(
			    SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
			    "%s is nested deeper than the limit of %u levels",
			    what, limits->max_depth);
	}
	json_error_t jerr;
	json_t *v = sky__json_loadb(text, len, flags, &jerr);
	if (!v && json_error_code(&jerr) == json_error_null_byte_in_key)
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_JSON, 0,
				      "%s: the member name at line %d, column "
				      "%d holds U+0000 (\\u0000), which the "
				      "cache cannot store in a name",
				      what, jerr.line, jerr.column);
	if (!v)
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_JSON, 0,
				      "%s is not valid JSON (line %d, column "
				      "%d): %s",
				      what, jerr.line, jerr.column, jerr.text);
	*out = v;
	return 0;
}

char *sky__json_dump(const json_t *value, size_t *len)
{
	char *s = sky__json_dumps(value, len);
	if (!s)
		sky__error_nomem();
	return s;
}

const char *sky__json_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

int64_t sky__session_created_us(const json_t *session)
{
	int64_t us = 0;
	const char *s = sky__json_str(session, "createdAt");
	if (s && sky__parse_time(s, &us) == 0)
		return us;
	return 0;
}

static const char *type_name(const json_t *v)
{
	if (!v)
		return "missing"; /* a validator given an absent value */
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING:
		return sky__json_bignum(v, NULL) ? "a number" : "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* Field kinds of the model: what a known field must hold when present. */
enum kind { K_STRING, K_TIME, K_BOOL, K_SCALAR, K_ID };

static int check_field(const json_t *obj, const char *path, const char *key,
		       enum kind kind, int required)
{
	const json_t *v = json_object_get(obj, key);
	if (!v) {
		if (required)
			return sky__error_input("%s.%s: missing", path, key);
		return 0;
	}
	if (json_is_null(v) && !required)
		return 0;
	switch (kind) {
	case K_ID: {
		if (!sky__json_is_text(v))
			return sky__error_input(
			    "%s.%s: must be a string, not %s", path, key,
			    type_name(v));
		char field[256];
		snprintf(field, sizeof(field), "%s.%s", path, key);
		return sky__json_check_id(v, field);
	}
	case K_STRING:
		if (!sky__json_is_text(v))
			return sky__error_input(
			    "%s.%s: must be a string, not %s", path, key,
			    type_name(v));
		return 0;
	case K_TIME: {
		int64_t us;
		if (!sky__json_is_text(v))
			return sky__error_input(
			    "%s.%s: must be an RFC 3339 time string, not %s",
			    path, key, type_name(v));
		if (sky__json_has_nul(v) ||
		    sky__parse_time(json_string_value(v), &us) < 0)
			return sky__error_input(
			    "%s.%s: '%.40s' is not an RFC 3339 time", path, key,
			    json_string_value(v));
		return 0;
	}
	case K_BOOL:
		if (!json_is_boolean(v))
			return sky__error_input(
			    "%s.%s: must be a boolean, not %s", path, key,
			    type_name(v));
		return 0;
	case K_SCALAR:
		if (json_is_object(v) || json_is_array(v))
			return sky__error_input(
			    "%s.%s: must be a string or number, not %s", path,
			    key, type_name(v));
		return 0;
	}
	return 0;
}

int sky__validate_properties(const json_t *props, const char *path)
{
	if (!json_is_object(props))
		return sky__error_input(
		    "%s: must be an object of strings, not %s", path,
		    type_name(props));
	if (json_object_size(props) > SKY_MAX_PROPERTIES)
		return sky__error_set(
		    SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
		    "%s: %zu properties, over the limit of %u", path,
		    json_object_size(props), SKY_MAX_PROPERTIES);
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)props, key, v) {
		size_t klen = strlen(key);
		if (klen == 0)
			return sky__error_input("%s: empty property name",
						path);
		if (klen > SKY_MAX_PROPERTY_KEY_BYTES)
			return sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
					      "%s: property name '%.40s...' is "
					      "longer than %u bytes",
					      path, key,
					      SKY_MAX_PROPERTY_KEY_BYTES);
		if (!sky__json_is_text(v))
			return sky__error_input(
			    "%s.%s: property values must be strings, not %s",
			    path, key, type_name(v));
		if (json_string_length(v) > SKY_MAX_PROPERTY_VALUE_BYTES)
			return sky__error_set(
			    SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
			    "%s.%s: value is longer than %u bytes", path, key,
			    SKY_MAX_PROPERTY_VALUE_BYTES);
	}
	return 0;
}

int sky__validate_participants(const json_t *parts, const char *path)
{
	if (!json_is_array(parts))
		return sky__error_input("%s: must be an array, not %s", path,
					type_name(parts));
	size_t i;
	const json_t *p;
	json_array_foreach((json_t *)parts, i, p) {
		char item[256];
		snprintf(item, sizeof(item), "%s[%zu]", path, i);
		if (!json_is_object(p))
			return sky__error_input("%s: must be an object, not %s",
						item, type_name(p));
		int rc = check_field(p, item, "id", K_ID, 1);
		if (rc < 0)
			return rc;
		const json_t *type = json_object_get(p, "type");
		if (type && !json_is_null(type)) {
			if (!sky__json_streq(type, "user") &&
			    !sky__json_streq(type, "group"))
				return sky__error_input(
				    "%s.type: must be \"user\" or \"group\"",
				    item);
		}
	}
	return 0;
}

int sky__validate_session(const json_t *s, const char *path, int full)
{
	int rc;
	char sub[256];
	if (!json_is_object(s))
		return sky__error_input("%s: must be an object, not %s", path,
					type_name(s));
	(void)full;
	if ((rc = check_field(s, path, "applicationId", K_ID, 1)) < 0 ||
	    (rc = check_field(s, path, "sessionId", K_ID, 1)) < 0 ||
	    (rc = check_field(s, path, "name", K_STRING, 0)) < 0 ||
	    (rc = check_field(s, path, "description", K_STRING, 0)) < 0 ||
	    (rc = check_field(s, path, "isDraft", K_BOOL, 0)) < 0 ||
	    (rc = check_field(s, path, "version", K_SCALAR, 0)) < 0 ||
	    (rc = check_field(s, path, "createdBy", K_STRING, 0)) < 0 ||
	    (rc = check_field(s, path, "modifiedBy", K_STRING, 0)) < 0 ||
	    (rc = check_field(s, path, "createdAt", K_TIME, 0)) < 0 ||
	    (rc = check_field(s, path, "modifiedAt", K_TIME, 0)) < 0)
		return rc;
	const json_t *status = json_object_get(s, "status");
	if (status) {
		if (!sky__json_streq(status, "open") &&
		    !sky__json_streq(status, "closed"))
			return sky__error_input(
			    "%s.status: must be \"open\" or \"closed\"", path);
	}
	const json_t *props = json_object_get(s, "properties");
	if (props) {
		snprintf(sub, sizeof(sub), "%s.properties", path);
		if ((rc = sky__validate_properties(props, sub)) < 0)
			return rc;
	}
	const json_t *parts = json_object_get(s, "participants");
	if (parts) {
		snprintf(sub, sizeof(sub), "%s.participants", path);
		if ((rc = sky__validate_participants(parts, sub)) < 0)
			return rc;
	}
	return 0;
}

int sky__validate_app(const json_t *a, const char *path)
{
	int rc;
	if (!json_is_object(a))
		return sky__error_input("%s: must be an object, not %s", path,
					type_name(a));
	if ((rc = check_field(a, path, "applicationId", K_ID, 1)) < 0 ||
	    (rc = check_field(a, path, "name", K_STRING, 0)) < 0 ||
	    (rc = check_field(a, path, "description", K_STRING, 0)) < 0 ||
	    (rc = check_field(a, path, "draftVersion", K_SCALAR, 0)) < 0 ||
	    (rc = check_field(a, path, "publishedVersion", K_SCALAR, 0)) < 0 ||
	    (rc = check_field(a, path, "createdBy", K_STRING, 0)) < 0 ||
	    (rc = check_field(a, path, "createdAt", K_TIME, 0)) < 0)
		return rc;
	return 0;
}

int sky__validate_role(const json_t *r, const char *path)
{
	int rc;
	char sub[256];
	if (!json_is_object(r))
		return sky__error_input("%s: must be an object, not %s", path,
					type_name(r));
	if ((rc = check_field(r, path, "name", K_ID, 1)) < 0 ||
	    (rc = check_field(r, path, "description", K_STRING, 0)) < 0 ||
	    (rc = check_field(r, path, "createdBy", K_STRING, 0)) < 0 ||
	    (rc = check_field(r, path, "createdAt", K_TIME, 0)) < 0 ||
	    (rc = check_field(r, path, "modifiedBy", K_STRING, 0)) < 0 ||
	    (rc = check_field(r, path, "modifiedAt", K_TIME, 0)) < 0)
		return rc;
	const json_t *perms = json_object_get(r, "permissions");
	if (perms && !json_is_null(perms)) {
		size_t i;
		const json_t *p;
		if (!json_is_array(perms))
			return sky__error_input(
			    "%s.permissions: must be an array", path);
		json_array_foreach((json_t *)perms, i, p)
			if (!sky__json_is_text(p))
				return sky__error_input(
				    "%s.permissions[%zu]: must "
				    "be a string",
				    path, i);
	}
	const json_t *parts = json_object_get(r, "participants");
	if (parts && !json_is_null(parts)) {
		snprintf(sub, sizeof(sub), "%s.participants", path);
		if ((rc = sky__validate_participants(parts, sub)) < 0)
			return rc;
	}
	return 0;
}
