/*
 * error.c - the per-thread error slot behind sky_error_last().
 *
 * Messages are formatted into a fixed per-thread buffer, so recording an
 * error never allocates and works when memory is exhausted. The slot keeps
 * its last value until the next error or sky_error_clear().
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lmdb.h>

#include "error.h"

#define SKY_ERROR_MESSAGE_MAX 512

typedef struct {
	sky_error err;
	char message[SKY_ERROR_MESSAGE_MAX];
} error_slot;

static _Thread_local error_slot slot = {{0, SKY_ERRSRC_NONE, 0, ""}, ""};
/* The damage sealed.c found in this thread's last LMDB call, for the
 * sky__error_lmdb() that reports the call's MDB_CORRUPTED. */
static _Thread_local char damage_note[320];

static int record(int code, sky_error_source source, int native,
		  const char *fmt, va_list ap)
{
	vsnprintf(slot.message, sizeof(slot.message), fmt, ap);
	slot.err.code = code;
	slot.err.source = source;
	slot.err.native = native;
	slot.err.message = slot.message;
	return code;
}

const sky_error *sky_error_last(void)
{
	if (slot.err.message == NULL)
		slot.err.message = "";
	return &slot.err;
}

void sky_error_clear(void)
{
	slot.err.code = 0;
	slot.err.source = SKY_ERRSRC_NONE;
	slot.err.native = 0;
	slot.message[0] = '\0';
	slot.err.message = slot.message;
}

int sky__error_set(int code, sky_error_source source, int native,
		   const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	record(code, source, native, fmt, ap);
	va_end(ap);
	return code;
}

int sky__error_input(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	record(SKY_EINVAL, SKY_ERRSRC_INPUT, 0, fmt, ap);
	va_end(ap);
	return SKY_EINVAL;
}

int sky__error_out_version(const char *type, const unsigned *version,
			   unsigned newest)
{
	if (!version)
		return sky__error_input("%s: no struct given", type);
	if (*version < 1 || *version > newest)
		return sky__error_input("%s version %u is not 1 to %u: "
					"initialize it with its _INIT macro",
					type, *version, newest);
	return 0;
}

int sky__error_nomem(void)
{
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_NOMEM, ENOMEM,
			      "out of memory");
}

/* What a full disk means for the caller, in words: an LMDB write that
 * fails is aborted whole, so nothing of it was kept. */
#define DISK_FULL_NOTE                                                         \
	"the write was not committed; the cache, its outbox included, is as "  \
	"it was before it (free some space and try again)"

static int disk_full(int e)
{
	return e == ENOSPC
#ifdef EDQUOT
	       || e == EDQUOT
#endif
	    ;
}

int sky__error_os(const char *what)
{
	int e = errno;
	/* What was kept depends on the caller (`what` says it). */
	if (disk_full(e))
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, e,
				      "%s: disk full (%s)", what, strerror(e));
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, e, "%s: %s", what,
			      strerror(e));
}

void sky__error_damage_note(const char *message)
{
	snprintf(damage_note, sizeof(damage_note), "%s", message);
	sky__error_set(SKY_EDAMAGED, SKY_ERRSRC_LMDB, MDB_CORRUPTED, "%s",
		       message);
}

int sky__error_lmdb(int rc, const char *what)
{
	int code = SKY_ERROR;
	if (rc == MDB_MAP_FULL)
		code = SKY__EMAPFULL;
	else if (rc == MDB_NOTFOUND)
		code = SKY_ENOTFOUND;
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
	    rc == MDB_BAD_TXN) {
		/* Damage: the message names the page when sealed.c saw it. */
		if (damage_note[0])
			sky__error_set(SKY_EDAMAGED, SKY_ERRSRC_LMDB, rc,
				       "%s (%s)", damage_note, what);
		else
			sky__error_set(
			    SKY_EDAMAGED, SKY_ERRSRC_LMDB, rc,
			    "the cache file is damaged (%s: %s): run "
			    "`skysync salvage DEST` to copy its "
			    "queued writes into a new cache",
			    what, mdb_strerror(rc));
		damage_note[0] = '\0';
		return SKY_EDAMAGED;
	}
	if (disk_full(rc))
		return sky__error_set(code, SKY_ERRSRC_LMDB, rc,
				      "%s: disk full (%s): " DISK_FULL_NOTE,
				      what, mdb_strerror(rc));
	sky__error_set(code, SKY_ERRSRC_LMDB, rc, "%s: %s", what,
		       mdb_strerror(rc));
	return code;
}

void sky__error_prefix(const char *fmt, ...)
{
	char prefix[SKY_ERROR_MESSAGE_MAX];
	char joined[2 * SKY_ERROR_MESSAGE_MAX + 2];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(joined, sizeof(joined), "%s: %s", prefix, slot.message);
	memcpy(slot.message, joined, sizeof(slot.message) - 1);
	slot.message[sizeof(slot.message) - 1] = '\0';
	slot.err.message = slot.message;
}

char *sky__error_dup(void)
{
	return strdup(slot.message);
}

void sky_free(void *ptr)
{
	free(ptr);
}

const char *sky_version(void)
{
	return PACKAGE_VERSION;
}
