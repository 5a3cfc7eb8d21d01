/*
 * fuzz_query.c - libFuzzer target for the query predicate parser and the
 * planner (libsync/query.c). One input is a list of lines: each line is a
 * predicate, except lines starting with '@', which set up the query:
 *
 *   @app ID          the application (default "app1")
 *   @as USER [G..]   the viewer and its groups (sky_query_set_viewer)
 *   @limit N         page through the results N rows at a time
 *   @cursor TEXT     start after this cursor (sky_query_set_cursor)
 *
 * The cache is made once, in a temporary directory: about a hundred
 * sessions in "app1" (and some in "app10", whose keys share app1's prefix)
 * with properties whose values repeat, differ only after the bytes an
 * index key keeps, contain the syntax characters, or are unique (so a
 * prefix has more keys than the planner merges), one session with
 * hundreds of participants (more keys than the planner walks to estimate
 * a prefix), and roles for the viewer rule. Small, so a run that scans
 * every session stays fast.
 *
 * Checks: no crash or sanitizer report; a rejected query answers
 * SKY_EINVAL (SKY_ELIMIT for an over-long id) with a message; every parsed
 * predicate, written back in a canonical escaped form, parses to the same
 * predicate; the rows of a run are exactly those a scan of every session
 * finds with the same predicates and this file's own visibility rule, in
 * (createdAt, sessionId) order; pages joined by their cursors are the same
 * rows; a fuzzed cursor that is accepted gives the rows strictly after the
 * position it encodes; the explain output is JSON with the row count.
 * With SKY_FUZZ_VERBOSE set, row counts and page cursors are printed (to
 * make seeds with real cursors).
 */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache_types.h"
#include "index.h"
#include "query.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "util.h"

#define N_APP1 80
#define N_CROWD 300
#define N_APP10 24
#define MAX_PREDS 16
#define MAX_GROUPS 8
#define MAX_PAGES 12

typedef struct {
	char app[32];
	char sid[64];
	sky_ixpos pos;
	json_t *json;
	char *text; /* as sky_session_list gave it: the rows must be this */
} model_session;

static sky_cache *cache;
static int verbose; /* SKY_FUZZ_VERBOSE set: row counts and cursors */
static model_session *model;
static size_t n_model;

/* ---- building the cache ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

static char long_a[700], long_b[700], long_c[700], long_key[600];

static const char *prop_keys[] = {
    "site", "line", "prio",    "status", "name", "participant", "ünï",
    "a=b",  "x|y",  "props.q", "q?",	 "b\\s", long_key};
#define N_PROP_KEYS (sizeof(prop_keys) / sizeof(prop_keys[0]))

static const char *values[] = {"Plant-1", "Plant-2", "Plant-10",    "high",
			       "low",	  "",	     "日本",	    "日本語",
			       "a|b",	  "x=y",     "back\\slash", "open",
			       "^=!",	  long_a,    long_b,	    long_c};
#define N_VALUES (sizeof(values) / sizeof(values[0]))

static const char *names[] = {"Line 1", "Line 2",  "Linear",
			      "Ωmega",	"Plant-1", "closed"};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

static const char *people[] = {"u1", "u2", "u3", "g1", "g2", "all"};
#define N_PEOPLE (sizeof(people) / sizeof(people[0]))

static json_t *make_session(const char *app, int i, int round)
{
	char sid[64], at[40], serial[32], bucket[16];
	/* Session ids out of creation order, some with syntax characters. */
	int k = (i * 37) % 1000;
	if (i % 17 == 0)
		snprintf(sid, sizeof(sid), "s|%03d=x", k);
	else if (i % 23 == 0)
		snprintf(sid, sizeof(sid), "sé-%03d", k);
	else
		snprintf(sid, sizeof(sid), "s-%03d", k);
	/* Three sessions share each creation time: ties go by session id. */
	snprintf(at, sizeof(at), "2024-01-01T%02d:%02d:00.000000Z",
		 (i / 3) / 60 % 24, (i / 3) % 60);
	snprintf(serial, sizeof(serial), "S-%04d", i);
	snprintf(bucket, sizeof(bucket), "B%02d", (i + round) % 40);
	json_t *props = json_object();
	json_object_set_new(props, "serial", json_string(serial));
	json_object_set_new(props, "bucket", json_string(bucket));
	unsigned n = rnd(5);
	for (unsigned j = 0; j < n; j++)
		json_object_set_new(props, prop_keys[rnd(N_PROP_KEYS)],
				    json_string(values[rnd(N_VALUES)]));
	json_t *parts = json_array();
	n = rnd(4);
	for (unsigned j = 0; j < n; j++) {
		const char *who = people[rnd(N_PEOPLE)];
		int group = who[0] != 'u';
		json_t *p = json_pack("{s:s}", "id", who);
		if (group || rnd(2))
			json_object_set_new(
			    p, "type", json_string(group ? "group" : "user"));
		json_array_append_new(parts, p);
	}
	json_t *s = json_pack("{s:s,s:s,s:s,s:b,s:i,s:s,s:s,s:s,s:s,s:o,s:o}",
			      "applicationId", app, "sessionId", sid, "status",
			      rnd(3) ? "open" : "closed", "isDraft", 0,
			      "version", 1, "createdBy", "u1", "createdAt", at,
			      "modifiedBy", "u1", "modifiedAt", at,
			      "participants", parts, "properties", props);
	/* Some sessions have no name at all (for `name?`). */
	if (i % 11)
		json_object_set_new(s, "name",
				    json_string(names[rnd(N_NAMES)]));
	return s;
}

static void put_session(json_t *s, int64_t as_of)
{
	char *text = json_dumps(s, JSON_COMPACT);
	if (!text || sky_mirror_session_put(cache, text, strlen(text), NULL, 0,
					    as_of) != 0) {
		fprintf(stderr, "fuzz_query: session_put: %s\n",
			sky_error_last()->message);
		abort();
	}
	free(text);
	json_decref(s);
}

static int model_add(const char *json, size_t len, void *payload)
{
	(void)payload;
	json_t *s = json_loadb(json, len, 0, NULL);
	const char *app =
	    json_string_value(json_object_get(s, "applicationId"));
	const char *sid = json_string_value(json_object_get(s, "sessionId"));
	const char *at = json_string_value(json_object_get(s, "createdAt"));
	int64_t us;
	if (!s || !app || !sid || !at || sky__parse_time(at, &us) != 0)
		abort();
	model_session *m = &model[n_model++];
	snprintf(m->app, sizeof(m->app), "%s", app);
	snprintf(m->sid, sizeof(m->sid), "%s", sid);
	sky__ixpos_make(&m->pos, us, sid);
	m->json = s;
	if (!(m->text = strndup(json, len)))
		abort();
	return 0;
}

static int by_pos(const void *a, const void *b)
{
	const model_session *x = a, *y = b;
	int c = strcmp(x->app, y->app);
	return c ? c : sky__ixpos_cmp(&x->pos, &y->pos);
}

static void put_role(const char *app, const char *text)
{
	if (sky_mirror_role_put(cache, app, text, strlen(text)) != 0)
		abort();
}

/* Remove the cache directory when the fuzzer exits (it is flat). */
static char cache_dir[64];

static void remove_cache(void)
{
	sky_cache_close(cache);
	cache = NULL;
	DIR *d = opendir(cache_dir);
	struct dirent *e;
	char path[128];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", cache_dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(cache_dir);
}

static void open_cache(void)
{
	snprintf(cache_dir, sizeof(cache_dir), "/tmp/skyfuzzq.XXXXXX");
	if (!mkdtemp(cache_dir))
		abort();
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	if (sky_cache_open(&cache, cache_dir, &o) != 0)
		abort();
	atexit(remove_cache);
	memset(long_a, 'L', 600);
	strcpy(long_a + 600, "-alpha");
	memset(long_b, 'L', 600);
	strcpy(long_b + 600, "-beta");
	memset(long_c, 'L', 300);
	memset(long_c + 300, 'M', 300);
	strcpy(long_c + 600, "-gamma");
	memset(long_key, 'k', 590);
	strcpy(long_key + 590, "-key");

	for (int i = 0; i < N_APP1; i++)
		put_session(make_session("app1", i, 0), 1000 + i);
	for (int i = 0; i < N_APP10; i++)
		put_session(make_session("app10", i, 0), 1000 + i);
	/* One session with many participants: `participant^=p-` has more
	 * keys than the planner merges, and more than it walks to estimate. */
	json_t *crowd = make_session("app1", N_APP1, 0), *parts = json_array();
	for (int i = 0; i < N_CROWD; i++) {
		char id[16];
		snprintf(id, sizeof(id), "p-%03d", i);
		json_array_append_new(parts,
				      json_pack("{s:s,s:s}", "id", id, "type",
						i % 3 ? "user" : "group"));
	}
	json_object_set_new(crowd, "participants", parts);
	put_session(crowd, 1000 + N_APP1);
	/* Replace some, so the indexes have had entries removed too. */
	for (int i = 0; i < N_APP1; i += 7)
		put_session(make_session("app1", i, 1), 100000 + i);
	/* app1: u1 and g1 read any session, u2 and g2 those they are in,
	 * u3 nothing. app10: participants only, through "all" or u1. */
	put_role("app1",
		 "{\"name\":\"readers\",\"permissions\":[\"session:read:any\"],"
		 "\"participants\":[{\"id\":\"u1\",\"type\":\"user\"},"
		 "{\"id\":\"g1\",\"type\":\"group\"}]}");
	put_role("app1",
		 "{\"name\":\"members\",\"permissions\":"
		 "[\"session:read:participant\"],\"participants\":"
		 "[{\"id\":\"u2\"},{\"id\":\"g2\",\"type\":\"group\"}]}");
	put_role("app1",
		 "{\"name\":\"writers\",\"permissions\":"
		 "[\"session:create\"],\"participants\":[{\"id\":\"u3\"}]}");
	put_role("app10",
		 "{\"name\":\"everyone\",\"permissions\":"
		 "[\"session:read:participant\"],\"participants\":"
		 "[{\"id\":\"all\",\"type\":\"group\"},{\"id\":\"u1\"}]}");

	model = calloc(N_APP1 + 1 + N_APP10, sizeof(*model));
	if (!model || sky_session_list(cache, NULL, model_add, NULL) != 0)
		abort();
	qsort(model, n_model, sizeof(*model), by_pos);
}

/* ---- the oracle ---- */

/* 2: every session, 1: those the viewer takes part in, 0: none. */
static int expected_access(const char *app, const char *user, char **groups,
			   size_t n_groups)
{
	int any = 0, part = 0;
	if (!user)
		return 2;
	for (size_t i = 0; i <= n_groups; i++) {
		const char *who = i ? groups[i - 1] : user;
		int group = i > 0;
		if (!strcmp(app, "app1")) {
			if (!strcmp(who, group ? "g1" : "u1"))
				any = 1;
			if (!strcmp(who, group ? "g2" : "u2"))
				part = 1;
		} else if (!strcmp(app, "app10")) {
			if (!strcmp(who, group ? "all" : "u1"))
				part = 1;
		}
	}
	return any ? 2 : part;
}

static int expected_visible(const json_t *s, const char *user, char **groups,
			    size_t n_groups)
{
	size_t i;
	const json_t *p;
	json_array_foreach(json_object_get(s, "participants"), i, p) {
		const char *id = json_string_value(json_object_get(p, "id"));
		const char *type =
		    json_string_value(json_object_get(p, "type"));
		if (!id)
			continue;
		if (!type || strcmp(type, "group")) {
			if (!strcmp(id, user))
				return 1;
			continue;
		}
		for (size_t g = 0; g < n_groups; g++)
			if (!strcmp(id, groups[g]))
				return 1;
	}
	return 0;
}

/* Rows as the JSON text of each session (the local view). */
typedef struct {
	char **v;
	size_t n, cap;
} rows;

static void rows_add(rows *r, const char *json, size_t len)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		if (!r->v)
			abort();
	}
	if (!(r->v[r->n] = malloc(len + 1)))
		abort();
	memcpy(r->v[r->n], json, len);
	r->v[r->n++][len] = '\0';
}

static int collect(const char *json, size_t len, unsigned flags, void *payload)
{
	(void)flags;
	rows_add(payload, json, len);
	return 0;
}

static void rows_free(rows *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->v[i]);
	free(r->v);
	memset(r, 0, sizeof(*r));
}

static void fail(const char *why, const char *detail)
{
	fprintf(stderr, "fuzz_query: %s%s%s\n", why, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

/* A predicate written back with every syntax character escaped. */
static void put_escaped(sky_buf *b, const char *s)
{
	for (; *s; s++) {
		if (strchr("\\=|!^?<>", *s) && sky__buf_putc(b, '\\') < 0)
			abort();
		if (sky__buf_putc(b, *s) < 0)
			abort();
	}
}

static void check_round_trip(const sky_pred *p)
{
	static const char *const ops[] = {"=",	"!=", "^=", "?",
					  ">=", ">",  "<",  "<="};
	sky_buf b = SKY_BUF_INIT;
	/* A numeric field's values are normalised as they parse (times to
	 * microseconds), so their text need not come back the same. */
	if (sky__field_numeric(p->field))
		return;
	switch (p->field) {
	case SKY_FIELD_STATUS: sky__buf_puts(&b, "status"); break;
	case SKY_FIELD_NAME: sky__buf_puts(&b, "name"); break;
	case SKY_FIELD_PARTICIPANT: sky__buf_puts(&b, "participant"); break;
	case SKY_FIELD_CREATED_BY: sky__buf_puts(&b, "createdBy"); break;
	case SKY_FIELD_MODIFIED_BY: sky__buf_puts(&b, "modifiedBy"); break;
	case SKY_FIELD_IS_DRAFT: sky__buf_puts(&b, "isDraft"); break;
	case SKY_FIELD_PROP:
		sky__buf_puts(&b, "props.");
		put_escaped(&b, p->prop);
		break;
	default: return;
	}
	sky__buf_puts(&b, ops[p->op]);
	for (size_t i = 0; i < p->n_values; i++) {
		if (i)
			sky__buf_putc(&b, '|');
		put_escaped(&b, p->values[i]);
	}
	char *text = sky__buf_detach(&b, NULL);
	sky_pred q;
	if (!text || sky__pred_parse(text, &q) != 0)
		fail("the canonical form of a predicate does not parse", text);
	int same = q.field == p->field && q.op == p->op &&
		   q.n_values == p->n_values &&
		   (p->field != SKY_FIELD_PROP) == (q.prop == NULL) &&
		   (!p->prop || !strcmp(p->prop, q.prop));
	for (size_t i = 0; same && i < p->n_values; i++)
		same = !strcmp(p->values[i], q.values[i]);
	if (!same)
		fail("the canonical form parses to another predicate", text);
	sky__pred_clear(&q);
	free(text);
}

/* The rows a scan of every session gives, after `from` when not NULL. */
static void expected_rows(const sky_query *q, const char *user, char **groups,
			  size_t n_groups, const sky_ixpos *from, rows *out)
{
	int access = expected_access(q->app, user, groups, n_groups);
	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < n_model && access; i++) {
		const model_session *m = &model[i];
		if (strcmp(m->app, q->app))
			continue;
		if (from && sky__ixpos_cmp(&m->pos, from) <= 0)
			continue;
		if (access == 1 &&
		    !expected_visible(m->json, user, groups, n_groups))
			continue;
		int ok = 1;
		for (size_t p = 0; p < q->n_preds && ok; p++)
			ok = sky__pred_eval(&q->preds[p], m->json);
		if (!ok)
			continue;
		rows_add(out, m->text, strlen(m->text));
	}
}

static void same_rows(const rows *got, const rows *want, size_t offset,
		      const char *what)
{
	for (size_t i = 0; i < got->n; i++)
		if (offset + i >= want->n ||
		    strcmp(got->v[i], want->v[offset + i]))
			fail(what, got->v[i]);
}

/* Decode an accepted cursor independently of query.c: version byte,
 * then the position bytes. */
static int decode_cursor(const char *text, sky_ixpos *x)
{
	static const char b64[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
	    "tuvwxyz0123456789-_";
	unsigned char raw[2 * sizeof(x->data)];
	size_t n = 0;
	uint32_t acc = 0;
	int bits = 0;
	for (const char *p = text; *p; p++) {
		const char *c = strchr(b64, *p);
		if (!c || n == sizeof(raw))
			return -1;
		acc = (acc << 6) | (uint32_t)(c - b64);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			raw[n++] = (unsigned char)(acc >> bits);
		}
	}
	if (n < 2 || n - 1 > sizeof(x->data))
		return -1;
	memcpy(x->data, raw + 1, n - 1);
	x->len = n - 1;
	return 0;
}

static void check_rejected(int rc, const char *what)
{
	if (rc != SKY_EINVAL && rc != SKY_ELIMIT)
		fail(what, "rejected with an unexpected code");
	if (!*sky_error_last()->message)
		fail(what, "rejected without a message");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	if (!cache) {
		verbose = getenv("SKY_FUZZ_VERBOSE") != NULL;
		open_cache();
	}
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	const char *preds[MAX_PREDS];
	size_t n_preds = 0, limit = 0, n_groups = 0;
	const char *app = "app1", *cursor = NULL, *user = NULL;
	char *groups[MAX_GROUPS];
	/* Lines; a NUL ends the input (predicates are C strings). An empty
	 * input is the query without predicates. */
	for (char *line = *text ? text : NULL; line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		if (!strncmp(line, "@app ", 5)) {
			app = line + 5;
		} else if (!strncmp(line, "@limit ", 7)) {
			limit = strtoul(line + 7, NULL, 10) % 1000;
		} else if (!strncmp(line, "@cursor ", 8)) {
			cursor = line + 8;
		} else if (!strncmp(line, "@as ", 4)) {
			char *save = NULL;
			user = strtok_r(line + 4, " ", &save);
			char *g;
			while (n_groups < MAX_GROUPS &&
			       (g = strtok_r(NULL, " ", &save)))
				groups[n_groups++] = g;
		} else if (n_preds < MAX_PREDS) {
			preds[n_preds++] = line;
		}
		/* A last newline ends the last line; it starts none. */
		line = nl && nl[1] ? nl + 1 : NULL;
	}

	sky_query *q = NULL;
	rows got = {0}, want = {0};
	int rc = sky_query_new(&q, cache, app, preds, n_preds);
	if (rc != 0) {
		check_rejected(rc, "sky_query_new");
		/* The id, or one of the predicates alone, is at fault. */
		int found = sky__check_id(app, "app") < 0;
		for (size_t i = 0; i < n_preds && !found; i++) {
			sky_pred p;
			if (sky__pred_parse(preds[i], &p) < 0)
				found = 1;
			else
				sky__pred_clear(&p);
		}
		if (!found)
			fail("a query was rejected but each part parses",
			     sky_error_last()->message);
		goto done;
	}
	if (q->n_preds != n_preds)
		fail("predicates lost", NULL);
	for (size_t i = 0; i < q->n_preds; i++)
		check_round_trip(&q->preds[i]);

	if (user) {
		rc = sky_query_set_viewer(q, user, (const char *const *)groups,
					  n_groups);
		if (rc != 0) {
			check_rejected(rc, "sky_query_set_viewer");
			user = NULL;
			n_groups = 0;
		}
	}

	/* The whole result set. */
	sky_ixpos from, *fromp = NULL;
	if (cursor) {
		rc = sky_query_set_cursor(q, cursor);
		if (rc != 0)
			check_rejected(rc, "sky_query_set_cursor");
		else if (*cursor) {
			if (decode_cursor(cursor, &from) < 0)
				fail("an accepted cursor does not decode",
				     cursor);
			fromp = &from;
		}
	}
	rc = sky_query_run(q, collect, &got);
	if (rc != 0)
		fail("sky_query_run failed", sky_error_last()->message);
	expected_rows(q, user, groups, n_groups, fromp, &want);
	if (got.n != want.n)
		fail("the run and the scan disagree on the count",
		     q->n_preds ? q->preds[0].text : "(no predicate)");
	same_rows(&got, &want, 0, "the run and the scan disagree");
	if (sky_query_next_cursor(q))
		fail("a cursor after a run that reached the end", NULL);
	const char *plan = sky_query_explain(q);
	json_t *pj = plan ? json_loads(plan, 0, NULL) : NULL;
	if (!json_is_object(pj) || json_integer_value(json_object_get(
				       pj, "rows")) != (json_int_t)got.n)
		fail("the explain output", plan);
	json_decref(pj);
	if (verbose)
		fprintf(stderr, "fuzz_query: %zu rows\n", got.n);
	rows_free(&got);

	/* Pages, each starting at the previous page's cursor. */
	if (limit) {
		size_t at = 0;
		sky_query_set_limit(q, limit);
		for (int page = 0; page < MAX_PAGES; page++) {
			rc = sky_query_run(q, collect, &got);
			if (rc != 0)
				fail("a page failed",
				     sky_error_last()->message);
			if (got.n > limit)
				fail("a page longer than the limit", NULL);
			same_rows(&got, &want, at, "a page");
			at += got.n;
			rows_free(&got);
			const char *next = sky_query_next_cursor(q);
			if (verbose)
				fprintf(stderr, "fuzz_query: page %d: %s\n",
					page, next ? next : "(end)");
			if (!next) {
				if (at != want.n)
					fail("the pages ended early", NULL);
				break;
			}
			if (at == want.n)
				fail("a cursor after the last row", NULL);
			char *copy = strdup(next);
			if (!copy || sky_query_set_cursor(q, copy) != 0)
				fail("a cursor the library gave is refused",
				     next);
			free(copy);
		}
	}
done:
	rows_free(&got);
	rows_free(&want);
	sky_query_free(q);
	free(text);
	return 0;
}
