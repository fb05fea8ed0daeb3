#!/usr/bin/env bash
# Installs Mesa's software drivers (llvmpipe for GL/EGL, lavapipe for Vulkan) from Debian
# bookworm-backports (Mesa 25.0), for running the wgpu backend without a GPU. Needs root and
# Debian's package mirror; exits non-zero when it cannot install them.
set -euo pipefail
want="25."
have=$(dpkg-query -W -f '${Version}' libegl-mesa0 2>/dev/null || true)
case "$have" in "$want"*) exit 0 ;; esac
[ "$(id -u)" = 0 ] || { echo "software-gpu: needs root for apt-get" >&2; exit 1; }
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bookworm ] || { echo "software-gpu: written for Debian bookworm" >&2; exit 1; }
list=/etc/apt/sources.list.d/focus-backports.list
[ -f "$list" ] || grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d ||
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$list"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libegl-mesa0 libgl1-mesa-dri libglx-mesa0 >/dev/null
dpkg-query -W -f 'software-gpu: Mesa ${Version}\n' libegl-mesa0
