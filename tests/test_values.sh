#!/bin/sh
# test_values.sh - every value the server can send comes back exactly, and
# nothing invalid gets in. A session whose name, description and property
# value hold \u0000, and data holding \u0000, integers of 21 and more digits
# (beyond 64 bits, one not even a double) and the real 0.94, go through
# `skysync apply` and through `skysync sync` from skylight-emu (seeded with
# them), and `get` / `data` print them byte for byte as expected; a data
# patch with such values queued offline is delivered by `sync` and comes
# back the same from the server in a fresh cache. Queries compare whole
# values (site=Plant does not match "Plant\u00007"). A member name or an id
# holding \u0000, a big number as a property value and a line with a raw NUL
# byte exit 3, name what is wrong, and leave the cache unchanged.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
emu="$top_build/tools/skylight-emu"
values="$top_src/tests/data/values"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyvalues.XXXXXX")
emu_pid=
cleanup() {
	[ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
. "$top_src/tests/lib.sh"

command -v mdb_dump >/dev/null || { echo "FAIL: mdb_dump is missing (lmdb-utils)"; exit 1; }

# same_bytes FILE_A FILE_B: identical bytes, else both shown.
same_bytes() {
	cmp -s "$1" "$2" && return 0
	echo "  got:      $(cat "$1")" >&2
	echo "  expected: $(cat "$2")" >&2
	return 1
}
# count_lines N: $tmp/out has N lines.
count_lines() { [ "$(wc -l <"$tmp/out")" -eq "$1" ]; }

# --- through skysync apply ---
db="$tmp/db"
check "apply the events" run 0 "$skysync" --db "$db" apply "$values/events.ndjson"
check "both applied" grep -q '"applied":2,.*"rejected":0' "$tmp/out"
run 0 "$skysync" --db "$db" get app-values s-nul
check "get: \\u0000 in name, description, property value, byte for byte" same_bytes "$tmp/out" "$values/s-nul.json"
run 0 "$skysync" --db "$db" data app-values s-nul
check "data: \\u0000, 21-digit integers, 0.94, byte for byte" same_bytes "$tmp/out" "$values/s-nul.data.json"
check "data: the 21-digit integers as written" grep -q '"big":100000000000000000000,.*"neg":-123456789012345678901,' "$tmp/out"
check "data: 0.94, not 0.93999999999999995" grep -q '"ratio":0.94}' "$tmp/out"
check "query site^=Plant finds it" run 0 "$skysync" --db "$db" query app-values 'site^=Plant'
check "  one session" count_lines 1
check "query site=Plant does not (the value is longer)" run 0 "$skysync" --db "$db" query app-values 'site=Plant'
check "  no session" count_lines 0
check "query name^=Line finds it" run 0 "$skysync" --db "$db" query app-values 'name^=Line'
check "  one session" count_lines 1
check "query name=Line does not" run 0 "$skysync" --db "$db" query app-values 'name=Line'
check "  no session" count_lines 0
check "table format shows \\u0000 as a space" run 0 "$skysync" --db "$db" --format table get app-values s-nul
check "  the whole name" grep -q '^name  *Line 3$' "$tmp/out"
check "  the whole property" grep -q 'site=Plant 7' "$tmp/out"
check "the cache checks" run 0 "$skysync" --db "$db" check

# --- refused: exit 3, the reason named, nothing changed ---
ev='{"applicationId":"app-values","sessionId":"s-nul","eventId":"ev-bad","source":"api","userId":"u-integration","createdAt":"2026-01-05T09:02:00Z","timestamp":1767603720000,"version":1,"eventType":'
mkdir "$tmp/ev"
printf '%s\n' "$ev\"session_data_updated\",\"data\":{\"a\\u0000b\":1}}" >"$tmp/ev/namenul"
printf '%s\n' "$ev\"session_properties_updated\",\"session\":{\"applicationId\":\"app-values\",\"sessionId\":\"s-nul\",\"properties\":{\"k\\u0000\":\"v\"}}}" >"$tmp/ev/propnamenul"
printf '%s\n' "$ev\"session_properties_updated\",\"session\":{\"applicationId\":\"app-values\",\"sessionId\":\"s-nul\",\"properties\":{\"k\":100000000000000000000}}}" >"$tmp/ev/propbig"
printf '%s\n' "$(echo "$ev" | sed 's/"sessionId":"s-nul"/"sessionId":"s\\u0000x"/')\"session_data_updated\",\"data\":{\"a\":1}}" >"$tmp/ev/idnul"
printf '%s\n' "$(echo "$ev" | sed 's/"eventId":"ev-bad"/"eventId":"e\\u0000"/')\"session_data_updated\",\"data\":{\"a\":1}}" >"$tmp/ev/eidnul"
{ printf '%s' "$ev\"session_data_updated\",\"data\":{\"v\":1"; printf '\000}}\n'; } >"$tmp/ev/rawnul"
{ printf '%s' "$ev\"session_data_updated\",\"data\":{\"v\":1}}"; printf '\000\n'; } >"$tmp/ev/rawnulend"
mdb_dump -a "$db" >"$tmp/before.dump" || fail "mdb_dump before"
refused() { # refused NAME FILE PATTERN
	check "$1: exit 3" run 3 "$skysync" --db "$db" apply "$tmp/ev/$2"
	check "$1: one line naming it" grep -Eq "^line 1: .*($3)" "$tmp/err"
	mdb_dump -a "$db" >"$tmp/after.dump"
	check "$1: cache unchanged" cmp -s "$tmp/before.dump" "$tmp/after.dump"
}
refused "\\u0000 in a data member name" namenul 'member name.*U\+0000'
refused "\\u0000 in a property name" propnamenul 'member name.*U\+0000'
refused "a big number as a property value" propbig 'properties\.k.*strings, not a number'
refused "\\u0000 in sessionId" idnul 'event\.sessionId.*U\+0000'
refused "\\u0000 in eventId" eidnul 'event\.eventId.*U\+0000'
refused "a raw NUL byte inside the line" rawnul 'raw NUL byte'
refused "a raw NUL byte after the event" rawnulend 'raw NUL byte'

# --- through skysync sync from skylight-emu ---
"$emu" --listen 127.0.0.1:0 --seed "$values/realm.json" -v \
	>"$tmp/emu.out" 2>"$tmp/emu.log" &
emu_pid=$!
port=
i=0
while [ $i -lt 50 ] && [ -z "$port" ]; do
	port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$tmp/emu.out")
	[ -n "$port" ] || sleep 0.1
	i=$((i + 1))
done
if [ -z "$port" ]; then
	fail "skylight-emu did not start: $(tail -1 "$tmp/emu.log")"
else
	printf '%s\n' integration-pass >"$tmp/pw"
	chmod 600 "$tmp/pw"
	# No broker is needed for a one-shot sync; port 1 is never a broker.
	sync_args="--server http://127.0.0.1:$port --broker mqtt://127.0.0.1:1 --realm demo --user integration --password-file $tmp/pw"
	sdb="$tmp/sdb"
	check "sync from the emulator" run 0 "$skysync" --db "$sdb" sync $sync_args
	run 0 "$skysync" --db "$sdb" get app-values s-nul
	check "sync: get byte for byte" same_bytes "$tmp/out" "$values/s-nul.json"
	run 0 "$skysync" --db "$sdb" data app-values s-nul
	check "sync: data byte for byte" same_bytes "$tmp/out" "$values/s-nul.data.json"

	# A patch queued offline, delivered, then read back from the server.
	patch='{"w":"p\u0000q","n":123456789012345678901234,"r":0.1,"i":-9223372036854775809}'
	check "data patch with such values (queued)" run 0 "$skysync" --db "$sdb" data patch app-values s-nul "$patch"
	check "outbox list" run 0 "$skysync" --db "$sdb" outbox list
	check "  shows the queued body as written" grep -qF "\"body\":$patch}" "$tmp/out"
	check "sync delivers it" run 0 "$skysync" --db "$sdb" sync $sync_args
	check "the outbox is empty" run 0 "$skysync" --db "$sdb" outbox list
	check "  nothing listed" count_lines 0
	check "a fresh cache syncs" run 0 "$skysync" --db "$tmp/sdb2" sync $sync_args
	run 0 "$skysync" --db "$tmp/sdb2" data app-values s-nul
	printf '%s\n' '{"big":100000000000000000000,"i":-9223372036854775809,"list":[0.1,1e300,5e-324,18446744073709551616],"n":123456789012345678901234,"neg":-123456789012345678901,"note":"x\u0000y","r":0.1,"ratio":0.94,"w":"p\u0000q"}' >"$tmp/want.json"
	check "the server kept the patch byte for byte" same_bytes "$tmp/out" "$tmp/want.json"
	run 0 "$skysync" --db "$sdb" data app-values s-nul
	check "the writer's cache shows the same" same_bytes "$tmp/out" "$tmp/want.json"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
