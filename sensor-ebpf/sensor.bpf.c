// SPDX-License-Identifier: Apache-2.0
/*
 * sensor.bpf.c: otsensor's XDP pre-filter.
 *
 * Sends to the AF_XDP socket of the receiving queue what the sensor must see:
 * industrial traffic (port and ethertype tables), conversation starts (TCP control
 * segments, the first K packets of each flow, ARP, DHCP, ICMP), flows user space asked
 * to keep, and anything the parser cannot classify (fragments, malformed or unknown
 * frames). Everything else is bulk: dropped (or passed to the host stack, by config)
 * and accounted per flow so user space still learns about the conversation.
 *
 * Every packet leaves through exactly one counted reason and one counted verdict.
 * Map layouts and counter indices live in shared.h, mirrored in sensor/src/ebpf.rs.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "shared.h"
#include "parsing.h"

char LICENSE[] SEC("license") = "Dual MIT/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, OTS_MAX_QUEUES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ots_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, OTS_PORT_TABLE_SIZE);
	__type(key, __u32);
	__type(value, __u32); /* OTS_PORT_* bits */
} port_table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, OTS_MAX_ETHERTYPES);
	__type(key, __u16); /* host order */
	__type(value, __u32); /* non-zero: industrial */
} ethertypes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OTS_MAX_FLOWS);
	__type(key, struct ots_flow_key);
	__type(value, struct ots_flow_state);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, OTS_MAX_VERDICTS);
	__type(key, struct ots_flow_key);
	__type(value, struct ots_verdict);
} verdicts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OTS_COUNTER_COUNT);
	__type(key, __u32);
	__type(value, struct ots_counter_value);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OTS_MAX_QUEUES);
	__type(key, __u32);
	__type(value, struct ots_queue_counters);
} queue_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, OTS_EVENT_RING_BYTES);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ots_event_budget);
} event_budget SEC(".maps");

/* Reports a parse failure with the frame's first bytes, within the per-CPU budget of
 * OTS_EVENTS_PER_SECOND (a flood of malformed frames must not flood user space). */
static __noinline int report_parse_failure(struct xdp_md *ctx, int code)
{
	__u32 zero = 0;
	struct ots_event_budget *budget = bpf_map_lookup_elem(&event_budget, &zero);
	if (!budget)
		return 0;
	__u64 now = bpf_ktime_get_coarse_ns();
	if (now - budget->window_start_ns >= 1000000000ull) {
		budget->window_start_ns = now;
		budget->emitted = 0;
	}
	if (budget->emitted >= OTS_EVENTS_PER_SECOND) {
		budget->suppressed += 1;
		return 0;
	}
	struct ots_event *event = bpf_ringbuf_reserve(&events, sizeof(*event), 0);
	if (!event) {
		budget->suppressed += 1;
		return 0;
	}
	budget->emitted += 1;
	__u32 frame_len = (__u32)(ctx->data_end - ctx->data);
	__u64 snap_len = frame_len;
	if (snap_len > OTS_EVENT_SNAP)
		snap_len = OTS_EVENT_SNAP;
	/* Keep the clamped value in its own register, so the verifier sees the bound on
	 * the very register passed as the length (clang otherwise reuses frame_len's). */
	asm volatile("" : "+r"(snap_len));
	event->kind = OTS_EVENT_PARSE_FAILED;
	event->code = code;
	event->rx_queue = ctx->rx_queue_index;
	event->frame_len = frame_len;
	event->pad = 0;
	__builtin_memset(event->snap, 0, OTS_EVENT_SNAP);
	if (snap_len > 0 && snap_len <= OTS_EVENT_SNAP &&
	    bpf_xdp_load_bytes(ctx, 0, event->snap, snap_len) == 0)
		event->snap_len = (__u32)snap_len;
	else
		event->snap_len = 0;
	bpf_ringbuf_submit(event, 0);
	return 0;
}

static __always_inline void count(__u32 index, __u64 bytes)
{
	struct ots_counter_value *v = bpf_map_lookup_elem(&counters, &index);
	if (v) {
		/* Per-CPU slot: no other writer, no atomics needed. */
		v->packets += 1;
		v->bytes += bytes;
	}
}

/* Hand the frame to user space: the socket bound to this RX queue. */
static __always_inline int to_user_space(struct xdp_md *ctx, const struct ots_config *cfg,
					 __u32 reason, __u64 bytes)
{
	count(reason, bytes);
	__u32 queue = ctx->rx_queue_index;
	/* The low bits of flags are the action returned when the queue has no socket. */
	long action = bpf_redirect_map(&xsks, queue, cfg->no_socket_action & 3);
	struct ots_queue_counters *qc = bpf_map_lookup_elem(&queue_counters, &queue);
	if (action == XDP_REDIRECT) {
		count(OTS_VERDICT_REDIRECTED, bytes);
		if (qc)
			qc->redirected += 1;
	} else {
		count(OTS_VERDICT_NO_SOCKET, bytes);
		if (qc)
			qc->no_socket += 1;
	}
	return (int)action;
}

/* Keep the frame from user space: drop it or give it to the host stack. */
static __always_inline int shed(const struct ots_config *cfg, __u32 reason, __u64 bytes)
{
	count(reason, bytes);
	if (cfg->bulk_action == OTS_ACTION_PASS) {
		count(OTS_VERDICT_PASSED, bytes);
		return XDP_PASS;
	}
	count(OTS_VERDICT_DROPPED, bytes);
	return XDP_DROP;
}

/* Parse results that stop classification map to a reason; all of them go to user
 * space, so nothing the program does not understand is ever shed. */
static __always_inline __u32 reason_for_parse_error(int code)
{
	switch (code) {
	case OTS_PARSE_FRAGMENT:
		return OTS_REASON_FRAGMENT;
	case OTS_PARSE_TOO_DEEP:
		return OTS_REASON_UNPARSED;
	default:
		return OTS_REASON_MALFORMED;
	}
}

/* A parse failure: reported (fragments are normal traffic, not failures), then sent up. */
static __always_inline int parse_failed(struct xdp_md *ctx, const struct ots_config *cfg,
					int code, __u64 bytes)
{
	if (code != OTS_PARSE_FRAGMENT)
		report_parse_failure(ctx, code);
	return to_user_space(ctx, cfg, reason_for_parse_error(code), bytes);
}

static __always_inline int is_dhcp(__u8 protocol, __u16 sport, __u16 dport)
{
	if (protocol != IPPROTO_UDP)
		return 0;
	/* DHCPv4 server 67 / client 68 (RFC 2131 4.1), DHCPv6 547 / 546 (RFC 8415 7.2). */
	return sport == 67 || sport == 68 || dport == 67 || dport == 68 ||
	       sport == 546 || sport == 547 || dport == 546 || dport == 547;
}

static __always_inline __u32 port_bits(__u16 port)
{
	__u32 key = port;
	__u32 *bits = bpf_map_lookup_elem(&port_table, &key);
	return bits ? *bits : 0;
}

/* Compares two addresses as 128-bit big-endian numbers: <0, 0, >0. */
static __always_inline int addr_cmp(const __u32 *a, const __u32 *b)
{
#pragma unroll
	for (int i = 0; i < 4; i++) {
		__u32 x = bpf_ntohl(a[i]);
		__u32 y = bpf_ntohl(b[i]);
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

/*
 * Flow rule for TCP/UDP (and port-less IP protocols) that are not industrial:
 * a TCP control segment, one of the first K packets, or a flow user space keeps goes to
 * user space; the rest is shed and accounted per flow and direction.
 */
static __always_inline int decide_flow(struct xdp_md *ctx, const struct ots_config *cfg,
				       const __u32 *src, const __u32 *dst, __u16 sport,
				       __u16 dport, __u8 protocol, int tcp_control,
				       int syn_only, int syn_ack, __u64 bytes)
{
	struct ots_flow_key key;
	__builtin_memset(&key, 0, sizeof(key));

	int cmp = addr_cmp(src, dst);
	int src_is_lo = cmp < 0 || (cmp == 0 && sport <= dport);
	if (src_is_lo) {
		__builtin_memcpy(key.addr_lo, src, 16);
		__builtin_memcpy(key.addr_hi, dst, 16);
		key.port_lo = sport;
		key.port_hi = dport;
	} else {
		__builtin_memcpy(key.addr_lo, dst, 16);
		__builtin_memcpy(key.addr_hi, src, 16);
		key.port_lo = dport;
		key.port_hi = sport;
	}
	key.protocol = protocol;
	__u32 dir = src_is_lo ? OTS_DIR_LO_TO_HI : OTS_DIR_HI_TO_LO;

	/* Which endpoint serves: the handshake says so; otherwise guess the lower port. */
	__u8 server_side = OTS_SERVER_UNKNOWN;
	if (syn_only)
		server_side = src_is_lo ? OTS_SERVER_HI : OTS_SERVER_LO;
	else if (syn_ack)
		server_side = src_is_lo ? OTS_SERVER_LO : OTS_SERVER_HI;

	struct ots_flow_state *state = bpf_map_lookup_elem(&flows, &key);
	__u32 seen = state ? state->packets_seen : 0;

	__u32 reason;
	const struct ots_verdict *verdict = 0;
	if (cfg->flags & OTS_CONFIG_VERDICTS_IN_USE)
		verdict = bpf_map_lookup_elem(&verdicts, &key);
	if (tcp_control)
		reason = OTS_REASON_TCP_CONTROL;
	else if (verdict && verdict->verdict == OTS_VERDICT_KEEP)
		reason = OTS_REASON_FLOW_KEEP;
	else if (verdict && verdict->verdict == OTS_VERDICT_SHED)
		reason = OTS_REASON_FLOW_SHED;
	else if (seen < cfg->first_packets)
		reason = OTS_REASON_FLOW_FIRST_PACKETS;
	else
		reason = OTS_REASON_BULK;
	int shedding = reason == OTS_REASON_BULK || reason == OTS_REASON_FLOW_SHED;

	__u64 now = bpf_ktime_get_coarse_ns();
	if (state) {
		if (state->packets_seen != 0xffffffff)
			state->packets_seen += 1;
		state->last_seen_ns = now;
		if (server_side != OTS_SERVER_UNKNOWN)
			state->server_side = server_side;
		if (shedding) {
			/* Shared across CPUs (a flow's directions may hash to different
			 * queues): atomic adds keep the accounting exact. */
			__sync_fetch_and_add(&state->shed_packets[dir & 1], 1);
			__sync_fetch_and_add(&state->shed_bytes[dir & 1], bytes);
		}
	} else {
		struct ots_flow_state fresh;
		__builtin_memset(&fresh, 0, sizeof(fresh));
		fresh.first_seen_ns = now;
		fresh.last_seen_ns = now;
		fresh.packets_seen = 1;
		if (server_side == OTS_SERVER_UNKNOWN && sport != dport)
			server_side = (sport < dport) == src_is_lo ? OTS_SERVER_LO : OTS_SERVER_HI;
		fresh.server_side = server_side;
		if (shedding) {
			fresh.shed_packets[dir & 1] = 1;
			fresh.shed_bytes[dir & 1] = bytes;
		}
		if (bpf_map_update_elem(&flows, &key, &fresh, BPF_NOEXIST) != 0) {
			/* Another CPU created the entry first: add to its counters. */
			state = bpf_map_lookup_elem(&flows, &key);
			if (state && shedding) {
				__sync_fetch_and_add(&state->shed_packets[dir & 1], 1);
				__sync_fetch_and_add(&state->shed_bytes[dir & 1], bytes);
			}
		}
	}

	if (shedding)
		return shed(cfg, reason, bytes);
	return to_user_space(ctx, cfg, reason, bytes);
}

SEC("xdp")
int otsensor_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 bytes = data_end - data;

	__u32 zero = 0;
	const struct ots_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg)
		return XDP_PASS; /* unreachable: array entries always exist */

	struct ots_cursor cursor = { .pos = data };
	int ethertype = ots_parse_ethernet(&cursor, data_end);
	if (ethertype < 0)
		return parse_failed(ctx, cfg, ethertype, bytes);

	/* Addresses widened to IPv6 (IPv4-mapped) so one flow key serves both families. */
	__u32 src[4], dst[4];
	src[0] = dst[0] = 0;
	src[1] = dst[1] = 0;
	src[2] = dst[2] = bpf_htonl(0xffff);
	src[3] = dst[3] = 0;
	int protocol;
	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = 0;
		protocol = ots_parse_ipv4(&cursor, data_end, &ip);
		if (protocol < 0)
			return parse_failed(ctx, cfg, protocol, bytes);
		if (!ip)
			return to_user_space(ctx, cfg, OTS_REASON_MALFORMED, bytes);
		src[3] = ip->saddr;
		dst[3] = ip->daddr;
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = 0;
		protocol = ots_parse_ipv6(&cursor, data_end, &ip6);
		if (protocol < 0)
			return parse_failed(ctx, cfg, protocol, bytes);
		if (!ip6)
			return to_user_space(ctx, cfg, OTS_REASON_MALFORMED, bytes);
		__builtin_memcpy(src, &ip6->saddr, 16);
		__builtin_memcpy(dst, &ip6->daddr, 16);
	} else if (ethertype == bpf_htons(ETH_P_ARP)) {
		return to_user_space(ctx, cfg, OTS_REASON_ARP, bytes);
	} else {
		__u16 host_ethertype = bpf_ntohs((__u16)ethertype);
		__u32 *industrial = bpf_map_lookup_elem(&ethertypes, &host_ethertype);
		if (industrial && *industrial)
			return to_user_space(ctx, cfg, OTS_REASON_INDUSTRIAL_ETHERTYPE, bytes);
		/* 802.3 length frames (LLC: STP, ...) and unknown ethertypes: rare on a
		 * SPAN port and not understood here, so user space sees them. */
		return to_user_space(ctx, cfg, OTS_REASON_UNPARSED, bytes);
	}

	__u16 sport = 0, dport = 0;
	int tcp_control = 0, syn_only = 0, syn_ack = 0;
	if (protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = 0;
		int rc = ots_parse_tcp(&cursor, data_end, &tcp);
		if (rc < 0 || !tcp)
			return parse_failed(ctx, cfg, rc, bytes);
		sport = bpf_ntohs(tcp->source);
		dport = bpf_ntohs(tcp->dest);
		if (port_bits(sport) & OTS_PORT_TCP || port_bits(dport) & OTS_PORT_TCP)
			return to_user_space(ctx, cfg, OTS_REASON_INDUSTRIAL_PORT, bytes);
		tcp_control = tcp->syn || tcp->fin || tcp->rst;
		syn_only = tcp->syn && !tcp->ack;
		syn_ack = tcp->syn && tcp->ack;
	} else if (protocol == IPPROTO_UDP) {
		struct udphdr *udp = 0;
		int rc = ots_parse_udp(&cursor, data_end, &udp);
		if (rc < 0 || !udp)
			return parse_failed(ctx, cfg, rc, bytes);
		sport = bpf_ntohs(udp->source);
		dport = bpf_ntohs(udp->dest);
		if (port_bits(sport) & OTS_PORT_UDP || port_bits(dport) & OTS_PORT_UDP)
			return to_user_space(ctx, cfg, OTS_REASON_INDUSTRIAL_PORT, bytes);
		if (is_dhcp((__u8)protocol, sport, dport))
			return to_user_space(ctx, cfg, OTS_REASON_DHCP, bytes);
	} else if (protocol == IPPROTO_ICMP || protocol == IPPROTO_ICMPV6) {
		return to_user_space(ctx, cfg, OTS_REASON_ICMP, bytes);
	}

	return decide_flow(ctx, cfg, src, dst, sport, dport, (__u8)protocol, tcp_control,
			   syn_only, syn_ack, bytes);
}

/* The floor for benchmarks: the cheapest possible XDP program, built the same way. */
SEC("xdp")
int otsensor_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}
