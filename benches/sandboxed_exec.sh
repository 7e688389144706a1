#!/usr/bin/env bash
# Execs inside a real sandboxed session: N x /bin/true in a shell loop under
# `execgate run` (patched zsh, every exec Run), per backend, against the same loop in a
# bare zsh; best of ROUNDS alternating rounds. Release build.
#
#   benches/sandboxed_exec.sh [OTHER_EXECGATE]
#
# With OTHER_EXECGATE (another build's `execgate`, e.g. of main), its rows run in the same
# rounds, for a before/after comparison on a machine whose speed drifts.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${ROUNDS:-5}
n=${N:-500}
cargo build --release --quiet --bins
zsh=$root/target/shells/zsh
[ -x "$zsh" ] || shells/build.sh zsh
builds=("$target/release/execgate")
[ $# -ge 1 ] && builds+=("$1")
loop="i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

elapsed_ms() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null </dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}
declare -A best
keep() { if [ -z "${best[$1]:-}" ] || [ "$2" -lt "${best[$1]}" ]; then best[$1]=$2; fi; }

unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD
for _ in $(seq "$rounds"); do
    keep bare "$(elapsed_ms "$zsh" -f -c "$loop")"
    for i in "${!builds[@]}"; do
        for backend in bubblewrap landlock; do
            keep "$i/$backend" "$(cd "$work" && EXECGATE_SANDBOX_BACKEND=$backend \
                EXECGATE_SHELLS_DIR="$root/target/shells" \
                elapsed_ms "${builds[$i]}" run --approval never "$loop")"
        done
    done
done
echo "$n x /bin/true under execgate run (patched zsh, Run), best of $rounds rounds"
echo "bare zsh: ${best[bare]} ms"
for i in "${!builds[@]}"; do
    for backend in bubblewrap landlock; do
        awk -v name="${builds[$i]} $backend" -v b="${best[bare]}" -v t="${best[$i/$backend]}" \
            'BEGIN { printf "%-60s %6d ms  ratio %.2fx\n", name, t, t / b }'
    done
done
