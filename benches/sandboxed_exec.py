"""Per-operation costs inside (or outside) a sandboxed session, for benches/sandboxed_exec.sh.

Prints one line of numbers (microseconds; lower percentiles, which contention on a shared
machine inflates least):
  exec: p5 p25 of posix_spawn + wait of /bin/true (the kernel's side of the sandbox only)
  run:  p5 p25 of the same through the session's wrapper (the Run round trip as well;
        outside a session "-")
  open: best batch mean of open + close of libc (Landlock checks every open)
"""
import os
import sys
import time

N = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
now = time.perf_counter_ns


def spawn_percentiles(argv, env):
    samples = []
    for _ in range(N):
        start = now()
        pid = os.posix_spawn(argv[0], argv, env)
        _, status = os.waitpid(pid, 0)
        samples.append(now() - start)
        if status != 0:
            sys.exit(f"{argv} ended with status {status}")
    samples.sort()
    return [samples[int(N * p)] / 1000 for p in (0.05, 0.25)]


def open_best(path, batches=20, per_batch=2000):
    best = float("inf")
    for _ in range(batches):
        start = now()
        for _ in range(per_batch):
            os.close(os.open(path, os.O_RDONLY))
        best = min(best, (now() - start) / per_batch)
    return best / 1000


env = dict(os.environ)
fields = spawn_percentiles(["/bin/true"], env)
wrapper = env.get("EXEC_WRAPPER")
if wrapper and "EXECGATE_SOCKET" in env:
    fields += spawn_percentiles([wrapper, "/bin/true", "true"], env)
else:
    fields += ["-", "-"]
libc = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/lib64/libc.so.6", "/bin/true")
            if os.path.exists(p))
fields.append(open_best(libc))
print(" ".join(f if isinstance(f, str) else f"{f:.2f}" for f in fields))
