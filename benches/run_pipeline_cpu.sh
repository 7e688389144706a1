#!/usr/bin/env bash
# The Run path's CPU cost, for a machine too loaded for wall times: the CPU time (perf's
# task-clock, summed over execgate, the sandbox, the shell, the wrapper and every program)
# of 1000 x /bin/true in a loop under `execgate run --rules examples/basic.rules`, against
# another build of execgate (BASELINE, required) and the bare shell, alternating in each
# round; the least of ROUNDS (default 7) rounds. Prints the ratio after/before.
#
#   BASELINE=/other/target/release/execgate benches/run_pipeline_cpu.sh
#   SHELL_FLAG=/bin/bash BASELINE=... benches/run_pipeline_cpu.sh   (Debian bash + shim)
#
# Needs perf and target/shells/zsh (shells/build.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${ROUNDS:-7}
n=${N:-1000}
shell_flag=${SHELL_FLAG:-zsh}
: "${BASELINE:?set BASELINE to the execgate of another build}"
command -v perf >/dev/null || { echo "needs perf (apt-get install linux-perf)" >&2; exit 2; }

cargo build --release --quiet --bin execgate  # the helpers are embedded in it
execgate=$target/release/execgate
zsh=$root/target/shells/zsh
[ -x "$zsh" ] || shells/build.sh zsh
export EXECGATE_SHELLS_DIR=$root/target/shells
rules=$root/examples/basic.rules
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
loop="i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done"
unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD

cpu_ms() { # command...: its CPU time in ms, children included
    (cd "$work" && perf stat -x, -e task-clock -- "$@" 2>&1 >/dev/null) |
        awk -F, '/task-clock/ { printf "%d", $1 }'
}

declare -A best
keep() { # name ms
    if [ -z "${best[$1]:-}" ] || [ "$2" -lt "${best[$1]}" ]; then best[$1]=$2; fi
}

echo "execgate run CPU: $n x /bin/true, --shell $shell_flag, least of $rounds alternating rounds"
for _ in $(seq "$rounds"); do
    keep bare "$(cpu_ms "$zsh" -c "$loop")"
    keep after "$(cpu_ms "$execgate" run --shell "$shell_flag" --rules "$rules" --cwd "$work" -- "$loop")"
    keep before "$(cpu_ms "$BASELINE" run --shell "$shell_flag" --rules "$rules" --cwd "$work" -- "$loop")"
done
awk -v a="${best[after]}" -v b="${best[before]}" -v z="${best[bare]}" 'BEGIN {
    printf "this build %d ms, baseline %d ms, bare zsh %d ms: after/before %.3f\n", a, b, z, a / b }'
