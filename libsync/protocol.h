/*
 * protocol.h - the wire layout of docs/PROTOCOL.md as data: each REST
 * call's method and path template, the subscription and publish topic
 * templates and the six eventType strings. The built-in table is the
 * default; a protocol file (JSON, docs/PROTOCOL.md "Protocol file")
 * replaces any of its entries. The sync engine and skylight-emu both load
 * and validate files here, so the two always agree on what a file means.
 */
#ifndef SKY_PROTOCOL_H
#define SKY_PROTOCOL_H

#include <stddef.h>

#include "protocol_types.h"

typedef struct sky_protocol {
	char *method[SKY_API_COUNT];
	char *path[SKY_API_COUNT]; /* template: {realm} {app} {sid} */
	char *subscribe;	   /* filter with {realm} */
	char *publish;		   /* {realm} {app} {sid} [{type}] */
	char *event[SKY_EV_COUNT]; /* wire eventType, by sky_event_type */
} sky_protocol;

/* The built-in table (static, never freed). */
const sky_protocol *sky__protocol_builtin(void);

/*
 * Load and validate a protocol file: entries it leaves out keep the
 * built-in value. 0, or SKY_EINVAL with a message naming the file and the
 * entry, or -1. *out is the caller's (sky__protocol_free).
 */
int sky__protocol_load(const char *file, sky_protocol **out);
/* The same from JSON text; `what` names the source in messages. */
int sky__protocol_parse(const char *text, size_t len, const char *what,
			sky_protocol **out);
void sky__protocol_free(sky_protocol *p);

/* The table as a protocol file (a new string, indented JSON), or NULL. */
char *sky__protocol_dump(const sky_protocol *p);

/* The file name of a call ("session_patch") and of an event type
 * ("session_properties_updated"); NULL when out of range. */
const char *sky__protocol_call_key(sky_api_call call);
const char *sky__protocol_event_key(sky_event_type type);

/* The type a wire eventType names; -1 when none. */
int sky__protocol_event_type(const sky_protocol *p, const char *wire);

/*
 * Expand a topic template ({realm} {app} {sid} {type}; NULL ids are not
 * allowed where the template uses them). A new string, or NULL.
 */
char *sky__protocol_topic(const char *tmpl, const char *realm, const char *app,
			  const char *sid, const char *type);

/*
 * Read a topic against the publish template: 1 when its {realm} level is
 * `realm` (the literal levels before it matching), else 0. The {app},
 * {sid} and {type} levels are copied into buf (cap bytes) and pointed to
 * when the whole topic matches the template; they stay "" otherwise.
 */
int sky__protocol_topic_read(const sky_protocol *p, const char *topic,
			     const char *realm, char *buf, size_t cap,
			     const char **app, const char **sid,
			     const char **type);

#endif
