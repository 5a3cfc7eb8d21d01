/*
 * viewer.h - the user a cache is synced as: its id and, when the server
 * told, its groups, kept in the cache's meta table so that queries can
 * apply that user's visibility rule offline (sky_query_set_viewer_self)
 * and the CLI can tell `--as me` from another user.
 */
#ifndef SKY_VIEWER_H
#define SKY_VIEWER_H

#include <jansson.h>

#include "skysync.h"

/* The meta key holding {"realm", "userId", "groups"?} as JSON text. */
#define SKY_META_SYNC_USER "sync_user"

/*
 * Record that the cache is synced as `user_id` in `realm`, member of
 * `groups` (a JSON array of ids; NULL: the server did not say, and the
 * record has no "groups"). Written only when it differs from what is
 * stored. Returns 0 or a negative code.
 */
int sky__viewer_store(sky_cache *c, const char *realm, const char *user_id,
		      const json_t *groups);

/* The stored record, a new reference: 0, SKY_ENOTFOUND or -1. */
int sky__viewer_load(sky_cache *c, json_t **out);

#endif
