#!/bin/sh
# test_service.sh - `skysync sync --follow` as a service, against
# skylight-emu (and mosquitto when it is installed):
#  - `skysync health` fails with its reason on a cache never synced
#    (none at all, or one filled by `apply`), passes after a sync, fails
#    naming the count when a write became a dead letter (the emulator
#    refuses it with 403), and fails with --max-age 1 once the sync is
#    older than that.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
emu="$top_build/tools/skylight-emu"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyservice.XXXXXX")
emu_pid=
trap 'sky_stop "$emu_pid"; rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
. "$top_src/tests/lib.sh"
. "$top_src/tools/servers.sh"

command -v curl >/dev/null || { echo "SKIP: curl is missing"; exit 77; }

one_line() { # one_line FILE REGEX: FILE is one line matching REGEX
	[ "$(wc -l <"$1")" -eq 1 ] && grep -q -- "$2" "$1"
}

# --- health on caches never synced ---
db="$tmp/db"
check "health on no cache exits 4" run 4 "$skysync" --db "$db" health
check "  saying never synced" one_line "$tmp/out" '^never synced'
check "health --help" run 0 "$skysync" health --help
check "  names --max-age" grep -q -- '--max-age' "$tmp/out"
check "health refuses an unknown argument (exit 1)" run 1 "$skysync" --db "$db" health --bogus
check "apply fills a cache" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"
check "health on a cache never synced exits 4" run 4 "$skysync" --db "$db" health
check "  saying never synced" one_line "$tmp/out" '^never synced$'

if ! sky_emu_start "$emu" "$tmp/emu.out" "$tmp/emu.log" 0 \
	--seed "$top_src/tools/examples/realm.json"; then
	fail "skylight-emu did not start: $(head -1 "$tmp/emu.log")"
	echo "$passed passed, $failed failed"
	exit 1
fi
emu_pid=$sky_emu_pid
url="http://127.0.0.1:$sky_emu_port"
printf 'integration-pass\n' >"$tmp/pw"
chmod 600 "$tmp/pw"
# No broker for a one-shot sync; port 1 is never one.
sync_args="--server $url --broker mqtt://127.0.0.1:1 --realm demo --user integration --password-file $tmp/pw --quiet"

sdb="$tmp/sdb"
check "sync" run 0 "$skysync" --db "$sdb" sync $sync_args
check "health after a sync exits 0" run 0 "$skysync" --db "$sdb" health
check "  and prints nothing" [ ! -s "$tmp/out" ]
sleep 2
check "health --max-age 1 on a sync 2 s old exits 4" run 4 "$skysync" --db "$sdb" health --max-age 1
check "  saying how old" one_line "$tmp/out" '^last sync [0-9]*s ago'

# A rename the server refuses for good becomes a dead letter.
sid=ee7abd9c-135b-49b9-b0f6-ea235cbe76ef
check "queue a rename" run 0 "$skysync" --db "$sdb" session rename app-inspections $sid "Refused"
check "the emulator refuses PATCH with 403" sh -c \
	"curl -sf -X POST -d '\"error:code=403,method=PATCH\"' '$url/_admin/faults' >/dev/null"
check "sync leaves a dead letter (exit 3)" run 3 "$skysync" --db "$sdb" sync $sync_args
check "health with a dead letter exits 3" run 3 "$skysync" --db "$sdb" health
check "  naming the count" one_line "$tmp/out" '^1 dead letter '

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
