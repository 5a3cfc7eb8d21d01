# tests/lib.sh - helpers shared by the shell tests, sourced after the test
# sets $tmp (its scratch directory). check NAME CMD... counts a pass when
# CMD succeeds; run EXPECTED_EXIT CMD... keeps the output in $tmp/out and
# $tmp/err and says why when the exit code differs; same_json compares two
# files as JSON (keys sorted). Each test ends with
# echo "$passed passed, $failed failed".
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() { # check NAME CMD...: passes when CMD succeeds
	name=$1
	shift
	if "$@"; then ok "$name"; else fail "$name"; fi
}
same_json() { # same_json FILE_A FILE_B: equal as JSON (keys sorted)
	[ "$(jq -S . "$1")" = "$(jq -S . "$2")" ]
}
run() { # run EXPECTED_EXIT CMD...: output to $tmp/out, $tmp/err
	want=$1
	shift
	"$@" >"$tmp/out" 2>"$tmp/err"
	got=$?
	if [ "$got" -ne "$want" ]; then
		echo "  exit $got, wanted $want: $*" >&2
		sed 's/^/  stderr: /' "$tmp/err" >&2
		return 1
	fi
}
