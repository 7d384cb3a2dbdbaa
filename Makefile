# Thin wrapper over CMake so the README's two commands stay short.
#   make demo        build, then run a 4-rank demo through the launcher and the embedded TCP store
#   make check       build, then run every test
#   make check-asan  the tests again under AddressSanitizer + UndefinedBehaviorSanitizer
#   make check-tsan  the tests again under ThreadSanitizer
#   make format-check  fail when a source file differs from what clang-format makes of it
#   make fuzz        every libFuzzer target for a bounded time under ASan + UBSan (fuzz/run.sh)
#   make bench       build, then run the point-to-point benchmark against the machine's limits
#   make bench-coll  build, then every collective beside Open MPI and Gloo into docs/BENCHMARKS.md (~40 min;
#                    QUICK=1 make bench-coll checks the script in a minute or two)
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE ?= cmake
CTEST ?= ctest

.PHONY: all build demo check check-asan check-tsan fuzz bench bench-coll format format-check clean

all: build

build:
	$(CMAKE) -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCGLOO_WERROR=ON
	$(CMAKE) --build build -j $(JOBS)

demo: build
	./build/tools/cgloo-run -n 4 --tag ./build/tools/cgloo-demo

check: build
	cd build && $(CTEST) --output-on-failure -j $(JOBS)

check-asan:
	$(CMAKE) -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCGLOO_WERROR=ON -DCGLOO_SANITIZE=address
	$(CMAKE) --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1 $(CTEST) --output-on-failure -j $(JOBS)

check-tsan:
	$(CMAKE) -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCGLOO_WERROR=ON -DCGLOO_SANITIZE=thread
	$(CMAKE) --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1 $(CTEST) --output-on-failure -j $(JOBS)

fuzz:
	./fuzz/run.sh

bench: build
	./bench/run.sh

bench-coll: build
	./bench/coll.sh

FORMATTED = $$(git ls-files '*.c' '*.h' '*.cc')

format:
	clang-format -i $(FORMATTED)

format-check:
	clang-format --dry-run --Werror $(FORMATTED)

clean:
	rm -rf build build-asan build-tsan build-fuzz
