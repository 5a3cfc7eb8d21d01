/*
 * view.c - the local view (DESIGN.md §5): a session with queued writes
 * shows the server's state with those writes laid over it, and the
 * server's own copy waits aside in `server` until the writes are
 * delivered. Also the reads of either side (sky_session_pending, the
 * *_get_confirmed calls).
 *
 * What this file keeps true, inside every write transaction: a session
 * has queued writes (entries that are not dead letters) if and only if
 * its record has SKY_REC_PENDING; then `server` holds the server's copy
 * (session JSON + its own data document), except for a session created
 * offline that the server has not made yet, which has no server copy.
 * The view is always server copy + queued writes in queue order
 * (sky__view_rebuild); the record keeps its document id across a
 * restore, since custom events hang off it.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "doc.h"
#include "error.h"
#include "json.h"
#include "store.h"
#include "view.h"

/* The server copy of app/sid, if kept. 0, SKY_ENOTFOUND or an error. */
int sky__view_server_get(MDB_txn *txn, sky_cache *c, const char *app,
			 const char *sid, sky_record *out)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, sid), kb}, val;
	int rc = mdb_get(txn, SKY_DBI(c, SKY_DB_SERVER), &key, &val);
	if (rc == MDB_NOTFOUND)
		return SKY_ENOTFOUND;
	if (rc)
		return sky__error_lmdb(rc, "reading a server copy");
	return sky__record_decode(&val, out);
}

static int server_put(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, const sky_record *rec)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, sid), kb};
	MDB_val val = {SKY_RECORD_HEADER + rec->json_len + 1, NULL};
	char *json = malloc(rec->json_len + 1);
	if (!json)
		return sky__error_nomem();
	memcpy(json, rec->json, rec->json_len);
	json[rec->json_len] = '\0';
	int rc =
	    mdb_put(txn, SKY_DBI(c, SKY_DB_SERVER), &key, &val, MDB_RESERVE);
	if (rc) {
		free(json);
		return sky__error_lmdb(rc, "writing a server copy");
	}
	sky__record_encode_header(val.mv_data, rec);
	memcpy((char *)val.mv_data + SKY_RECORD_HEADER, json,
	       rec->json_len + 1);
	free(json);
	return 0;
}

int sky__view_server_del(MDB_txn *txn, sky_cache *c, const char *app,
			 const char *sid)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, sid), kb};
	int rc = mdb_del(txn, SKY_DBI(c, SKY_DB_SERVER), &key, NULL);
	return rc && rc != MDB_NOTFOUND
		   ? sky__error_lmdb(rc, "removing a server copy")
		   : 0;
}

int sky__view_restore(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, int *had_server)
{
	sky_record rec, srv;
	*had_server = 0;
	int rc = sky__record_get(txn, c, app, sid, &rec);
	if (rc == SKY_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	if (!(rec.flags & SKY_REC_PENDING)) {
		*had_server = 1;
		return 0;
	}
	rc = sky__view_server_get(txn, c, app, sid, &srv);
	if (rc == SKY_ENOTFOUND) {
		if ((rc = sky__record_delete(txn, c, app, sid)) < 0)
			return rc;
		return 1;
	}
	if (rc < 0)
		return rc;
	*had_server = 1;
	json_t *local = sky__record_json(&rec);
	json_t *server = sky__record_json(&srv);
	if (!local || !server) {
		json_decref(local);
		json_decref(server);
		return -1;
	}
	/* The record keeps its document id (custom events hang off it). */
	uint64_t docid = rec.docid, server_doc = srv.docid;
	int64_t old_created = rec.created_us;
	sky_record hdr = srv;
	hdr.docid = docid;
	hdr.flags &= ~SKY_REC_PENDING;
	if ((rc = sky__doc_delete(txn, sky__data_dbi(c), docid)) == 0 &&
	    (rc = sky__doc_copy(txn, sky__data_dbi(c), server_doc, docid)) ==
		0 &&
	    (rc = sky__doc_delete(txn, sky__data_dbi(c), server_doc)) == 0 &&
	    (rc = sky__record_put(txn, c, &hdr, server, local, old_created)) ==
		0)
		rc = sky__view_server_del(txn, c, app, sid);
	json_decref(local);
	json_decref(server);
	return rc < 0 ? rc : 1;
}

/* Apply the session-field part of a write to `s` (the local view). */
int sky__view_apply(json_t *s, const sky_ob_entry *e, json_t *body)
{
	const char *k;
	json_t *v;
	switch (e->op) {
	case SKY_WRITE_PATCH:
		json_object_foreach(body, k, v) {
			if (json_is_null(v))
				(void)json_object_del(s, k); /* absent: fine */
			else if (json_object_set(s, k, v) < 0)
				return sky__error_nomem();
		}
		return 0;
	case SKY_WRITE_PARTICIPANT: {
		json_t *parts = json_object_get(s, "participants");
		const char *id = sky__json_str(body, "id");
		const char *type = sky__json_str(body, "type");
		if (!type)
			type = "user";
		if (!json_is_array(parts)) {
			parts = json_array();
			if (!parts ||
			    json_object_set_new(s, "participants", parts) < 0)
				return sky__error_nomem();
		}
		size_t i;
		json_array_foreach(parts, i, v) {
			const char *pid = sky__json_str(v, "id");
			const char *pt = sky__json_str(v, "type");
			if (pid && !strcmp(pid, id) &&
			    !strcmp(pt ? pt : "user", type))
				return 0;
		}
		json_t *p = json_pack("{s:s, s:s}", "id", id, "type", type);
		if (!p || json_array_append_new(parts, p) < 0)
			return sky__error_nomem();
		return 0;
	}
	default: return 0;
	}
}

/* A new local session from a create entry. */
static json_t *create_session(const sky_ob_entry *e, json_t *body)
{
	char when[32];
	sky__format_time(e->queued_us, when);
	json_t *s = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:[], s:{}, s:s}",
			      "applicationId", e->app, "sessionId", e->sid,
			      "status", "open", "isDraft", 0, "createdAt", when,
			      "modifiedAt", when, "participants", "properties",
			      "clientRef", e->local ? e->local : e->sid);
	if (!s || json_object_update(s, body) < 0) {
		json_decref(s);
		sky__error_nomem();
		return NULL;
	}
	return s;
}

/*
 * Lay the live entries of `l` over the record of app/sid (the server copy,
 * or nothing for a session created offline) and store the local view.
 */
/* Does every live entry of `l` from `first` on leave the session's own
 * fields alone (data patches and custom events only)? */
static int data_only(const sky_ob_list *l, size_t first)
{
	for (size_t i = first; i < l->n; i++)
		if (l->v[i].e.op != SKY_WRITE_DATA &&
		    l->v[i].e.op != SKY_WRITE_EVENT)
			return 0;
	return 1;
}

/* The body of entry `e`: the caller's parse when it is the entry the
 * caller just stored (`hint`), else parsed from its stored text. */
static json_t *entry_body(const sky_ob_entry *e, const sky_ob_entry *hint,
			  json_t *hint_body)
{
	if (hint && hint_body && e->id == hint->id)
		return json_incref(hint_body);
	return sky__json_loads(e->body, 0, NULL);
}

static int overlay(MDB_txn *txn, sky_cache *c, const char *app, const char *sid,
		   const sky_ob_list *l, const sky_ob_entry *hint,
		   json_t *hint_body)
{
	if (l->n == 0)
		return 0;
	sky_record rec, hdr;
	json_t *server = NULL, *local = NULL;
	size_t first = 0;
	int rc = sky__record_get(txn, c, app, sid, &rec);
	if (rc < 0 && rc != SKY_ENOTFOUND)
		return rc;
	if (rc == SKY_ENOTFOUND) {
		/* Created offline: the create entry is the base. */
		const sky_ob_entry *e0 = &l->v[0].e;
		if (e0->op != SKY_WRITE_CREATE)
			return 0; /* its create was rejected or dropped */
		json_t *body = entry_body(e0, hint, hint_body);
		if (!body)
			return sky__error_input(
			    "outbox entry %llu: corrupt body",
			    (unsigned long long)e0->id);
		local = create_session(e0, body);
		json_decref(body);
		if (!local)
			return -1;
		memset(&hdr, 0, sizeof(hdr));
		hdr.wm_session = hdr.wm_props = hdr.wm_data = INT64_MIN;
		if ((rc = sky__record_new_docid(txn, c, &hdr.docid)) < 0)
			goto done;
		first = 1;
	} else {
		/* Keep the server copy aside, with a copy of its data. */
		sky_record srv = rec;
		if ((rc = sky__record_new_docid(txn, c, &srv.docid)) < 0 ||
		    (rc = sky__doc_copy(txn, sky__data_dbi(c), rec.docid,
					srv.docid)) < 0 ||
		    (rc = server_put(txn, c, app, sid, &srv)) < 0)
			return rc;
		hdr = rec;
		/* Only data written: the session's fields, and so its text
		 * and index entries, stay the server's; only the header
		 * changes (the pending flag). */
		if (data_only(l, 0))
			goto lay_on;
		if (!(server = sky__record_json(&rec)))
			return -1;
		if (!(local = json_deep_copy(server))) {
			rc = sky__error_nomem();
			goto done;
		}
	}
lay_on:
	for (size_t i = first; i < l->n; i++) {
		const sky_ob_entry *e = &l->v[i].e;
		if (e->op == SKY_WRITE_EVENT || e->op == SKY_WRITE_CREATE)
			continue;
		json_t *body = entry_body(e, hint, hint_body);
		if (!body) {
			rc = sky__error_input("outbox entry %llu: corrupt body",
					      (unsigned long long)e->id);
			goto done;
		}
		if (e->op == SKY_WRITE_DATA)
			rc = sky__doc_patch(txn, sky__data_dbi(c), hdr.docid,
					    body);
		else
			rc = sky__view_apply(local, e, body);
		json_decref(body);
		if (rc < 0)
			goto done;
	}
	hdr.flags |= SKY_REC_PENDING;
	if (!local) {
		/* data_only(): the record's text is the server's as it is. */
		sky__changes_note(c, app, sid);
		rc = sky__record_put_header(txn, c, &hdr, app, sid);
		goto done;
	}
	hdr.created_us = sky__session_created_us(local);
	rc = sky__record_put(txn, c, &hdr, local, server,
			     server ? rec.created_us : 0);
done:
	json_decref(server);
	json_decref(local);
	return rc;
}

int sky__view_overlay(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, const sky_ob_list *l)
{
	return overlay(txn, c, app, sid, l, NULL, NULL);
}

int sky__view_rebuild(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid)
{
	return sky__view_rebuild_with(txn, c, app, sid, NULL, NULL);
}

int sky__view_rebuild_with(MDB_txn *txn, sky_cache *c, const char *app,
			   const char *sid, const sky_ob_entry *e, json_t *body)
{
	int had_server;
	int rc = sky__view_restore(txn, c, app, sid, &had_server);
	if (rc < 0)
		return rc;
	sky_ob_list l;
	if ((rc = sky__ob_session_entries(txn, c, app, sid, 1, &l)) < 0)
		return rc;
	rc = overlay(txn, c, app, sid, &l, e, body);
	sky__ob_list_free(&l);
	return rc;
}

int sky__view_lay_on(MDB_txn *txn, sky_cache *c, sky_record *rec,
		     const sky_ob_entry *e, json_t *body)
{
	if (e->op == SKY_WRITE_EVENT)
		return 0;
	if (e->op == SKY_WRITE_DATA) {
		sky__changes_note(c, e->app, e->sid);
		return sky__doc_patch(txn, sky__data_dbi(c), rec->docid, body);
	}
	json_t *old = sky__record_json(rec);
	json_t *now = old ? json_deep_copy(old) : NULL;
	int rc = now ? sky__view_apply(now, e, body) : -1;
	if (rc == 0)
		rc = sky__record_put(txn, c, rec, now, old, rec->created_us);
	json_decref(old);
	json_decref(now);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Reads of the outbox's side of a session                             */
/* ------------------------------------------------------------------ */

/* The record id of app/sid, following an alias. */
static const char *resolve(MDB_txn *txn, sky_cache *c, const char *app,
			   const char *sid)
{
	sky_record rec;
	if (sky__record_get(txn, c, app, sid, &rec) == 0)
		return sid;
	const char *to = sky__outbox_alias(txn, c, app, sid);
	return to ? to : sid;
}

int sky_session_pending(sky_cache *cache, const char *app_id,
			const char *session_id, unsigned *count)
{
	int rc = sky__check_id(app_id, "application id");
	if (rc == 0)
		rc = sky__check_id(session_id, "session id");
	if (rc < 0)
		return rc;
	MDB_txn *txn;
	if ((rc = sky__store_read_begin(&cache->st, &txn)) < 0)
		return rc;
	const char *sid = resolve(txn, cache, app_id, session_id);
	sky_record rec;
	sky_ob_list l = {0};
	rc = sky__record_get(txn, cache, app_id, sid, &rec);
	if (rc == SKY_ENOTFOUND)
		rc = sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				    "session %s/%s is not in the cache", app_id,
				    session_id);
	if (rc == 0 &&
	    (rc = sky__ob_session_entries(txn, cache, app_id, sid, 1, &l)) == 0)
		*count = (unsigned)l.n;
	sky__ob_list_free(&l);
	sky__store_read_end(&cache->st, txn);
	return rc;
}

static int confirmed(sky_cache *cache, const char *app_id,
		     const char *session_id, int data, char **json, size_t *len)
{
	int rc = sky__check_id(app_id, "application id");
	if (rc == 0)
		rc = sky__check_id(session_id, "session id");
	if (rc < 0)
		return rc;
	MDB_txn *txn;
	if ((rc = sky__store_read_begin(&cache->st, &txn)) < 0)
		return rc;
	const char *sid = resolve(txn, cache, app_id, session_id);
	sky_record rec, srv;
	rc = sky__record_get(txn, cache, app_id, sid, &rec);
	if (rc == 0 && (rec.flags & SKY_REC_PENDING)) {
		rc = sky__view_server_get(txn, cache, app_id, sid, &srv);
		if (rc == 0)
			rec = srv;
	}
	if (rc == SKY_ENOTFOUND) {
		rc =
		    sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				   "session %s/%s: the server does not have it "
				   "(yet)",
				   app_id, session_id);
	} else if (rc == 0 && data) {
		sky_buf buf = SKY_BUF_INIT;
		rc = sky__doc_read(txn, sky__data_dbi(cache), rec.docid, &buf);
		if (rc == 0 && !(*json = sky__buf_detach(&buf, len)))
			rc = -1;
		sky__buf_free(&buf);
	} else if (rc == 0) {
		if (!(*json = malloc(rec.json_len + 1))) {
			rc = sky__error_nomem();
		} else {
			memcpy(*json, rec.json, rec.json_len + 1);
			if (len)
				*len = rec.json_len;
		}
	}
	sky__store_read_end(&cache->st, txn);
	return rc;
}

int sky_session_get_confirmed(sky_cache *cache, const char *app_id,
			      const char *session_id, char **json, size_t *len)
{
	return confirmed(cache, app_id, session_id, 0, json, len);
}

int sky_data_get_confirmed(sky_cache *cache, const char *app_id,
			   const char *session_id, char **json, size_t *len)
{
	return confirmed(cache, app_id, session_id, 1, json, len);
}
