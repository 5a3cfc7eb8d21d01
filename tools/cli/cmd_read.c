/*
 * cmd_read.c - the read-only commands: get, data, apps, roles, events,
 * stats, check, backup. Each opens the cache read-only (so it never
 * creates one by accident and can run beside a writer) and prints JSON
 * lines, or a table with --format table; stats also prints Prometheus
 * metrics (--format prometheus), which the others refuse in cli_open.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json.h"

static void time_text(int64_t us, char *buf);

/* A stale session (its last read failed) gets a note on stderr; the
 * output on stdout stays the session itself. */
static void note_stale(sky_cache *c, const char *app, const char *sid)
{
	char *why = NULL;
	int64_t since = 0;
	if (sky_session_stale(c, app, sid, &why, &since) != 0)
		return;
	char at[32];
	time_text(since, at);
	fprintf(stderr,
		"skysync: note: session %s/%s is stale since %s: %s; the "
		"cache may be behind the server until a sync reads it again\n",
		app, sid, *at ? at : "?", why && *why ? why : "a read failed");
	sky_free(why);
}

static int run_get(int argc, char **argv, const cli_globals *g)
{
	if (argc != 3)
		return cli_usage_error("get", "expected APP SID");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	sky_reader *r;
	const char *json;
	int rc = sky_reader_begin(&r, c);
	if (rc == 0) {
		rc = sky_reader_session(r, argv[1], argv[2], &json, NULL);
		if (rc == 0)
			cli_print_object(g, json);
		sky_reader_end(r);
	}
	if (rc == 0)
		note_stale(c, argv[1], argv[2]);
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_get = {
    "get",
    "print one session (the local view)",
    "usage: skysync get APP SID\n"
    "\n"
    "Print session SID of application APP from the cache as one JSON object\n"
    "(the local view, including writes not yet delivered); with --format\n"
    "table, one field per row. Exit 2 when the session is not in the cache.\n"
    "A stale session (its last read from the server failed, or the cache\n"
    "refused the server's answer or event) is printed all the same, with a\n"
    "note on stderr: \"skysync: note: session APP/SID is stale since T:\n"
    "REASON ...\"; the next sync reads it again.\n",
    run_get,
};

static int run_data(int argc, char **argv, const cli_globals *g)
{
	if (argc != 3)
		return cli_usage_error("data", "expected APP SID");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	char *json;
	int rc = sky_data_get(c, argv[1], argv[2], &json, NULL);
	if (rc == 0) {
		cli_print_object(g, json);
		sky_free(json);
	}
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_data = {
    "data",
    "print a session's data",
    "usage: skysync data APP SID\n"
    "\n"
    "Print the session data of session SID as one JSON object (keys in\n"
    "byte order; {} when it has none); with --format table, one member per\n"
    "row. Exit 2 when the session is not in the cache.\n",
    run_data,
};

typedef struct {
	const cli_globals *g;
	cli_table *table;
} list_ctx;

static int list_one(const char *json, size_t len, void *payload)
{
	list_ctx *l = payload;
	(void)len;
	if (l->table)
		cli_table_add_json(l->table, json);
	else
		cli_print_json_line(l->g, json);
	return 0;
}

static int run_list(const cli_globals *g, const char *const *cols,
		    const char *app, int roles)
{
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	list_ctx l = {g,
		      g->format == FORMAT_TABLE ? cli_table_new(cols) : NULL};
	int rc = roles ? sky_role_list(c, app, list_one, &l)
		       : sky_app_list(c, list_one, &l);
	if (rc == 0 && l.table)
		cli_table_print(l.table, g, stdout);
	cli_table_free(l.table);
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

static int run_apps(int argc, char **argv, const cli_globals *g)
{
	static const char *const cols[] = {
	    "applicationId", "name", "publishedVersion", "description", NULL};
	(void)argv;
	if (argc != 1)
		return cli_usage_error("apps", "takes no arguments");
	return run_list(g, cols, NULL, 0);
}

const cli_command cli_cmd_apps = {
    "apps",
    "list cached applications",
    "usage: skysync apps\n"
    "\n"
    "Print every cached application, one JSON object per line; with\n"
    "--format table, one per row (id, name, published version, description).\n",
    run_apps,
};

static int run_roles(int argc, char **argv, const cli_globals *g)
{
	static const char *const cols[] = {"name", "permissions",
					   "participants", "description", NULL};
	if (argc != 2)
		return cli_usage_error("roles", "expected APP");
	return run_list(g, cols, argv[1], 1);
}

const cli_command cli_cmd_roles = {
    "roles",
    "list cached roles of an application",
    "usage: skysync roles APP\n"
    "\n"
    "Print the cached roles of application APP, one JSON object per line\n"
    "(nothing when none are cached); with --format table, one per row.\n",
    run_roles,
};

static int run_events(int argc, char **argv, const cli_globals *g)
{
	static const char *const cols[] = {"createdAt", "eventId", "userId",
					   "source",	"data",	   NULL};
	if (argc != 3)
		return cli_usage_error("events", "expected APP SID");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	list_ctx l = {g,
		      g->format == FORMAT_TABLE ? cli_table_new(cols) : NULL};
	int rc = sky_session_event_list(c, argv[1], argv[2], list_one, &l);
	if (rc == 0 && l.table)
		cli_table_print(l.table, g, stdout);
	cli_table_free(l.table);
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_events = {
    "events",
    "list custom events recorded for a session",
    "usage: skysync events APP SID\n"
    "\n"
    "Print the custom session events (session_event_created) recorded for\n"
    "session SID, oldest first, one JSON event per line; with --format\n"
    "table, one per row. Exit 2 when the session is not in the cache.\n",
    run_events,
};

static void time_text(int64_t us, char *buf)
{
	if (us <= 0) {
		strcpy(buf, "");
		return;
	}
	time_t t = (time_t)(us / 1000000);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/*
 * Prometheus text exposition format 0.0.4, for the node exporter's textfile
 * collector or any scraper: each metric family is a "# HELP" and a
 * "# TYPE" line, then its samples, one "name value" line each. Names
 * follow the Prometheus conventions rather than the JSON keys: snake case,
 * counters end in _total, times are seconds (Unix times
 * _timestamp_seconds), sizes _bytes. A time that was never recorded is 0,
 * as with other exporters; the JSON says null.
 *
 * events_rejected is left out: libsync counts it per process and does not
 * store it, so the CLI, a process of its own, would always report 0.
 */
static void prom_family(const char *name, const char *type, const char *help)
{
	printf("# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void prom_count(const char *name, const char *type, const char *help,
		       uint64_t value)
{
	prom_family(name, type, help);
	printf("%s %" PRIu64 "\n", name, value);
}

/* Microseconds as seconds, digit for digit: a double would round a Unix
 * time in microseconds in its last place. */
static void prom_seconds(const char *name, const char *help, int64_t us)
{
	uint64_t a = us < 0 ? -(uint64_t)us : (uint64_t)us;
	char frac[8] = "";
	if (a % 1000000) {
		snprintf(frac, sizeof(frac), ".%06u", (unsigned)(a % 1000000));
		for (char *p = frac + strlen(frac) - 1; *p == '0'; p--)
			*p = '\0';
	}
	prom_family(name, "gauge", help);
	printf("%s %s%" PRIu64 "%s\n", name, us < 0 ? "-" : "", a / 1000000,
	       frac);
}

/* The outbox as stats reports it: counts by state, and when the oldest
 * write not yet delivered (pending, in flight or in doubt) was queued. */
typedef struct {
	sky_outbox_counts n;
	int64_t oldest_us; /* 0: nothing waiting */
} outbox_stats;

static int oldest_cb(const sky_outbox_entry *e, void *payload)
{
	outbox_stats *o = payload;
	if (e->state != SKY_OUTBOX_REJECTED &&
	    (o->oldest_us == 0 || e->queued_us < o->oldest_us))
		o->oldest_us = e->queued_us;
	return 0;
}

static int outbox_stats_get(sky_cache *c, outbox_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->n.version = SKY_OUTBOX_COUNTS_VERSION;
	if (sky_outbox_counts_get(c, &out->n) < 0)
		return -1;
	/* Entries are in queue order, but a retried one keeps its queue
	 * time: look at them all rather than only the first. */
	return sky_outbox_list(c, oldest_cb, out);
}

/* Age of the oldest waiting write in µs at `now_us` (0: none). */
static int64_t oldest_age_us(const outbox_stats *o, int64_t now_us)
{
	if (o->oldest_us == 0 || now_us < o->oldest_us)
		return 0;
	return now_us - o->oldest_us;
}

static int64_t wall_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void print_prometheus_outbox(const sky_stats *s, const outbox_stats *o)
{
	prom_count("skysync_outbox_pending", "gauge",
		   "Writes queued and not yet sent, or being sent.",
		   o->n.pending + o->n.in_flight);
	prom_count("skysync_outbox_in_doubt", "gauge",
		   "Writes sent whose answer was lost, being resolved.",
		   o->n.in_doubt);
	prom_count("skysync_outbox_dead_letters", "gauge",
		   "Writes the server refused, kept until retried or dropped.",
		   o->n.rejected);
	prom_count("skysync_outbox_delivered_total", "counter",
		   "Writes confirmed delivered since the cache was created.",
		   s->outbox_delivered);
	prom_seconds("skysync_outbox_oldest_pending_age_seconds",
		     "Age of the oldest write not yet delivered (0: none).",
		     oldest_age_us(o, wall_us()));
	prom_seconds("skysync_outbox_last_delivery_timestamp_seconds",
		     "When a write was last confirmed delivered, as a Unix "
		     "time (0: never).",
		     s->outbox_last_delivery_us);
}

static void print_prometheus(const sky_stats *s)
{
	prom_count("skysync_applications", "gauge",
		   "Applications in the cache.", s->applications);
	prom_count("skysync_roles", "gauge", "Roles in the cache.", s->roles);
	prom_count("skysync_sessions", "gauge", "Sessions in the cache.",
		   s->sessions);
	prom_count("skysync_open_sessions", "gauge",
		   "Sessions in the cache that are not closed.",
		   s->open_sessions);
	prom_count("skysync_closed_sessions", "gauge",
		   "Closed sessions kept in the cache (until their retention "
		   "ends).",
		   s->sessions - s->open_sessions);
	prom_count("skysync_data_entries", "gauge",
		   "Stored nodes of session data.", s->data_entries);
	prom_count("skysync_event_log", "gauge",
		   "Event ids remembered to recognise duplicates.",
		   s->event_log);
	prom_count("skysync_pending_events", "gauge",
		   "Events waiting for their session to arrive.",
		   s->pending_events);
	prom_count("skysync_custom_events", "gauge",
		   "Custom session events (session_event_created) recorded.",
		   s->custom_events);
	prom_count("skysync_events_applied_total", "counter",
		   "Events applied since the cache was created.",
		   s->events_applied);
	prom_count("skysync_events_skipped_total", "counter",
		   "Events skipped as duplicate or stale since the cache was "
		   "created.",
		   s->events_skipped);
	prom_seconds("skysync_last_event_timestamp_seconds",
		     "createdAt of the newest applied event, as a Unix time "
		     "(0: none yet).",
		     s->last_event_at_us);
	prom_seconds(
	    "skysync_last_apply_timestamp_seconds",
	    "When events were last applied, as a Unix time (0: never).",
	    s->last_apply_us);
	prom_count("skysync_map_bytes", "gauge", "Size of the LMDB memory map.",
		   s->map_bytes);
	prom_count("skysync_used_bytes", "gauge",
		   "Bytes of the LMDB memory map in use.", s->used_bytes);
	prom_count("skysync_schema_version", "gauge",
		   "Version of the cache's storage format.", s->schema_version);
	prom_count("skysync_server_events_refused_total", "counter",
		   "Server events and answers the cache refused (over a limit, "
		   "malformed); each made sync read the session again.",
		   s->server_events_refused);
	prom_count("skysync_stale_sessions", "gauge",
		   "Sessions whose last read from the server failed (see "
		   "`skysync check`).",
		   s->stale_sessions);
	prom_count("skysync_journal_damaged_records_total", "counter",
		   "Journal records found damaged and skipped by a replay.",
		   s->journal_damaged);

	/* The state both as a number, for graphs, and as one 0/1 series per
	 * state, for alerts such as skysync_sync_in_state{state="failed"} ==
	 * 1. The help text lists the numbers from the library's own names so
	 * that it cannot drift from the enum. */
	char help[256];
	size_t n = (size_t)snprintf(help, sizeof(help),
				    "State recorded by the last sync run: 0 "
				    "never ran");
	for (int st = SKY_ENGINE_IDLE; st <= SKY_ENGINE_FAILED; st++)
		if (n < sizeof(help))
			n += (size_t)snprintf(
			    help + n, sizeof(help) - n, ", %d %s", st + 1,
			    sky_engine_state_name((sky_engine_state)st));
	if (n < sizeof(help))
		snprintf(help + n, sizeof(help) - n, ".");
	prom_count("skysync_sync_state", "gauge", help,
		   (uint64_t)(s->sync_state > 0 ? s->sync_state : 0));
	prom_family("skysync_sync_in_state", "gauge",
		    "1 for the state recorded by the last sync run, 0 for the "
		    "others (all 0 when sync never ran).");
	for (int st = SKY_ENGINE_IDLE; st <= SKY_ENGINE_FAILED; st++)
		printf("skysync_sync_in_state{state=\"%s\"} %d\n",
		       sky_engine_state_name((sky_engine_state)st),
		       s->sync_state == st + 1);
	/* As in the JSON, the rest exists only once sync has run: a lag of 0
	 * would read as "current" for a cache that was never synced. */
	if (s->sync_state > 0) {
		prom_seconds("skysync_last_sync_timestamp_seconds",
			     "When the last sync completed a snapshot of the "
			     "realm, as a Unix time (0: none yet).",
			     s->sync_last_at_us);
		prom_seconds("skysync_sync_updated_timestamp_seconds",
			     "When sync last recorded its state, as a Unix "
			     "time (every 5 s while live).",
			     s->sync_updated_us);
		prom_seconds("skysync_sync_event_lag_seconds",
			     "Apply time minus createdAt of the last event, "
			     "when sync last recorded it.",
			     s->sync_event_lag_us);
	}
	/* How the last sync read the realm: one 0/1 series per path. */
	if (s->sync_path > 0) {
		prom_family("skysync_last_sync_path", "gauge",
			    "1 for how the last sync read the realm: full (a "
			    "snapshot) or resumed (the broker's backlog and "
			    "the lists, then only what differs).");
		printf("skysync_last_sync_path{path=\"full\"} %d\n",
		       s->sync_path == SKY_SYNC_PATH_FULL);
		printf("skysync_last_sync_path{path=\"resumed\"} %d\n",
		       s->sync_path == SKY_SYNC_PATH_RESUMED);
		prom_count("skysync_last_sync_requests", "gauge",
			   "REST requests the last sync made (login and "
			   "retries included).",
			   s->sync_requests);
	}
}

static int run_stats(int argc, char **argv, const cli_globals *g)
{
	(void)argv;
	if (argc != 1)
		return cli_usage_error("stats", "takes no arguments");
	sky_cache *c = cli_open_formats(
	    g, 1, CLI_FORMATS_DEFAULT | CLI_FORMAT_BIT(FORMAT_PROMETHEUS));
	if (!c)
		return EXIT_USAGE;
	sky_stats s = SKY_STATS_INIT;
	outbox_stats ob;
	int rc = sky_cache_stats(c, &s);
	if (rc == 0)
		rc = outbox_stats_get(c, &ob);
	/* The user it syncs as; none before the first sync. */
	char *sync_user = NULL;
	if (rc == 0 && sky_sync_user_get(c, &sync_user, NULL) < 0)
		sync_user = NULL;
	sky_cache_close(c);
	if (rc < 0)
		return cli_fail(NULL);
	json_t *user = sync_user ? sky__json_loads(sync_user, 0, NULL) : NULL;
	sky_free(sync_user);
	if (g->format == FORMAT_PROMETHEUS) {
		json_decref(user);
		print_prometheus(&s);
		print_prometheus_outbox(&s, &ob);
		return EXIT_OK;
	}
	char last_event[32], last_apply[32];
	time_text(s.last_event_at_us, last_event);
	time_text(s.last_apply_us, last_apply);
	json_t *o = json_pack(
	    "{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?,s:s?,s:I,s:"
	    "I,s:i}",
	    "db", g->db, "applications", (json_int_t)s.applications, "roles",
	    (json_int_t)s.roles, "sessions", (json_int_t)s.sessions,
	    "openSessions", (json_int_t)s.open_sessions, "closedSessions",
	    (json_int_t)(s.sessions - s.open_sessions), "dataEntries",
	    (json_int_t)s.data_entries, "eventLog", (json_int_t)s.event_log,
	    "pendingEvents", (json_int_t)s.pending_events, "customEvents",
	    (json_int_t)s.custom_events, "eventsApplied",
	    (json_int_t)s.events_applied, "eventsSkipped",
	    (json_int_t)s.events_skipped, "lastEventAt",
	    *last_event ? last_event : NULL, "lastApplyAt",
	    *last_apply ? last_apply : NULL, "mapBytes",
	    (json_int_t)s.map_bytes, "usedBytes", (json_int_t)s.used_bytes,
	    "schemaVersion", (int)s.schema_version);
	if (o && (json_object_set_new(
		      o, "serverEventsRefused",
		      json_integer((json_int_t)s.server_events_refused)) < 0 ||
		  json_object_set_new(
		      o, "staleSessions",
		      json_integer((json_int_t)s.stale_sessions)) < 0)) {
		json_decref(o);
		o = NULL;
	}
	char last_delivery[32];
	time_text(s.outbox_last_delivery_us, last_delivery);
	if (o &&
	    (json_object_set_new(
		 o, "outboxPending",
		 json_integer((json_int_t)(ob.n.pending + ob.n.in_flight))) <
		 0 ||
	     json_object_set_new(o, "outboxInDoubt",
				 json_integer((json_int_t)ob.n.in_doubt)) < 0 ||
	     json_object_set_new(o, "outboxDeadLetters",
				 json_integer((json_int_t)ob.n.rejected)) < 0 ||
	     json_object_set_new(o, "outboxDelivered",
				 json_integer((json_int_t)s.outbox_delivered)) <
		 0 ||
	     json_object_set_new(
		 o, "outboxOldestPendingAgeS",
		 json_integer((json_int_t)(oldest_age_us(&ob, wall_us()) /
					   1000000))) < 0 ||
	     json_object_set_new(o, "lastDeliveryAt",
				 *last_delivery ? json_string(last_delivery)
						: json_null()) < 0)) {
		json_decref(o);
		o = NULL;
	}
	if (!o) {
		json_decref(user);
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	if (json_object_set_new(o, "journalDamaged",
				json_integer((json_int_t)s.journal_damaged)) <
	    0) {
		json_decref(o);
		json_decref(user);
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	/* What the last sync run recorded (nothing if sync never ran). */
	if (s.sync_state > 0) {
		char last_sync[32], updated[32];
		time_text(s.sync_last_at_us, last_sync);
		time_text(s.sync_updated_us, updated);
		if (json_object_set_new(
			o, "syncState",
			json_string(sky_engine_state_name(
			    (sky_engine_state)(s.sync_state - 1)))) < 0 ||
		    json_object_set_new(o, "lastSyncAt",
					*last_sync ? json_string(last_sync)
						   : json_null()) < 0 ||
		    json_object_set_new(o, "syncUpdatedAt",
					*updated ? json_string(updated)
						 : json_null()) < 0 ||
		    json_object_set_new(
			o, "eventLagMs",
			json_integer(s.sync_event_lag_us / 1000)) < 0 ||
		    (s.sync_path > 0 &&
		     (json_object_set_new(
			  o, "lastSyncPath",
			  json_string(s.sync_path == SKY_SYNC_PATH_RESUMED
					  ? "resumed"
					  : "full")) < 0 ||
		      json_object_set_new(o, "lastSyncWhy",
					  json_string(sky_sync_why_name(
					      s.sync_path_why))) < 0 ||
		      json_object_set_new(
			  o, "lastSyncRequests",
			  json_integer((json_int_t)s.sync_requests)) < 0))) {
			json_decref(o);
			json_decref(user);
			fprintf(stderr, "skysync: out of memory\n");
			return EXIT_USAGE;
		}
	}
	if (user && json_object_set_new(o, "syncUser", user) < 0) {
		json_decref(o);
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	char *text = sky__json_dumps(o, NULL);
	json_decref(o);
	if (!text) {
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	cli_print_object(g, text);
	free(text);
	return EXIT_OK;
}

const cli_command cli_cmd_stats = {
    "stats",
    "counts, sizes, the last apply and the sync state",
    "usage: skysync stats [--format json|table|prometheus]\n"
    "\n"
    "Print the cache's counts (applications, roles, sessions, open and\n"
    "closed sessions, data entries, remembered event ids, events waiting\n"
    "for their session, custom events), lifetime applied/skipped events, the "
    "time of the\n"
    "newest event and of the last apply, the map size and the bytes in use,\n"
    "and what the last sync recorded: its connection state, the time of the\n"
    "last snapshot and the event lag; serverEventsRefused counts the server\n"
    "events and answers the cache refused (each made sync read the session\n"
    "again), staleSessions the sessions whose last read failed,\n"
    "journalDamaged the journal records a replay found damaged and skipped.\n"
    "The outbox: outboxPending (queued or being sent), outboxInDoubt,\n"
    "outboxDeadLetters, outboxDelivered (lifetime), outboxOldestPendingAgeS\n"
    "(age in seconds of the oldest write not yet delivered, 0 none) and\n"
    "lastDeliveryAt.\n"
    "\n"
    "--format prometheus prints the same as Prometheus metrics (text format\n"
    "0.0.4, e.g. for node_exporter's textfile collector): skysync_sessions,\n"
    "skysync_events_applied_total, skysync_last_apply_timestamp_seconds,\n"
    "skysync_sync_state and skysync_sync_in_state{state=...},\n"
    "skysync_server_events_refused_total, skysync_stale_sessions,\n"
    "skysync_outbox_pending, skysync_outbox_in_doubt,\n"
    "skysync_outbox_dead_letters, skysync_outbox_delivered_total,\n"
    "skysync_outbox_oldest_pending_age_seconds,\n"
    "skysync_outbox_last_delivery_timestamp_seconds, ...; times in\n"
    "seconds, 0 when never recorded. Only stats takes this format.\n",
    run_stats,
};

static void print_problem(const char *line, void *payload)
{
	++*(unsigned *)payload;
	printf("%s\n", line);
}

/* A stale session is not damage: a note on stderr, not a problem. */
static int print_stale(const sky_stale_session *s, void *payload)
{
	char at[32];
	time_text(s->since_us, at);
	fprintf(stderr, "skysync: stale: %s/%s since %s: %s\n", s->app_id,
		s->session_id, *at ? at : "?", s->reason);
	++*(uint64_t *)payload;
	return 0;
}

static int run_check(int argc, char **argv, const cli_globals *g)
{
	(void)argv;
	if (argc != 1)
		return cli_usage_error("check", "takes no arguments");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	unsigned problems = 0;
	sky_stats st = SKY_STATS_INIT;
	if (sky_cache_stats(c, &st) == 0 && st.schema_version < 2)
		fprintf(stderr,
			"skysync: note: %s was written by an earlier skysync "
			"(schema %u: stored values without checksums); the "
			"next write or sync upgrades it once\n",
			g->db, st.schema_version);
	int rc = sky_cache_check(c, print_problem, &problems);
	uint64_t stale = 0;
	if (rc == 0 || rc == SKY_EINVAL)
		(void)sky_stale_list(c, print_stale, &stale);
	sky_cache_close(c);
	if (rc == SKY_EINVAL) {
		fprintf(stderr, "skysync: check found %u problem%s in %s\n",
			problems, problems == 1 ? "" : "s", g->db);
		return EXIT_REJECTED;
	}
	if (rc < 0)
		return cli_fail("check");
	if (stale)
		fprintf(stderr,
			"skysync: check passed: %s is consistent; %llu "
			"session%s stale (the next sync reads %s again)\n",
			g->db, (unsigned long long)stale,
			stale == 1 ? " is" : "s are",
			stale == 1 ? "it" : "them");
	else
		fprintf(stderr, "skysync: check passed: %s is consistent\n",
			g->db);
	return EXIT_OK;
}

const cli_command cli_cmd_check = {
    "check",
    "verify the cache (records, data, indexes)",
    "usage: skysync check\n"
    "\n"
    "Verify the whole cache: every record parses and validates, every data\n"
    "document is well formed, every index entry matches its record and\n"
    "back, the event log is consistent. Prints one line per problem; exit 0\n"
    "when consistent, 3 when problems were found, 5 when the cache file is\n"
    "damaged (a page that cannot be read or a stored value that fails its\n"
    "checksum: every page is read first; see `skysync salvage`). A cache\n"
    "written by an earlier skysync is named as such; the next write\n"
    "upgrades it. Stale sessions (their last read from the server failed;\n"
    "the next sync reads them again) are listed on stderr, \"skysync:\n"
    "stale: APP/SID since T: REASON\", and do not change the exit status.\n",
    run_check,
};

static int run_backup(int argc, char **argv, const cli_globals *g)
{
	if (argc != 2)
		return cli_usage_error("backup", "expected DEST");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	int rc = sky_cache_backup(c, argv[1]);
	sky_cache_close(c);
	if (rc < 0)
		return cli_fail("backup");
	fprintf(stderr, "skysync: wrote a compacted copy of %s to %s\n", g->db,
		argv[1]);
	return EXIT_OK;
}

const cli_command cli_cmd_backup = {
    "backup",
    "write a compacted copy of the cache",
    "usage: skysync backup DEST\n"
    "\n"
    "Write a compacted, consistent copy of the cache into directory DEST\n"
    "(created 0700; must not hold a cache already). Safe while another\n"
    "process writes. Use it as a cache with `--db DEST`.\n",
    run_backup,
};
