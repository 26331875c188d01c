// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * flood_sink.bpf.c: where a flood forwarded by the balancer ends, cheaply.
 * tests/e2e/test_faults.py (the SYN flood) attaches it, in place of
 * xdp_pass, to the peer of the balancer's veth (the lb's bridge port), and
 * gives the flood's VIP one backend whose MAC is FLOOD_SINK_MAC, a MAC no
 * node owns. The balancer's XDP_TX of each flood frame lands here and is
 * dropped before it becomes an skb (veth counts it as rx_xdp_drops); every
 * other frame passes, as with xdp_pass (veth delivers XDP_TX only to a peer
 * running XDP), and goes on through the bridge to its backend.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

/* 02:ba:11:5e:00:01, locally administered: the test names it too. */
#define FLOOD_SINK_MAC_HI 0x02ba115eu /* first four bytes */
#define FLOOD_SINK_MAC_LO 0x0001u     /* last two */

SEC("xdp")
int flood_sink(struct xdp_md *ctx)
{
	void *data_end = (void *)(long)ctx->data_end;
	void *data = (void *)(long)ctx->data;
	struct ethhdr *eth = data;
	const __u8 *d;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	d = eth->h_dest;
	if (((__u32)d[0] << 24 | (__u32)d[1] << 16 | (__u32)d[2] << 8 | d[3]) == FLOOD_SINK_MAC_HI &&
	    ((__u32)d[4] << 8 | d[5]) == FLOOD_SINK_MAC_LO)
		return XDP_DROP;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
