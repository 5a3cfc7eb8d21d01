/*
 * engine_state.h - what the sync engine holds while it runs, shared by
 * the files that make it up: the engine object (struct sky_engine), the
 * received events and their queues, and the snapshot under way. The
 * services of the engine's core that every part uses (logging, timers,
 * the state change, failure, change notices, the workers) are in
 * engine_core.h, which the parts include beside this one.
 *
 * The parts (auth.c, broker.c, stream.c, resync.c, reconcile.c,
 * engine_options.c) include this header and their own; this header
 * includes none of theirs nor the core's, so it is the lowest layer of
 * the engine. The invariants of the engine (engine.c, top) hold for
 * every field here: everything runs on the engine's loop thread, and a
 * field that belongs to one part is changed only by that part (its
 * comment says which).
 */
#ifndef SKY_ENGINE_STATE_H
#define SKY_ENGINE_STATE_H

#include <stddef.h>
#include <stdint.h>

#include "http.h"
#include "keyset.h"
#include "mqtt.h"
#include "protocol.h"
#include "mirror.h"
#include "repair.h"
#include "skysync.h"

struct event;
struct event_base;
struct sky_engine_req; /* engine_core.h */

#define FETCH_BUCKETS 1024 /* the hash table of re-reads (stream.c) */

/* One received event. The strings share one allocation with the text. */
typedef struct {
	char *text; /* the JSON text, NUL-terminated */
	size_t len;
	const char *app, *sid, *eid, *type; /* from the payload, or "" */
	int64_t created_us;		    /* 0 when not readable */
	uint64_t seq;			    /* arrival order */
	int after_read;			    /* released after a read */
} evitem;

typedef struct {
	evitem *v;
	size_t head, n, cap;
} evq;

/* The snapshot under way (resync.c); its jobs are resync.c's own. */
typedef struct snap {
	sky_engine *e;
	int resync;
	int resume;  /* resumed: read only what differs (resync.c) */
	int started; /* the application list was asked for */
	int again;   /* events may have been lost meanwhile: redo */
	struct sky_engine_req *apps_req;
	struct sjob **jobs;
	size_t njobs, cap, next;
	unsigned inflight;
	/* app \0 sid of every listed session, with the as_of and the read's
	 * upper bound it was stored with (0 until stored) */
	sky__keyset visible;
	sky__keyset apps;	/* listed application ids */
	sky__parsed_put *batch; /* sessions (refs) and data (owned) to store */
	unsigned *batch_what;
	size_t nbatch;
	sky_sync_progress progress;
	int64_t last_report_us;
} snap;

struct sky_engine {
	sky_cache *cache;
	int lock_fd; /* engine.lock, held for the engine's life (enginelock.c)
		      */
	sky_engine_options o; /* strings point at the copies below */
	char *server, *broker, *realm, *user, *password, *cafile;
	const sky_protocol *proto; /* the built-in table or proto_file's */
	sky_protocol *proto_file;

	struct event_base *base;
	int own_base;
	int running;	/* started and not yet shut down */
	int follow_run; /* this run stays live */
	int stopping;	/* a stop or failure is on its way */
	sky_engine_state state;
	int fail_code;
	char fail_msg[256];

	sky_http_client *http;
	sky_mqtt *mqtt;
	sky_mqtt
	    *mqtt_retire; /* ending the broker session of an old identity */
	struct event *ev_retire; /* stops it, outside its callbacks */
	struct event *ev_stop, *ev_apply, *ev_fetch, *ev_flush, *ev_snap_retry,
	    *ev_snap_go, *ev_broker_wait, *ev_refresh, *ev_heartbeat,
	    *ev_resync;
	struct sky_engine_req *reqs;

	/* authentication */
	char *access, *refresh, *sub;
	struct json_t *groups; /* the token's groups claim; NULL: not said */
	int64_t access_got_us, access_ttl_us, refresh_exp_us;
	unsigned auth_gen;
	int auth_busy;
	int token_from_refresh; /* the access token came from a refresh */

	/* broker */
	int broker_up;
	int broker_seen; /* a CONNACK was accepted before */
	int64_t broker_lost_us;
	int64_t suback_mono_us; /* local monotonic time of the last SUBACK */
	int need_resync;

	/* events */
	evq incoming, held_all;
	int holding_all;
	int apply_armed;
	uint64_t seq;

	/* re-reads */
	sky__keyset gone; /* sessions found gone: events need a read */
	struct fetch *ftab[FETCH_BUCKETS];
	struct fetch *fq_head, *fq_tail;
	unsigned fetch_inflight;
	unsigned fetch_count; /* scheduled or in flight */

	snap *snap;
	unsigned snap_failures;
	int first_done;	  /* a snapshot completed in this run */
	int online;	  /* workers were told online */
	int once_waiting; /* one-shot: snapshot done, waiting for workers */

	struct worker *workers;
	/* Sessions marked stale (their last read failed), loaded from the
	 * cache at start; val[0] counts failures, for the backoff. */
	sky__keyset stale;
	/* The periodic reconcile (reconcile.c). */
	struct event *ev_reconcile;
	struct rjob *rjobs;
	struct sky_engine_req *rec_apps_req;
	int rec_running;
	unsigned rec_refetches;
	/* Resuming (resync.c, "Resuming"). */
	int resume_present;   /* the run's first CONNACK kept our session */
	int counting_backlog; /* from that CONNACK until the backlog is in */
	int64_t drain_start_us;
	struct event *ev_drain;
	sky__keyset named; /* sessions the backlog could not apply alone */
	int resume_next;   /* the next snapshot is a resumed one */
	int full_why;	   /* else why it is full (SKY_SYNC_WHY_*) */
	uint64_t req_base; /* http requests sent before this sync */
	int64_t
	    prev_sync_us; /* the cache's last snapshot when this run began */
	sky_sync_status st;
	/* The changes of the snapshot under way, for its summary (counted
	 * until the summary goes, which may be after e->snap is freed: the
	 * retention's removals belong to it). */
	uint64_t snap_added, snap_changed, snap_removed;
	int64_t last_warn_us;
	unsigned warns_suppressed;
	/* The steps of the state machine that need the parts above the
	 * core (broker.c, resync.c): engine.c sets them, and the parts
	 * below reach them through sky__engine_after_login/_resync. */
	void (*after_login)(sky_engine *e);
	void (*resync)(sky_engine *e);
};

#endif
