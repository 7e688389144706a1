#!/usr/bin/env bash
# Execs inside a real sandboxed session, per backend, against the same work done bare.
#
# 1. Wall time of N x /bin/true in a shell loop under `execgate run` (patched zsh, every
#    exec Run) against the same loop in a bare zsh: what a user feels, but on a shared
#    machine other tenants move it by 10% and more.
# 2. Per operation, measured inside the session by benches/sandboxed_exec.py (lower
#    percentiles of thousands of samples, which contention inflates least): a spawn of
#    /bin/true (the kernel's side of the sandbox only), the same through the session's
#    wrapper (the Run round trip too), and an open() (Landlock checks every one).
#
# Every round runs every configuration once, bare first. Part 1 reports each one's best
# time and the median over rounds of its ratio to that round's bare run (paired, so drift
# between rounds moves both sides); part 2 the median over rounds of each number. Release
# build; needs python3.
#
#   benches/sandboxed_exec.sh [OTHER_EXECGATE...]
#
# OTHER_EXECGATE: other builds' `execgate` (e.g. of main), run in the same rounds for a
# before/after comparison. ROUNDS (default 11), N (default 500), SAMPLES (spawns per
# configuration and round in part 2, default 2000), BACKENDS (default
# "bubblewrap landlock") and SHELLS (`run --shell` values, default "zsh", our patched zsh;
# e.g. "zsh /bin/bash" adds Debian's bash with the preload shim) change the run.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${ROUNDS:-11}
n=${N:-500}
samples=${SAMPLES:-2000}
read -r -a backends <<<"${BACKENDS:-bubblewrap landlock}"
read -r -a shells <<<"${SHELLS:-zsh}"
cargo build --release --quiet --bins
cargo build --release --quiet -p execgate-preload
export EXECGATE_PRELOAD=$target/release/libexecgate_preload.so
zsh=$root/target/shells/zsh
[ -x "$zsh" ] || shells/build.sh zsh
builds=("$target/release/execgate" "$@")
loop="i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done"
probe="python3 $root/benches/sandboxed_exec.py $samples"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

elapsed_ms() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null </dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
# Runs SCRIPT under each build, backend and shell, in $work.
each_session() {
    local build backend shell
    for build in "${builds[@]}"; do
        for backend in "${backends[@]}"; do
            for shell in "${shells[@]}"; do
                (cd "$work" && EXECGATE_SANDBOX_BACKEND=$backend \
                    EXECGATE_SHELLS_DIR="$root/target/shells" "$@" "$build" "$shell")
            done
        done
    done
}
loop_in() { elapsed_ms "$1" run --shell "$2" --approval never "$loop"; }
probe_in() { "$1" run --shell "$2" --approval never "$probe" </dev/null; }

unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD
names=(bare)
for build in "${builds[@]}"; do
    for backend in "${backends[@]}"; do
        for shell in "${shells[@]}"; do names+=("$build $backend $shell"); done
    done
done
printf '%s\n' "${names[@]}" >"$work/names"
for _ in $(seq "$rounds"); do
    echo "$(elapsed_ms "$zsh" -f -c "$loop") $(each_session loop_in | tr '\n' ' ')"
done >"$work/loop"
for _ in $(seq "$rounds"); do
    $probe
    each_session probe_in
done >"$work/probe"

python3 - "$work" "$n" "$rounds" "$samples" <<'PY'
import statistics, sys
work, n, rounds, samples = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
names = open(f"{work}/names").read().splitlines()
loop = [list(map(int, l.split())) for l in open(f"{work}/loop")]
print(f"{n} x /bin/true in a shell loop under execgate run (every exec Run), {rounds} rounds")
for c, name in enumerate(names):
    ratio = statistics.median(r[c] / r[0] for r in loop)
    print(f"  {name:58} best {min(r[c] for r in loop):6d} ms  median ratio {ratio:.3f}x")
probe = [l.split() for l in open(f"{work}/probe")]
print(f"per operation inside the session, medians over {rounds} rounds of {samples} samples (us)")
print(f"  {'':58} {'exec p5':>8} {'p25':>7} {'Run p5':>7} {'p25':>7} {'open':>6}")
for c, name in enumerate(names):
    rows = probe[c::len(names)]
    cells = []
    for col in range(5):
        values = [float(r[col]) for r in rows if r[col] != "-"]
        cells.append(f"{statistics.median(values):.2f}" if values else "-")
    print(f"  {name:58} {cells[0]:>8} {cells[1]:>7} {cells[2]:>7} {cells[3]:>7} {cells[4]:>6}")
PY
