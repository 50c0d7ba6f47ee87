#!/usr/bin/env bash
# Make sure a program is on PATH, installing its Debian package when this user can
# (root, or passwordless sudo):
#
#   tools/require.sh COMMAND PACKAGE [WHAT TO DO ELSEWHERE]
#   tools/require.sh chromium chromium "install Chromium"
#
# The tests need real programs: redis-server for every suite, chromium for the chat
# page's (tests/browser; Debian's build, since Playwright's own cannot be downloaded).
set -euo pipefail
command=$1 package=$2 hint=${3:-"install $2"}
command -v "$command" >/dev/null && exit 0
if command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(); fi
  if [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; then
    echo "$command missing: installing Debian's $package" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "$package" >/dev/null
    exit 0
  fi
fi
echo "$command is required: $hint (Debian/Ubuntu: apt-get install $package)" >&2
exit 1
