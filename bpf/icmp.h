/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * icmp.h: the two ICMP jobs of the balancer (docs/dataplane.md).
 *
 * 1. ICMP errors about a VIP's flows. A router that cannot deliver a
 *    backend's answer (sent from the VIP) reports it to the VIP, quoting the
 *    failed packet: VIP:port -> client:port. parse_icmp*_error turns the quote
 *    back into the flow the client sends (client -> VIP), so the error goes
 *    to the backend that owns the flow.
 * 2. Too big to encapsulate. icmp*_too_big turns the client's frame into
 *    "fragmentation needed" / "packet too big" from the VIP back to the
 *    client, with the MTU that fits after encapsulation.
 */
#ifndef BALLAST_ICMP_H
#define BALLAST_ICMP_H

#include <linux/bpf.h>
#include <linux/icmpv6.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "csum.h"
#include "parsing.h"

/* IPv4 ICMP (RFC 792). Not <linux/icmp.h>: it pulls in libc's socket
 * headers, which a BPF target cannot include. */
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_FRAG_NEEDED 4

struct icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu;  /* next-hop MTU of "fragmentation needed" (RFC 1191) */
};

/* Bytes of the client's packet quoted in a too-big reply: an IPv4 header
 * with the most options (60) and 8 bytes of TCP/UDP; for IPv6, enough for
 * the fixed header, some extension headers and the transport ports. Both
 * multiples of 4 (bpf_csum_diff). */
#define BALLAST_ICMP4_QUOTE 68
#define BALLAST_ICMP6_QUOTE 128
#define BALLAST_ICMP_TTL 64

/* The error types that quote a packet of ours. */
static __always_inline int icmp4_is_flow_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED;
}

static __always_inline int icmp6_is_flow_error(__u8 type)
{
	return type == ICMPV6_DEST_UNREACH || type == ICMPV6_PKT_TOOBIG ||
	       type == ICMPV6_TIME_EXCEED;
}

/*
 * An ICMP error quotes the packet's IP header and at least its first 8 bytes
 * beyond it (RFC 792, RFC 4443 2.4), and the kernel drops one that quotes
 * less (icmp_unreach, icmpv6_notify): the ports alone (4 bytes) are not
 * enough for the backend, so such a quote is malformed. In 16-bit words.
 */
#define ICMP_QUOTED_L4_WORDS 4

/*
 * parse_icmp4_error - the client's flow an IPv4 ICMP error is about.
 * @cur: at the ICMP header; @l3_end: the end of the outer IPv4 packet;
 * @outer: the outer IPv4 header (its destination must be the quoted source).
 * Returns: 0 with @flow filled (addresses, ports, protocol, family), else
 * the pass reason: BALLAST_REASON_PASS_MALFORMED_ICMP when the quote is too
 * short (less than its IP header and 8 bytes), BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW when it is not an error
 * about a TCP/UDP packet from this address.
 */
static __always_inline __u32 parse_icmp4_error(struct hdr_cursor *cur, void *data_end,
					       void *l3_end, const struct iphdr *outer,
					       struct ballast_flow_key *flow)
{
	struct icmphdr *icmp = cur->pos;
	struct iphdr *quoted;
	__be16 *ports;

	if ((void *)(icmp + 1) > data_end || (void *)(icmp + 1) > l3_end)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	if (!icmp4_is_flow_error(icmp->type))
		return BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;
	quoted = (void *)(icmp + 1);
	if ((void *)(quoted + 1) > data_end || (void *)(quoted + 1) > l3_end)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	if (quoted->version != 4 || quoted->ihl < 5)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	ports = (void *)quoted + quoted->ihl * 4;
	if ((void *)(ports + ICMP_QUOTED_L4_WORDS) > data_end ||
	    (void *)(ports + ICMP_QUOTED_L4_WORDS) > l3_end)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	if (quoted->protocol != IPPROTO_TCP && quoted->protocol != IPPROTO_UDP)
		return BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;
	if (quoted->saddr != outer->daddr)
		return BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;
	flow->src.v4 = quoted->daddr;
	flow->dst.v4 = quoted->saddr;
	flow->sport = ports[1];
	flow->dport = ports[0];
	flow->proto = quoted->protocol;
	flow->family = BALLAST_AF_INET;
	return 0;
}

static __always_inline int ipv6_addr_equal(const struct in6_addr *a, const struct in6_addr *b)
{
	return a->in6_u.u6_addr32[0] == b->in6_u.u6_addr32[0] &&
	       a->in6_u.u6_addr32[1] == b->in6_u.u6_addr32[1] &&
	       a->in6_u.u6_addr32[2] == b->in6_u.u6_addr32[2] &&
	       a->in6_u.u6_addr32[3] == b->in6_u.u6_addr32[3];
}

/* parse_icmp6_error - as parse_icmp4_error, for ICMPv6 (the quoted IPv6
 * header must be followed directly by TCP or UDP). */
static __always_inline __u32 parse_icmp6_error(struct hdr_cursor *cur, void *data_end,
					       void *l3_end, const struct ipv6hdr *outer,
					       struct ballast_flow_key *flow)
{
	struct icmp6hdr *icmp = cur->pos;
	struct ipv6hdr *quoted;
	__be16 *ports;

	if ((void *)(icmp + 1) > data_end || (void *)(icmp + 1) > l3_end)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	if (!icmp6_is_flow_error(icmp->icmp6_type))
		return BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;
	quoted = (void *)(icmp + 1);
	ports = (void *)(quoted + 1);
	if ((void *)(ports + ICMP_QUOTED_L4_WORDS) > data_end ||
	    (void *)(ports + ICMP_QUOTED_L4_WORDS) > l3_end)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	if (quoted->version != 6)
		return BALLAST_REASON_PASS_MALFORMED_ICMP;
	if (quoted->nexthdr != IPPROTO_TCP && quoted->nexthdr != IPPROTO_UDP)
		return BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;
	if (!ipv6_addr_equal(&quoted->saddr, &outer->daddr))
		return BALLAST_REASON_PASS_ICMP_NOT_VIP_FLOW;
	__builtin_memcpy(flow->src.v6, &quoted->daddr, 16);
	__builtin_memcpy(flow->dst.v6, &quoted->saddr, 16);
	flow->sport = ports[1];
	flow->dport = ports[0];
	flow->proto = quoted->nexthdr;
	flow->family = BALLAST_AF_INET6;
	return 0;
}

/*
 * icmp_reply_frame - turn the client's frame into the frame of a reply:
 * @head bytes of new headers in front of it, the whole cut to @len bytes,
 * and an Ethernet header back to where it came from (MACs swapped,
 * EtherType @proto). The caller checked that the frame holds @len - @head
 * bytes. Returns 0, or -1 when the frame cannot be resized.
 */
static __always_inline int icmp_reply_frame(struct xdp_md *ctx, __u32 head, __u32 len,
					    __be16 proto)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data, orig;

	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(&orig, eth, sizeof(orig));
	/* [new eth + IP + ICMP][old eth: overwritten][quoted packet...] */
	if (bpf_xdp_adjust_head(ctx, -(int)head))
		return -1;
	/* Relative to the whole frame: a multi-buffer frame (a jumbo one that
	 * does not fit its tunnel) loses its fragments first. */
	if (bpf_xdp_adjust_tail(ctx, (int)len - (int)bpf_xdp_get_buff_len(ctx)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return -1;
	__builtin_memcpy(eth->h_dest, orig.h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, orig.h_dest, ETH_ALEN);
	eth->h_proto = proto;
	return 0;
}

/*
 * icmp4_too_big - rewrite the client's IPv4 frame (Ethernet at the frame's
 * start, untouched so far) into ICMP "fragmentation needed" with next-hop
 * MTU @mtu, from its destination (the VIP) back to its source, MACs swapped,
 * quoting its first BALLAST_ICMP4_QUOTE bytes.
 * Returns 0, or -1 when the frame is too short to quote or cannot be resized.
 */
static __always_inline int icmp4_too_big(struct xdp_md *ctx, __u16 mtu)
{
	const __u32 head = sizeof(struct iphdr) + sizeof(struct icmphdr);
	const __u32 len = sizeof(struct ethhdr) + head + BALLAST_ICMP4_QUOTE;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *iph = data + sizeof(struct ethhdr);
	struct icmphdr *icmp;
	__be32 client, vip;
	__u32 sum;

	if (data + sizeof(struct ethhdr) + BALLAST_ICMP4_QUOTE > data_end)
		return -1;
	client = iph->saddr;
	vip = iph->daddr;
	if (icmp_reply_frame(ctx, head, len, bpf_htons(ETH_P_IP)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + len > data_end)
		return -1;
	iph = data + sizeof(struct ethhdr);
	icmp = (void *)(iph + 1);

	iph->version = 4;
	iph->ihl = 5;
	iph->tos = 0;
	iph->tot_len = bpf_htons(head + BALLAST_ICMP4_QUOTE);
	iph->id = 0;
	iph->frag_off = 0;
	iph->ttl = BALLAST_ICMP_TTL;
	iph->protocol = IPPROTO_ICMP;
	iph->check = 0;
	iph->saddr = vip;
	iph->daddr = client;
	iph->check = ipv4_hdr_csum(iph);

	icmp->type = ICMP_DEST_UNREACH;
	icmp->code = ICMP_FRAG_NEEDED;
	icmp->checksum = 0;
	icmp->unused = 0;
	icmp->mtu = bpf_htons(mtu);
	sum = (__u32)bpf_csum_diff(0, 0, (void *)icmp,
				   sizeof(struct icmphdr) + BALLAST_ICMP4_QUOTE, 0);
	icmp->checksum = csum_fold32(sum);
	return 0;
}

/* icmp6_too_big - as icmp4_too_big, for IPv6: ICMPv6 "packet too big" with
 * MTU @mtu, quoting BALLAST_ICMP6_QUOTE bytes. */
static __always_inline int icmp6_too_big(struct xdp_md *ctx, __u32 mtu)
{
	const __u32 head = sizeof(struct ipv6hdr) + sizeof(struct icmp6hdr);
	const __u32 len = sizeof(struct ethhdr) + head + BALLAST_ICMP6_QUOTE;
	const __u32 icmp_len = sizeof(struct icmp6hdr) + BALLAST_ICMP6_QUOTE;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
	struct icmp6hdr *icmp;
	struct in6_addr client, vip;
	__u32 sum;

	if (data + sizeof(struct ethhdr) + BALLAST_ICMP6_QUOTE > data_end)
		return -1;
	__builtin_memcpy(&client, &ip6->saddr, sizeof(client));
	__builtin_memcpy(&vip, &ip6->daddr, sizeof(vip));
	if (icmp_reply_frame(ctx, head, len, bpf_htons(ETH_P_IPV6)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + len > data_end)
		return -1;
	ip6 = data + sizeof(struct ethhdr);
	icmp = (void *)(ip6 + 1);

	ip6->version = 6;
	ip6->priority = 0;
	ip6->flow_lbl[0] = 0;
	ip6->flow_lbl[1] = 0;
	ip6->flow_lbl[2] = 0;
	ip6->payload_len = bpf_htons(icmp_len);
	ip6->nexthdr = IPPROTO_ICMPV6;
	ip6->hop_limit = BALLAST_ICMP_TTL;
	__builtin_memcpy(&ip6->saddr, &vip, sizeof(vip));
	__builtin_memcpy(&ip6->daddr, &client, sizeof(client));

	icmp->icmp6_type = ICMPV6_PKT_TOOBIG;
	icmp->icmp6_code = 0;
	icmp->icmp6_cksum = 0;
	icmp->icmp6_mtu = bpf_htonl(mtu);
	/* Pseudo-header (RFC 8200 8.1): addresses, upper-layer length, next
	 * header; then the ICMPv6 message. */
	sum = (__u32)bpf_csum_diff(0, 0, (void *)&ip6->saddr, 32, 0);
	sum = csum_add32(sum, bpf_htonl(icmp_len));
	sum = csum_add32(sum, bpf_htonl(IPPROTO_ICMPV6));
	sum = csum_add32(sum, (__u32)bpf_csum_diff(0, 0, (void *)icmp, icmp_len, 0));
	icmp->icmp6_cksum = csum_fold32(sum);
	return 0;
}

#endif /* BALLAST_ICMP_H */
