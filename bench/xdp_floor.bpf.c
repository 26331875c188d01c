// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_floor.bpf.c: the least an XDP forwarder can do per packet, as the
 * floor Ballast's cost is measured against (bench/dataplane_bench.cpp).
 * It reads the same headers Ballast reads, with the same kind of bounds
 * checks, and sends the frame back out with its MACs swapped; no map is
 * touched. Non-IPv4 frames and other protocols pass to the kernel.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

static __always_inline void swap_macs(struct ethhdr *eth)
{
	__u8 tmp[ETH_ALEN];

	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

SEC("xdp.frags")
int xdp_floor(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	struct iphdr *iph;
	void *l4;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;

	iph = (void *)(eth + 1);
	if ((void *)(iph + 1) > data_end)
		return XDP_DROP;
	if (iph->ihl < 5 || (void *)iph + iph->ihl * 4 > data_end)
		return XDP_DROP;
	l4 = (void *)iph + iph->ihl * 4;

	if (iph->protocol == IPPROTO_TCP) {
		if (l4 + sizeof(struct tcphdr) > data_end)
			return XDP_DROP;
	} else if (iph->protocol == IPPROTO_UDP) {
		if (l4 + sizeof(struct udphdr) > data_end)
			return XDP_DROP;
	} else {
		return XDP_PASS;
	}

	swap_macs(eth);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
