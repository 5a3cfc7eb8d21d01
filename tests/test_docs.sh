#!/bin/sh
# test_docs.sh - every reference in the project's files resolves:
#  - "DESIGN.md §N" (also "§N.M", "section N", "§N of DESIGN.md", several
#    on a line) names a heading "## N." or "### N.M" of docs/DESIGN.md, and
#    a bare "§N" inside docs/DESIGN.md one of its own; a "§" on a line of
#    another file that names no DESIGN.md is refused (whose section?);
#  - a path with a directory and a source or document extension
#    (docs/PROTOCOL.md, libsync/outbox.c, tests/test_check.c) exists,
#    relative to the top of the tree or to the referring file, and a bare
#    NAME.md is a file of the tree;
#  - skysync(1), libskysync(3), skylight-emu(1) are man pages of the tree
#    with that section (and the library's old name, libsync(3), is none).
# The checker is first run on a small tree with one broken reference of
# each kind, and must name each; then on the project, where it must find
# nothing. The files are those git tracks (plus new ones not ignored), or,
# outside a git checkout (a dist tree), those on disk, of which only the
# sources are read.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skydocs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top_src/tests/lib.sh"

# list_files ROOT: the files of the tree, one a line, relative to ROOT.
# in_git ROOT: whether ROOT is a git checkout (else a dist tree, whose
# build products must not be read).
in_git() { git -C "$1" rev-parse --is-inside-work-tree >/dev/null 2>&1; }
list_files() {
	if in_git "$1"; then
		git -C "$1" ls-files --cached --others --exclude-standard
	else
		(cd "$1" && find . -type f ! -path './autom4te.cache/*' \
			! -path './_build/*' | sed 's|^\./||')
	fi
}
# is_source FILE: a file written by hand, read outside a git checkout.
is_source() {
	case $1 in
	*.[ch] | *.md | *.[13] | *.sh | *.inc | *.py | */Makefile.am | Makefile.am | \
		configure.ac | tools/demo | tools/run-tests | tools/install-deps) return 0 ;;
	esac
	return 1
}

# scan ROOT: one line per broken reference, "file:line: what".
scan() {
	root=$1
	git_tree=0
	in_git "$root" && git_tree=1
	list_files "$root" | sort -u >"$tmp/files"
	# Directories too, for paths that name one.
	sed -n 's|/[^/]*$||p' "$tmp/files" | sort -u >"$tmp/dirs"
	design="$root/docs/DESIGN.md"
	if [ -f "$design" ]; then
		sed -n 's/^## \([0-9][0-9]*\)\. .*/\1/p; s/^### \([0-9][0-9]*\.[0-9][0-9]*\) .*/\1/p' \
			"$design" >"$tmp/sections"
	else
		: >"$tmp/sections"
	fi
	# The files read: text only, not this test (it shows broken examples
	# in its fixture) nor test data.
	grep -v -e '^tests/test_docs\.sh$' -e '^tests/data/' -e '^tests/fuzz/' \
		"$tmp/files" | while IFS= read -r f; do
		[ "$git_tree" = 1 ] || is_source "$f" || continue
		[ -f "$root/$f" ] && grep -Iq . "$root/$f" 2>/dev/null && printf '%s\n' "$f"
	done >"$tmp/read"
	[ -s "$tmp/read" ] || return 0
	(cd "$root" && xargs awk -v sections="$tmp/sections" -v files="$tmp/files" \
		-v dirs="$tmp/dirs" -f "$tmp/scan.awk" <"$tmp/read")
}

cat >"$tmp/scan.awk" <<'EOF'
function norm(p,    n, i, out, parts, k) {
	n = split(p, parts, "/")
	k = 0
	for (i = 1; i <= n; i++) {
		if (parts[i] == "" || parts[i] == ".")
			continue
		if (parts[i] == "..") {
			if (k == 0)
				return "../" # outside the tree
			k--
			continue
		}
		out[++k] = parts[i]
	}
	p = ""
	for (i = 1; i <= k; i++)
		p = p (i > 1 ? "/" : "") out[i]
	return p
}
function exists(p) { return (p in file) || (p in dir) }
function bad(what) { printf "%s:%d: %s\n", FILENAME, FNR, what }
BEGIN {
	while ((getline l < sections) > 0) section[l] = 1
	while ((getline l < files) > 0) {
		file[l] = 1
		b = l; sub(/.*\//, "", b); base[b] = 1
	}
	while ((getline l < dirs) > 0) dir[l] = 1
}
{
	line = $0
	fdir = FILENAME; if (fdir !~ /\//) fdir = ""; else sub(/\/[^\/]*$/, "", fdir)
	in_design = FILENAME == "docs/DESIGN.md"

	# Sections of DESIGN.md.
	if (line ~ /§/ || line ~ /DESIGN\.md section [0-9]/) {
		if (!in_design && line !~ /DESIGN\.md/)
			bad("a section sign without a document: " line)
		else {
			s = line
			while (match(s, /(§ ?|DESIGN\.md section )[0-9]+(\.[0-9]+)?/)) {
				ref = substr(s, RSTART, RLENGTH)
				s = substr(s, RSTART + RLENGTH)
				sub(/^(§ ?|DESIGN\.md section )/, "", ref)
				if (!(ref in section))
					bad("DESIGN.md has no section " ref)
			}
		}
	}

	# Paths with a directory, and bare NAME.md.
	s = line
	while (match(s, /[A-Za-z0-9_.\/-]*[A-Za-z0-9_-]\.(md|c|h|sh|inc|py|json|ndjson|1|3)([^A-Za-z0-9_]|$)/)) {
		ref = substr(s, RSTART, RLENGTH)
		before = RSTART > 1 ? substr(s, RSTART - 1, 1) : ""
		s = substr(s, RSTART + RLENGTH)
		sub(/[^A-Za-z0-9_]$/, "", ref)
		if (ref ~ /^\// || before ~ /[$%{<@:]/)
			continue # absolute, a variable, an include, a URL
		if (ref !~ /\//) {
			if (ref ~ /\.md$/ && !(ref in base))
				bad("no file " ref " in the tree")
			continue
		}
		# Only paths into the tree: their first part is ".", "..", or a
		# directory of the tree (not sys/stat.h, HTTP/1.1, work/x.json).
		first = ref; sub(/\/.*/, "", first)
		if (first != "." && first != ".." && !(first in dir) &&
		    !((fdir "/" first) in dir))
			continue
		if (!exists(norm(ref)) && !exists(norm(fdir "/" ref)))
			bad("no file " ref)
	}

	# The project's man pages.
	s = line
	while (match(s, /(libskysync|skysync|libsync|skylight-emu)( |\\f[A-Z])*\([0-9]\)/)) {
		ref = substr(s, RSTART, RLENGTH)
		s = substr(s, RSTART + RLENGTH)
		name = ref; sub(/[ (\\].*/, "", name)
		sec = ref; sub(/.*\(/, "", sec); sub(/\)/, "", sec)
		if (!((name "." sec) in base))
			bad("no man page " name "(" sec ")")
	}
}
EOF

# --- the checker finds each kind of broken reference ---
fx="$tmp/fixture"
mkdir -p "$fx/docs" "$fx/src"
cat >"$fx/docs/DESIGN.md" <<'EOF'
# design
## 1. One
### 1.2 Sub
See §1 and §1.2, not §7.
## 2. Two
EOF
printf 'x\n' >"$fx/docs/tool.1"
cat >"$fx/src/a.c" <<'EOF'
/* DESIGN.md §1, §2 and §1.2 exist; DESIGN.md §3 does not. */
/* See DESIGN.md section 2 and docs/DESIGN.md §9. */
/* The wire protocol: docs/PROTOCOL.md; one outside ../outside/DESIGN.md. */
/* Bare §4 here. Also tool(1) is no page of ours; skysync(1) is missing. */
/* ../docs/DESIGN.md and src/a.c and a.c resolve; src/gone.h does not. */
EOF
scan "$fx" >"$tmp/found"
for want in "src/a.c:1: DESIGN.md has no section 3" \
	"src/a.c:2: DESIGN.md has no section 9" \
	"src/a.c:3: no file docs/PROTOCOL.md" \
	"src/a.c:3: no file ../outside/DESIGN.md" \
	"src/a.c:4: a section sign without a document" \
	"src/a.c:4: no man page skysync(1)" \
	"src/a.c:5: no file src/gone.h" \
	"docs/DESIGN.md:4: DESIGN.md has no section 7"; do
	check "the checker names: $want" grep -qF "$want" "$tmp/found"
done
check "the checker names nothing else" [ "$(wc -l <"$tmp/found")" -eq 8 ]
[ "$(wc -l <"$tmp/found")" -eq 8 ] || sed 's/^/  /' "$tmp/found"

# --- the project ---
check "docs/DESIGN.md exists" [ -f "$top_src/docs/DESIGN.md" ]
check "docs/DESIGN.md numbers its sections" grep -q '^## 11\. ' "$top_src/docs/DESIGN.md"
scan "$top_src" >"$tmp/project"
check "every reference in the project resolves" [ ! -s "$tmp/project" ]
sed 's/^/  /' "$tmp/project"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
