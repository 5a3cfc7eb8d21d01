#!/bin/sh
# test_write_args.sh - every write command refuses each bad argument as a
# whole: exit 3 (2 for a session that is not in the cache), one line on
# stderr naming the argument or field, and the cache and the outbox
# unchanged (outbox list, get and data of every session, and mdb_dump of
# every named database compared byte for byte before and after each
# case). Also the KEY=VALUE split at the first '=' and the operator's
# case: a property name that is not UTF-8 once queued {"properties":{}}.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skywrite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"

command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }
command -v mdb_dump >/dev/null || { echo "FAIL: mdb_dump is missing (lmdb-utils)"; exit 1; }

sky() { "$skysync" --db "$db" "$@"; }

# The logical content of the cache: what the CLI shows and every LMDB
# database. (data.mdb itself may change on a read-write open.)
snapshot() {
	{
		sky outbox list
		for s in s-1001 s-1002 s-1003 "$local_id"; do
			echo "== $s"
			sky get inspections "$s"
			sky data inspections "$s"
		done
		mdb_dump -a "$db"
	} >"$1" 2>&1
}

FF=$(printf '\377')            # never valid in UTF-8
OVERLONG=$(printf '\300\257')  # '/' as an overlong sequence
NEL=$(printf '\302\205')       # U+0085
LSEP=$(printf '\342\200\250')  # U+2028
PSEP=$(printf '\342\200\251')  # U+2029
CTRL=$(printf 'a\001b')
long_value=$(head -c 65537 /dev/zero | tr '\0' v)
long_key=$(head -c 1025 /dev/zero | tr '\0' k)
long_id=$(head -c 201 /dev/zero | tr '\0' i)

# --- setup: the example realm, a session created offline, queued writes ---
check "apply example events" run 0 sky apply "$top_src/tools/examples/events.ndjson"
check "put an application" "$top_build/tests/put_app" "$db" '{"applicationId":"inspections","name":"Inspections"}'
check "create a session offline" run 0 sky session create inspections "Offline one" --prop site=P1 --app-version 3
local_id=$(jq -r .sessionId "$tmp/out")
check "its id is local- and 32 hex digits" sh -c "echo '$local_id' | grep -Eq '^local-[0-9a-f]{32}\$'"
check "its version is the integer given" [ "$(jq .version "$tmp/out")" = 3 ]
check "  a JSON number" [ "$(jq -r '.version | type' "$tmp/out")" = number ]
check "  queued as one" [ "$(sky outbox list | jq -r 'select(.op == "create") | .body.version | type')" = number ]
check "KEY=VALUE splits at the first '='" run 0 sky props set inspections s-1001 'a=b=c' 'empty='
check "value keeps its '='" [ "$(jq -c .properties "$tmp/out")" = '{"a":"b=c","empty":""}' ]
check "participant --type group" run 0 sky participant add inspections s-1001 crew-2 --type group
check "the group is added" sh -c "jq -e '.participants | any(.id == \"crew-2\" and .type == \"group\")' '$tmp/out' >/dev/null"
check "the outbox holds the writes" [ "$(sky outbox list | wc -l)" -eq 3 ]

# bad EXIT PATTERN ARGS...: the command exits EXIT, stderr has PATTERN
# (fixed string) on one line, and the snapshot is unchanged.
ncase=0
bad() {
	want=$1 pattern=$2
	shift 2
	ncase=$((ncase + 1))
	name="case $ncase: $(printf '%s ' "$@" | LC_ALL=C tr -c '[:print:]' '?' | cut -c 1-70)"
	snapshot "$tmp/before"
	if ! run "$want" sky "$@"; then
		fail "$name: exit"
		return
	fi
	if [ "$(wc -l <"$tmp/err")" -ne 1 ] || ! grep -qF -- "$pattern" "$tmp/err"; then
		echo "  stderr: $(cat "$tmp/err"), wanted: $pattern" >&2
		fail "$name: message"
		return
	fi
	[ ! -s "$tmp/out" ] || { fail "$name: printed output"; return; }
	snapshot "$tmp/after"
	if cmp -s "$tmp/before" "$tmp/after"; then
		ok "$name"
	else
		diff "$tmp/before" "$tmp/after" | head -5 | sed 's/^/  /' >&2
		fail "$name: the cache changed"
	fi
}

# --- props set ---
bad 3 "'bad\\xff=x' is not valid UTF-8" props set inspections s-1001 "bad${FF}=x"
bad 3 "'k=\\xff' is not valid UTF-8" props set inspections s-1001 ok=1 "k=${FF}"
bad 3 "'\\xc0\\xaf=x' is not valid UTF-8" props set inspections s-1001 "${OVERLONG}=x"
bad 3 "'k\\xe2\\x80\\xa8=\\xff' is not valid UTF-8" props set inspections s-1001 "k${LSEP}=${FF}"
bad 3 "value longer than 65536 bytes" props set inspections s-1001 "k=$long_value"
bad 3 "name longer than 1024 bytes" props set inspections s-1001 "$long_key=v"
bad 3 "'=x' has an empty name" props set inspections s-1001 "=x"
bad 3 "'novalue' is not KEY=VALUE" props set inspections s-1001 a=1 novalue
bad 3 "'a=2': the name is given twice" props set inspections s-1001 a=1 a=2
bad 3 "'\\xff' is not valid UTF-8" props set inspections "$FF" a=1
bad 2 "not in the cache" props set inspections nope a=1
# --- ids, through every write command ---
for cmd in "session close" "session rename %s x" "session describe %s x" \
	"session patch %s {\"name\":\"x\"}" "props set %s a=1" \
	"data patch %s {}" "participant add %s bob" "event send %s {}"; do
	set -- $cmd
	verb="$1 $2"
	rest=$(echo "$cmd" | cut -d' ' -f3-)
	[ "$rest" = "$cmd" ] && rest=""
	tail=$(printf '%s' "$rest" | sed 's/^%s *//')
	# shellcheck disable=SC2086
	bad 3 "session id: control" $verb inspections "$CTRL" $tail
	bad 3 "session id: control or line-break character U+0085" $verb inspections "s-$NEL" $tail
	bad 3 "session id: control or line-break character U+2028" $verb inspections "s-$LSEP" $tail
	bad 3 "session id: '/' at byte 1" $verb inspections "s/1" $tail
	bad 3 "session id: must not be empty" $verb inspections "" $tail
	bad 3 "session id: longer than 200 bytes" $verb inspections "$long_id" $tail
	bad 3 "application id: control or line-break character U+2029" $verb "a$PSEP" s-1001 $tail
	bad 2 "not in the cache" $verb inspections nope $tail
done
# --- session create ---
bad 3 "--app-version '1x' is not a whole decimal number" session create inspections N --app-version 1x
bad 3 "--app-version '-1' is not a whole decimal number" session create inspections N --app-version -1
bad 3 "--app-version '1.5' is not a whole decimal number" session create inspections N --app-version 1.5
bad 3 "--app-version '99999999999999999999' is too large" session create inspections N --app-version 99999999999999999999
bad 3 "--app-version 'abc' is not a whole decimal number" session create inspections N --app-version abc
bad 3 "--app-version '4.0' is not a whole decimal number" session create inspections N --app-version 4.0
bad 3 "--app-version '1e3' is not a whole decimal number" session create inspections N --app-version 1e3
bad 3 "--app-version '' is not a whole decimal number" session create inspections N --app-version ''
bad 3 "--app-version ' 4' is not a whole decimal number" session create inspections N --app-version ' 4'
bad 3 "--app-version '+4' is not a whole decimal number" session create inspections N --app-version +4
bad 3 "--app-version '0x4' is not a whole decimal number" session create inspections N --app-version 0x4
bad 3 "argument 'N\\xff' is not valid UTF-8" session create inspections "N$FF"
bad 3 "argument 'd\\xff' is not valid UTF-8" session create inspections N --description "d$FF"
bad 3 "'=v' has an empty name" session create inspections N --prop =v
bad 3 "'k=1': the name is given twice" session create inspections N --prop k=1 --prop k=1
bad 3 "value longer than 65536 bytes" session create inspections N --prop "k=$long_value"
bad 3 "session create: name: must not be empty" session create inspections ""
bad 3 "application id: '/' at byte 1" session create "a/b" N
bad 2 "not in the cache" session create nope N
# --- session rename, describe, patch ---
bad 3 "session patch: name: must not be empty" session rename inspections s-1001 ""
bad 3 "argument 'x\\xff' is not valid UTF-8" session rename inspections s-1001 "x$FF"
bad 3 "argument 'x\\xff' is not valid UTF-8" session describe inspections s-1001 "x$FF"
bad 3 "session patch: must be a JSON object" session patch inspections s-1001 '[1]'
bad 3 "session patch" session patch inspections s-1001 '{'
bad 3 "session patch: empty" session patch inspections s-1001 '{}'
bad 3 "status can only be set to \"closed\"" session patch inspections s-1001 '{"status":"open"}'
bad 3 "property values must be strings, not an integer" session patch inspections s-1001 '{"properties":{"a":1}}'
bad 3 "must be an object of strings, not an array" session patch inspections s-1001 '{"properties":[]}'
bad 3 "session patch: unknown field \"bogus\"" session patch inspections s-1001 '{"bogus":1}'
bad 3 "session patch" session patch inspections s-1001 '{"name":"a","name":"b"}'
bad 3 "is not valid UTF-8" session patch inspections s-1001 "{\"name\":\"$FF\"}"
# --- data patch, event send ---
bad 3 "data patch: must be a JSON object" data patch inspections s-1001 '[1]'
bad 3 "data patch: must be a JSON object" data patch inspections s-1001 '"x"'
bad 3 "data patch" data patch inspections s-1001 '{"a":'
bad 3 "is not valid UTF-8" data patch inspections s-1001 "{\"$FF\":1}"
bad 3 "custom event: must be a JSON object" event send inspections s-1001 '[1]'
bad 3 "custom event" event send inspections s-1001 'nope'
# --- participant add ---
bad 3 "participant id: control" participant add inspections s-1001 "$CTRL"
bad 3 "participant id: control or line-break character U+0085" participant add inspections s-1001 "b$NEL"
bad 3 "participant id: must not be empty" participant add inspections s-1001 ""
bad 3 "argument 'b\\xff' is not valid UTF-8" participant add inspections s-1001 "b$FF"
bad 3 "--type 'robot': must be user or group" participant add inspections s-1001 bob --type robot
# --- outbox retry / drop ---
for verb in retry drop; do
	bad 3 "entry id '1x' is not a whole decimal number" outbox $verb 1x
	bad 3 "entry id '-1' is not a whole decimal number" outbox $verb -1
	bad 3 "entry id ' 1' is not a whole decimal number" outbox $verb ' 1'
	bad 3 "entry id '+1' is not a whole decimal number" outbox $verb +1
	bad 3 "entry id '99999999999999999999' is too large" outbox $verb 99999999999999999999
	bad 2 "" outbox $verb 999999
done

# --- other commands: text that is not UTF-8 is rejected input too ---
bad 3 "argument 'site=\\xff' is not valid UTF-8" query inspections "site=$FF"
bad 3 "argument '\\xff' is not valid UTF-8" query inspections --as "$FF"
bad 3 "session id: invalid UTF-8 at byte 0" get inspections "$FF"
bad 3 "application id: invalid UTF-8 at byte 0" roles "$FF"
bad 3 "argument 'r\\xff' is not valid UTF-8" sync --server http://127.0.0.1:9 --realm "r$FF" --user u --password-file /dev/null

check "at least 100 cases ran" [ "$ncase" -ge 100 ]
check "cache still consistent" run 0 sky check
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
