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

/* Hash of the whole flow key: the Maglev table index is this mod its size. */
static __always_inline __u32 flow_hash(const struct ballast_flow_key *flow)
{
	return ballast_jhash2((const __u32 *)flow, sizeof(*flow) / 4, 0);
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
static __always_inline __u32 maglev_pick(__u32 vip_id, __u32 hash)
{
	__u32 index, *entry;
	void *table;

	table = bpf_map_lookup_elem(&maglev_tables, &vip_id);
	if (!table)
		return BALLAST_NO_BACKEND;
	index = hash % BALLAST_MAGLEV_SIZE;
	entry = bpf_map_lookup_elem(table, &index);
	if (!entry)
		return BALLAST_NO_BACKEND;
	return *entry;
}

/* How select_backend may use the connection table. */
enum select_conn {
	SELECT_TRACK,   /* look up; record a new choice (TCP/UDP packets) */
	SELECT_SYN,     /* skip the lookup (a SYN); record the choice */
	SELECT_LOOKUP,  /* look up, record nothing (ICMP errors) */
	SELECT_NONE,    /* the Maglev table only (fragments: stateless) */
};

/* What select_backend chose. */
struct selection {
	struct ballast_backend *be;  /* NULL: the VIP has no usable backend */
	__u32 backend_id;
	__u32 hash;      /* the flow's hash (for the encapsulating modes) */
	int new_flow;    /* 1 when the Maglev table chose */
};

/*
 * select_backend - the backend for a packet of @flow to VIP @vip_id.
 * @how: enum select_conn.
 */
static __always_inline struct selection select_backend(__u32 vip_id,
						       const struct ballast_flow_key *flow,
						       int how)
{
	struct selection sel = {};
	struct ballast_conn *conn, fresh = {};
	__u32 id;

	if (how == SELECT_TRACK || how == SELECT_LOOKUP) {
		conn = bpf_map_lookup_elem(&conn_table, flow);
		if (conn) {
			id = conn->backend_id;
			sel.be = bpf_map_lookup_elem(&backends, &id);
			if (backend_is_usable(sel.be, vip_id)) {
				__u64 now = bpf_ktime_get_coarse_ns();

				/* Refresh rarely: a write per packet would dirty
				 * the entry's cache line on every CPU it visits. */
				if (how == SELECT_TRACK &&
				    now - conn->last_seen_ns > BALLAST_CONN_TOUCH_NS)
					conn->last_seen_ns = now;
				sel.backend_id = id;
				sel.hash = conn->hash;
				return sel;
			}
			/* Its backend left: re-select below, as a new flow. */
		}
	}

	sel.hash = flow_hash(flow);
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
	sel.new_flow = how == SELECT_TRACK || how == SELECT_SYN;
	if (sel.new_flow) {
		fresh.backend_id = id;
		fresh.hash = sel.hash;
		fresh.last_seen_ns = bpf_ktime_get_coarse_ns();
		/* A full table evicts its least recently used flow (LRU map). */
		bpf_map_update_elem(&conn_table, flow, &fresh, BPF_ANY);
	}
	return sel;
}

#endif /* BALLAST_SELECT_H */
