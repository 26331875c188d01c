// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * decap.bpf.c: the backends' side of the encapsulating modes. Attached to a
 * backend's interface (`ballast decap attach IFACE`), it strips the outer
 * headers of IP-in-IP (IPv4 or IPv6 outer, protocol 4 or 41) and GUE (UDP
 * to decap_config's gue_port, then an IP packet) whose inner destination is
 * one of this host's VIPs (decap_vips, filled from the addresses on lo), and
 * passes the inner packet up the stack, which answers the client directly
 * from the VIP as in dsr mode. Everything else passes untouched: this
 * program never drops, so attaching it cannot cut a backend off.
 *
 * The kernel here has no ipip, ip6_tunnel or fou module, and XDP is faster
 * than one anyway.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "parsing.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, BALLAST_MAX_DECAP_VIPS);
	__type(key, struct ballast_decap_vip);
	__type(value, __u8);
} decap_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ballast_decap_config);
} decap_config SEC(".maps");

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

/* The inner family an outer protocol number carries: 4 (IPIP) or 41 (IPv6),
 * or for GUE variant 1 the version nibble of the first payload byte. */
static __always_inline __u8 tunnel_family(__u8 proto)
{
	if (proto == IPPROTO_IPIP)
		return BALLAST_AF_INET;
	if (proto == IPPROTO_IPV6)
		return BALLAST_AF_INET6;
	return 0;
}

/*
 * gue_inner_family - for a UDP packet at @cur to the configured GUE port:
 * moves @cur past the UDP header and returns the inner family, or 0 when
 * it is not GUE for us (another port, GUE not configured, no IP inside).
 */
static __always_inline __u8 gue_inner_family(struct hdr_cursor *cur, void *data_end)
{
	struct ballast_decap_config *cfg;
	struct udphdr *udp;
	__u32 zero = 0;
	__u8 *version;

	cfg = bpf_map_lookup_elem(&decap_config, &zero);
	if (!cfg || !cfg->gue_port)
		return 0;
	if (parse_udphdr(cur, data_end, &udp) || udp->dest != cfg->gue_port)
		return 0;
	version = cur->pos;
	if ((void *)(version + 1) > data_end)
		return 0;
	if ((*version >> 4) == 4)
		return BALLAST_AF_INET;
	if ((*version >> 4) == 6)
		return BALLAST_AF_INET6;
	return 0;
}

SEC("xdp")
int ballast_decap(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	__u32 bytes = data_end - data;
	struct hdr_cursor cur = { .pos = data };
	struct ballast_decap_vip key = {};
	struct ethhdr *eth, saved;
	void *outer, *outer_end, *inner;
	__be16 proto;
	__u8 l4, family;
	__u32 strip;

	if (parse_ethhdr(&cur, data_end, &eth, &proto))
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	outer = cur.pos;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;

		if (parse_iphdr(&cur, data_end, &iph))
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		/* A fragmented tunnel packet is the kernel's to reassemble. */
		if (ipv4_is_fragment(iph))
			return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
		outer_end = outer + bpf_ntohs(iph->tot_len);
		l4 = iph->protocol;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;

		if (parse_ipv6hdr(&cur, data_end, &ip6))
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		outer_end = cur.pos + bpf_ntohs(ip6->payload_len);
		l4 = ip6->nexthdr;
	} else {
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	}

	family = tunnel_family(l4);
	if (!family && l4 == IPPROTO_UDP)
		family = gue_inner_family(&cur, data_end);
	if (!family)
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);

	inner = cur.pos;
	key.family = family;
	if (family == BALLAST_AF_INET) {
		struct iphdr *iph;

		if (parse_iphdr(&cur, data_end, &iph) ||
		    inner + bpf_ntohs(iph->tot_len) > outer_end)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		key.addr.v4 = iph->daddr;
	} else {
		struct ipv6hdr *ip6;

		if (parse_ipv6hdr(&cur, data_end, &ip6) ||
		    inner + sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > outer_end)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		__builtin_memcpy(key.addr.v6, &ip6->daddr, 16);
	}
	if (!bpf_map_lookup_elem(&decap_vips, &key))
		return counted(BALLAST_DECAP_PASS_NOT_LOCAL_VIP, bytes);

	/* Move the Ethernet header up against the inner packet, then drop the
	 * outer headers in front of it. */
	strip = inner - outer;
	if (strip > 512)
		return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
	__builtin_memcpy(&saved, eth, sizeof(saved));
	saved.h_proto = family == BALLAST_AF_INET ? bpf_htons(ETH_P_IP) : bpf_htons(ETH_P_IPV6);
	if (bpf_xdp_adjust_head(ctx, (int)strip))
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
