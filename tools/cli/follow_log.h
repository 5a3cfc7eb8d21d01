/*
 * follow_log.h - the log of `skysync sync --follow`: one line per message,
 * stamped for a service's log (follow_log.c says how).
 */
#ifndef SKY_FOLLOW_LOG_H
#define SKY_FOLLOW_LOG_H

#include "skysync.h"

/* Start logging: to `path` (appended, created 0600) or, when NULL, to
 * stderr. `stamped` 0 keeps the interactive format ("skysync: warning:
 * ..."). Returns 0, or -1 with a message printed on stderr. */
int follow_log_open(const char *path, int stamped);
/* Reopen the file (after logrotate moved it); on failure keeps writing
 * to the old one and logs why. A no-op on stderr. */
void follow_log_reopen(void);
/* One line at `level`. */
void follow_log_line(sky_log_level level, const char *line);
void follow_log_printf(sky_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void follow_log_close(void);

#endif
