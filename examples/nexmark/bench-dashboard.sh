#!/usr/bin/env bash
# Nexmark q1 over the generator, with and without a dashboard connected: runs
# alternate between an admin API nobody watches and one whose `/events` a
# client reads (as an open dashboard page does), and the mean times compare.
#
#   examples/nexmark/bench-dashboard.sh            # EVENTS=20000000 RUNS=3
#
# Needs a release build (`cargo build --release`) and curl.
set -euo pipefail
cd "$(dirname "$0")"
weir=${WEIR:-../../target/release/weir}
events=${EVENTS:-20000000}
runs=${RUNS:-3}
admin=${ADMIN:-127.0.0.1:9879}
pipeline=q1-bench.toml
trap 'rm -f "$pipeline"; rm -rf out/q1-bench.jsonl' EXIT
sed -e "s/^events = .*/events = $events/" -e 's|out/q1.jsonl|out/q1-bench.jsonl|' q1.toml >"$pipeline"
"$weir" build "$pipeline" >/dev/null

# Runs q1 once; with "watched", reads /events meanwhile. Prints its wall
# seconds and the CPU seconds (user + system) the weir process used: on a
# machine other work shares, the CPU time is the steadier figure.
run() {
  local log times
  log=$(mktemp) times=$(mktemp)
  (TIMEFORMAT='%U %S'; time "$weir" run "$pipeline" --fresh --admin "$admin" 2>"$log") 2>"$times" &
  local pid=$! reader=
  if [ "$1" = watched ]; then
    until curl -sf -o /dev/null "http://$admin/metrics"; do sleep 0.02; done
    curl -sN "http://$admin/events" >/dev/null 2>&1 &
    reader=$!
  fi
  wait "$pid"
  if [ -n "$reader" ]; then wait "$reader" 2>/dev/null || true; fi
  echo "$(sed -n 's/.* in \([0-9.]*\) s (.*/\1/p' "$log") $(awk '{ print $1 + $2 }' "$times")"
  rm -f "$log" "$times"
}

results=()
for i in $(seq "$runs"); do
  read -r pw pc <<<"$(run plain)"
  read -r ww wc <<<"$(run watched)"
  echo "run $i: without a dashboard $pw s ($pc s CPU), with one $ww s ($wc s CPU)"
  results+=("$pw $pc $ww $wc")
done
printf '%s\n' "${results[@]}" | awk -v events="$events" '
  { pw += $1; pc += $2; ww += $3; wc += $4; n++ }
  END {
    printf "q1, %d events, mean of %d runs: without a dashboard %.2f s (%.2f s CPU), with one %.2f s (%.2f s CPU)\n",
      events, n, pw / n, pc / n, ww / n, wc / n
    printf "ratio with/without: wall %.4f, CPU %.4f\n", ww / pw, wc / pc
  }'
