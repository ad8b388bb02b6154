//! OPC UA binary messages (OPC 10000-6 §7.1.2 UA TCP message header, §6.7.2 security
//! headers, §5.2 binary encoding; OPC 10000-4 §7.28/§7.29 request and response
//! headers). Services are identified by their DefaultBinary encoding ids; bodies carry
//! the request/response header and a short, plausible tail.

use super::{Pdu, Proto};

/// `http://opcfoundation.org/UA/SecurityPolicy#None` and a signing policy.
pub const POLICY_NONE: &str = "http://opcfoundation.org/UA/SecurityPolicy#None";
pub const POLICY_BASIC256SHA256: &str = "http://opcfoundation.org/UA/SecurityPolicy#Basic256Sha256";
/// MessageSecurityMode (Part 4 §7.20): None 1, Sign 2, SignAndEncrypt 3.
pub const MODE_NONE: u32 = 1;

/// Encoding ids (NodeIds.csv) of the services the builders write.
pub const OPEN_SECURE_CHANNEL: u16 = 446;
pub const CLOSE_SECURE_CHANNEL: u16 = 452;
pub const CREATE_SESSION: u16 = 461;
pub const ACTIVATE_SESSION: u16 = 467;
pub const READ: u16 = 631;
pub const WRITE: u16 = 673;
/// A response's id is its request's + 3.
pub const RESPONSE_OFFSET: u16 = 3;

fn pdu(function: &'static str) -> Pdu {
    Pdu {
        proto: Proto::OpcUa,
        function,
        counts_as_pdu: true,
    }
}

fn string(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(&(text.len() as i32).to_le_bytes());
    out.extend_from_slice(text);
}

fn null_string(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_le_bytes());
}

/// A four-byte numeric NodeId in namespace 0.
fn type_id(out: &mut Vec<u8>, id: u16) {
    out.extend_from_slice(&[0x01, 0x00]);
    out.extend_from_slice(&id.to_le_bytes());
}

/// The message header: three letters, 'F', and the size (patched by `finish`).
fn header(out: &mut Vec<u8>, kind: &[u8; 3]) -> usize {
    let start = out.len();
    out.extend_from_slice(kind);
    out.push(b'F');
    out.extend_from_slice(&[0; 4]);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let size = (out.len() - start) as u32;
    out[start + 4..start + 8].copy_from_slice(&size.to_le_bytes());
}

/// RequestHeader (Part 4 §7.28) with a null authentication token.
fn request_header(out: &mut Vec<u8>, handle: u32) {
    out.extend_from_slice(&[0x00, 0x00]); // AuthenticationToken
    out.extend_from_slice(&0x01da_0000_0000_0000u64.to_le_bytes()); // Timestamp
    out.extend_from_slice(&handle.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // ReturnDiagnostics
    null_string(out); // AuditEntryId
    out.extend_from_slice(&10_000u32.to_le_bytes()); // TimeoutHint
    out.extend_from_slice(&[0x00, 0x00, 0x00]); // AdditionalHeader
}

/// ResponseHeader (Part 4 §7.29) with a good result.
fn response_header(out: &mut Vec<u8>, handle: u32) {
    out.extend_from_slice(&0x01da_0000_0000_0000u64.to_le_bytes());
    out.extend_from_slice(&handle.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // ServiceResult
    out.push(0x00); // ServiceDiagnostics
    out.extend_from_slice(&(-1i32).to_le_bytes()); // StringTable
    out.extend_from_slice(&[0x00, 0x00, 0x00]); // AdditionalHeader
}

/// HEL to `endpoint` (Part 6 §7.1.2.3).
pub fn hello(out: &mut Vec<u8>, endpoint: &str) -> Pdu {
    let start = header(out, b"HEL");
    for value in [0u32, 65_536, 65_536, 0, 0] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    string(out, endpoint.as_bytes());
    finish(out, start);
    pdu("HEL")
}

/// ACK (Part 6 §7.1.2.4).
pub fn acknowledge(out: &mut Vec<u8>) -> Pdu {
    let start = header(out, b"ACK");
    for value in [0u32, 65_536, 65_536, 0, 0] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    finish(out, start);
    pdu("ACK")
}

/// Where a secure conversation message travels.
#[derive(Clone, Copy, Debug)]
pub struct Channel {
    pub id: u32,
    pub token: u32,
}

/// OpenSecureChannelRequest under `policy`. With policy None the body is in clear
/// and asks for `mode`; with any other policy the body is asymmetrically encrypted
/// (written as opaque bytes: no observer can read it).
pub fn open_request(out: &mut Vec<u8>, policy: &str, mode: u32, request_id: u32) -> Pdu {
    let start = header(out, b"OPN");
    out.extend_from_slice(&0u32.to_le_bytes()); // SecureChannelId: none yet
    string(out, policy.as_bytes());
    if policy == POLICY_NONE {
        null_string(out); // SenderCertificate
        null_string(out); // ReceiverCertificateThumbprint
    } else {
        string(out, &[0x30; 64]);
        string(out, &[0x5a; 20]);
    }
    out.extend_from_slice(&1u32.to_le_bytes()); // SequenceNumber
    out.extend_from_slice(&request_id.to_le_bytes());
    if policy == POLICY_NONE {
        type_id(out, OPEN_SECURE_CHANNEL);
        request_header(out, request_id);
        out.extend_from_slice(&0u32.to_le_bytes()); // ClientProtocolVersion
        out.extend_from_slice(&0u32.to_le_bytes()); // RequestType: Issue
        out.extend_from_slice(&mode.to_le_bytes());
        null_string(out); // ClientNonce
        out.extend_from_slice(&3_600_000u32.to_le_bytes()); // RequestedLifetime
    } else {
        out.extend_from_slice(&[0xa7; 256]);
    }
    finish(out, start);
    pdu("OPN")
}

/// OpenSecureChannelResponse on `channel` under `policy` (encrypted unless None).
pub fn open_response(out: &mut Vec<u8>, policy: &str, channel: Channel, request_id: u32) -> Pdu {
    let start = header(out, b"OPN");
    out.extend_from_slice(&channel.id.to_le_bytes());
    string(out, policy.as_bytes());
    if policy == POLICY_NONE {
        null_string(out);
        null_string(out);
    } else {
        string(out, &[0x31; 64]);
        string(out, &[0x5b; 20]);
    }
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    if policy == POLICY_NONE {
        type_id(out, OPEN_SECURE_CHANNEL + RESPONSE_OFFSET);
        response_header(out, request_id);
        out.extend_from_slice(&0u32.to_le_bytes()); // ServerProtocolVersion
        out.extend_from_slice(&channel.id.to_le_bytes());
        out.extend_from_slice(&channel.token.to_le_bytes());
        out.extend_from_slice(&0x01da_0000_0000_0000u64.to_le_bytes()); // CreatedAt
        out.extend_from_slice(&3_600_000u32.to_le_bytes()); // RevisedLifetime
        null_string(out); // ServerNonce
    } else {
        out.extend_from_slice(&[0xa8; 256]);
    }
    finish(out, start);
    pdu("OPN")
}

/// A MSG carrying a service request or response (`service` its encoding id) with
/// `tail` after the header: in clear, as on a None or Sign channel (a Sign channel's
/// signature is left out: the sensor does not check it).
pub fn message(
    out: &mut Vec<u8>,
    channel: Channel,
    sequence: u32,
    request_id: u32,
    service: u16,
    tail: &[u8],
) -> Pdu {
    let start = header(out, b"MSG");
    out.extend_from_slice(&channel.id.to_le_bytes());
    out.extend_from_slice(&channel.token.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    type_id(out, service);
    let response = matches!(
        service.checked_sub(RESPONSE_OFFSET),
        Some(
            OPEN_SECURE_CHANNEL
                | CLOSE_SECURE_CHANNEL
                | CREATE_SESSION
                | ACTIVATE_SESSION
                | READ
                | WRITE
        )
    );
    if response {
        response_header(out, request_id);
    } else {
        request_header(out, request_id);
    }
    out.extend_from_slice(tail);
    finish(out, start);
    pdu(function_key(service))
}

fn function_key(service: u16) -> &'static str {
    match service {
        CREATE_SESSION => "MSG/461",
        464 => "MSG/464",
        ACTIVATE_SESSION => "MSG/467",
        470 => "MSG/470",
        READ => "MSG/631",
        634 => "MSG/634",
        WRITE => "MSG/673",
        676 => "MSG/676",
        _ => "MSG/other",
    }
}

/// ReadRequest's tail: max age 0, both timestamps, one node (ns 2, `node`), Value.
pub fn read_tail(node: u32) -> Vec<u8> {
    let mut tail = Vec::with_capacity(40);
    tail.extend_from_slice(&0f64.to_le_bytes()); // MaxAge
    tail.extend_from_slice(&2u32.to_le_bytes()); // TimestampsToReturn: Both
    tail.extend_from_slice(&1i32.to_le_bytes()); // NodesToRead
    tail.push(0x02);
    tail.extend_from_slice(&2u16.to_le_bytes());
    tail.extend_from_slice(&node.to_le_bytes());
    tail.extend_from_slice(&13u32.to_le_bytes()); // AttributeId: Value
    tail.extend_from_slice(&(-1i32).to_le_bytes()); // IndexRange
    tail.extend_from_slice(&[0, 0]); // DataEncoding: namespace
    tail.extend_from_slice(&(-1i32).to_le_bytes()); // DataEncoding: name
    tail
}

/// A Read or Write response's tail: one result (a Double DataValue for Read, a good
/// StatusCode for Write), no diagnostics.
pub fn result_tail(value: Option<f64>) -> Vec<u8> {
    let mut tail = Vec::with_capacity(24);
    tail.extend_from_slice(&1i32.to_le_bytes());
    match value {
        Some(value) => {
            tail.extend_from_slice(&[0x01, 11]); // DataValue: Value, Variant Double
            tail.extend_from_slice(&value.to_le_bytes());
        }
        None => tail.extend_from_slice(&0u32.to_le_bytes()),
    }
    tail.extend_from_slice(&(-1i32).to_le_bytes()); // DiagnosticInfos
    tail
}

fn byte_string(out: &mut Vec<u8>, bytes: &[u8]) {
    string(out, bytes);
}

/// A null array (length -1).
fn null_array(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i32).to_le_bytes());
}

/// CreateSessionRequest's tail (Part 4 §5.6.2.2): the client's ApplicationDescription,
/// the endpoint, a session name, a 32-byte nonce, no certificate, a 20-minute timeout.
pub fn create_session_tail(endpoint: &str, client: &str, nonce: [u8; 32]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(128 + endpoint.len() + 2 * client.len());
    string(&mut tail, format!("urn:{client}").as_bytes()); // ApplicationUri
    null_string(&mut tail); // ProductUri
    tail.push(0x02); // ApplicationName: LocalizedText with text only
    string(&mut tail, client.as_bytes());
    tail.extend_from_slice(&1i32.to_le_bytes()); // ApplicationType: Client
    null_string(&mut tail); // GatewayServerUri
    null_string(&mut tail); // DiscoveryProfileUri
    null_array(&mut tail); // DiscoveryUrls
    null_string(&mut tail); // ServerUri
    string(&mut tail, endpoint.as_bytes()); // EndpointUrl
    string(&mut tail, format!("{client} session").as_bytes()); // SessionName
    byte_string(&mut tail, &nonce); // ClientNonce
    null_string(&mut tail); // ClientCertificate
    tail.extend_from_slice(&1_200_000f64.to_le_bytes()); // RequestedSessionTimeout
    tail.extend_from_slice(&0u32.to_le_bytes()); // MaxResponseMessageSize
    tail
}

/// CreateSessionResponse's tail (Part 4 §5.6.2.2): session id and authentication token
/// (numeric NodeIds in namespace 1), the revised timeout, a nonce, no certificate,
/// endpoints or signature.
pub fn create_session_response_tail(session: u32, token: u32, nonce: [u8; 32]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(80);
    for id in [session, token] {
        tail.extend_from_slice(&[0x02, 0x01, 0x00]);
        tail.extend_from_slice(&id.to_le_bytes());
    }
    tail.extend_from_slice(&1_200_000f64.to_le_bytes()); // RevisedSessionTimeout
    byte_string(&mut tail, &nonce); // ServerNonce
    null_string(&mut tail); // ServerCertificate
    null_array(&mut tail); // ServerEndpoints
    null_array(&mut tail); // ServerSoftwareCertificates
    null_string(&mut tail); // ServerSignature.Algorithm
    null_string(&mut tail); // ServerSignature.Signature
    tail.extend_from_slice(&0u32.to_le_bytes()); // MaxRequestMessageSize
    tail
}

/// ActivateSessionRequest's tail (Part 4 §5.6.3.2): no client signature or software
/// certificates, locale "en", a null user identity token (anonymous), no signature.
pub fn activate_session_tail() -> Vec<u8> {
    let mut tail = Vec::with_capacity(32);
    null_string(&mut tail); // ClientSignature.Algorithm
    null_string(&mut tail); // ClientSignature.Signature
    null_array(&mut tail); // ClientSoftwareCertificates
    tail.extend_from_slice(&1i32.to_le_bytes()); // LocaleIds
    string(&mut tail, b"en");
    tail.extend_from_slice(&[0x00, 0x00, 0x00]); // UserIdentityToken: null
    null_string(&mut tail); // UserTokenSignature.Algorithm
    null_string(&mut tail); // UserTokenSignature.Signature
    tail
}

/// ActivateSessionResponse's tail: a fresh nonce, no results, no diagnostics.
pub fn activate_session_response_tail(nonce: [u8; 32]) -> Vec<u8> {
    let mut tail = Vec::with_capacity(48);
    byte_string(&mut tail, &nonce); // ServerNonce
    tail.extend_from_slice(&0i32.to_le_bytes()); // Results
    null_array(&mut tail); // DiagnosticInfos
    tail
}

/// WriteRequest's tail: one node (ns 2, `node`), Value, a Double.
pub fn write_tail(node: u32, value: f64) -> Vec<u8> {
    let mut tail = Vec::with_capacity(32);
    tail.extend_from_slice(&1i32.to_le_bytes()); // NodesToWrite
    tail.push(0x02);
    tail.extend_from_slice(&2u16.to_le_bytes());
    tail.extend_from_slice(&node.to_le_bytes());
    tail.extend_from_slice(&13u32.to_le_bytes());
    tail.extend_from_slice(&(-1i32).to_le_bytes());
    tail.extend_from_slice(&[0x01, 11]);
    tail.extend_from_slice(&value.to_le_bytes());
    tail
}

/// CloseSecureChannelRequest (CLO).
pub fn close(out: &mut Vec<u8>, channel: Channel, sequence: u32, request_id: u32) -> Pdu {
    let start = header(out, b"CLO");
    out.extend_from_slice(&channel.id.to_le_bytes());
    out.extend_from_slice(&channel.token.to_le_bytes());
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&request_id.to_le_bytes());
    type_id(out, CLOSE_SECURE_CHANNEL);
    request_header(out, request_id);
    finish(out, start);
    pdu("CLO")
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::opcua::{Message, MessageType, SecurityMode};
    use otsensor_wire::Direction;

    #[test]
    fn messages_parse_with_the_sensor_view() {
        let mut out = Vec::new();
        open_request(&mut out, POLICY_NONE, MODE_NONE, 1);
        let parsed = Message::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parsed.message_type(), MessageType::OpenSecureChannel);
        let secure = parsed.secure().unwrap_or_else(|| panic!("no secure"));
        assert!(secure.policy_is_none());
        let body = secure.service().unwrap_or_else(|| panic!("no body"));
        assert_eq!(body.open_security_mode(), Some(SecurityMode::None));
        let channel = Channel { id: 5, token: 1 };
        let mut out = Vec::new();
        message(&mut out, channel, 2, 2, WRITE, &write_tail(7, 1.5));
        let parsed = Message::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        let body = parsed.secure().and_then(|s| s.service());
        let body = body.unwrap_or_else(|| panic!("no body"));
        assert_eq!(
            body.service().map(|(s, d)| (s.name, d)),
            Some(("Write", Direction::Request))
        );
        assert_eq!(body.request_header().map(|h| h.request_handle), Some(2));
        let mut out = Vec::new();
        message(&mut out, channel, 3, 2, WRITE + 3, &result_tail(None));
        let parsed = Message::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        let body = parsed.secure().and_then(|s| s.service());
        let header = body.and_then(|b| b.response_header());
        assert_eq!(
            header.map(|h| (h.request_handle, h.service_result)),
            Some((2, 0))
        );
        let mut out = Vec::new();
        open_request(&mut out, POLICY_BASIC256SHA256, 3, 1);
        let parsed = Message::new_checked(&out).unwrap_or_else(|e| panic!("{e}"));
        let secure = parsed.secure().unwrap_or_else(|| panic!("no secure"));
        assert!(!secure.policy_is_none());
    }
}
