/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * counters.h: the per-CPU counter updates. Per-CPU slots need no atomics;
 * ballastd sums the CPUs when it reads them (userspace/core/stats.cpp).
 */
#ifndef BALLAST_COUNTERS_H
#define BALLAST_COUNTERS_H

#include "maps.h"

/* Count one packet of @bytes against verdict reason @reason. */
static __always_inline void count_reason(__u32 reason, __u32 bytes)
{
	struct ballast_reason_counters *c;

	c = bpf_map_lookup_elem(&reason_stats, &reason);
	if (!c)
		return;
	c->packets++;
	c->bytes += bytes;
}

/* Count one forwarded packet in a VIP's or backend's counters. */
static __always_inline void count_traffic(void *stats_map, __u32 id, __u32 bytes,
					  int new_flow)
{
	struct ballast_traffic_counters *c;

	c = bpf_map_lookup_elem(stats_map, &id);
	if (!c)
		return;
	c->packets++;
	c->bytes += bytes;
	if (new_flow)
		c->new_flows++;
}

/* Count a mid-flow pick-up (@pickup) and a second-chance packet
 * (@second_chance) of VIP @vip_id (maps.h, vip_fleet_stats). */
static __always_inline void count_fleet(__u32 vip_id, int pickup, int second_chance)
{
	struct ballast_fleet_counters *c = bpf_map_lookup_elem(&vip_fleet_stats, &vip_id);

	if (!c)
		return;
	c->pickups += pickup;
	c->second_chance += second_chance;
}

#endif /* BALLAST_COUNTERS_H */
