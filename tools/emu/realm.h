/*
 * realm.h - the model of skylight-emu: one realm with its users, groups,
 * applications, roles, sessions and session data, the permission rules of
 * docs/PROTOCOL.md, and the events (DESIGN.md §3) that every change makes.
 *
 * The realm knows nothing of HTTP, tokens or storage: each operation gets
 * the id of an authenticated caller and fills an emu_result with the HTTP
 * status and answer, the events to publish once answered, and which
 * session (if any) was changed so the caller can persist it.
 *
 * Permission rules (per application, from the roles whose participants
 * include the caller directly or through one of its groups):
 *   application:read          see the application and its roles
 *   session:read:participant  see sessions the caller takes part in
 *                             (directly or through a group)
 *   session:read:any          see every session
 *   session:create            create sessions
 *   session:update            patch name/description/properties/other
 *                             fields, patch data, add participants,
 *                             send custom events
 *   session:close             set status "closed"
 * A session the caller may not see answers 404, for reads and writes alike
 * (its existence is not revealed); a visible one the caller may not change
 * answers 403. An application that exists but that the caller may not read
 * answers 403.
 */
#ifndef EMU_REALM_H
#define EMU_REALM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct emu_realm;

/* The eventType strings of DESIGN.md §3, in one table (realm.c). */
enum emu_event_type {
	EMU_EV_SESSION_CREATED,
	EMU_EV_SESSION_UPDATED,
	EMU_EV_PROPERTIES_UPDATED,
	EMU_EV_DATA_UPDATED,
	EMU_EV_EVENT_CREATED,
	EMU_EV_SESSION_CLOSED,
	EMU_EV_COUNT
};
const char *emu_event_type_name(enum emu_event_type t);

typedef struct {
	int status;	/* HTTP status of the answer */
	json_t *body;	/* the answer, or {error, message, status} */
	json_t *events; /* events to publish after answering, or NULL */
	char app[256];	/* the changed session, when changed is set */
	char sid[256];
	int changed_session; /* the session record changed */
	int changed_data;    /* its data changed */
} emu_result;

#define EMU_RESULT_INIT                                                        \
	{                                                                      \
		0, NULL, NULL, "", "", 0, 0                                    \
	}
void emu_result_clear(emu_result *res);
/* Make res an error answer {error, message, status}. */
void emu_result_error(emu_result *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Build the realm from a seed (README.md describes the format; --state
 * loads the same shape). `seed` is borrowed. -1 with a message naming the
 * offending field in err.
 */
int emu_realm_load(struct emu_realm **out, const json_t *seed, char *err,
		   size_t errlen);
void emu_realm_free(struct emu_realm *r);
/* The whole realm in the seed format (new reference). */
json_t *emu_realm_export(const struct emu_realm *r);

const char *emu_realm_name(const struct emu_realm *r);
size_t emu_realm_session_count(const struct emu_realm *r);

/* The user id for these credentials, or NULL (borrowed). */
const char *emu_realm_login(const struct emu_realm *r, const char *username,
			    const char *password);
int emu_realm_user_exists(const struct emu_realm *r, const char *uid);
/* The user's group ids (a JSON array, borrowed), or NULL. */
const json_t *emu_realm_user_groups(const struct emu_realm *r, const char *uid);

/* Borrowed views for persistence (valid until the next change). */
const json_t *emu_realm_session(const struct emu_realm *r, const char *app,
				const char *sid);
const json_t *emu_realm_data(const struct emu_realm *r, const char *app,
			     const char *sid);

/* The calls of docs/PROTOCOL.md. `uid` is the caller; bodies borrowed. */
void emu_realm_list_apps(struct emu_realm *r, const char *uid, emu_result *res);
void emu_realm_get_app(struct emu_realm *r, const char *uid, const char *app,
		       emu_result *res);
void emu_realm_list_roles(struct emu_realm *r, const char *uid, const char *app,
			  emu_result *res);
void emu_realm_list_sessions(struct emu_realm *r, const char *uid,
			     const char *app, emu_result *res);
void emu_realm_create_session(struct emu_realm *r, const char *uid,
			      const char *app, const json_t *body,
			      emu_result *res);
void emu_realm_get_session(struct emu_realm *r, const char *uid,
			   const char *app, const char *sid, emu_result *res);
void emu_realm_patch_session(struct emu_realm *r, const char *uid,
			     const char *app, const char *sid,
			     const json_t *body, emu_result *res);
void emu_realm_get_data(struct emu_realm *r, const char *uid, const char *app,
			const char *sid, emu_result *res);
void emu_realm_patch_data(struct emu_realm *r, const char *uid, const char *app,
			  const char *sid, const json_t *patch,
			  emu_result *res);
void emu_realm_add_participant(struct emu_realm *r, const char *uid,
			       const char *app, const char *sid,
			       const json_t *body, emu_result *res);
void emu_realm_add_event(struct emu_realm *r, const char *uid, const char *app,
			 const char *sid, const json_t *body, emu_result *res);

#endif
