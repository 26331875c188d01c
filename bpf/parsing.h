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
 *  - The IP parsers return PARSE_PAST_FIRST_BUFFER instead of 0 when the
 *    header is whole but its length field runs past @data_end: past the
 *    part of a multi-buffer frame (xdp.frags: jumbo or GRO-sized) that the
 *    program reads directly. The caller checks that length against the whole
 *    frame (whole_frame_len); a frame of one buffer gets there only when it
 *    is truncated, and is refused then.
 */
#ifndef BALLAST_PARSING_H
#define BALLAST_PARSING_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>

/* IPv4 flags/fragment-offset field: "more fragments" and the offset bits. */
#define BALLAST_IP_MF 0x2000
#define BALLAST_IP_OFFSET 0x1fff

/* IPv6 fragment header's offset field: offset bits and "more fragments". */
#define BALLAST_IP6_OFFSET 0xfff8
#define BALLAST_IP6_MF 0x0001

/* The most IPv6 extension headers walked before the transport header. */
#define BALLAST_IPV6_MAX_EXT 4

struct hdr_cursor {
	void *pos;
};

#define PARSE_PAST_FIRST_BUFFER 1

/*
 * whole_frame_len - @ctx's frame length, a multi-buffer frame's fragments
 * included (a helper call: the balancer makes it once per packet, at its
 * start; the decap program only for a frame whose IP length ran past its
 * first buffer).
 */
static __always_inline __u32 whole_frame_len(struct xdp_md *ctx)
{
	return (__u32)bpf_xdp_get_buff_len(ctx);
}

/* IPv6 fragment header (RFC 8200 4.5). */
struct ballast_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;  /* offset << 3 | M */
	__be32 identification;
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
 * than the header; a total length past @data_end is
 * PARSE_PAST_FIRST_BUFFER, for the caller to check against the whole frame
 * (Ethernet padding, which makes the frame longer, is allowed).
 */
static __always_inline int parse_iphdr(struct hdr_cursor *cur, void *data_end,
				       struct iphdr **iphdr)
{
	struct iphdr *iph = cur->pos;
	__u32 hdrsize;
	__u16 tot_len;
	int past = 0;

	if ((void *)(iph + 1) > data_end)
		return -1;
	if (iph->version != 4 || iph->ihl < 5)
		return -1;
	hdrsize = iph->ihl * 4;
	/* Second, byte-based check: options must be inside the frame too. */
	if (cur->pos + hdrsize > data_end)
		return -1;
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < hdrsize)
		return -1;
	if (cur->pos + tot_len > data_end)
		past = PARSE_PAST_FIRST_BUFFER;
	cur->pos += hdrsize;
	*iphdr = iph;
	return past;
}

/*
 * True when the IPv4 header's checksum is right (RFC 1071: the ones'
 * complement sum over the header, the checksum included, is 0xffff). A
 * router checks it (RFC 1812 5.2.2) and so do we: a header whose bits
 * changed on the way is malformed, and forwarding it would hand the backend
 * a packet its kernel drops. @iph is bounds-checked for its fixed 20 bytes,
 * the options word by word; 4 to 15 words of 32 bits.
 */
static __always_inline int ipv4_checksum_ok(struct iphdr *iph, void *data_end)
{
	__u32 *word = (__u32 *)iph;
	__u64 sum = 0;
	int i;

	sum += word[0];
	sum += word[1];
	sum += word[2];
	sum += word[3];
	sum += word[4];
#pragma unroll
	for (i = 5; i < 15; i++) {
		if (i >= iph->ihl)
			break;
		if ((void *)(word + i + 1) > data_end)
			return 0;
		sum += word[i];
	}
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

/*
 * IPv6 fixed header. Rejects a version other than 6 and a header past the
 * frame; a payload length past @data_end is PARSE_PAST_FIRST_BUFFER, for
 * the caller to check against the whole frame (padding is allowed).
 */
static __always_inline int parse_ipv6hdr(struct hdr_cursor *cur, void *data_end,
					 struct ipv6hdr **ip6hdr)
{
	struct ipv6hdr *ip6 = cur->pos;

	if ((void *)(ip6 + 1) > data_end)
		return -1;
	if (ip6->version != 6)
		return -1;
	cur->pos = ip6 + 1;
	*ip6hdr = ip6;
	if ((void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) > data_end)
		return PARSE_PAST_FIRST_BUFFER;
	return 0;
}

/* Results of walking IPv6 extension headers. */
enum ipv6_ext_result {
	IPV6_EXT_OK = 0,
	IPV6_EXT_MALFORMED = -1,  /* a header runs past the frame or payload */
	IPV6_EXT_LIMIT = -2,      /* more than BALLAST_IPV6_MAX_EXT of them */
};

static __always_inline int ipv6_is_ext_hdr(__u8 nexthdr)
{
	return nexthdr == IPPROTO_HOPOPTS || nexthdr == IPPROTO_ROUTING ||
	       nexthdr == IPPROTO_DSTOPTS || nexthdr == IPPROTO_FRAGMENT;
}

/*
 * parse_ipv6_ext - walk hop-by-hop, routing, destination options and
 * fragment headers from @cur (just after the fixed header) to the upper
 * layer. @l3_end: the end of the IPv6 payload. On success @cur is at the
 * upper-layer header, *@nexthdr is its protocol, and *@fragment is set when
 * a fragment header says this is part of a fragmented datagram (offset or
 * M set; an atomic fragment is not).
 * Returns: enum ipv6_ext_result.
 */
static __always_inline int parse_ipv6_ext(struct hdr_cursor *cur, void *data_end, void *l3_end,
					  __u8 *nexthdr, int *fragment)
{
	__u8 next = *nexthdr;

#pragma unroll
	for (int i = 0; i < BALLAST_IPV6_MAX_EXT; i++) {
		if (!ipv6_is_ext_hdr(next))
			goto done;
		if (next == IPPROTO_FRAGMENT) {
			struct ballast_frag_hdr *fh = cur->pos;

			if ((void *)(fh + 1) > data_end || (void *)(fh + 1) > l3_end)
				return IPV6_EXT_MALFORMED;
			if (fh->frag_off & bpf_htons(BALLAST_IP6_OFFSET | BALLAST_IP6_MF))
				*fragment = 1;
			next = fh->nexthdr;
			cur->pos = fh + 1;
		} else {
			struct ipv6_opt_hdr *oh = cur->pos;
			__u32 len;

			if ((void *)(oh + 1) > data_end)
				return IPV6_EXT_MALFORMED;
			len = ((__u32)oh->hdrlen + 1) * 8;
			if (cur->pos + len > data_end || cur->pos + len > l3_end)
				return IPV6_EXT_MALFORMED;
			next = oh->nexthdr;
			cur->pos += len;
		}
	}
	if (ipv6_is_ext_hdr(next))
		return IPV6_EXT_LIMIT;
done:
	*nexthdr = next;
	return IPV6_EXT_OK;
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
