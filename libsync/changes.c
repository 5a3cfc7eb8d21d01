/*
 * changes.c - telling listeners which sessions a committed write touched
 * (see changes.h).
 *
 * The state hangs off the store as its transaction observer (store.h),
 * installed once with a compare-and-swap when the first listener comes
 * and destroyed when the cache closes. Notes of the running write
 * transaction live in `open`, which only the thread holding LMDB's writer
 * lock touches (sky__changes_note runs inside the write function, `take`
 * right after it, both before the commit or abort releases the lock), so
 * it needs no mutex. `take` moves the notes out; `done` delivers them only
 * when the transaction committed.
 *
 * Listeners sit in a small fixed array that only grows: readers load the
 * count (acquire) and then read entries that were written before the count
 * was published (release), so delivery takes no lock.
 */
#include "config.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "error.h"

#define MAX_LISTENERS 8

typedef struct {
	char *app, *sid;
} note_t;

typedef struct {
	note_t *items;
	size_t n, cap;
	int overflow; /* a note was lost: anything may have changed */
} notes_t;

typedef struct {
	sky_changes_fn fn;
	void *arg;
	void (*destroy)(void *arg);
} listener_t;

typedef struct {
	sky_txn_observer obs; /* first: the store knows only this part */
	sky_cache *cache;
	pthread_mutex_t lock; /* serialises registrations */
	listener_t listeners[MAX_LISTENERS];
	atomic_size_t n_listeners;
	notes_t open; /* the running write transaction's (writer lock) */
} changes_t;

/* What `take` returns when it could not allocate: "anything changed". */
static notes_t lost_notes = {NULL, 0, 0, 1};

static void notes_clear(notes_t *n)
{
	for (size_t i = 0; i < n->n; i++) {
		free(n->items[i].app);
		free(n->items[i].sid);
	}
	free(n->items);
	memset(n, 0, sizeof(*n));
}

static changes_t *changes_of(sky_cache *c)
{
	return (changes_t *)atomic_load(&c->st.observer);
}

void sky__changes_note(sky_cache *c, const char *app, const char *sid)
{
	changes_t *ch = changes_of(c);
	if (!ch || atomic_load(&ch->n_listeners) == 0)
		return;
	notes_t *n = &ch->open;
	if (n->overflow)
		return;
	if (n->n == n->cap) {
		size_t cap = n->cap ? n->cap * 2 : 16;
		note_t *items = realloc(n->items, cap * sizeof(*items));
		if (!items) {
			n->overflow = 1;
			return;
		}
		n->items = items;
		n->cap = cap;
	}
	note_t *it = &n->items[n->n];
	it->app = strdup(app);
	it->sid = sid ? strdup(sid) : NULL;
	if (!it->app || (sid && !it->sid)) {
		free(it->app);
		free(it->sid);
		n->overflow = 1;
		return;
	}
	n->n++;
}

static void *obs_take(sky_txn_observer *obs)
{
	changes_t *ch = (changes_t *)obs;
	if (ch->open.n == 0 && !ch->open.overflow)
		return NULL;
	notes_t *t = malloc(sizeof(*t));
	if (!t) {
		notes_clear(&ch->open);
		return &lost_notes;
	}
	*t = ch->open;
	memset(&ch->open, 0, sizeof(ch->open));
	return t;
}

static int cmp_change(const void *a, const void *b)
{
	const sky_touch *x = a, *y = b;
	int r = strcmp(x->app, y->app);
	if (r)
		return r;
	if (!x->sid || !y->sid)
		return (x->sid != NULL) - (y->sid != NULL);
	return strcmp(x->sid, y->sid);
}

static void deliver(changes_t *ch, const notes_t *t)
{
	sky_touch everything = {NULL, NULL};
	sky_touch *list = NULL;
	size_t n = 0;
	if (!t->overflow)
		list = malloc(t->n * sizeof(*list));
	if (list) {
		for (size_t i = 0; i < t->n; i++) {
			list[i].app = t->items[i].app;
			list[i].sid = t->items[i].sid;
		}
		qsort(list, t->n, sizeof(*list), cmp_change);
		for (size_t i = 0; i < t->n; i++)
			if (n == 0 || cmp_change(&list[n - 1], &list[i]) != 0)
				list[n++] = list[i];
	}
	size_t nl =
	    atomic_load_explicit(&ch->n_listeners, memory_order_acquire);
	for (size_t i = 0; i < nl; i++) {
		listener_t *l = &ch->listeners[i];
		if (list)
			l->fn(ch->cache, list, n, l->arg);
		else
			l->fn(ch->cache, &everything, 1, l->arg);
	}
	free(list);
}

static void obs_done(sky_txn_observer *obs, void *taken, int committed)
{
	changes_t *ch = (changes_t *)obs;
	notes_t *t = taken;
	if (!t)
		return;
	if (committed)
		deliver(ch, t);
	if (t != &lost_notes) {
		notes_clear(t);
		free(t);
	}
}

static void obs_destroy(sky_txn_observer *obs)
{
	changes_t *ch = (changes_t *)obs;
	size_t nl = atomic_load(&ch->n_listeners);
	for (size_t i = 0; i < nl; i++)
		if (ch->listeners[i].destroy)
			ch->listeners[i].destroy(ch->listeners[i].arg);
	notes_clear(&ch->open);
	pthread_mutex_destroy(&ch->lock);
	free(ch);
}

/* The cache's observer, installed on first use. */
static changes_t *ensure_changes(sky_cache *c)
{
	changes_t *ch = changes_of(c);
	if (ch)
		return ch;
	if (!(ch = calloc(1, sizeof(*ch)))) {
		sky__error_nomem();
		return NULL;
	}
	ch->obs.take = obs_take;
	ch->obs.done = obs_done;
	ch->obs.destroy = obs_destroy;
	ch->cache = c;
	pthread_mutex_init(&ch->lock, NULL);
	atomic_init(&ch->n_listeners, 0);
	sky_txn_observer *expected = NULL;
	if (!atomic_compare_exchange_strong(&c->st.observer, &expected,
					    &ch->obs)) {
		/* Another thread installed one first: use that. */
		pthread_mutex_destroy(&ch->lock);
		free(ch);
		return (changes_t *)expected;
	}
	return ch;
}

void *sky__changes_listener(sky_cache *c, sky_changes_fn fn,
			    void *(*create)(sky_cache *c),
			    void (*destroy)(void *arg), int *created)
{
	changes_t *ch = ensure_changes(c);
	void *arg = NULL;
	*created = 0;
	if (!ch)
		return NULL;
	pthread_mutex_lock(&ch->lock);
	size_t nl = atomic_load(&ch->n_listeners);
	for (size_t i = 0; i < nl && !arg; i++)
		if (ch->listeners[i].fn == fn)
			arg = ch->listeners[i].arg;
	if (!arg && nl == MAX_LISTENERS)
		sky__error_set(SKY_ERROR, SKY_ERRSRC_NONE, 0,
			       "too many change listeners");
	else if (!arg && (arg = create(c)) != NULL) {
		ch->listeners[nl] = (listener_t){fn, arg, destroy};
		atomic_store_explicit(&ch->n_listeners, nl + 1,
				      memory_order_release);
		*created = 1;
	}
	pthread_mutex_unlock(&ch->lock);
	return arg;
}

int sky__changes_barrier(sky_cache *c)
{
	/* A read-only handle has no writes of its own to wait for. */
	if (c->st.flags & SKY_CACHE_READONLY)
		return 0;
	return sky__store_barrier(&c->st);
}
