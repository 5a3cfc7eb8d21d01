/*
 * query.h - the query object (DESIGN.md §6), shared by query.c (the
 * object, cursors, running, explain), query_plan.c (planning and the
 * index walk) and live.c (live queries, which evaluate single sessions
 * and whole result sets after each commit).
 *
 * A query is an application id and a conjunction of predicates, each
 * parsed once into a sky_pred (query_parse.h).
 */
#ifndef SKY_QUERY_H
#define SKY_QUERY_H

#include <jansson.h>
#include <lmdb.h>

#include "cache_types.h"
#include "index.h"
#include "query_parse.h"
#include "record.h"

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
	int wide, check, estimate_exact, bounded;
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
	int start_order;     /* the order the cursor was given out in */
	int64_t start_key;   /* ...and its modifiedAt (modifiedAt orders) */
	int order;           /* 0 createdAt, 1 createdAt desc, 2 modifiedAt,
				3 modifiedAt desc: sky_query_set_order */
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
