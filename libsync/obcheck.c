/*
 * obcheck.c - the outbox's part of `skysync check` (sky_cache_check):
 * reads the queue, its per-session order, the session records and the
 * server copies, and reports every way they disagree with what queue.c
 * and view.c keep true -- an entry missing from its session's queue or a
 * queue key naming no entry of that session, a session flagged pending
 * without queued writes (or the reverse), queued writes without a server
 * copy, a server copy without queued writes, a server copy that lost its
 * data. It never writes; it stops at nothing but a failed read.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "error.h"
#include "obcheck.h"
#include "queue.h"
#include "record.h"
#include "view.h"

/* Live entries queued for app/sid, or the negative code of the read
 * (SKY_ENOTFOUND or SKY_EINVAL when the queue names a missing or corrupt
 * entry); *data_patches gets how many of them are data patches. */
static long live_count(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid, long *data_patches)
{
	sky_ob_list l;
	*data_patches = 0;
	int rc = sky__ob_session_entries(txn, c, app, sid, 1, &l);
	if (rc < 0)
		return rc;
	long n = (long)l.n;
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i].e.op == SKY_WRITE_DATA)
			(*data_patches)++;
	sky__ob_list_free(&l);
	return n;
}

int sky__outbox_check(MDB_txn *txn, sky_cache *c, sky_buf *problems)
{
	unsigned found = 0;
	MDB_cursor *cur;
	MDB_val key, val;
	int mrc;
#define PROBLEM(...)                                                           \
	do {                                                                   \
		found++;                                                       \
		sky__buf_printf(problems, __VA_ARGS__);                        \
		sky__buf_putc(problems, '\n');                                 \
	} while (0)
	/* Every entry is readable and filed under its session. */
	if (mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_OUTBOX), &cur))
		return sky__error_lmdb(EIO, "checking the outbox");
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		sky_ob_entry e;
		uint64_t id = key.mv_size == 8 ? sky__get_be64(key.mv_data) : 0;
		if (!id || sky__ob_decode(id, &val, &e) < 0 ||
		    e.op < SKY_WRITE_CREATE || e.op > SKY_WRITE_EVENT ||
		    e.state > SKY_OUTBOX_REJECTED) {
			PROBLEM("outbox entry %llu is corrupt",
				(unsigned long long)id);
			continue;
		}
		unsigned char sk[SKY_KEY_MAX];
		MDB_val skey = {sky__ob_queue_key(sk, e.app, e.sid, id), sk},
			sv;
		if (mdb_get(txn, SKY_DBI(c, SKY_DB_OBSESS), &skey, &sv))
			PROBLEM("outbox entry %llu (%s/%s) is missing from its "
				"session's queue",
				(unsigned long long)id, e.app, e.sid);
	}
	mdb_cursor_close(cur);
	/* Every queue key names an entry of that session. */
	if (mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_OBSESS), &cur))
		return sky__error_lmdb(EIO, "checking the outbox");
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		const char *app = key.mv_data;
		size_t alen = strnlen(app, key.mv_size);
		if (key.mv_size < alen + 11) {
			PROBLEM("a session queue key of the outbox is corrupt");
			continue;
		}
		const char *sid = app + alen + 1;
		uint64_t id = sky__get_be64((unsigned char *)key.mv_data +
					    key.mv_size - 8);
		sky_ob_entry e;
		if (sky__ob_get(txn, c, id, &e) < 0 || strcmp(e.app, app) ||
		    strcmp(e.sid, sid))
			PROBLEM("the queue of %s/%s names outbox entry %llu, "
				"which is not one of its writes",
				app, sid, (unsigned long long)id);
	}
	mdb_cursor_close(cur);
	/* A session's local view is flagged pending exactly when writes are
	 * queued for it, and keeps its server copy aside. */
	if (mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_SESSIONS), &cur))
		return sky__error_lmdb(EIO, "checking the outbox");
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		sky_record rec, srv;
		const char *app = key.mv_data;
		size_t alen = strnlen(app, key.mv_size);
		if (alen + 1 >= key.mv_size ||
		    sky__record_decode(&val, &rec) < 0)
			continue; /* check_sessions reports those */
		char sid[SKY_KEY_MAX + 1];
		memcpy(sid, app + alen + 1, key.mv_size - alen - 1);
		sid[key.mv_size - alen - 1] = '\0';
		char appc[SKY_KEY_MAX + 1];
		memcpy(appc, app, alen);
		appc[alen] = '\0';
		long data_patches;
		long live = live_count(txn, c, appc, sid, &data_patches);
		int pending = (rec.flags & SKY_REC_PENDING) != 0;
		if (live == SKY_ENOTFOUND || live == SKY_EINVAL)
			continue; /* a damaged queue, reported above */
		if (live < 0) {
			mdb_cursor_close(cur);
			return -1;
		}
		if (pending != (live > 0))
			PROBLEM(
			    "session %s/%s is %sflagged pending but has %ld "
			    "queued write%s",
			    appc, sid, pending ? "" : "not ", live,
			    live == 1 ? "" : "s");
		int local = sky__ob_is_local(sid);
		int has_srv =
		    sky__view_server_get(txn, c, appc, sid, &srv) == 0;
		if (pending && !local && !has_srv)
			PROBLEM("session %s/%s has queued writes but no server "
				"copy",
				appc, sid);
		if (has_srv && !pending)
			PROBLEM("session %s/%s keeps a server copy without "
				"queued writes",
				appc, sid);
		/* Without a data patch queued, the local view's data is the
		 * server copy's. With one, the local view may have data the
		 * server copy has not (a first patch of a session without
		 * data, or of a session just created offline). */
		if (has_srv && data_patches == 0 &&
		    !sky__doc_exists(txn, sky__data_dbi(c), srv.docid) &&
		    sky__doc_exists(txn, sky__data_dbi(c), rec.docid))
			PROBLEM("the server copy of %s/%s has lost its data",
				appc, sid);
	}
	mdb_cursor_close(cur);
#undef PROBLEM
	return found ? SKY_EINVAL : 0;
}
