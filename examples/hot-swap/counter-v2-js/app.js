// Version 2 of the hot-swap counter, in JavaScript: a drop-in for the Rust
// `counter-v2`. It keeps the sum of `seq` too (state layout version 2) and
// migrates the Rust version 1's counts, so it can replace `counter-v1` in a
// running pipeline.

import { keyed } from "weir-operator";

// Version 1 kept only the count; as `seq` runs 1..=n, the sum it did not
// keep is n(n+1)/2.
function fromV1(count, fromVersion) {
  if (fromVersion !== 1 || !Number.isInteger(count)) {
    throw new Error(`cannot read state ${JSON.stringify(count)} of version ${fromVersion}`);
  }
  return { count, sum_seq: (count * (count + 1)) / 2 };
}

keyed(
  function counter(tick, ctx) {
    const totals = ctx.state ?? { count: 0, sum_seq: 0 };
    totals.count += 1;
    totals.sum_seq += tick.seq;
    ctx.state = totals;
    return {
      key: tick.key,
      seq: tick.seq,
      count: totals.count,
      sum_seq: totals.sum_seq,
      version: 2,
    };
  },
  { stateVersion: 2, migrate: fromV1 },
);
