/*
 * sealed.h - every LMDB call of the library, checked: stored values carry
 * a CRC-32C trailer ("sealed") and every access to the memory map runs
 * under a fault guard, so a damaged cache file is an error
 * (SKY_EDAMAGED, "the cache file is damaged at page N") and never a crash
 * or a wrong answer.
 *
 * This header is included into every file of the library by the build
 * (-include, libsync/Makefile.inc and tests/fuzz/Makefile.inc), before
 * anything else; it renames the
 * LMDB calls that read or write the map to the sky__sealed_* wrappers of
 * sealed.c. So no call site can forget the check, code written later
 * included, and modules keep calling mdb_get() and friends as LMDB
 * documents them. sealed.c and salvage.c, which need the raw calls,
 * #undef the names.
 *
 * The wrappers find what to check through mdb_env_get_userctx(): an
 * environment without a sky_seal_env (a test's or a tool's own LMDB
 * file) passes through unchecked, only guarded when it has one.
 *
 * Invariants:
 * - A value of a sealed database is the caller's bytes + their CRC-32C
 *   (4 bytes, big-endian, from a fixed non-zero seed so that zeros are no
 *   valid empty value); callers never see the trailer. A value that
 *   fails its CRC is reported as damage (MDB_CORRUPTED) and never
 *   returned, but by sky__sealed_cursor_get_unchecked(), whose caller
 *   checks each value (sky__sealed_check) before it uses its bytes.
 * - The index database (DUPSORT, values are keys of a sorted set) is not
 *   sealed: its entries hold nothing but keys, and `check` compares each
 *   one against the sealed record it points to.
 * - A value written with MDB_RESERVE is sealed at the transaction's next
 *   LMDB call (the caller fills it before that: LMDB wants it filled
 *   before the next update, and nothing here reads it back unfilled), at
 *   the latest at its commit.
 * - Only a fault whose address lies inside the environment's map (or in
 *   the first 64 KiB, where nothing is mapped: LMDB following a damaged
 *   node's flags to a NULL cursor), during a wrapped call of the thread,
 *   is taken as damage; any other SIGBUS or
 *   SIGSEGV goes to the handler that was there before, or kills the
 *   process as it would have without us.
 * - After damage was seen, the environment is marked damaged for good:
 *   the store refuses further transactions with the first message.
 */
#ifndef SKY_SEALED_H
#define SKY_SEALED_H

/* First in every file of the library (before any system header), so the
 * feature macros of config.h come first here too. */
#include "config.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

/* Bytes a seal adds to a value. */
#define SKY_SEAL_BYTES 4u

/* What the wrappers know of one environment (its user context). */
typedef struct sky_seal_env {
	int sealed;	      /* values of `mask` databases carry a seal */
	uint64_t mask;	      /* bit d: database handle d is sealed */
	const char *map_base; /* the memory map, for the fault guard */
	size_t map_size;
	unsigned psize;		       /* LMDB page size */
	volatile sig_atomic_t damaged; /* damage seen: refuse from now on */
	volatile sig_atomic_t faulted; /* ...by a fault inside LMDB, whose
					  state is then not to be trusted */
	char damage[320];	       /* the first damage's message */
	unsigned schema; /* the cache's schema version (store.h), which
			    says how doc.c ends a whole document */
} sky_seal_env;

/* Attach `se` to `env` (after mdb_env_open) and note its map. */
void sky__seal_attach(sky_seal_env *se, MDB_env *env);
/* Note the map again after mdb_env_set_mapsize (no transaction open). */
void sky__seal_refresh(sky_seal_env *se, MDB_env *env);
/* Is the database sealed? Sealing `dbi` from now on. */
void sky__seal_db(sky_seal_env *se, MDB_dbi dbi);
/* The damage error (SKY_EDAMAGED) for an environment marked damaged. */
int sky__seal_refuse(const sky_seal_env *se);

/* Seal every value of `dbi` (the upgrade from schema 1), in `txn`;
 * `name` for errors. Returns 0, SKY__EMAPFULL or -1. */
int sky__seal_upgrade(MDB_txn *txn, MDB_dbi dbi, const char *name);

/* Read every entry of the `n` databases under the guard, checking each
 * seal: 0, or SKY_EDAMAGED naming the first damage (`check`'s walk). */
int sky__seal_walk(MDB_txn *txn, const MDB_dbi *dbis, int n);

/* Keep `p`, left unfreed after a fault on purpose, reachable. */
void sky__seal_abandon(void *p);

/* Seal `len` bytes at `p` into `p + len` (SKY_SEAL_BYTES more). */
void sky__seal_write(unsigned char *p, size_t len);
/* 0 if the value (seal included) is whole, -1 if not. */
int sky__seal_check(const unsigned char *p, size_t len_with_seal);

int sky__sealed_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int sky__sealed_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data,
		    unsigned flags);
int sky__sealed_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data);
int sky__sealed_cursor_get(MDB_cursor *cur, MDB_val *key, MDB_val *data,
			   MDB_cursor_op op);
int sky__sealed_cursor_put(MDB_cursor *cur, MDB_val *key, MDB_val *data,
			   unsigned flags);

/*
 * sky__sealed_cursor_get() with the value's seal left for later, for a
 * read that walks many values first and then uses each once (a document
 * read whole, doc_members.c): each value is then read from memory once,
 * by its check right before its bytes are copied, where checking in the
 * walk read it twice (a 1 MB document no longer fits the core's cache
 * between the two). The value comes without its seal, inside the map,
 * under the fault guard as any value; *check is 1 when the caller must
 * pass it to sky__sealed_check() before it uses its bytes (0: the
 * database is not sealed). Until then the caller may only locate things
 * in it, bounded by its length, and must trust nothing it decodes.
 */
int sky__sealed_cursor_get_unchecked(MDB_cursor *cur, MDB_val *key,
				     MDB_val *data, MDB_cursor_op op,
				     int *check);
/* The check a value read by sky__sealed_cursor_get_unchecked() waits
 * for, in its transaction: 0, or the damage (the environment is then
 * marked damaged, as when the check fails in the read). */
int sky__sealed_check(MDB_txn *txn, const MDB_val *data);
int sky__sealed_cursor_del(MDB_cursor *cur, unsigned flags);
int sky__sealed_cursor_count(MDB_cursor *cur, size_t *countp);
int sky__sealed_txn_begin(MDB_env *env, MDB_txn *parent, unsigned flags,
			  MDB_txn **txn);
int sky__sealed_txn_renew(MDB_txn *txn);
int sky__sealed_txn_commit(MDB_txn *txn);
void sky__sealed_txn_abort(MDB_txn *txn);
int sky__sealed_dbi_open(MDB_txn *txn, const char *name, unsigned flags,
			 MDB_dbi *dbi);
int sky__sealed_drop(MDB_txn *txn, MDB_dbi dbi, int del);
int sky__sealed_env_copy2(MDB_env *env, const char *path, unsigned flags);

#define mdb_get sky__sealed_get
#define mdb_put sky__sealed_put
#define mdb_del sky__sealed_del
#define mdb_cursor_get sky__sealed_cursor_get
#define mdb_cursor_put sky__sealed_cursor_put
#define mdb_cursor_del sky__sealed_cursor_del
#define mdb_cursor_count sky__sealed_cursor_count
#define mdb_txn_begin sky__sealed_txn_begin
#define mdb_txn_renew sky__sealed_txn_renew
#define mdb_txn_commit sky__sealed_txn_commit
#define mdb_txn_abort sky__sealed_txn_abort
#define mdb_dbi_open sky__sealed_dbi_open
#define mdb_drop sky__sealed_drop
#define mdb_env_copy2 sky__sealed_env_copy2

#endif
