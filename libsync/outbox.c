/*
 * outbox.c - offline writes (DESIGN.md §5): the public write calls
 * (sky_write_batch and the calls built on it, sky_outbox_retry and
 * sky_outbox_drop), the checking of a write before it is queued, the
 * journal record of a batch and its replay at open, and the results of
 * delivery (adopt, delivered, reject) for deliver.c. The queue itself is
 * queue.c's, the local view view.c's, server state arriving server.c's.
 *
 * A write is checked, then queued and applied to the local view in one
 * LMDB write transaction: when the call returns, the commit is on disk
 * (two ordered flushes by default; one with SKY_CACHE_FAST_WRITES), so
 * an acknowledged write survives a crash and every read shows it.
 *
 * What this file keeps true: a write that fails its check leaves the
 * cache as it was; every change of the queue made here is followed, in
 * the same transaction, by the view's rebuild (or the write laid on top,
 * with the same result), so the view is server copy + queued writes.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "enginelock.h"
#include "error.h"
#include "json.h"
#include "index.h"
#include "outbox.h"
#include "random.h"
#include "record.h"
#include "mirror.h"
#include "server.h"
#include "validate.h"
#include "view.h"

/* ------------------------------------------------------------------ */
/* Checking writes                                                     */
/* ------------------------------------------------------------------ */

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
			if ((rc = check_string_field(
				 v, "session create: name")) < 0)
				return rc;
		} else if (!strcmp(k, "description")) {
			if (!sky__json_is_text(v))
				return sky__error_input(
				    "session create: description must be a "
				    "string");
		} else if (!strcmp(k, "properties")) {
			if ((rc = sky__validate_properties(
				 v, "session create: properties")) < 0)
				return rc;
		} else if (!strcmp(k, "version")) {
			if ((rc = sky__check_app_version(
				 v, "session create: version")) < 0)
				return rc;
		} else {
			return sky__error_input(
			    "session create: unknown field \"%s\" (allowed: "
			    "name, description, properties, version)",
			    k);
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
		return sky__error_input(
		    "session patch: empty (give any of name, "
		    "description, properties, status)");
	json_object_foreach((json_t *)b, k, v) {
		if (!strcmp(k, "name")) {
			if ((rc = check_string_field(
				 v, "session patch: name")) < 0)
				return rc;
		} else if (!strcmp(k, "description")) {
			if (!sky__json_is_text(v) && !json_is_null(v))
				return sky__error_input(
				    "session patch: description "
				    "must be a string or null");
		} else if (!strcmp(k, "properties")) {
			if ((rc = sky__validate_properties(
				 v, "session patch: properties")) < 0)
				return rc;
		} else if (!strcmp(k, "status")) {
			if (!sky__json_streq(v, "closed"))
				return sky__error_input(
				    "session patch: status can "
				    "only be set to \"closed\"");
		} else {
			return sky__error_input(
			    "session patch: unknown field \"%s\" (allowed: "
			    "name, "
			    "description, properties, status)",
			    k);
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
		return sky__error_input(
		    "participant: id is required (a string)");
	int rc = sky__json_check_id(id, "participant id");
	if (rc < 0)
		return rc;
	json_object_foreach((json_t *)b, k, v) {
		if (!strcmp(k, "id"))
			continue;
		if (!strcmp(k, "type")) {
			if (!sky__json_streq(v, "user") &&
			    !sky__json_streq(v, "group"))
				return sky__error_input(
				    "participant: type must be "
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
		case SKY_WRITE_CREATE: rc = check_create(*out); break;
		case SKY_WRITE_PATCH: rc = check_patch(*out); break;
		case SKY_WRITE_PARTICIPANT: rc = check_participant(*out); break;
		default: break;
		}
	}
	if (rc < 0) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
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
	/* A journal record replayed at open: acknowledged already, so the
	 * checks against the server's state do not refuse it (see
	 * enqueue_one). */
	int replaying;
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

/* Is the session's local view closed? 1, 0 or an error. */
static int session_closed(MDB_txn *txn, sky_cache *c, const char *app,
			  const char *sid, const sky_record *rec)
{
	return sky__index_has_value(txn, c, app, SKY_IXF_STATUS, "closed", 6,
				    sid, rec->created_us);
}

/*
 * Is `s` byte for byte what sky__json_dump writes for its own parse, so
 * that the caller's text can be stored as the entry's body without the
 * dump? Only for text check_body accepted (valid, no duplicate names).
 * Conservative: no white space outside strings, no escape at all (the
 * dump's escapes are its own), no fraction or exponent (reals are
 * rewritten in their shortest form) and no "-0" (read as the integer 0).
 * Integers and unescaped strings come back as they went in, and objects
 * keep their members in order.
 */
static int is_dump_text(const char *s, size_t n)
{
	int in_str = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (in_str) {
			if (ch == '"')
				in_str = 0;
			else if (ch == '\\' || ch < 0x20)
				return 0;
			continue;
		}
		switch (ch) {
		case '"': in_str = 1; break;
		case 'e':
		case 'E':
			if (i && s[i - 1] >= '0' && s[i - 1] <= '9')
				return 0;
			break;
		case '-':
			if (i + 1 < n && s[i + 1] == '0')
				return 0;
			break;
		case '.':
		case ' ':
		case '\t':
		case '\n':
		case '\r':
		case '\0': return 0;
		default: break;
		}
	}
	return !in_str;
}

/* The text to store as the body of write `w` (parsed as `body`): the
 * caller's own when it is already in dump form, else the dump. */
static char *body_text(const sky_write *w, const json_t *body)
{
	if (!w->json || !is_dump_text(w->json, w->len))
		return sky__json_dump(body, NULL);
	char *t = malloc(w->len + 1);
	if (!t) {
		sky__error_nomem();
		return NULL;
	}
	memcpy(t, w->json, w->len);
	t[w->len] = '\0';
	return t;
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
	/* The session's record as the checks below read it: its header
	 * (docid, flags) stays good through the outbox writes that follow,
	 * which touch no record, though its text may move. */
	sky_record found;
	int no_session = 0;
	if (w->op == SKY_WRITE_CREATE) {
		char *app_key = (char *)w->app_id;
		MDB_val key = {strlen(app_key), app_key}, val;
		rc = mdb_get(txn, SKY_DBI(c, SKY_DB_APPS), &key, &val);
		if (rc == MDB_NOTFOUND && !q->replaying)
			return sky__error_set(SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
					      "application %s is not in the "
					      "cache",
					      w->app_id);
		if (rc && rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "reading an application");
		e.sid = e.local = q->local_ids[i];
	} else {
		sky_record rec;
		e.sid = w->session_id;
		rc = sky__record_get(txn, c, e.app, e.sid, &rec);
		if (rc == SKY_ENOTFOUND) {
			const char *to =
			    sky__outbox_alias(txn, c, e.app, e.sid);
			if (to) {
				e.local = e.sid;
				e.sid = to;
				rc =
				    sky__record_get(txn, c, e.app, e.sid, &rec);
			}
		}
		/*
		 * A replayed write was checked when it was acknowledged, on
		 * a state that may have held server writes the crash rolled
		 * back (journal.h): a session that only they brought, or
		 * closed. It is queued all the same, for delivery; a session
		 * not here gets no local view until the sync brings it back,
		 * and then the view lays the write on (server.c).
		 */
		if (rc == SKY_ENOTFOUND && q->replaying) {
			no_session = 1;
			rc = 0;
		} else if (rc == SKY_ENOTFOUND) {
			return sky__error_set(
			    SKY_ENOTFOUND, SKY_ERRSRC_NONE, 0,
			    "session %s/%s is not in the cache", w->app_id,
			    w->session_id);
		}
		if (rc < 0)
			return rc;
		if (sky__ob_is_local(e.sid))
			e.local = e.sid;
		int closed =
		    no_session ? 0 : session_closed(txn, c, e.app, e.sid, &rec);
		if (closed < 0)
			return closed;
		if (closed && !q->replaying)
			return sky__error_set(
			    SKY_EINVAL, SKY_ERRSRC_INPUT, 0,
			    "session %s/%s is closed: the server "
			    "refuses writes to it",
			    w->app_id, w->session_id);
		if (!no_session)
			found = rec;
	}
	if ((rc = sky__meta_next(txn, &c->st, "outbox_next", &e.id)) < 0)
		return rc;
	e.id++; /* ids start at 1 */
	char *body = body_text(w, q->bodies[i]);
	if (!body)
		return -1;
	e.body = body;
	rc = sky__ob_store(txn, c, &e);
	free(body);
	if (rc < 0)
		return rc;
	w->id = e.id;
	if (no_session)
		return 0;
	/* The local view: rebuilt when it is the session's first queued
	 * write (to keep the server copy aside), else the write laid on top
	 * -- the same result, at the cost of this write alone. */
	sky_record rec;
	/* A data write needs only the header: no second lookup (it has a
	 * session: `found` is set). */
	if (e.op == SKY_WRITE_DATA && (found.flags & SKY_REC_PENDING))
		return sky__view_lay_on(txn, c, &found, &e, q->bodies[i]);
	if (e.op != SKY_WRITE_CREATE &&
	    sky__record_get(txn, c, e.app, e.sid, &rec) == 0 &&
	    (rec.flags & SKY_REC_PENDING))
		return sky__view_lay_on(txn, c, &rec, &e, q->bodies[i]);
	return sky__view_rebuild_with(txn, c, e.app, e.sid, &e, q->bodies[i]);
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
		const char *sid =
		    q->local_ids[i] ? q->local_ids[i] : w->session_id;
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
		const char *sid =
		    q->local_ids[i] ? q->local_ids[i] : w->session_id;
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
	enqueue_ctx q = {r->cache,
			 calloc(n, sizeof(sky_write)),
			 n,
			 calloc(n, sizeof(json_t *)),
			 calloc(n, sizeof(char *)),
			 1};
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
			json = strings[3 * i + 2] =
			    take_field(&p, end, &w->len);
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
	enqueue_ctx q = {cache,
			 writes,
			 count,
			 calloc(count + 1, sizeof(json_t *)),
			 calloc(count + 1, sizeof(char *)),
			 0};
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
		rc = rec ? sky__store_write_logged(&cache->st, enqueue_write,
						   &q, rec, reclen)
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

int sky_data_patch(sky_cache *cache, const char *app_id, const char *session_id,
		   const char *json, size_t len)
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
	/* The server made it in the application the create went to. */
	const char *sapp = sky__json_str(session, "applicationId");
	if (!sapp || strcmp(sapp, app) != 0)
		return sky__error_input(
		    "created session: applicationId is not \"%s\"", app);
	if (!json_object_get(session, "clientRef") &&
	    json_object_set_new(session, "clientRef", json_string(local)) < 0)
		return sky__error_nomem();
	/* Stored as any session read from the server: its write goes
	 * through server.h, which adopts the local session and lays the
	 * remaining writes over the server's. */
	return sky__mirror_session_write(txn, c, session, NULL, as_of_us);
}

int sky__outbox_delivered(MDB_txn *txn, sky_cache *c, const uint64_t *ids,
			  size_t n, int *drained)
{
	/* The server holds these writes now: its state changed. */
	return sky__server_delivered(txn, c, ids, n, drained);
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
		rc = sky__ob_note_dead(dead, o.e.id);
	if (rc == 0 && o.e.op == SKY_WRITE_CREATE) {
		/* Its session will not exist: its other writes cannot go. */
		sky_ob_list l;
		char why[128];
		snprintf(why, sizeof(why),
			 "the create of its session (outbox entry %llu) was "
			 "not delivered",
			 (unsigned long long)o.e.id);
		rc = sky__ob_session_entries(txn, c, o.e.app, o.e.sid, 1, &l);
		for (size_t i = 0; rc == 0 && i < l.n; i++) {
			sky_ob_entry x = l.v[i].e;
			x.state = SKY_OUTBOX_REJECTED;
			x.http_status = 0;
			x.answer = why;
			rc = sky__ob_store(txn, c, &x);
			if (rc == 0)
				rc = sky__ob_note_dead(dead, x.id);
		}
		sky__ob_list_free(&l);
	}
	if (rc == 0)
		rc = sky__view_rebuild(txn, c, o.e.app, o.e.sid);
	free(o.strs);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Retrying, dropping                                                  */
/* ------------------------------------------------------------------ */

typedef struct {
	sky_cache *cache;
	uint64_t id;
	int drop;
	sky_buf dead;	   /* ids (u64) of the dead letters the drop made */
	sky_ob_owned gone; /* the dropped entry, for its notification */
	int notify_gone;   /* it left the queue unapplied: notify */
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
			sky_ob_list l;
			rc = sky__ob_session_entries(txn, c, o.e.app, o.e.sid,
						     1, &l);
			for (size_t i = 0; rc == 0 && i < l.n; i++) {
				sky_ob_entry y = l.v[i].e;
				y.state = SKY_OUTBOX_REJECTED;
				y.answer = "the create of its session was "
					   "dropped";
				y.flags &= ~SKY_OB_ON_WIRE;
				rc = sky__ob_store(txn, c, &y);
				if (rc == 0)
					rc = sky__ob_note_dead(&x->dead, y.id);
			}
			sky__ob_list_free(&l);
		}
	} else {
		/* A create sent before may have been made: it is looked for
		 * on the server before it is sent again. */
		o.e.state =
		    o.e.op == SKY_WRITE_CREATE && (o.e.flags & SKY_OB_SENT)
			? SKY_OUTBOX_IN_DOUBT
			: SKY_OUTBOX_PENDING;
		o.e.attempts = 0;
		o.e.next_try_us = 0;
		o.e.http_status = 0;
		o.e.answer = "";
		rc = sky__ob_store(txn, c, &o.e);
	}
	if (rc == 0)
		rc = sky__view_rebuild(txn, c, o.e.app, o.e.sid);
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
			sky__ob_to_public(&x.gone.e, &p);
			p.answer = "dropped";
			cache->on_rejected(&p, cache->on_rejected_payload);
		}
		for (size_t k = 0; k + 8 <= x.dead.len; k += 8)
			sky__outbox_notify_rejected(
			    cache,
			    sky__get_be64((unsigned char *)x.dead.data + k));
	}
	free(x.gone.strs);
	sky__buf_free(&x.dead);
	return rc;
}
