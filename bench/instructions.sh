#!/usr/bin/env bash
# Instructions per request of the HTTP figure's server, counted by callgrind:
# a figure that stays put on a busy machine, where req/s and CPU time do not.
#
#   bench/instructions.sh moonwire [BINARY] [SECONDS] [PATH]   (default build/moonwire, 5, /hello)
#   bench/instructions.sh nginx [-] [SECONDS]           (the nginx+Lua anchor, one process)
#   bench/instructions.sh echo [BINARY] [SECONDS]       (moonwire, per acked echo)
#
# MW_ROOT=DIR serves another app than bench/app (e.g. MW_ROOT=. with
# PATH /api/pets/1: the example app, given one pet first). Every thread of
# the server is counted (the database's too).
#
# Starts the server under valgrind --tool=callgrind with instrumentation off,
# warms it up with 2 s of wrk, turns instrumentation on, runs
# `wrk -t1 -c50 -d SECONDS` on /hello, dumps the counts and prints the
# user-space instructions (Ir) divided by the requests wrk completed. Kernel
# work (the read and the write of each request) is not counted. Needs
# valgrind, wrk, curl and, for the anchor, nginx with its Lua module.
# `echo` does the same with the echo row's load instead of wrk (build/loadgen
# echo, 10 clients in lockstep; LOADGEN picks another loadgen): instructions
# per acked round trip, the figure to compare changes to the event path with.
# KEEP_CG=DIR keeps callgrind's output there, for callgrind_annotate
# (--tree=caller shows who calls what the count grew in).
set -euo pipefail

kind=${1:-moonwire}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${2:-$root/build/moonwire}
secs=${3:-5}
path=${4:-/hello}
app=${MW_ROOT:-$root/bench/app}
tmp=$(mktemp -d)
trap '[ -n "${KEEP_CG:-}" ] && cp "$tmp"/cg.out* "$KEEP_CG"/ 2>/dev/null; rm -rf "$tmp"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
vg=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$tmp/cg.out")

if [ "$kind" = nginx ]; then
  # master_process off: the one worker is the process valgrind runs
  sed -e "s#@PREFIX@#$tmp#g" -e "s#@PORT@#$port#g" -e "s#master_process on#master_process off#" \
    "$root/bench/anchors/nginx.conf.in" >"$tmp/nginx.conf"
  "${vg[@]}" nginx -p "$tmp" -e "$tmp/error.log" -c "$tmp/nginx.conf" 2>"$tmp/vg.err" &
else
  "${vg[@]}" "$bin" --root "$app" --port "$port" --production --quiet --db "$tmp/bench.db" \
    >/dev/null 2>"$tmp/vg.err" &
fi
pid=$!
url=http://127.0.0.1:$port$path
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
if [ -n "${MW_ROOT:-}" ]; then
  curl -s -o /dev/null -H 'content-type: application/json' -d '{"name":"Rex","species":"dog"}' "http://127.0.0.1:$port/api/pets"
fi
if [ "$kind" = echo ]; then
  loadgen=${LOADGEN:-$root/build/loadgen}
  "$loadgen" echo --host 127.0.0.1 --port "$port" --clients 10 --seconds 2 >/dev/null 2>&1
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "$loadgen" echo --host 127.0.0.1 --port "$port" --clients 10 --seconds "$secs" >"$tmp/loadgen.txt" 2>&1
  unit="acked round trips"
  reqs=$(grep -o '"round_trips":[0-9]*' "$tmp/loadgen.txt" | cut -d: -f2)
else
  wrk -t1 -c50 -d2s "$url" >/dev/null
  callgrind_control -i on "$pid" >/dev/null 2>&1
  wrk -t1 -c50 -d"${secs}s" "$url" >"$tmp/wrk.txt"
  unit=requests
  reqs=$(awk '/requests in/{print $1}' "$tmp/wrk.txt")
fi
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid"
wait "$pid" 2>/dev/null || true
dump=$(ls "$tmp"/cg.out.* | head -1)
ir=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
echo "$kind $path: $reqs $unit, $ir instructions, $((ir / reqs)) per ${unit%s}"
