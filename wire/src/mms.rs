//! IEC 61850 / ISO 9506 MMS over ISO-on-TCP (RFC 1006, TCP 102): the OSI upper layers
//! that carry an MMS PDU inside a COTP DT, and the MMS PDU itself (BER).
//!
//! A COTP DT payload of an MMS association is an ISO 8327-1 session SPDU (CN/AC at
//! association, Give-Tokens + Data-Transfer `01 00 01 00` afterwards, FN/DN/AB at
//! release), whose user data is an ISO 8823 presentation PPDU (CP/CPA `SET`, or
//! fully-encoded user data `[APPLICATION 1]`) holding presentation data values; at
//! association these are ACSE APDUs (AARQ/AARE, ISO 8650) whose user-information
//! `EXTERNAL` holds the MMS initiate PDU, afterwards the MMS PDU directly. Some stacks
//! (and test tools) put the MMS PDU straight into the COTP DT: Wireshark's `mms`
//! heuristic on COTP accepts a context-class tag 0..13 with a non-zero definite length
//! that fits, and so does [`mms_in_dt`].
//!
//! The walk takes the first presentation data value and the first MMS PDU in it. Every
//! reader here is bounds-checked and answers `None` (or an [`Error`]) on bytes it cannot
//! read; after [`Pdu::new_checked`] succeeds no accessor can panic. Names follow
//! Wireshark's `ses`, `pres`, `acse` and `mms` dissectors (`mms.confirmedServiceRequest`,
//! ...); service numbers are the MMS CHOICE tag numbers, as tshark reports them.

/// Errors of the MMS view; one counter label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A BER element runs past the buffer (or uses an indefinite length).
    #[error("BER element truncated or of indefinite length")]
    BadElement,
    /// The outer tag is not a context-class MMS PDU tag 0..13.
    #[error("tag {0:#04x} is not an MMS PDU")]
    NotMms(u8),
}

impl Error {
    /// The metrics label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::BadElement => "bad_element",
            Error::NotMms(_) => "not_mms",
        }
    }
}

/// BER tag classes (X.690 8.1.2.2).
pub const CLASS_UNIVERSAL: u8 = 0;
pub const CLASS_APPLICATION: u8 = 1;
pub const CLASS_CONTEXT: u8 = 2;

/// One BER element (X.690): class, constructed bit, tag number and contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Element<'a> {
    pub class: u8,
    pub constructed: bool,
    pub tag: u32,
    pub contents: &'a [u8],
}

/// Reads one BER element at the front of `buf`: the element and the bytes after it.
/// High tag numbers (up to 28 bits), short and long definite lengths (up to 4 octets);
/// an indefinite length or contents past the buffer answer `None`.
pub fn element(buf: &[u8]) -> Option<(Element<'_>, &[u8])> {
    let (&first, mut rest) = buf.split_first()?;
    let class = first >> 6;
    let constructed = first & 0x20 != 0;
    let mut tag = u32::from(first & 0x1F);
    if tag == 0x1F {
        tag = 0;
        for count in 0.. {
            let (&byte, after) = rest.split_first()?;
            rest = after;
            if count == 4 {
                return None;
            }
            tag = (tag << 7) | u32::from(byte & 0x7F);
            if byte & 0x80 == 0 {
                break;
            }
        }
    }
    let (&length, after) = rest.split_first()?;
    rest = after;
    let len = if length & 0x80 == 0 {
        usize::from(length)
    } else {
        let octets = usize::from(length & 0x7F);
        if octets == 0 || octets > 4 {
            return None;
        }
        let (bytes, after) = (rest.get(..octets)?, rest.get(octets..)?);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let contents = rest.get(..len)?;
    Some((
        Element {
            class,
            constructed,
            tag,
            contents,
        },
        rest.get(len..)?,
    ))
}

/// The elements of a constructed value's contents, in order; stops at the first
/// element that cannot be read.
#[derive(Clone, Copy, Debug)]
pub struct Elements<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Elements<'a> {
    type Item = Element<'a>;
    fn next(&mut self) -> Option<Element<'a>> {
        let (element, rest) = element(self.rest)?;
        self.rest = rest;
        Some(element)
    }
}

/// The elements inside `contents`.
pub fn elements(contents: &[u8]) -> Elements<'_> {
    Elements { rest: contents }
}

fn find(contents: &[u8], class: u8, tag: u32) -> Option<Element<'_>> {
    elements(contents).find(|e| e.class == class && e.tag == tag)
}

/// A BER INTEGER read as unsigned (up to 4 octets after a leading zero; negative
/// values answer `None`).
pub fn unsigned(contents: &[u8]) -> Option<u32> {
    let value = match contents {
        [0, rest @ ..] if !rest.is_empty() => rest,
        [first, ..] if first & 0x80 != 0 => return None,
        _ => contents,
    };
    if value.is_empty() || value.len() > 4 {
        return None;
    }
    Some(value.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

// ---------------------------------------------------------------------------------
// ISO 8327-1 session layer

wire_enum! {
    /// Session SPDU identifiers (ISO 8327-1 8.3, Wireshark `ses.type`). Give Tokens and
    /// Data Transfer share code 1 (a DT always follows a GT in the same TSDU).
    pub enum SpduType {
        GiveTokensOrData = 0x01 => "GIVE-TOKENS/DATA TRANSFER",
        PleaseTokens = 0x02 => "PLEASE TOKENS",
        Expedited = 0x05 => "EXPEDITED",
        Prepare = 0x07 => "PREPARE",
        NotFinished = 0x08 => "NOT FINISHED",
        Finish = 0x09 => "FINISH",
        Disconnect = 0x0A => "DISCONNECT",
        Refuse = 0x0C => "REFUSE",
        Connect = 0x0D => "CONNECT",
        Accept = 0x0E => "ACCEPT",
        ConnectDataOverflow = 0x0F => "CONNECT DATA OVERFLOW",
        OverflowAccept = 0x10 => "OVERFLOW ACCEPT",
        GiveTokensConfirm = 0x15 => "GIVE TOKENS CONFIRM",
        GiveTokensAck = 0x16 => "GIVE TOKENS ACK",
        Abort = 0x19 => "ABORT",
        AbortAccept = 0x1A => "ABORT ACCEPT",
        Resynchronize = 0x35 => "RESYNCHRONIZE",
        ActivityStart = 0x2D => "ACTIVITY START",
    }
}

/// Session PI code of User Data (ISO 8327-1 8.3.1.25, `ses` parameter 193) and of
/// Extended User Data (194).
const PI_USER_DATA: u8 = 193;
const PI_EXTENDED_USER_DATA: u8 = 194;

/// One SPDU: (SI, parameter bytes, bytes after the SPDU). The length indicator is one
/// octet, or 0xFF and two octets (ISO 8327-1 8.2.5).
fn spdu(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&si, rest) = buf.split_first()?;
    let (&li, rest) = rest.split_first()?;
    let (len, rest) = if li == 0xFF {
        let len = crate::bytes::be16(rest, 0)?;
        (usize::from(len), rest.get(2..)?)
    } else {
        (usize::from(li), rest)
    };
    Some((si, rest.get(..len)?, rest.get(len..)?))
}

/// The User Data parameter among an SPDU's top-level PI/PGI units.
fn session_user_parameter(mut params: &[u8]) -> Option<&[u8]> {
    while let Some((code, value, rest)) = spdu(params) {
        if code == PI_USER_DATA || code == PI_EXTENDED_USER_DATA {
            return Some(value);
        }
        params = rest;
    }
    None
}

/// A COTP DT payload read as session SPDUs: the SPDU that carries user data and the
/// user data (the presentation PPDU). `None` when the payload is not a session TSDU
/// this walk knows (unknown SI, a length past the buffer) or carries no user data.
pub fn session_user_data(payload: &[u8]) -> Option<(SpduType, &[u8])> {
    let (si, params, rest) = spdu(payload)?;
    let kind = SpduType::from(si);
    if matches!(kind, SpduType::Unknown(_)) {
        return None;
    }
    if kind == SpduType::GiveTokensOrData {
        // GT (category 0) then DT (category 2): user information follows the DT's
        // parameters to the end of the TSDU.
        let (si, _, user) = spdu(rest)?;
        if SpduType::from(si) != SpduType::GiveTokensOrData || user.is_empty() {
            return None;
        }
        return Some((kind, user));
    }
    Some((kind, session_user_parameter(params)?))
}

// ---------------------------------------------------------------------------------
// ISO 8823 presentation and ISO 8650 ACSE

/// The first presentation data value of a PPDU: its presentation context identifier
/// and the encoded value (single-ASN1-type contents, or octet-aligned bytes). CP and
/// CPA PPDUs (`SET`) hold the user data in normal-mode-parameters `[2]`; data transfer
/// carries fully-encoded user data (`[APPLICATION 1]`) directly.
pub fn presentation_value(ppdu: &[u8]) -> Option<(Option<u32>, &[u8])> {
    let (outer, _) = element(ppdu)?;
    let user_data = match (outer.class, outer.constructed, outer.tag) {
        // CP-type / CPA-PPDU: SET { mode-selector [0], normal-mode-parameters [2] }.
        (CLASS_UNIVERSAL, true, 17) => {
            let normal = find(outer.contents, CLASS_CONTEXT, 2)?;
            find(normal.contents, CLASS_APPLICATION, 1)?
        }
        (CLASS_APPLICATION, true, 1) => outer,
        _ => return None,
    };
    // Fully-encoded-data: SEQUENCE OF PDV-list.
    let pdv = elements(user_data.contents).next()?;
    if pdv.class != CLASS_UNIVERSAL || pdv.tag != 16 {
        return None;
    }
    let mut context = None;
    for item in elements(pdv.contents) {
        match (item.class, item.tag) {
            (CLASS_UNIVERSAL, 2) => context = unsigned(item.contents),
            // single-ASN1-type [0]: one encoded value; octet-aligned [1]: its bytes.
            (CLASS_CONTEXT, 0) | (CLASS_CONTEXT, 1) => return Some((context, item.contents)),
            _ => {}
        }
    }
    None
}

/// ACSE APDUs (`[APPLICATION n]`): AARQ 0, AARE 1, RLRQ 2, RLRE 3, ABRT 4.
pub const ACSE_AARQ: u32 = 0;
pub const ACSE_AARE: u32 = 1;

/// The user-information of an ACSE APDU (`[30]` SEQUENCE OF EXTERNAL): the first
/// EXTERNAL's encoding (single-ASN1-type or octet-aligned contents).
fn acse_user_information<'a>(apdu: &Element<'a>) -> Option<&'a [u8]> {
    let info = find(apdu.contents, CLASS_CONTEXT, 30)?;
    let external = find(info.contents, CLASS_UNIVERSAL, 8)?;
    elements(external.contents)
        .find(|e| e.class == CLASS_CONTEXT && (e.tag == 0 || e.tag == 1))
        .map(|e| e.contents)
}

/// Where an MMS PDU was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carrier {
    /// Directly in the COTP DT (no session, presentation or ACSE).
    Cotp,
    /// In a presentation data value (P-DATA).
    Presentation,
    /// In the user-information of an ACSE APDU (association set-up and release).
    Acse,
}

/// What a COTP DT of an ISO-on-TCP MMS stack carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dt<'a> {
    /// An MMS PDU (the bytes that start with it: [`Pdu::new_checked`] reads one BER
    /// element and counts what follows) and where it rode.
    Mms(&'a [u8], Carrier, Option<SpduType>),
    /// A session TSDU with no MMS PDU inside (release without user data, aborts,
    /// presentation or ACSE the walk does not follow).
    SessionOnly(SpduType),
}

/// Whether bytes start with an MMS PDU the way Wireshark's heuristic on COTP accepts
/// one: context class, a PDU tag 0..13 (single octet), a definite non-zero length
/// whose contents fit.
pub fn looks_like_pdu(buf: &[u8]) -> bool {
    let (Some(&first), Some(&length)) = (buf.first(), buf.get(1)) else {
        return false;
    };
    first >> 6 == CLASS_CONTEXT
        && first & 0x1F <= 13
        && length & 0x7F != 0
        && element(buf).is_some()
}

/// Whether bytes start with an MMS PDU where the upper layers say one is: context
/// class, a PDU tag 0..13 (single octet), a definite length whose contents fit. Unlike
/// [`looks_like_pdu`] (tshark's heuristic on bare COTP) an empty PDU counts: the
/// conclude request and response are `[11]`/`[12]` NULL, and tshark dissects them in
/// presentation data.
fn is_pdu(buf: &[u8]) -> bool {
    buf.first()
        .is_some_and(|&first| first >> 6 == CLASS_CONTEXT && first & 0x1F <= 13)
        && element(buf).is_some()
}

/// Classifies a COTP DT payload (a whole TSDU): an MMS PDU directly on COTP (checked
/// first, as tshark's heuristic order does for these first octets), else a session
/// TSDU walked down to its MMS PDU. `None` for anything else (S7comm 0x32, S7comm-plus
/// 0x72, other ISO-transport users).
pub fn mms_in_dt(payload: &[u8]) -> Option<Dt<'_>> {
    if looks_like_pdu(payload) {
        return Some(Dt::Mms(payload, Carrier::Cotp, None));
    }
    let (kind, user) = session_user_data(payload).or_else(|| {
        // A session TSDU without user data is still a session TSDU.
        let (si, _, _) = spdu(payload)?;
        let kind = SpduType::from(si);
        (!matches!(kind, SpduType::Unknown(_))).then_some((kind, &[][..]))
    })?;
    let found = presentation_value(user).and_then(|(_, value)| {
        let (inner, _) = element(value)?;
        if inner.class == CLASS_APPLICATION && inner.constructed {
            let mms = acse_user_information(&inner)?;
            is_pdu(mms).then_some((mms, Carrier::Acse))
        } else {
            is_pdu(value).then_some((value, Carrier::Presentation))
        }
    });
    Some(match found {
        Some((mms, carrier)) => Dt::Mms(mms, carrier, Some(kind)),
        None => Dt::SessionOnly(kind),
    })
}

/// Cheap signature check for MMS on any TCP port: a TPKT carrying a COTP DT whose
/// payload is an MMS PDU or a session TSDU that leads to one. Works on a first
/// segment only when the whole TSDU is in it.
pub fn looks_like(payload: &[u8]) -> bool {
    let Ok(tpkt) = crate::s7comm::Tpkt::new_checked(payload) else {
        return false;
    };
    let Ok(cotp) = crate::s7comm::Cotp::new_checked(tpkt.payload()) else {
        return false;
    };
    cotp.pdu_type() == crate::s7comm::CotpType::Data
        && matches!(mms_in_dt(cotp.payload()), Some(Dt::Mms(..)))
}

// ---------------------------------------------------------------------------------
// MMS PDUs (ISO 9506-2)

wire_enum! {
    /// The MMSpdu CHOICE (ISO 9506-2 7.1, Wireshark `mms.MMSpdu`).
    pub enum PduType {
        ConfirmedRequest = 0 => "confirmed-RequestPDU",
        ConfirmedResponse = 1 => "confirmed-ResponsePDU",
        ConfirmedError = 2 => "confirmed-ErrorPDU",
        Unconfirmed = 3 => "unconfirmed-PDU",
        Reject = 4 => "rejectPDU",
        CancelRequest = 5 => "cancel-RequestPDU",
        CancelResponse = 6 => "cancel-ResponsePDU",
        CancelError = 7 => "cancel-ErrorPDU",
        InitiateRequest = 8 => "initiate-RequestPDU",
        InitiateResponse = 9 => "initiate-ResponsePDU",
        InitiateError = 10 => "initiate-ErrorPDU",
        ConcludeRequest = 11 => "conclude-RequestPDU",
        ConcludeResponse = 12 => "conclude-ResponsePDU",
        ConcludeError = 13 => "conclude-ErrorPDU",
    }
}

/// ConfirmedServiceRequest names by CHOICE tag (`mms.confirmedServiceRequest`).
const CONFIRMED_SERVICE_NAMES: [&str; 78] = [
    "status",
    "getNameList",
    "identify",
    "rename",
    "read",
    "write",
    "getVariableAccessAttributes",
    "defineNamedVariable",
    "defineScatteredAccess",
    "getScatteredAccessAttributes",
    "deleteVariableAccess",
    "defineNamedVariableList",
    "getNamedVariableListAttributes",
    "deleteNamedVariableList",
    "defineNamedType",
    "getNamedTypeAttributes",
    "deleteNamedType",
    "input",
    "output",
    "takeControl",
    "relinquishControl",
    "defineSemaphore",
    "deleteSemaphore",
    "reportSemaphoreStatus",
    "reportPoolSemaphoreStatus",
    "reportSemaphoreEntryStatus",
    "initiateDownloadSequence",
    "downloadSegment",
    "terminateDownloadSequence",
    "initiateUploadSequence",
    "uploadSegment",
    "terminateUploadSequence",
    "requestDomainDownload",
    "requestDomainUpload",
    "loadDomainContent",
    "storeDomainContent",
    "deleteDomain",
    "getDomainAttributes",
    "createProgramInvocation",
    "deleteProgramInvocation",
    "start",
    "stop",
    "resume",
    "reset",
    "kill",
    "getProgramInvocationAttributes",
    "obtainFile",
    "defineEventCondition",
    "deleteEventCondition",
    "getEventConditionAttributes",
    "reportEventConditionStatus",
    "alterEventConditionMonitoring",
    "triggerEvent",
    "defineEventAction",
    "deleteEventAction",
    "getEventActionAttributes",
    "reportEventActionStatus",
    "defineEventEnrollment",
    "deleteEventEnrollment",
    "alterEventEnrollment",
    "reportEventEnrollmentStatus",
    "getEventEnrollmentAttributes",
    "acknowledgeEventNotification",
    "getAlarmSummary",
    "getAlarmEnrollmentSummary",
    "readJournal",
    "writeJournal",
    "initializeJournal",
    "reportJournalStatus",
    "createJournal",
    "deleteJournal",
    "getCapabilityList",
    "fileOpen",
    "fileRead",
    "fileClose",
    "fileRename",
    "fileDelete",
    "fileDirectory",
];

/// A confirmed service by its CHOICE tag number (the same in requests and responses);
/// numbers MMS does not define are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConfirmedService(pub u32);

impl ConfirmedService {
    pub const STATUS: ConfirmedService = ConfirmedService(0);
    pub const GET_NAME_LIST: ConfirmedService = ConfirmedService(1);
    pub const IDENTIFY: ConfirmedService = ConfirmedService(2);
    pub const READ: ConfirmedService = ConfirmedService(4);
    pub const WRITE: ConfirmedService = ConfirmedService(5);
    pub const INITIATE_DOWNLOAD_SEQUENCE: ConfirmedService = ConfirmedService(26);
    pub const DOWNLOAD_SEGMENT: ConfirmedService = ConfirmedService(27);
    pub const TERMINATE_DOWNLOAD_SEQUENCE: ConfirmedService = ConfirmedService(28);
    pub const INITIATE_UPLOAD_SEQUENCE: ConfirmedService = ConfirmedService(29);
    pub const DELETE_DOMAIN: ConfirmedService = ConfirmedService(36);
    pub const CREATE_PROGRAM_INVOCATION: ConfirmedService = ConfirmedService(38);
    pub const DELETE_PROGRAM_INVOCATION: ConfirmedService = ConfirmedService(39);
    pub const START: ConfirmedService = ConfirmedService(40);
    pub const STOP: ConfirmedService = ConfirmedService(41);
    pub const RESUME: ConfirmedService = ConfirmedService(42);
    pub const RESET: ConfirmedService = ConfirmedService(43);
    pub const KILL: ConfirmedService = ConfirmedService(44);
    pub const OBTAIN_FILE: ConfirmedService = ConfirmedService(46);

    /// tshark's request name (`mms.confirmedServiceRequest`), `None` when undefined.
    pub fn name(self) -> Option<&'static str> {
        CONFIRMED_SERVICE_NAMES.get(self.0 as usize).copied()
    }

    /// tshark's response name (`mms.confirmedServiceResponse`): the request's, except
    /// two spellings of Wireshark's ASN.1 module.
    pub fn response_name(self) -> Option<&'static str> {
        match self.0 {
            32 => Some("requestDomainDownLoad"),
            56 => Some("reportActionStatus"),
            _ => self.name(),
        }
    }

    /// What the service does, for the sensor's command kinds.
    pub fn kind(self) -> ServiceKind {
        match self.0 {
            0 | 2 | 71 => ServiceKind::Diagnostic,
            1 | 4 | 6 | 9 | 12 | 15 | 37 | 45 | 49 | 55 | 61 | 63 | 64 | 65 => ServiceKind::Read,
            5 | 18 => ServiceKind::Write,
            40 | 42 => ServiceKind::Start,
            41 | 44 => ServiceKind::Stop,
            43 => ServiceKind::Reset,
            26..=36 | 38 | 39 | 46 => ServiceKind::Program,
            72..=77 => ServiceKind::File,
            _ => ServiceKind::Other,
        }
    }
}

/// Coarse classes of confirmed services: reads, writes, program invocation control
/// (start/resume, stop/kill, reset), domain and program management (download, upload,
/// create/delete program invocation, obtainFile), file access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    Read,
    Write,
    Start,
    Stop,
    Reset,
    Program,
    File,
    Diagnostic,
    Other,
}

wire_enum! {
    /// UnconfirmedService CHOICE (`mms.unconfirmedService`).
    pub enum UnconfirmedService {
        InformationReport = 0 => "informationReport",
        UnsolicitedStatus = 1 => "unsolicitedStatus",
        EventNotification = 2 => "eventNotification",
    }
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// Bytes after the PDU's BER element in the same value.
    pub const TRAILING_BYTES: u16 = 1 << 0;
    /// A confirmed request or response without its invokeID.
    pub const NO_INVOKE_ID: u16 = 1 << 1;
    /// A confirmed request without a service (tshark shows none either).
    pub const NO_SERVICE: u16 = 1 << 2;
    /// A service tag MMS does not define.
    pub const UNKNOWN_SERVICE: u16 = 1 << 3;

    const LABELS: [(u16, &'static str); 4] = [
        (Self::TRAILING_BYTES, "trailing_bytes"),
        (Self::NO_INVOKE_ID, "no_invoke_id"),
        (Self::NO_SERVICE, "no_service"),
        (Self::UNKNOWN_SERVICE, "unknown_service"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        Self::LABELS
            .into_iter()
            .filter(move |(flag, _)| self.0 & flag != 0)
            .map(|(_, label)| label)
    }
}

/// One MMS PDU (one BER element).
#[derive(Clone, Copy, Debug)]
pub struct Pdu<'a> {
    element: Element<'a>,
    trailing: usize,
}

/// The identify response (`IdentifyResponse`: vendorName [0], modelName [1],
/// revision [2]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Identify<'a> {
    pub vendor: Option<&'a [u8]>,
    pub model: Option<&'a [u8]>,
    pub revision: Option<&'a [u8]>,
}

impl<'a> Pdu<'a> {
    /// Validates that `buf` starts with one whole context-class BER element of an MMS
    /// PDU tag; bytes after it are counted ([`Anomalies::TRAILING_BYTES`]).
    pub fn new_checked(buf: &'a [u8]) -> Result<Pdu<'a>, Error> {
        let first = buf.first().copied().unwrap_or(0);
        let (element, rest) = element(buf).ok_or(Error::BadElement)?;
        if element.class != CLASS_CONTEXT || element.tag > 13 {
            return Err(Error::NotMms(first));
        }
        Ok(Pdu {
            element,
            trailing: rest.len(),
        })
    }

    pub fn pdu_type(&self) -> PduType {
        PduType::from(self.element.tag as u8)
    }

    /// The PDU's contents (after its tag and length).
    pub fn contents(&self) -> &'a [u8] {
        self.element.contents
    }

    /// Bytes after the PDU in the buffer it was read from.
    pub fn trailing_bytes(&self) -> usize {
        self.trailing
    }

    fn is_confirmed(&self) -> bool {
        matches!(
            self.pdu_type(),
            PduType::ConfirmedRequest | PduType::ConfirmedResponse | PduType::ConfirmedError
        )
    }

    /// `mms.invokeID`: the first INTEGER of confirmed requests and responses, the
    /// `[0] IMPLICIT` invokeID of confirmed and cancel errors and of a reject
    /// (originalInvokeID), the whole value of the cancel request and response (`[5]`/`[6]`
    /// IMPLICIT Unsigned32).
    pub fn invoke_id(&self) -> Option<u32> {
        match self.pdu_type() {
            PduType::CancelRequest | PduType::CancelResponse => unsigned(self.contents()),
            PduType::ConfirmedError | PduType::CancelError | PduType::Reject => {
                find(self.contents(), CLASS_CONTEXT, 0).and_then(|e| unsigned(e.contents))
            }
            PduType::ConfirmedRequest | PduType::ConfirmedResponse => {
                let first = elements(self.contents()).next()?;
                (first.class == CLASS_UNIVERSAL && first.tag == 2)
                    .then(|| unsigned(first.contents))
                    .flatten()
            }
            _ => None,
        }
    }

    /// The service element of a confirmed request or response: the first
    /// context-class element after the invokeID (and a request's listOfModifier).
    fn service_element(&self) -> Option<Element<'a>> {
        if !matches!(
            self.pdu_type(),
            PduType::ConfirmedRequest | PduType::ConfirmedResponse
        ) {
            return None;
        }
        elements(self.contents()).find(|e| e.class == CLASS_CONTEXT && e.tag != 79)
    }

    /// `mms.confirmedServiceRequest` / `mms.confirmedServiceResponse`.
    pub fn confirmed_service(&self) -> Option<ConfirmedService> {
        self.service_element().map(|e| ConfirmedService(e.tag))
    }

    /// The service's own value (its contents).
    pub fn service_body(&self) -> Option<&'a [u8]> {
        self.service_element().map(|e| e.contents)
    }

    /// `mms.unconfirmedService` of an unconfirmed PDU.
    pub fn unconfirmed_service(&self) -> Option<UnconfirmedService> {
        if self.pdu_type() != PduType::Unconfirmed {
            return None;
        }
        let first = elements(self.contents()).find(|e| e.class == CLASS_CONTEXT)?;
        Some(UnconfirmedService::from(first.tag.min(255) as u8))
    }

    /// A reject's problem: (the rejectReason CHOICE tag, its code), e.g. (1, 1) for a
    /// confirmed-requestPDU problem "unrecognized-service".
    pub fn reject_reason(&self) -> Option<(u32, u32)> {
        if self.pdu_type() != PduType::Reject {
            return None;
        }
        let reason = elements(self.contents()).find(|e| e.class == CLASS_CONTEXT && e.tag != 0)?;
        Some((reason.tag, unsigned(reason.contents).unwrap_or(0)))
    }

    /// A confirmed-ErrorPDU's (or other error PDU's) ServiceError errorClass: (the
    /// class CHOICE tag, its code).
    pub fn error_class(&self) -> Option<(u32, u32)> {
        let service_error = match self.pdu_type() {
            // confirmed-ErrorPDU: invokeID, modifierPosition [1] OPTIONAL,
            // serviceError [2].
            PduType::ConfirmedError => find(self.contents(), CLASS_CONTEXT, 2)?.contents,
            // initiate-, conclude- and cancel-ErrorPDU are ServiceError (cancel after
            // its invokeID [0]).
            PduType::InitiateError | PduType::ConcludeError => self.contents(),
            PduType::CancelError => find(self.contents(), CLASS_CONTEXT, 1)?.contents,
            _ => return None,
        };
        let class = find(service_error, CLASS_CONTEXT, 0)?;
        let (inner, _) = element(class.contents)?;
        Some((inner.tag, unsigned(inner.contents).unwrap_or(0)))
    }

    /// The identify response's vendor, model and revision.
    pub fn identify(&self) -> Option<Identify<'a>> {
        if self.pdu_type() != PduType::ConfirmedResponse
            || self.confirmed_service() != Some(ConfirmedService::IDENTIFY)
        {
            return None;
        }
        let mut identify = Identify::default();
        for e in elements(self.service_body()?) {
            match (e.class, e.tag) {
                (CLASS_CONTEXT, 0) => identify.vendor = Some(e.contents),
                (CLASS_CONTEXT, 1) => identify.model = Some(e.contents),
                (CLASS_CONTEXT, 2) => identify.revision = Some(e.contents),
                _ => {}
            }
        }
        Some(identify)
    }

    /// Spec violations of this PDU.
    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        if self.trailing > 0 {
            flags |= Anomalies::TRAILING_BYTES;
        }
        if self.is_confirmed() && self.invoke_id().is_none() {
            flags |= Anomalies::NO_INVOKE_ID;
        }
        match (self.pdu_type(), self.confirmed_service()) {
            (PduType::ConfirmedRequest, None) => flags |= Anomalies::NO_SERVICE,
            (_, Some(service)) if service.name().is_none() => flags |= Anomalies::UNKNOWN_SERVICE,
            _ => {}
        }
        Anomalies(flags)
    }
}

#[cfg(test)]
// A panic in a test is a failed assertion.
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::s7comm::{Cotp, Tpkt};
    use crate::test_capture::hex;

    /// The COTP DT payload of a TPKT fixture.
    fn dt_payload(frame: &[u8]) -> &[u8] {
        let tpkt = Tpkt::new_checked(frame).unwrap();
        Cotp::new_checked(tpkt.payload()).unwrap().payload()
    }

    // mms-piccolo.pcap frame 1: session CONNECT, presentation CP, ACSE AARQ with the
    // MMS initiate-RequestPDU; frame 2: ACCEPT / CPA / AARE / initiate-ResponsePDU.
    const PICCOLO_INITIATE: &str = "030000bf02f0800db60506130100160102140200023302000134020001c1a031819da003800101a28195810400000001820400000001a423300f0201010604520100013004060251013010020103060528ca22020130040602510161623060020101a05b6059a107060528ca220203a20706052901876701a30302010ca606060429018767a70302010cbe33283106025101020103a028a826800300ff0081010a82010a830105a416800101810305f100820c03ee1c000004000000010118";
    const PICCOLO_INITIATE_RESPONSE: &str = "0300009e02f0800e95050613010016010214020002c187318184a003800101a27d830400000001a5123007800100810251013007800100810251016161305f020101a05a6158a107060528ca220203a203020100a305a103020100a40706052901876701a50302010cbe33283106025101020103a028a926800300c000810101820101830105a416800101810305e100820c03ee1c000004000000010010";
    // mms-piccolo.pcap frames 3 and 4: GT+DT, fully-encoded data, identify request
    // (invokeID 1) and its response (vendor "INFO TECH", model "S61850 for PC",
    // revision "0.0.1").
    const PICCOLO_IDENTIFY: &str = "0300001b02f08001000100610e300c020103a007a0050201018200";
    const PICCOLO_IDENTIFY_RESPONSE: &str = "0300003c02f08001000100612f302d020103a028a126020101a2218009494e464f2054454348810d53363138353020666f722050438205302e302e31";
    // mms-kill-request.pcap frames 12 and 16: MMS directly on COTP (no session), a
    // kill request (tag 44, two-octet tag 0xbf 0x2c) and a conclude-RequestPDU of
    // length 0, which tshark's heuristic (and this view) does not take for MMS.
    const KILL_ON_COTP: &str =
        "0300002802f080a01f020101bf2c198017523339353032343339374170706c69636174696f6e5f31";
    const CONCLUDE_EMPTY: &str = "0300000902f0808b00";
    // mms-cancel-request.pcap frame 12: cancel-RequestPDU, primitive [5] invokeID 1.
    const CANCEL: &str = "0300000a02f080850101";
    // mms-confirmed-request.pcap frame 12: a confirmed request with only its invokeID.
    const CONFIRMED_NO_SERVICE: &str = "0300000c02f080a003020101";

    #[test]
    fn association_is_walked_through_session_presentation_and_acse() {
        let frame = hex(PICCOLO_INITIATE);
        let Some(Dt::Mms(bytes, carrier, spdu)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU found");
        };
        assert_eq!(carrier, Carrier::Acse);
        assert_eq!(spdu, Some(SpduType::Connect));
        let pdu = Pdu::new_checked(bytes).unwrap();
        assert_eq!(pdu.pdu_type(), PduType::InitiateRequest);
        assert_eq!(pdu.pdu_type().name(), Some("initiate-RequestPDU"));
        assert!(pdu.anomalies().is_empty());
        assert!(looks_like(&frame));

        let frame = hex(PICCOLO_INITIATE_RESPONSE);
        let Some(Dt::Mms(bytes, Carrier::Acse, Some(SpduType::Accept))) =
            mms_in_dt(dt_payload(&frame))
        else {
            panic!("no MMS PDU in the accept");
        };
        assert_eq!(
            Pdu::new_checked(bytes).unwrap().pdu_type(),
            PduType::InitiateResponse
        );
    }

    #[test]
    fn identify_request_and_response_carry_the_identity() {
        let frame = hex(PICCOLO_IDENTIFY);
        let Some(Dt::Mms(bytes, Carrier::Presentation, _)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU");
        };
        let request = Pdu::new_checked(bytes).unwrap();
        assert_eq!(request.pdu_type(), PduType::ConfirmedRequest);
        assert_eq!(request.invoke_id(), Some(1));
        assert_eq!(
            request.confirmed_service(),
            Some(ConfirmedService::IDENTIFY)
        );
        assert_eq!(
            request.confirmed_service().unwrap().name(),
            Some("identify")
        );
        assert_eq!(request.identify(), None);

        let frame = hex(PICCOLO_IDENTIFY_RESPONSE);
        let Some(Dt::Mms(bytes, _, _)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU");
        };
        let response = Pdu::new_checked(bytes).unwrap();
        assert_eq!(response.pdu_type(), PduType::ConfirmedResponse);
        let identify = response.identify().unwrap();
        assert_eq!(identify.vendor, Some(&b"INFO TECH"[..]));
        assert_eq!(identify.model, Some(&b"S61850 for PC"[..]));
        assert_eq!(identify.revision, Some(&b"0.0.1"[..]));
    }

    #[test]
    fn mms_directly_on_cotp_follows_tsharks_heuristic() {
        let frame = hex(KILL_ON_COTP);
        let Some(Dt::Mms(bytes, Carrier::Cotp, None)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU");
        };
        let pdu = Pdu::new_checked(bytes).unwrap();
        assert_eq!(pdu.confirmed_service(), Some(ConfirmedService::KILL));
        assert_eq!(ConfirmedService::KILL.kind(), ServiceKind::Stop);
        assert!(looks_like(&frame));

        // Length 0: not MMS for tshark, nor here.
        let frame = hex(CONCLUDE_EMPTY);
        assert_eq!(mms_in_dt(dt_payload(&frame)), None);
        assert!(!looks_like(&frame));

        let frame = hex(CANCEL);
        let Some(Dt::Mms(bytes, ..)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU");
        };
        let cancel = Pdu::new_checked(bytes).unwrap();
        assert_eq!(cancel.pdu_type(), PduType::CancelRequest);
        assert_eq!(cancel.invoke_id(), Some(1));

        let frame = hex(CONFIRMED_NO_SERVICE);
        let Some(Dt::Mms(bytes, ..)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU");
        };
        let bare = Pdu::new_checked(bytes).unwrap();
        assert_eq!(bare.confirmed_service(), None);
        assert!(bare.anomalies().contains(Anomalies::NO_SERVICE));
    }

    #[test]
    fn empty_conclude_counts_in_presentation_data() {
        // GT+DT, fully-encoded data (context 3) holding conclude-RequestPDU `8b 00`:
        // tshark dissects it (no heuristic behind the presentation layer).
        let frame = hex("0300001602f0800100010061093007020103a0028b00");
        let Some(Dt::Mms(bytes, Carrier::Presentation, _)) = mms_in_dt(dt_payload(&frame)) else {
            panic!("no MMS PDU");
        };
        let pdu = Pdu::new_checked(bytes).unwrap();
        assert_eq!(pdu.pdu_type(), PduType::ConcludeRequest);
        assert!(pdu.anomalies().is_empty());
    }

    #[test]
    fn s7comm_and_s7comm_plus_are_not_mms() {
        // S7comm job header and an S7comm-plus PDU.
        assert_eq!(mms_in_dt(&hex("32010000350000100000")), None);
        assert_eq!(mms_in_dt(&hex("72010000")), None);
        assert!(!looks_like(&hex("0300000b02f08072010000")));
    }

    #[test]
    fn rejects_and_never_panics_on_cut_input() {
        assert_eq!(Pdu::new_checked(&[]).unwrap_err(), Error::BadElement);
        assert_eq!(
            Pdu::new_checked(&[0x30, 0x00]).unwrap_err(),
            Error::NotMms(0x30)
        );
        // Indefinite length, oversize length octets, a 5-octet tag.
        assert_eq!(element(&[0xa0, 0x80, 0, 0]), None);
        assert_eq!(element(&[0xa0, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(element(&[0xbf, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00]), None);
        for fixture in [
            PICCOLO_INITIATE,
            PICCOLO_INITIATE_RESPONSE,
            PICCOLO_IDENTIFY_RESPONSE,
            KILL_ON_COTP,
        ] {
            let frame = hex(fixture);
            let payload = dt_payload(&frame);
            for cut in 0..payload.len() {
                let part = &payload[..cut];
                if let Some(Dt::Mms(bytes, ..)) = mms_in_dt(part) {
                    if let Ok(pdu) = Pdu::new_checked(bytes) {
                        let _ = (pdu.invoke_id(), pdu.confirmed_service(), pdu.identify());
                        let _ = (pdu.reject_reason(), pdu.error_class(), pdu.anomalies());
                    }
                }
            }
        }
    }
}
