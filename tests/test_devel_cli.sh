#!/bin/sh
# test_devel_cli.sh - the commands a gateway developer reaches for:
#  - `skysync app APP`: one cached application (JSON and table), exit 2
#    for one not in the cache;
#  - a session created offline answers to its local id in every command
#    that takes a session id (events, get, data, props set, data patch,
#    session close), before its create was delivered and after (a
#    one-shot sync against skylight-emu, when it starts);
#  - `query --as me` applies the synced user's rule (alice, through her
#    group): the rows the server showed her, not a session she cannot
#    see; --as u-alice without --groups warns that her groups are left
#    out; `stats` names the sync user;
#  - export then import into an empty cache gives a cache whose export is
#    byte-identical and whose check passes (the example cache, and a
#    realm synced from skylight-emu with applications and roles); import
#    refuses a cache that is not empty and a file that is no export (exit
#    3), and reports a bad line by number while storing the others;
#  - watch, beside `skysync apply` in another process: the current rows,
#    then entered (a new open session), changed (a property), left (a
#    close, with status=open), and exit 0 on SIGTERM and on SIGINT.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
emu="$top_build/tools/skylight-emu"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skydevel.XXXXXX")
emu_pid=
cleanup() { [ -n "$emu_pid" ] && sky_stop "$emu_pid"; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"
. "$top_src/tools/servers.sh"

command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }

sky() { "$skysync" --db "$db" "$@"; }

# --- skysync app ---
check "apply example events" run 0 sky apply "$top_src/tools/examples/events.ndjson"
check "put an application" "$top_build/tests/put_app" "$db" '{"applicationId":"inspections","name":"Inspections","publishedVersion":3}'
check "app prints the application" run 0 sky app inspections
check "  as one JSON line equal to what apps lists" sh -c "[ \$(wc -l <'$tmp/out') = 1 ] && [ \"\$(jq -cS . '$tmp/out')\" = \"\$('$skysync' --db '$db' apps | jq -cS 'select(.applicationId == \"inspections\")')\" ]"
check "app --format table" run 0 sky --format table app inspections
check "  one field per row" grep -q '^name  *Inspections$' "$tmp/out"
check "app of an unknown application exits 2" run 2 sky app nope
check "  saying it is not in the cache" grep -q 'application nope is not in the cache' "$tmp/err"
check "app without APP exits 1" run 1 sky app
check "app --help" run 0 sky app --help
check "  prints its usage" grep -q '^usage: skysync app APP' "$tmp/out"

# --- local ids, before the create is delivered ---
# local_ok STAGE: every command that takes a session id takes the local id.
local_ok() {
	check "$1: get with the local id" run 0 sky get inspections "$lid"
	check "$1:   is the session" [ "$(jq -r .name "$tmp/out")" = "$2" ]
	check "$1: events with the local id" run 0 sky events inspections "$lid"
	check "$1: props set with the local id" run 0 sky props set inspections "$lid" "stage=$1"
	check "$1:   shows the property" [ "$(jq -r .properties.stage "$tmp/out")" = "$1" ]
	check "$1: data patch with the local id" run 0 sky data patch inspections "$lid" "{\"$1\":1}"
	check "$1: data with the local id" run 0 sky data inspections "$lid"
	check "$1:   shows the patch" [ "$(jq ".\"$1\"" "$tmp/out")" = 1 ]
}
app=inspections
check "create a session offline" run 0 sky session create inspections "Offline one" --prop site=P1
lid=$(jq -r .sessionId "$tmp/out")
check "its id is a local id" sh -c "echo '$lid' | grep -Eq '^local-[0-9a-f]{32}\$'"
local_ok offline "Offline one"
check "offline: session close with the local id" run 0 sky session close inspections "$lid"
check "offline:   closes it" [ "$(jq -r .status "$tmp/out")" = closed ]

# --- local ids after delivery: a one-shot sync against skylight-emu ---
sdb="$tmp/sdb"
if ! sky_emu_start "$emu" "$tmp/emu.out" "$tmp/emu.log" 0 \
	--seed "$top_src/tools/examples/realm.json"; then
	fail "skylight-emu did not start: $(tail -1 "$tmp/emu.log")"
else
	emu_pid=$sky_emu_pid
	printf 'integration-pass\n' >"$tmp/pw"
	chmod 600 "$tmp/pw"
	# No broker is needed for a one-shot sync; port 1 is never a broker.
	ssync() {
		run 0 "$skysync" --db "$sdb" sync --server "http://127.0.0.1:$sky_emu_port" \
			--broker mqtt://127.0.0.1:1 --realm demo --user integration \
			--password-file "$tmp/pw" "$@"
	}
	db=$sdb
	check "sync the example realm" ssync
	check "create a session offline in app-inspections" run 0 sky session create app-inspections "Delivered one"
	lid=$(jq -r .sessionId "$tmp/out")
	app=app-inspections
	# The emulator keeps a create's version as sent (integer or string):
	# the server's session says what went on the wire.
	check "create one with --app-version 4" run 0 sky session create app-inspections "Versioned" --app-version 4
	vlid=$(jq -r .sessionId "$tmp/out")
	check "sync delivers the create" ssync
	check "  the outbox is empty" [ -z "$(sky outbox list)" ]
	check "  --app-version 4 went as the number 4" sh -c "'$skysync' --db '$sdb' get app-inspections '$vlid' | jq -e '.version == 4 and (.sessionId | startswith(\"local-\") | not)' >/dev/null"
	check "  the session has a server id" run 0 sky get app-inspections "$lid"
	sid=$(jq -r .sessionId "$tmp/out")
	check "  other than the local id" sh -c "[ -n '$sid' ] && [ '$sid' != '$lid' ]"
	check "delivered: events with the local id" run 0 sky events app-inspections "$lid"
	check "delivered: props set with the local id" run 0 sky props set app-inspections "$lid" stage=delivered
	check "delivered:   writes the server's session" [ "$(jq -r .sessionId "$tmp/out")" = "$sid" ]
	check "delivered: data patch with the local id" run 0 sky data patch app-inspections "$lid" '{"delivered":1}'
	check "delivered: data with the local id" run 0 sky data app-inspections "$lid"
	check "delivered:   shows the patch" [ "$(jq .delivered "$tmp/out")" = 1 ]
	check "delivered: session close with the local id" run 0 sky session close app-inspections "$lid"
	check "sync delivers those writes" ssync
	check "  the outbox is empty" [ -z "$(sky outbox list)" ]
	check "  the server id reads closed, with the property" sh -c "'$skysync' --db '$sdb' get app-inspections '$sid' | jq -e '.status == \"closed\" and .properties.stage == \"delivered\"' >/dev/null"
	check "create one more offline" run 0 sky session create app-inspections "Addressed one"
	alid=$(jq -r .sessionId "$tmp/out")
	check "sync --print-changes delivers it" ssync --print-changes
	check "  with an addressed line naming both ids" sh -c "jq -e 'select(.changes == [\"addressed\"]) | select(.localId == \"$alid\" and .applicationId == \"app-inspections\" and (.sessionId | startswith(\"local-\") | not))' '$tmp/out' | grep -q ."
	check "  whose server id is the session's" sh -c "[ \"\$(jq -r 'select(.changes == [\"addressed\"]) | .sessionId' '$tmp/out')\" = \"\$('$skysync' --db '$sdb' get app-inspections '$alid' | jq -r .sessionId)\" ]"

	# --- query --as me: the synced user's own visibility rule ---
	adb="$tmp/adb"
	check "query --as me on a cache never synced exits 2" run 2 "$skysync" --db "$tmp/db" query inspections --as me
	check "  saying the cache was never synced" grep -q 'never synced' "$tmp/err"
	printf 'alice-pass\n' >"$tmp/apw"
	chmod 600 "$tmp/apw"
	# Synced as alice (group g-line-a), a cache holds what alice sees;
	# a session she does not see is added by hand (apply), as another
	# source would, so that the rule has something to hide.
	check "sync as alice" run 0 "$skysync" --db "$adb" sync --server "http://127.0.0.1:$sky_emu_port" \
		--broker mqtt://127.0.0.1:1 --realm demo --user alice --password-file "$tmp/apw" --print-changes
	check "  prints one snapshot line, no line per session" sh -c "[ \"\$(jq -c . '$tmp/out' | wc -l)\" = 1 ] && jq -e '.changes == [\"snapshot\"] and .changed == 0 and .removed == 0' '$tmp/out' >/dev/null"
	jq .added "$tmp/out" >"$tmp/added"
	check "  counting every session as added" sh -c "[ \"\$(cat '$tmp/added')\" = \"\$('$skysync' --db '$adb' stats | jq .sessions)\" ]"
	check "stats names the sync user and its groups" run 0 "$skysync" --db "$adb" stats
	check "  u-alice in g-line-a" sh -c "jq -e '.syncUser.userId == \"u-alice\" and .syncUser.groups == [\"g-line-a\"] and .syncUser.realm == \"demo\"' '$tmp/out' >/dev/null"
	# A sync as alice holds what the server lists for alice.
	check "the cache holds alice's sessions" run 0 "$skysync" --db "$adb" query app-inspections
	jq -r .sessionId "$tmp/out" | sort >"$tmp/alice.ids"
	check "  the server shows alice some sessions" [ -s "$tmp/alice.ids" ]
	# A session alice may not see, from another source than her sync.
	printf '%s\n' '{"applicationId":"app-inspections","sessionId":"s-hidden","eventId":"ev-hidden","source":"api","userId":"u-bob","createdAt":"2026-11-02T08:00:00Z","timestamp":1793606400000,"version":1,"eventType":"session_created","session":{"applicationId":"app-inspections","sessionId":"s-hidden","status":"open","isDraft":false,"version":1,"name":"Bob only","participants":[{"id":"u-bob","type":"user"}],"createdBy":"u-bob","createdAt":"2026-11-02T08:00:00Z","modifiedBy":"u-bob","modifiedAt":"2026-11-02T08:00:00Z","properties":{}}}' >"$tmp/hidden.ndjson"
	check "add a session alice cannot see" run 0 "$skysync" --db "$adb" apply "$tmp/hidden.ndjson"
	check "  query without --as shows it" sh -c "'$skysync' --db '$adb' query app-inspections | grep -q s-hidden"
	sort_ids() { jq -r .sessionId "$tmp/out" | sort >"$1"; }
	check "query --as me" run 0 "$skysync" --db "$adb" query app-inspections --as me
	sort_ids "$tmp/me.ids"
	check "  returns the rows the server shows alice" cmp -s "$tmp/me.ids" "$tmp/alice.ids"
	check "  not the hidden one" sh -c "! grep -q s-hidden '$tmp/me.ids'"
	check "  and warns of nothing" [ ! -s "$tmp/err" ]
	check "query --as u-alice without --groups" run 0 "$skysync" --db "$adb" query app-inspections --as u-alice
	sort_ids "$tmp/direct.ids"
	check "  warns that alice's groups are left out" grep -q 'warning: u-alice belongs to groups the cache knows of (g-line-a)' "$tmp/err"
	check "  and sees fewer rows (no group participation)" [ "$(wc -l <"$tmp/direct.ids")" -lt "$(wc -l <"$tmp/me.ids")" ]
	check "query --as u-alice --groups g-line-a equals --as me" run 0 "$skysync" --db "$adb" query app-inspections --as u-alice --groups g-line-a
	sort_ids "$tmp/grp.ids"
	check "  without a warning" [ ! -s "$tmp/err" ]
	check "  the same rows" cmp -s "$tmp/grp.ids" "$tmp/me.ids"
	check "query --as u-bob: no warning (groups unknown)" run 0 "$skysync" --db "$adb" query app-inspections --as u-bob
	check "  none printed" [ ! -s "$tmp/err" ]
	check "--as me with --groups exits 1" run 1 "$skysync" --db "$adb" query app-inspections --as me --groups x
fi

# --- export and import ---
# round_trip NAME DB: export DB, import it into an empty cache, export
# that: the same bytes, and check passes on the imported cache.
round_trip() {
	rm -rf "$tmp/imp"
	check "$1: export" run 0 "$skysync" --db "$2" export
	cp "$tmp/out" "$tmp/exp1"
	check "$1:   starts with the format line" [ "$(head -1 "$tmp/exp1")" = '{"format":"skysync-export/1"}' ]
	check "$1:   one session line per session" [ "$(grep -c '^{"type":"session","session":{' "$tmp/exp1")" = "$("$skysync" --db "$2" stats | jq .sessions)" ]
	check "$1: import into an empty cache" run 0 "$skysync" --db "$tmp/imp" import "$tmp/exp1"
	check "$1:   counts the sessions" [ "$(jq .sessions "$tmp/out")" = "$(grep -c '"type":"session"' "$tmp/exp1")" ]
	check "$1: export of the imported cache" run 0 "$skysync" --db "$tmp/imp" export
	check "$1:   is byte-identical" cmp -s "$tmp/out" "$tmp/exp1"
	check "$1: check passes on the imported cache" run 0 "$skysync" --db "$tmp/imp" check
	check "$1: the imported cache queued nothing" [ -z "$("$skysync" --db "$tmp/imp" outbox list)" ]
}
edb="$tmp/edb"
check "example cache" run 0 "$skysync" --db "$edb" apply "$top_src/tools/examples/events.ndjson"
round_trip example "$edb"
check "example: get s-1001 of the imported cache equals the original" sh -c "[ \"\$('$skysync' --db '$tmp/imp' get inspections s-1001)\" = \"\$('$skysync' --db '$edb' get inspections s-1001)\" ]"
check "example: data s-1001 too" sh -c "[ \"\$('$skysync' --db '$tmp/imp' data inspections s-1001)\" = \"\$('$skysync' --db '$edb' data inspections s-1001)\" ]"
check "import into a cache that is not empty exits 3" run 3 "$skysync" --db "$tmp/imp" import "$tmp/exp1"
check "  saying so" grep -q 'is not empty' "$tmp/err"
check "export APP PRED: only the matching sessions" run 0 "$skysync" --db "$edb" export inspections status=open
check "  two open sessions" [ "$(grep -c '"type":"session"' "$tmp/out")" = 2 ]
check "  none closed" sh -c "! grep -q '\"status\":\"closed\"' '$tmp/out'"
printf '{"type":"session"}\n' >"$tmp/bad.ndjson"
check "import of a file without the format line exits 3" run 3 "$skysync" --db "$tmp/imp2" import "$tmp/bad.ndjson"
check "  naming line 1" grep -q 'line 1: not a skysync export' "$tmp/err"
{ echo '{"format":"skysync-export/1"}'; echo '{"type":"nope"}'; grep '"s-1001"' "$tmp/exp1"; } >"$tmp/bad.ndjson"
check "import with a bad line exits 3" run 3 "$skysync" --db "$tmp/imp3" import "$tmp/bad.ndjson"
check "  naming line 2" grep -q '^line 2: ' "$tmp/err"
check "  and stores the good one" run 0 "$skysync" --db "$tmp/imp3" get inspections s-1001
if [ -n "$emu_pid" ]; then
	round_trip "synced realm" "$sdb"
	check "synced realm: the applications and roles came along" sh -c "[ \"\$('$skysync' --db '$tmp/imp' roles app-inspections)\" = \"\$('$skysync' --db '$sdb' roles app-inspections)\" ] && [ -n \"\$('$skysync' --db '$tmp/imp' app app-maintenance)\" ]"
fi

# --- watch: another process writes, watch prints the changes ---
wdb="$tmp/wdb"
check "watch: the example cache" run 0 "$skysync" --db "$wdb" apply "$top_src/tools/examples/events.ndjson"
ev() { # ev ID TYPE SID SESSION_FIELDS: one event of inspections at 09:00+
	printf '{"applicationId":"inspections","sessionId":"%s","eventId":"%s","source":"api","userId":"dave","createdAt":"2026-11-02T09:%s:00Z","timestamp":0,"version":1,"eventType":"%s","session":{"applicationId":"inspections","sessionId":"%s",%s,"modifiedBy":"dave","modifiedAt":"2026-11-02T09:%s:00Z"}}\n' \
		"$3" "$1" "$4" "$2" "$3" "$5" "$4" >"$tmp/ev.ndjson"
}
: >"$tmp/watch.out"
"$skysync" --db "$wdb" watch inspections status=open >"$tmp/watch.out" 2>"$tmp/watch.err" &
watch_pid=$!
check "watch prints the current rows" sky_wait_line "$watch_pid" "$tmp/watch.out" '"sessionId":"s-1003"'
check "  the two open sessions, as query prints them" sh -c "[ \"\$(cat '$tmp/watch.out')\" = \"\$('$skysync' --db '$wdb' query inspections status=open)\" ]"
ev ev-w1 session_created s-2001 01 '"status":"open","isDraft":false,"version":1,"name":"Watched","participants":[],"createdBy":"dave","createdAt":"2026-11-02T09:01:00Z","properties":{"site":"P9"}'
check "apply a new open session" run 0 "$skysync" --db "$wdb" apply "$tmp/ev.ndjson"
check "  watch: entered" sky_wait_line "$watch_pid" "$tmp/watch.out" '^{"change":"entered","session":{"applicationId":"inspections","sessionId":"s-2001"'
ev ev-w2 session_properties_updated s-1001 02 '"properties":{"site":"Plant-8"}'
check "apply a property change" run 0 "$skysync" --db "$wdb" apply "$tmp/ev.ndjson"
check "  watch: changed, with the new property" sky_wait_line "$watch_pid" "$tmp/watch.out" '^{"change":"changed","session":{"applicationId":"inspections","sessionId":"s-1001".*"site":"Plant-8"'
ev ev-w3 session_closed s-1003 03 '"status":"closed"'
check "apply a close" run 0 "$skysync" --db "$wdb" apply "$tmp/ev.ndjson"
check "  watch: left, the session now closed" sky_wait_line "$watch_pid" "$tmp/watch.out" '^{"change":"left","session":{"applicationId":"inspections","sessionId":"s-1003","status":"closed"'
kill -TERM "$watch_pid"
wait "$watch_pid"
check "SIGTERM: watch exits 0" [ $? = 0 ]
check "  2 rows and 3 changes printed, each a JSON object" sh -c "[ \$(wc -l <'$tmp/watch.out') = 5 ] && jq -e 'type == \"object\"' '$tmp/watch.out' >/dev/null"
check "  one line per change" [ "$(grep -c '"change"' "$tmp/watch.out")" = 3 ]
check "  nothing on stderr" [ ! -s "$tmp/watch.err" ]
"$skysync" --db "$wdb" watch inspections >"$tmp/watch2.out" 2>&1 &
watch_pid=$!
sky_wait_line "$watch_pid" "$tmp/watch2.out" '"sessionId":"s-2001"' >/dev/null
kill -INT "$watch_pid"
wait "$watch_pid"
check "SIGINT: watch exits 0" [ $? = 0 ]
check "watch of a bad predicate exits 3" run 3 "$skysync" --db "$wdb" watch inspections 'a<b'
check "watch without APP exits 1" run 1 "$skysync" --db "$wdb" watch

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
