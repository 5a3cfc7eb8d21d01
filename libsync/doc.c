/*
 * doc.c - session data documents in LMDB: small ones whole, as one value,
 * so that reading one is a single lookup; larger ones member by member, so
 * that an RFC 7396 merge patch reads and writes only what it names.
 *
 * Two forms. A document whose compact text is at most sky__doc_whole_max
 * bytes (SKY__DOC_WHOLE_MAX, 4 KiB) is stored whole: its header entry
 * (key: the docid alone) holds the text, written by dump_sorted() with the
 * members of every object sorted by name bytes, and nothing else of the
 * document is stored. A read returns that text as it is (the seal was
 * checked by the lookup); a patch merges into the text in one pass
 * (merge_text(), no parse of the document) and writes it back. A larger
 * document is stored member by member as below. The form follows the size
 * within the transaction that changes it: a write picks the form of its
 * text; a patch that takes a whole document past the bound stores it member
 * by member, and a patch that leaves a member-form document under half the
 * bound (by the weight its header keeps, see entry_weight()) stores it
 * whole. The half keeps a document near the bound from changing form on
 * every patch. Both forms read alike, byte for byte (the member form
 * reads names sorted too, long names last), so readers never know.
 *
 * Header values tell the forms apart (header_form()): the text of the
 * whole form starts with '{' and ends with '}'; the member form's header is
 * next id (4) + weight (8) + a 0 byte; a header of 4 bytes (next id only)
 * is a member-form document written before headers kept the weight. Such
 * documents read as before; their first patch walks their keys once to
 * learn the weight and then converts them like any other (to the whole
 * form when they are small), and any sky__doc_write() stores the form
 * of its size.
 *
 * Member layout. Every JSON object of a document is a "node" with a 32-bit id; the
 * document itself is node 0. Each member of an object is one LMDB entry:
 *
 *   header   docid(8)                        -> next free node id (u32)
 *   member   docid(8) node(4) name           -> type payload
 *   long     docid(8) node(4) FF hash(8) n(1) -> namelen(4) name type payload
 *
 * with all integers big-endian, and
 *
 *   type 'o', payload child(4): the value is the object held by node child
 *             (an empty object is a node without entries);
 *   type 'v', payload text:     the value is a scalar or an array, as compact
 *             JSON text (sky__json_dump_buf: compact, reals in their
 *             shortest form, big numbers as the text they came as).
 *
 * Names of more than SKY__DOC_NAME_INLINE_MAX bytes would not fit LMDB's
 * 511-byte keys, so they are stored in the "long" form: the key holds a
 * 64-bit hash of the name and a counter n that tells apart names with the
 * same hash, and the value holds the name itself. A lookup scans the few
 * keys with the name's hash and compares whole names, so it is exact. A
 * name also takes the long form when it starts with byte 0xFF, which valid
 * UTF-8 never does: the byte after the node id then always says which form
 * a key has.
 *
 * Invariants (sky__doc_check verifies them):
 * - A whole-form document is its header and nothing else; its text is a
 *   JSON object. A member-form header's weight is the sum over its
 *   entries.
 * - All keys of a document start with its docid: a document is one
 *   contiguous key range, and deleting or copying it is a range walk.
 * - A document is stored iff its header is. Node ids below the header's
 *   next id may be in use; ids are never reused within a document, so a
 *   member pointing at a node id that has no entries is an empty object.
 * - A child node's id is greater than its parent's (a node is created after
 *   the object holding it, and ids only grow), so the nodes form a tree by
 *   construction and a reader meeting a smaller id knows the data is
 *   corrupt instead of looping. Each node is referenced by exactly one
 *   member, and every node with entries other than the root is referenced.
 * - Objects are never stored as 'v' text: each is a node, so a patch can
 *   reach any member by key without parsing anything above it.
 *
 * The bound. Measured with callgrind (instructions per call, documents of
 * ~90-byte items, 100-byte patches): at 1 KB a whole-form read costs 0.8k
 * against 44k member by member, a patch 27k against 22k; at 4 KB 1.1k
 * against 162k and 68k against 24k; at 16 KB 15k against 642k and 240k
 * against 29k. A merge into text grows with the text while a member patch
 * stays flat, and LMDB copies a large value's overflow pages whole on
 * every write: 4 KiB keeps a patch within three times the member form's
 * and makes a read a hundred times cheaper. The bound must stay below
 * 5 * 2048 bytes (each level of nesting takes at least 5), or a stored
 * text could nest deeper than jansson parses.
 *
 * Costs. Keeping a document as one JSON text would make a 100-byte patch
 * to a 1 MB document parse and rewrite 1 MB (DESIGN.md section 4). Here
 * sky__doc_patch looks up each member the patch names (one cursor seek,
 * which then stays on the member, so replacing or deleting it needs no
 * second search), writes the ones it sets, and deletes the subtrees it
 * replaces; it never reads the rest of the document. New nodes take ids
 * from the header, so ids grow without bound; when a patch would run out of
 * 32-bit ids, the document is first rewritten with ids from 1 (once per 4
 * billion objects created).
 *
 * Reading walks the document's key range once with one cursor (MDB_NEXT is
 * the cheapest way through a B-tree, cheaper than a seek per object),
 * records where each node's entries are (pointers into the map; nothing is
 * copied), then writes the text out in tree order from those pointers,
 * finding each child's entries by binary search, with an explicit stack so
 * the depth of a document is limited only by memory. Object keys come out
 * sorted by name bytes, long names last.
 */
#include "config.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc.h"
#include "error.h"
#include "json.h"
#include "merge.h"

#define ROOT_NODE 0u
#define HEADER_LEN 8	   /* docid */
#define NODE_PREFIX_LEN 12 /* docid + node id */
#define LONG_MARK 0xffu
#define LONG_PREFIX_LEN (NODE_PREFIX_LEN + 1 + 8) /* ... FF hash */
#define LONG_KEY_LEN (LONG_PREFIX_LEN + 1)	  /* ... counter */
#define TYPE_OBJECT 'o'
#define TYPE_VALUE 'v'

#define MEMBERS_HEADER_LEN 13 /* next(4) weight(8) 0 */
#define EMPTY_WEIGHT 2		/* "{}" */

uint64_t (*sky__doc_name_hash)(const void *name, size_t len) = sky__hash64;
size_t sky__doc_whole_max = SKY__DOC_WHOLE_MAX;

/* What a header value says the document is. */
enum { FORM_BAD, FORM_WHOLE, FORM_MEMBERS, FORM_MEMBERS_OLD };

/*
 * The forms cannot be mistaken for each other: compact JSON text of an
 * object is never 4 bytes long ("{}" is 2, the next shortest 6) and ends
 * with '}', where the member header of today ends with a 0 byte.
 */
static int header_form(const MDB_val *v)
{
	const unsigned char *p = v->mv_data;
	size_t n = v->mv_size;
	if (n == 4)
		return sky__get_be32(p) == ROOT_NODE ? FORM_BAD
						     : FORM_MEMBERS_OLD;
	if (n == MEMBERS_HEADER_LEN && p[12] == 0)
		return sky__get_be32(p) == ROOT_NODE ? FORM_BAD : FORM_MEMBERS;
	if (n >= 2 && p[0] == '{' && p[n - 1] == '}')
		return FORM_WHOLE;
	return FORM_BAD;
}

/* Record stored data that breaks the layout. Returns -1. */
static int corrupt(uint64_t docid, const char *why)
{
	return sky__error_set(SKY_ERROR, SKY_ERRSRC_LMDB, MDB_CORRUPTED,
			      "session data %016" PRIx64 ": corrupt: %s", docid,
			      why);
}

static int is_long_name(const char *name, size_t len)
{
	return len > SKY__DOC_NAME_INLINE_MAX ||
	       (len > 0 && (unsigned char)name[0] == LONG_MARK);
}

static void node_prefix(unsigned char *key, uint64_t docid, uint32_t node)
{
	sky__put_be64(key, docid);
	sky__put_be32(key + 8, node);
}

/* ------------------------------------------------------------------ */
/* Decoding entries                                                    */
/* ------------------------------------------------------------------ */

/* One member entry, decoded; the pointers borrow the stored bytes. */
typedef struct {
	const unsigned char *name;
	const unsigned char *payload;
	uint32_t name_len;
	uint32_t payload_len;
	uint32_t node;
	unsigned char type;
	unsigned char is_long;
} entry;

/*
 * Decode the member entry k -> v (a key longer than the header). Returns 0,
 * or -1 with the reason in *why when it breaks the layout.
 */
static int parse_entry(const MDB_val *k, const MDB_val *v, entry *e,
		       const char **why)
{
	const unsigned char *key = k->mv_data, *val = v->mv_data;
	size_t vlen = v->mv_size;

	if (k->mv_size < NODE_PREFIX_LEN) {
		*why = "key too short";
		return -1;
	}
	e->node = sky__get_be32(key + 8);
	e->is_long =
	    k->mv_size > NODE_PREFIX_LEN && key[NODE_PREFIX_LEN] == LONG_MARK;
	if (e->is_long) {
		if (k->mv_size != LONG_KEY_LEN) {
			*why = "long-name key of the wrong length";
			return -1;
		}
		if (vlen < 4 || sky__get_be32(val) > vlen - 4) {
			*why = "long-name value shorter than its name";
			return -1;
		}
		e->name_len = sky__get_be32(val);
		e->name = val + 4;
		val += 4 + e->name_len;
		vlen -= 4 + (size_t)e->name_len;
		if (!is_long_name((const char *)e->name, e->name_len)) {
			*why = "short name stored in the long form";
			return -1;
		}
	} else {
		e->name = key + NODE_PREFIX_LEN;
		e->name_len = (uint32_t)(k->mv_size - NODE_PREFIX_LEN);
		if (e->name_len > SKY__DOC_NAME_INLINE_MAX) {
			*why = "long name stored in the key";
			return -1;
		}
	}
	if (vlen < 1) {
		*why = "empty value";
		return -1;
	}
	e->type = val[0];
	e->payload = val + 1;
	e->payload_len = (uint32_t)(vlen - 1);
	if (e->type == TYPE_OBJECT && e->payload_len != 4) {
		*why = "object member of the wrong size";
		return -1;
	}
	if (e->type == TYPE_VALUE && e->payload_len == 0) {
		*why = "empty JSON value";
		return -1;
	}
	if (e->type != TYPE_OBJECT && e->type != TYPE_VALUE) {
		*why = "unknown member type";
		return -1;
	}
	return 0;
}

/*
 * What a member adds to the document's text, give or take its escapes and
 * a comma: quotes, colon and comma around name and value, "{}" for an
 * object. The member form keeps the sum (plus 2 for the root's braces) in
 * its header, so that a patch knows when the document has become small
 * without reading it.
 */
static uint64_t entry_weight(const entry *e)
{
	return (uint64_t)e->name_len +
	       (e->type == TYPE_OBJECT ? 6 : (uint64_t)e->payload_len + 4);
}

/* ------------------------------------------------------------------ */
/* The whole form                                                      */
/* ------------------------------------------------------------------ */

/* One member of an object being written out in name order. */
typedef struct {
	const char *name;
	size_t len;
	json_t *value;
} named;

static int cmp_named(const void *a, const void *b)
{
	const named *x = a, *y = b;
	int c = memcmp(x->name, y->name, x->len < y->len ? x->len : y->len);
	return c ? c : (x->len > y->len) - (x->len < y->len);
}

/*
 * Append the compact text of the object `obj` with the members of every
 * object sorted by name bytes (arrays and what they hold as they are, as
 * the member form stores them), the order the member form reads in, so a
 * conversion between the forms changes no reader's bytes. With `strip`,
 * null members are left out at every depth (MergePatch({}, obj)). Stops as
 * soon as
 * `out` holds more than `limit` bytes: returns 0, 1 when over the limit
 * (`out` then holds a part), or -1. The recursion is at most limit / 4
 * deep (each level writes `{"":` first).
 */
static int dump_sorted(sky_buf *out, json_t *obj, size_t limit, int strip)
{
	named local[32], *m = local;
	size_t n = json_object_size(obj), i = 0;
	int first = 1;
	const char *key;
	size_t key_len;
	json_t *value;
	int rc = -1;

	if (n > sizeof(local) / sizeof(local[0]) &&
	    !(m = malloc(n * sizeof(*m))))
		return sky__error_nomem();
	json_object_keylen_foreach(obj, key, key_len, value)
	{
		m[i].name = key;
		m[i].len = key_len;
		m[i++].value = value;
	}
	if (n > 1)
		qsort(m, n, sizeof(*m), cmp_named);
	if (sky__buf_putc(out, '{') < 0)
		goto done;
	for (i = 0; i < n; i++) {
		if (strip && json_is_null(m[i].value))
			continue;
		if ((!first && sky__buf_putc(out, ',') < 0) ||
		    sky__buf_json_string(out, m[i].name, m[i].len) < 0 ||
		    sky__buf_putc(out, ':') < 0)
			goto done;
		first = 0;
		if (out->len > limit) {
			rc = 1;
			goto done;
		}
		if (json_is_object(m[i].value)) {
			if ((rc = dump_sorted(out, m[i].value, limit, strip)) !=
			    0)
				goto done;
			rc = -1;
		} else if (sky__json_dump_buf(out, m[i].value) < 0) {
			goto done;
		}
	}
	if (sky__buf_putc(out, '}') < 0)
		goto done;
	rc = out->len > limit;
done:
	if (m != local)
		free(m);
	return rc;
}

/*
 * Merging a patch into stored text. The text of the whole form was written
 * by dump_sorted(), so each object's members come sorted by name bytes;
 * sorting the (small) patch's members the same way, one pass over the text
 * merges the two lists, copying untouched members as they are, and
 * parses nothing but the names and the extent of each value. It does not
 * validate the text beyond what it needs (the seal vouches for it):
 * anything it does not expect gives MALFORMED and the caller takes the
 * slow way, which reports real damage.
 */
#define MALFORMED (-2)

typedef struct {
	const char *p, *end;
} text_span;

/* Skip the string at t->p (its opening quote). Locals, not t->p, in the
 * loops: this is most of the cost of a merge. */
static int skip_string(text_span *t)
{
	const char *p = t->p + 1, *end = t->end;
	while (p < end) {
		char c = *p++;
		if (c == '"') {
			t->p = p;
			return 0;
		}
		if (c == '\\')
			p++;
	}
	return MALFORMED;
}

/* Skip one value: a string, a scalar, or a bracketed value whole. */
static int skip_value(text_span *t)
{
	const char *p = t->p, *end = t->end, *start = t->p;
	size_t depth = 0;
	while (p < end) {
		char c = *p;
		if (c == '"') {
			t->p = p;
			if (skip_string(t) < 0)
				return MALFORMED;
			p = t->p;
			if (depth == 0)
				return 0;
			continue;
		}
		if (c == '{' || c == '[') {
			depth++;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				break; /* the end of a scalar */
			if (--depth == 0) {
				p++;
				break;
			}
		} else if (c == ',' && depth == 0) {
			break;
		}
		p++;
	}
	t->p = p;
	return depth || p == start ? MALFORMED : 0;
}

/*
 * Compare the stored name [q, qend) (the inside of its quotes, escapes
 * and all) with the name `b` of `blen` bytes, by name bytes. Escapes other
 * than the ones sky__buf_json_string writes give MALFORMED in *bad.
 */
static int cmp_stored_name(const char *q, const char *qend, const char *b,
			   size_t blen, int *bad)
{
	size_t i = 0;
	while (q < qend) {
		unsigned char c = (unsigned char)*q++;
		if (c == '\\') {
			if (q >= qend)
				goto bad;
			switch (*q++) {
			case '"': c = '"'; break;
			case '\\': c = '\\'; break;
			case 'n': c = '\n'; break;
			case 'r': c = '\r'; break;
			case 't': c = '\t'; break;
			case 'b': c = '\b'; break;
			case 'f': c = '\f'; break;
			case 'u': {
				unsigned v = 0;
				if (qend - q < 4)
					goto bad;
				for (int k = 0; k < 4; k++) {
					char h = *q++;
					v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10
							     : h >= 'A'
								 ? h - 'A' + 10
								 : h - '0');
				}
				if (v == 0 || v >= 0x20)
					goto bad;
				c = (unsigned char)v;
				break;
			}
			default: goto bad;
			}
		}
		if (i == blen)
			return 1;
		if (c != (unsigned char)b[i])
			return c < (unsigned char)b[i] ? -1 : 1;
		i++;
	}
	return i == blen ? 0 : -1;
bad:
	*bad = 1;
	return 0;
}

/* Append member `m` of a patch that the document does not have. */
static int add_member(sky_buf *out, const named *m, int *first)
{
	if (json_is_null(m->value))
		return 0;
	if ((!*first && sky__buf_putc(out, ',') < 0) ||
	    sky__buf_json_string(out, m->name, m->len) < 0 ||
	    sky__buf_putc(out, ':') < 0)
		return -1;
	*first = 0;
	if (json_is_object(m->value))
		return dump_sorted(out, m->value, SIZE_MAX, 1) < 0 ? -1 : 0;
	return sky__json_dump_buf(out, m->value);
}

/*
 * Append MergePatch(object at t->p, patch) to `out` and move t->p past the
 * object. Returns 0, -1 or MALFORMED.
 */
static int merge_text(sky_buf *out, text_span *t, json_t *patch)
{
	named local[16], *m = local;
	size_t n = json_object_size(patch), j = 0;
	const char *key;
	size_t key_len;
	json_t *value;
	int first = 1, rc = -1;

	if (n > sizeof(local) / sizeof(local[0]) &&
	    !(m = malloc(n * sizeof(*m))))
		return sky__error_nomem();
	json_object_keylen_foreach(patch, key, key_len, value)
	{
		m[j].name = key;
		m[j].len = key_len;
		m[j++].value = value;
	}
	if (n > 1)
		qsort(m, n, sizeof(*m), cmp_named);
	j = 0;
	if (t->p >= t->end || *t->p != '{' || sky__buf_putc(out, '{') < 0)
		goto fail;
	t->p++;
	while (t->p < t->end && *t->p != '}') {
		const char *name = t->p, *name_end, *val;
		int c = 1, bad = 0;
		if (*t->p != '"' || skip_string(t) < 0)
			goto malformed;
		name_end = t->p;
		if (t->p >= t->end || *t->p++ != ':')
			goto malformed;
		val = t->p;
		while (j < n && (c = cmp_stored_name(name + 1, name_end - 1,
						     m[j].name, m[j].len,
						     &bad)) > 0 &&
		       !bad) {
			if (add_member(out, &m[j++], &first) < 0)
				goto fail;
		}
		if (bad)
			goto malformed;
		/* A patched object: merged in one pass over it. Anything else
		 * is skipped to find where it ends. */
		if (!(j < n && c == 0 && json_is_object(m[j].value) &&
		      *val == '{') &&
		    skip_value(t) < 0)
			goto malformed;
		if (j < n && c == 0) {
			json_t *v = m[j++].value;
			if (json_is_null(v))
				goto next; /* deleted */
			if ((!first && sky__buf_putc(out, ',') < 0) ||
			    sky__buf_append(out, name,
					    (size_t)(name_end - name)) < 0 ||
			    sky__buf_putc(out, ':') < 0)
				goto fail;
			first = 0;
			if (json_is_object(v) && *val == '{') {
				if ((rc = merge_text(out, t, v)) < 0)
					goto done;
				rc = -1;
			} else if (json_is_object(v)) {
				if (dump_sorted(out, v, SIZE_MAX, 1) < 0)
					goto fail;
			} else if (sky__json_dump_buf(out, v) < 0) {
				goto fail;
			}
		} else {
			if ((!first && sky__buf_putc(out, ',') < 0) ||
			    sky__buf_append(out, name,
					    (size_t)(t->p - name)) < 0)
				goto fail;
			first = 0;
		}
	next:
		if (t->p < t->end && *t->p == ',')
			t->p++;
		else if (t->p >= t->end || *t->p != '}')
			goto malformed;
	}
	if (t->p >= t->end)
		goto malformed;
	t->p++;
	for (; j < n; j++)
		if (add_member(out, &m[j], &first) < 0)
			goto fail;
	rc = sky__buf_putc(out, '}');
	goto done;
malformed:
	rc = MALFORMED;
	goto done;
fail:
	rc = -1;
done:
	if (m != local)
		free(m);
	return rc;
}

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
	entry *e;
	size_t n, cap;
	node_span *nodes;
	size_t n_nodes, cap_nodes;
	size_t bytes; /* names and payloads, to size the output */
	entry e_inline[64];
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

/*
 * Walk the document's key range once. The entries borrow the stored bytes,
 * which stay put until the transaction ends or writes.
 */
static int scan_doc(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, scan *s)
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
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		const char *why;
		if (k.mv_size < HEADER_LEN ||
		    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
			break;
		if (k.mv_size == HEADER_LEN)
			continue;
		if (s->n == s->cap) {
			entry *p =
			    grow(s->e, &s->cap, s->e_inline, sizeof(entry));
			if (!p)
				goto fail;
			s->e = p;
		}
		entry *e = &s->e[s->n];
		if (parse_entry(&k, &v, e, &why) < 0) {
			corrupt(docid, why);
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
static int child_span(scan *s, uint64_t docid, const entry *e, node_span **span)
{
	uint32_t child = sky__get_be32(e->payload);
	if (child <= e->node)
		return corrupt(docid, "object member points back up the tree");
	node_span *ns = find_node(s, child);
	if (ns) {
		if (ns->visited)
			return corrupt(docid, "node referenced twice");
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
		const entry *e = &s->e[f->i];
		if (out_room(out, e->name_len + e->payload_len + 6) < 0)
			goto done;
		if (f->i++ != f->start)
			out->data[out->len++] = ',';
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

/*
 * The header of the document: 1 with *v set, 0 when there is none, or a
 * negative code.
 */
static int get_header(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, MDB_val *v)
{
	unsigned char key[HEADER_LEN];
	MDB_val k = {HEADER_LEN, key};
	int rc;

	sky__put_be64(key, docid);
	rc = mdb_get(txn, dbi, &k, v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc != 0)
		return sky__error_lmdb(rc, "session data: read header");
	return 1;
}

int sky__doc_read(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, sky_buf *out)
{
	scan s;
	size_t old_len = out->len;
	MDB_val v;
	int rc;

	assert(txn && out);
	/* The whole form: one lookup, and its text (seal checked by the
	 * read) is the answer. A missing document has no entries at all. */
	if ((rc = get_header(txn, dbi, docid, &v)) <= 0)
		return rc < 0 ? rc : sky__buf_append(out, "{}", 2);
	if (header_form(&v) == FORM_WHOLE)
		return sky__buf_append(out, v.mv_data, v.mv_size);
	scan_init(&s);
	rc = scan_doc(txn, dbi, docid, &s);
	if (rc == 0)
		rc = emit_text(&s, docid, out);
	if (rc < 0 && out->data) {
		out->len = old_len;
		out->data[old_len] = '\0';
	}
	scan_free(&s);
	return rc;
}

/* Build the scanned document as a jansson object. */
static int build_json(scan *s, uint64_t docid, json_t **out)
{
	frame_stack st;
	node_span *root;
	json_t *doc = json_object();
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
		const entry *e = &s->e[f->i++];
		json_t *parent = f->obj, *value;
		node_span *child = NULL;
		if (e->type == TYPE_VALUE) {
			json_error_t jerr;
			/* sky__json_loadb: a value may hold U+0000 or a big
			 * number, and it was stored whole. */
			value = sky__json_loadb((const char *)e->payload,
						e->payload_len,
						JSON_DECODE_ANY, &jerr);
			if (!value) {
				corrupt(docid, "stored value is not JSON");
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
			corrupt(docid, "member name is not valid UTF-8");
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
	json_decref(doc);
	return rc;
}

/* Parse the stored text of the whole form into a new object. */
static int parse_whole(uint64_t docid, const MDB_val *v, json_t **out)
{
	json_error_t jerr;
	json_t *doc = sky__json_loadb(v->mv_data, v->mv_size, 0, &jerr);
	if (!doc || !json_is_object(doc)) {
		json_decref(doc);
		return corrupt(docid, "stored document is not a JSON object");
	}
	*out = doc;
	return 0;
}

int sky__doc_read_json(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t **out)
{
	scan s;
	MDB_val v;
	int rc;

	assert(txn && out);
	if ((rc = get_header(txn, dbi, docid, &v)) < 0)
		return rc;
	if (rc == 1 && header_form(&v) == FORM_WHOLE)
		return parse_whole(docid, &v, out);
	scan_init(&s);
	rc = scan_doc(txn, dbi, docid, &s);
	if (rc == 0)
		rc = build_json(&s, docid, out);
	scan_free(&s);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Writing                                                             */
/* ------------------------------------------------------------------ */

/* The longest member key: a short name of the longest length. */
#define MEMBER_KEY_MAX (NODE_PREFIX_LEN + SKY__DOC_NAME_INLINE_MAX)
_Static_assert(MEMBER_KEY_MAX >= LONG_KEY_LEN, "long keys fit the slot");
_Static_assert(MEMBER_KEY_MAX <= 511, "keys fit LMDB's default limit");

/* Where one member of one node is, or would go. */
typedef struct {
	unsigned char key[MEMBER_KEY_MAX];
	size_t key_len;
	int found;
	int is_long;
	unsigned char type; /* when found */
	uint32_t child;	    /* when found with type 'o' */
	uint64_t weight;    /* when found: its entry_weight() */
} slot;

/*
 * The state of one write operation. The slot is scratch shared by the
 * recursion (each level is done with it before it recurses), so that deep
 * documents do not put a key buffer on the C stack per level.
 */
typedef struct {
	MDB_txn *txn;
	MDB_dbi dbi;
	uint64_t docid;
	MDB_cursor *cur; /* opened on first need */
	uint32_t next;	 /* the next free node id */
	int header_dirty;
	int whole;	 /* read_header found the whole form */
	uint64_t weight; /* of the member form, see entry_weight() */
	slot sl;
	sky_buf val;	   /* scratch for building values */
	uint32_t *pending; /* nodes waiting to be deleted */
	size_t n_pending, cap_pending;
} writer;

static void writer_init(writer *w, MDB_txn *txn, MDB_dbi dbi, uint64_t docid)
{
	memset(w, 0, sizeof(*w));
	w->txn = txn;
	w->dbi = dbi;
	w->docid = docid;
	w->next = ROOT_NODE + 1;
}

static void writer_free(writer *w)
{
	if (w->cur)
		mdb_cursor_close(w->cur);
	sky__buf_free(&w->val);
	free(w->pending);
}

static int writer_cursor(writer *w)
{
	int rc;
	if (w->cur)
		return 0;
	if ((rc = mdb_cursor_open(w->txn, w->dbi, &w->cur)) != 0)
		return sky__error_lmdb(rc, "session data: open cursor");
	return 0;
}

/*
 * Read the header. *exists tells whether there is one; for the member form
 * it fills w->next and w->weight (weight_known says whether the header
 * carried it), for the whole form it sets w->whole and points *text at the
 * stored text, valid until the transaction writes.
 */
static int read_header(writer *w, int *exists, int *weight_known,
		       const char **text, size_t *text_len)
{
	unsigned char key[HEADER_LEN];
	MDB_val k = {HEADER_LEN, key}, v;
	int rc;

	sky__put_be64(key, w->docid);
	w->whole = 0;
	*weight_known = 1;
	w->weight = EMPTY_WEIGHT;
	rc = mdb_get(w->txn, w->dbi, &k, &v);
	if (rc == MDB_NOTFOUND) {
		*exists = 0;
		w->next = ROOT_NODE + 1;
		return 0;
	}
	if (rc != 0)
		return sky__error_lmdb(rc, "session data: read header");
	*exists = 1;
	switch (header_form(&v)) {
	case FORM_WHOLE:
		w->whole = 1;
		if (text) {
			*text = v.mv_data;
			*text_len = v.mv_size;
		}
		return 0;
	case FORM_MEMBERS:
		w->weight = sky__get_be64((unsigned char *)v.mv_data + 4);
		break;
	case FORM_MEMBERS_OLD:
		*weight_known = 0;
		break;
	default:
		return corrupt(w->docid, "bad header");
	}
	w->next = sky__get_be32(v.mv_data);
	return 0;
}

/* The header of the member form: next id, weight, and its closing 0. */
static int write_header(writer *w)
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

static int alloc_node(writer *w, uint32_t *id)
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
static int delete_prefix(writer *w, const unsigned char *key, size_t len)
{
	MDB_val k = {len, (void *)key}, v;
	int rc;

	if ((rc = writer_cursor(w)) < 0)
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

static int push_pending(writer *w, uint32_t node)
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
static int delete_subtree(writer *w, uint32_t node)
{
	unsigned char prefix[NODE_PREFIX_LEN];
	MDB_val k, v;
	int rc;

	if ((rc = writer_cursor(w)) < 0)
		return rc;
	w->n_pending = 0;
	if ((rc = push_pending(w, node)) < 0)
		return rc;
	while (w->n_pending > 0) {
		node = w->pending[--w->n_pending];
		node_prefix(prefix, w->docid, node);
		k.mv_data = prefix;
		k.mv_size = NODE_PREFIX_LEN;
		/* See delete_prefix() for MDB_NEXT after a delete. */
		for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE);
		     rc == 0; rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
			entry e;
			const char *why;
			if (k.mv_size < NODE_PREFIX_LEN ||
			    memcmp(k.mv_data, prefix, NODE_PREFIX_LEN) != 0)
				break;
			if (parse_entry(&k, &v, &e, &why) < 0)
				return corrupt(w->docid, why);
			if (e.type == TYPE_OBJECT) {
				uint32_t child = sky__get_be32(e.payload);
				if (child <= node)
					return corrupt(w->docid,
						       "object member points "
						       "back up the tree");
				if ((rc = push_pending(w, child)) < 0)
					return rc;
			}
			w->weight -= entry_weight(&e);
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
static int find_member(writer *w, uint32_t node, const char *name, size_t len)
{
	slot *sl = &w->sl;
	MDB_val k, v;
	entry e;
	const char *why;
	int rc;

	sl->found = 0;
	sl->is_long = is_long_name(name, len);
	node_prefix(sl->key, w->docid, node);
	if (!sl->is_long) {
		memcpy(sl->key + NODE_PREFIX_LEN, name, len);
		sl->key_len = NODE_PREFIX_LEN + len;
		k.mv_data = sl->key;
		k.mv_size = sl->key_len;
		if ((rc = writer_cursor(w)) < 0)
			return rc;
		rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET);
		if (rc == MDB_NOTFOUND)
			return 0;
		if (rc != 0)
			return sky__error_lmdb(rc, "session data: read");
	} else {
		unsigned char used[256 / 8] = {0};
		int counter;
		sl->key[NODE_PREFIX_LEN] = LONG_MARK;
		sky__put_be64(sl->key + NODE_PREFIX_LEN + 1,
			      sky__doc_name_hash(name, len));
		sl->key[LONG_PREFIX_LEN] = 0;
		sl->key_len = LONG_KEY_LEN;
		if ((rc = writer_cursor(w)) < 0)
			return rc;
		k.mv_data = sl->key;
		k.mv_size = LONG_KEY_LEN;
		for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE);
		     rc == 0; rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
			const unsigned char *kb = k.mv_data;
			if (k.mv_size != LONG_KEY_LEN ||
			    memcmp(kb, sl->key, LONG_PREFIX_LEN) != 0)
				break;
			if (parse_entry(&k, &v, &e, &why) < 0)
				return corrupt(w->docid, why);
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
	/* A short name: decode the value found by mdb_get. */
	if (parse_entry(&k, &v, &e, &why) < 0)
		return corrupt(w->docid, why);
found:
	sl->found = 1;
	sl->type = e.type;
	sl->weight = entry_weight(&e);
	sl->child = e.type == TYPE_OBJECT ? sky__get_be32(e.payload) : 0;
	if (e.type == TYPE_OBJECT && sl->child <= node)
		return corrupt(w->docid,
			       "object member points back up the tree");
	return 0;
}

/* Make w->sl the slot of a member of a node created in this write: there
 * is nothing to look up, except the counter of a long name. */
static int new_member(writer *w, uint32_t node, const char *name, size_t len)
{
	slot *sl = &w->sl;
	if (is_long_name(name, len))
		return find_member(w, node, name, len);
	node_prefix(sl->key, w->docid, node);
	memcpy(sl->key + NODE_PREFIX_LEN, name, len);
	sl->key_len = NODE_PREFIX_LEN + len;
	sl->found = 0;
	sl->is_long = 0;
	return 0;
}

/*
 * Store member `name` at w->sl as either an object member pointing to
 * `child` (value NULL) or the scalar or array `value`. With `at_cursor`,
 * the member exists and the writer's cursor is still on it.
 */
static int put_member(writer *w, const char *name, size_t len, json_t *value,
		      uint32_t child, int at_cursor)
{
	slot *sl = &w->sl;
	MDB_val k = {sl->key_len, sl->key}, v;
	int rc;

	sky__buf_clear(&w->val);
	if (sl->is_long) {
		unsigned char n[4];
		sky__put_be32(n, (uint32_t)len);
		if (sky__buf_append(&w->val, n, 4) < 0 ||
		    sky__buf_append(&w->val, name, len) < 0)
			return -1;
	}
	if (!value) {
		unsigned char c[5] = {TYPE_OBJECT};
		sky__put_be32(c + 1, child);
		if (sky__buf_append(&w->val, c, 5) < 0)
			return -1;
	} else if (sky__buf_putc(&w->val, TYPE_VALUE) < 0 ||
		   sky__json_dump_buf(&w->val, value) < 0) {
		return -1;
	}
	v.mv_data = w->val.data;
	v.mv_size = w->val.len;
	/* The value's length less type byte (and long name) is its payload. */
	w->weight += len + (value ? w->val.len - 1 - (sl->is_long ? 4 + len : 0) +
					4
				  : 6);
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
 * Write the members of `obj` into the new, empty node `node`. With
 * strip_nulls this is MergePatch({}, obj) (null members are left out, at
 * every depth); without, obj is stored as it is.
 */
static int write_object(writer *w, uint32_t node, json_t *obj, int strip_nulls)
{
	const char *key;
	size_t key_len;
	json_t *value;
	int rc;

	json_object_keylen_foreach(obj, key, key_len, value)
	{
		uint32_t child = 0;
		if (strip_nulls && json_is_null(value))
			continue;
		if ((rc = new_member(w, node, key, key_len)) < 0)
			return rc;
		if (!json_is_object(value)) {
			if ((rc = put_member(w, key, key_len, value, 0, 0)) < 0)
				return rc;
			continue;
		}
		if ((rc = alloc_node(w, &child)) < 0 ||
		    (rc = put_member(w, key, key_len, NULL, child, 0)) < 0 ||
		    (rc = write_object(w, child, value, strip_nulls)) < 0)
			return rc;
	}
	return 0;
}

/* MergePatch(node, patch) in place, for the object `patch`. */
static int patch_object(writer *w, uint32_t node, json_t *patch)
{
	const char *key;
	size_t key_len;
	json_t *value;
	int rc;

	json_object_keylen_foreach(patch, key, key_len, value)
	{
		if ((rc = find_member(w, node, key, key_len)) < 0)
			return rc;
		int found = w->sl.found;
		int was_object = found && w->sl.type == TYPE_OBJECT;
		int at_cursor = found; /* until the cursor moves */
		uint32_t child = w->sl.child;

		if (was_object && json_is_object(value)) {
			if ((rc = patch_object(w, child, value)) < 0)
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
		if (!json_is_object(value)) {
			if ((rc = put_member(w, key, key_len, value, 0,
					     at_cursor)) < 0)
				return rc;
			continue;
		}
		/* An object where there was none: MergePatch({}, value). */
		if ((rc = alloc_node(w, &child)) < 0)
			return rc;
		rc = put_member(w, key, key_len, NULL, child, at_cursor);
		if (rc < 0 || (rc = write_object(w, child, value, 1)) < 0)
			return rc;
	}
	return 0;
}

/* The number of objects nested in `obj` (not counting obj). */
static size_t count_objects(json_t *obj)
{
	const char *key;
	json_t *value;
	size_t n = 0;

	json_object_foreach(obj, key, value)
	{
		if (json_is_object(value))
			n += 1 + count_objects(value);
	}
	return n;
}

/* Delete the whole document, header included. */
static int delete_doc(writer *w)
{
	unsigned char key[HEADER_LEN];
	sky__put_be64(key, w->docid);
	return delete_prefix(w, key, HEADER_LEN);
}

static int write_whole(writer *w);

/* Replace the document with `obj` in the member form, nodes from 1. */
static int write_members(writer *w, json_t *obj)
{
	int rc;
	if ((rc = delete_doc(w)) < 0)
		return rc;
	w->next = ROOT_NODE + 1;
	w->weight = EMPTY_WEIGHT;
	if ((rc = write_object(w, ROOT_NODE, obj, 0)) < 0)
		return rc;
	return write_header(w);
}

/*
 * Replace the document with `obj` in the form its size calls for: the
 * whole form when its text is at most sky__doc_whole_max bytes.
 */
static int write_doc(writer *w, json_t *obj)
{
	int rc;

	sky__buf_clear(&w->val);
	if ((rc = dump_sorted(&w->val, obj, sky__doc_whole_max, 0)) < 0)
		return rc;
	if (rc == 1)
		return write_members(w, obj);
	return write_whole(w);
}

/* Replace the document with the whole form holding the text in w->val. */
static int write_whole(writer *w)
{
	unsigned char key[HEADER_LEN];
	MDB_val k = {HEADER_LEN, key}, v;
	int rc;

	/* Only the header holds anything in the whole form. */
	if ((rc = delete_doc(w)) < 0)
		return rc;
	sky__put_be64(key, w->docid);
	v.mv_data = w->val.data;
	v.mv_size = w->val.len;
	if ((rc = mdb_put(w->txn, w->dbi, &k, &v, 0)) != 0)
		return sky__error_lmdb(rc, "session data: write");
	return 0;
}

int sky__doc_write(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t *obj)
{
	writer w;
	int rc;

	assert(txn);
	if (!json_is_object(obj))
		return sky__error_input("session data: not a JSON object");
	writer_init(&w, txn, dbi, docid);
	rc = write_doc(&w, obj);
	writer_free(&w);
	return rc;
}

/* The weight of a member-form document, summed over all its entries. */
static int scan_weight(writer *w)
{
	unsigned char prefix[HEADER_LEN];
	MDB_val k, v;
	int rc;

	if ((rc = writer_cursor(w)) < 0)
		return rc;
	sky__put_be64(prefix, w->docid);
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	w->weight = EMPTY_WEIGHT;
	for (rc = mdb_cursor_get(w->cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(w->cur, &k, &v, MDB_NEXT)) {
		entry e;
		const char *why;
		if (k.mv_size < HEADER_LEN ||
		    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
			break;
		if (k.mv_size == HEADER_LEN)
			continue;
		if (parse_entry(&k, &v, &e, &why) < 0)
			return corrupt(w->docid, why);
		w->weight += entry_weight(&e);
	}
	if (rc != 0 && rc != MDB_NOTFOUND)
		return sky__error_lmdb(rc, "session data: read");
	w->header_dirty = 1;
	return 0;
}

/*
 * The patch applied to the whole document in memory, the result written
 * in whichever form it needs. `doc` is consumed (NULL: a missing one).
 */
static int patch_in_memory(writer *w, json_t *doc, json_t *patch)
{
	int rc;
	if (!(doc = sky__merge_patch(doc ? doc : json_object(), patch)))
		return sky__error_nomem();
	rc = write_doc(w, doc);
	json_decref(doc);
	return rc;
}

/*
 * Patch the whole form (or a missing document, text "{}"): merge the patch
 * into the stored text, and store the result whole, or member by member
 * when it has outgrown the bound.
 */
static int patch_whole(writer *w, const char *stored, size_t len,
		       json_t *patch)
{
	text_span t = {stored, stored + len};
	json_t *doc;
	MDB_val v = {len, (void *)stored};
	int rc;

	sky__buf_clear(&w->val);
	rc = merge_text(&w->val, &t, patch);
	if (rc == MALFORMED || (rc == 0 && t.p != t.end)) {
		/* Not text dump_sorted() wrote: parse it (or say it is
		 * corrupt) and merge in memory. */
		if ((rc = parse_whole(w->docid, &v, &doc)) < 0)
			return rc;
		return patch_in_memory(w, doc, patch);
	}
	if (rc < 0)
		return rc;
	if (w->val.len <= sky__doc_whole_max) {
		unsigned char key[HEADER_LEN];
		MDB_val k = {HEADER_LEN, key};
		sky__put_be64(key, w->docid);
		v.mv_data = w->val.data;
		v.mv_size = w->val.len;
		if ((rc = mdb_put(w->txn, w->dbi, &k, &v, 0)) != 0)
			return sky__error_lmdb(rc, "session data: write");
		return 0;
	}
	/* Grown past the bound: member by member from now on. */
	if ((rc = parse_whole(w->docid, &(MDB_val){w->val.len, w->val.data},
			      &doc)) < 0)
		return rc;
	rc = write_members(w, doc);
	json_decref(doc);
	return rc;
}

int sky__doc_patch(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, json_t *patch)
{
	writer w;
	const char *text = NULL;
	size_t text_len = 0;
	int exists, weight_known, rc;

	assert(txn);
	if (!json_is_object(patch))
		return sky__error_input(
		    "session data patch: not a JSON object");
	writer_init(&w, txn, dbi, docid);
	if ((rc = read_header(&w, &exists, &weight_known, &text, &text_len)) <
	    0)
		goto done;
	if (!exists || w.whole) {
		rc = patch_whole(&w, exists ? text : "{}", exists ? text_len : 2,
				 patch);
		goto done;
	}
	size_t need = count_objects(patch);
	if (need > UINT32_MAX - w.next) {
		/* Out of ids: rewrite the document, nodes from 1. */
		json_t *doc;
		if ((rc = sky__doc_read_json(txn, dbi, docid, &doc)) < 0)
			goto done;
		if (need > UINT32_MAX - 1 - count_objects(doc)) {
			json_decref(doc);
			rc = sky__error_set(SKY_ELIMIT, SKY_ERRSRC_INPUT, 0,
					    "session data %016" PRIx64
					    ": more than 2^32 - 1 objects",
					    docid);
			goto done;
		}
		rc = patch_in_memory(&w, doc, patch);
		goto done;
	}
	/* A document stored before headers carried the weight: learn it
	 * once (one walk of its keys); the header below keeps it. */
	if (!weight_known && (rc = scan_weight(&w)) < 0)
		goto done;
	if ((rc = patch_object(&w, ROOT_NODE, patch)) < 0)
		goto done;
	if (w.weight < sky__doc_whole_max / 2) {
		/* Small again (the half keeps a document near the bound
		 * from changing form at every patch): whole form. */
		json_t *doc;
		if ((rc = sky__doc_read_json(txn, dbi, docid, &doc)) < 0)
			goto done;
		sky__buf_clear(&w.val);
		rc = dump_sorted(&w.val, doc, sky__doc_whole_max, 0);
		json_decref(doc);
		if (rc == 0) {
			rc = write_whole(&w);
			goto done;
		}
		/* Names that need escapes can make the text longer than
		 * the weight says: then it stays in members. */
		if (rc < 0)
			goto done;
		w.header_dirty = 1;
	}
	if (w.header_dirty)
		rc = write_header(&w);
done:
	writer_free(&w);
	return rc;
}

int sky__doc_delete(MDB_txn *txn, MDB_dbi dbi, uint64_t docid)
{
	writer w;
	int rc;

	assert(txn);
	writer_init(&w, txn, dbi, docid);
	rc = delete_doc(&w);
	writer_free(&w);
	return rc;
}

int sky__doc_exists(MDB_txn *txn, MDB_dbi dbi, uint64_t docid)
{
	writer w;
	int exists, weight_known, rc;

	assert(txn);
	writer_init(&w, txn, dbi, docid);
	rc = read_header(&w, &exists, &weight_known, NULL, NULL);
	writer_free(&w);
	return rc < 0 ? rc : exists;
}

int sky__doc_copy(MDB_txn *txn, MDB_dbi dbi, uint64_t from, uint64_t to)
{
	unsigned char prefix[HEADER_LEN];
	sky_buf chunk = SKY_BUF_INIT, last = SKY_BUF_INIT;
	writer w;
	MDB_val k, v;
	int rc, more = 1;

	assert(txn);
	if (from == to)
		return 0;
	writer_init(&w, txn, dbi, to);
	if ((rc = delete_doc(&w)) < 0 || (rc = writer_cursor(&w)) < 0)
		goto done;
	/*
	 * Entries are copied in chunks: read some into memory with the new
	 * docid, write them, then seek back to where the reading stopped.
	 * Values read from LMDB may move when the transaction writes, so
	 * nothing read is used after a write.
	 */
	sky__put_be64(prefix, from);
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	rc = mdb_cursor_get(w.cur, &k, &v, MDB_SET_RANGE);
	while (more) {
		sky__buf_clear(&chunk);
		for (; rc == 0; rc = mdb_cursor_get(w.cur, &k, &v, MDB_NEXT)) {
			uint32_t kl = (uint32_t)k.mv_size;
			uint32_t vl = (uint32_t)v.mv_size;
			unsigned char hdr[8];
			if (k.mv_size < HEADER_LEN ||
			    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
				break;
			if (chunk.len >= 64 * 1024)
				break;
			sky__put_be32(hdr, kl);
			sky__put_be32(hdr + 4, vl);
			if (sky__buf_append(&chunk, hdr, 8) < 0 ||
			    sky__buf_append(&chunk, k.mv_data, kl) < 0 ||
			    sky__buf_append(&chunk, v.mv_data, vl) < 0) {
				rc = -1;
				goto done;
			}
		}
		if (rc != 0 && rc != MDB_NOTFOUND) {
			rc = sky__error_lmdb(rc, "session data: copy");
			goto done;
		}
		more = rc == 0 && k.mv_size >= HEADER_LEN &&
		       memcmp(k.mv_data, prefix, HEADER_LEN) == 0;
		if (more) {
			/* Resume at the first key not copied. */
			sky__buf_clear(&last);
			if (sky__buf_append(&last, k.mv_data, k.mv_size) < 0) {
				rc = -1;
				goto done;
			}
		}
		for (size_t off = 0; off < chunk.len;) {
			unsigned char *p = (unsigned char *)chunk.data + off;
			uint32_t kl = sky__get_be32(p),
				 vl = sky__get_be32(p + 4);
			MDB_val nk = {kl, p + 8}, nv = {vl, p + 8 + kl};
			sky__put_be64(p + 8, to);
			if ((rc = mdb_put(txn, dbi, &nk, &nv, 0)) != 0) {
				rc = sky__error_lmdb(rc, "session data: copy");
				goto done;
			}
			off += 8 + (size_t)kl + vl;
		}
		if (more) {
			k.mv_data = last.data;
			k.mv_size = last.len;
			rc = mdb_cursor_get(w.cur, &k, &v, MDB_SET_RANGE);
		}
	}
	rc = 0;
done:
	sky__buf_free(&chunk);
	sky__buf_free(&last);
	writer_free(&w);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Checking                                                            */
/* ------------------------------------------------------------------ */

typedef struct {
	uint64_t docid;
	sky_buf *out;
	unsigned count;
	int failed; /* could not append: out of memory */
} report;

static void problem(report *r, const entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append one line: where (node and member name, cut short) and what. */
static void problem(report *r, const entry *e, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	r->count++;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sky__buf_printf(r->out, "session data %016" PRIx64, r->docid) < 0)
		goto fail;
	if (e) {
		size_t n = e->name_len > 64 ? 64 : e->name_len;
		const char *name = (const char *)e->name;
		if (sky__buf_printf(r->out, ": node %" PRIu32 " member ",
				    e->node) < 0 ||
		    sky__buf_json_string(r->out, name, n) < 0 ||
		    (n < e->name_len && sky__buf_puts(r->out, "...") < 0))
			goto fail;
	}
	if (sky__buf_printf(r->out, ": %s\n", msg) < 0)
		goto fail;
	return;
fail:
	r->failed = 1;
}

/* A reference from a member to a child node, for the tree checks. */
typedef struct {
	uint32_t child;
	entry from;
} ref;

static int cmp_ref(const void *a, const void *b)
{
	uint32_t x = ((const ref *)a)->child, y = ((const ref *)b)->child;
	return x < y ? -1 : x > y;
}

int sky__doc_check(MDB_txn *txn, MDB_dbi dbi, uint64_t docid, sky_buf *problems)
{
	unsigned char prefix[HEADER_LEN];
	report r = {docid, problems, 0, 0};
	MDB_cursor *cur;
	MDB_val k, v;
	ref *refs = NULL;
	size_t n_refs = 0, cap_refs = 0;
	uint32_t *nodes = NULL; /* distinct nodes with entries, ascending */
	size_t n_nodes = 0, cap_nodes = 0;
	entry run[256]; /* long names of the current hash, to find twins */
	size_t n_run = 0;
	uint64_t run_hash = 0;
	uint64_t next = UINT64_MAX; /* no header: do not bound ids */
	uint64_t weight = EMPTY_WEIGHT, header_weight = 0;
	int have_header = 0, members = 0, whole = 0, weighed = 0, rc;

	assert(txn && problems);
	sky__put_be64(prefix, docid);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return sky__error_lmdb(rc, "session data: open cursor");
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		entry e;
		const char *why;
		if (k.mv_size < HEADER_LEN ||
		    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
			break;
		if (k.mv_size == HEADER_LEN) {
			json_t *doc;
			have_header = 1;
			switch (header_form(&v)) {
			case FORM_WHOLE:
				whole = 1;
				if (parse_whole(docid, &v, &doc) < 0)
					problem(&r, NULL,
						"stored document is not a "
						"JSON object");
				else
					json_decref(doc);
				break;
			case FORM_MEMBERS:
				weighed = 1;
				header_weight = sky__get_be64(
				    (unsigned char *)v.mv_data + 4);
				/* fall through */
			case FORM_MEMBERS_OLD:
				next = sky__get_be32(v.mv_data);
				break;
			default:
				problem(&r, NULL, "bad header");
			}
			continue;
		}
		if (whole && !members)
			problem(&r, NULL, "members beside a whole document");
		members = 1;
		if (parse_entry(&k, &v, &e, &why) < 0) {
			if (k.mv_size >= NODE_PREFIX_LEN)
				problem(&r, NULL, "node %" PRIu32 ": %s",
					sky__get_be32(
					    (unsigned char *)k.mv_data + 8),
					why);
			else
				problem(&r, NULL, "%s", why);
			continue;
		}
		weight += entry_weight(&e);
		if (e.node >= next)
			problem(&r, &e,
				"node id not below the header's %" PRIu64,
				next);
		if (n_nodes == 0 || nodes[n_nodes - 1] != e.node) {
			if (n_nodes == cap_nodes) {
				size_t nc = cap_nodes ? cap_nodes * 2 : 64;
				uint32_t *p = realloc(nodes, nc * sizeof(*p));
				if (!p)
					goto nomem;
				nodes = p;
				cap_nodes = nc;
			}
			nodes[n_nodes++] = e.node;
		}
		if (e.is_long) {
			const unsigned char *kb = k.mv_data;
			uint64_t h = sky__doc_name_hash(e.name, e.name_len);
			if (h != sky__get_be64(kb + NODE_PREFIX_LEN + 1))
				problem(&r, &e, "hash does not match the name");
			/* Names with one hash sit side by side: compare with
			 * the others of the run. */
			uint64_t key_hash =
			    sky__get_be64(kb + NODE_PREFIX_LEN + 1);
			if (n_run > 0 &&
			    (run[0].node != e.node || run_hash != key_hash))
				n_run = 0;
			run_hash = key_hash;
			for (size_t i = 0; i < n_run; i++)
				if (run[i].name_len == e.name_len &&
				    memcmp(run[i].name, e.name, e.name_len) ==
					0)
					problem(&r, &e, "name stored twice");
			if (n_run < 256)
				run[n_run++] = e;
		}
		if (e.type == TYPE_OBJECT) {
			uint32_t child = sky__get_be32(e.payload);
			if (child <= e.node)
				problem(&r, &e,
					"points to node %" PRIu32
					", not after its own",
					child);
			else if (child >= next)
				problem(&r, &e,
					"points to node %" PRIu32
					", not below the header's %" PRIu64,
					child, next);
			if (n_refs == cap_refs) {
				size_t nc = cap_refs ? cap_refs * 2 : 64;
				ref *p = realloc(refs, nc * sizeof(*p));
				if (!p)
					goto nomem;
				refs = p;
				cap_refs = nc;
			}
			refs[n_refs].child = child;
			refs[n_refs++].from = e;
		} else {
			json_error_t jerr;
			json_t *j = sky__json_loadb((const char *)e.payload,
						    e.payload_len,
						    JSON_DECODE_ANY, &jerr);
			if (!j)
				problem(&r, &e, "value is not JSON: %s",
					jerr.text);
			else if (json_is_object(j))
				problem(&r, &e,
					"object stored as text, not as a node");
			json_decref(j);
		}
	}
	if (rc != 0 && rc != MDB_NOTFOUND) {
		rc = sky__error_lmdb(rc, "session data: check");
		goto done;
	}
	if (members && !have_header)
		problem(&r, NULL, "members without a header");
	if (weighed && weight != header_weight)
		problem(&r, NULL,
			"header weight %" PRIu64 ", members weigh %" PRIu64,
			header_weight, weight);
	/* Each node is referenced once, and every node with entries but the
	 * root is referenced: with child ids above their parents' that makes
	 * the nodes one tree hanging from the root. */
	if (n_refs > 1)
		qsort(refs, n_refs, sizeof(*refs), cmp_ref);
	for (size_t i = 1; i < n_refs; i++)
		if (refs[i].child == refs[i - 1].child)
			problem(&r, &refs[i].from,
				"node %" PRIu32 " is referenced twice",
				refs[i].child);
	for (size_t i = 0, j = 0; i < n_nodes; i++) {
		if (nodes[i] == ROOT_NODE)
			continue;
		while (j < n_refs && refs[j].child < nodes[i])
			j++;
		if (j == n_refs || refs[j].child != nodes[i])
			problem(&r, NULL,
				"node %" PRIu32
				" has entries but no member points to it",
				nodes[i]);
	}
	if (r.failed)
		goto nomem;
	rc = 0;
	if (r.count)
		rc = sky__error_input("session data %016" PRIx64
				      ": %u problem%s found",
				      docid, r.count, r.count == 1 ? "" : "s");
	goto done;
nomem:
	rc = sky__error_nomem();
done:
	mdb_cursor_close(cur);
	free(refs);
	free(nodes);
	return rc;
}
