//! Memory sizes as RayAI writes them: `"2GB"`, `"512 mb"`, `"1.5GiB"`.
//!
//! One parser for the `#[agent(memory = "...")]` check at compile time, the `RAYAI_MEMORY`
//! variable and `rayai.toml`, so that all three accept the same spellings.

use std::fmt;

/// Why a memory string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryError {
    /// Nothing but white space.
    Empty,
    /// A leading `-`.
    Negative,
    /// A number with no unit after it.
    MissingUnit,
    /// The number part is not a decimal number.
    BadNumber,
    /// The unit is not one of the known ones.
    UnknownUnit,
    /// The size does not fit in 64 bits of bytes.
    Overflow,
}

impl MemoryError {
    /// A sentence that says what was wrong and what a valid value looks like.
    pub fn message(self) -> &'static str {
        match self {
            MemoryError::Empty => "memory is empty; write a size such as \"2GB\" or \"512MB\"",
            MemoryError::Negative => {
                "memory cannot be negative; write a size such as \"2GB\" or \"512MB\""
            }
            MemoryError::MissingUnit => {
                "memory needs a unit (K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB), e.g. \"512MB\""
            }
            MemoryError::BadNumber => {
                "memory must be a number followed by a unit, such as \"2GB\", \"1.5 GiB\" or \"512MB\""
            }
            MemoryError::UnknownUnit => {
                "unknown memory unit; use K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB or TiB (any case), e.g. \"2GB\""
            }
            MemoryError::Overflow => "memory is too large to count in bytes (more than 16 EiB)",
        }
    }
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for MemoryError {}

/// Parses a memory size into bytes.
///
/// # Errors
///
/// A [`MemoryError`] saying what is wrong: nothing given, a negative size, a missing or unknown
/// unit, a number that does not parse, or more bytes than 64 bits hold.
///
/// # Examples
///
/// ```
/// use rayai_rules::memory::{MemoryError, parse_memory};
///
/// assert_eq!(parse_memory("2GB"), Ok(2 << 30));
/// assert_eq!(parse_memory("1.5 gib"), Ok(3 << 29));
/// assert_eq!(parse_memory("2"), Err(MemoryError::MissingUnit));
/// ```
///
/// The units are K/KB/KiB, M/MB/MiB, G/GB/GiB and T/TB/TiB, case-insensitive, all binary (as RayAI
/// counts them: `"1KB"` is 1024 bytes). Spaces are allowed around and inside; the number may have a
/// decimal part, and the result is rounded down to whole bytes.
pub fn parse_memory(input: &str) -> Result<u64, MemoryError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(MemoryError::Empty);
    }
    if s.starts_with('-') {
        return Err(MemoryError::Negative);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], s[split..].trim());
    if number.is_empty() {
        return Err(MemoryError::BadNumber);
    }
    if unit.is_empty() {
        return Err(MemoryError::MissingUnit);
    }
    let shift = match unit.to_ascii_lowercase().as_str() {
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ if unit.starts_with(|c: char| c.is_ascii_digit() || c == '.') => {
            return Err(MemoryError::BadNumber);
        }
        _ => return Err(MemoryError::UnknownUnit),
    };
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if (whole.is_empty() && fraction.is_empty()) || fraction.contains('.') {
        return Err(MemoryError::BadNumber);
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| MemoryError::Overflow)?
    };
    let mut bytes = whole.checked_shl(shift).ok_or(MemoryError::Overflow)?;
    if whole.leading_zeros() < shift {
        return Err(MemoryError::Overflow);
    }
    // The decimal part, exactly: floor(0.d1d2... * 2^shift). The boundaries i / 2^shift are
    // decimals of at most `shift` digits, so the first `shift` digits decide the floor; with
    // exactly that many (padded with zeros) the fraction is N / 10^shift and the bytes it adds are
    // floor(N / 5^shift), divided digit by digit so that nothing overflows (5^40 < 2^94).
    if !fraction.is_empty() {
        let divisor = 5u128.pow(shift);
        let (mut quotient, mut rest) = (0u128, 0u128);
        let digits = fraction.bytes().chain(std::iter::repeat(b'0'));
        for digit in digits.take(shift as usize) {
            rest = rest * 10 + u128::from(digit - b'0');
            quotient = quotient * 10 + rest / divisor;
            rest %= divisor;
        }
        bytes = bytes
            .checked_add(u64::try_from(quotient).map_err(|_| MemoryError::Overflow)?)
            .ok_or(MemoryError::Overflow)?;
    }
    Ok(bytes)
}

/// Formats a byte count the way the resource plan prints it: `2.0GiB`, `512.0MiB`, `100B`.
///
/// # Examples
///
/// ```
/// assert_eq!(rayai_rules::memory::format_memory(512 << 20), "512.0MiB");
/// ```
pub fn format_memory(bytes: u64) -> String {
    const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
    for (name, shift) in UNITS {
        if bytes >= 1u64 << shift {
            return format!("{:.1}{name}", bytes as f64 / (1u64 << shift) as f64);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rayai_units_as_binary() {
        assert_eq!(parse_memory("2GB"), Ok(2 << 30));
        assert_eq!(parse_memory("512MB"), Ok(512 << 20));
        assert_eq!(parse_memory("1kb"), Ok(1024));
        assert_eq!(parse_memory("3 T"), Ok(3 << 40));
        assert_eq!(parse_memory(" 4 GiB "), Ok(4 << 30));
        assert_eq!(parse_memory("1.5GB"), Ok(3 << 29));
        assert_eq!(parse_memory("0.5 mib"), Ok(512 << 10));
        assert_eq!(parse_memory(".5K"), Ok(512));
        assert_eq!(parse_memory("1.K"), Ok(1024));
    }

    #[test]
    fn refuses_bad_sizes_with_a_reason() {
        assert_eq!(parse_memory(""), Err(MemoryError::Empty));
        assert_eq!(parse_memory("   "), Err(MemoryError::Empty));
        assert_eq!(parse_memory("-1GB"), Err(MemoryError::Negative));
        assert_eq!(parse_memory("1024"), Err(MemoryError::MissingUnit));
        assert_eq!(parse_memory("2 potatoes"), Err(MemoryError::UnknownUnit));
        assert_eq!(parse_memory("GB"), Err(MemoryError::BadNumber));
        assert_eq!(parse_memory("1.2.3GB"), Err(MemoryError::BadNumber));
        assert_eq!(parse_memory("1 2GB"), Err(MemoryError::BadNumber));
        assert_eq!(parse_memory(".GB"), Err(MemoryError::BadNumber));
        assert_eq!(
            parse_memory("99999999999999999999GB"),
            Err(MemoryError::Overflow)
        );
        assert_eq!(parse_memory("16777216TB"), Err(MemoryError::Overflow));
        assert_eq!(parse_memory("16777215TB"), Ok(16777215 << 40));
    }

    #[test]
    fn displays_the_message() {
        assert_eq!(MemoryError::Empty.to_string(), MemoryError::Empty.message());
    }

    #[test]
    fn formats_plan_sizes() {
        assert_eq!(format_memory(2 << 30), "2.0GiB");
        assert_eq!(format_memory(768 << 20), "768.0MiB");
        assert_eq!(format_memory(100), "100B");
    }
}
