/*
 * record_read.c - the session record codec and reading a session back
 * (record_read.h for the layout): decoding a stored value, writing a
 * header, looking a session up and parsing its JSON. It keeps nothing
 * itself; a decoded record borrows its JSON from the transaction.
 */
#include "config.h"

#include <string.h>

#include "error.h"
#include "json.h"
#include "record_read.h"
#include "store.h"

int sky__record_decode(const MDB_val *val, sky_record *out)
{
	const unsigned char *p = val->mv_data;
	if (val->mv_size < SKY_RECORD_HEADER + 1 || p[0] != SKY_RECORD_FORMAT ||
	    p[val->mv_size - 1] != '\0')
		return sky__error_set(SKY_EINVAL, SKY_ERRSRC_LMDB, 0,
				      "corrupt session record (%zu bytes)",
				      val->mv_size);
	out->flags = p[1];
	out->docid = sky__get_be64(p + 8);
	out->created_us = sky__get_time(p + 16);
	out->wm_session = sky__get_time(p + 24);
	out->wm_props = sky__get_time(p + 32);
	out->wm_data = sky__get_time(p + 40);
	out->json = (const char *)p + SKY_RECORD_HEADER;
	out->json_len = val->mv_size - SKY_RECORD_HEADER - 1;
	return 0;
}

void sky__record_encode_header(unsigned char *p, const sky_record *hdr)
{
	memset(p, 0, SKY_RECORD_HEADER);
	p[0] = SKY_RECORD_FORMAT;
	p[1] = (unsigned char)hdr->flags;
	sky__put_be64(p + 8, hdr->docid);
	sky__put_time(p + 16, hdr->created_us);
	sky__put_time(p + 24, hdr->wm_session);
	sky__put_time(p + 32, hdr->wm_props);
	sky__put_time(p + 40, hdr->wm_data);
}

static size_t session_key(unsigned char *buf, const char *app, const char *sid)
{
	return sky__key2(buf, SKY_KEY_MAX, app, sid);
}

int sky__record_get(MDB_txn *txn, sky_cache *c, const char *app,
		    const char *sid, sky_record *out)
{
	unsigned char kbuf[SKY_KEY_MAX];
	MDB_val key = {session_key(kbuf, app, sid), kbuf}, val;
	if (key.mv_size == 0)
		return SKY_ENOTFOUND;
	int rc = mdb_get(txn, SKY_DBI(c, SKY_DB_SESSIONS), &key, &val);
	if (rc == MDB_NOTFOUND)
		return SKY_ENOTFOUND;
	if (rc)
		return sky__error_lmdb(rc, "reading a session");
	return sky__record_decode(&val, out);
}

json_t *sky__record_json(const sky_record *rec)
{
	json_error_t jerr;
	json_t *s = sky__json_loadb(rec->json, rec->json_len, 0, &jerr);
	/* Out of memory is not damage: the record may well be whole. */
	if (!s && json_error_code(&jerr) == json_error_out_of_memory)
		sky__error_nomem();
	else if (!s)
		sky__error_set(SKY_EINVAL, SKY_ERRSRC_JSON, 0,
			       "corrupt session JSON in the cache: %s",
			       jerr.text);
	return s;
}
