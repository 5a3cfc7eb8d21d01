/*
 * mirror.c - writing server state read over REST into the cache:
 * applications, roles, whole sessions with their data, and removals.
 *
 * A session read from the server at time T replaces the cached one only
 * where the cache does not hold anything newer (its watermarks are older
 * than T), so a slow snapshot never rolls back an event applied meanwhile.
 * After the write, events that waited for the session are applied.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "doc.h"
#include "error.h"
#include "events.h"
#include "json.h"
#include "mirror.h"
#include "record.h"
#include "server.h"

typedef struct {
	sky_cache *cache;
	json_t *obj;
	const char *app;
	json_t *data;
	int64_t as_of;
	const char *data_text; /* sky__parsed_put.data_text */
	size_t data_text_len;
} put_ctx;

/* Store `obj` as the NUL-terminated text value of `key` in `dbi`. */
static int put_text(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, json_t *obj)
{
	size_t len;
	char *text = sky__json_dump(obj, &len);
	if (!text)
		return -1;
	MDB_val val = {len + 1, text};
	int rc = mdb_put(txn, dbi, key, &val, 0);
	free(text);
	return rc ? sky__error_lmdb(rc, "writing") : 0;
}

static int app_write(MDB_txn *txn, void *arg)
{
	put_ctx *p = arg;
	const char *id = sky__json_str(p->obj, "applicationId");
	MDB_val key = {strlen(id), (void *)id}, old;
	/* A new application is what a create can be queued in: durable at
	 * once in journal mode (store.h, sky__store_settle_mirror). */
	if (mdb_get(txn, SKY_DBI(p->cache, SKY_DB_APPS), &key, &old) ==
	    MDB_NOTFOUND)
		sky__store_settle_mirror(&p->cache->st);
	return put_text(txn, SKY_DBI(p->cache, SKY_DB_APPS), &key, p->obj);
}

int sky_mirror_app_put(sky_cache *cache, const char *app_json, size_t len)
{
	put_ctx p = {cache, NULL, NULL, NULL, 0, NULL, 0};
	int rc = sky__json_parse(app_json, len, &cache->event_limits,
				 "application", &p.obj);
	if (rc < 0)
		return rc;
	if ((rc = sky__validate_app(p.obj, "application")) == 0)
		rc = sky__store_write_mirror(&cache->st, app_write, &p);
	json_decref(p.obj);
	return rc;
}

static int role_write(MDB_txn *txn, void *arg)
{
	put_ctx *p = arg;
	unsigned char kbuf[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kbuf, sizeof(kbuf), p->app,
				 sky__json_str(p->obj, "name")),
		       kbuf};
	/* A role change can change what a viewer's live queries see. */
	sky__changes_note(p->cache, p->app, NULL);
	return put_text(txn, SKY_DBI(p->cache, SKY_DB_ROLES), &key, p->obj);
}

int sky_mirror_role_put(sky_cache *cache, const char *app_id,
			const char *role_json, size_t len)
{
	put_ctx p = {cache, NULL, app_id, NULL, 0, NULL, 0};
	int rc = sky__check_id(app_id, "application id");
	if (rc < 0)
		return rc;
	if ((rc = sky__json_parse(role_json, len, &cache->event_limits, "role",
				  &p.obj)) < 0)
		return rc;
	if ((rc = sky__validate_role(p.obj, "role")) == 0)
		rc = sky__store_write_mirror(&cache->st, role_write, &p);
	json_decref(p.obj);
	return rc;
}

static int session_write_server(MDB_txn *txn, void *arg);
static int data_as_text(sky_cache *cache, const char *text, size_t len,
			sky_buf *out);

/*
 * Server state for a session goes through server.h, which keeps the
 * local view of a session with queued writes over it.
 */
static int session_write(MDB_txn *txn, void *arg)
{
	put_ctx *p = arg;
	const char *app = sky__json_str(p->obj, "applicationId");
	const char *sid = sky__json_str(p->obj, "sessionId");
	return sky__server_write(txn, p->cache, app, sid, p->obj,
				 session_write_server, p);
}

int sky__mirror_session_write(MDB_txn *txn, sky_cache *c, json_t *session,
			      json_t *data, int64_t as_of_us)
{
	int rc = sky__validate_session(session, "session", 1);
	if (rc < 0)
		return rc;
	put_ctx p = {c, session, NULL, data, as_of_us, NULL, 0};
	return session_write(txn, &p);
}

static int session_write_server(MDB_txn *txn, void *arg)
{
	put_ctx *p = arg;
	sky_cache *c = p->cache;
	const char *app = sky__json_str(p->obj, "applicationId");
	const char *sid = sky__json_str(p->obj, "sessionId");
	sky_record rec, hdr;
	json_t *old = NULL;
	int rc = sky__record_get(txn, c, app, sid, &rec);
	if (rc < 0 && rc != SKY_ENOTFOUND)
		return rc;
	int known = rc == 0;
	if (known) {
		hdr = rec;
	} else {
		memset(&hdr, 0, sizeof(hdr));
		hdr.wm_session = hdr.wm_props = hdr.wm_data = INT64_MIN;
		if ((rc = sky__record_new_docid(txn, c, &hdr.docid)) < 0)
			return rc;
	}
	/* Only what is not newer in the cache is replaced. */
	if (!known ||
	    (p->as_of >= rec.wm_session && p->as_of >= rec.wm_props)) {
		if (known && !(old = sky__record_json(&rec)))
			return -1;
		hdr.wm_session = hdr.wm_props = p->as_of;
		hdr.created_us = sky__session_created_us(p->obj);
		rc = sky__record_put(txn, c, &hdr, p->obj, old,
				     known ? rec.created_us : 0);
		json_decref(old);
		if (rc < 0)
			return rc;
	}
	if ((p->data || p->data_text) && (!known || p->as_of >= rec.wm_data)) {
		rc = p->data_text ? sky__doc_write_whole_text(
					txn, SKY_DBI(c, SKY_DB_DATA), hdr.docid,
					p->data_text, p->data_text_len)
				  : sky__doc_write(txn, SKY_DBI(c, SKY_DB_DATA),
						   hdr.docid, p->data);
		if (rc < 0)
			return rc;
		hdr.wm_data = p->as_of;
		if ((rc = sky__record_put_header(txn, c, &hdr, app, sid)) < 0)
			return rc;
	}
	return sky__pending_replay(txn, c, app, sid);
}

int sky_mirror_session_put(sky_cache *cache, const char *session_json,
			   size_t len, const char *data_json, size_t data_len,
			   int64_t as_of_us)
{
	put_ctx p = {cache, NULL, NULL, NULL, as_of_us, NULL, 0};
	sky_buf text = SKY_BUF_INIT;
	int rc = sky__json_parse(session_json, len, &cache->event_limits,
				 "session", &p.obj);
	if (rc < 0)
		return rc;
	if ((rc = sky__validate_session(p.obj, "session", 1)) < 0)
		goto done;
	if (data_json &&
	    (rc = data_as_text(cache, data_json, data_len, &text)) == 0) {
		p.data_text = text.data;
		p.data_text_len = text.len;
	} else if (data_json) {
		if (rc < 0)
			goto done;
		rc = sky__json_parse(data_json, data_len, &cache->event_limits,
				     "session data", &p.data);
		if (rc < 0)
			goto done;
		if (!json_is_object(p.data)) {
			rc = sky__error_input(
			    "session data: must be a JSON object");
			goto done;
		}
	}
	rc = sky__store_write_mirror(&cache->st, session_write, &p);
done:
	json_decref(p.obj);
	json_decref(p.data);
	sky__buf_free(&text);
	return rc;
}

typedef struct {
	sky_cache *cache;
	const char *app, *sid;
} remove_ctx;

static int remove_write(MDB_txn *txn, void *arg)
{
	remove_ctx *r = arg;
	return sky__record_delete(txn, r->cache, r->app, r->sid);
}

int sky_mirror_session_remove(sky_cache *cache, const char *app_id,
			      const char *session_id)
{
	remove_ctx r = {cache, app_id, session_id};
	int rc = sky__check_id(app_id, "application id");
	if (rc == 0)
		rc = sky__check_id(session_id, "session id");
	if (rc == 0)
		rc = sky__store_write_mirror(&cache->st, remove_write, &r);
	if (rc == SKY_ENOTFOUND)
		return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				      "session %s/%s is not in the cache",
				      app_id, session_id);
	return rc;
}

/*
 * sky_mirror_session_put_batch: many sessions read over REST stored in one
 * write transaction (one disk flush for the batch instead of one per session),
 * with the same rules as sky_mirror_session_put for each. Added for the sync
 * engine's snapshot (engine.c), which hands over parsed JSON through
 * sky__session_put_parsed (repair.h) so nothing is printed and parsed
 * again on the way.
 */
typedef struct {
	sky_cache *cache;
	put_ctx *puts;
	size_t count;
} put_batch_ctx;

static int session_batch_write(MDB_txn *txn, void *arg)
{
	put_batch_ctx *b = arg;
	for (size_t i = 0; i < b->count; i++) {
		if (!b->puts[i].obj)
			continue; /* rejected */
		int rc = session_write(txn, &b->puts[i]);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int sky__session_put_parsed(sky_cache *cache, sky__parsed_put *items,
			    size_t count)
{
	put_batch_ctx b = {cache, calloc(count ? count : 1, sizeof(put_ctx)),
			   count};
	if (!b.puts)
		return sky__error_nomem();
	size_t valid = 0;
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		sky__parsed_put *it = &items[i];
		put_ctx *p = &b.puts[i];
		p->cache = cache;
		p->as_of = it->as_of_us;
		if (it->result < 0)
			continue; /* rejected by the caller already */
		int r = sky__validate_session(it->session, "session", 1);
		if (r == 0 && it->data && !json_is_object(it->data))
			r = sky__error_input(
			    "session data: must be a JSON object");
		if (r < 0) {
			it->result = r;
			it->error = sky__error_dup();
			continue;
		}
		/* Borrowed: session_write only reads them. */
		p->obj = it->session;
		p->data = it->data;
		p->data_text = it->data_text;
		p->data_text_len = it->data_text_len;
		valid++;
	}
	if (valid)
		rc = sky__store_write_mirror(&cache->st, session_batch_write,
					     &b);
	free(b.puts);
	return rc;
}

/*
 * The data of a snapshot's session as the text its whole form stores,
 * straight from the text it came as: a ~1 KB document is then never a
 * jansson tree (parsing it, sorting it and freeing it were most of the
 * cost of a session). Returns 0 with the text in *out, 1 when the data
 * takes the usual way (not the common case of sky__json_sorted_text, or
 * too large or deep to be stored whole, or over the limits: the parse
 * then says so), or -1 out of memory.
 */
static int data_as_text(sky_cache *cache, const char *text, size_t len,
			sky_buf *out)
{
	const sky_json_limits *lim = &cache->event_limits;
	size_t depth, max_depth = sky__doc_whole_depth_max;
	int oom;
	if (lim->max_bytes && len > lim->max_bytes)
		return 1;
	if (lim->max_depth && lim->max_depth < max_depth)
		max_depth = lim->max_depth;
	if (!sky__json_sorted_text(text, len, max_depth, out, &depth, &oom))
		return oom ? sky__error_nomem() : 1;
	if (out->len > sky__doc_whole_max) {
		sky__buf_clear(out);
		return 1;
	}
	return 0;
}

int sky_mirror_session_put_batch(sky_cache *cache,
				 sky_mirror_session_item *items, size_t count)
{
	sky__parsed_put *pp = calloc(count ? count : 1, sizeof(*pp));
	sky_buf *texts = calloc(count ? count : 1, sizeof(*texts));
	if (!pp || !texts) {
		free(pp);
		free(texts);
		return sky__error_nomem();
	}
	int rc = 0;
	for (size_t i = 0; i < count; i++) {
		sky_mirror_session_item *it = &items[i];
		it->result = 0;
		it->error = NULL;
		pp[i].as_of_us = it->as_of_us;
		int r = sky__json_parse(it->session_json, it->len,
					&cache->event_limits, "session",
					&pp[i].session);
		if (r == 0 && it->data_json) {
			r = data_as_text(cache, it->data_json, it->data_len,
					 &texts[i]);
			if (r == 0) {
				pp[i].data_text = texts[i].data;
				pp[i].data_text_len = texts[i].len;
			} else if (r == 1) {
				r = sky__json_parse(it->data_json, it->data_len,
						    &cache->event_limits,
						    "session data",
						    &pp[i].data);
			}
		}
		if (r < 0) {
			if (r != SKY_EINVAL && r != SKY_ELIMIT) {
				rc = r; /* out of memory: give up */
				goto done;
			}
			pp[i].result = r;
			pp[i].error = sky__error_dup();
		}
	}
	rc = sky__session_put_parsed(cache, pp, count);
	for (size_t i = 0; i < count; i++) {
		items[i].result = pp[i].result;
		items[i].error = pp[i].error;
		pp[i].error = NULL;
	}
done:
	for (size_t i = 0; i < count; i++) {
		json_decref(pp[i].session);
		json_decref(pp[i].data);
		free(pp[i].error);
		sky__buf_free(&texts[i]);
	}
	free(pp);
	free(texts);
	return rc;
}
