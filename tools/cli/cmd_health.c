/*
 * cmd_health.c - `skysync health [--max-age SECONDS]`: one answer for a
 * container HEALTHCHECK or a monitoring check. Exit 0 when the cache was
 * synced recently and its outbox holds no dead letters; otherwise one line
 * on stdout saying why and a distinct exit code: 3 dead letters (as
 * `sync` exits for them), 4 never synced or the last sync too old (the
 * cache is behind the server, as a network failure leaves it).
 *
 * "Synced" is what the sync engine records in the cache: the wall clock of
 * the last completed snapshot, and, while a `sync --follow` is live, its
 * heartbeat (every 5 s), so a follower that stopped beating goes stale
 * even though its state still reads "live". The cache is opened read-only:
 * the check never takes the engine lock and runs beside a follower.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

/* Twice the default reconcile interval of `sync --follow` (600 s). */
#define HEALTH_DEFAULT_MAX_AGE_S 1200

static const char health_usage[] =
    "usage: skysync health [--max-age SECONDS]\n"
    "\n"
    "Exit 0 when the last successful sync of the cache is at most SECONDS\n"
    "old (default 1200, twice the reconcile interval of `sync --follow`)\n"
    "and the outbox holds no dead letters; otherwise print one line saying\n"
    "why (\"never synced\", \"last sync 3h ago\", \"2 dead letters\") and\n"
    "exit 4 (never synced, or the last sync too old) or 3 (dead letters).\n"
    "A `sync --follow` that is live counts as syncing while its heartbeat\n"
    "(every 5 s) is recent. For a container HEALTHCHECK or a monitoring\n"
    "check; the cache is opened read-only.\n";

/* "3h", "12m", "40s", "2d": the largest unit, rounded down. */
static void age_text(int64_t secs, char *buf, size_t size)
{
	if (secs >= 2 * 86400)
		snprintf(buf, size, "%lldd", (long long)(secs / 86400));
	else if (secs >= 2 * 3600)
		snprintf(buf, size, "%lldh", (long long)(secs / 3600));
	else if (secs >= 2 * 60)
		snprintf(buf, size, "%lldm", (long long)(secs / 60));
	else
		snprintf(buf, size, "%llds", (long long)secs);
}

static int run_health(int argc, char **argv, const cli_globals *g)
{
	uint64_t max_age = HEALTH_DEFAULT_MAX_AGE_S;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--max-age")) {
			if (i + 1 >= argc)
				return cli_usage_error(
				    "health", "--max-age needs a number of "
					      "seconds");
			int rc = cli_parse_u64("health", "--max-age", argv[++i],
					       &max_age);
			if (rc != EXIT_OK)
				return EXIT_USAGE;
		} else
			return cli_usage_error(
			    "health", "unknown argument '%s'", argv[i]);
	}
	/* No cache yet is the first "never synced" (a fresh container). */
	char path[4096];
	struct stat st;
	if ((size_t)snprintf(path, sizeof(path), "%s/data.mdb", g->db) <
		sizeof(path) &&
	    stat(path, &st) != 0 && errno == ENOENT) {
		printf("never synced (no cache at %s)\n", g->db);
		return EXIT_NETWORK;
	}
	sky_cache *c = cli_open(g, 1);
	if (!c)
		return EXIT_USAGE;
	sky_stats s = SKY_STATS_INIT;
	sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
	int rc = EXIT_USAGE;
	if (sky_cache_stats(c, &s) < 0 || sky_outbox_counts_get(c, &n) < 0) {
		rc = cli_fail("health");
		goto done;
	}
	struct timespec ts;
	if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
		fprintf(stderr, "skysync health: no clock: %s\n",
			strerror(errno));
		goto done;
	}
	int64_t now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	int64_t last = s.sync_last_at_us;
	/* A live follower's heartbeat counts; a failed or stopped run's
	 * last record does not (it says when it gave up). */
	if (s.sync_state == (int)SKY_ENGINE_LIVE + 1 &&
	    s.sync_updated_us > last)
		last = s.sync_updated_us;
	if (n.rejected) {
		printf("%llu dead letter%s (see `skysync outbox list`)\n",
		       (unsigned long long)n.rejected,
		       n.rejected == 1 ? "" : "s");
		rc = EXIT_REJECTED;
	} else if (s.sync_state <= 0 || last <= 0) {
		printf("never synced\n");
		rc = EXIT_NETWORK;
	} else {
		int64_t age = now_us > last ? (now_us - last) / 1000000 : 0;
		if ((uint64_t)age > max_age) {
			char a[32], m[32];
			age_text(age, a, sizeof(a));
			age_text((int64_t)(max_age > INT64_MAX / 2
					       ? INT64_MAX / 2
					       : max_age),
				 m, sizeof(m));
			printf("last sync %s ago (more than %s)\n", a, m);
			rc = EXIT_NETWORK;
		} else
			rc = EXIT_OK;
	}
	if (fflush(stdout) != 0 && rc == EXIT_OK)
		rc = EXIT_USAGE;
done:
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_health = {
    "health",
    "exit 0 when the cache was synced recently and has no dead letters",
    health_usage,
    run_health,
};
