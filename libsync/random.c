/*
 * random.c - bytes from getrandom(2) and the local ids made of them (see
 * random.h). A local id carries 128 bits from the kernel's generator, so
 * two clients (or one client restored from a backup) never make the same
 * one by chance; when the kernel cannot give them, making the id fails.
 */
#include "config.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>

#include "error.h"
#include "random.h"

static ssize_t system_getrandom(void *buf, size_t len, unsigned flags)
{
	return getrandom(buf, len, flags);
}

/* Set by tests only, before any thread makes ids. */
static sky_getrandom_fn source = system_getrandom;

void sky__random_set_source(sky_getrandom_fn fn)
{
	source = fn ? fn : system_getrandom;
}

int sky__random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	size_t got = 0;
	while (got < n) {
		/* Blocking (no GRND_NONBLOCK): before the kernel's pool is
		 * seeded at boot, waiting is right and a guess is not. */
		ssize_t r = source(p + got, n - got, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, errno,
					      "getrandom failed (%s): cannot "
					      "make a random id",
					      strerror(errno));
		if (r == 0)
			return sky__error_set(SKY_ERROR, SKY_ERRSRC_OS, EIO,
					      "getrandom returned no bytes: "
					      "cannot make a random id");
		got += (size_t)r;
	}
	return 0;
}

int sky__local_id(char out[SKY_LOCAL_ID_SIZE])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char bits[16];
	if (sky__random_bytes(bits, sizeof(bits)) < 0)
		return -1;
	memcpy(out, "local-", 6);
	for (size_t i = 0; i < sizeof(bits); i++) {
		out[6 + 2 * i] = hex[bits[i] >> 4];
		out[6 + 2 * i + 1] = hex[bits[i] & 15];
	}
	out[SKY_LOCAL_ID_SIZE - 1] = '\0';
	return 0;
}
