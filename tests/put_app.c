/*
 * put_app.c - `put_app DIR JSON`: store one application object in the
 * cache at DIR, as a sync would (sky_mirror_app_put). The shell tests use it to
 * have an application to create sessions in without running a server.
 * Exits 0, or 1 with the library's message.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "skysync.h"
#include "skysync_mirror.h"

int main(int argc, char **argv)
{
	sky_cache *c = NULL;
	if (argc != 3) {
		fprintf(stderr, "usage: put_app DIR APP_JSON\n");
		return 1;
	}
	if (sky_cache_open(&c, argv[1], NULL) < 0 ||
	    sky_mirror_app_put(c, argv[2], strlen(argv[2])) < 0) {
		fprintf(stderr, "put_app: %s\n", sky_error_last()->message);
		sky_cache_close(c);
		return 1;
	}
	sky_cache_close(c);
	return 0;
}
