#!/bin/sh
# test_crash.sh - a short crash soak for make check: 5 rounds of
# tests/soak/crash (a writer, a reader and skysync query SIGKILLed at a
# random moment; after each, check passes and no acknowledged event is
# missing). The long run is `tests/soak/crash N`, outside make check.
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
SKYSYNC_CRASH_MAX_MS=${SKYSYNC_CRASH_MAX_MS:-600} exec sh "$top_src/tests/soak/crash" 5
