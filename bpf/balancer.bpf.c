// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * balancer.bpf.c: the XDP entry point and the packet's path through the
 * balancer: parse, match a VIP, pick a backend, rewrite, send. Every packet
 * leaves through one exit that counts its verdict reason.
 *
 * Forwarding modes, per VIP (ballast_vip_info.flags):
 *   dsr:  L2 direct server return (destination MAC -> the backend's, source
 *         MAC -> ours, XDP_TX). Backends hold the VIP on lo and answer the
 *         client directly.
 *   ipip: IPv4-in-IPv4 to the backend's address (encap.h), XDP_TX; the
 *         backend's decap program (decap.bpf.c) strips it, then as dsr.
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
#include "encap.h"

/* The balancer interface's MAC: the source of every frame we send. Set by
 * ballastd before load (load-time knob, as xdp-bench does). */
const volatile __u8 lb_mac[ETH_ALEN] = {};
/* The balancer interface's IPv4 (network order): the outer source of
 * encapsulated packets. Set by ballastd before load. */
const volatile __be32 lb_ip4 = 0;

struct verdict {
	int action;
	__u32 reason; /* enum ballast_reason */
};

static __always_inline struct verdict verdict(int action, __u32 reason)
{
	struct verdict v = { .action = action, .reason = reason };
	return v;
}

/* L2 DSR: the frame goes to the backend unchanged above Ethernet. */
static __always_inline void dsr_rewrite(struct ethhdr *eth,
					const struct ballast_backend *be)
{
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	eth->h_source[0] = lb_mac[0];
	eth->h_source[1] = lb_mac[1];
	eth->h_source[2] = lb_mac[2];
	eth->h_source[3] = lb_mac[3];
	eth->h_source[4] = lb_mac[4];
	eth->h_source[5] = lb_mac[5];
}

/*
 * lb4_forward - the IPv4 path from the IP header on.
 * Returns: the action and the reason it is counted under.
 */
static __always_inline struct verdict lb4_forward(struct xdp_md *ctx,
						  struct hdr_cursor *cur,
						  void *data_end,
						  struct ethhdr *eth,
						  __u32 pkt_len)
{
	struct ballast_flow_key flow = {};
	struct ballast_vip_key vip_key = {};
	struct ballast_vip_info *vip;
	struct ballast_backend *be;
	struct iphdr *iph;
	void *l3_end;
	__u32 backend_id;
	int is_syn = 0;
	int new_flow = 0;

	if (parse_iphdr(cur, data_end, &iph))
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4);
	/* The transport header must lie inside the IP packet, not in the
	 * Ethernet padding after it (checked below, after each parse). */
	l3_end = (void *)iph + bpf_ntohs(iph->tot_len);
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_TCP_UDP);
	/* Later fragments carry no ports; fragments are handled in a later
	 * version (issue #5). The kernel gets them, counted. */
	if (ipv4_is_fragment(iph))
		return verdict(XDP_PASS, BALLAST_REASON_PASS_IP_FRAGMENT);

	if (iph->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp;

		if (parse_tcphdr(cur, data_end, &tcp) || cur->pos > l3_end)
			return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP);
		flow.sport = tcp->source;
		flow.dport = tcp->dest;
		is_syn = tcp->syn && !tcp->ack;
	} else {
		struct udphdr *udp;

		if (parse_udphdr(cur, data_end, &udp) || cur->pos > l3_end ||
		    (void *)udp + bpf_ntohs(udp->len) > l3_end)
			return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_UDP);
		flow.sport = udp->source;
		flow.dport = udp->dest;
	}

	vip_key.addr.v4 = iph->daddr;
	vip_key.port = flow.dport;
	vip_key.proto = iph->protocol;
	vip_key.family = BALLAST_AF_INET;
	vip = bpf_map_lookup_elem(&vips, &vip_key);
	if (!vip)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_VIP);

	flow.src.v4 = iph->saddr;
	flow.dst.v4 = iph->daddr;
	flow.proto = iph->protocol;
	flow.family = BALLAST_AF_INET;

	be = select_backend(vip->vip_id, &flow, is_syn, &new_flow, &backend_id);
	if (!be)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_NO_BACKEND);

	/* Counted as received (the client's frame), whatever the mode adds. */
	count_traffic(&vip_stats, vip->vip_id, pkt_len, new_flow);
	count_traffic(&backend_stats, backend_id, pkt_len, new_flow);
	if (vip->flags & BALLAST_VIP_F_ENCAP_IPIP) {
		/* Every pointer into the frame is stale after this. */
		if (ipip4_encap(ctx, be, lb_mac, lb_ip4))
			return verdict(XDP_DROP, BALLAST_REASON_DROP_ENCAP_FAILED);
		return verdict(XDP_TX, BALLAST_REASON_TX_ENCAP_IPIP);
	}
	dsr_rewrite(eth, be);
	return verdict(XDP_TX, BALLAST_REASON_TX_FORWARDED);
}

static __always_inline struct verdict process_packet(struct xdp_md *ctx,
						     __u32 pkt_len)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct hdr_cursor cur = { .pos = data };
	struct ethhdr *eth;
	__be16 eth_proto;

	if (parse_ethhdr(&cur, data_end, &eth, &eth_proto))
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_ETH);
	if (eth_proto == bpf_htons(ETH_P_IP))
		return lb4_forward(ctx, &cur, data_end, eth, pkt_len);
	return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_IP);
}

SEC("xdp")
int ballast_xdp(struct xdp_md *ctx)
{
	__u32 pkt_len = ctx->data_end - ctx->data;
	struct verdict v = process_packet(ctx, pkt_len);

	count_reason(v.reason, pkt_len);
	return v.action;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
