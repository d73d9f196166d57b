#!/usr/bin/env bash
# Replay throughput and memory: saslguard against fail2ban-regex (the tool it replaces)
# and ripgrep (a ceiling: it only counts matching lines), on generated mail logs of
# both loggen profiles (realistic: the default mix, issue 17; classic: issue 2's).
#
#   bash bench/replay.sh                      # 1M and 10M lines, both profiles
#   PROFILES=realistic bash bench/replay.sh 100000
#
# saslguard runs twice per file: `--threads 1` pinned to one core (taskset -c 0), and
# `--threads 2` on both cores (each file read and parsed on a thread of its own while
# another counts; the script checks both documents are the same). Times are the best
# of 3 runs, peak RSS from /usr/bin/time. fail2ban-regex runs once, pinned, and only on
# files of at most $F2B_MAX_LINES lines (default 1M: it needs about 40 s per million
# lines); its lines/s on the largest such file of the profile is the reference for the
# ratio on larger files.
set -euo pipefail
cd "$(dirname "$0")/.."
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000000 10000000)
read -r -a profiles <<< "${PROFILES:-realistic classic}"
F2B_MAX_LINES=${F2B_MAX_LINES:-1000000}

need=()
command -v fail2ban-regex >/dev/null || need+=(fail2ban)
command -v rg >/dev/null || need+=(ripgrep)
[ -x /usr/bin/time ] || need+=(time)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin saslguard --example loggen
bin=target/release/saslguard
out=bench/out
mkdir -p "$out"

best() { # best wall time (s) and max RSS (KB) of 3 runs of "$@", output discarded
  local best_t="" rss=0
  for _ in 1 2 3; do
    local r
    /usr/bin/time -o "$out/.time" -f "%e %M" "$@" >/dev/null 2>/dev/null
    r=$(tail -1 "$out/.time")
    local t=${r% *} m=${r#* }
    if [ -z "$best_t" ] || awk "BEGIN{exit !($t < $best_t)}"; then best_t=$t; fi
    [ "$m" -gt "$rss" ] && rss=$m
  done
  echo "$best_t $rss"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
echo "saslguard $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(fail2ban-regex --version 2>/dev/null | head -1), $(rg --version | head -1)"
echo
echo "| profile | lines | size | 1 core: s | lines/s | peak RSS | 2 cores: s | lines/s | peak RSS | fail2ban-regex lines/s | ratio (1 core) | rg -c lines/s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for profile in "${profiles[@]}"; do
  f2b_rate=""
  for n in "${sizes[@]}"; do
    log="$out/$profile-$n.log"
    [ -s "$log" ] || ./target/release/examples/loggen --profile "$profile" --lines "$n" --seed 1 > "$log"
    lines=$(wc -l < "$log")
    size=$(du -h "$log" | cut -f1)
    read -r t1 rss1 < <(best taskset -c 0 "$bin" replay --threads 1 --json --timezone UTC "$log")
    read -r t2 rss2 < <(best "$bin" replay --threads 2 --json --timezone UTC "$log")
    cmp -s <("$bin" replay --threads 1 --json --timezone UTC "$log") <("$bin" replay --threads 2 --json --timezone UTC "$log") \
      || echo "WARNING: --threads 2 wrote another document than --threads 1 for $log" >&2
    rate1=$(awk "BEGIN{printf \"%d\", $lines / $t1}")
    rate2=$(awk "BEGIN{printf \"%d\", $lines / $t2}")
    read -r rt _ < <(best taskset -c 0 rg -c 'authentication failed' "$log")
    rgrate=$(awk "BEGIN{printf \"%d\", $lines / ($rt > 0 ? $rt : 0.001)}")
    if [ "$n" -le "$F2B_MAX_LINES" ]; then
      /usr/bin/time -o "$out/.time" -f "%e" taskset -c 0 fail2ban-regex "$log" 'postfix[mode=auth]' >/dev/null 2>/dev/null
      ft=$(tail -1 "$out/.time")
      f2b_rate=$(awk "BEGIN{printf \"%d\", $lines / $ft}")
      f2b_note="$f2b_rate"
    else
      f2b_note="${f2b_rate:-?} (from the largest file it ran on)"
    fi
    ratio=$( [ -n "$f2b_rate" ] && awk "BEGIN{printf \"%.1fx\", $rate1 / $f2b_rate}" || echo "?")
    echo "| $profile | $lines | $size | $t1 | $rate1 | $((rss1 / 1024)) MB | $t2 | $rate2 | $((rss2 / 1024)) MB | $f2b_note | $ratio | $rgrate |"
  done
done
