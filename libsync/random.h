/*
 * random.h - unpredictable bytes from the kernel, for the ids that must
 * not collide across processes and machines: the local ids of sessions
 * created offline, sent to the server as clientRef and matched against
 * its session list after a lost answer. (Retry jitter uses the cheap
 * sky__random_u64 of util.h; nothing here is for that.)
 */
#ifndef SKY_RANDOM_H
#define SKY_RANDOM_H

#include <stddef.h>
#include <sys/types.h>

/*
 * Fill `buf` with `n` bytes from getrandom(2), retrying after EINTR and
 * short reads. Returns 0, or -1 with the OS error recorded: there is no
 * fallback to a weaker source, so a caller fails rather than make an id
 * another client could make too.
 */
int sky__random_bytes(void *buf, size_t n);

/* The call sky__random_bytes makes; tests swap it to inject failures
 * (EINTR, short reads, ENOSYS). NULL restores getrandom(2). */
typedef ssize_t (*sky_getrandom_fn)(void *buf, size_t len, unsigned flags);
void sky__random_set_source(sky_getrandom_fn fn);

/* Length of a local id with its NUL: "local-" + 32 hex digits. */
#define SKY_LOCAL_ID_SIZE (6 + 32 + 1)

/* Write "local-" + 32 hex digits (128 random bits) into out. 0 or -1. */
int sky__local_id(char out[SKY_LOCAL_ID_SIZE]);

#endif
