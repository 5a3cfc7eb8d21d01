/*
 * crash_writer.c - the processes of the crash soak (tests/soak/crash).
 *
 *   crash_writer write DIR PREFIX [SEED]
 *       Apply an endless stream of generated events to the cache in DIR,
 *       in batches of 1..64 through sky_mirror_event_apply_batch(). After each
 *       batch commits, print "ack EVENTID" for every event of it and
 *       flush, so that whatever the soak reads from stdout was
 *       acknowledged by the library before the process was killed.
 *   crash_writer read DIR PREFIX
 *       Read forever: snapshots (sky_reader_*), sky_session_get,
 *       sky_data_get and queries (sky_query_run, sky_reader_query).
 *       Exits non-zero if a read fails in a way a crash cannot explain.
 *   crash_writer events PREFIX N [SEED]
 *       Print the first N events the writer would generate, as NDJSON
 *       (the same stream: the soak re-applies the acknowledged ones).
 *   crash_writer queue DIR PREFIX [SEED]
 *       Queue offline writes forever through the outbox: sessions created
 *       with sky_session_create and data patches to them (alone or in a
 *       sky_write_batch), printing "ack create LOCALID" and
 *       "ack qN LOCALID" once the call returned (the write is durable).
 *   crash_writer verifyq DIR ACKFILE
 *       Check that every write acknowledged by `queue` is in the local
 *       view and still queued in the outbox; exit 1 if one is missing.
 *   crash_writer verify DIR PREFIX ACKFILE
 *       Check that every event acknowledged in ACKFILE is in the cache:
 *       its session exists and, for a data event, the data key it set is
 *       there with its value. Prints one line per missing event; exit 1
 *       if any.
 *
 * The stream: event 0 of every group of GROUP creates session
 * PREFIX-s<g> (with properties the reader queries on); the others of the
 * group are session_data_updated events setting data key "e<n>" to n, so
 * each acknowledged event leaves an exact trace. Event ids are
 * PREFIX-e<n>, unique across rounds when PREFIX is.
 */
#include "config.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "skysync.h"
#include "skysync_mirror.h"

#define APP "crash-app"
#define GROUP 16
#define MAX_BATCH 64

/* Build event n of the stream for PREFIX into buf. */
static int make_event(char *buf, size_t cap, const char *prefix,
		      unsigned long n)
{
	unsigned long g = n / GROUP;
	long long ts = 1793606400000LL + (long long)n;
	if (n % GROUP == 0)
		return snprintf(
		    buf, cap,
		    "{\"applicationId\":\"" APP "\",\"sessionId\":\"%s-s%lu\","
		    "\"eventId\":\"%s-e%lu\",\"source\":\"api\",\"userId\":"
		    "\"alice\",\"createdAt\":\"2026-11-02T08:00:00Z\","
		    "\"timestamp\":%lld,\"version\":1,\"eventType\":"
		    "\"session_created\",\"session\":{\"applicationId\":\"" APP
		    "\",\"sessionId\":\"%s-s%lu\",\"status\":\"open\","
		    "\"isDraft\":false,\"version\":1,\"name\":\"crash %s %lu\","
		    "\"participants\":[{\"id\":\"alice\",\"type\":\"user\"}],"
		    "\"createdBy\":\"alice\",\"createdAt\":"
		    "\"2026-11-02T08:00:00Z\",\"modifiedBy\":\"alice\","
		    "\"modifiedAt\":\"2026-11-02T08:00:00Z\",\"properties\":{"
		    "\"site\":\"site-%lu\",\"round\":\"%s\"}}}",
		    prefix, g, prefix, n, ts, prefix, g, prefix, g, g % 7,
		    prefix);
	return snprintf(
	    buf, cap,
	    "{\"applicationId\":\"" APP "\",\"sessionId\":\"%s-s%lu\","
	    "\"eventId\":\"%s-e%lu\",\"source\":\"device\",\"userId\":"
	    "\"alice\",\"createdAt\":\"2026-11-02T08:10:00Z\",\"timestamp\":"
	    "%lld,\"version\":1,\"eventType\":\"session_data_updated\","
	    "\"data\":{\"e%lu\":%lu,\"last\":%lu,\"pad\":\"%0*d\"}}",
	    prefix, g, prefix, n, ts, n, n, n, (int)(n % 200), 0);
}

static sky_cache *open_cache(const char *dir)
{
	sky_cache *c = NULL;
	if (sky_cache_open(&c, dir, NULL) != 0) {
		const sky_error *e = sky_error_last();
		fprintf(stderr, "crash_writer: cannot open %s: %s\n", dir,
			e && e->message ? e->message : "?");
		return NULL;
	}
	return c;
}

static int do_write(const char *dir, const char *prefix, unsigned seed)
{
	sky_cache *c = open_cache(dir);
	if (!c)
		return 2;
	srand(seed);
	static char bufs[MAX_BATCH][1024];
	sky_mirror_event_item items[MAX_BATCH];
	unsigned long n = 0;
	for (;;) {
		size_t k = 1 + (size_t)rand() % MAX_BATCH;
		for (size_t i = 0; i < k; i++) {
			int len =
			    make_event(bufs[i], sizeof(bufs[i]), prefix, n + i);
			items[i] = (sky_mirror_event_item){bufs[i], (size_t)len,
							   0, NULL};
		}
		if (sky_mirror_event_apply_batch(c, items, k) != 0) {
			const sky_error *e = sky_error_last();
			fprintf(stderr, "crash_writer: batch failed: %s\n",
				e && e->message ? e->message : "?");
			sky_cache_close(c);
			return 1;
		}
		for (size_t i = 0; i < k; i++) {
			if (items[i].outcome != SKY_MIRROR_APPLIED) {
				fprintf(
				    stderr, "crash_writer: %s-e%lu: %s %s\n",
				    prefix, n + i,
				    sky_mirror_outcome_name(items[i].outcome),
				    items[i].error ? items[i].error : "");
				sky_cache_close(c);
				return 1;
			}
			printf("ack %s-e%lu\n", prefix, n + i);
		}
		fflush(stdout);
		n += k;
	}
}

static int count_row(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	(void)flags;
	if (!json || !len || json[0] != '{')
		return -100;
	(*(unsigned long *)payload)++;
	return 0;
}

static int do_read(const char *dir, const char *prefix)
{
	sky_cache *c = open_cache(dir);
	if (!c)
		return 2;
	char sid[256];
	unsigned long rows = 0;
	for (unsigned long it = 0;; it++) {
		/* A snapshot: every session it sees has data readable in it. */
		sky_reader *r = NULL;
		if (sky_reader_begin(&r, c) != 0) {
			fprintf(stderr, "crash_writer: reader_begin failed\n");
			return 1;
		}
		for (unsigned long g = 0; g < 8; g++) {
			snprintf(sid, sizeof(sid), "%s-s%lu", prefix,
				 (it + g) % 64);
			const char *json;
			size_t len;
			int rc = sky_reader_session(r, APP, sid, &json, &len);
			if (rc == SKY_ENOTFOUND)
				continue;
			if (rc != 0 || len == 0 || json[len] != '\0') {
				fprintf(stderr, "crash_writer: read %s: %d\n",
					sid, rc);
				return 1;
			}
			const char *data = NULL;
			size_t dlen;
			rc = sky_reader_data(r, APP, sid, &data, &dlen);
			if (rc != 0 && rc != SKY_ENOTFOUND) {
				fprintf(stderr, "crash_writer: data %s: %d\n",
					sid, rc);
				return 1;
			}
		}
		const char *preds[] = {"site=site-1|site-3", "round?"};
		sky_query *q = NULL;
		if (sky_query_new(&q, c, APP, preds, 2) != 0) {
			fprintf(stderr, "crash_writer: query_new failed\n");
			return 1;
		}
		int rc = sky_reader_query(r, q, count_row, &rows);
		sky_reader_end(r);
		if (rc == 0) {
			sky_query_set_limit(q, 5);
			rc = sky_query_run(q, count_row, &rows);
		}
		sky_query_free(q);
		if (rc != 0) {
			fprintf(stderr, "crash_writer: query failed: %d\n", rc);
			return 1;
		}
		/* The convenience forms, with their own snapshots. */
		snprintf(sid, sizeof(sid), "%s-s%lu", prefix, it % 16);
		char *json = NULL;
		size_t len;
		rc = sky_session_get(c, APP, sid, &json, &len);
		sky_free(json);
		if (rc != 0 && rc != SKY_ENOTFOUND) {
			fprintf(stderr, "crash_writer: session_get: %d\n", rc);
			return 1;
		}
	}
}

static int do_events(const char *prefix, unsigned long count)
{
	char buf[1024];
	for (unsigned long n = 0; n < count; n++) {
		make_event(buf, sizeof(buf), prefix, n);
		puts(buf);
	}
	return ferror(stdout) ? 1 : 0;
}

static int do_verify(const char *dir, const char *prefix, const char *ackfile)
{
	FILE *f = fopen(ackfile, "r");
	if (!f) {
		perror(ackfile);
		return 2;
	}
	sky_cache *c = open_cache(dir);
	if (!c) {
		fclose(f);
		return 2;
	}
	char line[512], sid[256], key[64];
	unsigned long checked = 0, missing = 0;
	size_t plen = strlen(prefix);
	while (fgets(line, sizeof(line), f)) {
		unsigned long n;
		/* A line cut by the kill was never complete: not acknowledged.
		 */
		if (!strchr(line, '\n'))
			break;
		if (strncmp(line, "ack ", 4) ||
		    strncmp(line + 4, prefix, plen) ||
		    sscanf(line + 4 + plen, "-e%lu", &n) != 1) {
			fprintf(stderr, "verify: bad line: %s", line);
			missing++;
			continue;
		}
		checked++;
		snprintf(sid, sizeof(sid), "%s-s%lu", prefix, n / GROUP);
		char *json = NULL;
		size_t len;
		if (sky_session_get(c, APP, sid, &json, &len) != 0) {
			printf("missing: %s-e%lu (session %s)\n", prefix, n,
			       sid);
			missing++;
			continue;
		}
		sky_free(json);
		if (n % GROUP == 0)
			continue;
		json = NULL;
		json_t *doc = NULL;
		if (sky_data_get(c, APP, sid, &json, &len) == 0)
			doc = json_loadb(json, len, 0, NULL);
		sky_free(json);
		snprintf(key, sizeof(key), "e%lu", n);
		json_t *v = doc ? json_object_get(doc, key) : NULL;
		if (!json_is_integer(v) ||
		    json_integer_value(v) != (json_int_t)n) {
			printf("missing: %s-e%lu (data key %s of %s)\n", prefix,
			       n, key, sid);
			missing++;
		}
		json_decref(doc);
	}
	fclose(f);
	sky_cache_close(c);
	printf("verified %lu acknowledged events, %lu missing\n", checked,
	       missing);
	return missing ? 1 : 0;
}

/* ---- the outbox writer ---- */

static int do_queue(const char *dir, const char *prefix, unsigned seed)
{
	sky_cache *c = open_cache(dir);
	if (!c)
		return 2;
	srand(seed);
	const char *app = "{\"applicationId\":\"" APP "\",\"name\":\"crash\"}";
	if (sky_mirror_app_put(c, app, strlen(app)) != 0) {
		fprintf(stderr, "crash_writer: app_put: %s\n",
			sky_error_last()->message);
		return 1;
	}
	char *locals[32] = {NULL};
	size_t nlocal = 0;
	char body[256];
	for (unsigned long n = 0;; n++) {
		if (nlocal == 0 || (nlocal < 32 && rand() % 16 == 0)) {
			snprintf(body, sizeof(body),
				 "{\"name\":\"queued %s %lu\",\"properties\":"
				 "{\"round\":\"%s\"}}",
				 prefix, n, prefix);
			char *sid = NULL;
			if (sky_session_create(c, APP, body, strlen(body),
					       &sid)) {
				fprintf(stderr, "crash_writer: create: %s\n",
					sky_error_last()->message);
				return 1;
			}
			locals[nlocal++] = sid;
			printf("ack create %s\n", sid);
			fflush(stdout);
			continue;
		}
		/* One write, or a batch of a few, to random local sessions. */
		size_t k = rand() % 4 == 0 ? 1 + (size_t)rand() % 8 : 1;
		sky_write w[8];
		char bodies[8][64];
		for (size_t i = 0; i < k; i++) {
			snprintf(bodies[i], sizeof(bodies[i]), "{\"q%lu\":%lu}",
				 n + i, n + i);
			w[i] = (sky_write){SKY_WRITE_DATA,
					   APP,
					   locals[(size_t)rand() % nlocal],
					   bodies[i],
					   strlen(bodies[i]),
					   0,
					   NULL,
					   0,
					   NULL};
		}
		if (sky_write_batch(c, w, k) != 0) {
			fprintf(stderr, "crash_writer: write: %s\n",
				sky_error_last()->message);
			return 1;
		}
		for (size_t i = 0; i < k; i++)
			printf("ack q%lu %s\n", n + i, w[i].session_id);
		fflush(stdout);
		n += k - 1;
	}
}

static int count_entry(const sky_outbox_entry *e, void *payload)
{
	(void)e;
	(*(unsigned long *)payload)++;
	return 0;
}

static int do_verifyq(const char *dir, const char *ackfile)
{
	FILE *f = fopen(ackfile, "r");
	if (!f) {
		perror(ackfile);
		return 2;
	}
	sky_cache *c = open_cache(dir);
	if (!c) {
		fclose(f);
		return 2;
	}
	char line[512], sid[256], key[64];
	unsigned long checked = 0, missing = 0, entries = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long n;
		if (!strchr(line, '\n'))
			break; /* cut by the kill: never acknowledged */
		char *json = NULL;
		size_t len;
		checked++;
		if (sscanf(line, "ack create %255s", sid) == 1) {
			if (sky_session_get(c, APP, sid, &json, &len) != 0) {
				printf("missing: created session %s\n", sid);
				missing++;
			}
			sky_free(json);
			continue;
		}
		if (sscanf(line, "ack q%lu %255s", &n, sid) != 2) {
			printf("verifyq: bad line: %s", line);
			missing++;
			continue;
		}
		json_t *doc = NULL;
		if (sky_data_get(c, APP, sid, &json, &len) == 0)
			doc = json_loadb(json, len, 0, NULL);
		sky_free(json);
		snprintf(key, sizeof(key), "q%lu", n);
		json_t *v = doc ? json_object_get(doc, key) : NULL;
		if (!json_is_integer(v) ||
		    json_integer_value(v) != (json_int_t)n) {
			printf("missing: write q%lu to %s\n", n, sid);
			missing++;
		}
		json_decref(doc);
	}
	fclose(f);
	/* Nothing was delivered (no server): every write is still queued. */
	if (sky_outbox_list(c, count_entry, &entries) != 0 ||
	    entries < checked) {
		printf("missing: %lu acknowledged writes, %lu outbox entries\n",
		       checked, entries);
		missing++;
	}
	sky_cache_close(c);
	printf("verified %lu acknowledged writes, %lu missing\n", checked,
	       missing);
	return missing ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "write"))
		return do_write(argv[2], argv[3],
				argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10)
					 : (unsigned)getpid());
	if (argc == 4 && !strcmp(argv[1], "read"))
		return do_read(argv[2], argv[3]);
	if (argc >= 4 && !strcmp(argv[1], "events"))
		return do_events(argv[2], strtoul(argv[3], NULL, 10));
	if (argc >= 4 && !strcmp(argv[1], "queue"))
		return do_queue(argv[2], argv[3],
				argc > 4 ? (unsigned)strtoul(argv[4], NULL, 10)
					 : (unsigned)getpid());
	if (argc == 4 && !strcmp(argv[1], "verifyq"))
		return do_verifyq(argv[2], argv[3]);
	if (argc == 5 && !strcmp(argv[1], "verify"))
		return do_verify(argv[2], argv[3], argv[4]);
	fprintf(
	    stderr,
	    "usage: crash_writer write DIR PREFIX [SEED] | read DIR PREFIX |"
	    " events PREFIX N | verify DIR PREFIX ACKFILE | queue DIR PREFIX\n"
	    "       [SEED] | verifyq DIR ACKFILE\n");
	return 1;
}
