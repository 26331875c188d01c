// live_frames.h: the live-frames generator loop shared by build/bench_wire
// and build/tools/syn_flood: BPF_PROG_TEST_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES, which sends every frame the program returns
// XDP_TX for out of the interface the context names (xdp-trafficgen's
// method), run after run until asked to stop.
#pragma once

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <vector>

namespace ballast::bench {

// Pins the calling thread to @cpu. Returns 0, or the error number.
inline int pin_this_thread(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

// Runs @prog_fd over @frame as received on @ifindex (queue 0), @repeat
// frames a run, until @stop. A run cut short by a signal (EINTR) goes on.
// Returns 0 once stopped, or the errno of a failed run.
inline int send_live_frames(int prog_fd, const std::vector<std::uint8_t>& frame, int ifindex,
                            std::uint32_t repeat, const std::atomic<bool>& stop) {
  xdp_md ctx{};
  ctx.data_end = static_cast<std::uint32_t>(frame.size());
  ctx.ingress_ifindex = static_cast<std::uint32_t>(ifindex);
  while (!stop) {
    bpf_test_run_opts opts{};
    opts.sz = sizeof(opts);
    opts.data_in = frame.data();
    opts.data_size_in = static_cast<std::uint32_t>(frame.size());
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof(ctx);
    opts.repeat = repeat;
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    if (bpf_prog_test_run_opts(prog_fd, &opts) < 0 && errno != EINTR) return errno;
  }
  return 0;
}

}  // namespace ballast::bench
