/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * conn_hash.h: where a flow lives in the connection table (ballast_abi.h,
 * bpf/conn_table.h): its 64-bit conn hash, the two buckets it may sit in
 * and the fingerprint its way carries. Free of BPF helpers, so that
 * ballastd, the tests and the benches find a flow's way exactly as the
 * data plane does.
 *
 * The hash is a multiply-xorshift mix (MurmurHash3's 64-bit finalizer)
 * over the flow's words: a few ns where jhash takes ~10, and every output
 * bit depends on every input bit, so the bucket bits and the fingerprint
 * bits are as good as independent. It is not the Maglev hash (select.h,
 * flow_hash): that one is shared with other balancers of the fleet and
 * must stay jhash; this one never leaves the host.
 */
#ifndef BALLAST_CONN_HASH_H
#define BALLAST_CONN_HASH_H

#include <linux/types.h>
#include "ballast_abi.h"

static inline __u64 ballast_conn_mix(__u64 x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/*
 * ballast_conn_hash - @flow's conn hash. The fields are read with the widths
 * the parser stores them with (a wider load over narrower stores waits for
 * them to reach the cache). An IPv4 flow's address words past the first are
 * zero and skipped.
 */
static inline __u64 ballast_conn_hash(const struct ballast_flow_key *flow)
{
	__u64 ports = (__u64)flow->sport << 16 | flow->dport;
	__u64 tail = ports << 32 | (__u32)flow->proto << 8 | flow->family;
	__u64 h;

	h = ballast_conn_mix(((__u64)flow->src.v6[0] << 32 | flow->dst.v6[0]) ^ tail);
	if (flow->family != BALLAST_AF_INET) {
		h = ballast_conn_mix(h ^ ((__u64)flow->src.v6[1] << 32 | flow->src.v6[2]));
		h = ballast_conn_mix(h ^ ((__u64)flow->src.v6[3] << 32 | flow->dst.v6[1]));
		h = ballast_conn_mix(h ^ ((__u64)flow->dst.v6[2] << 32 | flow->dst.v6[3]));
	}
	/* The tail twice (first and last) so that no two fields cancel. */
	return ballast_conn_mix(h ^ tail * 0x9e3779b97f4a7c15ull);
}

/* The flow's first bucket: the hash's low bits. */
static inline __u32 ballast_conn_bucket_a(__u64 hash)
{
	return (__u32)hash & (BALLAST_CONN_BUCKETS - 1);
}

/* The flow's second bucket: the next bits, never the first bucket. */
static inline __u32 ballast_conn_bucket_b(__u64 hash)
{
	__u32 b = (__u32)(hash >> BALLAST_CONN_BUCKET_BITS) & (BALLAST_CONN_BUCKETS - 1);

	return b == ballast_conn_bucket_a(hash) ? b ^ 1 : b;
}

/* The fingerprint a way of the flow carries (tag bits 16-63, never 0). A
 * false match needs another flow to agree with this one on all 64 bits of
 * the hash (bucket bits and fingerprint together). */
static inline __u64 ballast_conn_fingerprint(__u64 hash)
{
	__u64 fp = hash & BALLAST_CONN_FP_MASK;

	return fp ? fp : 1ull << 16;
}

/* A seen at most this many units (1.07 s) ahead of a reader's clock is
 * another CPU's fresher copy of the coarse clock (select.h, coarse_now_ns):
 * age 0. */
#define BALLAST_CONN_AHEAD_UNITS 1024u

/*
 * ballast_conn_age_units - a way's age at clock @now (in seen's units),
 * modulo 2^32 units (52 days). A seen slightly ahead of @now is age 0,
 * not a wrapped 52 days that would make the most recently seen way look
 * the oldest.
 */
static inline __u32 ballast_conn_age_units(__u32 seen, __u32 now)
{
	__u32 age = now - seen;

	return age > 0u - BALLAST_CONN_AHEAD_UNITS ? 0 : age;
}

/* The same in ns, at coarse clock @now_ns, for readers of the table. */
static inline __u64 ballast_conn_age_ns(__u32 seen, __u64 now_ns)
{
	__u32 units = ballast_conn_age_units(seen, (__u32)(now_ns >> BALLAST_CONN_SEEN_SHIFT));

	return (__u64)units << BALLAST_CONN_SEEN_SHIFT;
}

#endif /* BALLAST_CONN_HASH_H */
