/*
 * cmd_protocol.c - `skysync protocol`: print the wire layout (REST paths,
 * MQTT topics, eventType strings) as a protocol file, the built-in one or
 * a given file checked and completed, so a user can start a file of their
 * own from it. It opens no cache.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char protocol_usage[] =
    "usage: skysync protocol [--protocol FILE]\n"
    "\n"
    "Print the wire layout sync uses as a protocol file (JSON): each REST\n"
    "call's method and path, the MQTT subscription and publish topics, and\n"
    "the eventType strings (docs/PROTOCOL.md). Without --protocol: the\n"
    "built-in one, to start a file from.\n"
    "\n"
    "  --protocol FILE   check FILE and print it with the entries it leaves\n"
    "                    out filled in from the built-in table\n"
    "\n"
    "Exit 0, 1 on usage errors or an unreadable file, 3 when FILE is\n"
    "refused (the message names the entry).\n";

static int run_protocol(int argc, char **argv, const cli_globals *g)
{
	const char *file = NULL;
	(void)g;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--protocol") && i + 1 < argc &&
		    *argv[i + 1])
			file = argv[++i];
		else if (!strcmp(argv[i], "--protocol"))
			return cli_usage_error("protocol",
					       "--protocol needs a value");
		else
			return cli_usage_error(
			    "protocol", "unknown argument '%s'", argv[i]);
	}
	char *text = NULL;
	if (sky_protocol_dump(file, &text) < 0)
		return cli_fail("protocol");
	int rc =
	    printf("%s\n", text) < 0 || fflush(stdout) ? EXIT_USAGE : EXIT_OK;
	sky_free(text);
	return rc;
}

const cli_command cli_cmd_protocol = {
    "protocol",
    "print the wire layout (built in, or a --protocol file checked)",
    protocol_usage,
    run_protocol,
};
