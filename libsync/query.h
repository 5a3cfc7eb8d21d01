/*
 * query.h - property-filter queries (DESIGN.md §6), shared by query.c
 * (parsing, planning, running) and live.c (live queries, which evaluate
 * single sessions and whole result sets after each commit).
 *
 * A query is an application id and a conjunction of predicates. Each
 * predicate is parsed once into a sky_pred; the text as written is kept
 * for messages and the plan.
 */
#ifndef SKY_QUERY_H
#define SKY_QUERY_H

#include <jansson.h>
#include <lmdb.h>

#include "cache_types.h"
#include "index.h"
#include "record.h"

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

/* What a viewer may see in one application (sky_query_set_viewer). */
typedef enum {
	SKY_ACCESS_ALL,         /* no viewer, or a role with session:read:any */
	SKY_ACCESS_PARTICIPANT, /* only sessions it takes part in */
	SKY_ACCESS_NONE,        /* no role with a session:read permission */
} sky_access;

/* What the explain output tells of one step of the last run's plan. */
typedef struct {
	int kind;           /* query.c's step_kind */
	int pred;           /* predicate index, -1: visibility/all sessions */
	int visibility;
	int wide, check, estimate_exact;
	size_t n_keys, n_ranges;
	uint64_t estimate, actual;
} sky_plan_step;

struct sky_query {
	sky_cache *cache;
	char *app;
	sky_pred *preds;
	size_t n_preds;
	size_t limit;        /* 0: no limit */
	int has_start;       /* resume after `start` (from a cursor) */
	sky_ixpos start;
	char *viewer;        /* NULL: no visibility rule */
	char **groups;
	size_t n_groups;
	/* Results of the last run; the explain text is made on demand. */
	char *next_cursor;
	int ran;
	sky_access access;
	sky_plan_step *plan;
	size_t n_plan, cap_plan;
	int nothing, more;
	uint64_t rows;
	char *explain;
};

/* Parse one predicate; SKY_EINVAL names it. */
int sky__pred_parse(const char *text, sky_pred *out);
void sky__pred_clear(sky_pred *p);
/* Does the session (parsed JSON) satisfy the predicate? */
int sky__pred_eval(const sky_pred *p, const json_t *session);

/* The access of the query's viewer in txn (from the cached roles). */
int sky__query_access(MDB_txn *txn, const sky_query *q, sky_access *out);
/* Is the session visible under `access` to the query's viewer? */
int sky__query_visible(const sky_query *q, sky_access access,
		       const json_t *session);

/*
 * Is session `sid` of the query's application in its result set (limit
 * and cursor aside)? Reads the record in txn; *match is 0 when the session
 * is not in the cache.
 */
int sky__query_match(MDB_txn *txn, const sky_query *q, sky_access access,
		     const char *sid, int *match);

/*
 * Run the query in txn, ignoring limit and cursor, and call fn with the
 * session id of each result, in result order (for live queries).
 */
int sky__query_each_id(MDB_txn *txn, sky_query *q,
		       int (*fn)(const char *sid, void *arg), void *arg);

/* A new query with the same application, predicates and viewer. */
int sky__query_clone(const sky_query *q, sky_query **out);

#endif
