# Peak memory of keyed state in memory vs on disk (usage: state_memory.py N [backend ...]):
# sales-by-product over N distinct products, then N orders of 1,000 of them, checkpoints every
# second, blackhole sink. Per backend: the peak RSS and time of a whole run, then of a run
# resumed from a checkpoint holding all N keys (restore included), by /usr/bin/time.
import subprocess, time, glob, shutil, json
import os, sys
# Run from anywhere: the repository is two folders up from here.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WEIR = os.path.join(REPO, "target", "release", "weir")
OPERATOR = os.path.join(REPO, "examples", "sales-by-product", "operator")
WORK = os.environ.get("WEIR_BENCH_DIR", "/tmp/weir-bench")
n = int(sys.argv[1])
backends = sys.argv[2:] or ["memory", "disk"]
d = f"{WORK}/state-memory-{n}"
os.makedirs(d, exist_ok=True)
if not os.path.exists(f"{d}/input.jsonl"):
    with open(f"{d}/input.jsonl", "w") as f:
        for i in range(n):
            f.write('{"product":"p%d","qty":1,"price_cents":100}\n' % i)
        for i in range(n):
            f.write('{"product":"p%d","qty":2,"price_cents":100}\n' % (i % 1000))

def timed(args):
    """Runs weir under /usr/bin/time: (peak RSS in MiB, seconds, stderr)."""
    r = subprocess.run(["/usr/bin/time", "-f", "TIME %M %e", WEIR] + args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stderr.splitlines() if l.startswith("TIME ")][-1]
    rss_kib, secs = line.split()[1:]
    return int(rss_kib) / 1024, float(secs), r.stderr

for backend in backends:
    with open(f"{d}/pipeline.toml", "w") as f:
        f.write(f'checkpoint_interval = "1s"\ncheckpoint_dir = "ck"\nstate_backend = "{backend}"\n'
                '[[source]]\ntype = "jsonl"\npath = "input.jsonl"\n'
                f'[[operator]]\nid = "sales"\ncrate = "{OPERATOR}"\nkey_by = "product"\n'
                '[[sink]]\ntype = "blackhole"\n')
    subprocess.run([WEIR, "build", f"{d}/pipeline.toml"], capture_output=True, check=True)
    rss, secs, _ = timed(["run", f"{d}/pipeline.toml", "--fresh"])
    print(f"{backend}: whole run of {2 * n} records: peak RSS {rss:.0f} MiB, {secs:.1f} s")
    # Kill a run once a checkpoint holds all n keys, then resume it.
    p = subprocess.Popen([WEIR, "run", f"{d}/pipeline.toml", "--fresh"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = None
    while p.poll() is None and not found:
        for m in glob.glob(f"{d}/ck/chk-*/manifest.json"):
            try:
                j = json.load(open(m))
            except Exception:
                continue
            size = sum(w["state"]["bytes"] for o in j["operators"] for w in o["workers"])
            if size > n * 30:
                found = (os.path.basename(os.path.dirname(m)), size)
        time.sleep(0.01)
    p.kill(); p.wait()
    assert found, "no checkpoint with all keys before the run ended"
    rss, secs, err = timed(["run", f"{d}/pipeline.toml"])
    assert "resuming from checkpoint" in err, err
    print(f"{backend}: resumed from {found[0]} ({found[1] / 1e6:.1f} MB of state): "
          f"peak RSS {rss:.0f} MiB, {secs:.1f} s to the end")
