/* SPDX-License-Identifier: Apache-2.0 */
/*
 * parsing.h: header cursor and bounded parsers for the XDP program, in the style of
 * xdp-tools' headers/xdp/parsing_helpers.h. Every read is preceded by an
 * `if (hdr + 1 > data_end)` check the verifier can follow; every loop has a constant
 * bound. A parser returns the next header's protocol, or a negative OTS_PARSE_* code.
 */
#ifndef OTSENSOR_PARSING_H
#define OTSENSOR_PARSING_H

#include <linux/types.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "shared.h"

#define OTS_PARSE_TRUNCATED (-1) /* the header runs past the end of the frame */
#define OTS_PARSE_MALFORMED (-2) /* a length or version field out of its spec's range */
#define OTS_PARSE_TOO_DEEP (-3)  /* more nested headers than the parser's bound */
#define OTS_PARSE_FRAGMENT (-4)  /* an IP fragment: the transport header may be absent */

/* 802.1Q tag (IEEE 802.1Q-2018 9.6): TCI then the encapsulated ethertype. */
struct ots_vlan_hdr {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* IPv6 extension header prefix shared by hop-by-hop, routing and destination options
 * (RFC 8200 4.3-4.6): next header, length in 8-octet units not counting the first 8. */
struct ots_ipv6_opt_hdr {
	__u8 nexthdr;
	__u8 hdrlen;
};

/* IPv6 fragment header (RFC 8200 4.5). */
struct ots_ipv6_frag_hdr {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

struct ots_cursor {
	void *pos;
};

static __always_inline int ots_is_vlan(__u16 h_proto)
{
	return h_proto == bpf_htons(ETH_P_8021Q) || h_proto == bpf_htons(ETH_P_8021AD);
}

/* Ethernet plus up to OTS_MAX_VLAN_DEPTH VLAN tags. Returns the inner ethertype in
 * network order, or a negative OTS_PARSE_* code. */
static __always_inline int ots_parse_ethernet(struct ots_cursor *c, void *data_end)
{
	struct ethhdr *eth = c->pos;
	if ((void *)(eth + 1) > data_end)
		return OTS_PARSE_TRUNCATED;
	c->pos = eth + 1;
	__u16 h_proto = eth->h_proto;

#pragma unroll
	for (int i = 0; i < OTS_MAX_VLAN_DEPTH; i++) {
		if (!ots_is_vlan(h_proto))
			break;
		struct ots_vlan_hdr *vlan = c->pos;
		if ((void *)(vlan + 1) > data_end)
			return OTS_PARSE_TRUNCATED;
		c->pos = vlan + 1;
		h_proto = vlan->encapsulated_proto;
	}
	if (ots_is_vlan(h_proto))
		return OTS_PARSE_TOO_DEEP;
	return h_proto;
}

/* IPv4 (RFC 791 3.1). Writes the addresses; returns the protocol, or a negative code. */
static __always_inline int ots_parse_ipv4(struct ots_cursor *c, void *data_end,
					  struct iphdr **out)
{
	struct iphdr *ip = c->pos;
	if ((void *)(ip + 1) > data_end)
		return OTS_PARSE_TRUNCATED;
	if (ip->version != 4 || ip->ihl < 5)
		return OTS_PARSE_MALFORMED;
	int hdr_len = ip->ihl * 4;
	if (c->pos + hdr_len > data_end)
		return OTS_PARSE_TRUNCATED;
	*out = ip;
	c->pos += hdr_len;
	/* More-fragments set or a non-zero offset: not the only piece of the datagram. */
	if (ip->frag_off & bpf_htons(0x3fff))
		return OTS_PARSE_FRAGMENT;
	return ip->protocol;
}

/* IPv6 (RFC 8200 3) and up to OTS_MAX_IPV6_EXT_HEADERS extension headers. Returns the
 * upper-layer protocol, or a negative code. */
static __always_inline int ots_parse_ipv6(struct ots_cursor *c, void *data_end,
					  struct ipv6hdr **out)
{
	struct ipv6hdr *ip6 = c->pos;
	if ((void *)(ip6 + 1) > data_end)
		return OTS_PARSE_TRUNCATED;
	if (ip6->version != 6)
		return OTS_PARSE_MALFORMED;
	*out = ip6;
	c->pos = ip6 + 1;
	__u8 nexthdr = ip6->nexthdr;

#pragma unroll
	for (int i = 0; i < OTS_MAX_IPV6_EXT_HEADERS; i++) {
		switch (nexthdr) {
		case IPPROTO_HOPOPTS:
		case IPPROTO_ROUTING:
		case IPPROTO_DSTOPTS: {
			struct ots_ipv6_opt_hdr *opt = c->pos;
			if ((void *)(opt + 1) > data_end)
				return OTS_PARSE_TRUNCATED;
			nexthdr = opt->nexthdr;
			c->pos += (opt->hdrlen + 1) * 8;
			break;
		}
		case IPPROTO_AH: {
			/* RFC 4302 2.2: payload length in 4-octet units, minus 2. */
			struct ots_ipv6_opt_hdr *ah = c->pos;
			if ((void *)(ah + 1) > data_end)
				return OTS_PARSE_TRUNCATED;
			nexthdr = ah->nexthdr;
			c->pos += (ah->hdrlen + 2) * 4;
			break;
		}
		case IPPROTO_FRAGMENT: {
			struct ots_ipv6_frag_hdr *frag = c->pos;
			if ((void *)(frag + 1) > data_end)
				return OTS_PARSE_TRUNCATED;
			/* An atomic fragment (offset 0, M clear; RFC 6946) is a whole datagram. */
			if (frag->frag_off & bpf_htons(0xfff9))
				return OTS_PARSE_FRAGMENT;
			nexthdr = frag->nexthdr;
			c->pos = frag + 1;
			break;
		}
		default:
			return nexthdr;
		}
	}
	switch (nexthdr) {
	case IPPROTO_HOPOPTS:
	case IPPROTO_ROUTING:
	case IPPROTO_DSTOPTS:
	case IPPROTO_AH:
	case IPPROTO_FRAGMENT:
		return OTS_PARSE_TOO_DEEP;
	}
	return nexthdr;
}

/* TCP (RFC 9293 3.1): the fixed header, with a data offset of at least 5 words. */
static __always_inline int ots_parse_tcp(struct ots_cursor *c, void *data_end,
					 struct tcphdr **out)
{
	struct tcphdr *tcp = c->pos;
	if ((void *)(tcp + 1) > data_end)
		return OTS_PARSE_TRUNCATED;
	if (tcp->doff < 5)
		return OTS_PARSE_MALFORMED;
	*out = tcp;
	return 0;
}

/* UDP (RFC 768): the fixed header, with a length of at least the header. */
static __always_inline int ots_parse_udp(struct ots_cursor *c, void *data_end,
					 struct udphdr **out)
{
	struct udphdr *udp = c->pos;
	if ((void *)(udp + 1) > data_end)
		return OTS_PARSE_TRUNCATED;
	if (bpf_ntohs(udp->len) < sizeof(*udp))
		return OTS_PARSE_MALFORMED;
	*out = udp;
	return 0;
}

#endif /* OTSENSOR_PARSING_H */
