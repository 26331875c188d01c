/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * encap.h: the encapsulating forwarding modes (docs/dataplane.md). Each grows
 * the frame at its head with bpf_xdp_adjust_head and writes a new Ethernet
 * header and outer headers in front of the client's IP packet, which is left
 * byte for byte as it came. The outer family is the backend's.
 *
 * ipip: outer IPv4 (protocol 4 for an inner IPv4, 41 for an inner IPv6;
 *       RFC 2003, RFC 4213) or outer IPv6 (next header 4 or 41; RFC 2473).
 * gue:  the same outer IP header with protocol 17, then a UDP header, then
 *       the client's packet (GUE variant 1: the inner version nibble says
 *       the family; no GUE header).
 *
 * Outer IPv4: TTL 64, ID 0 (RFC 6864: DF packets need none, and we never
 * fragment), TOS copied from the inner packet, DF copied from an inner IPv4
 * and set for an inner IPv6 (routers never fragment IPv6), so path-MTU
 * discovery still works end to end. Outer IPv6: traffic class copied, flow
 * label from the flow hash (ECMP on the way spreads flows), hop limit 64.
 */
#ifndef BALLAST_ENCAP_H
#define BALLAST_ENCAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "csum.h"

#define IP_DF 0x4000
#define BALLAST_ENCAP_TTL 64
/* GUE's outer source port: 49152 + (flow hash mod 16384), in the ephemeral
 * range, so that the backend's NIC spreads flows by it. */
#define BALLAST_GUE_SPORT_BASE 49152
#define BALLAST_GUE_SPORT_MASK 0x3fff

/* What the encapsulating modes read from the client's packet. */
struct inner_info {
	__u32 len;     /* the client's IP packet, in bytes */
	__u8 family;   /* enum ballast_family */
	__u8 tos;      /* IPv4 TOS or IPv6 traffic class */
	__u8 df;       /* the outer IPv4's DF bit: 1 or 0 */
	__u8 pad;
};

/* Bytes an encapsulation adds in front of the client's IP packet. */
static __always_inline __u32 encap_overhead(__u8 outer_family, int gue)
{
	return (outer_family == BALLAST_AF_INET ? sizeof(struct iphdr) : sizeof(struct ipv6hdr)) +
	       (gue ? sizeof(struct udphdr) : 0);
}

static __always_inline void write_eth(struct ethhdr *eth, const __u8 *dst, const __u8 *src,
				      __be16 proto)
{
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
	eth->h_proto = proto;
}

/* The outer protocol: UDP for gue, else the inner family's IP-in-IP number. */
static __always_inline __u8 encap_protocol(const struct inner_info *inner, int gue)
{
	if (gue)
		return IPPROTO_UDP;
	return inner->family == BALLAST_AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6;
}

/* The GUE bytes after the UDP header before the client's packet: none
 * (variant 1), or the second-chance header naming @prev. */
static __always_inline __u32 gue_header_len(const struct ballast_backend *prev)
{
	return prev ? sizeof(struct ballast_gue_second_chance) : 0;
}

static __always_inline void write_gue_udp(struct udphdr *udp, const struct inner_info *inner,
					  __u32 hash, __be16 gue_port,
					  const struct ballast_backend *prev)
{
	udp->source = bpf_htons(BALLAST_GUE_SPORT_BASE + (hash & BALLAST_GUE_SPORT_MASK));
	udp->dest = gue_port;
	udp->len = bpf_htons(inner->len + sizeof(struct udphdr) + gue_header_len(prev));
	/* Zero: no checksum (IPv4), allowed for tunnels over IPv6 (RFC 6935);
	 * the inner packet carries its own. */
	udp->check = 0;
	if (prev) {
		struct ballast_gue_second_chance *sc = (void *)(udp + 1);

		sc->ver_c_hlen = BALLAST_GUE_SECOND_CHANCE_HLEN;
		sc->proto = inner->family == BALLAST_AF_INET ? IPPROTO_IPIP : IPPROTO_IPV6;
		sc->flags = 0;
		sc->magic = bpf_htons(BALLAST_SECOND_CHANCE_MAGIC);
		sc->family = prev->family;
		sc->hops = 1;
		__builtin_memcpy(&sc->prev, &prev->addr, sizeof(sc->prev));
	}
}

/*
 * encap_grow - make room for @hdr bytes of outer headers at the frame's head
 * and write its new Ethernet header (to the next hop, from @eg, EtherType
 * @proto). @room: bytes after the Ethernet header the caller will write
 * (a constant, so the verifier knows the bound).
 * Returns: the outer IP header, or NULL when the frame cannot grow.
 */
static __always_inline void *encap_grow(struct xdp_md *ctx, __u32 hdr, __u32 room,
					const struct ballast_backend *be,
					const struct ballast_egress *eg, __be16 proto)
{
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -(int)hdr))
		return NULL;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	/* The UDP header's room too: the inner packet is at least that long. */
	if (data + sizeof(struct ethhdr) + room > data_end)
		return NULL;
	write_eth(data, be->mac, eg->mac, proto);
	return data + sizeof(struct ethhdr);
}

/*
 * encap4 / encap6 - put an outer IPv4 / IPv6 header (and for @gue a UDP
 * header to @gue_port) in front of the client's packet.
 * @be: the backend (its MAC is the next hop's, its address the destination).
 * @eg: the egress interface (source MAC, outer source address and mask).
 * @hash: the flow's hash.
 * Returns 0, or -1 when the frame cannot grow (every pointer into the old
 * frame is invalid after this call either way; map values are not).
 */
static __always_inline int encap4(struct xdp_md *ctx, const struct ballast_backend *be,
				  const struct ballast_egress *eg, const struct inner_info *inner,
				  __u32 hash, int gue, __be16 gue_port,
				  const struct ballast_backend *prev)
{
	__u32 hdr = encap_overhead(BALLAST_AF_INET, gue) + gue_header_len(prev);
	struct iphdr *outer;

	if (prev)
		outer = encap_grow(ctx, hdr, sizeof(struct iphdr) + sizeof(struct udphdr) +
					     sizeof(struct ballast_gue_second_chance),
				   be, eg, bpf_htons(ETH_P_IP));
	else
		outer = encap_grow(ctx, hdr, sizeof(struct iphdr) + sizeof(struct udphdr), be, eg,
				   bpf_htons(ETH_P_IP));
	if (!outer)
		return -1;
	outer->version = 4;
	outer->ihl = 5;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(inner->len + hdr);
	outer->id = 0;
	outer->frag_off = inner->df ? bpf_htons(IP_DF) : 0;
	outer->ttl = BALLAST_ENCAP_TTL;
	outer->protocol = encap_protocol(inner, gue);
	outer->check = 0;
	outer->saddr = (eg->src4 & ~eg->src4_hash_mask) | (bpf_htonl(hash) & eg->src4_hash_mask);
	outer->daddr = be->addr.v4;
	outer->check = ipv4_hdr_csum(outer);
	if (gue)
		write_gue_udp((void *)(outer + 1), inner, hash, gue_port, prev);
	return 0;
}

static __always_inline int encap6(struct xdp_md *ctx, const struct ballast_backend *be,
				  const struct ballast_egress *eg, const struct inner_info *inner,
				  __u32 hash, int gue, __be16 gue_port,
				  const struct ballast_backend *prev)
{
	__u32 hdr = encap_overhead(BALLAST_AF_INET6, gue) + gue_header_len(prev);
	struct ipv6hdr *outer;

	if (prev)
		outer = encap_grow(ctx, hdr, sizeof(struct ipv6hdr) + sizeof(struct udphdr) +
					     sizeof(struct ballast_gue_second_chance),
				   be, eg, bpf_htons(ETH_P_IPV6));
	else
		outer = encap_grow(ctx, hdr, sizeof(struct ipv6hdr) + sizeof(struct udphdr), be,
				   eg, bpf_htons(ETH_P_IPV6));
	if (!outer)
		return -1;
	outer->version = 6;
	outer->priority = inner->tos >> 4;
	outer->flow_lbl[0] = (__u8)((inner->tos & 0x0f) << 4) | ((hash >> 16) & 0x0f);
	outer->flow_lbl[1] = (__u8)(hash >> 8);
	outer->flow_lbl[2] = (__u8)hash;
	outer->payload_len = bpf_htons(inner->len + (gue ? sizeof(struct udphdr) : 0) +
				       gue_header_len(prev));
	outer->nexthdr = encap_protocol(inner, gue);
	outer->hop_limit = BALLAST_ENCAP_TTL;
	outer->saddr.in6_u.u6_addr32[0] = eg->src6[0];
	outer->saddr.in6_u.u6_addr32[1] = eg->src6[1];
	outer->saddr.in6_u.u6_addr32[2] = eg->src6[2];
	outer->saddr.in6_u.u6_addr32[3] =
		(eg->src6[3] & ~eg->src6_hash_mask) | (bpf_htonl(hash) & eg->src6_hash_mask);
	__builtin_memcpy(&outer->daddr, be->addr.v6, sizeof(outer->daddr));
	if (gue)
		write_gue_udp((void *)(outer + 1), inner, hash, gue_port, prev);
	return 0;
}

#endif /* BALLAST_ENCAP_H */
