/*
 * rand.h - random bytes and ids from the kernel for skylight-emu
 * (rand.c): token signatures, session and event ids, the fault seed.
 * The fault injector's reproducible draws are faults.c's, not these.
 */
#ifndef EMU_RAND_H
#define EMU_RAND_H

#include <stddef.h>

/* Fill `buf` with `n` random bytes from the kernel (never fails: aborts). */
void emu_random_bytes(void *buf, size_t n);
/* A random UUID version 4 as text into out[37]. */
void emu_uuid4(char out[37]);

#endif
