// maglev_probe: the live Maglev tables ballastd pinned, read through libbpf,
// for bench/control_ctl.py (the control bench). One process per question, so
// the Python side hand-packs no bpf(2) calls; `watch` polls in-process, so a
// table swap is timed to half a millisecond without a process per poll.
//
//   maglev_probe inner OUTER VIP_ID
//       the id of the VIP's live table (its inner map in OUTER, the pinned
//       maglev_tables), 0 when it has none
//   maglev_probe watch OUTER VIP_ID BEFORE LIMIT_S
//       prints "ready", then polls every 0.5 ms until the VIP's table id is
//       not BEFORE and prints {"inner": ID, "monotonic_s": T} (T on
//       CLOCK_MONOTONIC, Python's time.monotonic()); "timeout" and exit 1
//       after LIMIT_S seconds, or at SIGTERM
//   maglev_probe table OUTER VIP_ID
//       the VIP's live table as a JSON array of backend ids, one per slot
//   maglev_probe inners OUTER
//       every VIP id that has a table, with its table's id: {"VIP_ID": ID, ...}
#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "ballast_abi.h"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "maglev_probe: %s\n", what.c_str());
  std::exit(1);
}

int open_outer(const char* path) {
  const int fd = bpf_obj_get(path);
  if (fd < 0) die(std::string("opening ") + path + ": " + std::strerror(errno));
  return fd;
}

uint32_t inner_id(int outer, uint32_t vip_id) {
  uint32_t id = 0;
  if (bpf_map_lookup_elem(outer, &vip_id, &id) != 0) return 0;
  return id;
}

double monotonic_s() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

volatile std::sig_atomic_t stopped = 0;

int watch(int outer, uint32_t vip_id, uint32_t before, double limit_s) {
  std::signal(SIGTERM, [](int) { stopped = 1; });
  std::printf("ready\n");
  std::fflush(stdout);
  const double deadline = monotonic_s() + limit_s;
  while (!stopped && monotonic_s() < deadline) {
    const uint32_t now = inner_id(outer, vip_id);
    if (now != before) {
      std::printf("{\"inner\": %u, \"monotonic_s\": %.6f}\n", now, monotonic_s());
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  std::printf("timeout\n");
  return 1;
}

int table(int outer, uint32_t vip_id) {
  const uint32_t id = inner_id(outer, vip_id);
  if (!id) die("VIP id " + std::to_string(vip_id) + " has no table");
  const int fd = bpf_map_get_fd_by_id(id);
  if (fd < 0) die("opening map id " + std::to_string(id) + ": " + std::strerror(errno));
  std::string out = "[";
  for (uint32_t slot = 0; slot < BALLAST_MAGLEV_SIZE; ++slot) {
    uint32_t backend = 0;
    if (bpf_map_lookup_elem(fd, &slot, &backend) != 0)
      die("reading slot " + std::to_string(slot) + " of map " + std::to_string(id) + ": " +
          std::strerror(errno));
    if (slot) out += ',';
    out += std::to_string(backend);
  }
  close(fd);
  std::printf("%s]\n", out.c_str());
  return 0;
}

int inners(int outer) {
  std::string out = "{";
  for (uint32_t vip_id = 0; vip_id < BALLAST_MAX_VIPS; ++vip_id) {
    const uint32_t id = inner_id(outer, vip_id);
    if (!id) continue;
    if (out.size() > 1) out += ", ";
    out += "\"" + std::to_string(vip_id) + "\": " + std::to_string(id);
  }
  std::printf("%s}\n", out.c_str());
  return 0;
}

uint32_t number(const char* text) { return static_cast<uint32_t>(std::strtoul(text, nullptr, 10)); }

}  // namespace

int main(int argc, char** argv) {
  const std::string cmd = argc > 1 ? argv[1] : "";
  if (cmd == "inner" && argc == 4) {
    std::printf("%u\n", inner_id(open_outer(argv[2]), number(argv[3])));
    return 0;
  }
  if (cmd == "watch" && argc == 6)
    return watch(open_outer(argv[2]), number(argv[3]), number(argv[4]), std::atof(argv[5]));
  if (cmd == "table" && argc == 4) return table(open_outer(argv[2]), number(argv[3]));
  if (cmd == "inners" && argc == 3) return inners(open_outer(argv[2]));
  std::fprintf(stderr,
               "usage: maglev_probe inner OUTER VIP_ID | watch OUTER VIP_ID BEFORE LIMIT_S | "
               "table OUTER VIP_ID | inners OUTER\n");
  return 2;
}
