/*
 * keyset.c - sets of one- or two-string keys with two values each
 * (keyset.h): the sync engine's listed applications and sessions, and its
 * gone, stale and named sessions.
 *
 * Keeps true what keyset.h says: cap is a power of two (or 0) and the
 * table at most half full, so a probe run always ends at an empty slot;
 * a removal moves back the entries of its probe run that the hole would
 * otherwise cut off from their home slot.
 */
#include "config.h"

#include "keyset.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t key_hash(const char *a, const char *b)
{
	return sky__hash64(a, strlen(a) + 1) * 1099511628211ull ^
	       (b ? sky__hash64(b, strlen(b)) : 0);
}

static int key_eq(const char *k, const char *a, const char *b)
{
	size_t la = strlen(a);
	if (strncmp(k, a, la + 1) != 0)
		return 0;
	return b ? strcmp(k + la + 1, b) == 0 : k[la + 1] == '\0';
}

/* The slot of a key, or -1. */
static long keyset_find(const sky__keyset *s, const char *a, const char *b)
{
	if (!s->cap)
		return -1;
	for (size_t i = key_hash(a, b) & (s->cap - 1);;
	     i = (i + 1) & (s->cap - 1)) {
		if (!s->slot[i])
			return -1;
		if (key_eq(s->slot[i], a, b))
			return (long)i;
	}
}

int sky__keyset_has(const sky__keyset *s, const char *a, const char *b)
{
	return keyset_find(s, a, b) >= 0;
}

/* The two values stored with a key; 0 when absent. */
int sky__keyset_get(const sky__keyset *s, const char *a, const char *b,
		    int64_t val[2])
{
	long i = keyset_find(s, a, b);
	if (i < 0)
		return 0;
	val[0] = s->val[i][0];
	val[1] = s->val[i][1];
	return 1;
}

static size_t key_home(const sky__keyset *s, const char *k)
{
	size_t la = strlen(k);
	return key_hash(k, k[la + 1] ? k + la + 1 : NULL) & (s->cap - 1);
}

static int keyset_grow(sky__keyset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	sky__keyset n = {calloc(cap, sizeof(char *)),
			 calloc(cap, sizeof(*n.val)), cap, 0};
	if (!n.slot || !n.val) {
		free(n.slot);
		free(n.val);
		return -1;
	}
	for (size_t i = 0; i < s->cap; i++) {
		char *k = s->slot[i];
		if (!k)
			continue;
		size_t j = key_home(&n, k);
		while (n.slot[j])
			j = (j + 1) & (n.cap - 1);
		n.slot[j] = k;
		n.val[j][0] = s->val[i][0];
		n.val[j][1] = s->val[i][1];
		n.n++;
	}
	free(s->slot);
	free(s->val);
	*s = n;
	return 0;
}

/* Add a key (values 0) or find it; its slot, or -1 out of memory. */
static long keyset_put(sky__keyset *s, const char *a, const char *b)
{
	if ((s->n + 1) * 2 > s->cap && keyset_grow(s) < 0)
		return -1;
	size_t i = key_hash(a, b) & (s->cap - 1);
	for (; s->slot[i]; i = (i + 1) & (s->cap - 1))
		if (key_eq(s->slot[i], a, b))
			return (long)i;
	size_t la = strlen(a), lb = b ? strlen(b) : 0;
	char *k = malloc(la + lb + 3);
	if (!k)
		return -1;
	memcpy(k, a, la + 1);
	memcpy(k + la + 1, b ? b : "", lb + 1);
	k[la + lb + 2] = '\0';
	s->slot[i] = k;
	s->val[i][0] = s->val[i][1] = 0;
	s->n++;
	return (long)i;
}

int sky__keyset_add(sky__keyset *s, const char *a, const char *b)
{
	return keyset_put(s, a, b) < 0 ? -1 : 0;
}

int sky__keyset_set(sky__keyset *s, const char *a, const char *b, int64_t v0,
		    int64_t v1)
{
	long i = keyset_put(s, a, b);
	if (i < 0)
		return -1;
	s->val[i][0] = v0;
	s->val[i][1] = v1;
	return 0;
}

/* Remove a key, shifting back the entries of its probe run. */
void sky__keyset_del(sky__keyset *s, const char *a, const char *b)
{
	long found = keyset_find(s, a, b);
	if (found < 0)
		return;
	size_t mask = s->cap - 1, i = (size_t)found;
	free(s->slot[i]);
	s->slot[i] = NULL;
	s->n--;
	for (size_t j = (i + 1) & mask; s->slot[j]; j = (j + 1) & mask) {
		size_t home = key_home(s, s->slot[j]);
		/* Move the entry back to the hole unless its home lies in
		 * (i, j], where the hole does not break its probe run. */
		int between =
		    i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			s->slot[i] = s->slot[j];
			s->val[i][0] = s->val[j][0];
			s->val[i][1] = s->val[j][1];
			s->slot[j] = NULL;
			i = j;
		}
	}
}

void sky__keyset_free(sky__keyset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i]);
	free(s->slot);
	free(s->val);
	memset(s, 0, sizeof(*s));
}
