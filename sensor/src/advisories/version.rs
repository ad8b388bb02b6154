//! Firmware versions and the affected-version ranges of CSAF product trees.
//!
//! CSAF 2.0 (§3.1.3.2) names a `product_version_range` either in the `vers:` scheme
//! (`vers:all/>=V2.0|<V2.5`) or as free text. CISA's ICS advisories use both, and the
//! free text has many spellings: `<V4.00`, `<= 2.1.3`, `All versions < V4.8 SP5`,
//! `v30.014 and earlier`, `20-33`, `>= V2.5 < V2.6.1`, `<v36.011_v35.013_v34.014` (a
//! fix per release line). [`Range::parse`] understands these; what it cannot read is
//! [`Range::Unknown`] and a match on it says so instead of guessing.
//!
//! A version is the sequence of its numbers (`V4.8 SP5` is 4.8.5, `30.014` is 30.14):
//! vendors' firmware strings differ in prefixes and padding, not in the numbers. An
//! inclusive bound or an equality with fewer numbers than the firmware covers the
//! whole line (`<= 33` includes 33.011; `V28` is every 28.x), as vendors mean it.

use std::cmp::Ordering;

/// Most numbers kept of a version.
const MAX_PARTS: usize = 8;

/// A version as its numbers; `wild` is the position of an `X` (`V3.X.17`: any 3.x
/// line, patch below 17), which comparisons skip in the other version.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    parts: Vec<u32>,
    wild: Option<usize>,
}

/// Prefixes vendors put before the numbers (longest first; compared ignoring case).
const PREFIXES: [&str; 9] = [
    "firmware", "version", "ver", "fw", "rev", "sv", "v", "r", ".",
];

impl Version {
    /// Reads the numbers of `text`; `None` when it does not start with one after a
    /// vendor prefix (`V`, `v.`, `Ver.`, `FW`, `SV`, `Firmware__`, ...).
    pub fn parse(text: &str) -> Option<Version> {
        // A remark in parentheses is no part of the version.
        let mut rest = text.split('(').next().unwrap_or("").trim();
        loop {
            let before = rest.len();
            for prefix in PREFIXES {
                if rest.len() >= prefix.len()
                    && rest.is_char_boundary(prefix.len())
                    && rest[..prefix.len()].eq_ignore_ascii_case(prefix)
                {
                    rest = rest[prefix.len()..].trim_start_matches(['.', '_', ' ', ':']);
                    break;
                }
            }
            if rest.len() == before {
                break;
            }
        }
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let wild = rest
            .split(|c: char| c == '.' || c.is_whitespace())
            .position(|segment| segment.eq_ignore_ascii_case("x"));
        let parts: Vec<u32> = rest
            .split(|c: char| !c.is_ascii_digit())
            .filter(|run| !run.is_empty())
            .take(MAX_PARTS)
            .map(|run| {
                run.bytes().fold(0u32, |n, d| {
                    n.saturating_mul(10).saturating_add(u32::from(d - b'0'))
                })
            })
            .collect();
        (!parts.is_empty()).then_some(Version { parts, wild })
    }

    pub fn parts(&self) -> &[u32] {
        &self.parts
    }

    /// `self` without the number at `bound`'s wildcard position.
    fn aligned(&self, bound: &Version) -> Version {
        let mut parts = self.parts.clone();
        if let Some(i) = bound.wild {
            if i < parts.len() {
                parts.remove(i);
            }
        }
        Version { parts, wild: None }
    }

    /// Compares with missing numbers taken as zero (4.1 = 4.1.0).
    fn cmp_padded(&self, other: &Version) -> Ordering {
        let this = self.aligned(other);
        let len = this.parts.len().max(other.parts.len());
        (0..len)
            .map(|i| {
                let a = this.parts.get(i).copied().unwrap_or(0);
                let b = other.parts.get(i).copied().unwrap_or(0);
                a.cmp(&b)
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// Compares only the first `bound.len()` numbers (a bound of `33` covers 33.x).
    fn cmp_prefix(&self, bound: &Version) -> Ordering {
        let this = self.aligned(bound);
        let head = Version {
            parts: this.parts.iter().copied().take(bound.parts.len()).collect(),
            wild: None,
        };
        head.cmp_padded(&Version {
            parts: bound.parts.clone(),
            wild: None,
        })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{part}")?;
        }
        Ok(())
    }
}

/// One bound of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    pub version: Version,
    pub inclusive: bool,
}

/// Which versions an advisory's product entry covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Range {
    /// Every version (`vers:all/*`, `All versions`).
    All,
    /// Listed versions, and/or an interval.
    Versions {
        equal: Vec<Version>,
        lower: Option<Bound>,
        upper: Option<Bound>,
        /// Fixes per release line (`<V36.011_V35.013`): a firmware on a line with a
        /// listed fix is affected only below that fix.
        line_fixes: Vec<Version>,
    },
    /// Text this parser does not understand.
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

/// Splits `segment` into (operator, operand) pairs; the text before the first operator
/// is an operand without one.
fn operations(segment: &str) -> Vec<(Option<Op>, &str)> {
    let mut out = Vec::new();
    let bytes = segment.as_bytes();
    let mut i = 0;
    let mut start = 0;
    let mut op: Option<Op> = None;
    while i < bytes.len() {
        let (found, len) = match (bytes[i], bytes.get(i + 1)) {
            (b'<', Some(b'=')) => (Some(Op::Le), 2),
            (b'>', Some(b'=')) => (Some(Op::Ge), 2),
            (b'=', Some(b'=')) => (Some(Op::Eq), 2),
            (b'<', _) => (Some(Op::Lt), 1),
            (b'>', _) => (Some(Op::Gt), 1),
            (b'=', _) => (Some(Op::Eq), 1),
            _ => (None, 1),
        };
        if let Some(found) = found {
            let operand = segment[start..i].trim();
            if !operand.is_empty() || op.is_some() {
                out.push((op, operand));
            }
            op = Some(found);
            start = i + len;
        }
        i += len;
    }
    let operand = segment[start..].trim();
    if !operand.is_empty() || op.is_some() {
        out.push((op, operand));
    }
    out
}

/// Case-insensitive ASCII `find`.
fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

impl Range {
    /// Reads a `product_version_range` or `product_version` name.
    pub fn parse(text: &str) -> Range {
        let mut rest = text.trim();
        if rest
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("vers:"))
        {
            // `vers:<scheme>/<constraints>`.
            rest = match rest.split_once('/') {
                Some((_, constraints)) => constraints.trim(),
                None => return Range::Unknown,
            };
        }
        for all in ["all versions", "all version", "all"] {
            if rest.len() >= all.len()
                && rest.is_char_boundary(all.len())
                && rest[..all.len()].eq_ignore_ascii_case(all)
            {
                rest = rest[all.len()..].trim();
                break;
            }
        }
        if rest.is_empty() || rest == "*" {
            return Range::All;
        }
        Self::parse_words(rest)
            .or_else(|| Self::parse_operators(rest))
            .unwrap_or(Range::Unknown)
    }

    /// English forms: `X and earlier`, `prior to X`, `X and later`, `between A
    /// (including) and B (excluding)`, `A - B`, `A to B`.
    fn parse_words(text: &str) -> Option<Range> {
        let lower = text.to_ascii_lowercase();
        let interval = |lower: Option<Bound>, upper: Option<Bound>| Range::Versions {
            equal: Vec::new(),
            lower,
            upper,
            line_fixes: Vec::new(),
        };
        let bound = |text: &str, inclusive| {
            Version::parse(text).map(|version| Bound { version, inclusive })
        };
        if let Some(at) = lower.find("between ") {
            let body = &text[at + 8..];
            let (a, b) = body.split_at(find_ci(body, " and ")?);
            let b = &b[5..];
            let a_inclusive = !a.to_ascii_lowercase().contains("exclud");
            let b_inclusive = b.to_ascii_lowercase().contains("includ")
                && !b.to_ascii_lowercase().contains("exclud");
            return Some(interval(bound(a, a_inclusive), bound(b, b_inclusive)));
        }
        const BELOW_INCLUSIVE: [&str; 7] = [
            " and earlier",
            " and prior",
            " and older",
            " or earlier",
            " or prior",
            " or older",
            " and below",
        ];
        const ABOVE_INCLUSIVE: [&str; 6] = [
            " and later",
            " and newer",
            " or later",
            " or newer",
            " and above",
            " or higher",
        ];
        for suffix in BELOW_INCLUSIVE {
            if let Some(at) = lower.find(suffix) {
                return Some(interval(None, Some(bound(&text[..at], true)?)));
            }
        }
        for suffix in ABOVE_INCLUSIVE {
            if let Some(at) = lower.find(suffix) {
                return Some(interval(Some(bound(&text[..at], true)?), None));
            }
        }
        for (prefix, inclusive) in [
            ("prior to ", false),
            ("before ", false),
            ("earlier than ", false),
            ("up to and including ", true),
            ("up to ", true),
        ] {
            if let Some(rest) = lower.strip_prefix(prefix) {
                let at = text.len() - rest.len();
                return Some(interval(None, Some(bound(&text[at..], inclusive)?)));
            }
        }
        if text.contains(['<', '>', '=']) {
            return None;
        }
        for separator in [" through ", " to ", " - ", "-"] {
            if let Some(at) = find_ci(text, separator) {
                let (a, b) = (&text[..at], &text[at + separator.len()..]);
                if let (Some(a), Some(b)) = (bound(a, true), bound(b, true)) {
                    return Some(interval(Some(a), Some(b)));
                }
            }
        }
        None
    }

    /// Operator forms: `<V4.00`, `>= 1.0 | <= 1.32`, `>=V7.80<V9.40`, `28.011 |
    /// 28.012`, `16 <= 20`, `<v36.011_v35.013`.
    fn parse_operators(text: &str) -> Option<Range> {
        let mut equal = Vec::new();
        let mut lower: Option<Bound> = None;
        let mut upper: Option<Bound> = None;
        let mut line_fixes = Vec::new();
        let normalised = text
            .replace(" and ", "|")
            .replace(" AND ", "|")
            .replace("&&", "|")
            .replace(',', "|");
        for segment in normalised.split('|') {
            let segment = segment.trim();
            if segment.is_empty() {
                continue;
            }
            let ops = operations(segment);
            if ops.is_empty() {
                return None;
            }
            for (i, (op, operand)) in ops.iter().enumerate() {
                // `A <= B`: the bare version before the operator is a lower bound.
                let op = match op {
                    None if ops.len() > 1 && i == 0 => Some(Op::Ge),
                    other => *other,
                };
                let fixes: Vec<Version> = if operand.contains('_') {
                    operand
                        .split('_')
                        .filter(|p| !p.is_empty())
                        .map(Version::parse)
                        .collect::<Option<Vec<_>>>()
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let version = if fixes.len() > 1 {
                    fixes.iter().max_by(|a, b| a.cmp_padded(b))?.clone()
                } else {
                    Version::parse(operand)?
                };
                let widen_upper = |current: Option<Bound>, new: Bound| match current {
                    Some(old) if old.version.cmp_padded(&new.version).is_gt() => Some(old),
                    _ => Some(new),
                };
                match op.unwrap_or(Op::Eq) {
                    Op::Eq => equal.push(version),
                    Op::Lt | Op::Le => {
                        if fixes.len() > 1 {
                            line_fixes = fixes;
                        }
                        upper = widen_upper(
                            upper,
                            Bound {
                                version,
                                inclusive: op == Some(Op::Le),
                            },
                        );
                    }
                    Op::Gt | Op::Ge => {
                        lower = Some(Bound {
                            version,
                            inclusive: op == Some(Op::Ge),
                        });
                    }
                }
            }
        }
        if equal.is_empty() && lower.is_none() && upper.is_none() {
            return None;
        }
        Some(Range::Versions {
            equal,
            lower,
            upper,
            line_fixes,
        })
    }

    /// Whether `version` lies in the range; `None` when the range is [`Range::Unknown`].
    pub fn contains(&self, version: &Version) -> Option<bool> {
        let Range::Versions {
            equal,
            lower,
            upper,
            line_fixes,
        } = self
        else {
            return match self {
                Range::All => Some(true),
                _ => None,
            };
        };
        if equal.iter().any(|e| version.cmp_prefix(e).is_eq()) {
            return Some(true);
        }
        if lower.is_none() && upper.is_none() {
            return Some(false);
        }
        let above = lower.as_ref().is_none_or(|b| {
            if b.inclusive {
                version.cmp_prefix(&b.version).is_ge()
            } else {
                version.cmp_padded(&b.version).is_gt()
            }
        });
        let below = upper.as_ref().is_none_or(|b| {
            if b.inclusive {
                version.cmp_prefix(&b.version).is_le()
            } else {
                version.cmp_padded(&b.version).is_lt()
            }
        });
        let fixed_on_line = line_fixes.iter().any(|fix| {
            fix.parts().first() == version.parts().first() && version.cmp_padded(fix).is_ge()
        });
        Some(above && below && !fixed_on_line)
    }

    /// The first fixed version, when the range ends below one (`<V4.00` → 4.00).
    pub fn fixed(&self) -> Option<&Version> {
        match self {
            Range::Versions {
                upper:
                    Some(Bound {
                        version,
                        inclusive: false,
                    }),
                ..
            } => Some(version),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    fn affected(range: &str, version: &str) -> Option<bool> {
        Range::parse(range).contains(&v(version))
    }

    #[test]
    fn versions_read_the_numbers_after_vendor_prefixes() {
        assert_eq!(v("V4.1.3").parts(), [4, 1, 3]);
        assert_eq!(v("v30.014").parts(), [30, 14]);
        assert_eq!(v("Ver.2.60").parts(), [2, 60]);
        assert_eq!(v("Firmware__20.011").parts(), [20, 11]);
        assert_eq!(v("SV3.51").parts(), [3, 51]);
        assert_eq!(v("v.32.011").parts(), [32, 11]);
        assert_eq!(v("V4.8 SP5").parts(), [4, 8, 5]);
        assert_eq!(
            v(">= 4.4.0 (only CVE-2019-10943)".trim_start_matches(['>', '=', ' '])).parts(),
            [4, 4, 0]
        );
        assert_eq!(Version::parse("Feb 10 2021"), None);
        assert_eq!(Version::parse(""), None);
    }

    #[test]
    fn cisa_range_spellings() {
        assert_eq!(Range::parse("vers:all/*"), Range::All);
        assert_eq!(Range::parse("All versions"), Range::All);
        assert_eq!(affected("<V4.00", "V3.9.9"), Some(true));
        assert_eq!(affected("<V4.00", "4.0"), Some(false));
        assert_eq!(affected("<=2.1.3", "2.1.3"), Some(true));
        assert_eq!(affected("<=2.1.3", "2.1.4"), Some(false));
        assert_eq!(affected("vers:all/<V4.3.8", "V4.3.7"), Some(true));
        assert_eq!(affected("All versions < V4.8 SP5", "V4.8"), Some(true));
        assert_eq!(affected("All versions < V4.8 SP5", "V4.8 SP5"), Some(false));
        assert_eq!(affected("v30.014 and earlier", "30.14"), Some(true));
        assert_eq!(affected("v30.014 and earlier", "31.1"), Some(false));
        assert_eq!(affected(">= 1.0 | <= 1.32", "1.20"), Some(true));
        assert_eq!(affected(">= 1.0 | <= 1.32", "1.33"), Some(false));
        assert_eq!(affected("vers:all/>=V7.80<V9.40", "V9.30"), Some(true));
        assert_eq!(affected("vers:all/>=V7.80<V9.40", "V7.0"), Some(false));
        assert_eq!(affected(">= V2.0 and < V2.6", "V2.5"), Some(true));
        assert_eq!(affected("28.011 | 28.012 | 28.013", "28.12"), Some(true));
        assert_eq!(affected("28.011 | 28.012 | 28.013", "28.14"), Some(false));
        // An inclusive bound of one number covers the whole line.
        assert_eq!(affected("<= 33", "33.011"), Some(true));
        assert_eq!(affected("20-33", "20.11"), Some(true));
        assert_eq!(affected("20-33", "34.1"), Some(false));
        assert_eq!(affected("28  - 32", "32.11"), Some(true));
        assert_eq!(affected("16 <= 20", "17"), Some(true));
        assert_eq!(affected("16 <= 20", "21"), Some(false));
        assert_eq!(
            affected(
                "All versions between V2.5 (including) and V2.7 (excluding)",
                "V2.7"
            ),
            Some(false)
        );
        assert_eq!(affected("prior to V2.1", "V2.0.9"), Some(true));
        assert_eq!(affected("V35.011", "35.11"), Some(true));
        assert_eq!(affected("V35.011", "35.12"), Some(false));
        assert_eq!(affected("V28", "28.13"), Some(true));
        // `X`: any number at that position.
        assert_eq!(affected("< V3.X.14", "V3.2.6"), Some(true));
        assert_eq!(affected("< V3.X.14", "V3.2.16"), Some(false));
        assert_eq!(
            affected(">= 4.4.0 (only affected by CVE-2019-10943)", "V4.5.0"),
            Some(true)
        );
        // A fix per release line.
        let lines = "<V33.017_V34.014_V35.013_V36.011";
        assert_eq!(affected(lines, "V33.016"), Some(true));
        assert_eq!(affected(lines, "V34.014"), Some(false));
        assert_eq!(affected(lines, "V35.012"), Some(true));
        assert_eq!(affected(lines, "V36.11"), Some(false));
        assert_eq!(Range::parse(lines).fixed(), Some(&v("36.11")));
    }

    #[test]
    fn text_it_cannot_read_is_unknown() {
        for text in [
            "<= Serial Numbers 2310****",
            "vé 1.0",
            "versé:all/*",
            "All versions in default configuration",
            "< Feb 10 2021",
            "<=",
        ] {
            assert_eq!(Range::parse(text), Range::Unknown, "{text}");
            assert_eq!(Range::parse(text).contains(&v("1.0")), None);
        }
    }
}
