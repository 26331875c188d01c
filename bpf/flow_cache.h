/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * flow_cache.h: the established-flow cache. Each CPU keeps a direct-mapped
 * copy of the connection-table entries of the flows it forwards
 * (flow_cache, BALLAST_FLOW_CACHE_SIZE 64-byte slots), so that an
 * established packet finds its backend with inlined array lookups instead
 * of the kernel's LRU-hash lookup, the largest cost left on that path
 * (docs/dataplane.md, "Where the time goes").
 *
 * The connection table stays the truth; a slot only ever repeats what it
 * said. A slot answers when:
 *   - it holds this flow (the whole 40-byte key);
 *   - flow_epochs[slot] is what it was when the slot was filled: the
 *     program raises it after every connection-table write of a flow in
 *     that slot, on any CPU (a SYN that re-selects, a flow whose backend
 *     left), so no CPU keeps a choice another CPU has replaced;
 *   - it was checked against the table less than
 *     BALLAST_FLOW_CACHE_CHECK_NS ago. The periodic table lookup keeps
 *     an active flow's entry marked as used in the LRU, and conn_touch
 *     its last_seen_ns fresh.
 * The backend and VIP checks after a hit are the same as after a table
 * lookup (select.h, established_cached), so a backend that left or a VIP id
 * that changed is seen on the very next packet. Only writes the program
 * makes raise the epochs: ballastd never writes the connection table; a
 * tool that does must raise flow_epochs too.
 */
#ifndef BALLAST_FLOW_CACHE_H
#define BALLAST_FLOW_CACHE_H

#include "maps.h"

/* Set to 0 before load to run without the cache (the bench measures both). */
const volatile __u32 flow_cache_enabled = 1;

/* Where a flow lives in this CPU's cache. */
struct flow_cache_ref {
	struct ballast_flow_cache_slot *slot;  /* NULL: cache off */
	__u32 *epoch;                          /* flow_epochs[slot] */
	__u32 epoch_seen;  /* *epoch before the connection table was read */
};

/*
 * Both helpers below read the key field by field, each with the width it
 * was written with: the parser has just stored it, and a wider load that
 * spans several narrower stores cannot be forwarded from the store buffer
 * (it stalls until they reach the cache, about 12 cycles each here).
 */

/* The slot index of @flow: a multiplicative hash of its fields. Cheaper
 * than flow_hash (jhash), and a collision costs only a table lookup. For
 * an IPv4 flow the address words past the first are zero. */
static __always_inline __u32 flow_cache_index(const struct ballast_flow_key *flow)
{
	__u32 src = flow->src.v6[0], dst = flow->dst.v6[0], mix;

	if (flow->family != BALLAST_AF_INET) {
		src ^= flow->src.v6[1] ^ flow->src.v6[2] ^ flow->src.v6[3];
		dst ^= flow->dst.v6[1] ^ flow->dst.v6[2] ^ flow->dst.v6[3];
	}
	mix = src * 0x9e3779b1u ^ dst;
	mix = mix * 0x9e3779b1u ^ ((__u32)flow->sport << 16 | flow->dport);
	mix = (mix ^ (flow->proto | (__u32)flow->family << 8)) * 0x9e3779b1u;
	return mix >> (32 - BALLAST_FLOW_CACHE_BITS);
}

/* True when the slot's key @cached is @flow. An IPv4 key's address words
 * past the first and its padding are zero in both (keys start zeroed). */
static __always_inline int flow_key_equal(const struct ballast_flow_key *cached,
					  const struct ballast_flow_key *flow)
{
	if (cached->family != flow->family || cached->proto != flow->proto ||
	    cached->sport != flow->sport || cached->dport != flow->dport ||
	    cached->src.v6[0] != flow->src.v6[0] || cached->dst.v6[0] != flow->dst.v6[0])
		return 0;
	if (flow->family == BALLAST_AF_INET)
		return 1;
	return cached->src.v6[1] == flow->src.v6[1] && cached->src.v6[2] == flow->src.v6[2] &&
	       cached->src.v6[3] == flow->src.v6[3] && cached->dst.v6[1] == flow->dst.v6[1] &&
	       cached->dst.v6[2] == flow->dst.v6[2] && cached->dst.v6[3] == flow->dst.v6[3];
}

/*
 * flow_cache_locate - this CPU's slot for @flow, and its epoch now. Call
 * before reading or writing the flow's connection-table entry.
 */
static __always_inline void flow_cache_locate(const struct ballast_flow_key *flow,
					      struct flow_cache_ref *ref)
{
	__u32 index = flow_cache_index(flow);

	ref->slot = NULL;
	if (!flow_cache_enabled)
		return;
	ref->epoch = bpf_map_lookup_elem(&flow_epochs, &index);
	if (!ref->epoch)
		return;
	ref->slot = bpf_map_lookup_elem(&flow_cache, &index);
	ref->epoch_seen = *(volatile __u32 *)ref->epoch;
}

/*
 * flow_cache_hit - the slot, when it holds @flow as the connection table
 * last had it and was checked against the table at most
 * BALLAST_FLOW_CACHE_CHECK_NS before @now_ns.
 * Returns: the slot, or NULL.
 */
static __always_inline struct ballast_flow_cache_slot *
flow_cache_hit(const struct flow_cache_ref *ref, const struct ballast_flow_key *flow,
	       __u64 now_ns)
{
	struct ballast_flow_cache_slot *slot = ref->slot;

	if (!slot || slot->epoch != ref->epoch_seen || !flow_key_equal(&slot->flow, flow) ||
	    now_ns - slot->checked_ns > BALLAST_FLOW_CACHE_CHECK_NS)
		return NULL;
	return slot;
}

/* Fill the slot with what the connection table says for @flow, as of
 * epoch @epoch. */
static __always_inline void flow_cache_fill(const struct flow_cache_ref *ref,
					    const struct ballast_flow_key *flow,
					    __u32 backend_id, __u32 hash, __u32 epoch,
					    __u64 now_ns)
{
	struct ballast_flow_cache_slot *slot = ref->slot;

	if (!slot)
		return;
	__builtin_memcpy(&slot->flow, flow, sizeof(slot->flow));
	slot->backend_id = backend_id;
	slot->hash = hash;
	slot->epoch = epoch;
	slot->checked_ns = now_ns;
}

/*
 * flow_cache_written - after the program wrote @ref's flow's
 * connection-table entry: every CPU's copy of a flow in this slot is stale
 * from now on.
 * Returns: the epoch this CPU may fill its own slot with: the new one when
 * no other write came between flow_cache_locate and here, else one that is
 * already stale (the next packet reads the table again).
 */
static __always_inline __u32 flow_cache_written(const struct flow_cache_ref *ref)
{
	__u32 now;

	if (!ref->slot)
		return 0;
	__sync_fetch_and_add(ref->epoch, 1);
	now = *(volatile __u32 *)ref->epoch;
	/* Another write raised it too: whichever entry the table holds now,
	 * ours may not be it. A write that lands after this read raises the
	 * epoch again, which makes the slot stale then. */
	return now == ref->epoch_seen + 1 ? now : ref->epoch_seen;
}

#endif /* BALLAST_FLOW_CACHE_H */
