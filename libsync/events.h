/*
 * events.h - event validation and application (DESIGN.md §3), shared with
 * the modules that replay events (record puts from sync, the outbox).
 */
#ifndef SKY_EVENTS_H
#define SKY_EVENTS_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache_types.h"
#include "protocol_types.h"

/* A validated event; strings point into `event`. */
typedef struct {
	json_t *event;	  /* the whole event (owned) */
	const char *text; /* the original text (borrowed) */
	size_t len;
	const char *app, *sid, *eid;
	sky_event_type type;
	int64_t created_us;
	json_t *payload; /* `session` or `data` (borrowed from event) */
} sky_parsed_event;

/* Parse and validate; 0, SKY_EINVAL or SKY_ELIMIT (field named). */
int sky__event_parse(sky_cache *c, const char *text, size_t len,
		     sky_parsed_event *out);
void sky__event_clear(sky_parsed_event *pe);

/*
 * Apply one validated event inside `txn`. Does every check before its
 * first write, so a SKY_ELIMIT return leaves the transaction unchanged.
 * `from_pending` skips the event-log check (the event was logged when it
 * was kept for later).
 */
int sky__event_apply_txn(MDB_txn *txn, sky_cache *c, sky_parsed_event *pe,
			 int from_pending, sky_mirror_outcome *outcome);

/* Apply the events kept for a session that has just arrived. */
int sky__pending_replay(MDB_txn *txn, sky_cache *c, const char *app,
			const char *sid);

#endif
