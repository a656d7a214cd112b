#!/usr/bin/env bash
# Build the FUSE file systems of bench/fusefs (gcc, pkg-config, libfuse3-dev:
# apt-get install -y libfuse3-dev fuse3 pkg-config gcc).
#   bash bench/fusefs/build.sh                     both, next to this script
#   bash bench/fusefs/build.sh OUTPUT              latencyfs into OUTPUT
#   bash bench/fusefs/build.sh NAME [OUTPUT]       NAME (latencyfs or powercutfs), into OUTPUT
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

build_one() {  # NAME OUTPUT
    # shellcheck disable=SC2046  # pkg-config prints several words on purpose
    gcc -O2 -Wall -Wextra -Werror -pthread -o "$2.tmp.$$" "$here/$1.c" $(pkg-config --cflags --libs fuse3)
    mv -f "$2.tmp.$$" "$2"
}

if ! pkg-config --exists fuse3; then
    echo "build.sh: libfuse3 not found by pkg-config (apt-get install -y libfuse3-dev fuse3 pkg-config gcc)" >&2
    exit 1
fi
case "${1:-}" in
    "") build_one latencyfs "$here/latencyfs"; build_one powercutfs "$here/powercutfs" ;;
    latencyfs|powercutfs) build_one "$1" "${2:-$here/$1}" ;;
    *) build_one latencyfs "$1" ;;
esac
