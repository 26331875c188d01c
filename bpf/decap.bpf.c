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
 * Second chance (docs/fleet.md): a GUE packet whose GUE header names the
 * flow's previous backend (ballast_abi.h, ballast_gue_second_chance) is a
 * TCP packet without SYN that the balancer placed with a table that changed
 * since the flow began. When this host has no socket for the flow, the
 * packet goes on, still encapsulated, to the previous backend (which has it)
 * instead of up the stack (which would reset the connection). That one
 * path does forward (XDP_TX / XDP_REDIRECT, or XDP_PASS for the kernel to
 * route when the next hop's MAC is not known yet); it never drops either.
 *
 * The kernel here has no ipip, ip6_tunnel or fou module, and XDP is faster
 * than one anyway.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "ballast_abi.h"
#include "csum.h"
#include "parsing.h"

#define AF_INET 2
#define AF_INET6 10

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

static __always_inline int counted_as(__u32 reason, __u32 bytes, int action)
{
	struct ballast_reason_counters *c = bpf_map_lookup_elem(&decap_stats, &reason);

	if (c) {
		c->packets++;
		c->bytes += bytes;
	}
	return action;
}

static __always_inline int counted(__u32 reason, __u32 bytes)
{
	return counted_as(reason, bytes, XDP_PASS);
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
 * gue_second_chance - the GUE variant 0 header at @cur, when it is
 * Ballast's second-chance header (moved past); NULL for anything else.
 */
static __always_inline struct ballast_gue_second_chance *
gue_second_chance(struct hdr_cursor *cur, void *data_end)
{
	struct ballast_gue_second_chance *sc = cur->pos;

	if ((void *)(sc + 1) > data_end)
		return NULL;
	if (sc->ver_c_hlen != BALLAST_GUE_SECOND_CHANCE_HLEN || sc->flags ||
	    sc->magic != bpf_htons(BALLAST_SECOND_CHANCE_MAGIC))
		return NULL;
	if (sc->proto != IPPROTO_IPIP && sc->proto != IPPROTO_IPV6)
		return NULL;
	cur->pos = sc + 1;
	return sc;
}

/*
 * gue_inner_family - for a UDP packet at @cur to the configured GUE port:
 * moves @cur past the UDP header (and a second-chance header, set in @sc)
 * and returns the inner family, or 0 when it is not GUE for us (another
 * port, GUE not configured, no IP inside).
 */
static __always_inline __u8 gue_inner_family(struct hdr_cursor *cur, void *data_end,
					     struct ballast_gue_second_chance **sc)
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
	if ((*version >> 6) == 0) {  /* variant 0: a GUE header */
		*sc = gue_second_chance(cur, data_end);
		if (!*sc)
			return 0;
		return tunnel_family((*sc)->proto);
	}
	if ((*version >> 4) == 4)
		return BALLAST_AF_INET;
	if ((*version >> 4) == 6)
		return BALLAST_AF_INET6;
	return 0;
}

/* Whether this host has a socket for the flow of @tuple (the packet's own
 * addresses and ports): established, in its handshake, or in TIME_WAIT;
 * a listener alone is none. */
static __always_inline int host_has_flow(struct xdp_md *ctx, struct bpf_sock_tuple *tuple,
					 __u32 len)
{
	struct bpf_sock *sk = bpf_skc_lookup_tcp(ctx, tuple, len, BPF_F_CURRENT_NETNS, 0);
	int have;

	if (!sk)
		return 0;
	have = sk->state != BPF_TCP_LISTEN;
	bpf_sk_release(sk);
	return have;
}

/*
 * send_on - the second chance: the packet as it came, but to @sc's previous
 * backend (the outer destination, the frame's MACs) and with no hop left,
 * out of the interface the kernel's FIB names. When the FIB has no MAC for
 * the next hop yet, the kernel routes the rewritten packet itself (its
 * neighbour lookup fills the table for the next ones).
 */
static __always_inline int send_on(struct xdp_md *ctx, struct ethhdr *eth, void *outer,
				   __be16 proto, struct ballast_gue_second_chance *sc,
				   __u32 bytes)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct bpf_fib_lookup fib = {};
	int rc;

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = outer;
		__be32 old;

		if ((void *)(iph + 1) > data_end || sc->family != BALLAST_AF_INET)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		old = iph->daddr;
		iph->daddr = sc->prev.v4;
		iph->check = csum_fold32(bpf_csum_diff(&old, 4, &iph->daddr, 4,
						       ~(__u32)iph->check & 0xffff));
		fib.family = AF_INET;
		fib.ipv4_src = iph->saddr;
		fib.ipv4_dst = iph->daddr;
		fib.tot_len = bpf_ntohs(iph->tot_len);
	} else {
		struct ipv6hdr *ip6 = outer;

		if ((void *)(ip6 + 1) > data_end || sc->family != BALLAST_AF_INET6)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		__builtin_memcpy(&ip6->daddr, sc->prev.v6, 16);
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, &ip6->saddr, 16);
		__builtin_memcpy(fib.ipv6_dst, &ip6->daddr, 16);
		fib.tot_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	}
	sc->hops = 0;
	fib.ifindex = ctx->ingress_ifindex;
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS)
		return counted_as(BALLAST_DECAP_SECOND_CHANCE_TO_KERNEL, bytes, XDP_PASS);
	__builtin_memcpy(eth->h_dest, fib.dmac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, fib.smac, ETH_ALEN);
	if (fib.ifindex == ctx->ingress_ifindex)
		return counted_as(BALLAST_DECAP_SECOND_CHANCE_FORWARDED, bytes, XDP_TX);
	return counted_as(BALLAST_DECAP_SECOND_CHANCE_FORWARDED, bytes,
			  bpf_redirect(fib.ifindex, 0));
}

SEC("xdp.frags")
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
	struct ballast_gue_second_chance *sc = NULL;
	struct bpf_sock_tuple tuple = {};
	__u32 tuple_len = 0;
	struct tcphdr *tcp;
	__u8 l4, family, inner_l4;
	__u32 done = BALLAST_DECAP_DECAPPED;
	__u32 strip;
	int parsed;

	if (parse_ethhdr(&cur, data_end, &eth, &proto))
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	outer = cur.pos;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph;

		parsed = parse_iphdr(&cur, data_end, &iph);
		if (parsed < 0)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		if (parsed == PARSE_PAST_FIRST_BUFFER) {
			/* Past the first buffer (a multi-buffer frame, or a
			 * truncated one): the whole frame must hold the packet. */
			bytes = whole_frame_len(ctx);
			if ((__u32)(outer - data) + bpf_ntohs(iph->tot_len) > bytes)
				return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		}
		/* A fragmented tunnel packet is the kernel's to reassemble. */
		if (ipv4_is_fragment(iph))
			return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
		outer_end = outer + bpf_ntohs(iph->tot_len);
		l4 = iph->protocol;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6;

		parsed = parse_ipv6hdr(&cur, data_end, &ip6);
		if (parsed < 0)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		if (parsed == PARSE_PAST_FIRST_BUFFER) {
			bytes = whole_frame_len(ctx);
			if ((__u32)(cur.pos - data) + bpf_ntohs(ip6->payload_len) > bytes)
				return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		}
		outer_end = cur.pos + bpf_ntohs(ip6->payload_len);
		l4 = ip6->nexthdr;
	} else {
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);
	}

	family = tunnel_family(l4);
	if (!family && l4 == IPPROTO_UDP)
		family = gue_inner_family(&cur, data_end, &sc);
	if (!family)
		return counted(BALLAST_DECAP_PASS_NOT_ENCAP, bytes);

	inner = cur.pos;
	key.family = family;
	if (family == BALLAST_AF_INET) {
		struct iphdr *iph;

		/* Past the first buffer is fine: inside the outer packet, which
		 * the whole frame holds, is what counts. */
		if (parse_iphdr(&cur, data_end, &iph) < 0 ||
		    inner + bpf_ntohs(iph->tot_len) > outer_end)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		key.addr.v4 = iph->daddr;
		inner_l4 = ipv4_is_fragment(iph) ? 0 : iph->protocol;
		tuple.ipv4.saddr = iph->saddr;
		tuple.ipv4.daddr = iph->daddr;
		tuple_len = sizeof(tuple.ipv4);
	} else {
		struct ipv6hdr *ip6;

		if (parse_ipv6hdr(&cur, data_end, &ip6) < 0 ||
		    inner + sizeof(*ip6) + bpf_ntohs(ip6->payload_len) > outer_end)
			return counted(BALLAST_DECAP_PASS_MALFORMED, bytes);
		__builtin_memcpy(key.addr.v6, &ip6->daddr, 16);
		inner_l4 = ip6->nexthdr;  /* extension headers: not followed */
		__builtin_memcpy(tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(tuple.ipv6.daddr, &ip6->daddr, 16);
		tuple_len = sizeof(tuple.ipv6);
	}
	if (!bpf_map_lookup_elem(&decap_vips, &key))
		return counted(BALLAST_DECAP_PASS_NOT_LOCAL_VIP, bytes);

	/* Second chance: a TCP packet without SYN whose flow this host has no
	 * socket for goes on to the previous backend. */
	if (sc && sc->hops && inner_l4 == IPPROTO_TCP && !parse_tcphdr(&cur, data_end, &tcp) &&
	    !(tcp->syn && !tcp->ack)) {
		if (family == BALLAST_AF_INET) {
			tuple.ipv4.sport = tcp->source;
			tuple.ipv4.dport = tcp->dest;
		} else {
			tuple.ipv6.sport = tcp->source;
			tuple.ipv6.dport = tcp->dest;
		}
		if (!host_has_flow(ctx, &tuple, tuple_len))
			return send_on(ctx, eth, outer, proto, sc, bytes);
		done = BALLAST_DECAP_SECOND_CHANCE_KEPT;  /* decapsulated here, below */
	}

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
	return counted(done, bytes);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
