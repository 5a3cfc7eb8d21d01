#!/bin/sh
# test_cli_conventions.sh - the operator-facing conventions of skysync(1):
# the outbox in `stats` (JSON, table, Prometheus text parsed strictly, and
# by `promtool check metrics` when it is installed); -V; `help CMD` equal
# to `CMD --help` for every command; "--" ending the options; malformed
# server and broker URLs refused with exit 3 before anything else; every
# table (get, stats, apps, query, outbox list) aligned by display width
# with accented, combining and CJK text; the bash completion; and the
# default cache directory (state, not cache) with the note for a cache
# left at the old default.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skyconv.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
db="$tmp/db"
. "$top_src/tests/lib.sh"
jq_true() { jq -e "$@" >/dev/null; }
fails() { ! "$@" 2>/dev/null; } # fails CMD...: CMD fails (its stderr dropped)

command -v jq >/dev/null || { echo "FAIL: jq is missing (tools/install-deps)"; exit 1; }
command -v mdb_load >/dev/null || { echo "FAIL: mdb_load is missing (lmdb-utils)"; exit 1; }
command -v python3 >/dev/null || { echo "FAIL: python3 is missing (tools/install-deps)"; exit 1; }

# A realm with ASCII, accented (precomposed and combining) and CJK names
# and ids, and a session id that starts with a dash.
session_created() { # SID NAME
	printf '{"applicationId":"t","sessionId":"%s","eventId":"e-%s","createdAt":"2026-11-02T08:00:00Z","eventType":"session_created","session":{"applicationId":"t","sessionId":"%s","status":"open","version":1,"name":"%s","createdAt":"2026-11-02T08:00:00Z","properties":{"site":"%s"}}}\n' "$1" "$1" "$1" "$2" "$2"
}
comb=$(printf 'Cafe\314\201') # "Café" with a combining acute: 4 columns
{
	session_created ascii "abcd"
	session_created "café" "Café"
	session_created "$comb" "$comb"
	session_created "日本" "日本語"
	session_created "-sid-with-dash" "dash"
} >"$tmp/t.ndjson"
check "apply the realm" run 0 "$skysync" --db "$db" apply "$tmp/t.ndjson"
check "an application (put_app)" "$top_build/tests/put_app" "$db" '{"applicationId":"t","name":"Tést 日本"}'

# --- the outbox in stats ---
check "stats: empty outbox" run 0 "$skysync" --db "$db" stats
check "stats: outbox keys, all zero or null" jq_true '.outboxPending == 0 and .outboxInDoubt == 0 and .outboxDeadLetters == 0 and .outboxDelivered == 0 and .outboxOldestPendingAgeS == 0 and .lastDeliveryAt == null' "$tmp/out"
for sid in ascii "café" "日本"; do
	"$skysync" --db "$db" session rename t "$sid" "renamed $sid" >/dev/null 2>&1
done
check "stats: three writes pending" run 0 "$skysync" --db "$db" stats
check "stats: outboxPending 3" jq_true '.outboxPending == 3 and .outboxDeadLetters == 0' "$tmp/out"
# Delivery bookkeeping as libsync/outbox.h keeps it (big-endian u64 in the
# "meta" database), written into a backup: 41 delivered, the last at a
# known time.
hex() { printf %s "$1" | od -An -tx1 | tr -d ' \n'; }
"$skysync" --db "$db" backup "$tmp/ob" 2>/dev/null
{
	printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n'
	# Values carry their seal (libsync/sealed.h).
	printf ' %s\n %s\n' "$(hex outbox_delivered)" \
		"$("$top_build/tests/sealtool" "$(printf %016x 41)")" \
		"$(hex outbox_last_delivery)" \
		"$("$top_build/tests/sealtool" "$(printf %016x 1793610000250000)")"
	printf 'DATA=END\n'
} >"$tmp/meta.dump"
check "delivery recorded (mdb_load)" sh -c "umask 077 && mdb_load -s meta '$tmp/ob' <'$tmp/meta.dump'"
check "stats JSON" run 0 "$skysync" --db "$tmp/ob" stats
cp "$tmp/out" "$tmp/stats.json"
check "stats: delivered and last delivery" jq_true '.outboxDelivered == 41 and .lastDeliveryAt == "2026-11-02T09:00:00Z" and .outboxPending == 3' "$tmp/stats.json"
check "stats: oldest pending age is a number of seconds" jq_true '.outboxOldestPendingAgeS | type == "number" and . >= 0' "$tmp/stats.json"
check "stats table" run 0 "$skysync" --db "$tmp/ob" --format table stats
check "stats table: outbox rows" sh -c "grep -q '^outboxDelivered  *41\$' '$tmp/out' && grep -q '^outboxPending  *3\$' '$tmp/out' && grep -q '^lastDeliveryAt  *2026-11-02T09:00:00Z\$' '$tmp/out'"
check "stats table: no trailing blanks" sh -c "! grep -q ' \$' '$tmp/out'"
check "stats prometheus" run 0 "$skysync" --db "$tmp/ob" --format prometheus stats
cp "$tmp/out" "$tmp/stats.prom"

# The exposition format, parsed strictly: each family has "# HELP" then
# "# TYPE" (counter or gauge), once; names match the Prometheus grammar;
# counters, and only counters, end in _total; every sample belongs to the
# family declared last and its value is a number; no other line.
prom_strict() {
	python3 - "$1" <<'PY'
import re, sys
name_re = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*$')
label_re = re.compile(r'^\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*")*\}$')
num_re = re.compile(r'^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$|^[+-]?Inf$|^NaN$')
text = open(sys.argv[1], encoding="utf-8").read()
errs, helped, typed, samples = [], {}, {}, {}
family = None
if not text.endswith("\n"):
    errs.append("no final newline")
for n, line in enumerate(text.splitlines(), 1):
    if line.startswith("# HELP "):
        parts = line.split(" ", 3)
        if len(parts) < 4 or not parts[3].strip():
            errs.append("%d: HELP without text" % n); continue
        if not name_re.match(parts[2]) or parts[2] in helped:
            errs.append("%d: bad or repeated HELP name" % n)
        helped[parts[2]] = n
    elif line.startswith("# TYPE "):
        parts = line.split(" ")
        if len(parts) != 4 or parts[3] not in ("counter", "gauge"):
            errs.append("%d: bad TYPE line" % n); continue
        f, t = parts[2], parts[3]
        if helped.get(f) != n - 1:
            errs.append("%d: TYPE %s not right after its HELP" % (n, f))
        if (t == "counter") != f.endswith("_total"):
            errs.append("%d: %s: counters and only counters end in _total" % (n, f))
        typed[f] = t; samples[f] = 0; family = f
    else:
        m = re.match(r'^([^{ ]+)(\{[^}]*\})? (\S+)$', line)
        if not m:
            errs.append("%d: not a sample: %r" % (n, line)); continue
        name, labels, value = m.groups()
        if not name_re.match(name): errs.append("%d: bad name %s" % (n, name))
        if labels and not label_re.match(labels): errs.append("%d: bad labels" % n)
        if not num_re.match(value): errs.append("%d: bad value %s" % (n, value))
        if name != family: errs.append("%d: %s outside its family" % (n, name))
        else: samples[family] += 1
for f in helped:
    if f not in typed: errs.append("%s: HELP without TYPE" % f)
for f, k in samples.items():
    if k == 0: errs.append("%s: no sample" % f)
for e in errs: print("  " + e, file=sys.stderr)
sys.exit(1 if errs else 0)
PY
}
check "prometheus: strict parse" prom_strict "$tmp/stats.prom"
prom() { awk -v n="$1" '$1 == n { print $2 }' "$tmp/stats.prom"; }
for f in skysync_outbox_pending:gauge skysync_outbox_in_doubt:gauge \
	skysync_outbox_dead_letters:gauge skysync_outbox_delivered_total:counter \
	skysync_outbox_oldest_pending_age_seconds:gauge \
	skysync_outbox_last_delivery_timestamp_seconds:gauge; do
	check "prometheus: ${f%%:*} typed ${f#*:}" grep -qx "# TYPE ${f%%:*} ${f#*:}" "$tmp/stats.prom"
done
check "prometheus: pending 3 = JSON" [ "$(prom skysync_outbox_pending)" = "$(jq .outboxPending "$tmp/stats.json")" ]
check "prometheus: in doubt 0, dead letters 0" [ "$(prom skysync_outbox_in_doubt) $(prom skysync_outbox_dead_letters)" = "0 0" ]
check "prometheus: delivered_total 41" [ "$(prom skysync_outbox_delivered_total)" = 41 ]
check "prometheus: last delivery to the microsecond" [ "$(prom skysync_outbox_last_delivery_timestamp_seconds)" = 1793610000.25 ]
sed 's/skysync_outbox_delivered_total/skysync_outbox_delivered/' "$tmp/stats.prom" >"$tmp/bad.prom"
check "prometheus: the strict parser refuses a counter without _total" fails prom_strict "$tmp/bad.prom"
sed 's/^skysync_outbox_pending 3$/skysync_outbox_pending three/' "$tmp/stats.prom" >"$tmp/bad.prom"
check "prometheus: the strict parser refuses a value that is no number" fails prom_strict "$tmp/bad.prom"
grep -v '^# TYPE skysync_outbox_in_doubt' "$tmp/stats.prom" >"$tmp/bad.prom"
check "prometheus: the strict parser refuses a family without TYPE" fails prom_strict "$tmp/bad.prom"
if command -v promtool >/dev/null; then
	check "promtool check metrics" sh -c "promtool check metrics <'$tmp/stats.prom'"
else
	echo "SKIP: promtool check metrics (promtool not installed)"
fi

# --- -V, help CMD, -- ---
check "-V" run 0 "$skysync" -V
cp "$tmp/out" "$tmp/V"
check "--version" run 0 "$skysync" --version
check "-V prints what --version prints" cmp -s "$tmp/V" "$tmp/out"
check "-V: skysync VERSION" grep -qx 'skysync [0-9][0-9.]*[^ ]*' "$tmp/out"
check "help" run 0 "$skysync" help
cp "$tmp/out" "$tmp/help"
check "--help" run 0 "$skysync" --help
check "help prints what --help prints" cmp -s "$tmp/help" "$tmp/out"
for cmd in apply get data apps roles stats check backup events query sync \
	session props "data patch" participant event outbox; do
	# shellcheck disable=SC2086
	"$skysync" help $cmd >"$tmp/h1" 2>&1
	r1=$?
	# shellcheck disable=SC2086
	"$skysync" $cmd --help >"$tmp/h2" 2>&1
	r2=$?
	check "help $cmd = $cmd --help" sh -c "[ $r1 = 0 ] && [ $r2 = 0 ] && [ -s '$tmp/h1' ] && cmp -s '$tmp/h1' '$tmp/h2'"
done
check "help of an unknown command exits 1" run 1 "$skysync" help frobnicate
check "help of an unknown command says so" grep -q "unknown command 'frobnicate'" "$tmp/err"
check "get -- APP -sid-with-dash" run 0 "$skysync" --db "$db" get -- t -sid-with-dash
check "get --: the session read" jq_true '.sessionId == "-sid-with-dash"' "$tmp/out"
check "data -- APP -sid-with-dash" run 0 "$skysync" --db "$db" data -- t -sid-with-dash
check "get -- APP --help: an argument, not help" run 2 "$skysync" --db "$db" get -- t --help
check "session rename -- APP -sid NAME" run 0 "$skysync" --db "$db" session rename -- t -sid-with-dash "-new name"
check "session rename --: renamed" jq_true '.name == "-new name"' "$tmp/out"
check "events -- APP -sid" run 0 "$skysync" --db "$db" events -- t -sid-with-dash
check "-- before global options: they are arguments" run 1 "$skysync" --db "$db" get t -- --format table
check "query -- keeps predicates" run 0 "$skysync" --db "$db" query t -- site=dash
check "query --: the session found" jq_true '.sessionId == "-sid-with-dash"' "$tmp/out"

# --- malformed URLs: exit 3, before the password is even looked for ---
for url in notaurl ftp://h.example http:// https:///v1 http://:8080 \
	'http://h:0' 'http://h:65536' 'http://h:80x' '[::1]:80'; do
	check "sync --server '$url': exit 3" run 3 env -u SKYSYNC_PASSWORD "$skysync" --db "$tmp/urldb" sync --server "$url" --realm r --user u
	check "sync --server '$url': says why" grep -q "^skysync sync: --server '.*'\( is not a URL\| has no host name\|: the port\)" "$tmp/err"
done
check "sync --broker http://h: exit 3" run 3 env -u SKYSYNC_PASSWORD "$skysync" --db "$tmp/urldb" sync --server http://127.0.0.1:9 --broker http://h --realm r --user u
check "sync --broker: names mqtt://" grep -q "mqtt://" "$tmp/err"
check "sync --broker mqtt://: no host, exit 3" run 3 env -u SKYSYNC_PASSWORD "$skysync" --db "$tmp/urldb" sync --server http://127.0.0.1:9 --broker mqtt:// --realm r --user u
check "refused URLs created no cache" [ ! -e "$tmp/urldb" ]
check "a well-formed URL passes the check (then: no password, exit 1)" run 1 env -u SKYSYNC_PASSWORD "$skysync" --db "$tmp/urldb" sync --server 'http://[::1]:9/v1' --broker mqtt://u@127.0.0.1:9 --realm r --user u

# --- tables: every column starts where its header does, by display width ---
# aligned FILE: for each header column at display column c > 0, every row
# has a blank just before c and, unless the cell is empty, text at c.
aligned() {
	python3 - "$1" <<'PY'
import sys, unicodedata
def width(ch):
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
def cols(line):
    # the character at each display column (wide ones take two)
    out = []
    for ch in line:
        w = width(ch)
        if w == 0 and out:
            out[-1] += ch
        else:
            out.extend([ch] + [""] * (w - 1))
    return out
lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
head = lines[0]
starts = [i for i in range(1, len(head)) if head[i] != " " and head[i - 1] == " "]
bad = 0
for n, line in enumerate(lines[1:], 2):
    c = cols(line)
    for s in starts:
        if s >= len(c):
            continue  # empty trailing cells are not printed
        if c[s - 1] != " " or (c[s] == "" ):
            print("  line %d: column at %d misaligned: %r" % (n, s, line), file=sys.stderr)
            bad = 1
    for i in range(2, len(c)):
        if c[i] not in (" ", "") and c[i - 1] == " " and c[i - 2] == " " and i not in starts:
            print("  line %d: a cell starts at %d, no column there: %r" % (n, i, line), file=sys.stderr)
            bad = 1
    if line != line.rstrip():
        print("  line %d: trailing blanks" % n, file=sys.stderr); bad = 1
sys.exit(bad)
PY
}
table_case() { # NAME CMD...: the table printed and aligned
	name=$1
	shift
	check "table $name" run 0 "$skysync" --db "$db" --format table "$@"
	cp "$tmp/out" "$tmp/table"
	check "table $name: aligned by display width" aligned "$tmp/table"
}
table_case "query" query t
check "table query: wide and combining rows present" sh -c "grep -q '^日本 ' '$tmp/table' && grep -q '^$comb ' '$tmp/table'"
table_case "outbox list" outbox list
check "table outbox list: the CJK session's write" grep -q ' 日本 ' "$tmp/table"
table_case "apps" apps
check "table apps: the accented, CJK name" grep -q 'Tést 日本' "$tmp/table"
table_case "get (CJK)" get t 日本
table_case "get (combining)" get t "$comb"
table_case "stats" stats
# The checker itself sees a misalignment by bytes (padding by byte count).
printf 'name  x\n日本  y\n' >"$tmp/bytes"
check "aligned: counts columns, not bytes" aligned "$tmp/bytes"
printf 'name  x\n日本    y\n' >"$tmp/bytes"
check "aligned: refuses padding by bytes" fails aligned "$tmp/bytes"

# --- bash completion ---
comp="$top_src/tools/completion/skysync.bash"
if command -v bash >/dev/null; then
	# complete_words DB WORD...: the completions of the last word.
	complete_words() {
		PATH="$top_build/tools:$PATH" bash --norc --noprofile -c '
			. "$0" || exit 1
			shift 0
			COMP_WORDS=("$@")
			COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
			COMP_LINE="$*"
			_skysync skysync "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
			printf "%s\n" "${COMPREPLY[@]}"' "$comp" "$@"
	}
	check "completion: loads, complete -p names it" sh -c "bash --norc --noprofile -c '. \"$comp\" && complete -p skysync' | grep -qx 'complete -F _skysync skysync'"
	check "completion: skysync qu -> query" [ "$(complete_words skysync qu)" = query ]
	check "completion: commands" [ "$(complete_words skysync s | tr '\n' ' ')" = "stats sync session " ]
	check "completion: global options" [ "$(complete_words skysync --f)" = --format ]
	check "completion: --format values" [ "$(complete_words skysync --format "" | tr '\n' ' ')" = "json table prometheus " ]
	check "completion: sync options" [ "$(complete_words skysync sync --ser)" = --server ]
	check "completion: query options" [ "$(complete_words skysync query t --ex)" = --explain ]
	check "completion: session subcommands" [ "$(complete_words skysync session re)" = rename ]
	check "completion: outbox subcommands" [ "$(complete_words skysync outbox d)" = drop ]
	check "completion: application ids from the cache" [ "$(complete_words skysync --db "$db" get "")" = t ]
	check "completion: --db after the command too" [ "$(complete_words skysync get --db "$db" "")" = t ]
	check "completion: no cache, no ids, no noise" [ -z "$(complete_words skysync --db "$tmp/nocache" get "" 2>&1)" ]
	check "completion: reading ids made no cache" [ ! -e "$tmp/nocache" ]
else
	echo "SKIP: bash completion (no bash)"
fi

# --- the default cache directory: state, not cache ---
home="$tmp/home"
mkdir -p "$home"
nodb() { env -u SKYSYNC_DB -u XDG_STATE_HOME -u XDG_CACHE_HOME HOME="$home" "$@"; }
check "default: a new cache under ~/.local/state/skysync" run 0 nodb "$skysync" apply "$tmp/t.ndjson"
check "default: ~/.local/state/skysync holds it" [ -f "$home/.local/state/skysync/data.mdb" ]
check "default: nothing under ~/.cache" [ ! -e "$home/.cache" ]
check "default: no note" [ ! -s "$tmp/err" ]
check "default: stats" run 0 nodb "$skysync" stats
check "default: stats names it" jq_true --arg d "$home/.local/state/skysync" '.db == $d' "$tmp/out"
check "XDG_STATE_HOME wins over ~/.local/state" run 0 env -u SKYSYNC_DB HOME="$home" XDG_STATE_HOME="$tmp/xs" "$skysync" apply "$tmp/t.ndjson"
check "XDG_STATE_HOME: the cache is there" [ -f "$tmp/xs/skysync/data.mdb" ]
check "SKYSYNC_DB wins over both" run 0 env SKYSYNC_DB="$tmp/env" HOME="$home" XDG_STATE_HOME="$tmp/xs" "$skysync" apply "$tmp/t.ndjson"
check "SKYSYNC_DB: the cache is there" [ -f "$tmp/env/data.mdb" ]
# A cache left at the old default, nothing at the new one: used, with a note.
mv "$home/.local/state/skysync" "$tmp/moved"
rmdir "$home/.local/state" "$home/.local"
mkdir -p "$home/.cache"
mv "$tmp/moved" "$home/.cache/skysync"
check "old default: used" run 0 nodb "$skysync" get t ascii
check "old default: the session read from it" jq_true '.sessionId == "ascii"' "$tmp/out"
check "old default: one line on stderr" [ "$(wc -l <"$tmp/err")" = 1 ]
check "old default: the note says how to move it" grep -qF "mv '$home/.cache/skysync' '$home/.local/state/skysync'" "$tmp/err"
check "old default: nothing made at the new place" [ ! -e "$home/.local" ]
# The note's advice works: after it, the new place is used, silently.
check "old default: the advice, run" sh -c "$(sed -n "s/.*(move it: \(.*\))\$/\1/p" "$tmp/err")"
check "moved: used without a note" run 0 nodb "$skysync" get t ascii
check "moved: no note" [ ! -s "$tmp/err" ]
check "moved: from the new place" [ -f "$home/.local/state/skysync/data.mdb" ] && [ ! -e "$home/.cache/skysync" ]
# Both there: the new one is used and the old one left alone, silently.
mkdir -p "$home/.cache/skysync"
check "both: the new one, no note" run 0 nodb "$skysync" get t ascii
check "both: no note" [ ! -s "$tmp/err" ]
XDG_CACHE_HOME_old="$tmp/xc"
mkdir -p "$XDG_CACHE_HOME_old/skysync"
check "XDG_CACHE_HOME as the old default too" run 2 env -u SKYSYNC_DB -u XDG_STATE_HOME HOME="$tmp/emptyhome" XDG_CACHE_HOME="$XDG_CACHE_HOME_old" "$skysync" apply /nonexistent
check "XDG_CACHE_HOME: the note names it" grep -qF "mv '$XDG_CACHE_HOME_old/skysync' '$tmp/emptyhome/.local/state/skysync'" "$tmp/err"

# --- the exit codes: one table in the manual, the codes cli.h defines ---
man="$top_src/docs/skysync.1"
codes=$(sed -n 's/^\tEXIT_[A-Z]* = \([0-9]*\),.*$/\1/p' "$top_src/tools/cli/cli.h" | tr '\n' ' ')
check "cli.h defines exit codes 0-5" [ "$codes" = "0 1 2 3 4 5 " ]
listed=$(sed -n '/^\.SH EXIT STATUS/,/^\.SH /p' "$man" | sed -n 's/^\.B \([0-9][0-9]*\)$/\1/p' | tr '\n' ' ')
check "the manual's EXIT STATUS lists the same codes" [ "$listed" = "$codes" ]
check "only one table of exit codes in the manual" [ "$(grep -c '^\.SH EXIT STATUS' "$man")" = 1 ]

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
