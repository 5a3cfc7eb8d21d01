/*
 * admin.h - the /_admin/ endpoints (admin.c): faults, stats, token expiry,
 * MQTT drops, the realm. A control route of the server (http.h).
 */
#ifndef EMU_ADMIN_H
#define EMU_ADMIN_H

#include "answer.h"

emu_handler emu_admin_handle;

#endif
