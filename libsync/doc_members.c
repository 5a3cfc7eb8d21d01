/*
 * doc_members.c - the member form of session data documents
 * (doc_members.h): a document too large for one value stored member by
 * member (layout: doc_layout.h), so that an RFC 7396 merge patch reads and
 * writes only what it names, and a read rebuilds the text from the
 * entries.
 *
 * Costs. Keeping a document as one JSON text would make a 100-byte patch
 * to a 1 MB document parse and rewrite 1 MB (DESIGN.md section 4). Here
 * sky__doc_patch_object looks up each member the patch names (one cursor
 * seek, which then stays on the member, so replacing or deleting it needs
 * no second search), writes the ones it sets, and deletes the subtrees it
 * replaces; it never reads the rest of the document. New nodes take ids
 * from the header, so ids grow without bound; when a patch would run out
 * of 32-bit ids, doc.c first rewrites the document with ids from 1 (once
 * per 4 billion objects created).
 *
 * Runs (schema 4, doc_layout.h): small members of an object share one
 * entry holding their text, so a write of a whole object packs them
 * (run_append, put_run), a patch rewrites the run that holds a member it
 * names (patch_run, rewrite_run, merging with doc_text.c) and splits it
 * where a member no longer fits, and a read copies the run's bytes.
 *
 * Reading walks the document's key range once with one cursor (MDB_NEXT is
 * the cheapest way through a B-tree, cheaper than a seek per object),
 * records where each node's entries are (pointers into the map; nothing is
 * copied; for the text, each value's seal is left to be checked right
 * before the value is used, so that a large document's bytes are read
 * from memory once), then writes the text out in tree order from those
 * pointers, finding each child's entries by binary search, with an explicit
 * stack so the depth of a document is limited only by memory. Object keys come
 * out sorted by name bytes, long names last.
 *
 * What it keeps true: the invariants of doc_layout.h after every write it
 * makes, with the writer's weight kept equal to the sum of
 * sky__doc_entry_weight() over the entries (the caller writes the header);
 * a reader meeting data that breaks them reports it (MDB_CORRUPTED)
 * instead of looping or trusting it.
 */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "doc_bounds.h"
#include "doc_layout.h"
#include "doc_members.h"
#include "doc_text.h"
#include "error.h"
#include "json.h"
#include "sealed.h"

size_t sky__doc_run_max = SKY__DOC_RUN_MAX;
size_t sky__doc_run_member_max = SKY__DOC_RUN_MEMBER_MAX;

/* ------------------------------------------------------------------ */
/* Scanning a whole document (read, read_json)                         */
/* ------------------------------------------------------------------ */

/* Where the entries of one node are in scan.e: [start, end). */
typedef struct {
	uint32_t id;
	uint32_t visited;
	size_t start, end;
} node_span;

/*
 * Every member entry of a document in key order, and the span of each node
 * with entries, in id order. Small documents fit the inline arrays, so
 * reading one allocates nothing but its output.
 */
typedef struct {
	sky_doc_entry *e;
	size_t n, cap;
	node_span *nodes;
	size_t n_nodes, cap_nodes;
	size_t bytes; /* names and payloads, to size the output */
	MDB_txn *txn;
	int unchecked; /* values' seals not checked yet (check_entry) */
	sky_doc_entry e_inline[64];
	node_span nodes_inline[16];
} scan;

static void scan_init(scan *s)
{
	s->e = s->e_inline;
	s->n = 0;
	s->cap = sizeof(s->e_inline) / sizeof(s->e_inline[0]);
	s->nodes = s->nodes_inline;
	s->n_nodes = 0;
	s->cap_nodes = sizeof(s->nodes_inline) / sizeof(s->nodes_inline[0]);
	s->bytes = 0;
	s->txn = NULL;
	s->unchecked = 0;
}

static void scan_free(scan *s)
{
	if (s->e != s->e_inline)
		free(s->e);
	if (s->nodes != s->nodes_inline)
		free(s->nodes);
}

/*
 * Double the capacity of an array that starts out inline. Returns the new
 * array, or NULL (error recorded, the old array untouched).
 */
static void *grow(void *arr, size_t *cap, const void *inline_arr, size_t size)
{
	size_t ncap = *cap * 2;
	void *p;
	if (arr == inline_arr) {
		p = malloc(ncap * size);
		if (p)
			memcpy(p, arr, *cap * size);
	} else {
		p = realloc(arr, ncap * size);
	}
	if (!p) {
		sky__error_nomem();
		return NULL;
	}
	*cap = ncap;
	return p;
}

/* One step of scan_doc's walk. */
static int cursor_step(MDB_cursor *cur, MDB_val *k, MDB_val *v,
		       MDB_cursor_op op, int defer, scan *s)
{
	if (!defer)
		return mdb_cursor_get(cur, k, v, op);
	int check;
	int rc = sky__sealed_cursor_get_unchecked(cur, k, v, op, &check);
	if (rc == 0 && check)
		s->unchecked = 1;
	return rc;
}

/* The seal of an entry scan_doc left unchecked: 0, or the damage. */
static int check_entry(const scan *s, const sky_doc_entry *e)
{
	if (!s->unchecked)
		return 0;
	const unsigned char *value = e->is_long ? e->name - 4 : e->payload - 1;
	MDB_val v = {(size_t)(e->payload + e->payload_len - value),
		     (void *)value};
	int rc = sky__sealed_check(s->txn, &v);
	return rc ? sky__error_lmdb(rc, "session data: read") : 0;
}

/*
 * Walk the document's key range once. The entries borrow the stored bytes,
 * which stay put until the transaction ends or writes. With `defer`, the
 * values' seals are left for check_entry() as each entry is used (the
 * text's read: each value is then read once, right before it is copied).
 */
static int scan_doc(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, scan *s,
		    int defer)
{
	unsigned char prefix[HEADER_LEN];
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	sky__put_be64(prefix, docid);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return sky__error_lmdb(rc, "session data: open cursor");
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	s->txn = txn;
	for (rc = cursor_step(cur, &k, &v, MDB_SET_RANGE, defer, s); rc == 0;
	     rc = cursor_step(cur, &k, &v, MDB_NEXT, defer, s)) {
		const char *why;
		if (k.mv_size < HEADER_LEN ||
		    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
			break;
		if (k.mv_size == HEADER_LEN)
			continue;
		if (s->n == s->cap) {
			sky_doc_entry *p = grow(s->e, &s->cap, s->e_inline,
						sizeof(sky_doc_entry));
			if (!p)
				goto fail;
			s->e = p;
		}
		sky_doc_entry *e = &s->e[s->n];
		if (sky__doc_parse_entry(&k, &v, e, &why) < 0) {
			sky__doc_corrupt(docid, why);
			goto fail;
		}
		if (s->n_nodes == 0 || s->nodes[s->n_nodes - 1].id != e->node) {
			if (s->n_nodes == s->cap_nodes) {
				node_span *p =
				    grow(s->nodes, &s->cap_nodes,
					 s->nodes_inline, sizeof(node_span));
				if (!p)
					goto fail;
				s->nodes = p;
			}
			node_span *ns = &s->nodes[s->n_nodes++];
			ns->id = e->node;
			ns->visited = 0;
			ns->start = s->n;
		}
		s->n++;
		s->nodes[s->n_nodes - 1].end = s->n;
		s->bytes += e->name_len + e->payload_len;
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		rc = sky__error_lmdb(rc, "session data: read");
		mdb_cursor_close(cur);
		return rc;
	}
	mdb_cursor_close(cur);
	return 0;
fail:
	mdb_cursor_close(cur);
	return -1;
}

/* The span of node `id`, or NULL when it has no entries. */
static node_span *find_node(scan *s, uint32_t id)
{
	size_t lo = 0, hi = s->n_nodes;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->nodes[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < s->n_nodes && s->nodes[lo].id == id ? &s->nodes[lo] : NULL;
}

/*
 * The node a member 'o' entry points to, checking the tree invariants so
 * that corrupt data cannot make a reader loop or blow up: the child id must
 * be greater than the parent's and seen once. *span is NULL for an empty
 * object. Returns 0 or -1.
 */
static int child_span(scan *s, uint64_t docid, const sky_doc_entry *e,
		      node_span **span)
{
	uint32_t child = sky__get_be32(e->payload);
	if (child <= e->node)
		return sky__doc_corrupt(
		    docid, "object member points back up the tree");
	node_span *ns = find_node(s, child);
	if (ns) {
		if (ns->visited)
			return sky__doc_corrupt(docid, "node referenced twice");
		ns->visited = 1;
	}
	*span = ns;
	return 0;
}

/* One open object while writing out: entries [i, end) are left. */
typedef struct {
	size_t start, i, end;
	json_t *obj; /* read_json only */
} frame;

typedef struct {
	frame *f;
	size_t n, cap;
	frame f_inline[32];
} frame_stack;

static void stack_init(frame_stack *st)
{
	st->f = st->f_inline;
	st->n = 0;
	st->cap = sizeof(st->f_inline) / sizeof(st->f_inline[0]);
}

static void stack_free(frame_stack *st)
{
	if (st->f != st->f_inline)
		free(st->f);
}

static int stack_push(frame_stack *st, const node_span *ns, json_t *obj)
{
	if (st->n == st->cap) {
		frame *p = grow(st->f, &st->cap, st->f_inline, sizeof(frame));
		if (!p)
			return -1;
		st->f = p;
	}
	frame *f = &st->f[st->n++];
	f->start = f->i = ns->start;
	f->end = ns->end;
	f->obj = obj;
	return 0;
}

/* Make room for n more bytes (and the NUL) unless there is room already. */
static inline int out_room(sky_buf *out, size_t n)
{
	return out->len + n < out->cap ? 0 : sky__buf_reserve(out, n);
}

/* Whether a name goes out between quotes as it is, with no escapes. */
static inline int plain_name(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
			return 0;
	return 1;
}

/*
 * Write the scanned document out as compact JSON text. This is the hot
 * path of reads: each member costs one room check and a few copies into
 * the buffer; names are escaped only when they need it.
 */
static int emit_text(scan *s, uint64_t docid, sky_buf *out)
{
	frame_stack st;
	node_span *root;
	int rc = -1;

	/* Quotes, colon and comma per member, and braces for objects, are
	 * all the text adds unless names need escapes: one reservation
	 * covers the common case. */
	if (sky__buf_reserve(out, s->bytes + 6 * s->n + 2) < 0)
		return -1;
	root = find_node(s, ROOT_NODE);
	if (!root)
		return sky__buf_append(out, "{}", 2);
	stack_init(&st);
	out->data[out->len++] = '{';
	if (stack_push(&st, root, NULL) < 0)
		goto done;
	while (st.n > 0) {
		frame *f = &st.f[st.n - 1];
		if (f->i == f->end) {
			if (out_room(out, 1) < 0)
				goto done;
			out->data[out->len++] = '}';
			st.n--;
			continue;
		}
		const sky_doc_entry *e = &s->e[f->i];
		int damage = check_entry(s, e);
		if (damage < 0) {
			rc = damage;
			goto done;
		}
		if (out_room(out, e->name_len + e->payload_len + 6) < 0)
			goto done;
		if (f->i++ != f->start)
			out->data[out->len++] = ',';
		if (e->type == TYPE_RUN) {
			/* Members' text as it is: the bytes of a read. */
			memcpy(out->data + out->len, e->payload,
			       e->payload_len);
			out->len += e->payload_len;
			continue;
		}
		if (plain_name(e->name, e->name_len)) {
			out->data[out->len++] = '"';
			memcpy(out->data + out->len, e->name, e->name_len);
			out->len += e->name_len;
			out->data[out->len++] = '"';
		} else if (sky__buf_json_string(out, (const char *)e->name,
						e->name_len) < 0 ||
			   out_room(out, e->payload_len + 3) < 0) {
			goto done;
		}
		out->data[out->len++] = ':';
		if (e->type == TYPE_VALUE) {
			memcpy(out->data + out->len, e->payload,
			       e->payload_len);
			out->len += e->payload_len;
			continue;
		}
		node_span *child;
		if (child_span(s, docid, e, &child) < 0)
			goto done;
		out->data[out->len++] = '{';
		if (!child)
			out->data[out->len++] = '}';
		else if (stack_push(&st, child, NULL) < 0)
			goto done;
	}
	rc = 0;
done:
	out->data[out->len] = '\0';
	stack_free(&st);
	return rc;
}

/* Build the scanned document as a jansson object. */
static int build_json(scan *s, uint64_t docid, json_t **out)
{
	frame_stack st;
	node_span *root;
	json_t *doc = json_object();
	sky_buf wrap = SKY_BUF_INIT;
	int rc = -1;

	if (!doc)
		return sky__error_nomem();
	stack_init(&st);
	root = find_node(s, ROOT_NODE);
	if (root && stack_push(&st, root, doc) < 0)
		goto done;
	while (st.n > 0) {
		frame *f = &st.f[st.n - 1];
		if (f->i == f->end) {
			st.n--;
			continue;
		}
		const sky_doc_entry *e = &s->e[f->i++];
		json_t *parent = f->obj, *value;
		node_span *child = NULL;
		if (e->type == TYPE_RUN) {
			json_error_t jerr;
			sky__buf_clear(&wrap);
			if (sky__buf_putc(&wrap, '{') < 0 ||
			    sky__buf_append(&wrap, e->payload, e->payload_len) <
				0 ||
			    sky__buf_putc(&wrap, '}') < 0)
				goto done;
			value = sky__json_loadb(wrap.data, wrap.len, 0, &jerr);
			if (!value || !json_is_object(value)) {
				json_decref(value);
				sky__doc_corrupt(docid,
						 "run of members is not JSON");
				goto done;
			}
			rc = json_object_update(parent, value);
			json_decref(value);
			if (rc < 0) {
				rc = -1;
				sky__error_nomem();
				goto done;
			}
			rc = -1;
			continue;
		}
		if (e->type == TYPE_VALUE) {
			json_error_t jerr;
			/* sky__json_loadb: a value may hold U+0000 or a big
			 * number, and it was stored whole. */
			value = sky__json_loadb((const char *)e->payload,
						e->payload_len, JSON_DECODE_ANY,
						&jerr);
			if (!value) {
				sky__doc_corrupt(docid,
						 "stored value is not JSON");
				goto done;
			}
		} else {
			if (child_span(s, docid, e, &child) < 0)
				goto done;
			if (!(value = json_object())) {
				sky__error_nomem();
				goto done;
			}
		}
		/* The checking setter: a stored name that is not UTF-8 is
		 * corrupt data, and jansson objects must not hold one. */
		if (json_object_setn_new(parent, (const char *)e->name,
					 e->name_len, value) < 0) {
			sky__doc_corrupt(docid,
					 "member name is not valid UTF-8");
			goto done;
		}
		if (child && stack_push(&st, child, value) < 0)
			goto done;
	}
	*out = doc;
	doc = NULL;
	rc = 0;
done:
	stack_free(&st);
	sky__buf_free(&wrap);
	json_decref(doc);
	return rc;
}

int sky__doc_members_read(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			  sky_buf *out)
{
	scan s;
	size_t old_len = out->len;
	int rc;

	scan_init(&s);
	rc = scan_doc(txn, dbi, docid, &s, 1);
	if (rc == 0)
		rc = emit_text(&s, docid, out);
	if (rc < 0 && out->data) {
		out->len = old_len;
		out->data[old_len] = '\0';
	}
	scan_free(&s);
	return rc;
}

int sky__doc_members_read_json(MDB_txn *txn, MDB_dbi dbi, uint64_t docid,
			       json_t **out)
{
	scan s;
	int rc;

	scan_init(&s);
	rc = scan_doc(txn, dbi, docid, &s, 0);
	if (rc == 0)
		rc = build_json(&s, docid, out);
	scan_free(&s);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */
/* ------------------------------------------------------------------ */

void sky__doc_writer_init(sky_doc_writer *w, MDB_txn *txn, MDB_dbi dbi,
			  uint64_t docid)
{
	memset(w, 0, sizeof(*w));
	w->txn = txn;
	w->dbi = dbi;
	w->docid = docid;
	w->next = ROOT_NODE + 1;
	/* Runs from schema 4 on (store.h): a process of an older library
	 * may have a cache of 3 open, and would not know them. A test's own
	 * environment (no seal context) writes them. */
	const sky_seal_env *se = mdb_env_get_userctx(mdb_txn_env(txn));
	w->runs = sky__doc_run_max > 0 && (!se || se->schema >= 4);
}

void sky__doc_writer_free(sky_doc_writer *w)
{
	if (w->cur)
		mdb_cursor_close(w->cur);
	sky__buf_free(&w->val);
	sky__buf_free(&w->run);
	sky__buf_free(&w->wrap);
	free(w->pending);
}

int sky__doc_writer_cursor(sky_doc_writer *w)
{
	int rc;
	if (w->cur)
		return 0;
	if ((rc = mdb_cursor_open(w->txn, w->dbi, &w->cur)) != 0)
		return sky__error_lmdb(rc, "session data: open cursor");
	return 0;
}

/* The header of the member form: next id, weight, and its closing 0. */
int sky__doc_write_header(sky_doc_writer *w)
{
	unsigned char key[HEADER_LEN], val[MEMBERS_HEADER_LEN];
	MDB_val k = {HEADER_LEN, key}, v = {sizeof(val), val};
	int rc;

	sky__put_be64(key, w->docid);
	sky__put_be32(val, w->next);
	sky__put_be64(val + 4, w->weight);
	val[12] = 0;
	if ((rc = mdb_put(w->txn, w->dbi, &k, &v, 0)) != 0)
		return sky__error_lmdb(rc, "session data: write header");
	w->header_dirty = 0;
	return 0;
}

static int alloc_node(sky_doc_writer *w, uint32_t *id)
{
	if (w->next == UINT32_MAX)
		return sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
				      "session data %016" PRIx64
				      ": more than 2^32 - 1 objects",
				      w->docid);
	*id = w->next++;
	w->header_dirty = 1;
	return 0;
}

/* Delete every entry whose key starts with key[0, len). */
static int delete_prefix(sky_doc_writer *w, const unsigned char *key,
			 size_t len)
{
	MDB_val k = {len, (void *)key}, v;
	int rc;

	if ((rc = sky__doc_writer_cursor(w)) < 0)
		return rc;
	/* After mdb_cursor_del the cursor already sits on the next entry,
	 * and the MDB_NEXT that follows returns that entry, not the one after.
	 */
	for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
		if (k.mv_size < len || memcmp(k.mv_data, key, len) != 0)
			return 0;
		if ((rc = mdb_cursor_del(w->cur, 0)) != 0)
			return sky__error_lmdb(rc, "session data: delete");
	}
	if (rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "session data: delete");
	return 0;
}

static int push_pending(sky_doc_writer *w, uint32_t node)
{
	if (w->n_pending == w->cap_pending) {
		size_t ncap = w->cap_pending ? w->cap_pending * 2 : 16;
		uint32_t *p = realloc(w->pending, ncap * sizeof(*p));
		if (!p)
			return sky__error_nomem();
		w->pending = p;
		w->cap_pending = ncap;
	}
	w->pending[w->n_pending++] = node;
	return 0;
}

/*
 * Delete node `node` and every node below it. An explicit list of nodes
 * still to delete keeps the C stack flat whatever the depth.
 */
static int delete_subtree(sky_doc_writer *w, uint32_t node)
{
	unsigned char prefix[NODE_PREFIX_LEN];
	MDB_val k, v;
	int rc;

	if ((rc = sky__doc_writer_cursor(w)) < 0)
		return rc;
	w->n_pending = 0;
	if ((rc = push_pending(w, node)) < 0)
		return rc;
	while (w->n_pending > 0) {
		node = w->pending[--w->n_pending];
		sky__doc_node_prefix(prefix, w->docid, node);
		k.mv_data = prefix;
		k.mv_size = NODE_PREFIX_LEN;
		/* See delete_prefix() for MDB_NEXT after a delete. */
		for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE);
		     rc == 0; rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
			sky_doc_entry e;
			const char *why;
			if (k.mv_size < NODE_PREFIX_LEN ||
			    memcmp(k.mv_data, prefix, NODE_PREFIX_LEN) != 0)
				break;
			if (sky__doc_parse_entry(&k, &v, &e, &why) < 0)
				return sky__doc_corrupt(w->docid, why);
			if (e.type == TYPE_OBJECT) {
				uint32_t child = sky__get_be32(e.payload);
				if (child <= node)
					return sky__doc_corrupt(
					    w->docid, "object member points "
						      "back up the tree");
				if ((rc = push_pending(w, child)) < 0)
					return rc;
			}
			w->weight -= sky__doc_entry_weight(&e);
			if ((rc = mdb_cursor_del(w->cur, 0)) != 0)
				return sky__error_lmdb(rc,
						       "session data: delete");
		}
		if (rc != 0 && rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "session data: delete");
	}
	w->header_dirty = 1;
	return 0;
}

/*
 * Find member `name` of `node` and fill w->sl with its key and, when it is
 * stored, its type and child. For a long name, scan the keys sharing its
 * hash; when it is not stored, pick the first free counter. A member found
 * is under the writer's cursor, so that it can be replaced or deleted there
 * without a second search down the B-tree.
 */
static int find_member(sky_doc_writer *w, uint32_t node, const char *name,
		       size_t len)
{
	sky_doc_slot *sl = &w->sl;
	MDB_val k, v;
	sky_doc_entry e;
	const char *why;
	int rc;

	sl->found = 0;
	sl->in_run = 0;
	sl->is_long = sky__doc_is_long_name(name, len);
	sky__doc_node_prefix(sl->key, w->docid, node);
	if (!sl->is_long) {
		memcpy(sl->key + NODE_PREFIX_LEN, name, len);
		sl->key_len = NODE_PREFIX_LEN + len;
		k.mv_data = sl->key;
		k.mv_size = sl->key_len;
		if ((rc = sky__doc_writer_cursor(w)) < 0)
			return rc;
		rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE);
		if (rc == 0 && k.mv_size == sl->key_len &&
		    memcmp(k.mv_data, sl->key, sl->key_len) == 0)
			goto short_found;
		if (rc != 0 && rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "session data: read");
		/* Not a key of its own: it is the run's before it, if the
		 * entry before is one (doc_layout.h: "Runs"). */
		rc = mdb_cursor_get(w->cur, &k, &v,
				    rc == MDB_NOTFOUND ? MDB_LAST : MDB_PREV);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc != 0)
			return sky__error_lmdb(rc, "session data: read");
		if (k.mv_size < NODE_PREFIX_LEN ||
		    memcmp(k.mv_data, sl->key, NODE_PREFIX_LEN) != 0)
			return 0;
		if (sky__doc_parse_entry(&k, &v, &e, &why) < 0)
			return sky__doc_corrupt(w->docid, why);
		if (e.type == TYPE_RUN)
			goto in_run;
		return 0;
	} else {
		unsigned char used[256 / 8] = {0};
		int counter;
		sl->key[NODE_PREFIX_LEN] = LONG_MARK;
		sky__put_be64(sl->key + NODE_PREFIX_LEN + 1,
			      sky__doc_name_hash(name, len));
		sl->key[LONG_PREFIX_LEN] = 0;
		sl->key_len = LONG_KEY_LEN;
		if ((rc = sky__doc_writer_cursor(w)) < 0)
			return rc;
		k.mv_data = sl->key;
		k.mv_size = LONG_KEY_LEN;
		for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE);
		     rc == 0; rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
			const unsigned char *kb = k.mv_data;
			if (k.mv_size != LONG_KEY_LEN ||
			    memcmp(kb, sl->key, LONG_PREFIX_LEN) != 0)
				break;
			if (sky__doc_parse_entry(&k, &v, &e, &why) < 0)
				return sky__doc_corrupt(w->docid, why);
			if (e.name_len == len &&
			    memcmp(e.name, name, len) == 0) {
				sl->key[LONG_PREFIX_LEN] = kb[LONG_PREFIX_LEN];
				goto found;
			}
			used[kb[LONG_PREFIX_LEN] / 8] |=
			    (unsigned char)(1u << (kb[LONG_PREFIX_LEN] % 8));
		}
		if (rc != 0 && rc != MDB_NOTFOUND)
			return sky__error_lmdb(rc, "session data: read");
		for (counter = 0; counter < 256; counter++)
			if (!(used[counter / 8] & (1u << (counter % 8))))
				break;
		if (counter == 256)
			return sky__error_set(
			    SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
			    "session data %016" PRIx64
			    ": too many long member names with one hash",
			    w->docid);
		sl->key[LONG_PREFIX_LEN] = (unsigned char)counter;
		return 0;
	}
short_found:
	/* A short name: decode the value found. */
	if (sky__doc_parse_entry(&k, &v, &e, &why) < 0)
		return sky__doc_corrupt(w->docid, why);
	if (e.type == TYPE_RUN)
		goto in_run;
found:
	sl->found = 1;
	sl->type = e.type;
	sl->weight = sky__doc_entry_weight(&e);
	sl->child = e.type == TYPE_OBJECT ? sky__get_be32(e.payload) : 0;
	if (e.type == TYPE_OBJECT && sl->child <= node)
		return sky__doc_corrupt(
		    w->docid, "object member points back up the tree");
	return 0;
in_run:
	/* The cursor stays on the run, which patch_run() rewrites. */
	sl->in_run = 1;
	sl->weight = sky__doc_entry_weight(&e);
	memcpy(sl->run_key, k.mv_data, k.mv_size);
	sl->run_key_len = k.mv_size;
	return 0;
}

/* Make w->sl the slot of a member of a node created in this write: there
 * is nothing to look up, except the counter of a long name. */
static int new_member(sky_doc_writer *w, uint32_t node, const char *name,
		      size_t len)
{
	sky_doc_slot *sl = &w->sl;
	if (sky__doc_is_long_name(name, len))
		return find_member(w, node, name, len);
	sky__doc_node_prefix(sl->key, w->docid, node);
	memcpy(sl->key + NODE_PREFIX_LEN, name, len);
	sl->key_len = NODE_PREFIX_LEN + len;
	sl->found = 0;
	sl->in_run = 0;
	sl->is_long = 0;
	return 0;
}

/*
 * Store member `name` at w->sl as an object member pointing to `child`
 * (value and text NULL), the scalar or array `value`, or the value's
 * compact `text` of `text_len` bytes. With `at_cursor`, the member exists
 * and the writer's cursor is still on it.
 */
static int put_member(sky_doc_writer *w, const char *name, size_t len,
		      json_t *value, const char *text, size_t text_len,
		      uint32_t child, int at_cursor)
{
	sky_doc_slot *sl = &w->sl;
	MDB_val k = {sl->key_len, sl->key}, v;
	int is_object = !value && !text;
	int rc;

	sky__buf_clear(&w->val);
	if (sl->is_long) {
		unsigned char n[4];
		sky__put_be32(n, (uint32_t)len);
		if (sky__buf_append(&w->val, n, 4) < 0 ||
		    sky__buf_append(&w->val, name, len) < 0)
			return -1;
	}
	if (is_object) {
		unsigned char c[5] = {TYPE_OBJECT};
		sky__put_be32(c + 1, child);
		if (sky__buf_append(&w->val, c, 5) < 0)
			return -1;
	} else if (sky__buf_putc(&w->val, TYPE_VALUE) < 0 ||
		   (value ? sky__json_dump_buf(&w->val, value)
			  : sky__buf_append(&w->val, text, text_len)) < 0) {
		return -1;
	}
	v.mv_data = w->val.data;
	v.mv_size = w->val.len;
	/* The value's length less type byte (and long name) is its payload. */
	w->weight +=
	    len +
	    (!is_object ? w->val.len - 1 - (sl->is_long ? 4 + len : 0) + 4 : 6);
	if (sl->found)
		w->weight -= sl->weight;
	w->header_dirty = 1;
	if (at_cursor)
		rc = mdb_cursor_put(w->cur, &k, &v, MDB_CURRENT);
	else
		rc = mdb_put(w->txn, w->dbi, &k, &v, 0);
	if (rc != 0)
		return sky__error_lmdb(rc, "session data: write");
	return 0;
}

/*
 * Store the run whose text (type byte first) is in `run`, under the key
 * of `node` and the first member's name [name, name + len), as a new
 * entry (at_cursor 0) or over the entry under the cursor.
 */
static int put_run(sky_doc_writer *w, uint32_t node, const char *name,
		   size_t len, const sky_buf *run, int at_cursor)
{
	unsigned char key[MEMBER_KEY_MAX];
	MDB_val k = {NODE_PREFIX_LEN + len, key}, v = {run->len, run->data};
	int rc;

	sky__doc_node_prefix(key, w->docid, node);
	memcpy(key + NODE_PREFIX_LEN, name, len);
	w->weight += run->len; /* the text, and the comma it leaves out */
	w->header_dirty = 1;
	if (at_cursor)
		rc = mdb_cursor_put(w->cur, &k, &v, MDB_CURRENT);
	else
		rc = mdb_put(w->txn, w->dbi, &k, &v, 0);
	if (rc != 0)
		return sky__error_lmdb(rc, "session data: write");
	return 0;
}

/*
 * Append member `name`: `value` to the run in `run` (its type byte first)
 * when the member may be in a run and its value's text is small enough:
 * returns 1 then, 0 (run as it was) when it may not, or -1. A member is
 * `"name":text`, after a comma unless it is the run's first.
 */
static int run_append(sky_doc_writer *w, sky_buf *run, const char *name,
		      size_t len, json_t *value, int strip)
{
	size_t mark = run->len, start;
	int rc;

	if (!w->runs || !sky__doc_run_name(name, len))
		return 0;
	if ((mark > 1 && sky__buf_putc(run, ',') < 0) ||
	    sky__buf_putc(run, '"') < 0 ||
	    sky__buf_append(run, name, len) < 0 ||
	    sky__buf_append(run, "\":", 2) < 0)
		return -1;
	start = run->len;
	if (json_is_object(value)) {
		rc = sky__doc_dump_sorted(run, value,
					  start + sky__doc_run_member_max,
					  SKY__DOC_WHOLE_DEPTH_MAX, strip);
		if (rc < 0)
			return -1;
	} else {
		if (sky__json_dump_buf(run, value) < 0)
			return -1;
		rc = run->len - start > sky__doc_run_member_max;
	}
	if (rc) {
		run->len = mark;
		return 0;
	}
	return 1;
}

/* One member of an object being written, for sorting by name bytes. */
typedef struct {
	const char *name;
	size_t len;
	json_t *value;
} member_ref;

static int cmp_member_ref(const void *a, const void *b)
{
	const member_ref *x = a, *y = b;
	int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int write_object(sky_doc_writer *w, uint32_t node, json_t *obj,
			int strip_nulls);

/*
 * Store `value` as member `name` at w->sl, found there or not and not in
 * a run, as an object node (MergePatch({}, value) with strip_nulls) or a
 * value entry.
 */
static int put_standalone(sky_doc_writer *w, const char *name, size_t len,
			  json_t *value, int strip_nulls, int at_cursor)
{
	uint32_t child = 0;
	int rc;

	if (!json_is_object(value))
		return put_member(w, name, len, value, NULL, 0, 0, at_cursor);
	if ((rc = alloc_node(w, &child)) < 0 ||
	    (rc = put_member(w, name, len, NULL, NULL, 0, child, at_cursor)) <
		0)
		return rc;
	return write_object(w, child, value, strip_nulls);
}

/*
 * put_standalone(), or in a run of its own when the member fits one. The
 * run is built in w->val, which nothing else holds meanwhile.
 */
static int put_value(sky_doc_writer *w, uint32_t node, const char *name,
		     size_t len, json_t *value, int strip_nulls, int at_cursor)
{
	int rc;

	if (!w->sl.is_long) {
		sky__buf_clear(&w->val);
		if (sky__buf_putc(&w->val, TYPE_RUN) < 0 ||
		    (rc = run_append(w, &w->val, name, len, value,
				     strip_nulls)) < 0)
			return -1;
		if (rc) {
			if (w->sl.found)
				w->weight -= w->sl.weight;
			return put_run(w, node, name, len, &w->val, at_cursor);
		}
	}
	return put_standalone(w, name, len, value, strip_nulls, at_cursor);
}

/*
 * Write the members of `obj` into the new, empty node `node`. With
 * strip_nulls this is MergePatch({}, obj) (null members are left out, at
 * every depth); without, obj is stored as it is. Members go in name
 * order, so that consecutive small ones share runs, each flushed when the
 * next would take it past sky__doc_run_max.
 */
static int write_object(sky_doc_writer *w, uint32_t node, json_t *obj,
			int strip_nulls)
{
	member_ref local[32], *m = local;
	size_t n = json_object_size(obj), i = 0, first = 0;
	sky_buf run = SKY_BUF_INIT;
	const char *key;
	size_t key_len;
	json_t *value;
	int rc = -1;

	if (n > sizeof(local) / sizeof(local[0]) &&
	    !(m = malloc(n * sizeof(*m))))
		return sky__error_nomem();
	json_object_keylen_foreach(obj, key, key_len, value) {
		m[i].name = key;
		m[i].len = key_len;
		m[i++].value = value;
	}
	if (w->runs && n > 1)
		sky__sort(m, n, sizeof(*m), cmp_member_ref);
	if (sky__buf_putc(&run, TYPE_RUN) < 0)
		goto done;
	for (i = 0; i < n; i++) {
		if (strip_nulls && json_is_null(m[i].value))
			continue;
		size_t mark = run.len;
		int in = run_append(w, &run, m[i].name, m[i].len, m[i].value,
				    strip_nulls);
		if ((rc = in) < 0)
			goto done;
		if (in && mark == 1) {
			first = i;
			continue;
		}
		if (in && run.len - 1 <= sky__doc_run_max)
			continue;
		/* The run so far is done: flush it, and start the next with
		 * this member (moved down over the comma) or without. */
		if (mark > 1) {
			size_t keep = run.len;
			run.len = mark;
			if ((rc = put_run(w, node, m[first].name, m[first].len,
					  &run, 0)) < 0)
				goto done;
			run.len = keep;
		}
		if (in) {
			memmove(run.data + 1, run.data + mark + 1,
				run.len - mark - 1);
			run.len -= mark;
			first = i;
			continue;
		}
		run.len = 1;
		if ((rc = new_member(w, node, m[i].name, m[i].len)) < 0 ||
		    (rc = put_standalone(w, m[i].name, m[i].len, m[i].value,
					 strip_nulls, 0)) < 0)
			goto done;
	}
	rc = 0;
	if (run.len > 1)
		rc = put_run(w, node, m[first].name, m[first].len, &run, 0);
done:
	sky__buf_free(&run);
	if (m != local)
		free(m);
	return rc;
}

/*
 * Store member [name, name + len) of `node` (as stored between quotes,
 * escapes and all) with the value's compact text [val, val + val_len),
 * a member a run may not hold, as an entry of its own: an object as a
 * node, anything else as a value entry.
 */
static int put_entry_text(sky_doc_writer *w, uint32_t node, const char *name,
			  size_t len, const char *val, size_t val_len)
{
	json_t *decoded = NULL, *obj;
	json_error_t jerr;
	uint32_t child = 0;
	int rc = -1;

	if (memchr(name, '\\', len)) {
		/* The name's quotes are around it in the text. */
		decoded =
		    sky__json_loadb(name - 1, len + 2, JSON_DECODE_ANY, &jerr);
		if (!json_is_string(decoded)) {
			json_decref(decoded);
			return sky__doc_corrupt(w->docid,
						"run of members malformed");
		}
		name = json_string_value(decoded);
		len = json_string_length(decoded);
	}
	if ((rc = new_member(w, node, name, len)) < 0)
		goto done;
	if (*val != '{') {
		rc = put_member(w, name, len, NULL, val, val_len, 0, 0);
		goto done;
	}
	if (!(obj = sky__json_loadb(val, val_len, 0, &jerr))) {
		rc = sky__doc_corrupt(w->docid, "run of members malformed");
		goto done;
	}
	if ((rc = alloc_node(w, &child)) == 0 &&
	    (rc = put_member(w, name, len, NULL, NULL, 0, child, 0)) == 0)
		rc = write_object(w, child, obj, 0);
	json_decref(obj);
done:
	json_decref(decoded);
	return rc;
}

/*
 * Store the members' text [p, end) that replaces the run under the cursor
 * (of weight `old_weight`, its key's name `old_name`): as it is, over the
 * run, when it is one run still with the same first member (the common
 * patch); else as the runs and entries it now needs: members a run may
 * not hold (grown past sky__doc_run_member_max, or names that need
 * escapes) become entries of their own, and the members around them
 * runs, split where one would pass sky__doc_run_max.
 */
static int rewrite_run(sky_doc_writer *w, uint32_t node, const char *p,
		       const char *end, const unsigned char *old_name,
		       size_t old_len, uint64_t old_weight)
{
	const char *q, *name, *val, *first = NULL;
	size_t name_len, val_len, first_len = 0, count = 0;
	int all_fit = w->runs, rc;

	/* One look over the members decides. */
	for (q = p; q < end && all_fit;) {
		if (sky__doc_text_member(&q, end, &name, &name_len, &val,
					 &val_len) < 0)
			return sky__doc_corrupt(w->docid,
						"run of members malformed");
		all_fit = sky__doc_run_name(name, name_len) &&
			  val_len <= sky__doc_run_member_max;
		if (!count++) {
			first = name;
			first_len = name_len;
		}
	}
	w->weight -= old_weight;
	w->header_dirty = 1;
	if (p == end) {
		if ((rc = mdb_cursor_del(w->cur, 0)) != 0)
			return sky__error_lmdb(rc, "session data: delete");
		return 0;
	}
	sky__buf_clear(&w->wrap);
	if (all_fit && ((size_t)(end - p) <= sky__doc_run_max || count == 1) &&
	    first_len == old_len && memcmp(first, old_name, old_len) == 0) {
		if (sky__buf_putc(&w->wrap, TYPE_RUN) < 0 ||
		    sky__buf_append(&w->wrap, p, (size_t)(end - p)) < 0)
			return -1;
		return put_run(w, node, first, first_len, &w->wrap, 1);
	}
	if ((rc = mdb_cursor_del(w->cur, 0)) != 0)
		return sky__error_lmdb(rc, "session data: delete");
	if (sky__buf_putc(&w->wrap, TYPE_RUN) < 0)
		return -1;
	for (q = p; q < end;) {
		const char *at = q;
		if (sky__doc_text_member(&q, end, &name, &name_len, &val,
					 &val_len) < 0)
			return sky__doc_corrupt(w->docid,
						"run of members malformed");
		size_t mlen = (size_t)(val + val_len - at);
		int fits = w->runs && sky__doc_run_name(name, name_len) &&
			   val_len <= sky__doc_run_member_max;
		if (fits && w->wrap.len > 1 &&
		    w->wrap.len + mlen > sky__doc_run_max) {
			if ((rc = put_run(w, node, first, first_len, &w->wrap,
					  0)) < 0)
				return rc;
			w->wrap.len = 1;
		}
		if (fits) {
			if (w->wrap.len == 1) {
				first = name;
				first_len = name_len;
			} else if (sky__buf_putc(&w->wrap, ',') < 0) {
				return -1;
			}
			if (sky__buf_append(&w->wrap, at, mlen) < 0)
				return -1;
			continue;
		}
		if (w->wrap.len > 1) {
			if ((rc = put_run(w, node, first, first_len, &w->wrap,
					  0)) < 0)
				return rc;
			w->wrap.len = 1;
		}
		if ((rc = put_entry_text(w, node, name, name_len, val,
					 val_len)) < 0)
			return rc;
	}
	if (w->wrap.len > 1)
		return put_run(w, node, first, first_len, &w->wrap, 0);
	return 0;
}

/*
 * MergePatch the member `name` of the run under the cursor (w->sl, from
 * find_member()) with `value`: the run's text merged as the whole form
 * merges (sky__doc_text_merge_member(), the run between braces being an
 * object's text), then stored back (rewrite_run()).
 */
static int patch_run(sky_doc_writer *w, uint32_t node, const char *name,
		     size_t len, json_t *value)
{
	sky_doc_slot *sl = &w->sl;
	MDB_val k, v;
	sky_doc_entry e;
	const char *why;
	int rc;

	if ((rc = mdb_cursor_get(w->cur, &k, &v, MDB_GET_CURRENT)) != 0)
		return sky__error_lmdb(rc, "session data: read");
	if (sky__doc_parse_entry(&k, &v, &e, &why) < 0)
		return sky__doc_corrupt(w->docid, why);
	sky__buf_clear(&w->wrap);
	sky__buf_clear(&w->run);
	if (sky__buf_putc(&w->wrap, '{') < 0 ||
	    sky__buf_append(&w->wrap, e.payload, e.payload_len) < 0 ||
	    sky__buf_putc(&w->wrap, '}') < 0)
		return -1;
	rc = sky__doc_text_merge_member(&w->run, w->wrap.data, w->wrap.len,
					name, len, value);
	if (rc == SKY__DOC_MALFORMED)
		return sky__doc_corrupt(w->docid, "run of members malformed");
	if (rc < 0)
		return rc;
	/* Deleting a member the run does not hold changes nothing. */
	if (w->run.len == w->wrap.len &&
	    memcmp(w->run.data, w->wrap.data, w->run.len) == 0)
		return 0;
	return rewrite_run(w, node, w->run.data + 1,
			   w->run.data + w->run.len - 1,
			   sl->run_key + NODE_PREFIX_LEN,
			   sl->run_key_len - NODE_PREFIX_LEN, sl->weight);
}

/* MergePatch(node, patch) in place, for the object `patch`. */
int sky__doc_patch_object(sky_doc_writer *w, uint32_t node, json_t *patch)
{
	const char *key;
	size_t key_len;
	json_t *value;
	int rc;

	json_object_keylen_foreach(patch, key, key_len, value) {
		if ((rc = find_member(w, node, key, key_len)) < 0)
			return rc;
		if (w->sl.in_run) {
			if ((rc = patch_run(w, node, key, key_len, value)) < 0)
				return rc;
			continue;
		}
		int found = w->sl.found;
		int was_object = found && w->sl.type == TYPE_OBJECT;
		int at_cursor = found; /* until the cursor moves */
		uint32_t child = w->sl.child;

		if (was_object && json_is_object(value)) {
			if ((rc = sky__doc_patch_object(w, child, value)) < 0)
				return rc;
			continue;
		}
		/* Anything else replaces or deletes the old value whole. */
		if (was_object) {
			if ((rc = delete_subtree(w, child)) < 0)
				return rc;
			at_cursor = 0;
		}
		if (json_is_null(value)) {
			MDB_val k = {w->sl.key_len, w->sl.key};
			if (!found)
				continue;
			w->weight -= w->sl.weight;
			w->header_dirty = 1;
			if (at_cursor)
				rc = mdb_cursor_del(w->cur, 0);
			else
				rc = mdb_del(w->txn, w->dbi, &k, NULL);
			if (rc != 0)
				return sky__error_lmdb(rc,
						       "session data: delete");
			continue;
		}
		/* A new value; for an object where there was none,
		 * MergePatch({}, value). */
		if ((rc = put_value(w, node, key, key_len, value, 1,
				    at_cursor)) < 0)
			return rc;
	}
	return 0;
}

/* The number of objects nested in `obj` (not counting obj). */
size_t sky__doc_count_objects(json_t *obj)
{
	const char *key;
	json_t *value;
	size_t n = 0;

	json_object_foreach(obj, key, value) {
		if (json_is_object(value))
			n += 1 + sky__doc_count_objects(value);
	}
	return n;
}

/* Delete the whole document, header included. */
int sky__doc_delete_doc(sky_doc_writer *w)
{
	unsigned char key[HEADER_LEN];
	sky__put_be64(key, w->docid);
	return delete_prefix(w, key, HEADER_LEN);
}

/* Replace the document with `obj` in the member form, nodes from 1. */
int sky__doc_write_members(sky_doc_writer *w, json_t *obj)
{
	int rc;
	if ((rc = sky__doc_delete_doc(w)) < 0)
		return rc;
	w->next = ROOT_NODE + 1;
	w->weight = EMPTY_WEIGHT;
	if ((rc = write_object(w, ROOT_NODE, obj, 0)) < 0)
		return rc;
	return sky__doc_write_header(w);
}

/* The weight of a member-form document, summed over all its entries. */
int sky__doc_scan_weight(sky_doc_writer *w)
{
	unsigned char prefix[HEADER_LEN];
	MDB_val k, v;
	int rc;

	if ((rc = sky__doc_writer_cursor(w)) < 0)
		return rc;
	sky__put_be64(prefix, w->docid);
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	w->weight = EMPTY_WEIGHT;
	for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
		sky_doc_entry e;
		const char *why;
		if (k.mv_size < HEADER_LEN ||
		    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
			break;
		if (k.mv_size == HEADER_LEN)
			continue;
		if (sky__doc_parse_entry(&k, &v, &e, &why) < 0)
			return sky__doc_corrupt(w->docid, why);
		w->weight += sky__doc_entry_weight(&e);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "session data: read");
	w->header_dirty = 1;
	return 0;
}
