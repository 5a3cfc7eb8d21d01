/*
 * identity.h - the broker identity of a cache: the MQTT client id
 * `{realm}-{sub}-{8 random digits}` (docs/PROTOCOL.md) chosen once per
 * cache, realm and user and kept in the cache's meta table, so that every
 * engine on the cache resumes the same persistent broker session.
 */
#ifndef SKY_IDENTITY_H
#define SKY_IDENTITY_H

#include "skysync.h"

/* The meta key holding {"realm", "sub", "clientId"} as JSON text. */
#define SKY_META_BROKER_IDENTITY "broker_identity"

/*
 * The client id for `realm` and user `sub` on this cache: the stored one
 * when it was chosen for them, else a new one, stored before it is
 * returned. When the cache held the identity of another realm or user,
 * *retired is that old client id (its broker session is to be ended),
 * else NULL. Both are the caller's to free. Returns 0 or a negative code.
 */
int sky__identity_client_id(sky_cache *c, const char *realm, const char *sub,
			    char **client_id, char **retired);

/* The stored client id, or NULL when none (or on failure); the caller's. */
char *sky__identity_stored(sky_cache *c);

#endif
