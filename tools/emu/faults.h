/*
 * faults.h - the fault injector of skylight-emu: parsed fault specs, the
 * trigger rules (probability, "next N", skip, method and path filters) and
 * the seeded random draws that make a run repeatable.
 *
 * A spec is `KIND[:KEY=VALUE[,KEY=VALUE]...]` (or the same keys as a JSON
 * object with "kind"); tools/emu/README.md lists the kinds and keys.
 * Faults apply either to HTTP requests (scope HTTP) or to published events
 * (scope EVENT). For each request or event the installed faults of that
 * scope are tried in the order they were added; the first one that fires
 * wins and no later fault is tried, so no random number is drawn for them.
 * A fault with `next=N` is spent after it fired N times and stays listed
 * (with its counters) until the faults are cleared.
 */
#ifndef EMU_FAULTS_H
#define EMU_FAULTS_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum emu_fault_kind {
	EMU_F_REFUSE,	     /* stop listening for ms: ECONNREFUSED */
	EMU_F_RESET,	     /* not processed; RST after `bytes` of an answer */
	EMU_F_DROP,	     /* processed (the write lands); answer dropped */
	EMU_F_DELAY,	     /* processed and answered after ms */
	EMU_F_ERROR,	     /* answered `code` (default 503), not processed */
	EMU_F_THROTTLE,	     /* answered 429 with Retry-After, not processed */
	EMU_F_EXPIRE,	     /* the request's access token expires now */
	EMU_F_EVENT_DELAY,   /* the event is published ms later */
	EMU_F_EVENT_DUP,     /* the event is published twice */
	EMU_F_EVENT_REORDER, /* the event is published after the next one */
	EMU_F_EVENT_DROP,    /* the event is never published */
	EMU_F_MQTT_DROP,     /* the broker connection drops for ms */
	EMU_F_COUNT
};

enum emu_fault_scope { EMU_SCOPE_HTTP, EMU_SCOPE_EVENT };

/* Method filter bits. */
#define EMU_M_GET 0x01u
#define EMU_M_POST 0x02u
#define EMU_M_PATCH 0x04u
#define EMU_M_PUT 0x08u
#define EMU_M_DELETE 0x10u
#define EMU_M_HEAD 0x20u
#define EMU_M_OTHER 0x40u
#define EMU_M_READ (EMU_M_GET | EMU_M_HEAD)
#define EMU_M_WRITE (EMU_M_POST | EMU_M_PATCH | EMU_M_PUT | EMU_M_DELETE)

struct emu_fault {
	unsigned id;
	enum emu_fault_kind kind;
	double p;	  /* probability of firing when matched */
	int64_t next;	  /* fires left; -1: unlimited */
	int64_t skip;	  /* matches let through before it may fire */
	char *path;	  /* fnmatch(3) glob on the path (topic); NULL: any */
	unsigned methods; /* EMU_M_* mask; 0: any */
	int code;	  /* error: the status answered */
	int64_t ms;	  /* delay, refuse, mqtt-drop, event-delay, reorder */
	int64_t bytes;	  /* reset, drop: answer bytes written before RST */
	int64_t
	    retry_after;  /* throttle, error: Retry-After seconds (0: none) */
	uint64_t matched; /* requests or events that passed the filters */
	uint64_t fired;
	struct emu_fault *link;
};

struct emu_faults;

int emu_faults_new(struct emu_faults **out, uint64_t seed);
void emu_faults_free(struct emu_faults *f);

/*
 * Add a fault from spec text or from a JSON object. On success returns 0
 * and sets *id (may be NULL); on a bad spec returns -1 with a message that
 * names the key in err.
 */
int emu_faults_add_spec(struct emu_faults *f, const char *spec, unsigned *id,
			char *err, size_t errlen);
int emu_faults_add_json(struct emu_faults *f, const json_t *obj, unsigned *id,
			char *err, size_t errlen);
/* Remove one fault (0, or -1 when unknown) or all of them. */
int emu_faults_remove(struct emu_faults *f, unsigned id);
void emu_faults_clear(struct emu_faults *f);
/* Restart the random sequence from `seed`. */
void emu_faults_reseed(struct emu_faults *f, uint64_t seed);
uint64_t emu_faults_seed(const struct emu_faults *f);

/*
 * Decide whether a fault fires for one request (`method`, raw `path`) or
 * one event (`method` NULL, `path` the topic). Returns the fault that
 * fired (borrowed, valid until the faults change) or NULL.
 */
const struct emu_fault *emu_faults_draw(struct emu_faults *f,
					enum emu_fault_scope scope,
					const char *method, const char *path);

/* Count a fault kind that fired by other means (admin endpoints). */
void emu_faults_count(struct emu_faults *f, enum emu_fault_kind kind);

/* {"seed":..., "faults":[...], "fired":{kind: n}} (new reference). */
json_t *emu_faults_to_json(const struct emu_faults *f);

const char *emu_fault_kind_name(enum emu_fault_kind kind);
enum emu_fault_scope emu_fault_kind_scope(enum emu_fault_kind kind);
/* EMU_M_* bit of a method name (EMU_M_OTHER when unknown). */
unsigned emu_method_bit(const char *method);

#endif
