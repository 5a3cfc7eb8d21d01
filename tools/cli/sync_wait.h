/*
 * sync_wait.h - `skysync sync --wait` (sync_wait.c).
 */
#ifndef SKY_CLI_SYNC_WAIT_H
#define SKY_CLI_SYNC_WAIT_H

#include "skysync.h"

/*
 * Make the sync engine for `c`. Returns 0 with *engine set (this command
 * holds the cache: run the sync), or 1 with *exit_code set: another engine
 * holds it and either `wait` is 0 (the error is printed) or the writes
 * queued at the start were delivered by it, or failed, or `timeout_s`
 * (when > 0) ran out.
 */
int cli_sync_engine_or_wait(sky_cache *c, const sky_engine_options *o, int wait,
			    double timeout_s, int quiet, sky_engine **engine,
			    int *exit_code);

#endif
