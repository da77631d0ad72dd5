//! Properties of the rules that read what users write: memory strings and names. Bounded (256
//! cases each by default); `PROPTEST_CASES=100000 cargo test -p rayai-rules --test properties`
//! runs them longer.

use proptest::prelude::*;
use rayai_rules::memory::{MemoryError, parse_memory};
use rayai_rules::name::check_name;

const UNITS: [(&str, u32); 12] = [
    ("K", 10),
    ("KB", 10),
    ("KiB", 10),
    ("M", 20),
    ("mb", 20),
    ("MiB", 20),
    ("g", 30),
    ("GB", 30),
    ("gib", 30),
    ("T", 40),
    ("TB", 40),
    ("TiB", 40),
];

proptest! {
    /// Any text at all gives a size or an error, never a panic.
    #[test]
    fn parse_memory_never_panics(input in any::<String>()) {
        let _ = parse_memory(&input);
    }

    /// Text made of the characters a memory string uses, in any order: the same.
    #[test]
    fn parse_memory_never_panics_on_near_misses(input in "[ 0-9.\\-kKmMgGtTbBiI]{0,24}") {
        let _ = parse_memory(&input);
    }

    /// A whole number with a unit is that many binary units, or an overflow past 64 bits.
    #[test]
    fn whole_numbers_scale_by_their_binary_unit(n in any::<u64>(), unit in 0..UNITS.len(), spaced in any::<bool>()) {
        let (name, shift) = UNITS[unit];
        let text = if spaced { format!(" {n} {name} ") } else { format!("{n}{name}") };
        let expected = if n.leading_zeros() >= shift { Ok(n << shift) } else { Err(MemoryError::Overflow) };
        prop_assert_eq!(parse_memory(&text), expected);
    }

    /// A decimal part adds less than one unit, rounded down to whole bytes.
    #[test]
    fn a_decimal_part_adds_less_than_one_unit(whole in 0u64..1_000_000, fraction in "[0-9]{1,25}", unit in 0..UNITS.len()) {
        let (name, shift) = UNITS[unit];
        let bytes = parse_memory(&format!("{whole}.{fraction}{name}")).expect("in range");
        prop_assert!(bytes >= whole << shift);
        prop_assert!(bytes < (whole + 1) << shift);
    }

    /// A name is accepted only when it is URL-safe as a path segment, and checking never panics.
    #[test]
    fn accepted_names_are_safe_path_segments(name in any::<String>()) {
        if check_name(&name).is_ok() {
            prop_assert!(!name.is_empty() && name != "." && name != "..");
            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{name:?}");
        }
    }
}
