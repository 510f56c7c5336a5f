# moonwire — the two commands a newcomer needs are `make run` and `make test`.
BUILD    ?= build
SAN      ?= build-sanitize
FUZZ     ?= build-fuzz
PORT     ?= 3000
JOBS     ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

# The build's own makes (cmake --build) print no "Entering directory" lines.
MAKEFLAGS += --no-print-directory
export MAKEFLAGS

.PHONY: all deps build run test test-sanitize fuzz bench clean

all: build

# Installs what is missing: Debian packages (apt-get) and npm packages (npm ci).
deps:
	@tools/deps.sh

build:
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Starts the example app on http://localhost:$(PORT) in dev mode; an empty
# pet store gets a few pets (scripts/seeds.lua).
run: deps build
	@$(BUILD)/moonwire --root . --dev --seed --port $(PORT)

# Every test: C units, busted specs, Node end-to-end (through ctest).
test: deps build
	ctest --test-dir $(BUILD) --output-on-failure

# The same C tests and end-to-end suite against an ASan + UBSan build.
test-sanitize: deps
	@cmake -S . -B $(SAN) -DMOONWIRE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(SAN) -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir $(SAN) --output-on-failure

# libFuzzer targets (clang); run one with e.g. build-fuzz/fuzz_http -max_total_time=60 fuzz/corpus/http
fuzz:
	@CC=clang cmake -S . -B $(FUZZ) -DMOONWIRE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(FUZZ) -j$(JOBS)

# moonwire against socket.io (on ws, on uWebSockets.js, on Bun), Express and
# nginx+Lua on loopback, one table
# (bench/README.md); writes bench/results/latest.md. Under 8 minutes.
bench:
	@t0=$$(date +%s.%N) && tools/deps.sh bench && $(MAKE) --no-print-directory build \
	  && cmake --build $(BUILD) --target loadgen -j$(JOBS) \
	  && BENCH_STARTED=$$t0 MOONWIRE_BIN=$(BUILD)/moonwire LOADGEN_BIN=$(BUILD)/loadgen node bench/run.mjs

clean:
	rm -rf $(BUILD) $(SAN) $(FUZZ)
