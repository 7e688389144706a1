#!/usr/bin/env python3
"""Latency of a trivial MCP `shell` call (`true`) through `execgate mcp`, with and without
the sandbox, against a bare `bash -c true` timed in the same run; prints the ratios.

    cargo build --release -p execgate
    benches/mcp_latency.py [EXECGATE] [N]

EXECGATE defaults to $CARGO_TARGET_DIR/release/execgate (or target/release/execgate); the
patched zsh comes from target/shells (EXECGATE_SHELLS_DIR overrides). Each row is the median
of N calls (default 50) on one server, after one warm-up call.
"""
import json, os, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
exe = sys.argv[1] if len(sys.argv) > 1 and sys.argv[1] else os.path.join(target, "release", "execgate")
n = int(sys.argv[2]) if len(sys.argv) > 2 else 50
os.environ.setdefault("EXECGATE_SHELLS_DIR", os.path.join(root, "target", "shells"))
os.environ["HOME"] = tempfile.mkdtemp()  # no user rules or hooks
work = tempfile.mkdtemp()


def server(*flags):
    p = subprocess.Popen([exe, "mcp", "--rules", "/dev/null", *flags], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, cwd=work)
    ids = iter(range(1, 10**9))

    def rpc(method, params):
        i = next(ids)
        p.stdin.write((json.dumps({"jsonrpc": "2.0", "id": i, "method": method,
                                   "params": params}) + "\n").encode())
        p.stdin.flush()
        while True:
            msg = json.loads(p.stdout.readline())
            if msg.get("id") == i:
                return msg

    rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "bench", "version": "0"}})
    p.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
    return p, rpc


def median_ms(f):
    f()  # warm up
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        samples.append((time.perf_counter() - t) * 1000)
    return statistics.median(samples)


bare = median_ms(lambda: subprocess.run(["bash", "-c", "true"], check=True))
print(f"bare `bash -c true`: {bare:.2f} ms")
for label, flags in [("mcp `true`, sandbox workspace-write", []),
                     ("mcp `true`, --sandbox danger-full-access", ["--sandbox", "danger-full-access"])]:
    p, rpc = server(*flags)
    args = {"name": "shell", "arguments": {"command": "true", "workdir": work, "login": False}}
    def call():
        r = rpc("tools/call", args)
        assert json.loads(r["result"]["content"][0]["text"])["exit_code"] == 0, r
    ms = median_ms(call)
    print(f"{label}: {ms:.2f} ms ({ms / bare:.1f}x bare)")
    p.stdin.close()
    p.wait()
