/*
 * query_parse.h - one query predicate: its text parsed into a sky_pred
 * (query_parse.c), and its evaluation against a session's JSON, which is
 * the definition every index answer must agree with.
 *
 * The text as written is kept for messages and the plan.
 */
#ifndef SKY_QUERY_PARSE_H
#define SKY_QUERY_PARSE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	SKY_OP_EQ,     /* key=a|b|c : has one of the values */
	SKY_OP_NE,     /* key!=a|b  : absent, or has none of the values */
	SKY_OP_PREFIX, /* key^=p|q  : has a value starting with one of them */
	SKY_OP_EXISTS, /* key?      : has the field */
} sky_pred_op;

typedef enum {
	SKY_FIELD_PROP,
	SKY_FIELD_STATUS,
	SKY_FIELD_NAME,
	SKY_FIELD_PARTICIPANT,
} sky_field;

typedef struct {
	char *text; /* as written */
	sky_field field;
	char *prop; /* the property name (SKY_FIELD_PROP), else NULL */
	sky_pred_op op;
	char **values; /* unescaped, distinct; none for SKY_OP_EXISTS */
	size_t n_values;
} sky_pred;

/* Parse one predicate; SKY_EINVAL names it. */
int sky__pred_parse(const char *text, sky_pred *out);
void sky__pred_clear(sky_pred *p);
/* Does the session (parsed JSON) satisfy the predicate? */
int sky__pred_eval(const sky_pred *p, const json_t *session);

#endif
