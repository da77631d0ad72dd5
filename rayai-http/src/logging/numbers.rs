//! Numbers into log lines without the formatting machinery: integers, and milliseconds with
//! three decimals.

use std::fmt::Write as _;

/// Appends `value` with at least `width` digits (zero-padded).
pub(crate) fn push_padded(line: &mut String, value: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut n = value;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(digits.len() - width.min(digits.len()));
    for &digit in &digits[start..] {
        line.push(char::from(digit));
    }
}

/// Appends `value` (milliseconds and the like) with three decimals, as `{value:.3}` writes it.
pub(crate) fn push_thousandths(line: &mut String, value: f64) {
    if value.is_finite() && (0.0..1.0e12).contains(&value) {
        let thousandths = (value * 1000.0).round() as u64;
        push_padded(line, thousandths / 1000, 1);
        line.push('.');
        push_padded(line, thousandths % 1000, 3);
    } else {
        let _ = write!(line, "{value:.3}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        for (value, width) in [(0, 1), (42, 6), (1234, 3), (u64::MAX, 1), (7, 20)] {
            let mut s = String::new();
            push_padded(&mut s, value, width);
            assert_eq!(s, format!("{value:0width$}"));
        }
        // (Ties may round the other way: a log line does not mind.)
        for value in [0.0, 1.2346, 0.0004, 999.9999, 12.5, 1e15, f64::NAN] {
            let mut s = String::new();
            push_thousandths(&mut s, value);
            assert_eq!(s, format!("{value:.3}"), "{value}");
        }
    }
}
