#!/bin/sh
# test_fuzz.sh - a short libFuzzer run of every target (a few seconds
# each) as part of make check; built only when clang is present.
# Longer runs: tests/fuzz/run SECONDS.
src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
if sh "$src/tests/fuzz/run" "${SKY_FUZZ_SECONDS:-3}"; then
	echo "1 passed, 0 failed"
else
	echo "0 passed, 1 failed"
	exit 1
fi
