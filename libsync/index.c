/*
 * index.c - the query indexes (layout in index.h): computing the entries
 * of a session, writing the difference between a session's old and new
 * entries inside the record's own transaction, and checking the indexes
 * against the records in both directions.
 *
 * Invariants kept here:
 * - For every session record there is exactly one data item
 *   (created_us, sessionId) under each key sky__index_entries() gives for
 *   its JSON, and there is no other item anywhere in the index. Both sides
 *   change in the same LMDB transaction (record.c), so they agree after a
 *   crash too.
 * - Keys are stored in the one canonical form of sky__ixkey_end(), so a
 *   writer and a reader always build the same bytes for the same value.
 * - The entries are those of the index version recorded in meta; a
 *   read-write open brings an older index to its cache's version
 *   (sky__index_version_for) before any write, so writes always add the
 *   entries of the version the index has.
 */
#include "config.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "index.h"
#include "record_read.h"

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

/* Lines of problems reported by the check before it only counts. */
#define CHECK_MAX_LINES 1000

/* ---- keys ---- */

void sky__ixkey_begin(sky_ixkey *k, const char *app, char kind)
{
	k->len = 0;
	k->full = 0;
	k->hash = FNV_OFFSET;
	k->hashed = 0;
	sky__ixkey_add(k, app, strlen(app) + 1);
	sky__ixkey_add(k, &kind, 1);
}

void sky__ixkey_add(sky_ixkey *k, const void *data, size_t len)
{
	const unsigned char *p = data;
	uint64_t h = k->hash;
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= FNV_PRIME;
	}
	k->hash = h;
	if (k->full < SKY_KEY_MAX) {
		size_t room = SKY_KEY_MAX - k->full;
		memcpy(k->data + k->full, p, len < room ? len : room);
	}
	k->full += len;
}

void sky__ixkey_field(sky_ixkey *k, char code, const char *prop)
{
	sky__ixkey_add(k, &code, 1);
	if (code == SKY_IXF_PROP)
		sky__ixkey_add(k, prop, strlen(prop));
}

void sky__ixkey_end(sky_ixkey *k)
{
	if (k->full <= SKY_KEY_MAX) {
		k->len = k->full;
		k->hashed = 0;
		return;
	}
	k->data[SKY_IX_KEEP] = 0xFF;
	sky__put_be64(k->data + SKY_IX_KEEP + 1, k->hash);
	k->len = SKY_KEY_MAX;
	k->hashed = 1;
}

void sky__ixkey_value(sky_ixkey *k, const char *app, char code,
		      const char *prop, const char *value, size_t vlen)
{
	sky__ixkey_begin(k, app, SKY_IX_VALUE);
	sky__ixkey_field(k, code, prop);
	sky__ixkey_add(k, "", 1);
	sky__ixkey_add(k, value, vlen);
	sky__ixkey_end(k);
}

void sky__ixkey_exists(sky_ixkey *k, const char *app, char code,
		       const char *prop)
{
	sky__ixkey_begin(k, app, SKY_IX_EXISTS);
	sky__ixkey_field(k, code, prop);
	sky__ixkey_end(k);
}

void sky__ixkey_all(sky_ixkey *k, const char *app)
{
	sky__ixkey_begin(k, app, SKY_IX_ALL);
	sky__ixkey_end(k);
}

void sky__ixkey_number(sky_ixkey *k, const char *app, char code, int64_t value)
{
	unsigned char v[8];
	sky__put_time(v, value);
	sky__ixkey_value(k, app, code, NULL, (const char *)v, sizeof(v));
}

/* ---- positions ---- */

void sky__ixpos_make(sky_ixpos *p, int64_t created_us, const char *sid)
{
	size_t n = strlen(sid);
	if (n > SKY_MAX_ID_BYTES)
		n = SKY_MAX_ID_BYTES; /* ids are validated: cannot happen */
	sky__put_time(p->data, created_us);
	memcpy(p->data + 8, sid, n);
	p->len = 8 + n;
}

static int cmp_bytes(const void *a, size_t alen, const void *b, size_t blen)
{
	int r = memcmp(a, b, alen < blen ? alen : blen);
	if (r)
		return r;
	return alen < blen ? -1 : alen > blen;
}

int sky__ixpos_cmp(const sky_ixpos *a, const sky_ixpos *b)
{
	return cmp_bytes(a->data, a->len, b->data, b->len);
}

int sky__ixpos_cmp_val(const sky_ixpos *a, const MDB_val *v)
{
	return cmp_bytes(a->data, a->len, v->mv_data, v->mv_size);
}

void sky__ixpos_set(sky_ixpos *p, const MDB_val *v)
{
	size_t n = v->mv_size <= SKY_IX_POS_MAX ? v->mv_size : SKY_IX_POS_MAX;
	memcpy(p->data, v->mv_data, n);
	p->len = n;
}

void sky__ixpos_sid(const sky_ixpos *p, char *buf)
{
	size_t n = p->len > 8 ? p->len - 8 : 0;
	memcpy(buf, p->data + 8, n);
	buf[n] = '\0';
}

int64_t sky__ixpos_created(const sky_ixpos *p)
{
	return p->len >= 8 ? sky__get_time(p->data) : 0;
}

/* ---- the entries of a session ---- */

/*
 * A set of stored keys: packed bytes (u16 length + key) and, once sorted,
 * an array of slices in key order without duplicates.
 */
typedef struct {
	const unsigned char *p;
	size_t len;
} slice;

typedef struct {
	sky_buf bytes;
	slice *keys;
	size_t n;
} entry_set;

static void entry_set_free(entry_set *s)
{
	sky__buf_free(&s->bytes);
	free(s->keys);
	s->keys = NULL;
	s->n = 0;
}

static int add_key(entry_set *s, const sky_ixkey *k)
{
	unsigned char len[2] = {(unsigned char)(k->len >> 8),
				(unsigned char)k->len};
	if (sky__buf_append(&s->bytes, len, 2) < 0 ||
	    sky__buf_append(&s->bytes, k->data, k->len) < 0)
		return -1;
	s->n++;
	return 0;
}

static int cmp_slice(const void *a, const void *b)
{
	const slice *x = a, *y = b;
	return cmp_bytes(x->p, x->len, y->p, y->len);
}

/* Index the packed keys, sort them and drop duplicates. */
static int entry_set_seal(entry_set *s)
{
	s->keys = malloc((s->n ? s->n : 1) * sizeof(*s->keys));
	if (!s->keys)
		return sky__error_nomem();
	const unsigned char *p = (const unsigned char *)s->bytes.data;
	for (size_t i = 0; i < s->n; i++) {
		size_t len = ((size_t)p[0] << 8) | p[1];
		s->keys[i].p = p + 2;
		s->keys[i].len = len;
		p += 2 + len;
	}
	qsort(s->keys, s->n, sizeof(*s->keys), cmp_slice);
	size_t out = 0;
	for (size_t i = 0; i < s->n; i++)
		if (out == 0 || cmp_slice(&s->keys[out - 1], &s->keys[i]) != 0)
			s->keys[out++] = s->keys[i];
	s->n = out;
	return 0;
}

/* The value entry of one single-valued field, and before version 3 its
 * exists entry. */
static int add_field(entry_set *s, unsigned version, const char *app, char code,
		     const char *prop, const json_t *value)
{
	sky_ixkey k;
	if (!json_is_string(value))
		return 0;
	sky__ixkey_value(&k, app, code, prop, json_string_value(value),
			 json_string_length(value));
	if (add_key(s, &k) < 0)
		return -1;
	if (version >= 3)
		return 0;
	sky__ixkey_exists(&k, app, code, prop);
	return add_key(s, &k);
}

/* Is this participant a group (else a user, the default type)? */
static int is_group(const json_t *participant)
{
	const char *type =
	    json_string_value(json_object_get(participant, "type"));
	return type && strcmp(type, "group") == 0;
}

/* The value key of a number field (no exists key). */
static int add_number(entry_set *s, const char *app, char code, int64_t v)
{
	sky_ixkey k;
	sky__ixkey_number(&k, app, code, v);
	return add_key(s, &k);
}

/* The entries index version 2 added: the other session fields. */
static int add_v2_fields(entry_set *out, unsigned ix_version, const char *app,
			 const json_t *s)
{
	const json_t *draft = json_object_get(s, "isDraft");
	const json_t *version = json_object_get(s, "version");
	const char *modified = sky__json_str(s, "modifiedAt");
	int64_t us;
	sky_ixkey k;
	if (add_field(out, ix_version, app, SKY_IXF_CREATED_BY, NULL,
		      json_object_get(s, "createdBy")) < 0 ||
	    add_field(out, ix_version, app, SKY_IXF_MODIFIED_BY, NULL,
		      json_object_get(s, "modifiedBy")) < 0)
		return -1;
	if (json_is_boolean(draft)) {
		const char *v = json_is_true(draft) ? "true" : "false";
		sky__ixkey_value(&k, app, SKY_IXF_DRAFT, NULL, v, strlen(v));
		if (add_key(out, &k) < 0)
			return -1;
	}
	if (json_is_integer(version) &&
	    add_number(out, app, SKY_IXF_VERSION,
		       (int64_t)json_integer_value(version)) < 0)
		return -1;
	if (modified && sky__parse_time(modified, &us) == 0 &&
	    add_number(out, app, SKY_IXF_MODIFIED_AT, us) < 0)
		return -1;
	return 0;
}

static int build_entries(const json_t *s, unsigned version, entry_set *out)
{
	const char *app = sky__json_str(s, "applicationId");
	sky_ixkey k;
	memset(out, 0, sizeof(*out));
	if (!app)
		return sky__error_input("session: applicationId missing");
	sky__ixkey_all(&k, app);
	if (add_key(out, &k) < 0)
		goto fail;
	if (add_field(out, version, app, SKY_IXF_STATUS, NULL,
		      json_object_get(s, "status")) < 0 ||
	    add_field(out, version, app, SKY_IXF_NAME, NULL,
		      json_object_get(s, "name")) < 0)
		goto fail;
	if (version >= 2 && add_v2_fields(out, version, app, s) < 0)
		goto fail;
	const char *name;
	const json_t *v;
	json_object_foreach((json_t *)json_object_get(s, "properties"), name,
			    v) {
		if (add_field(out, version, app, SKY_IXF_PROP, name, v) < 0)
			goto fail;
	}
	size_t i;
	json_array_foreach((json_t *)json_object_get(s, "participants"), i, v) {
		if (add_field(out, version, app,
			      is_group(v) ? SKY_IXF_GROUP : SKY_IXF_USER, NULL,
			      json_object_get(v, "id")) < 0)
			goto fail;
	}
	if (entry_set_seal(out) < 0)
		goto fail;
	return 0;
fail:
	entry_set_free(out);
	return -1;
}

static int entries_v(const json_t *session, unsigned version,
		     int (*fn)(const unsigned char *, size_t, void *),
		     void *arg)
{
	entry_set s;
	int rc = build_entries(session, version, &s);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < s.n && rc == 0; i++)
		rc = fn(s.keys[i].p, s.keys[i].len, arg);
	entry_set_free(&s);
	return rc;
}

int sky__index_entries(const json_t *session, unsigned version,
		       int (*fn)(const unsigned char *, size_t, void *),
		       void *arg)
{
	return entries_v(session, version, fn, arg);
}

/* ---- update ---- */

static int put_entry(MDB_txn *txn, MDB_dbi dbi, const slice *key, MDB_val *pos)
{
	MDB_val k = {key->len, (void *)key->p};
	int rc = mdb_put(txn, dbi, &k, pos, MDB_NODUPDATA);
	if (rc == MDB_KEYEXIST)
		return 0;
	return rc ? sky__error_lmdb(rc, "writing the query index") : 0;
}

static int del_entry(MDB_txn *txn, MDB_dbi dbi, const slice *key, MDB_val *pos)
{
	MDB_val k = {key->len, (void *)key->p};
	int rc = mdb_del(txn, dbi, &k, pos);
	/* A missing entry is a damaged index (check reports it); removing
	 * what is not there must not block the write. */
	if (rc == MDB_NOTFOUND)
		return 0;
	return rc ? sky__error_lmdb(rc, "writing the query index") : 0;
}

int sky__index_update(MDB_txn *txn, sky_cache *c, const json_t *old,
		      int64_t old_created_us, const json_t *now,
		      int64_t now_created_us)
{
	assert(old || now);
	const json_t *any = now ? now : old;
	if (!any)
		return 0;
	const char *sid = sky__json_str(any, "sessionId");
	if (!sid)
		return sky__error_input("session: sessionId missing");
	MDB_dbi dbi = SKY_DBI(c, SKY_DB_INDEX);
	/* Entries of the version the index has; an index without one is
	 * empty (a new cache, or one being rebuilt: an older one was
	 * brought up at open, sky__index_upgrade), and its first entries
	 * record the layout of their cache's schema. */
	uint64_t recorded = sky__meta_get_u64(txn, &c->st, SKY_META_IX_VERSION);
	unsigned version = recorded ? (unsigned)recorded
				    : sky__index_version_for(c->st.schema);
	if (now && !recorded) {
		int vrc = sky__meta_put_u64(txn, &c->st, SKY_META_IX_VERSION,
					    version);
		if (vrc < 0)
			return vrc;
	}
	entry_set a = {SKY_BUF_INIT, NULL, 0}, b = {SKY_BUF_INIT, NULL, 0};
	sky_ixpos pa, pb;
	int rc = 0;
	if (old && (rc = build_entries(old, version, &a)) < 0)
		return rc;
	if (now && (rc = build_entries(now, version, &b)) < 0)
		goto done;
	sky__ixpos_make(&pa, old_created_us, sid);
	sky__ixpos_make(&pb, now_created_us, sid);
	MDB_val va = {pa.len, pa.data}, vb = {pb.len, pb.data};
	int same_pos = old && now && sky__ixpos_cmp(&pa, &pb) == 0;
	/*
	 * Merge the two sorted key lists: when the position is unchanged,
	 * keys in both lists stay as they are, so an update writes only
	 * the entries that differ.
	 */
	size_t i = 0, j = 0;
	while (rc == 0 && (i < a.n || j < b.n)) {
		int d;
		if (i == a.n)
			d = 1;
		else if (j == b.n)
			d = -1;
		else
			d = cmp_slice(&a.keys[i], &b.keys[j]);
		if (d == 0 && same_pos) {
			i++;
			j++;
		} else if (d <= 0) {
			rc = del_entry(txn, dbi, &a.keys[i++], &va);
		} else {
			rc = put_entry(txn, dbi, &b.keys[j++], &vb);
		}
	}
done:
	entry_set_free(&a);
	entry_set_free(&b);
	return rc;
}

/* ---- versions ---- */

unsigned sky__index_version(MDB_txn *txn, sky_cache *c)
{
	uint64_t v = sky__meta_get_u64(txn, &c->st, SKY_META_IX_VERSION);
	MDB_stat st;
	if (v)
		return (unsigned)v;
	/* No version and no entry: a new cache, at its schema's version
	 * from its first write on (sky__index_update records it then). */
	if (mdb_stat(txn, SKY_DBI(c, SKY_DB_INDEX), &st) == 0 &&
	    st.ms_entries == 0)
		return sky__index_version_for(c->st.schema);
	return 1;
}

static int rebuild(MDB_txn *txn, void *arg)
{
	sky_cache *c = arg;
	MDB_cursor *cur;
	MDB_val key, val;
	int rc = mdb_drop(txn, SKY_DBI(c, SKY_DB_INDEX), 0);
	if (rc)
		return sky__error_lmdb(rc, "rebuilding the query index");
	if ((rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_SESSIONS), &cur)))
		return sky__error_lmdb(rc, "rebuilding the query index");
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		sky_record rec;
		json_t *s;
		/* A record that does not decode has no entries (check
		 * reports it); it must not keep the cache from opening. */
		if (sky__record_decode(&val, &rec) < 0 ||
		    !(s = sky__record_json(&rec)))
			continue;
		if (sky__json_str(s, "applicationId") &&
		    sky__json_str(s, "sessionId"))
			ret = sky__index_update(txn, c, NULL, 0, s,
						rec.created_us);
		json_decref(s);
		if (ret < 0)
			break;
	}
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = sky__error_lmdb(rc, "rebuilding the query index");
	mdb_cursor_close(cur);
	if (ret == 0)
		ret = sky__meta_put_u64(txn, &c->st, SKY_META_IX_VERSION,
					sky__index_version_for(c->st.schema));
	return ret;
}

int sky__index_upgrade(sky_cache *c)
{
	MDB_txn *txn;
	if (c->st.flags & SKY_CACHE_READONLY)
		return 0;
	int rc = sky__store_read_begin(&c->st, &txn);
	if (rc < 0)
		return rc;
	unsigned v = sky__index_version(txn, c);
	sky__store_read_end(&c->st, txn);
	if (v >= sky__index_version_for(c->st.schema))
		return 0;
	return sky__store_write(&c->st, rebuild, c);
}

/* ---- check ---- */

typedef struct {
	sky_buf *out;
	unsigned long problems;
} problems_t;

static void problem(problems_t *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(problems_t *p, const char *fmt, ...)
{
	p->problems++;
	if (p->problems > CHECK_MAX_LINES)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	sky__buf_printf(p->out, "%s\n", line);
}

/* A readable form of a stored key for messages. */
static void describe_key(const unsigned char *k, size_t len, char *buf,
			 size_t cap)
{
	sky_buf b = SKY_BUF_INIT;
	int hashed = sky__ixkey_is_hashed(k, len);
	size_t n = hashed ? SKY_IX_KEEP : len;
	for (size_t i = 0; i < n && b.len < 160; i++) {
		unsigned char ch = k[i];
		if (ch == '\0')
			sky__buf_puts(&b, "\\0");
		else if (ch < 0x20 || ch == 0x7f)
			sky__buf_printf(&b, "\\x%02x", ch);
		else
			sky__buf_putc(&b, (char)ch);
	}
	if (b.len >= 160)
		sky__buf_puts(&b, "...");
	if (hashed)
		sky__buf_puts(&b, " (hashed)");
	snprintf(buf, cap, "%s", b.data ? b.data : "");
	sky__buf_free(&b);
}

/* The application of a stored key (up to its first NUL). */
static int key_app(const MDB_val *key, char *app)
{
	const unsigned char *k = key->mv_data;
	const unsigned char *nul = memchr(k, '\0', key->mv_size);
	if (!nul || (size_t)(nul - k) > SKY_MAX_ID_BYTES ||
	    (size_t)(nul - k) + 2 > key->mv_size)
		return -1;
	memcpy(app, k, (size_t)(nul - k));
	app[nul - k] = '\0';
	return 0;
}

typedef struct {
	MDB_cursor *cur;
	MDB_val pos;
	const char *app, *sid;
	problems_t *pr;
	uint64_t found;
	int rc;
} fwd_ctx;

/* Forward direction, one expected entry: is it in the index? */
static int expect_entry(const unsigned char *key, size_t len, void *arg)
{
	fwd_ctx *f = arg;
	MDB_val k = {len, (void *)key}, v = f->pos;
	int rc = mdb_cursor_get(f->cur, &k, &v, MDB_GET_BOTH);
	if (rc == 0) {
		f->found++;
		return 0;
	}
	if (rc != MDB_NOTFOUND) {
		f->rc = sky__error_lmdb(rc, "checking the query index");
		return 1;
	}
	char desc[256];
	describe_key(key, len, desc, sizeof(desc));
	problem(f->pr, "index: session %s/%s has no entry under '%s'", f->app,
		f->sid, desc);
	return 0;
}

typedef struct {
	const unsigned char *key;
	size_t len;
	int found;
} find_ctx;

static int find_key(const unsigned char *key, size_t len, void *arg)
{
	find_ctx *f = arg;
	if (len == f->len && memcmp(key, f->key, len) == 0) {
		f->found = 1;
		return 1;
	}
	return 0;
}

/*
 * Backward direction: every item names an existing record at the same
 * position; *valid counts the items that do. When the counts show more
 * valid items than expected ones, a second, `deep` pass also checks that
 * each record really has the key (parsing it) and reports only that.
 */
static int check_backward(MDB_txn *txn, sky_cache *c, problems_t *pr, int deep,
			  unsigned version, uint64_t *valid)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_INDEX), &cur);
	if (rc)
		return sky__error_lmdb(rc, "checking the query index");
	MDB_val key, val;
	uint64_t n = 0;
	int ret = 0;
	for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
		char app[SKY_MAX_ID_BYTES + 1], sid[SKY_MAX_ID_BYTES + 1];
		char desc[256];
		if (key_app(&key, app) < 0 || val.mv_size <= 8 ||
		    val.mv_size > SKY_IX_POS_MAX) {
			if (deep)
				continue;
			describe_key(key.mv_data, key.mv_size, desc,
				     sizeof(desc));
			problem(pr, "index: malformed entry under '%s'", desc);
			continue;
		}
		sky_ixpos pos;
		sky__ixpos_set(&pos, &val);
		sky__ixpos_sid(&pos, sid);
		sky_record rec;
		int grc = sky__record_get(txn, c, app, sid, &rec);
		if (grc == SKY_ENOTFOUND) {
			if (deep)
				continue;
			describe_key(key.mv_data, key.mv_size, desc,
				     sizeof(desc));
			problem(pr,
				"index: entry '%s' names session %s/%s, "
				"which is not in the cache",
				desc, app, sid);
			continue;
		}
		if (grc < 0) {
			ret = grc;
			break;
		}
		if (rec.created_us != sky__ixpos_created(&pos)) {
			if (deep)
				continue;
			describe_key(key.mv_data, key.mv_size, desc,
				     sizeof(desc));
			problem(pr,
				"index: entry '%s' for session %s/%s has "
				"a createdAt that differs from the record",
				desc, app, sid);
			continue;
		}
		n++;
		if (!deep)
			continue;
		json_t *s = sky__record_json(&rec);
		if (!s)
			continue; /* the session check reports bad JSON */
		find_ctx f = {key.mv_data, key.mv_size, 0};
		int erc = entries_v(s, version, find_key, &f);
		json_decref(s);
		if (erc < 0) {
			ret = erc;
			break;
		}
		if (!f.found) {
			describe_key(key.mv_data, key.mv_size, desc,
				     sizeof(desc));
			problem(pr,
				"index: entry '%s' for session %s/%s does "
				"not match the record",
				desc, app, sid);
		}
	}
	if (ret == 0 && rc != MDB_NOTFOUND && rc != 0)
		ret = sky__error_lmdb(rc, "checking the query index");
	mdb_cursor_close(cur);
	*valid = n;
	return ret;
}

int sky__index_has_value(MDB_txn *txn, sky_cache *c, const char *app, char code,
			 const char *value, size_t vlen, const char *sid,
			 int64_t created_us)
{
	unsigned char pos[8 + SKY_MAX_ID_BYTES];
	size_t sid_len = strlen(sid);
	if (sid_len > SKY_MAX_ID_BYTES)
		return sky__error_input("session id longer than %u bytes",
					SKY_MAX_ID_BYTES);
	sky_ixkey k;
	sky__ixkey_value(&k, app, code, NULL, value, vlen);
	sky__put_time(pos, created_us);
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
	return rc ? sky__error_lmdb(rc, "reading the query index") : 1;
}

int sky__index_check(MDB_txn *txn, sky_cache *c, sky_buf *problems)
{
	problems_t pr = {problems, 0};
	unsigned version = sky__index_version(txn, c);
	MDB_cursor *scur, *icur;
	int rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_SESSIONS), &scur);
	if (rc)
		return sky__error_lmdb(rc, "checking the query index");
	if ((rc = mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_INDEX), &icur))) {
		mdb_cursor_close(scur);
		return sky__error_lmdb(rc, "checking the query index");
	}
	/* Forward: each record has each of its entries. */
	fwd_ctx f = {icur, {0, NULL}, NULL, NULL, &pr, 0, 0};
	MDB_val key, val;
	int ret = 0;
	for (rc = mdb_cursor_get(scur, &key, &val, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(scur, &key, &val, MDB_NEXT)) {
		sky_record rec;
		if (sky__record_decode(&val, &rec) < 0)
			continue; /* reported by the session check */
		json_t *s = sky__record_json(&rec);
		if (!s)
			continue;
		const char *app = sky__json_str(s, "applicationId");
		const char *sid = sky__json_str(s, "sessionId");
		if (!app || !sid) {
			json_decref(s);
			continue;
		}
		sky_ixpos pos;
		sky__ixpos_make(&pos, rec.created_us, sid);
		f.pos.mv_size = pos.len;
		f.pos.mv_data = pos.data;
		f.app = app;
		f.sid = sid;
		int erc = entries_v(s, version, expect_entry, &f);
		json_decref(s);
		if (erc < 0 || f.rc < 0) {
			ret = erc < 0 ? erc : f.rc;
			break;
		}
	}
	if (ret == 0 && rc != MDB_NOTFOUND)
		ret = sky__error_lmdb(rc, "checking the query index");
	mdb_cursor_close(icur);
	mdb_cursor_close(scur);
	if (ret < 0)
		return ret;

	/*
	 * Backward: a cheap pass first. Items are unique (DUPSORT) and each
	 * expected item found above is a valid one, so when there are more
	 * valid items than found ones, some item is not expected by its
	 * record: only then is the slow pass run to name it.
	 */
	uint64_t valid = 0;
	if ((ret = check_backward(txn, c, &pr, 0, version, &valid)) < 0)
		return ret;
	if (valid > f.found) {
		unsigned long before = pr.problems;
		if ((ret = check_backward(txn, c, &pr, 1, version, &valid)) < 0)
			return ret;
		if (pr.problems == before)
			problem(&pr,
				"index: %llu entries but only %llu "
				"expected",
				(unsigned long long)valid,
				(unsigned long long)f.found);
	}
	if (pr.problems > CHECK_MAX_LINES)
		sky__buf_printf(problems,
				"index: %lu more problems not shown\n",
				pr.problems - CHECK_MAX_LINES);
	return pr.problems ? SKY_EINVAL : 0;
}
