//! MMS (ISO 9506) over ISO-on-TCP, as IEC 61850 clients and servers speak it: the
//! association (ISO 8327-1 session CONNECT/ACCEPT carrying an ISO 8823 presentation
//! CP/CPA, carrying an ISO 8650 ACSE AARQ/AARE whose user-information holds the MMS
//! initiate request/response), confirmed services in the session data transfer
//! (Give-Tokens + Data-Transfer SPDUs, fully-encoded presentation data with context 3),
//! information reports, and the release (conclude, then FINISH/DISCONNECT with ACSE
//! RLRQ/RLRE). Connection set-up reuses the COTP CR/CC of [`super::s7comm`].
//!
//! tshark decodes MMS in data transfer only after it has seen the CONNECT whose CP
//! defines presentation context 3 as the MMS abstract syntax, so a connection must start
//! with [`initiate_request`]. The layout follows mms-piccolo.pcap and
//! mms-iec61850-reports.pcap (`../shared/pcaps`).
//!
//! Each builder of an MMS PDU returns its truth key: tshark's PDU name, and for
//! confirmed and unconfirmed PDUs `/<service>` (`"confirmed-RequestPDU/4"` is a Read).

use super::ber::{push_len, unsigned};
use super::{Pdu, Proto};

fn key(function: &'static str) -> Pdu {
    Pdu {
        proto: Proto::Mms,
        function,
        counts_as_pdu: true,
    }
}

/// One BER element.
fn tlv(tag: &[u8], contents: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 3 + contents.len());
    out.extend_from_slice(tag);
    push_len(&mut out, contents.len());
    out.extend_from_slice(contents);
    out
}

/// One BER element whose contents are `parts` one after the other.
fn constructed(tag: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

/// A TPKT + COTP DT (last data unit) carrying the session TSDU `tsdu`.
fn cotp_dt(out: &mut Vec<u8>, tsdu: &[u8]) {
    let mut body = Vec::with_capacity(3 + tsdu.len());
    body.extend_from_slice(&[0x02, 0xf0, 0x80]);
    body.extend_from_slice(tsdu);
    super::s7comm::tpkt(out, &body);
}

/// A session SPDU or parameter unit: identifier, length indicator (one octet, or
/// 0xFF and two octets from 255 on; ISO 8327-1 8.2.5), value.
fn spdu(si: u8, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + value.len());
    out.push(si);
    if value.len() < 0xff {
        out.push(value.len() as u8);
    } else {
        out.push(0xff);
        out.extend_from_slice(&(value.len().min(0xffff) as u16).to_be_bytes());
    }
    out.extend_from_slice(value);
    out
}

/// Session identifiers (ISO 8327-1 8.3) and parameter codes.
const SI_CONNECT: u8 = 13;
const SI_ACCEPT: u8 = 14;
const SI_FINISH: u8 = 9;
const SI_DISCONNECT: u8 = 10;
const PI_USER_DATA: u8 = 193;
/// Connect/Accept Item (PGI 5): protocol options 0 (PI 19), version number 2 (PI 22);
/// session user requirements (PI 20): duplex.
const SESSION_ITEMS: [u8; 12] = [
    0x05, 0x06, 0x13, 0x01, 0x00, 0x16, 0x01, 0x02, 0x14, 0x02, 0x00, 0x02,
];
/// Calling (PI 51) and called (PI 52) session selectors 1.
const SESSION_SELECTORS: [u8; 8] = [0x33, 0x02, 0x00, 0x01, 0x34, 0x02, 0x00, 0x01];

/// Object identifiers (BER contents): ACSE abstract syntax 2.2.1.0.1, BER transfer
/// syntax 2.1.1, MMS abstract syntax 1.0.9506.2.1, MMS application context
/// 1.0.9506.2.3, and the AP titles 1.1.1.999(.1) IEC 61850 tools use.
const OID_ACSE: [u8; 4] = [0x52, 0x01, 0x00, 0x01];
const OID_BER: [u8; 2] = [0x51, 0x01];
const OID_MMS: [u8; 5] = [0x28, 0xca, 0x22, 0x02, 0x01];
const OID_MMS_CONTEXT: [u8; 5] = [0x28, 0xca, 0x22, 0x02, 0x03];
const OID_CALLING_AP_TITLE: [u8; 4] = [0x29, 0x01, 0x87, 0x67];
const OID_CALLED_AP_TITLE: [u8; 5] = [0x29, 0x01, 0x87, 0x67, 0x01];
/// Presentation context identifiers: ACSE 1, MMS 3.
const CONTEXT_ACSE: u8 = 1;
const CONTEXT_MMS: u8 = 3;
/// Presentation selectors (4 octets) of both ends.
const PRESENTATION_SELECTOR: [u8; 4] = [0, 0, 0, 1];
/// AE qualifier of both ends.
const AE_QUALIFIER: u8 = 12;

/// MMS initiate parameters: local detail 65000 octets, 5 outstanding services each
/// way, nesting level 10, version 1, the parameter CBBs str1, str2, vnam, valt, vlis
/// (`05 f1 00`) and the services an IEC 61850 stack supports (libiec61850's bit
/// string: status, getNameList, identify, read, write, getVariableAccessAttributes,
/// named variable lists, file services, informationReport, conclude, ...).
const LOCAL_DETAIL: u32 = 65_000;
const MAX_OUTSTANDING: u8 = 5;
const NESTING_LEVEL: u8 = 10;
const PARAMETER_CBB: [u8; 3] = [0x05, 0xf1, 0x00];
const SERVICES_SUPPORTED: [u8; 12] = [
    0x03, 0xee, 0x1c, 0x00, 0x00, 0x04, 0x08, 0x00, 0x00, 0x79, 0xef, 0x18,
];

/// The initiate-RequestPDU (`[8]`) or initiate-ResponsePDU (`[9]`): both carry the
/// same fields (proposed by the caller, negotiated by the responder).
fn initiate_pdu(tag: u8) -> Vec<u8> {
    let detail = constructed(
        &[0xa4],
        &[
            &tlv(&[0x80], &[0x01]),
            &tlv(&[0x81], &PARAMETER_CBB),
            &tlv(&[0x82], &SERVICES_SUPPORTED),
        ],
    );
    constructed(
        &[tag],
        &[
            &tlv(&[0x80], &unsigned(LOCAL_DETAIL)),
            &tlv(&[0x81], &[MAX_OUTSTANDING]),
            &tlv(&[0x82], &[MAX_OUTSTANDING]),
            &tlv(&[0x83], &[NESTING_LEVEL]),
            &detail,
        ],
    )
}

/// ACSE user-information (`[30]` SEQUENCE OF EXTERNAL): one EXTERNAL with direct
/// reference BER, indirect reference (the MMS presentation context) and the MMS PDU as
/// single-ASN1-type.
fn acse_user_information(mms: &[u8]) -> Vec<u8> {
    let external = constructed(
        &[0x28],
        &[
            &tlv(&[0x06], &OID_BER),
            &tlv(&[0x02], &[CONTEXT_MMS]),
            &tlv(&[0xa0], mms),
        ],
    );
    tlv(&[0xbe], &external)
}

/// Fully-encoded presentation user data (`[APPLICATION 1]`) holding one presentation
/// data value: `value` as single-ASN1-type in presentation context `context`.
fn fully_encoded(context: u8, value: &[u8]) -> Vec<u8> {
    let pdv = constructed(&[0x30], &[&[0x02, 0x01, context], &tlv(&[0xa0], value)]);
    tlv(&[0x61], &pdv)
}

/// The association request: session CONNECT with the presentation CP-type (normal
/// mode; ACSE as context 1 and MMS as context 3, both in BER) whose user data is the
/// ACSE AARQ (MMS application context, called and calling AP titles and AE
/// qualifiers) carrying the MMS initiate-RequestPDU.
pub fn initiate_request(out: &mut Vec<u8>) -> Pdu {
    let aarq = constructed(
        &[0x60],
        &[
            &tlv(&[0xa1], &tlv(&[0x06], &OID_MMS_CONTEXT)),
            &tlv(&[0xa2], &tlv(&[0x06], &OID_CALLED_AP_TITLE)),
            &tlv(&[0xa3], &[0x02, 0x01, AE_QUALIFIER]),
            &tlv(&[0xa6], &tlv(&[0x06], &OID_CALLING_AP_TITLE)),
            &tlv(&[0xa7], &[0x02, 0x01, AE_QUALIFIER]),
            &acse_user_information(&initiate_pdu(0xa8)),
        ],
    );
    let context = |id: u8, abstract_syntax: &[u8]| {
        constructed(
            &[0x30],
            &[
                &[0x02, 0x01, id],
                &tlv(&[0x06], abstract_syntax),
                &tlv(&[0x30], &tlv(&[0x06], &OID_BER)),
            ],
        )
    };
    let normal = constructed(
        &[0xa2],
        &[
            &tlv(&[0x81], &PRESENTATION_SELECTOR),
            &tlv(&[0x82], &PRESENTATION_SELECTOR),
            &constructed(
                &[0xa4],
                &[
                    &context(CONTEXT_ACSE, &OID_ACSE),
                    &context(CONTEXT_MMS, &OID_MMS),
                ],
            ),
            &fully_encoded(CONTEXT_ACSE, &aarq),
        ],
    );
    let cp = constructed(&[0x31], &[&[0xa0, 0x03, 0x80, 0x01, 0x01], &normal]);
    let mut params = Vec::with_capacity(24 + cp.len());
    params.extend_from_slice(&SESSION_ITEMS);
    params.extend_from_slice(&SESSION_SELECTORS);
    params.extend_from_slice(&spdu(PI_USER_DATA, &cp));
    cotp_dt(out, &spdu(SI_CONNECT, &params));
    key("initiate-RequestPDU")
}

/// The association response: session ACCEPT with the presentation CPA-PPDU (both
/// contexts accepted in BER) whose user data is the ACSE AARE (result accepted,
/// responding AP title) carrying the MMS initiate-ResponsePDU.
pub fn initiate_response(out: &mut Vec<u8>) -> Pdu {
    let aare = constructed(
        &[0x61],
        &[
            &tlv(&[0xa1], &tlv(&[0x06], &OID_MMS_CONTEXT)),
            &tlv(&[0xa2], &[0x02, 0x01, 0x00]),
            // result-source-diagnostic: acse-service-user null.
            &tlv(&[0xa3], &[0xa1, 0x03, 0x02, 0x01, 0x00]),
            &tlv(&[0xa4], &tlv(&[0x06], &OID_CALLED_AP_TITLE)),
            &tlv(&[0xa5], &[0x02, 0x01, AE_QUALIFIER]),
            &acse_user_information(&initiate_pdu(0xa9)),
        ],
    );
    let accepted = constructed(&[0x30], &[&[0x80, 0x01, 0x00], &tlv(&[0x81], &OID_BER)]);
    let normal = constructed(
        &[0xa2],
        &[
            &tlv(&[0x83], &PRESENTATION_SELECTOR),
            &constructed(&[0xa5], &[&accepted, &accepted]),
            &fully_encoded(CONTEXT_ACSE, &aare),
        ],
    );
    let cpa = constructed(&[0x31], &[&[0xa0, 0x03, 0x80, 0x01, 0x01], &normal]);
    let mut params = Vec::with_capacity(16 + cpa.len());
    params.extend_from_slice(&SESSION_ITEMS);
    params.extend_from_slice(&spdu(PI_USER_DATA, &cpa));
    cotp_dt(out, &spdu(SI_ACCEPT, &params));
    key("initiate-ResponsePDU")
}

/// A COTP DT in a TPKT carrying session GT+DT and one presentation data value holding
/// `mms` (context 3).
fn session_data(out: &mut Vec<u8>, mms: &[u8]) {
    let mut tsdu = vec![0x01, 0x00, 0x01, 0x00];
    tsdu.extend_from_slice(&fully_encoded(CONTEXT_MMS, mms));
    cotp_dt(out, &tsdu);
}

/// A confirmed-RequestPDU (invokeID, then the service element) in session data.
fn confirmed_request(out: &mut Vec<u8>, invoke_id: u32, service: &[u8]) {
    let pdu = constructed(&[0xa0], &[&tlv(&[0x02], &unsigned(invoke_id)), service]);
    session_data(out, &pdu);
}

/// A confirmed-ResponsePDU (invokeID, then the service element) in session data.
fn confirmed_response(out: &mut Vec<u8>, invoke_id: u32, service: &[u8]) {
    let pdu = constructed(&[0xa1], &[&tlv(&[0x02], &unsigned(invoke_id)), service]);
    session_data(out, &pdu);
}

/// Stop (confirmed service 41, `[41]` with a two-octet tag `bf 29`) of the program
/// invocation `name` (programInvocationName `[0] IMPLICIT Identifier`).
pub fn program_stop(out: &mut Vec<u8>, invoke_id: u8, name: &[u8]) -> Pdu {
    confirmed_request(
        out,
        u32::from(invoke_id),
        &tlv(&[0xbf, 0x29], &tlv(&[0x80], name)),
    );
    key("confirmed-RequestPDU/41")
}

/// The Stop response (`[41]` NULL contents) to `invoke_id`.
pub fn program_stop_response(out: &mut Vec<u8>, invoke_id: u8) -> Pdu {
    confirmed_response(out, u32::from(invoke_id), &[0xbf, 0x29, 0x00]);
    key("confirmed-ResponsePDU/41")
}

/// Confirmed service numbers (the ConfirmedServiceRequest CHOICE tags).
pub const SERVICE_GET_NAME_LIST: u32 = 1;
pub const SERVICE_IDENTIFY: u32 = 2;
pub const SERVICE_READ: u32 = 4;
/// Unconfirmed service informationReport.
pub const SERVICE_INFORMATION_REPORT: u32 = 0;

/// Identify request (`[2] IMPLICIT NULL`).
pub fn identify_request(out: &mut Vec<u8>, invoke_id: u32) -> Pdu {
    confirmed_request(out, invoke_id, &[0x82, 0x00]);
    key("confirmed-RequestPDU/2")
}

/// Identify response: vendorName `[0]`, modelName `[1]`, revision `[2]` (IMPLICIT
/// VisibleString each).
pub fn identify_response(
    out: &mut Vec<u8>,
    invoke_id: u32,
    vendor: &[u8],
    model: &[u8],
    revision: &[u8],
) -> Pdu {
    let service = constructed(
        &[0xa2],
        &[
            &tlv(&[0x80], vendor),
            &tlv(&[0x81], model),
            &tlv(&[0x82], revision),
        ],
    );
    confirmed_response(out, invoke_id, &service);
    key("confirmed-ResponsePDU/2")
}

/// ObjectName domain-specific (`[1] IMPLICIT SEQUENCE { domainId, itemId }`).
fn domain_specific(domain: &[u8], item: &[u8]) -> Vec<u8> {
    constructed(&[0xa1], &[&tlv(&[0x1a], domain), &tlv(&[0x1a], item)])
}

/// Read (`[4]`) of one named variable: variableAccessSpecification `[1]` listOfVariable
/// `[0]` with one item whose variableSpecification is name `[0]` domain-specific
/// (`domain`, `item`), e.g. ("IED1LD0", "MMXU1$MX$TotW$mag$f").
pub fn read_request(out: &mut Vec<u8>, invoke_id: u32, domain: &[u8], item: &[u8]) -> Pdu {
    let variable = tlv(&[0x30], &tlv(&[0xa0], &domain_specific(domain, item)));
    let service = tlv(&[0xa4], &tlv(&[0xa1], &tlv(&[0xa0], &variable)));
    confirmed_request(out, invoke_id, &service);
    key("confirmed-RequestPDU/4")
}

/// Data floating-point (`[7] IMPLICIT FloatingPoint`): exponent width 8, then the
/// IEEE 754 single.
fn floating_point(value: f32) -> Vec<u8> {
    let mut contents = vec![0x08];
    contents.extend_from_slice(&value.to_be_bytes());
    tlv(&[0x87], &contents)
}

/// The Read response: listOfAccessResult `[1]` with one success, a floating-point.
pub fn read_response(out: &mut Vec<u8>, invoke_id: u32, value: f32) -> Pdu {
    let service = tlv(&[0xa4], &tlv(&[0xa1], &floating_point(value)));
    confirmed_response(out, invoke_id, &service);
    key("confirmed-ResponsePDU/4")
}

/// GetNameList (`[1]`) of the named variables (objectClass basicObjectClass 0) of
/// domain `domain` (objectScope domainSpecific `[1]`).
pub fn get_name_list_request(out: &mut Vec<u8>, invoke_id: u32, domain: &[u8]) -> Pdu {
    let service = constructed(
        &[0xa1],
        &[
            &tlv(&[0xa0], &[0x80, 0x01, 0x00]),
            &tlv(&[0xa1], &tlv(&[0x81], domain)),
        ],
    );
    confirmed_request(out, invoke_id, &service);
    key("confirmed-RequestPDU/1")
}

/// The GetNameList response: listOfIdentifier `[0]` and moreFollows `[1]` FALSE.
pub fn get_name_list_response(out: &mut Vec<u8>, invoke_id: u32, names: &[&[u8]]) -> Pdu {
    let identifiers: Vec<u8> = names.iter().flat_map(|n| tlv(&[0x1a], n)).collect();
    let service = constructed(&[0xa1], &[&tlv(&[0xa0], &identifiers), &[0x81, 0x01, 0x00]]);
    confirmed_response(out, invoke_id, &service);
    key("confirmed-ResponsePDU/1")
}

/// An informationReport (unconfirmed-PDU `[3]`, service `[0]`) as an IEC 61850 server
/// sends a report: variableListName `[1]` vmd-specific "RPT", listOfAccessResult
/// `[0]`: the report id (visible-string), then the reported value (floating-point).
pub fn information_report(out: &mut Vec<u8>, report_id: &[u8], value: f32) -> Pdu {
    let name = tlv(&[0xa1], &tlv(&[0x80], b"RPT"));
    let results = constructed(&[0xa0], &[&tlv(&[0x8a], report_id), &floating_point(value)]);
    let report = constructed(&[0xa0], &[&name, &results]);
    session_data(out, &tlv(&[0xa3], &report));
    key("unconfirmed-PDU/0")
}

/// conclude-RequestPDU (`[11] IMPLICIT NULL`) in session data.
pub fn conclude_request(out: &mut Vec<u8>) -> Pdu {
    session_data(out, &[0x8b, 0x00]);
    key("conclude-RequestPDU")
}

/// conclude-ResponsePDU (`[12] IMPLICIT NULL`) in session data.
pub fn conclude_response(out: &mut Vec<u8>) -> Pdu {
    session_data(out, &[0x8c, 0x00]);
    key("conclude-ResponsePDU")
}

/// The release request: session FINISH whose user data is the ACSE RLRQ (reason
/// normal) in presentation context 1. Carries no MMS PDU.
pub fn release_request(out: &mut Vec<u8>) {
    let rlrq = tlv(&[0x62], &[0x80, 0x01, 0x00]);
    let ppdu = fully_encoded(CONTEXT_ACSE, &rlrq);
    cotp_dt(out, &spdu(SI_FINISH, &spdu(PI_USER_DATA, &ppdu)));
}

/// The release response: session DISCONNECT whose user data is the ACSE RLRE (reason
/// normal). Carries no MMS PDU.
pub fn release_response(out: &mut Vec<u8>) {
    let rlre = tlv(&[0x63], &[0x80, 0x01, 0x00]);
    let ppdu = fully_encoded(CONTEXT_ACSE, &rlre);
    cotp_dt(out, &spdu(SI_DISCONNECT, &spdu(PI_USER_DATA, &ppdu)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use otsensor_wire::mms::{mms_in_dt, Carrier, ConfirmedService, Dt, PduType, SpduType};

    type View<'a> = otsensor_wire::mms::Pdu<'a>;

    fn hex(text: &str) -> Vec<u8> {
        let clean = text.replace(' ', "");
        (0..clean.len() / 2)
            .map(|i| u8::from_str_radix(&clean[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect()
    }

    /// The TPKT's length is the frame's, and the COTP DT's payload (the session TSDU).
    fn tsdu(frame: &[u8]) -> &[u8] {
        assert_eq!(
            usize::from(u16::from_be_bytes([frame[2], frame[3]])),
            frame.len()
        );
        assert_eq!(frame.get(4..7), Some(&[0x02, 0xf0, 0x80][..]));
        &frame[7..]
    }

    /// The MMS PDU the sensor's view finds in a frame, with its carrier and SPDU.
    fn mms(frame: &[u8]) -> (View<'_>, Carrier, Option<SpduType>) {
        let Some(Dt::Mms(bytes, carrier, spdu)) = mms_in_dt(tsdu(frame)) else {
            panic!("no MMS PDU in {frame:02x?}");
        };
        let pdu = View::new_checked(bytes).unwrap_or_else(|e| panic!("{e}"));
        assert!(pdu.anomalies().is_empty(), "{:?}", pdu.anomalies());
        (pdu, carrier, spdu)
    }

    #[test]
    fn program_stop_is_mms_service_41_in_session_data() {
        let mut out = Vec::new();
        program_stop(&mut out, 7, b"LLN0");
        // TPKT, COTP DT, session GT+DT, fully-encoded data (context 3),
        // confirmed-RequestPDU invokeID 7, stop [41] { [0] "LLN0" }.
        let want = "03000022 02f080 01000100 6115 3013 020103 a00e a00c 020107 bf2906 80044c4c4e30";
        assert_eq!(out, hex(want));
    }

    #[test]
    fn integers_and_lengths_are_minimal_ber() {
        assert_eq!(unsigned(0), [0]);
        assert_eq!(unsigned(127), [127]);
        assert_eq!(unsigned(128), [0, 128]);
        assert_eq!(unsigned(65_000), [0, 0xfd, 0xe8]);
        assert_eq!(unsigned(u32::MAX), [0, 0xff, 0xff, 0xff, 0xff]);
        assert_eq!(tlv(&[0x04], &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(&[0x04], &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(spdu(1, &[0; 300])[..4], [1, 0xff, 0x01, 0x2c]);
    }

    /// The association set-up walks, in the sensor's view, through session,
    /// presentation and ACSE to the initiate PDUs.
    #[test]
    fn association_carries_the_initiate_pdus() {
        let mut out = Vec::new();
        initiate_request(&mut out);
        let (pdu, carrier, spdu) = mms(&out);
        assert_eq!(pdu.pdu_type(), PduType::InitiateRequest);
        assert_eq!((carrier, spdu), (Carrier::Acse, Some(SpduType::Connect)));
        assert!(otsensor_wire::mms::looks_like(&out));
        // The CP's SPDU fits a one-octet length indicator, as real stacks send it.
        assert!(out[8] < 0xff);

        let mut out = Vec::new();
        initiate_response(&mut out);
        let (pdu, carrier, spdu) = mms(&out);
        assert_eq!(pdu.pdu_type(), PduType::InitiateResponse);
        assert_eq!((carrier, spdu), (Carrier::Acse, Some(SpduType::Accept)));
    }

    #[test]
    fn confirmed_services_parse_with_their_invoke_ids() {
        type Case = (fn(&mut Vec<u8>) -> Pdu, PduType, u32, ConfirmedService);
        let cases: [Case; 6] = [
            (
                |out| identify_request(out, 1),
                PduType::ConfirmedRequest,
                1,
                ConfirmedService::IDENTIFY,
            ),
            (
                |out| identify_response(out, 1, b"ACME", b"IED-670", b"2.1"),
                PduType::ConfirmedResponse,
                1,
                ConfirmedService::IDENTIFY,
            ),
            (
                |out| read_request(out, 200, b"IED1LD0", b"MMXU1$MX$TotW$mag$f"),
                PduType::ConfirmedRequest,
                200,
                ConfirmedService(SERVICE_READ),
            ),
            (
                |out| read_response(out, 200, 1234.5),
                PduType::ConfirmedResponse,
                200,
                ConfirmedService(SERVICE_READ),
            ),
            (
                |out| get_name_list_request(out, 70_000, b"IED1LD0"),
                PduType::ConfirmedRequest,
                70_000,
                ConfirmedService(SERVICE_GET_NAME_LIST),
            ),
            (
                |out| get_name_list_response(out, 70_000, &[b"LLN0", b"MMXU1", b"XCBR1"]),
                PduType::ConfirmedResponse,
                70_000,
                ConfirmedService(SERVICE_GET_NAME_LIST),
            ),
        ];
        for (build, pdu_type, invoke_id, service) in cases {
            let mut out = Vec::new();
            let truth = build(&mut out);
            let (pdu, carrier, spdu) = mms(&out);
            let name = pdu_type.name().unwrap_or_default();
            assert_eq!(truth.function, format!("{name}/{}", service.0));
            assert_eq!(truth.proto, Proto::Mms);
            assert_eq!(pdu.pdu_type(), pdu_type);
            assert_eq!(pdu.invoke_id(), Some(invoke_id));
            assert_eq!(pdu.confirmed_service(), Some(service));
            assert_eq!(
                (carrier, spdu),
                (Carrier::Presentation, Some(SpduType::GiveTokensOrData))
            );
        }
        let mut out = Vec::new();
        identify_response(&mut out, 9, b"ACME", b"IED-670", b"2.1");
        let identify = mms(&out).0.identify().unwrap_or_else(|| panic!("identify"));
        assert_eq!(identify.vendor, Some(&b"ACME"[..]));
        assert_eq!(identify.model, Some(&b"IED-670"[..]));
        assert_eq!(identify.revision, Some(&b"2.1"[..]));
    }

    #[test]
    fn read_response_carries_a_single_precision_float() {
        let mut out = Vec::new();
        read_response(&mut out, 3, 1.5);
        // ... read [4] { listOfAccessResult [1] { floating-point [7] 08 3fc00000 } }.
        assert!(out.ends_with(&hex("a409 a107 8705 08 3fc00000")));
    }

    #[test]
    fn information_report_is_an_unconfirmed_pdu() {
        let mut out = Vec::new();
        information_report(&mut out, b"IED1LD0/LLN0$RP$urcbA01", 50.0);
        let (pdu, carrier, _) = mms(&out);
        assert_eq!(pdu.pdu_type(), PduType::Unconfirmed);
        assert_eq!(
            pdu.unconfirmed_service().map(u8::from),
            Some(SERVICE_INFORMATION_REPORT as u8)
        );
        assert_eq!(carrier, Carrier::Presentation);
    }

    /// The conclude pair is MMS in data transfer (empty PDUs, which tshark dissects
    /// behind the presentation layer and so does the sensor's view).
    #[test]
    fn conclude_is_an_empty_pdu_in_data_transfer() {
        for (build, pdu_type) in [
            (
                conclude_request as fn(&mut Vec<u8>) -> Pdu,
                PduType::ConcludeRequest,
            ),
            (conclude_response, PduType::ConcludeResponse),
        ] {
            let mut out = Vec::new();
            let truth = build(&mut out);
            let (pdu, carrier, _) = mms(&out);
            assert_eq!(pdu.pdu_type(), pdu_type);
            assert_eq!(carrier, Carrier::Presentation);
            assert_eq!(Some(truth.function), pdu_type.name());
        }
    }

    /// The release carries no MMS PDU: session TSDUs only, for the sensor and tshark.
    #[test]
    fn release_is_session_only() {
        for build in [release_request, release_response] {
            let mut out = Vec::new();
            build(&mut out);
            assert!(matches!(
                mms_in_dt(tsdu(&out)),
                Some(Dt::SessionOnly(SpduType::Finish | SpduType::Disconnect))
            ));
        }
    }

    /// One TCP connection 10.0.0.1:40000 -> 10.0.0.2:102 carrying `frames` (client
    /// frames at even indexes, server frames at odd ones), after COTP CR/CC, written to
    /// a pcap.
    fn write_connection(path: &std::path::Path, frames: &[Vec<u8>]) {
        use crate::gen::pcap::{PcapWriter, Resolution};
        use crate::gen::wire::{encode, tcp_flags, FrameSpec, Net, L2};
        let client: std::net::IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 1).into();
        let server: std::net::IpAddr = std::net::Ipv4Addr::new(10, 0, 0, 2).into();
        let mut cr = Vec::new();
        super::super::s7comm::connect_request(&mut cr, 1);
        let mut cc = Vec::new();
        super::super::s7comm::connect_confirm(&mut cc, 1, 2);
        let mut payloads = vec![cr, cc];
        payloads.extend_from_slice(frames);
        let mut writer = PcapWriter::create(path, Resolution::Micro)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut seq = [1_000u32, 5_000u32];
        let mut ts = 1_700_000_000_000_000_000u64;
        let mut frame = Vec::new();
        let mut write = |from_client: bool, flags: u8, payload: Vec<u8>, seq: &mut [u32; 2]| {
            let (side, src, dst, sport, dport) = if from_client {
                (0, client, server, 40_000, 102)
            } else {
                (1, server, client, 102, 40_000)
            };
            let syn = u32::from(flags & tcp_flags::SYN != 0);
            let spec = FrameSpec {
                l2: L2 {
                    src: [2, 0, 0, 0, 0, 1 + side as u8],
                    dst: [2, 0, 0, 0, 0, 2 - side as u8],
                    vlan: 0,
                },
                net: Net::Tcp {
                    src,
                    dst,
                    sport,
                    dport,
                    seq: seq[side],
                    ack: seq[1 - side],
                    flags,
                    window: 8192,
                    mss: false,
                    payload: payload.clone(),
                },
            };
            seq[side] = seq[side].wrapping_add(payload.len() as u32 + syn);
            encode(&spec, 1, &mut frame).unwrap_or_else(|e| panic!("{e}"));
            ts += 1_000_000;
            writer.write(ts, &frame).unwrap_or_else(|e| panic!("{e}"));
        };
        write(true, tcp_flags::SYN, Vec::new(), &mut seq);
        write(false, tcp_flags::SYN | tcp_flags::ACK, Vec::new(), &mut seq);
        for (index, payload) in payloads.into_iter().enumerate() {
            let flags = tcp_flags::PSH | tcp_flags::ACK;
            write(index % 2 == 0, flags, payload, &mut seq);
        }
        writer.finish().unwrap_or_else(|e| panic!("{e}"));
    }

    /// tshark decodes every PDU as the sensor's view does: the initiate pair through
    /// session, presentation and ACSE, the confirmed services and the report in data
    /// transfer (which it decodes as MMS only after the CP), the conclude pair, and
    /// nothing MMS in the release.
    #[test]
    fn tshark_decodes_the_association_and_the_services() {
        const TEST: &str = "gen::proto::mms::tshark_decodes_the_association_and_the_services";
        if !crate::testlab::require_tools(TEST, &["tshark", "python3"]) {
            return;
        }
        let mut frames = Vec::new();
        let mut add = |build: &dyn Fn(&mut Vec<u8>)| {
            let mut out = Vec::new();
            build(&mut out);
            frames.push(out);
        };
        add(&|out| {
            initiate_request(out);
        });
        add(&|out| {
            initiate_response(out);
        });
        add(&|out| {
            identify_request(out, 1);
        });
        add(&|out| {
            identify_response(out, 1, b"ACME", b"IED-670", b"2.1");
        });
        add(&|out| {
            read_request(out, 2, b"IED1LD0", b"MMXU1$MX$TotW$mag$f");
        });
        add(&|out| {
            read_response(out, 2, 1234.5);
        });
        add(&|out| {
            get_name_list_request(out, 300, b"IED1LD0");
        });
        add(&|out| {
            get_name_list_response(out, 300, &[b"LLN0", b"MMXU1"]);
        });
        // The server's report, then the client's conclude and release.
        add(&|out| {
            read_request(out, 3, b"IED1LD0", b"MMXU1$MX$TotW$mag$f");
        });
        add(&|out| {
            information_report(out, b"IED1LD0/LLN0$RP$urcbA01", 50.0);
        });
        add(&|out| {
            conclude_request(out);
        });
        add(&|out| {
            conclude_response(out);
        });
        add(&release_request);
        add(&release_response);
        let dir = std::env::temp_dir().join(format!("xtask-mms-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join("mms.pcap");
        write_connection(&path, &frames);
        let summary = crate::oracle::summary(&path).unwrap_or_else(|e| panic!("{e}"));
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(summary["malformed_frames"], 0, "{summary}");
        assert_eq!(summary["records"]["mms"], 12, "{summary}");
        let want = serde_json::json!({
            "pdu": {
                "initiate-RequestPDU": 1,
                "initiate-ResponsePDU": 1,
                "confirmed-RequestPDU": 4,
                "confirmed-ResponsePDU": 3,
                "unconfirmed-PDU": 1,
                "conclude-RequestPDU": 1,
                "conclude-ResponsePDU": 1,
            },
            "confirmed_service_request": {"1": 1, "2": 1, "4": 2},
            "confirmed_service_response": {"1": 1, "2": 1, "4": 1},
            "unconfirmed_service": {"0": 1},
        });
        for (histogram, counts) in want.as_object().into_iter().flatten() {
            assert_eq!(&summary["mms"][histogram], counts, "{histogram}: {summary}");
        }
    }
}
