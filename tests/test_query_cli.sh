#!/bin/sh
# test_query_cli.sh - `skysync query` end to end on the example events:
# rows as `get` prints them, in (createdAt, sessionId) order, predicates
# and escaping, exit 1 naming a bad predicate, --limit with the next
# cursor on stderr and --cursor to resume, --explain as JSON and as a
# table, --as with no roles cached, `--` before predicates, the session
# fields (createdBy, modifiedBy, isDraft, version, createdAt, modifiedAt
# ranges), --order/--desc with cursors, --count, refused look-alike
# names, and `check` clean afterwards. Skipped (exit 77) while the command is not built in.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyq.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"
ids() { # the sessionIds of the JSON lines in $tmp/out, space separated
	jq -r .sessionId "$tmp/out" | tr '\n' ' ' | sed 's/ $//'
}
q() { "$skysync" --db "$db" query "$@"; }

"$skysync" query --help >/dev/null 2>&1 || { echo "SKIP: skysync query is not built in"; exit 77; }
command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }

check "apply example events" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"

check "no predicate: every session" run 0 q inspections
check "in createdAt order" [ "$(ids)" = "s-1001 s-1002 s-1003" ]
run 0 "$skysync" --db "$db" get inspections s-1001 && cp "$tmp/out" "$tmp/get.json"
run 0 q inspections site=Plant-7 line=3
check "a row is printed as get prints it" cmp -s "$tmp/out" "$tmp/get.json"
run 0 q inspections site=Plant-7
check "equality rows" [ "$(ids)" = "s-1001 s-1002" ]
run 0 q inspections site=Plant-7 status=open
check "two predicates" [ "$(ids)" = "s-1001" ]
run 0 q inspections 'priority=low|high'
check "any of" [ "$(ids)" = "s-1002 s-1003" ]
run 0 q inspections 'priority!=low'
check "not equal" [ "$(ids)" = "s-1001 s-1003" ]
run 0 q inspections 'site^=Plant'
check "prefix" [ "$(ids)" = "s-1001 s-1002" ]
run 0 q inspections 'asset?'
check "exists" [ "$(ids)" = "s-1002" ]
run 0 q inspections participant=alice
check "participant" [ "$(ids)" = "s-1001" ]
run 0 q inspections participant=shift-a
check "participant through a group" [ "$(ids)" = "s-1001" ]
run 0 q inspections 'name^=Line 3'
check "name prefix" [ "$(ids)" = "s-1001" ]
run 0 q inspections props.status=open
check "props.status is a property, not the status" [ -z "$(ids)" ]
run 0 q inspections -- site=Plant-7
check "-- before predicates" [ "$(ids)" = "s-1001 s-1002" ]
check "nothing matches: exit 0, no output" run 0 q inspections site=nowhere
check "... and empty" [ ! -s "$tmp/out" ]
check "unknown application: exit 0" run 0 q no-such-app

check "bad predicate exits 1" run 1 q inspections site=Plant-7 'site'
check "... and names it" grep -q "predicate 'site'" "$tmp/err"
check "bad status exits 1" run 1 q inspections status=opne
check "bad cursor exits 1" run 1 q inspections --cursor 'x!'
check "bad limit exits 1" run 1 q inspections --limit -3
check "unknown option exits 1" run 1 q inspections --frob
check "missing APP exits 1" run 1 q

# Pagination: one row per page, the cursor on stderr.
check "page 1" run 0 q inspections --limit 1
check "page 1 row" [ "$(ids)" = "s-1001" ]
cursor=$(sed -n 's/.*--cursor \(.*\)$/\1/p' "$tmp/err")
check "page 1 cursor" [ -n "$cursor" ]
check "page 2" run 0 q inspections --limit 1 --cursor "$cursor"
check "page 2 row" [ "$(ids)" = "s-1002" ]
cursor=$(sed -n 's/.*--cursor \(.*\)$/\1/p' "$tmp/err")
check "page 3" run 0 q inspections --limit 1 --cursor "$cursor"
check "page 3 row" [ "$(ids)" = "s-1003" ]
check "last page: no cursor" [ ! -s "$tmp/err" ]

# The plan.
check "explain" run 0 q inspections 'priority?' asset=forklift-12 --explain
check "explain is one JSON object" [ "$(jq -r '.steps[0].step' "$tmp/out")" = scan ]
check "explain drives by the smaller set" [ "$(jq -r '.steps[0].what' "$tmp/out")" = asset=forklift-12 ]
check "explain counts" [ "$(jq -c '[.steps[].estimated, .rows]' "$tmp/out")" = "[1,3,1]" ]
check "explain as a table" run 0 "$skysync" --db "$db" --format table query inspections site=Plant-7 --explain
check "table header" grep -q "^step .*estimated .*actual" "$tmp/out"

check "table of sessions" run 0 "$skysync" --db "$db" --format table query inspections site=Plant-7
check "table rows" [ "$(grep -c '^s-100' "$tmp/out")" = 2 ]

# No roles are cached for the example: a viewer sees nothing.
check "--as without roles" run 0 q inspections --as alice --groups shift-a
check "... sees nothing" [ ! -s "$tmp/out" ]
check "--groups needs --as" run 1 q inspections --groups g1

# Session fields. The example: s-1001 alice 08:00/08:15, s-1002 bob
# 08:05/08:30, s-1003 carol 08:40/08:40 (createdAt/modifiedAt), version 4.
run 0 q inspections createdBy=alice
check "createdBy" [ "$(ids)" = "s-1001" ]
run 0 q inspections 'createdBy!=alice' 'modifiedBy=bob|carol'
check "createdBy != and modifiedBy alternatives" [ "$(ids)" = "s-1002 s-1003" ]
run 0 q inspections isDraft=false version=4
check "isDraft and version" [ "$(ids)" = "s-1001 s-1002 s-1003" ]
run 0 q inspections 'version>4'
check "version range" [ -z "$(ids)" ]
run 0 q inspections 'createdAt>=2026-11-02T08:05:00Z' 'createdAt<2026-11-02T08:40:00Z'
check "createdAt range" [ "$(ids)" = "s-1002" ]
run 0 q inspections 'modifiedAt>2026-11-02T08:15:00Z'
check "modifiedAt range" [ "$(ids)" = "s-1002 s-1003" ]
check "createdBy=u-alice is the field, not a property" run 0 q inspections createdBy=u-alice
check "... and matches nothing" [ -z "$(ids)" ]
check "a look-alike is refused" run 1 q inspections created_by=alice
check "... naming the field" grep -q "looks like the field createdBy" "$tmp/err"
check "an uncovered field is refused" run 1 q inspections description=x
check "props.KEY still names a property" run 0 q inspections props.createdBy=alice
check "a range on a property name is the property" run 0 q inspections line=3
check "... which still works unprefixed" [ "$(ids)" = "s-1001" ]
run 0 q inspections 'modifiedAt>=2026-11-02T08:00:00Z' --explain
check "explain: a modifiedAt range is an index step" [ "$(jq -r '.steps[0].using' "$tmp/out")" != record ]
run 0 q inspections 'createdAt>=2026-11-02T08:05:00Z' --explain
check "explain: a createdAt range is a range of positions" [ "$(jq -r '.steps[1].step' "$tmp/out")" = range ]

# Orders.
run 0 q inspections --desc
check "--desc" [ "$(ids)" = "s-1003 s-1002 s-1001" ]
run 0 q inspections --order modifiedAt
check "--order modifiedAt" [ "$(ids)" = "s-1001 s-1002 s-1003" ]
check "bad --order exits 1" run 1 q inspections --order name
check "page 1 newest first" run 0 q inspections --order modifiedAt --desc --limit 2
check "page 1 rows" [ "$(ids)" = "s-1003 s-1002" ]
cursor=$(sed -n 's/.*--cursor \(.*\)$/\1/p' "$tmp/err")
check "page 2" run 0 q inspections --order modifiedAt --desc --limit 2 --cursor "$cursor"
check "page 2 row" [ "$(ids)" = "s-1001" ]
check "a cursor of another order exits 1" run 1 q inspections --limit 2 --cursor "$cursor"
check "... and says so" grep -q "another order" "$tmp/err"

# Counts.
check "--count" run 0 q inspections --count
check "... every session" [ "$(cat "$tmp/out")" = 3 ]
run 0 q inspections --count site=Plant-7 'createdBy!=bob'
check "--count with predicates" [ "$(cat "$tmp/out")" = 1 ]
check "--count --limit exits 1" run 1 q inspections --count --limit 1
run 0 q inspections --count site=Plant-7 --explain
check "--count --explain" [ "$(jq -r .rows "$tmp/out")" = 2 ]

check "the indexes check clean" run 0 "$skysync" --db "$db" check

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
