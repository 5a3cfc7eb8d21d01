/*
 * engine_options.c - the sync engine's options: a caller's
 * sky_engine_options of any version up to SKY_ENGINE_OPTIONS_VERSION is
 * copied field by field as far as that version goes, the strings are
 * copied (the password into the engine alone, never into e->o), required
 * ones checked, URLs and ids validated, and defaults filled in.
 *
 * Keeps true: after sky__engine_options_take() succeeded, e->o holds no
 * field the caller's version did not have, every string in it points at
 * a copy the engine owns, e->o.password and e->o.protocol_file are NULL
 * (the protocol file is read once, into e->proto), and the retry and
 * backoff bounds are usable (backoff_min_ms <= backoff_max_ms).
 */
#include "config.h"

#include "engine_options.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "engine_core.h"
#include "engine_state.h"
#include "error.h"
#include "mqtt.h"
#include "protocol.h"
#include "util.h"

#define RECONCILE_DEFAULT_S 600	   /* periodic reconcile while following */
#define BACKLOG_LIMIT_DEFAULT 1000 /* mosquitto's max_queued_messages */

int sky__engine_options_check(const sky_engine_options *opts)
{
	if (!opts || opts->version < 1 ||
	    opts->version > SKY_ENGINE_OPTIONS_VERSION)
		return sky__error_input("sync options: unknown version (use "
					"SKY_ENGINE_OPTIONS_INIT)");
	return 0;
}

static int dup_opt(char **dst, const char *src, const char *name, int needed)
{
	if (!src || !*src) {
		if (needed)
			return sky__error_input("sync options: %s is required",
						name);
		*dst = NULL;
		return 0;
	}
	if (!(*dst = strdup(src)))
		return sky__error_nomem();
	return 0;
}

int sky__engine_options_take(sky_engine *e, const sky_engine_options *opts)
{
	int rc;
	/* Each version's struct ends before the fields the next one added:
	 * version 1 before reconcile_interval_s, 2 before protocol_file, 3
	 * before backlog_limit, 4 before snapshot_changes. */
	memcpy(
	    &e->o, opts,
	    opts->version == 1
		? offsetof(sky_engine_options, reconcile_interval_s)
	    : opts->version == 2 ? offsetof(sky_engine_options, protocol_file)
	    : opts->version == 3 ? offsetof(sky_engine_options, backlog_limit)
	    : opts->version == 4
		? offsetof(sky_engine_options, snapshot_changes)
		: sizeof(*opts));
	if (e->o.snapshot_changes != 0 && e->o.snapshot_changes != 1)
		return sky__error_input("sync options: snapshot_changes must "
					"be 0 (a summary) or 1 (one change "
					"per session), not %d",
					e->o.snapshot_changes);
	if ((rc = dup_opt(&e->server, opts->server, "server", 1)) < 0 ||
	    (rc = dup_opt(&e->realm, opts->realm, "realm", 1)) < 0 ||
	    (rc = dup_opt(&e->user, opts->user, "user", 1)) < 0 ||
	    (rc = dup_opt(&e->password, opts->password, "password", 1)) < 0 ||
	    (rc = dup_opt(&e->cafile, opts->cafile, "cafile", 0)) < 0 ||
	    (rc = dup_opt(&e->broker, opts->broker, "broker", 0)) < 0)
		return rc;
	if (strncmp(e->server, "https://", 8) &&
	    strncmp(e->server, "http://", 7)) {
		return sky__error_input("server URL %s: must start with "
					"https:// (or http:// for a local "
					"server)",
					e->server);
	}
	if ((rc = sky__check_id(e->realm, "realm")) < 0 ||
	    (rc = sky__check_id(e->user, "user")) < 0)
		return rc;
	if (strpbrk(e->realm, "/+#")) {
		return sky__error_input(
		    "realm: must not contain '/', '+' or '#'");
	}
	if (!e->broker && !(e->broker = sky__api_default_broker(e->server)))
		return sky_error_last()->code ? sky_error_last()->code
					      : SKY_EINVAL;
	char *host = NULL;
	int port, tls;
	if ((rc = sky__mqtt_parse_url(e->broker, &host, &port, &tls)) < 0)
		return rc;
	free(host);
	e->o.server = e->server;
	e->o.broker = e->broker;
	e->o.realm = e->realm;
	e->o.user = e->user;
	e->o.password = NULL; /* only e->password holds it */
	e->o.cafile = e->cafile;
	if (!e->o.max_parallel)
		e->o.max_parallel = 16;
	if (!e->o.resync_after_offline_s)
		e->o.resync_after_offline_s = 300;
	if (!e->o.retry_limit)
		e->o.retry_limit = 6;
	if (!e->o.reconcile_interval_s)
		e->o.reconcile_interval_s = RECONCILE_DEFAULT_S;
	if (!e->o.backlog_limit)
		e->o.backlog_limit = BACKLOG_LIMIT_DEFAULT;
	if (e->o.backoff_min_ms <= 0)
		e->o.backoff_min_ms = 250;
	if (e->o.backoff_max_ms <= 0)
		e->o.backoff_max_ms = 30000;
	if (e->o.backoff_max_ms < e->o.backoff_min_ms)
		e->o.backoff_max_ms = e->o.backoff_min_ms;
	if (e->o.protocol_file) {
		if ((rc = sky__protocol_load(e->o.protocol_file,
					     &e->proto_file)) < 0)
			return rc;
		e->proto = e->proto_file;
	}
	e->o.protocol_file = NULL; /* read now, not kept */
	return 0;
}
