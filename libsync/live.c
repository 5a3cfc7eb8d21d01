/*
 * live.c - live queries: a query whose result set is kept, and whose
 * callback hears which sessions entered and left it (and which members
 * were written) after each committed write through the cache handle.
 *
 * Each live query keeps the ids of its current results. It listens to
 * changes.c: after a commit, each session the transaction touched is
 * evaluated again against the query (record + predicates + visibility)
 * in a fresh snapshot and compared with the kept set; an application-wide
 * change (the roles) re-runs the whole query. The set is thus always the
 * result set as of a snapshot at least as new as the last commit
 * delivered to it, and entered/left are exactly the difference.
 *
 * Concurrency. Deliveries come on whichever thread committed. A query's
 * mutex guards its set and a queue of computed changes: each delivery
 * updates the set and queues the difference under the mutex, so queued
 * changes are in the order the set went through. One thread at a time
 * drains the queue, calling the callback without any lock held; a thread
 * that finds another draining leaves its change to it. So callbacks of
 * one live query never overlap and arrive in order, and a callback may
 * write (the nested change is queued and delivered when it returns), read,
 * or remove live queries. Live queries are reference counted so a
 * delivery never touches freed memory; removal waits until no other
 * thread is calling the callback, and afterwards none starts.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "changes.h"
#include "error.h"
#include "query.h"

/* ---- a set of strings (open addressing) ---- */

#define TOMBSTONE ((char *)1)

typedef struct {
	char **slots;
	size_t cap;  /* a power of two, or 0 */
	size_t n;    /* live entries */
	size_t used; /* live entries and tombstones */
} strset;

static size_t slot_of(const strset *s, const char *k)
{
	return (size_t)sky__hash64(k, strlen(k)) & (s->cap - 1);
}

static char **strset_find(const strset *s, const char *k)
{
	if (!s->cap)
		return NULL;
	for (size_t i = slot_of(s, k), probes = 0; probes < s->cap;
	     i = (i + 1) & (s->cap - 1), probes++) {
		char *e = s->slots[i];
		if (!e)
			return NULL;
		if (e != TOMBSTONE && strcmp(e, k) == 0)
			return &s->slots[i];
	}
	return NULL;
}

static int strset_has(const strset *s, const char *k)
{
	return strset_find(s, k) != NULL;
}

static int strset_grow(strset *s)
{
	size_t cap = s->cap ? s->cap * 2 : 64;
	while (s->n * 2 >= cap)
		cap *= 2;
	char **slots = calloc(cap, sizeof(*slots));
	if (!slots)
		return sky__error_nomem();
	for (size_t i = 0; i < s->cap; i++) {
		char *e = s->slots[i];
		if (!e || e == TOMBSTONE)
			continue;
		size_t j = (size_t)sky__hash64(e, strlen(e)) & (cap - 1);
		while (slots[j])
			j = (j + 1) & (cap - 1);
		slots[j] = e;
	}
	free(s->slots);
	s->slots = slots;
	s->cap = cap;
	s->used = s->n;
	return 0;
}

static int strset_add(strset *s, const char *k)
{
	if (strset_has(s, k))
		return 0;
	if ((s->used + 1) * 4 >= s->cap * 3 && strset_grow(s) < 0)
		return -1;
	char *copy = strdup(k);
	if (!copy)
		return sky__error_nomem();
	size_t i = slot_of(s, k);
	while (s->slots[i] && s->slots[i] != TOMBSTONE)
		i = (i + 1) & (s->cap - 1);
	if (!s->slots[i])
		s->used++;
	s->slots[i] = copy;
	s->n++;
	return 0;
}

static void strset_del(strset *s, const char *k)
{
	char **slot = strset_find(s, k);
	if (!slot)
		return;
	free(*slot);
	*slot = TOMBSTONE;
	s->n--;
}

static void strset_free(strset *s)
{
	for (size_t i = 0; i < s->cap; i++)
		if (s->slots[i] && s->slots[i] != TOMBSTONE)
			free(s->slots[i]);
	free(s->slots);
	memset(s, 0, sizeof(*s));
}

/* ---- lists of ids handed to callbacks ---- */

typedef struct {
	char **v;
	size_t n, cap;
} idlist;

static int idlist_add(idlist *l, const char *id)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		char **v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return sky__error_nomem();
		l->v = v;
		l->cap = cap;
	}
	if (!(l->v[l->n] = strdup(id)))
		return sky__error_nomem();
	l->n++;
	return 0;
}

static void idlist_free(idlist *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	memset(l, 0, sizeof(*l));
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void idlist_sort(idlist *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), cmp_str);
}

/* ---- the registry of a cache ---- */

typedef struct {
	sky_cache *cache;
	pthread_mutex_t lock; /* guards the list and every refs count */
	sky_live_query *head;
} live_reg;

/* A computed change waiting for its callback. */
typedef struct queued {
	idlist entered, left, changed;
	struct queued *next;
} queued;

struct sky_live_query {
	live_reg *reg;
	sky_query *q;
	sky_live_cb cb;
	void *payload;
	pthread_mutex_t lock; /* guards the fields below */
	pthread_cond_t idle;  /* signalled when draining ends */
	strset members;
	int removed;
	atomic_int resync;   /* an evaluation failed: re-run it whole */
	queued *head, *tail; /* changes not yet handed to the callback */
	int draining;	     /* a thread is calling the callback ... */
	pthread_t drainer;   /* ... this one */
	unsigned refs;	     /* the registry's and deliveries' (reg->lock) */
	sky_live_query *next;
};

static void queued_free(queued *q)
{
	idlist_free(&q->entered);
	idlist_free(&q->left);
	idlist_free(&q->changed);
	free(q);
}

/* Drop what was not delivered (lq->lock held, or lq unreachable). */
static void drop_queue(sky_live_query *lq)
{
	while (lq->head) {
		queued *q = lq->head;
		lq->head = q->next;
		queued_free(q);
	}
	lq->tail = NULL;
}

static void lq_free(sky_live_query *lq)
{
	drop_queue(lq);
	sky_query_free(lq->q);
	strset_free(&lq->members);
	pthread_cond_destroy(&lq->idle);
	pthread_mutex_destroy(&lq->lock);
	free(lq);
}

static void lq_unref(sky_live_query *lq)
{
	live_reg *reg = lq->reg;
	pthread_mutex_lock(&reg->lock);
	unsigned left = --lq->refs;
	pthread_mutex_unlock(&reg->lock);
	if (left == 0)
		lq_free(lq);
}

static void *reg_create(sky_cache *c)
{
	live_reg *reg = calloc(1, sizeof(*reg));
	if (!reg) {
		sky__error_nomem();
		return NULL;
	}
	reg->cache = c;
	pthread_mutex_init(&reg->lock, NULL);
	return reg;
}

/* At cache close: queries not removed are freed (their handles die). */
static void reg_destroy(void *arg)
{
	live_reg *reg = arg;
	sky_live_query *lq = reg->head;
	while (lq) {
		sky_live_query *next = lq->next;
		lq_free(lq);
		lq = next;
	}
	pthread_mutex_destroy(&reg->lock);
	free(reg);
}

/* ---- evaluation ---- */

typedef struct {
	strset *set;
} fill_ctx;

static int fill_one(const char *sid, void *arg)
{
	return strset_add(((fill_ctx *)arg)->set, sid) < 0 ? -1 : 0;
}

/* The whole result set now, into *out. */
static int full_set(MDB_txn *txn, sky_query *q, strset *out)
{
	fill_ctx f = {out};
	memset(out, 0, sizeof(*out));
	int rc = sky__query_each_id(txn, q, fill_one, &f);
	if (rc < 0)
		strset_free(out);
	return rc;
}

/*
 * Bring lq's set up to date with the changes of its application; fill the
 * lists. Called with lq->lock held.
 */
static int evaluate(sky_live_query *lq, const sky_touch *ch, size_t n,
		    idlist *entered, idlist *left, idlist *changed)
{
	sky_query *q = lq->q;
	MDB_txn *txn;
	int rc = sky__store_read_begin(&q->cache->st, &txn);
	if (rc < 0)
		return rc;
	int whole = atomic_load(&lq->resync);
	for (size_t i = 0; i < n && !whole; i++)
		if (!ch[i].app || (!ch[i].sid && !strcmp(ch[i].app, q->app)))
			whole = 1;
	if (whole) {
		strset now;
		if ((rc = full_set(txn, q, &now)) < 0)
			goto done;
		for (size_t i = 0; i < now.cap && rc == 0; i++) {
			char *e = now.slots[i];
			if (e && e != TOMBSTONE && !strset_has(&lq->members, e))
				rc = idlist_add(entered, e);
		}
		for (size_t i = 0; i < lq->members.cap && rc == 0; i++) {
			char *e = lq->members.slots[i];
			if (e && e != TOMBSTONE && !strset_has(&now, e))
				rc = idlist_add(left, e);
		}
		for (size_t i = 0; i < n && rc == 0; i++)
			if (ch[i].app && ch[i].sid &&
			    !strcmp(ch[i].app, q->app) &&
			    strset_has(&now, ch[i].sid) &&
			    strset_has(&lq->members, ch[i].sid))
				rc = idlist_add(changed, ch[i].sid);
		if (rc < 0) {
			strset_free(&now);
			goto done;
		}
		strset_free(&lq->members);
		lq->members = now;
		atomic_store(&lq->resync, 0);
		goto done;
	}
	sky_access access;
	if ((rc = sky__query_access(txn, q, &access)) < 0)
		goto done;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!ch[i].sid || strcmp(ch[i].app, q->app) != 0)
			continue;
		int match, was = strset_has(&lq->members, ch[i].sid);
		if ((rc = sky__query_match(txn, q, access, ch[i].sid, &match)) <
		    0)
			break;
		if (match && !was) {
			if ((rc = strset_add(&lq->members, ch[i].sid)) == 0)
				rc = idlist_add(entered, ch[i].sid);
		} else if (!match && was) {
			strset_del(&lq->members, ch[i].sid);
			rc = idlist_add(left, ch[i].sid);
		} else if (match) {
			rc = idlist_add(changed, ch[i].sid);
		}
	}
done:
	sky__store_read_end(&q->cache->st, txn);
	return rc;
}

static void deliver_one(sky_live_query *lq, const sky_touch *ch, size_t n)
{
	queued *item = calloc(1, sizeof(*item));
	pthread_mutex_lock(&lq->lock);
	if (lq->removed) {
		pthread_mutex_unlock(&lq->lock);
		free(item);
		return;
	}
	if (!item || evaluate(lq, ch, n, &item->entered, &item->left,
			      &item->changed) < 0) {
		/* Nobody to tell: the next delivery starts afresh. What was
		 * already queued stays true of the set. */
		atomic_store(&lq->resync, 1);
	} else if (item->entered.n || item->left.n || item->changed.n) {
		idlist_sort(&item->entered);
		idlist_sort(&item->left);
		idlist_sort(&item->changed);
		if (lq->tail)
			lq->tail->next = item;
		else
			lq->head = item;
		lq->tail = item;
		item = NULL;
	}
	if (item)
		queued_free(item);
	if (lq->draining) {
		/* Another thread, or an outer frame of this one (a callback
		 * that wrote), delivers the queue in order. */
		pthread_mutex_unlock(&lq->lock);
		return;
	}
	lq->draining = 1;
	lq->drainer = pthread_self();
	while (lq->head && !lq->removed) {
		queued *q = lq->head;
		lq->head = q->next;
		if (!lq->head)
			lq->tail = NULL;
		pthread_mutex_unlock(&lq->lock);
		sky_live_change change = {
		    lq->q->app,	  (const char *const *)q->entered.v,
		    q->entered.n, (const char *const *)q->left.v,
		    q->left.n,	  (const char *const *)q->changed.v,
		    q->changed.n,
		};
		lq->cb(&change, lq->payload);
		queued_free(q);
		pthread_mutex_lock(&lq->lock);
	}
	lq->draining = 0;
	pthread_cond_broadcast(&lq->idle);
	pthread_mutex_unlock(&lq->lock);
}

static int concerns(const sky_live_query *lq, const sky_touch *ch, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!ch[i].app || strcmp(ch[i].app, lq->q->app) == 0)
			return 1;
	return 0;
}

/* The changes.c listener: one per cache, for all its live queries. */
static void on_changes(sky_cache *c, const sky_touch *ch, size_t n, void *arg)
{
	live_reg *reg = arg;
	sky_live_query **todo = NULL;
	size_t k = 0, cap = 0;
	(void)c;
	pthread_mutex_lock(&reg->lock);
	for (sky_live_query *lq = reg->head; lq; lq = lq->next) {
		if (!concerns(lq, ch, n) && !atomic_load(&lq->resync))
			continue;
		if (k == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			sky_live_query **t = realloc(todo, ncap * sizeof(*t));
			if (!t) {
				/* Those not reached re-run whole next time. */
				for (sky_live_query *r = lq; r; r = r->next)
					atomic_store(&r->resync, 1);
				break;
			}
			todo = t;
			cap = ncap;
		}
		lq->refs++;
		todo[k++] = lq;
	}
	pthread_mutex_unlock(&reg->lock);
	for (size_t i = 0; i < k; i++) {
		deliver_one(todo[i], ch, n);
		lq_unref(todo[i]);
	}
	free(todo);
}

/* ---- public ---- */

int sky_live_query_add(sky_live_query **out, const sky_query *q, sky_live_cb cb,
		       void *payload)
{
	sky_cache *c = q->cache;
	int created, rc;
	live_reg *reg = sky__changes_listener(c, on_changes, reg_create,
					      reg_destroy, &created);
	if (!reg)
		return -1;
	/* Writes that began before the listener existed end first. */
	if ((rc = sky__changes_barrier(c)) < 0)
		return rc;
	sky_live_query *lq = calloc(1, sizeof(*lq));
	if (!lq)
		return sky__error_nomem();
	if ((rc = sky__query_clone(q, &lq->q)) < 0) {
		free(lq);
		return rc;
	}
	lq->reg = reg;
	lq->cb = cb;
	lq->payload = payload;
	lq->refs = 1;
	pthread_mutex_init(&lq->lock, NULL);
	pthread_cond_init(&lq->idle, NULL);

	/*
	 * Linked before the snapshot, and locked until the set is filled: a
	 * commit after the snapshot is delivered to it (waiting for the
	 * lock), one before is in the snapshot.
	 */
	pthread_mutex_lock(&lq->lock);
	pthread_mutex_lock(&reg->lock);
	lq->next = reg->head;
	reg->head = lq;
	pthread_mutex_unlock(&reg->lock);
	MDB_txn *txn;
	if ((rc = sky__store_read_begin(&c->st, &txn)) == 0) {
		rc = full_set(txn, lq->q, &lq->members);
		sky__store_read_end(&c->st, txn);
	}
	if (rc < 0) {
		lq->removed = 1;
		pthread_mutex_unlock(&lq->lock);
		pthread_mutex_lock(&reg->lock);
		for (sky_live_query **pp = &reg->head; *pp; pp = &(*pp)->next)
			if (*pp == lq) {
				*pp = lq->next;
				break;
			}
		pthread_mutex_unlock(&reg->lock);
		lq_unref(lq);
		return rc;
	}
	pthread_mutex_unlock(&lq->lock);
	*out = lq;
	return 0;
}

void sky_live_query_remove(sky_live_query *lq)
{
	if (!lq)
		return;
	live_reg *reg = lq->reg;
	pthread_mutex_lock(&reg->lock);
	for (sky_live_query **pp = &reg->head; *pp; pp = &(*pp)->next)
		if (*pp == lq) {
			*pp = lq->next;
			break;
		}
	pthread_mutex_unlock(&reg->lock);

	pthread_mutex_lock(&lq->lock);
	lq->removed = 1;
	drop_queue(lq);
	/* Wait for a callback on another thread; from our own callback we
	 * cannot, and the drain loop stops on `removed`. */
	while (lq->draining && !pthread_equal(lq->drainer, pthread_self()))
		pthread_cond_wait(&lq->idle, &lq->lock);
	pthread_mutex_unlock(&lq->lock);
	lq_unref(lq);
}

size_t sky_live_query_size(sky_live_query *lq)
{
	pthread_mutex_lock(&lq->lock);
	size_t n = lq->members.n;
	pthread_mutex_unlock(&lq->lock);
	return n;
}
