# tools/servers.sh - starting skylight-emu and a mosquitto broker from shell
# scripts (tools/demo, the shell tests), sourced. What it keeps true:
#
#  - a server counts as started only once this run of it printed its
#    whole readiness line (skylight-emu: "listening on HOST:PORT", printed
#    once it serves; mosquitto: "mosquitto version X running", logged once
#    its listener is open), never after a fixed sleep; its output file is
#    emptied by this shell before the start, since the child's own
#    redirection may come after the first look and the previous run's
#    line would count;
#  - the wait ends as soon as the server exits, and otherwise after a
#    generous bound ($SKY_SERVER_WAIT seconds, default 30), so a busy
#    machine slows a start down without failing it;
#  - a start that fails prints why on stderr: the exit status or the bound,
#    and the end of the server's log;
#  - a port can be taken by another process between a stop and the next
#    start: a start on a given port retries while the server reports
#    "Address already in use" (for up to the same bound), and a start on
#    port 0 (the broker) tries other random ports.
#
# Functions (each sets the variables it names; all others it uses start
# with _sky_):
#
#   sky_wait_line PID FILE REGEX [SECONDS]
#       0 once a line of FILE matches REGEX (grep's basic syntax), 1 when
#       PID exited first or SECONDS (default $SKY_SERVER_WAIT) passed.
#   sky_emu_start EMU OUT LOG PORT [ARG...]
#       runs EMU --listen 127.0.0.1:PORT ARG... (PORT 0: any free port)
#       with stdout in OUT and stderr in LOG; sets sky_emu_pid and
#       sky_emu_port. Returns 0; 2 when PORT stayed taken; else 1.
#   sky_broker_start DIR [PORT]
#       writes DIR/mosquitto.conf (loopback listener, anonymous clients, no
#       persistence) and runs mosquitto ($MOSQUITTO_BIN, else the one on
#       $PATH or /usr/sbin/mosquitto) with its log in DIR/mosquitto.log;
#       sets sky_broker_pid and sky_broker_port. Returns 0; 2 when PORT
#       stayed taken; else 1.
#   sky_stop PID
#       SIGTERM, then SIGKILL if it is still running after the bound;
#       waits for it (so the port is free when it returns).

SKY_SERVER_WAIT=${SKY_SERVER_WAIT:-30}

sky_wait_line() {
	_sky_n=$(( ${4:-$SKY_SERVER_WAIT} * 10 ))
	while [ "$_sky_n" -gt 0 ]; do
		grep -q -- "$3" "$2" 2>/dev/null && return 0
		if ! kill -0 "$1" 2>/dev/null; then
			# It may have printed the line just before exiting.
			grep -q -- "$3" "$2" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.1
		_sky_n=$((_sky_n - 1))
	done
	return 1
}

# _sky_not_ready NAME PID LOG [OUT]: after a failed sky_wait_line, stops
# PID if it still runs, says why it failed and prints the end of its log;
# sets _sky_taken=1 when it exited because its port was taken.
_sky_not_ready() {
	_sky_taken=0
	if kill -0 "$2" 2>/dev/null; then
		sky_stop "$2"
		_sky_why="gave no readiness line within ${SKY_SERVER_WAIT} s"
	else
		wait "$2" 2>/dev/null
		_sky_why="exited with status $? before serving"
		grep -q 'Address already in use' "$3" 2>/dev/null && _sky_taken=1
	fi
	[ "$_sky_taken" = 1 ] && return 0
	{
		echo "$1 (pid $2) $_sky_why; the end of its log ($3):"
		tail -20 "$3" 2>/dev/null | sed 's/^/  | /'
		if [ -n "${4:-}" ] && [ -s "$4" ]; then
			echo "and of its output ($4):"
			tail -5 "$4" | sed 's/^/  | /'
		fi
	} >&2
}

sky_stop() {
	[ -n "${1:-}" ] || return 0
	kill "$1" 2>/dev/null
	_sky_n=$((SKY_SERVER_WAIT * 10))
	while kill -0 "$1" 2>/dev/null && [ "$_sky_n" -gt 0 ]; do
		sleep 0.1
		_sky_n=$((_sky_n - 1))
	done
	kill -9 "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	return 0
}

sky_emu_start() {
	_sky_bin=$1 _sky_out=$2 _sky_log=$3 _sky_port=$4
	shift 4
	sky_emu_pid= sky_emu_port=
	# Each try that finds the port taken ends at once; 0.5 s between
	# them makes the retries last about the bound.
	_sky_try=$((SKY_SERVER_WAIT * 2))
	while :; do
		# Emptied here, not by the child's redirection, which may come
		# after the first look: the last run's line would count.
		: >"$_sky_out" && : >"$_sky_log" || return 1
		"$_sky_bin" --listen "127.0.0.1:$_sky_port" "$@" \
			>>"$_sky_out" 2>>"$_sky_log" &
		_sky_pid=$!
		# The whole line, port included, not the start of a write.
		if sky_wait_line "$_sky_pid" "$_sky_out" '^listening on .*:[0-9][0-9]*$'; then
			sky_emu_pid=$_sky_pid
			sky_emu_port=$(sed -n 's/^listening on .*:\([0-9][0-9]*\)$/\1/p' "$_sky_out")
			return 0
		fi
		_sky_not_ready skylight-emu "$_sky_pid" "$_sky_log" "$_sky_out"
		[ "$_sky_taken" = 1 ] || return 1
		_sky_try=$((_sky_try - 1))
		if [ "$_sky_try" -le 0 ]; then
			echo "skylight-emu: port $_sky_port stayed taken for ${SKY_SERVER_WAIT} s" >&2
			return 2
		fi
		sleep 0.5
	done
}

sky_broker_start() {
	_sky_dir=$1 _sky_want=${2:-0}
	sky_broker_pid= sky_broker_port=
	_sky_bin=${MOSQUITTO_BIN:-$(command -v mosquitto || echo /usr/sbin/mosquitto)}
	_sky_try=$((SKY_SERVER_WAIT * 2))
	while :; do
		_sky_port=$_sky_want
		[ "$_sky_port" = 0 ] &&
			_sky_port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
		cat >"$_sky_dir/mosquitto.conf" <<EOF || return 1
listener $_sky_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
EOF
		: >"$_sky_dir/mosquitto.log" || return 1
		"$_sky_bin" -c "$_sky_dir/mosquitto.conf" >>"$_sky_dir/mosquitto.log" 2>&1 &
		_sky_pid=$!
		if sky_wait_line "$_sky_pid" "$_sky_dir/mosquitto.log" 'mosquitto version .* running'; then
			sky_broker_pid=$_sky_pid
			sky_broker_port=$_sky_port
			return 0
		fi
		_sky_not_ready mosquitto "$_sky_pid" "$_sky_dir/mosquitto.log"
		[ "$_sky_taken" = 1 ] || return 1
		_sky_try=$((_sky_try - 1))
		if [ "$_sky_try" -le 0 ]; then
			if [ "$_sky_want" = 0 ]; then
				echo "mosquitto: no free port found" >&2
			else
				echo "mosquitto: port $_sky_want stayed taken for ${SKY_SERVER_WAIT} s" >&2
			fi
			return 2
		fi
		# A random port: try another at once; a given one: wait a bit.
		[ "$_sky_want" = 0 ] || sleep 0.5
	done
}
