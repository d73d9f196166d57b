#!/usr/bin/env bash
# Builds the release binary with profile-guided optimisation (PGO): a first build,
# instrumented, runs saslguard's own work (replay, tls, trace, report and parse over
# generated logs of both mixes and the fixture logs of every supported Postfix and
# Dovecot version, and the daemon following a log as one is appended); the second
# build lays out and inlines its code by what those runs executed. The same source
# and the same behaviour as `cargo build --release`, 12% fewer instructions a line
# and 12% to 19% less time for a replay on one core (BENCHMARKS.md, "Profile-guided
# builds"). Needs no network and no root (as root it trains the nftables enforcer too,
# in a network namespace of its own); takes two release builds.
#
#   bash packaging/build-pgo.sh                            # target/pgo/release/saslguard
#   CARGO_TARGET_DIR=target/pgo cargo deb --no-build       # its Debian package
#
# Needs llvm-profdata of the LLVM rustc is built with (`rustc -vV`): Debian's
# llvm-N package (`bash .ci/deps` installs it) or rustup's llvm-tools component.
# Environment: PGO_DIR (default target/pgo-train) holds the profiles, the training
# logs and the final build's log; LOGGEN is a built examples/loggen to write the logs
# with (default: built here). The instrumented build goes to target/pgo-gen, the final
# one to target/pgo.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
say() { echo "build-pgo: $*" >&2; }

major=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
host=$(rustc -vV | sed -n 's/^host: //p')
profdata=""
for c in "llvm-profdata-$major" "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" llvm-profdata; do
  if command -v "$c" >/dev/null 2>&1 && "$c" --version 2>/dev/null | grep -q "LLVM version $major\."; then
    profdata=$c
    break
  fi
done
if [ -z "$profdata" ]; then
  say "no llvm-profdata of LLVM $major (rustc's); install Debian's llvm-$major or run: rustup component add llvm-tools"
  exit 1
fi

work=${PGO_DIR:-$root/target/pgo-train}
case $work in /*) ;; *) work=$root/$work ;; esac
# Only what this script writes there goes: PGO_DIR may be a directory of the caller's.
rm -rf "$work/profiles" "$work/daemon"
mkdir -p "$work/profiles"
flags=${RUSTFLAGS:-}

say "1/4 instrumented build (target/pgo-gen)"
# The binary alone: an example brings the dev-dependencies in, whose features change
# the dependencies' build hashes and so every symbol name, and a profile is found by
# name (built with loggen, the profile matched almost nothing and the "optimised"
# binary ran 2% more instructions than a plain one).
RUSTFLAGS="$flags -Cprofile-generate=$work/profiles" \
  cargo build --release --locked --quiet --bin saslguard --target-dir target/pgo-gen
gen=$root/target/pgo-gen/release/saslguard
# The training logs' writer: a plain build, or LOGGEN (one already built: the test
# suite's, say).
if [ -z "${LOGGEN:-}" ]; then
  cargo build --release --locked --quiet --example loggen
  LOGGEN=$root/target/release/examples/loggen
fi
loggen() { "$LOGGEN" "$@"; }

say "2/4 training runs"
export LLVM_PROFILE_FILE="$work/profiles/saslguard-%p-%m.profraw"
loggen --profile realistic --lines 200000 --seed 1 > "$work/realistic.log"
loggen --profile classic --lines 200000 --seed 1 > "$work/classic.log"
fixtures=(tests/fixtures/parse/*.log tests/fixtures/maillog/mail.log examples/mail.log)
for log in "$work/realistic.log" "$work/classic.log"; do
  for threads in 1 2; do
    "$gen" replay --threads "$threads" --json --timezone UTC --year 2026 "$log" > "$work/replay-$threads.json"
    cmp -s "$work/replay-1.json" "$work/replay-$threads.json" || {
      say "the instrumented build's replay differs with $threads threads ($log)"
      exit 1
    }
  done
  "$gen" replay --timezone UTC --year 2026 "$log" > /dev/null
  "$gen" tls --timezone UTC --year 2026 "$log" > /dev/null
  "$gen" report --from-logs --timezone UTC --year 2026 "$log" > /dev/null
  "$gen" trace --client 192.0.2.0/24 --timezone UTC --year 2026 "$log" > /dev/null
done
"$gen" replay --timezone UTC --year 2026 "${fixtures[@]}" > /dev/null
"$gen" parse --json "${fixtures[@]}" > /dev/null
"$gen" tls --timezone UTC --year 2026 "${fixtures[@]}" > /dev/null

# The daemon, as it runs: it follows a log while the two mixes, stamped within the last
# day, are appended at once, then while failures of 200 addresses come a line at a time,
# banning each (the path of a ban's latency), and is stopped once it has read them. Bans
# go to a Postfix access map and, as root, to nftables in a network namespace made for
# the run (never the machine's own ruleset); without root the nftables enforcer is left
# untrained, and LLVM lays its code out as code that never runs.
train_daemon() { # DIR NAMESPACE(or empty)
  local d=$1 ns=$2 nft=false pid want got now ts i k
  mkdir -p "$d"
  : > "$d/mail.log"
  [ -n "$ns" ] && nft=true
  cat > "$d/saslguard.toml" <<EOF
[input]
timezone = "UTC"
[sources]
files = ["$d/mail.log"]
journal = false
[daemon]
state_directory = "$d/state"
control_socket = "$d/control.sock"
[nftables]
enabled = $nft
[postfix_map]
enabled = true
map = "cidr:$d/access"
reload_command = ["true"]
EOF
  now=$(date +%s)
  loggen --profile realistic --lines 100000 --seed 2 --start $((now - 86400)) > "$d/a.log"
  loggen --profile classic --lines 100000 --seed 2 --start $((now - 43200)) > "$d/b.log"
  if [ -n "$ns" ]; then
    ip netns exec "$ns" "$gen" --log-level error run -c "$d/saslguard.toml" > "$d/daemon.out" 2>&1 &
  else
    "$gen" --log-level error run -c "$d/saslguard.toml" > "$d/daemon.out" 2>&1 &
  fi
  pid=$!
  # shellcheck disable=SC2064 # the values now, not at exit
  trap "kill $pid 2>/dev/null || true; ${ns:+ip netns del $ns 2>/dev/null || true}" EXIT
  lines_read() {
    "$gen" status --json --socket "$d/control.sock" 2>/dev/null \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["lines"])' 2>/dev/null \
      || echo -1
  }
  for _ in $(seq 100); do [ "$(lines_read)" -ge 0 ] && break; sleep 0.1; done
  cat "$d/a.log" "$d/b.log" >> "$d/mail.log"
  want=$(cat "$d/a.log" "$d/b.log" | wc -l)
  for _ in $(seq 600); do [ "$(lines_read)" -ge "$want" ] && break; sleep 0.2; done
  ts=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)
  for i in $(seq 1 200); do
    for k in 1 2 3 4 5; do
      printf '%s mx postfix/submission/smtpd[77]: warning: unknown[2001:db8:7:%x::1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, sasl_username=info%s\n' "$ts" "$i" "$k" >> "$d/mail.log"
      sleep 0.002
    done
  done
  want=$((want + 1000))
  for _ in $(seq 300); do [ "$(lines_read)" -ge "$want" ] && break; sleep 0.2; done
  got=$(lines_read)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [ -n "$ns" ]; then ip netns del "$ns"; fi
  trap - EXIT
  if [ "$got" -lt "$want" ]; then
    say "the daemon read $got of $want lines; its output: $(tail -5 "$d/daemon.out")"
    exit 1
  fi
}
ns=""
if [ "$(id -u)" = 0 ] && command -v nft >/dev/null 2>&1 && ip netns add "sgpgo$$" 2>/dev/null; then
  ns=sgpgo$$
  # Deleted whatever happens from here on; train_daemon adds its daemon to this.
  trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
else
  say "not root (or no nft, or no network namespace): the nftables enforcer is left untrained"
fi
train_daemon "$work/daemon" "$ns"
unset LLVM_PROFILE_FILE

say "3/4 merging $(find "$work/profiles" -name '*.profraw' | wc -l) profiles"
"$profdata" merge -o "$work/saslguard.profdata" "$work/profiles"
[ -s "$work/saslguard.profdata" ] || { say "the merged profile is empty"; exit 1; }

say "4/4 optimised build (target/pgo)"
# LLVM names each function the profile has no record of: with matching builds none of
# saslguard's own (every function of the instrumented build has a record, run or not).
RUSTFLAGS="$flags -Cprofile-use=$work/saslguard.profdata -Cllvm-args=-pgo-warn-missing-function" \
  cargo build --release --locked --bin saslguard --target-dir target/pgo 2> "$work/build.log" || {
  cat "$work/build.log" >&2
  exit 1
}
missing=$(grep -c "no profile data available for function" "$work/build.log" || true)
if [ "$missing" -gt 0 ]; then
  say "the profile does not match this build: $missing functions have no data (see $work/build.log)"
  exit 1
fi
say "functions without profile data: 0"
out=$root/target/pgo/release/saslguard
# Same behaviour as the instrumented build, which is the plain source: the same report.
"$out" replay --threads 1 --json --timezone UTC --year 2026 "$work/classic.log" > "$work/final.json"
cmp -s "$work/replay-1.json" "$work/final.json" || {
  say "the optimised build's replay differs from the instrumented build's"
  exit 1
}
say "done: $out"
