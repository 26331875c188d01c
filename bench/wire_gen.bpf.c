// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * wire_gen.bpf.c: the packet generator of bench/wire_bench.py. Run by
 * BPF_PROG_TEST_RUN with BPF_F_TEST_XDP_LIVE_FRAMES (build/bench_wire), it
 * is handed a template IPv4/UDP frame and returns XDP_TX, which makes the
 * kernel send the frame out of the interface named by the test run's
 * ctx ifindex: xdp-trafficgen's method, but with a flow number per packet.
 *
 * Packet n of a CPU belongs to flow (n * @cpu_stride + @cpu_slot[cpu]) mod
 * @flows: with one generating CPU (stride 1) that is n mod @flows; with k
 * of them (stride k, slots 0..k-1) each sends its own 1/k of the flows, as
 * a NIC's RSS gives each queue its own flows. Flow i is sent from
 * source address base_saddr + i / @ports_per_addr and source port
 * base_sport + i % @ports_per_addr, so successive packets cycle through
 * @flows distinct 5-tuples (xdp-trafficgen 1.3.1 varies ports only, which
 * stops at 64k flows). The kernel initialises each page of the test run's
 * page pool from the template once and then recycles it with whatever the
 * last program left in it, so this program writes on every packet every
 * field that it or anything downstream changes: both MACs (the floor swaps
 * them, Ballast rewrites them), the source address and port, and the IPv4
 * checksum. UDP checksum 0 (none): nothing on the path checks it.
 *
 * With l4_proto IPPROTO_TCP (bench/tools/syn_flood: a flood of spoofed
 * SYNs) the template is a TCP segment instead: its source port sits where
 * UDP's does, and its checksum, which the template has right, is kept right
 * by updating it for the new source address and port (RFC 1624) from the
 * ones the recycled page still holds.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
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
/* The template's L4 protocol: IPPROTO_UDP, or IPPROTO_TCP (see above). */
const volatile __u8 l4_proto = IPPROTO_UDP;
/* How many CPUs generate, and each one's place among them (see above). */
const volatile __u32 cpu_stride = 1;
const volatile __u8 cpu_slot[256];

/* Packets generated on each CPU: the next packet's flow is this mod flows. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sent SEC(".maps");

/* One's complement sum of @x's two 16-bit halves, as they lie in memory. */
static __always_inline __u32 csum_words(__u32 x)
{
	return (x & 0xffff) + (x >> 16);
}

/*
 * tcp_set_source - writes @saddr and @sport (network order) into @iph and
 * @tcp, updating the TCP checksum for the change (RFC 1624, eqn. 3:
 * HC' = ~(~HC + ~m + m')); the IPv4 header checksum is the caller's.
 */
static __always_inline void tcp_set_source(struct iphdr *iph, struct tcphdr *tcp, __be32 saddr,
					   __be16 sport)
{
	__u32 sum = (__u16)~tcp->check;

	sum += csum_words(~iph->saddr) + csum_words(saddr);
	sum += (__u16)~tcp->source + sport;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	iph->saddr = saddr;
	tcp->source = sport;
	tcp->check = (__u16)~sum;
}

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

	/* The template is ours: anything else is a bug in bench_wire or syn_flood. */
	if ((void *)(udp + 1) > data_end || iph->ihl != 5 || iph->protocol != l4_proto)
		return XDP_ABORTED;
	if (l4_proto == IPPROTO_TCP && (void *)((struct tcphdr *)udp + 1) > data_end)
		return XDP_ABORTED;
	n = bpf_map_lookup_elem(&sent, &key);
	if (!n)
		return XDP_ABORTED;
	flow = (*n * cpu_stride + cpu_slot[bpf_get_smp_processor_id() & 255]) % flows;
	*n += 1;

	/* Byte by byte: a memcpy would cast away the volatile, and clang
	 * would then copy the zeros the arrays hold at compile time. */
#pragma unroll
	for (i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	if (l4_proto == IPPROTO_TCP) {
		tcp_set_source(iph, (struct tcphdr *)udp, bpf_htonl(base_saddr + flow / ports_per_addr),
			       bpf_htons(base_sport + flow % ports_per_addr));
	} else {
		iph->saddr = bpf_htonl(base_saddr + flow / ports_per_addr);
		udp->source = bpf_htons(base_sport + flow % ports_per_addr);
	}
	iph->check = 0;
	iph->check = ipv4_csum(iph);
	return verdict;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
