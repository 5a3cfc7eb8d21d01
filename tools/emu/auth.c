/*
 * auth.c - the token table of skylight-emu. See auth.h.
 *
 * Each entry maps the token text to {"sub", "kind" ("access"|"refresh"),
 * "exp" (microseconds)}. Invariants: a token is accepted only if its entry
 * exists, has the expected kind and exp is in the future; expiring a token
 * early sets exp to the present (it is never un-expired); every change of
 * the table is written through to --state before the answer that reveals
 * it is sent, so a restart never forgets a token a client holds.
 * Entries long past expiry are pruned when new tokens are issued.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "base64.h"
#include "emu.h"
#include "rand.h"
#include "jcheck.h"
#include "json.h"
#include "realm.h"
#include "state.h"
#include "util.h"

struct emu_auth {
	struct emu *emu;
	json_t *tokens; /* token text -> {sub, kind, exp} */
	unsigned issued_since_prune;
};

int emu_auth_new(struct emu_auth **out, struct emu *emu)
{
	struct emu_auth *a = calloc(1, sizeof(*a));
	if (!a)
		return -1;
	a->emu = emu;
	a->tokens = json_object();
	if (!a->tokens) {
		free(a);
		return -1;
	}
	*out = a;
	return 0;
}

void emu_auth_free(struct emu_auth *a)
{
	if (!a)
		return;
	json_decref(a->tokens);
	free(a);
}

void emu_auth_adopt(struct emu_auth *a, json_t *tokens)
{
	if (!json_is_object(tokens)) {
		json_decref(tokens);
		return;
	}
	json_decref(a->tokens);
	a->tokens = tokens;
}

/* A JWT-shaped token; NULL when memory ran out. */
static char *make_token(struct emu_auth *a, const char *sub, const char *kind,
			int64_t now_us, int64_t exp_us)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char jti[37];
	emu_uuid4(jti);
	json_t *claims =
	    json_pack("{s:s, s:s, s:I, s:I, s:s, s:s, s:s}", "sub", sub,
		      "realm", emu_realm_name(a->emu->realm), "exp",
		      (json_int_t)((exp_us + 999999) / 1000000), "iat",
		      (json_int_t)(now_us / 1000000), "jti", jti, "typ",
		      strcmp(kind, "access") == 0 ? "Bearer" : "Refresh", "iss",
		      "skylight-emu");
	if (!claims)
		return NULL;
	/* The user's groups, as Keycloak's group mapper puts them in the
	 * access token: how a client learns what the roles' group
	 * participants mean for it (docs/PROTOCOL.md). */
	const json_t *groups = emu_realm_user_groups(a->emu->realm, sub);
	if (strcmp(kind, "access") == 0 &&
	    json_object_set_new(claims, "groups",
				groups ? json_deep_copy(groups)
				       : json_array()) < 0) {
		json_decref(claims);
		return NULL;
	}
	char *payload = sky__json_dumps(claims, NULL);
	json_decref(claims);
	if (!payload)
		return NULL;
	unsigned char sig[32];
	emu_random_bytes(sig, sizeof(sig));
	sky_buf out = SKY_BUF_INIT;
	int rc = sky__b64url_append(&out, header, strlen(header));
	rc = rc < 0 ? rc : sky__buf_putc(&out, '.');
	rc = rc < 0 ? rc : sky__b64url_append(&out, payload, strlen(payload));
	rc = rc < 0 ? rc : sky__buf_putc(&out, '.');
	rc = rc < 0 ? rc : sky__b64url_append(&out, sig, sizeof(sig));
	free(payload);
	if (rc < 0) {
		sky__buf_free(&out);
		return NULL;
	}
	return sky__buf_detach(&out, NULL);
}

static void persist(struct emu_auth *a, const char *token, json_t *entry)
{
	if (a->emu->state)
		emu_state_put_token(a->emu->state, token, entry);
}

static void prune(struct emu_auth *a, int64_t now_us)
{
	const char *key;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(a->tokens, tmp, key, v) {
		json_int_t exp = json_integer_value(json_object_get(v, "exp"));
		/* Keep recently expired ones so clients get "token expired"
		 * rather than "invalid token" for a while. */
		if (exp + 3600 * (int64_t)1000000 < now_us) {
			if (a->emu->state)
				emu_state_put_token(a->emu->state, key, NULL);
			(void)json_object_del(a->tokens, key); /* present */
		}
	}
}

static int add_token(struct emu_auth *a, const char *sub, const char *kind,
		     int64_t now_us, int64_t ttl_s, char **out)
{
	int64_t exp = now_us + ttl_s * 1000000;
	char *tok = make_token(a, sub, kind, now_us, exp);
	if (!tok)
		return -1;
	json_t *entry = json_pack("{s:s, s:s, s:I}", "sub", sub, "kind", kind,
				  "exp", (json_int_t)exp);
	if (!entry || json_object_set_new(a->tokens, tok, entry) < 0) {
		free(tok);
		return -1;
	}
	persist(a, tok, entry);
	*out = tok;
	return 0;
}

json_t *emu_auth_issue(struct emu_auth *a, const char *sub)
{
	int64_t now = sky__now_us();
	if (++a->issued_since_prune >= 256) {
		a->issued_since_prune = 0;
		prune(a, now);
	}
	char *access = NULL, *refresh = NULL;
	const struct emu_config *cfg = &a->emu->cfg;
	if (add_token(a, sub, "access", now, cfg->token_ttl_s, &access) < 0 ||
	    add_token(a, sub, "refresh", now, cfg->refresh_ttl_s, &refresh) <
		0) {
		free(access);
		return NULL;
	}
	json_t *ans =
	    json_pack("{s:s, s:I, s:s, s:I, s:s}", "access_token", access,
		      "expires_in", (json_int_t)cfg->token_ttl_s,
		      "refresh_token", refresh, "refresh_expires_in",
		      (json_int_t)cfg->refresh_ttl_s, "token_type", "Bearer");
	free(access);
	free(refresh);
	return ans;
}

/* The entry of a valid token of `kind`, or NULL with *why. */
static json_t *lookup(struct emu_auth *a, const char *token, const char *kind,
		      const char **why)
{
	json_t *e = json_object_get(a->tokens, token);
	const char *k = json_string_value(json_object_get(e, "kind"));
	if (!e || !k || strcmp(k, kind) != 0) {
		*why = "invalid token";
		return NULL;
	}
	if (json_integer_value(json_object_get(e, "exp")) <= sky__now_us()) {
		*why = "token expired";
		return NULL;
	}
	return e;
}

json_t *emu_auth_refresh(struct emu_auth *a, const char *refresh_token,
			 const char **why)
{
	json_t *e = lookup(a, refresh_token, "refresh", why);
	if (!e)
		return NULL;
	/* Copy the user id: issuing may prune and free the entry. */
	char *sub = strdup(json_string_value(json_object_get(e, "sub")));
	if (!sub)
		return NULL;
	json_t *ans = emu_auth_issue(a, sub);
	free(sub);
	return ans;
}

const char *emu_auth_check(struct emu_auth *a, const char *token,
			   const char **why)
{
	json_t *e = lookup(a, token, "access", why);
	return e ? json_string_value(json_object_get(e, "sub")) : NULL;
}

static void expire_entry(struct emu_auth *a, const char *token, json_t *e,
			 int64_t now)
{
	EMU_JSON(json_object_set_new(e, "exp", json_integer(now)));
	persist(a, token, e);
}

int emu_auth_expire(struct emu_auth *a, const char *token)
{
	json_t *e = json_object_get(a->tokens, token);
	if (!e)
		return -1;
	expire_entry(a, token, e, sky__now_us());
	return 0;
}

unsigned emu_auth_expire_all(struct emu_auth *a, int refresh_too)
{
	int64_t now = sky__now_us();
	unsigned n = 0;
	const char *key;
	json_t *e;
	json_object_foreach(a->tokens, key, e) {
		const char *k = json_string_value(json_object_get(e, "kind"));
		if (!k || (strcmp(k, "access") != 0 && !refresh_too))
			continue;
		if (json_integer_value(json_object_get(e, "exp")) <= now)
			continue;
		expire_entry(a, key, e, now);
		n++;
	}
	return n;
}

unsigned emu_auth_live(struct emu_auth *a)
{
	int64_t now = sky__now_us();
	unsigned n = 0;
	const char *key;
	json_t *e;
	json_object_foreach(a->tokens, key, e)
		if (json_integer_value(json_object_get(e, "exp")) > now)
			n++;
	return n;
}
