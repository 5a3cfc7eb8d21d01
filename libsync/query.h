/*
 * query.h - what query.c (the query object, cursors, running, explain:
 * DESIGN.md §6) gives live queries (live.c), which evaluate single
 * sessions and whole result sets after each commit. The object itself is
 * in query_types.h, the viewer's rule in query_access.h.
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
#include "query_access.h"
#include "query_parse.h"
#include "query_types.h"
#include "record.h"

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
