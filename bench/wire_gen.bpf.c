// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * wire_gen.bpf.c: the packet generator of bench/wire_bench.py. Run by
 * BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (build/bench_wire), it
 * is handed a template IPv4/UDP frame and returns XDP_TX, which makes the
 * kernel send the frame out of the interface named by the test run's
 * ctx ifindex: xdp-trafficgen's method, but with a flow number per packet.
 *
 * Packet n of a CPU belongs to flow n mod @flows; flow i is sent from
 * source address base_saddr + i / @ports_per_addr and source port
 * base_sport + i % @ports_per_addr, so successive packets cycle through
 * @flows distinct 5-tuples (xdp-trafficgen 1.3.1 varies ports only, which
 * stops at 64k flows). The kernel initialises each page of the test run's
 * page pool from the template once and then recycles it with whatever the
 * last program left in it, so this program writes on every packet every
 * field that it or anything downstream changes: both MACs (the floor swaps
 * them, Ballast rewrites them), the source address and port, and the IPv4
 * checksum. UDP checksum 0 (none): nothing on the path checks it.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ipv4_csum.h"

/* Set by build/bench_wire before load. */
const volatile __u32 flows = 1;
const volatile __u32 ports_per_addr = 16384;
const volatile __u32 base_saddr = 0; /* host order */
const volatile __u16 base_sport = 1024;
const volatile __u8 dst_mac[ETH_ALEN];
const volatile __u8 src_mac[ETH_ALEN];
/* XDP_TX to send; XDP_DROP to measure what generating alone costs. */
const volatile __u32 verdict = XDP_TX;

/* Packets generated on each CPU: the next packet's flow is this mod flows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sent SEC(".maps");

SEC("xdp")
int wire_gen(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *iph = (void *)(eth + 1);
	struct udphdr *udp = (void *)(iph + 1);
	__u32 key = 0, flow;
	__u64 *n;
	int i;

	/* The template is ours: anything else is a bug in bench_wire. */
	if ((void *)(udp + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_UDP)
		return XDP_ABORTED;
	n = bpf_map_lookup_elem(&sent, &key);
	if (!n)
		return XDP_ABORTED;
	flow = *n % flows;
	*n += 1;

	/* Byte by byte: a memcpy would cast away the volatile, and clang
	 * would then copy the zeros the arrays hold at compile time. */
#pragma unroll
	for (i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	iph->saddr = bpf_htonl(base_saddr + flow / ports_per_addr);
	udp->source = bpf_htons(base_sport + flow % ports_per_addr);
	iph->check = 0;
	iph->check = ipv4_csum(iph);
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
