/*
 * args.c - checks of command-line arguments before a command acts on
 * them: text must be valid UTF-8 (what the library stores and the server
 * takes), numbers must be whole decimal numbers in range. A refused
 * argument ends the command with EXIT_REJECTED (3) and one line on
 * stderr naming it; the argument is shown escaped, so a message about a
 * malformed byte or a control character is itself plain text.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_input_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "skysync %s: ", cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return EXIT_REJECTED;
}

/* Length of the valid UTF-8 sequence at s, or 0 (overlong forms,
 * surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_valid_seq(const unsigned char *s)
{
	size_t n;
	uint32_t c;
	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		n = 2, c = s[0] & 0x1fu;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		n = 3, c = s[0] & 0x0fu;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		n = 4, c = s[0] & 0x07u;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80) /* the NUL ends it here too */
			return 0;
		c = (c << 6) | (s[i] & 0x3fu);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) || c > 0x10ffff ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	return n;
}

int cli_utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		size_t n = utf8_valid_seq(p);
		if (!n)
			return 0;
		p += n;
	}
	return 1;
}

const char *cli_quote(const char *arg, char *buf, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)arg;
	size_t o = 0;
	if (size < 8) {
		if (size)
			buf[0] = '\0';
		return buf;
	}
	while (*p) {
		size_t n = utf8_valid_seq(p);
		/* Printable ASCII and valid multi-byte characters go as they
		 * are, except the C1 controls, the line and paragraph
		 * separators and the bidirectional controls (U+2028..U+202E,
		 * U+2066..U+2069), which would break or reorder the line; the
		 * rest as \xHH. */
		int plain =
		    n > 1
			? !((n == 2 && p[0] == 0xc2 && p[1] <= 0x9f) ||
			    (n == 3 && p[0] == 0xe2 &&
			     ((p[1] == 0x80 && p[2] >= 0xa8 && p[2] <= 0xae) ||
			      (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9))))
			: (n == 1 && p[0] >= 0x20 && p[0] != 0x7f &&
			   p[0] != '\\');
		size_t need = plain ? n : 4;
		if (o + need + 4 >= size) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (plain) {
			memcpy(buf + o, p, n);
			p += n;
			o += n;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
			p++;
		}
	}
	buf[o] = '\0';
	return buf;
}

int cli_check_utf8_args(const char *cmd, int argc, char **argv, int first)
{
	for (int i = first; i < argc; i++) {
		if (!cli_utf8_valid(argv[i])) {
			char shown[160];
			return cli_input_error(
			    cmd,
			    "argument '%s' is not valid "
			    "UTF-8",
			    cli_quote(argv[i], shown, sizeof(shown)));
		}
	}
	return EXIT_OK;
}

int cli_parse_u64(const char *cmd, const char *what, const char *arg,
		  uint64_t *out)
{
	char shown[160];
	/* strtoull alone would take " 7", "+7", "-7" (as a huge number)
	 * and "0x7"; an id or a version is plain decimal digits. */
	size_t n = strspn(arg, "0123456789");
	if (n == 0 || arg[n] != '\0')
		return cli_input_error(cmd,
				       "%s '%s' is not a whole decimal "
				       "number",
				       what,
				       cli_quote(arg, shown, sizeof(shown)));
	errno = 0;
	unsigned long long v = strtoull(arg, NULL, 10);
	if (errno == ERANGE)
		return cli_input_error(cmd, "%s '%s' is too large", what,
				       cli_quote(arg, shown, sizeof(shown)));
	*out = (uint64_t)v;
	return EXIT_OK;
}

/*
 * A URL the command will connect to: one of `schemes` ("https://", ...,
 * NULL-terminated), then a host (a name, an address or a bracketed IPv6
 * address) that is not empty, an optional port of 1 to 65535 and an
 * optional path. Checked before anything is read or connected, so that a
 * typo is refused at once (exit 3) rather than retried as a network
 * failure.
 */
int cli_check_url(const char *cmd, const char *what, const char *url,
		  const char *const *schemes)
{
	char shown[160];
	const char *p = NULL;
	for (const char *const *s = schemes; *s; s++)
		if (!strncmp(url, *s, strlen(*s)))
			p = url + strlen(*s);
	if (!p) {
		char list[128] = "";
		size_t n = 0;
		for (const char *const *s = schemes; *s && n < sizeof(list);
		     s++)
			n +=
			    (size_t)snprintf(list + n, sizeof(list) - n, "%s%s",
					     s == schemes ? "" : ", ", *s);
		return cli_input_error(
		    cmd,
		    "%s '%s' is not a URL: it must start "
		    "with one of %s",
		    what, cli_quote(url, shown, sizeof(shown)), list);
	}
	size_t alen = strcspn(p, "/?#");
	const char *at = memchr(p, '@', alen);
	const char *host = at ? at + 1 : p, *end = p + alen, *port = NULL;
	const char *host_end;
	if (*host == '[') {
		host_end = memchr(host, ']', (size_t)(end - host));
		if (!host_end)
			goto bad_host;
		if (host_end + 1 < end) {
			if (host_end[1] != ':')
				goto bad_host;
			port = host_end + 2;
		}
		host++;
	} else {
		host_end = memchr(host, ':', (size_t)(end - host));
		if (host_end)
			port = host_end + 1;
		else
			host_end = end;
	}
	if (host_end == host)
		goto bad_host;
	for (const char *h = host; h < host_end; h++)
		if ((unsigned char)*h <= ' ' || *h == 0x7f)
			goto bad_host;
	if (port) {
		unsigned long v = 0;
		if (port == end || (size_t)(end - port) > 5)
			goto bad_port;
		for (const char *d = port; d < end; d++) {
			if (*d < '0' || *d > '9')
				goto bad_port;
			v = v * 10 + (unsigned long)(*d - '0');
		}
		if (v == 0 || v > 65535)
			goto bad_port;
	}
	for (const char *r = end; *r; r++)
		if ((unsigned char)*r <= ' ' || *r == 0x7f)
			return cli_input_error(
			    cmd,
			    "%s '%s': spaces and control "
			    "characters are not allowed",
			    what, cli_quote(url, shown, sizeof(shown)));
	return EXIT_OK;
bad_host:
	return cli_input_error(cmd, "%s '%s' has no host name", what,
			       cli_quote(url, shown, sizeof(shown)));
bad_port:
	return cli_input_error(cmd,
			       "%s '%s': the port must be a number from "
			       "1 to 65535",
			       what, cli_quote(url, shown, sizeof(shown)));
}
