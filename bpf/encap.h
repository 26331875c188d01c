/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * encap.h: the encapsulating forwarding modes. Each grows the frame at its
 * head with bpf_xdp_adjust_head and writes a new Ethernet header and outer
 * headers in front of the client's IP packet, which is left byte for byte
 * as it came.
 *
 * ipip4: IPv4-in-IPv4 (RFC 2003), protocol 4.
 *   outer source: the balancer's address (lb_ip4); destination: the backend;
 *   TTL 64; TOS and the DF bit copied from the inner header (so path MTU
 *   discovery still works end to end); ID 0 (RFC 6864: DF packets need none,
 *   and a non-DF inner packet is not fragmented by us).
 */
#ifndef BALLAST_ENCAP_H
#define BALLAST_ENCAP_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "csum.h"

#define IP_DF 0x4000

/*
 * ipip4_encap - turn [eth][inner IPv4 ...] into [eth][outer IPv4][inner ...].
 * @ctx: the frame; its Ethernet header is the client's (about to be replaced).
 * @be: the backend (its MAC is the next hop's; its address the destination).
 * @src_mac, @src_ip: the balancer's MAC and IPv4 (network order).
 * Returns 0, or -1 when the frame cannot grow or is shorter than expected
 * (every pointer into the old frame is invalid after this call either way).
 */
static __always_inline int ipip4_encap(struct xdp_md *ctx, const struct ballast_backend *be,
				       const volatile __u8 *src_mac, __be32 src_ip)
{
	struct ethhdr *eth;
	struct iphdr *outer, *inner;
	void *data, *data_end;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return -1;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	outer = data + sizeof(struct ethhdr);
	inner = (void *)(outer + 1);
	if ((void *)(inner + 1) > data_end)
		return -1;

	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	eth->h_source[0] = src_mac[0];
	eth->h_source[1] = src_mac[1];
	eth->h_source[2] = src_mac[2];
	eth->h_source[3] = src_mac[3];
	eth->h_source[4] = src_mac[4];
	eth->h_source[5] = src_mac[5];
	eth->h_proto = bpf_htons(ETH_P_IP);

	outer->version = 4;
	outer->ihl = 5;
	outer->tos = inner->tos;
	outer->tot_len = bpf_htons(bpf_ntohs(inner->tot_len) + sizeof(struct iphdr));
	outer->id = 0;
	outer->frag_off = inner->frag_off & bpf_htons(IP_DF);
	outer->ttl = 64;
	outer->protocol = IPPROTO_IPIP;
	outer->check = 0;
	outer->saddr = src_ip;
	outer->daddr = be->addr.v4;
	outer->check = ipv4_hdr_csum(outer);
	return 0;
}

#endif /* BALLAST_ENCAP_H */
