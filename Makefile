# Makefile - the short way in: installs what is missing, then drives meson.
#
#   make demo    build the echo servers and their client alone, then load
#                each server on io_uring and on epoll for DEMO_SECONDS and
#                print one table; then rx-http loaded by rx-load, the rate
#                and the latency percentiles
#   make test    the format check, every test on both backends, then again
#                under ASan+UBSan; one test installs into a scratch prefix
#                (tests/install.sh)
#   make format  clang-format every C and C++ file (format-check: only look)
#   make test-valgrind  every test of build/ under valgrind (memcheck)
#   make build   configure build/ (once) and compile
#   make bench   a -O2 build in build-bench/, the peer benchmark (rx, libev,
#                libuv, libevent; rx's completion ops and an echo server
#                on plain liburing beside them), libvirt's event API on rx
#                and on libvirt's loop (when libvirt-dev is installed),
#                rx's micro benchmarks, and HTTP: rx-http against nginx
#                and h2o, rx-load against wrk and h2load; the report, CSV
#                and plots land in build/bench/ (QUICK=1: a few minutes)
#   make fuzz    libFuzzer (clang) on each fuzz target for FUZZ_SECONDS,
#                new corpus entries merged into fuzz/corpus/<target>/
#   make coverage  line and branch coverage of include/, reactor/ and
#                backends/ (gcovr)
#   make clean   remove the build directories
#
# JOBS=N caps parallelism (ninja -jN, meson test --num-processes N), e.g.
# `make test JOBS=2` on a shared machine; by default both use every core.
# (Do not set NINJA for that: meson reads NINJA from the environment as the
# path of the ninja program, and make exports command-line variables.)
#
# Installing is meson's: README.md, "Installing". Everything real lives in
# meson.build; this file only strings the steps together, so
# `meson setup build && ninja -C build` works just as well.

MESON ?= meson
JOBS ?=
ifneq ($(filter-out 0 1,$(words $(NINJA))),)
$(error NINJA="$(NINJA)": meson takes NINJA as the ninja program alone; use JOBS=N to cap parallelism)
endif
BUILD_CMD = ninja$(if $(JOBS), -j$(JOBS))
TEST_CMD = $(MESON) test $(if $(JOBS),--num-processes $(JOBS))
BUILD ?= build
ASAN_BUILD ?= build-asan
BENCH_BUILD ?= build-bench
DEMO_SECONDS ?= 3
FUZZ_BUILD ?= build-fuzz
COVERAGE_BUILD ?= build-coverage
FUZZ_SECONDS ?= 60
# fuzz_qmp is built only with jansson's development files (adapters/qmp).
FUZZ_TARGETS = timerwheel mpsc loop bus queue ops http \
  $(if $(shell pkg-config --exists jansson && echo y),qmp)

# The examples too: their tests run the echo servers, which ASan and LSan
# then check (a leak makes the server's exit status, which the tests check,
# 1). A build-asan/ configured before keeps its own options.
ASAN_OPTS = -Db_sanitize=address,undefined -Db_lundef=false \
            -Dbench=disabled

# $(call setup,DIR,OPTIONS): `meson setup DIR OPTIONS`, unless DIR is already
# configured. A directory whose setup failed half-way is set up afresh.
define setup
	@if [ ! -f $(1)/build.ninja ]; then \
	  set -- $(1) $(2); \
	  if [ -f $(1)/meson-private/coredata.dat ]; then set -- --wipe "$$@"; fi; \
	  echo "$(MESON) setup $$*"; \
	  $(MESON) setup "$$@"; \
	fi
endef

.PHONY: all deps build test test-valgrind demo bench fuzz coverage clean format format-check

all: build

deps:
	@sh scripts/deps.sh

build: deps
	$(call setup,$(BUILD),)
	$(BUILD_CMD) -C $(BUILD)

# Every C and C++ file in git as clang-format leaves it (.clang-format):
# `make format` rewrites them, `make format-check` (part of make test) only
# lists what differs and fails.
FORMAT_FILES = git ls-files '*.c' '*.h' '*.cc'

format:
	@sh scripts/deps.sh format
	$(FORMAT_FILES) | xargs clang-format -i

format-check:
	@sh scripts/deps.sh format
	@$(FORMAT_FILES) | xargs clang-format --dry-run -Werror || \
	  { echo "format-check: the files above differ from clang-format's layout; run make format" >&2; exit 1; }

# meson exits non-zero when a test fails, which stops make here.
test: format-check build
	$(TEST_CMD) -C $(BUILD) --print-errorlogs
	$(call setup,$(ASAN_BUILD),$(ASAN_OPTS))
	$(BUILD_CMD) -C $(ASAN_BUILD)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ASAN_OPTIONS=detect_leaks=1 \
	  $(TEST_CMD) -C $(ASAN_BUILD) --print-errorlogs
	@sh -c 'cat $(BUILD)/meson-logs/testlog.json \
	    $(ASAN_BUILD)/meson-logs/testlog.json 2>/dev/null' | \
	  awk '/"result": "OK"/ { ok++ } /"result": "SKIP"/ { skip++ } \
	       /"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"/ { bad++ } \
	       END { printf "tests: %d passed, %d failed, %d skipped\n", \
	             ok, bad, skip }'

# Every test of $(BUILD) under valgrind's memcheck, on both backends, less
# what valgrind 3.19 cannot run (scripts/valgrind.sh says what and why).
test-valgrind: build
	JOBS=$(JOBS) sh scripts/valgrind.sh $(BUILD)

# Only the demo is compiled: the tests, benchmarks and fuzz replays are
# `make build`'s. echo-client starts each server once per backend (io_uring,
# then epoll) and loads it for DEMO_SECONDS; if the kernel refuses io_uring,
# it says so and runs the epoll rows alone. Then examples/load/demo.sh
# starts rx-http on each backend and loads it with rx-load for DEMO_SECONDS,
# without and with a pipeline of 16.
DEMO = $(BUILD)/examples
demo: deps
	$(call setup,$(BUILD),)
	$(BUILD_CMD) -C $(BUILD) examples/echo examples/echo-ops examples/echo-client \
	  examples/http/rx-http examples/load/rx-load
	$(DEMO)/echo-client --seconds $(DEMO_SECONDS) --server $(DEMO)/echo \
	  --server $(DEMO)/echo-ops --server "$(DEMO)/echo --threads 2"
	sh examples/load/demo.sh $(DEMO)/http/rx-http $(DEMO)/load/rx-load \
	  $(DEMO_SECONDS)

# Every (workload, library) pair of bench/peers and of bench/virt (built
# only with libvirt's development files) as its own process, several times,
# interleaved; then the HTTP section (bench/http: every server, client and
# pipeline depth, interleaved too); then the google-benchmark micro
# benchmarks. See docs/benchmarks.md.
#
# The examples are built too, optimised like the rest: bench/http runs
# rx-http and rx-load (examples/http, examples/load) against nginx, h2o,
# wrk and h2load (installed by deps.sh bench). A build-bench/ configured
# before without them is switched to -Dexamples=true.
bench:
	@sh scripts/deps.sh bench
	$(call setup,$(BENCH_BUILD),--buildtype=release -Doptimization=2 \
	  -Dbench=enabled -Dtests=false -Dexamples=true)
	@$(MESON) introspect --buildoptions $(BENCH_BUILD) | \
	  grep -q '"name": "examples", "value": true' || \
	  { echo "$(MESON) configure $(BENCH_BUILD) -Dexamples=true"; \
	    $(MESON) configure $(BENCH_BUILD) -Dexamples=true; }
	$(BUILD_CMD) -C $(BENCH_BUILD)
	python3 bench/peers/run.py --bin $(BENCH_BUILD)/bench/peers \
	  --virt $(BENCH_BUILD)/bench/virt --qmp $(BENCH_BUILD)/bench/qmp \
	  --out $(BUILD)/bench \
	  --micro $(BENCH_BUILD) --http $(BENCH_BUILD) $(if $(QUICK),--quick)

# Every test of `make test` on a build instrumented for gcov, then gcovr's
# summary for the library's own sources (tests, examples and benchmarks
# excluded); the full report is in $(COVERAGE_BUILD)/coverage.txt.
coverage:
	@sh scripts/deps.sh coverage
	$(call setup,$(COVERAGE_BUILD),-Db_coverage=true -Dbench=disabled \
	  -Dexamples=false)
	$(BUILD_CMD) -C $(COVERAGE_BUILD)
	$(TEST_CMD) -C $(COVERAGE_BUILD) --no-suite tsan --print-errorlogs
	gcovr -r . --object-directory $(COVERAGE_BUILD) \
	  --filter 'include/' --filter 'reactor/' --filter 'backends/' \
	  --txt $(COVERAGE_BUILD)/coverage.txt --print-summary

# clang builds fuzz/<target>-libfuzzer (fuzz/meson.build). Each target runs
# for FUZZ_SECONDS (fuzz_loop, fuzz_bus, fuzz_queue and fuzz_qmp once per
# backend, fuzz_ops also on io_uring with RX_URING_NO_OPS=all;
# FZ_OPS_TOLERATE in the environment skips known failures,
# fuzz/regress/fuzz_ops/README) on a
# scratch copy of its corpus; -merge=1 then adds to fuzz/corpus/<target>/
# only the inputs that reach new coverage features. That is still hundreds
# of small files on a
# first run: pick a few before committing. A crash stops make, and its input
# is left in $(FUZZ_BUILD)/fuzz/<target>-crash-*.
fuzz:
	@sh scripts/deps.sh fuzz
	$(call setup,$(FUZZ_BUILD),--native-file fuzz/clang.ini \
	  -Dtests=false -Dexamples=false -Dbench=disabled)
	$(BUILD_CMD) -C $(FUZZ_BUILD) $(FUZZ_TARGETS:%=fuzz/fuzz_%-libfuzzer)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  bes=x; case $$t in loop|bus|queue|qmp) bes="io_uring epoll";; \
	    ops) bes="io_uring epoll io_uring-emulated";; esac; \
	  for be in $$bes; do \
	    new=$(FUZZ_BUILD)/fuzz/new-$$t; rm -rf $$new; mkdir -p $$new; \
	    echo "fuzz: fuzz_$$t $$be for $(FUZZ_SECONDS) s"; \
	    mask=; [ $$be = io_uring-emulated ] && be=io_uring mask=all; \
	    RX_BACKEND=$$be RX_URING_NO_OPS=$$mask \
	      $(FUZZ_BUILD)/fuzz/fuzz_$$t-libfuzzer \
	      -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
	      -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/fuzz/$$t- \
	      $$new fuzz/corpus/fuzz_$$t; \
	    RX_BACKEND=$$be RX_URING_NO_OPS=$$mask \
	      $(FUZZ_BUILD)/fuzz/fuzz_$$t-libfuzzer -merge=1 \
	      fuzz/corpus/fuzz_$$t $$new; \
	  done; \
	done

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(BENCH_BUILD) $(COVERAGE_BUILD) $(FUZZ_BUILD)
