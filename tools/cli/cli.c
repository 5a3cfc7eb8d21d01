/*
 * cli.c - shared plumbing of the skysync commands: opening the cache,
 * mapping library errors to exit codes and one-line messages, and printing
 * JSON lines or aligned tables. Colours are used only on a terminal and
 * never when NO_COLOR is set.
 */
#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

sky_cache *cli_open(const cli_globals *g, int readonly)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	sky_cache *c = NULL;
	if (readonly)
		o.flags |= SKY_CACHE_READONLY;
	if (sky_cache_open(&c, g->db, &o) < 0) {
		const sky_error *e = sky_error_last();
		if (readonly && e->code == SKY_ENOTFOUND)
			fprintf(stderr,
				"skysync: no cache at %s yet: run `skysync sync` "
				"or `skysync apply` first, or pass --db DIR\n",
				g->db);
		else
			fprintf(stderr, "skysync: cannot open the cache at %s: %s\n",
				g->db, e->message);
		return NULL;
	}
	return c;
}

int cli_fail(const char *context)
{
	const sky_error *e = sky_error_last();
	if (context)
		fprintf(stderr, "skysync: %s: %s\n", context, e->message);
	else
		fprintf(stderr, "skysync: %s\n", e->message);
	switch (e->code) {
	case SKY_ENOTFOUND: return EXIT_NOTFOUND;
	case SKY_EINVAL:
	case SKY_ELIMIT: return EXIT_REJECTED;
	case SKY_ENETWORK: return EXIT_NETWORK;
	default: return EXIT_USAGE;
	}
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "skysync %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see `skysync %s --help`)\n", cmd);
	return EXIT_USAGE;
}

int cli_wants_help(int argc, char **argv, const char *usage)
{
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--"))
			break;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			fputs(usage, stdout);
			return 1;
		}
	}
	return 0;
}

void cli_print_json_line(const cli_globals *g, const char *json)
{
	(void)g;
	fputs(json, stdout);
	fputc('\n', stdout);
}

/* ---- tables ---- */

#define MAX_CELL 48

struct cli_table {
	const char *const *columns;
	size_t ncols;
	char **cells; /* rows * ncols */
	size_t rows, cap;
};

cli_table *cli_table_new(const char *const *columns)
{
	cli_table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->columns = columns;
	while (columns[t->ncols])
		t->ncols++;
	return t;
}

/* A cell's text: strings bare, objects as k=v pairs, others as JSON. */
static char *cell_text(json_t *v)
{
	if (!v || json_is_null(v))
		return strdup("");
	if (json_is_string(v))
		return strdup(json_string_value(v));
	if (json_is_object(v)) {
		size_t cap = 256, len = 0;
		char *out = malloc(cap);
		const char *k;
		json_t *x;
		out[0] = '\0';
		json_object_foreach(v, k, x) {
			const char *s = json_is_string(x) ? json_string_value(x) : "?";
			size_t need = len + strlen(k) + strlen(s) + 3;
			if (need >= cap) {
				cap = need * 2;
				out = realloc(out, cap);
			}
			len += (size_t)sprintf(out + len, "%s%s=%s", len ? " " : "",
					       k, s);
		}
		return out;
	}
	return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
}

void cli_table_add_json(cli_table *t, const char *json)
{
	json_t *obj = json_loads(json, 0, NULL);
	if (t->rows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->rows * t->ncols + i] =
			cell_text(json_object_get(obj, t->columns[i]));
	t->rows++;
	json_decref(obj);
}

/* Display width of UTF-8 text (code points; good enough for tables). */
static size_t width(const char *s)
{
	size_t w = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

/* Truncate to MAX_CELL code points with an ellipsis, in place. */
static void truncate_cell(char *s)
{
	size_t w = 0;
	for (char *p = s; *p; p++) {
		if (((unsigned char)*p & 0xc0) != 0x80 && ++w == MAX_CELL) {
			strcpy(p, "\xe2\x80\xa6"); /* U+2026 */
			return;
		}
	}
}

void cli_table_print(cli_table *t, const cli_globals *g, FILE *out)
{
	size_t *w = calloc(t->ncols, sizeof(size_t));
	for (size_t i = 0; i < t->ncols; i++)
		w[i] = width(t->columns[i]);
	for (size_t r = 0; r < t->rows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			char *cell = t->cells[r * t->ncols + i];
			for (char *p = cell; *p; p++)
				if (*p == '\n' || *p == '\t')
					*p = ' ';
			truncate_cell(cell);
			size_t cw = width(cell);
			if (cw > w[i])
				w[i] = cw;
		}
	const char *bold = g->color ? "\033[1m" : "", *reset = g->color ? "\033[0m" : "";
	for (size_t i = 0; i < t->ncols; i++)
		fprintf(out, "%s%s%s%*s", bold, t->columns[i], reset,
			i + 1 < t->ncols ? (int)(w[i] - width(t->columns[i]) + 2) : 0,
			"");
	fputc('\n', out);
	for (size_t r = 0; r < t->rows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *cell = t->cells[r * t->ncols + i];
			fprintf(out, "%s%*s", cell,
				i + 1 < t->ncols ? (int)(w[i] - width(cell) + 2) : 0,
				"");
		}
		fputc('\n', out);
	}
	free(w);
}

void cli_table_free(cli_table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->rows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
