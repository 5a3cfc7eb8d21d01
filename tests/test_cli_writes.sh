#!/bin/sh
# test_cli_writes.sh - what the write commands print, as skysync(1),
# `--help` and docs/DESIGN.md §7 say: every write command prints the
# session as the cache now shows it (the local view, with the write), one
# JSON object; `data patch` prints the session's data after the merge.
# Also: `skysync check` passes after each write, on a session with server
# data and on one the server sent without data.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skywrites.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"

command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }

# The example realm has s-1001 (with data) and s-1003 (with data); s-9 is
# made here from the first event, without data.
check "apply example events" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"
head -n 1 "$top_src/tools/examples/events.ndjson" |
	sed 's/s-1001/s-9/g; s/ev-0001/ev-9/' >"$tmp/s9.ndjson"
check "a session without data" run 0 "$skysync" --db "$db" apply "$tmp/s9.ndjson"

jq_true() { jq -e "$@" >/dev/null; }

# is_session FILE SID: one JSON object, the session SID.
is_session() {
	[ "$(wc -l <"$1")" -eq 1 ] && jq -e --arg sid "$2" \
		'.sessionId == $sid and .applicationId == "inspections"' "$1" >/dev/null
}

for sid in s-9 s-1001; do
	check "data patch $sid" run 0 "$skysync" --db "$db" data patch inspections $sid '{"checklist":{"fire":"ok"}}'
	cp "$tmp/out" "$tmp/patched.json"
	run 0 "$skysync" --db "$db" data inspections $sid
	check "data patch $sid prints the merged data, as data shows it" same_json "$tmp/patched.json" "$tmp/out"
	check "data patch $sid: the patch is in it" jq_true '.checklist.fire == "ok"' "$tmp/patched.json"
	check "data patch $sid prints one object" [ "$(wc -l <"$tmp/patched.json")" -eq 1 ]
	check "check passes after data patch $sid" run 0 "$skysync" --db "$db" check
done
check "data patch s-1001 kept the server data" jq_true '.checklist.guards == "ok" and (.photos | length) == 2' "$tmp/patched.json"

check "session rename" run 0 "$skysync" --db "$db" session rename inspections s-9 "Renamed"
check "session rename prints the session" is_session "$tmp/out" s-9
check "with the new name" jq_true '.name == "Renamed"' "$tmp/out"
check "props set" run 0 "$skysync" --db "$db" props set inspections s-9 site=P-9
check "props set prints the session" jq_true '.properties == {"site":"P-9"}' "$tmp/out"
check "participant add" run 0 "$skysync" --db "$db" participant add inspections s-9 bob
check "participant add prints the session" is_session "$tmp/out" s-9
check "event send" run 0 "$skysync" --db "$db" event send inspections s-9 '{"note":"wet"}'
check "event send prints the session" is_session "$tmp/out" s-9
check "session close" run 0 "$skysync" --db "$db" session close inspections s-1003
check "session close prints the closed session" jq_true '.sessionId == "s-1003" and .status == "closed"' "$tmp/out"
check "check passes with every kind queued" run 0 "$skysync" --db "$db" check

# The contract is written down where users read it.
check "data patch --help says it prints the data" sh -c \
	"'$skysync' data patch --help | tr '\n' ' ' | grep -q 'Prints the session data'"
check "skysync(1) says data patch prints its data" grep -q 'data patch" :' "$top_src/docs/skysync.1"
check "README says data patch prints the data" grep -q "except \`data patch\`, which prints the" "$top_src/README.md"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
