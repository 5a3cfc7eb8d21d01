/*
 * answer.c - what a handler answered, written out: as an evhttp reply
 * with its headers (Content-Type, Cache-Control, Retry-After, Allow,
 * WWW-Authenticate), or as the raw HTTP bytes a drop fault cuts short.
 * An answer without a body becomes a 500 with a JSON error, so a client
 * never gets an empty reply by mistake. It knows nothing of the handlers
 * or the server around it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "answer.h"
#include "json.h"
#include "util.h"

const char *emu_answer_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return status < 400 ? "OK" : "Error";
	}
}

char *emu_answer_text(const emu_answer *ans, size_t *len)
{
	char *text = ans->r.body ? sky__json_dumps(ans->r.body, NULL) : NULL;
	if (!text)
		text = strdup("{\"error\":\"internal_error\",\"message\":"
			      "\"no answer\",\"status\":500}");
	*len = text ? strlen(text) : 0;
	return text;
}

int emu_answer_send(struct evhttp_request *req, const emu_answer *ans)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();
	size_t len;
	char *text = emu_answer_text(ans, &len);
	int status = ans->r.status ? ans->r.status : 500;
	if (buf && text)
		evbuffer_add(buf, text, len);
	evhttp_add_header(out, "Content-Type", "application/json");
	evhttp_add_header(out, "Cache-Control", "no-store");
	if (ans->retry_after > 0) {
		char ra[24];
		snprintf(ra, sizeof(ra), "%lld", (long long)ans->retry_after);
		evhttp_add_header(out, "Retry-After", ra);
	}
	if (ans->allow)
		evhttp_add_header(out, "Allow", ans->allow);
	if (ans->bearer_challenge)
		evhttp_add_header(out, "WWW-Authenticate",
				  "Bearer error=\"invalid_token\"");
	evhttp_send_reply(req, status, emu_answer_reason(status), buf);
	if (buf)
		evbuffer_free(buf);
	free(text);
	return status;
}

char *emu_answer_raw(const emu_answer *ans, size_t *len)
{
	size_t blen;
	char *body = emu_answer_text(ans, &blen);
	int status = ans->r.status ? ans->r.status : 500;
	sky_buf b = SKY_BUF_INIT;
	sky__buf_printf(&b,
			"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
			"Content-Length: %zu\r\n\r\n",
			status, emu_answer_reason(status), blen);
	if (body)
		sky__buf_append(&b, body, blen);
	free(body);
	return sky__buf_detach(&b, len);
}
