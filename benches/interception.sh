#!/usr/bin/env bash
# Interception overhead: 1000 x /bin/true in a shell loop, intercepted vs the same shell
# bare, in one run; prints the ratios. Release build.
#
#   benches/interception.sh            (needs target/shells/zsh from shells/build.sh)
#
# Rows: patched zsh with every exec Run; patched zsh with every exec Escalated; Debian bash
# with the preload shim and every exec Run (when preload/ builds). Each timing is the best
# of ROUNDS (default 5) rounds; the configurations alternate within a round.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${ROUNDS:-5}
n=${N:-1000}

cargo build --release --quiet -p execgate-execve-wrapper --bin execgate-execve-wrapper
cargo build --release --quiet -p execgate-escalate-server --example session
wrapper=$target/release/execgate-execve-wrapper
session=$target/release/examples/session
zsh=$root/target/shells/zsh
[ -x "$zsh" ] || shells/build.sh zsh
shim=""
if cargo build --release --quiet -p execgate-preload 2>/dev/null &&
    [ -f "$target/release/libexecgate_preload.so" ]; then
    shim=$target/release/libexecgate_preload.so
fi

loop="i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done"

# elapsed_ms CMD...: wall time of one run, in milliseconds.
elapsed_ms() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

# Each round runs every configuration once, in turn, so that a machine whose speed drifts
# (other work on a shared VM) slows all of them alike; each keeps its best time.
declare -A best
keep() { # name ms
    if [ -z "${best[$1]:-}" ] || [ "$2" -lt "${best[$1]}" ]; then best[$1]=$2; fi
}

row() { # name bare_ms intercepted_ms target
    awk -v name="$1" -v b="$2" -v i="$3" -v t="$4" 'BEGIN {
        printf "%-28s bare %6d ms  intercepted %6d ms  ratio %.2fx  (target <= %s)\n",
            name, b, i, i / b, t }'
}

unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD
echo "interception overhead: $n x /bin/true, best of $rounds alternating rounds"
for _ in $(seq "$rounds"); do
    keep zsh_bare "$(elapsed_ms "$zsh" -f -c "$loop")"
    keep zsh_run "$(elapsed_ms "$session" run "$wrapper" -- "$zsh" -f -c "$loop")"
    keep zsh_escalate "$(elapsed_ms "$session" escalate "$wrapper" -- "$zsh" -f -c "$loop")"
    if [ -n "$shim" ]; then
        keep bash_bare "$(elapsed_ms /bin/bash --norc --noprofile -c "$loop")"
        keep bash_shim "$(elapsed_ms "$session" run "$wrapper" --shim "$shim" -- /bin/bash --norc --noprofile -c "$loop")"
    fi
done
row "patched zsh, Run" "${best[zsh_bare]}" "${best[zsh_run]}" 1.25x
row "patched zsh, Escalate" "${best[zsh_bare]}" "${best[zsh_escalate]}" 1.6x
if [ -n "$shim" ]; then
    row "Debian bash + shim, Run" "${best[bash_bare]}" "${best[bash_shim]}" 1.10x
else
    echo "Debian bash + shim, Run: skipped (preload shim does not build)"
fi
