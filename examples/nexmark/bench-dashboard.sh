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

# Runs q1 once; with "watched", reads /events meanwhile. Prints its seconds.
run() {
  local log
  log=$(mktemp)
  "$weir" run "$pipeline" --fresh --admin "$admin" 2>"$log" &
  local pid=$! reader=
  if [ "$1" = watched ]; then
    until curl -sf -o /dev/null "http://$admin/metrics"; do sleep 0.02; done
    curl -sN "http://$admin/events" >/dev/null 2>&1 &
    reader=$!
  fi
  wait "$pid"
  [ -n "$reader" ] && wait "$reader" 2>/dev/null || true
  sed -n 's/.* in \([0-9.]*\) s (.*/\1/p' "$log"
  rm -f "$log"
}

times=()
for i in $(seq "$runs"); do
  p=$(run plain)
  w=$(run watched)
  echo "run $i: $p s without a dashboard, $w s with one"
  times+=("$p $w")
done
printf '%s\n' "${times[@]}" | awk -v events="$events" '
  { plain += $1; watched += $2; n++ }
  END { printf "q1, %d events: %.3f s without, %.3f s with a dashboard connected; ratio %.4f\n",
        events, plain / n, watched / n, watched / plain }'
