/*
 * follow_log.c - the log of `skysync sync --follow`, the part of sync that
 * runs as a service. Each message is one line, written whole with one
 * write(2) so that lines from a log file opened O_APPEND never interleave.
 *
 * Stamped lines carry when and how bad: "2026-12-03T09:00:00.123Z info
 * sync: MESSAGE" (RFC 3339, UTC, milliseconds). Under systemd (stderr is
 * the journal's stream: $JOURNAL_STREAM is set and no --log file) the
 * journal stamps lines itself and reads a syslog priority prefix instead:
 * "<6>sync: MESSAGE". Unstamped (an interactive one-shot sync) keeps the
 * plain "skysync: warning: MESSAGE".
 *
 * The file is held open and reopened by follow_log_reopen() (SIGHUP), so
 * that logrotate can rename it; a failed reopen keeps the old descriptor,
 * so no line is ever lost to a missing directory.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "follow_log.h"

static struct {
	int fd;	     /* where lines go */
	char *path;  /* --log FILE, or NULL for stderr */
	int stamped; /* timestamp and level */
	int journal; /* syslog prefix instead of a timestamp */
} flog = {STDERR_FILENO, NULL, 0, 0};

static int open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
}

int follow_log_open(const char *path, int stamped)
{
	flog.stamped = stamped;
	if (path) {
		int fd = open_file(path);
		if (fd < 0) {
			fprintf(stderr,
				"skysync sync: cannot open the log %s: "
				"%s\n",
				path, strerror(errno));
			return -1;
		}
		if (!(flog.path = strdup(path))) {
			close(fd);
			fprintf(stderr, "skysync: out of memory\n");
			return -1;
		}
		flog.fd = fd;
	}
	const char *js = getenv("JOURNAL_STREAM");
	flog.journal = stamped && !path && js && *js;
	return 0;
}

void follow_log_reopen(void)
{
	if (!flog.path)
		return;
	int fd = open_file(flog.path);
	if (fd < 0) {
		follow_log_printf(SKY_LOG_ERROR,
				  "cannot reopen the log %s: %s (still "
				  "writing to the old file)",
				  flog.path, strerror(errno));
		return;
	}
	close(flog.fd);
	flog.fd = fd;
	follow_log_printf(SKY_LOG_INFO, "log reopened");
}

static const char *level_name(sky_log_level level)
{
	switch (level) {
	case SKY_LOG_ERROR: return "error";
	case SKY_LOG_WARN: return "warning";
	case SKY_LOG_INFO: return "info";
	default: return "debug";
	}
}

/* syslog(3) priorities: LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG. */
static int level_prio(sky_log_level level)
{
	switch (level) {
	case SKY_LOG_ERROR: return 3;
	case SKY_LOG_WARN: return 4;
	case SKY_LOG_INFO: return 6;
	default: return 7;
	}
}

void follow_log_line(sky_log_level level, const char *line)
{
	char head[128];
	if (flog.journal)
		snprintf(head, sizeof(head), "<%d>sync: ", level_prio(level));
	else if (flog.stamped) {
		struct timespec ts;
		struct tm tm;
		clock_gettime(CLOCK_REALTIME, &ts);
		if (!gmtime_r(&ts.tv_sec, &tm))
			memset(&tm, 0, sizeof(tm));
		snprintf(head, sizeof(head),
			 "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s sync: ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			 tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
			 level_name(level));
	} else
		snprintf(head, sizeof(head), "skysync: %s",
			 level == SKY_LOG_ERROR	 ? "error: "
			 : level == SKY_LOG_WARN ? "warning: "
						 : "");
	/* One buffer, one write: whole lines, never interleaved (a line
	 * longer than the buffer is cut: a log line, not a dump). */
	char buf[8192];
	int n = snprintf(buf, sizeof(buf) - 1, "%s%s", head, line);
	if (n < 0)
		return;
	size_t len = (size_t)n < sizeof(buf) - 1 ? (size_t)n : sizeof(buf) - 2;
	buf[len++] = '\n';
	size_t off = 0;
	while (off < len) {
		ssize_t w = write(flog.fd, buf + off, len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* nowhere left to say so */
		off += (size_t)w;
	}
}

void follow_log_printf(sky_log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	follow_log_line(level, line);
}

void follow_log_close(void)
{
	if (flog.path) {
		close(flog.fd);
		free(flog.path);
		flog.path = NULL;
		flog.fd = STDERR_FILENO;
	}
}
