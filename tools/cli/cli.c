/*
 * cli.c - shared plumbing of the skysync commands: opening the cache
 * (and refusing a --format the command cannot print), mapping library
 * errors to exit codes and one-line messages, and printing JSON lines or
 * aligned tables. Colours are used only on a terminal and never when
 * NO_COLOR is set (main.c decides, in cli_globals.color).
 *
 * Table cells hold text from the cache, which came from a server: they are
 * printed without control characters (a value must not be able to move
 * the cursor or recolour the terminal), at most MAX_CELL columns wide, and
 * padded by display width so that wide (CJK) and combining characters do
 * not break the alignment.
 */
#include "config.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "json.h"

static const char *const format_names[] = {
    [FORMAT_JSON] = "json",
    [FORMAT_TABLE] = "table",
    [FORMAT_PROMETHEUS] = "prometheus",
};

sky_cache *cli_open_formats(const cli_globals *g, int readonly,
			    unsigned formats)
{
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	sky_cache *c = NULL;
	if (!(formats & CLI_FORMAT_BIT(g->format))) {
		fprintf(stderr,
			"skysync: --format %s is not available for this "
			"command%s (see `skysync --help`)\n",
			format_names[g->format],
			g->format == FORMAT_PROMETHEUS
			    ? ": only `skysync stats` prints it"
			    : "");
		return NULL;
	}
	if (readonly)
		o.flags |= SKY_CACHE_READONLY;
	if (sky_cache_open(&c, g->db, &o) < 0) {
		const sky_error *e = sky_error_last();
		if (readonly && e->code == SKY_ENOTFOUND)
			fprintf(
			    stderr,
			    "skysync: no cache at %s yet: run `skysync sync` "
			    "or `skysync apply` first, or pass --db DIR\n",
			    g->db);
		else
			fprintf(stderr,
				"skysync: cannot open the cache at %s: %s\n",
				g->db, e->message);
		if (e->code == SKY_EDAMAGED)
			exit(EXIT_DAMAGED);
		return NULL;
	}
	return c;
}

sky_cache *cli_open(const cli_globals *g, int readonly)
{
	return cli_open_formats(g, readonly, CLI_FORMATS_DEFAULT);
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
	case SKY_EDAMAGED: return EXIT_DAMAGED;
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

void cli_print_object(const cli_globals *g, const char *json)
{
	if (g->format != FORMAT_TABLE) {
		cli_print_json_line(g, json);
		return;
	}
	static const char *const cols[] = {"field", "value", NULL};
	cli_table *t = cli_table_new(cols);
	json_t *obj = sky__json_loads(json, 0, NULL);
	const char *k;
	json_t *v;
	if (!t || !obj) {
		/* Out of memory: the JSON line still says everything. */
		cli_table_free(t);
		json_decref(obj);
		cli_print_json_line(g, json);
		return;
	}
	json_object_foreach(obj, k, v) {
		json_t *row = json_pack("{s:s,s:O}", "field", k, "value", v);
		char *text = row ? sky__json_dumps(row, NULL) : NULL;
		if (text)
			cli_table_add_json(t, text);
		free(text);
		json_decref(row);
	}
	json_decref(obj);
	cli_table_print(t, g, stdout);
	cli_table_free(t);
}

/* ---- tables ---- */

/* Widest cell, in terminal columns, ellipsis included. */
#define MAX_CELL 48

typedef struct {
	char *text;   /* as printed: cleaned and cut (display_cell) */
	size_t width; /* its display width */
} cell;

struct cli_table {
	const char *const *columns;
	size_t ncols;
	cell *cells; /* rows * ncols */
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

/* Growable text for cell_text; on allocation failure it stays NULL. */
typedef struct {
	char *s;
	size_t len, cap;
} buf;

static void buf_add(buf *b, const char *text)
{
	size_t n = strlen(text);
	if (!b->s && b->cap)
		return; /* an earlier allocation failed */
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *s = realloc(b->s, cap);
		if (!s) {
			free(b->s);
			b->s = NULL;
			b->cap = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, text, n + 1);
	b->len += n;
}

/*
 * The value of JSON string `v` as cell text: a U+0000 inside it becomes a
 * space, as every control character does in a cell, rather than ending the
 * text there.
 */
static void buf_add_string(buf *b, const json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);
	for (size_t i = 0; i < n;) {
		const char *nul = memchr(s + i, '\0', n - i);
		size_t end = nul ? (size_t)(nul - s) : n;
		char *part = strndup(s + i, end - i);
		if (!part) {
			free(b->s);
			b->s = NULL;
			b->cap = 1;
			return;
		}
		buf_add(b, part);
		free(part);
		if (nul)
			buf_add(b, " ");
		i = end + 1;
	}
}

/*
 * A cell's text (NULL: out of memory): strings bare; an object of string
 * values, such as the properties of a session, as "k=v k=v"; anything else
 * as compact JSON, so that nested data is shown as it is rather than lost.
 */
static char *cell_text(json_t *v)
{
	if (!v || json_is_null(v))
		return strdup("");
	if (sky__json_is_text(v)) {
		buf b = {NULL, 0, 0};
		buf_add(&b, "");
		buf_add_string(&b, v);
		return b.s;
	}
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		int flat = 1;
		json_object_foreach(v, k, x) {
			if (!sky__json_is_text(x))
				flat = 0;
		}
		if (flat) {
			buf b = {NULL, 0, 0};
			buf_add(&b, "");
			json_object_foreach(v, k, x) {
				if (b.len)
					buf_add(&b, " ");
				buf_add(&b, k);
				buf_add(&b, "=");
				buf_add_string(&b, x);
			}
			return b.s;
		}
	}
	return sky__json_dumps(v, NULL);
}

/* Decode one UTF-8 sequence; returns its length in bytes (at least 1, so a
 * malformed byte, which libsync never stores, still advances). */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	size_t n = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
	if (n == 0) {
		*cp = 0xfffd;
		return 1;
	}
	uint32_t c = s[0] & (0x7f >> n);
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) {
			*cp = 0xfffd;
			return i;
		}
		c = (c << 6) | (s[i] & 0x3f);
	}
	*cp = c;
	return n;
}

/* Characters a cell must not send to a terminal: C0 and C1 controls, DEL
 * (escape sequences start with them) and the bidirectional overrides and
 * isolates, which reorder the rest of the line. */
static int is_control(uint32_t c)
{
	return c < 0x20 || (c >= 0x7f && c <= 0x9f) ||
	       (c >= 0x202a && c <= 0x202e) || (c >= 0x2066 && c <= 0x2069);
}

typedef struct {
	uint32_t lo, hi;
} range;

static int in_ranges(uint32_t c, const range *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (c >= r[i].lo && c <= r[i].hi)
			return 1;
	return 0;
}

/*
 * Terminal columns of a printable character: 0 for combining marks and
 * zero-width characters, 2 for East Asian wide and fullwidth characters and
 * emoji, 1 otherwise. The main blocks of Unicode's EastAsianWidth and of
 * Markus Kuhn's wcwidth, not the whole tables: wcwidth(3) itself would need
 * a UTF-8 locale, which the output must not depend on.
 */
static size_t char_width(uint32_t c)
{
	static const range zero[] = {
	    {0x0300, 0x036f},	{0x0483, 0x0489}, {0x0591, 0x05bd},
	    {0x0610, 0x061a},	{0x064b, 0x065f}, {0x1ab0, 0x1aff},
	    {0x1dc0, 0x1dff},	{0x200b, 0x200f}, {0x20d0, 0x20ff},
	    {0xfe00, 0xfe0f},	{0xfe20, 0xfe2f}, {0xfeff, 0xfeff},
	    {0xe0100, 0xe01ef},
	};
	static const range wide[] = {
	    {0x1100, 0x115f},	{0x231a, 0x231b},   {0x2329, 0x232a},
	    {0x23e9, 0x23ec},	{0x25fd, 0x25fe},   {0x2614, 0x2615},
	    {0x2e80, 0x303e},	{0x3041, 0x33ff},   {0x3400, 0x4dbf},
	    {0x4e00, 0x9fff},	{0xa000, 0xa4cf},   {0xa960, 0xa97f},
	    {0xac00, 0xd7a3},	{0xf900, 0xfaff},   {0xfe10, 0xfe19},
	    {0xfe30, 0xfe6f},	{0xff00, 0xff60},   {0xffe0, 0xffe6},
	    {0x1f300, 0x1f64f}, {0x1f680, 0x1f6ff}, {0x1f900, 0x1f9ff},
	    {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
	};
	if (c < 0x300)
		return 1;
	if (in_ranges(c, zero, sizeof(zero) / sizeof(zero[0])))
		return 0;
	if (in_ranges(c, wide, sizeof(wide) / sizeof(wide[0])))
		return 2;
	return 1;
}

/*
 * The cell as printed, a new string (NULL: out of memory): each control
 * character becomes a space, and text wider than MAX_CELL columns is cut
 * to MAX_CELL - 1 columns plus an ellipsis. *width receives its width.
 */
static char *display_cell(const char *text, size_t *width)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t total = 0, len = strlen(text);
	uint32_t c;
	for (size_t i = 0; i < len;) {
		i += utf8_next(s + i, &c);
		total += is_control(c) ? 1 : char_width(c);
	}
	size_t limit = total > MAX_CELL ? MAX_CELL - 1 : total;
	/* A control character never grows (it becomes one byte), so the
	 * copy fits in len bytes, plus the ellipsis and the NUL. */
	char *out = malloc(len + 4), *o = out;
	size_t w = 0;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len;) {
		size_t n = utf8_next(s + i, &c);
		size_t cw = is_control(c) ? 1 : char_width(c);
		if (w + cw > limit)
			break;
		if (is_control(c)) {
			*o++ = ' ';
		} else {
			memcpy(o, s + i, n);
			o += n;
		}
		w += cw;
		i += n;
	}
	if (total > MAX_CELL) {
		memcpy(o, "\xe2\x80\xa6", 3); /* U+2026 */
		o += 3;
		w++;
	}
	*o = '\0';
	*width = w;
	return out;
}

void cli_table_add_json(cli_table *t, const char *json)
{
	if (!t)
		return;
	if (t->rows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		cell *cells = realloc(t->cells, cap * t->ncols * sizeof(cell));
		if (!cells)
			return; /* the row is lost, the table stays whole */
		t->cells = cells;
		t->cap = cap;
	}
	json_t *obj = sky__json_loads(json, 0, NULL);
	cell *row = t->cells + t->rows * t->ncols;
	for (size_t i = 0; i < t->ncols; i++) {
		char *text = cell_text(json_object_get(obj, t->columns[i]));
		row[i].width = 0;
		row[i].text = text ? display_cell(text, &row[i].width) : NULL;
		free(text);
	}
	t->rows++;
	json_decref(obj);
}

void cli_table_print(cli_table *t, const cli_globals *g, FILE *out)
{
	if (!t)
		return;
	size_t *w = calloc(t->ncols, sizeof(size_t));
	if (!w)
		return;
	for (size_t i = 0; i < t->ncols; i++)
		w[i] = strlen(t->columns[i]); /* column names are ASCII */
	for (size_t r = 0; r < t->rows; r++)
		for (size_t i = 0; i < t->ncols; i++)
			if (t->cells[r * t->ncols + i].width > w[i])
				w[i] = t->cells[r * t->ncols + i].width;
	/* Padding goes outside the colour codes, which take no columns; the
	 * last column is not padded, so lines carry no trailing blanks. */
	const char *bold = g->color ? "\033[1m" : "";
	const char *reset = g->color ? "\033[0m" : "";
	for (size_t i = 0; i < t->ncols; i++)
		fprintf(out, "%s%s%s%*s", bold, t->columns[i], reset,
			i + 1 < t->ncols
			    ? (int)(w[i] - strlen(t->columns[i]) + 2)
			    : 0,
			"");
	fputc('\n', out);
	for (size_t r = 0; r < t->rows; r++) {
		/* Nothing is padded after the last non-empty cell: empty
		 * trailing cells would only leave blanks at the end. */
		size_t last = 0;
		for (size_t i = 0; i < t->ncols; i++)
			if (t->cells[r * t->ncols + i].text &&
			    *t->cells[r * t->ncols + i].text)
				last = i;
		for (size_t i = 0; i <= last; i++) {
			const cell *c = &t->cells[r * t->ncols + i];
			fprintf(out, "%s%*s", c->text ? c->text : "",
				i < last ? (int)(w[i] - c->width + 2) : 0, "");
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
		free(t->cells[i].text);
	free(t->cells);
	free(t);
}
