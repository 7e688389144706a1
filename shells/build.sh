#!/usr/bin/env bash
# Build zsh and bash with execgate's EXEC_WRAPPER patches into target/shells/{zsh,bash}.
#
# A thin caller of `execgate shells build --prefix target/shells` (src/shells/: Debian's
# own source packages plus one small patch each; cached, locked, progress on stderr). It
# builds the execgate binary first when needed.
#
# Usage: shells/build.sh [zsh] [bash]     (default: both)
# Exit status: 0 when every requested shell is built and up to date, non-zero otherwise,
# with a line on stderr naming the step that failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
cargo build --quiet --manifest-path "$root/Cargo.toml" --bin execgate
exec "${CARGO_TARGET_DIR:-$root/target}/debug/execgate" shells build --prefix "$root/target/shells" "$@" >/dev/null
