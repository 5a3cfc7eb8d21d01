/*
 * doc_text.c - the whole form of session data documents (doc_text.h): a
 * small document stored as its compact text, one value. This file writes
 * that text, merges an RFC 7396 patch straight into it in one pass with a
 * small scanner of its own (no parse of the document), and parses it back
 * when a caller needs the object.
 *
 * What it keeps true: the text it writes has the members of every object
 * sorted by name bytes, the order the member form reads in (doc_members.c),
 * so a conversion between the forms changes no reader's bytes; the merge
 * gives, on text it wrote, exactly the bytes that writing
 * MergePatch(document, patch) afresh would, and how deep what it kept of
 * the stored text nests, and on anything else says so (SKY__DOC_MALFORMED)
 * rather than guess, so the caller can take the slow way, which reports
 * real damage.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "doc_layout.h"
#include "doc_text.h"
#include "error.h"
#include "json.h"

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
 * Depth first, stopping as soon as the answer is known: the common value
 * is a scalar (no call) or a shallow object.
 */
size_t sky__doc_depth(json_t *v, size_t cap)
{
	size_t max = 0, i, d;
	const char *key;
	json_t *x;

	if (!json_is_object(v) && !json_is_array(v))
		return 0;
	if (cap == 0)
		return 1;
	if (json_is_object(v)) {
		json_object_foreach(v, key, x) {
			if ((d = sky__doc_depth(x, cap - 1)) > max &&
			    (max = d) >= cap)
				break;
		}
	} else {
		json_array_foreach(v, i, x) {
			if ((d = sky__doc_depth(x, cap - 1)) > max &&
			    (max = d) >= cap)
				break;
		}
	}
	return 1 + max;
}

/*
 * The members of each object are sorted in an array of their own, on the
 * stack for the common small object. The recursion is at most `depth`
 * deep: objects count down the levels left, and an array is measured
 * (sky__doc_depth) before sky__json_dump_buf() writes it.
 */
int sky__doc_dump_sorted(sky_buf *out, json_t *obj, size_t limit, size_t depth,
			 int strip)
{
	named local[32], *m = local;
	size_t n = json_object_size(obj), i = 0;
	int first = 1;
	const char *key;
	size_t key_len;
	json_t *value;
	int rc = -1;

	if (depth == 0)
		return 1; /* obj itself is one level too many */
	if (n > sizeof(local) / sizeof(local[0]) &&
	    !(m = malloc(n * sizeof(*m))))
		return sky__error_nomem();
	json_object_keylen_foreach(obj, key, key_len, value) {
		m[i].name = key;
		m[i].len = key_len;
		m[i++].value = value;
	}
	if (n > 1)
		sky__sort(m, n, sizeof(*m), cmp_named);
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
			if ((rc = sky__doc_dump_sorted(out, m[i].value, limit,
						       depth - 1, strip)) != 0)
				goto done;
			rc = -1;
		} else if (json_is_array(m[i].value) &&
			   sky__doc_depth(m[i].value, depth - 1) > depth - 1) {
			rc = 1;
			goto done;
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
 * by sky__doc_dump_sorted(), so each object's members come sorted by name
 * bytes; sorting the (small) patch's members the same way, one pass over
 * the text merges the two lists, copying untouched members as they are,
 * and parses nothing but the names and the extent of each value. On the way
 * it measures how deep what it keeps of the stored text nests (a bracket
 * count as it skips each value), so that the caller knows whether the
 * result may stay whole, whatever wrote the stored text. It recurses only
 * into objects the patch merges, so no deeper than the patch. It does not
 * validate the text beyond what it needs (the seal vouches for it):
 * anything it does not expect gives MALFORMED and the caller takes the
 * slow way, which reports real damage.
 */
#define MALFORMED SKY__DOC_MALFORMED

typedef struct {
	const char *p, *end;
} text_span;

static size_t max_size(size_t a, size_t b)
{
	return a > b ? a : b;
}

/*
 * Skip the string at t->p (its opening quote). Locals, not t->p, in the
 * loops: this is most of the cost of a merge. With SSE2, sixteen bytes
 * are looked at for a quote or a backslash with a few instructions while
 * sixteen remain before the end of the text (the loads never pass it);
 * byte by byte was ~5 instructions a byte. (Eight bytes at a time in
 * plain integers measured more instructions on documents' short strings.)
 */
static int skip_string(text_span *t)
{
	const char *p = t->p + 1, *end = t->end;
	for (;;) {
#ifdef __SSE2__
		const __m128i quote = _mm_set1_epi8('"'),
			      backslash = _mm_set1_epi8('\\');
		while (end - p >= 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)p);
			unsigned hits = (unsigned)_mm_movemask_epi8(
			    _mm_or_si128(_mm_cmpeq_epi8(v, quote),
					 _mm_cmpeq_epi8(v, backslash)));
			if (hits) {
				p += __builtin_ctz(hits);
				goto found;
			}
			p += 16;
		}
#endif
		while (p < end && *p != '"' && *p != '\\')
			p++;
		if (p >= end)
			return MALFORMED;
#ifdef __SSE2__
	found:
#endif
		if (*p == '"') {
			t->p = p + 1;
			return 0;
		}
		p += 2; /* a backslash and the byte it escapes */
		if (p > end)
			return MALFORMED;
	}
}

/* The bytes that matter while skipping a value; all others are skipped
 * in a tight loop (most of a document's bytes). */
static const unsigned char skip_stop[256] = {
    ['"'] = 1, ['{'] = 1, ['}'] = 1, ['['] = 1, [']'] = 1, [','] = 1,
};

/*
 * Skip from t->p, `depth` brackets deep already, to the end of the value
 * the scan is in: with depth 0 one value (a string, a scalar, or a
 * bracketed value whole), else up to and past the bracket that closes the
 * one open. *nest is the deepest level reached (0 for a scalar).
 */
static int skip_nested(text_span *t, size_t depth, size_t *nest)
{
	const char *p = t->p, *end = t->end, *start = t->p;
	size_t deepest = depth;
	while (p < end) {
		while (!skip_stop[(unsigned char)*p])
			if (++p == end)
				goto out;
		char c = *p;
		if (c == '"') {
			t->p = p;
			if (skip_string(t) < 0)
				return MALFORMED;
			p = t->p;
			if (depth == 0) {
				*nest = 0;
				return 0;
			}
			continue;
		}
		if (c == '{' || c == '[') {
			if (++depth > deepest)
				deepest = depth;
		} else if (c == '}' || c == ']') {
			if (depth == 0)
				break; /* the end of a scalar */
			if (--depth == 0) {
				p++;
				break;
			}
		} else if (depth == 0) { /* ',' */
			break;
		}
		p++;
	}
out:
	t->p = p;
	*nest = deepest;
	return depth || p == start ? MALFORMED : 0;
}

/*
 * Skip one value: a string, a scalar, or a bracketed value whole, and say
 * in *nest how deep it nests (0 for a scalar).
 */
static int skip_value(text_span *t, size_t *nest)
{
	return skip_nested(t, 0, nest);
}

/*
 * Skip the members of an object from t->p (a member's name) to the '}'
 * that closes the object, leaving t->p on it, and say in *nest how deep
 * its values nest (0 when all are scalars). The members after a patch's
 * last one need no names read: they are copied as they are.
 */
static int skip_members(text_span *t, size_t *nest)
{
	int rc = skip_nested(t, 1, nest);
	if (rc < 0 || t->p[-1] != '}')
		return MALFORMED;
	t->p--;
	--*nest;
	return 0;
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
					v = v * 16 +
					    (unsigned)(h >= 'a'	  ? h - 'a' + 10
						       : h >= 'A' ? h - 'A' + 10
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
		return sky__doc_dump_sorted(out, m->value, SIZE_MAX, SIZE_MAX,
					    1) < 0
			   ? -1
			   : 0;
	return sky__json_dump_buf(out, m->value);
}

/*
 * Untouched members are copied in runs: consecutive ones are contiguous in
 * the stored text, one ',' apart, so a run goes out in one append. Flush
 * the pending run [*run, run_end) before anything else is written.
 */
static int flush_run(sky_buf *out, const char **run, const char *run_end,
		     int *first)
{
	if (!*run)
		return 0;
	if ((!*first && sky__buf_putc(out, ',') < 0) ||
	    sky__buf_append(out, *run, (size_t)(run_end - *run)) < 0)
		return -1;
	*first = 0;
	*run = NULL;
	return 0;
}

/*
 * Append MergePatch(object at t->p, patch) to `out`, move t->p past the
 * object, and set *nest to how deep the object appended nests, not
 * counting the levels the patch's own values bring. Returns 0, -1 or
 * MALFORMED.
 */
static int merge_named(sky_buf *out, text_span *t, const named *m, size_t n,
		       size_t *nest);

static int merge_text(sky_buf *out, text_span *t, json_t *patch, size_t *nest)
{
	named local[16], *m = local;
	size_t n = json_object_size(patch), j = 0;
	const char *key;
	size_t key_len;
	json_t *value;
	int rc;

	if (n > sizeof(local) / sizeof(local[0]) &&
	    !(m = malloc(n * sizeof(*m))))
		return sky__error_nomem();
	json_object_keylen_foreach(patch, key, key_len, value) {
		m[j].name = key;
		m[j].len = key_len;
		m[j++].value = value;
	}
	if (n > 1)
		sky__sort(m, n, sizeof(*m), cmp_named);
	rc = merge_named(out, t, m, n, nest);
	if (m != local)
		free(m);
	return rc;
}

/* merge_text() for the patch's members, sorted by name, in m[0, n). */
static int merge_named(sky_buf *out, text_span *t, const named *m, size_t n,
		       size_t *nest)
{
	size_t j = 0;
	const char *run = NULL, *run_end = NULL;
	int first = 1, rc = -1;
	size_t deepest = 0; /* of the members copied or merged */

	if (t->p >= t->end || *t->p != '{' || sky__buf_putc(out, '{') < 0)
		goto fail;
	t->p++;
	while (t->p < t->end && *t->p != '}') {
		const char *name = t->p, *name_end, *val;
		int c = 1, bad = 0;
		size_t vnest = 0;
		if (j == n) {
			/* The patch is done with: the rest joins the run. */
			if (*t->p != '"' || skip_members(t, &vnest) < 0)
				goto malformed;
			if (!run)
				run = name;
			run_end = t->p;
			deepest = max_size(deepest, 1 + vnest);
			break;
		}
		if (*t->p != '"' || skip_string(t) < 0)
			goto malformed;
		name_end = t->p;
		if (t->p >= t->end || *t->p++ != ':')
			goto malformed;
		val = t->p;
		while (j < n &&
		       (c = cmp_stored_name(name + 1, name_end - 1, m[j].name,
					    m[j].len, &bad)) > 0 &&
		       !bad) {
			if (flush_run(out, &run, run_end, &first) < 0 ||
			    add_member(out, &m[j++], &first) < 0)
				goto fail;
		}
		if (bad)
			goto malformed;
		/* A patched object: merged in one pass over it. Anything else
		 * is skipped to find where it ends. */
		if (!(j < n && c == 0 && json_is_object(m[j].value) &&
		      *val == '{') &&
		    skip_value(t, &vnest) < 0)
			goto malformed;
		if (j < n && c == 0) {
			json_t *v = m[j++].value;
			if (flush_run(out, &run, run_end, &first) < 0)
				goto fail;
			if (json_is_null(v))
				goto next; /* deleted */
			if ((!first && sky__buf_putc(out, ',') < 0) ||
			    sky__buf_append(out, name,
					    (size_t)(name_end - name)) < 0 ||
			    sky__buf_putc(out, ':') < 0)
				goto fail;
			first = 0;
			if (json_is_object(v) && *val == '{') {
				if ((rc = merge_text(out, t, v, &vnest)) < 0)
					goto done;
				rc = -1;
				deepest = max_size(deepest, 1 + vnest);
			} else if (json_is_object(v)) {
				if (sky__doc_dump_sorted(out, v, SIZE_MAX,
							 SIZE_MAX, 1) < 0)
					goto fail;
			} else if (sky__json_dump_buf(out, v) < 0) {
				goto fail;
			}
		} else {
			if (!run)
				run = name;
			run_end = t->p;
			deepest = max_size(deepest, 1 + vnest);
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
	if (flush_run(out, &run, run_end, &first) < 0)
		goto fail;
	for (; j < n; j++)
		if (add_member(out, &m[j], &first) < 0)
			goto fail;
	*nest = max_size(deepest, 1);
	rc = sky__buf_putc(out, '}');
	goto done;
malformed:
	rc = MALFORMED;
	goto done;
fail:
	rc = -1;
done:
	return rc;
}

/* Parse the stored text of the whole form into a new object. */
int sky__doc_parse_whole(uint64_t docid, const MDB_val *v, json_t **out)
{
	json_error_t jerr;
	json_t *doc = sky__json_loadb(v->mv_data, v->mv_size, 0, &jerr);
	if (!doc || !json_is_object(doc)) {
		json_decref(doc);
		return sky__doc_corrupt(docid,
					"stored document is not a JSON object");
	}
	*out = doc;
	return 0;
}

/*
 * The entry point of the merge above: the whole text must be one object,
 * with nothing after it.
 */
int sky__doc_text_merge(sky_buf *out, const char *text, size_t len,
			json_t *patch, size_t *depth)
{
	text_span t = {text, text + len};
	int rc = merge_text(out, &t, patch, depth);
	return rc == 0 && t.p != t.end ? MALFORMED : rc;
}

int sky__doc_text_merge_member(sky_buf *out, const char *text, size_t len,
			       const char *name, size_t name_len, json_t *value)
{
	text_span t = {text, text + len};
	named m = {name, name_len, value};
	size_t depth;
	int rc = merge_named(out, &t, &m, 1, &depth);
	return rc == 0 && t.p != t.end ? MALFORMED : rc;
}

int sky__doc_text_member(const char **p, const char *end, const char **name,
			 size_t *name_len, const char **value,
			 size_t *value_len)
{
	text_span t = {*p, end};
	size_t nest;

	if (t.p >= t.end || *t.p != '"' || skip_string(&t) < 0)
		return MALFORMED;
	*name = *p + 1;
	*name_len = (size_t)(t.p - *p) - 2;
	if (t.p >= t.end || *t.p++ != ':')
		return MALFORMED;
	*value = t.p;
	if (skip_value(&t, &nest) < 0)
		return MALFORMED;
	*value_len = (size_t)(t.p - *value);
	if (t.p < t.end && *t.p++ != ',')
		return MALFORMED;
	if (t.p == t.end && t.p[-1] == ',')
		return MALFORMED; /* a comma with no member after it */
	*p = t.p;
	return 0;
}
