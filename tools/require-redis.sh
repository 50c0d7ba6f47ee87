#!/usr/bin/env bash
# Make sure redis-server is on PATH: the tests and `make dev` run a real one.
exec "$(dirname "$0")/require.sh" redis-server redis-server "install Redis (macOS: brew install redis)"
