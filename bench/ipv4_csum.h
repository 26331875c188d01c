/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ipv4_csum.h: the bench programs that write IPv4 headers (wire_gen,
 * xdp_spread) give them a right checksum: Ballast drops a header whose
 * checksum is wrong (drop_malformed_ipv4). */
#pragma once

#include <linux/ip.h>
#include <bpf/bpf_helpers.h>

/* The IPv4 header checksum of @iph (20 bytes, no options), from scratch. */
static __always_inline __u16 ipv4_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < (int)sizeof(*iph) / 2; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}
