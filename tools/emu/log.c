/*
 * log.c - skylight-emu's lines on stderr: "skylight-emu HH:MM:SS.mmm "
 * and the message, written under the stream's lock so that a line is
 * never interleaved with another (libmosquitto may log from its thread).
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "emu.h"
#include "log.h"

static void vlog(const char *fmt, va_list ap)
{
	struct timespec ts;
	struct tm tm;
	char stamp[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", &tm);
	flockfile(stderr);
	fprintf(stderr, "skylight-emu %s.%03ld ", stamp, ts.tv_nsec / 1000000);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	funlockfile(stderr);
}

void emu_log(const struct emu *emu, const char *fmt, ...)
{
	if (!emu->cfg.verbose)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void emu_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}
