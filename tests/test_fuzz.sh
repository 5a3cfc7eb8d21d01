#!/bin/sh
# test_fuzz.sh - a short, repeatable libFuzzer run of every target as part
# of make check (built only when clang is present): each runs a fixed
# number of executions (SKY_FUZZ_RUNS, default 20000) from a fixed seed
# (SEED, default 1), printed with the result, so the same commit always
# gives the same verdict; SEED=N replays another seed. Each target counts
# as one test. Open-ended exploration, a new seed each time, for soaks:
# tests/fuzz/run SECONDS [TARGET...].
src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
passed=0
failed=0
for t in event merge query api seed; do
	if sh "$src/tests/fuzz/run" -runs "${SKY_FUZZ_RUNS:-20000}" "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
