// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * decap.bpf.c: the backends' side of the encapsulating modes. Attached to a
 * backend's interface (`ballast decap attach IFACE`), it strips the outer
 * IPv4 header of IP-in-IP packets whose inner destination is one of this
 * host's VIPs (decap_vips, filled from the addresses on lo) and passes the
 * inner packet up the stack, which answers the client directly from the VIP
 * as in dsr mode. Everything else passes untouched: this program never
 * drops, so attaching it cannot cut a backend off.
 *
 * The kernel here has no ipip module, and XDP is faster than one anyway.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "parsing.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BALLAST_MAX_DECAP_VIPS);
	__type(key, __be32);
	__type(value, __u8);
} decap_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_DECAP_REASON_COUNT);
	__type(key, __u32);
	__type(value, struct ballast_reason_counters);
} decap_stats SEC(".maps");

static __always_inline int counted(__u32 reason, __u32 bytes)
{
	struct ballast_reason_counters *c = bpf_map_lookup_elem(&decap_stats, &reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return XDP_PASS;
}

SEC("xdp")
int ballast_decap(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	__u32 bytes = data_end - data;
	struct hdr_cursor cur = { .pos = data };
	struct iphdr *outer, *inner;
	struct ethhdr *eth, saved;
	__be16 proto;
	__u32 outer_len;

	if (parse_ethhdr(&cur, data_end, &eth, &proto) || proto != bpf_htons(ETH_P_IP))
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	if (parse_iphdr(&cur, data_end, &outer))
		return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
	if (outer->protocol != IPPROTO_IPIP)
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	/* A fragmented tunnel packet is the kernel's to reassemble. */
	if (ipv4_is_fragment(outer))
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	if (parse_iphdr(&cur, data_end, &inner) ||
	    (void *)inner + bpf_ntohs(inner->tot_len) > (void *)outer + bpf_ntohs(outer->tot_len))
		return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
	if (!bpf_map_lookup_elem(&decap_vips, &inner->daddr))
		return counted(BALLAST_DECAP_PASS_NOT_LOCAL_VIP, bytes);

	/* Move the Ethernet header up against the inner packet, then drop the
	 * outer header in front of it. */
	outer_len = outer->ihl * 4; /* 20..60, checked by parse_iphdr */
	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return counted(BALLAST_DECAP_DECAPPED, bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
