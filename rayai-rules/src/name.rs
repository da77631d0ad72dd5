//! Agent and deployment names: one path segment of `/agents/{name}/chat`, so they keep to the
//! characters a URL path segment needs no escaping for.

use std::fmt;

/// The characters a name may use, as error messages spell them.
pub const ALLOWED: &str = "use only ASCII letters, digits, `_`, `-` and `.`";

/// Why a string cannot be a name.
///
/// Its `Display` says what is wrong and which characters are allowed, without quoting the name,
/// so that the caller can say where the name came from: "it contains ' '; use only ASCII
/// letters, digits, ...".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameError {
    /// The empty string.
    Empty,
    /// `.` or `..`, which a URL path would resolve away.
    DotSegment,
    /// A character outside ASCII letters, digits, `_`, `-` and `.`.
    BadChar(char),
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Empty => write!(f, "it is empty; {ALLOWED}"),
            NameError::DotSegment => {
                write!(f, "`.` and `..` are not names in a URL path; {ALLOWED}")
            }
            NameError::BadChar(c) => write!(f, "it contains {c:?}; {ALLOWED}"),
        }
    }
}

impl std::error::Error for NameError {}

/// Checks that `name` can stand as one URL path segment without escaping: ASCII letters,
/// digits, `_`, `-` and `.`, and not `.` or `..`.
///
/// # Errors
///
/// The first reason `name` cannot be a name.
///
/// # Examples
///
/// ```
/// use rayai_rules::name::{NameError, check_name};
///
/// assert_eq!(check_name("web-search.v2"), Ok(()));
/// assert_eq!(check_name("web search"), Err(NameError::BadChar(' ')));
/// assert_eq!(check_name(".."), Err(NameError::DotSegment));
/// ```
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name == "." || name == ".." {
        return Err(NameError::DotSegment);
    }
    match name
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_safe_names_pass() {
        for name in ["echo", "Echo-2", "a.b_c", "...", "x"] {
            assert_eq!(check_name(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn url_unsafe_names_fail_with_the_reason() {
        assert_eq!(check_name(""), Err(NameError::Empty));
        assert_eq!(check_name("."), Err(NameError::DotSegment));
        assert_eq!(check_name(".."), Err(NameError::DotSegment));
        assert_eq!(check_name("has space"), Err(NameError::BadChar(' ')));
        assert_eq!(check_name("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(check_name("a?b"), Err(NameError::BadChar('?')));
        assert_eq!(check_name("naïve"), Err(NameError::BadChar('ï')));
    }

    #[test]
    fn every_refusal_says_what_is_allowed() {
        for err in [
            NameError::Empty,
            NameError::DotSegment,
            NameError::BadChar(' '),
        ] {
            assert!(err.to_string().contains(ALLOWED), "{err}");
        }
    }

    #[test]
    fn a_bad_character_is_quoted_as_rust_writes_it() {
        assert_eq!(
            NameError::BadChar('+').to_string(),
            "it contains '+'; use only ASCII letters, digits, `_`, `-` and `.`"
        );
    }
}
