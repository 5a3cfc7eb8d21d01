/*
 * log.h - skylight-emu's lines on stderr (log.c), each stamped with the
 * time of day. Below every other module: any of them may log, and this
 * one calls none of them.
 */
#ifndef EMU_LOG_H
#define EMU_LOG_H

struct emu;

/* One line on stderr when -v was given (never passwords or tokens). */
void emu_log(const struct emu *emu, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* One line on stderr, always: startup problems and runtime failures. */
void emu_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
