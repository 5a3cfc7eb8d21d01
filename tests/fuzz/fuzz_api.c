/*
 * fuzz_api.c - libFuzzer target for what the library reads from the
 * network: the REST answer parsers of libsync/api.h and the MQTT event
 * payload path. Every input goes through all of them:
 *
 *   sky__api_parse_tokens    a login/refresh answer
 *   sky__api_parse_array     a list answer (the engine's limits, and tight
 *                            ones so the size and depth limits trip)
 *   sky__api_parse_object    a single read (same limits)
 *   sky__api_server_message  the message of an error answer
 *   sky__api_jwt_sub         the input as a token, and the input as the
 *                            base64url payload of a token
 *   sky__api_default_broker  the input as a server URL, and after
 *                            "https://api." (its result must be a broker
 *                            URL sky__mqtt_parse_url reads back)
 *   sky__mqtt_parse_url      the input as a broker URL
 *   the fast paths           sky__json_fast_load against jansson, and
 *                            sky__json_sorted_text against the sorted dump
 *                            of jansson's tree (doc_text.h), and
 *                            sky__event_scan against sky__event_parse_tree:
 *                            whenever a fast path takes the input, it must
 *                            give exactly what the slow one gives
 *   MQTT payloads            the engine turns a payload into an event in
 *                            evitem_make() and on_mqtt_message(), both
 *                            static in engine.c; the payload then goes to
 *                            sky_mirror_event_apply. So this target runs the
 *                            parser the apply uses, sky__event_parse, and
 *                            then sky_mirror_event_apply on a cache kept across
 *                            inputs, and checks that they agree.
 *
 * Checks: no crash or sanitizer report (the answer buffer is exactly the
 * input, not NUL-terminated, so an over-read is caught); a rejection is
 * SKY_EINVAL or SKY_ELIMIT with a message; an accepted answer has the
 * promised shape; no part of a token appears in the message of a
 * rejected token answer (checked on a copy of the answer whose tokens
 * carry markers: see fuzz_tokens); server messages are one printable line
 * within their buffer; the sub of a JWT whose payload is a JSON object with a
 * valid string `sub` is that string.
 */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api.h"
#include "cache_types.h"
#include "doc_text.h"
#include "events.h"
#include "json.h"
#include "model.h"
#include "mqtt.h"
#include "protocol.h"
#include "skysync.h"
#include "skysync_mirror.h"
#include "util.h"

static sky_cache *cache;

/* Remove the cache directory when the fuzzer exits (it is flat). */
static char cache_dir[64];

static void remove_cache(void)
{
	sky_cache_close(cache);
	cache = NULL;
	DIR *d = opendir(cache_dir);
	struct dirent *e;
	char path[128];
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", cache_dir, e->d_name);
		unlink(path);
	}
	if (d)
		closedir(d);
	rmdir(cache_dir);
}

static void open_cache(void)
{
	snprintf(cache_dir, sizeof(cache_dir), "/tmp/skyfuzza.XXXXXX");
	if (!mkdtemp(cache_dir))
		abort();
	sky_cache_options o = SKY_CACHE_OPTIONS_INIT;
	o.durability = SKY_DURABILITY_NONE;
	o.event_log_size = 1000;
	o.pending_limit = 1000;
	if (sky_cache_open(&cache, cache_dir, &o) != 0)
		abort();
	atexit(remove_cache);
}

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_api: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static void check_rejected(int rc, const char *what)
{
	if (rc != SKY_EINVAL && rc != SKY_ELIMIT)
		fail(what, "rejected with an unexpected code");
	if (!*sky_error_last()->message)
		fail(what, "rejected without a message");
}

/* The parse with its checks of shape and code; its return code. */
static int parse_tokens_checked(const char *body, size_t len)
{
	sky_api_tokens t;
	int rc = sky__api_parse_tokens(body, len, &t);
	if (rc == 0) {
		if (!t.access_token || !*t.access_token || !t.refresh_token ||
		    !*t.refresh_token || t.expires_in_s <= 0)
			fail("tokens accepted with a bad field", NULL);
		sky__api_tokens_clear(&t);
		return 0;
	}
	check_rejected(rc, "token answer");
	if (t.access_token || t.refresh_token)
		fail("token answer", "rejected but tokens were kept");
	return rc;
}

/*
 * Around each token of the marked copy: strings that no message of ours
 * contains, so finding either in a message means a token's head or tail
 * went into it. The input's own tokens cannot be looked for: any text can
 * be a token, and the answer "oken" is in the message "token answer...".
 */
#define TOKEN_HEAD "Zq9TOKEN"
#define TOKEN_TAIL "VALUEq9Z"

/* A copy of the JSON text body whose string tokens carry the markers,
 * or NULL when it has none (not an object, or no string token). */
static char *mark_tokens(const char *body, size_t len)
{
	static const char *const fields[] = {"access_token", "refresh_token"};
	json_t *o = json_loadb(body, len, 0, NULL);
	char *marked = NULL;
	int n = 0;
	if (!json_is_object(o))
		goto done;
	for (size_t i = 0; i < 2; i++) {
		const json_t *v = json_object_get(o, fields[i]);
		if (!json_is_string(v))
			continue;
		size_t vl = json_string_length(v);
		char *s = malloc(vl + sizeof(TOKEN_HEAD) + sizeof(TOKEN_TAIL));
		if (!s)
			abort();
		memcpy(s, TOKEN_HEAD, strlen(TOKEN_HEAD));
		memcpy(s + strlen(TOKEN_HEAD), json_string_value(v), vl);
		memcpy(s + strlen(TOKEN_HEAD) + vl, TOKEN_TAIL,
		       strlen(TOKEN_TAIL));
		json_t *m = json_stringn(s, strlen(TOKEN_HEAD) + vl +
						strlen(TOKEN_TAIL));
		free(s);
		if (!m || json_object_set_new(o, fields[i], m) != 0)
			abort();
		n++;
	}
	if (n && !(marked = json_dumps(o, JSON_COMPACT)))
		abort();
done:
	json_decref(o);
	return marked;
}

static void fuzz_tokens(const char *body, size_t len)
{
	parse_tokens_checked(body, len);
	/* Secrets never go into messages. */
	char *marked = mark_tokens(body, len);
	if (!marked)
		return;
	if (parse_tokens_checked(marked, strlen(marked)) != 0) {
		const char *msg = sky_error_last()->message;
		if (strstr(msg, TOKEN_HEAD) || strstr(msg, TOKEN_TAIL))
			fail("a token in an error message", msg);
	}
	free(marked);
}

static void fuzz_lists(const char *body, size_t len)
{
	static const sky_json_limits limits[] = {{0, 64}, {256, 4}};
	for (size_t l = 0; l < 2; l++) {
		json_t *v = NULL;
		int rc =
		    sky__api_parse_array(body, len, &limits[l], "list", &v);
		if (rc == 0) {
			size_t i;
			json_t *item;
			if (!json_is_array(v))
				fail("parse_array", "accepted a non-array");
			json_array_foreach(v, i, item) {
				if (!json_is_object(item))
					fail("parse_array",
					     "accepted a non-object item");
			}
			json_decref(v);
		} else {
			check_rejected(rc, "parse_array");
		}
		v = NULL;
		rc = sky__api_parse_object(body, len, &limits[l], "object", &v);
		if (rc == 0) {
			if (!json_is_object(v))
				fail("parse_object", "accepted a non-object");
			json_decref(v);
		} else {
			check_rejected(rc, "parse_object");
		}
	}
}

static void fuzz_server_message(const char *body, size_t len)
{
	static const size_t caps[] = {1, 2, 17, 256};
	for (size_t c = 0; c < sizeof(caps) / sizeof(caps[0]); c++) {
		/* Exactly cap bytes, so a write past them is caught. */
		char *buf = malloc(caps[c]);
		if (!buf)
			abort();
		sky__api_server_message(body, len, buf, caps[c]);
		size_t n = strnlen(buf, caps[c]);
		if (n == caps[c])
			fail("server message", "not terminated in its buffer");
		for (size_t i = 0; i < n; i++)
			if ((unsigned char)buf[i] < 0x20)
				fail("server message", "a control character");
		free(buf);
	}
}

static char *b64url(const unsigned char *p, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs"
				"tuvwxyz0123456789-_";
	char *out = malloc(n / 3 * 4 + 5), *o = out;
	if (!out)
		abort();
	size_t i;
	for (i = 0; i + 2 < n; i += 3) {
		uint32_t v =
		    (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = a[v >> 18];
		*o++ = a[(v >> 12) & 63];
		*o++ = a[(v >> 6) & 63];
		*o++ = a[v & 63];
	}
	if (i + 1 == n) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = a[v >> 18];
		*o++ = a[(v >> 12) & 63];
	} else if (i + 2 == n) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = a[v >> 18];
		*o++ = a[(v >> 12) & 63];
		*o++ = a[(v >> 6) & 63];
	}
	*o = '\0';
	return out;
}

static void check_sub(const char *sub)
{
	if (sub && sky__check_id(sub, "sub") != 0)
		fail("jwt sub", "not a valid id");
}

static void fuzz_jwt(const char *text, const char *body, size_t len)
{
	char *sub = sky__api_jwt_sub(text);
	check_sub(sub);
	free(sub);
	if (len > 64 * 1024 / 4 * 3)
		return;
	char *payload = b64url((const unsigned char *)body, len);
	char *token = malloc(strlen(payload) + 16);
	if (!token)
		abort();
	sprintf(token, "eyJh.%s.sig", payload);
	sub = sky__api_jwt_sub(token);
	check_sub(sub);
	/* The payload is the input itself: its `sub` must come out, as the
	 * library's own parser reads it (a string may hold U+0000). */
	json_t *claims = sky__json_loadb(body, len, 0, NULL);
	const char *want = json_string_value(json_object_get(claims, "sub"));
	if (want && sky__check_id(want, "sub") != 0)
		want = NULL;
	if ((want == NULL) != (sub == NULL) || (want && strcmp(want, sub)))
		fail("jwt sub", "not the payload's sub");
	json_decref(claims);
	free(sub);
	free(token);
	free(payload);
}

static void fuzz_broker(const char *text)
{
	char *b = sky__api_default_broker(text);
	if (!b && !*sky_error_last()->message)
		fail("default broker", "refused without a message");
	free(b);

	char *server = malloc(strlen(text) + 16);
	if (!server)
		abort();
	sprintf(server, "https://api.%s", text);
	b = sky__api_default_broker(server);
	if (b) {
		/* ssl://mqtt.HOST:8883, HOST being the server's host. */
		size_t hl = strcspn(text, ":/?#");
		char *host = NULL;
		int port = 0, tls = 0;
		if (sky__mqtt_parse_url(b, &host, &port, &tls) != 0)
			fail("a default broker that does not parse", b);
		if (!tls || port != 8883 || strncmp(host, "mqtt.", 5) ||
		    strlen(host + 5) != hl || strncmp(host + 5, text, hl))
			fail("a default broker for another host", b);
		free(host);
		free(b);
	} else if (!*sky_error_last()->message) {
		fail("default broker", "refused without a message");
	}
	free(server);

	char *host = NULL;
	int port = 0, tls = 0;
	int rc = sky__mqtt_parse_url(text, &host, &port, &tls);
	if (rc == 0) {
		if (!host || !*host || port <= 0 || port > 65535)
			fail("broker URL", "accepted with a bad host or port");
		free(host);
	} else {
		check_rejected(rc, "broker URL");
	}
}

static void fuzz_event(const char *body, size_t len)
{
	if (!cache)
		open_cache();
	sky_parsed_event pe;
	memset(&pe, 0, sizeof(pe));
	int prc = sky__event_parse(cache, body, len, &pe);
	if (prc == 0) {
		if (!pe.payload || !pe.app || !pe.sid || !pe.eid ||
		    sky__check_id(pe.app, "app") ||
		    sky__check_id(pe.sid, "sid") ||
		    sky__check_id(pe.eid, "eid"))
			fail("event parse", "accepted without valid ids");
		sky__event_clear(&pe);
	} else {
		check_rejected(prc, "event parse");
	}
	sky_mirror_outcome outcome;
	int arc = sky_mirror_event_apply(cache, body, len, &outcome);
	if (arc != 0)
		check_rejected(arc, "event apply");
	if ((arc != 0) != (outcome == SKY_MIRROR_REJECTED))
		fail("event apply", "the outcome and the code disagree");
	if (prc != 0 && arc != prc)
		fail("event apply", "accepted an event the parser rejects");
}

/* The fast paths of parsing against the slow ones they stand for. */
static void fuzz_fast_paths(const char *body, size_t len)
{
	static const size_t flag_sets[] = {
	    JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, JSON_DECODE_ANY, 0};
	for (size_t f = 0; f < 3; f++) {
		int oom;
		json_t *fast =
		    sky__json_fast_load(body, len, flag_sets[f], &oom);
		if (!fast)
			continue;
		json_error_t err;
		json_t *ref =
		    json_loadb(body, len, flag_sets[f] | JSON_ALLOW_NUL, &err);
		char *a = json_dumps(fast, JSON_COMPACT | JSON_ENCODE_ANY);
		char *b = ref ? json_dumps(ref, JSON_COMPACT | JSON_ENCODE_ANY)
			      : NULL;
		if (!ref || !json_equal(fast, ref) || !a || !b || strcmp(a, b))
			fail("fast load", "differs from jansson");
		free(a);
		free(b);
		json_decref(fast);
		json_decref(ref);
	}

	sky_buf sorted = SKY_BUF_INIT;
	size_t depth;
	int oom;
	if (sky__json_sorted_text(body, len, 64, &sorted, &depth, &oom)) {
		sky_json_limits lim = {0, 64};
		json_t *tree = NULL;
		sky_buf dump = SKY_BUF_INIT;
		if (sky__json_parse(body, len, &lim, "doc", &tree) != 0 ||
		    !json_is_object(tree) ||
		    sky__doc_dump_sorted(&dump, tree, SIZE_MAX, 64, 0) != 0 ||
		    dump.len != sorted.len ||
		    memcmp(dump.data, sorted.data, dump.len) != 0 ||
		    depth != sky__doc_depth(tree, 100))
			fail("sorted text",
			     "differs from the dump of the tree");
		json_decref(tree);
		sky__buf_free(&dump);
	}
	sky__buf_free(&sorted);

	if (!cache)
		open_cache();
	sky_parsed_event fast, full;
	if (sky__event_scan(&cache->event_limits, sky__protocol_builtin(), body,
			    len, &fast) == 1) {
		if (sky__event_parse_tree(cache, body, len, &full) != 0)
			fail("event scan", "took an event the parse refuses");
		char *a = sky__json_dumps(fast.payload, NULL);
		char *b = sky__json_dumps(full.payload, NULL);
		if (!a || !b || strcmp(a, b) || strcmp(fast.app, full.app) ||
		    strcmp(fast.sid, full.sid) || strcmp(fast.eid, full.eid) ||
		    fast.type != full.type ||
		    fast.created_us != full.created_us)
			fail("event scan", "differs from the full parse");
		free(a);
		free(b);
		sky__event_clear(&full);
		sky__event_clear(&fast);
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	/* The body exactly as received: not NUL-terminated. */
	char *body = malloc(size ? size : 1);
	char *text = malloc(size + 1);
	if (!body || !text)
		abort();
	memcpy(body, data, size);
	memcpy(text, data, size);
	text[size] = '\0';

	fuzz_tokens(body, size);
	fuzz_lists(body, size);
	fuzz_server_message(body, size);
	fuzz_jwt(text, body, size);
	fuzz_broker(text);
	fuzz_event(body, size);
	fuzz_fast_paths(body, size);

	free(body);
	free(text);
	return 0;
}
