/*
 * sealed.c - the checked LMDB calls of sealed.h: CRC-32C seals on stored
 * values and a fault guard around every access to the memory map.
 *
 * The fault guard. LMDB has no page checksums: a damaged page can hold a
 * child page number past the end of the file, or a node whose size runs
 * past its page, and following it touches memory the map does not back
 * (SIGBUS) or that is not mapped (SIGSEGV). Each wrapped call sets a
 * thread-local jump buffer (sigsetjmp without saving the signal mask: no
 * system call) and marks the thread as inside the map; the handler,
 * installed once for the process, jumps back only when the thread is
 * inside a wrapped call and the faulting address lies in that call's map.
 * The handler is installed with SA_NODEFER, so the jump leaves no signal
 * blocked. Any other fault goes to the previous handler, or to the
 * default action (the faulting access runs again and kills the process).
 *
 * What a fault leaves behind: LMDB may hold its writer mutex or be in the
 * middle of a page split, so the environment is marked damaged and every
 * later transaction of the store is refused with the same message; the
 * files are never written because of a fault. A write transaction that
 * faulted is not aborted (its dirty pages may be garbled) but abandoned;
 * readers are ended as usual.
 *
 * Values the caller reads stay valid after the call returns: a sealed
 * value's bytes were all read (to check its CRC) inside the guard, and
 * the keys and values of unsealed databases are touched page by page
 * inside it too, so the caller's own reads cannot fault on them.
 */
#include "config.h"

#include <setjmp.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "error.h"
#include "sealed.h"
#include "util.h"

#undef mdb_get
#undef mdb_put
#undef mdb_del
#undef mdb_cursor_get
#undef mdb_cursor_put
#undef mdb_cursor_del
#undef mdb_cursor_count
#undef mdb_txn_begin
#undef mdb_txn_renew
#undef mdb_txn_commit
#undef mdb_txn_abort
#undef mdb_dbi_open
#undef mdb_drop
#undef mdb_env_copy2

/* ---- the guard ---- */

typedef struct {
	sigjmp_buf jb;
	const char *base;
	size_t size;
	unsigned psize;
	volatile sig_atomic_t active;
	volatile size_t page;
} guard_state;

static _Thread_local guard_state guard;
static struct sigaction old_bus, old_segv;
static pthread_once_t handler_once = PTHREAD_ONCE_INIT;

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	guard_state *g = &guard;
	uintptr_t a = (uintptr_t)si->si_addr, b = (uintptr_t)g->base;
	/* In the map; or in the first 64 KiB, where no mapping can be: LMDB
	 * following a damaged node's flags to a cursor it does not have
	 * (a NULL pointer) while the thread is inside a wrapped call. */
	int in_map = a >= b && a - b < g->size;
	if (g->active && si->si_code > 0 && (in_map || a < 65536)) {
		g->page = in_map
			      ? (size_t)(a - b) / (g->psize ? g->psize : 4096)
			      : (size_t)-1;
		g->active = 0;
		siglongjmp(g->jb, 1);
	}
	const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
	if ((old->sa_flags & SA_SIGINFO) && old->sa_sigaction) {
		old->sa_sigaction(sig, si, uc);
		return;
	}
	if (!(old->sa_flags & SA_SIGINFO) && old->sa_handler != SIG_DFL &&
	    old->sa_handler != SIG_IGN) {
		old->sa_handler(sig);
		return;
	}
	/* Back to the default action: a real fault happens again when the
	 * access runs again; a signal sent by someone is sent again. */
	signal(sig, SIG_DFL);
	if (si->si_code <= 0)
		raise(sig);
}

static void seal_crc_init(void);

static void install_handler(void)
{
	seal_crc_init();
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	/* sigaction() fails only for bad arguments: these are fixed. */
	(void)sigaction(SIGBUS, &sa, &old_bus);
	(void)sigaction(SIGSEGV, &sa, &old_segv);
}

static sky_seal_env *env_of(MDB_env *env)
{
	return env ? mdb_env_get_userctx(env) : NULL;
}

static sky_seal_env *txn_seal(MDB_txn *txn)
{
	return txn ? env_of(mdb_txn_env(txn)) : NULL;
}

/* Record the damage: the first message stays the environment's. */
static int damaged(sky_seal_env *se, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int damaged(sky_seal_env *se, const char *fmt, ...)
{
	char what[200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	char msg[sizeof(se->damage)];
	snprintf(msg, sizeof(msg),
		 "the cache file is damaged %s: run `skysync salvage DEST` to "
		 "copy its queued writes into a new cache",
		 what);
	if (se && !se->damaged) {
		memcpy(se->damage, msg, sizeof(se->damage));
		se->damaged = 1;
	}
	sky__error_damage_note(msg);
	return MDB_CORRUPTED;
}

static size_t page_of(const sky_seal_env *se, const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)se->map_base;
	return a >= b && a - b < se->map_size ? (size_t)(a - b) / se->psize : 0;
}

static _Thread_local char assert_msg[160];

/* LMDB's own assertions fail on some damaged pages (a page whose number
 * is not the one asked for...); LMDB would abort() after this callback.
 * Inside a wrapped call it is damage like a fault. */
static void on_assert(MDB_env *env, const char *msg)
{
	(void)env;
	if (!guard.active)
		return; /* LMDB aborts, as it would without us */
	snprintf(assert_msg, sizeof(assert_msg), "%s", msg);
	guard.page = (size_t)-2;
	guard.active = 0;
	siglongjmp(guard.jb, 1);
}

static int from_fault(sky_seal_env *se)
{
	se->faulted = 1;
	if (guard.page == (size_t)-2)
		return damaged(se, "(LMDB: %s)", assert_msg);
	if (guard.page == (size_t)-1)
		return damaged(se, "(a damaged page made LMDB follow a null "
				   "pointer)");
	return damaged(se, "at page %zu", guard.page);
}

/* LMDB's own signs of damage. */
static int lmdb_rc(sky_seal_env *se, int rc)
{
	if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND)
		return damaged(se, "(%s)", mdb_strerror(rc));
	return rc;
}

/*
 * Run `body` (which sets rc) under the guard of `se`. A fault inside it
 * leaves through from_fault(). Not nested: an inner call sees the guard
 * active and runs under the outer one. The handler is installed when
 * `se` is attached (sky__seal_attach), the only way a `se` is found.
 */
#define GUARDED(se, body)                                                      \
	do {                                                                   \
		int outer_ = guard.active;                                     \
		if (se && !outer_) {                                           \
			guard.base = se->map_base;                             \
			guard.size = se->map_size;                             \
			guard.psize = se->psize;                               \
			if (sigsetjmp(guard.jb, 0)) {                          \
				rc = from_fault(se);                           \
				break;                                         \
			}                                                      \
			guard.active = 1;                                      \
		}                                                              \
		body;                                                          \
		if (se && !outer_)                                             \
			guard.active = 0;                                      \
	} while (0)

/* ---- seals ---- */

/* The CRC starts from this value, not 0: a page of zeros would
 * otherwise pass as a run of empty values with good seals. */
#define SEAL_SEED 0x534b5953u /* "SKYS" */

/*
 * The seal's CRC: sky__crc32c(SEAL_SEED, ...), with the crc32 instruction
 * called here directly when the CPU has it (told once, at the first
 * attach, before any value is read). Stored values are mostly a few
 * bytes (a document member), so the call and its once-check in util.c
 * cost as much as the sum itself; any other CPU takes sky__crc32c's
 * table.
 */
static int seal_hw = -1;

static void seal_crc_init(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	__builtin_cpu_init();
	__atomic_store_n(&seal_hw, __builtin_cpu_supports("sse4.2") ? 1 : 0,
			 __ATOMIC_RELAXED);
#else
	__atomic_store_n(&seal_hw, 0, __ATOMIC_RELAXED);
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("sse4.2"))) static uint32_t
seal_crc_hw(const unsigned char *p, size_t len)
{
	uint64_t c = (uint32_t)~SEAL_SEED;
	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
	}
	uint32_t c32 = (uint32_t)c;
	if (len >= 4) {
		uint32_t w;
		memcpy(&w, p, 4);
		c32 = __builtin_ia32_crc32si(c32, w);
		p += 4;
		len -= 4;
	}
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return ~c32;
}
#endif

/* From here on sky__crc32c's three chains win over one chain here, the
 * call included (a 10 KB document's seal: ~2.8 times fewer cycles). */
#define SEAL_CRC_LONG 256

static inline uint32_t seal_crc(const unsigned char *p, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (len < SEAL_CRC_LONG &&
	    __atomic_load_n(&seal_hw, __ATOMIC_RELAXED) > 0)
		return seal_crc_hw(p, len);
#endif
	return sky__crc32c(SEAL_SEED, p, len);
}

void sky__seal_write(unsigned char *p, size_t len)
{
	sky__put_be32(p + len, seal_crc(p, len));
}

int sky__seal_check(const unsigned char *p, size_t len)
{
	if (len < SKY_SEAL_BYTES)
		return -1;
	len -= SKY_SEAL_BYTES;
	return sky__get_be32(p + len) == seal_crc(p, len) ? 0 : -1;
}

static int is_sealed(const sky_seal_env *se, MDB_dbi dbi)
{
	return se && se->sealed && dbi < 64 && (se->mask >> dbi & 1);
}

/* A key or value LMDB handed out must lie inside the map (or outside it
 * altogether: a write transaction's dirty pages are on the heap). */
static int in_bounds(const sky_seal_env *se, const MDB_val *v)
{
	uintptr_t a = (uintptr_t)v->mv_data, b = (uintptr_t)se->map_base;
	if (a < b || a - b >= se->map_size)
		return 1;
	return v->mv_size <= se->map_size - (a - b);
}

/* Read one byte per page of `v`, under the guard. */
static void touch(const MDB_val *v)
{
	const volatile unsigned char *p = v->mv_data;
	if (!p || !v->mv_size)
		return;
	for (size_t i = 0; i < v->mv_size; i += 4096)
		(void)p[i];
	(void)p[v->mv_size - 1];
}

/* The damage of a stored value at `p` whose seal does not match. */
static int seal_failed(sky_seal_env *se, const void *p)
{
	return damaged(se, "at page %zu (a stored value fails its checksum)",
		       se ? page_of(se, p) : 0);
}

/*
 * A value read from `dbi`: checked, its seal taken off. With `deferred`
 * (sky__sealed_cursor_get_unchecked), a sealed value's check is left to
 * the caller, which *deferred tells (1).
 */
static int open_value(sky_seal_env *se, MDB_dbi dbi, MDB_val *key,
		      MDB_val *data, int *deferred)
{
	if (key && !in_bounds(se, key))
		return damaged(se, "at page %zu (a key runs past the file)",
			       page_of(se, key->mv_data));
	if (key)
		touch(key);
	if (!data)
		return 0;
	if (!in_bounds(se, data))
		return damaged(se, "at page %zu (a value runs past the file)",
			       page_of(se, data->mv_data));
	if (!is_sealed(se, dbi)) {
		touch(data);
		return 0;
	}
	if (deferred && data->mv_size >= SKY_SEAL_BYTES) {
		/* Its pages are mapped now, under the guard; the check
		 * reads the rest. */
		touch(data);
		*deferred = 1;
	} else if (sky__seal_check(data->mv_data, data->mv_size) < 0) {
		return seal_failed(se, data->mv_data);
	}
	data->mv_size -= SKY_SEAL_BYTES;
	return 0;
}

/* A value written with MDB_RESERVE, sealed at the next call. */
typedef struct {
	MDB_txn *txn;
	unsigned char *p;
	size_t len;
} pending_seal;

static _Thread_local pending_seal pending;

/* This thread's write transaction (one at a time, as LMDB has it). */
static _Thread_local MDB_txn *write_txn;

static inline void seal_pending(MDB_txn *txn)
{
	if (!pending.txn)
		return; /* the common case: nothing reserved */
	if (!txn || pending.txn == txn) {
		sky__seal_write(pending.p, pending.len);
		pending.txn = NULL;
	}
}

/* ---- environments ---- */

/*
 * Where the map of `fd` starts in this process. LMDB does not say (its
 * me_mapaddr is the fixed address asked for, NULL without MDB_FIXEDMAP),
 * so the kernel's list of mappings is read: the mapping of offset 0 of
 * the file's inode. NULL when not found: the guard then takes no fault
 * as damage and a damaged page crashes as it would without it.
 */
static const char *map_start(int fd)
{
	struct stat sb;
	if (fstat(fd, &sb) < 0)
		return NULL;
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return NULL;
	char line[512];
	const char *found = NULL;
	while (!found && fgets(line, sizeof(line), f)) {
		unsigned long long start, end, off, ino;
		unsigned maj, min;
		if (sscanf(line, "%llx-%llx %*s %llx %x:%x %llu", &start, &end,
			   &off, &maj, &min, &ino) == 6 &&
		    off == 0 && ino == (unsigned long long)sb.st_ino &&
		    makedev(maj, min) == sb.st_dev)
			found = (const char *)(uintptr_t)start;
	}
	fclose(f);
	return found;
}

void sky__seal_refresh(sky_seal_env *se, MDB_env *env)
{
	MDB_envinfo info;
	MDB_stat ms;
	int fd;
	mdb_env_info(env, &info);
	se->map_base = mdb_env_get_fd(env, &fd) == 0 ? map_start(fd) : NULL;
	se->map_size = se->map_base ? info.me_mapsize : 0;
	se->psize = mdb_env_stat(env, &ms) == 0 ? ms.ms_psize : 4096;
}

void sky__seal_attach(sky_seal_env *se, MDB_env *env)
{
	/* Before the env has a seal context: every guarded call, and every
	 * seal, comes after this. */
	pthread_once(&handler_once, install_handler);
	sky__seal_refresh(se, env);
	/* Only fail for an env that is NULL. */
	(void)mdb_env_set_userctx(env, se);
	(void)mdb_env_set_assert(env, on_assert);
}

void sky__seal_db(sky_seal_env *se, MDB_dbi dbi)
{
	if (dbi < 64)
		se->mask |= (uint64_t)1 << dbi;
}

int sky__seal_refuse(const sky_seal_env *se)
{
	return sky__error_set(SKY_EDAMAGED, SKY_ERRSRC_LMDB, MDB_CORRUPTED,
			      "%s", se->damage);
}

int sky__seal_upgrade(MDB_txn *txn, MDB_dbi dbi, const char *name)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return sky__error_lmdb(rc, name);
	unsigned char *buf = NULL;
	size_t cap = 0;
	MDB_val k, v;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		if (v.mv_size + SKY_SEAL_BYTES > cap) {
			cap = (v.mv_size + SKY_SEAL_BYTES) * 2;
			unsigned char *p = realloc(buf, cap);
			if (!p) {
				rc = -1;
				break;
			}
			buf = p;
		}
		/* A copy: the put may move the bytes LMDB handed out. */
		if (v.mv_size)
			memcpy(buf, v.mv_data, v.mv_size);
		sky__seal_write(buf, v.mv_size);
		MDB_val nv = {v.mv_size + SKY_SEAL_BYTES, buf};
		if ((rc = mdb_cursor_put(cur, &k, &nv, MDB_CURRENT)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	free(buf);
	if (rc == -1)
		return sky__error_nomem();
	if (rc != MDB_NOTFOUND) {
		rc = sky__error_lmdb(rc, "sealing the cache's values");
		sky__error_prefix("upgrading the cache (%s)", name);
		return rc;
	}
	return 0;
}

int sky__seal_walk(MDB_txn *txn, const MDB_dbi *dbis, int n)
{
	for (int i = 0; i < n; i++) {
		MDB_cursor *cur;
		int rc = mdb_cursor_open(txn, dbis[i], &cur);
		if (rc)
			return sky__error_lmdb(rc, "walking the cache");
		MDB_val k, v;
		for (rc = sky__sealed_cursor_get(cur, &k, &v, MDB_FIRST);
		     rc == 0;
		     rc = sky__sealed_cursor_get(cur, &k, &v, MDB_NEXT))
			;
		mdb_cursor_close(cur);
		if (rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "walking the cache");
	}
	return 0;
}

/* ---- the wrappers ---- */

int sky__sealed_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	GUARDED(se, {
		rc = lmdb_rc(se, mdb_get(txn, dbi, key, data));
		if (rc == 0 && se)
			rc = open_value(se, dbi, NULL, data, NULL);
	});
	return rc;
}

/* Put through `cur` (a cursor put) or into txn/dbi. */
static int put_sealed(sky_seal_env *se, MDB_txn *txn, MDB_dbi dbi,
		      MDB_cursor *cur, MDB_val *key, MDB_val *data,
		      unsigned flags)
{
	MDB_val v = {data->mv_size + SKY_SEAL_BYTES, NULL};
	int rc = cur ? mdb_cursor_put(cur, key, &v, flags | MDB_RESERVE)
		     : mdb_put(txn, dbi, key, &v, flags | MDB_RESERVE);
	if (rc == MDB_KEYEXIST && (flags & MDB_NOOVERWRITE)) {
		/* LMDB hands back the value that is there. */
		if (open_value(se, dbi, NULL, &v, NULL) != 0)
			return MDB_CORRUPTED;
		*data = v;
		return rc;
	}
	if (rc)
		return lmdb_rc(se, rc);
	if (flags & MDB_RESERVE) {
		pending.txn = txn;
		pending.p = v.mv_data;
		pending.len = data->mv_size;
		data->mv_data = v.mv_data;
		return 0;
	}
	if (data->mv_size)
		memcpy(v.mv_data, data->mv_data, data->mv_size);
	sky__seal_write(v.mv_data, data->mv_size);
	return 0;
}

int sky__sealed_put(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data,
		    unsigned flags)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	GUARDED(se, {
		if (is_sealed(se, dbi))
			rc = put_sealed(se, txn, dbi, NULL, key, data, flags);
		else
			rc = lmdb_rc(se, mdb_put(txn, dbi, key, data, flags));
	});
	return rc;
}

int sky__sealed_del(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, MDB_val *data)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	/* A value given to mdb_del matters only for DUPSORT databases,
	 * which are never sealed. */
	GUARDED(se, { rc = lmdb_rc(se, mdb_del(txn, dbi, key, data)); });
	return rc;
}

static int cursor_get(MDB_cursor *cur, MDB_val *key, MDB_val *data,
		      MDB_cursor_op op, int *deferred)
{
	MDB_txn *txn = mdb_cursor_txn(cur);
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	GUARDED(se, {
		rc = lmdb_rc(se, mdb_cursor_get(cur, key, data, op));
		if (rc == 0 && se)
			rc = open_value(se, mdb_cursor_dbi(cur), key, data,
					deferred);
	});
	return rc;
}

int sky__sealed_cursor_get(MDB_cursor *cur, MDB_val *key, MDB_val *data,
			   MDB_cursor_op op)
{
	return cursor_get(cur, key, data, op, NULL);
}

int sky__sealed_cursor_get_unchecked(MDB_cursor *cur, MDB_val *key,
				     MDB_val *data, MDB_cursor_op op,
				     int *check)
{
	*check = 0;
	return cursor_get(cur, key, data, op, check);
}

int sky__sealed_check(MDB_txn *txn, const MDB_val *data)
{
	if (sky__seal_check(data->mv_data, data->mv_size + SKY_SEAL_BYTES) == 0)
		return 0;
	return seal_failed(txn_seal(txn), data->mv_data);
}

int sky__sealed_cursor_put(MDB_cursor *cur, MDB_val *key, MDB_val *data,
			   unsigned flags)
{
	MDB_txn *txn = mdb_cursor_txn(cur);
	MDB_dbi dbi = mdb_cursor_dbi(cur);
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	GUARDED(se, {
		if (is_sealed(se, dbi))
			rc = put_sealed(se, txn, dbi, cur, key, data, flags);
		else
			rc = lmdb_rc(se, mdb_cursor_put(cur, key, data, flags));
	});
	return rc;
}

int sky__sealed_cursor_del(MDB_cursor *cur, unsigned flags)
{
	MDB_txn *txn = mdb_cursor_txn(cur);
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	GUARDED(se, { rc = lmdb_rc(se, mdb_cursor_del(cur, flags)); });
	return rc;
}

int sky__sealed_cursor_count(MDB_cursor *cur, size_t *countp)
{
	MDB_txn *txn = mdb_cursor_txn(cur);
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	GUARDED(se, { rc = lmdb_rc(se, mdb_cursor_count(cur, countp)); });
	return rc;
}

int sky__sealed_txn_begin(MDB_env *env, MDB_txn *parent, unsigned flags,
			  MDB_txn **txn)
{
	sky_seal_env *se = env_of(env);
	int rc = 0;
	GUARDED(se,
		{ rc = lmdb_rc(se, mdb_txn_begin(env, parent, flags, txn)); });
	if (rc == 0 && !(flags & MDB_RDONLY))
		write_txn = *txn;
	return rc;
}

int sky__sealed_txn_renew(MDB_txn *txn)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	GUARDED(se, { rc = lmdb_rc(se, mdb_txn_renew(txn)); });
	return rc;
}

int sky__sealed_txn_commit(MDB_txn *txn)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	if (txn == write_txn)
		write_txn = NULL;
	GUARDED(se, { rc = lmdb_rc(se, mdb_txn_commit(txn)); });
	return rc;
}

/* What a fault leaves unfreed stays reachable from here, so a leak
 * checker tells it from a leak (it is left on purpose). */
static void *abandoned[16];
static atomic_uint n_abandoned;

void sky__seal_abandon(void *p)
{
	abandoned[atomic_fetch_add(&n_abandoned, 1) % 16] = p;
}

void sky__sealed_txn_abort(MDB_txn *txn)
{
	if (pending.txn == txn)
		pending.txn = NULL;
	/* After a fault LMDB may be halfway through a change (a page split,
	 * its dirty list): aborting could follow the same damaged pointers.
	 * The transaction is left as it is; the store refuses every later
	 * one, and the writer lock, a robust mutex, is freed when the
	 * process ends. */
	sky_seal_env *se = txn_seal(txn);
	int writer = txn == write_txn;
	if (writer)
		write_txn = NULL;
	if (se && se->faulted && writer) {
		sky__seal_abandon(txn);
		return;
	}
	mdb_txn_abort(txn);
}

int sky__sealed_dbi_open(MDB_txn *txn, const char *name, unsigned flags,
			 MDB_dbi *dbi)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	GUARDED(se, { rc = lmdb_rc(se, mdb_dbi_open(txn, name, flags, dbi)); });
	return rc;
}

int sky__sealed_drop(MDB_txn *txn, MDB_dbi dbi, int del)
{
	sky_seal_env *se = txn_seal(txn);
	int rc = 0;
	seal_pending(txn);
	GUARDED(se, { rc = lmdb_rc(se, mdb_drop(txn, dbi, del)); });
	return rc;
}

int sky__sealed_env_copy2(MDB_env *env, const char *path, unsigned flags)
{
	sky_seal_env *se = env_of(env);
	int rc = 0;
	GUARDED(se, { rc = lmdb_rc(se, mdb_env_copy2(env, path, flags)); });
	return rc;
}
