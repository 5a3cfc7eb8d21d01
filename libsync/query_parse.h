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
	SKY_OP_GE,     /* key>=n    : ranges, on version and the times */
	SKY_OP_GT,     /* key>n */
	SKY_OP_LT,     /* key<n */
	SKY_OP_LE,     /* key<=n */
} sky_pred_op;

typedef enum {
	SKY_FIELD_PROP,
	SKY_FIELD_STATUS,
	SKY_FIELD_NAME,
	SKY_FIELD_PARTICIPANT,
	SKY_FIELD_CREATED_BY,
	SKY_FIELD_MODIFIED_BY,
	SKY_FIELD_IS_DRAFT,    /* values "true" and "false" */
	SKY_FIELD_VERSION,     /* an integer */
	SKY_FIELD_CREATED_AT,  /* microseconds; ranges only */
	SKY_FIELD_MODIFIED_AT, /* microseconds; ranges only */
} sky_field;

/* Is the field a number (values also parsed into sky_pred.nums)? */
static inline int sky__field_numeric(sky_field f)
{
	return f == SKY_FIELD_VERSION || f == SKY_FIELD_CREATED_AT ||
	       f == SKY_FIELD_MODIFIED_AT;
}

static inline int sky__op_range(sky_pred_op op)
{
	return op == SKY_OP_GE || op == SKY_OP_GT || op == SKY_OP_LT ||
	       op == SKY_OP_LE;
}

typedef struct {
	char *text; /* as written */
	sky_field field;
	char *prop; /* the property name (SKY_FIELD_PROP), else NULL */
	sky_pred_op op;
	char **values; /* unescaped, distinct; none for SKY_OP_EXISTS */
	size_t n_values;
	int64_t *nums; /* numeric fields: values[i] as a number (times in
			  microseconds); a range has one, its bound */
} sky_pred;

/*
 * A range predicate as the half-open interval [*lo, *hi) of numbers
 * (INT64_MIN / INT64_MAX for an open end); 0 when it is empty.
 */
int sky__pred_interval(const sky_pred *p, int64_t *lo, int64_t *hi);

/* Parse one predicate; SKY_EINVAL names it. */
int sky__pred_parse(const char *text, sky_pred *out);
void sky__pred_clear(sky_pred *p);
/* Does the session (parsed JSON) satisfy the predicate? */
int sky__pred_eval(const sky_pred *p, const json_t *session);

#endif
