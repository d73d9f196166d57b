#!/usr/bin/env bash
# Replay throughput of two saslguard binaries on the same generated logs, in one run:
# the check that a change made nothing slower.
#
#   bash bench/compare.sh OLD_BINARY [SIZES...]     # default sizes: 1M and 10M lines
#   PROFILES=classic bash bench/compare.sh OLD_BINARY 1000000
#   NEW=target/pgo/release/saslguard bash bench/compare.sh OLD_BINARY   # another build as new
#
# Both run pinned to one core (taskset -c 0), alternating, best of 5 each; peak RSS
# from /usr/bin/time. The new binary is this checkout's release build (or NEW), run with
# `--threads 1` when it has the flag (one core is the comparison). Both must write the
# same `replay --json` document.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: bench/compare.sh OLD_BINARY [SIZES...]}
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
read -r -a profiles <<< "${PROFILES:-realistic classic}"
cargo build --release --quiet --bin saslguard --example loggen
new=${NEW:-target/release/saslguard}
one=()
"$new" replay --help | grep -q -- --threads && one=(--threads 1)
out=bench/out
mkdir -p "$out"
run() { # wall time (s) and max RSS (KB) of one run
  /usr/bin/time -o "$out/.time" -f "%e %M" taskset -c 0 "$@" >/dev/null 2>/dev/null
  tail -1 "$out/.time"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo
echo "| profile | lines | old: best s | old lines/s | old RSS | new: best s | new lines/s | new RSS | same output |"
echo "|---|---|---|---|---|---|---|---|---|"
for profile in "${profiles[@]}"; do
  for n in "${sizes[@]}"; do
    log="$out/$profile-$n.log"
    [ -s "$log" ] || ./target/release/examples/loggen --profile "$profile" --lines "$n" --seed 1 > "$log"
    lines=$(wc -l < "$log")
    bo="" bn="" ro=0 rn=0
    for _ in 1 2 3 4 5; do
      read -r t m < <(run "$old" replay --json --timezone UTC "$log")
      { [ -z "$bo" ] || awk "BEGIN{exit !($t < $bo)}"; } && bo=$t
      [ "$m" -gt "$ro" ] && ro=$m
      read -r t m < <(run "$new" replay "${one[@]}" --json --timezone UTC "$log")
      { [ -z "$bn" ] || awk "BEGIN{exit !($t < $bn)}"; } && bn=$t
      [ "$m" -gt "$rn" ] && rn=$m
    done
    cmp -s <("$old" replay --json --timezone UTC "$log") <("$new" replay "${one[@]}" --json --timezone UTC "$log") \
      && same=yes || same="NO"
    echo "| $profile | $lines | $bo | $(awk "BEGIN{printf \"%d\", $lines / $bo}") | $((ro / 1024)) MB | $bn | $(awk "BEGIN{printf \"%d\", $lines / $bn}") | $((rn / 1024)) MB | $same |"
  done
done
