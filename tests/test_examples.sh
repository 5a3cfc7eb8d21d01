#!/bin/sh
# test_examples.sh - runs the example programs of examples/ on a cache
# filled with tools/examples/events.ndjson and checks what they print:
# lookup_query's session, data, query rows, page limit and cursor, its
# exit 2 for an unknown session and 1 for a bad predicate; live_query's
# entered/left ids and outcomes, and all duplicates on a second run.
# Skipped (exit 77) only when the examples are not built.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
lookup="$top_build/examples/lookup_query"
live="$top_build/examples/live_query"
offline="$top_build/examples/offline_writes"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyex.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"
field() { # field PREFIX: the text after "PREFIX: " on lines of $tmp/out
	sed -n "s/^$1: //p" "$tmp/out"
}
row_ids() { # the sessionIds of the "row:" lines, space separated
	field row | jq -r .sessionId | tr '\n' ' ' | sed 's/ $//'
}
same() { # same GOT WANT: passes when equal, else shows both
	[ "$1" = "$2" ] && return 0
	printf '  got:  %s\n  want: %s\n' "$1" "$2" >&2
	return 1
}

for p in "$lookup" "$live" "$offline"; do
	[ -x "$p" ] || { echo "SKIP: $p is not built (make check builds it)"; exit 77; }
done
command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }

check "apply example events" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"

# lookup_query: one session, its data, a query with a limit of 2.
check "lookup_query runs" run 0 "$lookup" "$db" inspections s-1001 site=Plant-7
check "session printed" same "$(field session | jq -r '.sessionId + " " + .properties.priority')" "s-1001 urgent"
check "session is get's JSON" same "$(field session)" "$("$skysync" --db "$db" get inspections s-1001)"
check "data merged" same "$(field data | jq -c .)" \
	'{"checklist":{"estop":"ok","floor":"wet","guards":"ok","lighting":"ok"},"photos":["p1.jpg","p2.jpg"]}'
check "query rows" same "$(row_ids)" "s-1001 s-1002"
check "query ends" same "$(tail -n 1 "$tmp/out")" "end"

check "two predicates" run 0 "$lookup" "$db" inspections s-1001 site=Plant-7 status=open
check "two predicates rows" same "$(row_ids)" "s-1001"

check "no predicate, limited" run 0 "$lookup" "$db" inspections s-1003
check "limit of 2 rows" same "$(row_ids)" "s-1001 s-1002"
check "a cursor for the next page" [ -n "$(field next)" ]
check "no end line" [ "$(tail -n 1 "$tmp/out" | cut -c1-5)" = "next:" ]

check "unknown session exits 2" run 2 "$lookup" "$db" inspections s-9999
check "not found message" grep -q "s-9999" "$tmp/err"
check "bad predicate exits 1" run 1 "$lookup" "$db" inspections s-1001 'bad!'
check "bad predicate named" grep -q "predicate 'bad!'" "$tmp/err"
check "missing cache exits 2 (SKY_ENOTFOUND)" run 2 "$lookup" "$tmp/nowhere" inspections s-1001
check "no cache created read-only" [ ! -e "$tmp/nowhere" ]

# live_query: entered and left ids as its events apply.
check "live_query runs" run 0 "$live" "$db"
cat >"$tmp/want" <<'OUT'
watching 1 session(s)
event ev-2001
  entered: s-2001
  outcome: applied
event ev-2002
  left: s-1001
  outcome: applied
event ev-2003
  left: s-2001
  outcome: applied
event ev-2003
  outcome: duplicate
watching 0 session(s)
OUT
check "live_query output" diff -u "$tmp/want" "$tmp/out"
check "its writes landed" run 0 "$lookup" "$db" inspections s-2001 site=Plant-9
check "moved and closed" same "$(field session | jq -r .status) $(row_ids)" "closed s-1001"
check "live_query again" run 0 "$live" "$db"
check "second run: all duplicates, nothing moves" same \
	"$(grep -c 'outcome: duplicate' "$tmp/out") $(grep -c 'entered\|left' "$tmp/out")" "4 0"
check "check clean" run 0 "$skysync" --db "$db" check

# offline_writes: two writes queued, shown at once, listed, confirmed apart.
check "offline_writes runs" run 0 "$offline" "$db" inspections s-1003
check "local view renamed, data merged" same "$(field local | cut -d' ' -f1) $(field local | cut -d' ' -f2- | jq -c '[.checklist.floor, .note]')" 'renamed ["dry","ok"]'
check "two writes pending" same "$(field pending)" "2"
check "confirmed state has neither" same "$(field confirmed)" "not yet"
check "both queued" same "$(field queued | cut -d' ' -f2- | tr '\n' ',')" "data pending,patch pending,"
check "outbox list agrees" same "$("$skysync" --db "$db" outbox list | jq -r .op | tr '\n' ',')" "data,patch,"
check "unknown session exits 2" run 2 "$offline" "$db" inspections s-9999
check "nothing queued for it" same "$("$skysync" --db "$db" outbox list | wc -l)" "2"
check "check clean with writes queued" run 0 "$skysync" --db "$db" check

echo "test_examples: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
