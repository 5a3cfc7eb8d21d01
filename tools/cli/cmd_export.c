/*
 * cmd_export.c - `skysync export [APP [PRED...]]` and `skysync import
 * FILE|-`: the mirror as NDJSON and back.
 *
 * The format (skysync-export/1), one JSON object per line:
 *   {"format":"skysync-export/1"}                          first, once
 *   {"type":"application","application":{...},"roles":[...]}
 *   {"type":"session","session":{...},"data":{...}}
 * An application line comes before the sessions of that application (and
 * only for an application that is cached: sessions applied from events
 * may belong to one that is not); sessions follow in query order
 * (createdAt, sessionId). The session is the local view as `get` prints
 * it, the data as `data` prints it.
 *
 * What it keeps true:
 *  - export streams: every session of an application is read through one
 *    reader snapshot and one query cursor, and printed before the next is
 *    read, so memory does not grow with the number of sessions (only the
 *    list of application ids is held);
 *  - export's output is a function of the cache's content: importing it
 *    into an empty cache and exporting again gives the same bytes (the
 *    texts go through the library's one JSON codec both ways);
 *  - import restores server state (sky_mirror_app_put, sky_mirror_role_put,
 *    sky_mirror_session_put_batch: a mirror, not offline writes) and only into
 *    an empty cache, so nothing it writes is mixed with other state.
 * Not exported: the outbox (writes not delivered), custom session events,
 * the event log, stale marks and the sync state.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cache_types.h"
#include "cli.h"
#include "skysync_mirror.h"
#include "error.h"
#include "json.h"

#define EXPORT_FORMAT "skysync-export/1"
/* Sessions per write transaction of import. */
#define IMPORT_BATCH 512

/* ---- export ---- */

typedef struct {
	char **ids;
	size_t n, cap;
} id_list;

static int ids_add(id_list *l, const char *id)
{
	if (l->n && !strcmp(l->ids[l->n - 1], id))
		return 0; /* sessions come grouped by application */
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		char **ids = realloc(l->ids, cap * sizeof(*ids));
		if (!ids)
			return -1;
		l->ids = ids;
		l->cap = cap;
	}
	if (!(l->ids[l->n] = strdup(id)))
		return -1;
	l->n++;
	return 0;
}

static void ids_free(id_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->ids[i]);
	free(l->ids);
}

/* The applicationId of an application or session text into the list. */
static int collect_app_id(const char *json, size_t len, void *payload)
{
	json_t *o = sky__json_loadb(json, len, 0, NULL);
	const char *id = json_string_value(json_object_get(o, "applicationId"));
	int rc = id ? ids_add(payload, id) : 0;
	json_decref(o);
	return rc < 0 ? -1 : 0;
}

static int cmp_ids(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every application id the cache knows: the cached applications and
 * those of the sessions, sorted, each once. */
static int all_app_ids(sky_cache *c, id_list *l)
{
	int rc = sky_app_list(c, collect_app_id, l);
	if (rc == 0)
		rc = sky_session_list(c, NULL, collect_app_id, l);
	if (rc != 0)
		return rc < 0 ? rc : -1;
	qsort(l->ids, l->n, sizeof(*l->ids), cmp_ids);
	size_t w = 0;
	for (size_t i = 0; i < l->n; i++) {
		if (w && !strcmp(l->ids[w - 1], l->ids[i]))
			free(l->ids[i]);
		else
			l->ids[w++] = l->ids[i];
	}
	l->n = w;
	return 0;
}

typedef struct {
	FILE *out;
	size_t n;
} role_ctx;

static int print_role(const char *json, size_t len, void *payload)
{
	role_ctx *r = payload;
	if (r->n++)
		fputc(',', r->out);
	fwrite(json, 1, len, r->out);
	return 0;
}

/* The application line of `app`, when it is cached. */
static int print_app(sky_cache *c, const char *app, FILE *out)
{
	char *json = NULL;
	int rc = sky_app_get(c, app, &json, NULL);
	if (rc == SKY_ENOTFOUND)
		return 0;
	if (rc < 0)
		return rc;
	fputs("{\"type\":\"application\",\"application\":", out);
	fputs(json, out);
	fputs(",\"roles\":[", out);
	sky_free(json);
	role_ctx r = {out, 0};
	if ((rc = sky_role_list(c, app, print_role, &r)) != 0)
		return rc < 0 ? rc : -1;
	fputs("]}\n", out);
	return 0;
}

typedef struct {
	sky_reader *reader;
	const char *app;
	FILE *out;
	uint64_t sessions;
} export_ctx;

static int print_session(const char *json, size_t len, unsigned flags,
			 void *payload)
{
	export_ctx *x = payload;
	(void)flags;
	json_t *o = sky__json_loadb(json, len, 0, NULL);
	const char *sid = json_string_value(json_object_get(o, "sessionId"));
	char *data = NULL;
	/* An owned copy: the walk keeps one session's data at a time. */
	int rc =
	    sid ? sky_reader_data_copy(x->reader, x->app, sid, &data, NULL)
		: sky__error_set(SKY_ERROR, SKY_ERRSRC_JSON, 0,
				 "a session of %s without a sessionId", x->app);
	json_decref(o);
	if (rc < 0)
		return rc;
	fputs("{\"type\":\"session\",\"session\":", x->out);
	fwrite(json, 1, len, x->out);
	fputs(",\"data\":", x->out);
	fputs(data, x->out);
	fputs("}\n", x->out);
	sky_free(data);
	x->sessions++;
	return ferror(x->out) ? sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, errno,
					       "writing the export")
			      : 0;
}

static int export_app(sky_cache *c, sky_reader *reader, const char *app,
		      char **preds, size_t n_preds, export_ctx *x)
{
	sky_query *q = NULL;
	int rc = sky_query_new(&q, c, app, (const char *const *)preds, n_preds);
	if (rc < 0)
		return rc;
	if ((rc = print_app(c, app, stdout)) == 0) {
		x->reader = reader;
		x->app = app;
		rc = sky_reader_query(reader, q, print_session, x);
	}
	sky_query_free(q);
	return rc;
}

static int run_export(int argc, char **argv, const cli_globals *g)
{
	if (g->format != FORMAT_JSON)
		return cli_usage_error("export",
				       "prints NDJSON only (no --format)");
	int rc = cli_check_utf8_args("export", argc, argv, 1);
	if (rc != EXIT_OK)
		return rc;
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	id_list apps = {NULL, 0, 0};
	sky_reader *reader = NULL;
	export_ctx x = {NULL, NULL, stdout, 0};
	if (argc >= 2)
		rc = ids_add(&apps, argv[1]) < 0
			 ? sky__error_set(SKY_ERROR, SKY_ERRSRC_NOMEM, 0,
					  "out of memory")
			 : 0;
	else
		rc = all_app_ids(c, &apps);
	if (rc < 0 || (rc = sky_reader_begin(&reader, c)) < 0)
		goto fail;
	printf("{\"format\":\"" EXPORT_FORMAT "\"}\n");
	for (size_t i = 0; i < apps.n; i++) {
		rc = export_app(c, reader, apps.ids[i], argv + 2,
				argc > 2 ? (size_t)argc - 2 : 0, &x);
		if (rc < 0)
			goto fail;
	}
	rc = EXIT_OK;
	goto done;
fail:
	rc = cli_fail("export");
done:
	sky_reader_end(reader);
	ids_free(&apps);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_export = {
    "export",
    "write sessions and their data as NDJSON",
    "usage: skysync export [APP [PRED...]]\n"
    "\n"
    "Write the cache (or the sessions of application APP that satisfy the\n"
    "predicates, as for `query`) to stdout as NDJSON, format\n"
    "skysync-export/1: a first line {\"format\":\"skysync-export/1\"}; for "
    "each\n"
    "cached application, a line {\"type\":\"application\",\"application\":\n"
    "{...},\"roles\":[...]} before its sessions; for each session, a line\n"
    "{\"type\":\"session\",\"session\":{...},\"data\":{...}} (the session as\n"
    "`get` prints it, its data as `data` prints it). The sessions of one\n"
    "application are read in one snapshot, streaming (memory does not grow\n"
    "with their number). Not exported: writes not yet delivered (the\n"
    "outbox; the sessions show them, as `get` does), custom session events,\n"
    "the event log, stale marks and the sync state. `skysync import`\n"
    "reads it back.\n",
    run_export,
};

/* ---- import ---- */

typedef struct {
	sky_mirror_session_item items[IMPORT_BATCH];
	unsigned long lineno[IMPORT_BATCH];
	size_t n;
	unsigned long applications, roles, sessions, rejected;
} import_batch;

static int import_flush(sky_cache *c, import_batch *b)
{
	int rc = 0;
	if (b->n &&
	    (rc = sky_mirror_session_put_batch(c, b->items, b->n)) == 0) {
		for (size_t i = 0; i < b->n; i++) {
			if (b->items[i].result == 0) {
				b->sessions++;
				continue;
			}
			b->rejected++;
			fprintf(stderr, "line %lu: %s\n", b->lineno[i],
				b->items[i].error ? b->items[i].error
						  : "rejected");
			sky_free(b->items[i].error);
		}
	}
	for (size_t i = 0; i < b->n; i++) {
		free((char *)b->items[i].session_json);
		free((char *)b->items[i].data_json);
	}
	b->n = 0;
	return rc;
}

/* The time a session's state is known at: its modifiedAt, else its
 * createdAt (0 when neither parses). */
static int64_t session_as_of(const json_t *s)
{
	int64_t us = 0;
	const char *t = json_string_value(json_object_get(s, "modifiedAt"));
	if (!t || sky__parse_time(t, &us) < 0) {
		t = json_string_value(json_object_get(s, "createdAt"));
		if (!t || sky__parse_time(t, &us) < 0)
			us = 0;
	}
	return us;
}

/* One line of the export other than the first. 0, or a message into
 * `why` (the line is rejected), or -1 (storage: stop). */
static int import_line(sky_cache *c, import_batch *b, json_t *o,
		       unsigned long lineno, char *why, size_t why_size)
{
	const char *type = json_string_value(json_object_get(o, "type"));
	if (type && !strcmp(type, "session")) {
		json_t *s = json_object_get(o, "session");
		json_t *d = json_object_get(o, "data");
		if (!json_is_object(s) || (d && !json_is_object(d))) {
			snprintf(why, why_size,
				 "a session line needs a "
				 "\"session\" object and a "
				 "\"data\" object");
			return 1;
		}
		sky_mirror_session_item *it = &b->items[b->n];
		memset(it, 0, sizeof(*it));
		if (!(it->session_json = sky__json_dumps(s, &it->len)) ||
		    (d &&
		     !(it->data_json = sky__json_dumps(d, &it->data_len)))) {
			free((char *)it->session_json);
			return sky__error_set(SKY_ERROR, SKY_ERRSRC_NOMEM, 0,
					      "out of memory");
		}
		it->as_of_us = session_as_of(s);
		b->lineno[b->n++] = lineno;
		return b->n == IMPORT_BATCH ? import_flush(c, b) : 0;
	}
	if (!type || strcmp(type, "application")) {
		snprintf(why, why_size,
			 "\"type\" must be \"application\" or "
			 "\"session\"");
		return 1;
	}
	json_t *a = json_object_get(o, "application");
	json_t *roles = json_object_get(o, "roles");
	const char *app =
	    json_string_value(json_object_get(a, "applicationId"));
	if (!json_is_object(a) || !app || (roles && !json_is_array(roles))) {
		snprintf(why, why_size,
			 "an application line needs an "
			 "\"application\" object with an "
			 "applicationId and a \"roles\" array");
		return 1;
	}
	/* The sessions read so far land first: lines apply in order. */
	int rc = import_flush(c, b);
	if (rc < 0)
		return rc;
	size_t len;
	char *text = sky__json_dumps(a, &len);
	if (!text)
		return sky__error_set(SKY_ERROR, SKY_ERRSRC_NOMEM, 0,
				      "out of memory");
	rc = sky_mirror_app_put(c, text, len);
	free(text);
	if (rc == 0)
		b->applications++;
	size_t i;
	json_t *role;
	json_array_foreach(roles, i, role) {
		if (rc != 0)
			break;
		if (!(text = sky__json_dumps(role, &len)))
			return sky__error_set(SKY_ERROR, SKY_ERRSRC_NOMEM, 0,
					      "out of memory");
		rc = sky_mirror_role_put(c, app, text, len);
		free(text);
		if (rc == 0)
			b->roles++;
	}
	if (rc == SKY_EINVAL || rc == SKY_ELIMIT) {
		snprintf(why, why_size, "%s", sky_error_last()->message);
		return 1;
	}
	return rc;
}

/* Refuse a cache that holds anything: import is a restore. */
static int check_empty(sky_cache *c, const cli_globals *g)
{
	sky_stats st = SKY_STATS_INIT;
	sky_outbox_counts oc = SKY_OUTBOX_COUNTS_INIT;
	if (sky_cache_stats(c, &st) < 0 || sky_outbox_counts_get(c, &oc) < 0)
		return cli_fail("import");
	uint64_t queued = oc.pending + oc.in_flight + oc.in_doubt + oc.rejected;
	if (st.applications || st.roles || st.sessions || queued) {
		fprintf(stderr,
			"skysync: import: %s is not empty (%llu applications, "
			"%llu sessions, %llu queued writes); import restores "
			"into an empty cache only: use a new --db directory\n",
			g->db, (unsigned long long)st.applications,
			(unsigned long long)st.sessions,
			(unsigned long long)queued);
		return EXIT_REJECTED;
	}
	return EXIT_OK;
}

static int run_import(int argc, char **argv, const cli_globals *g)
{
	if (argc != 2)
		return cli_usage_error("import", "expected FILE or -");
	if (g->format != FORMAT_JSON)
		return cli_usage_error("import",
				       "prints JSON only (no --format)");
	FILE *in = strcmp(argv[1], "-") ? fopen(argv[1], "r") : stdin;
	if (!in) {
		fprintf(stderr, "skysync: import: %s: %s\n", argv[1],
			strerror(errno));
		return EXIT_USAGE;
	}
	int rc;
	import_batch *b = calloc(1, sizeof(*b));
	sky_cache *c = NULL;
	char *line = NULL;
	size_t cap = 0;
	if (!b) {
		fprintf(stderr, "skysync: out of memory\n");
		rc = EXIT_USAGE;
		goto done;
	}
	if (!(c = cli_open(g, 0))) {
		rc = EXIT_USAGE;
		goto done;
	}
	if ((rc = check_empty(c, g)) != EXIT_OK)
		goto done;
	unsigned long lineno = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, in)) >= 0) {
		char why[512] = "";
		lineno++;
		json_error_t jerr;
		json_t *o = sky__json_loadb(line, (size_t)n, 0, &jerr);
		if (!json_is_object(o)) {
			snprintf(why, sizeof(why), "not a JSON object%s%s",
				 o ? "" : ": ", o ? "" : jerr.text);
		} else if (lineno == 1) {
			const char *f =
			    json_string_value(json_object_get(o, "format"));
			if (!f || strcmp(f, EXPORT_FORMAT)) {
				json_decref(o);
				fprintf(stderr,
					"skysync: import: line 1: not a "
					"skysync export (expected "
					"{\"format\":\"" EXPORT_FORMAT
					"\"})\n");
				rc = EXIT_REJECTED;
				goto done;
			}
		} else if ((rc = import_line(c, b, o, lineno, why,
					     sizeof(why))) < 0) {
			json_decref(o);
			rc = cli_fail("import");
			goto done;
		}
		json_decref(o);
		if (*why) {
			b->rejected++;
			fprintf(stderr, "line %lu: %s\n", lineno, why);
		}
	}
	if (ferror(in)) {
		fprintf(stderr, "skysync: import: reading %s: %s\n", argv[1],
			strerror(errno));
		rc = EXIT_USAGE;
		goto done;
	}
	if (lineno == 0) {
		fprintf(stderr,
			"skysync: import: %s is empty (not a skysync "
			"export)\n",
			argv[1]);
		rc = EXIT_REJECTED;
		goto done;
	}
	if (import_flush(c, b) < 0) {
		rc = cli_fail("import");
		goto done;
	}
	printf("{\"applications\":%lu,\"roles\":%lu,\"sessions\":%lu,"
	       "\"rejected\":%lu}\n",
	       b->applications, b->roles, b->sessions, b->rejected);
	rc = b->rejected ? EXIT_REJECTED : EXIT_OK;
done:
	/* After a failure the sessions read are not stored: just freed. */
	for (size_t i = 0; b && i < b->n; i++) {
		free((char *)b->items[i].session_json);
		free((char *)b->items[i].data_json);
	}
	free(b);
	free(line);
	sky_cache_close(c);
	if (in != stdin)
		fclose(in);
	return rc;
}

const cli_command cli_cmd_import = {
    "import",
    "restore an export into an empty cache",
    "usage: skysync import FILE|-\n"
    "\n"
    "Read an export (`skysync export`, format skysync-export/1) and store\n"
    "its applications, roles and sessions with their data as server state\n"
    "(a restore of the mirror, not offline writes: nothing is queued), in\n"
    "transactions of 512 sessions. The cache must be empty: one that holds\n"
    "applications, sessions or queued writes is refused (exit 3). A line\n"
    "that is refused is reported as \"line N: reason\" and the others are\n"
    "stored; the exit status is then 3. Prints the counts stored as one\n"
    "JSON line.\n",
    run_import,
};
