/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vip_filter.h: whether a destination address may be a VIP's, from one bit
 * of the vip_filter array (ballast_abi.h, BALLAST_VIP_FILTER_BITS). Traffic
 * to the balancer host itself (its SSH, BGP, health-check answers) is told
 * apart with one array read the verifier inlines, instead of a miss in the
 * connection table and another in vips.
 */
#ifndef BALLAST_VIP_FILTER_H
#define BALLAST_VIP_FILTER_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ballast_abi.h"
#include "maps.h"

/* Returns: 0 when no VIP has address @dst; 1 when one may. */
static __always_inline int vip_filter_may_match(const union ballast_addr *dst)
{
	__u32 bit = ballast_vip_filter_bit(dst);
	__u32 word = bit >> 6;
	__u64 *bits = bpf_map_lookup_elem(&vip_filter, &word);

	return bits && ((*bits >> (bit & 63)) & 1);
}

#endif /* BALLAST_VIP_FILTER_H */
