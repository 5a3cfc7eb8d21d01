/*
 * sealtool.c - a test helper: `tests/sealtool HEX` prints the hex bytes
 * followed by their CRC-32C seal, as libsync seals a stored value
 * (sealed.h), for shell tests that write a cache's values with mdb_load.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sealed.h"

int main(int argc, char **argv)
{
	if (argc != 2 || strlen(argv[1]) % 2) {
		fprintf(stderr, "usage: sealtool HEX\n");
		return 1;
	}
	size_t n = strlen(argv[1]) / 2;
	unsigned char *b = malloc(n + 4);
	if (!b)
		return 1;
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(argv[1] + 2 * i, "%2x", &v) != 1) {
			free(b);
			return 1;
		}
		b[i] = (unsigned char)v;
	}
	sky__seal_write(b, n);
	for (size_t i = 0; i < n + 4; i++)
		printf("%02x", b[i]);
	printf("\n");
	free(b);
	return 0;
}
