/*
 * error.h - recording errors for sky_error_last().
 *
 * Each thread has one error slot. A failing function records exactly one
 * error (the deepest, most specific one wins: callers that add context do
 * so with sky__error_prefix) and returns its code; success paths do not
 * clear it (like errno), so callers look at it only after a failure.
 */
#ifndef SKY_ERROR_H
#define SKY_ERROR_H

#include "skysync.h"

/* Internal code: an LMDB write failed with MDB_MAP_FULL; the store layer
 * grows the map and runs the write again. Never returned to users. */
#define SKY__EMAPFULL (-100)

/* Record an error and return `code`. */
int sky__error_set(int code, sky_error_source source, int native,
		   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Record an input error (SKY_EINVAL) and return SKY_EINVAL. */
int sky__error_input(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Record an out-of-memory error and return -1. */
int sky__error_nomem(void);
/* Record errno from a failed system call on `what` and return -1. */
int sky__error_os(const char *what);
/*
 * Record an LMDB failure `rc` during `what`. Returns SKY__EMAPFULL for
 * MDB_MAP_FULL (so the write is retried after growing the map), SKY_ENOTFOUND
 * for MDB_NOTFOUND, -1 otherwise.
 */
int sky__error_lmdb(int rc, const char *what);
/*
 * Record damage found in the cache file (SKY_EDAMAGED with `message`);
 * the sky__error_lmdb() for the MDB_CORRUPTED that follows keeps the
 * message. MDB_CORRUPTED, MDB_PAGE_NOTFOUND and MDB_BAD_TXN always give
 * SKY_EDAMAGED there.
 */
void sky__error_damage_note(const char *message);
/* Put "prefix: " in front of the current message. */
void sky__error_prefix(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* Copy of the current message, for keeping past the next call (or NULL). */
char *sky__error_dup(void);
/*
 * Check the version a caller set in an output struct (skysync.h,
 * conventions): 0 when it is 1 to `newest`, else SKY_EINVAL naming `type`
 * and the INIT macro to use. `out` NULL is SKY_EINVAL too.
 */
int sky__error_out_version(const char *type, const unsigned *version,
			   unsigned newest);

#endif
