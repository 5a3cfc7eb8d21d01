#!/bin/sh
# test_damage.sh - a damaged cache file is reported, never a crash.
#
# A cache holding 500 queued writes; for each seed, a copy whose data.mdb
# has random bytes written over random places of 1 to 3 random pages.
# Then: check exits 0, 3 or 5, never by a signal; stats, get, query,
# outbox list and a write exit 0, 2, 3 or 5, never by a signal; salvage
# never dies by a signal, leaves the damaged file byte for byte as it
# was, and its new cache opens, passes check's page walk (exit 0 or 3),
# and holds no more queued writes than the original, each of them whole.
#
# SEED=N replays one seed; SEEDS=N runs N seeds (5 by default here,
# tests/soak/damage runs 20). Delivery of the salvaged writes to the
# emulator is not part of this test.
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skydamage.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
. "$top_src/tests/lib.sh"

nseeds=${SEEDS:-5}
first=${SEED:-${FIRST_SEED:-1}}
[ -n "${SEED:-}" ] && nseeds=1
echo "seeds $first..$((first + nseeds - 1)) (SEED=N to replay one)"

db="$tmp/cache"
check "apply example events" run 0 "$skysync" --db "$db" apply "$top_src/tools/examples/events.ndjson"
i=0
while [ $i -lt 500 ]; do
	case $((i % 2)) in
	0) sid=s-1001 ;; *) sid=s-1003 ;;
	esac
	"$skysync" --db "$db" data patch inspections $sid "{\"w$i\":\"value $i of the damage test\"}" >/dev/null 2>"$tmp/err" || break
	i=$((i + 1))
done
check "500 writes queued" [ "$i" -eq 500 ]
check "outbox holds 500" [ "$("$skysync" --db "$db" outbox list | wc -l)" -eq 500 ]
pages=$(($(wc -c <"$db/data.mdb") / 4096))

# A damaged meta record: the next write refuses (exit 5), the cache is
# left as it was and never started afresh.
if command -v mdb_load >/dev/null 2>&1; then
	cp -r "$db" "$tmp/meta"
	printf 'VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END\n %s\n %s\nDATA=END\n' \
		736368656d61 00000002deadbeef | mdb_load -s meta "$tmp/meta"
	sum=$(cksum <"$tmp/meta/data.mdb")
	check "damaged meta: a write exits 5" run 5 "$skysync" --db "$tmp/meta" data patch inspections s-1001 '{"x":1}'
	check "damaged meta: the message says so" grep -q "meta record is damaged.*salvage" "$tmp/err"
	check "damaged meta: the cache is unchanged" [ "$(cksum <"$tmp/meta/data.mdb")" = "$sum" ]
	check "damaged meta: a read exits 5 too" run 5 "$skysync" --db "$tmp/meta" get inspections s-1001
	rm -rf "$tmp/meta"
else
	echo "SKIP: mdb_load not found: damaged meta not tested from the CLI"
fi

# ok_exit CODE ALLOWED...: CODE is one of ALLOWED (never a signal).
ok_exit() {
	code=$1
	shift
	for a in "$@"; do [ "$code" -eq "$a" ] && return 0; done
	return 1
}

s=$first
while [ $s -lt $((first + nseeds)) ]; do
	x="$tmp/x$s"
	cp -r "$db" "$x"
	corrupt "$x/data.mdb" "$s"
	sum=$(cksum <"$x/data.mdb")
	"$skysync" --db "$x" check >/dev/null 2>"$tmp/err"
	rc=$?
	check "seed $s: check exits 0, 3 or 5 (got $rc)" ok_exit $rc 0 3 5
	for cmd in "stats" "get inspections s-1001" "query inspections" "outbox list"; do
		# shellcheck disable=SC2086
		"$skysync" --db "$x" $cmd >/dev/null 2>"$tmp/err"
		rc=$?
		check "seed $s: $cmd exits 0, 2, 3 or 5 (got $rc)" ok_exit $rc 0 2 3 5
	done
	cp -r "$x" "$x.w"
	"$skysync" --db "$x.w" data patch inspections s-1001 '{"after":"damage"}' >/dev/null 2>"$tmp/err"
	rc=$?
	check "seed $s: a write exits 0, 2, 3 or 5 (got $rc)" ok_exit $rc 0 2 3 5
	if [ $rc -eq 5 ]; then
		check "seed $s: the refusal names the damage and salvage" grep -q 'damaged.*salvage' "$tmp/err"
	fi
	"$skysync" --db "$x" salvage "$x.saved" >"$tmp/saved" 2>"$tmp/err"
	rc=$?
	check "seed $s: salvage exits 0 (got $rc: $(tail -1 "$tmp/err"))" [ $rc -eq 0 ]
	check "seed $s: the damaged file is unchanged" [ "$(cksum <"$x/data.mdb")" = "$sum" ]
	if [ $rc -eq 0 ]; then
		"$skysync" --db "$x.saved" check >/dev/null 2>"$tmp/err"
		rc=$?
		check "seed $s: the salvaged cache has no damage (check $rc)" ok_exit $rc 0 3
		n=$("$skysync" --db "$x.saved" outbox list 2>/dev/null | wc -l)
		saved=$(jq -r .outbox "$tmp/saved")
		check "seed $s: $n of 500 queued writes saved, as reported ($saved)" \
			sh -c "[ $n -le 500 ] && [ $n -eq $saved ]"
		# Every saved write is one of the originals, byte for byte.
		"$skysync" --db "$db" outbox list | jq -c '{id, body}' | sort >"$tmp/orig"
		"$skysync" --db "$x.saved" outbox list | jq -c '{id, body}' | sort >"$tmp/got"
		check "seed $s: each saved write is an original one" \
			sh -c "[ -z \"\$(comm -13 '$tmp/orig' '$tmp/got')\" ]"
	fi
	rm -rf "$x" "$x.w" "$x.saved"
	s=$((s + 1))
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
