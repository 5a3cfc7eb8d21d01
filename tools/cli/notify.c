/*
 * notify.c - the systemd service notification protocol, the few lines of
 * sd_notify(3) that `sync --follow` needs: each state is one datagram of
 * "KEY=VALUE" text sent to the unix socket named by $NOTIFY_SOCKET (a
 * path, or "@name" for the abstract namespace). Without $NOTIFY_SOCKET
 * (not under systemd, or Type=simple) every call is a no-op, so the
 * service and the interactive command are one code path.
 *
 * The watchdog: $WATCHDOG_USEC asks for "WATCHDOG=1" at least that often
 * (sd_watchdog_enabled(3): only for the process named by $WATCHDOG_PID
 * when that is set).
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "notify.h"

int notify_send(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	if (!path || !*path)
		return 0;
	struct sockaddr_un sa;
	size_t len = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
		return -1;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* abstract: no terminating NUL */
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
				      len + (path[0] == '/'));
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL,
			   (struct sockaddr *)&sa, salen);
	int saved = errno;
	close(fd);
	errno = saved;
	return n == (ssize_t)strlen(state) ? 1 : -1;
}

uint64_t notify_watchdog_usec(void)
{
	const char *us = getenv("WATCHDOG_USEC");
	if (!us || !*us)
		return 0;
	const char *pid = getenv("WATCHDOG_PID");
	if (pid && *pid) {
		char *end = NULL;
		long p = strtol(pid, &end, 10);
		if (*end || p != (long)getpid())
			return 0;
	}
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(us, &end, 10);
	if (*end || errno || !v)
		return 0;
	return (uint64_t)v;
}
