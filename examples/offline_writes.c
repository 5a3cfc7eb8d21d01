/*
 * offline_writes.c - writes that work offline: queue a data patch and a
 * rename, read them back at once, and deliver them with a one-shot sync
 * when a server is given, handling writes the server refuses for good.
 *
 *   offline_writes CACHE_DIR APP SESSION_ID [SERVER BROKER]
 *
 * Prints "local: name DATA", "pending: N", the confirmed server state if
 * any, and "queued: ID OP STATE" per queued write. With a server it syncs
 * as "integration" of realm "demo" (password in $SKYSYNC_PASSWORD) and
 * prints "rejected: ID STATUS" per dead letter, which it drops (a real
 * program might alert someone, or fix and retry it). Exit 0 on success,
 * 2 when the session is not in the cache, 4 on network failure, else 1.
 * Build: cc offline_writes.c $(pkg-config --cflags --libs skysync)
 */
#include <skysync.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *what)
{
	const sky_error *err = sky_error_last();
	fprintf(stderr, "offline_writes: %s: %s\n", what, err->message);
	return err->code == SKY_ENOTFOUND  ? 2
	       : err->code == SKY_ENETWORK ? 4
					   : 1;
}

/* Called by the sync engine after it moved a write to the dead letters
 * and undid its effect on the cache. The entry is borrowed. */
static int on_rejected(const sky_outbox_entry *e, void *payload)
{
	printf("rejected: %llu %d\n", (unsigned long long)e->id,
	       e->http_status);
	sky_outbox_drop(payload, e->id); /* not in flight any more */
	return 0;
}

static int print_entry(const sky_outbox_entry *e, void *payload)
{
	(void)payload;
	return printf("queued: %llu %s %s\n", (unsigned long long)e->id,
		      sky_write_op_name(e->op),
		      sky_outbox_state_name(e->state)) < 0;
}

int main(int argc, char **argv)
{
	if (argc != 4 && argc != 6) {
		fprintf(
		    stderr,
		    "usage: offline_writes CACHE APP SID [SERVER BROKER]\n");
		return 1;
	}
	const char *app = argv[2], *sid = argv[3];
	sky_cache *cache;
	if (sky_cache_open(&cache, argv[1], NULL) < 0)
		return fail("open");
	int rc = 0;
	char *session = NULL, *data = NULL, *server = NULL;
	/* Each call returns once the write is on disk; no network needed. */
	const char *patch =
	    "{\"checklist\":{\"floor\":\"dry\"},\"note\":\"ok\"}";
	if (sky_data_patch(cache, app, sid, patch, strlen(patch)) < 0 ||
	    sky_session_set_name(cache, app, sid, "Checked offline") < 0)
		goto failed;
	/* Reads show the local view at once, and can tell it is not sent. */
	unsigned pending;
	if (sky_session_get(cache, app, sid, &session, NULL) < 0 ||
	    sky_data_get(cache, app, sid, &data, NULL) < 0 ||
	    sky_session_pending(cache, app, sid, &pending) < 0) {
		rc = fail("read");
		goto out; /* session and data are freed there */
	}
	printf("local: %s %s\npending: %u\n",
	       strstr(session, "Checked offline") ? "renamed" : "?", data,
	       pending);
	if (sky_session_get_confirmed(cache, app, sid, &server, NULL) == 0)
		printf("confirmed: %s\n", strstr(server, "Checked offline")
					      ? "renamed"
					      : "not yet");
	sky_free(server);
	sky_outbox_list(cache, print_entry, NULL);
	if (argc == 6) {
		/* Deliver: a one-shot sync reads the realm, sends the outbox
		 * and returns once nothing deliverable is left. */
		sky_outbox_on_rejected(cache, on_rejected, cache);
		sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
		o.server = argv[4];
		o.broker = argv[5];
		o.realm = "demo", o.user = "integration";
		o.password = getenv("SKYSYNC_PASSWORD");
		sky_engine *engine;
		if (sky_engine_new(&engine, cache, &o) < 0)
			goto failed;
		if (sky_engine_sync_once(engine) < 0)
			rc = fail("sync");
		sky_engine_free(engine);
		sky_session_pending(cache, app, sid, &pending);
		printf("after sync, pending: %u\n", pending);
	}
out:
	sky_free(session), sky_free(data);
	sky_cache_close(cache); /* on every path: it frees what open took */
	return rc;
failed:
	rc = fail(argc == 6 ? "write or sync options" : "write");
	goto out;
}
