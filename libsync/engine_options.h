/*
 * engine_options.h - the sync engine's options (engine_options.c): which
 * versions of sky_engine_options are understood, what must be given and
 * the defaults of what may be left out.
 */
#ifndef SKY_ENGINE_OPTIONS_H
#define SKY_ENGINE_OPTIONS_H

#include "skysync.h"

/* 0 when opts is a version this library reads, else -1 (error set). */
int sky__engine_options_check(const sky_engine_options *opts);
/* Copy opts (checked) into the engine: e->o with the strings pointing at
 * the engine's own copies, defaults filled in, the protocol file read. On
 * failure (<0, error set) e holds what was copied, for sky_engine_free. */
int sky__engine_options_take(sky_engine *e, const sky_engine_options *opts);

#endif
