/*
 * lookup_query.c - a first libskysync program: open a cache, read one session
 * and its session data, then run a property query with a limit.
 *
 *   lookup_query CACHE_DIR APP SESSION_ID [PREDICATE...]
 *   lookup_query ~/.cache/skysync inspections s-1001 site=Plant-7
 *
 * It prints "session: JSON", "data: JSON", one "row: JSON" per query result
 * (at most LIMIT of them) and then "next: CURSOR" when more rows remain, or
 * "end" when they do not. Errors go to stderr as one line; the exit status
 * is 0 on success, 2 when the cache or the session is not there, 1 otherwise.
 * Build: cc lookup_query.c $(pkg-config --cflags --libs skysync)
 */
#include <skysync.h>
#include <stdio.h>

#define LIMIT 2 /* rows per page; a real program would page with the cursor */

/* Print why the last libskysync call failed. sky_error_last() is per thread and
 * is never NULL; its message is valid until our next libskysync call. */
static int fail(const char *what)
{
	const sky_error *err = sky_error_last();
	fprintf(stderr, "lookup_query: %s: %s\n", what, err->message);
	return err->code == SKY_ENOTFOUND ? 2 : 1;
}

/* Called once per query result, in (createdAt, sessionId) order. `json` is
 * borrowed: it lives only during this call, so copy what you keep. */
static int print_row(const char *json, size_t len, unsigned flags,
		     void *payload)
{
	int *rows = payload;
	(*rows)++;
	printf("row: %.*s%s\n", (int)len, json,
	       (flags & SKY_RESULT_PENDING) ? " (pending)" : "");
	return 0; /* non-zero would stop the run and be returned by it */
}

int main(int argc, char **argv)
{
	sky_cache_options opts = SKY_CACHE_OPTIONS_INIT;
	sky_cache *cache = NULL;
	sky_query *query = NULL;
	char *json = NULL;
	int rows = 0, status = 1;

	if (argc < 4) {
		fprintf(stderr, "usage: %s DIR APP SESSION [PRED...]\n",
			argv[0]);
		return 1;
	}
	/* We only read, so open read-only: the directory must exist already. */
	opts.flags = SKY_CACHE_READONLY;
	if (sky_cache_open(&cache, argv[1], &opts) < 0)
		return fail(argv[1]);

	/* One session, as JSON text. The string is ours: free it with sky_free.
	 */
	if (sky_session_get(cache, argv[2], argv[3], &json, NULL) < 0) {
		status = fail("session");
		goto cleanup;
	}
	printf("session: %s\n", json);
	sky_free(json);
	/* Its session data: one JSON object, ours as well. */
	if (sky_data_get(cache, argv[2], argv[3], &json, NULL) < 0) {
		status = fail("data");
		goto cleanup;
	}
	printf("data: %s\n", json);
	sky_free(json);

	/* A query over the application: every argument after the session id is
	 * a predicate such as site=Plant-7, priority=low|high or
	 * status!=closed. A bad predicate gives SKY_EINVAL and a message naming
	 * it. */
	if (sky_query_new(&query, cache, argv[2], (const char *const *)argv + 4,
			  (size_t)(argc - 4)) < 0) {
		status = fail("query");
		goto cleanup;
	}
	sky_query_set_limit(query, LIMIT);
	if (sky_query_run(query, print_row, &rows) < 0) {
		status = fail("query");
		goto cleanup;
	}
	/* The cursor is borrowed from the query: valid until the next run or
	 * sky_query_free(). Pass it to sky_query_set_cursor() for the next
	 * page. */
	const char *next = sky_query_next_cursor(query);
	if (next)
		printf("next: %s\n", next);
	else
		printf("end\n");
	status = 0;

cleanup: /* in reverse order of setup; both free functions accept NULL */
	sky_query_free(query);
	sky_cache_close(cache);
	return status;
}
