#!/usr/bin/env bash
# Build zsh and bash with execgate's EXEC_WRAPPER patches into target/shells/{zsh,bash}.
#
# Sources are Debian's own source packages (`apt-get source`), so the shells are the ones
# Debian ships plus one small patch each. Cached: a shell is rebuilt only when its patch or
# this script changed (a hash of both is kept next to the binary). Safe to run concurrently:
# a lock serialises runs, and a run that waited finds the work done.
#
# Usage: shells/build.sh [zsh] [bash]     (default: both)
# Exit status: 0 when every requested shell is built and up to date, non-zero otherwise,
# with one line on stderr naming the step that failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(dirname "$here")
build="$here/build"
out="$root/target/shells"

step="start"
log=""
fail() {
    echo "shells/build.sh: error: $step failed${1:+: $1}" >&2
    if [ -n "$log" ] && [ -f "$log" ]; then
        echo "---- last lines of $log ----" >&2
        tail -n 30 "$log" >&2
    fi
    exit 1
}
trap 'fail "command exited with status $?"' ERR

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

shells=("$@")
[ "${#shells[@]}" -gt 0 ] || shells=(zsh bash)
for s in "${shells[@]}"; do
    case "$s" in
        zsh | bash) ;;
        *) step="argument check" fail "unknown shell '$s' (expected zsh or bash)" ;;
    esac
done

# The cache key of one shell: this script and its patch.
stamp_of() { cat "$here/build.sh" "$here/$1-exec-wrapper.patch" | sha256sum | cut -d' ' -f1; }
up_to_date() { [ -x "$out/$1" ] && [ -f "$out/.$1.stamp" ] && [ "$(cat "$out/.$1.stamp")" = "$(stamp_of "$1")" ]; }

todo=()
for s in "${shells[@]}"; do up_to_date "$s" || todo+=("$s"); done
[ "${#todo[@]}" -gt 0 ] || exit 0

mkdir -p "$build" "$out"
step="taking the build lock $build/.lock"
exec 9>"$build/.lock"
flock 9
# Another run may have finished the work while this one waited.
still=()
for s in "${todo[@]}"; do up_to_date "$s" || still+=("$s"); done
todo=("${still[@]+"${still[@]}"}")
[ "${#todo[@]}" -gt 0 ] || exit 0

# --- build tools -------------------------------------------------------------------------
# Only what fetching, unpacking and configuring need (not `apt-get build-dep`, which pulls
# in the documentation toolchains): dpkg-source, a C toolchain, patch, a terminal library
# for zsh's configure, xz for the tarballs.
step="installing build tools"
need=()
for pkg in dpkg-dev gcc make libc6-dev patch libncurses-dev xz-utils; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "shells/build.sh: installing ${need[*]}" >&2
    install_pkgs() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
    # A fresh machine may not have fetched its package lists yet.
    install_pkgs "${need[@]}" || { as_root apt-get update -qq && install_pkgs "${need[@]}"; } ||
        fail "apt-get install ${need[*]}"
fi

# --- deb-src -----------------------------------------------------------------------------
have_deb_src() {
    grep -qsE '^[[:space:]]*deb-src[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list ||
        grep -qsiE '^Types:.*\bdeb-src\b' /etc/apt/sources.list.d/*.sources
}
enable_deb_src() {
    local tmp
    tmp=$(mktemp)
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        # deb822: copy every Debian stanza with its Types changed to deb-src.
        awk 'BEGIN { RS = ""; ORS = "\n\n" }
             /(^|\n)URIs:[^\n]*debian/ {
                 n = split($0, lines, "\n"); out = ""
                 for (i = 1; i <= n; i++) {
                     if (lines[i] ~ /^Types:/) lines[i] = "Types: deb-src"
                     out = out lines[i] (i < n ? "\n" : "")
                 }
                 print out
             }' /etc/apt/sources.list.d/*.sources >"$tmp"
        [ -s "$tmp" ] && as_root install -m 0644 "$tmp" /etc/apt/sources.list.d/execgate-deb-src.sources
    fi
    if ! [ -s "$tmp" ] && [ -f /etc/apt/sources.list ]; then
        # One-line format: a deb-src twin of every Debian `deb` line.
        sed -n -E 's/^[[:space:]]*deb([[:space:]].*debian.*)$/deb-src\1/p' /etc/apt/sources.list >"$tmp"
        [ -s "$tmp" ] && as_root install -m 0644 "$tmp" /etc/apt/sources.list.d/execgate-deb-src.list
    fi
    [ -s "$tmp" ] || { rm -f "$tmp"; fail "no Debian 'deb' entry found in /etc/apt to derive a deb-src entry from"; }
    rm -f "$tmp"
    as_root apt-get update -qq
}

# --- sources -----------------------------------------------------------------------------
# The source packages are downloaded once into build/src; every build unpacks a fresh tree
# from them, so a changed patch never lands on an already patched tree.
fetch_sources() {
    local pkg=$1
    compgen -G "$build/src/${pkg}_*.dsc" >/dev/null && return 0
    step="enabling deb-src"
    have_deb_src || enable_deb_src
    step="apt-get source $pkg"
    mkdir -p "$build/src"
    (cd "$build/src" && apt-get source --download-only -qq "$pkg") >"$build/$pkg-fetch.log" 2>&1 || {
        # An outdated package list (e.g. the deb-src entry exists but was never fetched).
        as_root apt-get update -qq
        (cd "$build/src" && apt-get source --download-only -qq "$pkg") >"$build/$pkg-fetch.log" 2>&1
    } || { log="$build/$pkg-fetch.log"; fail; }
}

unpack() {
    local pkg=$1 dsc
    dsc=$(ls "$build/src/${pkg}"_*.dsc | sort -V | tail -n 1)
    step="unpacking $(basename "$dsc")"
    rm -rf "$build/$pkg"
    dpkg-source -x "$dsc" "$build/$pkg" >"$build/$pkg-unpack.log" 2>&1 ||
        { log="$build/$pkg-unpack.log"; fail; }
    step="applying shells/$pkg-exec-wrapper.patch"
    patch -d "$build/$pkg" -p1 --forward --no-backup-if-mismatch <"$here/$pkg-exec-wrapper.patch" \
        >"$build/$pkg-patch.log" 2>&1 || { log="$build/$pkg-patch.log"; fail; }
}

jobs=$(nproc 2>/dev/null || echo 2)

build_zsh() {
    local src="$build/zsh"
    log="$build/zsh-build.log"
    step="configuring zsh"
    # --disable-dynamic links every module that can be linked statically into the binary,
    # so it runs from target/shells without an installed module directory.
    # --disable-etcdir: no global startup files (/etc/zshenv, ...); the session decides.
    (cd "$src" && ./configure --disable-dynamic --disable-etcdir --disable-gdbm --disable-pcre \
        --disable-cap --enable-multibyte --with-tcsetpgrp) >"$log" 2>&1 || fail
    # Without dynamic loading, modules that are only ever loaded dynamically would be
    # missing. Link in the ones scripts commonly rely on (`=~` needs zsh/regex). zsh/files
    # and zsh/stat stay out: they would shadow rm, mv, stat... with builtins, which never
    # reach execve.
    step="selecting static zsh modules"
    sed -i -E 's#^(name=zsh/(regex|system|mathfunc|param/private|zselect) modfile=[^ ]*) link=no#\1 link=static#' \
        "$src/config.modules"
    [ "$(grep -cE '^name=zsh/(regex|system|mathfunc|param/private|zselect) .*link=static' "$src/config.modules")" = 5 ] ||
        fail "config.modules does not list the expected modules"
    step="building zsh"
    (cd "$src" && make -j"$jobs" -C Src) >>"$log" 2>&1 || fail
    install_shell zsh "$src/Src/zsh"
}

build_bash() {
    local src="$build/bash"
    log="$build/bash-build.log"
    step="configuring bash"
    (cd "$src" && ./configure --without-bash-malloc --disable-nls) \
        >"$log" 2>&1 || fail
    step="building bash"
    (cd "$src" && make -j"$jobs" bash) >>"$log" 2>&1 || fail
    install_shell bash "$src/bash"
}

install_shell() {
    local name=$1 bin=$2
    step="installing $name into $out"
    [ -x "$bin" ] || fail "$bin was not produced"
    # The shell must work from here, with no installation.
    "$bin" -c 'exit 0' || fail "$bin -c 'exit 0' did not succeed"
    cp "$bin" "$out/.$name.new"
    mv -f "$out/.$name.new" "$out/$name"
    stamp_of "$name" >"$out/.$name.stamp"
    log=""
    echo "shells/build.sh: built $out/$name" >&2
}

for s in "${todo[@]}"; do
    fetch_sources "$s"
    unpack "$s"
    "build_$s"
done
