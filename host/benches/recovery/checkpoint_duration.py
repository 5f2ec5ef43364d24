# Checkpoint duration and size with N keys (usage: checkpoint_duration.py N [memory|disk]
# [weir run flags]): sales-by-product over N distinct
# products, then N more orders of them, a checkpoint every 2 s; prints the
# checkpoint log lines (WEIR_LOG=info) of the run.
import subprocess, re, shutil
import os, sys
# Run from anywhere: the repository is two folders up from here.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WEIR = os.path.join(REPO, "target", "release", "weir")
OPERATOR = os.path.join(REPO, "examples", "sales-by-product", "operator")
WORK = os.environ.get("WEIR_BENCH_DIR", "/tmp/weir-bench")
n = int(sys.argv[1]); backend = sys.argv[2] if len(sys.argv) > 2 else "memory"
d = f"{WORK}/duration-{n}"
os.makedirs(d, exist_ok=True)
if not os.path.exists(f"{d}/input.jsonl"):
    with open(f"{d}/input.jsonl", "w") as f:
        for i in range(n):
            f.write('{"product":"p%d","qty":1,"price_cents":100}\n' % i)
        for i in range(n):
            f.write('{"product":"p%d","qty":2,"price_cents":100}\n' % ((i * 7919) % n))
with open(f"{d}/pipeline.toml", "w") as f:
    f.write(f'checkpoint_interval = "2s"\ncheckpoint_dir = "ck"\nstate_backend = "{backend}"\n'
            '[[source]]\ntype = "jsonl"\npath = "input.jsonl"\n'
            f'[[operator]]\nid = "sales"\ncrate = "{OPERATOR}"\nkey_by = "product"\n'
            '[[sink]]\ntype = "blackhole"\n')
extra = sys.argv[3:]
r = subprocess.run([WEIR, "run", f"{d}/pipeline.toml", "--fresh"] + extra, capture_output=True, text=True,
                   env={**os.environ, "WEIR_LOG": "weir::checkpoint=info"})
for line in r.stderr.splitlines():
    m = re.search(r"(checkpoint \d+ complete.*)", line)
    if m: print(m.group(1))
    if "records in" in line: print(line)
