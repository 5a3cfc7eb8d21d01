#!/usr/bin/env python3
"""gen-realm.py - write the example realm tools/examples/realm.json.

The realm is the seed of skylight-emu (format: tools/emu/README.md): realm
"demo", a few users and groups with roles of different reach, two
applications and a few hundred sessions with string properties and small
session data objects. Everything is drawn from a fixed random seed, so
running the script again gives the same file byte for byte:

    python3 tools/examples/gen-realm.py > tools/examples/realm.json

Users (password = username + "-pass", except integration):
  integration  every permission in both applications (integration-pass)
  alice        group line-a: operator (inspections), technician (maintenance)
  bob          viewer: sees only the inspections he takes part in
  carol        group quality: auditor, reads every session, writes nothing
  dave         supervisor (inspections): creates and closes sessions
  eve          no role at all
"""
import json
import random
import sys
import uuid
from datetime import datetime, timedelta, timezone

SEED = 20240301
BASE = datetime(2024, 3, 1, 6, 0, 0, tzinfo=timezone.utc)
ALL = ["application:read", "session:read:participant", "session:read:any",
       "session:create", "session:update", "session:close"]


def ts(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def user(uid, name, groups=(), password=None):
    return {"id": uid, "username": name,
            "password": password or name + "-pass", "groups": list(groups)}


def role(name, description, permissions, participants):
    return {"name": name, "description": description,
            "permissions": permissions, "participants": participants,
            "createdBy": "u-integration", "createdAt": ts(BASE),
            "modifiedBy": "u-integration", "modifiedAt": ts(BASE)}


def u(uid):
    return {"id": uid, "type": "user"}


def g(gid):
    return {"id": gid, "type": "group"}


def main():
    rng = random.Random(SEED)

    def uid4():
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    groups = [
        {"id": "g-line-a", "name": "Line A crew"},
        {"id": "g-quality", "name": "Quality team"},
        {"id": "g-supervisors", "name": "Shift supervisors"},
    ]
    users = [
        user("u-integration", "integration", password="integration-pass"),
        user("u-alice", "alice", ["g-line-a"]),
        user("u-bob", "bob"),
        user("u-carol", "carol", ["g-quality"]),
        user("u-dave", "dave", ["g-supervisors"]),
        user("u-eve", "eve"),
    ]
    apps = [
        {"application": {
            "applicationId": "app-inspections", "name": "Line inspections",
            "description": "Guided quality inspections on the shop floor",
            "draftVersion": 4, "publishedVersion": 3,
            "createdBy": "u-integration", "createdAt": ts(BASE)},
         "roles": [
            role("integration", "Integration service account", ALL,
                 [u("u-integration")]),
            role("operator", "Line operators work their inspections",
                 ["application:read", "session:read:participant",
                  "session:update"], [g("g-line-a")]),
            role("viewer", "Sees the inspections one takes part in",
                 ["application:read", "session:read:participant"],
                 [u("u-bob")]),
            role("auditor", "Reads every inspection, changes nothing",
                 ["application:read", "session:read:any"],
                 [g("g-quality")]),
            role("supervisor", "Opens and closes inspections",
                 ["application:read", "session:read:participant",
                  "session:create", "session:close"],
                 [g("g-supervisors")]),
         ]},
        {"application": {
            "applicationId": "app-maintenance", "name": "Maintenance",
            "description": "Work orders for presses and conveyors",
            "draftVersion": 2, "publishedVersion": 2,
            "createdBy": "u-integration", "createdAt": ts(BASE)},
         "roles": [
            role("integration", "Integration service account", ALL,
                 [u("u-integration")]),
            role("technician", "Technicians create and work orders",
                 ["application:read", "session:read:participant",
                  "session:create", "session:update"], [g("g-line-a")]),
            role("auditor", "Reads every work order",
                 ["application:read", "session:read:any"],
                 [g("g-quality")]),
         ]},
    ]

    sites = ["Plant-%d" % i for i in range(1, 8)]
    lines = ["Line-%s" % c for c in "ABCDEF"]
    priorities = ["low", "medium", "high", "critical"]
    shifts = ["day", "swing", "night"]
    sessions = []
    t = BASE
    for i in range(300):
        inspection = i % 5 < 3
        app = "app-inspections" if inspection else "app-maintenance"
        t += timedelta(minutes=rng.randint(5, 40),
                       microseconds=rng.randint(0, 999999))
        site, line = rng.choice(sites), rng.choice(lines)
        creator = rng.choice(["u-integration", "u-integration", "u-alice",
                              "u-dave" if inspection else "u-alice"])
        parts = [u(creator)]
        if line == "Line-A":
            parts.append(g("g-line-a"))
        if inspection and rng.random() < 0.3:
            parts.append(u("u-bob"))
        if rng.random() < 0.1:
            parts.append(g("g-quality"))
        props = {"site": site, "line": line,
                 "priority": rng.choice(priorities),
                 "shift": rng.choice(shifts)}
        if inspection:
            props["checklist"] = rng.choice(["daily", "weekly", "audit"])
            name = "Inspection %s %s #%04d" % (site, line, i)
            data = {"checklist": {"steps": 8, "done": rng.randint(0, 8)},
                    "readings": {"temperature": round(rng.uniform(18, 32), 1),
                                 "pressure": round(rng.uniform(0.9, 1.3), 2)}}
        else:
            props["asset"] = "Press-%03d" % rng.randint(1, 60)
            props["category"] = rng.choice(["electrical", "hydraulic",
                                            "mechanical"])
            name = "Work order %s %s" % (props["asset"], site)
            data = {"hours": rng.randint(1, 12),
                    "parts": [rng.choice(["seal", "valve", "belt", "fuse"])
                              for _ in range(rng.randint(0, 3))]}
        closed = rng.random() < 0.15
        modified = t + timedelta(minutes=rng.randint(0, 90))
        sessions.append({"session": {
            "applicationId": app, "sessionId": uid4(),
            "status": "closed" if closed else "open", "isDraft": False,
            "version": apps[0 if inspection else 1]["application"]
                           ["publishedVersion"],
            "name": name, "description": "Seeded %s" % props["shift"],
            "participants": parts,
            "createdBy": creator, "createdAt": ts(t),
            "modifiedBy": creator, "modifiedAt": ts(modified),
            "properties": props}, "data": data})

    out = sys.stdout
    out.write('{\n"format": "skylight-emu-seed/1",\n"realm": "demo",\n')
    for key, items in (("groups", groups), ("users", users),
                       ("applications", apps), ("sessions", sessions)):
        out.write('"%s": [\n' % key)
        out.write(",\n".join(json.dumps(x, separators=(",", ":"))
                             for x in items))
        out.write("\n]%s\n" % ("" if key == "sessions" else ","))
    out.write("}\n")


if __name__ == "__main__":
    main()
