#!/usr/bin/env python3
"""Latency of a trivial MCP `shell` call (`true`) through `execgate mcp`, with and without
the sandbox, against a bare `bash -c true` timed in the same run; prints the ratios.

    cargo build --release -p execgate
    benches/mcp_latency.py [EXECGATE...] [-n N]

EXECGATE defaults to $CARGO_TARGET_DIR/release/execgate (or target/release/execgate); the
patched zsh comes from target/shells (EXECGATE_SHELLS_DIR overrides). Each row is the median
of N calls (default 50) on one server, after one warm-up call. Rows:

- `--sandbox workspace-write` (the default), and `danger-full-access`;
- with Codex's per-call sandbox state: `_meta["codex/sandbox-state"]` as Codex 0.171.0
  sends it for its workspace-write default (a server that does not read it runs its own
  workspace-write instead, which costs the same).

Give several EXECGATE binaries (say, an old build and a new one) to compare them in one
run: every server of every binary is started first, then the calls go round robin (one
call per row per round), so load on the machine falls on every row alike.
"""
import json, os, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
args = sys.argv[1:]
n = 50
if "-n" in args:
    i = args.index("-n")
    n = int(args[i + 1])
    del args[i:i + 2]
elif len(args) == 2 and args[1].isdigit():  # the older `EXECGATE N` form
    n = int(args.pop())
exes = [os.path.abspath(e) for e in args] or [os.path.join(target, "release", "execgate")]
os.environ.setdefault("EXECGATE_SHELLS_DIR", os.path.join(root, "target", "shells"))
os.environ["HOME"] = tempfile.mkdtemp()  # no user rules or hooks
work = tempfile.mkdtemp()


def server(exe, *flags):
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


def codex_workspace_write():
    """Codex 0.171.0's per-call state for its workspace-write default."""
    entry = lambda path, access: {"path": {"type": "path", "path": path}, "access": access,
                                  "missing_path_behavior": "skip"}
    special = lambda kind: {"path": {"type": "special", "value": {"kind": kind}},
                            "access": "write"}
    state = {"permissionProfile": {"type": "managed", "file_system": {"type": "restricted",
             "entries": [{"path": {"type": "special", "value": {"kind": "root"}},
                          "access": "read"},
                         entry(work, "write"), special("slash_tmp"), special("tmpdir"),
                         entry(work + "/.git", "read"), entry(work + "/.agents", "read"),
                         entry(work + "/.codex", "read"), entry(work + "/.aws", "read")]},
             "network": "restricted"}, "sandboxCwd": "file://" + work,
             "useLegacyLandlock": False, "useMxc": False}
    return {"codex/sandbox-state": state, "codex/sandbox-state-meta": state}


def bare():
    subprocess.run(["bash", "-c", "true"], check=True)


configs = [("mcp `true`, sandbox workspace-write", [], None),
           ("mcp `true`, --sandbox danger-full-access", ["--sandbox", "danger-full-access"], None),
           ("mcp `true`, Codex's per-call workspace-write _meta", [], codex_workspace_write())]
rows = [("bare `bash -c true`", bare)]
servers = []
for exe in exes:
    for label, flags, meta in configs:
        p, rpc = server(exe, *flags)
        servers.append(p)
        params = {"name": "shell", "arguments": {"command": "true", "workdir": work,
                                                  "login": False}}
        if meta:
            params["_meta"] = meta

        def call(rpc=rpc, params=params):
            r = rpc("tools/call", params)
            assert json.loads(r["result"]["content"][0]["text"])["exit_code"] == 0, r
        name = f"{label}" if len(exes) == 1 else f"[{exe}] {label}"
        rows.append((name, call))

samples = {name: [] for name, _ in rows}
for _, f in rows:
    f()  # warm up
for _ in range(n):
    for name, f in rows:
        t = time.perf_counter()
        f()
        samples[name].append((time.perf_counter() - t) * 1000)

base = statistics.median(samples[rows[0][0]])
for name, _ in rows:
    ms = statistics.median(samples[name])
    print(f"{name}: {ms:.2f} ms ({ms / base:.1f}x bare)")
for p in servers:
    p.stdin.close()
    p.wait()
