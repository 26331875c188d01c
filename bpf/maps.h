/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h: the balancer's maps. Key/value layouts live in ballast_abi.h;
 * ballastd pins every map here under its pin directory by the same name
 * (userspace/dataplane/loader.cpp), which is what keeps forwarding alive across a
 * daemon restart.
 */
#ifndef BALLAST_MAPS_H
#define BALLAST_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "ballast_abi.h"

/* (address, port, protocol) -> VIP id and flags. Room for each VIP's
 * port-0 fragment entry too. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 2 * BALLAST_MAX_VIPS);
	__type(key, struct ballast_vip_key);
	__type(value, struct ballast_vip_info);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} vips SEC(".maps");

/* The VIP address filter: BALLAST_VIP_FILTER_BITS bits as u64 words
 * (ballast_abi.h says what a bit means). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_VIP_FILTER_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} vip_filter SEC(".maps");

/* vip_id -> the VIP's key and info (ballast_abi.h, ballast_vip_entry). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct ballast_vip_entry);
} vip_by_id SEC(".maps");

/* backend id -> address, MAC, flags. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct ballast_backend);
} backends SEC(".maps");

/*
 * One Maglev table per VIP: entry -> backend id. The daemon builds a new
 * inner map and swaps it into maglev_tables in one update, so a packet sees
 * either the whole old table or the whole new one (cilium's
 * LB4_MAGLEV_MAP_OUTER does the same).
 */
struct maglev_table {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_MAGLEV_SIZE);
	__type(key, __u32);
	__type(value, __u32);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __u32);
	__array(values, struct maglev_table);
} maglev_tables SEC(".maps");

/*
 * Second chance: each VIP's previous table (the one maglev_tables held
 * before its last change), kept for fleet.second_chance_keep and only for
 * VIPs with BALLAST_VIP_F_SECOND_CHANCE; then removed by ballastd.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __u32);
	__array(values, struct maglev_table);
} maglev_prev_tables SEC(".maps");

/*
 * Established flows: bucket index -> BALLAST_CONN_WAYS ways of (fingerprint,
 * backend id, last seen, flags), bpf/conn_table.h. Shared by every CPU (not
 * per-CPU): a flow whose packets arrive on different CPUs still finds its
 * entry, and ballastd reads one table (mapped into its memory) when it
 * counts flows.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_CONN_BUCKETS);
	__type(key, __u32);
	__type(value, struct ballast_conn_bucket);
	__uint(map_flags, BPF_F_MMAPABLE);
} conn_table SEC(".maps");

/* Per CPU: where new flows' entries went (ballast_conn_counters). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ballast_conn_counters);
} conn_stats SEC(".maps");

/* Egress id -> interface, MAC, MTU, outer source (ballast_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, BALLAST_MAX_EGRESS);
	__type(key, __u32);
	__type(value, struct ballast_egress);
} egress SEC(".maps");

/* Egress id -> ifindex, for XDP_REDIRECT to interfaces other than ours. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, BALLAST_MAX_EGRESS);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* The pinned state's layout version and its manager (ballast_abi.h,
 * ballast_meta). Read and written by ballastd only. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ballast_meta);
} meta SEC(".maps");

/* Per-CPU counters, summed by the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct ballast_traffic_counters);
} vip_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct ballast_traffic_counters);
} backend_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_REASON_COUNT);
	__type(key, __u32);
	__type(value, struct ballast_reason_counters);
} reason_stats SEC(".maps");

/*
 * Per VIP, per CPU: mid-flow pick-ups (TCP packets without SYN that found no
 * connection-table entry and took their backend from the Maglev table: a
 * flow that ECMP moved here from another balancer, or one whose entry this
 * balancer lost; also counted in vip_stats.new_flows) and second-chance
 * packets (docs/fleet.md). A map of its own, so the pinned counters' layout
 * stays as it was.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, BALLAST_MAX_VIPS);
	__type(key, __u32);
	__type(value, struct ballast_fleet_counters);
} vip_fleet_stats SEC(".maps");

/*
 * Each CPU's copy of the coarse clock, taken once per tick (select.h,
 * coarse_now_ns). Scratch state: not pinned, a new program starts empty.
 */
struct ballast_clock_cache {
	__u64 jiffies;   /* bpf_jiffies64() when coarse_ns was read */
	__u64 coarse_ns; /* bpf_ktime_get_coarse_ns() at that tick */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ballast_clock_cache);
} clock_cache SEC(".maps");

#endif /* BALLAST_MAPS_H */
