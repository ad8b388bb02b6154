//! IT identification protocols: what devices say about themselves in DHCP, LLDP, CDP,
//! NetBIOS Name Service, mDNS and SNMP responses, turned into identity observations
//! (host name, system name, description, model, OS, vendor class, location, object
//! id) and EVE events.
//!
//! These protocols feed the inventory only: they count their PDUs, but a PDU that does
//! not parse is counted as malformed **without** a protocol-error observation, and no
//! command, object access or error is ever reported, so they cannot raise an alert of
//! their own or look like industrial traffic to the detections. The SNMP community
//! string is never read (the view has no accessor for it). Nothing here allocates:
//! names are read into stack buffers and reported as [`ShortText`].

use std::net::{IpAddr, Ipv4Addr};

use arrayvec::ArrayVec;
use serde::Serialize;

use otsensor_wire::layers::Mac;
use otsensor_wire::{cdp as wire_cdp, dhcp as wire_dhcp, dns, lldp as wire_lldp};
use otsensor_wire::{mdns as wire_mdns, nbns as wire_nbns, snmp as wire_snmp};
use otsensor_wire::{Direction, Protocol};

use super::goose::MacText;
use super::{EventBody, PduCtx};
use crate::observe::{IdentityField, ShortText};

/// Parameter request list codes kept per DHCP event; more are counted.
pub const MAX_DHCP_PARAMS: usize = 32;
/// Resource records read per mDNS or NBNS message (a bound on the work per PDU).
const MAX_RECORDS: usize = 64;
/// Room for one DNS name as dotted text.
const NAME_BUF: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DhcpEvent {
    /// 1 BOOTREQUEST, 2 BOOTREPLY.
    pub op: u8,
    /// Option 53 (null for BOOTP).
    pub message_type: Option<u8>,
    pub xid: u32,
    pub client_mac: Option<MacText>,
    pub host_name: Option<ShortText>,
    pub vendor_class_id: Option<ShortText>,
    pub fqdn: Option<ShortText>,
    pub param_request_list: ArrayVec<u8, MAX_DHCP_PARAMS>,
    pub param_request_list_omitted: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LldpEvent {
    pub src_mac: Option<MacText>,
    pub chassis_id_subtype: Option<u8>,
    pub chassis_id: Option<ShortText>,
    pub port_id_subtype: Option<u8>,
    pub port_id: Option<ShortText>,
    pub ttl: Option<u16>,
    pub system_name: Option<ShortText>,
    pub system_description: Option<ShortText>,
    pub management_address: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CdpEvent {
    pub src_mac: Option<MacText>,
    pub version: u8,
    pub device_id: Option<ShortText>,
    pub port_id: Option<ShortText>,
    pub platform: Option<ShortText>,
    /// The first line of the software version.
    pub software_version: Option<ShortText>,
    pub address: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NbnsEvent {
    pub opcode: u8,
    pub response: bool,
    pub rcode: u8,
    /// The question's (or first answer's) NetBIOS name, without its suffix.
    pub name: Option<ShortText>,
    pub name_suffix: Option<u8>,
    /// The first NB address of the message.
    pub address: Option<IpAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MdnsEvent {
    pub response: bool,
    pub questions: u16,
    pub answers: u16,
    pub host_name: Option<ShortText>,
    /// The first service instance a PTR record names.
    pub service_instance: Option<ShortText>,
    /// TXT `md=`.
    pub model: Option<ShortText>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnmpEvent {
    /// 0 v1, 1 v2c.
    pub version: u8,
    pub pdu_type: u8,
    pub request_id: i64,
    pub error_status: i64,
    pub bindings: u16,
    pub sys_descr: Option<ShortText>,
    pub sys_object_id: Option<ShortText>,
    pub sys_name: Option<ShortText>,
    pub sys_location: Option<ShortText>,
}

/// The MAC that sent this PDU.
fn sender_mac(ctx: &PduCtx<'_>) -> Option<Mac> {
    match ctx.direction {
        Direction::Request => ctx.flow.client_mac,
        Direction::Response => ctx.flow.server_mac,
    }
}

/// The sender's IP when it names one host.
fn sender_ip(ctx: &PduCtx<'_>) -> Option<IpAddr> {
    let (ip, _) = ctx.sender();
    otsensor_wire::layers::is_unicast(ip).then_some(ip)
}

fn malformed(ctx: &mut PduCtx<'_>, protocol: Protocol) {
    // Counted only: identification protocols report no protocol errors.
    ctx.stats.malformed[protocol.index()] += 1;
}

fn text(value: Option<&[u8]>) -> Option<ShortText> {
    value.map(ShortText::from_bytes).filter(|t| !t.is_empty())
}

fn ipv4(octets: [u8; 4]) -> Option<IpAddr> {
    let ip = IpAddr::V4(Ipv4Addr::from(octets));
    otsensor_wire::layers::is_unicast(ip).then_some(ip)
}

/// A MAC as text ("00:21:91:06:f1:66") without allocating.
fn mac_text(mac: &[u8]) -> ShortText {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 17];
    let mut n = 0;
    for (i, &b) in mac.iter().take(6).enumerate() {
        if i > 0 {
            out[n] = b':';
            n += 1;
        }
        out[n] = HEX[usize::from(b >> 4)];
        out[n + 1] = HEX[usize::from(b & 0x0f)];
        n += 2;
    }
    ShortText::from_bytes(&out[..n])
}

/// The first line of a multi-line text (CDP software version, sysDescr).
fn first_line(value: &[u8]) -> &[u8] {
    let end = value
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(value.len());
    &value[..end]
}

/// DHCP (UDP 67/68). A client's own statements (BOOTREQUEST: options 12, 60, 81)
/// describe the client, found by its address when it has one (ciaddr, or a unicast
/// source) and otherwise by its hardware address.
pub fn dhcp(payload: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(message) = wire_dhcp::Dhcp::new_checked(payload) else {
        malformed(ctx, Protocol::Dhcp);
        return;
    };
    ctx.count(Protocol::Dhcp);
    let mut fqdn_buf = [0u8; NAME_BUF];
    let fqdn = message.client_fqdn().map(|f| f.name_into(&mut fqdn_buf));
    let fqdn: Option<&[u8]> = fqdn.filter(|f| !f.is_empty());
    if !message.is_reply() {
        let mac = message.client_mac().or_else(|| sender_mac(ctx));
        let ip = ipv4(message.ciaddr()).or_else(|| sender_ip(ctx));
        if let Some(name) = message.host_name().or(fqdn) {
            ctx.identity_of(Protocol::Dhcp, (ip, mac), IdentityField::HostName, name);
        }
        if let Some(class) = message.vendor_class_id() {
            ctx.identity_of(Protocol::Dhcp, (ip, mac), IdentityField::VendorClass, class);
        }
    }
    if ctx.events_enabled() {
        let mut params = ArrayVec::new();
        let mut omitted = 0u16;
        for &code in message.parameter_request_list().unwrap_or(&[]) {
            if params.try_push(code).is_err() {
                omitted = omitted.saturating_add(1);
            }
        }
        ctx.event(EventBody::Dhcp(DhcpEvent {
            op: message.op(),
            message_type: message.message_type().map(u8::from),
            xid: message.xid(),
            client_mac: message.client_mac().map(MacText),
            host_name: text(message.host_name()),
            vendor_class_id: text(message.vendor_class_id()),
            fqdn: text(fqdn),
            param_request_list: params,
            param_request_list_omitted: omitted,
        }));
    }
}

/// LLDP (EtherType 0x88CC): the sending port's device, by its MAC (and by its
/// management address when that is a device the inventory knows).
pub fn lldp(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(lldp) = wire_lldp::Lldp::new_checked(pdu) else {
        malformed(ctx, Protocol::Lldp);
        return;
    };
    ctx.count(Protocol::Lldp);
    let mac = ctx.flow.client_mac;
    let management = lldp
        .management_address()
        .and_then(|m| m.ipv4())
        .and_then(ipv4);
    let device = (management, mac);
    if let Some(name) = lldp.system_name() {
        ctx.identity_of(Protocol::Lldp, device, IdentityField::SystemName, name);
    }
    if let Some(description) = lldp.system_description() {
        ctx.identity_of(
            Protocol::Lldp,
            device,
            IdentityField::Description,
            description,
        );
    }
    if ctx.events_enabled() {
        let id_text = |id: Option<wire_lldp::Id<'_>>, mac_subtype: u8| {
            id.map(|id| {
                if id.subtype == mac_subtype && id.id.len() == 6 {
                    mac_text(id.id)
                } else {
                    ShortText::from_bytes(id.id)
                }
            })
        };
        let chassis = lldp.chassis_id();
        let port = lldp.port_id();
        ctx.event(EventBody::Lldp(LldpEvent {
            src_mac: mac.map(MacText),
            chassis_id_subtype: chassis.map(|c| c.subtype),
            // Chassis subtype 4 and port subtype 3 are MAC addresses (802.1AB 8.5.2.2, 8.5.3.2).
            chassis_id: id_text(chassis, 4),
            port_id_subtype: port.map(|p| p.subtype),
            port_id: id_text(port, 3),
            ttl: lldp.ttl(),
            system_name: text(lldp.system_name()),
            system_description: text(lldp.system_description()),
            management_address: management,
        }));
    }
}

/// CDP (SNAP, the bytes after the LLC control field): a Cisco device by its MAC and
/// the address it announces.
pub fn cdp(llc_payload: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(cdp) = wire_cdp::from_snap(llc_payload) else {
        malformed(ctx, Protocol::Cdp);
        return;
    };
    ctx.count(Protocol::Cdp);
    let mac = ctx.flow.client_mac;
    let address = cdp.ipv4_address().and_then(ipv4);
    let device = (address, mac);
    if let Some(id) = cdp.device_id() {
        ctx.identity_of(Protocol::Cdp, device, IdentityField::SystemName, id);
    }
    if let Some(platform) = cdp.platform() {
        ctx.identity_of(Protocol::Cdp, device, IdentityField::Model, platform);
    }
    if let Some(version) = cdp.software_version() {
        ctx.identity_of(
            Protocol::Cdp,
            device,
            IdentityField::Os,
            first_line(version),
        );
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Cdp(CdpEvent {
            src_mac: mac.map(MacText),
            version: cdp.version(),
            device_id: text(cdp.device_id()),
            port_id: text(cdp.port_id()),
            platform: text(cdp.platform()),
            software_version: text(cdp.software_version().map(first_line)),
            address,
        }));
    }
}

/// NBNS (UDP 137): a host's registrations and refreshes of its unique workstation or
/// server name name the registering address; positive query answers and node status
/// answers name the address they are about.
pub fn nbns(payload: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(nbns) = wire_nbns::Nbns::new_checked(payload) else {
        malformed(ctx, Protocol::Nbns);
        return;
    };
    ctx.count(Protocol::Nbns);
    let message = nbns.message;
    let opcode = nbns.opcode();
    let registering = !message.is_response()
        && matches!(
            opcode,
            wire_nbns::opcode::REGISTRATION
                | wire_nbns::opcode::REFRESH
                | wire_nbns::opcode::MULTIHOMED_REGISTRATION
        );
    let answering =
        message.is_response() && opcode == wire_nbns::opcode::QUERY && message.rcode() == 0;
    let question = message
        .questions()
        .next()
        .and_then(|(at, _)| nbns.name_at(at));
    let mut first_address = None;
    let mut first_name = question;
    for record in message.records().take(MAX_RECORDS) {
        match record.rtype {
            dns::rtype::NB if registering || answering => {
                let Some(name) = nbns.name_at(record.name_at) else {
                    continue;
                };
                first_name = first_name.or(Some(name));
                for entry in wire_nbns::nb_addresses(record.rdata).take(MAX_RECORDS) {
                    let address = ipv4(entry.address);
                    first_address = first_address.or(address);
                    if name.is_host_suffix() && !entry.is_group() && address.is_some() {
                        ctx.identity_of(
                            Protocol::Nbns,
                            (address, None),
                            IdentityField::HostName,
                            name.name(),
                        );
                    }
                }
            }
            dns::rtype::NBSTAT if message.is_response() => {
                let sender = (sender_ip(ctx), sender_mac(ctx));
                for (name, flags) in wire_nbns::nbstat_names(record.rdata).take(MAX_RECORDS) {
                    if name.suffix == 0x00 && flags & wire_nbns::NbAddress::GROUP == 0 {
                        ctx.identity_of(
                            Protocol::Nbns,
                            sender,
                            IdentityField::HostName,
                            name.name(),
                        );
                        break;
                    }
                }
            }
            _ => {}
        }
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Nbns(NbnsEvent {
            opcode,
            response: message.is_response(),
            rcode: message.rcode(),
            name: first_name.map(|n| ShortText::from_bytes(n.name())),
            name_suffix: first_name.map(|n| n.suffix),
            address: first_address,
        }));
    }
}

/// mDNS (UDP 5353): responses only. The first A/AAAA owner name (or SRV target) that
/// is not a service name is the sender's host name; TXT `md=` its model.
pub fn mdns(payload: &[u8], ctx: &mut PduCtx<'_>) {
    let Ok(mdns) = wire_mdns::Mdns::new_checked(payload) else {
        malformed(ctx, Protocol::Mdns);
        return;
    };
    ctx.count(Protocol::Mdns);
    let message = mdns.message;
    if !mdns.is_response() {
        if ctx.events_enabled() {
            ctx.event(EventBody::Mdns(MdnsEvent {
                response: false,
                questions: message.question_count(),
                answers: message.answer_count(),
                host_name: None,
                service_instance: None,
                model: None,
            }));
        }
        return;
    }
    let mut buf = [0u8; NAME_BUF];
    let mut host_name: Option<ShortText> = None;
    let mut service_instance: Option<ShortText> = None;
    let mut model: Option<ShortText> = None;
    for record in message.records().take(MAX_RECORDS) {
        match record.rtype {
            dns::rtype::A | dns::rtype::AAAA if host_name.is_none() => {
                if let Some(name) = message.name_into(record.name_at, &mut buf) {
                    if !name.is_empty() && !wire_mdns::is_service_name(name) {
                        host_name = Some(ShortText::from_bytes(name));
                    }
                }
            }
            dns::rtype::SRV if host_name.is_none() => {
                let name = wire_mdns::srv_target_at(&record)
                    .and_then(|at| message.name_into(at, &mut buf));
                if let Some(name) = name.filter(|n| !n.is_empty() && !wire_mdns::is_service_name(n))
                {
                    host_name = Some(ShortText::from_bytes(name));
                }
            }
            dns::rtype::PTR if service_instance.is_none() => {
                if let Some(name) = message.name_into(record.rdata_at, &mut buf) {
                    service_instance = text(Some(name));
                }
            }
            dns::rtype::TXT if model.is_none() => {
                model = text(wire_mdns::txt_value(record.rdata, b"md"));
            }
            _ => {}
        }
    }
    let device = (sender_ip(ctx), sender_mac(ctx));
    if let Some(name) = host_name {
        // "plc-01.local" is host "plc-01" (the .local domain is mDNS's own, RFC 6762
        // §3), as DHCP and NetBIOS name it.
        let name = name.as_bytes();
        let bare = name.strip_suffix(b".local").unwrap_or(name);
        ctx.identity_of(Protocol::Mdns, device, IdentityField::HostName, bare);
    }
    if let Some(model) = model {
        ctx.identity_of(
            Protocol::Mdns,
            device,
            IdentityField::Model,
            model.as_bytes(),
        );
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Mdns(MdnsEvent {
            response: true,
            questions: message.question_count(),
            answers: message.answer_count(),
            host_name,
            service_instance,
            model,
        }));
    }
}

/// SNMP v1/v2c (UDP 161 responses, traps): the agent's MIB-II system group.
pub fn snmp(payload: &[u8], ctx: &mut PduCtx<'_>) {
    let snmp = match wire_snmp::Snmp::new_checked(payload) {
        Ok(snmp) => snmp,
        // SNMPv3 is SNMP, only not read here.
        Err(wire_snmp::Error::UnsupportedVersion(_)) => {
            ctx.count(Protocol::Snmp);
            return;
        }
        Err(wire_snmp::Error::BadEncoding) => {
            malformed(ctx, Protocol::Snmp);
            return;
        }
    };
    ctx.count(Protocol::Snmp);
    let from_agent = matches!(
        snmp.pdu_type(),
        wire_snmp::PduType::GetResponse | wire_snmp::PduType::TrapV1 | wire_snmp::PduType::TrapV2
    );
    let value = |oid: &[u8]| {
        snmp.value_of(oid)
            .filter(|b| b.value_tag == wire_snmp::tag::OCTET_STRING)
            .map(|b| b.value)
    };
    let mut oid_buf = [0u8; 64];
    let object_id = snmp
        .value_of(wire_snmp::oid::SYS_OBJECT_ID)
        .filter(|b| b.value_tag == wire_snmp::tag::OBJECT_IDENTIFIER)
        .map(|b| wire_snmp::oid_text(b.value, &mut oid_buf));
    let descr = value(wire_snmp::oid::SYS_DESCR).map(first_line);
    let name = value(wire_snmp::oid::SYS_NAME);
    let location = value(wire_snmp::oid::SYS_LOCATION);
    if from_agent && snmp.error_status() == 0 {
        let device = (sender_ip(ctx), sender_mac(ctx));
        for (field, value) in [
            (IdentityField::Description, descr),
            (IdentityField::ObjectId, object_id),
            (IdentityField::SystemName, name),
            (IdentityField::Location, location),
        ] {
            if let Some(value) = value {
                ctx.identity_of(Protocol::Snmp, device, field, value);
            }
        }
    }
    if ctx.events_enabled() {
        let bindings = snmp.bindings().take(usize::from(u16::MAX)).count() as u16;
        ctx.event(EventBody::Snmp(SnmpEvent {
            version: snmp.version(),
            pdu_type: u8::from(snmp.pdu_type()),
            request_id: snmp.request_id(),
            error_status: snmp.error_status(),
            bindings,
            sys_descr: text(descr),
            sys_object_id: text(object_id),
            sys_name: text(name),
            sys_location: text(location),
        }));
    }
}
