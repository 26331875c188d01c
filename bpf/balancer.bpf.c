// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * balancer.bpf.c: the XDP entry point and the packet's path through the
 * balancer: parse (IPv4 or IPv6), match a VIP, pick a backend, rewrite or
 * encapsulate, send. Every packet leaves through one exit that counts its
 * verdict reason. docs/dataplane.md describes every path and reason.
 *
 * Forwarding modes, per VIP (ballast_vip_info.flags):
 *   dsr:  L2 direct server return (destination MAC -> the backend's, source
 *         MAC -> ours). Backends hold the VIP on lo and answer the client
 *         directly.
 *   ipip: IP-in-IP to the backend's address (encap.h); the backend's decap
 *         program (decap.bpf.c) strips it, then as dsr.
 *   gue:  UDP encapsulation to the VIP's gue_port (encap.h), likewise.
 * Frames leave with XDP_TX (egress 0, our interface) or XDP_REDIRECT to the
 * backend's egress interface.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "parsing.h"
#include "vlan.h"
#include "maps.h"
#include "counters.h"
#include "select.h"
#include "vip_filter.h"
#include "encap.h"
#include "icmp.h"

/* A parse step's outcome: go on (CONTINUE), or a final action and reason. */
#define CONTINUE (-1)

struct verdict {
	int action;   /* XDP_*, or CONTINUE */
	__u32 reason; /* enum ballast_reason */
};

static __always_inline struct verdict verdict(int action, __u32 reason)
{
	struct verdict v = { .action = action, .reason = reason };
	return v;
}

static __always_inline struct verdict go_on(void)
{
	return verdict(CONTINUE, 0);
}

enum packet_kind {
	PKT_FLOW,        /* a TCP or UDP packet of a flow */
	PKT_ICMP_ERROR,  /* an ICMP error about a flow (flow: the client's) */
	PKT_FRAGMENT,    /* an IP fragment (flow: addresses, protocol only) */
};

/* What parsing learned about a packet. */
struct packet {
	struct ballast_flow_key flow;  /* as the client sends it */
	struct inner_info inner;       /* the IP packet, for encapsulation */
	__u8 kind;                     /* enum packet_kind */
	__u8 is_syn;                   /* TCP SYN without ACK */
};

/* The offset of @l3 + @l3_len from @ctx's frame start. */
static __always_inline __u32 frame_offset(struct xdp_md *ctx, void *l3, __u32 l3_len)
{
	return (__u32)(l3 - (void *)(long)ctx->data) + l3_len;
}

/* TCP or UDP header at @cur: the ports, and whether it is a SYN. The header
 * must lie inside the IP packet (@l3_end), not in the Ethernet padding. */
static __always_inline struct verdict parse_l4(struct hdr_cursor *cur, void *data_end,
					       void *l3_end, struct packet *pkt)
{
	if (pkt->flow.proto == IPPROTO_TCP) {
		struct tcphdr *tcp;

		if (parse_tcphdr(cur, data_end, &tcp) || cur->pos > l3_end)
			return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_TCP);
		pkt->flow.sport = tcp->source;
		pkt->flow.dport = tcp->dest;
		pkt->is_syn = tcp->syn && !tcp->ack;
	} else {
		struct udphdr *udp;

		if (parse_udphdr(cur, data_end, &udp) || cur->pos > l3_end ||
		    (void *)udp + bpf_ntohs(udp->len) > l3_end)
			return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_UDP);
		pkt->flow.sport = udp->source;
		pkt->flow.dport = udp->dest;
	}
	return go_on();
}

/* parse4 - the IPv4 packet at @cur into @pkt. */
static __always_inline struct verdict parse4(struct xdp_md *ctx, __u32 frame_len,
					     struct hdr_cursor *cur, void *data_end,
					     struct packet *pkt)
{
	struct iphdr *iph;
	void *l3_end;
	int parsed = parse_iphdr(cur, data_end, &iph);

	if (parsed < 0 || !ipv4_checksum_ok(iph, data_end))
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4);
	if (parsed == PARSE_PAST_FIRST_BUFFER &&
	    frame_offset(ctx, iph, bpf_ntohs(iph->tot_len)) > frame_len)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV4);
	l3_end = (void *)iph + bpf_ntohs(iph->tot_len);
	pkt->inner.len = bpf_ntohs(iph->tot_len);
	pkt->inner.family = BALLAST_AF_INET;
	pkt->inner.tos = iph->tos;
	pkt->inner.df = (iph->frag_off & bpf_htons(IP_DF)) != 0;

	if (iph->protocol == IPPROTO_ICMP) {
		__u32 reason = parse_icmp4_error(cur, data_end, l3_end, iph, &pkt->flow);

		if (reason)
			return verdict(XDP_PASS, reason);
		pkt->kind = PKT_ICMP_ERROR;
		return go_on();
	}
	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_TCP_UDP);
	pkt->flow.src.v4 = iph->saddr;
	pkt->flow.dst.v4 = iph->daddr;
	pkt->flow.proto = iph->protocol;
	pkt->flow.family = BALLAST_AF_INET;
	/* Later fragments carry no ports: the fragment rule places them. */
	if (ipv4_is_fragment(iph)) {
		pkt->kind = PKT_FRAGMENT;
		return go_on();
	}
	return parse_l4(cur, data_end, l3_end, pkt);
}

/* parse6 - the IPv6 packet at @cur (extension headers walked) into @pkt. */
static __always_inline struct verdict parse6(struct xdp_md *ctx, __u32 frame_len,
					     struct hdr_cursor *cur, void *data_end,
					     struct packet *pkt)
{
	struct ipv6hdr *ip6;
	void *l3_end;
	int fragment = 0, ext;
	__u8 nexthdr;
	int parsed = parse_ipv6hdr(cur, data_end, &ip6);

	if (parsed < 0)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6);
	if (parsed == PARSE_PAST_FIRST_BUFFER &&
	    frame_offset(ctx, ip6, sizeof(*ip6) + bpf_ntohs(ip6->payload_len)) > frame_len)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6);
	l3_end = (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len);
	pkt->inner.len = sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	pkt->inner.family = BALLAST_AF_INET6;
	pkt->inner.tos = (ip6->priority << 4) | (ip6->flow_lbl[0] >> 4);
	pkt->inner.df = 1;

	nexthdr = ip6->nexthdr;
	ext = parse_ipv6_ext(cur, data_end, l3_end, &nexthdr, &fragment);
	if (ext == IPV6_EXT_MALFORMED)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_IPV6_EXT);
	if (ext == IPV6_EXT_LIMIT)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_IPV6_EXT_LIMIT);

	if (nexthdr == IPPROTO_ICMPV6) {
		__u32 reason = BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;

		if (!fragment)
			reason = parse_icmp6_error(cur, data_end, l3_end, ip6, &pkt->flow);
		if (reason)
			return verdict(XDP_PASS, reason);
		pkt->kind = PKT_ICMP_ERROR;
		return go_on();
	}
	if (nexthdr != IPPROTO_TCP && nexthdr != IPPROTO_UDP)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_TCP_UDP);
	__builtin_memcpy(pkt->flow.src.v6, &ip6->saddr, 16);
	__builtin_memcpy(pkt->flow.dst.v6, &ip6->daddr, 16);
	pkt->flow.proto = nexthdr;
	pkt->flow.family = BALLAST_AF_INET6;
	if (fragment) {
		pkt->kind = PKT_FRAGMENT;
		return go_on();
	}
	return parse_l4(cur, data_end, l3_end, pkt);
}

/* Answer "too big" for a packet whose encapsulation would not fit @eg. */
static __always_inline struct verdict too_big(struct xdp_md *ctx, const struct packet *pkt,
					      const struct ballast_egress *eg, __u32 overhead)
{
	int err;

	/* An ICMP error is not answered with another (RFC 1122 3.2.2). */
	if (pkt->kind == PKT_ICMP_ERROR || eg->mtu <= overhead)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MTU_EXCEEDED);
	if (pkt->inner.family == BALLAST_AF_INET)
		err = icmp4_too_big(ctx, eg->mtu - overhead);
	else
		err = icmp6_too_big(ctx, eg->mtu - overhead);
	if (err)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MTU_EXCEEDED);
	return verdict(XDP_TX, BALLAST_REASON_TX_ICMP_TOO_BIG);
}

/* The reason a forwarded packet is counted under. */
static __always_inline __u32 sent_reason(const struct packet *pkt, __u32 mode_reason)
{
	if (pkt->kind == PKT_ICMP_ERROR)
		return BALLAST_REASON_TX_ICMP_ERROR;
	if (pkt->kind == PKT_FRAGMENT)
		return BALLAST_REASON_TX_FRAGMENT;
	return mode_reason;
}

/* A packet for no VIP: the kernel's. */
static __always_inline struct verdict not_for_a_vip(const struct packet *pkt)
{
	if (pkt->kind == PKT_FRAGMENT)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_IP_FRAGMENT);
	if (pkt->kind == PKT_ICMP_ERROR)
		return verdict(XDP_PASS, BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW);
	return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_VIP);
}

/*
 * lb_forward - from a parsed packet to its backend, for both families.
 * Returns: the action and the reason it is counted under.
 */
static __always_inline struct verdict lb_forward(struct xdp_md *ctx, struct packet *pkt,
						 __u32 pkt_len)
{
	struct ballast_vip_key vip_key = {};
	struct ballast_vip_info *vip;
	struct ballast_egress *eg;
	struct selection sel = {};
	__u32 egress_id, mode_reason;
	int how, no_usable_entry = 0, pickup;
	/* A flow's packet after its first: its connection-table entry leads
	 * to its VIP and backend without the vips lookup (select.h). A SYN
	 * always takes the Maglev table, so it skips this. */
	int established = pkt->kind == PKT_FLOW && !pkt->is_syn;

	/* Before any lookup, which traffic for the host itself would miss. */
	if (!vip_filter_may_match(&pkt->flow.dst))
		return not_for_a_vip(pkt);
	if (established) {
		vip = established_in_table(&pkt->flow, coarse_now_ns(), &sel, &no_usable_entry);
		if (vip)
			goto selected;
	}

	vip_key.addr = pkt->flow.dst;
	vip_key.port = pkt->kind == PKT_FRAGMENT ? 0 : pkt->flow.dport;
	vip_key.proto = pkt->flow.proto;
	vip_key.family = pkt->flow.family;
	vip = bpf_map_lookup_elem(&vips, &vip_key);
	if (!vip)
		return not_for_a_vip(pkt);
	if (pkt->kind == PKT_FRAGMENT && !(vip->flags & BALLAST_VIP_F_FRAGMENTS))
		return verdict(XDP_PASS, BALLAST_REASON_PASS_IP_FRAGMENT);

	if ((vip->flags & BALLAST_VIP_F_NO_SRC_PORT) && pkt->kind != PKT_FRAGMENT) {
		pkt->flow.sport = 0;
		no_usable_entry = 0;  /* a different key: not looked up yet */
	}
	if (pkt->kind == PKT_FRAGMENT)
		how = SELECT_NONE;
	else if (pkt->kind == PKT_ICMP_ERROR)
		how = SELECT_LOOKUP;
	else if (pkt->is_syn || no_usable_entry)
		/* established_in_table found no entry, or one whose backend left:
		 * the same lookup again would find the same. */
		how = SELECT_FRESH;
	else
		how = SELECT_TRACK;
	/* Not a SYN (established), no entry, TCP: a flow this balancer never
	 * saw start (moved here by ECMP, or its entry lost). UDP has no first
	 * packet to tell. */
	pickup = established && no_usable_entry == CONN_NONE && pkt->flow.proto == IPPROTO_TCP;
	/* Second chance: such a pick-up is placed without being recorded
	 * until the previous table is known to agree. */
	if (pickup && how == SELECT_FRESH && (vip->flags & BALLAST_VIP_F_SECOND_CHANCE))
		how = SELECT_PEEK;
	sel = select_backend(vip->vip_id, &pkt->flow, how, pkt->is_syn);
	sel.pickup = pickup && sel.new_flow;
	if (how == SELECT_PEEK && sel.be) {
		/* Where the previous table put it, the flow may have begun: it
		 * goes there if the new backend has no socket for it, and with
		 * no entry here every packet of it asks again (docs/fleet.md). */
		sel.prev = previous_backend(vip->vip_id, &sel);
		if (!sel.prev)
			record_choice(&pkt->flow, &sel, 0);
		/* A packet of a flow that began elsewhere: no new flow (skew
		 * counts connection attempts) and no pick-up (nothing is
		 * recorded), but a second-chance packet. */
		else
			sel.new_flow = sel.pickup = 0;
	}
selected:
	if (!sel.be)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_NO_BACKEND);
	egress_id = sel.be->egress;
	eg = bpf_map_lookup_elem(&egress, &egress_id);
	if (!eg || !eg->ifindex)
		return verdict(XDP_DROP, BALLAST_REASON_DROP_NO_EGRESS);

	if (vip->flags & BALLAST_VIP_F_ENCAP) {
		int gue = (vip->flags & BALLAST_VIP_F_ENCAP_GUE) != 0;
		__u32 overhead = encap_overhead(sel.be->family, gue) + gue_header_len(sel.prev);
		__u32 hash = selection_hash(&sel, &pkt->flow);
		int err;

		if (pkt->inner.len + overhead > eg->mtu)
			return too_big(ctx, pkt, eg, overhead);
		/* Counted as received (the client's frame), whatever we add. */
		count_traffic(&vip_stats, vip->vip_id, pkt_len, sel.new_flow);
		count_traffic(&backend_stats, sel.backend_id, pkt_len, sel.new_flow);
		if (sel.pickup || sel.prev)
			count_fleet(vip->vip_id, sel.pickup, sel.prev != NULL);
		/* Every pointer into the frame is stale after this. */
		if (sel.be->family == BALLAST_AF_INET)
			err = encap4(ctx, sel.be, eg, &pkt->inner, hash, gue, vip->gue_port,
				     gue ? sel.prev : NULL);
		else
			err = encap6(ctx, sel.be, eg, &pkt->inner, hash, gue, vip->gue_port,
				     gue ? sel.prev : NULL);
		if (err)
			return verdict(XDP_DROP, BALLAST_REASON_DROP_ENCAP_FAILED);
		mode_reason = gue ? BALLAST_REASON_TX_ENCAP_GUE : BALLAST_REASON_TX_ENCAP_IPIP;
	} else {
		void *data = (void *)(long)ctx->data;
		void *data_end = (void *)(long)ctx->data_end;
		struct ethhdr *eth = data;

		if ((void *)(eth + 1) > data_end)
			return verdict(XDP_DROP, BALLAST_REASON_DROP_INTERNAL);
		count_traffic(&vip_stats, vip->vip_id, pkt_len, sel.new_flow);
		count_traffic(&backend_stats, sel.backend_id, pkt_len, sel.new_flow);
		if (sel.pickup)
			count_fleet(vip->vip_id, 1, 0);
		/* dsr: the frame goes to the backend unchanged above Ethernet. */
		__builtin_memcpy(eth->h_dest, sel.be->mac, ETH_ALEN);
		__builtin_memcpy(eth->h_source, eg->mac, ETH_ALEN);
		mode_reason = BALLAST_REASON_TX_FORWARDED;
	}
	if (egress_id == 0)
		return verdict(XDP_TX, sent_reason(pkt, mode_reason));
	return verdict(bpf_redirect_map(&tx_ports, egress_id, XDP_DROP),
		       sent_reason(pkt, mode_reason));
}

/*
 * addressed_to_us - whether the frame's destination is our interface's MAC
 * (egress 0), the only frames we may forward. Another host's frame reaches
 * us when a switch floods it (its destination unknown, as after a
 * balancer of the fleet died) or in promiscuous mode: forwarding it would
 * deliver a second copy. Broadcast and multicast frames are never a VIP's
 * flow either. Before egress 0 is set, every frame is ours.
 */
static __always_inline int addressed_to_us(const struct ethhdr *eth)
{
	__u32 zero = 0;
	struct ballast_egress *self = bpf_map_lookup_elem(&egress, &zero);
	const __u16 *want, *got = (const __u16 *)eth->h_dest;

	if (!self || !self->ifindex)
		return 1;
	want = (const __u16 *)self->mac;
	return got[0] == want[0] && got[1] == want[1] && got[2] == want[2];
}

/* process_packet - @ctx's frame, @pkt_len bytes long (a multi-buffer
 * frame's fragments included): its verdict. */
static __always_inline struct verdict process_packet(struct xdp_md *ctx, __u32 pkt_len,
						     int read_vlan_metadata)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct hdr_cursor cur = { .pos = data };
	struct packet pkt = {};
	struct verdict v;
	struct ethhdr *eth;
	__be16 eth_proto;

	if (parse_ethhdr(&cur, data_end, &eth, &eth_proto))
		return verdict(XDP_DROP, BALLAST_REASON_DROP_MALFORMED_ETH);
	if (!addressed_to_us(eth))
		return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_OUR_MAC);
	/* A tag the device stripped: the frame belongs to a VLAN we are not
	 * on, and forwarding it would drop the tag (vlan.h). */
	if (read_vlan_metadata &&
	    (eth_proto == bpf_htons(ETH_P_IP) || eth_proto == bpf_htons(ETH_P_IPV6)) &&
	    vlan_tag_stripped(ctx))
		return verdict(XDP_PASS, BALLAST_REASON_PASS_VLAN);
	if (eth_proto == bpf_htons(ETH_P_IP))
		v = parse4(ctx, pkt_len, &cur, data_end, &pkt);
	else if (eth_proto == bpf_htons(ETH_P_IPV6))
		v = parse6(ctx, pkt_len, &cur, data_end, &pkt);
	else if (eth_type_is_vlan(eth_proto))
		return verdict(XDP_PASS, BALLAST_REASON_PASS_VLAN);
	else
		return verdict(XDP_PASS, BALLAST_REASON_PASS_NOT_IP);
	if (v.action != CONTINUE)
		return v;
	return lb_forward(ctx, &pkt, pkt_len);
}

static __always_inline int run_balancer(struct xdp_md *ctx, int read_vlan_metadata)
{
	/* The whole frame's length, fragments included: what the counters
	 * count, and what an IP length past the first buffer must fit in
	 * (parsing.h). Asked for here, where nothing else is live yet: the
	 * same call inside the parsers made every packet's code spill more
	 * (9,179 instructions and 1,515 stack accesses against 8,932 and
	 * 1,336 without; 9,022 and 1,400 this way). */
	__u32 pkt_len = whole_frame_len(ctx);
	struct verdict v = process_packet(ctx, pkt_len, read_vlan_metadata);

	count_reason(v.reason, pkt_len);
	return v.action;
}

/*
 * Two entry points, one balancer. ballastd loads exactly one of them.
 *
 * ballast_xdp: native mode. Bound to its interface's device at load, so it
 * reads the VLAN tag the device stripped (vlan.h).
 *
 * ballast_xdp_any: the same balancer for any device, without that read:
 * generic (skb) mode, which refuses device-bound programs, and
 * BPF_PROG_TEST_RUN, which refuses them too (so it is what the packet
 * tests, the fuzzer and the benches run; they differ from ballast_xdp in
 * that one read, which the end-to-end tests cover).
 */
SEC("xdp.frags")
int ballast_xdp(struct xdp_md *ctx)
{
	return run_balancer(ctx, 1);
}

SEC("xdp.frags")
int ballast_xdp_any(struct xdp_md *ctx)
{
	return run_balancer(ctx, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
