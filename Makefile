# The README's two commands. Both install missing Debian packages (as root), configure and build.
#   make demo   runs the main job (`tessera demo`) on a built-in default
#   make test   runs every test (GPU tests skip themselves without a device)
# Other targets: build, test-sanitize (CPU-only ASan+UBSan build, cpu-labelled tests), bench-cpu
# (SpMM vs Eigen, k-means vs FAISS).
BUILD ?= build
SAN_BUILD ?= build-sanitize
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo "-G Ninja")

.PHONY: deps configure build demo test test-sanitize bench-cpu clean

deps:
	@bash scripts/install_deps.sh

$(BUILD)/CMakeCache.txt:
	@$(MAKE) --no-print-directory deps
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

configure: deps
	cmake -S . -B $(BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

demo: build
	./$(BUILD)/cli/tessera demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 900

test-sanitize: deps
	cmake -S . -B $(SAN_BUILD) $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug -DTESSERA_CUDA=OFF \
	  -DTESSERA_SANITIZE=address,undefined -DTESSERA_BUILD_BENCH=OFF -DTESSERA_BUILD_EXAMPLES=OFF
	cmake --build $(SAN_BUILD) -j $(JOBS)
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  ctest --output-on-failure -j $(JOBS) -L cpu --timeout 900

bench-cpu: deps
	bash scripts/bench_cpu.sh
	bash scripts/bench_kmeans_cpu.sh

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
