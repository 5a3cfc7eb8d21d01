/*
 * enginelock.h - one sync engine per cache: the lock file engine.lock in
 * the cache directory (enginelock.c).
 */
#ifndef SKY_ENGINELOCK_H
#define SKY_ENGINELOCK_H

#include <stddef.h>
#include <sys/types.h>

#define SKY_ENGINE_LOCK_FILE "engine.lock"

/*
 * Take the engine lock of the cache in `dir`, for as long as *fd stays
 * open. Returns 0 (*fd set), SKY_EBUSY when another engine holds it (in
 * this process or another; the message names its pid and command), or -1.
 */
int sky__engine_lock_take(const char *dir, int *fd);
/* Give it back (fd from sky__engine_lock_take; -1 is ignored). */
void sky__engine_lock_release(int fd);
/*
 * Whether an engine holds the lock of `dir` now: 1 (and, when pid is not
 * NULL, its pid or 0 when not yet written, and its command line in
 * cmd[cap]), 0 when none does, or -1.
 */
int sky__engine_lock_held(const char *dir, pid_t *pid, char *cmd, size_t cap);

#endif
