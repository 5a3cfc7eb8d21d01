/*
 * faults.c - parsing fault specs and deciding, request by request and event
 * by event, whether one fires. See faults.h for the rules.
 *
 * Repeatability: the only source of randomness is a splitmix64 sequence
 * started from the --seed-random value. A number is drawn only when a
 * fault with p < 1 is matched and not skipped, so the same requests in the
 * same order with the same faults fire the same way on every run.
 * Cumulative counters per kind survive emu_faults_clear() so that
 * /_admin/stats reports every fault ever fired.
 */
#include "config.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "faults.h"
#include "jcheck.h"

struct emu_faults {
	struct emu_fault *head;
	unsigned next_id;
	uint64_t seed;
	uint64_t rng;
	uint64_t fired_by_kind[EMU_F_COUNT];
};

static const struct {
	const char *name;
	enum emu_fault_scope scope;
	int64_t default_ms;
} kinds[EMU_F_COUNT] = {
    [EMU_F_REFUSE] = {"refuse", EMU_SCOPE_HTTP, 1000},
    [EMU_F_RESET] = {"reset", EMU_SCOPE_HTTP, 0},
    [EMU_F_DROP] = {"drop", EMU_SCOPE_HTTP, 0},
    [EMU_F_DELAY] = {"delay", EMU_SCOPE_HTTP, 1000},
    [EMU_F_ERROR] = {"error", EMU_SCOPE_HTTP, 0},
    [EMU_F_THROTTLE] = {"throttle", EMU_SCOPE_HTTP, 0},
    [EMU_F_EXPIRE] = {"expire", EMU_SCOPE_HTTP, 0},
    [EMU_F_EVENT_DELAY] = {"event-delay", EMU_SCOPE_EVENT, 500},
    [EMU_F_EVENT_DUP] = {"event-dup", EMU_SCOPE_EVENT, 0},
    [EMU_F_EVENT_REORDER] = {"event-reorder", EMU_SCOPE_EVENT, 1000},
    [EMU_F_EVENT_DROP] = {"event-drop", EMU_SCOPE_EVENT, 0},
    [EMU_F_MQTT_DROP] = {"mqtt-drop", EMU_SCOPE_EVENT, 1000},
};

const char *emu_fault_kind_name(enum emu_fault_kind kind)
{
	return kind < EMU_F_COUNT ? kinds[kind].name : "?";
}

enum emu_fault_scope emu_fault_kind_scope(enum emu_fault_kind kind)
{
	return kinds[kind].scope;
}

unsigned emu_method_bit(const char *m)
{
	static const struct {
		const char *name;
		unsigned bit;
	} map[] = {{"GET", EMU_M_GET},	     {"POST", EMU_M_POST},
		   {"PATCH", EMU_M_PATCH},   {"PUT", EMU_M_PUT},
		   {"DELETE", EMU_M_DELETE}, {"HEAD", EMU_M_HEAD}};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasecmp(m, map[i].name) == 0)
			return map[i].bit;
	return EMU_M_OTHER;
}

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* A uniform double in [0, 1). */
static double draw(struct emu_faults *f)
{
	return (double)(splitmix64(&f->rng) >> 11) * (1.0 / 9007199254740992.0);
}

int emu_faults_new(struct emu_faults **out, uint64_t seed)
{
	struct emu_faults *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	f->next_id = 1;
	emu_faults_reseed(f, seed);
	*out = f;
	return 0;
}

static void fault_free(struct emu_fault *x)
{
	free(x->path);
	free(x);
}

void emu_faults_clear(struct emu_faults *f)
{
	while (f->head) {
		struct emu_fault *x = f->head;
		f->head = x->link;
		fault_free(x);
	}
}

void emu_faults_free(struct emu_faults *f)
{
	if (!f)
		return;
	emu_faults_clear(f);
	free(f);
}

void emu_faults_reseed(struct emu_faults *f, uint64_t seed)
{
	f->seed = seed;
	f->rng = seed;
}

uint64_t emu_faults_seed(const struct emu_faults *f)
{
	return f->seed;
}

int emu_faults_remove(struct emu_faults *f, unsigned id)
{
	for (struct emu_fault **pp = &f->head; *pp; pp = &(*pp)->link) {
		if ((*pp)->id == id) {
			struct emu_fault *x = *pp;
			*pp = x->link;
			fault_free(x);
			return 0;
		}
	}
	return -1;
}

void emu_faults_count(struct emu_faults *f, enum emu_fault_kind kind)
{
	f->fired_by_kind[kind]++;
}

/* ---- parsing ---- */

static int parse_int(const char *v, int64_t lo, int64_t hi, int64_t *out)
{
	char *end;
	errno = 0;
	long long n = strtoll(v, &end, 10);
	if (errno || end == v || *end || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

static int parse_methods(const char *v, unsigned *out)
{
	unsigned mask = 0;
	char buf[128];
	if (strlen(v) >= sizeof(buf))
		return -1;
	strcpy(buf, v);
	char *save = NULL;
	for (char *t = strtok_r(buf, "|", &save); t;
	     t = strtok_r(NULL, "|", &save)) {
		if (strcasecmp(t, "read") == 0)
			mask |= EMU_M_READ;
		else if (strcasecmp(t, "write") == 0)
			mask |= EMU_M_WRITE;
		else if (strcasecmp(t, "any") == 0)
			mask |= ~0u;
		else if (emu_method_bit(t) != EMU_M_OTHER)
			mask |= emu_method_bit(t);
		else
			return -1;
	}
	if (!mask)
		return -1;
	*out = mask == ~0u ? 0 : mask;
	return 0;
}

/* Apply one key=value to a fault being built. */
static int set_key(struct emu_fault *x, const char *key, const char *val,
		   char *err, size_t errlen)
{
	int64_t n;
	if (strcmp(key, "p") == 0) {
		char *end;
		errno = 0;
		double p = strtod(val, &end);
		if (errno || end == val || *end || !(p >= 0.0 && p <= 1.0)) {
			snprintf(err, errlen, "p: must be a number in [0, 1]");
			return -1;
		}
		x->p = p;
	} else if (strcmp(key, "next") == 0) {
		if (parse_int(val, 1, INT64_MAX, &n) < 0) {
			snprintf(err, errlen, "next: must be an integer >= 1");
			return -1;
		}
		x->next = n;
	} else if (strcmp(key, "skip") == 0) {
		if (parse_int(val, 0, INT64_MAX, &n) < 0) {
			snprintf(err, errlen, "skip: must be an integer >= 0");
			return -1;
		}
		x->skip = n;
	} else if (strcmp(key, "path") == 0) {
		if (!*val) {
			snprintf(err, errlen, "path: must not be empty");
			return -1;
		}
		free(x->path);
		x->path = strdup(val);
	} else if (strcmp(key, "method") == 0) {
		if (kinds[x->kind].scope != EMU_SCOPE_HTTP) {
			snprintf(err, errlen,
				 "method: not a filter of event faults");
			return -1;
		}
		if (parse_methods(val, &x->methods) < 0) {
			snprintf(err, errlen,
				 "method: expected read, write, any or "
				 "GET|POST|PATCH|PUT|DELETE|HEAD");
			return -1;
		}
	} else if (strcmp(key, "code") == 0) {
		if (x->kind != EMU_F_ERROR) {
			snprintf(err, errlen, "code: only for error faults");
			return -1;
		}
		if (parse_int(val, 400, 599, &n) < 0) {
			snprintf(err, errlen, "code: must be 400..599");
			return -1;
		}
		x->code = (int)n;
	} else if (strcmp(key, "ms") == 0) {
		if (parse_int(val, 0, 600000, &n) < 0) {
			snprintf(err, errlen, "ms: must be 0..600000");
			return -1;
		}
		x->ms = n;
	} else if (strcmp(key, "bytes") == 0) {
		if (x->kind != EMU_F_RESET && x->kind != EMU_F_DROP) {
			snprintf(err, errlen, "bytes: only for reset and drop");
			return -1;
		}
		if (parse_int(val, 0, 1 << 30, &n) < 0) {
			snprintf(err, errlen, "bytes: must be >= 0");
			return -1;
		}
		x->bytes = n;
	} else if (strcmp(key, "retry") == 0) {
		if (x->kind != EMU_F_THROTTLE && x->kind != EMU_F_ERROR) {
			snprintf(err, errlen,
				 "retry: only for throttle and error");
			return -1;
		}
		if (parse_int(val, 0, 86400, &n) < 0) {
			snprintf(err, errlen,
				 "retry: must be 0..86400 seconds");
			return -1;
		}
		x->retry_after = n;
	} else {
		snprintf(err, errlen,
			 "%s: unknown key (p, next, skip, path, method, code, "
			 "ms, bytes, retry)",
			 key);
		return -1;
	}
	return 0;
}

static struct emu_fault *fault_start(const char *kind, char *err, size_t errlen)
{
	for (int k = 0; k < EMU_F_COUNT; k++) {
		if (strcmp(kinds[k].name, kind) != 0)
			continue;
		struct emu_fault *x = calloc(1, sizeof(*x));
		if (!x) {
			snprintf(err, errlen, "out of memory");
			return NULL;
		}
		x->kind = (enum emu_fault_kind)k;
		x->p = 1.0;
		x->next = -1;
		x->ms = kinds[k].default_ms;
		x->code = 503;
		x->retry_after = k == EMU_F_THROTTLE ? 1 : 0;
		return x;
	}
	snprintf(err, errlen,
		 "unknown fault kind '%.40s' (refuse, reset, drop, delay, "
		 "error, throttle, expire, event-delay, event-dup, "
		 "event-reorder, event-drop, mqtt-drop)",
		 kind);
	return NULL;
}

static void fault_install(struct emu_faults *f, struct emu_fault *x,
			  unsigned *id)
{
	x->id = f->next_id++;
	struct emu_fault **pp = &f->head;
	while (*pp)
		pp = &(*pp)->link;
	*pp = x;
	if (id)
		*id = x->id;
}

int emu_faults_add_spec(struct emu_faults *f, const char *spec, unsigned *id,
			char *err, size_t errlen)
{
	char *copy = strdup(spec);
	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	char *opts = strchr(copy, ':');
	if (opts)
		*opts++ = '\0';
	struct emu_fault *x = fault_start(copy, err, errlen);
	if (!x)
		goto fail;
	if (opts && *opts) {
		char *save = NULL;
		for (char *kv = strtok_r(opts, ",", &save); kv;
		     kv = strtok_r(NULL, ",", &save)) {
			char *eq = strchr(kv, '=');
			if (!eq) {
				snprintf(err, errlen,
					 "%.40s: expected key=value", kv);
				goto fail;
			}
			*eq = '\0';
			if (set_key(x, kv, eq + 1, err, errlen) < 0)
				goto fail;
		}
	}
	free(copy);
	fault_install(f, x, id);
	return 0;
fail:
	if (x)
		fault_free(x);
	free(copy);
	return -1;
}

int emu_faults_add_json(struct emu_faults *f, const json_t *obj, unsigned *id,
			char *err, size_t errlen)
{
	if (json_is_string(obj))
		return emu_faults_add_spec(f, json_string_value(obj), id, err,
					   errlen);
	if (!json_is_object(obj)) {
		snprintf(err, errlen,
			 "a fault is a JSON object or a spec string");
		return -1;
	}
	const json_t *kind = json_object_get(obj, "kind");
	if (!json_is_string(kind)) {
		snprintf(err, errlen, "kind: missing or not a string");
		return -1;
	}
	struct emu_fault *x = fault_start(json_string_value(kind), err, errlen);
	if (!x)
		return -1;
	const char *key;
	const json_t *v;
	json_object_foreach((json_t *)obj, key, v) {
		char text[256];
		if (strcmp(key, "kind") == 0)
			continue;
		if (json_is_string(v))
			snprintf(text, sizeof(text), "%s",
				 json_string_value(v));
		else if (json_is_integer(v))
			snprintf(text, sizeof(text), "%lld",
				 (long long)json_integer_value(v));
		else if (json_is_real(v))
			snprintf(text, sizeof(text), "%.17g",
				 json_real_value(v));
		else {
			snprintf(err, errlen,
				 "%s: must be a string or a number", key);
			fault_free(x);
			return -1;
		}
		if (set_key(x, key, text, err, errlen) < 0) {
			fault_free(x);
			return -1;
		}
	}
	fault_install(f, x, id);
	return 0;
}

/* ---- drawing ---- */

static int matches(const struct emu_fault *x, const char *method,
		   const char *path)
{
	if (x->methods && method && !(x->methods & emu_method_bit(method)))
		return 0;
	if (x->path && fnmatch(x->path, path, 0) != 0)
		return 0;
	return 1;
}

const struct emu_fault *emu_faults_draw(struct emu_faults *f,
					enum emu_fault_scope scope,
					const char *method, const char *path)
{
	for (struct emu_fault *x = f->head; x; x = x->link) {
		if (kinds[x->kind].scope != scope || x->next == 0)
			continue;
		if (!matches(x, method, path))
			continue;
		x->matched++;
		if (x->skip > 0) {
			x->skip--;
			continue;
		}
		if (x->p < 1.0 && !(draw(f) < x->p))
			continue;
		x->fired++;
		if (x->next > 0)
			x->next--;
		f->fired_by_kind[x->kind]++;
		return x;
	}
	return NULL;
}

/* ---- reporting ---- */

static json_t *fault_json(const struct emu_fault *x)
{
	json_t *o = json_object();
	EMU_JSON(json_object_set_new(o, "id", json_integer(x->id)));
	EMU_JSON(
	    json_object_set_new(o, "kind", json_string(kinds[x->kind].name)));
	EMU_JSON(json_object_set_new(o, "p", json_real(x->p)));
	EMU_JSON(json_object_set_new(
	    o, "remaining", x->next < 0 ? json_null() : json_integer(x->next)));
	EMU_JSON(json_object_set_new(o, "skip", json_integer(x->skip)));
	if (x->path)
		EMU_JSON(json_object_set_new(o, "path", json_string(x->path)));
	if (x->methods) {
		char m[64] = "";
		static const char *names[] = {"GET", "POST",   "PATCH",
					      "PUT", "DELETE", "HEAD"};
		for (int i = 0; i < 6; i++) {
			if (!(x->methods & (1u << i)))
				continue;
			if (*m)
				strcat(m, "|");
			strcat(m, names[i]);
		}
		EMU_JSON(json_object_set_new(o, "method", json_string(m)));
	}
	switch (x->kind) {
	case EMU_F_ERROR:
		EMU_JSON(json_object_set_new(o, "code", json_integer(x->code)));
		/* fall through */
	case EMU_F_THROTTLE:
		EMU_JSON(json_object_set_new(o, "retry",
					     json_integer(x->retry_after)));
		break;
	case EMU_F_RESET:
	case EMU_F_DROP:
		EMU_JSON(
		    json_object_set_new(o, "bytes", json_integer(x->bytes)));
		break;
	case EMU_F_REFUSE:
	case EMU_F_DELAY:
	case EMU_F_EVENT_DELAY:
	case EMU_F_EVENT_REORDER:
	case EMU_F_MQTT_DROP:
		EMU_JSON(json_object_set_new(o, "ms", json_integer(x->ms)));
		break;
	default: break;
	}
	EMU_JSON(json_object_set_new(o, "matched",
				     json_integer((json_int_t)x->matched)));
	EMU_JSON(json_object_set_new(o, "fired",
				     json_integer((json_int_t)x->fired)));
	return o;
}

json_t *emu_faults_to_json(const struct emu_faults *f)
{
	json_t *o = json_object();
	json_t *list = json_array();
	json_t *fired = json_object();
	for (const struct emu_fault *x = f->head; x; x = x->link)
		EMU_JSON(json_array_append_new(list, fault_json(x)));
	for (int k = 0; k < EMU_F_COUNT; k++)
		EMU_JSON(json_object_set_new(
		    fired, kinds[k].name,
		    json_integer((json_int_t)f->fired_by_kind[k])));
	/* Seeds are shown as text: JSON numbers lose precision past 2^53. */
	char seed[24];
	snprintf(seed, sizeof(seed), "%llu", (unsigned long long)f->seed);
	EMU_JSON(json_object_set_new(o, "seed", json_string(seed)));
	EMU_JSON(json_object_set_new(o, "faults", list));
	EMU_JSON(json_object_set_new(o, "fired", fired));
	return o;
}
