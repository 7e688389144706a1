#!/usr/bin/env bash
# Where the per-exec cost of interception goes, against the floors this machine sets: runs
# benches/exec_breakdown.c inside a real session (Debian's own libc, our release shim,
# wrapper and server, every exec Run) and prints, per fork + exec of /bin/true, the cost of
# mapping the shim, of the shim's decision round trip, of an exec through a do-nothing
# static binary (benches/exec_hop.c), of an exec through our wrapper, and of the kernel's
# fastest round trip between two processes. Release build; x86_64.
#
#   benches/exec_breakdown.sh            (N=2000 interleaved iterations by default)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-$PWD/target}
n=${N:-2000}

cargo build --release --quiet -p execgate-execve-wrapper --bin execgate-execve-wrapper
cargo build --release --quiet -p execgate-escalate-server --example session
cargo build --release --quiet -p execgate-preload
mkdir -p "$target/bench"
cc -O2 -o "$target/bench/exec_breakdown" benches/exec_breakdown.c
cc -O2 -nostdlib -static -no-pie -fno-stack-protector -o "$target/bench/exec_hop" \
    benches/exec_hop.c

unset EXEC_WRAPPER BASH_EXEC_WRAPPER EXECGATE_SOCKET LD_PRELOAD
wrapper=$target/release/execgate-execve-wrapper
exec "$target/release/examples/session" run "$wrapper" \
    --shim "$target/release/libexecgate_preload.so" -- \
    "$target/bench/exec_breakdown" "$n" "$wrapper" "$target/bench/exec_hop"
