#!/usr/bin/env bash
# Runs the Socket.IO project's protocol conformance suites against moonwire.
#
#   spec/conformance/run.sh SOCKET_IO_REPO [engine.io|socket.io ...]
#
# SOCKET_IO_REPO is a checkout of https://github.com/socketio/socket.io (a
# work tree, or a bare/mirror git directory: the suites are then taken from
# its HEAD). For each suite (both when none is named) this copies
# docs/<protocol>/<suite> to a temporary directory, runs `npm ci` there (it
# needs the npm registry), starts build/moonwire on port 3000 (the suites
# hard-code http://localhost:3000) with the matching app in
# spec/conformance/<suite>/, runs `npx mocha test-suite.js` and prints the
# pass/fail counts. The full mocha output is kept in the temp directory,
# whose path is printed. Exits non-zero when a test failed or a suite could
# not run.
#
# Environment: MOONWIRE_BIN (default build/moonwire), KEEP=1 keeps the temp
# directories even when everything passed.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
bin="${MOONWIRE_BIN:-$repo_root/build/moonwire}"
port=3000

if [ $# -lt 1 ]; then
  sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
src="$1"
shift
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(engine.io socket.io)

[ -x "$bin" ] || { echo "run.sh: no moonwire binary at $bin (make build, or set MOONWIRE_BIN)" >&2; exit 2; }
command -v npm >/dev/null || { echo "run.sh: npm is needed" >&2; exit 2; }

suite_dir() {
  case "$1" in
    engine.io) echo docs/engine.io-protocol/v4-test-suite ;;
    socket.io) echo docs/socket.io-protocol/v5-test-suite ;;
    *) return 1 ;;
  esac
}

# Copies the suite at relative path $1 of the socket.io repository into $2.
copy_suite() {
  local rel="$1" dest="$2"
  if [ -d "$src/$rel" ]; then
    cp -R "$src/$rel/." "$dest/"
  elif git --git-dir="$src" rev-parse --verify -q HEAD >/dev/null 2>&1 ||
       git -C "$src" rev-parse --verify -q HEAD >/dev/null 2>&1; then
    local gitdir="$src"
    git --git-dir="$src" rev-parse --verify -q HEAD >/dev/null 2>&1 || gitdir="$(git -C "$src" rev-parse --absolute-git-dir)"
    git --git-dir="$gitdir" archive "HEAD:$rel" | tar -x -C "$dest"
  else
    return 1
  fi
  [ -f "$dest/test-suite.js" ]
}

port_busy() {
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

server_pid=""
server_status=0
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$server_pid" 2>/dev/null && { echo "  moonwire did not stop after SIGTERM; killing it"; kill -KILL "$server_pid"; }
    wait "$server_pid" 2>/dev/null
    server_status=$?
    echo "  moonwire exited with status $server_status"
  fi
  server_pid=""
}
trap stop_server EXIT INT TERM

summary=()
status=0

for suite in "${suites[@]}"; do
  rel="$(suite_dir "$suite")" || { echo "run.sh: unknown suite '$suite' (engine.io or socket.io)" >&2; exit 2; }
  app="$here/$suite"
  work="$(mktemp -d "${TMPDIR:-/tmp}/moonwire-conformance-$suite-XXXXXX")"
  echo "== $suite: $rel -> $work"

  if ! copy_suite "$rel" "$work"; then
    echo "  cannot find $rel in $src"
    summary+=("$suite: could not copy the suite"); status=1; continue
  fi
  if ! (cd "$work" && npm ci --no-audit --no-fund --loglevel=error >"$work/npm-ci.log" 2>&1); then
    echo "  npm ci failed; see $work/npm-ci.log"
    tail -n 20 "$work/npm-ci.log"
    summary+=("$suite: npm ci failed"); status=1; continue
  fi
  if port_busy; then
    echo "  port $port is already in use: stop whatever listens there first"
    summary+=("$suite: port $port busy"); status=1; continue
  fi

  "$bin" --root "$app" --port "$port" --quiet --db "$work/moonwire.db" >"$work/moonwire.log" 2>&1 &
  server_pid=$!
  ready=""
  for _ in $(seq 100); do
    if grep -q "listening on" "$work/moonwire.log" 2>/dev/null; then ready=1; break; fi
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    echo "  moonwire did not start:"; sed 's/^/    /' "$work/moonwire.log"
    stop_server
    summary+=("$suite: moonwire did not start"); status=1; continue
  fi

  (cd "$work" && npx --no-install mocha --reporter spec --no-colors test-suite.js) >"$work/mocha.log" 2>&1
  mocha_status=$?
  stop_server

  passing=$(grep -Eo '^ *[0-9]+ passing' "$work/mocha.log" | grep -Eo '[0-9]+' || echo 0)
  failing=$(grep -Eo '^ *[0-9]+ failing' "$work/mocha.log" | grep -Eo '[0-9]+' || echo 0)
  pending=$(grep -Eo '^ *[0-9]+ pending' "$work/mocha.log" | grep -Eo '[0-9]+' || echo 0)
  echo "  $passing passing, $failing failing, $pending pending (mocha exit $mocha_status)"
  if [ "$failing" != 0 ] || [ "$mocha_status" != 0 ]; then
    # The failures with their reasons (mocha lists them after the counts).
    sed -n '/^ *[0-9]* failing/,$p' "$work/mocha.log" | sed 's/^/  /'
    status=1
  fi
  if [ "$server_status" != 0 ] || grep -qiE "error|warn|sanitizer" "$work/moonwire.log"; then
    echo "  --- moonwire output (last 40 lines) ---"; tail -n 40 "$work/moonwire.log" | sed 's/^/  /'
    [ "$server_status" = 0 ] || status=1
  fi
  summary+=("$suite: $passing passing, $failing failing, $pending pending (log: $work/mocha.log)")
  if [ "$failing" = 0 ] && [ "$mocha_status" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
    rm -rf "$work"
    summary[-1]="$suite: $passing passing, $failing failing, $pending pending"
  fi
done

echo
echo "== summary"
printf '  %s\n' "${summary[@]}"
exit $status
