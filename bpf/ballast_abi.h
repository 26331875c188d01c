/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * ballast_abi.h: every map key/value struct, enum and size shared by the XDP
 * program (bpf/) and ballastd (userspace/). One definition, included by both;
 * userspace static_asserts the sizes (userspace/dataplane/bpf_dataplane.h) so a layout change
 * cannot go unnoticed.
 *
 * Byte order: fields named with a __be type are in network byte order exactly
 * as they appear in packets; everything else is host order.
 *
 * Addresses are 16 bytes for both families (IPv4 in the first 4 bytes, the
 * rest zero) so that IPv6 needs no new key layouts.
 */
#ifndef BALLAST_ABI_H
#define BALLAST_ABI_H

#include <linux/types.h>

/* Maglev lookup table size per VIP: a prime, as the Maglev paper requires. */
#define BALLAST_MAGLEV_SIZE 65537

#define BALLAST_MAX_VIPS 16384
/* Backend slots are per (VIP, backend address): counters are per VIP too. */
#define BALLAST_MAX_BACKENDS 65536

/* Maglev table entry meaning "no backend" (the VIP has none with weight > 0). */
#define BALLAST_NO_BACKEND 0xffffffffu

enum ballast_family {
	BALLAST_AF_INET = 4,
	BALLAST_AF_INET6 = 6,
};

union ballast_addr {
	__be32 v4;
	__be32 v6[4];
	__u8 bytes[16];
};

/*
 * The VIP address filter (vip_filter map, bpf/vip_filter.h): one bit per
 * hash of a destination address, set by ballastd for every VIP's address
 * before the VIP's vips entry is written, cleared only once no VIP has an
 * address with that bit. A packet whose destination's bit is clear is for
 * no VIP and is passed without the connection-table and vips lookups; a
 * set bit only says "maybe" (hashes collide): the lookups decide.
 */
#define BALLAST_VIP_FILTER_BITS 16
#define BALLAST_VIP_FILTER_WORDS (1u << (BALLAST_VIP_FILTER_BITS - 6))  /* u64 each */

/* An address's bit. IPv4 addresses are in v6[0] with the other words zero,
 * as both sides build them. Multiplicative hashing: the top bits of the
 * product mix every bit of the address. */
static inline __u32 ballast_vip_filter_bit(const union ballast_addr *a)
{
	__u32 h = a->v6[0] ^ (a->v6[1] * 0x85ebca6bu) ^ (a->v6[2] * 0xc2b2ae35u) ^
		  (a->v6[3] * 0x27d4eb2fu);

	return (h * 0x9e3779b1u) >> (32 - BALLAST_VIP_FILTER_BITS);
}

/* vips map key: what a packet is matched on. */
struct ballast_vip_key {
	union ballast_addr addr;
	__be16 port;
	__u8 proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8 family;  /* enum ballast_family */
};

/* Per-VIP options, in ballast_vip_info.flags. No ENCAP flag: L2 direct
 * server return (MAC rewrite). */
enum ballast_vip_flags {
	/* IP-in-IP to the backend's address: outer IPv4 (protocol 4 or 41)
	 * or IPv6 (next header 4 or 41) as the backend's family; backends
	 * strip it (bpf/decap.bpf.c). */
	BALLAST_VIP_F_ENCAP_IPIP = 1u << 0,
	/* GUE variant 1 (the client's IP packet straight after a UDP header)
	 * to the backend's address, destination port gue_port. */
	BALLAST_VIP_F_ENCAP_GUE = 1u << 1,
	/* Flows are keyed and hashed without the client's source port (UDP
	 * protocols whose clients change ports mid-session). */
	BALLAST_VIP_F_NO_SRC_PORT = 1u << 2,
	/* Set on the port-0 entry a VIP with `fragments: true` adds for its
	 * (address, protocol): IP fragments to that address go to this VIP,
	 * hashed on addresses and protocol only (no ports, no state). */
	BALLAST_VIP_F_FRAGMENTS = 1u << 3,
	/* gue only: a pick-up that the VIP's previous Maglev table
	 * (maglev_prev_tables) places on another backend carries that backend
	 * in its GUE header, and is not recorded (docs/fleet.md). */
	BALLAST_VIP_F_SECOND_CHANCE = 1u << 4,
};

#define BALLAST_VIP_F_ENCAP (BALLAST_VIP_F_ENCAP_IPIP | BALLAST_VIP_F_ENCAP_GUE)

/* vips map value. */
struct ballast_vip_info {
	__u32 vip_id;     /* index into maglev_tables and vip_stats */
	__u32 flags;      /* enum ballast_vip_flags */
	__be16 gue_port;  /* GUE destination port (BALLAST_VIP_F_ENCAP_GUE) */
	__u16 pad;
};

/*
 * vip_by_id map value: a VIP's key and info, indexed by vip_id, so that an
 * established flow finds its VIP from its connection-table entry (through
 * the backend slot's vip_id) with array lookups instead of a second hash
 * lookup (select.h, serving_vip). The key is compared with the
 * packet's destination, so a stale or reused id can never match another
 * VIP's traffic. Slot unused: family 0. Fragment (port-0) entries are not
 * here; they never use the connection table.
 */
struct ballast_vip_entry {
	struct ballast_vip_key key;
	struct ballast_vip_info info;
};

/*
 * Interfaces packets leave through, indexed by egress id (a backend slot's
 * egress field). Id 0 is the interface the program is attached to (XDP_TX);
 * other ids leave by XDP_REDIRECT through tx_ports[id].
 */
#define BALLAST_MAX_EGRESS 16

struct ballast_egress {
	__u32 ifindex;        /* 0: slot unused */
	__u8 mac[6];          /* the interface's MAC: our frames' source */
	__u16 mtu;            /* largest IP packet the link carries */
	/* Outer source of encapsulated packets. The bits set in a hash mask
	 * are taken from the flow's hash instead (a source prefix, so that
	 * the backends' RSS spreads flows); mask 0: the address as is. */
	__be32 src4;
	__be32 src4_hash_mask;
	__be32 src6[4];
	__be32 src6_hash_mask;  /* applies to src6[3], the last 32 bits */
};

enum ballast_backend_flags {
	/* Slot holds a backend the data plane may send to. Cleared when the
	 * backend is removed or fails its health check, so established flows
	 * pinned to it re-select on their next packet. */
	BALLAST_BACKEND_F_ACTIVE = 1u << 0,
	/* The two below are ballastd's state, kept in the pinned map so that a
	 * restarted daemon adopts them; the data plane ignores them. */
	BALLAST_BACKEND_F_DRAINED = 1u << 1,   /* no new flows (operator) */
	BALLAST_BACKEND_F_DOWN = 1u << 2,      /* failed its health check */
};

/* backends map value, indexed by backend id. A slot is in use when
 * family != 0; ballastd zeroes a slot it frees. */
struct ballast_backend {
	union ballast_addr addr;
	__u8 mac[6];      /* next hop's MAC: the backend's (dsr) or a router's */
	__u8 family;      /* enum ballast_family; 0: slot free */
	__u8 egress;      /* egress id of the next hop's interface */
	__u32 flags;      /* enum ballast_backend_flags */
	__u32 vip_id;     /* the VIP this slot serves */
};

/* A packet's flow: its 5-tuple as seen at the balancer (hashed by
 * bpf/conn_hash.h for the connection table, by select.h for Maglev). */
struct ballast_flow_key {
	union ballast_addr src;
	union ballast_addr dst;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
	__u8 pad[2];
};

/*
 * The connection table (bpf/conn_table.h; docs/dataplane.md, "The
 * connection table"): an array of 64-byte buckets, one cache line each, of
 * BALLAST_CONN_WAYS ways. A flow may sit in either of two buckets
 * (two-choice hashing), both given by its 64-bit conn hash
 * (bpf/conn_hash.h). A way holds what forwarding needs and no key: the
 * hash's top 48 bits as a fingerprint, the backend id, when the flow was
 * last seen and whether it was confirmed: 16 bytes per tracked flow.
 */
#define BALLAST_CONN_WAYS 4
#define BALLAST_CONN_BUCKET_BITS 19
#define BALLAST_CONN_BUCKETS (1u << BALLAST_CONN_BUCKET_BITS)  /* 64 B each: 32 MiB */
#define BALLAST_CONN_TABLE_SIZE (BALLAST_CONN_BUCKETS * BALLAST_CONN_WAYS)  /* ways */

/* A way's tag: fingerprint (conn hash bits 16-63, never all zero) |
 * backend id (the low 16 bits: BALLAST_MAX_BACKENDS is 65536). 0: empty.
 * One 64-bit word, written and read whole, so that no CPU ever sees one
 * flow's fingerprint with another flow's backend. */
#define BALLAST_CONN_ID_MASK 0xffffull
#define BALLAST_CONN_FP_MASK (~BALLAST_CONN_ID_MASK)

/* ballast_conn_way.seen counts CLOCK_MONOTONIC (coarse) in units of
 * 2^BALLAST_CONN_SEEN_SHIFT ns (1.05 ms). It is a u32: ages are taken
 * modulo 2^32 units (52 days). */
#define BALLAST_CONN_SEEN_SHIFT 20

enum ballast_conn_flags {
	/* A packet of the flow came after the one that recorded it (a
	 * handshake that completed, a second datagram). Until then the way is
	 * embryonic (a lone SYN, perhaps spoofed): the first kind a new flow
	 * may take over (conn_table.h, the SYN-flood guard). */
	BALLAST_CONN_F_CONFIRMED = 1u << 0,
};

struct ballast_conn_way {
	__u64 tag;    /* fingerprint | backend id; 0: empty */
	__u32 seen;   /* last seen, in BALLAST_CONN_SEEN_SHIFT units */
	__u32 flags;  /* enum ballast_conn_flags */
};

/* conn_table value: one cache line. The map is BPF_F_MMAPABLE, so its
 * values start page-aligned and no bucket straddles two lines. */
struct ballast_conn_bucket {
	struct ballast_conn_way way[BALLAST_CONN_WAYS];
};

/* A way's seen is refreshed by a packet that finds it older than this: a
 * write per packet would dirty the line on every CPU the flow visits.
 * How ballastd tells active flows (drain --wait) from stale ways. */
#define BALLAST_CONN_TOUCH_NS 500000000ull
/* The SYN-flood guard: a new flow never takes the way of a confirmed flow
 * seen in the last BALLAST_CONN_PROTECT_NS. */
#define BALLAST_CONN_PROTECT_NS 60000000000ull

/* Per-CPU counters of the connection table's choices (conn_stats[0]):
 * where each new flow's entry went. */
struct ballast_conn_counters {
	__u64 recorded;           /* an empty way */
	__u64 replaced_embryonic; /* the way of an unconfirmed flow */
	__u64 replaced_idle;      /* the way of a confirmed flow idle past the guard */
	__u64 unrecorded;         /* none it may take: placed by the Maglev table alone */
};

/* Per-CPU counters for one VIP or one backend slot. */
struct ballast_traffic_counters {
	__u64 packets;
	__u64 bytes;
	/* Packets whose backend was chosen by the Maglev table (no usable
	 * connection-table entry, or a TCP SYN): connection attempts. */
	__u64 new_flows;
};

/* Per-CPU counters of one VIP's fleet events (docs/fleet.md). */
struct ballast_fleet_counters {
	/* TCP packets without SYN that found no connection-table entry: a flow
	 * moved here by ECMP (or whose entry was lost). Among new_flows. */
	__u64 pickups;
	/* Packets sent with the flow's previous backend in their GUE header
	 * (second chance: a pick-up the previous table placed elsewhere; such
	 * packets are neither pick-ups nor new flows, since nothing is
	 * recorded for them). */
	__u64 second_chance;
};

/* Per-CPU counters for one verdict reason. */
struct ballast_reason_counters {
	__u64 packets;
	__u64 bytes;
};

/*
 * Why a packet got its verdict. Listed once, here; userspace prints the names
 * from the same list (BALLAST_REASONS X-macro), so a new reason is one line.
 * X(enum suffix, metric/JSON name, verdict)
 * Read by: bpf/counters.h (counting), userspace/core/stats.cpp (names).
 */
#define BALLAST_REASONS(X)                                                   \
	X(TX_FORWARDED, "tx_forwarded", "tx")                                \
	X(PASS_NOT_IP, "pass_not_ip", "pass")                                \
	X(PASS_NOT_VIP, "pass_not_vip", "pass")                              \
	X(PASS_NOT_TCP_UDP, "pass_not_tcp_udp", "pass")                      \
	X(PASS_IP_FRAGMENT, "pass_ip_fragment", "pass")                      \
	X(DROP_MALFORMED_ETH, "drop_malformed_eth", "drop")                  \
	X(DROP_MALFORMED_IPV4, "drop_malformed_ipv4", "drop")                \
	X(DROP_MALFORMED_TCP, "drop_malformed_tcp", "drop")                  \
	X(DROP_MALFORMED_UDP, "drop_malformed_udp", "drop")                  \
	X(DROP_NO_BACKEND, "drop_no_backend", "drop")                        \
	X(DROP_INTERNAL, "drop_internal", "drop")                            \
	X(TX_ENCAP_IPIP, "tx_encap_ipip", "tx")                              \
	X(DROP_ENCAP_FAILED, "drop_encap_failed", "drop")                    \
	X(DROP_MALFORMED_IPV6, "drop_malformed_ipv6", "drop")                \
	X(DROP_MALFORMED_IPV6_EXT, "drop_malformed_ipv6_ext", "drop")        \
	X(PASS_IPV6_EXT_LIMIT, "pass_ipv6_ext_limit", "pass")                \
	X(PASS_VLAN, "pass_vlan", "pass")                                    \
	X(TX_ENCAP_GUE, "tx_encap_gue", "tx")                                \
	X(TX_ICMP_ERROR, "tx_icmp_error", "tx")                              \
	X(PASS_ICMP_NOT_VIP_FLOW, "pass_icmp_not_vip_flow", "pass")          \
	X(PASS_MALFORMED_ICMP, "pass_malformed_icmp", "pass")                \
	X(TX_FRAGMENT, "tx_fragment", "tx")                                  \
	X(TX_ICMP_TOO_BIG, "tx_icmp_too_big", "tx")                          \
	X(DROP_MTU_EXCEEDED, "drop_mtu_exceeded", "drop")                    \
	X(DROP_NO_EGRESS, "drop_no_egress", "drop")                          \
	X(PASS_NOT_OUR_MAC, "pass_not_our_mac", "pass")

/*
 * The backend-side decap program's verdicts (bpf/decap.bpf.c), counted per
 * CPU in its decap_stats map. X(enum suffix, name).
 */
#define BALLAST_DECAP_REASONS(X)                                             \
	X(DECAPPED, "decapped")                                              \
	X(PASS_NOT_ENCAP, "pass_not_encapsulated")                           \
	X(PASS_NOT_LOCAL_VIP, "pass_inner_not_local_vip")                    \
	X(PASS_MALFORMED, "pass_malformed")                                  \
	X(SECOND_CHANCE_KEPT, "second_chance_kept")                          \
	X(SECOND_CHANCE_FORWARDED, "second_chance_forwarded")                \
	X(SECOND_CHANCE_TO_KERNEL, "second_chance_to_kernel")

#define BALLAST_DECAP_ENUM(name, str) BALLAST_DECAP_##name,
enum ballast_decap_reason {
	BALLAST_DECAP_REASONS(BALLAST_DECAP_ENUM)
	BALLAST_DECAP_REASON_COUNT,
};
#undef BALLAST_DECAP_ENUM

/*
 * Second chance (docs/fleet.md): a GUE packet from the balancer may carry,
 * between its UDP header and the client's packet, a GUE variant 0 header
 * (version 0, C 0, hlen 5, proto the inner IP version's number, flags 0)
 * whose 20 bytes of optional data are Ballast's: the flow's previous
 * backend. The backend's decap program keeps a non-SYN TCP packet it has a
 * socket for, and sends one it has none for on to the previous backend
 * (hops 1 -> 0, so it goes one hop at most). Without it, GUE is variant 1
 * (the client's packet straight after the UDP header).
 */
#define BALLAST_SECOND_CHANCE_MAGIC 0xba11
#define BALLAST_GUE_SECOND_CHANCE_HLEN 5  /* 32-bit words after the first 4 bytes */

struct ballast_gue_second_chance {
	__u8 ver_c_hlen;         /* 0 << 6 | 0 << 5 | BALLAST_GUE_SECOND_CHANCE_HLEN */
	__u8 proto;              /* IPPROTO_IPIP (4) or IPPROTO_IPV6 (41): the client's packet */
	__be16 flags;            /* 0 */
	__be16 magic;            /* BALLAST_SECOND_CHANCE_MAGIC */
	__u8 family;             /* enum ballast_family of prev */
	__u8 hops;               /* 1 from the balancer, 0 once a backend sent it on */
	union ballast_addr prev; /* the flow's previous backend */
};

/* Addresses the decap program strips tunnels for (the VIPs held on the
 * backend's lo), keyed by address and family as ballast_decap_vip. */
#define BALLAST_MAX_DECAP_VIPS 1024

struct ballast_decap_vip {
	union ballast_addr addr;
	__u8 family;
	__u8 pad[3];
};

/* The decap program's settings (decap_config[0]). */
struct ballast_decap_config {
	__be16 gue_port;  /* UDP port GUE arrives on; 0: GUE not decapsulated */
	__u16 pad;
};

/*
 * The pinned state's identity (map "meta", one entry), written only by
 * ballastd: which layout the pinned maps have, and who manages them. A
 * ballastd adopts pins whose layout_version equals its own and refuses
 * others (userspace/dataplane/loader.cpp); pins without a meta map are
 * layout 1, the maps of the releases before it existed, identical to
 * layout 2 in every other map. Layout 3: the connection table became
 * buckets of fingerprints (an LRU hash of full keys before), and
 * reason_stats and conn_stats grew. Bump BALLAST_LAYOUT_VERSION with any change
 * to a pinned map's key, value, size or type.
 */
#define BALLAST_LAYOUT_VERSION 3

/*
 * The balancer program's two names (balancer.bpf.c): bound to the
 * interface's device (native mode), and for any device (generic mode, and
 * every BPF_PROG_TEST_RUN). Either one attached is Ballast's.
 */
#define BALLAST_PROG_BOUND "ballast_xdp"
#define BALLAST_PROG_ANY "ballast_xdp_any"

struct ballast_meta {
	__u32 layout_version;
	__u32 daemon_pid;          /* the managing ballastd; 0 after it stopped */
	__u64 heartbeat_unix_ms;   /* its last sign of life (every second), or its stop */
	__u64 created_unix_ms;     /* when these pins were first made */
	__u64 reserved;
};

#define BALLAST_REASON_ENUM(name, str, verdict) BALLAST_REASON_##name,
enum ballast_reason {
	BALLAST_REASONS(BALLAST_REASON_ENUM)
	BALLAST_REASON_COUNT,
};
#undef BALLAST_REASON_ENUM

#endif /* BALLAST_ABI_H */
