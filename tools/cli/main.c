/*
 * main.c - the skysync command line: global options (--db, --format),
 * the table of subcommands, and dispatch. Global options may stand before
 * or after the subcommand; everything else is passed to the subcommand.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const cli_command *const commands[] = {
	&cli_cmd_apply, &cli_cmd_get,   &cli_cmd_data,   &cli_cmd_apps,
	&cli_cmd_roles, &cli_cmd_stats, &cli_cmd_check,  &cli_cmd_backup,
	&cli_cmd_events, &cli_cmd_query, &cli_cmd_sync,
	&cli_cmd_session, &cli_cmd_props, &cli_cmd_data_patch,
	&cli_cmd_participant, &cli_cmd_event, &cli_cmd_outbox,
	&cli_cmd_salvage,
	&cli_cmd_protocol,
	&cli_cmd_app, &cli_cmd_export, &cli_cmd_import,
	&cli_cmd_watch,
	NULL,
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: skysync [--db DIR] [--format json|table|prometheus] COMMAND [ARGS]\n"
		"\n"
		"A local mirror of a Skylight realm: apply events, read sessions\n"
		"and their data offline, queue writes offline and deliver them.\n"
		"\n"
		"Commands:\n");
	for (const cli_command *const *c = commands; *c; c++)
		fprintf(out, "  %-12s %s\n", (*c)->name, (*c)->summary);
	fprintf(out,
		"\n"
		"Global options:\n"
		"  --db DIR          the cache directory (default $SKYSYNC_DB,\n"
		"                    else $XDG_CACHE_HOME/skysync, else ~/.cache/skysync)\n"
		"  --format FORMAT   json (default: one JSON object per line), table,\n"
		"                    or prometheus (stats only)\n"
		"  --version         print the version\n"
		"  -h, --help        this help; `skysync COMMAND --help` for a command\n"
		"\n"
		"Exit codes: 0 ok, 1 usage or other error, 2 not found, 3 input\n"
		"rejected, 4 network or server failure, 5 the cache file is damaged\n"
		"(every command then refuses; `skysync salvage DEST` saves its queued\n"
		"writes).\n");
}

static char *default_db(void)
{
	const char *env = getenv("SKYSYNC_DB");
	char *path;
	if (env && *env)
		return strdup(env);
	const char *xdg = getenv("XDG_CACHE_HOME");
	if (xdg && *xdg) {
		if (asprintf(&path, "%s/skysync", xdg) < 0)
			return NULL;
		return path;
	}
	const char *home = getenv("HOME");
	if (asprintf(&path, "%s/.cache/skysync", home ? home : ".") < 0)
		return NULL;
	return path;
}

int main(int argc, char **argv)
{
	cli_globals g = {NULL, FORMAT_JSON, 0};
	char *db_default = NULL;
	char **rest = calloc((size_t)argc + 1, sizeof(char *));
	int nrest = 0, rc;
	if (!rest)
		return EXIT_USAGE;

	/* Pull the global options out wherever they stand (until "--"). */
	int passthrough = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (passthrough) {
			rest[nrest++] = argv[i];
		} else if (!strcmp(a, "--")) {
			passthrough = 1;
			rest[nrest++] = argv[i];
		} else if (!strcmp(a, "--db") || !strncmp(a, "--db=", 5)) {
			const char *v = a[4] == '=' ? a + 5 : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || !*v) {
				fprintf(stderr, "skysync: --db needs a directory\n");
				rc = EXIT_USAGE;
				goto done;
			}
			g.db = v;
		} else if (!strcmp(a, "--format") || !strncmp(a, "--format=", 9)) {
			const char *v = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
			if (v && !strcmp(v, "json"))
				g.format = FORMAT_JSON;
			else if (v && !strcmp(v, "table"))
				g.format = FORMAT_TABLE;
			else if (v && !strcmp(v, "prometheus"))
				g.format = FORMAT_PROMETHEUS;
			else {
				fprintf(stderr, "skysync: --format must be json, table "
						"or prometheus\n");
				rc = EXIT_USAGE;
				goto done;
			}
		} else if (!strcmp(a, "--version") && nrest == 0) {
			printf("skysync %s\n", sky_version());
			rc = EXIT_OK;
			goto done;
		} else {
			rest[nrest++] = argv[i];
		}
	}
	if (nrest == 0) {
		usage(stderr);
		rc = EXIT_USAGE;
		goto done;
	}
	if (!strcmp(rest[0], "--help") || !strcmp(rest[0], "-h") ||
	    !strcmp(rest[0], "help")) {
		usage(stdout);
		rc = EXIT_OK;
		goto done;
	}
	if (!g.db) {
		if (!(db_default = default_db())) {
			fprintf(stderr, "skysync: out of memory\n");
			rc = EXIT_USAGE;
			goto done;
		}
		g.db = db_default;
	}
	const char *no_color = getenv("NO_COLOR");
	g.color = isatty(STDOUT_FILENO) && !(no_color && *no_color);

	/* `data patch APP SID JSON` writes; `data APP SID` reads (an
	 * application may be called "patch": that read has two arguments). */
	const char *name = rest[0];
	if (!strcmp(name, "data") && nrest >= 2 && !strcmp(rest[1], "patch") &&
	    (nrest != 3 || !strcmp(rest[2], "--help") || !strcmp(rest[2], "-h")))
		name = "data patch";
	for (const cli_command *const *c = commands; *c; c++) {
		if (strcmp((*c)->name, name) == 0) {
			if (cli_wants_help(nrest, rest, (*c)->usage)) {
				rc = EXIT_OK;
				goto done;
			}
			rc = (*c)->run(nrest, rest, &g);
			goto done;
		}
	}
	fprintf(stderr, "skysync: unknown command '%s' (see `skysync --help`)\n",
		rest[0]);
	rc = EXIT_USAGE;
done:
	fflush(stdout);
	if (ferror(stdout) && rc == EXIT_OK) {
		fprintf(stderr, "skysync: error writing the output\n");
		rc = EXIT_USAGE;
	}
	free(db_default);
	free(rest);
	return rc;
}
