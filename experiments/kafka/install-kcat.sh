#!/usr/bin/env bash
# Makes `kcat` work against tansu 0.6 (README, "Set-up"; run by .ci/run when needed).
#
# Why: Debian 12's kcat 1.7.1 links Debian's librdkafka 2.0.2. librdkafka before 2.2.0 skips
# one byte too few of every tagged field of a flexible-version response (librdkafka's
# CHANGELOG, 2.2.0: "Fix a bug that happens when skipping tags", #4278). tansu 0.6 writes all
# four tagged fields of its ApiVersions v3 answer even at their defaults (Kafka omits those),
# so that first answer is misread ("ApiVersionRequest failed: Local: Read underflow") and kcat
# never gets further. No `-X` option avoids it: a `broker.version.fallback` of 0.10 or later
# turns `api.version.request` back on, and an older one speaks Produce v0, which tansu rejects.
#
# What it installs, under PREFIX (default /usr/local; needs write access there):
#   PREFIX/lib/tidemark/librdkafka.so.1  a copy of the librdkafka (2.12) that the rdkafka crate
#                                        builds for tidemark (so run `cargo build` first);
#   PREFIX/bin/kcat                      a two-line script running Debian's /usr/bin/kcat with
#                                        that library (PREFIX/bin comes before /usr/bin on PATH).
# Nothing else changes: other programs keep Debian's librdkafka.
#
# Usage: experiments/kafka/install-kcat.sh [PREFIX]
set -euo pipefail
# Paths given relative to where the script is called from are made absolute before the `cd`
# to the repository root below: the wrapper's LD_LIBRARY_PATH must not depend on the caller's
# working directory.
prefix=$(realpath -m -- "${1:-/usr/local}")
target_dir=${CARGO_TARGET_DIR:+$(realpath -m -- "$CARGO_TARGET_DIR")}
cd "$(dirname "$0")/../.."
real=/usr/bin/kcat
[ -x "$real" ] || { echo "install-kcat: no $real: apt-get install kcat first" >&2; exit 1; }

target=${target_dir:-target}
# Any profile's build will do: they are the same librdkafka version.
lib=$(ls -t "$target"/*/build/rdkafka-sys-*/out/src/librdkafka.so.1 2>/dev/null | head -n 1 || true)
[ -n "$lib" ] || {
    echo "install-kcat: no librdkafka.so.1 under $target/*/build/rdkafka-sys-*: run cargo build first" >&2
    exit 1
}
install -D -m 0644 "$lib" "$prefix/lib/tidemark/librdkafka.so.1"
mkdir -p "$prefix/bin"
cat >"$prefix/bin/kcat" <<EOF
#!/bin/sh
# Debian's kcat with the librdkafka tidemark builds (see tidemark's experiments/kafka/install-kcat.sh).
LD_LIBRARY_PATH=$prefix/lib/tidemark\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec $real "\$@"
EOF
chmod 0755 "$prefix/bin/kcat"
# The check: the installed kcat must report the new library.
version=$("$prefix/bin/kcat" -V | grep -o 'librdkafka [0-9.]*' || true)
v=${version#librdkafka }
if [ -z "$v" ] || [ "$(printf '%s\n' 2.2.0 "$v" | sort -V | head -n 1)" != 2.2.0 ]; then
    echo "install-kcat: $prefix/bin/kcat reports '$version', not 2.2.0 or newer" >&2
    exit 1
fi
echo "install-kcat: $prefix/bin/kcat runs $real with $version ($prefix/lib/tidemark)"
