/*
 * rand.c - random bytes from getrandom(2), and UUIDs made of them. A
 * failure of the kernel's generator aborts: an id or a token signature
 * must never be predictable, and there is nothing sensible to go on with.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#include "rand.h"

void emu_random_bytes(void *buf, size_t n)
{
	unsigned char *p = buf;
	while (n) {
		ssize_t got = getrandom(p, n, 0);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			perror("skylight-emu: getrandom");
			abort();
		}
		p += got;
		n -= (size_t)got;
	}
}

void emu_uuid4(char out[37])
{
	unsigned char b[16];
	emu_random_bytes(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
		 "%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9],
		 b[10], b[11], b[12], b[13], b[14], b[15]);
}
