# Ballast: build, test and demo. `make V=1` shows every command.
#
# Chain for BPF (after libbpf-bootstrap's examples/c/Makefile):
#   bpf/x.bpf.c -> build/bpf/x.bpf.o -> build/gen/x.skel.h
# Userspace: userspace/LAYER/*.cpp except the two mains -> build/libballast.a,
# linked into build/ballastd, build/ballast and the test binaries. The layers
# (core, host, dataplane, daemon, cli, tools) are described in
# docs/architecture.md; every layer's folder is on the include path.

# SANITIZE=1: every C++ binary (daemon, CLI, tests, benches) built with
# AddressSanitizer and UndefinedBehaviorSanitizer into build-san/, so that
# `make test SANITIZE=1` runs the whole suite, ballastd under the end-to-end
# tests included, instrumented. Reports go to files under BUILD/sanitizer/;
# tests/run-all.sh fails the run if any exists.
SANITIZE   ?= 0
ifeq ($(SANITIZE),1)
BUILD      ?= build-san
endif
BUILD      ?= build
CLANG      ?= clang-14
BPFTOOL    ?= bpftool
CXX        ?= g++
ARCH_INC   := -I/usr/include/$(shell uname -m)-linux-gnu

BPF_CFLAGS := -O2 -g -Wall -Werror -target bpf $(ARCH_INC) -Ibpf
ifeq ($(SANITIZE),1)
CXXFLAGS   ?= -O0 -g
else
CXXFLAGS   ?= -O2 -g
endif
LAYERS     := core host dataplane daemon cli tools
CXXFLAGS   += -std=c++20 -Wall -Wextra -Werror -Ibpf $(addprefix -Iuserspace/,$(LAYERS)) -I$(BUILD)/gen -MMD -MP
SAN_FLAGS  := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ifeq ($(SANITIZE),1)
CXXFLAGS   += $(SAN_FLAGS)
LDFLAGS    += $(SAN_FLAGS)
endif
# The test binaries (unit_tests, dataplane_tests) are built with both
# sanitizers in every build, over a copy of the library built the same way
# under BUILD/san/, so `make test` runs them instrumented every time. At -O0:
# g++ takes six times as long at -O2 with the sanitizers (35 s against 6 s
# for config_test.cpp), and at -O0 less than the plain -O2 build (4.8 s).
TEST_CXXFLAGS := $(filter-out -O%,$(CXXFLAGS)) -O0 $(SAN_FLAGS)
TEST_LDFLAGS  := $(SAN_FLAGS)
LDLIBS     := -lxdp -lbpf -lelf -lz -lyaml-cpp -lsystemd -lmnl -lpthread
GTEST_LIBS := -lgtest -lgtest_main

ifeq ($(V),1)
Q :=
msg :=
else
Q := @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# bench/ holds the floor program that Ballast's per-packet cost is compared to.
BPF_SRCS   := $(wildcard bpf/*.bpf.c) $(wildcard bench/*.bpf.c)
BPF_OBJS   := $(patsubst %.bpf.c,$(BUILD)/bpf/%.bpf.o,$(notdir $(BPF_SRCS)))
SKELS      := $(patsubst %.bpf.c,$(BUILD)/gen/%.skel.h,$(notdir $(BPF_SRCS)))

MAIN_SRCS  := userspace/daemon/ballastd.cpp userspace/cli/main.cpp
LIB_SRCS   := $(filter-out $(MAIN_SRCS),$(wildcard $(addsuffix /*.cpp,$(addprefix userspace/,$(LAYERS)))))
LIB_OBJS   := $(patsubst userspace/%.cpp,$(BUILD)/obj/%.o,$(LIB_SRCS))
LIB        := $(BUILD)/libballast.a

UNIT_SRCS  := $(wildcard tests/unit/*.cpp)
UNIT_OBJS  := $(patsubst tests/unit/%.cpp,$(BUILD)/san/obj/unit/%.o,$(UNIT_SRCS))
DP_SRCS    := $(wildcard tests/dataplane/*.cpp)
DP_OBJS    := $(patsubst tests/dataplane/%.cpp,$(BUILD)/san/obj/dataplane/%.o,$(DP_SRCS))
# The sanitized library holds what the test binaries link: all of it but
# the CLI's command groups (userspace/cli/*_cmd.cpp), which only the ballast
# binary reaches and the end-to-end suites drive. CLI11 makes each of them a
# 15 s compile; building them a second time cost CI a minute of its build.
SAN_LIB_SRCS := $(filter-out userspace/cli/%_cmd.cpp,$(LIB_SRCS))
SAN_LIB_OBJS := $(patsubst userspace/%.cpp,$(BUILD)/san/obj/%.o,$(SAN_LIB_SRCS))
SAN_LIB    := $(BUILD)/san/libballast.a
# What tests and benches share (packet builder, program fixture, fake data
# planes and host, the state driver): tests/support, one place.
SUPPORT_SRCS := $(wildcard tests/support/*.cpp)
SUPPORT_OBJS := $(patsubst tests/support/%.cpp,$(BUILD)/obj/support/%.o,$(SUPPORT_SRCS))
SAN_SUPPORT_OBJS := $(patsubst tests/support/%.cpp,$(BUILD)/san/obj/support/%.o,$(SUPPORT_SRCS))
BENCH_SRCS := $(wildcard bench/*.cpp)
BENCH_OBJS := $(patsubst bench/%.cpp,$(BUILD)/obj/bench/%.o,$(BENCH_SRCS))
# One binary per bench/*_bench.cpp main (build/bench_NAME); bench/run-all.sh runs them
# and bench/*_bench.py, and bench/report.py writes docs/benchmarks.md from their results.

# Fuzz targets (tests/fuzz/NAME_fuzz.cpp -> build/fuzz/NAME_fuzz): clang-14's
# libFuzzer with AddressSanitizer and UndefinedBehaviorSanitizer, over core/
# (no system calls: all of it links) built the same way.
FUZZ_CXX   ?= clang++-14
FUZZ_SAN   := $(SAN_FLAGS)
FUZZ_FLAGS := -std=c++20 -O1 -g -Wall -Wextra -Werror -Ibpf $(addprefix -Iuserspace/,$(LAYERS)) \
              -Itests/support -I$(BUILD)/gen -MMD -MP $(FUZZ_SAN)
FUZZ_CORE_OBJS := $(patsubst userspace/core/%.cpp,$(BUILD)/fuzz/core/%.o,$(wildcard userspace/core/*.cpp))
# packet_fuzz runs the real program: it links the program fixture and
# packet builder from tests/support (built the same way) and libbpf.
FUZZ_SUPPORT_OBJS := $(BUILD)/fuzz/support/balancer_fixture.o $(BUILD)/fuzz/support/packet_builder.o
FUZZ_SRCS  := $(wildcard tests/fuzz/*_fuzz.cpp)
FUZZ_BINS  := $(patsubst tests/fuzz/%_fuzz.cpp,$(BUILD)/fuzz/%_fuzz,$(FUZZ_SRCS))
# `make test` replays the corpora through the same targets built like the
# unit tests (g++, both sanitizers, the sanitized library) with a main of
# our own that feeds each input once (tests/fuzz/replay_main.cpp): clang and
# libFuzzer are needed to fuzz (`make fuzz`), not to replay, and building
# core/ a third time with them was over two of CI's build minutes.
REPLAY_BINS := $(patsubst tests/fuzz/%_fuzz.cpp,$(BUILD)/fuzz-replay/%_fuzz,$(FUZZ_SRCS))

# Helpers the benches run (bench/tools/NAME.cpp -> build/tools/NAME): they
# read maps and switch kernel statistics through libbpf.
BENCH_TOOLS := $(patsubst bench/tools/%.cpp,$(BUILD)/tools/%,$(wildcard bench/tools/*.cpp))

BINS       := $(BUILD)/ballastd $(BUILD)/ballast
TEST_BINS  := $(BUILD)/unit_tests $(BUILD)/dataplane_tests
BENCH_BINS := $(patsubst bench/%_bench.cpp,$(BUILD)/bench_%,$(BENCH_SRCS))

.PHONY: all deps test demo bench soak fuzz fuzz-build fuzz-replay clean format
.DEFAULT_GOAL := all

all: $(BPF_OBJS) $(BINS) $(TEST_BINS) $(BENCH_BINS) $(BENCH_TOOLS)

deps:
	$(Q)scripts/install-deps.sh

# Keep every built file: the skeletons and bench objects are reached only
# through pattern rules, so make would otherwise delete them as intermediate
# after each build and rebuild them (and all that includes them) next time.
.SECONDARY:

$(BUILD)/bpf/%.bpf.o: bpf/%.bpf.c $(wildcard bpf/*.h) | $(BUILD)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/bpf/%.bpf.o: bench/%.bpf.c $(wildcard bpf/*.h bench/*.h) | $(BUILD)/bpf
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(BUILD)/gen/%.skel.h: $(BUILD)/bpf/%.bpf.o | $(BUILD)/gen
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst -,_,$*) > $@.tmp && mv $@.tmp $@

$(BUILD)/obj/%.o: userspace/%.cpp $(SKELS)
	$(call msg,CXX,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(CXXFLAGS) -c $< -o $@

# The sanitized copies the test binaries are made of (see TEST_CXXFLAGS).
$(BUILD)/san/obj/%.o: userspace/%.cpp $(SKELS)
	$(call msg,CXX-SAN,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(TEST_CXXFLAGS) -c $< -o $@

$(BUILD)/san/obj/unit/%.o: tests/unit/%.cpp $(SKELS)
	$(call msg,CXX-SAN,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(TEST_CXXFLAGS) -Itests/support -c $< -o $@

$(BUILD)/san/obj/dataplane/%.o: tests/dataplane/%.cpp $(SKELS)
	$(call msg,CXX-SAN,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(TEST_CXXFLAGS) -Itests/support -c $< -o $@

$(BUILD)/san/obj/support/%.o: tests/support/%.cpp $(SKELS)
	$(call msg,CXX-SAN,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(TEST_CXXFLAGS) -Itests/support -c $< -o $@

$(BUILD)/obj/support/%.o: tests/support/%.cpp $(SKELS) | $(BUILD)/obj/support
	$(call msg,CXX,$@)
	$(Q)$(CXX) $(CXXFLAGS) -Itests/support -c $< -o $@

$(BUILD)/obj/bench/%.o: bench/%.cpp $(SKELS) | $(BUILD)/obj/bench
	$(call msg,CXX,$@)
	$(Q)$(CXX) $(CXXFLAGS) -Itests/support -c $< -o $@

$(LIB): $(LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/ballastd: $(BUILD)/obj/daemon/ballastd.o $(LIB)
	$(call msg,LINK,$@)
	$(Q)$(CXX) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/ballast: $(BUILD)/obj/cli/main.o $(LIB)
	$(call msg,LINK,$@)
	$(Q)$(CXX) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(SAN_LIB): $(SAN_LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/unit_tests: $(UNIT_OBJS) $(SAN_SUPPORT_OBJS) $(SAN_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CXX) $(TEST_LDFLAGS) $^ -o $@ $(GTEST_LIBS) $(LDLIBS)

$(BUILD)/dataplane_tests: $(DP_OBJS) $(SAN_SUPPORT_OBJS) $(SAN_LIB)
	$(call msg,LINK,$@)
	$(Q)$(CXX) $(TEST_LDFLAGS) $^ -o $@ $(GTEST_LIBS) $(LDLIBS)

# Every bench binary links tests/support too.
$(BUILD)/bench_%: $(BUILD)/obj/bench/%_bench.o $(SUPPORT_OBJS) $(LIB)
	$(call msg,LINK,$@)
	$(Q)$(CXX) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tools/%: bench/tools/%.cpp $(wildcard bench/*.h)
	$(call msg,TOOL,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(CXXFLAGS) $(LDFLAGS) $< -o $@ -lbpf -lelf -lz

$(BUILD)/fuzz/core/%.o: userspace/core/%.cpp
	$(call msg,FUZZ-CXX,$@)
	$(Q)mkdir -p $(@D) && $(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/support/%.o: tests/support/%.cpp $(SKELS)
	$(call msg,FUZZ-CXX,$@)
	$(Q)mkdir -p $(@D) && $(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/%_fuzz: tests/fuzz/%_fuzz.cpp $(FUZZ_CORE_OBJS) $(FUZZ_SUPPORT_OBJS) $(SKELS)
	$(call msg,FUZZ,$@)
	$(Q)$(FUZZ_CXX) $(FUZZ_FLAGS) -fsanitize=fuzzer $< $(FUZZ_CORE_OBJS) $(FUZZ_SUPPORT_OBJS) \
		-o $@ -lyaml-cpp -lbpf -lelf -lz

# Writes packet_fuzz's seed frames (tests/fuzz/corpus/packet/seed-*).
$(BUILD)/fuzz/packet_seeds: tests/fuzz/packet_seeds.cpp $(FUZZ_SUPPORT_OBJS)
	$(call msg,FUZZ,$@)
	$(Q)$(FUZZ_CXX) $(FUZZ_FLAGS) $< $(BUILD)/fuzz/support/packet_builder.o -o $@

fuzz-build: $(FUZZ_BINS) $(BUILD)/fuzz/packet_seeds

$(BUILD)/san/obj/fuzz/%.o: tests/fuzz/%.cpp $(SKELS)
	$(call msg,CXX-SAN,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(TEST_CXXFLAGS) -Itests/support -c $< -o $@

$(BUILD)/fuzz-replay/%_fuzz: $(BUILD)/san/obj/fuzz/%_fuzz.o $(BUILD)/san/obj/fuzz/replay_main.o \
		$(SAN_SUPPORT_OBJS) $(SAN_LIB)
	$(call msg,LINK,$@)
	$(Q)mkdir -p $(@D) && $(CXX) $(TEST_LDFLAGS) $^ -o $@ $(LDLIBS)

fuzz-replay: $(REPLAY_BINS)

$(BUILD)/bpf $(BUILD)/gen $(BUILD)/obj $(BUILD)/obj/support $(BUILD)/obj/bench:
	$(Q)mkdir -p $@

# The README's commands (test, demo, bench, soak, fuzz) build on every core:
# CI and the README run a bare `make test`, which built one file at a time
# (12 of CI's 20 minutes on 2 cores). A -j given to make itself wins
# (MAKEFLAGS holds it only when a recipe runs: expanded there).
JOBS = $(if $(findstring -j,$(MAKEFLAGS)),,-j$(shell nproc))

# The README's two commands: each installs what is missing first.
# The sanitizers' reports (every instrumented process: the test binaries
# always, ballastd and the CLI too under SANITIZE=1) go to files here, and
# tests/run-all.sh fails the run when it finds any: a report from a process
# whose test passed anyway (a leak at exit, a daemon's) is not lost. ASan's
# quarantine is cut from 256 MB to 1: it keeps freed memory resident, which
# the tests that hold ballastd's RSS flat would read as growth.
SAN_LOG_DIR := $(abspath $(BUILD))/sanitizer
test: deps
	$(Q)$(MAKE) $(JOBS) --no-print-directory all fuzz-replay
	$(Q)BALLAST_SANITIZER_LOGS=$(SAN_LOG_DIR) \
		ASAN_OPTIONS=log_path=$(SAN_LOG_DIR)/asan:quarantine_size_mb=1 \
		UBSAN_OPTIONS=log_path=$(SAN_LOG_DIR)/ubsan:print_stacktrace=1 \
		tests/run-all.sh $(BUILD)

demo: deps
	$(Q)$(MAKE) $(JOBS) --no-print-directory all
	$(Q)/usr/bin/python3 scripts/demo.py --build-dir $(BUILD)

# Measurements, not tests: prints the tables and rewrites docs/benchmarks.md.
bench: deps
	$(Q)$(MAKE) $(JOBS) --no-print-directory all
	$(Q)bench/run-all.sh $(BUILD)

# SOAK_MINUTES (default 30) of traffic, whole-config applies every 5 s,
# health flaps and CLI reads against one ballastd, sampled every 10 s:
# prints whether its memory, descriptors, flows and change log stay flat and
# plots docs/bench/soak.png (bench/soak.py). A measurement, not a test.
SOAK_MINUTES ?= 30
soak: deps
	$(Q)$(MAKE) $(JOBS) --no-print-directory all
	$(Q)/usr/bin/python3 bench/soak.py --build-dir $(BUILD) --minutes $(SOAK_MINUTES)

# Runs every fuzz target for FUZZ_SECONDS (default 60) each from its corpus
# (tests/fuzz/corpus/NAME, new inputs kept under build/fuzz/); prints what
# each ran. A crash stops it with the input saved (tests/fuzz/run.sh).
fuzz: deps
	$(Q)$(MAKE) $(JOBS) --no-print-directory fuzz-build
	$(Q)tests/fuzz/run.sh $(BUILD)

clean:
	$(Q)rm -rf $(BUILD)

format:
	$(Q)clang-format -i userspace/*/*.cpp userspace/*/*.h tests/unit/*.cpp tests/dataplane/*.cpp tests/support/*.cpp tests/support/*.h

-include $(wildcard $(BUILD)/obj/*/*.d $(BUILD)/san/obj/*/*.d $(BUILD)/tools/*.d)
-include $(wildcard $(BUILD)/fuzz/*.d $(BUILD)/fuzz/core/*.d $(BUILD)/fuzz/support/*.d)
