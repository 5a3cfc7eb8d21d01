/*
 * emu.h - the shared context of skylight-emu, a local Skylight server for
 * tests and demos (tools/emu/README.md, docs/PROTOCOL.md).
 *
 * One process, one thread, one libevent loop: the HTTP server (http.c), the
 * MQTT publisher (publish.c) and every timer of the fault injector run on
 * `base`, so no state here needs a lock. The modules hang off `struct emu`
 * (this header holds only types; each module has its own header):
 *
 *   main.c     arguments, signals, the routes, start and orderly shutdown
 *   api.c      the /v1 calls of docs/PROTOCOL.md over realm.c and auth.c
 *   admin.c    the /_admin/ endpoints (faults, stats, token expiry, drops)
 *   http.c     evhttp server, listener, request plumbing, HTTP faults;
 *              calls api.c and admin.c through main.c's route table
 *   answer.c   the request and answer types, answers written out
 *   log.c      the lines on stderr
 *   rand.c     random bytes and UUIDs from the kernel
 *   realm.c    users, groups, roles, sessions, data; permission rules;
 *              seed loading; every change builds its events (DESIGN.md §3)
 *   auth.c     access and refresh tokens
 *   state.c    optional LMDB persistence (--state DIR)
 *   publish.c  libmosquitto publisher on the same loop, event faults
 *   faults.c   fault specs, triggers, the seeded random draws, counters
 *
 * Invariant kept across modules: a change is applied to the realm, then
 * persisted (when --state is set), then answered over HTTP, and only then
 * are its events handed to the publisher. A client that sees an event can
 * therefore always read the change back over REST.
 */
#ifndef EMU_H
#define EMU_H

#include <stdint.h>
#include <stdio.h>

struct event_base;
struct emu_http;
struct emu_realm;
struct emu_auth;
struct emu_state;
struct emu_pub;
struct emu_faults;

struct emu_config {
	char listen_host[64];
	int listen_port;
	char broker_host[64];
	int broker_port;       /* 0: no broker, no events */
	const char *seed_path; /* may be NULL when --state holds a realm */
	const char *state_dir; /* NULL: in memory */
	int64_t token_ttl_s;
	int64_t refresh_ttl_s;
	uint64_t random_seed;
	int have_random_seed;
	int verbose;
	int allow_remote;
	const char *protocol_path; /* --protocol; NULL: the built-in table */
};

/* Counters served by GET /_admin/stats. */
struct emu_stats {
	uint64_t requests;     /* every HTTP request, admin included */
	uint64_t api_requests; /* /v1 requests */
	uint64_t admin_requests;
	uint64_t status[6]; /* by class: [1]=1xx .. [5]=5xx */
	uint64_t logins;
	uint64_t refreshes;
	uint64_t changes; /* writes that changed the realm */
	uint64_t events_built;
	uint64_t events_published;
	uint64_t events_dropped;    /* by an event-drop fault */
	uint64_t refused_in_window; /* requests reset while refusing */
	uint64_t mqtt_drops;
	uint64_t mqtt_connects;
	uint64_t clients_kicked;
};

struct emu {
	struct emu_config cfg;
	struct event_base *base;
	struct emu_http *http;
	struct emu_realm *realm;
	struct emu_auth *auth;
	struct emu_state *state; /* NULL: in memory */
	struct emu_pub *pub;	 /* NULL: no broker */
	struct emu_faults *faults;
	struct emu_stats stats;
	struct sky_protocol *proto; /* --protocol's table; NULL: built in */
};

#endif
