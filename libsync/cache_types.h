/*
 * cache_types.h - the sky_cache and sky_reader structures, shared by the
 * modules that implement the public API (cache.c, record.c, events.c,
 * query.c...). Types only: it sits below every module that reads or
 * writes the cache, so any of them can include it without depending on
 * another (cache.c's own functions are public, in skysync.h).
 */
#ifndef SKY_CACHE_TYPES_H
#define SKY_CACHE_TYPES_H

#include <stdatomic.h>

#include "model.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "store.h"
#include "util.h"

struct sky_cache {
	sky_store st;
	sky_cache_options opts; /* with defaults filled in */
	sky_json_limits event_limits;
	char *dir;
	atomic_ulong rejected;	   /* malformed events seen by this process */
	sky_outbox_cb on_rejected; /* sky_outbox_on_rejected */
	void *on_rejected_payload;
	/* The eventType strings events are read with (NULL: built-in); set
	 * by the sync engine that uses this cache, for its lifetime. */
	const struct sky_protocol *proto;
};

/* Text sky_reader_data built, kept until the reader ends. */
typedef struct sky_reader_kept {
	struct sky_reader_kept *next;
	char *text;	    /* `inline_text`, or an allocation of its own */
	char inline_text[]; /* a text copied with the node, one allocation */
} sky_reader_kept;

struct sky_reader {
	sky_cache *cache;
	MDB_txn *txn;
	sky_reader_kept *kept; /* freed by sky_reader_end */
};

/* Shorthand for a database handle of the cache. */
#define SKY_DBI(cache, which) ((cache)->st.dbi[(which)])

#endif
