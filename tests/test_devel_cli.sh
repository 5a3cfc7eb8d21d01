#!/bin/sh
# test_devel_cli.sh - the commands a gateway developer reaches for:
#  - `skysync app APP`: one cached application (JSON and table), exit 2
#    for one not in the cache;
#  - a session created offline answers to its local id in every command
#    that takes a session id (events, get, data, props set, data patch,
#    session close), before its create was delivered and after (a
#    one-shot sync against skylight-emu, when it starts).
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
			--password-file "$tmp/pw"
	}
	db=$sdb
	check "sync the example realm" ssync
	check "create a session offline in app-inspections" run 0 sky session create app-inspections "Delivered one"
	lid=$(jq -r .sessionId "$tmp/out")
	app=app-inspections
	check "sync delivers the create" ssync
	check "  the outbox is empty" [ -z "$(sky outbox list)" ]
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
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
