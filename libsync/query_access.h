/*
 * query_access.h - the viewer's visibility rule of a query
 * (query_access.c): what the viewer's roles let it see in the query's
 * application, and whether one session is visible under that. Used by
 * the planner (query_plan.c) and by live queries (live.c).
 */
#ifndef SKY_QUERY_ACCESS_H
#define SKY_QUERY_ACCESS_H

#include <jansson.h>
#include <lmdb.h>

#include "query_types.h"

/* The access of the query's viewer in txn (from the cached roles). */
int sky__query_access(MDB_txn *txn, const sky_query *q, sky_access *out);
/* Is the session visible under `access` to the query's viewer? */
int sky__query_visible(const sky_query *q, sky_access access,
		       const json_t *session);

#endif
