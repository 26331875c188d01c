// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_parts.bpf.c: where Ballast's time per packet goes. Each program is
 * the same base (Ballast's own IPv4/TCP parsing and flow key, a MAC swap,
 * XDP_TX) plus one step of Ballast's path, on Ballast's own map
 * definitions (bpf/maps.h); bench/dataplane_bench.cpp measures each one
 * against the base in the same run, so the difference is that step's cost.
 * The step's result is always used (a miss drops the packet) so the
 * compiler cannot remove it, and the bench checks every verdict.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "parsing.h"
#include "maps.h"
#include "counters.h"
#include "select.h"

/* The ids the bench seeds: VIP 1 (its Maglev table) and backend slot 10. */
#define PART_VIP_ID 1
#define PART_BACKEND_ID 10

/* The base: parse Ethernet, IPv4 and TCP into a flow key, as Ballast does. */
static __always_inline int base_parse(struct xdp_md *ctx, struct ballast_flow_key *flow)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct hdr_cursor cur = { .pos = (void *)(long)ctx->data };
	struct ethhdr *eth;
	struct iphdr *iph;
	struct tcphdr *tcp;
	__be16 proto;

	if (parse_ethhdr(&cur, data_end, &eth, &proto) || proto != bpf_htons(ETH_P_IP))
		return -1;
	if (parse_iphdr(&cur, data_end, &iph) || iph->protocol != IPPROTO_TCP)
		return -1;
	if (parse_tcphdr(&cur, data_end, &tcp))
		return -1;
	flow->src.v4 = iph->saddr;
	flow->dst.v4 = iph->daddr;
	flow->sport = tcp->source;
	flow->dport = tcp->dest;
	flow->proto = IPPROTO_TCP;
	flow->family = BALLAST_AF_INET;
	return 0;
}

/* The base's exit: swap the MACs and send the frame back. */
static __always_inline int base_send(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = (void *)(long)ctx->data;
	__u8 tmp[ETH_ALEN];

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	__builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
	return XDP_TX;
}

SEC("xdp")
int part_base(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	return base_send(ctx);
}

/* The VIP match: a hash lookup on (address, port, protocol, family). */
SEC("xdp")
int part_vip_lookup(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};
	struct ballast_vip_key key = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	key.addr = flow.dst;
	key.port = flow.dport;
	key.proto = flow.proto;
	key.family = flow.family;
	if (!bpf_map_lookup_elem(&vips, &key))
		return XDP_DROP;
	return base_send(ctx);
}

/* An established flow's connection-table lookup (conn_table.h: the conn
 * hash, one bucket, its four tags). The bench seeds the flow's way. */
SEC("xdp")
int part_conn_lookup(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};
	struct conn_hit hit;
	struct conn_ref ref;

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	if (!conn_find(&flow, &ref, &hit))
		return XDP_DROP;
	return base_send(ctx);
}

/* The backend slot, its VIP's vip_by_id entry and the egress slot (arrays,
 * inlined by the verifier): what the established path reads besides the
 * connection table. */
SEC("xdp")
int part_backend_egress(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};
	struct ballast_backend *be;
	__u32 id = PART_BACKEND_ID;
	__u32 egress_id;

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	be = bpf_map_lookup_elem(&backends, &id);
	if (!be)
		return XDP_DROP;
	id = be->vip_id;
	if (!bpf_map_lookup_elem(&vip_by_id, &id))
		return XDP_DROP;
	egress_id = be->egress;
	if (!bpf_map_lookup_elem(&egress, &egress_id))
		return XDP_DROP;
	return base_send(ctx);
}

/* The conn hash alone (conn_hash.h: two 64-bit mixes for IPv4). */
SEC("xdp")
int part_conn_hash(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	if (ballast_conn_hash(&flow) == 0)
		return XDP_DROP;
	return base_send(ctx);
}

/* The clock read that keeps established entries' last_seen fresh. */
SEC("xdp")
int part_clock(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	if (bpf_ktime_get_coarse_ns() == 0)
		return XDP_DROP;
	return base_send(ctx);
}

/* The same clock as Ballast reads it: once per tick per CPU (select.h). */
SEC("xdp")
int part_clock_cached(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	if (coarse_now_ns() == 0)
		return XDP_DROP;
	return base_send(ctx);
}

/* The three per-CPU counter updates of a forwarded packet. */
SEC("xdp")
int part_counters(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};
	__u32 len = ctx->data_end - ctx->data;

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	count_traffic(&vip_stats, PART_VIP_ID, len, 0);
	count_traffic(&backend_stats, PART_BACKEND_ID, len, 0);
	count_reason(BALLAST_REASON_TX_FORWARDED, len);
	return base_send(ctx);
}

/* A new flow's hash (select.h: jhash2 over an IPv4 flow's 3 words). */
SEC("xdp")
int part_flow_hash(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	if (flow_hash(&flow) == 0)
		return XDP_DROP;
	return base_send(ctx);
}

/* A new flow's Maglev entry: outer array-of-maps, then the VIP's table. */
SEC("xdp")
int part_maglev(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	if (maglev_pick(PART_VIP_ID, flow.sport) == BALLAST_NO_BACKEND)
		return XDP_DROP;
	return base_send(ctx);
}

/* A new flow's connection-table write (conn_table.h, as a SYN does it:
 * the lookup in both buckets, then the way written; the same key each
 * time, so it rewrites its own way, as a repeated SYN does in Ballast). */
SEC("xdp")
int part_conn_write(struct xdp_md *ctx)
{
	struct ballast_flow_key flow = {};
	struct conn_hit hit;
	struct conn_ref ref;

	if (base_parse(ctx, &flow))
		return XDP_PASS;
	conn_find(&flow, &ref, &hit);
	conn_record(&ref, &hit, PART_BACKEND_ID, coarse_now_ns(), 1);
	if (!ref.a)
		return XDP_DROP;
	return base_send(ctx);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
