# tests/lib.sh - helpers shared by the shell tests, sourced after the test
# sets $tmp (its scratch directory). check NAME CMD... counts a pass when
# CMD succeeds; run EXPECTED_EXIT CMD... keeps the output in $tmp/out and
# $tmp/err and says why when the exit code differs; same_json compares two
# files as JSON (keys sorted); corrupt damages an LMDB file the same way
# for every test that damages one. Each test ends with
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

# corrupt FILE SEED [PAGES]: 1-3 random pages of FILE's first PAGES
# (default $pages; not the two meta pages), 200 random bytes each at a
# random offset, all drawn from SEED.
corrupt() {
	LC_ALL=C awk -v seed="$2" -v pages="${3:-$pages}" 'BEGIN {
		srand(seed)
		n = 1 + int(rand() * 3)
		for (i = 0; i < n; i++) {
			pg = 2 + int(rand() * (pages - 2))
			off = int(rand() * (4096 - 200))
			printf "%d %d", pg * 4096 + off, 200
			for (b = 0; b < 200; b++) printf " %d", int(rand() * 256)
			printf "\n"
		}
	}' | while read -r at len rest; do
		# shellcheck disable=SC2086
		LC_ALL=C awk -v s="$rest" 'BEGIN { n = split(s, a, " "); for (i = 1; i <= n; i++) printf "%c", a[i] + 0 }' |
			dd of="$1" bs=1 seek="$at" conv=notrunc 2>/dev/null
	done
}
