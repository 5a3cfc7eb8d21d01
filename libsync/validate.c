/*
 * validate.c - argument checks shared by the write calls (see
 * validate.h). They only look: no check allocates, records anything but
 * the error, or changes its input, so a caller can run them all before
 * its first change and refuse a whole command at once.
 */
#include "config.h"

#include <string.h>

#include "error.h"
#include "util.h"
#include "validate.h"

size_t sky__utf8_bad_offset(const char *text, size_t n)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t i = 0;
	while (i < n) {
		unsigned char c = p[i];
		size_t len;
		unsigned cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			cp = c & 0x1fu;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			cp = c & 0x0fu;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			cp = c & 0x07u;
		} else {
			return i;
		}
		if (len > n - i)
			return i;
		for (size_t k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = (cp << 6) | (p[i + k] & 0x3fu);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return i;
		i += len;
	}
	return n;
}

int sky__check_text(const char *text, size_t max_bytes, const char *field)
{
	if (!text)
		return sky__error_input("%s: missing", field);
	size_t n = strlen(text);
	if (max_bytes && n > max_bytes)
		return sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
				      "%s: longer than %zu bytes", field,
				      max_bytes);
	size_t bad = sky__utf8_bad_offset(text, n);
	if (bad < n)
		return sky__error_input("%s: invalid UTF-8 at byte %zu", field,
					bad);
	return 0;
}

int sky__check_write_id(const char *id, const char *field)
{
	int rc = sky__check_id(id, field);
	if (rc < 0)
		return rc;
	size_t bad = strcspn(id, "/+#");
	if (id[bad])
		return sky__error_input("%s: '%c' at byte %zu (ids are path "
					"segments and topic levels)",
					field, id[bad], bad);
	return 0;
}

int sky__check_app_version(const json_t *v, const char *field)
{
	const char *got;
	if (!v)
		return sky__error_input("%s: missing", field);
	switch (json_typeof(v)) {
	case JSON_INTEGER:
		if (json_integer_value(v) >= 0)
			return 0;
		got = "a negative number";
		break;
	case JSON_REAL: got = "a number with a fraction or exponent"; break;
	case JSON_STRING: got = "a string"; break;
	case JSON_TRUE:
	case JSON_FALSE: got = "a boolean"; break;
	case JSON_NULL: got = "null"; break;
	default: got = "an array or object"; break;
	}
	return sky__error_input("%s: must be a whole number >= 0 (a JSON "
				"integer), not %s",
				field, got);
}
