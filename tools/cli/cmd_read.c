/*
 * cmd_read.c - the read-only commands: get, data, apps, roles, events,
 * stats, check, backup. Each opens the cache read-only (so it never
 * creates one by accident and can run beside a writer) and prints JSON
 * lines, or a table with --format table.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Print a borrowed JSON object: one line, or a two-column table. */
static void print_object(const cli_globals *g, const char *json)
{
	if (g->format != FORMAT_TABLE) {
		cli_print_json_line(g, json);
		return;
	}
	static const char *const cols[] = {"field", "value", NULL};
	cli_table *t = cli_table_new(cols);
	json_t *obj = json_loads(json, 0, NULL);
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v) {
		json_t *row = json_pack("{s:s,s:O}", "field", k, "value", v);
		char *text = json_dumps(row, JSON_COMPACT);
		cli_table_add_json(t, text);
		free(text);
		json_decref(row);
	}
	json_decref(obj);
	cli_table_print(t, g, stdout);
	cli_table_free(t);
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
	int rc = sky_reader_begin(c, &r);
	if (rc == 0) {
		rc = sky_reader_session(r, argv[1], argv[2], &json, NULL);
		if (rc == 0)
			print_object(g, json);
		sky_reader_end(r);
	}
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_get = {
	"get", "print one session (the local view)",
	"usage: skysync get APP SID\n"
	"\n"
	"Print session SID of application APP from the cache as one JSON object\n"
	"(the local view, including writes not yet delivered). Exit 2 when the\n"
	"session is not in the cache.\n",
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
		print_object(g, json);
		sky_free(json);
	}
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_data = {
	"data", "print a session's data",
	"usage: skysync data APP SID\n"
	"\n"
	"Print the session data of session SID as one JSON object (keys in\n"
	"byte order). Exit 2 when the session is not in the cache.\n",
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
	list_ctx l = {g, g->format == FORMAT_TABLE ? cli_table_new(cols) : NULL};
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
	static const char *const cols[] = {"applicationId", "name",
					   "publishedVersion", "description",
					   NULL};
	(void)argv;
	if (argc != 1)
		return cli_usage_error("apps", "takes no arguments");
	return run_list(g, cols, NULL, 0);
}

const cli_command cli_cmd_apps = {
	"apps", "list cached applications",
	"usage: skysync apps\n"
	"\n"
	"Print every cached application, one JSON object per line.\n",
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
	"roles", "list cached roles of an application",
	"usage: skysync roles APP\n"
	"\n"
	"Print the cached roles of application APP, one JSON object per line.\n",
	run_roles,
};

static int run_events(int argc, char **argv, const cli_globals *g)
{
	if (argc != 3)
		return cli_usage_error("events", "expected APP SID");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	list_ctx l = {g, NULL};
	int rc = sky_session_events(c, argv[1], argv[2], list_one, &l);
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_events = {
	"events", "list custom events recorded for a session",
	"usage: skysync events APP SID\n"
	"\n"
	"Print the custom session events (session_event_created) recorded for\n"
	"session SID, oldest first, one JSON event per line.\n",
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

static int run_stats(int argc, char **argv, const cli_globals *g)
{
	(void)argv;
	if (argc != 1)
		return cli_usage_error("stats", "takes no arguments");
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	sky_stats s;
	int rc = sky_cache_stats(c, &s);
	sky_cache_close(c);
	if (rc < 0)
		return cli_fail(NULL);
	char last_event[32], last_apply[32];
	time_text(s.last_event_at_us, last_event);
	time_text(s.last_apply_us, last_apply);
	json_t *o = json_pack(
		"{s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s?,s:s?,s:I,s:I,s:i}",
		"db", g->db, "applications", (json_int_t)s.applications, "roles",
		(json_int_t)s.roles, "sessions", (json_int_t)s.sessions,
		"openSessions", (json_int_t)s.open_sessions, "dataEntries",
		(json_int_t)s.data_entries, "eventLog", (json_int_t)s.event_log,
		"pendingEvents", (json_int_t)s.pending_events, "customEvents",
		(json_int_t)s.custom_events, "eventsApplied",
		(json_int_t)s.events_applied, "eventsSkipped",
		(json_int_t)s.events_skipped, "lastEventAt",
		*last_event ? last_event : NULL, "lastApplyAt",
		*last_apply ? last_apply : NULL, "mapBytes",
		(json_int_t)s.map_bytes, "usedBytes", (json_int_t)s.used_bytes,
		"schemaVersion", (int)s.schema_version);
	/* What the last sync run recorded (nothing if sync never ran). */
	if (s.sync_state > 0) {
		char last_sync[32], updated[32];
		time_text(s.sync_last_at_us, last_sync);
		time_text(s.sync_updated_us, updated);
		json_object_set_new(o, "syncState",
				    json_string(sky_engine_state_name(
					    (sky_engine_state)(s.sync_state - 1))));
		json_object_set_new(o, "lastSyncAt", *last_sync ? json_string(last_sync)
							   : json_null());
		json_object_set_new(o, "syncUpdatedAt", *updated ? json_string(updated)
							     : json_null());
		json_object_set_new(o, "eventLagMs",
				    json_integer(s.sync_event_lag_us / 1000));
	}
	if (g->format == FORMAT_PROMETHEUS) {
		const char *k;
		json_t *v;
		json_object_foreach(o, k, v) {
			if (!json_is_integer(v))
				continue;
			printf("# TYPE skysync_%s gauge\nskysync_%s %" JSON_INTEGER_FORMAT
			       "\n",
			       k, k, json_integer_value(v));
		}
	} else {
		char *text = json_dumps(o, JSON_COMPACT);
		print_object(g, text);
		free(text);
	}
	json_decref(o);
	return EXIT_OK;
}

const cli_command cli_cmd_stats = {
	"stats", "counts, sizes and the last apply time",
	"usage: skysync stats [--format json|table|prometheus]\n"
	"\n"
	"Print the cache's counts (applications, sessions, open sessions, data\n"
	"entries, remembered event ids, events waiting for their session),\n"
	"lifetime applied/skipped events, the time of the newest event and of\n"
	"the last apply, the map size, and what the last sync recorded: its\n"
	"connection state, the time of the last snapshot and the event lag.\n",
	run_stats,
};

static void print_problem(const char *line, void *payload)
{
	++*(unsigned *)payload;
	printf("%s\n", line);
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
	int rc = sky_cache_check(c, print_problem, &problems);
	sky_cache_close(c);
	if (rc == SKY_EINVAL) {
		fprintf(stderr, "skysync: check found %u problem%s in %s\n",
			problems, problems == 1 ? "" : "s", g->db);
		return EXIT_REJECTED;
	}
	if (rc < 0)
		return cli_fail("check");
	fprintf(stderr, "skysync: check passed: %s is consistent\n", g->db);
	return EXIT_OK;
}

const cli_command cli_cmd_check = {
	"check", "verify the cache (records, data, indexes)",
	"usage: skysync check\n"
	"\n"
	"Verify the whole cache: every record parses and validates, every data\n"
	"document is well formed, every index entry matches its record and\n"
	"back, the event log is consistent. Prints one line per problem; exit 0\n"
	"when consistent, 3 when problems were found.\n",
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
	"backup", "write a compacted copy of the cache",
	"usage: skysync backup DEST\n"
	"\n"
	"Write a compacted, consistent copy of the cache into directory DEST\n"
	"(created 0700; must not hold a cache already). Safe while another\n"
	"process writes. Use it as a cache with `--db DEST`.\n",
	run_backup,
};
