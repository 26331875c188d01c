// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * xdp_pass.bpf.c: passes every frame. Test and demo topologies attach it to
 * the peer of the balancer's veth: veth only delivers XDP_TX'd frames when
 * the peer has an XDP program (../shared/README.md).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
