/*
 * outbox.h - the durable queue of local writes and the local view built
 * over the server's state (DESIGN.md §5), shared by outbox.c (the queue
 * and the overlay), deliver.c (sending it through the sync engine) and
 * the modules that write server state (events.c, mirror.c).
 *
 * The local view of a session with queued writes is its record in
 * `sessions` (flag SKY_REC_PENDING); the server's copy is kept aside in
 * `server` with a data document of its own. Server state never lands on
 * the local view directly: sky__outbox_unveil() puts the server copy back
 * in place, the server change is applied as for any session, and
 * sky__outbox_reveil() rebuilds the local view as that state plus the
 * writes still queued. Both run in the writer's transaction.
 */
#ifndef SKY_OUTBOX_H
#define SKY_OUTBOX_H

#include <jansson.h>
#include <lmdb.h>
#include <stdint.h>

#include "cache_types.h"

/* Entry flags. */
#define SKY_OB_SENT 0x1u /* a non-idempotent write went out at least once */
/* A patch, data patch or participant whose request is out (deliver.c sets
 * it before sending, every answer's commit clears it): sky_outbox_drop
 * refuses it while an engine holds the cache. After a crash it is stale,
 * and harmless: no engine holds the lock, or the new one sends it again. */
#define SKY_OB_ON_WIRE 0x2u

/* Delivery bookkeeping in the meta table (u64 values), kept by
 * sky__outbox_delivered: writes confirmed delivered, lifetime, and the wall
 * clock (µs) of the last confirmation. Read by sky_cache_stats. */
#define SKY_META_OB_DELIVERED "outbox_delivered"
#define SKY_META_OB_LAST_DELIVERY "outbox_last_delivery"

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
/* Store `e` under e->id (and its by-session key when `index`). */
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

/*
 * The server-state hooks, called by events.c and mirror.c in their write
 * transaction around any change of server state to session app/sid.
 * unveil returns 1 when it put the server copy in place (the caller must
 * then call reveil after its change), 0 when the session has no queued
 * writes, or an error. `incoming` (may be NULL) is the server's session
 * about to be stored: if it is a session this cache created offline (its
 * clientRef names a local session) the local session is adopted first.
 */
int sky__outbox_unveil(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid, const json_t *incoming);
int sky__outbox_reveil(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid);

/*
 * Rebuild the local view of app/sid from its server copy (or nothing,
 * for a session created offline) and the writes queued for it that are
 * not dead letters.
 */
int sky__outbox_rebuild(MDB_txn *txn, sky_cache *c, const char *app,
			const char *sid);

/*
 * The server made the session that local id `local` stands for: record
 * the alias, move the queued writes of the local session to `server_sid`,
 * drop the local record and store `session` (the server's) as the server
 * copy at `as_of_us`, with the remaining writes over it. Idempotent.
 */
int sky__outbox_adopt(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *local, json_t *session, int64_t as_of_us);

/* The server id a local id became, or NULL (borrowed from the txn). */
const char *sky__outbox_alias(MDB_txn *txn, sky_cache *c, const char *app,
			      const char *sid);

/*
 * A delivered write: remove the entries `ids` (delivered together), apply
 * their effect to the server copy and, when nothing else is queued for the
 * session, make the local view the server copy. *drained is set to 1 then.
 */
int sky__outbox_delivered(MDB_txn *txn, sky_cache *c, const uint64_t *ids,
			  size_t n, int *drained);

/*
 * A permanent rejection: entry `id` becomes a dead letter with `status`
 * and `answer`; its effect is undone. A rejected create takes the writes
 * queued for its local session with it. The ids of every entry made a
 * dead letter are appended to `dead` (8 bytes big-endian each) when it
 * is not NULL, for the notifications.
 */
int sky__outbox_reject(MDB_txn *txn, sky_cache *c, uint64_t id, int status,
		       const char *answer, sky_buf *dead);

/*
 * Compose two RFC 7396 patches into one with the same effect on every
 * document, when one exists: returns a new patch, or NULL (with no error
 * set) when they do not compose -- a key that the first patch sets to a
 * non-object (or deletes) and the second patches as an object.
 */
json_t *sky__patch_compose(const json_t *first, const json_t *second);

/*
 * Check the outbox against the sessions (for sky_cache_check): entries
 * and their per-session queue agree, SKY_REC_PENDING is set exactly on
 * sessions with queued writes, and those keep a server copy. Appends one
 * line per problem; 0, SKY_EINVAL (problems found) or an error.
 */
int sky__outbox_check(MDB_txn *txn, sky_cache *c, sky_buf *problems);

/* At open: replay the writes the journal kept past its checkpoint
 * (SKY_CACHE_JOURNAL after a crash), then fold them in. */
int sky__outbox_replay_journal(sky_cache *c);

/* The callback of sky_outbox_on_rejected. */
void sky__outbox_notify_rejected(sky_cache *c, uint64_t id);

#endif
