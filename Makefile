# Makefile - the short way in: installs what is missing, then drives meson.
#
#   make demo    the echo server demo on io_uring, then on epoll
#   make test    every test on both backends, then again under ASan+UBSan
#   make build   configure build/ (once) and compile
#   make bench   a release build in build-release/ and the benchmarks
#   make clean   remove the build directories
#
# Everything real lives in meson.build; this file only strings the steps
# together, so `meson setup build && ninja -C build` works just as well.

MESON ?= meson
NINJA ?= ninja
BUILD ?= build
ASAN_BUILD ?= build-asan
RELEASE_BUILD ?= build-release
DEMO_SECONDS ?= 3

ASAN_OPTS = -Db_sanitize=address,undefined -Db_lundef=false \
            -Dbench=disabled -Dexamples=false

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

.PHONY: all deps build test demo bench clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	$(call setup,$(BUILD),)
	$(NINJA) -C $(BUILD)

# meson exits non-zero when a test fails, which stops make here.
test: build
	$(MESON) test -C $(BUILD) --print-errorlogs
	$(call setup,$(ASAN_BUILD),$(ASAN_OPTS))
	$(NINJA) -C $(ASAN_BUILD)
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	ASAN_OPTIONS=detect_leaks=1 \
	  $(MESON) test -C $(ASAN_BUILD) --print-errorlogs
	@sh -c 'cat $(BUILD)/meson-logs/testlog.json \
	    $(ASAN_BUILD)/meson-logs/testlog.json 2>/dev/null' | \
	  awk '/"result": "OK"/ { ok++ } /"result": "SKIP"/ { skip++ } \
	       /"result": "(FAIL|TIMEOUT|ERROR|UNEXPECTEDPASS)"/ { bad++ } \
	       END { printf "tests: %d passed, %d failed, %d skipped\n", \
	             ok, bad, skip }'

# If the kernel refuses io_uring, the first run says so and uses epoll.
demo: build
	RX_BACKEND=io_uring $(BUILD)/examples/echo --seconds $(DEMO_SECONDS)
	RX_BACKEND=epoll $(BUILD)/examples/echo --seconds $(DEMO_SECONDS)
	RX_BACKEND=io_uring $(BUILD)/examples/echo --seconds $(DEMO_SECONDS) --threads 2
	RX_BACKEND=epoll $(BUILD)/examples/echo --seconds $(DEMO_SECONDS) --threads 2

bench: deps
	$(call setup,$(RELEASE_BUILD),--buildtype=release)
	$(NINJA) -C $(RELEASE_BUILD)
	sh bench/run.sh $(RELEASE_BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(RELEASE_BUILD)
