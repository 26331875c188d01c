#!/usr/bin/env python3
"""Keeps the kernel's BPF run-time statistics on while it runs.

BPF_ENABLE_STATS(BPF_STATS_RUN_TIME) returns a file descriptor; while any
such descriptor is open the kernel counts run_cnt and run_time_ns for every
BPF program (what `bpftool prog show` prints). Unlike writing the sysctl
kernel.bpf_stats_enabled, this is reference-counted: other users of the
machine who turned the statistics on (or off) are left as they were, and the
statistics go off by themselves when this process ends, however it ends.

Prints "enabled" once the descriptor is held, then waits for SIGTERM.
"""
import ctypes
import os
import signal
import sys

SYS_BPF = 321  # x86_64
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    # union bpf_attr's enable_stats: { __u32 type; }
    attr = ctypes.c_uint32(BPF_STATS_RUN_TIME)
    fd = libc.syscall(SYS_BPF, BPF_ENABLE_STATS, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        sys.exit(f"bpf(BPF_ENABLE_STATS): {os.strerror(err)}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("enabled", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
