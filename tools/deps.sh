#!/usr/bin/env bash
# Installs what moonwire needs and is missing: Debian packages with apt-get
# (sudo when not root) and npm packages with `npm ci` from package-lock.json.
#
#   tools/deps.sh          what `make run` and `make test` need (the FastCGI
#                          tests put nginx in front of moonwire and talk to it
#                          with cgi-fcgi from libfcgi-bin; the Redis adapter
#                          tests start their own redis-server; python-socketio
#                          is a second Socket.IO client for the JSON tests,
#                          with requests, websocket-client and aiohttp for its
#                          polling, WebSocket and asyncio transports; the
#                          database tests hold a lock from the sqlite3 shell)
#   tools/deps.sh bench    that, plus the anchors `make bench` compares with:
#                          nginx's Lua module, wrk, and for the JSON codec
#                          figure lua-cjson (the codec moonwire used before)
#                          and valgrind (callgrind counts its instructions)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config libuv1-dev liblua5.4-dev lua5.4 libwslay-dev
          libsqlite3-dev libssl-dev libcrypt-dev libhiredis-dev libmsgpack-dev zlib1g-dev libbrotli-dev media-types
          node-llhttp lua-busted
          chromium nginx libfcgi-bin
          redis-server sqlite3
          python3-socketio python3-requests python3-websocket python3-aiohttp)
if [ "${1:-}" = bench ]; then packages+=(libnginx-mod-http-lua wrk lua-cjson valgrind); fi
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci only when the lock file changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || ! cmp -s package-lock.json node_modules/.moonwire-lock; then
  npm ci --no-audit --no-fund --loglevel=error
  mkdir -p node_modules && cp package-lock.json node_modules/.moonwire-lock
fi
