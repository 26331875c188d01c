/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * select.h: choosing a packet's backend. Established flows keep the backend
 * recorded in the connection table; new flows (and TCP SYNs, so that a
 * reused 5-tuple follows the current table) take the VIP's Maglev entry for
 * the flow's hash.
 */
#ifndef BALLAST_SELECT_H
#define BALLAST_SELECT_H

#include "maps.h"
#include "jhash.h"
#include "conn_table.h"

/*
 * flow_hash - the flow's hash: the Maglev table index is this mod its size,
 * and the encapsulating modes take the outer source port and address bits
 * from it. Only the words that carry the flow are hashed, with the protocol
 * as the seed: an IPv4 flow's addresses and ports (3 words), an IPv6 flow's
 * (9 words, the key's first 36 bytes), not the whole 40-byte key with its
 * zero padding: jhash costs per word (docs/benchmarks.md, "Where the time
 * goes"). Ports sit side by side in the key, so one 32-bit word holds both.
 */
static __always_inline __u32 flow_hash(const struct ballast_flow_key *flow)
{
	__u32 ports = *(const __u32 *)&flow->sport;

	if (flow->family == BALLAST_AF_INET) {
		__u32 words[3] = { flow->src.v4, flow->dst.v4, ports };

		return ballast_jhash2(words, 3, flow->proto);
	}
	return ballast_jhash2((const __u32 *)flow, 9, flow->proto);
}

/*
 * coarse_now_ns - CLOCK_MONOTONIC_COARSE, read through a per-CPU copy that
 * is refreshed when the tick (jiffies) moves. The coarse clock itself only
 * moves at a tick, so the copy is as fresh as the helper, and an
 * established packet pays for bpf_jiffies64() (a few ns) instead of
 * bpf_ktime_get_coarse_ns() (about 20 ns where every kernel return goes
 * through a mitigation thunk, as on this AMD host).
 */
static __always_inline __u64 coarse_now_ns(void)
{
	struct ballast_clock_cache *cache;
	__u32 zero = 0;
	__u64 jiffies = bpf_jiffies64();

	cache = bpf_map_lookup_elem(&clock_cache, &zero);
	if (!cache)
		return bpf_ktime_get_coarse_ns();
	if (cache->jiffies != jiffies || !cache->coarse_ns) {
		cache->coarse_ns = bpf_ktime_get_coarse_ns();
		cache->jiffies = jiffies;
	}
	return cache->coarse_ns;
}

/* True when backend slot @be may receive traffic for VIP @vip_id. */
static __always_inline int backend_is_usable(const struct ballast_backend *be,
					     __u32 vip_id)
{
	return be && (be->flags & BALLAST_BACKEND_F_ACTIVE) && be->vip_id == vip_id;
}

/*
 * maglev_pick - the backend id the VIP's Maglev table gives flow hash @hash.
 * Returns: a backend id, or BALLAST_NO_BACKEND when the VIP has no table or
 * the table has no backend (every weight 0).
 */
static __always_inline __u32 maglev_pick_in(void *tables, __u32 vip_id, __u32 hash)
{
	__u32 index, *entry;
	void *table;

	table = bpf_map_lookup_elem(tables, &vip_id);
	if (!table)
		return BALLAST_NO_BACKEND;
	index = hash % BALLAST_MAGLEV_SIZE;
	entry = bpf_map_lookup_elem(table, &index);
	if (!entry)
		return BALLAST_NO_BACKEND;
	return *entry;
}

/* The backend id VIP @vip_id's table gives @hash, or BALLAST_NO_BACKEND. */
static __always_inline __u32 maglev_pick(__u32 vip_id, __u32 hash)
{
	return maglev_pick_in(&maglev_tables, vip_id, hash);
}

/* What select_backend chose. */
struct selection {
	struct ballast_backend *be;  /* NULL: the VIP has no usable backend */
	__u32 backend_id;
	__u32 hash;      /* the flow's hash, when hashed (flow_hash) */
	int hashed;      /* hash is set: the Maglev table chose, or
			  * selection_hash computed it */
	int new_flow;    /* 1 when the Maglev table chose */
	int pickup;      /* set by the caller: a TCP packet without SYN that
			  * found no entry (vip_fleet_stats) */
	/* Second chance: the flow's previous backend (another than be), set
	 * by the caller; NULL for none. */
	struct ballast_backend *prev;
};

/* True when vip_by_id entry @e is the VIP @flow is addressed to. */
static __always_inline int vip_entry_matches(const struct ballast_vip_entry *e,
					     const struct ballast_flow_key *flow)
{
	return e->key.port == flow->dport && e->key.proto == flow->proto &&
	       e->key.family == flow->family && e->key.addr.v6[0] == flow->dst.v6[0] &&
	       e->key.addr.v6[1] == flow->dst.v6[1] && e->key.addr.v6[2] == flow->dst.v6[2] &&
	       e->key.addr.v6[3] == flow->dst.v6[3];
}

/*
 * serving_vip - the VIP whose flow @flow is, when backend slot @be (active)
 * serves it: the slot's vip_id -> vip_by_id (array), whose key must be the
 * packet's destination. A reused id, a missing entry or a VIP that ignores
 * the source port (its flows are keyed without it) gives NULL.
 */
static __always_inline struct ballast_vip_info *
serving_vip(const struct ballast_backend *be, const struct ballast_flow_key *flow)
{
	struct ballast_vip_entry *e;
	__u32 vip_id = be->vip_id;

	e = bpf_map_lookup_elem(&vip_by_id, &vip_id);
	if (!e || e->info.vip_id != vip_id || !vip_entry_matches(e, flow) ||
	    (e->info.flags & BALLAST_VIP_F_NO_SRC_PORT))
		return NULL;
	return &e->info;
}

/* Backend slot @id when it is in use and active. */
static __always_inline struct ballast_backend *active_backend(__u32 id)
{
	struct ballast_backend *be = bpf_map_lookup_elem(&backends, &id);

	if (!be || !(be->flags & BALLAST_BACKEND_F_ACTIVE))
		return NULL;
	return be;
}

/*
 * An established flow's VIP and backend, found from its connection-table
 * entry alone: the way (one cache line) -> backend slot (array) ->
 * serving_vip (array). That skips the vips hash lookup, most of what an
 * established packet would otherwise cost (docs/benchmarks.md, "Where the
 * time goes"), and gives exactly what the vips-first path would: the
 * entry's backend serves the VIP that owns this destination now. Anything
 * else (no entry, the backend left, the id now names another VIP, a VIP
 * that ignores the source port) returns NULL and the packet takes the full
 * path.
 */

/* established_in_table's @no_usable_entry: why it found nothing usable. */
enum conn_miss {
	CONN_MAYBE_USABLE = 0,  /* an entry, whose VIP the full path checks */
	CONN_BACKEND_LEFT = 1,  /* an entry whose backend is no longer active */
	CONN_NONE = 2,          /* no entry at all (a mid-flow pick-up for TCP) */
};

/*
 * @no_usable_entry (enum conn_miss) is non-zero when the flow has no entry
 * or its backend is no longer active: the full path's own lookup would find
 * the same, so it need not look again.
 * Returns: the VIP's info (and @sel filled) from the connection table.
 */
static __always_inline struct ballast_vip_info *
established_in_table(const struct ballast_flow_key *flow, __u64 now_ns, struct selection *sel,
		     int *no_usable_entry)
{
	struct ballast_vip_info *info;
	struct ballast_backend *be;
	struct conn_hit hit;
	struct conn_ref ref;

	*no_usable_entry = CONN_NONE;
	if (!conn_find(flow, &ref, &hit))
		return NULL;
	*no_usable_entry = CONN_BACKEND_LEFT;
	be = active_backend(hit.backend_id);
	if (!be)
		return NULL;
	/* From here the entry may be usable by the VIP that vips names. */
	*no_usable_entry = CONN_MAYBE_USABLE;
	info = serving_vip(be, flow);
	if (!info)
		return NULL;
	conn_touch(hit.way, now_ns);
	sel->be = be;
	sel->backend_id = hit.backend_id;
	sel->new_flow = 0;
	return info;
}

/* How select_backend may use the connection table. */
enum select_conn {
	SELECT_TRACK,   /* look up; record a new choice (TCP/UDP packets) */
	SELECT_FRESH,   /* skip the lookup (a SYN, or the caller's lookup found
			 * nothing usable); record the choice */
	SELECT_LOOKUP,  /* look up, record nothing (ICMP errors) */
	SELECT_PEEK,    /* skip the lookup, record nothing: the caller records
			 * the choice (record_choice) or not */
	SELECT_NONE,    /* the Maglev table only (fragments: stateless) */
};

/* Records @sel's choice for @flow (@syn: the packet is a SYN), when the
 * caller decided after a SELECT_PEEK. */
static __always_inline void record_choice(const struct ballast_flow_key *flow,
					  const struct selection *sel, int syn)
{
	struct conn_hit hit;
	struct conn_ref ref;

	conn_find(flow, &ref, &hit);
	conn_record(&ref, &hit, sel->backend_id, coarse_now_ns(), syn);
}

/*
 * select_backend - the backend for a packet of @flow to VIP @vip_id.
 * @how: enum select_conn. @syn: the packet is a TCP SYN.
 */
static __always_inline struct selection select_backend(__u32 vip_id,
						       const struct ballast_flow_key *flow,
						       int how, int syn)
{
	struct selection sel = {};
	struct conn_hit hit = {};
	struct conn_ref ref = {};
	int looked = 0;
	__u32 id;

	if (how == SELECT_TRACK || how == SELECT_LOOKUP) {
		looked = 1;
		if (conn_find(flow, &ref, &hit)) {
			id = hit.backend_id;
			sel.be = bpf_map_lookup_elem(&backends, &id);
			if (backend_is_usable(sel.be, vip_id)) {
				if (how == SELECT_TRACK)
					conn_touch(hit.way, coarse_now_ns());
				sel.backend_id = id;
				return sel;
			}
			/* Its backend left: re-select below, as a new flow. */
		}
	}

	sel.hash = flow_hash(flow);
	sel.hashed = 1;
	id = maglev_pick(vip_id, sel.hash);
	sel.be = NULL;
	if (id == BALLAST_NO_BACKEND)
		return sel;
	sel.be = bpf_map_lookup_elem(&backends, &id);
	if (!backend_is_usable(sel.be, vip_id)) {
		sel.be = NULL;
		return sel;
	}
	sel.backend_id = id;
	sel.new_flow = how == SELECT_TRACK || how == SELECT_FRESH || how == SELECT_PEEK;
	if (how == SELECT_TRACK || how == SELECT_FRESH) {
		if (!looked)
			conn_find(flow, &ref, &hit);
		conn_record(&ref, &hit, id, coarse_now_ns(), syn);
	}
	return sel;
}

/* The flow's hash for the encapsulating modes (outer source port, address
 * bits, flow label): computed here for an established flow, whose entry
 * does not keep it. */
static __always_inline __u32 selection_hash(struct selection *sel,
					    const struct ballast_flow_key *flow)
{
	if (!sel->hashed) {
		sel->hash = flow_hash(flow);
		sel->hashed = 1;
	}
	return sel->hash;
}

/*
 * previous_backend - second chance: the backend VIP @vip_id's previous table
 * gives @sel's flow, when it is another than @sel's and still a slot of the
 * VIP of the same family (a removed backend's slot is free or another's);
 * NULL otherwise, and while the VIP has no previous table.
 */
static __always_inline struct ballast_backend *previous_backend(__u32 vip_id,
								const struct selection *sel)
{
	struct ballast_backend *be;
	__u32 id = maglev_pick_in(&maglev_prev_tables, vip_id, sel->hash);

	if (id == BALLAST_NO_BACKEND || id == sel->backend_id)
		return NULL;
	be = bpf_map_lookup_elem(&backends, &id);
	if (!be || be->vip_id != vip_id || be->family != sel->be->family)
		return NULL;
	return be;
}

#endif /* BALLAST_SELECT_H */
