/*
 * cmd_write.c - the write commands of DESIGN.md §7: session create, close,
 * rename, describe and patch; props set; data patch; participant add;
 * event send; and `outbox` to see and manage queued writes.
 *
 * A write goes to the cache's outbox (libsync's sky_session_create and
 * friends): it is on disk when the command returns, shows in every read
 * at once, and a `skysync sync` delivers it. Each write command prints
 * the affected session (the local view) as one JSON object, except `data
 * patch`, which prints the session's data after the merge (the local
 * view's data: what the user just changed); `session create` prints the
 * new session with its local sessionId.
 */
#include "config.h"

#include <inttypes.h>
#include <stdint.h>
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

static int out_of_memory(void)
{
	fprintf(stderr, "skysync: out of memory\n");
	return EXIT_USAGE;
}

/*
 * Add KEY=VALUE arguments (split at the first '=', so a value may hold
 * '=') to `props` as strings. Every argument is checked before the
 * command goes on: valid UTF-8, a non-empty key, lengths within the
 * library's limits, no key twice (the dictionary is replaced whole, so a
 * repeated key would silently lose a value). Returns EXIT_OK or the exit
 * code of the refusal, printed naming the argument.
 */
static int parse_props(const char *cmd, char **args, int n, json_t *props)
{
	for (int i = 0; i < n; i++) {
		char shown[160];
		const char *eq = strchr(args[i], '=');
		cli_quote(args[i], shown, sizeof(shown));
		if (!cli_utf8_valid(args[i]))
			return cli_input_error(cmd,
					       "property '%s' is not valid "
					       "UTF-8",
					       shown);
		if (!eq)
			return cli_input_error(cmd,
					       "property '%s' is not "
					       "KEY=VALUE",
					       shown);
		size_t klen = (size_t)(eq - args[i]);
		if (klen == 0)
			return cli_input_error(cmd,
					       "property '%s' has an empty "
					       "name",
					       shown);
		if (klen > SKY_MAX_PROPERTY_KEY_BYTES)
			return cli_input_error(cmd,
					       "property '%s': name longer "
					       "than %u bytes",
					       shown,
					       SKY_MAX_PROPERTY_KEY_BYTES);
		if (strlen(eq + 1) > SKY_MAX_PROPERTY_VALUE_BYTES)
			return cli_input_error(cmd,
					       "property '%s': value longer "
					       "than %u bytes",
					       shown,
					       SKY_MAX_PROPERTY_VALUE_BYTES);
		char *key = strndup(args[i], klen);
		if (!key)
			return out_of_memory();
		if (json_object_get(props, key)) {
			free(key);
			return cli_input_error(cmd,
					       "property '%s': the name is "
					       "given twice",
					       shown);
		}
		/* The text was checked above: a failure here is memory. */
		int rc = json_object_set_new(props, key, json_string(eq + 1));
		free(key);
		if (rc < 0)
			return out_of_memory();
	}
	return EXIT_OK;
}

/* Dump `obj` (stolen) and run a patch of app/sid with it. */
static int patch_with(sky_cache *c, const cli_globals *g, const char *app,
		      const char *sid, json_t *obj)
{
	size_t len;
	char *text = sky__json_dumps(obj, NULL);
	json_decref(obj);
	if (!text)
		return out_of_memory();
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
	int rc = cli_check_utf8_args("session create", argc, argv, 2);
	if (rc != EXIT_OK)
		return rc;
	json_t *body = json_object(), *props = json_object();
	if (!body || !props ||
	    json_object_set_new(body, "name", json_string(argv[3])) < 0) {
		rc = out_of_memory();
		goto done;
	}
	for (int i = 4; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--description") && strcmp(a, "--prop") &&
		    strcmp(a, "--app-version")) {
			rc = cli_usage_error("session", "unknown argument '%s'",
					     a);
			goto done;
		}
		if (i + 1 >= argc) {
			rc = cli_usage_error("session", "%s needs a value", a);
			goto done;
		}
		const char *v = argv[++i];
		if (!strcmp(a, "--description")) {
			if (json_object_set_new(body, "description",
						json_string(v)) < 0) {
				rc = out_of_memory();
				goto done;
			}
		} else if (!strcmp(a, "--prop")) {
			if ((rc = parse_props("session create", &argv[i], 1,
					      props)) != EXIT_OK)
				goto done;
		} else {
			uint64_t version;
			char shown[160];
			if ((rc = cli_parse_u64("session create",
						"--app-version", v,
						&version)) != EXIT_OK)
				goto done;
			if (version > INT64_MAX) {
				rc = cli_input_error(
				    "session create",
				    "--app-version '%s' is too "
				    "large",
				    cli_quote(v, shown, sizeof(shown)));
				goto done;
			}
			if (json_object_set_new(
				body, "version",
				json_integer((json_int_t)version)) < 0) {
				rc = out_of_memory();
				goto done;
			}
		}
	}
	if (json_object_size(props) > 0) {
		rc = json_object_set(body, "properties", props);
		if (rc < 0) {
			rc = out_of_memory();
			goto done;
		}
	}
	char *text = sky__json_dumps(body, NULL);
	if (!text) {
		rc = out_of_memory();
		goto done;
	}
	sky_cache *c = cli_open(g, 0);
	if (!c) {
		free(text);
		rc = EXIT_USAGE;
		goto done;
	}
	char *sid = NULL;
	rc = sky_session_create(c, app, text, strlen(text), &sid);
	free(text);
	rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
	sky_free(sid);
	sky_cache_close(c);
done:
	json_decref(props);
	json_decref(body);
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
				       : !strcmp(sub, "patch")	? " JSON"
				       : !strcmp(sub, "rename") ? " NAME"
								: " TEXT");
	const char *app = argv[2], *sid = argv[3];
	int rc = cli_check_utf8_args("session", argc, argv, 2);
	if (rc != EXIT_OK)
		return rc;
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	if (!strcmp(sub, "patch")) {
		rc = sky_session_patch(c, app, sid, argv[4], strlen(argv[4]));
		rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
	} else if (!strcmp(sub, "close")) {
		rc = sky_session_close(c, app, sid);
		rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, app, sid);
	} else {
		json_t *v = json_string(argv[4]); /* UTF-8 checked above */
		rc = patch_with(
		    c, g, app, sid,
		    json_pack("{s:o}",
			      !strcmp(sub, "rename") ? "name" : "description",
			      v));
	}
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_session = {
    "session",
    "create, close, rename, describe or patch a session",
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
	int rc = cli_check_utf8_args("props", argc, argv, 2);
	if (rc != EXIT_OK)
		return rc;
	json_t *props = json_object();
	if (!props)
		return out_of_memory();
	if ((rc = parse_props("props", &argv[4], argc - 4, props)) != EXIT_OK) {
		json_decref(props);
		return rc;
	}
	sky_cache *c = cli_open(g, 0);
	if (!c) {
		json_decref(props);
		return EXIT_USAGE;
	}
	rc = patch_with(c, g, argv[2], argv[3],
			json_pack("{s:o}", "properties", props));
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_props = {
    "props",
    "replace a session's properties",
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
	int rc = cli_check_utf8_args("data patch", argc, argv, 2);
	if (rc != EXIT_OK)
		return rc;
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	rc = sky_data_patch(c, argv[2], argv[3], argv[4], strlen(argv[4]));
	char *json;
	if (rc == 0 &&
	    (rc = sky_data_get(c, argv[2], argv[3], &json, NULL)) == 0) {
		cli_print_object(g, json);
		sky_free(json);
	}
	rc = rc < 0 ? cli_fail(NULL) : EXIT_OK;
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_data_patch = {
    "data patch",
    "merge-patch a session's data",
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
	int typed = argc == 7 && !strcmp(argv[5], "--type");
	if ((argc != 5 && !group && !typed) || strcmp(argv[1], "add"))
		return cli_usage_error("participant",
				       "expected add APP SID ID "
				       "[--group | --type user|group]");
	int rc = cli_check_utf8_args("participant", argc, argv, 2);
	if (rc != EXIT_OK)
		return rc;
	if (typed) {
		char shown[160];
		if (strcmp(argv[6], "user") && strcmp(argv[6], "group"))
			return cli_input_error(
			    "participant",
			    "--type '%s': "
			    "must be user or group",
			    cli_quote(argv[6], shown, sizeof(shown)));
		group = !strcmp(argv[6], "group");
	}
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	rc = sky_participant_add(c, argv[2], argv[3], argv[4], group);
	rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, argv[2], argv[3]);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_participant = {
    "participant",
    "add a participant to a session",
    "usage: skysync participant add APP SID ID [--group | --type user|group]\n"
    "\n"
    "Queue adding user ID (or group ID with --group or --type group) to\n"
    "the session's participants. Prints the session as the cache now\n"
    "shows it.\n",
    run_participant,
};

static int run_event(int argc, char **argv, const cli_globals *g)
{
	if (argc != 5 || strcmp(argv[1], "send"))
		return cli_usage_error("event", "expected send APP SID JSON");
	int rc = cli_check_utf8_args("event", argc, argv, 2);
	if (rc != EXIT_OK)
		return rc;
	sky_cache *c = cli_open(g, 0);
	if (!c)
		return EXIT_USAGE;
	rc = sky_session_event_send(c, argv[2], argv[3], argv[4],
				    strlen(argv[4]));
	rc = rc < 0 ? cli_fail(NULL) : print_session(c, g, argv[2], argv[3]);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_event = {
    "event",
    "send a custom session event",
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
	json_t *o =
	    json_pack("{s:I, s:s, s:s, s:s, s:s, s:I, s:i}", "id",
		      (json_int_t)e->id, "op", sky_write_op_name(e->op),
		      "state", sky_outbox_state_name(e->state), "applicationId",
		      e->app_id, "sessionId", e->session_id, "attempts",
		      (json_int_t)e->attempts, "status", e->http_status);
	if (!o)
		return -1;
	char when[32];
	time_t secs = (time_t)(e->queued_us / 1000000);
	struct tm tm;
	gmtime_r(&secs, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *body = sky__json_loads(e->body, 0, NULL);
	/* A line with a field missing would misreport the entry: none. */
	if (json_object_set_new(o, "queuedAt", json_string(when)) < 0 ||
	    (e->local_id &&
	     json_object_set_new(o, "localId", json_string(e->local_id)) < 0) ||
	    json_object_set_new(o, "body", body ? body : json_string(e->body)) <
		0 ||
	    (e->answer && *e->answer &&
	     json_object_set_new(o, "answer", json_string(e->answer)) < 0)) {
		json_decref(o);
		return -1;
	}
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
		if (strcmp(sub, "retry") && strcmp(sub, "drop"))
			return cli_usage_error("outbox",
					       "unknown subcommand "
					       "'%s'",
					       sub);
		int rc = cli_parse_u64("outbox", "entry id", argv[2], &id);
		if (rc != EXIT_OK)
			return rc;
	}
	sky_cache *c = cli_open(g, list);
	if (!c)
		return EXIT_USAGE;
	int rc;
	static const char *const columns[] = {"id",	   "op",       "state",
					      "sessionId", "attempts", "status",
					      "queuedAt",  "answer",   NULL};
	list_out out = {g, NULL};
	if (list && g->format == FORMAT_TABLE &&
	    !(out.table = cli_table_new(columns))) {
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
    "outbox",
    "list, retry or drop queued writes",
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
    "and undoes its effect on the cache (a write whose request is on the\n"
    "wire is refused, exit 3: it could still land).\n",
    run_outbox,
};
