/*
 * fuzz_event.c - libFuzzer target: one input is one event text applied to a
 * cache that persists across inputs (so later inputs meet state built by
 * earlier ones). Checks: no crash or sanitizer report; a rejected event
 * changes nothing (the event log and counters stay as they were); every
 * 512 inputs the whole cache passes sky_cache_check.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "skysync.h"
#include "skysync_mirror.h"

static sky_cache *cache;
static unsigned long runs;

static void open_cache(void)
{
	char tmpl[] = "/tmp/skyfuzz.XXXXXX";
	if (!mkdtemp(tmpl))
		abort();
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability =
	    SKY_DURABILITY_NONE; /* speed: durability is not under test */
	o.event_log_size = 1000;
	o.pending_limit = 1000;
	if (sky_cache_open(&cache, tmpl, &o) != 0)
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (!cache)
		open_cache();
	sky_stats before = SKY_STATS_INIT, after = SKY_STATS_INIT;
	if (sky_cache_stats(cache, &before) != 0)
		abort();
	sky_mirror_outcome outcome;
	int rc =
	    sky_mirror_event_apply(cache, (const char *)data, size, &outcome);
	if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
		if (outcome != SKY_MIRROR_REJECTED)
			abort();
		if (sky_cache_stats(cache, &after) != 0)
			abort();
		if (after.sessions != before.sessions ||
		    after.event_log != before.event_log ||
		    after.events_applied != before.events_applied ||
		    after.data_entries != before.data_entries ||
		    after.pending_events != before.pending_events)
			abort(); /* a rejected event changed the cache */
		if (strlen(sky_error_last()->message) == 0)
			abort(); /* every rejection says why */
	} else if (rc != 0) {
		abort(); /* storage failure on valid input */
	}
	if (++runs % 512 == 0 && sky_cache_check(cache, NULL, NULL) != 0)
		abort();
	return 0;
}
