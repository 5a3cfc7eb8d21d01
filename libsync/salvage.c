/*
 * salvage.c - sky_cache_salvage(): copy what can still be read out of a
 * damaged cache into a new one.
 *
 * The damaged environment is opened read-only without its lock file
 * (MDB_RDONLY | MDB_NOLOCK), so none of its files is written. Its
 * databases are walked entry by entry under the fault guard of sealed.h,
 * every sealed value checked; each entry that reads back whole is put
 * into the new cache in one write transaction, sealed anew. A walk that
 * meets a page it cannot read jumps past it: it seeks the first key
 * after the last one read, then after ever longer prefixes of it... and
 * when nothing past the damage can be reached, the rest of that database
 * is reported as lost. The index is not copied but rebuilt from the
 * session records that were saved, so it matches them.
 *
 * What delivery needs is all copied when readable: the outbox, its
 * per-session order, the server copies and aliases of sessions with
 * pending writes, the session records and their data (the local view),
 * and the meta counters (the outbox's next id). The mirror is brought up
 * to date by the next sync.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache_types.h"
#include "error.h"
#include "index.h"
#include "outbox.h"
#include "record.h"
#include "store.h"
#include "util.h"

static const char *const db_names[SKY_DB_COUNT] = {
    "meta",   "apps",	 "roles",   "sessions", "data",	  "evlog",
    "evseq",  "pending", "sevents", "index",	"outbox", "outbox_by_session",
    "server", "alias",
};

typedef struct {
	sky_cache *dest;
	MDB_txn *src;
	MDB_dbi sdbi[SKY_DB_COUNT];
	sky_seal_env *se;
	sky_salvage_report *rep;
	sky_report_cb report;
	void *payload;
} salvage_ctx;

/* One line of the salvage's account. */
#define say(s, ...) sky__report((s)->report, (s)->payload, __VA_ARGS__)

/* Put one session's index entries (the index is rebuilt, not copied). */
static int reindex(MDB_txn *txn, sky_cache *c, const MDB_val *val)
{
	sky_record rec;
	if (sky__record_decode(val, &rec) != 0)
		return SKY_EINVAL;
	json_t *s = sky__record_json(&rec);
	if (!s)
		return SKY_EINVAL;
	int rc = sky__index_update(txn, c, NULL, 0, s, rec.created_us);
	json_decref(s);
	return rc;
}

/*
 * Whether an entry is copied: not the schema record (the new cache has
 * its own), and no entry pointing at one that was lost: a session's
 * order entry (those are rebuilt), an event sequence without its
 * event id (databases are copied in order, so the one pointed at was
 * already copied if it could be).
 */
static int copy_outbox(salvage_ctx *s, MDB_txn *txn, const MDB_val *k,
		       const MDB_val *v);

static int wanted(MDB_txn *txn, sky_cache *c, int d, const MDB_val *k,
		  const MDB_val *v)
{
	MDB_val tk, tv;
	if (d == SKY_DB_META)
		return !(k->mv_size == 6 &&
			 memcmp(k->mv_data, "schema", 6) == 0);
	if (d == SKY_DB_OBSESS)
		return 0; /* rebuilt with each queued write */
	if (d == SKY_DB_EVSEQ) {
		tk = *v;
		return mdb_get(txn, SKY_DBI(c, SKY_DB_EVLOG), &tk, &tv) == 0;
	}
	return 1;
}

/* A queued write is stored with its session-order entry (which is
 * therefore not copied): only if it decodes. */
static int copy_outbox(salvage_ctx *s, MDB_txn *txn, const MDB_val *k,
		       const MDB_val *v)
{
	sky_ob_entry e;
	if (k->mv_size != 8 ||
	    sky__ob_decode(sky__get_be64(k->mv_data), v, &e) != 0) {
		say(s, "outbox: an entry does not decode: not copied");
		s->rep->damaged_ranges++;
		return 0;
	}
	return sky__ob_store(txn, s->dest, &e);
}

/* An event id whose sequence entry was lost is dropped too. */
static int drop_unpaired_events(MDB_txn *txn, sky_cache *c)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_EVLOG), &cur);
	if (rc)
		return sky__error_lmdb(rc, "the new cache's event log");
	MDB_val k, v, sk, sv;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		sk = v;
		if (mdb_get(txn, SKY_DBI(c, SKY_DB_EVSEQ), &sk, &sv) == 0)
			continue;
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc == MDB_NOTFOUND ? 0 : sky__error_lmdb(rc, "the event log");
}

/* The smallest key after `k` (k followed by a zero byte), or after the
 * prefix of `k` of `keep` bytes with its last byte raised. 0 when there
 * is none. */
static size_t key_after(unsigned char *out, const MDB_val *k, size_t keep)
{
	if (keep == k->mv_size && keep < SKY_KEY_MAX) {
		memcpy(out, k->mv_data, keep);
		out[keep] = 0;
		return keep + 1;
	}
	memcpy(out, k->mv_data, keep);
	while (keep > 0 && out[keep - 1] == 0xff)
		keep--;
	if (keep == 0)
		return 0;
	out[keep - 1]++;
	return keep;
}

/* Copy database `d`: every entry that reads back whole. */
static int copy_db(MDB_txn *txn, void *arg, int d)
{
	salvage_ctx *s = arg;
	sky_cache *c = s->dest;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(s->src, s->sdbi[d], &cur);
	if (rc)
		return 0; /* counted as lost by the caller */
	unsigned char last[SKY_KEY_MAX + 1], seek[SKY_KEY_MAX + 1];
	MDB_val lastk = {0, last};
	int have_last = 0;
	uint64_t copied = 0, skips = 0;
	unsigned bad_seals = 0; /* in a row: many mean a garbled page */
	MDB_val k, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	for (;;) {
		if (rc == 0 && (k.mv_size == 0 || k.mv_size > SKY_KEY_MAX)) {
			/* A key no cache writes: a garbled node. */
			say(s, "%s: an entry with a damaged key: not copied",
			    db_names[d]);
			s->rep->damaged_ranges++;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		if (rc == 0) {
			MDB_val kk = k, vv = v;
			int prc = 0;
			if (!wanted(txn, c, d, &k, &v))
				prc = 0; /* the new cache has its own schema;
					    and no dangling references */
			else if (d == SKY_DB_OUTBOX)
				prc = copy_outbox(s, txn, &k, &v);
			else if ((prc =
				      mdb_put(txn, SKY_DBI(c, d), &kk, &vv, 0)))
				return sky__error_lmdb(prc,
						       "writing the new cache");
			if (prc < 0)
				return prc;
			if (d == SKY_DB_SESSIONS &&
			    (prc = reindex(txn, c, &v)) < 0 &&
			    prc != SKY_EINVAL)
				return prc;
			if (k.mv_size <= SKY_KEY_MAX) {
				memcpy(last, k.mv_data, k.mv_size);
				lastk.mv_size = k.mv_size;
				have_last = 1;
			}
			copied++;
			bad_seals = 0;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		if (rc == MDB_NOTFOUND)
			break;
		if (!s->se->faulted && ++bad_seals < 32) {
			/* A value failed its seal: LMDB's cursor is on it,
			 * whole; step over it. */
			say(s,
			    "%s: an entry after %zu readable ones fails its "
			    "checksum: not copied",
			    db_names[d], (size_t)copied);
			s->rep->damaged_ranges++;
			if (++skips > 100000)
				break;
			rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
			continue;
		}
		/* A page that faults: seek past it, giving up ever more of
		 * the last key read. */
		s->se->faulted = 0;
		mdb_cursor_close(cur);
		cur = NULL;
		if (++skips > 100000 ||
		    mdb_cursor_open(s->src, s->sdbi[d], &cur))
			break;
		int found = 0;
		for (size_t keep = have_last ? lastk.mv_size : 0; have_last;
		     keep--) {
			size_t n = key_after(seek, &lastk, keep);
			if (!n)
				break;
			MDB_val sk = {n, seek};
			s->se->faulted = 0;
			rc = mdb_cursor_get(cur, &sk, &v, MDB_SET_RANGE);
			if (rc == 0) {
				k = sk;
				found = 1;
				break;
			}
			if (s->se->faulted) {
				/* The cursor is not to be trusted now. */
				mdb_cursor_close(cur);
				if (mdb_cursor_open(s->src, s->sdbi[d], &cur)) {
					cur = NULL;
					break;
				}
			}
			if (rc == MDB_NOTFOUND || keep == 0)
				break;
		}
		say(s, "%s: a damaged page after %zu readable entr%s: %s",
		    db_names[d], (size_t)copied, copied == 1 ? "y" : "ies",
		    found ? "its entries are lost, the walk goes on after it"
			  : "the entries after it could not be read");
		s->rep->damaged_ranges++;
		if (!found || !cur)
			break;
	}
	if (cur)
		mdb_cursor_close(cur);
	if (d == SKY_DB_OUTBOX)
		s->rep->outbox = copied;
	if (d == SKY_DB_SESSIONS)
		s->rep->sessions = copied;
	s->rep->entries += copied;
	return 0;
}

static int copy_all(MDB_txn *txn, void *arg)
{
	salvage_ctx *s = arg;
	s->rep->entries = s->rep->outbox = s->rep->sessions = 0;
	s->rep->damaged_ranges = 0;
	int rc = 0;
	for (int d = 0; d < SKY_DB_COUNT && rc == 0; d++) {
		if (d == SKY_DB_INDEX)
			continue;
		if (s->sdbi[d] == (MDB_dbi)-1) {
			say(s, "%s: cannot be opened in the damaged cache",
			    db_names[d]);
			s->rep->damaged_ranges++;
			continue;
		}
		rc = copy_db(txn, arg, d);
	}
	if (rc == 0)
		rc = drop_unpaired_events(txn, s->dest);
	return rc;
}

static int salvage_run(const char *damaged_dir, const char *dest_dir,
		       sky_salvage_report *out, sky_report_cb report,
		       void *payload)
{
	char path[4096];
	struct stat sb;
	snprintf(path, sizeof(path), "%s/data.mdb", dest_dir);
	if (stat(path, &sb) == 0)
		return sky__error_set(SKY_EEXISTS, SKY_ERRSRC_OS, EEXIST,
				      "%s already holds a cache: choose an "
				      "empty directory",
				      dest_dir);
	snprintf(path, sizeof(path), "%s/data.mdb", damaged_dir);
	if (stat(path, &sb) != 0)
		return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_OS, ENOENT,
				      "%s: no cache here", damaged_dir);
	sky_seal_env se;
	memset(&se, 0, sizeof(se));
	MDB_env *env = NULL;
	MDB_txn *src = NULL;
	sky_cache *dest = NULL;
	int rc = mdb_env_create(&env);
	if (rc)
		return sky__error_lmdb(rc, "opening the damaged cache");
	mdb_env_set_maxdbs(env, SKY_DB_COUNT + 2);
	/* Big enough for any file: a read-only map may exceed it. */
	mdb_env_set_mapsize(env, (size_t)sb.st_size + ((size_t)1 << 20));
	if ((rc = mdb_env_open(env, damaged_dir,
			       MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600))) {
		rc = sky__error_lmdb(rc, damaged_dir);
		goto done;
	}
	sky__seal_attach(&se, env);
	if ((rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &src))) {
		rc = sky__error_lmdb(rc, "reading the damaged cache");
		src = NULL;
		goto done;
	}
	salvage_ctx s = {NULL, src, {0}, &se, out, report, payload};
	for (int d = 0; d < SKY_DB_COUNT; d++)
		if (mdb_dbi_open(src, db_names[d], 0, &s.sdbi[d]))
			s.sdbi[d] = (MDB_dbi)-1;
	/* Seals: schema 2 has them on every database but the index. */
	MDB_val key = {6, (void *)"schema"}, val;
	if (s.sdbi[SKY_DB_META] != (MDB_dbi)-1 &&
	    mdb_get(src, s.sdbi[SKY_DB_META], &key, &val) == 0 &&
	    val.mv_size == 4 + SKY_SEAL_BYTES &&
	    sky__seal_check(val.mv_data, val.mv_size) == 0)
		se.sealed = 1;
	for (int d = 0; d < SKY_DB_COUNT; d++)
		if (d != SKY_DB_INDEX && s.sdbi[d] != (MDB_dbi)-1)
			sky__seal_db(&se, s.sdbi[d]);
	/* Later reads go on past damage: this is the salvage. */
	if ((rc = sky_cache_open(&dest, dest_dir, NULL)) < 0) {
		dest = NULL;
		goto done;
	}
	s.dest = dest;
	memset(out, 0, sizeof(*out));
	rc = sky__store_write(&dest->st, copy_all, &s);
done:
	if (dest)
		sky_cache_close(dest);
	/* A fault inside LMDB may leave its reader unsafe to end. */
	if (src && !se.faulted)
		mdb_txn_abort(src);
	if (!se.faulted) {
		mdb_env_close(env);
	} else {
		sky__seal_abandon(src);
		sky__seal_abandon(env);
	}
	return rc;
}

/* The size of sky_salvage_report in each version (index: the version). */
static const size_t report_size[SKY_SALVAGE_REPORT_VERSION + 1] = {
    0,
    sizeof(sky_salvage_report),
};

int sky_cache_salvage(const char *damaged_dir, const char *dest_dir,
		      sky_report_cb report, void *payload,
		      sky_salvage_report *out)
{
	int rc =
	    out ? sky__error_out_version("sky_salvage_report", &out->version,
					 SKY_SALVAGE_REPORT_VERSION)
		: 0;
	if (rc < 0)
		return rc;
	sky_salvage_report all = SKY_SALVAGE_REPORT_INIT;
	rc = salvage_run(damaged_dir, dest_dir, &all, report, payload);
	if (out) {
		/* Only what the caller's version has. */
		all.version = out->version;
		memcpy(out, &all, report_size[out->version]);
	}
	return rc;
}
