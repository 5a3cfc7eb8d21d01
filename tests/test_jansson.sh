#!/bin/sh
# test_jansson.sh - tools/check-jansson passes on libsync/ and tools/ (no
# jansson setter's result is thrown away), and it can fail: on a sample
# with ignored calls (a statement over two lines, one under an if, one
# after another statement) it exits 1 naming exactly those lines, and
# not the used result, the deliberate (void) or the comment.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyjansson.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top_src/tests/lib.sh"
check_jansson="$top_src/tools/check-jansson"

check "the tree passes" run 0 "$check_jansson"
[ "$failed" = 0 ] || cat "$tmp/out"

mkdir -p "$tmp/src"
cat >"$tmp/src/sample.c" <<'C'
static void f(json_t *o, int x)
{
	json_object_set_new(o, "a",
			    json_true());
	if (o)
		json_array_append_new(o, NULL);
	if (json_object_set_new(o, "b", NULL) < 0)
		return;
	(void)json_object_del(o, "c");
	/* json_object_set(o, "x", y); in a comment */
	x = 1; json_object_clear(o);
	x = x &&
	    json_object_update(o, o) == 0;
}
C
check "a sample with ignored results fails" run 1 "$check_jansson" "$tmp/src"
check "it names the three ignored calls" \
	[ "$(sed 's/: jansson.*//; s/.*sample\.c://' "$tmp/out" | tr '\n' ' ')" = "3 6 11 " ]
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
