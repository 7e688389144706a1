#!/usr/bin/env bash
# The Run path through the whole decision pipeline: 1000 x /bin/true in a loop of our
# patched zsh under `execgate run --rules examples/basic.rules` (no rule matches /bin/true,
# so every exec is evaluated against the rules and Run), against the same zsh bare, in one
# run; prints the ratio. Release build; default sandbox (bubblewrap when installed).
#
#   benches/run_pipeline.sh                  (needs target/shells/zsh from shells/build.sh)
#   BASELINE=/other/target/release/execgate benches/run_pipeline.sh
#
# BASELINE adds a row for another build of execgate (its wrapper next to it), run in the
# same rounds: an A/B comparison of two versions on the same machine at the same time.
# Each timing is the best of ROUNDS (default 5) rounds; configurations alternate within a
# round.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
target=${CARGO_TARGET_DIR:-$root/target}
rounds=${ROUNDS:-5}
n=${N:-1000}

cargo build --release --quiet --bin execgate  # the helpers are embedded in it
execgate=$target/release/execgate
zsh=$root/target/shells/zsh
[ -x "$zsh" ] || shells/build.sh zsh
export EXECGATE_SHELLS_DIR=$root/target/shells
rules=$root/examples/basic.rules
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

loop="i=0; while [ \$i -lt $n ]; do /bin/true; i=\$((i+1)); done"

elapsed_ms() {
    local start end
    start=$(date +%s%N)
    "$@" >/dev/null
    end=$(date +%s%N)
    echo $(((end - start) / 1000000))
}

declare -A best
keep() { # name ms
    if [ -z "${best[$1]:-}" ] || [ "$2" -lt "${best[$1]}" ]; then best[$1]=$2; fi
}

unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD
echo "execgate run overhead: $n x /bin/true, best of $rounds alternating rounds"
for _ in $(seq "$rounds"); do
    keep bare "$(cd "$work" && elapsed_ms "$zsh" -c "$loop")"
    keep run "$(elapsed_ms "$execgate" run --shell zsh --rules "$rules" --cwd "$work" -- "$loop")"
    if [ -n "${BASELINE:-}" ]; then
        keep baseline "$(elapsed_ms "$BASELINE" run --shell zsh --rules "$rules" --cwd "$work" -- "$loop")"
    fi
done
row() { # name ms
    awk -v name="$1" -v b="${best[bare]}" -v i="$2" 'BEGIN {
        printf "%-22s %6d ms  ratio %.2fx over bare zsh (%d ms)\n", name, i, i / b, b }'
}
row "execgate run" "${best[run]}"
if [ -n "${BASELINE:-}" ]; then
    row "baseline execgate run" "${best[baseline]}"
fi
