/*
 * outbox.c - offline writes (DESIGN.md §5): the durable queue of writes,
 * the local view built over the server's state, dead letters, and the
 * public write calls.
 *
 * A write is checked, then queued and applied to the local view in one
 * LMDB write transaction: when the call returns, the commit is on disk
 * (two ordered flushes by default; one with SKY_CACHE_FAST_WRITES), so
 * an acknowledged write survives a crash and every read shows it.
 *
 * What this file keeps true, inside every write transaction:
 * - A session has queued writes (entries that are not dead letters) if
 *   and only if its record has SKY_REC_PENDING; then `server` holds the
 *   server's copy (session JSON + its own data document), except for a
 *   session created offline that the server has not made yet, which has
 *   no server copy.
 * - The local view = server copy + queued writes in queue order. Every
 *   change of either (server state arriving, a write delivered, rejected,
 *   retried or dropped) rebuilds it that way (sky__outbox_rebuild).
 * - Entries of one session are kept in queue order under
 *   outbox_by_session, so delivery can keep per-session order cheaply.
 * - A local id stays valid after the server made the session: `alias`
 *   maps it to the server id for reads and later writes.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "changes.h"
#include "doc.h"
#include "enginelock.h"
#include "error.h"
#include "json.h"
#include "merge.h"
#include "index.h"
#include "outbox.h"
#include "random.h"
#include "record.h"
#include "repair.h"
#include "validate.h"

#define ENTRY_HEADER 32
#define ENTRY_FORMAT 1
#define LOCAL_PREFIX "local-"

/* ------------------------------------------------------------------ */
/* Entries                                                             */
/* ------------------------------------------------------------------ */

/*
 * Value layout (big-endian): u8 format | u8 op | u8 state | u8 flags |
 * u32 attempts | i64 queued_us | i64 next_try_us | i32 http_status | u32 0,
 * then five NUL-terminated strings: app, sid, local, body, answer.
 */
int sky__ob_decode(uint64_t id, const MDB_val *val, sky_ob_entry *out)
{
	const unsigned char *p = val->mv_data;
	if (val->mv_size < ENTRY_HEADER + 5 || p[0] != ENTRY_FORMAT ||
	    ((const char *)p)[val->mv_size - 1] != '\0')
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
				      "outbox entry %llu is corrupt",
				      (unsigned long long)id);
	memset(out, 0, sizeof(*out));
	out->id = id;
	out->op = (sky_write_op)p[1];
	out->state = (sky_outbox_state)p[2];
	out->flags = p[3];
	out->attempts = sky__get_be32(p + 4);
	out->queued_us = (int64_t)sky__get_be64(p + 8);
	out->next_try_us = (int64_t)sky__get_be64(p + 16);
	out->http_status = (int)sky__get_be32(p + 24);
	const char *s = (const char *)p + ENTRY_HEADER;
	const char *end = (const char *)p + val->mv_size;
	const char **fields[5] = {&out->app, &out->sid, &out->local,
				  &out->body, &out->answer};
	for (int i = 0; i < 5; i++) {
		if (s >= end)
			return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
					      "outbox entry %llu is corrupt",
					      (unsigned long long)id);
		*fields[i] = s;
		s += strlen(s) + 1;
	}
	if (!*out->local)
		out->local = NULL;
	return 0;
}

static size_t session_prefix(unsigned char *buf, const char *app,
			     const char *sid)
{
	size_t n = sky__key2(buf, SKY_KEY_MAX - 9, app, sid);
	if (n)
		buf[n++] = '\0';
	return n;
}

static size_t by_session_key(unsigned char *buf, const char *app,
			     const char *sid, uint64_t id)
{
	size_t n = session_prefix(buf, app, sid);
	if (!n)
		return 0;
	sky__put_be64(buf + n, id);
	return n + 8;
}

int sky__ob_store(MDB_txn *txn, sky_cache *c, const sky_ob_entry *e)
{
	const char *strs[5] = {e->app, e->sid, e->local ? e->local : "",
			       e->body ? e->body : "",
			       e->answer ? e->answer : ""};
	size_t lens[5], total = ENTRY_HEADER;
	for (int i = 0; i < 5; i++)
		total += (lens[i] = strlen(strs[i])) + 1;
	unsigned char kb[8];
	sky__put_be64(kb, e->id);
	MDB_val key = {8, kb}, val = {total, NULL};
	int rc = mdb_put(txn, SKY_DBI(c, SKY_DB_OUTBOX), &key, &val,
			 MDB_RESERVE);
	if (rc)
		return sky__error_lmdb(rc, "writing an outbox entry");
	unsigned char *p = val.mv_data;
	memset(p, 0, ENTRY_HEADER);
	p[0] = ENTRY_FORMAT;
	p[1] = (unsigned char)e->op;
	p[2] = (unsigned char)e->state;
	p[3] = (unsigned char)e->flags;
	sky__put_be32(p + 4, e->attempts);
	sky__put_be64(p + 8, (uint64_t)e->queued_us);
	sky__put_be64(p + 16, (uint64_t)e->next_try_us);
	sky__put_be32(p + 24, (uint32_t)e->http_status);
	p += ENTRY_HEADER;
	for (int i = 0; i < 5; i++) {
		memcpy(p, strs[i], lens[i] + 1);
		p += lens[i] + 1;
	}
	unsigned char sk[SKY_KEY_MAX];
	MDB_val skey = {by_session_key(sk, e->app, e->sid, e->id), sk};
	MDB_val empty = {0, ""};
	if (!skey.mv_size)
		return sky__error_input("outbox: ids too long");
	if ((rc = mdb_put(txn, SKY_DBI(c, SKY_DB_OBSESS), &skey, &empty, 0)))
		return sky__error_lmdb(rc, "writing an outbox entry");
	return 0;
}

int sky__ob_get(MDB_txn *txn, sky_cache *c, uint64_t id, sky_ob_entry *out)
{
	unsigned char kb[8];
	sky__put_be64(kb, id);
	MDB_val key = {8, kb}, val;
	int rc = mdb_get(txn, SKY_DBI(c, SKY_DB_OUTBOX), &key, &val);
	if (rc == MDB_NOTFOUND)
		return SKY_ENOTFOUND;
	if (rc)
		return sky__error_lmdb(rc, "reading the outbox");
	return sky__ob_decode(id, &val, out);
}

int sky__ob_remove(MDB_txn *txn, sky_cache *c, const sky_ob_entry *e)
{
	unsigned char sk[SKY_KEY_MAX], kb[8];
	MDB_val skey = {by_session_key(sk, e->app, e->sid, e->id), sk};
	int rc = mdb_del(txn, SKY_DBI(c, SKY_DB_OBSESS), &skey, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "removing an outbox entry");
	sky__put_be64(kb, e->id);
	MDB_val key = {8, kb};
	rc = mdb_del(txn, SKY_DBI(c, SKY_DB_OUTBOX), &key, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "removing an outbox entry");
	return 0;
}

int sky__ob_own(const sky_ob_entry *e, sky_ob_owned *out)
{
	const char *src[5] = {e->app, e->sid, e->local ? e->local : "",
			      e->body ? e->body : "",
			      e->answer ? e->answer : ""};
	size_t total = 0;
	for (int i = 0; i < 5; i++)
		total += strlen(src[i]) + 1;
	out->e = *e;
	if (!(out->strs = malloc(total)))
		return sky__error_nomem();
	char *p = out->strs;
	const char **dst[5] = {&out->e.app, &out->e.sid, &out->e.local,
			       &out->e.body, &out->e.answer};
	for (int i = 0; i < 5; i++) {
		size_t n = strlen(src[i]) + 1;
		memcpy(p, src[i], n);
		*dst[i] = p;
		p += n;
	}
	if (!e->local)
		out->e.local = NULL;
	return 0;
}

/*
 * The entries of session app/sid in queue order, owned. `live_only`
 * leaves out dead letters. *out is freed with free_entries.
 */
typedef struct {
	sky_ob_owned *v;
	size_t n, cap;
} entry_list;

static void free_entries(entry_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].strs);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int session_entries(MDB_txn *txn, sky_cache *c, const char *app,
			   const char *sid, int live_only, entry_list *out)
{
	unsigned char pre[SKY_KEY_MAX];
	size_t plen = session_prefix(pre, app, sid);
	memset(out, 0, sizeof(*out));
	if (!plen)
		return 0;
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_OBSESS), &cur);
	if (rc)
		return sky__error_lmdb(rc, "reading the outbox");
	MDB_val key = {plen, pre}, val;
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (rc == 0 && key.mv_size == plen + 8 &&
	       memcmp(key.mv_data, pre, plen) == 0) {
		uint64_t id = sky__get_be64((unsigned char *)key.mv_data + plen);
		sky_ob_entry e;
		if ((rc = sky__ob_get(txn, c, id, &e)) < 0)
			break;
		if (!live_only || e.state != SKY_OUTBOX_REJECTED) {
			if (out->n == out->cap) {
				size_t cap = out->cap ? out->cap * 2 : 8;
				sky_ob_owned *v =
				    realloc(out->v, cap * sizeof(*v));
				if (!v) {
					rc = sky__error_nomem();
					break;
				}
				out->v = v;
				out->cap = cap;
			}
			if ((rc = sky__ob_own(&e, &out->v[out->n])) < 0)
				break;
			out->n++;
		}
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc == MDB_NOTFOUND)
		rc = 0;
	else if (rc > 0)
		rc = sky__error_lmdb(rc, "reading the outbox");
	if (rc < 0)
		free_entries(out);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Checking writes                                                     */
/* ------------------------------------------------------------------ */

static const char *op_names[] = {
    [SKY_WRITE_CREATE] = "create",	   [SKY_WRITE_PATCH] = "patch",
    [SKY_WRITE_DATA] = "data",		   [SKY_WRITE_PARTICIPANT] = "participant",
    [SKY_WRITE_EVENT] = "event",
};

const char *sky_write_op_name(sky_write_op op)
{
	if (op < SKY_WRITE_CREATE || op > SKY_WRITE_EVENT)
		return "unknown";
	return op_names[op];
}

const char *sky_outbox_state_name(sky_outbox_state s)
{
	switch (s) {
	case SKY_OUTBOX_PENDING:
		return "pending";
	case SKY_OUTBOX_IN_FLIGHT:
		return "in flight";
	case SKY_OUTBOX_IN_DOUBT:
		return "in doubt";
	case SKY_OUTBOX_REJECTED:
		return "rejected";
	}
	return "unknown";
}

static int check_string_field(const json_t *v, const char *what)
{
	if (!sky__json_is_text(v)) /* a big number is not a name */
		return sky__error_input("%s: must be a string", what);
	if (json_string_length(v) == 0)
		return sky__error_input("%s: must not be empty", what);
	return 0;
}

/* Check a create body: {name, description?, properties?, version?}. */
static int check_create(const json_t *b)
{
	const char *k;
	json_t *v;
	int rc;
	if (!json_object_get(b, "name"))
		return sky__error_input("session create: name is required");
	json_object_foreach((json_t *)b, k, v) {
		if (!strcmp(k, "name")) {
			if ((rc = check_string_field(v, "session create: name")) < 0)
				return rc;
		} else if (!strcmp(k, "description")) {
			if (!sky__json_is_text(v))
				return sky__error_input(
				    "session create: description must be a string");
		} else if (!strcmp(k, "properties")) {
			if ((rc = sky__validate_properties(v, "session create: properties")) < 0)
				return rc;
		} else if (!strcmp(k, "version")) {
			if (!json_is_integer(v) || json_integer_value(v) < 0)
				return sky__error_input(
				    "session create: version "
				    "must be a non-negative integer");
		} else {
			return sky__error_input(
			    "session create: unknown field \"%s\" (allowed: "
			    "name, description, properties, version)", k);
		}
	}
	return 0;
}

/* Check a session patch: any of name, description, properties, status. */
static int check_patch(const json_t *b)
{
	const char *k;
	json_t *v;
	int rc;
	if (json_object_size(b) == 0)
		return sky__error_input("session patch: empty (give any of name, "
					"description, properties, status)");
	json_object_foreach((json_t *)b, k, v) {
		if (!strcmp(k, "name")) {
			if ((rc = check_string_field(v, "session patch: name")) < 0)
				return rc;
		} else if (!strcmp(k, "description")) {
			if (!sky__json_is_text(v) && !json_is_null(v))
				return sky__error_input("session patch: description "
							"must be a string or null");
		} else if (!strcmp(k, "properties")) {
			if ((rc = sky__validate_properties(v, "session patch: properties")) < 0)
				return rc;
		} else if (!strcmp(k, "status")) {
			if (!sky__json_streq(v, "closed"))
				return sky__error_input("session patch: status can "
							"only be set to \"closed\"");
		} else {
			return sky__error_input(
			    "session patch: unknown field \"%s\" (allowed: name, "
			    "description, properties, status)", k);
		}
	}
	return 0;
}

static int check_participant(const json_t *b)
{
	const char *k;
	json_t *v;
	json_t *id = json_object_get(b, "id");
	if (!sky__json_is_text(id))
		return sky__error_input("participant: id is required (a string)");
	int rc = sky__json_check_id(id, "participant id");
	if (rc < 0)
		return rc;
	json_object_foreach((json_t *)b, k, v) {
		if (!strcmp(k, "id"))
			continue;
		if (!strcmp(k, "type")) {
			if (!sky__json_streq(v, "user") &&
			    !sky__json_streq(v, "group"))
				return sky__error_input("participant: type must be "
							"\"user\" or \"group\"");
			continue;
		}
		return sky__error_input("participant: unknown field \"%s\"", k);
	}
	return 0;
}

/* Parse and check the body of a write; *out a new reference. */
static int check_body(sky_cache *c, sky_write_op op, const char *json,
		      size_t len, json_t **out)
{
	static const char *what[] = {
	    [SKY_WRITE_CREATE] = "session create",
	    [SKY_WRITE_PATCH] = "session patch",
	    [SKY_WRITE_DATA] = "data patch",
	    [SKY_WRITE_PARTICIPANT] = "participant",
	    [SKY_WRITE_EVENT] = "custom event",
	};
	if (op < SKY_WRITE_CREATE || op > SKY_WRITE_EVENT)
		return sky__error_input("write: unknown operation %d", (int)op);
	if (!json)
		return sky__error_input("%s: no JSON given", what[op]);
	int rc = sky__json_parse(json, len, &c->event_limits, what[op], out);
	if (rc < 0)
		return rc;
	if (!json_is_object(*out)) {
		rc = sky__error_input("%s: must be a JSON object", what[op]);
	} else {
		switch (op) {
		case SKY_WRITE_CREATE:
			rc = check_create(*out);
			break;
		case SKY_WRITE_PATCH:
			rc = check_patch(*out);
			break;
		case SKY_WRITE_PARTICIPANT:
			rc = check_participant(*out);
			break;
		default:
			break;
		}
	}
	if (rc < 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* The local view                                                      */
/* ------------------------------------------------------------------ */

static MDB_dbi data_dbi(sky_cache *c)
{
	return SKY_DBI(c, SKY_DB_DATA);
}

const char *sky__outbox_alias(MDB_txn *txn, sky_cache *c, const char *app,
			      const char *sid)
{
	if (strncmp(sid, LOCAL_PREFIX, strlen(LOCAL_PREFIX)))
		return NULL;
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, sid), kb}, val;
	if (!key.mv_size ||
	    mdb_get(txn, SKY_DBI(c, SKY_DB_ALIAS), &key, &val) != 0)
		return NULL;
	return val.mv_data;
}

/* The server copy of app/sid, if kept. 0, SKY_ENOTFOUND or an error. */
static int server_get(MDB_txn *txn, sky_cache *c, const char *app,
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
	int rc = mdb_put(txn, SKY_DBI(c, SKY_DB_SERVER), &key, &val,
			 MDB_RESERVE);
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

static int server_del(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, sid), kb};
	int rc = mdb_del(txn, SKY_DBI(c, SKY_DB_SERVER), &key, NULL);
	return rc && rc != MDB_NOTFOUND ? sky__error_lmdb(rc, "removing a server copy")
					: 0;
}

/*
 * Put the server copy of app/sid back as its record (or remove the record
 * of a session created offline, which has none). *had_server tells which.
 * Returns 1 when the record was a local view, 0 when it was not.
 */
static int restore_server(MDB_txn *txn, sky_cache *c, const char *app,
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
	rc = server_get(txn, c, app, sid, &srv);
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
	if ((rc = sky__doc_delete(txn, data_dbi(c), docid)) == 0 &&
	    (rc = sky__doc_copy(txn, data_dbi(c), server_doc, docid)) == 0 &&
	    (rc = sky__doc_delete(txn, data_dbi(c), server_doc)) == 0 &&
	    (rc = sky__record_put(txn, c, &hdr, server, local, old_created)) == 0)
		rc = server_del(txn, c, app, sid);
	json_decref(local);
	json_decref(server);
	return rc < 0 ? rc : 1;
}

/* Apply the session-field part of a write to `s` (the local view). */
static int apply_fields(json_t *s, const sky_ob_entry *e, json_t *body)
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
			if (!parts || json_object_set_new(s, "participants", parts) < 0)
				return sky__error_nomem();
		}
		size_t i;
		json_array_foreach(parts, i, v) {
			const char *pid = sky__json_str(v, "id");
			const char *pt = sky__json_str(v, "type");
			if (pid && !strcmp(pid, id) && !strcmp(pt ? pt : "user", type))
				return 0;
		}
		json_t *p = json_pack("{s:s, s:s}", "id", id, "type", type);
		if (!p || json_array_append_new(parts, p) < 0)
			return sky__error_nomem();
		return 0;
	}
	default:
		return 0;
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
static int overlay(MDB_txn *txn, sky_cache *c, const char *app,
		   const char *sid, const entry_list *l)
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
		json_t *body = sky__json_loads(e0->body, 0, NULL);
		if (!body)
			return sky__error_input("outbox entry %llu: corrupt body",
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
		    (rc = sky__doc_copy(txn, data_dbi(c), rec.docid,
					srv.docid)) < 0 ||
		    (rc = server_put(txn, c, app, sid, &srv)) < 0)
			return rc;
		if (!(server = sky__record_json(&rec)))
			return -1;
		if (!(local = json_deep_copy(server))) {
			rc = sky__error_nomem();
			goto done;
		}
		hdr = rec;
	}
	for (size_t i = first; i < l->n; i++) {
		const sky_ob_entry *e = &l->v[i].e;
		if (e->op == SKY_WRITE_EVENT || e->op == SKY_WRITE_CREATE)
			continue;
		json_t *body = sky__json_loads(e->body, 0, NULL);
		if (!body) {
			rc = sky__error_input("outbox entry %llu: corrupt body",
					      (unsigned long long)e->id);
			goto done;
		}
		if (e->op == SKY_WRITE_DATA)
			rc = sky__doc_patch(txn, data_dbi(c), hdr.docid, body);
		else
			rc = apply_fields(local, e, body);
		json_decref(body);
		if (rc < 0)
			goto done;
	}
	hdr.flags |= SKY_REC_PENDING;
	hdr.created_us = sky__session_created_us(local);
	rc = sky__record_put(txn, c, &hdr, local, server,
			     server ? rec.created_us : 0);
done:
	json_decref(server);
	json_decref(local);
	return rc;
}

int sky__outbox_rebuild(MDB_txn *txn, sky_cache *c, const char *app,
			const char *sid)
{
	int had_server;
	int rc = restore_server(txn, c, app, sid, &had_server);
	if (rc < 0)
		return rc;
	entry_list l;
	if ((rc = session_entries(txn, c, app, sid, 1, &l)) < 0)
		return rc;
	rc = overlay(txn, c, app, sid, &l);
	free_entries(&l);
	return rc;
}

int sky__outbox_reveil(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid)
{
	return sky__outbox_rebuild(txn, c, app, sid);
}

/*
 * Count `n` writes confirmed delivered (SKY_META_OB_DELIVERED, and the time
 * in SKY_META_OB_LAST_DELIVERY), in the transaction that removes them, so
 * the count never disagrees with the queue. The two places that know a
 * write arrived call it: sky__outbox_delivered (a write's answer) and
 * readdress (a create, whether its answer or the server's copy came
 * first).
 */
static int count_delivered(MDB_txn *txn, sky_cache *c, size_t n)
{
	uint64_t total = sky__meta_get_u64(txn, &c->st, SKY_META_OB_DELIVERED);
	int rc = sky__meta_put_u64(txn, &c->st, SKY_META_OB_DELIVERED,
				   total + n);
	if (rc == 0)
		rc = sky__meta_put_u64(txn, &c->st, SKY_META_OB_LAST_DELIVERY,
				       (uint64_t)sky__now_us());
	return rc;
}

/* Move the entries of local session `local` to `server_sid`; the create
 * itself is done and goes. */
static int readdress(MDB_txn *txn, sky_cache *c, const char *app,
		     const char *local, const char *server_sid)
{
	entry_list l;
	int rc = session_entries(txn, c, app, local, 0, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		sky_ob_entry e = l.v[i].e;
		if ((rc = sky__ob_remove(txn, c, &e)) < 0)
			break;
		if (e.op == SKY_WRITE_CREATE) {
			rc = count_delivered(txn, c, 1);
			continue;
		}
		e.sid = server_sid;
		rc = sky__ob_store(txn, c, &e);
	}
	free_entries(&l);
	return rc;
}

static int alias_put(MDB_txn *txn, sky_cache *c, const char *app,
		     const char *local, const char *server_sid)
{
	unsigned char kb[SKY_KEY_MAX];
	MDB_val key = {sky__key2(kb, sizeof(kb), app, local), kb};
	MDB_val val = {strlen(server_sid) + 1, (void *)server_sid};
	int rc = mdb_put(txn, SKY_DBI(c, SKY_DB_ALIAS), &key, &val, 0);
	return rc ? sky__error_lmdb(rc, "writing an alias") : 0;
}

/*
 * If `incoming` is the server's copy of a session this cache created
 * offline (clientRef names a local session still here), hand the local
 * session's writes over to the server id and drop the local record.
 */
static int adopt_if_ours(MDB_txn *txn, sky_cache *c, const char *app,
			 const char *sid, const json_t *incoming)
{
	const char *ref = incoming ? sky__json_str(incoming, "clientRef") : NULL;
	if (!ref || strncmp(ref, LOCAL_PREFIX, strlen(LOCAL_PREFIX)) ||
	    !strcmp(ref, sid))
		return 0;
	if (sky__outbox_alias(txn, c, app, ref))
		return 0; /* adopted before */
	sky_record rec;
	int rc = sky__record_get(txn, c, app, ref, &rec);
	if (rc == SKY_ENOTFOUND) {
		/* Not ours, or its create was dropped: nothing to hand over
		 * unless entries wait under the local id. */
		entry_list l;
		if ((rc = session_entries(txn, c, app, ref, 0, &l)) < 0)
			return rc;
		size_t n = l.n;
		free_entries(&l);
		if (n == 0)
			return 0;
	} else if (rc < 0) {
		return rc;
	} else if ((rc = sky__record_delete(txn, c, app, ref)) < 0) {
		return rc;
	}
	if ((rc = alias_put(txn, c, app, ref, sid)) < 0 ||
	    (rc = readdress(txn, c, app, ref, sid)) < 0)
		return rc;
	return 1;
}

int sky__outbox_unveil(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid, const json_t *incoming)
{
	int adopted = adopt_if_ours(txn, c, app, sid, incoming);
	if (adopted < 0)
		return adopted;
	int had_server;
	int rc = restore_server(txn, c, app, sid, &had_server);
	if (rc < 0)
		return rc;
	return rc || adopted;
}

/* ------------------------------------------------------------------ */
/* Queueing writes                                                     */
/* ------------------------------------------------------------------ */

typedef struct {
	sky_cache *cache;
	sky_write *w;
	size_t n;
	json_t **bodies;
	char **local_ids;
} enqueue_ctx;

/* 128 bits from getrandom(): the id is also the create's clientRef,
 * which must not match another client's session on the server. */
static char *new_local_id(void)
{
	char *id = malloc(SKY_LOCAL_ID_SIZE);
	if (!id) {
		sky__error_nomem();
		return NULL;
	}
	if (sky__local_id(id) < 0) {
		free(id);
		return NULL;
	}
	return id;
}

/* Apply one write to the local view `rec` of a session with writes
 * queued already. */
static int lay_on(MDB_txn *txn, sky_cache *c, sky_record *rec,
		  const sky_ob_entry *e, json_t *body)
{
	if (e->op == SKY_WRITE_EVENT)
		return 0;
	if (e->op == SKY_WRITE_DATA) {
		sky__changes_note(c, e->app, e->sid);
		return sky__doc_patch(txn, data_dbi(c), rec->docid, body);
	}
	json_t *old = sky__record_json(rec);
	json_t *now = old ? json_deep_copy(old) : NULL;
	int rc = now ? apply_fields(now, e, body) : -1;
	if (rc == 0)
		rc = sky__record_put(txn, c, rec, now, old, rec->created_us);
	json_decref(old);
	json_decref(now);
	return rc;
}

/*
 * Is the session's local view closed? Its status index entry tells,
 * without parsing the record (the index always matches the record). 1, 0
 * or an error.
 */
static int session_closed(MDB_txn *txn, sky_cache *c, const char *app,
			  const char *sid, const sky_record *rec)
{
	unsigned char pos[8 + SKY_MAX_ID_BYTES];
	size_t sid_len = strlen(sid);
	if (sid_len > SKY_MAX_ID_BYTES)
		return sky__error_input("session id longer than %u bytes",
					SKY_MAX_ID_BYTES);
	sky_ixkey k;
	sky__ixkey_value(&k, app, SKY_IXF_STATUS, NULL, "closed", 6);
	sky__put_time(pos, rec->created_us);
	memcpy(pos + 8, sid, sid_len);
	MDB_val key = {k.len, k.data}, val = {8 + sid_len, pos};
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_INDEX), &cur);
	if (rc == 0) {
		rc = mdb_cursor_get(cur, &key, &val, MDB_GET_BOTH);
		mdb_cursor_close(cur);
	}
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? sky__error_lmdb(rc, "reading the status index") : 1;
}

static int enqueue_one(MDB_txn *txn, enqueue_ctx *q, size_t i)
{
	sky_cache *c = q->cache;
	sky_write *w = &q->w[i];
	sky_ob_entry e;
	memset(&e, 0, sizeof(e));
	e.op = w->op;
	e.state = SKY_OUTBOX_PENDING;
	e.queued_us = sky__now_us();
	e.app = w->app_id;
	int rc;
	if (w->op == SKY_WRITE_CREATE) {
		char *app_key = (char *)w->app_id;
		MDB_val key = {strlen(app_key), app_key}, val;
		rc = mdb_get(txn, SKY_DBI(c, SKY_DB_APPS), &key, &val);
		if (rc == MDB_NOTFOUND)
			return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
					      "application %s is not in the "
					      "cache", w->app_id);
		if (rc)
			return sky__error_lmdb(rc, "reading an application");
		e.sid = e.local = q->local_ids[i];
	} else {
		sky_record rec;
		e.sid = w->session_id;
		rc = sky__record_get(txn, c, e.app, e.sid, &rec);
		if (rc == SKY_ENOTFOUND) {
			const char *to = sky__outbox_alias(txn, c, e.app, e.sid);
			if (to) {
				e.local = e.sid;
				e.sid = to;
				rc = sky__record_get(txn, c, e.app, e.sid, &rec);
			}
		}
		if (rc == SKY_ENOTFOUND)
			return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
					      "session %s/%s is not in the cache",
					      w->app_id, w->session_id);
		if (rc < 0)
			return rc;
		if (!strncmp(e.sid, LOCAL_PREFIX, strlen(LOCAL_PREFIX)))
			e.local = e.sid;
		int closed = session_closed(txn, c, e.app, e.sid, &rec);
		if (closed < 0)
			return closed;
		if (closed)
			return sky__error_set(SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
					      "session %s/%s is closed: the server "
					      "refuses writes to it",
					      w->app_id, w->session_id);
	}
	if ((rc = sky__meta_next(txn, &c->st, "outbox_next", &e.id)) < 0)
		return rc;
	e.id++; /* ids start at 1 */
	char *body = sky__json_dump(q->bodies[i], NULL);
	if (!body)
		return -1;
	e.body = body;
	rc = sky__ob_store(txn, c, &e);
	free(body);
	if (rc < 0)
		return rc;
	w->id = e.id;
	/* The local view: rebuilt when it is the session's first queued
	 * write (to keep the server copy aside), else the write laid on top
	 * -- the same result, at the cost of this write alone. */
	sky_record rec;
	if (e.op != SKY_WRITE_CREATE &&
	    sky__record_get(txn, c, e.app, e.sid, &rec) == 0 &&
	    (rec.flags & SKY_REC_PENDING))
		return lay_on(txn, c, &rec, &e, q->bodies[i]);
	return sky__outbox_rebuild(txn, c, e.app, e.sid);
}

static int enqueue_write(MDB_txn *txn, void *arg)
{
	enqueue_ctx *q = arg;
	for (size_t i = 0; i < q->n; i++) {
		int rc = enqueue_one(txn, q, i);
		if (rc < 0) {
			q->w[i].result = rc;
			return rc;
		}
	}
	return 0;
}

/* ---- the journal record of a batch (SKY_CACHE_JOURNAL) ----
 *
 * type u8 (1) | count u32 | per write: op u8 | application | session id
 * (for a create, the local id it was given) | JSON body; each string as
 * u32 length + bytes. Replaying it reruns the batch with the same local
 * ids on the state the journal's checkpoint restored. */
#define JOURNAL_WRITE_BATCH 1

static unsigned char *put_field(unsigned char *p, const char *s, size_t len)
{
	sky__put_be32(p, (uint32_t)len);
	memcpy(p + 4, s, len);
	return p + 4 + len;
}

static unsigned char *batch_record(const enqueue_ctx *q, size_t *len)
{
	size_t total = 5;
	for (size_t i = 0; i < q->n; i++) {
		const sky_write *w = &q->w[i];
		const char *sid = q->local_ids[i] ? q->local_ids[i]
						  : w->session_id;
		total += 1 + 12 + strlen(w->app_id) + strlen(sid) + w->len;
	}
	unsigned char *rec = malloc(total), *p = rec;
	if (!rec)
		return NULL;
	*p++ = JOURNAL_WRITE_BATCH;
	sky__put_be32(p, (uint32_t)q->n);
	p += 4;
	for (size_t i = 0; i < q->n; i++) {
		const sky_write *w = &q->w[i];
		const char *sid = q->local_ids[i] ? q->local_ids[i]
						  : w->session_id;
		*p++ = (unsigned char)w->op;
		p = put_field(p, w->app_id, strlen(w->app_id));
		p = put_field(p, sid, strlen(sid));
		p = put_field(p, w->json, w->len);
	}
	*len = total;
	return rec;
}

/* Take one length-prefixed string of a record as a new C string. */
static char *take_field(const unsigned char **p, const unsigned char *end,
			size_t *len)
{
	if (end - *p < 4)
		return NULL;
	size_t n = sky__get_be32(*p);
	if ((size_t)(end - *p - 4) < n)
		return NULL;
	char *s = malloc(n + 1);
	if (s) {
		memcpy(s, *p + 4, n);
		s[n] = '\0';
		*p += 4 + n;
		if (len)
			*len = n;
	}
	return s;
}

typedef struct {
	MDB_txn *txn;
	sky_cache *cache;
} replay_ctx;

static int replay_record(const unsigned char *p, size_t len, void *arg)
{
	replay_ctx *r = arg;
	const unsigned char *end = p + len;
	if (len < 5 || p[0] != JOURNAL_WRITE_BATCH)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_INPUT, 0,
				      "journal record of an unknown kind");
	size_t n = sky__get_be32(p + 1);
	p += 5;
	if (n == 0 || n > len)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_INPUT, 0,
				      "journal record with %zu writes", n);
	enqueue_ctx q = {r->cache, calloc(n, sizeof(sky_write)), n,
			 calloc(n, sizeof(json_t *)), calloc(n, sizeof(char *))};
	char **strings = calloc(3 * n, sizeof(char *));
	int rc = 0;
	if (!q.w || !q.bodies || !q.local_ids || !strings) {
		rc = sky__error_nomem();
		goto done;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		sky_write *w = &q.w[i];
		char *app = NULL, *sid = NULL, *json = NULL;
		if (p < end) {
			w->op = (sky_write_op)*p++;
			app = strings[3 * i] = take_field(&p, end, NULL);
			sid = strings[3 * i + 1] = take_field(&p, end, NULL);
			json = strings[3 * i + 2] = take_field(&p, end, &w->len);
		}
		if (!app || !sid || !json) {
			rc = sky__error_set(SKY_ERROR, SKY_ERRSRC_INPUT, 0,
					    "journal record cut short");
			break;
		}
		w->app_id = app;
		w->json = json;
		if (w->op == SKY_WRITE_CREATE)
			q.local_ids[i] = sid; /* freed with strings[] */
		else
			w->session_id = sid;
		rc = check_body(r->cache, w->op, json, w->len, &q.bodies[i]);
	}
	if (rc == 0)
		rc = enqueue_write(r->txn, &q);
done:
	for (size_t i = 0; i < n; i++) {
		if (q.bodies)
			json_decref(q.bodies[i]);
		if (strings) {
			free(strings[3 * i]);
			free(strings[3 * i + 1]);
			free(strings[3 * i + 2]);
		}
	}
	free(strings);
	free(q.w);
	free(q.bodies);
	free(q.local_ids);
	return rc;
}

static int replay_write(MDB_txn *txn, void *arg)
{
	replay_ctx r = {txn, arg};
	return sky__journal_each_replay(&r.cache->st.journal, replay_record,
					&r);
}

int sky__outbox_replay_journal(sky_cache *c)
{
	sky_journal *j = &c->st.journal;
	if (!j->recovering)
		return 0;
	int rc = 0;
	if (j->replay_count)
		rc = sky__store_write(&c->st, replay_write, c);
	/* Fold the replayed state in (journal mode) or empty the journal
	 * for writers that do not use it. Until then close must not fold
	 * anything in: the next open recovers again. */
	if (rc == 0)
		rc = sky__journal_checkpoint(&c->st);
	if (rc < 0) {
		sky__error_prefix("recovering the %u writes kept in %s/journal "
				  "(they stay there for the next open)",
				  j->replay_count, c->dir);
		return rc;
	}
	j->recovering = 0;
	sky__journal_replay_done(j);
	return 0;
}

int sky_write_batch(sky_cache *cache, sky_write *writes, size_t count)
{
	enqueue_ctx q = {cache, writes, count, calloc(count + 1, sizeof(json_t *)),
			 calloc(count + 1, sizeof(char *))};
	int rc = 0;
	if (!q.bodies || !q.local_ids) {
		rc = sky__error_nomem();
		goto done;
	}
	if (cache->st.flags & SKY_CACHE_READONLY) {
		rc = sky__error_set(SKY_EPERM, SKY_ERRSRC_NONE, 0,
				    "the cache is open read-only");
		goto done;
	}
	for (size_t i = 0; i < count; i++) {
		sky_write *w = &writes[i];
		w->result = 0;
		w->error = NULL;
		w->id = 0;
		w->new_session_id = NULL;
		rc = sky__check_write_id(w->app_id, "application id");
		if (rc == 0 && w->op != SKY_WRITE_CREATE)
			rc = sky__check_write_id(w->session_id, "session id");
		if (rc == 0)
			rc = check_body(cache, w->op, w->json, w->len,
					&q.bodies[i]);
		if (rc == 0 && w->op == SKY_WRITE_CREATE &&
		    !(q.local_ids[i] = new_local_id()))
			rc = -1;
		if (rc < 0) {
			w->result = rc;
			w->error = sky__error_dup();
			goto done;
		}
	}
	if (cache->st.journal.active) {
		size_t reclen = 0;
		unsigned char *rec = batch_record(&q, &reclen);
		rc = rec ? sky__store_write_logged(&cache->st, enqueue_write, &q,
						   rec, reclen)
			 : sky__error_nomem();
		free(rec);
	} else {
		rc = sky__store_write(&cache->st, enqueue_write, &q);
	}
	if (rc < 0) {
		for (size_t i = 0; i < count; i++)
			if (writes[i].result < 0)
				writes[i].error = sky__error_dup();
		goto done;
	}
	for (size_t i = 0; i < count; i++) {
		writes[i].new_session_id = q.local_ids[i];
		q.local_ids[i] = NULL;
	}
done:
	for (size_t i = 0; i < count; i++) {
		if (q.bodies)
			json_decref(q.bodies[i]);
		if (q.local_ids)
			free(q.local_ids[i]);
	}
	free(q.bodies);
	free(q.local_ids);
	return rc;
}

/* One write through the batch path; keeps the error for the caller. */
static int write_one(sky_cache *cache, sky_write_op op, const char *app,
		     const char *sid, const char *json, size_t len,
		     char **new_sid)
{
	sky_write w = {op, app, sid, json, len, 0, NULL, 0, NULL};
	int rc = sky_write_batch(cache, &w, 1);
	free(w.error); /* sky_error_last() still holds it */
	if (rc == 0 && new_sid)
		*new_sid = w.new_session_id;
	else
		free(w.new_session_id);
	return rc;
}

int sky_session_create(sky_cache *cache, const char *app_id, const char *json,
		       size_t len, char **session_id)
{
	return write_one(cache, SKY_WRITE_CREATE, app_id, NULL, json, len,
			 session_id);
}

int sky_session_patch(sky_cache *cache, const char *app_id,
		      const char *session_id, const char *json, size_t len)
{
	return write_one(cache, SKY_WRITE_PATCH, app_id, session_id, json, len,
			 NULL);
}

/* A patch of one field, built as JSON. */
static int patch_field(sky_cache *cache, const char *app, const char *sid,
		       const char *field, json_t *value)
{
	if (!value)
		return sky__error_nomem();
	json_t *p = json_object();
	if (!p || json_object_set_new(p, field, value) < 0) {
		json_decref(p);
		return sky__error_nomem();
	}
	size_t len;
	char *text = sky__json_dump(p, &len);
	json_decref(p);
	if (!text)
		return -1;
	int rc = sky_session_patch(cache, app, sid, text, len);
	free(text);
	return rc;
}

int sky_session_set_properties(sky_cache *cache, const char *app_id,
			       const char *session_id, const char *json,
			       size_t len)
{
	json_t *props;
	int rc = sky__json_parse(json ? json : "", json ? len : 0,
				 &cache->event_limits, "properties", &props);
	if (rc < 0)
		return rc;
	return patch_field(cache, app_id, session_id, "properties", props);
}

int sky_session_set_name(sky_cache *cache, const char *app_id,
			 const char *session_id, const char *name)
{
	/* Checked here, not left to json_string(): its NULL for bad UTF-8
	 * would read as out of memory. */
	int rc = sky__check_text(name, 0, "session name");
	if (rc < 0)
		return rc;
	return patch_field(cache, app_id, session_id, "name",
			   json_string(name));
}

int sky_session_set_description(sky_cache *cache, const char *app_id,
				const char *session_id, const char *description)
{
	int rc = description
		     ? sky__check_text(description, 0, "session description")
		     : 0;
	if (rc < 0)
		return rc;
	return patch_field(cache, app_id, session_id, "description",
			   description ? json_string(description)
				       : json_null());
}

int sky_session_close(sky_cache *cache, const char *app_id,
		      const char *session_id)
{
	return patch_field(cache, app_id, session_id, "status",
			   json_string("closed"));
}

int sky_data_patch(sky_cache *cache, const char *app_id,
		   const char *session_id, const char *json, size_t len)
{
	return write_one(cache, SKY_WRITE_DATA, app_id, session_id, json, len,
			 NULL);
}

int sky_participant_add(sky_cache *cache, const char *app_id,
			const char *session_id, const char *participant_id,
			int is_group)
{
	int rc = sky__check_id(participant_id, "participant id");
	if (rc < 0)
		return rc;
	if (is_group != 0 && is_group != 1)
		return sky__error_input("participant type: is_group must be 0 "
					"(a user) or 1 (a group), not %d",
					is_group);
	json_t *p = json_pack("{s:s, s:s}", "id", participant_id, "type",
			      is_group ? "group" : "user");
	if (!p)
		return sky__error_nomem();
	size_t len;
	char *text = sky__json_dump(p, &len);
	json_decref(p);
	if (!text)
		return -1;
	rc = write_one(cache, SKY_WRITE_PARTICIPANT, app_id, session_id, text,
		       len, NULL);
	free(text);
	return rc;
}

int sky_session_event_send(sky_cache *cache, const char *app_id,
		   const char *session_id, const char *json, size_t len)
{
	return write_one(cache, SKY_WRITE_EVENT, app_id, session_id, json, len,
			 NULL);
}

/* ------------------------------------------------------------------ */
/* Delivery results                                                    */
/* ------------------------------------------------------------------ */

int sky__outbox_adopt(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *local, json_t *session, int64_t as_of_us)
{
	const char *sid = sky__json_str(session, "sessionId");
	if (!sid)
		return sky__error_input("created session: no sessionId");
	if (!json_object_get(session, "clientRef") &&
	    json_object_set_new(session, "clientRef", json_string(local)) < 0)
		return sky__error_nomem();
	/* The mirror's write runs the hooks: unveil adopts, reveil lays the
	 * remaining writes over the server's session. */
	return sky__mirror_session_write(txn, c, session, NULL, as_of_us);
}

int sky__outbox_delivered(MDB_txn *txn, sky_cache *c, const uint64_t *ids,
			  size_t n, int *drained)
{
	*drained = 0;
	entry_list done = {0};
	int rc = 0;
	for (size_t i = 0; i < n; i++) {
		sky_ob_entry e;
		rc = sky__ob_get(txn, c, ids[i], &e);
		if (rc == SKY_ENOTFOUND) {
			rc = 0; /* dropped meanwhile, or adopted */
			continue;
		}
		if (rc < 0)
			break;
		if (done.n == done.cap) {
			size_t cap = done.cap ? done.cap * 2 : 8;
			sky_ob_owned *v = realloc(done.v, cap * sizeof(*v));
			if (!v) {
				rc = sky__error_nomem();
				break;
			}
			done.v = v;
			done.cap = cap;
		}
		if ((rc = sky__ob_own(&e, &done.v[done.n])) < 0)
			break;
		done.n++;
		if ((rc = sky__ob_remove(txn, c, &e)) < 0)
			break;
	}
	if (rc < 0 || done.n == 0) {
		free_entries(&done);
		return rc;
	}
	if ((rc = count_delivered(txn, c, done.n)) < 0)
		goto out;
	const char *app = done.v[0].e.app, *sid = done.v[0].e.sid;
	entry_list l;
	if ((rc = session_entries(txn, c, app, sid, 1, &l)) < 0)
		goto out;
	if (l.n == 0) {
		/* Nothing else queued: the local view is the server copy with
		 * these writes, which is what the server now holds. */
		sky_record rec, srv;
		*drained = 1;
		rc = sky__record_get(txn, c, app, sid, &rec);
		if (rc == 0 && (rec.flags & SKY_REC_PENDING)) {
			if (server_get(txn, c, app, sid, &srv) == 0) {
				if ((rc = sky__doc_delete(txn, data_dbi(c),
							  srv.docid)) < 0 ||
				    (rc = server_del(txn, c, app, sid)) < 0)
					goto out_l;
			}
			rec.flags &= ~SKY_REC_PENDING;
			rc = sky__record_put_header(txn, c, &rec, app, sid);
			sky__changes_note(c, app, sid);
		} else if (rc == SKY_ENOTFOUND) {
			rc = 0;
		}
		goto out_l;
	}
	/* Others remain: the server copy gets these writes' effect (the
	 * server's own event will bring the same, idempotently), then the
	 * local view is laid over it again. */
	int had_server;
	if ((rc = restore_server(txn, c, app, sid, &had_server)) < 0)
		goto out_l;
	if (had_server) {
		sky_record rec;
		if ((rc = sky__record_get(txn, c, app, sid, &rec)) < 0)
			goto out_l;
		json_t *s = sky__record_json(&rec);
		json_t *now = s ? json_deep_copy(s) : NULL;
		if (!now) {
			json_decref(s);
			rc = -1;
			goto out_l;
		}
		for (size_t i = 0; i < done.n && rc == 0; i++) {
			const sky_ob_entry *e = &done.v[i].e;
			json_t *body = sky__json_loads(e->body, 0, NULL);
			if (!body) {
				rc = sky__error_input("outbox entry %llu: "
						      "corrupt body",
						      (unsigned long long)e->id);
				break;
			}
			if (e->op == SKY_WRITE_DATA)
				rc = sky__doc_patch(txn, data_dbi(c), rec.docid,
						    body);
			else
				rc = apply_fields(now, e, body);
			json_decref(body);
		}
		if (rc == 0)
			rc = sky__record_put(txn, c, &rec, now, s, rec.created_us);
		json_decref(s);
		json_decref(now);
		if (rc < 0)
			goto out_l;
	}
	rc = overlay(txn, c, app, sid, &l);
out_l:
	free_entries(&l);
out:
	free_entries(&done);
	return rc;
}

/* Note a new dead letter for the caller's notifications. */
static int note_dead(sky_buf *dead, uint64_t id)
{
	unsigned char b[8];
	if (!dead)
		return 0;
	sky__put_be64(b, id);
	return sky__buf_append(dead, b, 8);
}

int sky__outbox_reject(MDB_txn *txn, sky_cache *c, uint64_t id, int status,
		       const char *answer, sky_buf *dead)
{
	sky_ob_entry e;
	sky_ob_owned o;
	int rc = sky__ob_get(txn, c, id, &e);
	if (rc < 0)
		return rc;
	if ((rc = sky__ob_own(&e, &o)) < 0)
		return rc;
	o.e.state = SKY_OUTBOX_REJECTED;
	o.e.flags &= ~SKY_OB_ON_WIRE;
	o.e.http_status = status;
	o.e.answer = answer ? answer : "";
	o.e.next_try_us = 0;
	rc = sky__ob_store(txn, c, &o.e);
	if (rc == 0)
		rc = note_dead(dead, o.e.id);
	if (rc == 0 && o.e.op == SKY_WRITE_CREATE) {
		/* Its session will not exist: its other writes cannot go. */
		entry_list l;
		char why[128];
		snprintf(why, sizeof(why),
			 "the create of its session (outbox entry %llu) was "
			 "not delivered",
			 (unsigned long long)o.e.id);
		rc = session_entries(txn, c, o.e.app, o.e.sid, 1, &l);
		for (size_t i = 0; rc == 0 && i < l.n; i++) {
			sky_ob_entry x = l.v[i].e;
			x.state = SKY_OUTBOX_REJECTED;
			x.http_status = 0;
			x.answer = why;
			rc = sky__ob_store(txn, c, &x);
			if (rc == 0)
				rc = note_dead(dead, x.id);
		}
		free_entries(&l);
	}
	if (rc == 0)
		rc = sky__outbox_rebuild(txn, c, o.e.app, o.e.sid);
	free(o.strs);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Listing, retrying, dropping                                         */
/* ------------------------------------------------------------------ */

static void to_public(const sky_ob_entry *e, sky_outbox_entry *p)
{
	p->id = e->id;
	p->op = e->op;
	p->state = e->state;
	p->app_id = e->app;
	p->session_id = e->sid;
	p->local_id = e->local;
	p->body = e->body;
	p->queued_us = e->queued_us;
	p->attempts = e->attempts;
	p->next_try_us = e->next_try_us;
	p->http_status = e->http_status;
	p->answer = e->answer;
}

int sky_outbox_list(sky_cache *cache, sky_outbox_cb cb, void *payload)
{
	MDB_txn *txn;
	int rc = sky__store_read_begin(&cache->st, &txn);
	if (rc < 0)
		return rc;
	MDB_cursor *cur;
	if ((rc = mdb_cursor_open(txn, SKY_DBI(cache, SKY_DB_OUTBOX), &cur))) {
		sky__store_read_end(&cache->st, txn);
		return sky__error_lmdb(rc, "reading the outbox");
	}
	MDB_val key, val;
	int mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
	rc = 0;
	while (mrc == 0) {
		sky_ob_entry e;
		if (key.mv_size != 8) {
			rc = sky__error_input("outbox: corrupt key");
			break;
		}
		if ((rc = sky__ob_decode(sky__get_be64(key.mv_data), &val, &e)) < 0)
			break;
		sky_outbox_entry p;
		to_public(&e, &p);
		if ((rc = cb(&p, payload)) != 0)
			break;
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (rc == 0 && mrc != MDB_NOTFOUND)
		rc = sky__error_lmdb(mrc, "reading the outbox");
	mdb_cursor_close(cur);
	sky__store_read_end(&cache->st, txn);
	return rc;
}

static int count_cb(const sky_outbox_entry *e, void *payload)
{
	sky_outbox_counts *n = payload;
	switch (e->state) {
	case SKY_OUTBOX_PENDING:
		n->pending++;
		break;
	case SKY_OUTBOX_IN_FLIGHT:
		n->in_flight++;
		break;
	case SKY_OUTBOX_IN_DOUBT:
		n->in_doubt++;
		break;
	case SKY_OUTBOX_REJECTED:
		n->rejected++;
		break;
	}
	return 0;
}

int sky_outbox_counts_get(sky_cache *cache, sky_outbox_counts *out)
{
	/* Version 1 has every count there is. */
	int rc = sky__error_out_version("sky_outbox_counts",
					out ? &out->version : NULL,
					SKY_OUTBOX_COUNTS_VERSION);
	if (rc < 0)
		return rc;
	unsigned version = out->version;
	memset(out, 0, sizeof(*out));
	out->version = version;
	return sky_outbox_list(cache, count_cb, out);
}

typedef struct {
	sky_cache *cache;
	uint64_t id;
	int drop;
	sky_buf dead;	    /* ids (u64) of the dead letters the drop made */
	sky_ob_owned gone;  /* the dropped entry, for its notification */
	int notify_gone;    /* it left the queue unapplied: notify */
} change_ctx;

static int change_write(MDB_txn *txn, void *arg)
{
	change_ctx *x = arg;
	sky_cache *c = x->cache;
	sky_ob_entry e;
	sky_ob_owned o;
	/* The transaction may run again: nothing kept from a former run. */
	sky__buf_clear(&x->dead);
	x->notify_gone = 0;
	int rc = sky__ob_get(txn, c, x->id, &e);
	if (rc == SKY_ENOTFOUND)
		return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				      "outbox entry %llu does not exist",
				      (unsigned long long)x->id);
	if (rc < 0)
		return rc;
	if (e.state == SKY_OUTBOX_IN_FLIGHT)
		return sky__error_input("outbox entry %llu is in flight: wait "
					"for its answer",
					(unsigned long long)x->id);
	/* A write on the wire may still land: dropping it would be a lie.
	 * The flag is stale when no engine holds the cache (it crashed). */
	if (x->drop && (e.flags & SKY_OB_ON_WIRE) &&
	    sky__engine_lock_held(c->dir, NULL, NULL, 0) != 0)
		return sky__error_input("outbox entry %llu is being sent: its "
					"request is on the wire; wait for its "
					"answer",
					(unsigned long long)x->id);
	if (!x->drop && e.state == SKY_OUTBOX_PENDING)
		return sky__error_input("outbox entry %llu is pending already",
					(unsigned long long)x->id);
	if ((rc = sky__ob_own(&e, &o)) < 0)
		return rc;
	if (x->drop) {
		rc = sky__ob_remove(txn, c, &o.e);
		/* A dead letter was notified when it became one. */
		x->notify_gone = o.e.state != SKY_OUTBOX_REJECTED;
		/* A dropped create's session will not be made: the writes
		 * queued for it become dead letters rather than vanish. */
		if (rc == 0 && o.e.op == SKY_WRITE_CREATE) {
			entry_list l;
			rc = session_entries(txn, c, o.e.app, o.e.sid, 1, &l);
			for (size_t i = 0; rc == 0 && i < l.n; i++) {
				sky_ob_entry y = l.v[i].e;
				y.state = SKY_OUTBOX_REJECTED;
				y.answer = "the create of its session was "
					   "dropped";
				y.flags &= ~SKY_OB_ON_WIRE;
				rc = sky__ob_store(txn, c, &y);
				if (rc == 0)
					rc = note_dead(&x->dead, y.id);
			}
			free_entries(&l);
		}
	} else {
		/* A create sent before may have been made: it is looked for
		 * on the server before it is sent again. */
		o.e.state = o.e.op == SKY_WRITE_CREATE && (o.e.flags & SKY_OB_SENT)
				? SKY_OUTBOX_IN_DOUBT
				: SKY_OUTBOX_PENDING;
		o.e.attempts = 0;
		o.e.next_try_us = 0;
		o.e.http_status = 0;
		o.e.answer = "";
		rc = sky__ob_store(txn, c, &o.e);
	}
	if (rc == 0)
		rc = sky__outbox_rebuild(txn, c, o.e.app, o.e.sid);
	if (rc == 0 && x->notify_gone) {
		/* Kept past the commit for the notification. */
		free(x->gone.strs);
		x->gone = o;
		return 0;
	}
	free(o.strs);
	return rc;
}

int sky_outbox_retry(sky_cache *cache, uint64_t id)
{
	change_ctx x = {cache, id, 0, {0}, {{0}, NULL}, 0};
	return sky__store_write(&cache->st, change_write, &x);
}

int sky_outbox_drop(sky_cache *cache, uint64_t id)
{
	change_ctx x = {cache, id, 1, {0}, {{0}, NULL}, 0};
	int rc = sky__store_write(&cache->st, change_write, &x);
	if (rc == 0) {
		/* Every write that leaves the queue without being applied is
		 * notified: the dropped one, then those its create took. */
		if (x.notify_gone && cache->on_rejected) {
			sky_outbox_entry p;
			to_public(&x.gone.e, &p);
			p.answer = "dropped";
			cache->on_rejected(&p, cache->on_rejected_payload);
		}
		for (size_t k = 0; k + 8 <= x.dead.len; k += 8)
			sky__outbox_notify_rejected(
			    cache, sky__get_be64((unsigned char *)x.dead.data + k));
	}
	free(x.gone.strs);
	sky__buf_free(&x.dead);
	return rc;
}

void sky_outbox_on_rejected(sky_cache *cache, sky_outbox_cb cb, void *payload)
{
	cache->on_rejected = cb;
	cache->on_rejected_payload = payload;
}

void sky__outbox_notify_rejected(sky_cache *c, uint64_t id)
{
	if (!c->on_rejected)
		return;
	MDB_txn *txn;
	if (sky__store_read_begin(&c->st, &txn) < 0)
		return;
	sky_ob_entry e;
	if (sky__ob_get(txn, c, id, &e) == 0) {
		sky_outbox_entry p;
		to_public(&e, &p);
		c->on_rejected(&p, c->on_rejected_payload);
	}
	sky__store_read_end(&c->st, txn);
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
	entry_list l = {0};
	rc = sky__record_get(txn, cache, app_id, sid, &rec);
	if (rc == SKY_ENOTFOUND)
		rc = sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				    "session %s/%s is not in the cache", app_id,
				    session_id);
	if (rc == 0 && (rc = session_entries(txn, cache, app_id, sid, 1, &l)) == 0)
		*count = (unsigned)l.n;
	free_entries(&l);
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
		rc = server_get(txn, cache, app_id, sid, &srv);
		if (rc == 0)
			rec = srv;
	}
	if (rc == SKY_ENOTFOUND) {
		rc = sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
				    "session %s/%s: the server does not have it "
				    "(yet)", app_id, session_id);
	} else if (rc == 0 && data) {
		sky_buf buf = SKY_BUF_INIT;
		rc = sky__doc_read(txn, data_dbi(cache), rec.docid, &buf);
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

/* ------------------------------------------------------------------ */
/* Coalescing                                                          */
/* ------------------------------------------------------------------ */

/*
 * compose(p1, p2) = p with apply(apply(d, p1), p2) == apply(d, p) for
 * every document d, by induction over the keys of p1 and p2:
 * - k only in p1: p2 leaves the value p1 made; p[k] = p1[k].
 * - p2[k] not an object (a scalar, an array, or null): p2 sets or deletes
 *   k whatever p1 did; p[k] = p2[k].
 * - p2[k] an object, k not in p1: p1 leaves d[k]; p[k] = p2[k].
 * - p2[k] and p1[k] objects: both merge into d[k] in turn; by induction
 *   p[k] = compose(p1[k], p2[k]) when that exists.
 * - p2[k] an object and p1[k] not one (it set k to a scalar or array, or
 *   deleted it): the result is p2[k] merged into nothing, whatever d[k]
 *   was -- but an object in a patch always merges into d[k], so no single
 *   patch says this. No composition: the writes are sent one by one.
 */
json_t *sky__patch_compose(const json_t *first, const json_t *second)
{
	if (!json_is_object(first) || !json_is_object(second))
		return NULL;
	json_t *out = json_deep_copy(first);
	if (!out)
		return NULL;
	const char *k;
	json_t *v2;
	json_object_foreach((json_t *)second, k, v2) {
		json_t *v1 = json_object_get(first, k);
		json_t *nv;
		if (!json_is_object(v2) || !v1) {
			nv = json_deep_copy(v2);
		} else if (json_is_object(v1)) {
			nv = sky__patch_compose(v1, v2);
		} else {
			json_decref(out);
			return NULL;
		}
		if (!nv || json_object_set_new(out, k, nv) < 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* ------------------------------------------------------------------ */
/* Checking (skysync check)                                            */
/* ------------------------------------------------------------------ */

/* Live entries queued for app/sid, or the negative code of the read
 * (SKY_ENOTFOUND or SKY_EINVAL when the queue names a missing or corrupt
 * entry); *data_patches gets how many of them are data patches. */
static long live_count(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid, long *data_patches)
{
	entry_list l;
	*data_patches = 0;
	int rc = session_entries(txn, c, app, sid, 1, &l);
	if (rc < 0)
		return rc;
	long n = (long)l.n;
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i].e.op == SKY_WRITE_DATA)
			(*data_patches)++;
	free_entries(&l);
	return n;
}

int sky__outbox_check(MDB_txn *txn, sky_cache *c, sky_buf *problems)
{
	unsigned found = 0;
	MDB_cursor *cur;
	MDB_val key, val;
	int mrc;
#define PROBLEM(...)                                                          \
	do {                                                                  \
		found++;                                                      \
		sky__buf_printf(problems, __VA_ARGS__);                       \
		sky__buf_putc(problems, '\n');                                \
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
		MDB_val skey = {by_session_key(sk, e.app, e.sid, id), sk}, sv;
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
		if (alen + 1 >= key.mv_size || sky__record_decode(&val, &rec) < 0)
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
			PROBLEM("session %s/%s is %sflagged pending but has %ld "
				"queued write%s",
				appc, sid, pending ? "" : "not ", live,
				live == 1 ? "" : "s");
		int local = !strncmp(sid, LOCAL_PREFIX, strlen(LOCAL_PREFIX));
		int has_srv = server_get(txn, c, appc, sid, &srv) == 0;
		if (pending && !local && !has_srv)
			PROBLEM("session %s/%s has queued writes but no server "
				"copy", appc, sid);
		if (has_srv && !pending)
			PROBLEM("session %s/%s keeps a server copy without "
				"queued writes", appc, sid);
		/* Without a data patch queued, the local view's data is the
		 * server copy's. With one, the local view may have data the
		 * server copy has not (a first patch of a session without
		 * data, or of a session just created offline). */
		if (has_srv && data_patches == 0 &&
		    !sky__doc_exists(txn, data_dbi(c), srv.docid) &&
		    sky__doc_exists(txn, data_dbi(c), rec.docid))
			PROBLEM("the server copy of %s/%s has lost its data",
				appc, sid);
	}
	mdb_cursor_close(cur);
#undef PROBLEM
	return found ? SKY_EINVAL : 0;
}

