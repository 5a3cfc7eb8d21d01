/*
 * cmd_app.c - `skysync app APP`: one cached application, as `apps` lists
 * it, printed like the other single objects (a JSON line, or a
 * field/value table with --format table). The cache is opened read-only:
 * it never creates one and can run beside a writer. An application not
 * in the cache exits 2, as `get` does for a session.
 */
#include "config.h"

#include "cli.h"

static int run_app(int argc, char **argv, const cli_globals *g)
{
	if (argc != 2)
		return cli_usage_error("app", "expected APP");
	int rc = cli_check_utf8_args("app", argc, argv, 1);
	if (rc != EXIT_OK)
		return rc;
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	char *json = NULL;
	if (sky_app_get(c, argv[1], &json, NULL) < 0) {
		rc = cli_fail(NULL);
		goto done;
	}
	cli_print_object(g, json);
	rc = EXIT_OK;
done:
	sky_free(json);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_app = {
    "app",
    "print one cached application",
    "usage: skysync app APP\n"
    "\n"
    "Print application APP from the cache as one JSON object (as `apps`\n"
    "lists it); with --format table, one field per row. Exit 2 when the\n"
    "application is not in the cache.\n",
    run_app,
};
