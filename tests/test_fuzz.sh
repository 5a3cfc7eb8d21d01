#!/bin/sh
# test_fuzz.sh - a short libFuzzer run of every target (a few seconds
# each: SKY_FUZZ_SECONDS, default 3) as part of make check; built only
# when clang is present. Each target counts as one test. Longer runs:
# tests/fuzz/run SECONDS [TARGET...].
src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
passed=0
failed=0
for t in event merge query api seed; do
	if sh "$src/tests/fuzz/run" "${SKY_FUZZ_SECONDS:-3}" "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
