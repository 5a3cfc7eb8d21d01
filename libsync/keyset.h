/*
 * keyset.h - a set of keys made of one or two strings ("a \0 b"), each
 * with two optional int64 values, for the sync engine's bookkeeping:
 * listed applications and sessions, sessions gone, stale or named by a
 * backlog. Open addressing with linear probing; removal shifts entries
 * back, so a lookup never needs tombstones.
 *
 * Keeps true: cap is 0 or a power of two, at most half full; every slot
 * is NULL or a key owned by the set; n counts the keys.
 */
#ifndef SKY_KEYSET_H
#define SKY_KEYSET_H

#include <stddef.h>
#include <stdint.h>

/* Zero-initialised it is an empty set. The slots may be walked directly
 * (a key is a, then b after its NUL). */
typedef struct {
	char **slot;
	int64_t (*val)[2];
	size_t cap, n;
} sky__keyset;

/* `b` may be NULL for a one-string key (an application id). */
int sky__keyset_has(const sky__keyset *s, const char *a, const char *b);
/* Add a key (values 0) if absent. 0, or -1 out of memory. */
int sky__keyset_add(sky__keyset *s, const char *a, const char *b);
/* Set a key's values, adding it if absent. 0, or -1 out of memory. */
int sky__keyset_set(sky__keyset *s, const char *a, const char *b, int64_t v0,
		    int64_t v1);
/* The two values of a key into val: 1, or 0 when absent (val untouched). */
int sky__keyset_get(const sky__keyset *s, const char *a, const char *b,
		    int64_t val[2]);
void sky__keyset_del(sky__keyset *s, const char *a, const char *b);
/* Free every key; the set is empty (and reusable) afterwards. */
void sky__keyset_free(sky__keyset *s);

#endif
