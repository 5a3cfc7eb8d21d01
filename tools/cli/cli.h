/*
 * cli.h - what the skysync subcommands share: global options, the exit
 * codes of DESIGN.md §7, opening the cache, and printing results and
 * errors. Commands hold no logic of their own beyond arguments and output:
 * everything they do is a libsync call.
 */
#ifndef SKY_CLI_H
#define SKY_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "skysync.h"

/* Exit codes (DESIGN.md §7). */
enum {
	EXIT_OK = 0,
	EXIT_USAGE = 1,
	EXIT_NOTFOUND = 2,
	EXIT_REJECTED = 3,
	EXIT_NETWORK = 4,
	EXIT_DAMAGED = 5, /* the cache file or its journal is damaged */
};

typedef enum { FORMAT_JSON, FORMAT_TABLE, FORMAT_PROMETHEUS } cli_format;

/* Sets of formats a command can print, for cli_open_formats(). */
#define CLI_FORMAT_BIT(f) (1u << (f))
#define CLI_FORMATS_DEFAULT                                                    \
	(CLI_FORMAT_BIT(FORMAT_JSON) | CLI_FORMAT_BIT(FORMAT_TABLE))

typedef struct {
	const char *db;	   /* --db, else $SKYSYNC_DB, else the XDG default */
	cli_format format; /* --format */
	int color;	   /* colours allowed: a terminal and no NO_COLOR */
} cli_globals;

typedef struct {
	const char *name;
	const char *summary; /* one line for `skysync --help` */
	const char *usage;   /* the full `skysync CMD --help` text */
	int (*run)(int argc, char **argv, const cli_globals *g);
} cli_command;

/* Open the cache named by the globals; prints the error and returns NULL
 * (a damaged cache: prints the error and exits with EXIT_DAMAGED, which
 * every command would return for it).
 * It also refuses a --format the command cannot print (with exit code
 * EXIT_USAGE, as every caller returns on NULL): every command opens the
 * cache before it reads or changes anything, so this one check covers
 * them all, those written later included. cli_open allows json and table;
 * a command that prints more (stats: prometheus) names its formats. */
sky_cache *cli_open(const cli_globals *g, int readonly);
sky_cache *cli_open_formats(const cli_globals *g, int readonly,
			    unsigned formats);

/* Print "skysync: <message>" for the last library error; return the exit
 * code that fits its code (2 not found, 3 input, 4 network, 5 damaged,
 * 1 else). */
int cli_fail(const char *context);
/* Print a usage error for `cmd` and return EXIT_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* True if argv has -h/--help; then prints `usage` to stdout. */
int cli_wants_help(int argc, char **argv, const char *usage);

/* Print one JSON object (text) as a line, whatever the format: lists
 * collect their rows with cli_table_* in table mode instead. */
void cli_print_json_line(const cli_globals *g, const char *json);
/* Print one JSON object (text): a line, or in table mode a two-column
 * field/value table. */
void cli_print_object(const cli_globals *g, const char *json);

/* Table output: collect rows of JSON objects, print aligned columns. */
typedef struct cli_table cli_table;
cli_table *cli_table_new(const char *const *columns);
void cli_table_add_json(cli_table *t, const char *json);
void cli_table_print(cli_table *t, const cli_globals *g, FILE *out);
void cli_table_free(cli_table *t);

/* Argument checks (args.c). Each refusal prints one line naming the
 * argument (escaped by cli_quote) and returns EXIT_REJECTED. */
int cli_input_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* 1 when `s` is valid UTF-8 (no overlong forms or surrogates). */
int cli_utf8_valid(const char *s);
/* `arg` for a message: printable characters as they are, other bytes
 * (malformed UTF-8, controls, backslash) as \xHH, cut with "..." to fit
 * `size`. Returns buf. */
const char *cli_quote(const char *arg, char *buf, size_t size);
/* EXIT_OK when argv[first..argc) are all valid UTF-8. */
int cli_check_utf8_args(const char *cmd, int argc, char **argv, int first);
/* A whole decimal number (digits only) into *out; EXIT_OK or refused. */
int cli_parse_u64(const char *cmd, const char *what, const char *arg,
		  uint64_t *out);

/* A server or broker URL: one of `schemes` (NULL-terminated, such as
 * "https://"), a host, an optional port 1-65535; EXIT_OK or refused. */
int cli_check_url(const char *cmd, const char *what, const char *url,
		  const char *const *schemes);

extern const cli_command cli_cmd_apply, cli_cmd_get, cli_cmd_data, cli_cmd_apps,
    cli_cmd_roles, cli_cmd_stats, cli_cmd_check, cli_cmd_backup, cli_cmd_events,
    cli_cmd_query, cli_cmd_sync, cli_cmd_session, cli_cmd_props,
    cli_cmd_data_patch, cli_cmd_participant, cli_cmd_event, cli_cmd_outbox,
    cli_cmd_salvage, cli_cmd_protocol, cli_cmd_health;
extern const cli_command cli_cmd_app, cli_cmd_export, cli_cmd_import,
    cli_cmd_watch;

#endif
