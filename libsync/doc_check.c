/*
 * doc_check.c - the check findings of a stored session data document
 * (doc_check.h): one walk of its key range that tests every invariant of
 * the layout (doc_layout.h) and says, one line each, what breaks it, so
 * that repair can tell a damaged document from a sound one and a person
 * can see why.
 *
 * What it keeps true: it never writes and never stops at the first
 * problem; each line names the document, and the node and member (name
 * cut short) when there is one; a clean document gives no line and 0, so
 * a finding always means the stored data, not the check, is wrong.
 */
#include "config.h"

#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doc_bounds.h"
#include "doc_check.h"
#include "doc_layout.h"
#include "doc_text.h"
#include "error.h"
#include "json.h"

typedef struct {
	uint64_t docid;
	sky_buf *out;
	unsigned count;
	int failed; /* could not append: out of memory */
} report;

static void problem(report *r, const sky_doc_entry *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Append one line: where (node and member name, cut short) and what. */
static void problem(report *r, const sky_doc_entry *e, const char *fmt, ...)
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

/*
 * The members of the run `e`: names that need no escapes, the first its
 * key's, sorted strictly; values that are JSON. Copies the last name to
 * last[0, *last_len) (at most SKY__DOC_NAME_INLINE_MAX bytes) for the
 * check of the entry after it.
 */
static void check_run(report *r, const sky_doc_entry *e, sky_buf *scratch,
		      unsigned char *last, size_t *last_len)
{
	const char *p = (const char *)e->payload, *end = p + e->payload_len;
	const char *name, *val, *prev = NULL;
	size_t name_len, val_len, prev_len = 0;
	json_error_t jerr;
	json_t *j;

	*last_len = 0;
	while (p < end) {
		if (sky__doc_text_member(&p, end, &name, &name_len, &val,
					 &val_len) < 0) {
			problem(r, e, "run of members malformed");
			return;
		}
		if (!sky__doc_run_name(name, name_len)) {
			problem(r, e, "run holds a name a run may not");
			return;
		}
		if (!prev && (name_len != e->name_len ||
			      memcmp(name, e->name, name_len) != 0))
			problem(r, e, "run's first member is not its key's");
		if (prev) {
			size_t n = prev_len < name_len ? prev_len : name_len;
			int c = memcmp(prev, name, n);
			if (c > 0 || (c == 0 && prev_len >= name_len))
				problem(r, e, "run's members out of order");
		}
		prev = name;
		prev_len = name_len;
	}
	memcpy(last, prev, prev_len);
	*last_len = prev_len;
	sky__buf_clear(scratch);
	if (sky__buf_putc(scratch, '{') < 0 ||
	    sky__buf_append(scratch, e->payload, e->payload_len) < 0 ||
	    sky__buf_putc(scratch, '}') < 0) {
		r->failed = 1;
		return;
	}
	j = sky__json_loadb(scratch->data, scratch->len, 0, &jerr);
	if (!j)
		problem(r, e, "run of members is not JSON: %s", jerr.text);
	json_decref(j);
}

/* A reference from a member to a child node, for the tree checks. */
typedef struct {
	uint32_t child;
	sky_doc_entry from;
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
	/* The long names of the current hash, to find twins. */
	sky_doc_entry run[256];
	size_t n_run = 0;
	uint64_t run_hash = 0;
	uint64_t next = UINT64_MAX; /* no header: do not bound ids */
	uint64_t weight = EMPTY_WEIGHT, header_weight = 0;
	int have_header = 0, members = 0, whole = 0, weighed = 0, rc;
	/* The last name of the run before, which the next entry of its
	 * node must follow. */
	unsigned char run_last[SKY__DOC_NAME_INLINE_MAX];
	size_t run_last_len = 0;
	uint32_t run_node = 0;
	int after_run = 0;
	sky_buf scratch = SKY_BUF_INIT;

	assert(txn && problems);
	sky__put_be64(prefix, docid);
	if ((rc = mdb_cursor_open(txn, dbi, &cur)) != 0)
		return sky__error_lmdb(rc, "session data: open cursor");
	k.mv_data = prefix;
	k.mv_size = HEADER_LEN;
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
		sky_doc_entry e;
		const char *why;
		if (k.mv_size < HEADER_LEN ||
		    memcmp(k.mv_data, prefix, HEADER_LEN) != 0)
			break;
		if (k.mv_size == HEADER_LEN) {
			json_t *doc;
			have_header = 1;
			switch (sky__doc_header_form(&v)) {
			case FORM_WHOLE:
				whole = 1;
				if (sky__doc_parse_whole(docid, &v, &doc) < 0) {
					problem(&r, NULL,
						"stored document is not a "
						"JSON object");
					break;
				}
				/* The parse did the work; the walk is cheap. */
				if (sky__doc_depth(doc,
						   SKY__DOC_WHOLE_DEPTH_MAX) >
				    SKY__DOC_WHOLE_DEPTH_MAX)
					problem(&r, NULL,
						"whole document nested deeper "
						"than %d levels",
						SKY__DOC_WHOLE_DEPTH_MAX);
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
			default: problem(&r, NULL, "bad header");
			}
			continue;
		}
		if (whole && !members)
			problem(&r, NULL, "members beside a whole document");
		members = 1;
		if (sky__doc_parse_entry(&k, &v, &e, &why) < 0) {
			if (k.mv_size >= NODE_PREFIX_LEN)
				problem(&r, NULL, "node %" PRIu32 ": %s",
					sky__get_be32(
					    (unsigned char *)k.mv_data + 8),
					why);
			else
				problem(&r, NULL, "%s", why);
			continue;
		}
		weight += sky__doc_entry_weight(&e);
		if (after_run && run_node == e.node && !e.is_long) {
			size_t n = run_last_len < e.name_len ? run_last_len
							     : e.name_len;
			int c = memcmp(run_last, e.name, n);
			if (c > 0 || (c == 0 && run_last_len >= e.name_len))
				problem(&r, &e,
					"follows a run that reaches past it");
		}
		after_run = 0;
		if (e.type == TYPE_RUN) {
			check_run(&r, &e, &scratch, run_last, &run_last_len);
			after_run = 1;
			run_node = e.node;
		}
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
		} else if (e.type == TYPE_VALUE) {
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
	sky__buf_free(&scratch);
	free(refs);
	free(nodes);
	return rc;
}
