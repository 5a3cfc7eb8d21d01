#!/bin/sh
# test_includes.sh - the module map points one way: tools/check-includes
# finds no knot among the modules of libsync/ and tools/emu/ other than
# those tools/include-cycles.known lists, and it can fail: on a sample
# tree with a circle of three modules it exits 1 naming the circle and the
# include lines that make it, a tree without one passes, and a listed knot
# that is gone fails too. Every header of both directories compiles
# alone (-fsyntax-only), so each says what it needs.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyincludes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top_src/tests/lib.sh"
check_includes="$top_src/tools/check-includes"

check "the tree has no unknown knot" run 0 "$check_includes"
[ "$failed" = 0 ] || cat "$tmp/out"

# a.c -> b.h, b.c -> c.h, c.h -> a.h: one circle of three modules; d.h
# (types, no d.c) is included by all and stays out of it. A commented
# include and a <system> one are not arrows.
s="$tmp/sample"
mkdir -p "$s/lib" "$s/app"
printf '#include "d.h"\n' >"$s/lib/a.h"
printf '#include "a.h"\n#include "b.h"\n#include "config.h"\n' >"$s/lib/a.c"
printf '#include "d.h"\n' >"$s/lib/b.h"
printf '#include "b.h"\n#include "c.h"\n#include <stdio.h>\n' >"$s/lib/b.c"
printf '#include "d.h"\n#include "a.h"\n' >"$s/lib/c.h"
printf '/* #include "a.h" */\nstruct d { int x; };\n' >"$s/lib/d.h"
# app/main.c finds lib's headers through the search path, like tools/emu.
printf '#include "a.h"\n#include "c.h"\n' >"$s/app/main.c"
check "a tree with a circle fails" run 1 "$check_includes" "$s/lib" "$s/app"
check "it names the circle" \
	grep -qx "cycle: $s/lib/a -> $s/lib/b -> $s/lib/c -> $s/lib/a" "$tmp/out"
check "it names the include making each arrow" \
	[ "$(grep -c '^  ' "$tmp/out")" = 3 ] &&
	grep -qx "  $s/lib/c.h:2 includes $s/lib/a" "$tmp/out"
check "the type header and the program are no part of it" \
	grep -qx "knot: $s/lib/a $s/lib/b $s/lib/c" "$tmp/out"

printf '%s/lib/a %s/lib/c %s/lib/b\n' "$s" "$s" "$s" >"$tmp/known"
check "a knot listed as known passes" \
	run 0 "$check_includes" -k "$tmp/known" "$s/lib" "$s/app"
printf '#include "b.h"\n' >"$s/lib/b.c"
check "the untied tree passes" run 0 "$check_includes" "$s/lib" "$s/app"
check "a known knot that is gone fails" \
	run 1 "$check_includes" -k "$tmp/known" "$s/lib" "$s/app"
check "it says which line to delete" grep -q "^gone: " "$tmp/out"

# Each header alone, with the flags the build gives it.
cc=${SKY_CC:-cc}
bad=""
for h in "$top_src"/libsync/*.h "$top_src"/tools/emu/*.h; do
	# shellcheck disable=SC2086
	if ! $cc -fsyntax-only -Wall -Wextra -I"$top_build" \
		-I"$top_src/libsync" ${SKY_HEADER_CFLAGS:-} -x c "$h" \
		>"$tmp/cc.out" 2>&1; then
		bad="$bad ${h#"$top_src"/}"
		sed 's/^/  /' "$tmp/cc.out" | head -5
	fi
done
check "every header compiles alone${bad:+ (not:$bad)}" [ -z "$bad" ]

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
