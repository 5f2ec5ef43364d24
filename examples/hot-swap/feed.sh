#!/usr/bin/env bash
# Writes {"key", "seq"} records for keys k0..k9, about 100 per second, until
# stopped (or `feed.sh N` for N rounds).
set -euo pipefail
rounds=${1:-1000000000}
for ((seq = 1; seq <= rounds; seq++)); do
  for key in 0 1 2 3 4 5 6 7 8 9; do
    printf '{"key":"k%d","seq":%d}\n' "$key" "$seq"
  done
  sleep 0.1
done
