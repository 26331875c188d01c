/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * csum.h: the Internet checksum of headers the balancer writes itself.
 */
#ifndef BALLAST_CSUM_H
#define BALLAST_CSUM_H

#include <linux/ip.h>

/* The header checksum of a 20-byte IPv4 header (no options) whose check
 * field is zero: the one's complement of the one's-complement sum of its
 * ten 16-bit words. Unrolled: the verifier sees a fixed, bounded loop. */
static __always_inline __u16 ipv4_hdr_csum(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(struct iphdr) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* One's-complement addition of two 32-bit partial sums (end-around carry). */
static __always_inline __u32 csum_add32(__u32 a, __u32 b)
{
	__u32 s = a + b;

	return s + (s < b);
}

/* Folds a 32-bit partial sum (bpf_csum_diff's result) into the 16-bit
 * checksum field's value. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* BALLAST_CSUM_H */
