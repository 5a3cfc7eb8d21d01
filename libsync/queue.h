/*
 * queue.h - the outbox's queue of local writes (DESIGN.md §5): its
 * entries, their per-session order, their states and the dead letters,
 * the aliases of local ids, and the coalescing of queued patches. Nothing
 * here touches a session record: the local view laid over the server's
 * state is view.h's, the public write calls outbox.h's.
 *
 * Kept true by every function that writes an entry: an entry under id N
 * in `outbox` has exactly one key app \0 sid \0 N (u64 big-endian) in
 * `outbox_by_session`, so a session's entries read in queue order.
 */
#ifndef SKY_QUEUE_H
#define SKY_QUEUE_H

#include <jansson.h>
#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cache_types.h"

/* Entry flags. */
#define SKY_OB_SENT 0x1u /* a non-idempotent write went out at least once */
/* A patch, data patch or participant whose request is out (deliver.c sets
 * it before sending, every answer's commit clears it): sky_outbox_drop
 * refuses it while an engine holds the cache. After a crash it is stale,
 * and harmless: no engine holds the lock, or the new one sends it again. */
#define SKY_OB_ON_WIRE 0x2u

/* Delivery bookkeeping in the meta table (u64 values), kept by
 * sky__ob_count_delivered: writes confirmed delivered, lifetime, and the
 * wall clock (µs) of the last confirmation. Read by sky_cache_stats. */
#define SKY_META_OB_DELIVERED "outbox_delivered"
#define SKY_META_OB_LAST_DELIVERY "outbox_last_delivery"

/* The ids this cache gives sessions it creates offline start so. */
#define SKY_OB_LOCAL_PREFIX "local-"

/* Is `sid` a local id (a session created offline)? */
static inline int sky__ob_is_local(const char *sid)
{
	return strncmp(sid, SKY_OB_LOCAL_PREFIX, strlen(SKY_OB_LOCAL_PREFIX)) ==
	       0;
}

/* One queued write, decoded (strings borrowed from the value or owned by
 * the caller, as the function that fills it says). */
typedef struct {
	uint64_t id;
	sky_write_op op;
	sky_outbox_state state;
	unsigned flags;
	unsigned attempts;
	int64_t queued_us;
	int64_t next_try_us;
	int http_status;
	const char *app;
	const char *sid;   /* where it goes: server id, or the local id */
	const char *local; /* CREATE, and writes to its session: the local id */
	const char *body;
	const char *answer;
} sky_ob_entry;

/* Decode a stored entry (strings borrowed from `val`). 0 or SKY_EINVAL. */
int sky__ob_decode(uint64_t id, const MDB_val *val, sky_ob_entry *out);
/* Store `e` under e->id, and its by-session key. */
int sky__ob_store(MDB_txn *txn, sky_cache *c, const sky_ob_entry *e);
/* Read entry `id` (strings borrowed from the transaction). */
int sky__ob_get(MDB_txn *txn, sky_cache *c, uint64_t id, sky_ob_entry *out);
/*
 * An owned copy of an entry, for code that writes while it reads: the
 * strings of a decoded entry live in the page a write may change. Free
 * with free(out->strs). 0 or -1 (out of memory).
 */
typedef struct {
	sky_ob_entry e;
	char *strs;
} sky_ob_owned;
int sky__ob_own(const sky_ob_entry *e, sky_ob_owned *out);

/* Remove entry `id` and its by-session key. */
int sky__ob_remove(MDB_txn *txn, sky_cache *c, const sky_ob_entry *e);

/* The by-session key of entry `id` of app/sid into buf[SKY_KEY_MAX]; its
 * length, or 0 when the ids are too long. */
size_t sky__ob_queue_key(unsigned char *buf, const char *app, const char *sid,
			 uint64_t id);

/*
 * The entries of session app/sid in queue order, owned. `live_only`
 * leaves out dead letters. *out is freed with sky__ob_list_free.
 */
typedef struct {
	sky_ob_owned *v;
	size_t n, cap;
} sky_ob_list;
int sky__ob_session_entries(MDB_txn *txn, sky_cache *c, const char *app,
			    const char *sid, int live_only, sky_ob_list *out);
void sky__ob_list_free(sky_ob_list *l);
/* Whether session app/sid has entries at all: 1, 0, or a negative code.
 * One cursor step, no entry read. */
int sky__ob_session_queued(MDB_txn *txn, sky_cache *c, const char *app,
			   const char *sid);

/*
 * Count `n` writes confirmed delivered (SKY_META_OB_DELIVERED, and the time
 * in SKY_META_OB_LAST_DELIVERY), in the transaction that removes them, so
 * the count never disagrees with the queue.
 */
int sky__ob_count_delivered(MDB_txn *txn, sky_cache *c, size_t n);

/* Note a new dead letter `id` in `dead` (8 bytes big-endian; nothing when
 * `dead` is NULL) for the caller's notifications. */
int sky__ob_note_dead(sky_buf *dead, uint64_t id);

/* The server id a local id became, or NULL (borrowed from the txn). */
const char *sky__outbox_alias(MDB_txn *txn, sky_cache *c, const char *app,
			      const char *sid);
/* Record that local id `local` of `app` became `server_sid`. */
int sky__ob_alias_put(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *local, const char *server_sid);

/* The public form of an entry (strings borrowed from `e`). */
void sky__ob_to_public(const sky_ob_entry *e, sky_outbox_entry *p);

/* The callback of sky_outbox_on_rejected, for entry `id`. */
void sky__outbox_notify_rejected(sky_cache *c, uint64_t id);

/*
 * Compose two RFC 7396 patches into one with the same effect on every
 * document, when one exists: returns a new patch, or NULL (with no error
 * set) when they do not compose -- a key that the first patch sets to a
 * non-object (or deletes) and the second patches as an object.
 */
json_t *sky__patch_compose(const json_t *first, const json_t *second);

#endif
