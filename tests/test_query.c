/*
 * test_query.c - local queries (DESIGN.md §6) through the public API:
 * predicate syntax and its errors, escaping, random sessions and random
 * queries compared with a brute-force scan (updates that move sessions in
 * and out, deletes, long values, unicode), pagination with cursors while
 * sessions come and go between pages, the --as visibility rule, pending
 * flags, the plan, and live queries whose entered/left ids must be the
 * exact difference of the result sets. The session fields createdBy,
 * modifiedBy, isDraft, version, createdAt and modifiedAt are queried
 * too (ranges included), in both orders and both directions, and counts
 * are compared with the brute force.
 *
 * The brute force reads every session with sky_session_list() and
 * evaluates the test's own description of each predicate, so it shares
 * no code with the parser or the planner it checks.
 */
#include "config.h"

#include <jansson.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "index.h"
#include "record.h"
#include "skysync.h"
#include "util.h"
#include "skysync_mirror.h"
#include "testutil.h"

/* ---- random ---- */

/* Per thread, so writer threads draw their own sequences. */
static _Thread_local uint64_t rng_state;

static void rng_seed(uint64_t s)
{
	rng_state = s * 0x9E3779B97F4A7C15ull + 1;
}

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state % n);
}

/* ---- the vocabulary of random sessions ---- */

static char long_a[700], long_b[700], long_c[700], long_key[600];

static void init_longs(void)
{
	/* long_a and long_b share their first 600 bytes (past the 502 bytes
	 * an index key keeps), long_c differs early. */
	memset(long_a, 'L', 600);
	strcpy(long_a + 600, "-alpha");
	memset(long_b, 'L', 600);
	strcpy(long_b + 600, "-beta");
	memset(long_c, 'L', 300);
	memset(long_c + 300, 'M', 300);
	strcpy(long_c + 600, "-gamma");
	memset(long_key, 'k', 590);
	strcpy(long_key + 590, "-key");
}

static const char *prop_keys[] = {
    "site", "line", "prio",    "status", "name",    "participant", "ünï",
    "a=b",  "x|y",  "props.q", long_key, "version", "createdBy",
};
#define N_PROP_KEYS (sizeof(prop_keys) / sizeof(prop_keys[0]))

static const char *values[] = {
    "Plant-1", "Plant-2", "Plant-10", "high", "low",	     "",
    "日本",    "日本語",  "a|b",      "x=y",  "back\\slash", "open",
    long_a,    long_b,	  long_c,
};
#define N_VALUES (sizeof(values) / sizeof(values[0]))

static const char *names[] = {"Line 1", "Line 2",  "Linear",
			      "Ωmega",	"Plant-1", long_b};
#define N_NAMES (sizeof(names) / sizeof(names[0]))

static const char *people[] = {"u1", "u2", "u3", "g1", "g2", "u-long"};
#define N_PEOPLE (sizeof(people) / sizeof(people[0]))

static const char *apps[] = {"app1", "app10"};

/* ---- writing sessions through events ---- */

static int event_seq;

static void apply_event(sky_cache *c, const char *app, const char *sid,
			const char *type, json_t *session)
{
	char eid[32], at[40];
	event_seq++;
	snprintf(eid, sizeof(eid), "ev-%d", event_seq);
	snprintf(at, sizeof(at), "2024-01-01T00:00:00.%06dZ", event_seq);
	json_object_set_new(session, "applicationId", json_string(app));
	json_object_set_new(session, "sessionId", json_string(sid));
	json_t *ev = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:o}",
			       "applicationId", app, "sessionId", sid,
			       "eventId", eid, "source", "test", "userId", "u0",
			       "createdAt", at, "timestamp", 1, "version", 1,
			       "eventType", type, "session", session);
	char *text = json_dumps(ev, JSON_COMPACT);
	sky_mirror_outcome o;
	int rc = sky_mirror_event_apply(c, text, strlen(text), &o);
	if (rc != 0)
		fprintf(stderr, "\napply: %s\n", sky_error_last()->message);
	CU_ASSERT(rc == 0);
	free(text);
	json_decref(ev);
}

static json_t *random_props(void)
{
	json_t *p = json_object();
	unsigned n = rnd(4);
	for (unsigned i = 0; i < n; i++)
		json_object_set_new(p, prop_keys[rnd(N_PROP_KEYS)],
				    json_string(values[rnd(N_VALUES)]));
	return p;
}

static json_t *random_participants(void)
{
	json_t *a = json_array();
	unsigned n = rnd(3);
	for (unsigned i = 0; i < n; i++) {
		const char *id = people[rnd(N_PEOPLE)];
		/* Mostly groups are g*, but a user may be called g1 too. */
		const char *type = id[0] == 'g' && rnd(4) ? "group" : "user";
		json_t *p = json_pack("{s:s}", "id", id);
		if (strcmp(type, "user") != 0 || rnd(2))
			json_object_set_new(p, "type", json_string(type));
		json_array_append_new(a, p);
	}
	return a;
}

/* A random time of the few the tests use (times repeat, so ties occur). */
static void random_time(char *buf, size_t cap)
{
	snprintf(buf, cap, "2023-05-01T00:00:%02uZ", rnd(12));
}

/* The other session fields, each sometimes absent. */
static void random_fields(json_t *s)
{
	char at[40];
	if (rnd(5))
		json_object_set_new(s, "createdBy",
				    json_string(people[rnd(N_PEOPLE)]));
	if (rnd(5))
		json_object_set_new(s, "modifiedBy",
				    json_string(people[rnd(N_PEOPLE)]));
	if (rnd(4))
		json_object_set_new(s, "isDraft", json_boolean(rnd(2)));
	if (rnd(5))
		json_object_set_new(s, "version",
				    json_integer((json_int_t)rnd(6) - 1));
	if (rnd(5)) {
		random_time(at, sizeof(at));
		json_object_set_new(s, "modifiedAt", json_string(at));
	}
}

static void create_session(sky_cache *c, const char *app, const char *sid)
{
	char at[40];
	json_t *s = json_object();
	/* Few distinct times, so the session id often breaks ties. */
	snprintf(at, sizeof(at), "2023-05-01T00:00:%02uZ", rnd(12));
	if (rnd(10))
		json_object_set_new(s, "createdAt", json_string(at));
	json_object_set_new(s, "status",
			    json_string(rnd(3) ? "open" : "closed"));
	if (rnd(6))
		json_object_set_new(s, "name",
				    json_string(names[rnd(N_NAMES)]));
	json_object_set_new(s, "participants", random_participants());
	json_object_set_new(s, "properties", random_props());
	random_fields(s);
	apply_event(c, app, sid, "session_created", s);
}

static void random_sid(char *buf, size_t cap)
{
	static const char *forms[] = {"s-%03u", "S%u", "σ-%u", "s-%03u-x"};
	snprintf(buf, cap, forms[rnd(4)], rnd(60));
}

/* Collect the ids of an application's sessions. */
static int collect_id(const char *json, size_t len, void *payload)
{
	json_t *s = json_loadb(json, len, 0, NULL);
	json_array_append_new(payload, json_string(json_string_value(
					   json_object_get(s, "sessionId"))));
	json_decref(s);
	return 0;
}

static json_t *existing_ids(sky_cache *c, const char *app)
{
	json_t *ids = json_array();
	CU_ASSERT(sky_session_list(c, app, collect_id, ids) == 0);
	return ids;
}

/* One random write: create, replace, update, close, or remove. */
static void mutate(sky_cache *c)
{
	const char *app = apps[rnd(2)];
	json_t *ids = existing_ids(c, app);
	size_t n = json_array_size(ids);
	unsigned what = n ? rnd(7) : 0;
	char sid[64];
	if (n)
		snprintf(sid, sizeof(sid), "%s",
			 json_string_value(json_array_get(ids, rnd(n))));
	switch (what) {
	case 0:
		random_sid(sid, sizeof(sid));
		/* fallthrough */
	case 1:
		create_session(c, app, sid); /* new, or replaced whole */
		break;
	case 2:
	case 3: {
		json_t *s = json_pack("{s:o}", "properties", random_props());
		apply_event(c, app, sid, "session_properties_updated", s);
		break;
	}
	case 4: {
		json_t *s = json_object();
		if (rnd(2))
			json_object_set_new(s, "name",
					    json_string(names[rnd(N_NAMES)]));
		if (rnd(2))
			json_object_set_new(s, "participants",
					    random_participants());
		json_object_set_new(s, "status",
				    json_string(rnd(2) ? "open" : "closed"));
		if (rnd(2))
			random_fields(s);
		apply_event(c, app, sid, "session_updated", s);
		break;
	}
	case 5:
		apply_event(c, app, sid, "session_closed",
			    json_pack("{s:s}", "status", "closed"));
		break;
	case 6: CU_ASSERT(sky_mirror_session_remove(c, app, sid) == 0); break;
	}
	json_decref(ids);
}

/* ---- queries described by the test ---- */

enum {
	F_PROP,
	F_STATUS,
	F_NAME,
	F_PART,
	F_CBY,
	F_MBY,
	F_DRAFT,
	F_VER,
	F_CAT,
	F_MAT,
	N_FIELDS
};
enum { O_EQ, O_NE, O_PRE, O_EX, O_GE, O_GT, O_LT, O_LE };
static const char *field_names[] = {
    NULL,	  "status",  "name",	"participant", "createdBy",
    "modifiedBy", "isDraft", "version", "createdAt",   "modifiedAt"};

typedef struct {
	int field;
	const char *prop;
	int op;
	char vals[3][700];
	int nv;
} tpred;

typedef struct {
	const char *app;
	tpred p[3];
	int n;
	const char *viewer;
	const char *groups[2];
	int n_groups;
	int order; /* 0 createdAt, 1 createdAt desc, 2 modifiedAt, 3 desc */
} tquery;

static void escape_into(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	for (; *s && o + 3 < cap; s++) {
		if (strchr("\\=|!^?", *s))
			out[o++] = '\\';
		out[o++] = *s;
	}
	out[o] = '\0';
}

/* The predicate as text, escaped as the syntax requires. */
static char *render(const tpred *p)
{
	char key[1400], buf[8000];
	size_t o = 0;
	int reserved = 0;
	for (int f = 1; f < N_FIELDS && p->field == F_PROP; f++)
		if (!strcmp(p->prop, field_names[f]))
			reserved = 1;
	switch (p->field) {
	case F_PROP:
		if (reserved || !strncmp(p->prop, "props.", 6) || rnd(4) == 0) {
			strcpy(key, "props.");
			escape_into(key + 6, sizeof(key) - 6, p->prop);
		} else {
			escape_into(key, sizeof(key), p->prop);
		}
		break;
	default: strcpy(key, field_names[p->field]);
	}
	o = (size_t)snprintf(buf, sizeof(buf), "%s", key);
	static const char *ops[] = {"=", "!=", "^=", "?", ">=", ">", "<", "<="};
	o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s", ops[p->op]);
	for (int i = 0; i < p->nv; i++) {
		char v[1500];
		escape_into(v, sizeof(v), p->vals[i]);
		o += (size_t)snprintf(buf + o, sizeof(buf) - o, "%s%s",
				      i ? "|" : "", v);
	}
	return strdup(buf);
}

static int value_hit(const tpred *p, const char *v)
{
	for (int i = 0; i < p->nv; i++) {
		size_t m = strlen(p->vals[i]);
		if (p->op == O_PRE ? strncmp(v, p->vals[i], m) == 0
				   : strcmp(v, p->vals[i]) == 0)
			return 1;
	}
	return 0;
}

static int64_t created_us(json_t *s)
{
	int64_t us = 0;
	const char *t = json_string_value(json_object_get(s, "createdAt"));
	if (!t || sky__parse_time(t, &us) < 0)
		return 0;
	return us;
}

/* modifiedAt in microseconds, INT64_MIN when absent. */
static int64_t modified_us(json_t *s)
{
	int64_t us;
	const char *t = json_string_value(json_object_get(s, "modifiedAt"));
	if (!t || sky__parse_time(t, &us) < 0)
		return INT64_MIN;
	return us;
}

/* A number field of the session: 1 and *x, or 0 when it has none. */
static int number_of(const tpred *p, json_t *s, int64_t *x)
{
	json_t *v = json_object_get(s, "version");
	switch (p->field) {
	case F_VER:
		if (!json_is_integer(v))
			return 0;
		*x = (int64_t)json_integer_value(v);
		return 1;
	case F_CAT: *x = created_us(s); return 1;
	default: *x = modified_us(s); return *x != INT64_MIN;
	}
}

static int64_t bound_of(const tpred *p, const char *v)
{
	int64_t b = 0;
	if (p->field == F_VER)
		return strtoll(v, NULL, 10);
	CU_ASSERT(sky__parse_time(v, &b) == 0);
	return b;
}

static int eval(const tpred *p, json_t *s)
{
	int has = 0, hit = 0;
	if (p->field == F_VER || p->field == F_CAT || p->field == F_MAT) {
		int64_t x;
		has = number_of(p, s, &x);
		for (int i = 0; has && i < p->nv; i++) {
			int64_t b = bound_of(p, p->vals[i]);
			switch (p->op) {
			case O_GE: hit |= x >= b; break;
			case O_GT: hit |= x > b; break;
			case O_LT: hit |= x < b; break;
			case O_LE: hit |= x <= b; break;
			default: hit |= x == b;
			}
		}
		return p->op == O_NE ? !hit : hit;
	}
	if (p->field == F_DRAFT) {
		json_t *d = json_object_get(s, "isDraft");
		for (int i = 0; json_is_boolean(d) && i < p->nv; i++)
			hit |= !strcmp(p->vals[i],
				       json_is_true(d) ? "true" : "false");
		return p->op == O_NE ? !hit : hit;
	}
	if (p->field == F_PART) {
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(s, "participants"), i, e) {
			const char *id =
			    json_string_value(json_object_get(e, "id"));
			if (!id)
				continue;
			has = 1;
			if (p->op != O_EX && value_hit(p, id))
				hit = 1;
		}
	} else {
		json_t *v = p->field == F_PROP
				? json_object_get(
				      json_object_get(s, "properties"), p->prop)
				: json_object_get(s, field_names[p->field]);
		const char *str = json_string_value(v);
		has = str != NULL;
		hit = has && p->op != O_EX && value_hit(p, str);
	}
	switch (p->op) {
	case O_EQ:
	case O_PRE: return hit;
	case O_NE: return !hit;
	default: return has;
	}
}

/* The viewer's rule, from the roles the test wrote (see put_roles). */
static int role_access(const tquery *q);

static int visible(const tquery *q, json_t *s)
{
	if (!q->viewer)
		return 1;
	int access = role_access(q);
	if (access == 2)
		return 1;
	if (access == 0)
		return 0;
	size_t i;
	json_t *e;
	json_array_foreach(json_object_get(s, "participants"), i, e) {
		const char *id = json_string_value(json_object_get(e, "id"));
		const char *type =
		    json_string_value(json_object_get(e, "type"));
		int group = type && !strcmp(type, "group");
		if (!group && !strcmp(id, q->viewer))
			return 1;
		for (int g = 0; group && g < q->n_groups; g++)
			if (!strcmp(id, q->groups[g]))
				return 1;
	}
	return 0;
}

typedef struct {
	const tquery *q;
	json_t *rows; /* [[createdAt, sid], ...] */
} brute_ctx;

static int brute_one(const char *json, size_t len, void *payload)
{
	brute_ctx *b = payload;
	json_t *s = json_loadb(json, len, 0, NULL);
	int ok = visible(b->q, s);
	for (int i = 0; i < b->q->n && ok; i++)
		ok = eval(&b->q->p[i], s);
	if (ok) {
		const char *at =
		    json_string_value(json_object_get(s, "createdAt"));
		const char *sid =
		    json_string_value(json_object_get(s, "sessionId"));
		/* [createdAt, sid, created_us, modified_us]: the last two
		 * for the order, dropped by brute(). */
		json_array_append_new(b->rows,
				      json_pack("[s,s,I,I]", at ? at : "", sid,
						(json_int_t)created_us(s),
						(json_int_t)modified_us(s)));
	}
	json_decref(s);
	return 0;
}

/* The order rows are compared in (tquery.order; qsort has no context). */
static int sort_order;

static int cmp_row(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	int r = 0;
	for (int k = sort_order >= 2 ? 3 : 2; k >= 2 && !r; k--) {
		json_int_t u = json_integer_value(json_array_get(x, k));
		json_int_t v = json_integer_value(json_array_get(y, k));
		r = u < v ? -1 : u > v;
		if (sort_order < 2)
			break;
	}
	if (!r)
		r = strcmp(json_string_value(json_array_get(x, 1)),
			   json_string_value(json_array_get(y, 1)));
	return sort_order & 1 ? -r : r;
}

/* [createdAt, sid] of each full row. */
static json_t *strip(json_t *full)
{
	json_t *out = json_array();
	size_t i;
	json_t *r;
	json_array_foreach(full, i, r)
		json_array_append_new(out,
				      json_pack("[O,O]", json_array_get(r, 0),
						json_array_get(r, 1)));
	return out;
}

static json_t *brute_full(sky_cache *c, const tquery *q);

/* The expected rows in the query's order, as [createdAt, sessionId]. */
static json_t *brute(sky_cache *c, const tquery *q)
{
	json_t *full = brute_full(c, q), *out = strip(full);
	json_decref(full);
	return out;
}

static json_t *brute_full(sky_cache *c, const tquery *q)
{
	brute_ctx b = {q, json_array()};
	CU_ASSERT(sky_session_list(c, q->app, brute_one, &b) == 0);
	size_t n = json_array_size(b.rows);
	json_t **v = malloc((n ? n : 1) * sizeof(*v));
	for (size_t i = 0; i < n; i++)
		v[i] = json_incref(json_array_get(b.rows, i));
	sort_order = q->order;
	qsort(v, n, sizeof(*v), cmp_row);
	json_t *out = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(out, v[i]);
	free(v);
	json_decref(b.rows);
	return out;
}

static void random_tpred(tpred *p)
{
	memset(p, 0, sizeof(*p));
	p->field = (int)rnd(14);
	if (p->field >= N_FIELDS)
		p->field = F_PROP;
	p->prop = prop_keys[rnd(N_PROP_KEYS)];
	p->op = (int)rnd(4);
	if (p->field == F_DRAFT || p->field == F_VER)
		p->op = (int)rnd(2); /* = != */
	if (p->field == F_VER && rnd(2))
		p->op = O_GE + (int)rnd(4);
	if (p->field == F_CAT || p->field == F_MAT)
		p->op = O_GE + (int)rnd(4);
	if (p->op == O_EX)
		return;
	if (p->field >= F_DRAFT) {
		p->nv = p->op >= O_GE ? 1 : 1 + (int)rnd(2);
		for (int i = 0; i < p->nv; i++) {
			if (p->field == F_DRAFT)
				snprintf(p->vals[i], sizeof(p->vals[i]), "%s",
					 rnd(2) ? "true" : "false");
			else if (p->field == F_VER)
				snprintf(p->vals[i], sizeof(p->vals[i]), "%d",
					 (int)rnd(7) - 1);
			else
				random_time(p->vals[i], sizeof(p->vals[i]));
		}
		return;
	}
	p->nv = 1 + (int)(rnd(3) == 0 ? rnd(3) : 0);
	for (int i = 0; i < p->nv; i++) {
		const char *v;
		if (p->field == F_STATUS && p->op != O_PRE)
			v = rnd(2) ? "open" : "closed";
		else if (p->field == F_PART || p->field == F_CBY ||
			 p->field == F_MBY)
			v = people[rnd(N_PEOPLE)];
		else if (p->field == F_NAME)
			v = names[rnd(N_NAMES)];
		else
			v = values[rnd(N_VALUES)];
		snprintf(p->vals[i], sizeof(p->vals[i]), "%s", v);
		if (p->op == O_PRE) {
			/* A prefix: sometimes longer than an index key keeps.
			 */
			size_t len = strlen(p->vals[i]);
			size_t cut = len ? rnd((uint32_t)len + 1) : 0;
			if (len > 520 && rnd(2))
				cut = 510 + rnd((uint32_t)(len - 510));
			p->vals[i][cut] = '\0';
			/* Never cut a UTF-8 sequence: back up to a boundary. */
			while (cut > 0 && ((unsigned char)p->vals[i][cut - 1] &
					   0xC0) == 0x80)
				p->vals[i][--cut] = '\0';
			if (cut > 0 &&
			    ((unsigned char)p->vals[i][cut - 1] & 0xC0) == 0xC0)
				p->vals[i][--cut] = '\0';
		}
	}
}

static void random_tquery(tquery *q)
{
	memset(q, 0, sizeof(*q));
	q->app = apps[rnd(2)];
	q->n = (int)rnd(4);
	for (int i = 0; i < q->n; i++)
		random_tpred(&q->p[i]);
	q->order = rnd(2) ? 0 : (int)rnd(4);
}

static sky_query *make_query(sky_cache *c, const tquery *tq, char **texts)
{
	const char *pv[3];
	for (int i = 0; i < tq->n; i++)
		pv[i] = texts[i] = render(&tq->p[i]);
	sky_query *q = NULL;
	int rc = sky_query_new(&q, c, tq->app, pv, (size_t)tq->n);
	if (rc != 0)
		fprintf(stderr, "\nquery: %s\n", sky_error_last()->message);
	CU_ASSERT_FATAL(rc == 0);
	if (tq->viewer)
		CU_ASSERT(sky_query_set_viewer(q, tq->viewer, tq->groups,
					       (size_t)tq->n_groups) == 0);
	CU_ASSERT(sky_query_set_order(q,
				      tq->order >= 2 ? SKY_ORDER_MODIFIED_AT
						     : SKY_ORDER_CREATED_AT,
				      tq->order & 1) == 0);
	return q;
}

typedef struct {
	json_t *rows;
	unsigned pending;
} got_ctx;

static int got_row(const char *json, size_t len, unsigned flags, void *payload)
{
	got_ctx *g = payload;
	json_t *s = json_loadb(json, len, 0, NULL);
	CU_ASSERT_PTR_NOT_NULL(s);
	CU_ASSERT(strlen(json) == len);
	const char *at = json_string_value(json_object_get(s, "createdAt"));
	json_array_append_new(
	    g->rows,
	    json_pack("[s,s]", at ? at : "",
		      json_string_value(json_object_get(s, "sessionId"))));
	if (flags & SKY_RESULT_PENDING)
		g->pending++;
	json_decref(s);
	return 0;
}

static void show_mismatch(const tquery *tq, char **texts, json_t *want,
			  json_t *got)
{
	fprintf(stderr, "\nquery on %s (order %d):", tq->app, tq->order);
	for (int i = 0; i < tq->n; i++)
		fprintf(stderr, " [%.80s]", texts[i]);
	if (tq->viewer)
		fprintf(stderr, " --as %s", tq->viewer);
	char *a = json_dumps(want, JSON_COMPACT);
	char *b = json_dumps(got, JSON_COMPACT);
	fprintf(stderr, "\n want %.600s\n got  %.600s\n", a, b);
	free(a);
	free(b);
}

/* Run the query whole and compare with the brute force. */
static int check_query(sky_cache *c, const tquery *tq)
{
	char *texts[3] = {NULL, NULL, NULL};
	sky_query *q = make_query(c, tq, texts);
	got_ctx g = {json_array(), 0};
	int rc = sky_query_run(q, got_row, &g);
	CU_ASSERT(rc == 0);
	json_t *want = brute(c, tq);
	int ok = json_equal(want, g.rows);
	if (!ok)
		show_mismatch(tq, texts, want, g.rows);
	CU_ASSERT(ok);
	CU_ASSERT_PTR_NULL(sky_query_next_cursor(q));
	CU_ASSERT_PTR_NOT_NULL(sky_query_explain(q));
	uint64_t n = 0;
	CU_ASSERT(sky_query_count(q, &n) == 0);
	if (n != json_array_size(want)) {
		fprintf(stderr, "\ncount %llu, want %zu\n",
			(unsigned long long)n, json_array_size(want));
		show_mismatch(tq, texts, want, g.rows);
		CU_FAIL("count differs from the rows");
		ok = 0;
	}
	json_decref(want);
	json_decref(g.rows);
	sky_query_free(q);
	for (int i = 0; i < 3; i++)
		free(texts[i]);
	return ok;
}

static sky_cache *open_cache(void)
{
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	return c;
}

static void populate(sky_cache *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		char sid[64];
		random_sid(sid, sizeof(sid));
		create_session(c, apps[rnd(2)], sid);
	}
}

static void report_line(const char *line, void *payload)
{
	(void)payload;
	fprintf(stderr, "\ncheck: %s\n", line);
}

/* ---- the tests ---- */

static void test_query__random_against_brute_force(void)
{
	init_longs();
	rng_seed(1);
	sky_cache *c = open_cache();
	populate(c, 150);
	unsigned bad = 0;
	/* Under valgrind fewer rounds of the same mix (250 queries, 80
	 * writes): every predicate shape still comes up many times. */
	int rounds = sky_test_workload(40, 10);
	for (int round = 0; round < rounds; round++) {
		for (int i = 0; i < 25; i++) {
			tquery tq;
			random_tquery(&tq);
			if (!check_query(c, &tq) && ++bad > 5)
				CU_FAIL_FATAL("too many mismatches");
		}
		for (int m = 0; m < 8; m++)
			mutate(c);
	}
	CU_ASSERT(sky_cache_check(c, report_line, NULL) == 0);
	sky_cache_close(c);
}

static void test_query__selected_cases(void)
{
	init_longs();
	rng_seed(2);
	sky_cache *c = open_cache();
	populate(c, 120);
	/* Hand-picked shapes the random mix could miss. */
	static const struct {
		int field;
		const char *prop;
		int op;
		const char *v;
	} cases[] = {
	    {F_PROP, "site", O_EQ, "Plant-1"},
	    {F_PROP, "site", O_PRE, "Plant-1"}, /* Plant-1 and Plant-10 */
	    {F_PROP, "site", O_PRE, ""},	/* any value: like site? */
	    {F_PROP, "status", O_EQ, "open"},	/* the property */
	    {F_PROP, "a=b", O_NE, "x=y"},
	    {F_PROP, "x|y", O_EQ, "a|b"},
	    {F_PROP, "ünï", O_PRE, "日本"},
	    {F_PROP, long_key, O_EX, NULL},
	    {F_PROP, long_key, O_EQ, "high"},
	    {F_PROP, "line", O_EQ, ""},
	    {F_PROP, "line", O_EQ, NULL},  /* long_a, set below */
	    {F_PROP, "line", O_PRE, NULL}, /* 560 bytes of long_a */
	    {F_NAME, NULL, O_PRE, "Line"},
	    {F_NAME, NULL, O_EX, NULL},
	    {F_STATUS, NULL, O_NE, "closed"},
	    {F_PART, NULL, O_EQ, "g1"},
	    {F_PART, NULL, O_NE, "u1"},
	    {F_PART, NULL, O_PRE, "u"},
	    {F_PART, NULL, O_EX, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tquery tq;
		memset(&tq, 0, sizeof(tq));
		tq.n = 1;
		tpred *p = &tq.p[0];
		p->field = cases[i].field;
		p->prop = cases[i].prop;
		p->op = cases[i].op;
		if (p->op != O_EX) {
			p->nv = 1;
			snprintf(p->vals[0], sizeof(p->vals[0]), "%s",
				 cases[i].v ? cases[i].v : long_a);
			if (!cases[i].v && p->op == O_PRE)
				p->vals[0][560] = '\0';
		}
		for (int a = 0; a < 2; a++) {
			tq.app = apps[a];
			check_query(c, &tq);
		}
	}
	sky_cache_close(c);
}

typedef struct {
	const char *text;
	const char *needle;
} bad_case;

static void test_query__syntax_errors(void)
{
	sky_cache *c = open_cache();
	static const bad_case bad[] = {
	    {"site", "expected key=value"}, {"=x", "key is empty"},
	    {"?", "key is empty"},	    {"site\\", "lone backslash"},
	    {"site=a\\", "lone backslash"}, {"status=opne", "open"},
	    {"status!=x|open", "open"},	    {"props.=x", "property name"},
	    {"si?te", "expected"},	    {"", "expected"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sky_query *q = NULL;
		const char *pv[2] = {"site=ok", bad[i].text};
		int rc = sky_query_new(&q, c, "app1", pv, 2);
		CU_ASSERT(rc == SKY_EINVAL);
		CU_ASSERT_PTR_NULL(q);
		const char *msg = sky_error_last()->message;
		char quoted[200];
		snprintf(quoted, sizeof(quoted), "'%s'", bad[i].text);
		if (!strstr(msg, quoted) || !strstr(msg, bad[i].needle)) {
			fprintf(stderr, "\n'%s': message '%s'\n", bad[i].text,
				msg);
			CU_FAIL("the message does not name the predicate");
		}
	}
	/* Invalid UTF-8 in a value. */
	sky_query *q = NULL;
	const char *pv[1] = {"site=\xff\xfe"};
	CU_ASSERT(sky_query_new(&q, c, "app1", pv, 1) == SKY_EINVAL);
	/* A bad application id. */
	CU_ASSERT(sky_query_new(&q, c, "", NULL, 0) == SKY_EINVAL);
	/* Valid oddities: an empty value, '?' inside a key, '!' alone. */
	static const char *good[] = {
	    "site=",	    "what?=1",		 "a!b=c",
	    "x^y=1",	    "site=a|",		 "status?",
	    "participant?", "props.status=open", "name^="};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		q = NULL;
		int rc = sky_query_new(&q, c, "app1", &good[i], 1);
		if (rc != 0)
			fprintf(stderr, "\n'%s': %s\n", good[i],
				sky_error_last()->message);
		CU_ASSERT(rc == 0);
		sky_query_free(q);
	}
	/* Cursors that this library did not give out. */
	CU_ASSERT(sky_query_new(&q, c, "app1", NULL, 0) == 0);
	CU_ASSERT(sky_query_set_cursor(q, "not a cursor!") == SKY_EINVAL);
	CU_ASSERT(sky_query_set_cursor(q, "AAAA") == SKY_EINVAL);
	CU_ASSERT(sky_query_set_cursor(q, NULL) == 0);
	sky_query_free(q);
	sky_cache_close(c);
}

/* The syntax maps onto the right fields and values. */
static void test_query__escaping_and_reserved_names(void)
{
	sky_cache *c = open_cache();
	json_t *s = json_pack("{s:s,s:s,s:s,s:[{s:s}],s:{s:s,s:s,s:s,s:s,s:s}}",
			      "createdAt", "2023-01-01T00:00:00Z", "status",
			      "open", "name", "Line|1", "participants", "id",
			      "u1", "properties", "status", "broken", "name",
			      "n=1", "a=b", "c", "x|y", "v|w", "q?", "?");
	apply_event(c, "app1", "s1", "session_created", s);
	static const struct {
		const char *pred;
		int hits;
	} cases[] = {
	    {"status=open", 1},
	    {"status=closed", 0},
	    {"props.status=broken", 1},
	    {"props.status=open", 0},
	    {"name=Line\\|1", 1},
	    {"name=Line|1", 0}, /* "Line" or "1" */
	    {"props.name=n\\=1", 1},
	    {"props.name=n=1", 1}, /* the value is what follows the first = */
	    {"a\\=b=c", 1},
	    {"a\\=b?", 1},
	    {"a?", 0},
	    {"x\\|y=v\\|w", 1},
	    {"x\\|y=v|w", 0},
	    {"x\\|y^=v\\|", 1},
	    {"q\\?=\\?", 1},
	    {"q\\??", 1},
	    {"participant=u1", 1},
	    {"participant!=u1", 0},
	    {"participant=u2|u1", 1},
	    {"nothing!=x", 1},
	    {"nothing?", 0},
	    {"name^=Line", 1},
	    {"name^=line", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sky_query *q = NULL;
		CU_ASSERT_FATAL(
		    sky_query_new(&q, c, "app1", &cases[i].pred, 1) == 0);
		got_ctx g = {json_array(), 0};
		CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
		if ((int)json_array_size(g.rows) != cases[i].hits) {
			fprintf(stderr, "\n%s: %zu rows, want %d\n",
				cases[i].pred, json_array_size(g.rows),
				cases[i].hits);
			CU_FAIL("wrong rows");
		}
		json_decref(g.rows);
		sky_query_free(q);
	}
	sky_cache_close(c);
}

/* Positions after (at, sid). */
/* Is the full row after `last` (a full row) in the current sort order? */
static int row_after(json_t *row, json_t *last)
{
	return cmp_row(&row, &last) > 0;
}

/*
 * Page through tq `limit` rows at a time, with random writes between
 * pages; each page must be the first rows after the previous one's last.
 */
/*
 * Check one page: the first `limit` rows after (last_at, last_sid), or
 * from the start when `first`; remembers the page's last row there.
 * Returns the next cursor (borrowed from q) or NULL when done or wrong.
 */
static const char *check_page(sky_cache *c, const tquery *tq, char **texts,
			      sky_query *q, size_t limit, int first,
			      json_t **last)
{
	got_ctx g = {json_array(), 0};
	CU_ASSERT_FATAL(sky_query_run(q, got_row, &g) == 0);
	json_t *full = brute_full(c, tq), *sel = json_array();
	size_t i;
	json_t *row;
	json_array_foreach(full, i, row) {
		if (first || row_after(row, *last))
			json_array_append(sel, row);
	}
	json_t *want = strip(sel), *all = strip(full);
	size_t remaining = json_array_size(want);
	while (json_array_size(want) > limit)
		json_array_remove(want, limit);
	int ok = json_equal(want, g.rows);
	if (!ok)
		show_mismatch(tq, texts, want, g.rows);
	CU_ASSERT(ok);
	const char *next = sky_query_next_cursor(q);
	CU_ASSERT((next != NULL) == (remaining > limit));
	size_t n = json_array_size(g.rows);
	if (n && ok) {
		/* The page's last row, with its sort keys as of this page. */
		json_decref(*last);
		*last = json_incref(json_array_get(sel, n - 1));
	}
	json_decref(all);
	json_decref(full);
	json_decref(sel);
	json_decref(want);
	json_decref(g.rows);
	return ok ? next : NULL;
}

/*
 * Page through tq `limit` rows at a time, with random writes between
 * pages; each page must be the first rows after the previous one's last.
 */
static void check_pages(sky_cache *c, const tquery *tq, size_t limit)
{
	char *texts[3] = {NULL, NULL, NULL};
	sky_query *q = make_query(c, tq, texts);
	json_t *last = NULL;
	sky_query_set_limit(q, limit);
	for (int page = 0; page < 200; page++) {
		const char *next =
		    check_page(c, tq, texts, q, limit, page == 0, &last);
		if (!next)
			break;
		char *cur = strdup(next);
		/* Writes between pages: some before, some after. */
		for (unsigned m = rnd(4); m > 0; m--)
			mutate(c);
		CU_ASSERT(sky_query_set_cursor(q, cur) == 0);
		free(cur);
	}
	json_decref(last);
	sky_query_free(q);
	for (int i = 0; i < 3; i++)
		free(texts[i]);
}

static void test_query__pagination_while_writing(void)
{
	init_longs();
	rng_seed(3);
	sky_cache *c = open_cache();
	populate(c, 200);
	int runs = sky_test_workload(30, 10);
	for (int run = 0; run < runs; run++) {
		tquery tq;
		random_tquery(&tq);
		check_pages(c, &tq, 1 + rnd(7));
	}
	sky_cache_close(c);
}

/*
 * Prefixes with more distinct values than the planner merges key by key:
 * their sessions are collected when they drive, checked on the record
 * when they do not; long ones cross hashed keys.
 */
static void test_query__wide_prefixes(void)
{
	init_longs();
	rng_seed(6);
	sky_cache *c = open_cache();
	populate(c, 60);
	for (int i = 0; i < 600; i++) {
		char sid[32], serial[32], lv[720], sv[720], at[40], grp[16];
		snprintf(sid, sizeof(sid), "w%03d", i);
		snprintf(serial, sizeof(serial), "SN-%03d", i * 7 % 600);
		snprintf(grp, sizeof(grp), "G%d", i % 50);
		/* Most long values are hashed keys; some are just short
		 * enough to be stored whole beside them. */
		if (i % 4 == 0)
			snprintf(lv, sizeof(lv), "%.495s%d", long_a, i % 10);
		else
			snprintf(lv, sizeof(lv), "%.600s-%d", long_a, i % 150);
		/* Keys of 506 or 507 bytes: whole, but past the kept bytes. */
		snprintf(sv, sizeof(sv), "%.494s%02d", long_a, i % 20);
		snprintf(at, sizeof(at), "2023-05-01T00:00:%02dZ", i % 13);
		apply_event(
		    c, i < 550 ? "app1" : "app10", sid, "session_created",
		    json_pack("{s:s,s:s,s:{s:s,s:s,s:s,s:s,s:s}}", "createdAt",
			      at, "status", i % 3 ? "open" : "closed",
			      "properties", "serial", serial, "lv", lv, "site",
			      values[i % 3], "grp", grp, "sv", sv));
	}
	static const struct {
		const char *prop;
		const char *prefix; /* NULL: `cut` bytes of long_a + suffix */
		size_t cut;
		const char *suffix;
		const char *and_key, *and_val;
	} cases[] = {
	    {"serial", "SN-", 0, "", NULL, NULL},
	    {"serial", "SN-1", 0, "", NULL, NULL},
	    {"serial", "SN-1", 0, "", "grp", "G7"}, /* wide, not driving */
	    {"serial", "SN-", 0, "", "site", "Plant-2"},
	    {"serial", "SN-0", 0, "", "serial", "SN-007"},
	    {"lv", NULL, 560, "", NULL, NULL}, /* past the kept bytes */
	    {"lv", NULL, 560, "", "grp", "G3"},
	    {"lv", NULL, 498, "", NULL, NULL},	/* whole keys fail it */
	    {"lv", NULL, 495, "", "grp", "G4"}, /* whole keys pass it */
	    {"lv", NULL, 300, "", NULL, NULL},
	    {"lv", "LLL", 0, "", "status", NULL},
	    {"sv", NULL, 494, "1", NULL, NULL}, /* whole keys only */
	    {"sv", NULL, 494, "", NULL, NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (int a = 0; a < 2; a++) {
			tquery tq;
			memset(&tq, 0, sizeof(tq));
			tq.app = apps[a];
			tq.n = 1;
			tq.p[0].field = F_PROP;
			tq.p[0].prop = cases[i].prop;
			tq.p[0].op = O_PRE;
			tq.p[0].nv = 1;
			snprintf(tq.p[0].vals[0], sizeof(tq.p[0].vals[0]), "%s",
				 cases[i].prefix ? cases[i].prefix : long_a);
			if (!cases[i].prefix)
				strcpy(tq.p[0].vals[0] + cases[i].cut,
				       cases[i].suffix);
			if (cases[i].and_key) {
				tpred *p = &tq.p[tq.n++];
				p->field = cases[i].and_val ? F_PROP : F_STATUS;
				p->prop = cases[i].and_key;
				p->op = O_EQ;
				p->nv = 1;
				snprintf(p->vals[0], sizeof(p->vals[0]), "%s",
					 cases[i].and_val ? cases[i].and_val
							  : "open");
			}
			check_query(c, &tq);
			/* Under valgrind, pages 8 times as long: the hundreds
			 * of sessions of a wide prefix still take dozens of
			 * pages, each checked against the brute force, rather
			 * than a hundred. The data set keeps its size: it must
			 * stay wider than the planner's key limits. */
			size_t limit = 1 + rnd(9);
			if (sky_test_under_valgrind())
				limit *= 8;
			check_pages(c, &tq, limit);
		}
	}
	/* The plan says the sessions were collected. */
	const char *pred = "serial^=SN-";
	sky_query *q;
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", &pred, 1) == 0);
	sky_query_set_limit(q, 3);
	got_ctx g = {json_array(), 0};
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	CU_ASSERT(json_array_size(g.rows) == 3);
	CU_ASSERT_PTR_NOT_NULL(strstr(sky_query_explain(q), "collected"));
	json_decref(g.rows);
	sky_query_free(q);
	CU_ASSERT(sky_cache_check(c, report_line, NULL) == 0);
	sky_cache_close(c);
}

/* ---- visibility ---- */

/*
 * Roles of the test: in app1, "readers" (u1 and group g1) may read any
 * session; "members" (u2, group g2) only those they take part in; u3 has
 * no role. In app10 everyone is only a participant reader, through group
 * "all" (and u1 directly).
 */
static void put_roles(sky_cache *c)
{
	const char *r1 =
	    "{\"name\":\"readers\",\"permissions\":[\"session:read:any\","
	    "\"application:read\"],\"participants\":[{\"id\":\"u1\","
	    "\"type\":\"user\"},{\"id\":\"g1\",\"type\":\"group\"}]}";
	const char *r2 =
	    "{\"name\":\"members\",\"permissions\":[\"session:read:"
	    "participant\"],\"participants\":[{\"id\":\"u2\"},{\"id\":"
	    "\"g2\",\"type\":\"group\"}]}";
	const char *r3 =
	    "{\"name\":\"writers\",\"permissions\":[\"session:create\"],"
	    "\"participants\":[{\"id\":\"u3\"}]}";
	const char *r4 =
	    "{\"name\":\"everyone\",\"permissions\":[\"session:read:"
	    "participant\"],\"participants\":[{\"id\":\"all\",\"type\":"
	    "\"group\"},{\"id\":\"u1\"}]}";
	CU_ASSERT(sky_mirror_role_put(c, "app1", r1, strlen(r1)) == 0);
	CU_ASSERT(sky_mirror_role_put(c, "app1", r2, strlen(r2)) == 0);
	CU_ASSERT(sky_mirror_role_put(c, "app1", r3, strlen(r3)) == 0);
	CU_ASSERT(sky_mirror_role_put(c, "app10", r4, strlen(r4)) == 0);
}

/* 2: any, 1: participant, 0: nothing (mirrors put_roles). */
static int role_access(const tquery *q)
{
	int g1 = 0, g2 = 0, all = 0;
	for (int i = 0; i < q->n_groups; i++) {
		g1 |= !strcmp(q->groups[i], "g1");
		g2 |= !strcmp(q->groups[i], "g2");
		all |= !strcmp(q->groups[i], "all");
	}
	if (!strcmp(q->app, "app1")) {
		if (!strcmp(q->viewer, "u1") || g1)
			return 2;
		if (!strcmp(q->viewer, "u2") || g2)
			return 1;
		return 0;
	}
	return (all || !strcmp(q->viewer, "u1")) ? 1 : 0;
}

static void test_query__visibility(void)
{
	init_longs();
	rng_seed(4);
	sky_cache *c = open_cache();
	put_roles(c);
	populate(c, 150);
	static const char *viewers[] = {"u1", "u2", "u3", "g1", "nobody"};
	static const char *groups[] = {"g1", "g2", "all", "u1"};
	int n_queries = sky_test_workload(200, 60);
	for (int i = 0; i < n_queries; i++) {
		tquery tq;
		random_tquery(&tq);
		tq.viewer = viewers[rnd(5)];
		tq.n_groups = (int)rnd(3);
		for (int g = 0; g < tq.n_groups; g++)
			tq.groups[g] = groups[rnd(4)];
		check_query(c, &tq);
		if (i % 20 == 19)
			mutate(c);
	}
	sky_cache_close(c);
}

/* ---- pending writes, plans ---- */

typedef struct {
	sky_cache *c;
	const char *sid;
} pend_ctx;

static int mark_pending(MDB_txn *txn, void *arg)
{
	pend_ctx *p = arg;
	sky_record rec;
	int rc = sky__record_get(txn, p->c, "app1", p->sid, &rec);
	if (rc < 0)
		return rc;
	rec.flags |= SKY_REC_PENDING;
	return sky__record_put_header(txn, p->c, &rec, "app1", p->sid);
}

static void test_query__pending_flag(void)
{
	sky_cache *c = open_cache();
	for (int i = 0; i < 3; i++) {
		char sid[16];
		snprintf(sid, sizeof(sid), "p%d", i);
		apply_event(c, "app1", sid, "session_created",
			    json_pack("{s:s,s:{s:s}}", "createdAt",
				      "2023-01-01T00:00:00Z", "properties", "k",
				      "v"));
	}
	pend_ctx p = {c, "p1"};
	CU_ASSERT(sky__store_write(&c->st, mark_pending, &p) == 0);
	const char *pred = "k=v";
	sky_query *q = NULL;
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", &pred, 1) == 0);
	got_ctx g = {json_array(), 0};
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	CU_ASSERT(json_array_size(g.rows) == 3);
	CU_ASSERT(g.pending == 1);
	json_decref(g.rows);
	sky_query_free(q);
	sky_cache_close(c);
}

/* The plan starts from the smallest indexed set and says so. */
static void test_query__plan_uses_indexes(void)
{
	sky_cache *c = open_cache();
	for (int i = 0; i < 400; i++) {
		char sid[16], site[16];
		snprintf(sid, sizeof(sid), "s%03d", i);
		snprintf(site, sizeof(site), "P%d", i % 40);
		apply_event(c, "app1", sid, "session_created",
			    json_pack("{s:s,s:s,s:{s:s,s:s}}", "createdAt",
				      "2023-01-01T00:00:00Z", "status",
				      i % 2 ? "open" : "closed", "properties",
				      "site", site, "shift",
				      i % 4 ? "day" : "night"));
	}
	const char *preds[] = {"status=open", "shift=night", "site=P5",
			       "prio!=high"};
	sky_query *q = NULL;
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", preds, 4) == 0);
	got_ctx g = {json_array(), 0};
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	/* i % 40 == 5: odd, so open; i % 4 == 1: day. None at night. */
	CU_ASSERT(json_array_size(g.rows) == 0);
	json_t *plan = json_loads(sky_query_explain(q), 0, NULL);
	CU_ASSERT_FATAL(plan != NULL);
	json_t *steps = json_object_get(plan, "steps");
	CU_ASSERT(json_array_size(steps) == 4);
	json_t *first = json_array_get(steps, 0);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(first, "step")), "scan");
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(first, "what")), "site=P5");
	CU_ASSERT(json_integer_value(json_object_get(first, "estimated")) ==
		  10);
	/* The driver offers at most its 10 sessions, never the 400. */
	CU_ASSERT(json_integer_value(json_object_get(first, "actual")) <= 10);
	json_t *last = json_array_get(steps, 3);
	CU_ASSERT_STRING_EQUAL(json_string_value(json_object_get(last, "step")),
			       "exclude");
	json_decref(plan);
	json_decref(g.rows);
	sky_query_free(q);

	/* No positive predicate: every session of the app is walked. */
	const char *neg = "site!=P5";
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", &neg, 1) == 0);
	sky_query_set_limit(q, 5);
	g.rows = json_array();
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	CU_ASSERT(json_array_size(g.rows) == 5);
	CU_ASSERT_PTR_NOT_NULL(sky_query_next_cursor(q));
	plan = json_loads(sky_query_explain(q), 0, NULL);
	first = json_array_get(json_object_get(plan, "steps"), 0);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_object_get(first, "what")), "all sessions");
	CU_ASSERT(json_integer_value(json_object_get(first, "estimated")) ==
		  400);
	CU_ASSERT(json_is_true(json_object_get(plan, "more")));
	json_decref(plan);
	json_decref(g.rows);
	sky_query_free(q);
	sky_cache_close(c);
}

/* A callback that stops early still yields a cursor after its row. */
static int stop_after_two(const char *json, size_t len, unsigned flags,
			  void *payload)
{
	(void)json;
	(void)len;
	(void)flags;
	return ++*(int *)payload == 2 ? 7 : 0;
}

static void test_query__callback_stops(void)
{
	sky_cache *c = open_cache();
	for (int i = 0; i < 5; i++) {
		char sid[8];
		snprintf(sid, sizeof(sid), "s%d", i);
		apply_event(
		    c, "app1", sid, "session_created",
		    json_pack("{s:s}", "createdAt", "2023-01-01T00:00:00Z"));
	}
	sky_query *q = NULL;
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", NULL, 0) == 0);
	int n = 0;
	CU_ASSERT(sky_query_run(q, stop_after_two, &n) == 7);
	CU_ASSERT(n == 2);
	char *cur = strdup(sky_query_next_cursor(q));
	CU_ASSERT(sky_query_set_cursor(q, cur) == 0);
	free(cur);
	got_ctx g = {json_array(), 0};
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	CU_ASSERT(json_array_size(g.rows) == 3);
	CU_ASSERT_STRING_EQUAL(
	    json_string_value(json_array_get(json_array_get(g.rows, 0), 1)),
	    "s2");
	json_decref(g.rows);
	/* The reader form: rows from the reader's snapshot. */
	sky_reader *r;
	CU_ASSERT_FATAL(sky_reader_begin(&r, c) == 0);
	CU_ASSERT(sky_query_set_cursor(q, NULL) == 0);
	g.rows = json_array();
	CU_ASSERT(sky_reader_query(r, q, got_row, &g) == 0);
	CU_ASSERT(json_array_size(g.rows) == 5);
	sky_reader_end(r);
	json_decref(g.rows);
	sky_query_free(q);
	sky_cache_close(c);
}

/* ---- live queries ---- */

#define N_LIVE 12

typedef struct {
	tquery tq;
	sky_live_query *lq;
	json_t *entered, *left, *changed; /* since the last check */
	unsigned calls;
} live_t;

static void on_live(const sky_live_change *ch, void *payload)
{
	live_t *l = payload;
	l->calls++;
	CU_ASSERT_STRING_EQUAL(ch->app_id, l->tq.app);
	for (size_t i = 0; i < ch->n_entered; i++)
		json_array_append_new(l->entered, json_string(ch->entered[i]));
	for (size_t i = 0; i < ch->n_left; i++)
		json_array_append_new(l->left, json_string(ch->left[i]));
	for (size_t i = 0; i < ch->n_changed; i++)
		json_array_append_new(l->changed, json_string(ch->changed[i]));
	for (size_t i = 1; i < ch->n_entered; i++)
		CU_ASSERT(strcmp(ch->entered[i - 1], ch->entered[i]) < 0);
}

/* Set of ids of the brute-force result. */
static json_t *id_set(sky_cache *c, const tquery *tq)
{
	json_t *rows = brute(c, tq), *set = json_object();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row) {
		json_object_set_new(set,
				    json_string_value(json_array_get(row, 1)),
				    json_true());
	}
	json_decref(rows);
	return set;
}

static json_t *diff(json_t *a, json_t *b)
{
	json_t *out = json_object();
	const char *k;
	json_t *v;
	json_object_foreach(a, k, v) {
		if (!json_object_get(b, k))
			json_object_set_new(out, k, json_true());
	}
	return out;
}

static json_t *as_set(json_t *arr)
{
	json_t *set = json_object();
	size_t i;
	json_t *v;
	json_array_foreach(arr, i, v) {
		/* Each id at most once per check (one commit per mutate). */
		CU_ASSERT(json_object_get(set, json_string_value(v)) == NULL);
		json_object_set_new(set, json_string_value(v), json_true());
	}
	return set;
}

/*
 * What the live query reported since the last check must be exactly the
 * difference between the result set `before` and now. Returns the set
 * now (and frees `before`).
 */
static json_t *check_live(sky_cache *c, live_t *l, json_t *before)
{
	json_t *now = id_set(c, &l->tq);
	json_t *want_in = diff(now, before), *want_out = diff(before, now);
	json_t *got_in = as_set(l->entered), *got_out = as_set(l->left);
	int ok = json_equal(want_in, got_in) && json_equal(want_out, got_out);
	if (!ok) {
		char *a = json_dumps(want_in, 0), *b = json_dumps(got_in, 0);
		char *x = json_dumps(want_out, 0), *y = json_dumps(got_out, 0);
		fprintf(stderr, "\nlive: in %s/%s out %s/%s\n", a, b, x, y);
		free(a);
		free(b);
		free(x);
		free(y);
	}
	CU_ASSERT(ok);
	/* Changed members are members before and after. */
	size_t k;
	json_t *v;
	json_array_foreach(l->changed, k, v) {
		const char *id = json_string_value(v);
		CU_ASSERT(json_object_get(now, id) &&
			  json_object_get(before, id));
	}
	CU_ASSERT(sky_live_query_size(l->lq) == json_object_size(now));
	json_array_clear(l->entered);
	json_array_clear(l->left);
	json_array_clear(l->changed);
	json_decref(want_in);
	json_decref(want_out);
	json_decref(got_in);
	json_decref(got_out);
	json_decref(before);
	return now;
}

/* A write function that changes a session, then fails: it aborts. */
typedef struct {
	sky_cache *c;
	const char *app, *sid;
} abort_ctx;

static int put_then_fail(MDB_txn *txn, void *arg)
{
	abort_ctx *a = arg;
	sky_record rec;
	int rc = sky__record_get(txn, a->c, a->app, a->sid, &rec);
	if (rc < 0)
		return rc;
	json_t *old = sky__record_json(&rec);
	json_t *now = json_deep_copy(old);
	json_object_set_new(now, "properties", json_pack("{s:s}", "zz", "1"));
	json_object_set_new(now, "status", json_string("closed"));
	json_object_set_new(now, "participants", json_array());
	rc = sky__record_put(txn, a->c, &rec, now, old, rec.created_us);
	json_decref(old);
	json_decref(now);
	return rc < 0 ? rc : SKY_EINVAL;
}

static void test_query__live_entered_left_exact(void)
{
	init_longs();
	rng_seed(5);
	/* A small map: writes are rerun after it grows, and a rerun attempt
	 * must never be reported twice. */
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	o.initial_map_bytes = 256 * 1024;
	CU_ASSERT_FATAL(sky_cache_open(&c, sky_test_tmpdir(), &o) == 0);
	put_roles(c);
	populate(c, 80);
	static live_t live[N_LIVE];
	json_t *before[N_LIVE];
	for (int i = 0; i < N_LIVE; i++) {
		live_t *l = &live[i];
		memset(l, 0, sizeof(*l));
		random_tquery(&l->tq);
		if (i % 3 == 2) {
			l->tq.viewer = i % 2 ? "u2" : "u1";
			l->tq.groups[0] = "all";
			l->tq.n_groups = 1;
		}
		char *texts[3] = {NULL, NULL, NULL};
		sky_query *q = make_query(c, &l->tq, texts);
		l->entered = json_array();
		l->left = json_array();
		l->changed = json_array();
		CU_ASSERT_FATAL(sky_live_query_add(&l->lq, q, on_live, l) == 0);
		sky_query_free(q); /* the live query keeps its own copy */
		for (int t = 0; t < 3; t++)
			free(texts[t]);
		before[i] = id_set(c, &l->tq);
		CU_ASSERT(sky_live_query_size(l->lq) ==
			  json_object_size(before[i]));
	}
	int steps = sky_test_workload(150, 40);
	for (int step = 0; step < steps; step++) {
		mutate(c);
		for (int i = 0; i < N_LIVE; i++)
			before[i] = check_live(c, &live[i], before[i]);
	}
	/* Writes that do not commit are never reported. */
	unsigned calls[N_LIVE];
	for (int i = 0; i < N_LIVE; i++)
		calls[i] = live[i].calls;
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "no-such-session") ==
		  SKY_ENOTFOUND);
	json_t *ids = existing_ids(c, "app1");
	for (size_t k = 0; k < json_array_size(ids); k++) {
		abort_ctx a = {c, "app1",
			       json_string_value(json_array_get(ids, k))};
		CU_ASSERT(sky__store_write(&c->st, put_then_fail, &a) ==
			  SKY_EINVAL);
	}
	json_decref(ids);
	const char *bad = "{\"applicationId\":\"app1\"}";
	CU_ASSERT(sky_mirror_event_apply(c, bad, strlen(bad), NULL) ==
		  SKY_EINVAL);
	for (int i = 0; i < N_LIVE; i++) {
		CU_ASSERT(live[i].calls == calls[i]);
		sky_live_query_remove(live[i].lq);
		json_decref(live[i].entered);
		json_decref(live[i].left);
		json_decref(live[i].changed);
		json_decref(before[i]);
	}
	/* Removed: no more calls. */
	mutate(c);
	mutate(c);
	for (int i = 0; i < N_LIVE; i++)
		CU_ASSERT(live[i].calls == calls[i]);
	sky_cache_close(c);
}

/* A batch is one commit: one call with the union of its changes. */
typedef struct {
	unsigned calls;
	size_t entered, left;
	sky_live_query *self;
	sky_cache *cache;
	int write_once;
} count_t;

static void on_count(const sky_live_change *ch, void *payload)
{
	count_t *n = payload;
	n->calls++;
	n->entered += ch->n_entered;
	n->left += ch->n_left;
	if (n->write_once) {
		/* A callback may write; the nested change is delivered too. */
		n->write_once = 0;
		const char *ev =
		    "{\"applicationId\":\"app1\",\"sessionId\":\"nested\","
		    "\"eventId\":\"nested-1\",\"createdAt\":"
		    "\"2024-06-01T00:00:00Z\",\"eventType\":"
		    "\"session_created\",\"session\":{\"properties\":"
		    "{\"k\":\"v\"}}}";
		CU_ASSERT(sky_mirror_event_apply(n->cache, ev, strlen(ev),
						 NULL) == 0);
	}
	if (n->self) {
		/* ... and remove its own live query. */
		sky_live_query_remove(n->self);
		n->self = NULL;
	}
}

static void test_query__live_batches_and_callbacks(void)
{
	sky_cache *c = open_cache();
	const char *pred = "k=v";
	sky_query *q = NULL;
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", &pred, 1) == 0);
	count_t n = {0, 0, 0, NULL, c, 1};
	sky_live_query *lq;
	CU_ASSERT_FATAL(sky_live_query_add(&lq, q, on_count, &n) == 0);
	CU_ASSERT(sky_live_query_size(lq) == 0);
	char *texts[10];
	sky_mirror_event_item items[10];
	for (int i = 0; i < 10; i++) {
		static const char *fmt =
		    "{\"applicationId\":\"app1\",\"sessionId\":\"b%d\","
		    "\"eventId\":\"batch-%d\",\"createdAt\":"
		    "\"2024-01-01T00:00:00Z\",\"eventType\":"
		    "\"session_created\",\"session\":{\"properties\":"
		    "{\"k\":\"%s\"}}}";
		CU_ASSERT(asprintf(&texts[i], fmt, i, i, i % 2 ? "v" : "w") >
			  0);
		items[i].json = texts[i];
		items[i].len = strlen(texts[i]);
	}
	CU_ASSERT(sky_mirror_event_apply_batch(c, items, 10) == 0);
	/* One call for the batch (5 entered), one nested for "nested". */
	CU_ASSERT(n.calls == 2);
	CU_ASSERT(n.entered == 6);
	CU_ASSERT(sky_live_query_size(lq) == 6);
	for (int i = 0; i < 10; i++) {
		free(texts[i]);
		sky_free(items[i].error);
	}
	/* A callback removing its own live query. */
	n.self = lq;
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "b1") == 0);
	CU_ASSERT(n.calls == 3);
	CU_ASSERT(n.left == 1);
	CU_ASSERT(sky_mirror_session_remove(c, "app1", "b3") == 0);
	CU_ASSERT(n.calls == 3);
	sky_query_free(q);
	sky_cache_close(c);
}

/* ---- live queries under concurrent writers ---- */

#define WRITERS 3
#define WRITES 150

typedef struct {
	sky_cache *c;
	int id;
} writer_arg;

static atomic_int cw_seq, cw_errors;

static void *writer(void *arg)
{
	writer_arg *w = arg;
	rng_seed(100 + (uint64_t)w->id);
	for (int k = 0; k < WRITES; k++) {
		int seq = atomic_fetch_add(&cw_seq, 1);
		char sid[16], text[512];
		snprintf(sid, sizeof(sid), "c-%u", rnd(40));
		unsigned what = rnd(8);
		int rc;
		if (what < 2) {
			rc = sky_mirror_session_remove(w->c, "app1", sid);
			if (rc == SKY_ENOTFOUND)
				rc = 0;
		} else {
			snprintf(text, sizeof(text),
				 "{\"applicationId\":\"app1\",\"sessionId\":"
				 "\"%s\",\"eventId\":\"cw-%d\",\"createdAt\":"
				 "\"2024-02-01T00:00:00.%06dZ\",\"eventType\":"
				 "\"%s\",\"session\":{\"status\":\"%s\","
				 "\"properties\":{\"site\":\"P%u\"}}}",
				 sid, seq, seq,
				 what < 6 ? "session_created"
					  : "session_properties_updated",
				 rnd(2) ? "open" : "closed", rnd(3));
			rc = sky_mirror_event_apply(w->c, text, strlen(text),
						    NULL);
		}
		if (rc < 0)
			atomic_fetch_add(&cw_errors, 1);
	}
	return NULL;
}

typedef struct {
	pthread_mutex_t lock;
	json_t *members;    /* the result set as the callbacks tell it */
	atomic_int in_call; /* overlapping calls would show here */
	atomic_int anomalies;
	atomic_int calls;
} mirror_t;

static void on_mirror(const sky_live_change *ch, void *payload)
{
	mirror_t *m = payload;
	if (atomic_fetch_add(&m->in_call, 1) != 0)
		atomic_fetch_add(&m->anomalies, 1);
	atomic_fetch_add(&m->calls, 1);
	sched_yield(); /* widen the window for an overlapping call */
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < ch->n_entered; i++) {
		if (json_object_get(m->members, ch->entered[i]))
			atomic_fetch_add(&m->anomalies, 1);
		json_object_set_new(m->members, ch->entered[i], json_true());
	}
	for (size_t i = 0; i < ch->n_left; i++) {
		if (!json_object_get(m->members, ch->left[i]))
			atomic_fetch_add(&m->anomalies, 1);
		json_object_del(m->members, ch->left[i]);
	}
	pthread_mutex_unlock(&m->lock);
	atomic_fetch_sub(&m->in_call, 1);
}

static void test_query__live_concurrent_writers(void)
{
	sky_cache *c = open_cache();
	static const char *preds[] = {"site=P1", "site^=P", "status=open",
				      "site!=P2"};
	enum { NQ = 4 };
	static mirror_t m[NQ];
	sky_live_query *lq[NQ];
	tquery tq[NQ];
	for (int i = 0; i < NQ; i++) {
		sky_query *q;
		CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", &preds[i], 1) ==
				0);
		pthread_mutex_init(&m[i].lock, NULL);
		m[i].members = json_object();
		atomic_init(&m[i].in_call, 0);
		atomic_init(&m[i].anomalies, 0);
		atomic_init(&m[i].calls, 0);
		CU_ASSERT_FATAL(
		    sky_live_query_add(&lq[i], q, on_mirror, &m[i]) == 0);
		sky_query_free(q);
		/* The same query, for the brute force. */
		memset(&tq[i], 0, sizeof(tq[i]));
		tq[i].app = "app1";
		tq[i].n = 1;
		tq[i].p[0].field = i == 2 ? F_STATUS : F_PROP;
		tq[i].p[0].prop = "site";
		tq[i].p[0].op = i == 1 ? O_PRE : i == 3 ? O_NE : O_EQ;
		tq[i].p[0].nv = 1;
		strcpy(tq[i].p[0].vals[0], i == 0   ? "P1"
					   : i == 1 ? "P"
					   : i == 2 ? "open"
						    : "P2");
	}
	atomic_init(&cw_seq, 0);
	atomic_init(&cw_errors, 0);
	pthread_t th[WRITERS];
	writer_arg args[WRITERS];
	for (int i = 0; i < WRITERS; i++) {
		args[i] = (writer_arg){c, i};
		CU_ASSERT_FATAL(
		    pthread_create(&th[i], NULL, writer, &args[i]) == 0);
	}
	/* Remove one live query while the writers run. */
	while (atomic_load(&cw_seq) < WRITERS * WRITES / 2)
		sched_yield();
	sky_live_query_remove(lq[NQ - 1]);
	int calls_at_remove = atomic_load(&m[NQ - 1].calls);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT(atomic_load(&cw_errors) == 0);
	CU_ASSERT(atomic_load(&m[NQ - 1].calls) == calls_at_remove);
	for (int i = 0; i < NQ; i++) {
		CU_ASSERT(atomic_load(&m[i].anomalies) == 0);
		if (i == NQ - 1)
			continue;
		json_t *want = id_set(c, &tq[i]);
		CU_ASSERT(json_equal(want, m[i].members));
		CU_ASSERT(sky_live_query_size(lq[i]) == json_object_size(want));
		CU_ASSERT(atomic_load(&m[i].calls) > 0);
		json_decref(want);
		sky_live_query_remove(lq[i]);
	}
	for (int i = 0; i < NQ; i++) {
		json_decref(m[i].members);
		pthread_mutex_destroy(&m[i].lock);
	}
	sky_cache_close(c);
}

/* ---- session fields, reserved names, older indexes ---- */

static size_t count_rows(sky_cache *c, const char *pred)
{
	sky_query *q = NULL;
	if (sky_query_new(&q, c, "app1", &pred, 1) != 0) {
		fprintf(stderr, "\n%s: %s\n", pred, sky_error_last()->message);
		CU_FAIL_FATAL("query refused");
	}
	got_ctx g = {json_array(), 0};
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	size_t n = json_array_size(g.rows);
	uint64_t counted = 0;
	CU_ASSERT(sky_query_count(q, &counted) == 0);
	CU_ASSERT(counted == n);
	json_decref(g.rows);
	sky_query_free(q);
	return n;
}

static void test_query__session_fields(void)
{
	sky_cache *c = open_cache();
	json_t *s = json_pack(
	    "{s:s,s:s,s:s,s:b,s:i,s:s,s:{s:s,s:s}}", "createdAt",
	    "2023-01-01T00:00:00Z", "createdBy", "u-alice", "modifiedBy",
	    "u-bob", "isDraft", 1, "version", 3, "modifiedAt",
	    "2023-02-01T00:00:00Z", "properties", "line", "3", "version", "v9");
	apply_event(c, "app1", "s1", "session_created", s);
	static const struct {
		const char *pred;
		size_t hits;
	} cases[] = {
	    {"createdBy=u-alice", 1},
	    {"createdBy=u-bob", 0},
	    {"createdBy!=u-bob", 1},
	    {"createdBy=x|u-alice", 1},
	    {"createdBy^=u-", 1},
	    {"createdBy?", 1},
	    {"modifiedBy=u-bob", 1},
	    {"isDraft=true", 1},
	    {"isDraft=false", 0},
	    {"isDraft!=false", 1},
	    {"version=3", 1},
	    {"version=2|4", 0},
	    {"version!=3", 0},
	    {"version>=3", 1},
	    {"version>3", 0},
	    {"version<=3", 1},
	    {"version<3", 0},
	    {"version>-5", 1},
	    {"createdAt>=2023-01-01T00:00:00Z", 1},
	    {"createdAt>2023-01-01T00:00:00Z", 0},
	    {"createdAt<2023-01-01T00:00:00.000001Z", 1},
	    {"createdAt<=2022-12-31T23:59:59Z", 0},
	    {"modifiedAt>2023-01-15T00:00:00Z", 1},
	    {"modifiedAt<2023-02-01T00:00:00Z", 0},
	    {"createdAt>=2023-01-01T00:00:00Z", 1},
	    {"props.version=v9", 1},
	    {"line=3", 1},
	    {"props.createdBy?", 0},
	    {"createdAt>2024-01-01T00:00:00Z", 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = count_rows(c, cases[i].pred);
		if (n != cases[i].hits) {
			fprintf(stderr, "\n%s: %zu rows, want %zu\n",
				cases[i].pred, n, cases[i].hits);
			CU_FAIL("wrong rows");
		}
	}
	/* Refused: look-alikes, fields not covered, wrong operators. */
	static const bad_case bad[] = {
	    {"created_by=u-alice", "looks like the field createdBy"},
	    {"CreatedAt>=x", "looks like the field createdAt"},
	    {"createdby=x", "props.createdby"},
	    {"Status=open", "looks like the field status"},
	    {"sessionId=s1", "queries do not cover"},
	    {"description?", "props.description"},
	    {"createdAt=2023-01-01T00:00:00Z", "takes a range"},
	    {"createdAt>=yesterday", "RFC 3339"},
	    {"version=three", "integer"},
	    {"version>=1|2", "one bound"},
	    {"isDraft=yes", "true or false"},
	    {"isDraft?", "isDraft takes"},
	    {"modifiedAt?", "takes a range"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sky_query *q = NULL;
		CU_ASSERT(sky_query_new(&q, c, "app1", &bad[i].text, 1) ==
			  SKY_EINVAL);
		const char *msg = sky_error_last()->message;
		if (!strstr(msg, bad[i].needle)) {
			fprintf(stderr, "\n'%s': message '%s'\n", bad[i].text,
				msg);
			CU_FAIL("the message does not say why");
		}
	}
	/* A cursor is of one order. */
	sky_query *q = NULL;
	apply_event(c, "app1", "s2", "session_created",
		    json_pack("{s:s}", "createdAt", "2023-03-01T00:00:00Z"));
	CU_ASSERT_FATAL(sky_query_new(&q, c, "app1", NULL, 0) == 0);
	sky_query_set_limit(q, 1);
	CU_ASSERT(sky_query_set_order(q, SKY_ORDER_MODIFIED_AT, 1) == 0);
	got_ctx g = {json_array(), 0};
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	char *cur = strdup(sky_query_next_cursor(q));
	CU_ASSERT(sky_query_set_cursor(q, cur) == 0);
	CU_ASSERT(sky_query_set_order(q, SKY_ORDER_CREATED_AT, 0) == 0);
	CU_ASSERT(sky_query_run(q, got_row, &g) == SKY_EINVAL);
	CU_ASSERT(sky_query_set_order(q, SKY_ORDER_MODIFIED_AT, 1) == 0);
	CU_ASSERT(sky_query_run(q, got_row, &g) == 0);
	CU_ASSERT(json_array_size(g.rows) == 2);
	free(cur);
	json_decref(g.rows);
	sky_query_free(q);
	sky_cache_close(c);
}

/* One session's entries, put with its position (index_v1's callback). */
typedef struct {
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val pos;
} put_ctx;

static int put_key(const unsigned char *key, size_t len, void *arg)
{
	put_ctx *p = arg;
	MDB_val k = {len, (void *)key};
	CU_ASSERT(mdb_put(p->txn, p->dbi, &k, &p->pos, MDB_NODUPDATA) == 0);
	return 0;
}

/* Make the index of `c` one of `version`, as an older library wrote it:
 * rebuilt from the records with that version's entries, the version noted
 * from 2 on (version 1 noted none). */
static int index_at(sky_cache *c, MDB_txn *txn, unsigned version)
{
	MDB_cursor *cur;
	MDB_val k, v;
	put_ctx p = {txn, SKY_DBI(c, SKY_DB_INDEX), {0, NULL}};
	CU_ASSERT_FATAL(mdb_drop(txn, p.dbi, 0) == 0);
	CU_ASSERT_FATAL(
	    mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_SESSIONS), &cur) == 0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		sky_record rec;
		CU_ASSERT_FATAL(sky__record_decode(&v, &rec) == 0);
		json_t *s = sky__record_json(&rec);
		CU_ASSERT_FATAL(s != NULL);
		sky_ixpos pos;
		sky__ixpos_make(
		    &pos, rec.created_us,
		    json_string_value(json_object_get(s, "sessionId")));
		p.pos = (MDB_val){pos.len, pos.data};
		CU_ASSERT(sky__index_entries(s, version, put_key, &p) == 0);
		json_decref(s);
	}
	mdb_cursor_close(cur);
	MDB_val key = {13, (void *)"index_version"};
	if (version == 1) {
		CU_ASSERT(mdb_del(txn, SKY_DBI(c, SKY_DB_META), &key, NULL) ==
			  0);
		return 0;
	}
	unsigned char be[8];
	sky__put_be64(be, version);
	MDB_val val = {8, be};
	CU_ASSERT(mdb_put(txn, SKY_DBI(c, SKY_DB_META), &key, &val, 0) == 0);
	return 0;
}

static int index_v1(MDB_txn *txn, void *arg)
{
	return index_at(arg, txn, 1);
}

/* Schema 3, the cache of an older library, with an index of version 2
 * (exists keys), as that library left it. */
static int cache_of_schema3(MDB_txn *txn, void *arg)
{
	unsigned char be[4];
	sky__put_be32(be, 3);
	MDB_val key = {6, (void *)"schema"}, val = {4, be};
	CU_ASSERT(mdb_put(txn, SKY_DBI((sky_cache *)arg, SKY_DB_META), &key,
			  &val, 0) == 0);
	return index_at(arg, txn, 2);
}

static void test_query__older_index(void)
{
	init_longs();
	rng_seed(7);
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	populate(c, 80);
	tquery tq;
	memset(&tq, 0, sizeof(tq));
	tq.app = "app1";
	tq.n = 2;
	tq.p[0].field = F_CBY;
	tq.p[0].op = O_NE;
	tq.p[0].nv = 1;
	strcpy(tq.p[0].vals[0], "u1");
	tq.p[1].field = F_VER;
	tq.p[1].op = O_GE;
	tq.p[1].nv = 1;
	strcpy(tq.p[1].vals[0], "2");
	json_t *before = brute(c, &tq);
	CU_ASSERT(json_array_size(before) > 0);
	CU_ASSERT(sky__store_write(&c->st, index_v1, c) == 0);
	sky_cache_close(c);

	/* Read-only: the index stays at version 1, the record answers. */
	o.flags = SKY_CACHE_READONLY;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	CU_ASSERT(sky_cache_check(c, report_line, NULL) == 0);
	CU_ASSERT(check_query(c, &tq));
	char *texts[3] = {NULL, NULL, NULL};
	sky_query *q = make_query(c, &tq, texts);
	uint64_t n;
	CU_ASSERT(sky_query_count(q, &n) == 0);
	CU_ASSERT(n == json_array_size(before));
	CU_ASSERT(strstr(sky_query_explain(q), "\"filter\"") != NULL);
	sky_query_free(q);
	for (int i = 0; i < 3; i++)
		free(texts[i]);
	sky_cache_close(c);

	/* Read-write: rebuilt to the current version at open. */
	o.flags = 0;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	CU_ASSERT(sky_cache_check(c, report_line, NULL) == 0);
	q = make_query(c, &tq, texts);
	CU_ASSERT(sky_query_count(q, &n) == 0);
	CU_ASSERT(n == json_array_size(before));
	CU_ASSERT(strstr(sky_query_explain(q), "\"filter\"") == NULL);
	sky_query_free(q);
	for (int i = 0; i < 3; i++)
		free(texts[i]);
	CU_ASSERT(check_query(c, &tq));
	json_decref(before);
	sky_cache_close(c);
}

/* How many entries the index holds under exists ('X') keys. */
static size_t exists_entries(sky_cache *c)
{
	MDB_txn *txn;
	MDB_cursor *cur;
	MDB_val k, v;
	size_t n = 0;
	CU_ASSERT_FATAL(sky__store_read_begin(&c->st, &txn) == 0);
	CU_ASSERT_FATAL(mdb_cursor_open(txn, SKY_DBI(c, SKY_DB_INDEX), &cur) ==
			0);
	while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
		const unsigned char *nul = memchr(k.mv_data, 0, k.mv_size);
		n += nul &&
		     nul + 1 < (const unsigned char *)k.mv_data + k.mv_size &&
		     nul[1] == 'X';
	}
	mdb_cursor_close(cur);
	sky__store_read_end(&c->st, txn);
	return n;
}

/*
 * A new cache's index (version 3) has no exists keys: "field?" walks the
 * field's values. A cache of schema 3 keeps its index of version 2, whose
 * exists keys its writes go on adding (an older library may have it open
 * and read them); queries on either answer as brute force does, exists
 * queries included, before and after writes.
 */
static void test_query__exists_both_versions(void)
{
	init_longs();
	rng_seed(11);
	const char *dir = sky_test_tmpdir();
	sky_cache *c = NULL;
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
	populate(c, 100);
	CU_ASSERT(exists_entries(c) == 0);
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 40; i++) {
			tquery tq;
			random_tquery(&tq);
			if (tq.n == 0)
				tq.n = 1;
			do /* an exists predicate in each */
				random_tpred(&tq.p[0]);
			while (tq.p[0].op != O_EX);
			CU_ASSERT(check_query(c, &tq));
		}
		for (int m = 0; m < 10; m++)
			mutate(c);
		if (round == 0) {
			CU_ASSERT(
			    sky__store_write(&c->st, cache_of_schema3, c) == 0);
			sky_cache_close(c);
			CU_ASSERT_FATAL(sky_cache_open(&c, dir, &o) == 0);
			sky_stats st = SKY_STATS_INIT;
			CU_ASSERT(sky_cache_stats(c, &st) == 0 &&
				  st.schema_version == 3);
			CU_ASSERT(exists_entries(c) > 100);
		}
		CU_ASSERT(sky_cache_check(c, report_line, NULL) == 0);
	}
	size_t before = exists_entries(c);
	populate(c, 20);
	CU_ASSERT(exists_entries(c) > before);
	CU_ASSERT(sky_cache_check(c, report_line, NULL) == 0);
	sky_cache_close(c);
}

int main(void)
{
	static const sky_test_case cases[] = {
	    {"test_query__syntax_errors", test_query__syntax_errors},
	    {"test_query__escaping_and_reserved_names",
	     test_query__escaping_and_reserved_names},
	    {"test_query__selected_cases", test_query__selected_cases},
	    {"test_query__random_against_brute_force",
	     test_query__random_against_brute_force},
	    {"test_query__pagination_while_writing",
	     test_query__pagination_while_writing},
	    {"test_query__wide_prefixes", test_query__wide_prefixes},
	    {"test_query__exists_both_versions",
	     test_query__exists_both_versions},
	    {"test_query__visibility", test_query__visibility},
	    {"test_query__pending_flag", test_query__pending_flag},
	    {"test_query__plan_uses_indexes", test_query__plan_uses_indexes},
	    {"test_query__callback_stops", test_query__callback_stops},
	    {"test_query__live_entered_left_exact",
	     test_query__live_entered_left_exact},
	    {"test_query__live_batches_and_callbacks",
	     test_query__live_batches_and_callbacks},
	    {"test_query__live_concurrent_writers",
	     test_query__live_concurrent_writers},
	    {"test_query__session_fields", test_query__session_fields},
	    {"test_query__older_index", test_query__older_index},
	    {NULL, NULL},
	};
	return sky_test_main("query", cases);
}
