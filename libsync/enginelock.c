/*
 * enginelock.c - one sync engine per cache. Two engines on one cache would
 * each take the other's creates and custom events "in flight" for ones
 * whose answer was lost, and send them again: duplicates on the server.
 *
 * The engine holds flock(LOCK_EX) on DIR/engine.lock from sky_engine_new
 * to sky_engine_free. flock belongs to the open file description, so a
 * second engine conflicts whether it is in another process or in this
 * one, and the kernel releases the lock when its holder dies, kill -9
 * included: a lock file left behind never blocks anyone. The file holds
 * the holder's pid and command line, written after the lock is taken,
 * only for the message the next engine gets; the lock, not the text, is
 * the truth. The descriptor is close-on-exec, so a program the holder
 * starts does not keep the cache locked after the holder died.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "enginelock.h"
#include "error.h"

static char *lock_path(const char *dir)
{
	size_t n = strlen(dir) + sizeof(SKY_ENGINE_LOCK_FILE) + 2;
	char *p = malloc(n);
	if (p)
		snprintf(p, n, "%s/%s", dir, SKY_ENGINE_LOCK_FILE);
	return p;
}

/* This process's command line, arguments separated by spaces. */
static void own_cmdline(char *buf, size_t cap)
{
	buf[0] = '\0';
	FILE *f = fopen("/proc/self/cmdline", "r");
	if (!f)
		return;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] == '\0')
		n--;
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0' || buf[i] == '\n')
			buf[i] = ' ';
	buf[n] = '\0';
}

/* The pid and command in an open lock file (what its holder wrote). */
static void read_holder(int fd, pid_t *pid, char *cmd, size_t cap)
{
	char text[1024];
	ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
	*pid = 0;
	if (cap)
		cmd[0] = '\0';
	if (n <= 0)
		return;
	text[n] = '\0';
	char *nl = strchr(text, '\n');
	if (!nl)
		return; /* being written: only the lock is known */
	*nl = '\0';
	*pid = (pid_t)strtol(text, NULL, 10);
	char *end = strchr(nl + 1, '\n');
	if (end)
		*end = '\0';
	if (cap)
		snprintf(cmd, cap, "%s", nl + 1);
}

int sky__engine_lock_take(const char *dir, int *fd_out)
{
	assert(dir && fd_out);
	char *path = lock_path(dir);
	if (!path)
		return sky__error_nomem();
	int rc = -1;
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		rc = sky__error_os(path);
		goto out;
	}
	pid_t pid = 0;
	char cmd[512];
	int locked = 0;
	for (int tries = 0;; tries++) {
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			locked = 1;
			break;
		}
		if (errno != EWOULDBLOCK) {
			rc = sky__error_os(path);
			goto fail_fd;
		}
		read_holder(fd, &pid, cmd, sizeof(cmd));
		/* No pid written: an engine starting, or a look by
		 * sky__engine_lock_held, which lasts microseconds. */
		if (pid || tries == 50)
			break;
		usleep(1000);
	}
	if (!locked) {
		if (pid)
			rc = sky__error_set(SKY_EBUSY, SKY_ERRSRC_OS,
					    EWOULDBLOCK,
					    "another sync engine is running on "
					    "the cache %s: pid %ld (%s)",
					    dir, (long)pid, cmd);
		else
			rc = sky__error_set(SKY_EBUSY, SKY_ERRSRC_OS,
					    EWOULDBLOCK,
					    "another sync engine is starting "
					    "on the cache %s",
					    dir);
		goto fail_fd;
	}
	char own[900], text[1024];
	own_cmdline(own, sizeof(own));
	int len =
	    snprintf(text, sizeof(text), "%ld\n%s\n", (long)getpid(), own);
	if (ftruncate(fd, 0) < 0 || pwrite(fd, text, (size_t)len, 0) != len) {
		rc = sky__error_os(path);
		goto fail_fd;
	}
	*fd_out = fd;
	rc = 0;
	goto out;
fail_fd:
	close(fd);
out:
	free(path);
	return rc;
}

void sky__engine_lock_release(int fd)
{
	if (fd < 0)
		return;
	/* Emptied first: a reader never names a holder that has gone. */
	if (ftruncate(fd, 0) < 0) {
		/* Harmless: the next holder rewrites it. */
	}
	close(fd);
}

int sky__engine_lock_held(const char *dir, pid_t *pid, char *cmd, size_t cap)
{
	assert(dir && (!pid || !cap || cmd));
	char *path = lock_path(dir);
	if (!path)
		return sky__error_nomem();
	int rc;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		rc = errno == ENOENT ? 0 : sky__error_os(path);
		free(path);
		return rc;
	}
	/* A shared lock is refused exactly while an engine holds its
	 * exclusive one; got, it is given back at once. */
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		rc = 0;
	} else if (errno == EWOULDBLOCK) {
		rc = 1;
		if (pid)
			read_holder(fd, pid, cmd, cap);
	} else {
		rc = sky__error_os(path);
	}
	close(fd);
	free(path);
	return rc;
}
