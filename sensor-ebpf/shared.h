/* SPDX-License-Identifier: Apache-2.0 */
/*
 * shared.h: the one contract between the XDP program (sensor.bpf.c) and user space
 * (sensor/src/ebpf.rs). Every struct and index here is mirrored in Rust by a
 * #[repr(C)] type whose size is asserted at compile time; change both together.
 *
 * Byte orders: addresses are stored as on the wire (network order bytes), ports and
 * ethertypes in host order (the program converts once, so user space never has to).
 */
#ifndef OTSENSOR_SHARED_H
#define OTSENSOR_SHARED_H

#include <linux/types.h>

/* Map sizes. */
#define OTS_MAX_QUEUES 256          /* XSKMAP and per-queue counters, indexed by rx queue */
#define OTS_PORT_TABLE_SIZE 65536   /* one slot per port: an array lookup is inlined by the
                                     * verifier, about half the cost of a hash lookup */
#define OTS_MAX_ETHERTYPES 64
#define OTS_MAX_FLOWS 65536         /* LRU: per-flow state and shed accounting */
#define OTS_MAX_VERDICTS 65536      /* LRU: verdicts written by user space */

/* Bounds on the parser's loops (the verifier needs them; deeper stacks are "unparsed"). */
#define OTS_MAX_VLAN_DEPTH 2        /* 802.1Q and QinQ (802.1ad outer) */
#define OTS_MAX_IPV6_EXT_HEADERS 6

/* port_table value bits: which transport uses this port for an industrial protocol. */
#define OTS_PORT_TCP (1u << 0)
#define OTS_PORT_UDP (1u << 1)

/* config.bulk_action and config.no_socket_action take XDP action values. */
#define OTS_ACTION_DROP 1           /* XDP_DROP */
#define OTS_ACTION_PASS 2           /* XDP_PASS */

/* The single entry (index 0) of the `config` array map, written by user space. */
struct ots_config {
	__u32 bulk_action;       /* what to do with bulk: OTS_ACTION_DROP (SPAN port) or _PASS */
	__u32 no_socket_action;  /* a packet for user space on a queue with no socket */
	__u32 first_packets;     /* K: packets of each new flow sent to user space */
	__u32 flags;             /* OTS_CONFIG_* bits */
};

/* ots_config.flags: user space has written at least one verdict, so the program must
 * look flows up in `verdicts` (skipped otherwise: one hash lookup less per packet). */
#define OTS_CONFIG_VERDICTS_IN_USE (1u << 0)

/* Flow key: the 5-tuple ordered so both directions of a flow share one entry.
 * The (addr, port) endpoint that compares lower (addr bytes as a big-endian number,
 * then port) is `lo`. IPv4 addresses are IPv4-mapped IPv6 (::ffff:a.b.c.d).
 * Protocols without ports (ICMP, GRE, ...) use port 0. */
struct ots_flow_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__u16 port_lo;
	__u16 port_hi;
	__u8 protocol;           /* IP protocol number (IPv6: the upper-layer header) */
	__u8 pad[3];
};

/* server_side values: which endpoint serves (by TCP handshake, else the lower port). */
#define OTS_SERVER_UNKNOWN 0
#define OTS_SERVER_LO 1
#define OTS_SERVER_HI 2

/* Direction index into ots_flow_state arrays. */
#define OTS_DIR_LO_TO_HI 0
#define OTS_DIR_HI_TO_LO 1

/* Value of the `flows` LRU map, owned by the program; user space only reads it.
 * The shed_* counters are the packets the kernel kept from user space (dropped or
 * passed to the host stack), so flow records can include traffic never seen there. */
struct ots_flow_state {
	__u64 first_seen_ns;     /* bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC_COARSE, tick
	                          * resolution, 17 ns/packet cheaper than the precise clock */
	__u64 last_seen_ns;
	__u64 shed_packets[2];   /* by OTS_DIR_* */
	__u64 shed_bytes[2];
	__u32 packets_seen;      /* all packets, saturating; drives the first-K rule */
	__u8 server_side;        /* OTS_SERVER_* */
	__u8 pad[3];
};

/* Value of the `verdicts` LRU map, owned by user space; the program only reads it. */
#define OTS_VERDICT_NONE 0
#define OTS_VERDICT_KEEP 1       /* send every packet of the flow to user space */
#define OTS_VERDICT_SHED 2       /* treat the rest of the flow as bulk */

struct ots_verdict {
	__u32 verdict;
	__u32 pad;
};

/* Per-CPU counters: one slot per reason (why a packet got its verdict) and per verdict
 * (what happened to it). Every packet is counted exactly once in each group. */
enum ots_counter {
	/* reasons */
	OTS_REASON_INDUSTRIAL_PORT = 0,    /* TCP/UDP port in the port table */
	OTS_REASON_INDUSTRIAL_ETHERTYPE,   /* ethertype in the ethertype table */
	OTS_REASON_TCP_CONTROL,            /* SYN, SYN-ACK, FIN or RST */
	OTS_REASON_FLOW_FIRST_PACKETS,     /* one of the first K packets of a flow */
	OTS_REASON_FLOW_KEEP,              /* user space's verdict: keep */
	OTS_REASON_ARP,
	OTS_REASON_DHCP,                   /* DHCPv4 67/68, DHCPv6 546/547 */
	OTS_REASON_ICMP,                   /* ICMP and ICMPv6 (neighbour discovery, scans) */
	OTS_REASON_FRAGMENT,               /* IPv4 or IPv6 fragment: no ports to classify */
	OTS_REASON_MALFORMED,              /* a header shorter or stranger than its spec */
	OTS_REASON_UNPARSED,               /* too deep (VLAN, IPv6 extensions) or unknown L2 */
	OTS_REASON_BULK,                   /* none of the above: shed */
	OTS_REASON_FLOW_SHED,              /* user space's verdict: shed */
	/* verdicts */
	OTS_VERDICT_REDIRECTED,            /* handed to the AF_XDP socket of this queue */
	OTS_VERDICT_NO_SOCKET,             /* meant for user space, no socket on this queue */
	OTS_VERDICT_DROPPED,               /* bulk dropped */
	OTS_VERDICT_PASSED,                /* bulk passed to the host stack */
	OTS_COUNTER_COUNT,
};

struct ots_counter_value {
	__u64 packets;
	__u64 bytes;
};

/* Per-CPU, per-RX-queue counters: packets the program redirected to queue q must equal
 * packets user space received on q plus the socket's drop counters. */
struct ots_queue_counters {
	__u64 redirected;
	__u64 no_socket;
};

/* Rare kernel events, to user space through the `events` ring buffer (instead of a
 * log: a C program has no aya-log). Rate-limited per CPU; what the budget refuses is
 * counted in `event_budget.suppressed`. */
#define OTS_EVENT_RING_BYTES (64 * 1024) /* a power of two and a multiple of the page size */
#define OTS_EVENTS_PER_SECOND 16         /* per CPU */
#define OTS_EVENT_SNAP 64                /* first bytes of the frame carried by an event */

enum ots_event_kind {
	OTS_EVENT_PARSE_FAILED = 1, /* code: the OTS_PARSE_* result (negative) */
};

struct ots_event {
	__u32 kind;      /* enum ots_event_kind */
	__s32 code;
	__u32 rx_queue;
	__u32 frame_len;
	__u32 snap_len;  /* bytes of `snap` that are the frame's */
	__u32 pad;
	__u8 snap[OTS_EVENT_SNAP];
};

/* Per-CPU budget of the current one-second window. */
struct ots_event_budget {
	__u64 window_start_ns;
	__u64 emitted;      /* in this window */
	__u64 suppressed;   /* since load */
};

/* Sizes user space asserts too (sensor/src/ebpf.rs, mod abi): both sides pin them. */
_Static_assert(sizeof(struct ots_config) == 16, "ots_config layout");
_Static_assert(sizeof(struct ots_flow_key) == 40, "ots_flow_key layout");
_Static_assert(sizeof(struct ots_flow_state) == 56, "ots_flow_state layout");
_Static_assert(sizeof(struct ots_verdict) == 8, "ots_verdict layout");
_Static_assert(sizeof(struct ots_counter_value) == 16, "ots_counter_value layout");
_Static_assert(sizeof(struct ots_queue_counters) == 16, "ots_queue_counters layout");
_Static_assert(OTS_COUNTER_COUNT == 17, "counter count");
_Static_assert(sizeof(struct ots_event) == 88, "ots_event layout");
_Static_assert(sizeof(struct ots_event_budget) == 24, "ots_event_budget layout");

#endif /* OTSENSOR_SHARED_H */
