//! IEC 60870-5-104: the APCI (start byte, length, four control octets) and the ASDU an
//! I-format APDU carries, as zero-copy views.
//!
//! Follows IEC 60870-5-104:2006 (cited "104 §n") for the APCI and IEC 60870-5-101:2003
//! (cited "101 §n") for the ASDU with 104's fixed field sizes: two-octet cause of
//! transmission (with originator address), two-octet common address, three-octet
//! information object address (104 §9). Accessor names follow the spec; Wireshark's
//! `iec60870_104.*` and `iec60870_asdu.*` fields are named where they match.
//!
//! [`Apdu::new_checked`] validates the start byte and that the buffer holds exactly the
//! APDU its length octet announces (4..=253 octets after the length); after it succeeds
//! **no accessor can panic**. [`Asdu::new_checked`] needs the six-octet data unit
//! identifier; information objects are walked with their element size from the type
//! identification, and a count that does not fit the bytes is an [`Anomalies`] flag,
//! not an error.

use crate::{Direction, Framing};

/// Byte offsets of the APCI (104 §5.1, figure 6).
mod field {
    /// Start byte 0x68.
    pub const START: usize = 0;
    /// `iec60870_104.apdulen`: octets after this one (control field + ASDU).
    pub const LENGTH: usize = 1;
    /// The four control octets.
    pub const CONTROL: usize = 2;
    /// The ASDU of an I-format APDU.
    pub const ASDU: usize = 6;
}

/// Byte offsets of the data unit identifier (101 §7.2, 104 §9).
mod asdu_field {
    /// `iec60870_asdu.typeid`
    pub const TYPE_ID: usize = 0;
    /// Variable structure qualifier: SQ (bit 7) and the number of objects (bits 0-6).
    pub const VSQ: usize = 1;
    /// Cause of transmission: T (bit 7), P/N (bit 6), cause (bits 0-5).
    pub const COT: usize = 2;
    /// `iec60870_asdu.oa`: originator address (second COT octet in 104).
    pub const ORIGINATOR: usize = 3;
    /// `iec60870_asdu.addr`: common address of the ASDU, little-endian.
    pub const COMMON_ADDRESS: usize = 4;
    /// The first information object.
    pub const OBJECTS: usize = 6;
}

/// The APDU start byte (104 §5.1).
pub const START_BYTE: u8 = 0x68;
/// Length of the APCI: start, length and control octets.
pub const APCI_LEN: usize = field::ASDU;
/// The smallest length octet: the control field alone (S- and U-format).
pub const MIN_LENGTH: u8 = 4;
/// The largest length octet (104 §5.1: APDU at most 255 octets).
pub const MAX_LENGTH: u8 = 253;
/// Length of the data unit identifier in 104.
pub const ASDU_HEADER_LEN: usize = asdu_field::OBJECTS;
/// Length of an information object address in 104.
pub const IOA_LEN: usize = 3;
/// The default TCP port (104 §10).
pub const PORT: u16 = 2404;

/// Why a buffer is not an IEC 104 APDU or ASDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    #[error("start byte {0:#04x} is not 0x68")]
    BadStart(u8),
    #[error("APDU length {0} outside {MIN_LENGTH}..={MAX_LENGTH}")]
    BadLength(u8),
    #[error("{0} bytes after the APDU its length announces")]
    TrailingBytes(usize),
}

impl Error {
    /// The counter label of this error.
    pub fn label(self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::BadStart(_) => "bad_start",
            Error::BadLength(_) => "bad_length",
            Error::TrailingBytes(_) => "trailing_bytes",
        }
    }
}

/// The three APCI formats (104 §5.1, Wireshark `iec60870_104.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Numbered information transfer: carries an ASDU.
    I,
    /// Numbered supervisory function: acknowledges I-format APDUs.
    S,
    /// Unnumbered control function: STARTDT, STOPDT, TESTFR.
    U,
}

impl Format {
    /// "I", "S" or "U", as tshark's summaries write it.
    pub fn name(self) -> &'static str {
        match self {
            Format::I => "I",
            Format::S => "S",
            Format::U => "U",
        }
    }
}

wire_enum! {
    /// U-format functions: the control octet's bits 2-7 (104 §5.3), as Wireshark's
    /// `iec60870_104.utype` (one bit set).
    pub enum UFunction {
        StartDtAct = 0x01 => "STARTDT act",
        StartDtCon = 0x02 => "STARTDT con",
        StopDtAct = 0x04 => "STOPDT act",
        StopDtCon = 0x08 => "STOPDT con",
        TestFrAct = 0x10 => "TESTFR act",
        TestFrCon = 0x20 => "TESTFR con",
    }
}

wire_enum! {
    /// Type identification (101 §7.2.1.1 table 8 and 104 §8, Wireshark
    /// `iec60870_asdu.typeid`).
    pub enum TypeId {
        MSpNa1 = 1 => "M_SP_NA_1",
        MSpTa1 = 2 => "M_SP_TA_1",
        MDpNa1 = 3 => "M_DP_NA_1",
        MDpTa1 = 4 => "M_DP_TA_1",
        MStNa1 = 5 => "M_ST_NA_1",
        MStTa1 = 6 => "M_ST_TA_1",
        MBoNa1 = 7 => "M_BO_NA_1",
        MBoTa1 = 8 => "M_BO_TA_1",
        MMeNa1 = 9 => "M_ME_NA_1",
        MMeTa1 = 10 => "M_ME_TA_1",
        MMeNb1 = 11 => "M_ME_NB_1",
        MMeTb1 = 12 => "M_ME_TB_1",
        MMeNc1 = 13 => "M_ME_NC_1",
        MMeTc1 = 14 => "M_ME_TC_1",
        MItNa1 = 15 => "M_IT_NA_1",
        MItTa1 = 16 => "M_IT_TA_1",
        MEpTa1 = 17 => "M_EP_TA_1",
        MEpTb1 = 18 => "M_EP_TB_1",
        MEpTc1 = 19 => "M_EP_TC_1",
        MPsNa1 = 20 => "M_PS_NA_1",
        MMeNd1 = 21 => "M_ME_ND_1",
        MSpTb1 = 30 => "M_SP_TB_1",
        MDpTb1 = 31 => "M_DP_TB_1",
        MStTb1 = 32 => "M_ST_TB_1",
        MBoTb1 = 33 => "M_BO_TB_1",
        MMeTd1 = 34 => "M_ME_TD_1",
        MMeTe1 = 35 => "M_ME_TE_1",
        MMeTf1 = 36 => "M_ME_TF_1",
        MItTb1 = 37 => "M_IT_TB_1",
        MEpTd1 = 38 => "M_EP_TD_1",
        MEpTe1 = 39 => "M_EP_TE_1",
        MEpTf1 = 40 => "M_EP_TF_1",
        CScNa1 = 45 => "C_SC_NA_1",
        CDcNa1 = 46 => "C_DC_NA_1",
        CRcNa1 = 47 => "C_RC_NA_1",
        CSeNa1 = 48 => "C_SE_NA_1",
        CSeNb1 = 49 => "C_SE_NB_1",
        CSeNc1 = 50 => "C_SE_NC_1",
        CBoNa1 = 51 => "C_BO_NA_1",
        CScTa1 = 58 => "C_SC_TA_1",
        CDcTa1 = 59 => "C_DC_TA_1",
        CRcTa1 = 60 => "C_RC_TA_1",
        CSeTa1 = 61 => "C_SE_TA_1",
        CSeTb1 = 62 => "C_SE_TB_1",
        CSeTc1 = 63 => "C_SE_TC_1",
        CBoTa1 = 64 => "C_BO_TA_1",
        MEiNa1 = 70 => "M_EI_NA_1",
        CIcNa1 = 100 => "C_IC_NA_1",
        CCiNa1 = 101 => "C_CI_NA_1",
        CRdNa1 = 102 => "C_RD_NA_1",
        CCsNa1 = 103 => "C_CS_NA_1",
        CTsNa1 = 104 => "C_TS_NA_1",
        CRpNa1 = 105 => "C_RP_NA_1",
        CCdNa1 = 106 => "C_CD_NA_1",
        CTsTa1 = 107 => "C_TS_TA_1",
        PMeNa1 = 110 => "P_ME_NA_1",
        PMeNb1 = 111 => "P_ME_NB_1",
        PMeNc1 = 112 => "P_ME_NC_1",
        PAcNa1 = 113 => "P_AC_NA_1",
        FFrNa1 = 120 => "F_FR_NA_1",
        FSrNa1 = 121 => "F_SR_NA_1",
        FScNa1 = 122 => "F_SC_NA_1",
        FLsNa1 = 123 => "F_LS_NA_1",
        FAfNa1 = 124 => "F_AF_NA_1",
        FSgNa1 = 125 => "F_SG_NA_1",
        FDrTa1 = 126 => "F_DR_TA_1",
        FScNb1 = 127 => "F_SC_NB_1",
    }
}

/// What a type identification does, for detections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// Process information in monitor direction (measurands, status, end of init).
    Monitor,
    /// Single, double or regulating-step command: operates an output.
    Operate,
    /// Set-point or bitstring command: writes a value.
    Setpoint,
    /// Parameter of measured values or parameter activation: writes configuration.
    Parameter,
    /// General or counter interrogation, read command.
    Interrogation,
    /// Clock synchronisation.
    ClockSync,
    /// Reset process (C_RP_NA_1).
    ResetProcess,
    /// Test and delay acquisition commands.
    Test,
    /// File transfer.
    File,
    /// A type identification the spec does not define.
    Unknown,
}

impl TypeKind {
    /// A stable lowercase name for events and metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            TypeKind::Monitor => "monitor",
            TypeKind::Operate => "operate",
            TypeKind::Setpoint => "setpoint",
            TypeKind::Parameter => "parameter",
            TypeKind::Interrogation => "interrogation",
            TypeKind::ClockSync => "clock_sync",
            TypeKind::ResetProcess => "reset_process",
            TypeKind::Test => "test",
            TypeKind::File => "file",
            TypeKind::Unknown => "unknown",
        }
    }
}

impl TypeId {
    /// What this type does (101 §7.2.1.1 groups the type ids the same way).
    pub fn kind(self) -> TypeKind {
        match u8::from(self) {
            _ if matches!(self, TypeId::Unknown(_)) => TypeKind::Unknown,
            1..=40 | 70 => TypeKind::Monitor,
            45..=47 | 58..=60 => TypeKind::Operate,
            48..=51 | 61..=64 => TypeKind::Setpoint,
            100..=102 => TypeKind::Interrogation,
            103 => TypeKind::ClockSync,
            105 => TypeKind::ResetProcess,
            104 | 106 | 107 => TypeKind::Test,
            110..=113 => TypeKind::Parameter,
            120..=127 => TypeKind::File,
            _ => TypeKind::Unknown,
        }
    }

    /// Octets of one information element (without its address), `None` for a type
    /// the spec does not define or whose element has a variable size (F_SG_NA_1).
    /// Sizes from 101 §7.3 (CP24 = 3, CP56 = 7 octets of time tag).
    pub fn element_len(self) -> Option<usize> {
        Some(match u8::from(self) {
            _ if matches!(self, TypeId::Unknown(_)) => return None,
            1 | 3 | 45 | 46 | 47 | 70 | 100 | 101 | 105 | 113 => 1,
            102 => 0,
            5 | 21 | 104 | 106 => 2,
            9 | 11 | 48 | 49 | 110 | 111 => 3,
            2 | 4 | 51 | 122 | 124 => 4,
            6 | 7 | 13 | 15 | 20 | 50 | 112 | 123 => 5,
            10 | 17 | 120 => 6,
            18 | 19 | 103 | 121 => 7,
            8 | 14 | 16 | 30 | 31 | 58 | 59 | 60 => 8,
            32 | 107 => 9,
            34 | 35 | 38 | 61 | 62 => 10,
            39 | 40 | 64 => 11,
            33 | 36 | 37 | 63 => 12,
            126 => 13,
            127 => 16,
            _ => return None,
        })
    }
}

wire_enum! {
    /// Cause of transmission, bits 0-5 (101 §7.2.3, Wireshark `iec60870_asdu.causetx`).
    pub enum Cause {
        Periodic = 1 => "per/cyc",
        Background = 2 => "back",
        Spontaneous = 3 => "spont",
        Initialized = 4 => "init",
        Request = 5 => "req",
        Activation = 6 => "act",
        ActivationCon = 7 => "actcon",
        Deactivation = 8 => "deact",
        DeactivationCon = 9 => "deactcon",
        ActivationTerm = 10 => "actterm",
        ReturnRemote = 11 => "retrem",
        ReturnLocal = 12 => "retloc",
        File = 13 => "file",
        Interrogated = 20 => "inrogen",
        CounterInterrogated = 37 => "reqcogen",
        UnknownType = 44 => "unknown type identification",
        UnknownCause = 45 => "unknown cause of transmission",
        UnknownCommonAddress = 46 => "unknown common address of ASDU",
        UnknownObjectAddress = 47 => "unknown information object address",
    }
}

impl Cause {
    /// Causes 44-47: the controlled station rejects the ASDU it mirrors.
    pub fn is_unknown_reply(self) -> bool {
        matches!(u8::from(self), 44..=47)
    }

    /// Interrogation by group 1-16 (21-36) and counter groups 1-4 (38-41) have no
    /// variant of their own; they are still defined causes.
    pub fn is_defined(self) -> bool {
        !matches!(self, Cause::Unknown(c) if !matches!(c, 21..=36 | 38..=41))
    }
}

/// Spec violations that still parse: detection inputs, not errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(pub u16);

impl Anomalies {
    /// An I-format APDU too short for the six-octet data unit identifier.
    pub const ASDU_TRUNCATED: u16 = 1 << 0;
    /// S- or U-format with octets after the control field.
    pub const SU_WITH_PAYLOAD: u16 = 1 << 1;
    /// U-format with no or several function bits, or non-zero control octets 2-4.
    pub const BAD_U_FUNCTION: u16 = 1 << 2;
    /// S-format with reserved bits set in control octets 1-2.
    pub const BAD_S_CONTROL: u16 = 1 << 3;
    /// An ASDU with zero information objects.
    pub const NO_OBJECTS: u16 = 1 << 4;
    /// The information objects do not fill the ASDU exactly for the type's size.
    pub const OBJECTS_LENGTH_MISMATCH: u16 = 1 << 5;
    /// A type identification the spec does not define.
    pub const UNKNOWN_TYPE: u16 = 1 << 6;
    /// Cause of transmission 0 or a cause the spec does not define.
    pub const UNKNOWN_CAUSE: u16 = 1 << 7;

    const LABELS: [(u16, &'static str); 8] = [
        (Self::ASDU_TRUNCATED, "asdu_truncated"),
        (Self::SU_WITH_PAYLOAD, "su_with_payload"),
        (Self::BAD_U_FUNCTION, "bad_u_function"),
        (Self::BAD_S_CONTROL, "bad_s_control"),
        (Self::NO_OBJECTS, "no_objects"),
        (Self::OBJECTS_LENGTH_MISMATCH, "objects_length_mismatch"),
        (Self::UNKNOWN_TYPE, "unknown_type"),
        (Self::UNKNOWN_CAUSE, "unknown_cause"),
    ];

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, flag: u16) -> bool {
        self.0 & flag != 0
    }

    /// The labels of the set flags.
    pub fn labels(self) -> impl Iterator<Item = &'static str> {
        Self::LABELS
            .into_iter()
            .filter(move |(flag, _)| self.0 & flag != 0)
            .map(|(_, label)| label)
    }
}

/// One APDU: APCI plus, for I-format, the ASDU bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Apdu<'a> {
    buf: &'a [u8],
}

impl<'a> Apdu<'a> {
    /// Checks the start byte, the length octet's range, and that `buf` is exactly the
    /// APDU it announces.
    pub fn new_checked(buf: &'a [u8]) -> Result<Apdu<'a>, Error> {
        let Some(&start) = buf.get(field::START) else {
            return Err(Error::Truncated {
                need: field::CONTROL,
                have: 0,
            });
        };
        if start != START_BYTE {
            return Err(Error::BadStart(start));
        }
        let Some(&length) = buf.get(field::LENGTH) else {
            return Err(Error::Truncated {
                need: field::CONTROL,
                have: buf.len(),
            });
        };
        if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
            return Err(Error::BadLength(length));
        }
        let total = field::CONTROL + usize::from(length);
        match buf.len().cmp(&total) {
            std::cmp::Ordering::Less => Err(Error::Truncated {
                need: total,
                have: buf.len(),
            }),
            std::cmp::Ordering::Greater => Err(Error::TrailingBytes(buf.len() - total)),
            std::cmp::Ordering::Equal => Ok(Apdu { buf }),
        }
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `iec60870_104.apdulen`
    pub fn length(&self) -> u8 {
        self.buf[field::LENGTH]
    }

    /// The four control octets (present: length ≥ 4 was checked).
    pub fn control(&self) -> [u8; 4] {
        let c = &self.buf[field::CONTROL..field::ASDU];
        [c[0], c[1], c[2], c[3]]
    }

    /// The APCI format from control octet 1's low bits (104 §5.1).
    pub fn format(&self) -> Format {
        let c1 = self.control()[0];
        if c1 & 0x01 == 0 {
            Format::I
        } else if c1 & 0x03 == 0x01 {
            Format::S
        } else {
            Format::U
        }
    }

    /// `iec60870_104.tx`: the send sequence number N(S) of an I-format APDU.
    pub fn send_seq(&self) -> Option<u16> {
        let c = self.control();
        (self.format() == Format::I).then(|| u16::from_le_bytes([c[0], c[1]]) >> 1)
    }

    /// `iec60870_104.rx`: the receive sequence number N(R) of an I- or S-format APDU.
    pub fn recv_seq(&self) -> Option<u16> {
        let c = self.control();
        (self.format() != Format::U).then(|| u16::from_le_bytes([c[2], c[3]]) >> 1)
    }

    /// `iec60870_104.utype`: the function bits of a U-format APDU (bits 2-7 of
    /// control octet 1).
    pub fn u_bits(&self) -> Option<u8> {
        (self.format() == Format::U).then(|| self.control()[0] >> 2)
    }

    /// The U-format function, `Unknown` unless exactly one defined bit is set.
    pub fn u_function(&self) -> Option<UFunction> {
        self.u_bits().map(UFunction::from)
    }

    /// The ASDU bytes of an I-format APDU (may be shorter than a data unit identifier;
    /// see [`Asdu::new_checked`]).
    pub fn asdu_bytes(&self) -> Option<&'a [u8]> {
        (self.format() == Format::I).then(|| self.buf.get(field::ASDU..).unwrap_or(&[]))
    }

    /// The ASDU of an I-format APDU, when it has a whole data unit identifier.
    pub fn asdu(&self) -> Option<Asdu<'a>> {
        self.asdu_bytes().and_then(|b| Asdu::new_checked(b).ok())
    }

    /// Spec violations of the APCI and its ASDU.
    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        let c = self.control();
        match self.format() {
            Format::I => match self.asdu() {
                Some(asdu) => flags |= asdu.anomalies().0,
                None => flags |= Anomalies::ASDU_TRUNCATED,
            },
            Format::S => {
                if c[0] != 0x01 || c[1] != 0 {
                    flags |= Anomalies::BAD_S_CONTROL;
                }
            }
            Format::U => {
                let bits = c[0] >> 2;
                if bits.count_ones() != 1 || c[1] != 0 || c[2] != 0 || c[3] != 0 {
                    flags |= Anomalies::BAD_U_FUNCTION;
                }
            }
        }
        if self.format() != Format::I && self.buf.len() > APCI_LEN {
            flags |= Anomalies::SU_WITH_PAYLOAD;
        }
        Anomalies(flags)
    }
}

/// An ASDU with 104's field sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asdu<'a> {
    buf: &'a [u8],
}

impl<'a> Asdu<'a> {
    /// Checks that the data unit identifier is whole.
    pub fn new_checked(buf: &'a [u8]) -> Result<Asdu<'a>, Error> {
        if buf.len() < ASDU_HEADER_LEN {
            return Err(Error::Truncated {
                need: ASDU_HEADER_LEN,
                have: buf.len(),
            });
        }
        Ok(Asdu { buf })
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// `iec60870_asdu.typeid`
    pub fn raw_type_id(&self) -> u8 {
        self.buf[asdu_field::TYPE_ID]
    }

    pub fn type_id(&self) -> TypeId {
        TypeId::from(self.raw_type_id())
    }

    /// `iec60870_asdu.sq`: the objects are a sequence from one address.
    pub fn sequence(&self) -> bool {
        self.buf[asdu_field::VSQ] & 0x80 != 0
    }

    /// `iec60870_asdu.numix`: the number of information objects or elements.
    pub fn num_objects(&self) -> u8 {
        self.buf[asdu_field::VSQ] & 0x7F
    }

    /// The raw cause of transmission octet (T, P/N, cause).
    pub fn raw_cot(&self) -> u8 {
        self.buf[asdu_field::COT]
    }

    /// `iec60870_asdu.causetx`: the cause, bits 0-5.
    pub fn cause(&self) -> Cause {
        Cause::from(self.raw_cot() & 0x3F)
    }

    /// `iec60870_asdu.nega`: a negative confirm.
    pub fn negative(&self) -> bool {
        self.raw_cot() & 0x40 != 0
    }

    /// `iec60870_asdu.test`: a test ASDU, not meant to act on the process.
    pub fn test(&self) -> bool {
        self.raw_cot() & 0x80 != 0
    }

    /// `iec60870_asdu.oa`
    pub fn originator(&self) -> u8 {
        self.buf[asdu_field::ORIGINATOR]
    }

    /// `iec60870_asdu.addr`
    pub fn common_address(&self) -> u16 {
        u16::from_le_bytes([
            self.buf[asdu_field::COMMON_ADDRESS],
            self.buf[asdu_field::COMMON_ADDRESS + 1],
        ])
    }

    /// The information object bytes.
    pub fn objects_bytes(&self) -> &'a [u8] {
        &self.buf[asdu_field::OBJECTS..]
    }

    /// The information objects, for a type with a known element size.
    pub fn objects(&self) -> Objects<'a> {
        Objects {
            rest: self.objects_bytes(),
            element_len: self.type_id().element_len(),
            sequence: self.sequence(),
            remaining: self.num_objects(),
            next_address: 0,
            first: true,
        }
    }

    /// The address of the first information object, when there is one.
    pub fn first_address(&self) -> Option<u32> {
        ioa(self.objects_bytes())
    }

    /// The octets the objects take for this type and count, `None` for a type without
    /// a fixed element size.
    pub fn objects_len(&self) -> Option<usize> {
        let element = self.type_id().element_len()?;
        let n = usize::from(self.num_objects());
        Some(match (n, self.sequence()) {
            (0, _) => 0,
            (n, true) => IOA_LEN + n * element,
            (n, false) => n * (IOA_LEN + element),
        })
    }

    pub fn anomalies(&self) -> Anomalies {
        let mut flags = 0;
        if self.num_objects() == 0 {
            flags |= Anomalies::NO_OBJECTS;
        }
        if matches!(self.type_id(), TypeId::Unknown(_)) {
            flags |= Anomalies::UNKNOWN_TYPE;
        }
        if self.raw_cot() & 0x3F == 0 || !self.cause().is_defined() {
            flags |= Anomalies::UNKNOWN_CAUSE;
        }
        if let Some(len) = self.objects_len() {
            if len != self.objects_bytes().len() {
                flags |= Anomalies::OBJECTS_LENGTH_MISMATCH;
            }
        }
        Anomalies(flags)
    }
}

fn ioa(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [a, b, c, ..] => Some(u32::from_le_bytes([*a, *b, *c, 0])),
        _ => None,
    }
}

/// One information object: its address and its element bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Object<'a> {
    /// `iec60870_asdu.ioa`
    pub address: u32,
    pub element: &'a [u8],
}

/// Iterator over the information objects of an ASDU; stops at the first object that
/// does not fit (the ASDU then has [`Anomalies::OBJECTS_LENGTH_MISMATCH`]).
#[derive(Clone, Debug)]
pub struct Objects<'a> {
    rest: &'a [u8],
    element_len: Option<usize>,
    sequence: bool,
    remaining: u8,
    next_address: u32,
    first: bool,
}

impl<'a> Iterator for Objects<'a> {
    type Item = Object<'a>;

    fn next(&mut self) -> Option<Object<'a>> {
        let element_len = self.element_len?;
        if self.remaining == 0 {
            return None;
        }
        let with_address = self.first || !self.sequence;
        if with_address {
            self.next_address = ioa(self.rest)?;
            self.rest = self.rest.get(IOA_LEN..)?;
        }
        let element = self.rest.get(..element_len)?;
        self.rest = self.rest.get(element_len..)?;
        let address = self.next_address;
        // 101 §7.2.2.1: in a sequence the address counts up by one per element.
        self.next_address = self.next_address.wrapping_add(1) & 0x00FF_FFFF;
        self.first = false;
        self.remaining -= 1;
        Some(Object { address, element })
    }
}

/// Stream framing: the start byte and length octet give the APDU size (104 §5.1). A
/// buffer that does not start with 0x68 and a valid length is skipped a byte at a time.
pub fn frame(buf: &[u8]) -> Framing {
    match buf.first() {
        None => return Framing::Need(field::CONTROL),
        Some(&START_BYTE) => {}
        Some(_) => return Framing::Resync(1),
    }
    let Some(&length) = buf.get(field::LENGTH) else {
        return Framing::Need(field::CONTROL);
    };
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        return Framing::Resync(1);
    }
    let total = field::CONTROL + usize::from(length);
    if buf.len() < total {
        Framing::Need(total)
    } else {
        Framing::Frame(total)
    }
}

/// A cheap signature for IEC 104 on any port: the payload is a whole number of APDUs
/// (at most a few are checked), each S- or U-format one well-formed and each I-format
/// one holding a data unit identifier with a defined type and cause.
pub fn looks_like(payload: &[u8]) -> bool {
    let mut rest = payload;
    let mut checked = 0;
    while !rest.is_empty() && checked < 4 {
        let Framing::Frame(len) = frame(rest) else {
            return false;
        };
        let Ok(apdu) = Apdu::new_checked(&rest[..len]) else {
            return false;
        };
        let plausible = match apdu.format() {
            Format::S | Format::U => apdu.anomalies().is_empty(),
            Format::I => apdu.asdu().is_some_and(|asdu| {
                !matches!(asdu.type_id(), TypeId::Unknown(_))
                    && asdu.raw_cot() & 0x3F != 0
                    && asdu.cause().is_defined()
            }),
        };
        if !plausible {
            return false;
        }
        rest = &rest[len..];
        checked += 1;
    }
    checked > 0
}

/// Which side sent an APDU carrying this cause: activations and deactivations come
/// from the controlling station, everything else from the controlled one (101 §7.2.3).
pub fn sender_of(cause: Cause) -> Direction {
    match cause {
        Cause::Activation | Cause::Deactivation => Direction::Request,
        _ => Direction::Response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_capture::hex;
    use crate::test_capture::{expected_histogram, framed_pdus};
    use std::collections::HashMap;

    // Fixtures are APDUs of the shared captures (frame numbers as in Wireshark).

    /// iec104-real-world-commands.pcap #4: TESTFR act.
    const TESTFR_ACT: &str = "680443000000";
    /// iec104-real-world-commands.pcap #7: STARTDT act.
    const STARTDT_ACT: &str = "680407000000";
    /// iec104-real-world-commands.pcap #15: S-format, N(R) = 13.
    const S_FORMAT: &str = "680401001a00";
    /// iec104-real-world-commands.pcap #9: C_IC_NA_1 general interrogation, act, CA 10.
    const INTERROGATION: &str = "680e00000000640106000a0000000014";
    /// iec104-real-world-commands.pcap #10: M_EI_NA_1 end of initialisation, COT 4.
    const END_OF_INIT: &str = "680e00000000460104000a0000000000";
    /// iec104-real-world-commands.pcap #20: C_SC_NA_1 single command, act, IOA 2, SCO 1.
    const SINGLE_COMMAND: &str = "680e040042002d0106000a0002000001";
    /// iec104-real-world-commands.pcap #12 (2nd APDU): M_SP_NA_1, 4 objects, inrogen.
    const SINGLE_POINTS: &str = "681a04000200010414000a0001000000020000000300000004000000";
    /// iec104-real-world-commands.pcap #25 (3rd APDU): M_SP_TB_1 with CP56 time tag.
    const SINGLE_POINT_TIME: &str = "68154c0008001e0103000a000d000001c75d170884070d";
    /// iec104-real-world-commands.pcap #78: C_SE_NC_1 float set-point 3.14, act.
    const SETPOINT_FLOAT: &str = "68121c008a00320106000a00010000c3f5484000";

    #[test]
    fn u_format_testfr_and_startdt() {
        let bytes = hex(TESTFR_ACT);
        let apdu = Apdu::new_checked(&bytes).expect("valid APDU");
        assert_eq!(apdu.length(), 4);
        assert_eq!(apdu.format(), Format::U);
        assert_eq!(apdu.u_bits(), Some(0x10));
        assert_eq!(apdu.u_function(), Some(UFunction::TestFrAct));
        assert_eq!(apdu.send_seq(), None);
        assert_eq!(apdu.recv_seq(), None);
        assert_eq!(apdu.asdu_bytes(), None);
        assert!(apdu.anomalies().is_empty());
        let bytes = hex(STARTDT_ACT);
        let apdu = Apdu::new_checked(&bytes).expect("valid APDU");
        assert_eq!(apdu.u_function(), Some(UFunction::StartDtAct));
        assert_eq!(
            apdu.u_function().and_then(UFunction::name),
            Some("STARTDT act")
        );
    }

    #[test]
    fn s_format_receive_sequence() {
        let bytes = hex(S_FORMAT);
        let apdu = Apdu::new_checked(&bytes).expect("valid APDU");
        assert_eq!(apdu.format(), Format::S);
        assert_eq!(apdu.recv_seq(), Some(13));
        assert_eq!(apdu.send_seq(), None);
        assert!(apdu.anomalies().is_empty());
    }

    #[test]
    fn i_format_interrogation_and_end_of_init() {
        let bytes = hex(INTERROGATION);
        let apdu = Apdu::new_checked(&bytes).expect("valid APDU");
        assert_eq!(apdu.format(), Format::I);
        assert_eq!((apdu.send_seq(), apdu.recv_seq()), (Some(0), Some(0)));
        let asdu = apdu.asdu().expect("ASDU");
        assert_eq!(asdu.type_id(), TypeId::CIcNa1);
        assert_eq!(asdu.type_id().kind(), TypeKind::Interrogation);
        assert_eq!(asdu.cause(), Cause::Activation);
        assert!(!asdu.negative() && !asdu.test() && !asdu.sequence());
        assert_eq!(asdu.num_objects(), 1);
        assert_eq!(asdu.common_address(), 10);
        let objects: Vec<_> = asdu.objects().collect();
        assert_eq!(
            objects,
            vec![Object {
                address: 0,
                element: &[0x14]
            }]
        );
        assert!(apdu.anomalies().is_empty());

        let bytes = hex(END_OF_INIT);
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("ASDU");
        assert_eq!(asdu.type_id(), TypeId::MEiNa1);
        assert_eq!(asdu.cause(), Cause::Initialized);
        assert_eq!(sender_of(asdu.cause()), Direction::Response);
    }

    #[test]
    fn commands_and_setpoints() {
        let bytes = hex(SINGLE_COMMAND);
        let apdu = Apdu::new_checked(&bytes).expect("valid APDU");
        assert_eq!((apdu.send_seq(), apdu.recv_seq()), (Some(2), Some(33)));
        let asdu = apdu.asdu().expect("ASDU");
        assert_eq!(asdu.type_id(), TypeId::CScNa1);
        assert_eq!(asdu.type_id().name(), Some("C_SC_NA_1"));
        assert_eq!(asdu.type_id().kind(), TypeKind::Operate);
        assert_eq!(asdu.first_address(), Some(2));
        assert_eq!(sender_of(asdu.cause()), Direction::Request);

        let bytes = hex(SETPOINT_FLOAT);
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("ASDU");
        assert_eq!(asdu.type_id().kind(), TypeKind::Setpoint);
        let object = asdu.objects().next().expect("one object");
        assert_eq!(object.address, 1);
        // IEEE 754 single 0x4048F5C3 (3.14), little-endian on the wire.
        assert_eq!(&object.element[..4], &[0xc3, 0xf5, 0x48, 0x40]);
        assert!(asdu.anomalies().is_empty());
    }

    #[test]
    fn monitor_objects_with_and_without_time() {
        let bytes = hex(SINGLE_POINTS);
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("ASDU");
        assert_eq!(asdu.cause(), Cause::Interrogated);
        let addresses: Vec<u32> = asdu.objects().map(|o| o.address).collect();
        assert_eq!(addresses, vec![1, 2, 3, 4]);
        assert!(asdu.anomalies().is_empty());

        let bytes = hex(SINGLE_POINT_TIME);
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("ASDU");
        assert_eq!(asdu.type_id(), TypeId::MSpTb1);
        let object = asdu.objects().next().expect("one object");
        assert_eq!((object.address, object.element.len()), (13, 8));
        assert!(asdu.anomalies().is_empty());
    }

    #[test]
    fn sequence_objects_count_up() {
        // M_ME_NB_1 (11), SQ=1, 3 elements from IOA 100, spont, CA 1.
        let bytes = hex("6816000000000b8303000100640000010000020000030000");
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("ASDU");
        assert!(asdu.sequence());
        let addresses: Vec<u32> = asdu.objects().map(|o| o.address).collect();
        assert_eq!(addresses, vec![100, 101, 102]);
        assert!(asdu.anomalies().is_empty());
    }

    #[test]
    fn rejects_and_anomalies() {
        assert_eq!(
            Apdu::new_checked(&hex("690400000000")),
            Err(Error::BadStart(0x69))
        );
        assert_eq!(
            Apdu::new_checked(&hex("680300000000")),
            Err(Error::BadLength(3))
        );
        assert_eq!(
            Apdu::new_checked(&hex("6804430000")),
            Err(Error::Truncated { need: 6, have: 5 })
        );
        assert_eq!(
            Apdu::new_checked(&hex("68044300000000")),
            Err(Error::TrailingBytes(1))
        );
        assert_eq!(
            Apdu::new_checked(&[]),
            Err(Error::Truncated { need: 2, have: 0 })
        );
        // I-format with a 4-octet ASDU.
        let bytes = hex("68080000000064010600");
        let apdu = Apdu::new_checked(&bytes).expect("APCI is fine");
        assert_eq!(apdu.asdu(), None);
        assert!(apdu.anomalies().contains(Anomalies::ASDU_TRUNCATED));
        // U-format with two function bits.
        let bytes = hex("68040f000000");
        let apdu = Apdu::new_checked(&bytes).expect("fixture parses");
        assert_eq!(apdu.u_function(), Some(UFunction::Unknown(0x03)));
        assert!(apdu.anomalies().contains(Anomalies::BAD_U_FUNCTION));
        // Unknown type 200, cause 0, 2 objects claimed, 1 present.
        let bytes = hex("680e00000000c80200000a0001000001");
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("fixture parses");
        let anomalies = asdu.anomalies();
        assert!(anomalies.contains(Anomalies::UNKNOWN_TYPE));
        assert!(anomalies.contains(Anomalies::UNKNOWN_CAUSE));
        assert_eq!(asdu.objects().count(), 0);
        // C_SC_NA_1 claiming 2 objects with one present.
        let bytes = hex("680e040042002d0206000a0002000001");
        let asdu = Apdu::new_checked(&bytes)
            .expect("fixture parses")
            .asdu()
            .expect("fixture parses");
        assert!(asdu
            .anomalies()
            .contains(Anomalies::OBJECTS_LENGTH_MISMATCH));
        assert_eq!(asdu.objects().count(), 1);
        assert_eq!(
            asdu.anomalies().labels().collect::<Vec<_>>(),
            vec!["objects_length_mismatch"]
        );
    }

    #[test]
    fn framing_and_recognition() {
        let mut stream = hex(TESTFR_ACT);
        stream.extend(hex(INTERROGATION));
        assert_eq!(frame(&stream), Framing::Frame(6));
        assert_eq!(frame(&stream[6..]), Framing::Frame(16));
        assert_eq!(frame(&stream[6..10]), Framing::Need(16));
        assert_eq!(frame(&[0x68]), Framing::Need(2));
        assert_eq!(frame(&[0x00, 0x68]), Framing::Resync(1));
        assert_eq!(frame(&[0x68, 0x02]), Framing::Resync(1));
        assert!(looks_like(&stream));
        assert!(looks_like(&hex(SINGLE_POINTS)));
        assert!(!looks_like(&stream[..10]));
        assert!(!looks_like(b"JRMI\x00\x02K"));
        assert!(!looks_like(&hex("68040f000000")));
        assert!(!looks_like(&[]));
    }

    /// Every APDU of the IEC 104 captures, framed like the sensor frames them: the
    /// APCI formats and type ids equal tshark's counts.
    #[test]
    fn captures_match_tshark_histograms() {
        for name in [
            "iec104-real-world-commands.pcap",
            "iec104-float-measurements.pcap",
            "iec104-with-java-rmi.pcap",
        ] {
            let (pdus, skipped) = framed_pdus(name, PORT, frame);
            assert_eq!(skipped, 0, "{name}: resync");
            let mut formats: HashMap<String, u64> = HashMap::new();
            let mut types: HashMap<String, u64> = HashMap::new();
            for (_, pdu) in &pdus {
                let apdu = Apdu::new_checked(pdu).expect("framed APDU parses");
                *formats.entry(apdu.format().name().to_owned()).or_default() += 1;
                if let Some(asdu) = apdu.asdu() {
                    *types.entry(asdu.raw_type_id().to_string()).or_default() += 1;
                    assert!(asdu.anomalies().is_empty(), "{name}: {pdu:02x?}");
                }
            }
            assert_eq!(
                formats,
                expected_histogram(name, "iec104", "apci_type"),
                "{name}"
            );
            assert_eq!(
                types,
                expected_histogram(name, "iec104", "type_id"),
                "{name}"
            );
        }
    }
}
