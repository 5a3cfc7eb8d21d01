/*
 * query_plan.h - a query's plan (query_plan.c): the steps built from its
 * predicates and the viewer's rule, each a set of index keys with counts,
 * and the walk that yields the matching sessions in result order. query.c
 * runs a plan and tells of it in the explain output.
 */
#ifndef SKY_QUERY_PLAN_H
#define SKY_QUERY_PLAN_H

#include <lmdb.h>

#include "index.h"
#include "query_types.h"
#include "record.h"

/*
 * The sessions under a union of index keys. Enumerated keys carry their
 * exact counts; a prefix with more than MAX_UNION_KEYS keys is kept as its
 * ranges instead (`wide`), to be collected if it drives the plan.
 */
typedef struct {
	sky_ixkey *keys;
	size_t n_keys;
	sky_ixkey *ranges; /* logical prefixes (not finished) of a wide path */
	size_t n_ranges;
	int wide;
	int inexact; /* hashed keys: candidates need the record check */
	uint64_t estimate;
	int estimate_exact;
	/* A number range (version, modifiedAt): ranges[0] is the finished
	 * key of the low end and `hi` that of the (excluded) high end. */
	int bounded;
	sky_ixkey hi;
} path_t;

typedef struct {
	MDB_cursor *cur;
	const sky_ixkey *key;
	sky_ixpos pos;
	int state; /* 0 not positioned, 1 at pos, 2 exhausted */
} subcur;

typedef struct {
	subcur *subs;
	size_t n_subs;
	sky_ixpos *arr; /* a collected (wide) path */
	size_t n_arr, at;
	int collected;
} stream_t;

typedef enum {
	STEP_DRIVE,   /* the first stream: candidates come from it */
	STEP_JOIN,    /* intersected with the driver (leapfrog) */
	STEP_EXCLUDE, /* != answered by probing the index */
	STEP_FILTER,  /* checked on the record */
	STEP_BOUND,   /* a createdAt range: a range of positions */
} step_kind;

typedef struct {
	step_kind kind;
	int pred;	/* predicate index; -1: visibility or all sessions */
	int visibility; /* the viewer's participant rule (pred -1) */
	path_t path;
	int check;	 /* also evaluate the predicate on the record */
	uint64_t actual; /* candidates that passed this step */
} step_t;

typedef struct {
	sky_query *q;
	MDB_txn *txn;
	sky_access access;
	step_t *steps;
	size_t n_steps;
	size_t n_joins; /* steps[0..n_joins) have streams */
	stream_t *streams;
	MDB_cursor *probe;
	int need_json;
	int nothing;	    /* the viewer may see nothing */
	int empty;	    /* the createdAt ranges exclude everything */
	int has_lo, has_hi; /* createdAt ranges: positions in [lo, hi) */
	sky_ixpos lo, hi;
	int index_only;	     /* count: no record read unless a check needs it */
	unsigned ix_version; /* of the cache's index (index.h) */
	uint64_t rows;
	int more;
} plan_t;

/*
 * Plan the query in txn. `from` is the first position a run may return
 * (empty: from the start); wide paths collect their sessions from there.
 */
int sky__plan_build(MDB_txn *txn, sky_query *q, const sky_ixpos *from,
		    plan_t *p);
void sky__plan_free(plan_t *p);

/*
 * The next result at or after *target: 0 with *x and *rec set (and
 * *target moved past it), 1 when there is none, < 0 on error.
 */
int sky__plan_next(plan_t *p, sky_ixpos *target, sky_ixpos *x, sky_record *rec);

/* The position right after x: x followed by a zero byte. */
void sky__ixpos_successor(sky_ixpos *t, const sky_ixpos *x);

#endif
