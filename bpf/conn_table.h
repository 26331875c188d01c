/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conn_table.h: the connection table, read and written by the data plane
 * alone (ballastd only reads it). Layout in ballast_abi.h; where a flow
 * lives in conn_hash.h; the design and its measurements in
 * docs/dataplane.md, "The connection table".
 *
 * Why not the kernel's LRU hash: its lookup walks a bucket list to a
 * separately allocated 120-byte element (a cache miss or two once the
 * table is out of cache), and every insert takes the LRU's shared lists
 * (134 ns here, and an eviction far more). Here a lookup reads one cache
 * line (two when the flow sits in its second bucket, or has no entry),
 * inlined array lookups and no call into the kernel; an insert is three
 * stores into a line already read, at the same cost whether the table is
 * empty or full.
 *
 * Replacement, and the SYN-flood guard: a new flow takes, in its two
 * buckets, an empty way (conn_place says which); else the way of an unconfirmed flow (recorded by
 * one packet and never seen again: a spoofed SYN, a lost handshake), the
 * oldest first; else the way of a confirmed flow idle for longer than
 * BALLAST_CONN_PROTECT_NS, the oldest first; else none: the flow is
 * forwarded by the Maglev table alone, which gives it the same backend for
 * as long as the table stays as it is. So a flood of new flows, however
 * fast, never takes the entry of a connection that is in use; what each
 * new flow got is counted in conn_stats.
 *
 * Concurrency: CPUs read and write buckets without locks. The tag (the
 * fingerprint and the backend id) is one 64-bit word, read once and
 * written last, so a reader sees a whole old way or a whole new one. Two
 * CPUs recording flows into the same way at once leave one of them
 * unrecorded: its next packet records it again.
 */
#ifndef BALLAST_CONN_TABLE_H
#define BALLAST_CONN_TABLE_H

#include "maps.h"
#include "conn_hash.h"

/* Where a flow's way is or may go, from its conn hash. */
struct conn_ref {
	struct ballast_conn_bucket *a;  /* first bucket; NULL: none */
	struct ballast_conn_bucket *b;  /* second bucket, once looked at */
	__u32 b_index;
	__u64 fp;                       /* fingerprint (tag bits 16-63) */
};

/* What conn_find found. */
struct conn_hit {
	struct ballast_conn_way *way;  /* NULL: the flow has no way */
	__u32 backend_id;              /* from the tag as read */
};

static __always_inline void conn_locate(const struct ballast_flow_key *flow, struct conn_ref *ref)
{
	__u64 hash = ballast_conn_hash(flow);
	__u32 index = ballast_conn_bucket_a(hash);

	ref->fp = ballast_conn_fingerprint(hash);
	ref->b_index = ballast_conn_bucket_b(hash);
	ref->a = bpf_map_lookup_elem(&conn_table, &index);
	ref->b = NULL;
}

/* The second bucket, looked up on first use. */
static __always_inline struct ballast_conn_bucket *conn_second(struct conn_ref *ref)
{
	if (!ref->b)
		ref->b = bpf_map_lookup_elem(&conn_table, &ref->b_index);
	return ref->b;
}

/* The way in @bucket whose fingerprint is @fp, if any. */
static __always_inline int conn_find_in(struct ballast_conn_bucket *bucket, __u64 fp,
					struct conn_hit *hit)
{
	if (!bucket)
		return 0;
#pragma unroll
	for (int i = 0; i < BALLAST_CONN_WAYS; i++) {
		__u64 tag = *(volatile __u64 *)&bucket->way[i].tag;

		if ((tag & BALLAST_CONN_FP_MASK) == fp) {
			hit->way = &bucket->way[i];
			hit->backend_id = (__u32)(tag & BALLAST_CONN_ID_MASK);
			return 1;
		}
	}
	return 0;
}

/*
 * conn_find - @flow's way: its first bucket, then its second.
 * Returns: 1 and @hit filled, or 0 (@hit->way NULL). @ref is filled either
 * way, for a conn_record that follows.
 */
static __always_inline int conn_find(const struct ballast_flow_key *flow, struct conn_ref *ref,
				     struct conn_hit *hit)
{
	hit->way = NULL;
	conn_locate(flow, ref);
	if (conn_find_in(ref->a, ref->fp, hit))
		return 1;
	return conn_find_in(conn_second(ref), ref->fp, hit);
}

static __always_inline __u32 conn_units(__u64 now_ns)
{
	return (__u32)(now_ns >> BALLAST_CONN_SEEN_SHIFT);
}

/* A way's age in units at @now (ballast_conn_age_units). */
static __always_inline __u32 conn_age(const struct ballast_conn_way *way, __u32 now)
{
	return ballast_conn_age_units(way->seen, now);
}

/*
 * conn_touch - a packet after the first found @way at @now_ns: it is
 * confirmed, and its seen is refreshed when older than
 * BALLAST_CONN_TOUCH_NS. Each write happens once per flow or per touch
 * interval, not per packet.
 */
static __always_inline void conn_touch(struct ballast_conn_way *way, __u64 now_ns)
{
	__u32 now = conn_units(now_ns);

	/* A seen ahead of ours (another CPU's fresher clock) is left as is. */
	if (conn_age(way, now) > (__u32)(BALLAST_CONN_TOUCH_NS >> BALLAST_CONN_SEEN_SHIFT))
		way->seen = now;
	if (!(way->flags & BALLAST_CONN_F_CONFIRMED))
		way->flags |= BALLAST_CONN_F_CONFIRMED;
}

/* How a new flow got its way (conn_stats, ballast_conn_counters). */
enum conn_placement {
	CONN_RECORDED,
	CONN_REPLACED_EMBRYONIC,
	CONN_REPLACED_IDLE,
	CONN_UNRECORDED,
};

/* @bucket's first empty way (NULL: none) and how many are empty. */
static __always_inline __u32 conn_empty_ways(struct ballast_conn_bucket *bucket,
					     struct ballast_conn_way **first)
{
	__u32 empty = 0;

	*first = NULL;
	if (!bucket)
		return 0;
#pragma unroll
	for (int i = 0; i < BALLAST_CONN_WAYS; i++) {
		if (*(volatile __u64 *)&bucket->way[i].tag)
			continue;
		if (!empty)
			*first = &bucket->way[i];
		empty++;
	}
	return empty;
}

/*
 * conn_victim - the way of full @bucket a new flow may take, if better than
 * *@best (score *@best_score). Score: unconfirmed ways above confirmed idle
 * ones, older above newer; confirmed ways seen within the guard are never
 * candidates.
 */
static __always_inline void conn_victim(struct ballast_conn_bucket *bucket, __u32 now,
					struct ballast_conn_way **best, __u64 *best_score,
					int *placement)
{
	const __u32 protect = (__u32)(BALLAST_CONN_PROTECT_NS >> BALLAST_CONN_SEEN_SHIFT);

	if (!bucket)
		return;
#pragma unroll
	for (int i = 0; i < BALLAST_CONN_WAYS; i++) {
		struct ballast_conn_way *way = &bucket->way[i];
		__u32 age = conn_age(way, now);
		__u64 score;

		if (way->flags & BALLAST_CONN_F_CONFIRMED) {
			if (age <= protect)
				continue;
			score = age;
		} else {
			score = (1ull << 32) + age;
		}
		if (score >= *best_score) {
			*best = way;
			*best_score = score;
			*placement = (way->flags & BALLAST_CONN_F_CONFIRMED) ? CONN_REPLACED_IDLE
									      : CONN_REPLACED_EMBRYONIC;
		}
	}
}

/*
 * conn_place - the way a flow without one takes (NULL: none), and how
 * (enum conn_placement). An empty way of the first bucket while it has two
 * or more; else of the bucket with more empty ways (the first on a tie):
 * the first bucket keeps most flows, so most lookups read one line, and
 * the second takes the overflow before either fills (bench_scaling, 1M
 * flows in 2M ways: 8.9% in their second bucket, 0.02% find both full;
 * docs/dataplane.md). With both full, the replacement rule.
 */
static __always_inline struct ballast_conn_way *conn_place(struct conn_ref *ref, __u32 now,
							   int *placement)
{
	struct ballast_conn_way *empty_a, *empty_b, *way = NULL;
	__u32 free_a = conn_empty_ways(ref->a, &empty_a), free_b;
	__u64 best_score = 0;

	*placement = CONN_RECORDED;
	if (free_a >= 2)
		return empty_a;
	free_b = conn_empty_ways(conn_second(ref), &empty_b);
	if (free_b > free_a)
		return empty_b;
	if (free_a)
		return empty_a;
	*placement = CONN_UNRECORDED;
	conn_victim(ref->a, now, &way, &best_score, placement);
	conn_victim(ref->b, now, &way, &best_score, placement);
	return way;
}

static __always_inline void count_conn(int placement)
{
	struct ballast_conn_counters *c;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&conn_stats, &zero);
	if (!c)
		return;
	if (placement == CONN_RECORDED)
		c->recorded++;
	else if (placement == CONN_REPLACED_EMBRYONIC)
		c->replaced_embryonic++;
	else if (placement == CONN_REPLACED_IDLE)
		c->replaced_idle++;
	else
		c->unrecorded++;
}

/*
 * conn_record - records @backend_id as @flow's backend at @now_ns: in the
 * flow's own way when it has one (conn_find just filled @ref and @hit),
 * else in the way the replacement rule gives (counted in conn_stats).
 * @syn: the packet is a SYN, which starts the flow again (unconfirmed); a
 * flow re-placed for another reason (its backend left) keeps its state.
 */
static __always_inline void conn_record(struct conn_ref *ref, const struct conn_hit *hit,
					__u32 backend_id, __u64 now_ns, int syn)
{
	struct ballast_conn_way *way = hit->way;
	__u32 now = conn_units(now_ns);
	int placement;
	__u32 flags = 0;

	if (way) {
		flags = syn ? 0 : way->flags;
	} else {
		way = conn_place(ref, now, &placement);
		count_conn(placement);
		if (!way)
			return;
	}
	way->seen = now;
	way->flags = flags;
	*(volatile __u64 *)&way->tag = ref->fp | backend_id;
}

#endif /* BALLAST_CONN_TABLE_H */
