#!/usr/bin/env bash
# Build latencyfs: bash bench/fusefs/build.sh [OUTPUT]   (default: next to this script)
# Needs libfuse3-dev, pkg-config and gcc (apt-get install -y libfuse3-dev fuse3 pkg-config gcc).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/latencyfs}"
# shellcheck disable=SC2046  # pkg-config prints several words on purpose
gcc -O2 -Wall -Wextra -Werror -o "$out.tmp.$$" "$here/latencyfs.c" $(pkg-config --cflags --libs fuse3)
mv -f "$out.tmp.$$" "$out"
