#!/bin/sh
# test_salvage_sync.sh - the writes salvage saves from a damaged cache are
# then delivered by sync, each exactly once.
#
# A cache is filled by a first sync from skylight-emu (seeded with
# tools/examples/realm.json), then 200 writes are queued with no sync
# running: 100 `session create` with unique names and 100 `data patch`
# with unique keys on sessions of the server. For each seed: a copy whose
# data.mdb is damaged (1-3 random pages, as in test_damage.sh), salvaged
# into a new cache, whose outbox is recorded; that cache is synced to a
# fresh emulator. Then, on the emulator's realm (GET /_admin/realm): each
# salvaged create exists exactly once, no create that was not salvaged
# exists, each salvaged patch key is in its session's data. The writes
# lost to the damage are printed.
#
# SEED=N replays one seed; SEEDS=N runs N seeds (3 by default).
set -u
top_src=${SKY_TOP_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
top_build=${SKY_TOP_BUILDDIR:-$top_src}
skysync="$top_build/tools/skysync"
emu="$top_build/tools/skylight-emu"
seedf="$top_src/tools/examples/realm.json"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/skysalvsync.XXXXXX")
sky_emu_pid=
trap 'sky_stop "$sky_emu_pid"; rm -rf "$tmp"' EXIT INT TERM
. "$top_src/tests/lib.sh"
. "$top_src/tools/servers.sh"

nseeds=${SEEDS:-3}
first=${SEED:-${FIRST_SEED:-1}}
[ -n "${SEED:-}" ] && nseeds=1
echo "seeds $first..$((first + nseeds - 1)) (SEED=N to replay one)"

printf '%s\n' integration-pass >"$tmp/pw"
chmod 600 "$tmp/pw"

# emu_fresh: a new emulator from the seed; sets sync_args.
emu_fresh() {
	sky_stop "$sky_emu_pid"
	sky_emu_pid=
	sky_emu_start "$emu" "$tmp/emu.out" "$tmp/emu.log" 0 --seed "$seedf" || return 1
	# No broker is needed for a one-shot sync; port 1 is never a broker.
	sync_args="--server http://127.0.0.1:$sky_emu_port --broker mqtt://127.0.0.1:1 --realm demo --user integration --password-file $tmp/pw"
}

check "the emulator starts" emu_fresh || { echo "$passed passed, $failed failed"; exit 1; }
db="$tmp/cache"
# shellcheck disable=SC2086
check "a first sync fills the cache" run 0 "$skysync" --db "$db" sync $sync_args
sky_stop "$sky_emu_pid"
sky_emu_pid=
jq -r '.sessions[].session | select(.applicationId == "app-inspections" and .status == "open") | .sessionId' "$seedf" | head -4 >"$tmp/sids"
check "the seed has sessions to patch" [ "$(wc -l <"$tmp/sids")" -eq 4 ]
i=0 bad=0
while [ $i -lt 100 ]; do
	"$skysync" --db "$db" session create app-inspections "salvage-create-$i" >/dev/null 2>"$tmp/err" || bad=$((bad + 1))
	sid=$(sed -n "$((i % 4 + 1))p" "$tmp/sids")
	"$skysync" --db "$db" data patch app-inspections "$sid" "{\"salvage-key-$i\":$i}" >/dev/null 2>"$tmp/err" || bad=$((bad + 1))
	i=$((i + 1))
done
check "200 writes queued ($bad refused: $(tail -1 "$tmp/err"))" [ "$bad" -eq 0 ]
check "outbox holds 200" [ "$("$skysync" --db "$db" outbox list | wc -l)" -eq 200 ]
pages=$(($(wc -c <"$db/data.mdb") / 4096))

s=$first
while [ $s -lt $((first + nseeds)) ]; do
	x="$tmp/x$s"
	cp -r "$db" "$x"
	corrupt "$x/data.mdb" "$s"
	if ! "$skysync" --db "$x" salvage "$x.saved" >/dev/null 2>"$tmp/err"; then
		fail "seed $s: salvage failed: $(tail -1 "$tmp/err")"
		s=$((s + 1))
		continue
	fi
	"$skysync" --db "$x.saved" outbox list >"$tmp/ob" 2>/dev/null
	grep -o '"name":"salvage-create-[0-9]*"' "$tmp/ob" | sed 's/.*"\(salvage-create-[0-9]*\)"/\1/' | sort -u >"$tmp/creates"
	grep -o '"salvage-key-[0-9]*"' "$tmp/ob" | tr -d '"' | sort -u >"$tmp/keys"
	nc=$(wc -l <"$tmp/creates") nk=$(wc -l <"$tmp/keys")
	check "seed $s: a fresh emulator" emu_fresh || break
	# shellcheck disable=SC2086
	"$skysync" --db "$x.saved" sync $sync_args >/dev/null 2>"$tmp/err"
	rc=$?
	check "seed $s: sync of the salvaged cache exits 0 (got $rc: $(tail -1 "$tmp/err"))" [ $rc -eq 0 ]
	left=$("$skysync" --db "$x.saved" outbox list 2>/dev/null | wc -l)
	curl -sf "http://127.0.0.1:$sky_emu_port/_admin/realm" >"$tmp/realm" 2>/dev/null
	jq -r '.sessions[].session.name' "$tmp/realm" | grep '^salvage-create-' | sort >"$tmp/srv_names"
	jq -r '.sessions[].data | objects | keys[]' "$tmp/realm" | grep '^salvage-key-' | sort -u >"$tmp/srv_keys"
	check "seed $s: no create delivered twice" [ -z "$(uniq -d "$tmp/srv_names")" ]
	check "seed $s: every salvaged create is on the server" [ -z "$(sort -u "$tmp/srv_names" | comm -23 "$tmp/creates" -)" ]
	check "seed $s: no create that was not salvaged is on the server" [ -z "$(sort -u "$tmp/srv_names" | comm -13 "$tmp/creates" -)" ]
	missing=$(comm -23 "$tmp/keys" "$tmp/srv_keys" | tr '\n' ' ')
	check "seed $s: every salvaged patch key is on the server (missing: $missing)" [ -z "$missing" ]
	dc=$(sort -u "$tmp/srv_names" | wc -l) dk=$(wc -l <"$tmp/srv_keys")
	lost_c=$(seq 0 99 | sed 's/^/salvage-create-/' | sort | comm -23 - "$tmp/creates" | tr '\n' ' ')
	lost_k=$(seq 0 99 | sed 's/^/salvage-key-/' | sort | comm -23 - "$tmp/keys" | tr '\n' ' ')
	echo "seed $s: queued 200, salvaged $((nc + nk)) ($nc creates, $nk patches), delivered $((dc + dk)) ($dc, $dk), left in outbox $left, lost $((200 - nc - nk))"
	[ -n "$lost_c$lost_k" ] && echo "seed $s: lost: $lost_c$lost_k"
	rm -rf "$x" "$x.saved"
	s=$((s + 1))
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
