//! Scalar values of the configuration file: human durations, CIDR lists, ports,
//! EtherTypes and counts.
//!
//! Each parser reports a refused value as `<value> <why>` (for example
//! `"10.0.0.0/33" is not a valid CIDR: ...`), so the caller only prefixes the field
//! path and the position. The same `check_*` functions run again in
//! [`super::Config::validate`], because a `Config` can also be built in code.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Worker threads a sensor may run: one per NIC queue, and no box has more than 256.
pub const WORKERS_RANGE: std::ops::RangeInclusive<usize> = 1..=256;

/// The smallest EtherType: smaller values of the Ethernet type field are 802.3 frame
/// lengths, not protocol identifiers (IEEE 802.3 clause 3.2.6).
pub const MIN_ETHERTYPE: u16 = 0x0600;

/// A span of time written as `30s`, `10m`, `1h30m`, `7d` or as plain seconds (`600`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(Duration);

/// Units a duration may use, largest first so `Display` picks the largest exact one.
const DURATION_UNITS: [(&str, u64); 6] = [
    ("w", 7 * 24 * 3600 * 1_000_000_000),
    ("d", 24 * 3600 * 1_000_000_000),
    ("h", 3600 * 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
];

impl HumanDuration {
    pub const fn from_secs(seconds: u64) -> HumanDuration {
        HumanDuration(Duration::from_secs(seconds))
    }

    pub const fn from_millis(millis: u64) -> HumanDuration {
        HumanDuration(Duration::from_millis(millis))
    }

    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// Nanoseconds, the unit the pipeline's clocks use; saturates past 584 years.
    pub fn as_nanos(self) -> u64 {
        u64::try_from(self.0.as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> Self {
        HumanDuration(duration)
    }
}

impl FromStr for HumanDuration {
    /// Why the text is not a duration (the caller quotes the text).
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(
                "is not a valid duration: it is empty (write e.g. \"30s\", \"10m\", \"7d\")".into(),
            );
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            let seconds: u64 = text
                .parse()
                .map_err(|_| String::from("is not a valid duration: the number is too large"))?;
            return Ok(HumanDuration::from_secs(seconds));
        }
        let mut total_ns: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!(
                    "is not a valid duration: expected a number at {rest:?} (write e.g. \"30s\", \"10m\", \"1h30m\", \"7d\")"
                ));
            }
            let (number, after) = rest.split_at(digits);
            let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
            let (unit, after) = after.split_at(unit_len);
            let unit_ns = DURATION_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, ns)| *ns)
                .ok_or_else(|| {
                    if unit.is_empty() {
                        format!("is not a valid duration: {number:?} has no unit (use ms, s, m, h, d or w)")
                    } else {
                        format!("is not a valid duration: unknown unit {unit:?} (use ms, s, m, h, d or w)")
                    }
                })?;
            let too_large = || String::from("is not a valid duration: it is too large");
            let count: u64 = number.parse().map_err(|_| too_large())?;
            total_ns = count
                .checked_mul(unit_ns)
                .and_then(|ns| total_ns.checked_add(ns))
                .ok_or_else(too_large)?;
            rest = after.trim_start();
        }
        Ok(HumanDuration(Duration::from_nanos(total_ns)))
    }
}

impl fmt::Display for HumanDuration {
    /// The largest unit that divides the duration exactly: `600 s` prints as `10m`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        for (name, unit_ns) in DURATION_UNITS {
            if ns.is_multiple_of(unit_ns) {
                return write!(f, "{}{name}", ns / unit_ns);
            }
        }
        write!(f, "{ns}ns")
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"10m\", \"7d\" or whole seconds")
            }
            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<Self::Value, E> {
                Ok(HumanDuration::from_secs(seconds))
            }
            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<Self::Value, E> {
                u64::try_from(seconds)
                    .map(HumanDuration::from_secs)
                    .map_err(|_| {
                        E::custom(format!("{seconds} is not a valid duration: it is negative"))
                    })
            }
            fn visit_f64<E: de::Error>(self, seconds: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!(
                    "{seconds} is not a valid duration: write whole seconds or use a smaller unit (e.g. \"1500ms\")"
                )))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                text.parse()
                    .map_err(|reason| E::custom(format!("{text:?} {reason}")))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

/// Why a duration that must be positive is refused.
pub fn check_positive_duration(duration: HumanDuration) -> Result<(), &'static str> {
    if duration.is_zero() {
        Err("is not a valid duration here: must be greater than zero")
    } else {
        Ok(())
    }
}

/// Durations that must not be zero (timeouts and windows).
pub fn positive_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<HumanDuration, D::Error> {
    let duration = HumanDuration::deserialize(deserializer)?;
    check_positive_duration(duration)
        .map_err(|reason| de::Error::custom(format!("{:?} {reason}", duration.to_string())))?;
    Ok(duration)
}

/// A whole number read from YAML, with messages that quote what was written instead.
struct WholeNumber;

impl Visitor<'_> for WholeNumber {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        u64::try_from(value)
            .map_err(|_| E::custom(format!("{value} is not valid: must not be negative")))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<u64, E> {
        // Integers past 2^64 arrive here as floats.
        let reason = if value.fract() == 0.0 {
            "is not valid: too large"
        } else {
            "is not valid: must be a whole number"
        };
        Err(E::custom(format!("{value} {reason}")))
    }
    fn visit_unit<E: de::Error>(self) -> Result<u64, E> {
        Err(E::custom(
            "no value given: write a whole number, or remove the line for the default",
        ))
    }
    fn visit_bool<E: de::Error>(self, value: bool) -> Result<u64, E> {
        Err(E::custom(format!(
            "{value} is not valid: must be a whole number"
        )))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
        Err(E::custom(format!(
            "{value:?} is not valid: must be a whole number"
        )))
    }
}

/// Why a size or count is refused: zero would disable the thing it sizes.
pub fn check_count(value: u64) -> Result<(), &'static str> {
    if value == 0 {
        Err("is not valid: must be at least 1")
    } else {
        Ok(())
    }
}

pub fn check_workers(value: usize) -> Result<(), &'static str> {
    if WORKERS_RANGE.contains(&value) {
        Ok(())
    } else {
        Err("is out of range: must be between 1 and 256")
    }
}

fn count_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let value = deserializer.deserialize_any(WholeNumber)?;
    check_count(value).map_err(|reason| de::Error::custom(format!("{value} {reason}")))?;
    Ok(value)
}

/// A size or count of at least 1.
pub fn count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = count_u64(deserializer)?;
    usize::try_from(value)
        .map_err(|_| de::Error::custom(format!("{value} is not valid: too large for this machine")))
}

/// A count of at least 1 that also fits 32 bits (kernel ring and map sizes).
pub fn count_u32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let value = count_u64(deserializer)?;
    u32::try_from(value).map_err(|_| {
        de::Error::custom(format!(
            "{value} is not valid: must be at most {}",
            u32::MAX
        ))
    })
}

/// `pipeline.workers`: 1 to 256.
pub fn workers<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    let value = deserializer.deserialize_any(WholeNumber)?;
    let workers = usize::try_from(value).unwrap_or(usize::MAX);
    check_workers(workers).map_err(|reason| de::Error::custom(format!("{value} {reason}")))?;
    Ok(workers)
}

/// Parses a network (`10.0.0.0/8`) or a single address (a /32 or /128 host route).
/// Host bits after the prefix are cleared: `10.1.2.3/8` means `10.0.0.0/8`.
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Ok(IpNet::from(addr));
    }
    // Say which half is wrong: ipnet's own error only says "invalid IP address syntax".
    let reason = match text.split_once('/') {
        None => "expected an address or address/prefix, e.g. \"10.0.0.0/8\"".to_string(),
        Some((addr, prefix)) => match addr.parse::<IpAddr>() {
            Err(_) => format!("{addr:?} is not an IP address"),
            Ok(IpAddr::V4(_)) => format!("prefix length {prefix:?} must be 0 to 32 for IPv4"),
            Ok(IpAddr::V6(_)) => format!("prefix length {prefix:?} must be 0 to 128 for IPv6"),
        },
    };
    Err(format!("is not a valid CIDR: {reason}"))
}

/// One element of a CIDR list, so the path tracker can name its index.
struct CidrElement(IpNet);

impl<'de> Deserialize<'de> for CidrElement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CidrVisitor;
        impl Visitor<'_> for CidrVisitor {
            type Value = CidrElement;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a network such as \"10.0.0.0/8\" or an address")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<CidrElement, E> {
                parse_cidr(text)
                    .map(CidrElement)
                    .map_err(|reason| E::custom(format!("{text:?} {reason}")))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<CidrElement, E> {
                Err(E::custom(format!(
                    "{value} is not a valid CIDR: expected an address or address/prefix, e.g. \"10.0.0.0/8\""
                )))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<CidrElement, E> {
                self.visit_str(&value.to_string())
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<CidrElement, E> {
                self.visit_str(&value.to_string())
            }
        }
        deserializer.deserialize_any(CidrVisitor)
    }
}

/// A section or list written with no value (`flows:` with every line below commented
/// out) takes its default, as if it were absent: for a list, the empty list.
pub fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

pub fn cidr_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    let elements: Vec<CidrElement> = or_default(deserializer)?;
    Ok(elements.into_iter().map(|CidrElement(net)| net).collect())
}

pub fn serialize_cidr_list<S: Serializer>(
    nets: &[IpNet],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(nets.iter().map(ToString::to_string))
}

pub fn check_port(port: u64) -> Result<(), &'static str> {
    if (1..=u64::from(u16::MAX)).contains(&port) {
        Ok(())
    } else {
        Err("is not a valid port: must be between 1 and 65535")
    }
}

/// One TCP or UDP port, 1 to 65535.
struct PortElement(u16);

impl<'de> Deserialize<'de> for PortElement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = deserializer.deserialize_any(PortNumber)?;
        check_port(value).map_err(|reason| de::Error::custom(format!("{value} {reason}")))?;
        u16::try_from(value)
            .map(PortElement)
            .map_err(|_| de::Error::custom(format!("{value} is not a valid port")))
    }
}

/// A port as a number; negative values get the port message rather than a sign one.
struct PortNumber;

impl Visitor<'_> for PortNumber {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a port number between 1 and 65535")
    }
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
        Ok(value)
    }
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
        Err(E::custom(format!(
            "{value} is not a valid port: must be between 1 and 65535"
        )))
    }
    fn visit_f64<E: de::Error>(self, value: f64) -> Result<u64, E> {
        Err(E::custom(format!(
            "{value} is not a valid port: must be between 1 and 65535"
        )))
    }
    fn visit_str<E: de::Error>(self, value: &str) -> Result<u64, E> {
        Err(E::custom(format!(
            "{value:?} is not a valid port: must be a number between 1 and 65535"
        )))
    }
}

pub fn port_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u16>, D::Error> {
    let elements: Vec<PortElement> = or_default(deserializer)?;
    Ok(elements.into_iter().map(|PortElement(port)| port).collect())
}

pub fn check_ethertype(value: u64) -> Result<(), &'static str> {
    if (u64::from(MIN_ETHERTYPE)..=u64::from(u16::MAX)).contains(&value) {
        Ok(())
    } else {
        Err("is not a valid EtherType: must be between 0x0600 and 0xFFFF (smaller values are 802.3 lengths)")
    }
}

/// One EtherType, written as a number (`0x8892`) or a hex string (`"0x8892"`).
struct EtherTypeElement(u16);

impl<'de> Deserialize<'de> for EtherTypeElement {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EtherTypeVisitor;
        impl Visitor<'_> for EtherTypeVisitor {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an EtherType such as 0x8892")
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<u64, E> {
                Ok(value)
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<u64, E> {
                Err(E::custom(format!("{value} {}", ETHERTYPE_REASON)))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<u64, E> {
                let trimmed = text.trim();
                let hex = trimmed
                    .strip_prefix("0x")
                    .or_else(|| trimmed.strip_prefix("0X"));
                let parsed = match hex {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => trimmed.parse(),
                };
                parsed.map_err(|_| {
                    E::custom(format!(
                        "{text:?} is not a valid EtherType: write a number such as 0x8892"
                    ))
                })
            }
        }
        const ETHERTYPE_REASON: &str =
            "is not a valid EtherType: must be between 0x0600 and 0xFFFF";
        let value = deserializer.deserialize_any(EtherTypeVisitor)?;
        check_ethertype(value)
            .map_err(|reason| de::Error::custom(format!("{value:#06x} {reason}")))?;
        u16::try_from(value)
            .map(EtherTypeElement)
            .map_err(|_| de::Error::custom(format!("{value:#x} {ETHERTYPE_REASON}")))
    }
}

pub fn ethertype_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u16>, D::Error> {
    let elements: Vec<EtherTypeElement> = or_default(deserializer)?;
    Ok(elements
        .into_iter()
        .map(|EtherTypeElement(value)| value)
        .collect())
}

/// EtherTypes are conventionally written in hex; keep that in any serialized form.
pub fn serialize_ethertype_list<S: Serializer>(
    values: &[u16],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|value| format!("{value:#06x}")))
}

/// `http.listen`: an address and port to bind, such as `127.0.0.1:9750` or `[::1]:9750`.
pub fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    struct SocketAddrVisitor;
    impl Visitor<'_> for SocketAddrVisitor {
        type Value = SocketAddr;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an address and port such as \"127.0.0.1:9750\"")
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<SocketAddr, E> {
            text.trim().parse().map_err(|_| {
                E::custom(format!(
                    "{text:?} is not a valid listen address: write address:port, e.g. \"127.0.0.1:9750\" or \"[::1]:9750\""
                ))
            })
        }
        fn visit_u64<E: de::Error>(self, value: u64) -> Result<SocketAddr, E> {
            self.visit_str(&value.to_string())
        }
        fn visit_i64<E: de::Error>(self, value: i64) -> Result<SocketAddr, E> {
            self.visit_str(&value.to_string())
        }
    }
    deserializer.deserialize_any(SocketAddrVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(text: &str) -> Result<u64, String> {
        text.parse::<HumanDuration>().map(|d| d.as_nanos())
    }

    fn refused<T: std::fmt::Debug>(result: Result<T, String>) -> String {
        match result {
            Ok(value) => panic!("expected a refusal, got {value:?}"),
            Err(reason) => reason,
        }
    }

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn durations_parse_units_compounds_and_plain_seconds() {
        assert_eq!(duration("30s"), Ok(30 * SECOND));
        assert_eq!(duration("10m"), Ok(600 * SECOND));
        assert_eq!(duration("7d"), Ok(7 * 86_400 * SECOND));
        assert_eq!(duration("2w"), Ok(14 * 86_400 * SECOND));
        assert_eq!(duration("1h30m"), Ok(5400 * SECOND));
        assert_eq!(duration("1h 30m"), Ok(5400 * SECOND));
        assert_eq!(duration("1500ms"), Ok(1_500_000_000));
        assert_eq!(duration("600"), Ok(600 * SECOND));
        assert_eq!(duration("0s"), Ok(0));
    }

    #[test]
    fn durations_refuse_bad_text_with_the_reason() {
        let unit = refused(duration("10x"));
        assert!(unit.contains("unknown unit \"x\""), "{unit}");
        let bare = refused(duration("5 m s"));
        assert!(bare.contains("is not a valid duration"), "{bare}");
        let no_unit = refused(duration("1h30"));
        assert!(no_unit.contains("\"30\" has no unit"), "{no_unit}");
        assert!(refused(duration("")).contains("empty"));
        assert!(refused(duration("m")).contains("expected a number"));
        assert!(refused(duration("-5s")).contains("expected a number"));
        assert!(refused(duration("99999999999999999999d")).contains("too large"));
        assert!(refused(duration("999999999w")).contains("too large"));
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit() {
        assert_eq!(HumanDuration::from_secs(600).to_string(), "10m");
        assert_eq!(HumanDuration::from_secs(7 * 86_400).to_string(), "1w");
        assert_eq!(HumanDuration::from_secs(90).to_string(), "90s");
        assert_eq!(HumanDuration::from_millis(1500).to_string(), "1500ms");
        assert_eq!(HumanDuration::from_secs(0).to_string(), "0s");
        for text in ["10m", "1500ms", "5400s", "3d"] {
            let parsed: HumanDuration = match text.parse() {
                Ok(parsed) => parsed,
                Err(reason) => panic!("{text}: {reason}"),
            };
            assert_eq!(parsed.to_string().parse::<HumanDuration>(), Ok(parsed));
        }
    }

    #[test]
    fn cidrs_accept_networks_and_addresses_and_explain_refusals() {
        assert_eq!(
            parse_cidr("10.1.2.3/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            parse_cidr("192.0.2.7").map(|n| n.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            parse_cidr("fe80::/10").map(|n| n.to_string()),
            Ok("fe80::/10".into())
        );
        let prefix = refused(parse_cidr("10.0.0.0/33"));
        assert!(
            prefix.starts_with("is not a valid CIDR: prefix length \"33\""),
            "{prefix}"
        );
        let v6 = refused(parse_cidr("fe80::/129"));
        assert!(v6.contains("0 to 128 for IPv6"), "{v6}");
        let addr = refused(parse_cidr("10.0.0.256/24"));
        assert!(
            addr.contains("\"10.0.0.256\" is not an IP address"),
            "{addr}"
        );
        assert!(parse_cidr("plant-network").is_err());
    }

    #[test]
    fn checks_bound_ports_ethertypes_workers_and_counts() {
        assert!(check_port(0).is_err());
        assert!(check_port(1).is_ok());
        assert!(check_port(65_535).is_ok());
        assert!(check_port(65_536).is_err());
        assert!(check_ethertype(0x05FF).is_err());
        assert!(check_ethertype(0x0600).is_ok());
        assert!(check_ethertype(0x1_0000).is_err());
        assert!(check_workers(0).is_err());
        assert!(check_workers(1).is_ok());
        assert!(check_workers(256).is_ok());
        assert!(check_workers(257).is_err());
        assert!(check_count(0).is_err());
        assert!(check_count(1).is_ok());
    }
}
