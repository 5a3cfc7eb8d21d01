/*
 * retain.h - how long closed sessions stay in the mirror (retain.c): the
 * removal the sync engine runs after each snapshot.
 */
#ifndef SKY_RETAIN_H
#define SKY_RETAIN_H

#include "repair.h"

/*
 * Remove the closed sessions that the cache's retention (sky_cache_options
 * closed_keep_s, closed_keep_max) no longer keeps, except those with
 * local writes pending; removed() is called for each. A closed session's
 * age counts from its modifiedAt (the close moves it). Returns the number
 * removed or a negative code. The engine calls it after each snapshot.
 */
long sky__retain_closed(sky_cache *c, sky_repair_removed_fn removed, void *ctx);

#endif
