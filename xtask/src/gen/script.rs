//! What actors plan: frames with the delay before each, and TCP connections that keep
//! their sequence numbers right while segments are planned.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::plant::{Peer, Plant};
use super::proto::Pdu;
use super::wire::{tcp_flags, FrameSpec, Net, L2};

/// One planned frame; `spec: None` is a timer tick that writes nothing.
#[derive(Debug)]
pub struct Planned {
    pub delay_ns: u64,
    pub spec: Option<FrameSpec>,
    /// PDUs this frame completes.
    pub pdus: Vec<Pdu>,
}

pub type Script = VecDeque<Planned>;

/// Link-layer addressing from `from` to `to`: a host's own MAC, or the gateway's for
/// addresses beyond it. The VLAN is the shared access VLAN, untagged when routed.
pub fn l2_between(plant: &Plant, from: Peer, to: Peer) -> L2 {
    let mac = |peer: Peer| match peer {
        Peer::Host(h) => plant.hosts[h].mac,
        Peer::External(_) => plant.gateway_mac,
    };
    let vlan = match (from, to) {
        (Peer::Host(a), Peer::Host(b)) if plant.hosts[a].vlan == plant.hosts[b].vlan => {
            plant.hosts[a].vlan
        }
        _ => 0,
    };
    L2 {
        src: mac(from),
        dst: mac(to),
        vlan,
    }
}

/// The address of `peer` in the family chosen for a conversation.
pub fn address(plant: &Plant, peer: Peer, ipv6: bool) -> IpAddr {
    match peer {
        Peer::Host(h) => {
            let host = &plant.hosts[h];
            match (ipv6, host.ipv6) {
                (true, Some(v6)) => IpAddr::V6(v6),
                _ => IpAddr::V4(host.ipv4),
            }
        }
        Peer::External(ip) => ip,
    }
}

/// One TCP connection as both ends see it.
#[derive(Debug)]
pub struct TcpConn {
    to_server: L2,
    to_client: L2,
    client_ip: IpAddr,
    server_ip: IpAddr,
    client_port: u16,
    server_port: u16,
    client_next: u32,
    server_next: u32,
    client_window: u16,
    server_window: u16,
}

impl TcpConn {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plant: &Plant,
        client: Peer,
        server: Peer,
        ipv6: bool,
        client_port: u16,
        server_port: u16,
        isn: (u32, u32),
        windows: (u16, u16),
    ) -> TcpConn {
        TcpConn {
            to_server: l2_between(plant, client, server),
            to_client: l2_between(plant, server, client),
            client_ip: address(plant, client, ipv6),
            server_ip: address(plant, server, ipv6),
            client_port,
            server_port,
            client_next: isn.0,
            server_next: isn.1,
            client_window: windows.0,
            server_window: windows.1,
        }
    }

    /// Plans one segment; SYN and FIN count as one sequence number each.
    pub fn segment(
        &mut self,
        script: &mut Script,
        delay_ns: u64,
        from_client: bool,
        flags: u8,
        payload: Vec<u8>,
        pdus: Vec<Pdu>,
    ) {
        let mss = flags & tcp_flags::SYN != 0;
        let advance =
            payload.len() as u32 + u32::from(flags & (tcp_flags::SYN | tcp_flags::FIN) != 0);
        let (l2, src, dst, sport, dport, seq, ack, window) = if from_client {
            let seq = self.client_next;
            self.client_next = seq.wrapping_add(advance);
            (
                self.to_server,
                self.client_ip,
                self.server_ip,
                self.client_port,
                self.server_port,
                seq,
                self.server_next,
                self.client_window,
            )
        } else {
            let seq = self.server_next;
            self.server_next = seq.wrapping_add(advance);
            (
                self.to_client,
                self.server_ip,
                self.client_ip,
                self.server_port,
                self.client_port,
                seq,
                self.client_next,
                self.server_window,
            )
        };
        script.push_back(Planned {
            delay_ns,
            spec: Some(FrameSpec {
                l2,
                net: Net::Tcp {
                    src,
                    dst,
                    sport,
                    dport,
                    seq,
                    ack,
                    flags,
                    window,
                    mss,
                    payload,
                },
            }),
            pdus,
        });
    }

    /// Data with PSH|ACK.
    pub fn data(
        &mut self,
        script: &mut Script,
        delay_ns: u64,
        from_client: bool,
        payload: Vec<u8>,
        pdus: Vec<Pdu>,
    ) {
        self.segment(
            script,
            delay_ns,
            from_client,
            tcp_flags::PSH | tcp_flags::ACK,
            payload,
            pdus,
        );
    }

    /// A pure acknowledgement.
    pub fn ack(&mut self, script: &mut Script, delay_ns: u64, from_client: bool) {
        self.segment(
            script,
            delay_ns,
            from_client,
            tcp_flags::ACK,
            Vec::new(),
            Vec::new(),
        );
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self, script: &mut Script, delay_ns: u64, rtt_ns: u64) {
        self.segment(
            script,
            delay_ns,
            true,
            tcp_flags::SYN,
            Vec::new(),
            Vec::new(),
        );
        self.segment(
            script,
            rtt_ns / 2,
            false,
            tcp_flags::SYN | tcp_flags::ACK,
            Vec::new(),
            Vec::new(),
        );
        self.segment(
            script,
            rtt_ns / 2,
            true,
            tcp_flags::ACK,
            Vec::new(),
            Vec::new(),
        );
    }

    /// FIN from one side, FIN back, last ACK.
    pub fn close(&mut self, script: &mut Script, delay_ns: u64, rtt_ns: u64, client_first: bool) {
        let fin_ack = tcp_flags::FIN | tcp_flags::ACK;
        self.segment(
            script,
            delay_ns,
            client_first,
            fin_ack,
            Vec::new(),
            Vec::new(),
        );
        self.segment(
            script,
            rtt_ns / 2,
            !client_first,
            fin_ack,
            Vec::new(),
            Vec::new(),
        );
        self.segment(
            script,
            rtt_ns / 2,
            client_first,
            tcp_flags::ACK,
            Vec::new(),
            Vec::new(),
        );
    }
}
