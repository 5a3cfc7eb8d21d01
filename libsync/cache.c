/*
 * cache.c - the public face of a cache: opening and closing it, read
 * snapshots and the read calls, listings, statistics, backup, and the full
 * consistency check behind `skysync check`.
 *
 * Reads never block writers and see one consistent snapshot (an LMDB read
 * transaction). Borrowed pointers handed out through a sky_reader point
 * into the memory map and stay valid until the reader ends.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "doc.h"
#include "error.h"
#include "events.h"
#include "index.h"
#include "json.h"
#include "outbox.h"
#include "record.h"
#include "stale.h"

/*
 * The durability mode in both forms the library reads: o->durability, and
 * the one SKY_CACHE_* bit of it in o->flags that store.c and the outbox
 * test. The deprecated bits of older callers map to a mode (NOSYNC before
 * FAST_WRITES, JOURNAL over both but refused with NOSYNC, as in 0.1);
 * with a mode set they are refused, so that two modes never meet.
 */
static int durability_flags(sky_cache_options *o)
{
	const unsigned bits =
	    SKY_CACHE_NOSYNC | SKY_CACHE_FAST_WRITES | SKY_CACHE_JOURNAL;
	unsigned f = o->flags & bits;
	if ((unsigned)o->durability > SKY_DURABILITY_NONE)
		return sky__error_input("sky_cache_options: durability %u is "
					"not a sky_durability",
					(unsigned)o->durability);
	if (f && o->durability != SKY_DURABILITY_DEFAULT)
		return sky__error_input("sky_cache_options: durability and the "
					"deprecated SKY_CACHE_NOSYNC, "
					"_FAST_WRITES, _JOURNAL flags exclude "
					"each other: set durability alone");
	if ((f & SKY_CACHE_JOURNAL) && (f & SKY_CACHE_NOSYNC))
		return sky__error_input(
		    "SKY_CACHE_JOURNAL and SKY_CACHE_NOSYNC "
		    "exclude each other: choose one");
	if (f & SKY_CACHE_JOURNAL)
		o->durability = SKY_DURABILITY_JOURNAL;
	else if (f & SKY_CACHE_NOSYNC)
		o->durability = SKY_DURABILITY_NONE;
	else if (f & SKY_CACHE_FAST_WRITES)
		o->durability = SKY_DURABILITY_FAST;
	o->flags &= ~bits;
	switch (o->durability) {
	case SKY_DURABILITY_FAST: o->flags |= SKY_CACHE_FAST_WRITES; break;
	case SKY_DURABILITY_JOURNAL: o->flags |= SKY_CACHE_JOURNAL; break;
	case SKY_DURABILITY_NONE: o->flags |= SKY_CACHE_NOSYNC; break;
	default: break;
	}
	return 0;
}

int sky_cache_open(sky_cache **out, const char *dir,
		   const sky_cache_options *opts)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	if (!dir || !*dir)
		return sky__error_input("no cache directory given");
	if (opts) {
		if (opts->version < 1 ||
		    opts->version > SKY_CACHE_OPTIONS_VERSION)
			return sky__error_input(
			    "sky_cache_options version %u is not 1 to %u: "
			    "use SKY_CACHE_OPTIONS_INIT",
			    opts->version, SKY_CACHE_OPTIONS_VERSION);
		/* Each version's struct ends before the fields the next one
		 * added: version 1 before closed_keep_s, 2 before
		 * durability. The rest keep their defaults. */
		memcpy(&o, opts,
		       opts->version == 1
			   ? offsetof(sky_cache_options, closed_keep_s)
		       : opts->version == 2
			   ? offsetof(sky_cache_options, durability)
			   : sizeof(o));
		o.version = SKY_CACHE_OPTIONS_VERSION;
	}
	int rc = durability_flags(&o);
	if (rc < 0)
		return rc;
	if (o.closed_keep_s < 0 && o.closed_keep_s != SKY_KEEP_FOREVER)
		return sky__error_input("closed_keep_s: must be 0, positive or "
					"SKY_KEEP_FOREVER");
	if (!o.closed_keep_s)
		o.closed_keep_s = SKY_DEFAULT_CLOSED_KEEP_S;
	if (!o.max_event_bytes)
		o.max_event_bytes = SKY_DEFAULT_MAX_EVENT_BYTES;
	if (!o.max_depth)
		o.max_depth = SKY_DEFAULT_MAX_DEPTH;
	if (!o.event_log_size)
		o.event_log_size = SKY_DEFAULT_EVENT_LOG_SIZE;
	if (!o.pending_limit)
		o.pending_limit = SKY_DEFAULT_PENDING_LIMIT;

	sky_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return sky__error_nomem();
	c->opts = o;
	c->event_limits.max_bytes = o.max_event_bytes;
	c->event_limits.max_depth = o.max_depth;
	atomic_init(&c->rejected, 0);
	if (!(c->dir = strdup(dir))) {
		free(c);
		return sky__error_nomem();
	}
	rc = sky__store_open(&c->st, dir, o.flags, o.initial_map_bytes);
	if (rc < 0) {
		free(c->dir);
		free(c);
		return rc;
	}
	/* Writes acknowledged before a crash, kept in the journal; then an
	 * index of an older layout is rebuilt (index.h, "Index versions"). */
	if ((rc = sky__outbox_replay_journal(c)) < 0 ||
	    (rc = sky__store_count_journal_damage(&c->st)) < 0 ||
	    (rc = sky__index_upgrade(c)) < 0) {
		sky_cache_close(c);
		return rc;
	}
	*out = c;
	return 0;
}

void sky_cache_close(sky_cache *cache)
{
	if (!cache)
		return;
	sky__store_close(&cache->st);
	free(cache->dir);
	free(cache);
}

/* ---- readers ---- */

int sky_reader_begin(sky_reader **out, sky_cache *cache)
{
	sky_reader *r = malloc(sizeof(*r));
	if (!r)
		return sky__error_nomem();
	r->cache = cache;
	r->kept = NULL;
	int rc = sky__store_read_begin(&cache->st, &r->txn);
	if (rc < 0) {
		free(r);
		return rc;
	}
	*out = r;
	return 0;
}

void sky_reader_end(sky_reader *reader)
{
	if (!reader)
		return;
	sky__store_read_end(&reader->cache->st, reader->txn);
	while (reader->kept) {
		sky_reader_kept *k = reader->kept;
		reader->kept = k->next;
		free(k->text);
		free(k);
	}
	free(reader);
}

static int check_ids(const char *app, const char *sid)
{
	int rc = sky__check_id(app, "application id");
	if (rc == 0 && sid)
		rc = sky__check_id(sid, "session id");
	return rc;
}

static int not_found(const char *what, const char *app, const char *sid)
{
	if (sid)
		return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				      "%s %s/%s is not in the cache", what, app,
				      sid);
	return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
			      "%s %s is not in the cache", what, app);
}

/* A session created offline keeps answering to its local id once the
 * server made it (queue.c keeps the alias). */
static int get_aliased(sky_reader *reader, const char *app, const char *sid,
		       sky_record *rec)
{
	if (!app || !sid)
		return SKY_ENOTFOUND;
	const char *to =
	    sky__outbox_alias(reader->txn, reader->cache, app, sid);
	if (!to)
		return SKY_ENOTFOUND;
	return sky__record_get(reader->txn, reader->cache, app, to, rec);
}

/*
 * The record of a session a read asks for. Looked up first: only valid
 * ids are ever stored, so a hit needs no validation, and reads are the
 * hottest path. A miss says why (a malformed id, or not in the cache).
 */
static int find_session(sky_reader *reader, const char *app_id,
			const char *session_id, sky_record *rec)
{
	if (!app_id || !session_id)
		return check_ids(app_id, session_id);
	int rc = sky__record_get(reader->txn, reader->cache, app_id, session_id,
				 rec);
	if (rc == SKY_ENOTFOUND)
		rc = get_aliased(reader, app_id, session_id, rec);
	if (rc == SKY_ENOTFOUND && (rc = check_ids(app_id, session_id)) == 0)
		return not_found("session", app_id, session_id);
	return rc;
}

int sky_reader_session(sky_reader *reader, const char *app_id,
		       const char *session_id, const char **json, size_t *len)
{
	sky_record rec;
	int rc = find_session(reader, app_id, session_id, &rec);
	if (rc < 0)
		return rc;
	*json = rec.json;
	if (len)
		*len = rec.json_len;
	return 0;
}

static char *copy_text(const char *text, size_t n)
{
	char *p = malloc(n + 1);
	if (!p) {
		sky__error_nomem();
		return NULL;
	}
	memcpy(p, text, n);
	p[n] = '\0';
	return p;
}

int sky_session_get(sky_cache *cache, const char *app_id,
		    const char *session_id, char **json, size_t *len)
{
	sky_reader *r;
	const char *text;
	size_t n;
	int rc = sky_reader_begin(&r, cache);
	if (rc < 0)
		return rc;
	rc = sky_reader_session(r, app_id, session_id, &text, &n);
	if (rc == 0) {
		char *copy = copy_text(text, n);
		if (!copy) {
			rc = -1;
		} else {
			*json = copy;
			if (len)
				*len = n;
		}
	}
	sky_reader_end(r);
	return rc;
}

/*
 * The data text of a session: *stored points at the stored bytes, NUL
 * included, when the document is whole and was written with its NUL
 * (doc_layout.h), borrowed until the reader ends; otherwise the text is
 * appended to `out` (a copy of a whole document of schema 2, or the
 * document rebuilt member by member), and *stored is NULL.
 */
static int reader_data(sky_reader *reader, const char *app_id,
		       const char *session_id, const char **stored,
		       sky_buf *out, size_t *len)
{
	sky_record rec;
	const char *text;
	size_t n, before = out->len;
	MDB_dbi dbi = SKY_DBI(reader->cache, SKY_DB_DATA);
	int rc = find_session(reader, app_id, session_id, &rec);
	if (rc < 0)
		return rc;
	*stored = NULL;
	if ((rc = sky__doc_read_whole(reader->txn, dbi, rec.docid, &text, &n)) <
	    0)
		return rc;
	if (rc == 2) {
		*stored = text;
		*len = n;
		return 0;
	}
	if (rc == 1)
		rc = sky__buf_append(out, text, n);
	else
		rc = sky__doc_read(reader->txn, dbi, rec.docid, out);
	if (rc < 0)
		return rc;
	*len = out->len - before;
	return 0;
}

int sky_reader_data_copy(sky_reader *reader, const char *app_id,
			 const char *session_id, char **json, size_t *len)
{
	const char *stored;
	sky_buf built = SKY_BUF_INIT;
	size_t n;
	int rc = reader_data(reader, app_id, session_id, &stored, &built, &n);
	if (rc < 0) {
		sky__buf_free(&built);
		return rc;
	}
	*json = stored ? copy_text(stored, n) : sky__buf_detach(&built, NULL);
	if (!*json)
		return -1;
	if (len)
		*len = n;
	return 0;
}

int sky_reader_data_into(sky_reader *reader, const char *app_id,
			 const char *session_id, char **buf, size_t *size,
			 size_t *len)
{
	if (!buf || !size)
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
				      "sky_reader_data_into: no buffer");
	/* The caller's buffer, from its first byte: the text replaces
	 * whatever it held. Whatever happens, the buffer goes back to the
	 * caller, since growing it may have moved it. */
	sky_buf b = {*buf, 0, *buf ? *size : 0};
	const char *stored;
	size_t n = 0;
	int rc = reader_data(reader, app_id, session_id, &stored, &b, &n);
	if (rc == 0 && stored)
		rc = sky__buf_append(&b, stored, n);
	*buf = b.data;
	*size = b.cap;
	if (rc < 0)
		return rc;
	if (len)
		*len = n;
	return 0;
}

int sky_reader_data(sky_reader *reader, const char *app_id,
		    const char *session_id, const char **json, size_t *len)
{
	const char *stored;
	sky_buf built = SKY_BUF_INIT;
	size_t n;
	int rc = reader_data(reader, app_id, session_id, &stored, &built, &n);
	if (rc < 0) {
		sky__buf_free(&built);
		return rc;
	}
	if (len)
		*len = n;
	if (stored) {
		/* In the map, like a session's record: valid while the
		 * reader's snapshot is. */
		*json = stored;
		return 0;
	}
	/* Borrowed like everything through a reader: the reader keeps the
	 * text and frees it at its end. */
	sky_reader_kept *k = malloc(sizeof(*k));
	if (!k) {
		sky__buf_free(&built);
		return sky__error_nomem();
	}
	k->text = sky__buf_detach(&built, NULL);
	k->next = reader->kept;
	reader->kept = k;
	*json = k->text;
	return 0;
}

int sky_data_get(sky_cache *cache, const char *app_id, const char *session_id,
		 char **json, size_t *len)
{
	sky_reader *r;
	int rc = sky_reader_begin(&r, cache);
	if (rc < 0)
		return rc;
	rc = sky_reader_data_copy(r, app_id, session_id, json, len);
	sky_reader_end(r);
	return rc;
}

int sky_app_get(sky_cache *cache, const char *app_id, char **json, size_t *len)
{
	int rc = check_ids(app_id, NULL);
	if (rc < 0)
		return rc;
	MDB_txn *txn;
	if ((rc = sky__store_read_begin(&cache->st, &txn)) < 0)
		return rc;
	MDB_val key = {strlen(app_id), (void *)app_id}, val;
	int mrc = mdb_get(txn, SKY_DBI(cache, SKY_DB_APPS), &key, &val);
	if (mrc == MDB_NOTFOUND)
		rc = not_found("application", app_id, NULL);
	else if (mrc)
		rc = sky__error_lmdb(mrc, "reading an application");
	else if (!(*json = copy_text(val.mv_data, val.mv_size - 1)))
		rc = -1;
	else if (len)
		*len = val.mv_size - 1;
	sky__store_read_end(&cache->st, txn);
	return rc;
}

/* ---- listings ---- */

/*
 * Call `cb` for every entry of `dbi` whose key starts with `prefix`,
 * handing it the value from byte `skip` on (records skip their header).
 */
static int list_prefix(sky_cache *c, MDB_dbi dbi, const void *prefix,
		       size_t plen, size_t skip, sky_json_cb cb, void *payload)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	int mrc = mdb_cursor_open(txn, dbi, &cur);
	if (mrc) {
		sky__store_read_end(&c->st, txn);
		return sky__error_lmdb(mrc, "listing");
	}
	MDB_val key = {plen, (void *)prefix}, val;
	mrc = mdb_cursor_get(cur, &key, &val, plen ? MDB_SET_RANGE : MDB_FIRST);
	rc = 0;
	while (mrc == 0) {
		if (key.mv_size < plen || memcmp(key.mv_data, prefix, plen))
			break;
		if (val.mv_size < skip + 1) {
			rc = sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, 0,
					    "corrupt entry while listing");
			break;
		}
		rc = cb((const char *)val.mv_data + skip,
			val.mv_size - skip - 1, payload);
		if (rc)
			break;
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (mrc && mrc != MDB_NOTFOUND)
		rc = sky__error_lmdb(mrc, "listing");
	mdb_cursor_close(cur);
	sky__store_read_end(&c->st, txn);
	return rc;
}

int sky_app_list(sky_cache *cache, sky_json_cb cb, void *payload)
{
	return list_prefix(cache, SKY_DBI(cache, SKY_DB_APPS), "", 0, 0, cb,
			   payload);
}

int sky_role_list(sky_cache *cache, const char *app_id, sky_json_cb cb,
		  void *payload)
{
	unsigned char prefix[SKY_KEY_MAX];
	int rc = check_ids(app_id, NULL);
	if (rc < 0)
		return rc;
	size_t n = sky__key2(prefix, sizeof(prefix), app_id, NULL);
	return list_prefix(cache, SKY_DBI(cache, SKY_DB_ROLES), prefix, n, 0,
			   cb, payload);
}

int sky_session_list(sky_cache *cache, const char *app_id, sky_json_cb cb,
		     void *payload)
{
	unsigned char prefix[SKY_KEY_MAX];
	size_t n = 0;
	if (app_id) {
		int rc = check_ids(app_id, NULL);
		if (rc < 0)
			return rc;
		n = sky__key2(prefix, sizeof(prefix), app_id, NULL);
	}
	return list_prefix(cache, SKY_DBI(cache, SKY_DB_SESSIONS), prefix, n,
			   SKY_RECORD_HEADER, cb, payload);
}

typedef struct {
	sky_json_cb cb;
	void *payload;
} sevent_ctx;

int sky_session_event_list(sky_cache *cache, const char *app_id,
			   const char *session_id, sky_json_cb cb,
			   void *payload)
{
	int rc = check_ids(app_id, session_id);
	if (rc < 0)
		return rc;
	MDB_txn *txn;
	sky_record rec;
	if ((rc = sky__store_read_begin(&cache->st, &txn)) < 0)
		return rc;
	rc = sky__record_get(txn, cache, app_id, session_id, &rec);
	if (rc == SKY_ENOTFOUND) {
		/* A local id, as for sky_reader_session (get_aliased). */
		const char *to =
		    sky__outbox_alias(txn, cache, app_id, session_id);
		if (to)
			rc = sky__record_get(txn, cache, app_id, to, &rec);
	}
	sky__store_read_end(&cache->st, txn);
	if (rc == SKY_ENOTFOUND)
		return not_found("session", app_id, session_id);
	if (rc < 0)
		return rc;
	unsigned char prefix[8];
	sky__put_be64(prefix, rec.docid);
	/* Custom events are stored as sent, without a trailing NUL: copy. */
	MDB_cursor *cur;
	if ((rc = sky__store_read_begin(&cache->st, &txn)) < 0)
		return rc;
	int mrc = mdb_cursor_open(txn, SKY_DBI(cache, SKY_DB_SEVENTS), &cur);
	if (mrc) {
		sky__store_read_end(&cache->st, txn);
		return sky__error_lmdb(mrc, "listing session events");
	}
	MDB_val key = {8, prefix}, val;
	mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (rc == 0 && mrc == 0 && key.mv_size == 16 &&
	       memcmp(key.mv_data, prefix, 8) == 0) {
		char *text = copy_text(val.mv_data, val.mv_size);
		if (!text) {
			rc = -1;
			break;
		}
		rc = cb(text, val.mv_size, payload);
		free(text);
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (rc == 0 && mrc && mrc != MDB_NOTFOUND)
		rc = sky__error_lmdb(mrc, "listing session events");
	mdb_cursor_close(cur);
	sky__store_read_end(&cache->st, txn);
	return rc;
}

/* ---- statistics ---- */

static uint64_t entries(MDB_txn *txn, MDB_dbi dbi)
{
	MDB_stat st;
	if (mdb_stat(txn, dbi, &st))
		return 0;
	return st.ms_entries;
}

static int count_open(const char *json, size_t len, void *payload)
{
	(void)len;
	/* Records are compact JSON written by us: a plain search is exact
	 * enough for a statistic and avoids parsing every session. */
	if (strstr(json, "\"status\":\"closed\"") == NULL)
		++*(uint64_t *)payload;
	return 0;
}

static int stats_fill(sky_cache *cache, sky_stats *out)
{
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	out->applications = entries(txn, SKY_DBI(cache, SKY_DB_APPS));
	out->roles = entries(txn, SKY_DBI(cache, SKY_DB_ROLES));
	out->sessions = entries(txn, SKY_DBI(cache, SKY_DB_SESSIONS));
	out->data_entries = entries(txn, SKY_DBI(cache, SKY_DB_DATA));
	out->event_log = entries(txn, SKY_DBI(cache, SKY_DB_EVLOG));
	out->pending_events = entries(txn, SKY_DBI(cache, SKY_DB_PENDING));
	out->custom_events = entries(txn, SKY_DBI(cache, SKY_DB_SEVENTS));
	out->events_applied =
	    sky__meta_get_u64(txn, &cache->st, "events_applied");
	out->events_skipped =
	    sky__meta_get_u64(txn, &cache->st, "events_skipped");
	out->events_rejected = atomic_load(&cache->rejected);
	out->last_event_at_us =
	    (int64_t)sky__meta_get_u64(txn, &cache->st, "last_event_at");
	out->last_apply_us =
	    (int64_t)sky__meta_get_u64(txn, &cache->st, "last_apply");
	MDB_envinfo info;
	MDB_stat est;
	mdb_env_info(cache->st.env, &info);
	mdb_env_stat(cache->st.env, &est);
	out->map_bytes = info.me_mapsize;
	out->used_bytes = (uint64_t)(info.me_last_pgno + 1) * est.ms_psize;
	out->schema_version = cache->st.schema;
	out->journal_damaged =
	    sky__meta_get_u64(txn, &cache->st, SKY_META_JOURNAL_DAMAGED);
	/* Names: SKY_META_SYNC_* in repair.h (the sync engine's). */
	out->sync_state = (int)sky__meta_get_u64(txn, &cache->st, "sync_state");
	out->sync_last_at_us =
	    (int64_t)sky__meta_get_u64(txn, &cache->st, "sync_last_at");
	out->sync_event_lag_us =
	    (int64_t)sky__meta_get_u64(txn, &cache->st, "sync_event_lag");
	out->sync_updated_us =
	    (int64_t)sky__meta_get_u64(txn, &cache->st, "sync_updated_at");
	out->server_events_refused =
	    sky__meta_get_u64(txn, &cache->st, SKY_META_SERVER_REFUSED);
	out->outbox_delivered =
	    sky__meta_get_u64(txn, &cache->st, SKY_META_OB_DELIVERED);
	out->outbox_last_delivery_us = (int64_t)sky__meta_get_u64(
	    txn, &cache->st, SKY_META_OB_LAST_DELIVERY);
	out->sync_path = (int)sky__meta_get_u64(txn, &cache->st, "sync_path");
	out->sync_path_why =
	    (int)sky__meta_get_u64(txn, &cache->st, "sync_path_why");
	out->sync_requests =
	    sky__meta_get_u64(txn, &cache->st, "sync_requests");
	sky__store_read_end(&cache->st, txn);
	out->stale_sessions = sky__stale_count(cache);
	return sky_session_list(cache, NULL, count_open, &out->open_sessions);
}

/* The size of sky_stats in each version (index: the version). */
static const size_t stats_size[SKY_STATS_VERSION + 1] = {
    0,
    sizeof(sky_stats),
};

int sky_cache_stats(sky_cache *cache, sky_stats *out)
{
	int rc = sky__error_out_version("sky_stats", out ? &out->version : NULL,
					SKY_STATS_VERSION);
	if (rc < 0)
		return rc;
	sky_stats all = SKY_STATS_INIT;
	if ((rc = stats_fill(cache, &all)) < 0)
		return rc;
	/* Only what the caller's version has: its struct may be shorter. */
	all.version = out->version;
	memcpy(out, &all, stats_size[out->version]);
	return 0;
}

/* ---- backup ---- */

int sky_cache_backup(sky_cache *cache, const char *dest_dir)
{
	struct stat sb;
	char path[4096];
	if (mkdir(dest_dir, 0700) < 0 && errno != EEXIST)
		return sky__error_os(dest_dir);
	snprintf(path, sizeof(path), "%s/data.mdb", dest_dir);
	if (stat(path, &sb) == 0)
		return sky__error_set(SKY_EEXISTS, SKY_ERRSRC_OS, EEXIST,
				      "%s already holds a cache: choose an "
				      "empty directory",
				      dest_dir);
	/* mdb_env_copy2 runs its own read transaction: count it as one. */
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	int mrc = mdb_env_copy2(cache->st.env, dest_dir, MDB_CP_COMPACT);
	sky__store_read_end(&cache->st, txn);
	if (mrc)
		return sky__error_lmdb(mrc, "writing the backup");
	if (chmod(path, 0600) < 0)
		return sky__error_os(path);
	return 0;
}

/* ---- check ---- */

typedef struct {
	sky_report_cb report;
	void *payload;
	unsigned problems;
} check_ctx;

/* One problem found: counted, and reported as a line. */
#define problem(cc, ...)                                                       \
	((cc)->problems++,                                                     \
	 sky__report((cc)->report, (cc)->payload, __VA_ARGS__))

/* Report each line of `buf` as a problem. */
static void report_lines(check_ctx *cc, sky_buf *buf)
{
	char *p = buf->data;
	while (p && *p) {
		char *nl = strchr(p, '\n');
		if (nl)
			*nl = '\0';
		if (*p)
			problem(cc, "%s", p);
		if (!nl)
			break;
		p = nl + 1;
	}
	sky__buf_clear(buf);
}

static int check_sessions(MDB_txn *txn, sky_cache *c, check_ctx *cc)
{
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_SESSIONS), &cur);
	if (mrc)
		return sky__error_lmdb(mrc, "checking sessions");
	sky_buf buf = SKY_BUF_INIT;
	MDB_val key, val;
	int rc = 0;
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		const char *k = key.mv_data;
		const char *nul = memchr(k, '\0', key.mv_size);
		char app[SKY_KEY_MAX + 1] = "", sid[SKY_KEY_MAX + 1] = "";
		if (!nul) {
			problem(cc,
				"session key without a separator (%zu bytes)",
				key.mv_size);
			continue;
		}
		memcpy(app, k, (size_t)(nul - k));
		memcpy(sid, nul + 1, key.mv_size - (size_t)(nul - k) - 1);
		sky_record rec;
		if (sky__record_decode(&val, &rec) < 0) {
			problem(cc, "session %s/%s: %s", app, sid,
				sky_error_last()->message);
			continue;
		}
		json_t *s = sky__record_json(&rec);
		if (!s) {
			problem(cc, "session %s/%s: %s", app, sid,
				sky_error_last()->message);
			continue;
		}
		if (sky__validate_session(s, "session", 1) < 0)
			problem(cc, "session %s/%s: %s", app, sid,
				sky_error_last()->message);
		else if (strcmp(sky__json_str(s, "applicationId"), app) ||
			 strcmp(sky__json_str(s, "sessionId"), sid))
			problem(cc,
				"session %s/%s: ids in the record differ "
				"from its key",
				app, sid);
		else if (sky__session_created_us(s) != rec.created_us)
			problem(cc,
				"session %s/%s: createdAt differs from the "
				"record header",
				app, sid);
		json_decref(s);
		rc = sky__doc_check(txn, SKY_DBI(c, SKY_DB_DATA), rec.docid,
				    &buf);
		if (rc == SKY_EINVAL) {
			sky__buf_printf(&buf, "\n");
			report_lines(cc, &buf);
			rc = 0;
		} else if (rc < 0) {
			break;
		}
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = sky__error_lmdb(mrc, "checking sessions");
	sky__buf_free(&buf);
	mdb_cursor_close(cur);
	return rc;
}

/* Each value of `dbi` must parse (and validate) as JSON. */
static int check_json_values(MDB_txn *txn, MDB_dbi dbi, const char *what,
			     int with_nul,
			     int (*validate)(const json_t *, const char *),
			     check_ctx *cc)
{
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, dbi, &cur);
	if (mrc)
		return sky__error_lmdb(mrc, what);
	MDB_val key, val;
	unsigned long n = 0;
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT), n++) {
		size_t len = val.mv_size;
		if (with_nul) {
			if (len == 0 ||
			    ((char *)val.mv_data)[len - 1] != '\0') {
				problem(cc, "%s #%lu: not NUL-terminated", what,
					n);
				continue;
			}
			len--;
		}
		json_error_t jerr;
		json_t *v = sky__json_loadb(val.mv_data, len, 0, &jerr);
		if (!v) {
			problem(cc, "%s #%lu: bad JSON: %s", what, n,
				jerr.text);
			continue;
		}
		if (validate && validate(v, what) < 0)
			problem(cc, "%s #%lu: %s", what, n,
				sky_error_last()->message);
		json_decref(v);
	}
	mdb_cursor_close(cur);
	if (mrc != MDB_NOTFOUND)
		return sky__error_lmdb(mrc, what);
	return 0;
}

static int check_event_log(MDB_txn *txn, sky_cache *c, check_ctx *cc)
{
	uint64_t a = entries(txn, SKY_DBI(c, SKY_DB_EVLOG));
	uint64_t b = entries(txn, SKY_DBI(c, SKY_DB_EVSEQ));
	if (a != b)
		problem(cc, "event log: %llu ids but %llu sequence entries",
			(unsigned long long)a, (unsigned long long)b);
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_EVSEQ), &cur);
	if (mrc)
		return sky__error_lmdb(mrc, "checking the event log");
	MDB_val key, val;
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		MDB_val seq;
		MDB_val id = val;
		if (mdb_get(txn, SKY_DBI(c, SKY_DB_EVLOG), &id, &seq) != 0 ||
		    seq.mv_size != key.mv_size ||
		    memcmp(seq.mv_data, key.mv_data, key.mv_size) != 0)
			problem(cc, "event log: id '%.*s' is not indexed back",
				(int)(val.mv_size > 80 ? 80 : val.mv_size),
				(char *)val.mv_data);
	}
	mdb_cursor_close(cur);
	return mrc == MDB_NOTFOUND ? 0 : sky__error_lmdb(mrc, "event log");
}

static int check_pending(MDB_txn *txn, sky_cache *c, check_ctx *cc)
{
	MDB_cursor *cur;
	int mrc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_PENDING), &cur);
	if (mrc)
		return sky__error_lmdb(mrc, "checking waiting events");
	MDB_val key, val;
	for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
	     mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		sky_parsed_event pe;
		if (sky__event_parse(c, val.mv_data, val.mv_size, &pe) < 0) {
			problem(cc, "waiting event: %s",
				sky_error_last()->message);
			continue;
		}
		sky_record rec;
		if (sky__record_get(txn, c, pe.app, pe.sid, &rec) == 0)
			problem(cc,
				"waiting event %s: its session %s/%s is "
				"known but the event was not applied",
				pe.eid, pe.app, pe.sid);
		sky__event_clear(&pe);
	}
	mdb_cursor_close(cur);
	return mrc == MDB_NOTFOUND ? 0 : sky__error_lmdb(mrc, "waiting events");
}

int sky_cache_check(sky_cache *cache, sky_report_cb report, void *payload)
{
	check_ctx cc = {report, payload, 0};
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	sky_buf buf = SKY_BUF_INIT;
	/* First every page and every seal (sealed.h): damage is reported as
	 * SKY_EDAMAGED before any finding could be a consequence of it. */
	if ((rc = sky__seal_walk(txn, cache->st.dbi, SKY_DB_COUNT)) < 0)
		goto done;
	if ((rc = check_json_values(txn, SKY_DBI(cache, SKY_DB_APPS),
				    "application", 1, sky__validate_app, &cc)) <
		0 ||
	    (rc = check_json_values(txn, SKY_DBI(cache, SKY_DB_ROLES), "role",
				    1, sky__validate_role, &cc)) < 0 ||
	    (rc = check_json_values(txn, SKY_DBI(cache, SKY_DB_SEVENTS),
				    "session event", 0, NULL, &cc)) < 0 ||
	    (rc = check_sessions(txn, cache, &cc)) < 0 ||
	    (rc = check_event_log(txn, cache, &cc)) < 0 ||
	    (rc = check_pending(txn, cache, &cc)) < 0)
		goto done;
	rc = sky__index_check(txn, cache, &buf);
	if (rc == SKY_EINVAL) {
		report_lines(&cc, &buf);
		rc = 0;
	}
	if (rc == 0) {
		sky__buf_clear(&buf);
		rc = sky__outbox_check(txn, cache, &buf);
		if (rc == SKY_EINVAL) {
			report_lines(&cc, &buf);
			rc = 0;
		}
	}
done:
	sky__buf_free(&buf);
	sky__store_read_end(&cache->st, txn);
	if (rc < 0)
		return rc;
	if (cc.problems)
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
				      "the cache has %u problem%s", cc.problems,
				      cc.problems == 1 ? "" : "s");
	return 0;
}
