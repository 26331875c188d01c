// bpf_stats_hold: keeps the kernel's BPF run-time statistics on while it runs
// (the compare bench reads run_cnt and run_time_ns with bpftool).
//
// bpf_enable_stats(BPF_STATS_RUN_TIME) returns a descriptor; while any such
// descriptor is open the kernel counts for every program. Unlike writing the
// sysctl kernel.bpf_stats_enabled it is reference-counted: other users of the
// machine who turned the statistics on (or off) are left as they were, and
// they go off by themselves when this process ends, however it ends.
//
// Prints "enabled" once the descriptor is held, then waits for SIGTERM.
#include <bpf/bpf.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

int main() {
  const int fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
  if (fd < 0) {
    std::fprintf(stderr, "bpf_stats_hold: bpf_enable_stats: %s\n", std::strerror(errno));
    return 1;
  }
  std::signal(SIGTERM, [](int) { _exit(0); });
  std::printf("enabled\n");
  std::fflush(stdout);
  for (;;) pause();
}
