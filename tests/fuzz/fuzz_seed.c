/*
 * fuzz_seed.c - libFuzzer target for skylight-emu's seed loader: the
 * input is a seed file, read as the emulator reads --seed (json_load_file
 * with JSON_REJECT_DUPLICATES in main.c, here json_loadb) and given to
 * emu_realm_load (tools/emu/realm.c). Linked with realm.c and state.c;
 * main.c is left out and the few helpers it defines are stubs below.
 *
 * Checks, besides no crash or sanitizer report: a refused seed says why;
 * an accepted realm exports (emu_realm_export) to a seed that loads again
 * and exports to the same JSON. For realms of at most
 * MAX_CHECKED_SESSIONS sessions, also: saved to a fresh --state directory
 * (emu_state_save_seed) and read back (emu_state_load), it loads to the
 * same realm (sessions and applications in another order; done for one
 * input in STATE_EVERY, chosen by a hash of its bytes); and the calls
 * a client makes on it answer with a status and a body (an error with a
 * message): every user logs in, lists the applications, roles and open
 * sessions, reads each listed session and its data, and creates one
 * session per application, which is then there, and closes it.
 */
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "realm.h"
#include "state.h"
#include "util.h"

#define MAX_USERS 6
#define MAX_APPS 6
#define MAX_READS 16
#define MAX_CHECKED_SESSIONS 40
#define STATE_EVERY 8

/* ---- what main.c would provide ---- */

void emu_warn(const char *fmt, ...);
void emu_uuid4(char out[37]);

void emu_warn(const char *fmt, ...)
{
	(void)fmt;
}

/* Deterministic ids, so a crashing input replays the same way. */
static unsigned long uuid_seq;

void emu_uuid4(char out[37])
{
	snprintf(out, 37, "00000000-0000-4000-8000-%012lx", ++uuid_seq);
}

/* ---- checks ---- */

static void fail(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_seed: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

static const char *str_at(const json_t *o, const char *a, const char *b)
{
	return json_string_value(json_object_get(json_object_get(o, a), b));
}

static int by_app(const void *x, const void *y)
{
	const char *a =
	    str_at(*(json_t *const *)x, "application", "applicationId");
	const char *b =
	    str_at(*(json_t *const *)y, "application", "applicationId");
	return strcmp(a ? a : "", b ? b : "");
}

static int by_session(const void *x, const void *y)
{
	const json_t *a = *(json_t *const *)x, *b = *(json_t *const *)y;
	const char *aa = str_at(a, "session", "applicationId");
	const char *ba = str_at(b, "session", "applicationId");
	int c = strcmp(aa ? aa : "", ba ? ba : "");
	if (c)
		return c;
	const char *as = str_at(a, "session", "sessionId");
	const char *bs = str_at(b, "session", "sessionId");
	return strcmp(as ? as : "", bs ? bs : "");
}

/* Sort a list of the export in place (a new array in the object). */
static void sort_list(json_t *seed, const char *key,
		      int (*cmp)(const void *, const void *))
{
	json_t *list = json_object_get(seed, key);
	size_t n = json_array_size(list);
	json_t **v = calloc(n ? n : 1, sizeof(*v));
	if (!v)
		abort();
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(list, i);
	qsort(v, n, sizeof(*v), cmp);
	json_t *sorted = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append(sorted, v[i]);
	json_object_set_new(seed, key, sorted);
	free(v);
}

static void canonical(json_t *seed)
{
	sort_list(seed, "applications", by_app);
	sort_list(seed, "sessions", by_session);
}

static void rm_state(const char *dir)
{
	char path[256];
	snprintf(path, sizeof(path), "%s/data.mdb", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/lock.mdb", dir);
	unlink(path);
	rmdir(dir);
}

/* Save to a fresh state directory, read back, load: the same realm. */
static void check_state(const json_t *exported)
{
	/* In memory when /dev/shm is there: closing a state syncs it. */
	char dir[64], err[512];
	struct emu_state *st;
	snprintf(dir, sizeof(dir), "%s/skyfuzzs.XXXXXX",
		 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(dir))
		abort();
	if (emu_state_open(&st, dir, err, sizeof(err)) != 0)
		fail("state open", err);
	if (emu_state_save_seed(st, exported) != 0)
		fail("state save", "an accepted realm could not be saved");
	json_t *seed = NULL, *tokens = NULL;
	if (emu_state_load(st, &seed, &tokens, err, sizeof(err)) != 0)
		fail("state load", err);
	emu_state_close(st);
	rm_state(dir);
	struct emu_realm *r;
	if (emu_realm_load(&r, seed, err, sizeof(err)) != 0)
		fail("a saved realm does not load", err);
	json_t *again = emu_realm_export(r);
	json_t *want = json_deep_copy(exported);
	canonical(again);
	canonical(want);
	if (!json_equal(again, want))
		fail("the state round trip changed the realm", NULL);
	json_decref(again);
	json_decref(want);
	json_decref(seed);
	json_decref(tokens);
	emu_realm_free(r);
}

static void check_result(emu_result *res, const char *what)
{
	if (res->status < 200 || res->status > 499 || !res->body)
		fail(what, "an answer without a status or a body");
	if (res->status >= 300 &&
	    !json_is_string(json_object_get(res->body, "message")))
		fail(what, "an error answer without a message");
	emu_result_clear(res);
}

/* What clients do: reads for every user, then a create and a close. */
static void exercise(struct emu_realm *r, const json_t *seed)
{
	size_t i, j, k;
	const json_t *u, *a;
	json_t *body =
	    json_pack("{s:s, s:{s:s}}", "name", "fuzz", "properties", "k", "v");
	json_t *close = json_pack("{s:s}", "status", "closed");
	json_array_foreach(json_object_get(seed, "users"), i, u) {
		if (i == MAX_USERS)
			break;
		const char *uid = json_string_value(json_object_get(u, "id"));
		const char *name =
		    json_string_value(json_object_get(u, "username"));
		const char *pw =
		    json_string_value(json_object_get(u, "password"));
		const char *who = emu_realm_login(r, name, pw);
		if (!who || strcmp(who, uid))
			fail("a user of the seed cannot log in", name);
		emu_result res = EMU_RESULT_INIT;
		emu_realm_list_apps(r, uid, &res);
		check_result(&res, "list apps");
		json_array_foreach(json_object_get(seed, "applications"), j,
				   a) {
			if (j == MAX_APPS)
				break;
			const char *app =
			    str_at(a, "application", "applicationId");
			emu_realm_get_app(r, uid, app, &res);
			check_result(&res, "get app");
			emu_realm_list_roles(r, uid, app, &res);
			check_result(&res, "list roles");
			emu_realm_list_sessions(r, uid, app, &res);
			json_t *list = json_incref(res.body);
			int listed = res.status == 200;
			check_result(&res, "list sessions");
			const json_t *s;
			json_array_foreach(listed ? list : NULL, k, s) {
				if (k == MAX_READS)
					break;
				const char *sid = json_string_value(
				    json_object_get(s, "sessionId"));
				emu_realm_get_session(r, uid, app, sid, &res);
				if (res.status != 200)
					fail("a listed session cannot be read",
					     sid);
				check_result(&res, "get session");
				emu_realm_get_data(r, uid, app, sid, &res);
				check_result(&res, "get data");
			}
			json_decref(list);
			emu_realm_create_session(r, uid, app, body, &res);
			if (res.status == 201) {
				char sid[256], app2[256];
				if (!res.changed_session || !res.events)
					fail("a create without its change",
					     NULL);
				snprintf(sid, sizeof(sid), "%s", res.sid);
				snprintf(app2, sizeof(app2), "%s", res.app);
				check_result(&res, "create session");
				if (!emu_realm_session(r, app2, sid) ||
				    !emu_realm_data(r, app2, sid))
					fail("a created session is missing",
					     sid);
				emu_realm_patch_session(r, uid, app2, sid,
							close, &res);
				check_result(&res, "close session");
			} else {
				check_result(&res, "create session");
			}
		}
	}
	json_decref(body);
	json_decref(close);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	json_error_t jerr;
	char err[512];
	json_t *seed =
	    json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
	if (!seed)
		return 0;
	struct emu_realm *r = NULL;
	err[0] = '\0';
	if (emu_realm_load(&r, seed, err, sizeof(err)) != 0) {
		if (!err[0])
			fail("a seed refused without a message", NULL);
		json_decref(seed);
		return 0;
	}
	json_decref(seed);

	/* Export, load the export: the same export. */
	json_t *exported = emu_realm_export(r);
	if (!exported)
		fail("export", "no seed for an accepted realm");
	struct emu_realm *again;
	if (emu_realm_load(&again, exported, err, sizeof(err)) != 0)
		fail("an exported realm does not load", err);
	json_t *twice = emu_realm_export(again);
	if (!json_equal(exported, twice))
		fail("export, load, export changed the realm", NULL);
	if (emu_realm_session_count(again) != emu_realm_session_count(r))
		fail("export, load changed the session count", NULL);
	json_decref(twice);
	emu_realm_free(again);

	/* The slower checks for realms of a size the fuzzer makes (a big
	 * seed like tools/examples/realm.json would take a second a run). */
	if (emu_realm_session_count(r) <= MAX_CHECKED_SESSIONS) {
		/* An LMDB environment costs milliseconds to open and close
		 * under ASan: one accepted input in STATE_EVERY (chosen by
		 * its bytes, so a crash replays) takes the state round trip. */
		if (sky__hash64(data, size) % STATE_EVERY == 0)
			check_state(exported);
		exercise(r, exported);
	}
	json_decref(exported);
	emu_realm_free(r);
	return 0;
}
