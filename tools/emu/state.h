/*
 * state.h - optional persistence of skylight-emu in LMDB (--state DIR).
 *
 * The realm is kept as plain JSON blobs, one per object, in an LMDB
 * environment in DIR:
 *
 *   meta      "format" -> "skylight-emu-state/1"
 *             "realm"  -> {realm, users, groups}
 *   apps      appId -> {application, roles}
 *   sessions  appId \0 sessionId -> session
 *   data      appId \0 sessionId -> session data
 *   tokens    token -> {sub, kind, exp}
 *
 * The loaded form is the seed format (README.md), so realm.c has one loader.
 */
#ifndef EMU_STATE_H
#define EMU_STATE_H

#include <jansson.h>
#include <stddef.h>

struct emu_state;

/* Open (creating DIR 0700 if needed). -1 with a message in err. */
int emu_state_open(struct emu_state **out, const char *dir, char *err,
		   size_t errlen);
/* Flush to disk and close. NULL is a no-op. */
void emu_state_close(struct emu_state *st);

/* 1 when DIR holds a realm already, 0 when it is empty. */
int emu_state_has_realm(struct emu_state *st);

/*
 * Read everything back: *seed in the seed format (sessions ordered by
 * createdAt, then sessionId) and *tokens as an object. New references.
 */
int emu_state_load(struct emu_state *st, json_t **seed, json_t **tokens,
		   char *err, size_t errlen);

/* Store a whole realm given in the seed format (first start). */
int emu_state_save_seed(struct emu_state *st, const json_t *seed);

/* Write one session and/or its data (NULL: leave as is) in one txn. */
int emu_state_put_session(struct emu_state *st, const char *app,
			  const char *sid, const json_t *session,
			  const json_t *data);

/* Write (or with entry NULL, delete) one token. */
int emu_state_put_token(struct emu_state *st, const char *token,
			const json_t *entry);

#endif
