#!/bin/sh
# test_cli.sh - the skysync command line end to end: apply the example
# events and compare get/data output with the expected files, exit codes,
# --help for every command, rejected lines reported by number, backup and
# check, and every JSONTestSuite n_*.json input rejected (exit 3) with the
# cache content byte-for-byte unchanged (mdb_dump before and after).
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
fixtures=${SKY_FIXTURES:-$top_src/../shared/fixtures}
skysync="$top_build/tools/skysync"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skycli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"

command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }
command -v mdb_dump >/dev/null || { echo "FAIL: mdb_dump is missing (lmdb-utils)"; exit 1; }

# --- the example realm ---
check "apply example events" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"
check "apply summary" [ "$(cat "$tmp/out")" = '{"applied":9,"duplicate":1,"stale":0,"deferred":1,"rejected":0}' ]
for f in s-1001 s-1002; do
	run 0 "$skysync" --db "$db" get inspections $f && cp "$tmp/out" "$tmp/got.json"
	check "get $f" same_json "$tmp/got.json" "$top_src/tests/data/example/$f.json"
done
for f in s-1001 s-1003; do
	run 0 "$skysync" --db "$db" data inspections $f && cp "$tmp/out" "$tmp/got.json"
	check "data $f" same_json "$tmp/got.json" "$top_src/tests/data/example/$f.data.json"
done
check "events lists the custom event" sh -c "'$skysync' --db '$db' events inspections s-1001 | grep -q 'wet floor'"
check "apply again: all duplicates" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"
check "duplicates counted" grep -q '"duplicate":11' "$tmp/out"
check "get of a missing session exits 2" run 2 "$skysync" --db "$db" get inspections nope
check "missing session message" grep -q "not in the cache" "$tmp/err"
check "usage error exits 1" run 1 "$skysync" --db "$db" get inspections
check "unknown command exits 1" run 1 "$skysync" --db "$db" frobnicate
check "missing cache exits 1 with advice" run 1 "$skysync" --db "$tmp/none" get a b
check "missing cache advice" grep -q "no cache at" "$tmp/err"
check "table format" run 0 "$skysync" --db "$db" --format table get inspections s-1001
check "table has fields" grep -q "^name " "$tmp/out"
check "stats" run 0 "$skysync" --db "$db" stats
check "stats counts" sh -c "jq -e '.sessions == 3 and .openSessions == 2 and .customEvents == 1' '$tmp/out' >/dev/null"
check "stats prometheus" run 0 "$skysync" --db "$db" stats --format prometheus
check "prometheus lines" grep -q '^skysync_sessions 3$' "$tmp/out"
for cmd in apply get data apps roles events stats check backup; do
	check "$cmd --help" run 0 "$skysync" "$cmd" --help
	check "$cmd --help prints usage" grep -q "^usage: skysync $cmd" "$tmp/out"
done
check "top-level --help" run 0 "$skysync" --help

# --- rejected lines are reported by number, good lines still apply ---
printf '%s\n' \
	'{"applicationId":"inspections","sessionId":"s-1003","eventId":"m1","createdAt":"2026-11-02T09:00:00Z","eventType":"session_updated","session":{"name":"Cold room 1 (east)"}}' \
	'{"applicationId":"inspections","sessionId":"s-1003","eventId":"m2","createdAt":"2026-11-02T09:00:00Z","eventType":"session_updated","session":{"name":7}}' \
	'' \
	'not json' >"$tmp/mixed.ndjson"
check "mixed input exits 3" run 3 "$skysync" --db "$db" apply "$tmp/mixed.ndjson"
check "line 2 named" grep -q '^line 2: event.session.name: must be a string' "$tmp/err"
check "line 3 named" grep -q '^line 3: empty line' "$tmp/err"
check "line 4 named" grep -q '^line 4: event is not valid JSON' "$tmp/err"
check "good line applied" sh -c "'$skysync' --db '$db' get inspections s-1003 | grep -q 'Cold room 1 (east)'"

# --- backup ---
check "backup" run 0 "$skysync" --db "$db" backup "$tmp/copy"
check "backup is a cache" run 0 "$skysync" --db "$tmp/copy" check
check "backup has the sessions" sh -c "'$skysync' --db '$tmp/copy' get inspections s-1001 | grep -q Plant-7"
check "backup refuses a used destination" run 1 "$skysync" --db "$db" backup "$tmp/copy"

# --- JSONTestSuite: every n_ file is rejected and changes nothing ---
suite="$fixtures/JSONTestSuite/test_parsing"
if [ ! -d "$suite" ]; then
	fail "JSONTestSuite not found at $suite"
else
	mdb_dump -a "$db" >"$tmp/before.dump"
	n=0
	bad=0
	for f in "$suite"/n_*.json; do
		n=$((n + 1))
		"$skysync" --db "$db" apply "$f" >/dev/null 2>"$tmp/err"
		rc=$?
		if [ $rc -ne 3 ]; then
			bad=$((bad + 1))
			echo "  $(basename "$f"): exit $rc, wanted 3" >&2
		fi
	done
	mdb_dump -a "$db" >"$tmp/after.dump"
	check "all $n n_*.json inputs rejected with exit 3" [ "$bad" -eq 0 ]
	check "at least 180 n_ inputs tried" [ "$n" -ge 180 ]
	check "cache content unchanged by rejected inputs" cmp -s "$tmp/before.dump" "$tmp/after.dump"
	check "cache still consistent" run 0 "$skysync" --db "$db" check
	check "empty input rejected" sh -c "printf '' | '$skysync' --db '$db' apply - >/dev/null 2>&1; [ \$? -eq 3 ]"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
