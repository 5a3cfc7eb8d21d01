/*
 * cmd_sync.c - `skysync sync`: bring the cache up to date with a Skylight
 * server (one-shot), or keep it current (--follow) until SIGINT/SIGTERM.
 *
 * All the work is libsync's sync engine, attached to a libevent loop of
 * this command so that signals can stop it cleanly. This file only reads
 * arguments and the password, draws progress, prints change lines
 * (--print-changes) and maps the outcome to an exit code (0 done, 1
 * usage, 3 dead letters, 4 network or server failure: reads failed or
 * writes left undelivered; the message names the part that failed).
 *
 * With --follow it is a service: its log lines are stamped (follow_log.c),
 * SIGHUP reads the password file again and reopens --log, and systemd's
 * notify socket hears READY/WATCHDOG/STOPPING (notify.c).
 *
 * The password never comes from the command line (argv is visible to
 * every user of the machine): it is read from --password-file or from
 * $SKYSYNC_PASSWORD, held in memory only, and wiped after use.
 */
#include "config.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "cli.h"
#include "follow_log.h"
#include "notify.h"
#include "sync_wait.h"
#include "json.h"

typedef struct {
	struct event_base *base;
	sky_engine *engine;
	int quiet, verbose, print_changes;
	int tty;	      /* progress bar on a terminal */
	int bar_shown;	      /* a bar line is on screen */
	int64_t last_line_us; /* plain progress lines: last one */
	int output_failed;
	int signalled; /* stopped by SIGINT/SIGTERM */
	int follow;    /* log lines stamped (follow_log.c), SIGHUP, notify */
	int ready;     /* READY=1 sent */
	const char *password_file; /* read again on SIGHUP */
} sync_ui;

static int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void clear_bar(sync_ui *ui)
{
	if (ui->bar_shown) {
		fputs("\r\033[K", stderr);
		ui->bar_shown = 0;
	}
}

static void on_log(sky_log_level level, const char *line, void *payload)
{
	sync_ui *ui = payload;
	if (level == SKY_LOG_DEBUG && !ui->verbose)
		return;
	if (level == SKY_LOG_INFO && ui->quiet)
		return;
	clear_bar(ui);
	if (ui->follow) {
		follow_log_line(level, line);
		return;
	}
	fprintf(stderr, "skysync: %s%s\n",
		level == SKY_LOG_ERROR	? "error: "
		: level == SKY_LOG_WARN ? "warning: "
					: "",
		line);
}

static void on_progress(const sky_sync_progress *p, void *payload)
{
	sync_ui *ui = payload;
	if (ui->quiet)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	double secs =
	    ((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000 - p->started_us) /
	    1e6;
	double rate = secs > 0.05 ? p->sessions_done / secs : 0;
	const char *what = p->resync ? "resync" : "snapshot";
	if (ui->tty) {
		char bar[31];
		unsigned fill =
		    p->sessions_total
			? (unsigned)(30 * p->sessions_done / p->sessions_total)
			: 0;
		if (fill > 30)
			fill = 30;
		memset(bar, '#', fill);
		memset(bar + fill, '.', 30 - fill);
		bar[30] = '\0';
		fprintf(stderr,
			"\r\033[K%s [%s] %llu/%llu sessions, %llu apps, "
			"%.0f/s",
			what, bar, (unsigned long long)p->sessions_done,
			(unsigned long long)p->sessions_total,
			(unsigned long long)p->applications, rate);
		ui->bar_shown = 1;
		if (p->done)
			clear_bar(ui);
		return;
	}
	/* Not a terminal: a plain line every 2 s, and at the end. */
	int64_t now = now_us();
	if (!p->done &&
	    (now - ui->last_line_us < 2000000 || !p->sessions_total))
		return;
	ui->last_line_us = now;
	if (ui->follow) {
		follow_log_printf(
		    SKY_LOG_INFO,
		    "%s: %llu/%llu sessions in %llu applications, "
		    "%.0f sessions/s%s",
		    what, (unsigned long long)p->sessions_done,
		    (unsigned long long)p->sessions_total,
		    (unsigned long long)p->applications, rate,
		    p->done ? ", done" : "");
		return;
	}
	fprintf(stderr,
		"skysync: %s: %llu/%llu sessions in %llu applications, "
		"%.0f sessions/s%s\n",
		what, (unsigned long long)p->sessions_done,
		(unsigned long long)p->sessions_total,
		(unsigned long long)p->applications, rate,
		p->done ? ", done" : "");
}

/* The JSON line of one change (see the usage text), or NULL. */
static json_t *change_line(const sky_change *c)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {{SKY_CHANGE_ADDED, "added"},
		     {SKY_CHANGE_SESSION, "session"},
		     {SKY_CHANGE_PROPERTIES, "properties"},
		     {SKY_CHANGE_DATA, "data"},
		     {SKY_CHANGE_CLOSED, "closed"},
		     {SKY_CHANGE_REMOVED, "removed"},
		     {SKY_CHANGE_EVENT, "event"},
		     {SKY_CHANGE_SNAPSHOT, "snapshot"},
		     {SKY_CHANGE_ADDRESSED, "addressed"}};
	json_t *what = json_array();
	int bad = !what; /* a setter failed: print nothing rather than less */
	for (size_t i = 0; !bad && i < sizeof(names) / sizeof(names[0]); i++)
		if ((c->what & names[i].bit) &&
		    json_array_append_new(what, json_string(names[i].name)) < 0)
			bad = 1;
	json_t *o = bad ? NULL : json_object();
	if (!o) {
		json_decref(what);
		return NULL;
	}
	if (c->what & SKY_CHANGE_SNAPSHOT) {
		/* One line for a whole snapshot: how many sessions. */
		json_int_t a = (json_int_t)c->added;
		json_int_t ch = (json_int_t)c->changed;
		json_int_t r = (json_int_t)c->removed;
		bad = json_object_set(o, "changes", what) < 0 ||
		      json_object_set_new(o, "added", json_integer(a)) < 0 ||
		      json_object_set_new(o, "changed", json_integer(ch)) < 0 ||
		      json_object_set_new(o, "removed", json_integer(r)) < 0;
	} else {
		bad = !c->app_id || !c->session_id ||
		      json_object_set_new(o, "applicationId",
					  json_string(c->app_id)) < 0 ||
		      json_object_set_new(o, "sessionId",
					  json_string(c->session_id)) < 0 ||
		      (c->local_id &&
		       json_object_set_new(o, "localId",
					   json_string(c->local_id)) < 0) ||
		      json_object_set(o, "changes", what) < 0 ||
		      (c->event_type &&
		       json_object_set_new(o, "eventType",
					   json_string(c->event_type)) < 0) ||
		      (c->event_id &&
		       json_object_set_new(o, "eventId",
					   json_string(c->event_id)) < 0);
		json_t *p = !bad && c->payload_json
				? sky__json_loadb(c->payload_json,
						  c->payload_len, 0, NULL)
				: NULL;
		if (p && json_object_set_new(o, "payload", p) < 0)
			bad = 1;
	}
	json_decref(what); /* o holds its own reference */
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static void on_change(const sky_change *c, void *payload)
{
	sync_ui *ui = payload;
	if (!ui->print_changes)
		return;
	json_t *o = change_line(c);
	char *text = o ? sky__json_dumps(o, NULL) : NULL;
	json_decref(o);
	if (!text)
		return;
	clear_bar(ui);
	/* One line each, flushed: a reader downstream sees it at once. */
	if (puts(text) < 0 || fflush(stdout) != 0) {
		if (!ui->output_failed) {
			ui->output_failed = 1;
			fprintf(stderr, "skysync: cannot write changes: %s\n",
				strerror(errno));
			sky_engine_stop(ui->engine);
		}
	}
	free(text);
}

static void on_state(sky_engine_state state, void *payload)
{
	sync_ui *ui = payload;
	if (state == SKY_ENGINE_STOPPED || state == SKY_ENGINE_FAILED)
		event_base_loopbreak(ui->base);
	else if (state == SKY_ENGINE_LIVE && !ui->quiet)
		on_log(SKY_LOG_INFO, "live: applying events as they arrive",
		       ui);
	/* systemd Type=notify: ready once the first snapshot is in. */
	if (state == SKY_ENGINE_LIVE && ui->follow && !ui->ready) {
		ui->ready = 1;
		if (notify_send("READY=1\nSTATUS=live") < 0)
			on_log(SKY_LOG_WARN, "cannot notify $NOTIFY_SOCKET",
			       ui);
	}
}

static char *read_password(const char *path);
static void wipe_free(char *s);

/* SIGHUP (--follow): read the password file again (the next login uses
 * it) and reopen the --log file (logrotate), then go on. */
static void on_hup(evutil_socket_t sig, short what, void *arg)
{
	sync_ui *ui = arg;
	(void)sig;
	(void)what;
	on_log(SKY_LOG_INFO,
	       "hangup: reopening the log, reading the "
	       "password again",
	       ui);
	follow_log_reopen();
	if (!ui->password_file || !strcmp(ui->password_file, "-"))
		return; /* $SKYSYNC_PASSWORD or stdin: nothing to re-read */
	char *pw = read_password(ui->password_file);
	if (!pw || sky_engine_set_password(ui->engine, pw) < 0)
		on_log(SKY_LOG_ERROR, "hangup: keeping the old password", ui);
	else
		on_log(SKY_LOG_INFO,
		       "hangup: the next login uses the "
		       "password file as it is now",
		       ui);
	wipe_free(pw);
}

/* systemd's watchdog: WATCHDOG=1 from the loop, so a stuck loop misses
 * it and gets restarted. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	notify_send("WATCHDOG=1");
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	sync_ui *ui = arg;
	(void)what;
	ui->signalled = 1;
	clear_bar(ui);
	if (ui->follow && notify_send("STOPPING=1") < 0)
		on_log(SKY_LOG_WARN, "cannot notify $NOTIFY_SOCKET", ui);
	if (!ui->quiet)
		on_log(SKY_LOG_INFO,
		       sig == SIGINT ? "interrupted: stopping"
				     : "terminated: stopping",
		       ui);
	sky_engine_stop(ui->engine);
}

/*
 * The password: the first line of `path`, or $SKYSYNC_PASSWORD. A file
 * that others may read is used, with a warning (it is the user's secret
 * to protect, but they should know).
 */
static char *read_password(const char *path)
{
	if (!path) {
		const char *env = getenv("SKYSYNC_PASSWORD");
		if (!env || !*env) {
			fprintf(stderr, "skysync sync: no password: give "
					"--password-file FILE or set "
					"SKYSYNC_PASSWORD\n");
			return NULL;
		}
		return strdup(env);
	}
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	if (!f) {
		fprintf(stderr,
			"skysync sync: cannot read the password file %s: "
			"%s\n",
			path, strerror(errno));
		return NULL;
	}
	struct stat st;
	if (f != stdin && fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
		fprintf(stderr,
			"skysync: warning: the password file %s can be "
			"read by other users (chmod 600 it)\n",
			path);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n = getline(&line, &cap, f);
	if (f != stdin)
		fclose(f);
	if (n <= 0) {
		fprintf(stderr, "skysync sync: the password file %s is empty\n",
			path);
		free(line);
		return NULL;
	}
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	if (n == 0) {
		fprintf(stderr, "skysync sync: the password file %s is empty\n",
			path);
		free(line);
		return NULL;
	}
	return line;
}

static void wipe_free(char *s)
{
	if (s) {
		volatile char *p = s;
		while (*p)
			*p++ = 0;
		free(s);
	}
}

static const char sync_usage[] =
    "usage: skysync sync --server URL [--broker URL] --realm R --user U\n"
    "                    [--password-file F] [--follow] [--print-changes]\n"
    "                    [--reconcile SECONDS] [--backlog-limit N]\n"
    "                    [--cafile F] [--insecure]\n"
    "                    [--quiet] [--verbose] [--wait [--timeout S]]\n"
    "                    [--log FILE]\n"
    "\n"
    "Read the realm's applications, roles, open sessions and their data\n"
    "into the cache (removing sessions that closed or are no longer\n"
    "visible), then exit; with --follow, subscribe to the realm's events\n"
    "first and keep the cache current until interrupted.\n"
    "\n"
    "  --server URL         REST base URL, e.g. https://api.example.com\n"
    "  --broker URL         MQTT broker (default ssl://mqtt.HOST:8883 for a\n"
    "                       server https://api.HOST; mqtt://H:P for plain)\n"
    "  --realm R --user U   the account to sync as\n"
    "  --password-file F    read the password from the first line of F\n"
    "                       (- for stdin); else $SKYSYNC_PASSWORD. Never on\n"
    "                       the command line.\n"
    "  --follow             stay live: apply events until SIGINT/SIGTERM;\n"
    "                       each log line starts with the UTC time and a\n"
    "                       level (2026-12-03T09:00:00.123Z info sync: ...),\n"
    "                       or a syslog <N> prefix when $JOURNAL_STREAM is\n"
    "                       set (systemd). SIGHUP reads --password-file\n"
    "                       again (for the next login) and reopens --log.\n"
    "                       $NOTIFY_SOCKET gets READY=1 once live, WATCHDOG=1\n"
    "                       at half $WATCHDOG_USEC, STOPPING=1 (systemd\n"
    "                       Type=notify).\n"
    "  --log FILE           with --follow, append the log to FILE instead\n"
    "                       of stderr (reopened on SIGHUP, for logrotate)\n"
    "  --print-changes      print one JSON line per change made by sync:\n"
    "                       {applicationId, sessionId, changes[], eventType?,\n"
    "                       eventId?, payload?} for an event (payload: the\n"
    "                       data patch, the custom event's data, the session\n"
    "                       fields sent); {changes:[\"snapshot\"], added,\n"
    "                       changed, removed} once per snapshot that changed\n"
    "                       the cache; {applicationId, sessionId, localId,\n"
    "                       changes:[\"addressed\"]} when a session created\n"
    "                       offline got its server id\n"
    "  --reconcile SECONDS  with --follow, re-list the realm this often and\n"
    "                       re-read sessions that differ from the cache and\n"
    "                       stale ones (default 600; 0: never)\n"
    "  --backlog-limit N    a broker backlog of N events or more at start may\n"
    "                       have overflowed the broker's queue: read the\n"
    "                       whole realm instead of resuming (default 1000,\n"
    "                       mosquitto's max_queued_messages)\n"
    "  --cafile F           CA bundle for TLS (default: the system's)\n"
    "  --protocol FILE      the server's REST paths, topics and eventType\n"
    "                       strings (see `skysync protocol`; default: built\n"
    "                       in); a bad file is refused with exit 3\n"
    "  --insecure           do not verify TLS certificates (testing only)\n"
    "  --quiet              no progress, only warnings and errors\n"
    "  --verbose            also debug lines\n"
    "  --wait               if another sync engine holds the cache (a\n"
    "                       `sync --follow` service), wait until it has\n"
    "                       delivered the writes queued before this\n"
    "                       command started, or take over if it exits\n"
    "  --timeout S          give up waiting after S seconds (exit 4)\n"
    "\n"
    "Sync also delivers the outbox (writes queued by `skysync session`,\n"
    "`data patch`, ...): in order per session, retrying transient failures;\n"
    "a write the server refuses for good becomes a dead letter (see\n"
    "`skysync outbox`). Reads and writes fail apart: the outbox is\n"
    "delivered even when reading the realm or a session failed. A session\n"
    "whose read failed (or whose server answer or event the cache refused)\n"
    "is marked stale in the cache (`skysync get` and `check` say so) and\n"
    "read again: with --follow after a backoff, else by the next sync.\n"
    "\n"
    "A progress bar is drawn on a terminal; otherwise plain progress lines.\n"
    "Exit 0 when done with no deliverable write left, and when --follow is\n"
    "stopped by a signal whatever is still queued (the outbox is durable:\n"
    "`skysync outbox` shows it); 1 on usage errors or when another sync\n"
    "engine holds the cache (one engine per cache; see --wait); 3 when dead\n"
    "letters remain in the outbox (and nothing else failed); 4 on a network\n"
    "or server failure: a refused login, a read that failed (\"sync\n"
    "incomplete: reads failed: ...\"; the outbox was still delivered),\n"
    "writes left undelivered (\"outbox: N not delivered\"), or --timeout\n"
    "ran out. Every failed part gets its own line on stderr.\n";

static int run_sync(int argc, char **argv, const cli_globals *g)
{
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	const char *password_file = NULL, *log_file = NULL;
	int wait = 0;
	double timeout_s = 0;
	sync_ui ui;
	memset(&ui, 0, sizeof(ui));
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **slot = NULL;
		if (!strcmp(a, "--server"))
			slot = &o.server;
		else if (!strcmp(a, "--broker"))
			slot = &o.broker;
		else if (!strcmp(a, "--realm"))
			slot = &o.realm;
		else if (!strcmp(a, "--user"))
			slot = &o.user;
		else if (!strcmp(a, "--password-file"))
			slot = &password_file;
		else if (!strcmp(a, "--cafile"))
			slot = &o.cafile;
		else if (!strcmp(a, "--protocol"))
			slot = &o.protocol_file;
		else if (!strcmp(a, "--log"))
			slot = &log_file;
		else if (!strcmp(a, "--follow"))
			o.follow = 1;
		else if (!strcmp(a, "--print-changes"))
			ui.print_changes = 1;
		else if (!strcmp(a, "--reconcile")) {
			char *end = NULL;
			errno = 0;
			unsigned long v =
			    i + 1 < argc ? strtoul(argv[i + 1], &end, 10) : 0;
			if (i + 1 >= argc || !*argv[i + 1] || *end ||
			    argv[i + 1][0] == '-' || errno || v >= 0xffffffffUL)
				return cli_usage_error(
				    "sync", "--reconcile needs a number of "
					    "seconds (0: never)");
			o.reconcile_interval_s =
			    v ? (unsigned)v : SKY_RECONCILE_NEVER;
			i++;
		} else if (!strcmp(a, "--backlog-limit")) {
			char *end = NULL;
			errno = 0;
			unsigned long v =
			    i + 1 < argc ? strtoul(argv[i + 1], &end, 10) : 0;
			if (i + 1 >= argc || !*argv[i + 1] || *end ||
			    argv[i + 1][0] == '-' || errno || v == 0 ||
			    v >= 0xffffffffUL)
				return cli_usage_error(
				    "sync", "--backlog-limit needs a number of "
					    "events (at least 1)");
			o.backlog_limit = (unsigned)v;
			i++;
		} else if (!strcmp(a, "--wait"))
			wait = 1;
		else if (!strcmp(a, "--timeout")) {
			char *end = NULL;
			if (i + 1 < argc)
				timeout_s = strtod(argv[i + 1], &end);
			if (i + 1 >= argc || end == argv[i + 1] || *end ||
			    !(timeout_s > 0))
				return cli_usage_error("sync",
						       "--timeout needs a "
						       "number of seconds > 0");
			i++;
		} else if (!strcmp(a, "--insecure"))
			o.insecure = 1;
		else if (!strcmp(a, "--quiet") || !strcmp(a, "-q"))
			ui.quiet = 1;
		else if (!strcmp(a, "--verbose") || !strcmp(a, "-v"))
			ui.verbose = 1;
		else if (!strcmp(a, "--password") ||
			 !strncmp(a, "--password=", 11))
			return cli_usage_error("sync",
					       "--password is not accepted: "
					       "the command line is visible "
					       "to other users; use "
					       "--password-file or "
					       "SKYSYNC_PASSWORD");
		else
			return cli_usage_error("sync", "unknown argument '%s'",
					       a);
		if (slot) {
			if (i + 1 >= argc || !*argv[i + 1])
				return cli_usage_error("sync",
						       "%s needs a value", a);
			/* Names and URLs must be UTF-8 (exit 3 otherwise);
			 * file names may be any bytes. */
			if (slot != &password_file && slot != &o.cafile &&
			    slot != &log_file && slot != &o.protocol_file &&
			    !cli_utf8_valid(argv[i + 1]))
				return cli_check_utf8_args("sync", i + 2, argv,
							   i + 1);
			*slot = argv[++i];
		}
	}
	if (timeout_s > 0 && !wait)
		return cli_usage_error("sync", "--timeout goes with --wait");
	if (log_file && !o.follow)
		return cli_usage_error("sync", "--log goes with --follow");
	if (!o.server || !o.realm || !o.user)
		return cli_usage_error("sync",
				       "--server, --realm and --user are "
				       "required");
	static const char *const web[] = {"https://", "http://", NULL};
	static const char *const mqtt[] = {"mqtt://", "mqtts://", "ssl://",
					   "tcp://", NULL};
	int bad = cli_check_url("sync", "--server", o.server, web);
	if (bad == EXIT_OK && o.broker)
		bad = cli_check_url("sync", "--broker", o.broker, mqtt);
	if (bad != EXIT_OK)
		return bad;
	char *password = read_password(password_file);
	if (!password)
		return EXIT_USAGE;
	o.password = password;
	ui.follow = o.follow;
	ui.password_file = password_file;
	if (follow_log_open(log_file, o.follow) < 0) {
		wipe_free(password);
		return EXIT_USAGE;
	}
	o.on_log = on_log;
	o.on_progress = on_progress;
	o.on_change = on_change;
	o.on_state = on_state;
	o.payload = &ui;
	ui.tty = isatty(STDERR_FILENO);
	if (o.insecure && !ui.quiet)
		fprintf(stderr,
			"skysync: warning: --insecure: TLS certificates "
			"are not verified\n");

	int rc = EXIT_USAGE;
	sky_cache *c = cli_open(g, 0);
	struct event *sigint = NULL, *sigterm = NULL, *sighup = NULL,
		     *watchdog = NULL;
	if (!c)
		goto done;
	if (cli_sync_engine_or_wait(c, &o, wait, timeout_s, ui.quiet,
				    &ui.engine, &rc) != 0) {
		ui.engine = NULL;
		goto done;
	}
	/* The engine has its own copy now. */
	wipe_free(password);
	password = NULL;
	signal(SIGPIPE, SIG_IGN);
	if (!(ui.base = event_base_new())) {
		fprintf(stderr, "skysync: cannot create an event loop\n");
		goto done;
	}
	sigint = evsignal_new(ui.base, SIGINT, on_signal, &ui);
	sigterm = evsignal_new(ui.base, SIGTERM, on_signal, &ui);
	if (!sigint || !sigterm || evsignal_add(sigint, NULL) < 0 ||
	    evsignal_add(sigterm, NULL) < 0 ||
	    sky_engine_attach(ui.engine, ui.base) < 0) {
		rc = cli_fail("sync");
		goto done;
	}
	uint64_t wd_us = o.follow ? notify_watchdog_usec() : 0;
	if (o.follow &&
	    (!(sighup = evsignal_new(ui.base, SIGHUP, on_hup, &ui)) ||
	     evsignal_add(sighup, NULL) < 0 ||
	     (wd_us && !(watchdog = event_new(ui.base, -1, EV_PERSIST,
					      on_watchdog, &ui))))) {
		fprintf(stderr,
			"skysync: cannot watch SIGHUP or the watchdog\n");
		goto done;
	}
	if (watchdog) {
		struct timeval half = {(time_t)(wd_us / 2 / 1000000),
				       (suseconds_t)(wd_us / 2 % 1000000)};
		if (event_add(watchdog, &half) < 0) {
			fprintf(stderr, "skysync: cannot arm the watchdog\n");
			goto done;
		}
	}
	event_base_dispatch(ui.base);
	sky_engine_stop(ui.engine);

	sky_sync_status st = SKY_SYNC_STATUS_INIT;
	sky_engine_status(ui.engine, &st);
	clear_bar(&ui);
	if (st.state == SKY_ENGINE_FAILED) {
		if (ui.follow) /* the service's log, stamped */
			follow_log_printf(SKY_LOG_ERROR, "sync failed: %s",
					  st.error);
		else
			fprintf(stderr, "skysync: sync failed: %s\n", st.error);
		rc = st.error_code == SKY_ENETWORK   ? EXIT_NETWORK
		     : st.error_code == SKY_EDAMAGED ? EXIT_DAMAGED
						     : EXIT_USAGE;
	} else {
		rc = ui.output_failed ? EXIT_USAGE : EXIT_OK;
		if (!ui.quiet && !o.follow)
			fprintf(stderr,
				"skysync: synced %llu sessions in %llu "
				"applications into %s\n",
				(unsigned long long)st.progress.sessions_done,
				(unsigned long long)st.progress.applications,
				g->db);
		if (!ui.quiet && !o.follow && st.last_sync_path)
			fprintf(stderr,
				"skysync: sync path %s (%s), %llu requests\n",
				st.last_sync_path == SKY_SYNC_PATH_RESUMED
				    ? "resumed"
				    : "full",
				st.last_sync_path == SKY_SYNC_PATH_RESUMED
				    ? "the broker kept our session"
				    : sky_sync_why_name(st.last_sync_why),
				(unsigned long long)st.last_sync_requests);
		/* Reads that failed: a one-shot sync is incomplete (4); a
		 * follow stopped by a signal only says what is stale. */
		int reads_failed = !o.follow && st.reads_failed;
		if (reads_failed)
			fprintf(stderr,
				"skysync: sync incomplete: reads failed: %s "
				"(%llu failed read%s, %llu session%s stale, "
				"see `skysync check`); the outbox was "
				"delivered\n",
				st.read_error,
				(unsigned long long)st.reads_failed,
				st.reads_failed == 1 ? "" : "s",
				(unsigned long long)st.stale_sessions,
				st.stale_sessions == 1 ? "" : "s");
		else if (st.stale_sessions && !ui.quiet)
			fprintf(stderr,
				"skysync: %llu session%s stale (see `skysync "
				"check`)\n",
				(unsigned long long)st.stale_sessions,
				st.stale_sessions == 1 ? " is" : "s are");
		/* 0 only when no deliverable write is left. */
		sky_outbox_counts n = SKY_OUTBOX_COUNTS_INIT;
		if (rc == EXIT_OK && sky_outbox_counts_get(c, &n) == 0) {
			uint64_t left = n.pending + n.in_flight + n.in_doubt;
			if (left || n.rejected)
				fprintf(
				    stderr,
				    "skysync: outbox: %llu not delivered "
				    "(%llu pending, %llu in doubt), %llu "
				    "rejected (see `skysync outbox list`)\n",
				    (unsigned long long)left,
				    (unsigned long long)(n.pending +
							 n.in_flight),
				    (unsigned long long)n.in_doubt,
				    (unsigned long long)n.rejected);
			/* A service stopped cleanly: the queue is durable
			 * and the next run delivers it. */
			if (o.follow && ui.signalled)
				;
			else if (left || reads_failed)
				rc = EXIT_NETWORK;
			else if (n.rejected)
				rc = EXIT_REJECTED;
		}
	}
done:
	wipe_free(password);
	sky_engine_free(ui.engine);
	if (sigint)
		event_free(sigint);
	if (sigterm)
		event_free(sigterm);
	if (sighup)
		event_free(sighup);
	if (watchdog)
		event_free(watchdog);
	follow_log_close();
	if (ui.base)
		event_base_free(ui.base);
	sky_cache_close(c);
	return rc;
}

const cli_command cli_cmd_sync = {
    "sync",
    "bring the cache up to date with a server (or --follow it)",
    sync_usage,
    run_sync,
};
