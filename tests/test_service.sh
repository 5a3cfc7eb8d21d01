#!/bin/sh
# test_service.sh - `skysync sync --follow` as a service, against
# skylight-emu (and mosquitto when it is installed):
#  - `skysync health` fails with its reason on a cache never synced
#    (none at all, or one filled by `apply`), passes after a sync, fails
#    naming the count when a write became a dead letter (the emulator
#    refuses it with 403), and fails with --max-age 1 once the sync is
#    older than that;
#  - every line of a `sync --follow` log starts with an RFC 3339 UTC time
#    with milliseconds and a level, or with a syslog <N> prefix when
#    $JOURNAL_STREAM is set;
#  - $NOTIFY_SOCKET (a listener of this test) gets READY=1 once live,
#    WATCHDOG=1 with a small $WATCHDOG_USEC, and STOPPING=1 on SIGTERM;
#  - SIGHUP keeps the follower running and reopens --log after a rename;
#    after a SIGHUP with a wrong password in the file, the next login (all
#    tokens expired by the emulator) uses it and is refused;
#  - the ExecStart line of tools/systemd/skysync-sync@.service.in, with
#    a sample env file's variables substituted, syncs the realm into the
#    unit's cache directory and tells the notify socket READY=1 and
#    WATCHDOG=1; systemd-analyze verify finds nothing wrong in the unit
#    (skipped where systemd-analyze is missing or cannot run).
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
emu="$top_build/tools/skylight-emu"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyservice.XXXXXX")
emu_pid=
broker_pid= follow_pid= listener_pid=
trap 'sky_stop "$follow_pid"; sky_stop "$listener_pid"; sky_stop "$emu_pid"; sky_stop "$broker_pid"; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
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

# --- sync --follow as a service (needs mosquitto) ---
finish() {
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
mosq=${MOSQUITTO_BIN:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
if [ ! -x "$mosq" ] || ! command -v python3 >/dev/null; then
	echo "# no mosquitto or python3: the --follow checks are skipped"
	finish
fi
sky_stop "$emu_pid"
emu_pid=
mkdir "$tmp/broker"
if ! sky_broker_start "$tmp/broker"; then
	fail "mosquitto did not start"
	finish
fi
broker_pid=$sky_broker_pid
if ! sky_emu_start "$emu" "$tmp/emu.out" "$tmp/emu.log" 0 \
	--broker "127.0.0.1:$sky_broker_port" \
	--seed "$top_src/tools/examples/realm.json"; then
	fail "skylight-emu did not start: $(head -1 "$tmp/emu.log")"
	finish
fi
emu_pid=$sky_emu_pid
url="http://127.0.0.1:$sky_emu_port"
follow_args="--server $url --broker mqtt://127.0.0.1:$sky_broker_port --realm demo --user integration --password-file $tmp/pw --follow"

# A notify socket of our own: one line per datagram into notify.out.
cat >"$tmp/listen.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    print("bound", file=f, flush=True)
    while True:
        f.write(s.recv(4096).decode().replace("\n", " ") + "\n")
        f.flush()
PY
: >"$tmp/notify.out"
python3 "$tmp/listen.py" "$tmp/notify.sock" "$tmp/notify.out" &
listener_pid=$!
check "the notify listener is bound" sky_wait_line "$listener_pid" "$tmp/notify.out" '^bound$'

stamp='^[0-9]\{4\}-[0-9][0-9]-[0-9][0-9]T[0-9][0-9]:[0-9][0-9]:[0-9][0-9]\.[0-9]\{3\}Z \(debug\|info\|warning\|error\) sync: '
fdb="$tmp/fdb"
: >"$tmp/follow.log"
NOTIFY_SOCKET="$tmp/notify.sock" WATCHDOG_USEC=200000 \
	"$skysync" --db "$fdb" sync $follow_args --reconcile 1 -v \
	--log "$tmp/follow.log" >"$tmp/follow.out" 2>"$tmp/follow.err" &
follow_pid=$!
check "follow --log goes live" sky_wait_line "$follow_pid" "$tmp/follow.log" 'live: applying events'
check "  READY=1 on the notify socket" sky_wait_line "$follow_pid" "$tmp/notify.out" '^READY=1'
check "  WATCHDOG=1 with WATCHDOG_USEC set" sky_wait_line "$follow_pid" "$tmp/notify.out" '^WATCHDOG=1$'
check "health beside a live follower exits 0" run 0 "$skysync" --db "$fdb" health
check "every line of the follow log is stamped" sh -c "[ -s '$tmp/follow.log' ] && ! grep -v '$stamp' '$tmp/follow.log'"
check "  nothing on stderr" [ ! -s "$tmp/follow.err" ]

mv "$tmp/follow.log" "$tmp/follow.log.1"
kill -HUP "$follow_pid"
check "after SIGHUP the log is reopened" sky_wait_line "$follow_pid" "$tmp/follow.log" 'log reopened'
check "  the follower keeps running" kill -0 "$follow_pid"
check "  and says it read the password again" sky_wait_line "$follow_pid" "$tmp/follow.log" 'the next login uses'

# A wrong password in the file, SIGHUP, every token expired: the next
# login sends the new password and is refused (exit 4).
printf 'Wr0ng-after-hup\n' >"$tmp/pw"
kill -HUP "$follow_pid"
sky_wait_line "$follow_pid" "$tmp/follow.log" 'the next login uses.*$' >/dev/null
n=0
while [ "$(grep -c 'the next login uses' "$tmp/follow.log")" -lt 2 ] && [ $n -lt 300 ]; do
	sleep 0.1
	n=$((n + 1))
done
curl -sf -X POST -d '{"refresh": true}' "$url/_admin/expire-tokens" >/dev/null
sky_wait_line "$follow_pid" "$tmp/follow.log" 'login refused' 60
check "  the login after it uses the new password (refused)" grep -q 'login refused' "$tmp/follow.log"
wait "$follow_pid"
st=$?
follow_pid=
check "  and the follower exits 4" [ "$st" = 4 ]
check "every line of the reopened log is stamped too" sh -c "! grep -v '$stamp' '$tmp/follow.log' '$tmp/follow.log.1'"
printf 'integration-pass\n' >"$tmp/pw"

# Under systemd: a syslog prefix instead of a time, on stderr.
JOURNAL_STREAM=8:12345 NOTIFY_SOCKET="$tmp/notify.sock" \
	"$skysync" --db "$fdb" sync $follow_args >"$tmp/follow.out" 2>"$tmp/journal.err" &
follow_pid=$!
check "with JOURNAL_STREAM set it goes live" sky_wait_line "$follow_pid" "$tmp/journal.err" 'live: applying events'
kill -TERM "$follow_pid"
wait "$follow_pid"
st=$?
follow_pid=
check "  SIGTERM stops it with exit 0" [ "$st" = 0 ]
check "  every line has a <N> prefix" sh -c "[ -s '$tmp/journal.err' ] && ! grep -v '^<[0-7]>sync: ' '$tmp/journal.err'"
check "  info lines are <6>" grep -q '^<6>sync: live: applying' "$tmp/journal.err"
check "  STOPPING=1 on the notify socket" grep -q '^STOPPING=1$' "$tmp/notify.out"
check "--log without --follow is refused (exit 1)" run 1 "$skysync" --db "$fdb" sync $sync_args --log "$tmp/x.log"

# --- the systemd unit ---
unit_in="$top_src/tools/systemd/skysync-sync@.service.in"
sed "s|@bindir@|$top_build/tools|; s|/var/lib/skysync/%i|$tmp/state/%i|; s|%i|demo|g" \
	"$unit_in" >"$tmp/unit.service"
exec_start=$(sed -n 's/^ExecStart=//p' "$tmp/unit.service")
check "the unit has one ExecStart" [ "$(grep -c '^ExecStart=' "$unit_in")" = 1 ]
check "  running sync --follow" sh -c "echo '$exec_start' | grep -q ' sync --follow '"
{
	echo "SKYSYNC_SERVER=$url"
	echo "SKYSYNC_REALM=demo"
	echo "SKYSYNC_USER=integration"
	echo "SKYSYNC_PASSWORD_FILE=$tmp/pw"
	echo "SKYSYNC_OPTIONS=\"--broker mqtt://127.0.0.1:$sky_broker_port --reconcile 30\""
} >"$tmp/demo.env"
env_ok=1
for v in $(echo "$exec_start" | grep -o 'SKYSYNC_[A-Z_]*'); do
	grep -q "^$v=" "$top_src/tools/systemd/skysync-sync.env.example" || env_ok=0
done
check "the sample env file names every variable ExecStart uses" [ "$env_ok" = 1 ]
mkdir -m 700 "$tmp/state" "$tmp/state/demo" # what StateDirectory= makes
: >"$tmp/notify.out"
(
	set -a
	. "$tmp/demo.env"
	set +a
	eval "set -- $exec_start"
	NOTIFY_SOCKET="$tmp/notify.sock" WATCHDOG_USEC=300000 exec "$@"
) >"$tmp/unit.out" 2>"$tmp/unit.err" &
follow_pid=$!
check "the unit's ExecStart sends READY=1" sky_wait_line "$follow_pid" "$tmp/notify.out" '^READY=1'
check "  and WATCHDOG=1" sky_wait_line "$follow_pid" "$tmp/notify.out" '^WATCHDOG=1$'
check "  syncing into the unit's cache directory" run 0 "$skysync" --db "$tmp/state/demo" health
kill -TERM "$follow_pid"
wait "$follow_pid"
st=$?
follow_pid=
check "  SIGTERM stops it with exit 0" [ "$st" = 0 ]
if command -v systemd-analyze >/dev/null; then
	sed "s|@bindir@|$top_build/tools|" "$unit_in" >"$tmp/skysync-sync@demo.service"
	if timeout 60 systemd-analyze verify --man=no "$tmp/skysync-sync@demo.service" >"$tmp/verify.out" 2>&1; then
		check "systemd-analyze verify: nothing wrong in the unit" sh -c \
			"! grep -i 'skysync-sync@demo.*\(unknown\|invalid\|failed\|bad\)' '$tmp/verify.out'"
	else
		echo "# systemd-analyze verify cannot run here: $(tail -1 "$tmp/verify.out")"
	fi
else
	echo "# no systemd-analyze: the unit is not verified"
fi

finish
