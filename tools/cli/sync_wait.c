/*
 * sync_wait.c - `skysync sync --wait`: when another sync engine holds the
 * cache (a `sync --follow` service, a cron job's `sync` started a moment
 * earlier), wait until it has delivered the writes that were queued when
 * this command started, so that "sync returned 0" still means "my writes
 * are on the server".
 *
 * Only one engine runs per cache (libsync refuses a second one with
 * SKY_EBUSY), so waiting is reading: the outbox entries present at the
 * start are noted by id, and the cache is read every 200 ms until none of
 * them is still to be sent. An entry is settled when it left the outbox
 * (delivered, or dropped by hand), became a dead letter, or is a custom
 * event in doubt (it waits for `outbox retry`; a create in doubt is still
 * being looked for by the holder, so it is waited for). If the holder
 * exits meanwhile, the lock is taken and this command runs the sync
 * itself. Entries queued after the start are the holder's business.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "sync_wait.h"

#define WAIT_POLL_MS 200

typedef struct {
	uint64_t *ids;
	size_t n, cap;
	int failed;
} id_set;

static int note_id(const sky_outbox_entry *e, void *payload)
{
	id_set *s = payload;
	if (e->state == SKY_OUTBOX_REJECTED ||
	    (e->state == SKY_OUTBOX_IN_DOUBT && e->op == SKY_WRITE_EVENT))
		return 0; /* settled already */
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		uint64_t *v = realloc(s->ids, cap * sizeof(*v));
		if (!v) {
			s->failed = 1;
			return 1;
		}
		s->ids = v;
		s->cap = cap;
	}
	s->ids[s->n++] = e->id;
	return 0;
}

typedef struct {
	const id_set *want; /* sorted: ids increase in queue order */
	size_t open;	    /* still to be sent */
	size_t in_doubt, rejected;
} progress;

static int look(const sky_outbox_entry *e, void *payload)
{
	progress *p = payload;
	size_t lo = 0, hi = p->want->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (p->want->ids[mid] < e->id)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == p->want->n || p->want->ids[lo] != e->id)
		return 0;
	if (e->state == SKY_OUTBOX_REJECTED)
		p->rejected++;
	else if (e->state == SKY_OUTBOX_IN_DOUBT && e->op == SKY_WRITE_EVENT)
		p->in_doubt++;
	else
		p->open++;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int cli_sync_engine_or_wait(sky_cache *c, const sky_engine_options *o, int wait,
			    double timeout_s, int quiet, sky_engine **engine,
			    int *exit_code)
{
	int rc = sky_engine_new(engine, c, o);
	if (rc == 0)
		return 0;
	if (rc != SKY_EBUSY || !wait) {
		*exit_code = cli_fail("sync");
		if (rc == SKY_EBUSY)
			fprintf(stderr, "skysync: sync: give --wait to wait "
					"for it to deliver this cache's "
					"writes\n");
		return 1;
	}
	if (!quiet)
		fprintf(stderr,
			"skysync: %s; waiting for it to deliver the "
			"queued writes\n",
			sky_error_last()->message);
	id_set want = {NULL, 0, 0, 0};
	if (sky_outbox_list(c, note_id, &want) < 0 || want.failed) {
		*exit_code = want.failed ? EXIT_USAGE : cli_fail("sync");
		if (want.failed)
			fprintf(stderr, "skysync: sync: out of memory\n");
		free(want.ids);
		return 1;
	}
	double start = now_s();
	for (;;) {
		progress p = {&want, 0, 0, 0};
		if (sky_outbox_list(c, look, &p) < 0) {
			*exit_code = cli_fail("sync");
			break;
		}
		if (p.open == 0) {
			if (!quiet)
				fprintf(stderr,
					"skysync: the other engine delivered "
					"what was queued (%zu writes: %zu in "
					"doubt, %zu rejected)\n",
					want.n, p.in_doubt, p.rejected);
			/* The codes of a sync that did the work itself. */
			*exit_code = p.in_doubt	  ? EXIT_NETWORK
				     : p.rejected ? EXIT_REJECTED
						  : EXIT_OK;
			break;
		}
		if (timeout_s > 0 && now_s() - start >= timeout_s) {
			fprintf(stderr,
				"skysync: sync: --timeout: %zu of %zu queued "
				"writes not delivered yet by the other "
				"engine\n",
				p.open, want.n);
			*exit_code = EXIT_NETWORK;
			break;
		}
		usleep(WAIT_POLL_MS * 1000);
		/* The holder gone: this command does the sync itself. */
		rc = sky_engine_new(engine, c, o);
		if (rc == 0) {
			free(want.ids);
			return 0;
		}
		if (rc != SKY_EBUSY) {
			*exit_code = cli_fail("sync");
			break;
		}
	}
	free(want.ids);
	return 1;
}
