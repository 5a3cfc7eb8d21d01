/*
 * cmd_salvage.c - `skysync salvage DEST`: copy what can still be read out
 * of a damaged cache (--db) into a new cache at DEST (sky_cache_salvage).
 * Prints one JSON object with what was saved on stdout and one line per
 * place that could not be read on stderr; never writes the damaged files.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"

static void print_lost(const char *line, void *payload)
{
	(void)payload;
	fprintf(stderr, "skysync: salvage: %s\n", line);
}

static int run_salvage(int argc, char **argv, const cli_globals *g)
{
	if (argc != 2)
		return cli_usage_error("salvage", "expected DEST");
	sky_salvage_report r = SKY_SALVAGE_REPORT_INIT;
	if (sky_cache_salvage(g->db, argv[1], print_lost, NULL, &r) < 0)
		return cli_fail("salvage");
	json_t *o =
	    json_pack("{s:s,s:s,s:I,s:I,s:I,s:I}", "from", g->db, "to", argv[1],
		      "entries", (json_int_t)r.entries, "outbox",
		      (json_int_t)r.outbox, "sessions", (json_int_t)r.sessions,
		      "unreadable", (json_int_t)r.damaged_ranges);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (!text) {
		fprintf(stderr, "skysync: out of memory\n");
		return EXIT_USAGE;
	}
	cli_print_object(g, text);
	free(text);
	fprintf(stderr,
		"skysync: salvaged %llu queued writes and %llu sessions into "
		"%s (%llu places could not be read); %s is unchanged: run "
		"`skysync --db %s sync ...` to deliver them and refresh the "
		"mirror\n",
		(unsigned long long)r.outbox, (unsigned long long)r.sessions,
		argv[1], (unsigned long long)r.damaged_ranges, g->db, argv[1]);
	return EXIT_OK;
}

const cli_command cli_cmd_salvage = {
    "salvage",
    "copy what a damaged cache still holds into a new cache",
    "usage: skysync salvage DEST\n"
    "\n"
    "Copy every entry of the cache (--db) that can still be read, each\n"
    "checked against its checksum, into a new cache in DEST (which must not\n"
    "hold one): the queued writes of the outbox and what delivering them\n"
    "needs (server copies, aliases, session records and data), the rest of\n"
    "the mirror where readable, with the indexes rebuilt. Pages that cannot\n"
    "be read are skipped and named on stderr, one line each. The damaged\n"
    "files are opened read-only and never changed. Prints what was saved as\n"
    "one JSON object: entries, outbox, sessions, unreadable (places that\n"
    "could not be read). Then `skysync --db DEST sync ...` delivers the\n"
    "saved writes and brings the mirror up to date.\n",
    run_salvage,
};
