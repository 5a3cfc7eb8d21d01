/*
 * deliver.c - sending the outbox (outbox.c) to the server through the
 * sync engine, whenever the engine is online.
 *
 * What it keeps true:
 * - Per-session order: only the head of a session's queue is ever in
 *   flight, and the next write of a session goes only after the answer
 *   to the previous one was committed. Different sessions go in parallel
 *   (up to the engine's max_parallel requests).
 * - Consecutive data patches of a session are sent as one when
 *   sky__patch_compose proves the composition equal to applying them in
 *   turn; consecutive session patches when none of them but the last
 *   closes the session. A coalesced write the server refuses is sent
 *   again one write at a time, so the dead letter is the write at fault.
 * - Creates are not idempotent on the server: a create is marked in
 *   flight on disk before it is sent, carries the local id as
 *   "clientRef", and one whose answer was lost (or that was in flight
 *   at a crash) is looked for in the server's session list before it is
 *   ever sent again. A custom event whose answer was lost, or answered
 *   5xx, becomes "in doubt" and is not sent again unless the user says so.
 * - What is on the wire is marked on disk before it is sent (creates and
 *   events in flight, other writes SKY_OB_ON_WIRE), so sky_outbox_drop
 *   refuses to drop a write that may still land; a write dropped between
 *   the plan and that mark is not sent.
 * - Transient failures retry with the engine's capped, jittered backoff
 *   (Retry-After wins); a one-shot sync gives an entry retry_limit tries.
 * - The answers of one turn of the loop are committed in one write
 *   transaction, so a drain of many writes costs few disk flushes.
 */
#include "config.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "deliver.h"
#include "engine_core.h"
#include "error.h"
#include "json.h"
#include "outbox.h"
#include "record.h"
#include "util.h"

#define MAX_GROUP 64
#define MAX_GROUP_BYTES (256 * 1024)
#define POLL_MS 100 /* other processes may queue writes meanwhile */

typedef enum {
	ANSWER_OK,
	ANSWER_RETRY,
	ANSWER_REJECT,
} answer_kind;

typedef struct flight {
	struct deliver *d;
	struct flight *next;
	char *app, *sid, *local;
	sky_write_op op;
	uint64_t ids[MAX_GROUP];
	size_t n;
	int looking; /* a create in doubt: listing sessions to find it */
	char *body;
	size_t body_len;
	sky_engine_req *req;
	/* the answer */
	answer_kind kind;
	long status;
	char *answer;
	long retry_after_s;
	int64_t as_of_us;
	/* set by the commit */
	int drained, rejected;
	char *server_sid; /* a create's: the id the server gave it */
	sky_buf dead;	  /* ids (u64) of the dead letters the commit made */
} flight;

typedef struct {
	uint64_t id;
	unsigned fails; /* transient failures in this run */
} failcount;

typedef struct deliver {
	sky_engine *e;
	sky_cache *c;
	int online;
	struct event *ev_pump, *ev_commit;
	flight *flying;	  /* requests outstanding */
	flight *answered; /* answered, waiting for the commit */
	unsigned n_flying;
	int has_work; /* the last pump saw something to send (now or later) */
	char **solo;  /* "app\0sid" keys of sessions sent one write at a time */
	size_t n_solo;
	failcount *fails;
	size_t n_fails;
} deliver;

static void schedule_pump(deliver *d, long ms);

static void flight_free(flight *f)
{
	if (!f)
		return;
	free(f->app);
	free(f->sid);
	free(f->local);
	free(f->body);
	free(f->answer);
	free(f->server_sid);
	sky__buf_free(&f->dead);
	free(f);
}

static int same_session(const flight *f, const char *app, const char *sid)
{
	return !strcmp(f->app, app) && !strcmp(f->sid, sid);
}

static int session_busy(deliver *d, const char *app, const char *sid)
{
	for (flight *f = d->flying; f; f = f->next)
		if (same_session(f, app, sid))
			return 1;
	for (flight *f = d->answered; f; f = f->next)
		if (same_session(f, app, sid))
			return 1;
	return 0;
}

static long solo_find(deliver *d, const char *app, const char *sid)
{
	for (size_t i = 0; i < d->n_solo; i++) {
		const char *k = d->solo[i];
		if (!strcmp(k, app) && !strcmp(k + strlen(k) + 1, sid))
			return (long)i;
	}
	return -1;
}

static void solo_set(deliver *d, const char *app, const char *sid, int on)
{
	long i = solo_find(d, app, sid);
	if (on && i < 0) {
		size_t a = strlen(app), s = strlen(sid);
		char **v = realloc(d->solo, (d->n_solo + 1) * sizeof(*v));
		char *k = malloc(a + s + 2);
		if (!v || !k) {
			free(k);
			if (v)
				d->solo = v;
			return; /* out of memory: it stays coalesced */
		}
		memcpy(k, app, a + 1);
		memcpy(k + a + 1, sid, s + 1);
		d->solo = v;
		d->solo[d->n_solo++] = k;
	} else if (!on && i >= 0) {
		free(d->solo[i]);
		d->solo[i] = d->solo[--d->n_solo];
	}
}

static failcount *fail_find(deliver *d, uint64_t id, int add)
{
	for (size_t i = 0; i < d->n_fails; i++)
		if (d->fails[i].id == id)
			return &d->fails[i];
	if (!add)
		return NULL;
	failcount *v = realloc(d->fails, (d->n_fails + 1) * sizeof(*v));
	if (!v)
		return NULL;
	d->fails = v;
	d->fails[d->n_fails] = (failcount){id, 0};
	return &d->fails[d->n_fails++];
}

/* A one-shot sync stops trying an entry after retry_limit failures. */
static int parked(deliver *d, uint64_t id)
{
	if (sky__engine_follows(d->e))
		return 0;
	failcount *f = fail_find(d, id, 0);
	return f && f->fails >= sky__engine_options(d->e)->retry_limit;
}

/* ------------------------------------------------------------------ */
/* Choosing what to send                                               */
/* ------------------------------------------------------------------ */

/* Can `next` (a queued patch of the same op) join the group `acc`? */
static json_t *join(sky_write_op op, json_t *acc, json_t *next)
{
	if (op == SKY_WRITE_DATA)
		return sky__patch_compose(acc, next);
	if (op != SKY_WRITE_PATCH || json_object_get(acc, "status"))
		return NULL; /* after a close, the server refuses the rest */
	json_t *out = json_deep_copy(acc);
	if (out && json_object_update(out, next) < 0) {
		json_decref(out);
		out = NULL;
	}
	return out;
}

/* The body a create is sent with: the user's, tagged with the local id. */
static char *create_body(const char *body, const char *local, size_t *len)
{
	json_t *b = sky__json_loads(body, 0, NULL);
	if (!b)
		return NULL;
	if (json_object_set_new(b, "clientRef", json_string(local)) < 0) {
		json_decref(b);
		return NULL;
	}
	char *text = sky__json_dump(b, len);
	json_decref(b);
	return text;
}

static flight *flight_new(deliver *d, const sky_ob_entry *e)
{
	flight *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->d = d;
	f->op = e->op;
	f->ids[f->n++] = e->id;
	if (!(f->app = strdup(e->app)) || !(f->sid = strdup(e->sid)) ||
	    (e->local && !(f->local = strdup(e->local)))) {
		flight_free(f);
		return NULL;
	}
	return f;
}

/*
 * Plan the flight of the session whose first by-session key `cur` is on:
 * walk its entries from the head. Returns the flight (or NULL when the
 * session has nothing to send now), and sets *wake for a head that waits.
 * need_mark (n_need of them) collects entries whose state must be
 * written before sending.
 */
static flight *plan_session(deliver *d, MDB_txn *txn, MDB_cursor *cur,
			    size_t plen, const unsigned char *pre, int64_t now,
			    int64_t *wake, int *work, sky_ob_entry *need_mark,
			    int *n_need)
{
	MDB_val key, val;
	int mrc = mdb_cursor_get(cur, &key, &val, MDB_GET_CURRENT);
	flight *f = NULL;
	json_t *acc = NULL;
	int solo = 0;
	*n_need = 0;
	while (mrc == 0 && key.mv_size == plen + 8 &&
	       memcmp(key.mv_data, pre, plen) == 0) {
		uint64_t id =
		    sky__get_be64((unsigned char *)key.mv_data + plen);
		sky_ob_entry e;
		if (sky__ob_get(txn, d->c, id, &e) < 0)
			break;
		if (!f) {
			if (e.state == SKY_OUTBOX_REJECTED ||
			    (e.op == SKY_WRITE_EVENT &&
			     e.state == SKY_OUTBOX_IN_DOUBT))
				goto next; /* dead letters do not block */
			if (e.op == SKY_WRITE_EVENT &&
			    e.state == SKY_OUTBOX_IN_FLIGHT) {
				/* Sent before a crash or a stop: in doubt. */
				need_mark[(*n_need)++] = e;
				goto next;
			}
			if (parked(d, e.id))
				break;
			*work = 1;
			if (e.next_try_us > now) {
				if (e.next_try_us < *wake)
					*wake = e.next_try_us;
				break;
			}
			if (e.op != SKY_WRITE_CREATE && e.local &&
			    !strcmp(e.sid, e.local))
				break; /* waits for its session's create */
			if (!(f = flight_new(d, &e)))
				break;
			solo = solo_find(d, e.app, e.sid) >= 0;
			if (e.op == SKY_WRITE_CREATE) {
				if (e.state != SKY_OUTBOX_PENDING) {
					f->looking = 1;
				} else {
					f->body = create_body(e.body, e.local,
							      &f->body_len);
					need_mark[(*n_need)++] = e;
				}
				break;
			}
			if (e.op == SKY_WRITE_EVENT ||
			    e.op == SKY_WRITE_PARTICIPANT || solo) {
				if (e.op == SKY_WRITE_EVENT)
					need_mark[(*n_need)++] = e;
				f->body = strdup(e.body);
				f->body_len = strlen(e.body);
				break;
			}
			acc = sky__json_loads(e.body, 0, NULL);
			if (!acc)
				break;
		} else {
			/* Coalesce what follows, while proven equal. */
			if (e.state == SKY_OUTBOX_REJECTED || e.op != f->op ||
			    f->n == MAX_GROUP)
				break;
			json_t *next = sky__json_loads(e.body, 0, NULL);
			json_t *joined = next ? join(f->op, acc, next) : NULL;
			json_decref(next);
			if (!joined)
				break;
			json_decref(acc);
			acc = joined;
			f->ids[f->n++] = e.id;
			if (strlen(e.body) > MAX_GROUP_BYTES)
				break;
		}
	next:
		mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	if (f && acc) {
		f->body = sky__json_dump(acc, &f->body_len);
	}
	json_decref(acc);
	if (f && !f->body && !f->looking) {
		flight_free(f);
		f = NULL;
	}
	return f;
}

typedef struct {
	deliver *d;
	sky_ob_entry *marks;
	int n;
	const uint64_t
	    *wire; /* idempotent writes about to go: SKY_OB_ON_WIRE */
	size_t n_wire;
	sky_buf missing; /* ids (u64) gone since the plan: their flights stay */
} mark_ctx;

static int note_missing(mark_ctx *m, uint64_t id)
{
	unsigned char b[8];
	sky__put_be64(b, id);
	return sky__buf_append(&m->missing, b, 8);
}

static int is_missing(const mark_ctx *m, const flight *f)
{
	for (size_t k = 0; k + 8 <= m->missing.len; k += 8) {
		uint64_t id =
		    sky__get_be64((const unsigned char *)m->missing.data + k);
		for (size_t i = 0; i < f->n; i++)
			if (f->ids[i] == id)
				return 1;
	}
	return 0;
}

static int mark_write(MDB_txn *txn, void *arg)
{
	mark_ctx *m = arg;
	sky__buf_clear(&m->missing); /* the transaction may run again */
	for (size_t i = 0; i < m->n_wire; i++) {
		/* Dropped since the plan (sky_outbox_drop): not sent. Still
		 * there: marked, so that a drop now is refused. */
		sky_ob_entry e;
		int rc = sky__ob_get(txn, m->d->c, m->wire[i], &e);
		if (rc == SKY_ENOTFOUND) {
			if (note_missing(m, m->wire[i]) < 0)
				return -1;
			continue;
		}
		if (rc < 0)
			return rc;
		sky_ob_owned o;
		if ((rc = sky__ob_own(&e, &o)) < 0)
			return rc;
		o.e.flags |= SKY_OB_ON_WIRE;
		rc = sky__ob_store(txn, m->d->c, &o.e);
		free(o.strs);
		if (rc < 0)
			return rc;
	}
	for (int i = 0; i < m->n; i++) {
		sky_ob_entry e;
		int rc = sky__ob_get(txn, m->d->c, m->marks[i].id, &e);
		if (rc == SKY_ENOTFOUND) {
			if (note_missing(m, m->marks[i].id) < 0)
				return -1;
			continue;
		}
		if (rc < 0)
			return rc;
		sky_ob_owned o;
		if ((rc = sky__ob_own(&e, &o)) < 0)
			return rc;
		/* A create or event about to go is "in flight" on disk; one
		 * found in flight with no request of ours is in doubt. */
		o.e.state = e.state == SKY_OUTBOX_IN_FLIGHT
				? SKY_OUTBOX_IN_DOUBT
				: SKY_OUTBOX_IN_FLIGHT;
		/* Once sent, a create is looked for before it is sent again,
		 * even after a retry by hand (sky_outbox_retry). */
		o.e.flags |= SKY_OB_SENT;
		rc = sky__ob_store(txn, m->d->c, &o.e);
		free(o.strs);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void send_flight(deliver *d, flight *f);

static void pump(deliver *d)
{
	if (!d->online)
		return;
	const sky_engine_options *o = sky__engine_options(d->e);
	unsigned max = o->max_parallel ? o->max_parallel : 16;
	MDB_txn *txn;
	if (sky__store_read_begin(&d->c->st, &txn) < 0) {
		sky__engine_log(d->e, SKY_LOG_ERROR, "outbox: %s",
				sky_error_last()->message);
		schedule_pump(d, 1000);
		return;
	}
	MDB_cursor *cur;
	if (mdb_cursor_open(txn, SKY_DBI(d->c, SKY_DB_OBSESS), &cur)) {
		sky__store_read_end(&d->c->st, txn);
		schedule_pump(d, 1000);
		return;
	}
	int64_t now = sky__now_us(), wake = INT64_MAX;
	int work = 0;
	flight *plans = NULL;
	unsigned planned = 0;
	sky_ob_entry *marks = NULL;
	int n_marks = 0;
	uint64_t *wire = NULL;
	size_t n_wire = 0;
	int wire_failed = 0;
	MDB_val key, val;
	int mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST);
	while (mrc == 0 && d->n_flying + planned < max) {
		/* The key is app \0 sid \0 id(8). */
		if (key.mv_size < 12)
			break;
		unsigned char pre[SKY_KEY_MAX + 1];
		size_t plen = key.mv_size - 8;
		memcpy(pre, key.mv_data, plen);
		const char *app = (const char *)pre;
		const char *sid = app + strlen(app) + 1;
		if (session_busy(d, app, sid)) {
			work = 1;
		} else {
			sky_ob_entry need[MAX_GROUP];
			int n_need = 0;
			flight *f = plan_session(d, txn, cur, plen, pre, now,
						 &wake, &work, need, &n_need);
			if (n_need) {
				sky_ob_entry *m = realloc(
				    marks, (n_marks + n_need) * sizeof(*m));
				if (m) {
					marks = m;
					memcpy(marks + n_marks, need,
					       n_need * sizeof(*m));
					n_marks += n_need;
				}
			}
			if (f && !f->looking && f->op != SKY_WRITE_CREATE &&
			    f->op != SKY_WRITE_EVENT) {
				uint64_t *w =
				    realloc(wire, (n_wire + f->n) * sizeof(*w));
				if (w) {
					wire = w;
					memcpy(wire + n_wire, f->ids,
					       f->n * sizeof(*w));
					n_wire += f->n;
				} else {
					wire_failed = 1;
				}
			}
			if (f) {
				f->next = plans;
				plans = f;
				planned++;
			}
		}
		/* On to the next session: the first key after "app\0sid\0". */
		pre[plen - 1] = 1;
		key.mv_size = plen;
		key.mv_data = pre;
		mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	}
	if (mrc == 0)
		work = 1; /* sessions left unvisited: the slots were full */
	mdb_cursor_close(cur);
	/* The marks' ids are all the write needs; the strings die here. */
	sky__store_read_end(&d->c->st, txn);
	mark_ctx m = {d, marks, n_marks, wire, n_wire, {0}};
	if (wire_failed || ((n_marks || n_wire) &&
			    sky__store_write(&d->c->st, mark_write, &m) < 0)) {
		sky__engine_log(d->e, SKY_LOG_ERROR, "outbox: %s",
				wire_failed ? "out of memory"
					    : sky_error_last()->message);
		while (plans) {
			flight *f = plans;
			plans = f->next;
			flight_free(f);
		}
		free(marks);
		free(wire);
		sky__buf_free(&m.missing);
		schedule_pump(d, 1000);
		return;
	}
	free(marks);
	free(wire);
	while (plans) {
		flight *f = plans;
		plans = f->next;
		if (is_missing(&m, f)) {
			/* Dropped between the plan and the mark. */
			flight_free(f);
			work = 1;
			schedule_pump(d, 0);
			continue;
		}
		send_flight(d, f);
	}
	sky__buf_free(&m.missing);
	d->has_work = work || d->n_flying > 0;
	/* Wake for the next retry due, and (following) no later than the
	 * next look for writes queued meanwhile, by us or another process. */
	long ms = wake != INT64_MAX ? (long)((wake - now) / 1000) + 1 : -1;
	if (sky__engine_follows(d->e) && (ms < 0 || ms > POLL_MS))
		ms = POLL_MS;
	if (ms >= 0)
		schedule_pump(d, ms);
	if (!d->has_work && !d->answered)
		sky__engine_worker_changed(d->e);
}

/* ------------------------------------------------------------------ */
/* Sending and answers                                                 */
/* ------------------------------------------------------------------ */

static void on_answer(const sky_http_response *res, void *ctx)
{
	flight *f = ctx;
	deliver *d = f->d;
	f->req = NULL;
	/* Off the flying list, onto the answered one. */
	for (flight **p = &d->flying; *p; p = &(*p)->next)
		if (*p == f) {
			*p = f->next;
			break;
		}
	d->n_flying--;
	f->status = res->status;
	f->retry_after_s = res->retry_after_s;
	f->as_of_us = sky__engine_read_bound(res);
	switch (sky__api_classify(res)) {
	case SKY_API_OK: f->kind = ANSWER_OK; break;
	case SKY_API_GONE:
	case SKY_API_REJECTED: f->kind = ANSWER_REJECT; break;
	default: /* no answer, 408, 425, 429, 5xx; 401 after a refresh */
		f->kind = ANSWER_RETRY;
		break;
	}
	if (res->transport_ok)
		f->answer = strndup(res->body ? res->body : "", res->len);
	else
		f->answer = strdup(res->error ? res->error : "no answer");
	f->next = d->answered;
	d->answered = f;
	event_active(d->ev_commit, 0, 0);
}

static void send_flight(deliver *d, flight *f)
{
	sky_api_call call;
	const char *sid = f->sid;
	if (f->looking) {
		call = SKY_API_SESSIONS;
		sid = NULL;
	} else {
		switch (f->op) {
		case SKY_WRITE_CREATE:
			call = SKY_API_SESSION_CREATE;
			sid = NULL;
			break;
		case SKY_WRITE_PATCH: call = SKY_API_SESSION_PATCH; break;
		case SKY_WRITE_DATA: call = SKY_API_DATA_PATCH; break;
		case SKY_WRITE_PARTICIPANT:
			call = SKY_API_PARTICIPANT_ADD;
			break;
		default: call = SKY_API_EVENT_SEND; break;
		}
	}
	f->next = d->flying;
	d->flying = f;
	d->n_flying++;
	if (sky__engine_request(
		d->e, call, f->app, sid, f->looking ? NULL : f->body,
		f->looking ? 0 : f->body_len, 0, on_answer, f, &f->req) < 0) {
		d->flying = f->next;
		d->n_flying--;
		sky__engine_log(d->e, SKY_LOG_WARN, "outbox: %s",
				sky_error_last()->message);
		flight_free(f);
		schedule_pump(d, 1000);
	}
}

/* Back off entry `id` after a transient failure; `state` its new state. */
static int set_entry(MDB_txn *txn, deliver *d, flight *f, uint64_t id,
		     sky_outbox_state state, int now);

static int backoff(MDB_txn *txn, deliver *d, flight *f, uint64_t id,
		   sky_outbox_state state)
{
	return set_entry(txn, d, f, id, state, 0);
}

/* Entry `id` gets `state`, one more attempt and the answer; its next try
 * is after the backoff, or at once when `now`. */
static int set_entry(MDB_txn *txn, deliver *d, flight *f, uint64_t id,
		     sky_outbox_state state, int now)
{
	sky_ob_entry e;
	int rc = sky__ob_get(txn, d->c, id, &e);
	if (rc == SKY_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	const sky_engine_options *opts = sky__engine_options(d->e);
	long ms = sky__backoff_ms(e.attempts, opts->backoff_min_ms,
				  opts->backoff_max_ms);
	if (f->retry_after_s >= 0 && f->retry_after_s * 1000 > ms)
		ms =
		    f->retry_after_s > 3600 ? 3600000 : f->retry_after_s * 1000;
	sky_ob_owned o;
	if ((rc = sky__ob_own(&e, &o)) < 0)
		return rc;
	o.e.attempts++;
	o.e.state = state;
	o.e.flags &= ~SKY_OB_ON_WIRE; /* answered */
	o.e.next_try_us = now ? 0 : sky__now_us() + (int64_t)ms * 1000;
	o.e.http_status = (int)f->status;
	o.e.answer = f->answer ? f->answer : "";
	rc = sky__ob_store(txn, d->c, &o.e);
	free(o.strs);
	return rc;
}

/* Find our create in a session list answer: the session whose clientRef
 * is the local id. A new reference, or NULL. */
static json_t *find_created(deliver *d, flight *f)
{
	json_t *list = NULL;
	sky_json_limits lim = {0, 0};
	(void)d;
	if (sky__api_parse_array(f->answer, strlen(f->answer), &lim,
				 "session list", &list) < 0)
		return NULL;
	size_t i;
	json_t *s, *found = NULL;
	json_array_foreach(list, i, s) {
		const char *ref = sky__json_str(s, "clientRef");
		if (ref && !strcmp(ref, f->local)) {
			found = json_incref(s);
			break;
		}
	}
	json_decref(list);
	return found;
}

/* The flight's writes are no longer on the wire (a refused group). */
static int clear_wire(MDB_txn *txn, deliver *d, flight *f)
{
	for (size_t i = 0; i < f->n; i++) {
		sky_ob_entry e;
		int rc = sky__ob_get(txn, d->c, f->ids[i], &e);
		if (rc == SKY_ENOTFOUND ||
		    (rc == 0 && !(e.flags & SKY_OB_ON_WIRE)))
			continue;
		if (rc < 0)
			return rc;
		sky_ob_owned o;
		if ((rc = sky__ob_own(&e, &o)) < 0)
			return rc;
		o.e.flags &= ~SKY_OB_ON_WIRE;
		rc = sky__ob_store(txn, d->c, &o.e);
		free(o.strs);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int commit_one(MDB_txn *txn, deliver *d, flight *f)
{
	sky_cache *c = d->c;
	int rc = 0;
	f->drained = f->rejected = 0;
	sky__buf_clear(&f->dead); /* the commit may run again */
	free(f->server_sid);
	f->server_sid = NULL;
	if (f->kind == ANSWER_OK) {
		if (f->op == SKY_WRITE_CREATE) {
			json_t *s = NULL;
			if (f->looking) {
				if (!(s = find_created(d, f))) {
					/* Not made: send it (again). */
					return set_entry(txn, d, f, f->ids[0],
							 SKY_OUTBOX_PENDING, 1);
				}
			} else {
				sky_json_limits lim = {0, 0};
				if (sky__api_parse_object(
					f->answer, strlen(f->answer), &lim,
					"created session", &s) < 0)
					return backoff(txn, d, f, f->ids[0],
						       SKY_OUTBOX_IN_DOUBT);
			}
			int64_t as_of =
			    f->as_of_us ? f->as_of_us : INT64_MIN + 1;
			rc = sky__outbox_adopt(txn, c, f->app, f->local, s,
					       as_of);
			const char *sid = sky__json_str(s, "sessionId");
			/* For the application's callback after the commit; no
			 * copy (out of memory) only loses that callback. */
			if (rc == 0 && sid)
				f->server_sid = strdup(sid);
			json_decref(s);
			if (rc == SKY_EINVAL)
				return backoff(txn, d, f, f->ids[0],
					       SKY_OUTBOX_IN_DOUBT);
			f->drained = 1;
			return rc;
		}
		return sky__outbox_delivered(txn, c, f->ids, f->n, &f->drained);
	}
	if (f->kind == ANSWER_REJECT) {
		if (f->n > 1)
			return clear_wire(txn, d, f); /* sent again one by one
							 (commit_all) */
		if (f->looking) {
			/* The list that would tell is refused: the create
			 * cannot be checked, so it is not sent blindly. */
			char why[512];
			snprintf(why, sizeof(why),
				 "the answer to this create was lost and the "
				 "server's sessions cannot be listed to check "
				 "whether it was made (HTTP %ld); retry it if "
				 "the session does not exist",
				 f->status);
			free(f->answer);
			f->answer = strdup(why);
		}
		f->rejected = 1;
		return sky__outbox_reject(txn, c, f->ids[0], (int)f->status,
					  f->answer ? f->answer : "", &f->dead);
	}
	/* Transient. A create (or its lookup) ends in doubt: the next try
	 * looks for it first. An event without an answer, or answered 5xx
	 * (which may follow the server's commit), is in doubt for good: the
	 * API has no read of a session's events that could tell, so only
	 * sky_outbox_retry sends it again. One refused before it was done
	 * (429, 408, 425, a 401 after a refresh) is sent again. */
	if (f->op == SKY_WRITE_CREATE)
		return backoff(txn, d, f, f->ids[0], SKY_OUTBOX_IN_DOUBT);
	if (f->op == SKY_WRITE_EVENT)
		return backoff(txn, d, f, f->ids[0],
			       f->status == 0 || f->status >= 500
				   ? SKY_OUTBOX_IN_DOUBT
				   : SKY_OUTBOX_PENDING);
	return backoff(txn, d, f, f->ids[0], SKY_OUTBOX_PENDING);
}

static int commit_write(MDB_txn *txn, void *arg)
{
	deliver *d = arg;
	for (flight *f = d->answered; f; f = f->next) {
		int rc = commit_one(txn, d, f);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void commit_all(deliver *d)
{
	if (!d->answered)
		return;
	int rc = sky__store_write(&d->c->st, commit_write, d);
	if (rc < 0)
		sky__engine_log(d->e, SKY_LOG_ERROR,
				"outbox: recording answers: %s",
				sky_error_last()->message);
	int follows = sky__engine_follows(d->e);
	while (d->answered) {
		flight *f = d->answered;
		d->answered = f->next;
		if (rc == 0) {
			if (f->kind == ANSWER_REJECT && f->n > 1) {
				solo_set(d, f->app, f->sid, 1);
			} else if (f->kind == ANSWER_RETRY) {
				failcount *fc = fail_find(d, f->ids[0], 1);
				if (fc)
					fc->fails++;
				sky__engine_log(
				    d->e, SKY_LOG_WARN,
				    "outbox: %s %s/%s: %s%s",
				    sky_write_op_name(f->op), f->app, f->sid,
				    f->status ? "HTTP " : "",
				    f->status ? "error" : f->answer);
			} else if (f->rejected) {
				solo_set(d, f->app, f->sid, 0);
				sky__engine_log(
				    d->e, SKY_LOG_WARN,
				    "outbox: %s %s/%s rejected by the "
				    "server (HTTP %ld): now a dead "
				    "letter",
				    sky_write_op_name(f->op), f->app, f->sid,
				    f->status);
				/* The write, and those that went with it (the
				 * writes to a session whose create failed). */
				for (size_t k = 0; k + 8 <= f->dead.len; k += 8)
					sky__outbox_notify_rejected(
					    d->c,
					    sky__get_be64(
						(unsigned char *)f->dead.data +
						k));
			}
			if (f->drained && f->op == SKY_WRITE_CREATE &&
			    f->server_sid)
				sky__engine_addressed(d->e, f->app, f->local,
						      f->server_sid);
			if (f->drained) {
				solo_set(d, f->app, f->sid, 0);
				/* Converge on the server's own copy. */
				if (follows && f->op != SKY_WRITE_CREATE)
					sky__engine_refetch(d->e, f->app,
							    f->sid);
			}
		}
		flight_free(f);
	}
	pump(d);
}

/* ------------------------------------------------------------------ */
/* The engine's worker                                                 */
/* ------------------------------------------------------------------ */

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pump(arg);
}

static void on_commit(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	commit_all(arg);
}

static void schedule_pump(deliver *d, long ms)
{
	if (!d->ev_pump)
		return;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	/* An earlier wake-up already armed stays. */
	struct timeval left;
	if (evtimer_pending(d->ev_pump, &left)) {
		struct timeval nowtv;
		event_base_gettimeofday_cached(sky__engine_base(d->e), &nowtv);
		long long at = (long long)left.tv_sec * 1000000 + left.tv_usec;
		long long want = (long long)nowtv.tv_sec * 1000000 +
				 nowtv.tv_usec + (long long)ms * 1000;
		if (at <= want)
			return;
	}
	evtimer_add(d->ev_pump, &tv);
}

static void w_online(void *ctx)
{
	deliver *d = ctx;
	struct event_base *base = sky__engine_base(d->e);
	if (!d->ev_pump)
		d->ev_pump = evtimer_new(base, on_pump, d);
	if (!d->ev_commit)
		d->ev_commit = event_new(base, -1, 0, on_commit, d);
	d->online = 1;
	d->has_work = 1; /* until a pump says otherwise */
	pump(d);
}

static void w_offline(void *ctx)
{
	deliver *d = ctx;
	d->online = 0; /* requests in flight still get their answers */
}

static int w_busy(void *ctx)
{
	deliver *d = ctx;
	return d->n_flying > 0 || d->answered != NULL || d->has_work;
}

static void w_stop(void *ctx)
{
	deliver *d = ctx;
	d->online = 0;
	/* Answers already in are recorded; requests still out are not: an
	 * idempotent write is sent again, a create looked for. */
	commit_all(d);
	while (d->flying) {
		flight *f = d->flying;
		d->flying = f->next;
		sky__engine_request_cancel(f->req);
		flight_free(f);
	}
	d->n_flying = 0;
	if (d->ev_pump)
		event_free(d->ev_pump);
	if (d->ev_commit)
		event_free(d->ev_commit);
	d->ev_pump = d->ev_commit = NULL;
	free(d->fails);
	d->fails = NULL;
	d->n_fails = 0;
}

static void w_destroy(void *ctx)
{
	deliver *d = ctx;
	for (size_t i = 0; i < d->n_solo; i++)
		free(d->solo[i]);
	free(d->solo);
	free(d->fails);
	free(d);
}

int sky__deliver_attach(sky_engine *e)
{
	static const sky_engine_worker worker = {w_online, w_offline, w_busy,
						 w_stop, w_destroy};
	deliver *d = calloc(1, sizeof(*d));
	if (!d)
		return sky__error_nomem();
	d->e = e;
	d->c = sky__engine_cache(e);
	int rc = sky__engine_add_worker(e, &worker, d);
	if (rc < 0)
		free(d);
	return rc;
}
