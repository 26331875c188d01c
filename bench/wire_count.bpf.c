// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * wire_count.bpf.c: the two fixed ends of bench/wire_bench.py.
 *
 * wire_count: the receiver, on the generator's side of the veth pair, where
 * the balancer's XDP_TX lands (veth delivers XDP_TX only to a peer that runs
 * XDP, and this is that program). It counts every frame by the last byte of
 * its destination MAC and drops it, so that build/bench_wire can tell frames
 * sent to a backend's MAC (Ballast forwarded them) from frames sent back to
 * the generator's own MAC (the floor program swapped the MACs).
 *
 * wire_drop: the ceiling, on the balancer's interface: XDP_DROP and nothing
 * else. What it dropped is read from veth's own counters (ethtool), so that
 * it does no more work than its name says.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

/* Frames received, by the last byte of the destination MAC; index 256:
 * frames too short to hold an Ethernet header. */
#define WIRE_COUNT_SLOTS 257

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, WIRE_COUNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} received SEC(".maps");

SEC("xdp")
int wire_count(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	__u32 slot = WIRE_COUNT_SLOTS - 1;
	__u64 *n;

	if ((void *)(eth + 1) <= data_end)
		slot = eth->h_dest[ETH_ALEN - 1];
	n = bpf_map_lookup_elem(&received, &slot);
	if (n)
		*n += 1;
	return XDP_DROP;
}

SEC("xdp")
int wire_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
