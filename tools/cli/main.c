/*
 * main.c - the skysync command line: global options (--db, --format),
 * the table of subcommands, and dispatch. Global options may stand before
 * or after the subcommand; everything else is passed to the subcommand.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const cli_command *const commands[] = {
    &cli_cmd_apply,
    &cli_cmd_get,
    &cli_cmd_data,
    &cli_cmd_apps,
    &cli_cmd_roles,
    &cli_cmd_stats,
    &cli_cmd_check,
    &cli_cmd_backup,
    &cli_cmd_events,
    &cli_cmd_query,
    &cli_cmd_sync,
    &cli_cmd_session,
    &cli_cmd_props,
    &cli_cmd_data_patch,
    &cli_cmd_participant,
    &cli_cmd_event,
    &cli_cmd_outbox,
    &cli_cmd_salvage,
    &cli_cmd_protocol,
    &cli_cmd_health,
    &cli_cmd_app,
    &cli_cmd_export,
    &cli_cmd_import,
    &cli_cmd_watch,
    NULL,
};

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: skysync [--db DIR] [--format json|table|prometheus] "
	    "COMMAND [ARGS]\n"
	    "\n"
	    "A local mirror of a Skylight realm: apply events, read sessions\n"
	    "and their data offline, queue writes offline and deliver them.\n"
	    "\n"
	    "Commands:\n");
	for (const cli_command *const *c = commands; *c; c++)
		fprintf(out, "  %-12s %s\n", (*c)->name, (*c)->summary);
	fprintf(
	    out,
	    "\n"
	    "Global options:\n"
	    "  --db DIR          the cache directory (default $SKYSYNC_DB, "
	    "else\n"
	    "                    $XDG_STATE_HOME/skysync, else "
	    "~/.local/state/skysync)\n"
	    "  --format FORMAT   json (default: one JSON object per line), "
	    "table,\n"
	    "                    or prometheus (stats only)\n"
	    "  -V, --version     print the version\n"
	    "  -h, --help        this help; `skysync help COMMAND` (or\n"
	    "                    `skysync COMMAND --help`) for a command\n"
	    "  --                ends the options: what follows is arguments\n"
	    "\n"
	    "Exit codes: 0 ok, 1 usage or other error, 2 not found, 3 input\n"
	    "rejected, 4 network or server failure, 5 the cache file is "
	    "damaged\n"
	    "(every command then refuses; `skysync salvage DEST` saves its "
	    "queued\n"
	    "writes).\n");
}

/* $XDG_<NAME>_HOME/skysync, else ~/<fallback>/skysync (NULL: no memory). */
static char *xdg_dir(const char *env, const char *fallback)
{
	const char *xdg = getenv(env), *home = getenv("HOME");
	char *path;
	int n = xdg && *xdg ? asprintf(&path, "%s/skysync", xdg)
			    : asprintf(&path, "%s/%s/skysync",
				       home && *home ? home : ".", fallback);
	return n < 0 ? NULL : path;
}

/*
 * The cache directory when --db is not given: $SKYSYNC_DB, else the XDG
 * state directory ($XDG_STATE_HOME/skysync, else ~/.local/state/skysync):
 * the outbox holds writes not yet delivered, which is state to keep, not a
 * cache to throw away. Earlier versions used $XDG_CACHE_HOME/skysync (else
 * ~/.cache/skysync); a cache found only there is used where it is, with a
 * note saying how to move it, rather than silently ignored (which would
 * hide queued writes behind a new, empty cache).
 */
static char *default_db(void)
{
	const char *env = getenv("SKYSYNC_DB");
	struct stat sb;
	if (env && *env)
		return strdup(env);
	char *state = xdg_dir("XDG_STATE_HOME", ".local/state");
	if (!state || stat(state, &sb) == 0)
		return state;
	char *old = xdg_dir("XDG_CACHE_HOME", ".cache");
	if (!old)
		goto fail;
	if (stat(old, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		/* The new place's parent may not exist yet: say to make it. */
		int parent = (int)(strrchr(state, '/') - state);
		fprintf(stderr,
			"skysync: note: using the cache at its old place %s; "
			"the default is now %s (move it: mkdir -p '%.*s' && "
			"mv '%s' '%s')\n",
			old, state, parent, state, old, state);
		free(state);
		return old;
	}
	free(old);
	return state;
fail:
	free(state);
	return NULL;
}

/* `skysync help CMD` prints what `skysync CMD --help` prints. */
static int help_command(int n, char **rest)
{
	const char *name = rest[1];
	if (!strcmp(name, "data") && n > 2 && !strcmp(rest[2], "patch"))
		name = "data patch";
	for (const cli_command *const *c = commands; *c; c++) {
		if (!strcmp((*c)->name, name)) {
			fputs((*c)->usage, stdout);
			return EXIT_OK;
		}
	}
	fprintf(stderr,
		"skysync: unknown command '%s' (see `skysync --help`)\n", name);
	return EXIT_USAGE;
}

/* Remove the first "--" from rest[0..*n). */
static void drop_dashdash(int *n, char **rest)
{
	for (int i = 1; i < *n; i++) {
		if (!strcmp(rest[i], "--")) {
			memmove(rest + i, rest + i + 1,
				(size_t)(*n - i) * sizeof(*rest));
			(*n)--;
			return;
		}
	}
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
			const char *v = a[4] == '='
					    ? a + 5
					    : (i + 1 < argc ? argv[++i] : NULL);
			if (!v || !*v) {
				fprintf(stderr,
					"skysync: --db needs a directory\n");
				rc = EXIT_USAGE;
				goto done;
			}
			g.db = v;
		} else if (!strcmp(a, "--format") ||
			   !strncmp(a, "--format=", 9)) {
			const char *v = a[8] == '='
					    ? a + 9
					    : (i + 1 < argc ? argv[++i] : NULL);
			if (v && !strcmp(v, "json"))
				g.format = FORMAT_JSON;
			else if (v && !strcmp(v, "table"))
				g.format = FORMAT_TABLE;
			else if (v && !strcmp(v, "prometheus"))
				g.format = FORMAT_PROMETHEUS;
			else {
				fprintf(stderr,
					"skysync: --format must be json, table "
					"or prometheus\n");
				rc = EXIT_USAGE;
				goto done;
			}
		} else if ((!strcmp(a, "--version") || !strcmp(a, "-V")) &&
			   nrest == 0) {
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
	if (!strcmp(rest[0], "help") && nrest > 1) {
		rc = help_command(nrest, rest);
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
	    (nrest != 3 || !strcmp(rest[2], "--help") ||
	     !strcmp(rest[2], "-h")))
		name = "data patch";
	for (const cli_command *const *c = commands; *c; c++) {
		if (strcmp((*c)->name, name) == 0) {
			if (cli_wants_help(nrest, rest, (*c)->usage)) {
				rc = EXIT_OK;
				goto done;
			}
			/* "--" ends the options: the command gets the rest as
			 * it is (so `get -- APP -sid` reads session "-sid").
			 * Commands take their arguments by position, so
			 * dropping the marker is all it takes; query alone
			 * gives it a meaning of its own (predicates follow)
			 * and keeps it. */
			if (strcmp((*c)->name, "query"))
				drop_dashdash(&nrest, rest);
			rc = (*c)->run(nrest, rest, &g);
			goto done;
		}
	}
	fprintf(stderr,
		"skysync: unknown command '%s' (see `skysync --help`)\n",
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
