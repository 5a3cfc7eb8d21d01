/*
 * cmd_query.c - `skysync query`: the sessions of an application that
 * satisfy predicates (DESIGN.md §6), answered offline from the cache's
 * indexes, one session per line as `get` prints it; with --explain, the
 * plan with its estimated and actual counts instead. Parsing, planning
 * and the --as visibility rule are all sky_query_* calls: this file only
 * reads arguments and prints.
 *
 * The cursor of the next page goes to stderr (stdout stays one session
 * per line) and only when there is a next page. --order/--desc pick the
 * order (sky_query_set_order); --count prints the number of sessions,
 * answered from the indexes (sky_query_count).
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

static const char usage[] =
    "usage: skysync query APP [PRED...] [--limit N] [--cursor C] "
    "[--explain]\n"
    "                     [--order createdAt|modifiedAt [--desc]] "
    "[--count]\n"
    "                     [--as USER [--groups G1,G2] | --as me]\n"
    "\n"
    "Print the sessions of application APP that satisfy every predicate,\n"
    "ordered by createdAt then sessionId (or --order), one JSON object\n"
    "per line (the\n"
    "local view, as `get` prints it; `--format table` marks sessions with\n"
    "writes not yet delivered). No predicate: every session.\n"
    "\n"
    "Predicates:\n"
    "  key=value     the field has this value\n"
    "  key=a|b|c     the field has one of these values\n"
    "  key!=value    the field is absent or has another value (also a|b)\n"
    "  key^=prefix   the field starts with prefix (also a|b)\n"
    "  key?          the field is present\n"
    "  key>=v key>v key<v key<=v   ranges: version, createdAt, modifiedAt\n"
    "Keys that are session fields: status, name, participant (any\n"
    "participant id, user or group), createdBy, modifiedBy, isDraft\n"
    "(true|false), version (an integer; = != and ranges), createdAt and\n"
    "modifiedAt (RFC 3339 times; ranges only). Any other key is a\n"
    "property, and props.KEY always names property KEY (props.status is\n"
    "the property \"status\"); a key that looks like a field name but is\n"
    "not one (created_by) is refused. A backslash makes the next\n"
    "character literal: site=A\\|B is the one value \"A|B\".\n"
    "Quote predicates for the shell: 'prio=high|urgent'.\n"
    "\n"
    "Options:\n"
    "  --limit N       print at most N sessions; when more remain, the\n"
    "                  cursor of the next page is printed to stderr\n"
    "  --cursor C      start after the page that gave cursor C\n"
    "  --explain       print the plan (steps, estimated and actual\n"
    "                  counts) instead of the sessions\n"
    "  --order F       createdAt (the default) or modifiedAt; a cursor\n"
    "                  only resumes the order it came from\n"
    "  --desc          newest first\n"
    "  --count         print the number of matching sessions (from the\n"
    "                  indexes, no record read) instead of the sessions\n"
    "  --as USER       only what USER may see under the cached roles:\n"
    "                  every session with session:read:any, those it\n"
    "                  takes part in with session:read:participant\n"
    "  --groups G,...  the groups USER belongs to (with --as); without\n"
    "                  it, a warning when the cache knows USER's groups\n"
    "  --as me         as the user the cache was last synced as, with\n"
    "                  its groups (exit 2 when the cache never synced)\n"
    "  --              the rest are predicates even if they start with --\n"
    "\n"
    "Exit 0 on success (also when nothing matches), 1 on a bad predicate\n"
    "or option.\n";

typedef struct {
	const cli_globals *g;
	cli_table *table;
} out_ctx;

static const char *const session_cols[] = {
    "sessionId", "name", "status", "createdAt", "properties", "pending", NULL};

static int print_row(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	out_ctx *o = payload;
	if (!o->table) {
		cli_print_json_line(o->g, json);
		return 0;
	}
	json_t *s = sky__json_loadb(json, len, 0, NULL);
	if (!s)
		return 0;
	char *text =
	    json_object_set_new(
		s, "pending",
		json_string(flags & SKY_RESULT_PENDING ? "yes" : "")) < 0
		? NULL
		: sky__json_dumps(s, NULL);
	json_decref(s);
	if (!text)
		return -1; /* out of memory: stop rather than drop the row */
	cli_table_add_json(o->table, text);
	free(text);
	return 0;
}

static int discard_row(const char *json, size_t len, unsigned flags,
		       void *payload)
{
	(void)json;
	(void)len;
	(void)flags;
	(void)payload;
	return 0;
}

static void print_plan(const cli_globals *g, const char *plan)
{
	if (g->format != FORMAT_TABLE) {
		cli_print_json_line(g, plan);
		return;
	}
	static const char *const cols[] = {"step",	"what",	  "using",
					   "estimated", "actual", NULL};
	json_t *p = sky__json_loads(plan, 0, NULL);
	cli_table *t = cli_table_new(cols);
	size_t i;
	json_t *step;
	json_array_foreach(json_object_get(p, "steps"), i, step) {
		char *text = sky__json_dumps(step, NULL);
		cli_table_add_json(t, text);
		free(text);
	}
	cli_table_print(t, g, stdout);
	int more = json_is_true(json_object_get(p, "more"));
	printf("rows: %lld%s\n",
	       (long long)json_integer_value(json_object_get(p, "rows")),
	       more ? " (more remain)" : "");
	cli_table_free(t);
	json_decref(p);
}

/* "--name VALUE" or "--name=VALUE": the value, or NULL if not this option. */
static const char *option_value(int argc, char **argv, int *i, const char *name,
				int *missing)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		*missing = 1;
		return NULL;
	}
	return argv[++*i];
}

/* Split "g1,g2" into a NULL-free array (the caller frees both). */
static char **split_groups(const char *list, size_t *n, char **copy)
{
	*copy = strdup(list);
	char **v = calloc(strlen(list) / 2 + 2, sizeof(char *));
	*n = 0;
	if (!*copy || !v) {
		free(v);
		return NULL;
	}
	for (char *save = NULL, *tok = strtok_r(*copy, ",", &save); tok;
	     tok = strtok_r(NULL, ",", &save))
		v[(*n)++] = tok;
	return v;
}

/* --as USER without --groups: when the cache knows USER's groups (those
 * of the user it syncs as), say that they are left out. */
static void warn_known_groups(sky_cache *c, const char *user)
{
	char *text = NULL;
	if (sky_sync_user_get(c, &text, NULL) < 0)
		return;
	json_t *j = sky__json_loads(text, 0, NULL);
	sky_free(text);
	const json_t *g = json_object_get(j, "groups");
	const char *id = json_string_value(json_object_get(j, "userId"));
	if (id && !strcmp(id, user) && json_array_size(g) > 0) {
		fprintf(stderr,
			"skysync query: warning: %s belongs to groups the "
			"cache knows of (",
			user);
		for (size_t i = 0; i < json_array_size(g); i++)
			fprintf(stderr, "%s%s", i ? "," : "",
				json_string_value(json_array_get(g, i)));
		fprintf(stderr, "), which --as without --groups leaves out; "
				"use --as me or --groups\n");
	}
	json_decref(j);
}

static int run_query(int argc, char **argv, const cli_globals *g)
{
	const char *app = NULL, *cursor = NULL, *as = NULL, *groups = NULL;
	const char *limit_text = NULL, *order = NULL;
	int explain = 0, only_preds = 0, desc = 0, count = 0, rc = EXIT_USAGE;
	/* Text that is not UTF-8 is rejected input (exit 3), not a usage
	 * error like a predicate of the wrong form: no argument of query
	 * is a file name, which could be any bytes. Checked before anything
	 * is allocated. */
	if ((rc = cli_check_utf8_args("query", argc, argv, 1)) != EXIT_OK)
		return rc;
	rc = EXIT_USAGE;
	const char **preds = calloc((size_t)argc + 1, sizeof(char *));
	size_t n_preds = 0, n_groups = 0, limit = 0;
	char **group_v = NULL, *group_copy = NULL;
	sky_cache *c = NULL;
	sky_query *q = NULL;
	out_ctx out = {g, NULL};
	if (!preds)
		return EXIT_USAGE;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v;
		int missing = 0;
		if (only_preds || strncmp(a, "--", 2) != 0) {
			if (!app)
				app = a;
			else
				preds[n_preds++] = a;
			continue;
		}
		if (!strcmp(a, "--")) {
			only_preds = 1;
		} else if (!strcmp(a, "--explain")) {
			explain = 1;
		} else if (!strcmp(a, "--desc")) {
			desc = 1;
		} else if (!strcmp(a, "--count")) {
			count = 1;
		} else if ((v = option_value(argc, argv, &i, "--order",
					     &missing))) {
			order = v;
		} else if ((v = option_value(argc, argv, &i, "--limit",
					     &missing))) {
			limit_text = v;
		} else if ((v = option_value(argc, argv, &i, "--cursor",
					     &missing))) {
			cursor = v;
		} else if ((v = option_value(argc, argv, &i, "--as",
					     &missing))) {
			as = v;
		} else if ((v = option_value(argc, argv, &i, "--groups",
					     &missing))) {
			groups = v;
		} else if (missing) {
			rc = cli_usage_error("query", "%s needs a value", a);
			goto done;
		} else {
			rc = cli_usage_error("query", "unknown option %s", a);
			goto done;
		}
	}
	if (!app) {
		rc = cli_usage_error("query", "expected APP");
		goto done;
	}
	if (groups && !as) {
		rc = cli_usage_error("query", "--groups needs --as USER");
		goto done;
	}
	if (order && strcmp(order, "createdAt") &&
	    strcmp(order, "modifiedAt")) {
		rc = cli_usage_error("query",
				     "--order is createdAt or "
				     "modifiedAt, not '%s'",
				     order);
		goto done;
	}
	if (count && (limit_text || cursor)) {
		rc = cli_usage_error("query", "--count counts every match: "
					      "no --limit or --cursor");
		goto done;
	}
	if (limit_text) {
		char *end;
		errno = 0;
		unsigned long long l = strtoull(limit_text, &end, 10);
		if (errno || *end || end == limit_text || l == 0 ||
		    limit_text[0] == '-') {
			rc = cli_usage_error("query",
					     "--limit must be a "
					     "positive integer, not "
					     "'%s'",
					     limit_text);
			goto done;
		}
		limit = (size_t)l;
	}

	if (!(c = cli_open(g, 1)))
		goto done;
	if (sky_query_new(&q, c, app, preds, n_preds) < 0) {
		/* A bad predicate is a usage error (exit 1), not rejected
		 * input (3): the message names it. */
		if (sky_error_last()->code != SKY_EINVAL) {
			rc = cli_fail("query");
			goto done;
		}
		fprintf(stderr, "skysync query: %s\n",
			sky_error_last()->message);
		goto done;
	}
	sky_query_set_limit(q, limit);
	sky_query_set_order(q,
			    order && !strcmp(order, "modifiedAt")
				? SKY_ORDER_MODIFIED_AT
				: SKY_ORDER_CREATED_AT,
			    desc);
	if (cursor && sky_query_set_cursor(q, cursor) < 0) {
		fprintf(stderr, "skysync query: %s\n",
			sky_error_last()->message);
		goto done;
	}
	if (as && !strcmp(as, "me")) {
		if (groups) {
			rc = cli_usage_error("query",
					     "--as me takes the groups from "
					     "the cache, not --groups");
			goto done;
		}
		if (sky_query_set_viewer_self(q) < 0) {
			rc = cli_fail("query");
			goto done;
		}
	} else if (as) {
		if (!groups)
			warn_known_groups(c, as);
		if (groups &&
		    !(group_v = split_groups(groups, &n_groups, &group_copy))) {
			fprintf(stderr, "skysync: out of memory\n");
			goto done;
		}
		if (sky_query_set_viewer(q, as, (const char *const *)group_v,
					 n_groups) < 0) {
			fprintf(stderr, "skysync query: %s\n",
				sky_error_last()->message);
			goto done;
		}
	}

	if (count) {
		uint64_t n;
		if (sky_query_count(q, &n) < 0) {
			rc = cli_fail("query");
			goto done;
		}
		if (explain)
			print_plan(g, sky_query_explain(q));
		else
			printf("%llu\n", (unsigned long long)n);
		rc = EXIT_OK;
		goto done;
	}
	if (g->format == FORMAT_TABLE && !explain)
		out.table = cli_table_new(session_cols);
	if (sky_query_run(q, explain ? discard_row : print_row, &out) < 0) {
		/* A cursor of another order is a usage error like a bad
		 * cursor. */
		if (sky_error_last()->code == SKY_EINVAL) {
			fprintf(stderr, "skysync query: %s\n",
				sky_error_last()->message);
			goto done;
		}
		rc = cli_fail("query");
		goto done;
	}
	if (explain) {
		print_plan(g, sky_query_explain(q));
	} else {
		if (out.table)
			cli_table_print(out.table, g, stdout);
		if (sky_query_next_cursor(q))
			fprintf(stderr, "skysync: more sessions: --cursor %s\n",
				sky_query_next_cursor(q));
	}
	rc = EXIT_OK;
done:
	cli_table_free(out.table);
	sky_query_free(q);
	sky_cache_close(c);
	free(group_v);
	free(group_copy);
	free(preds);
	return rc;
}

const cli_command cli_cmd_query = {
    "query",
    "find sessions by property or session field",
    usage,
    run_query,
};
