/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * parsing.h: packet header parsing with a cursor, after xdp-tools'
 * headers/xdp/parsing_helpers.h.
 *
 * Contract for every parse_* helper:
 *  - @cur points at the first byte of the header to parse; on success it is
 *    advanced past that header (including options), on failure untouched.
 *  - Each helper checks its own bounds against @data_end before reading
 *    (fixed part first, then the variable length it reads from the header).
 *  - Returns 0 on success or a negative value when the header is truncated
 *    or malformed. Values written to out-parameters are in network byte
 *    order unless the name says otherwise.
 */
#ifndef BALLAST_PARSING_H
#define BALLAST_PARSING_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

/* IPv4 flags/fragment-offset field: "more fragments" and the offset bits. */
#define BALLAST_IP_MF 0x2000
#define BALLAST_IP_OFFSET 0x1fff

struct hdr_cursor {
	void *pos;
};

/* Ethernet II header. @eth_proto gets the EtherType (network order). */
static __always_inline int parse_ethhdr(struct hdr_cursor *cur, void *data_end,
					struct ethhdr **ethhdr, __be16 *eth_proto)
{
	struct ethhdr *eth = cur->pos;

	if ((void *)(eth + 1) > data_end)
		return -1;
	cur->pos = eth + 1;
	*ethhdr = eth;
	*eth_proto = eth->h_proto;
	return 0;
}

/*
 * IPv4 header, options included. Rejects a version other than 4, an IHL
 * below 5, a header that runs past the frame, and a total length shorter
 * than the header or longer than what the frame holds (Ethernet padding,
 * which makes the frame longer, is allowed).
 */
static __always_inline int parse_iphdr(struct hdr_cursor *cur, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = cur->pos;
	__u32 hdrsize;
	__u16 tot_len;

	if ((void *)(iph + 1) > data_end)
		return -1;
	if (iph->version != 4 || iph->ihl < 5)
		return -1;
	hdrsize = iph->ihl * 4;
	/* Second, byte-based check: options must be inside the frame too. */
	if (cur->pos + hdrsize > data_end)
		return -1;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < hdrsize || cur->pos + tot_len > data_end)
		return -1;
	cur->pos += hdrsize;
	*iphdr = iph;
	return 0;
}

/* True when the IPv4 packet is a fragment (first or later). */
static __always_inline int ipv4_is_fragment(const struct iphdr *iph)
{
	return (iph->frag_off & bpf_htons(BALLAST_IP_MF | BALLAST_IP_OFFSET)) != 0;
}

/* TCP header, options included (doff checked against the frame). */
static __always_inline int parse_tcphdr(struct hdr_cursor *cur, void *data_end,
					struct tcphdr **tcphdr)
{
	struct tcphdr *tcp = cur->pos;
	__u32 len;

	if ((void *)(tcp + 1) > data_end)
		return -1;
	len = tcp->doff * 4;
	if (len < sizeof(*tcp) || cur->pos + len > data_end)
		return -1;
	cur->pos += len;
	*tcphdr = tcp;
	return 0;
}

/* UDP header; the length field must cover at least the header. */
static __always_inline int parse_udphdr(struct hdr_cursor *cur, void *data_end,
					struct udphdr **udphdr)
{
	struct udphdr *udp = cur->pos;

	if ((void *)(udp + 1) > data_end)
		return -1;
	if (bpf_ntohs(udp->len) < sizeof(*udp))
		return -1;
	cur->pos = udp + 1;
	*udphdr = udp;
	return 0;
}

#endif /* BALLAST_PARSING_H */
