/*
 * record.c - storing sessions: put and delete with their index
 * maintenance, header rewrites and document id allocation. See
 * record_read.h for the layout and the codec; the invariant kept here
 * is that the record, its data document, its custom events and its index
 * entries change together in one transaction.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "doc.h"
#include "error.h"
#include "index.h"
#include "json.h"
#include "record.h"

static size_t session_key(unsigned char *buf, const char *app, const char *sid)
{
	return sky__key2(buf, SKY_KEY_MAX, app, sid);
}

int sky__record_put(MDB_txn *txn, sky_cache *c, const sky_record *hdr,
		    json_t *session, json_t *old, int64_t old_created_us)
{
	const char *app = sky__json_str(session, "applicationId");
	const char *sid = sky__json_str(session, "sessionId");
	unsigned char kbuf[SKY_KEY_MAX];
	MDB_val key = {session_key(kbuf, app, sid), kbuf}, val;
	size_t jlen;
	char *text = sky__json_dump(session, &jlen);
	if (!text)
		return -1;
	val.mv_size = SKY_RECORD_HEADER + jlen + 1;
	/* MDB_RESERVE: write the record straight into the page. */
	int rc =
	    mdb_put(txn, SKY_DBI(c, SKY_DB_SESSIONS), &key, &val, MDB_RESERVE);
	if (rc) {
		free(text);
		return sky__error_lmdb(rc, "writing a session");
	}
	sky__record_encode_header(val.mv_data, hdr);
	memcpy((char *)val.mv_data + SKY_RECORD_HEADER, text, jlen + 1);
	free(text);
	sky__changes_note(c, app, sid);
	return sky__index_update(txn, c, old, old_created_us, session,
				 hdr->created_us);
}

int sky__record_put_header(MDB_txn *txn, sky_cache *c, const sky_record *hdr,
			   const char *app, const char *sid)
{
	unsigned char kbuf[SKY_KEY_MAX];
	MDB_val key = {session_key(kbuf, app, sid), kbuf}, val;
	int rc = mdb_get(txn, SKY_DBI(c, SKY_DB_SESSIONS), &key, &val);
	if (rc)
		return sky__error_lmdb(rc, "reading a session");
	/* Copy first: the old value may live in the page being rewritten. */
	unsigned char *copy = malloc(val.mv_size);
	if (!copy)
		return sky__error_nomem();
	memcpy(copy, val.mv_data, val.mv_size);
	sky__record_encode_header(copy, hdr);
	val.mv_data = copy;
	rc = mdb_put(txn, SKY_DBI(c, SKY_DB_SESSIONS), &key, &val, 0);
	free(copy);
	return rc ? sky__error_lmdb(rc, "writing a session") : 0;
}

/* Delete every key starting with the 8-byte big-endian `id` in `dbi`. */
static int delete_range(MDB_txn *txn, MDB_dbi dbi, uint64_t id)
{
	MDB_cursor *cur;
	unsigned char prefix[8];
	sky__put_be64(prefix, id);
	int rc = mdb_cursor_open(txn, dbi, &cur);
	if (rc)
		return sky__error_lmdb(rc, "opening a cursor");
	MDB_val key = {8, prefix}, val;
	rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
	while (rc == 0 && key.mv_size >= 8 &&
	       memcmp(key.mv_data, prefix, 8) == 0) {
		if ((rc = mdb_cursor_del(cur, 0)) != 0)
			break;
		/* After a delete, MDB_NEXT yields the entry that followed. */
		rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT);
	}
	mdb_cursor_close(cur);
	if (rc && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "deleting");
	return 0;
}

int sky__record_delete(MDB_txn *txn, sky_cache *c, const char *app,
		       const char *sid)
{
	sky_record rec;
	int rc = sky__record_get(txn, c, app, sid, &rec);
	if (rc < 0)
		return rc;
	json_t *old = sky__record_json(&rec);
	if (!old)
		return -1;
	rc = sky__index_update(txn, c, old, rec.created_us, NULL, 0);
	json_decref(old);
	if (rc < 0)
		return rc;
	if ((rc = sky__doc_delete(txn, SKY_DBI(c, SKY_DB_DATA), rec.docid)) < 0)
		return rc;
	if ((rc = delete_range(txn, SKY_DBI(c, SKY_DB_SEVENTS), rec.docid)) < 0)
		return rc;
	unsigned char kbuf[SKY_KEY_MAX];
	MDB_val key = {session_key(kbuf, app, sid), kbuf};
	rc = mdb_del(txn, SKY_DBI(c, SKY_DB_SESSIONS), &key, NULL);
	if (rc)
		return sky__error_lmdb(rc, "deleting a session");
	sky__changes_note(c, app, sid);
	return 0;
}

int sky__record_new_docid(MDB_txn *txn, sky_cache *c, uint64_t *out)
{
	uint64_t id;
	int rc = sky__meta_next(txn, &c->st, "next_docid", &id);
	if (rc < 0)
		return rc;
	/* Start at 1 so that 0 can mean "no document". */
	*out = id + 1;
	return 0;
}
