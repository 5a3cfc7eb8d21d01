/*
 * api.h - the /v1 calls of docs/PROTOCOL.md (api.c), over realm.c and
 * auth.c: a handler the server is started with (http.h's routes).
 */
#ifndef EMU_API_H
#define EMU_API_H

#include "answer.h"

emu_handler emu_api_handle;

#endif
