/*
 * events.c - validating and applying server events (DESIGN.md §3).
 *
 * An event is first parsed and validated completely, outside any
 * transaction: a malformed event is rejected with the field named and the
 * cache is not touched. Valid events are then applied inside one write
 * transaction per batch, each event by apply_one(), which does all its
 * checks before its first write so that an event that cannot apply leaves
 * the transaction as it found it.
 *
 * Rules kept here:
 * - Idempotence: every accepted eventId goes into `evlog` (bounded: the
 *   oldest ids are trimmed through `evseq`); an id seen before is skipped.
 * - No rollback: each session record carries watermarks, the newest event
 *   time (or server read time) applied to its fields, its properties and its
 *   data. An event older than the watermark of what it would change is
 *   stale and skipped (the caller may refetch the session to be sure).
 * - Unknown sessions: events for a session not in the cache wait in
 *   `pending` (in arrival order) and are applied, with the same rules, as
 *   soon as the session arrives (session_created or sky_mirror_session_put).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "error.h"
#include "events.h"
#include "json.h"
#include "protocol.h"
#include "record.h"
#include "server.h"

/*
 * What each event type carries, by sky_event_type. The wire eventType
 * strings are in the protocol table (protocol.c; a protocol file may
 * rename them), indexed the same way: the exact strings of a live
 * deployment are not published.
 */
static const char *const event_payload[SKY_EV_COUNT] = {
    [SKY_EV_SESSION_CREATED] = "session",
    [SKY_EV_SESSION_UPDATED] = "session",
    [SKY_EV_PROPERTIES_UPDATED] = "session",
    [SKY_EV_DATA_UPDATED] = "data",
    [SKY_EV_EVENT_CREATED] = "data",
    [SKY_EV_SESSION_CLOSED] = "session",
};

const char *sky_mirror_outcome_name(sky_mirror_outcome outcome)
{
	static const char *names[] = {"applied", "duplicate", "stale",
				      "deferred", "rejected"};
	if ((unsigned)outcome < sizeof(names) / sizeof(names[0]))
		return names[outcome];
	return "unknown";
}

void sky__event_clear(sky_parsed_event *pe)
{
	json_decref(pe->event ? pe->event : pe->payload);
	free(pe->owned);
	memset(pe, 0, sizeof(*pe));
}

static int check_optional_string(const json_t *ev, const char *key)
{
	const json_t *v = json_object_get(ev, key);
	if (v && !sky__json_is_text(v) && !json_is_null(v))
		return sky__error_input("event.%s: must be a string", key);
	return 0;
}

/*
 * The envelope's optional scalars, typed when present: `version` an
 * integer (the event format's version, not the session's), `timestamp`
 * an RFC 3339 string or, as the reference's examples send it, a
 * non-negative integer of milliseconds since the epoch.
 */
static int check_envelope(const json_t *ev)
{
	const json_t *v = json_object_get(ev, "version");
	if (v && !json_is_integer(v) && !json_is_null(v))
		return sky__error_input("event.version: must be an integer");
	v = json_object_get(ev, "timestamp");
	if (v && json_is_integer(v)) {
		if (json_integer_value(v) < 0)
			return sky__error_input("event.timestamp: must not be "
						"negative");
	} else if (v) {
		int64_t us;
		if (!json_is_string(v) ||
		    sky__parse_time(json_string_value(v), &us) < 0)
			return sky__error_input("event.timestamp: must be an "
						"RFC 3339 time string or "
						"milliseconds since 1970");
	}
	return 0;
}

int sky__event_parse(sky_cache *c, const char *text, size_t len,
		     sky_parsed_event *out)
{
	const sky_protocol *proto =
	    c->proto ? c->proto : sky__protocol_builtin();
	if (sky__event_scan(&c->event_limits, proto, text, len, out))
		return 0;
	return sky__event_parse_tree(c, text, len, out);
}

int sky__event_parse_tree(sky_cache *c, const char *text, size_t len,
			  sky_parsed_event *out)
{
	json_t *ev = NULL;
	int rc = sky__json_parse(text, len, &c->event_limits, "event", &ev);
	if (rc < 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->event = ev;
	out->text = text;
	out->len = len;
	if (!json_is_object(ev)) {
		rc = sky__error_input("event: must be a JSON object");
		goto fail;
	}
	/* The ids first: every later message can then name the event. */
	static const char *ids[] = {"applicationId", "sessionId", "eventId"};
	for (size_t i = 0; i < 3; i++) {
		const json_t *v = json_object_get(ev, ids[i]);
		char field[32];
		snprintf(field, sizeof(field), "event.%s", ids[i]);
		if (!v) {
			rc = sky__error_input("%s: missing", field);
			goto fail;
		}
		if ((rc = sky__json_check_id(v, field)) < 0)
			goto fail;
	}
	out->app = sky__json_str(ev, "applicationId");
	out->sid = sky__json_str(ev, "sessionId");
	out->eid = sky__json_str(ev, "eventId");

	const json_t *type = json_object_get(ev, "eventType");
	if (!type) {
		rc = sky__error_input("event.eventType: missing");
		goto fail;
	}
	if (!json_is_string(type)) {
		rc = sky__error_input("event.eventType: must be a string");
		goto fail;
	}
	const sky_protocol *proto =
	    c->proto ? c->proto : sky__protocol_builtin();
	/* A type holding U+0000 names no entry (the table's are C strings). */
	int found =
	    sky__json_has_nul(type)
		? -1
		: sky__protocol_event_type(proto, json_string_value(type));
	size_t t = found < 0 ? 0 : (size_t)found;
	if (found < 0) {
		rc = sky__error_input("event.eventType: unknown type '%.60s'",
				      json_string_value(type));
		goto fail;
	}
	out->type = (sky_event_type)t;

	const char *created = sky__json_str(ev, "createdAt");
	if (!json_object_get(ev, "createdAt")) {
		rc = sky__error_input("event.createdAt: missing");
		goto fail;
	}
	if (!created || sky__json_has_nul(json_object_get(ev, "createdAt")) ||
	    sky__parse_time(created, &out->created_us) < 0) {
		rc = sky__error_input("event.createdAt: must be an RFC 3339 "
				      "time string");
		goto fail;
	}
	if ((rc = check_optional_string(ev, "source")) < 0 ||
	    (rc = check_optional_string(ev, "userId")) < 0 ||
	    (rc = check_envelope(ev)) < 0)
		goto fail;

	const char *pname = event_payload[t];
	out->payload = json_object_get(ev, pname);
	if (!out->payload) {
		rc = sky__error_input("event.%s: missing (required by %s)",
				      pname, proto->event[t]);
		goto fail;
	}
	switch (out->type) {
	case SKY_EV_DATA_UPDATED:
		if (!json_is_object(out->payload)) {
			rc = sky__error_input(
			    "event.data: a data patch must be a "
			    "JSON object");
			goto fail;
		}
		break;
	case SKY_EV_EVENT_CREATED: break; /* custom data: any JSON value */
	default:
		if (!json_is_object(out->payload)) {
			rc = sky__error_input(
			    "event.session: must be an object");
			goto fail;
		}
		/* The payload may repeat the ids; they must agree. */
		for (size_t i = 0; i < 2; i++) {
			const json_t *v = json_object_get(out->payload, ids[i]);
			if (!v)
				continue;
			if (!sky__json_streq(v, i == 0 ? out->app : out->sid)) {
				rc = sky__error_input(
				    "event.session.%s: does not match "
				    "event.%s",
				    ids[i], ids[i]);
				goto fail;
			}
		}
		/* Partial payloads get the ids so they validate as sessions. */
		if ((!json_object_get(out->payload, "applicationId") &&
		     json_object_set_new(out->payload, "applicationId",
					 json_string(out->app)) < 0) ||
		    (!json_object_get(out->payload, "sessionId") &&
		     json_object_set_new(out->payload, "sessionId",
					 json_string(out->sid)) < 0)) {
			rc = sky__error_nomem();
			goto fail;
		}
		if ((rc = sky__validate_session(
			 out->payload, "event.session",
			 out->type == SKY_EV_SESSION_CREATED)) < 0)
			goto fail;
		if (out->type == SKY_EV_PROPERTIES_UPDATED &&
		    !json_object_get(out->payload, "properties")) {
			rc = sky__error_input(
			    "event.session.properties: missing "
			    "(required by "
			    "session_properties_updated)");
			goto fail;
		}
		if (out->type == SKY_EV_SESSION_CLOSED) {
			const char *st = sky__json_str(out->payload, "status");
			if (st && strcmp(st, "closed") != 0) {
				rc = sky__error_input(
				    "event.session.status: must be "
				    "\"closed\" in session_closed");
				goto fail;
			}
		}
		break;
	}
	return 0;

fail:
	json_decref(ev);
	memset(out, 0, sizeof(*out));
	return rc;
}

/* ---- the event log (idempotence) ---- */

static int evlog_seen(MDB_txn *txn, sky_cache *c, const char *eid, int *seen)
{
	MDB_val key = {strlen(eid), (void *)eid}, val;
	int rc = mdb_get(txn, SKY_DBI(c, SKY_DB_EVLOG), &key, &val);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "reading the event log");
	*seen = rc == 0;
	return 0;
}

static int evlog_add(MDB_txn *txn, sky_cache *c, const char *eid)
{
	uint64_t seq;
	int rc = sky__meta_next(txn, &c->st, "evlog_seq", &seq);
	if (rc < 0)
		return rc;
	unsigned char sbuf[8];
	sky__put_be64(sbuf, seq);
	MDB_val key = {strlen(eid), (void *)eid}, val = {8, sbuf};
	if ((rc = mdb_put(txn, SKY_DBI(c, SKY_DB_EVLOG), &key, &val, 0)) ||
	    (rc = mdb_put(txn, SKY_DBI(c, SKY_DB_EVSEQ), &val, &key, 0)))
		return sky__error_lmdb(rc, "writing the event log");

	/* Keep the log bounded: forget the oldest ids. */
	MDB_stat stat;
	mdb_stat(txn, SKY_DBI(c, SKY_DB_EVSEQ), &stat);
	if (stat.ms_entries <= c->opts.event_log_size)
		return 0;
	size_t excess = stat.ms_entries - c->opts.event_log_size;
	MDB_cursor *cur;
	if ((rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_EVSEQ), &cur)))
		return sky__error_lmdb(rc, "trimming the event log");
	MDB_val k, v;
	rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
	while (rc == 0 && excess-- > 0) {
		MDB_val old = v;
		rc = mdb_del(txn, SKY_DBI(c, SKY_DB_EVLOG), &old, NULL);
		if (rc && rc != MDB_NOTFOUND)
			break;
		if ((rc = mdb_cursor_del(cur, 0)))
			break;
		if (excess == 0)
			break; /* the usual one: no need to step on */
		rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "trimming the event log");
	return 0;
}

/* ---- events waiting for their session ---- */

static int pending_add(MDB_txn *txn, sky_cache *c, const sky_parsed_event *pe)
{
	MDB_stat stat;
	mdb_stat(txn, SKY_DBI(c, SKY_DB_PENDING), &stat);
	if (stat.ms_entries >= c->opts.pending_limit)
		return sky__error_set(
		    SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
		    "event %s: %zu events already wait for unknown "
		    "sessions (limit %u): sync the sessions first",
		    pe->eid, (size_t)stat.ms_entries, c->opts.pending_limit);
	uint64_t seq;
	int rc = sky__meta_next(txn, &c->st, "pending_seq", &seq);
	if (rc < 0)
		return rc;
	unsigned char kbuf[SKY_KEY_MAX + 9];
	size_t n = sky__key2(kbuf, SKY_KEY_MAX - 9, pe->app, pe->sid);
	kbuf[n++] = '\0';
	sky__put_be64(kbuf + n, seq);
	n += 8;
	MDB_val key = {n, kbuf}, val = {pe->len, (void *)pe->text};
	if ((rc = mdb_put(txn, SKY_DBI(c, SKY_DB_PENDING), &key, &val, 0)))
		return sky__error_lmdb(rc, "keeping an event for later");
	return 0;
}

int sky__pending_replay(MDB_txn *txn, sky_cache *c, const char *app,
			const char *sid)
{
	unsigned char prefix[SKY_KEY_MAX];
	size_t plen = sky__key2(prefix, SKY_KEY_MAX - 1, app, sid);
	prefix[plen++] = '\0';
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_PENDING), &cur);
	if (rc)
		return sky__error_lmdb(rc, "reading waiting events");
	for (;;) {
		/* Seek afresh each time: applying writes to other databases
		 * only, but re-seeking keeps the loop obviously correct. */
		MDB_val key = {plen, prefix}, val;
		rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
		if (rc == MDB_NOTFOUND || key.mv_size != plen + 8 ||
		    memcmp(key.mv_data, prefix, plen) != 0) {
			rc = 0;
			break;
		}
		if (rc) {
			rc = sky__error_lmdb(rc, "reading waiting events");
			break;
		}
		/* Copy: the value lives in a page the apply may free. */
		char *text = malloc(val.mv_size);
		if (!text) {
			rc = sky__error_nomem();
			break;
		}
		memcpy(text, val.mv_data, val.mv_size);
		size_t tlen = val.mv_size;
		if ((rc = mdb_cursor_del(cur, 0))) {
			free(text);
			rc = sky__error_lmdb(rc, "removing a waiting event");
			break;
		}
		sky_parsed_event pe;
		sky_mirror_outcome outcome;
		rc = sky__event_parse(c, text, tlen, &pe);
		if (rc == 0) {
			rc = sky__event_apply_txn(txn, c, &pe, 1, &outcome);
			sky__event_clear(&pe);
		} else if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
			rc = 0; /* limits changed since it was kept: drop it */
		}
		free(text);
		if (rc < 0)
			break;
	}
	mdb_cursor_close(cur);
	return rc;
}

/* ---- applying ---- */

static int is_stale(int64_t event_us, int64_t watermark)
{
	return event_us < watermark;
}

/* Set the fields of `patch` (a partial session) on `session`. */
static int set_fields(json_t *session, const json_t *patch)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)patch, k, v) {
		if (!strcmp(k, "applicationId") || !strcmp(k, "sessionId"))
			continue;
		if (json_object_set_new(session, k, json_deep_copy(v)) < 0)
			return sky__error_nomem();
	}
	return 0;
}

/*
 * The server moves a session's modifiedAt/modifiedBy with every change to
 * its fields or properties, but an event that does not carry them in its
 * payload (session_properties_updated, session_closed, a session_updated
 * without them) would leave the mirror's at their old values. The change
 * happened at the event's createdAt by its userId, so those are taken,
 * verbatim (the server's own text), and never move modifiedAt backwards:
 * an event that arrives after a newer change leaves the newer stamp.
 */
static int stamp_modified(json_t *session, const sky_parsed_event *pe)
{
	if (json_object_get(pe->payload, "modifiedAt") ||
	    json_object_get(pe->payload, "modifiedBy"))
		return 0;
	json_t *at = json_object_get(pe->event, "createdAt");
	json_t *by = json_object_get(pe->event, "userId");
	int64_t t, cur;
	if (!json_is_string(at) ||
	    sky__parse_time(json_string_value(at), &t) < 0)
		return 0;
	const char *was =
	    json_string_value(json_object_get(session, "modifiedAt"));
	if (was && sky__parse_time(was, &cur) == 0 && cur >= t)
		return 0;
	if (json_object_set_new(session, "modifiedAt", json_deep_copy(at)) < 0)
		return sky__error_nomem();
	if (json_is_string(by) &&
	    json_object_set_new(session, "modifiedBy", json_deep_copy(by)) < 0)
		return sky__error_nomem();
	return 0;
}

static int record_custom_event(MDB_txn *txn, sky_cache *c, uint64_t docid,
			       const sky_parsed_event *pe)
{
	uint64_t seq;
	int rc = sky__meta_next(txn, &c->st, "sevent_seq", &seq);
	if (rc < 0)
		return rc;
	unsigned char kbuf[16];
	sky__put_be64(kbuf, docid);
	sky__put_be64(kbuf + 8, seq);
	MDB_val key = {16, kbuf}, val = {pe->len, (void *)pe->text};
	if ((rc = mdb_put(txn, SKY_DBI(c, SKY_DB_SEVENTS), &key, &val, 0)))
		return sky__error_lmdb(rc, "recording a session event");
	return 0;
}

static int apply_to_server_state(MDB_txn *txn, sky_cache *c,
				 sky_parsed_event *pe, int from_pending,
				 sky_mirror_outcome *outcome);

typedef struct {
	sky_cache *cache;
	sky_parsed_event *pe;
	int from_pending;
	sky_mirror_outcome *outcome;
} apply_ctx;

static int apply_change(MDB_txn *txn, void *arg)
{
	apply_ctx *a = arg;
	return apply_to_server_state(txn, a->cache, a->pe, a->from_pending,
				     a->outcome);
}

/*
 * An event changes the server's state: it goes through server.h, which
 * keeps the local view of a session with queued writes over it -- also
 * when the event was refused.
 */
int sky__event_apply_txn(MDB_txn *txn, sky_cache *c, sky_parsed_event *pe,
			 int from_pending, sky_mirror_outcome *outcome)
{
	apply_ctx a = {c, pe, from_pending, outcome};
	return sky__server_write(
	    txn, c, pe->app, pe->sid,
	    pe->type == SKY_EV_SESSION_CREATED ? pe->payload : NULL,
	    apply_change, &a);
}

static int apply_to_server_state(MDB_txn *txn, sky_cache *c,
				 sky_parsed_event *pe, int from_pending,
				 sky_mirror_outcome *outcome)
{
	int rc, seen = 0;
	if (!from_pending) {
		if ((rc = evlog_seen(txn, c, pe->eid, &seen)) < 0)
			return rc;
		if (seen) {
			*outcome = SKY_MIRROR_DUPLICATE;
			return 0;
		}
	}

	sky_record rec;
	rc = sky__record_get(txn, c, pe->app, pe->sid, &rec);
	if (rc < 0 && rc != SKY_ENOTFOUND)
		return rc;
	int known = rc == 0;

	if (!known && pe->type != SKY_EV_SESSION_CREATED) {
		if ((rc = pending_add(txn, c, pe)) < 0)
			return rc;
		*outcome = SKY_MIRROR_DEFERRED;
		return from_pending ? 0 : evlog_add(txn, c, pe->eid);
	}

	json_t *old = NULL, *now = NULL;
	sky_record hdr;
	int64_t t = pe->created_us;
	*outcome = SKY_MIRROR_APPLIED;
	if (known) {
		hdr = rec;
	} else {
		memset(&hdr, 0, sizeof(hdr));
		hdr.wm_session = hdr.wm_props = hdr.wm_data = INT64_MIN;
	}

	switch (pe->type) {
	case SKY_EV_SESSION_CREATED:
		if (known && (is_stale(t, rec.wm_session) ||
			      is_stale(t, rec.wm_props))) {
			*outcome = SKY_MIRROR_STALE;
			break;
		}
		if (known && !(old = sky__record_json(&rec)))
			return -1;
		if (!known &&
		    (rc = sky__record_new_docid(txn, c, &hdr.docid)) < 0)
			return rc;
		now = json_deep_copy(pe->payload);
		hdr.wm_session = hdr.wm_props = t;
		break;
	case SKY_EV_SESSION_UPDATED:
	case SKY_EV_PROPERTIES_UPDATED:
	case SKY_EV_SESSION_CLOSED: {
		int props = json_object_get(pe->payload, "properties") != NULL;
		int fields =
		    json_object_size(pe->payload) > 2 + (size_t)props ||
		    pe->type == SKY_EV_SESSION_CLOSED;
		if ((props && is_stale(t, rec.wm_props)) ||
		    (fields && is_stale(t, rec.wm_session))) {
			*outcome = SKY_MIRROR_STALE;
			break;
		}
		if (!(old = sky__record_json(&rec)))
			return -1;
		now = json_deep_copy(old);
		if (!now) {
			json_decref(old);
			return sky__error_nomem();
		}
		if ((rc = set_fields(now, pe->payload)) < 0)
			goto done;
		if (pe->type == SKY_EV_SESSION_CLOSED &&
		    json_object_set_new(now, "status", json_string("closed")) <
			0) {
			rc = sky__error_nomem();
			goto done;
		}
		if ((rc = stamp_modified(now, pe)) < 0)
			goto done;
		if (props)
			hdr.wm_props = t;
		if (fields)
			hdr.wm_session = t;
		break;
	}
	case SKY_EV_DATA_UPDATED:
		if (is_stale(t, rec.wm_data)) {
			*outcome = SKY_MIRROR_STALE;
			break;
		}
		if ((rc = sky__doc_patch(txn, SKY_DBI(c, SKY_DB_DATA),
					 rec.docid, pe->payload)) < 0)
			return rc;
		hdr.wm_data = t;
		break;
	case SKY_EV_EVENT_CREATED:
		if ((rc = record_custom_event(txn, c, rec.docid, pe)) < 0)
			return rc;
		break;
	}

	rc = 0;
	if (now) {
		hdr.created_us = sky__session_created_us(now);
		rc = sky__record_put(txn, c, &hdr, now, old,
				     known ? rec.created_us : 0);
	} else if (*outcome == SKY_MIRROR_APPLIED &&
		   pe->type == SKY_EV_DATA_UPDATED) {
		/* Only the data watermark moved: rewrite the header alone. */
		rc = sky__record_put_header(txn, c, &hdr, pe->app, pe->sid);
	}
	if (rc == 0 && !from_pending)
		rc = evlog_add(txn, c, pe->eid);
	if (rc == 0 && !known && *outcome == SKY_MIRROR_APPLIED)
		rc = sky__pending_replay(txn, c, pe->app, pe->sid);
done:
	json_decref(old);
	json_decref(now);
	return rc;
}

/* ---- public entry points ---- */

typedef struct {
	sky_cache *cache;
	sky_parsed_event *events;
	sky_mirror_outcome *outcomes;
	int *codes;
	char **errors;
	size_t count;
} batch_ctx;

static int bump_stats(MDB_txn *txn, sky_cache *c, uint64_t applied,
		      uint64_t skipped, int64_t newest)
{
	int rc = 0;
	if (applied)
		rc = sky__meta_put_u64(
		    txn, &c->st, "events_applied",
		    sky__meta_get_u64(txn, &c->st, "events_applied") + applied);
	if (rc == 0 && skipped)
		rc = sky__meta_put_u64(
		    txn, &c->st, "events_skipped",
		    sky__meta_get_u64(txn, &c->st, "events_skipped") + skipped);
	if (rc == 0 && newest != INT64_MIN &&
	    (int64_t)sky__meta_get_u64(txn, &c->st, "last_event_at") < newest)
		rc = sky__meta_put_u64(txn, &c->st, "last_event_at",
				       (uint64_t)newest);
	if (rc == 0 && (applied || skipped))
		rc = sky__meta_put_u64(txn, &c->st, "last_apply",
				       (uint64_t)sky__now_us());
	return rc;
}

static int batch_write(MDB_txn *txn, void *arg)
{
	batch_ctx *b = arg;
	uint64_t applied = 0, skipped = 0;
	int64_t newest = INT64_MIN;
	for (size_t i = 0; i < b->count; i++) {
		sky_parsed_event *pe = &b->events[i];
		if (!pe->payload)
			continue; /* rejected while parsing */
		/* A rerun after map growth starts from the parse result. */
		b->outcomes[i] = SKY_MIRROR_REJECTED;
		int rc =
		    sky__event_apply_txn(txn, b->cache, pe, 0, &b->outcomes[i]);
		if (rc == SKY_ELIMIT || rc == SKY_EINVAL) {
			/* apply_one checks before it writes: skip this one. */
			b->outcomes[i] = SKY_MIRROR_REJECTED;
			b->codes[i] = rc;
			free(b->errors[i]);
			b->errors[i] = sky__error_dup();
			continue;
		}
		if (rc < 0)
			return rc;
		b->codes[i] = 0;
		if (b->outcomes[i] == SKY_MIRROR_APPLIED ||
		    b->outcomes[i] == SKY_MIRROR_DEFERRED) {
			applied++;
			if (pe->created_us > newest)
				newest = pe->created_us;
		} else {
			skipped++;
		}
	}
	return bump_stats(txn, b->cache, applied, skipped, newest);
}

/* Apply parsed and rejected-at-parse events; fills outcomes/codes/errors. */
static int apply_items(sky_cache *c, sky_mirror_event_item *items, size_t count,
		       int *codes)
{
	batch_ctx b = {c, NULL, NULL, codes, NULL, count};
	b.events = calloc(count ? count : 1, sizeof(*b.events));
	b.outcomes = calloc(count ? count : 1, sizeof(*b.outcomes));
	b.errors = calloc(count ? count : 1, sizeof(*b.errors));
	int rc = -1;
	if (!b.events || !b.outcomes || !b.errors) {
		sky__error_nomem();
		goto cleanup;
	}
	size_t valid = 0;
	for (size_t i = 0; i < count; i++) {
		codes[i] = sky__event_parse(c, items[i].json, items[i].len,
					    &b.events[i]);
		b.outcomes[i] = SKY_MIRROR_REJECTED;
		if (codes[i] < 0) {
			b.errors[i] = sky__error_dup();
			if (codes[i] != SKY_EINVAL && codes[i] != SKY_ELIMIT)
				goto cleanup; /* out of memory */
		} else {
			valid++;
		}
	}
	rc = valid ? sky__store_write_mirror(&c->st, batch_write, &b) : 0;
	if (rc < 0)
		goto cleanup;
	for (size_t i = 0; i < count; i++) {
		items[i].outcome = b.outcomes[i];
		items[i].error = b.errors[i];
		b.errors[i] = NULL;
		if (items[i].outcome == SKY_MIRROR_REJECTED)
			atomic_fetch_add(&c->rejected, 1);
	}
cleanup:
	for (size_t i = 0; i < count; i++) {
		sky__event_clear(&b.events[i]);
		if (b.errors)
			free(b.errors[i]);
	}
	free(b.events);
	free(b.outcomes);
	free(b.errors);
	return rc;
}

int sky_mirror_event_apply_batch(sky_cache *cache, sky_mirror_event_item *items,
				 size_t count)
{
	int *codes = calloc(count ? count : 1, sizeof(int));
	if (!codes)
		return sky__error_nomem();
	for (size_t i = 0; i < count; i++)
		items[i].error = NULL;
	int rc = apply_items(cache, items, count, codes);
	free(codes);
	return rc;
}

int sky_mirror_event_apply(sky_cache *cache, const char *json, size_t len,
			   sky_mirror_outcome *outcome)
{
	sky_mirror_event_item item = {json, len, SKY_MIRROR_REJECTED, NULL};
	int code = 0;
	int rc = apply_items(cache, &item, 1, &code);
	if (outcome)
		*outcome = item.outcome;
	if (rc < 0)
		return rc;
	if (item.outcome == SKY_MIRROR_REJECTED) {
		/* Restore the message of this event as the thread's error. */
		sky__error_set(code, SKY_ERRSRC_INPUT, 0, "%s",
			       item.error ? item.error : "event rejected");
		free(item.error);
		return code ? code : SKY_EINVAL;
	}
	free(item.error);
	return 0;
}
