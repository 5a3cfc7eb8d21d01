/*
 * publish.h - the MQTT side of skylight-emu: publishes each event of
 * DESIGN.md §3 on
 * realms/{realm}/applications/{app}/sessions/{sid}/{eventType} at QoS 1,
 * applies the event faults, and can drop MQTT connections on demand.
 */
#ifndef EMU_PUBLISH_H
#define EMU_PUBLISH_H

#include <jansson.h>
#include <stdint.h>

struct emu;
struct emu_pub;

/* Start connecting to the broker (retried in the background). */
int emu_pub_open(struct emu_pub **out, struct emu *emu);
/* Flush what can be flushed quickly, disconnect, free. NULL: no-op. */
void emu_pub_close(struct emu_pub *p);

/* Publish one event (borrowed), subject to the event faults. */
void emu_pub_event(struct emu_pub *p, const json_t *event);

/*
 * Drop MQTT connections: the emulator's own (reconnected after ms; events
 * meanwhile are queued and published after), and every client of the
 * realm the broker told us about (client id "{realm}-..."), which is
 * kicked by a client-id takeover. Returns the number of clients kicked.
 */
unsigned emu_pub_drop(struct emu_pub *p, int64_t ms);

/* For stats: connected to the broker, events waiting to be sent, clients
 * of the realm known to be connected. */
int emu_pub_connected(const struct emu_pub *p);
unsigned emu_pub_queued(const struct emu_pub *p);
unsigned emu_pub_known_clients(const struct emu_pub *p);

#endif
