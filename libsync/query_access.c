/*
 * query_access.c - the viewer's visibility rule of a query
 * (DESIGN.md §6): the viewer's access in an application, read from the
 * cached roles, and whether a session's participant list lets it see the
 * session. The planner (query_plan.c) turns the rule into a step; live
 * queries (live.c) apply it to single sessions.
 *
 * Invariant kept here: a viewer sees every session only with a role
 * granting session:read:any, the sessions it (or one of its groups) takes
 * part in with session:read:participant, and nothing otherwise.
 */
#include "config.h"

#include <string.h>

#include "error.h"
#include "json.h"
#include "query_access.h"
#include "store.h"

/* ---- visibility ---- */

static int is_group(const json_t *participant)
{
	const char *t = json_string_value(json_object_get(participant, "type"));
	return t && strcmp(t, "group") == 0;
}

/* Is the viewer (directly or through a group) in this participant list? */
static int viewer_in(const sky_query *q, const json_t *parts)
{
	size_t i;
	const json_t *e;
	json_array_foreach((json_t *)parts, i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		if (!id)
			continue;
		if (!is_group(e)) {
			if (strcmp(id, q->viewer) == 0)
				return 1;
			continue;
		}
		for (size_t g = 0; g < q->n_groups; g++)
			if (strcmp(id, q->groups[g]) == 0)
				return 1;
	}
	return 0;
}

int sky__query_access(MDB_txn *txn, const sky_query *q, sky_access *out)
{
	if (!q->viewer) {
		*out = SKY_ACCESS_ALL;
		return 0;
	}
	unsigned char prefix[SKY_KEY_MAX];
	size_t plen = sky__key2(prefix, sizeof(prefix), q->app, NULL);
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(q->cache, SKY_DB_ROLES), &cur);
	if (rc)
		return sky__error_lmdb(rc, "reading roles");
	int any = 0, part = 0;
	MDB_val key = {plen, prefix}, val;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	     rc == 0 && key.mv_size >= plen &&
	     memcmp(key.mv_data, prefix, plen) == 0 && !any;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		/* Role values are JSON text with a trailing NUL. */
		size_t len = val.mv_size ? val.mv_size - 1 : 0;
		json_t *role = sky__json_loadb(val.mv_data, len, 0, NULL);
		if (!role)
			continue; /* `check` reports it; it grants nothing */
		if (viewer_in(q, json_object_get(role, "participants"))) {
			size_t i;
			const json_t *perm;
			json_array_foreach(json_object_get(role, "permissions"),
					   i, perm) {
				/* Whole strings: "x\u0000y" is not "x". */
				if (sky__json_streq(perm, "session:read:any"))
					any = 1;
				else if (sky__json_streq(
					     perm, "session:read:participant"))
					part = 1;
			}
		}
		json_decref(role);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "reading roles");
	*out = any    ? SKY_ACCESS_ALL
	       : part ? SKY_ACCESS_PARTICIPANT
		      : SKY_ACCESS_NONE;
	return 0;
}

int sky__query_visible(const sky_query *q, sky_access access,
		       const json_t *session)
{
	switch (access) {
	case SKY_ACCESS_ALL: return 1;
	case SKY_ACCESS_NONE: return 0;
	case SKY_ACCESS_PARTICIPANT:
		return viewer_in(q, json_object_get(session, "participants"));
	}
	return 0;
}
