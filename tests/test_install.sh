#!/bin/sh
# test_install.sh - `make install DESTDIR=...` from the build tree installs
# the library (libskysync.so), its header, skysync.pc, both programs and
# the three man pages, and none of the library's old names (libsync.so,
# libsync.pc, libsync.3), which another package may own; then
# examples/lookup_query.c is compiled against that installed tree with
# `pkg-config --cflags --libs skysync` alone (no build-tree paths), linked
# with an rpath to the installed lib directory, checked to load the
# installed libskysync.so, and run on a cache filled by the installed
# skysync; and a small program calling sky_engine_attach on its own
# libevent loop links with those flags alone too. The bash completion is
# installed.
#
# Skipped (exit 77) only when the build tree is unknown (run outside make
# check, without SKY_TOP_BUILDDIR). Under `make distcheck` it runs as well:
# the build tree there is a writable _build/sub, and a DESTDIR install of it
# into a temporary directory is what distcheck itself does.
set -u
top_build=${SKY_TOP_BUILDDIR:-}
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
if [ -z "$top_build" ] || [ ! -f "$top_build/Makefile" ]; then
	echo "SKIP: no build tree (SKY_TOP_BUILDDIR); run through make check"
	exit 77
fi
command -v pkg-config >/dev/null || { echo "FAIL: pkg-config is missing"; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyinst.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
dest="$tmp/dest"
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "PASS: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() { # check NAME CMD...: passes when CMD succeeds
	name=$1
	shift
	if "$@"; then ok "$name"; else fail "$name"; fi
}
logged() { # logged LOG CMD...: run CMD, output to LOG, shown on failure
	log=$1
	shift
	"$@" >"$log" 2>&1 && return 0
	tail -n 30 "$log" | sed 's/^/  /' >&2
	return 1
}

# The install runs as its own make: the parent's job server and flags
# belong to make check, not to us.
check "make install DESTDIR" logged "$tmp/install.log" \
	env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	${MAKE:-make} -C "$top_build" install DESTDIR="$dest"

# Where the configured prefix landed inside DESTDIR (it differs under
# distcheck), found from the installed skysync.pc.
pc=$(find "$dest" -name skysync.pc -path '*/pkgconfig/*' | head -n 1)
check "skysync.pc installed" [ -n "$pc" ]
[ -n "$pc" ] || { echo "test_install: $passed passed, $failed failed"; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
prefix=$(dirname "$libdir")
check "header installed" [ -f "$prefix/include/skysync.h" ]
check "shared library installed" [ -f "$libdir/libskysync.so" ]
check "nothing installed under the old names" sh -c \
	"find '$dest' -name 'libsync.*' | grep . >&2 && exit 1 || exit 0"
check "only sky_ symbols exported" sh -c \
	"nm -D --defined-only '$libdir/libskysync.so' | awk '\$2 ~ /^[TDBR]\$/ {print \$3}' | grep -v '^sky_' | grep -q . && exit 1 || exit 0"
check "skysync installed" [ -x "$prefix/bin/skysync" ]
check "skylight-emu installed" [ -x "$prefix/bin/skylight-emu" ]
check "bash completion installed" sh -c "find '$dest' -path '*/bash-completion/completions/skysync' -type f | grep -q ."
for m in man1/skysync.1 man1/skylight-emu.1 man3/libskysync.3; do
	check "man page $m installed" [ -s "$prefix/share/man/$m" ]
done
if command -v groff >/dev/null; then # warnings (-ww) are failures
	check "libskysync(3) formats without warnings" sh -c \
		"groff -man -ww -z '$prefix/share/man/man3/libskysync.3' 2>&1 | grep . >&2 && exit 1 || exit 0"
fi

# pkg-config reads the installed .pc; the sysroot maps its paths into
# DESTDIR, as a cross build would.
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
flags=$(pkg-config --cflags --libs skysync)
check "pkg-config --cflags --libs skysync" [ -n "$flags" ]
check "it links -lskysync" sh -c "echo '$flags' | grep -q -- '-lskysync'"
check "flags point into DESTDIR" sh -c "echo '$flags' | grep -q -- '-L$libdir'"
check "version matches" [ "$(pkg-config --modversion skysync)" = \
	"$(sed -n 's/^Version: //p' "$top_build/skysync.pc")" ]

# Compile the example with the installed header and library only.
cp "$top_src/examples/lookup_query.c" "$tmp/"
# shellcheck disable=SC2086 # $flags is a list of options
# A library built with --enable-sanitizers needs its programs built so too.
san_flags=
ldd "$libdir/libskysync.so" 2>/dev/null | grep -q libasan &&
	san_flags="-fsanitize=address,undefined"
check "example compiles against the install" logged "$tmp/cc.log" \
	${CC:-cc} $san_flags -Wall -Wextra -Werror -o "$tmp/lookup_query" "$tmp/lookup_query.c" \
	$flags -Wl,-rpath,"$libdir"
check "example loads the installed libskysync" sh -c \
	"ldd '$tmp/lookup_query' | grep 'libskysync.so' | grep -q '$libdir/'"

# Every public call links with the same flags alone: the header takes a
# struct event_base *, so libevent comes with libskysync (Requires in
# skysync.pc). The program drives an engine on its own libevent loop.
cat >"$tmp/attach.c" <<'EOF_C'
#include <event2/event.h>
#include <stdio.h>
#include <skysync.h>

int main(int argc, char **argv)
{
	sky_engine_options o = SKY_ENGINE_OPTIONS_INIT;
	sky_cache *c = NULL;
	sky_engine *e = NULL;
	struct event_base *base = event_base_new();
	int rc = 1;
	if (argc != 2 || !base)
		return 1;
	o.server = "http://127.0.0.1:9";
	o.broker = "mqtt://127.0.0.1:9";
	o.realm = "r";
	o.user = "u";
	o.password = "p";
	if (sky_cache_open(&c, argv[1], NULL) < 0 ||
	    sky_engine_new(&e, c, &o) < 0 || sky_engine_attach(e, base) < 0) {
		fprintf(stderr, "attach: %s\n", sky_error_last()->message);
		goto done;
	}
	printf("attached\n");
	rc = 0;
done:
	sky_engine_free(e);
	sky_cache_close(c);
	event_base_free(base);
	return rc;
}
EOF_C
# shellcheck disable=SC2086 # $flags is a list of options
check "sky_engine_attach links with pkg-config skysync alone" logged "$tmp/cc2.log" \
	${CC:-cc} $san_flags -Wall -Wextra -Werror -o "$tmp/attach" "$tmp/attach.c" \
	$flags -Wl,-rpath,"$libdir"
check "pkg-config --libs skysync names libevent" sh -c "echo '$flags' | grep -q -- '-levent'"
check "the attach program runs" logged "$tmp/attach.out" "$tmp/attach" "$tmp/attachdb"
check "it attached" grep -qx attached "$tmp/attach.out"

# Run it on a cache written by the installed skysync.
check "installed skysync applies the events" logged "$tmp/apply.log" \
	"$prefix/bin/skysync" --db "$tmp/db" apply "$top_src/tools/examples/events.ndjson"
check "installed example runs" logged "$tmp/out" \
	"$tmp/lookup_query" "$tmp/db" inspections s-1002 site=Plant-7
check "it prints the session" grep -q '^session: {"applicationId":"inspections","sessionId":"s-1002"' "$tmp/out"
check "and the query rows" [ "$(grep -c '^row: ' "$tmp/out")" = 2 ]

echo "test_install: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
