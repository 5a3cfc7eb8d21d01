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
#include "model.h"
#include "protocol_types.h"

/*
 * A validated event. Parsed in full, `event` holds the whole tree and the
 * strings and `payload` point into it; scanned (event_scan.h, the data
 * events' fast path), `event` is NULL, `payload` is owned and the ids are
 * in `owned`. Either way `payload` is non-NULL exactly when the event
 * parsed.
 */
typedef struct {
	json_t *event;	  /* the whole event (owned), or NULL when scanned */
	const char *text; /* the original text (borrowed) */
	size_t len;
	const char *app, *sid, *eid;
	sky_event_type type;
	int64_t created_us;
	json_t *payload; /* `session` or `data` (borrowed from event, or
			    owned when event is NULL) */
	char *owned;	 /* the ids when scanned */
} sky_parsed_event;

/*
 * Parse and validate; 0, SKY_EINVAL or SKY_ELIMIT (field named). Data
 * events in their plain form take the scan (sky__event_scan), the rest
 * sky__event_parse_tree; both give the same result.
 */
int sky__event_parse(sky_cache *c, const char *text, size_t len,
		     sky_parsed_event *out);
/*
 * The fast path (event_scan.c): `text` as a session_data_updated event,
 * its envelope read in place and only its patch built. Returns 1 with
 * *out filled as sky__event_parse_tree() would fill it (out->event NULL,
 * the payload and ids owned by *out), or 0 when the event is not the
 * plain case it takes: then nothing was recorded or allocated, and the
 * caller parses it in full.
 */
int sky__event_scan(const sky_json_limits *limits,
		    const struct sky_protocol *proto, const char *text,
		    size_t len, sky_parsed_event *out);
/* The full parse, through a jansson tree of the whole event. */
int sky__event_parse_tree(sky_cache *c, const char *text, size_t len,
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
