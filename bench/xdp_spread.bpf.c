// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_spread.bpf.c: makes a repeated BPF_PROG_TEST_RUN frame a different
 * flow each time, then tail-calls the program under test (Ballast or the
 * floor), so bench/scaling_bench.cpp can measure how the cost grows with
 * the number of VIPs, backends and flows: a repeated identical frame keeps
 * every map entry it touches in cache and would show no growth at all.
 *
 * Repetition i is flow f = i mod flows: client address client_base +
 * f / 50,000, client port 10,000 + f mod 50,000, destination vip_base +
 * f mod vips (addresses in host order here, written in network order).
 * The bench computes the same mapping to seed the connection table. The
 * IPv4 checksum is computed again (Ballast drops a wrong one); the TCP
 * checksum is left stale: neither program under test reads it. The
 * destination MAC is set back to dst_mac (the balancer's): Ballast
 * forwards only frames addressed to it, and its previous repetition
 * addressed the frame to a backend.
 *
 * xdp.frags, like Ballast's program and the floor: the kernel lets a
 * program tail-call only programs that take multi-buffer frames exactly
 * when it does.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ipv4_csum.h"

#define SPREAD_PORTS_PER_CLIENT 50000
#define SPREAD_FIRST_PORT 10000

struct spread_config {
	__u32 flows;        /* distinct flows to cycle through (>= 1) */
	__u32 vips;         /* distinct destination addresses (>= 1) */
	__u32 vip_base;     /* first VIP address, host order */
	__u32 client_base;  /* first client address, host order */
	__u8 dst_mac[ETH_ALEN];
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct spread_config);
} spread_config SEC(".maps");

/* Repetitions so far on this CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} spread_counter SEC(".maps");

/* Slot 0: the program under test. */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} spread_target SEC(".maps");

SEC("xdp.frags")
int xdp_spread(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = (void *)(long)ctx->data;
	struct spread_config *cfg;
	struct iphdr *iph;
	struct tcphdr *tcp;
	__u32 zero = 0, f;
	__u64 *count;

	iph = (void *)(eth + 1);
	tcp = (void *)(iph + 1);  /* the bench's frames carry no IP options */
	if ((void *)(tcp + 1) > data_end)
		return XDP_ABORTED;
	cfg = bpf_map_lookup_elem(&spread_config, &zero);
	count = bpf_map_lookup_elem(&spread_counter, &zero);
	if (!cfg || !count || !cfg->flows || !cfg->vips)
		return XDP_ABORTED;
	f = (*count)++ % cfg->flows;
	__builtin_memcpy(eth->h_dest, cfg->dst_mac, ETH_ALEN);
	iph->saddr = bpf_htonl(cfg->client_base + f / SPREAD_PORTS_PER_CLIENT);
	tcp->source = bpf_htons(SPREAD_FIRST_PORT + f % SPREAD_PORTS_PER_CLIENT);
	iph->daddr = bpf_htonl(cfg->vip_base + f % cfg->vips);
	iph->check = 0;
	iph->check = ipv4_csum(iph);
	bpf_tail_call(ctx, &spread_target, 0);
	return XDP_ABORTED;  /* no program in slot 0 */
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
