#!/usr/bin/env bash
# A [[block]] the size of a large country, computed and loaded into nftables, in a
# network namespace of its own (deleted at the end, also on failure). Root.
#
#   bash bench/block.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example block_bench
ns="sgbench$$"
ip netns add "$ns"
trap 'ip netns del "$ns"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r)"
ip netns exec "$ns" target/release/examples/block_bench --load
