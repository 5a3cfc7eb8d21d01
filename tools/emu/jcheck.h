/*
 * jcheck.h - EMU_JSON(call): the result of a jansson setter in the
 * emulator's builders of answers, events and realm state. Their inputs
 * are checked JSON already (keys parsed from JSON are valid UTF-8), so
 * such a call fails only when memory runs out. The emulator is a test
 * server: it stops there, naming the place, rather than answer with a
 * field missing or keep a realm that no longer matches what it said.
 * Input that can be bad (a client id from the broker, a token key from
 * the state file) is handled where it arrives, not with this.
 */
#ifndef EMU_JCHECK_H
#define EMU_JCHECK_H

#include <stdio.h>
#include <stdlib.h>

static inline void emu_json_check(int rc, const char *file, int line)
{
	if (rc < 0) {
		fprintf(stderr,
			"skylight-emu: %s:%d: a JSON update failed "
			"(out of memory)\n",
			file, line);
		abort();
	}
}

#define EMU_JSON(call) emu_json_check((call), __FILE__, __LINE__)

#endif
