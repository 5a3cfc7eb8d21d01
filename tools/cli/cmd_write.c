/*
 * cmd_write.c - the write commands of DESIGN.md §7: session create, close,
 * rename, describe and patch; props set; data patch; participant add;
 * event send; and `outbox` to see and manage queued writes.
 *
 * A write goes to the cache's outbox (libsync's sky_session_create and
 * friends): it is on disk when the command returns, shows in every read
 * at once, and a `skysync sync` delivers it. Each write command prints
 * the affected session (the local view) as one JSON object; `session
 * create` prints the new session with its local sessionId.
 */
#include "config.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json.h"

/* Print the local view of app/sid after a write; the exit code. */
static int print_session(sky_cache *c, const cli_globals *g, const char *app,
			 const char *sid)
{
	char *json;
	if (sky_session_get(c, app, sid, &json, NULL) < 0)
		return cli_fail(NULL);
	cli_print_object(g, json);
	sky_free(json);
	return EXIT_OK;
}

/* Parse k=v arguments into a JSON object of strings; NULL on a bad one. */
static json_t *parse_props(const char *cmd, char **args, int n)
{
	json_t *props = json_object();
	for (int i = 0; props && i < n; i++) {
		const char *eq = strchr(args[i], '=');
		if (!eq || eq == args[i]) {
			cli_usage_error(cmd, "'%s' is not KEY=VALUE", args[i]);
			json_decref(props);
			return NULL;
		}
		char *key = strndup(args[i], (size_t)(eq - args[i]));
		json_t *v = json_string(eq + 1);
		if (!key || !v) {
			cli_usage_error(cmd, "'%s' is not valid UTF-8", args[i]);
			free(key);
			json_decref(v);
			json_decref(props);
			return NULL;
		}
		json_object_set_new(props, key, v);
		free(key);
	}
	return props;
}

/* Dump `obj` (stolen) and run a patch of app/sid with it. */
static int patch_with(sky_cache *c, const cli_globals *g, const char *app,
		      const char *sid, json_t *obj)
{
	size_t len;
	char *text = sky__json_dumps(obj, NULL);
	json_decref(obj);
	if (!text) {
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	len = strlen(text);
	int rc = sky_session_patch(c, app, sid, text, len);
	free(text);
	return rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
}

/* ---- session ---- */

static int session_create(int argc, char **argv, const cli_globals *g)
{
	if (argc < 4)
		return cli_usage_error("session", "create needs APP NAME");
	const char *app = argv[2];
	json_t *body = json_object();
	json_t *name = json_string(argv[3]);
	if (!body || !name) {
		json_decref(body);
		json_decref(name);
		return cli_usage_error("session", "NAME is not valid UTF-8");
	}
	json_object_set_new(body, "name", name);
	json_t *props = NULL;
	for (int i = 4; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc) {
			json_decref(body);
			json_decref(props);
			return cli_usage_error("session", "%s needs a value", a);
		}
		if (!strcmp(a, "--description")) {
			json_t *d = json_string(argv[++i]);
			if (!d) {
				json_decref(body);
				json_decref(props);
				return cli_usage_error("session", "the description "
						       "is not valid UTF-8");
			}
			json_object_set_new(body, "description", d);
		} else if (!strcmp(a, "--prop")) {
			json_t *p = parse_props("session", &argv[++i], 1);
			if (!p) {
				json_decref(body);
				json_decref(props);
				return EXIT_USAGE;
			}
			if (!props)
				props = json_object();
			json_object_update(props, p);
			json_decref(p);
		} else if (!strcmp(a, "--app-version")) {
			json_object_set_new(body, "version",
					    json_string(argv[++i]));
		} else {
			json_decref(body);
			json_decref(props);
			return cli_usage_error("session", "unknown argument '%s'",
					       a);
		}
	}
	if (props)
		json_object_set_new(body, "properties", props);
	char *text = sky__json_dumps(body, NULL);
	json_decref(body);
	sky_cache *c = text ? cli_open(g, 0) : NULL;
	if (!c) {
		free(text);
		return EXIT_USAGE;
	}
	char *sid = NULL;
	int rc = sky_session_create(c, app, text, strlen(text), &sid);
	free(text);
	rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
	sky_free(sid);
	sky_cache_close(c);
	return rc;
}

static int run_session(int argc, char **argv, const cli_globals *g)
{
	if (argc < 2)
		return cli_usage_error("session", "expected create, close, "
				       "rename, describe or patch");
	const char *sub = argv[1];
	if (!strcmp(sub, "create"))
		return session_create(argc, argv, g);
	int want = !strcmp(sub, "close") ? 4 : 5;
	if (strcmp(sub, "close") && strcmp(sub, "rename") &&
	    strcmp(sub, "describe") && strcmp(sub, "patch"))
		return cli_usage_error("session", "unknown subcommand '%s'",
				       sub);
	if (argc != want)
		return cli_usage_error("session", "%s expects APP SID%s", sub,
				       !strcmp(sub, "close")	? ""
				       : !strcmp(sub, "patch") ? " JSON"
				       : !strcmp(sub, "rename") ? " NAME"
								: " TEXT");
	const char *app = argv[2], *sid = argv[3];
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	int rc;
	if (!strcmp(sub, "patch")) {
		rc = sky_session_patch(c, app, sid, argv[4], strlen(argv[4]));
		rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
	} else if (!strcmp(sub, "close")) {
		rc = sky_session_close(c, app, sid);
		rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
	} else {
		json_t *v = json_string(argv[4]);
		if (!v) {
			sky_cache_close(c);
			return cli_usage_error("session", "the text is not "
					       "valid UTF-8");
		}
		rc = patch_with(c, g, app, sid,
				json_pack("{s:o}",
					  !strcmp(sub, "rename") ? "name"
								 : "description",
					  v));
	}
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_session = {
	"session", "create, close, rename, describe or patch a session",
	"usage: skysync session create APP NAME [--description D] [--prop K=V]...\n"
	"                              [--app-version V]\n"
	"       skysync session close APP SID\n"
	"       skysync session rename APP SID NAME\n"
	"       skysync session describe APP SID TEXT\n"
	"       skysync session patch APP SID JSON\n"
	"\n"
	"Queue a write in the outbox: it is on disk when the command returns,\n"
	"shows in every read at once, and `skysync sync` delivers it. Prints\n"
	"the session as the cache now shows it. `create` prints the new session\n"
	"with a local sessionId (\"local-...\"), which keeps working after the\n"
	"server gave the session its own id. `patch` takes a JSON object with\n"
	"any of name, description (null removes it), properties (the whole\n"
	"dictionary) and status (only \"closed\").\n"
	"\n"
	"Exit 2 when the application or session is not in the cache, 3 when\n"
	"the input is rejected (nothing is queued then).\n",
	run_session,
};

/* ---- props ---- */

static int run_props(int argc, char **argv, const cli_globals *g)
{
	if (argc < 4 || strcmp(argv[1], "set"))
		return cli_usage_error("props", "expected set APP SID K=V...");
	json_t *props = parse_props("props", &argv[4], argc - 4);
	if (!props)
		return EXIT_USAGE;
	sky_cache *c = cli_open(g, 0);
	if (!c) {
		json_decref(props);
		return EXIT_USAGE;
	}
	int rc = patch_with(c, g, argv[2], argv[3],
			    json_pack("{s:o}", "properties", props));
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_props = {
	"props", "replace a session's properties",
	"usage: skysync props set APP SID [KEY=VALUE]...\n"
	"\n"
	"Queue a write that replaces the whole property dictionary of the\n"
	"session with the pairs given (none: no properties). Prints the\n"
	"session as the cache now shows it.\n",
	run_props,
};

/* ---- data patch ---- */

static int run_data_patch(int argc, char **argv, const cli_globals *g)
{
	if (argc != 5 || strcmp(argv[1], "patch"))
		return cli_usage_error("data", "expected patch APP SID JSON");
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	int rc = sky_data_patch(c, argv[2], argv[3], argv[4], strlen(argv[4]));
	char *json;
	if (rc == 0 && (rc = sky_data_get(c, argv[2], argv[3], &json, NULL)) == 0) {
		cli_print_object(g, json);
		sky_free(json);
	}
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_data_patch = {
	"data patch", "merge-patch a session's data",
	"usage: skysync data patch APP SID JSON\n"
	"\n"
	"Queue an RFC 7396 merge patch of the session's data (JSON must be an\n"
	"object: keys absent stay, objects merge, null deletes, arrays and\n"
	"scalars replace). Prints the session data as the cache now shows it.\n",
	run_data_patch,
};

/* ---- participant add, event send ---- */

static int run_participant(int argc, char **argv, const cli_globals *g)
{
	int group = argc == 6 && !strcmp(argv[5], "--group");
	if ((argc != 5 && !group) || strcmp(argv[1], "add"))
		return cli_usage_error("participant",
				       "expected add APP SID ID [--group]");
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	int rc = sky_participant_add(c, argv[2], argv[3], argv[4], group);
	rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, argv[2], argv[3]);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_participant = {
	"participant", "add a participant to a session",
	"usage: skysync participant add APP SID ID [--group]\n"
	"\n"
	"Queue adding user ID (or group ID with --group) to the session's\n"
	"participants. Prints the session as the cache now shows it.\n",
	run_participant,
};

static int run_event(int argc, char **argv, const cli_globals *g)
{
	if (argc != 5 || strcmp(argv[1], "send"))
		return cli_usage_error("event", "expected send APP SID JSON");
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	int rc = sky_event_send(c, argv[2], argv[3], argv[4], strlen(argv[4]));
	rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, argv[2], argv[3]);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_event = {
	"event", "send a custom session event",
	"usage: skysync event send APP SID JSON\n"
	"\n"
	"Queue a custom session event whose data is the JSON object given. It\n"
	"changes nothing in the cache until the server's session_event_created\n"
	"comes back. Prints the session.\n",
	run_event,
};

/* ---- outbox ---- */

typedef struct {
	const cli_globals *g;
	cli_table *table; /* --format table: rows collected here */
} list_out;

static int print_entry(const sky_outbox_entry *e, void *payload)
{
	list_out *out = payload;
	const cli_globals *g = out->g;
	json_t *o = json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:i}", "id",
			      (json_int_t)e->id, "op", sky_write_op_name(e->op),
			      "state", sky_outbox_state_name(e->state),
			      "applicationId", e->app_id, "sessionId",
			      e->session_id, "attempts", (json_int_t)e->attempts,
			      "status", e->http_status);
	if (!o)
		return -1;
	char when[32];
	time_t secs = (time_t)(e->queued_us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_set_new(o, "queuedAt", json_string(when));
	if (e->local_id)
		json_object_set_new(o, "localId", json_string(e->local_id));
	json_t *body = sky__json_loads(e->body, 0, NULL);
	json_object_set_new(o, "body", body ? body : json_string(e->body));
	if (e->answer && *e->answer)
		json_object_set_new(o, "answer", json_string(e->answer));
	char *text = sky__json_dumps(o, NULL);
	json_decref(o);
	if (!text)
		return -1;
	if (out->table)
		cli_table_add_json(out->table, text);
	else
		cli_print_json_line(g, text);
	free(text);
	return 0;
}

static int run_outbox(int argc, char **argv, const cli_globals *g)
{
	const char *sub = argc > 1 ? argv[1] : "list";
	int list = !strcmp(sub, "list");
	if (list ? argc > 2 : argc != 3)
		return cli_usage_error("outbox", "expected list, retry ID or "
				       "drop ID");
	uint64_t id = 0;
	if (!list) {
		char *end;
		unsigned long long v = strtoull(argv[2], &end, 10);
		if (*end || !*argv[2] || argv[2][0] == '-')
			return cli_usage_error("outbox", "'%s' is not an entry id",
					       argv[2]);
		id = v;
		if (strcmp(sub, "retry") && strcmp(sub, "drop"))
			return cli_usage_error("outbox", "unknown subcommand "
					       "'%s'", sub);
	}
	sky_cache *c = cli_open(g, list);
	if (!c)
		return EXIT_USAGE;
	int rc;
	static const char *const columns[] = {
	    "id",	"op",	  "state",  "sessionId", "attempts",
	    "status", "queuedAt", "answer", NULL};
	list_out out = {g, NULL};
	if (list && g->format == FORMAT_TABLE && !(out.table = cli_table_new(columns))) {
		sky_cache_close(c);
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	if (list)
		rc = sky_outbox_list(c, print_entry, &out);
	else if (!strcmp(sub, "retry"))
		rc = sky_outbox_retry(c, id);
	else
		rc = sky_outbox_drop(c, id);
	if (out.table) {
		if (rc == 0)
			cli_table_print(out.table, g, stdout);
		cli_table_free(out.table);
	}
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_outbox = {
	"outbox", "list, retry or drop queued writes",
	"usage: skysync outbox [list]\n"
	"       skysync outbox retry ID\n"
	"       skysync outbox drop ID\n"
	"\n"
	"`list` prints one JSON line per queued write, oldest first, and\n"
	"nothing when the outbox is empty: id, op, state (pending, in flight,\n"
	"in doubt, rejected), applicationId, sessionId (localId for a session\n"
	"created offline), attempts, status and answer (the server's, for a\n"
	"rejected write), queuedAt and body. `retry` sends a rejected or\n"
	"in-doubt write again; `drop` removes a write that is not in flight\n"
	"and undoes its effect on the cache.\n",
	run_outbox,
};
