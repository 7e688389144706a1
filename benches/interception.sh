#!/usr/bin/env bash
# Interception overhead: 1000 x /bin/true in a shell loop, intercepted vs the same shell
# bare, in one run; prints the ratios. Release build.
#
#   benches/interception.sh            (needs target/shells/zsh from shells/build.sh)
#
# Rows: patched zsh with every exec Run; patched zsh with every exec Escalated; Debian bash
# with the preload shim and every exec Run (when preload/ builds). Each timing is the best
# of ROUNDS (default 5) runs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${ROUNDS:-5}
n=${N:-1000}

cargo build --release --quiet --bin execgate-execve-wrapper
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

# best_ms CMD...: the fastest of $rounds runs, in milliseconds.
best_ms() {
    local best="" start end ms
    for _ in $(seq "$rounds"); do
        start=$(date +%s%N)
        "$@" >/dev/null
        end=$(date +%s%N)
        ms=$(((end - start) / 1000000))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    echo "$best"
}

row() { # name bare_ms intercepted_ms target
    awk -v name="$1" -v b="$2" -v i="$3" -v t="$4" 'BEGIN {
        printf "%-28s bare %6d ms  intercepted %6d ms  ratio %.2fx  (target <= %s)\n",
            name, b, i, i / b, t }'
}

unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD
echo "interception overhead: $n x /bin/true, best of $rounds"
zsh_bare=$(best_ms "$zsh" -f -c "$loop")
row "patched zsh, Run" "$zsh_bare" "$(best_ms "$session" run "$wrapper" -- "$zsh" -f -c "$loop")" 1.25x
row "patched zsh, Escalate" "$zsh_bare" "$(best_ms "$session" escalate "$wrapper" -- "$zsh" -f -c "$loop")" 1.6x
if [ -n "$shim" ]; then
    bash_bare=$(best_ms /bin/bash --norc --noprofile -c "$loop")
    row "Debian bash + shim, Run" "$bash_bare" "$(best_ms "$session" run "$wrapper" --shim "$shim" -- /bin/bash --norc --noprofile -c "$loop")" 1.10x
else
    echo "Debian bash + shim, Run: skipped (preload shim does not build yet)"
fi
