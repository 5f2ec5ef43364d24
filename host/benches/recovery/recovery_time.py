# Recovery time to the first output record (usage: recovery_time.py N [memory|disk]): weir run
# resumed from a checkpoint holding N keys, vs a fresh start, to the first line on stdout.
import subprocess, time, glob, shutil, json
import os, sys
# Run from anywhere: the repository is two folders up from here.
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
WEIR = os.path.join(REPO, "target", "release", "weir")
OPERATOR = os.path.join(REPO, "examples", "sales-by-product", "operator")
WORK = os.environ.get("WEIR_BENCH_DIR", "/tmp/weir-bench")
n = int(sys.argv[1]); backend = sys.argv[2] if len(sys.argv) > 2 else "memory"
d = f"{WORK}/recovery-{n}"
shutil.rmtree(d, ignore_errors=True); os.makedirs(d)
with open(f"{d}/input.jsonl", "w") as f:
    for i in range(n):
        f.write('{"product":"p%d","qty":1,"price_cents":100}\n' % i)
    for i in range(3 * n):
        f.write('{"product":"p%d","qty":2,"price_cents":100}\n' % (i % 1000))
with open(f"{d}/pipeline.toml", "w") as f:
    f.write(f'checkpoint_interval = "500ms"\ncheckpoint_dir = "ck"\nstate_backend = "{backend}"\n'
            '[[source]]\ntype = "jsonl"\npath = "input.jsonl"\n'
            f'[[operator]]\nid = "sales"\ncrate = "{OPERATOR}"\nkey_by = "product"\n'
            '[[sink]]\ntype = "stdout"\n')
def first_line(args):
    t = time.perf_counter()
    p = subprocess.Popen([WEIR, "run", f"{d}/pipeline.toml"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    dt = time.perf_counter() - t
    p.kill(); p.wait()
    err = p.stderr.read().decode()
    if not args:
        assert "resuming from checkpoint" in err, err
    return dt
subprocess.run([WEIR, "build", f"{d}/pipeline.toml"], capture_output=True, check=True)
# A checkpoint with all n keys: wait for one whose state is big enough.
p = subprocess.Popen([WEIR, "run", f"{d}/pipeline.toml", "--fresh"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
best = None
while p.poll() is None:
    for m in [m for m in glob.glob(f"{d}/ck/chk-*/manifest.json") if ".tmp" not in m]:
        try:
            j = json.load(open(m))
        except Exception:
            continue
        size = sum(w["state"]["bytes"] for o in j["operators"] for w in o["workers"])
        if size > n * 30:
            best = (m, size)
    if best:
        break
    time.sleep(0.01)
p.kill(); p.wait()
print(f"checkpoint {best}")
# Keep only the checkpoint: time the resume, then a fresh start, three times each.
ck = os.path.dirname(best[0])
saved = f"{d}/saved"; shutil.copytree(ck, saved)
resumes, fresh = [], []
for _ in range(3):
    for c in glob.glob(f"{d}/ck/chk-*"): shutil.rmtree(c)
    shutil.copytree(saved, ck)
    resumes.append(first_line([]))
    fresh.append(first_line(["--fresh"]))
print(f"{n} keys, {best[1]} bytes of state: resume to first record {[round(x*1000) for x in resumes]} ms, fresh start {[round(x*1000) for x in fresh]} ms")
