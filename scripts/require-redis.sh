#!/usr/bin/env bash
# Make sure redis-server is on PATH: the tests and `make dev` run a real one.
# Installs Debian's package when this user can (root, or passwordless sudo).
set -euo pipefail
command -v redis-server >/dev/null && exit 0
if command -v apt-get >/dev/null; then
  if [ "$(id -u)" = 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(); fi
  if [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; then
    echo "redis-server missing: installing Debian's redis-server" >&2
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq redis-server >/dev/null
    exit 0
  fi
fi
echo "redis-server is required: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis)" >&2
exit 1
