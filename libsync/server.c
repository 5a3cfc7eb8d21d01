/*
 * server.c - server state arriving for a session (DESIGN.md §5): the
 * single entry point through which events, REST reads and delivery
 * confirmations change what the server holds, whether or not local
 * writes are queued over it.
 *
 * What this file keeps true: a change of server state never lands on a
 * local view. With writes queued, the server copy is put back in place
 * (sky__view_restore), the change is applied to it as to any session,
 * and the view is rebuilt over the result (sky__view_rebuild) in the same
 * transaction. A session created offline is adopted exactly once, when
 * the server's copy of it first arrives (by the create's answer or by an
 * event or a read, whichever comes first): its local id becomes an alias
 * and its remaining writes are addressed to the server id.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "doc.h"
#include "error.h"
#include "json.h"
#include "queue.h"
#include "server.h"
#include "view.h"

/* Move the entries of local session `local` to `server_sid`; the create
 * itself is done and goes. */
static int readdress(MDB_txn *txn, sky_cache *c, const char *app,
		     const char *local, const char *server_sid)
{
	sky_ob_list l;
	int rc = sky__ob_session_entries(txn, c, app, local, 0, &l);
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		sky_ob_entry e = l.v[i].e;
		if ((rc = sky__ob_remove(txn, c, &e)) < 0)
			break;
		if (e.op == SKY_WRITE_CREATE) {
			rc = sky__ob_count_delivered(txn, c, 1);
			continue;
		}
		e.sid = server_sid;
		rc = sky__ob_store(txn, c, &e);
	}
	sky__ob_list_free(&l);
	return rc;
}

/*
 * If `incoming` is the server's copy of a session this cache created
 * offline (clientRef names a local session still here), hand the local
 * session's writes over to the server id and drop the local record.
 */
static int adopt_if_ours(MDB_txn *txn, sky_cache *c, const char *app,
			 const char *sid, const json_t *incoming)
{
	const char *ref =
	    incoming ? sky__json_str(incoming, "clientRef") : NULL;
	if (!ref || !sky__ob_is_local(ref) || !strcmp(ref, sid))
		return 0;
	if (sky__outbox_alias(txn, c, app, ref))
		return 0; /* adopted before */
	sky_record rec;
	int rc = sky__record_get(txn, c, app, ref, &rec);
	if (rc == SKY_ENOTFOUND) {
		/* Not ours, or its create was dropped: nothing to hand over
		 * unless entries wait under the local id. */
		sky_ob_list l;
		if ((rc = sky__ob_session_entries(txn, c, app, ref, 0, &l)) < 0)
			return rc;
		size_t n = l.n;
		sky__ob_list_free(&l);
		if (n == 0)
			return 0;
	} else if (rc < 0) {
		return rc;
	} else if ((rc = sky__record_delete(txn, c, app, ref)) < 0) {
		return rc;
	}
	if ((rc = sky__ob_alias_put(txn, c, app, ref, sid)) < 0 ||
	    (rc = readdress(txn, c, app, ref, sid)) < 0)
		return rc;
	return 1;
}

int sky__server_write(MDB_txn *txn, sky_cache *c, const char *app,
		      const char *sid, const json_t *incoming,
		      sky_server_change_fn change, void *arg)
{
	int adopted = adopt_if_ours(txn, c, app, sid, incoming);
	if (adopted < 0)
		return adopted;
	int had_server;
	int veiled = sky__view_restore(txn, c, app, sid, &had_server);
	if (veiled < 0)
		return veiled;
	/* A session new here may have writes queued already: replayed from
	 * the journal after a crash rolled the session itself back
	 * (outbox.c, enqueue_one). Its view is built as it arrives. */
	int queued = 0;
	if (!veiled && !had_server && !adopted &&
	    (queued = sky__ob_session_queued(txn, c, app, sid)) < 0)
		return queued;
	int rc = change(txn, arg);
	if ((veiled || adopted || queued) &&
	    (rc == 0 || rc == SKY_EINVAL || rc == SKY_ELIMIT)) {
		int r = sky__view_rebuild(txn, c, app, sid);
		if (r < 0)
			rc = r;
	}
	return rc;
}

int sky__server_delivered(MDB_txn *txn, sky_cache *c, const uint64_t *ids,
			  size_t n, int *drained)
{
	*drained = 0;
	sky_ob_list done = {0};
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
		sky__ob_list_free(&done);
		return rc;
	}
	if ((rc = sky__ob_count_delivered(txn, c, done.n)) < 0)
		goto out;
	const char *app = done.v[0].e.app, *sid = done.v[0].e.sid;
	sky_ob_list l;
	if ((rc = sky__ob_session_entries(txn, c, app, sid, 1, &l)) < 0)
		goto out;
	if (l.n == 0) {
		/* Nothing else queued: the local view is the server copy with
		 * these writes, which is what the server now holds. */
		sky_record rec, srv;
		*drained = 1;
		rc = sky__record_get(txn, c, app, sid, &rec);
		if (rc == 0 && (rec.flags & SKY_REC_PENDING)) {
			if (sky__view_server_get(txn, c, app, sid, &srv) == 0) {
				if ((rc = sky__doc_delete(txn, sky__data_dbi(c),
							  srv.docid)) < 0 ||
				    (rc = sky__view_server_del(txn, c, app,
							       sid)) < 0)
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
	if ((rc = sky__view_restore(txn, c, app, sid, &had_server)) < 0)
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
				rc =
				    sky__error_input("outbox entry %llu: "
						     "corrupt body",
						     (unsigned long long)e->id);
				break;
			}
			if (e->op == SKY_WRITE_DATA)
				rc = sky__doc_patch(txn, sky__data_dbi(c),
						    rec.docid, body);
			else
				rc = sky__view_apply(now, e, body);
			json_decref(body);
		}
		if (rc == 0)
			rc = sky__record_put(txn, c, &rec, now, s,
					     rec.created_us);
		json_decref(s);
		json_decref(now);
		if (rc < 0)
			goto out_l;
	}
	rc = sky__view_overlay(txn, c, app, sid, &l);
out_l:
	sky__ob_list_free(&l);
out:
	sky__ob_list_free(&done);
	return rc;
}
