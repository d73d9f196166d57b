#!/usr/bin/env bash
# Time to apply bans in the kernel: saslguard's one netlink batch against fail2ban's
# nftables action, which runs one `nft add element` process per ban. Both run in a
# network namespace this script creates and always deletes; the machine's own ruleset
# is never touched.
#
#   bash bench/nft.sh            # 10,000 bans side by side, then 100,000 with saslguard
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
BIG=${BIG:-100000}
command -v nft >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
cargo build --release --quiet --bin saslguard
bin=$PWD/target/release/saslguard
ns=sgbench$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true; rm -f "$list" "$log"' EXIT
list=$(mktemp)
log=$(mktemp)
# Milliseconds from sending the batch to the kernel's acknowledgement of its commit.
committed() { sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -o 'batch committed elements=[0-9]* ms=[0-9]*' | grep -o '[0-9]*$'; }
in_ns() { ip netns exec "$ns" "$@"; }
addrs() { # N distinct documentation addresses (2001:db8::/32), set elements only
  python3 -c "import sys; n=int(sys.argv[1]); [print('2001:db8:%x:%x::1' % (i >> 16, i & 0xffff)) for i in range(1, n+1)]" "$1"
}
now() { date +%s.%N; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); kernel $(uname -r); $(nft --version)"

# saslguard bans N addresses in one command; sets: seconds, ms to commit, bans in the set.
saslguard_ban() {
  addrs "$1" > "$list"
  in_ns "$bin" nft setup >/dev/null
  local t0 t1
  t0=$(now); in_ns "$bin" --log-level saslguard=debug nft ban --for 1h - < "$list" >/dev/null 2>"$log"; t1=$(now)
  secs=$(echo "$t1 - $t0" | bc -l)
  ms=$(committed)
  inset=$(in_ns "$bin" nft list | wc -l)
}

saslguard_ban "$N"
sg=$secs sgc=$ms count=$inset
in_ns "$bin" nft reset >/dev/null

# fail2ban's action.d/nftables.conf: one `nft add element` per ban, into a timeout set.
in_ns nft add table inet f2b-table
in_ns nft add set inet f2b-table addr-set-sasl '{ type ipv6_addr; flags timeout; }'
t0=$(now)
while read -r ip; do in_ns nft add element inet f2b-table addr-set-sasl "{ $ip timeout 3600s }"; done < "$list"
t1=$(now)
f2b=$(echo "$t1 - $t0" | bc -l)
f2bcount=$(in_ns nft list set inet f2b-table addr-set-sasl | grep -o '2001:db8:[0-9a-f:]*' | wc -l)

saslguard_ban "$BIG"
big=$secs bigc=$ms bigcount=$inset

printf "| bans | saslguard: batch committed | saslguard: whole command, incl. verified read-back | nft process per ban | ratio (whole command) |\n|---|---|---|---|---|\n"
printf "| %d | %d ms | %.3f s (%d in the set) | %.1f s (%d in the set) | %.0fx |\n" "$N" "$sgc" "$sg" "$count" "$f2b" "$f2bcount" "$(echo "$f2b / $sg" | bc -l)"
printf "| %d | %d ms | %.3f s (%d in the set) | | |\n" "$BIG" "$bigc" "$big" "$bigcount"
