/*
 * event_scan.h - the fast path of parsing a server event: a data event's
 * envelope read in place, only its patch built (event_scan.c).
 */
#ifndef SKY_EVENT_SCAN_H
#define SKY_EVENT_SCAN_H

#include <stddef.h>

#include "events.h"
#include "model.h"
#include "protocol.h"

/*
 * Parse `text` as a session_data_updated event without building its
 * envelope. Returns 1 with *out filled as sky__event_parse_tree() would
 * fill it (out->event NULL, out->payload and the ids owned by *out: free
 * with sky__event_clear), or 0 when the event is not the plain case the
 * scan takes; then nothing was recorded or allocated, and the caller
 * parses it in full.
 */
int sky__event_scan(const sky_json_limits *limits, const sky_protocol *proto,
		    const char *text, size_t len, sky_parsed_event *out);

#endif
