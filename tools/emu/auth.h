/*
 * auth.h - access and refresh tokens of skylight-emu.
 *
 * Tokens are JWT-shaped (base64url header.payload.signature) so that a
 * client can read the `sub` claim for its MQTT client id (PROTOCOL.md);
 * the signature is random, and a token is valid only while it is in the
 * server's table and not past its expiry. The table is the truth: early
 * expiry, refresh and restarts (with --state) all act on it.
 */
#ifndef EMU_AUTH_H
#define EMU_AUTH_H

#include <jansson.h>

struct emu;
struct emu_auth;

int emu_auth_new(struct emu_auth **out, struct emu *emu);
void emu_auth_free(struct emu_auth *a);

/* Take over the tokens kept by --state (a JSON object; reference stolen). */
void emu_auth_adopt(struct emu_auth *a, json_t *tokens);

/*
 * A new access and refresh token for user `sub`, as the login answer
 * {access_token, expires_in, refresh_token, refresh_expires_in}. NULL only
 * when memory ran out.
 */
json_t *emu_auth_issue(struct emu_auth *a, const char *sub);

/*
 * Exchange a refresh token for a new pair. NULL with *why set when the
 * token is unknown or expired. The old refresh token stays valid until its
 * own expiry (no rotation), so a client that lost the answer may retry.
 */
json_t *emu_auth_refresh(struct emu_auth *a, const char *refresh_token,
			 const char **why);

/*
 * The user id of a valid access token (borrowed: valid until the token
 * table next changes), or NULL with *why ("token expired", ...).
 */
const char *emu_auth_check(struct emu_auth *a, const char *token,
			   const char **why);

/* Expire one access token now (0, or -1 when unknown). */
int emu_auth_expire(struct emu_auth *a, const char *token);
/* Expire every access token, and the refresh tokens too if asked. Returns
 * the number of tokens expired. */
unsigned emu_auth_expire_all(struct emu_auth *a, int refresh_too);
/* Tokens in the table that are still valid. */
unsigned emu_auth_live(struct emu_auth *a);

#endif
