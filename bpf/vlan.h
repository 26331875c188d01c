/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * vlan.h: is this frame VLAN-tagged? Two places hold the tag.
 *
 * In the frame: an 802.1Q/802.1ad EtherType, when nothing took the tag out
 * (BPF_PROG_TEST_RUN, a NIC without VLAN offload).
 *
 * In the frame's metadata: NICs and veth strip the outer tag before XDP
 * runs (RX VLAN offload; a bridge or veth keeps it beside the frame), so the
 * bytes show an untagged IP packet. Sent on with XDP_TX it would leave
 * untagged, on the wrong network. The XDP metadata kfunc (Linux 6.8+) reads
 * that tag, but only in a program bound to the interface's device at load
 * time (ballastd binds it in native mode); in an unbound program (tests,
 * generic mode) the kernel answers -EOPNOTSUPP and only the in-frame check
 * is left. docs/dataplane.md says what that means for each attach mode.
 */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* Returns 0 and the tag's protocol and TCI when the device stripped one. */
extern int bpf_xdp_metadata_rx_vlan_tag(const struct xdp_md *ctx, __be16 *vlan_proto,
					__u16 *vlan_tci) __ksym;

/* True for 802.1Q and 802.1ad tagged frames. */
static __always_inline int eth_type_is_vlan(__be16 eth_proto)
{
	return eth_proto == bpf_htons(ETH_P_8021Q) || eth_proto == bpf_htons(ETH_P_8021AD);
}

/* True when the device took a VLAN tag out of this frame before XDP. */
static __always_inline int vlan_tag_stripped(struct xdp_md *ctx)
{
	__be16 proto;
	__u16 tci;

	return bpf_xdp_metadata_rx_vlan_tag(ctx, &proto, &tci) == 0;
}
