/*
 * notify.h - the systemd service notification protocol (sd_notify(3)),
 * written out here so that no libsystemd is needed (notify.c).
 */
#ifndef SKY_NOTIFY_H
#define SKY_NOTIFY_H

#include <stdint.h>

/* Send `state` ("READY=1", "WATCHDOG=1", "STOPPING=1", ...) to
 * $NOTIFY_SOCKET. 1 sent, 0 no socket to send to, -1 failed. */
int notify_send(const char *state);
/* The watchdog interval asked by $WATCHDOG_USEC (for this process when
 * $WATCHDOG_PID is set), 0 when none. */
uint64_t notify_watchdog_usec(void);

#endif
