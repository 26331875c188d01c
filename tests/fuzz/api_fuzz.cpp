// api_fuzz.cpp: libFuzzer target for the control API's decoder and
// dispatcher (core/api_messages.cpp, core/commands.cpp) against a data
// plane that keeps nothing. Each input is one request as it would arrive on
// the socket, after the server's limits (1 MiB, 64 levels of nesting).
// On every input:
//   - no crash, no hang, no exception but ballast::Error (the server turns
//     it into an error reply);
//   - a refused request changes nothing: the desired config, the data
//     plane's writes and the change log are as they were;
//   - an applied one leaves a config that validate_config accepts.
// The state starts from the same three VIPs for every input, so a crash
// reproduces from its input alone.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "change_pipeline.h"
#include "changelog.h"
#include "commands.h"
#include "config.h"
#include "error.h"
#include "fake_neighbors.h"
#include "null_dataplane.h"
#include "skew.h"

namespace {

using namespace ballast;

constexpr const char* kConfig = R"(interface: eth0
encap: {source_prefix_v4: 10.255.0.0/16, source_prefix_v6: "fd00:ff::/96"}
vips:
  - address: 10.0.0.100
    port: 80
    protocol: tcp
    backends:
      - {address: 10.0.0.11, weight: 1}
      - {address: 10.0.0.12, weight: 1}
      - {address: 10.0.0.13, weight: 2}
  - address: 2001:db8::100
    port: 53
    protocol: udp
    mode: gue
    backends:
      - {address: 10.0.0.21}
      - {address: 2001:db8::22}
  - {address: 10.0.0.101, port: 443, protocol: tcp, fragments: true, backends: [{address: 10.0.0.31}]}
)";

// The control plane as ballastd wires it, minus the sockets.
struct World {
  NullDataPlane dp;
  FakeNeighbors neighbors;
  BalancerState state{dp, neighbors, 1};
  ChangeLog log{ChangeLog::kDefaultCapacity, std::chrono::system_clock::now,
                [](const std::string&) {}};
  ChangePipeline pipeline{state, log};
  SkewTracker skew;
  Commands commands{pipeline, dp, log, [] { return api::StatusReply{}; },
                    [](uint32_t) { return std::string(); }, &skew, nullptr, nullptr};
  World() {
    state.set_interface(FakeNeighbors::facts(1));
    pipeline.submit(ConfigRequest{parse_config(kConfig, "fuzz-start.yaml")},
                    ChangeSource{"fuzz", ChangeLog::Origin::automatic, false, false});
  }
};

[[noreturn]] void broken(const std::string& what, const std::string& input) {
  std::fprintf(stderr, "api_fuzz: %s\n--- input ---\n%s\n--- end ---\n", what.c_str(),
               input.c_str());
  std::abort();
}

std::unique_ptr<World> world;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // What the server refuses before any parser runs (daemon/api.cpp).
  if (size > (1u << 20)) return 0;
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  if (deepest > 64) return 0;
  const auto request = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return 0;

  if (!world) world = std::make_unique<World>();
  const Config before = world->state.desired();
  const uint64_t writes = world->dp.writes;
  const uint64_t changes = world->log.recorded();
  bool applied = false;
  try {
    world->commands.handle(request, PeerCred{});
    applied = world->log.recorded() != changes || world->dp.writes != writes;
  } catch (const Error&) {
    if (!(world->state.desired() == before)) broken("a refused request changed the config", text);
    if (world->dp.writes != writes) broken("a refused request wrote to the data plane", text);
    if (world->log.recorded() != changes) broken("a refused request was logged as a change", text);
  } catch (const std::exception& e) {
    broken(std::string("an exception that is not an error reply: ") + e.what(), text);
  }
  if (applied) {
    if (const auto problems = validate_config(world->state.desired()); !problems.empty())
      broken("an applied request left an invalid config: " + problems.front(), text);
    world.reset();  // the next input starts from the same state
  }
  return 0;
}
