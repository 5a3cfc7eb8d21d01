/*
 * query_types.h - the query object (DESIGN.md §6) and the types it is
 * made of, shared by query.c (the object, cursors, running, explain),
 * query_plan.c (planning and the index walk), query_access.c (the
 * viewer's rule) and live.c. Types only: it sits below all of them, so
 * the planner can read a query without depending on the module that runs
 * it.
 */
#ifndef SKY_QUERY_TYPES_H
#define SKY_QUERY_TYPES_H

#include <stddef.h>
#include <stdint.h>

#include "cache_types.h"
#include "index.h"
#include "query_parse.h"

/* What a viewer may see in one application (sky_query_set_viewer). */
typedef enum {
	SKY_ACCESS_ALL,		/* no viewer, or a role with session:read:any */
	SKY_ACCESS_PARTICIPANT, /* only sessions it takes part in */
	SKY_ACCESS_NONE,	/* no role with a session:read permission */
} sky_access;

/* What the explain output tells of one step of the last run's plan. */
typedef struct {
	int kind; /* query.c's step_kind */
	int pred; /* predicate index, -1: visibility/all sessions */
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
	size_t limit;  /* 0: no limit */
	int has_start; /* resume after `start` (from a cursor) */
	sky_ixpos start;
	int start_order;   /* the order the cursor was given out in */
	int64_t start_key; /* ...and its modifiedAt (modifiedAt orders) */
	int order;	   /* 0 createdAt, 1 createdAt desc, 2 modifiedAt,
			      3 modifiedAt desc: sky_query_set_order */
	char *viewer;	   /* NULL: no visibility rule */
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

#endif
