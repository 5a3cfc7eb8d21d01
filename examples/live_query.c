/*
 * live_query.c - watch a query's result set change as events are applied.
 *
 *   live_query CACHE_DIR
 *
 * It registers a live query for the open sessions at site Plant-7 of the
 * "inspections" application, then applies a few events of its own with
 * sky_mirror_event_apply(): a new session at Plant-7, an existing one moved to
 * another site, the new one closed, and that last event again (a duplicate,
 * which changes nothing). For each event it prints "event ID", then the
 * callback's "  entered: ID", "  left: ID" and "  changed: ID" lines, then
 * "  outcome: OUTCOME" (applied, duplicate, ...).
 * Build: cc live_query.c $(pkg-config --cflags --libs skysync)
 */
#include <skysync.h>
#include <skysync_mirror.h>
#include <stdio.h>
#include <string.h>

/* The string pieces are laid out as the JSON they spell: */
/* clang-format off */
/* Events as the server sends them (DESIGN.md section 3), one JSON text each,
 * built from a common head (application, session, event id, time). */
#define HEAD(sid, eid, at)                                                    \
	"{\"applicationId\":\"inspections\",\"sessionId\":\"" sid             \
	"\",\"eventId\":\"" eid "\",\"source\":\"api\",\"userId\":\"dave\","    \
	"\"createdAt\":\"2026-11-02T" at "Z\",\"version\":1,"
#define SESSION(sid) "\"session\":{\"applicationId\":\"inspections\","     \
	"\"sessionId\":\"" sid "\","
static const char *const events[] = {
	HEAD("s-2001", "ev-2001", "09:00:00") "\"eventType\":\"session_created\","
	SESSION("s-2001") "\"status\":\"open\",\"name\":\"Dock 2 spill\","
	"\"participants\":[{\"id\":\"dave\",\"type\":\"user\"}],"
	"\"createdBy\":\"dave\",\"createdAt\":\"2026-11-02T09:00:00Z\","
	"\"properties\":{\"site\":\"Plant-7\"}}}",
	HEAD("s-1001", "ev-2002", "09:05:00")
	"\"eventType\":\"session_properties_updated\"," SESSION("s-1001")
	"\"properties\":{\"site\":\"Plant-9\",\"line\":\"3\"}}}",
	HEAD("s-2001", "ev-2003", "09:10:00") "\"eventType\":\"session_closed\","
	SESSION("s-2001") "\"status\":\"closed\"}}",
};
static const int order[] = {0, 1, 2, 2}; /* the last twice: a duplicate */
/* clang-format on */

static void print_ids(const char *label, const char *const *ids, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("  %s: %s\n", label, ids[i]);
}

/* Runs on the thread that wrote (here: main, inside sky_mirror_event_apply),
 * after the commit and with no library lock held. The id arrays are borrowed
 * and live only during the call. */
static void on_change(const sky_live_change *change, void *payload)
{
	(void)
	    payload; /* the pointer given to sky_live_query_add: unused here */
	print_ids("entered", change->entered, change->n_entered);
	print_ids("left", change->left, change->n_left);
	print_ids("changed", change->changed, change->n_changed);
}

int main(int argc, char **argv)
{
	const char *preds[] = {"site=Plant-7", "status=open"};
	sky_cache *cache = NULL;
	sky_query *query = NULL;
	sky_live_query *live = NULL;
	int status = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CACHE_DIR\n", argv[0]);
		return 1;
	}
	if (sky_cache_open(&cache, argv[1], NULL) < 0)
		goto fail;
	if (sky_query_new(&query, cache, "inspections", preds, 2) < 0)
		goto fail;
	/* The live query copies the query, so we may free ours right away. */
	if (sky_live_query_add(&live, query, on_change, NULL) < 0)
		goto fail;
	sky_query_free(query);
	query = NULL;
	printf("watching %zu session(s)\n", sky_live_query_size(live));
	for (size_t i = 0; i < sizeof order / sizeof *order; i++) {
		const char *ev = events[order[i]];
		sky_mirror_outcome outcome;
		printf("event %.7s\n", strstr(ev, "ev-"));
		/* The callback runs inside this call, once the event committed.
		 */
		if (sky_mirror_event_apply(cache, ev, strlen(ev), &outcome) < 0)
			goto fail; /* rejected (SKY_EINVAL...) or storage
				      failure */
		printf("  outcome: %s\n", sky_mirror_outcome_name(outcome));
	}
	printf("watching %zu session(s)\n", sky_live_query_size(live));
	status = 0;
	goto cleanup;
fail:
	fprintf(stderr, "live_query: %s\n", sky_error_last()->message);
cleanup: /* every live query must be removed before the cache is closed */
	sky_live_query_remove(live);
	sky_query_free(query);
	sky_cache_close(cache);
	return status;
}
