/*
 * cmd_apply.c - `skysync apply [FILE|-]`: apply NDJSON events.
 *
 * Events are read one per line and applied in batches (one write
 * transaction per batch, for speed). A rejected line is reported as
 * "line N: reason" on stderr and changes nothing; the good lines still
 * apply. A blank line is rejected too: NDJSON has one JSON text per line,
 * and a blank one usually means a broken producer. Input with no events at
 * all is rejected as a whole, so a wrong file name or an empty pipe is
 * not mistaken for success.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "skysync_mirror.h"

#define BATCH_EVENTS 1024
#define BATCH_BYTES ((size_t)16 << 20)

typedef struct {
	sky_mirror_event_item items[BATCH_EVENTS];
	char *lines[BATCH_EVENTS];
	unsigned long lineno[BATCH_EVENTS];
	size_t n, bytes;
	unsigned long counts[5];
} batch;

static int only_space(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return 0;
	return 1;
}

static int flush(sky_cache *c, batch *b)
{
	int rc = 0;
	if (b->n &&
	    (rc = sky_mirror_event_apply_batch(c, b->items, b->n)) == 0) {
		for (size_t i = 0; i < b->n; i++) {
			b->counts[b->items[i].outcome]++;
			if (b->items[i].outcome == SKY_MIRROR_REJECTED)
				fprintf(stderr, "line %lu: %s\n", b->lineno[i],
					b->items[i].error ? b->items[i].error
							  : "rejected");
			sky_free(b->items[i].error);
		}
	}
	for (size_t i = 0; i < b->n; i++)
		free(b->lines[i]);
	b->n = 0;
	b->bytes = 0;
	return rc;
}

static int run_apply(int argc, char **argv, const cli_globals *g)
{
	const char *path = argc > 1 ? argv[1] : "-";
	if (argc > 2)
		return cli_usage_error("apply", "expected at most one FILE");
	FILE *in = stdin;
	if (strcmp(path, "-") != 0 && !(in = fopen(path, "rb"))) {
		fprintf(stderr, "skysync apply: cannot read %s: %s\n", path,
			strerror(errno));
		return EXIT_NOTFOUND;
	}
	sky_cache *c = cli_open(g, 0);
	if (!c) {
		if (in != stdin)
			fclose(in);
		return EXIT_USAGE;
	}
	batch *b = calloc(1, sizeof(*b));
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	unsigned long lineno = 0, blank = 0;
	int rc = 0;
	while (b && (len = getline(&line, &cap, in)) >= 0) {
		lineno++;
		size_t n = (size_t)len;
		if (n && line[n - 1] == '\n')
			n--;
		if (n && line[n - 1] == '\r')
			n--;
		if (only_space(line, n)) {
			fprintf(stderr,
				"line %lu: empty line, expected one JSON "
				"event object\n",
				lineno);
			blank++;
			continue;
		}
		char *copy = malloc(n + 1);
		if (!copy) {
			rc = -1;
			break;
		}
		memcpy(copy, line, n);
		copy[n] = '\0';
		b->lines[b->n] = copy;
		b->lineno[b->n] = lineno;
		b->items[b->n].json = copy;
		b->items[b->n].len = n;
		b->n++;
		b->bytes += n;
		if ((b->n == BATCH_EVENTS || b->bytes >= BATCH_BYTES) &&
		    (rc = flush(c, b)) < 0)
			break;
	}
	int read_error = in && ferror(in);
	if (rc == 0 && b)
		rc = flush(c, b);
	free(line);
	if (in != stdin)
		fclose(in);
	int exit_code = EXIT_OK;
	if (!b || rc < 0) {
		exit_code = cli_fail("apply");
		if (exit_code != EXIT_NOTFOUND)
			exit_code = EXIT_USAGE;
	} else if (read_error) {
		fprintf(stderr, "skysync apply: error reading %s\n", path);
		exit_code = EXIT_USAGE;
	} else {
		b->counts[SKY_MIRROR_REJECTED] += blank;
		if (lineno == 0) {
			fprintf(stderr, "skysync apply: %s holds no events\n",
				strcmp(path, "-") ? path : "the input");
			b->counts[SKY_MIRROR_REJECTED]++;
		}
		char summary[160];
		snprintf(summary, sizeof(summary),
			 "{\"applied\":%lu,\"duplicate\":%lu,\"stale\":%lu,"
			 "\"deferred\":%lu,\"rejected\":%lu}",
			 b->counts[SKY_MIRROR_APPLIED],
			 b->counts[SKY_MIRROR_DUPLICATE],
			 b->counts[SKY_MIRROR_STALE],
			 b->counts[SKY_MIRROR_DEFERRED],
			 b->counts[SKY_MIRROR_REJECTED]);
		cli_print_object(g, summary);
		if (b->counts[SKY_MIRROR_REJECTED])
			exit_code = EXIT_REJECTED;
	}
	free(b);
	sky_cache_close(c);
	return exit_code;
}

const cli_command cli_cmd_apply = {
    "apply",
    "apply NDJSON events from a file or stdin",
    "usage: skysync apply [FILE|-]\n"
    "\n"
    "Apply server events (DESIGN.md §3), one JSON object per line, from FILE\n"
    "or standard input. Each rejected line is reported as `line N: reason`\n"
    "on stderr and changes nothing; the others are applied. Duplicates (an\n"
    "eventId seen before) and stale events (older than the cached state)\n"
    "are skipped; events for sessions not cached yet wait for them. A blank\n"
    "line is rejected, and so is input with no events at all.\n"
    "Prints a summary object (counts of applied, duplicate, stale, deferred\n"
    "and rejected events); exit 3 if any line was rejected, 2 if FILE\n"
    "cannot be read.\n",
    run_apply,
};
