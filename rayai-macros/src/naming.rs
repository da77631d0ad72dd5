//! An agent's name when the attribute gives none; the rule every name keeps is
//! [`rayai_rules::name::check_name`].

use std::fmt;
use std::path::Path;

use rayai_rules::name::{NameError, check_name};

/// Where a default name comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NameSource {
    /// `agents/<name>.rs`.
    File,
    /// `agents/<name>/mod.rs`.
    Directory,
    /// The struct's name, in snake case.
    Struct,
}

/// A default name that cannot be used, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefaultNameError {
    name: String,
    source: NameSource,
    reason: NameError,
}

impl fmt::Display for DefaultNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            name,
            source,
            reason,
        } = self;
        let (source, fix) = match source {
            NameSource::File => ("file name", "rename the file or "),
            NameSource::Directory => ("directory name", "rename the directory or "),
            NameSource::Struct => ("struct name", ""),
        };
        write!(
            f,
            "the agent name {name:?} comes from the {source} and is not URL-safe: {reason}; \
             {fix}set a name with `#[agent(name = \"...\")]`"
        )
    }
}

/// The name of an agent whose attribute does not set `name`.
///
/// A struct in `agents/<name>.rs` or `agents/<name>/mod.rs` is called `<name>`, as the project
/// layout of `rayai serve` expects; anywhere else (or when the file is not known) it is called by
/// its own name in snake case. `ident` is the struct's name without any `r#`.
pub(crate) fn default_name(
    source_file: Option<&Path>,
    ident: &str,
) -> Result<String, DefaultNameError> {
    let (name, source) = source_file
        .and_then(agent_file_name)
        .unwrap_or_else(|| (snake_case(ident), NameSource::Struct));
    match check_name(&name) {
        Ok(()) => Ok(name),
        Err(reason) => Err(DefaultNameError {
            name,
            source,
            reason,
        }),
    }
}

/// `<name>` for `.../agents/<name>.rs` and `.../agents/<name>/mod.rs`, else `None`.
fn agent_file_name(file: &Path) -> Option<(String, NameSource)> {
    if file.extension()? != "rs" {
        return None;
    }
    let stem = file.file_stem()?;
    let parent = file.parent()?;
    let (name, source) = if stem == "mod" {
        // `agents/<name>/mod.rs`: the name is the directory's.
        if parent.parent()?.file_name()? != "agents" {
            return None;
        }
        (parent.file_name()?, NameSource::Directory)
    } else {
        if parent.file_name()? != "agents" {
            return None;
        }
        (stem, NameSource::File)
    };
    Some((name.to_string_lossy().into_owned(), source))
}

/// `EchoAgent` -> `echo_agent`, `HTTPServer` -> `http_server`, `Echo2` -> `echo2`.
///
/// A word starts at an upper-case letter that follows a lower-case letter or a digit, or that
/// follows an upper-case letter and comes before a lower-case one (the `S` of `HTTPServer`).
fn snake_case(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::with_capacity(ident.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() && i > 0 {
            let prev = chars[i - 1];
            let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            if prev.is_lowercase() || prev.is_numeric() || (prev.is_uppercase() && next_is_lower) {
                out.push('_');
            }
        }
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_cases_struct_names() {
        let cases = [
            ("Echo", "echo"),
            ("EchoAgent", "echo_agent"),
            ("HTTPServer", "http_server"),
            ("Echo2", "echo2"),
            ("Echo2Agent", "echo2_agent"),
            ("HTTP2Server", "http2_server"),
            ("A", "a"),
            ("ABC", "abc"),
            ("Web_Search", "web_search"),
            ("already_snake", "already_snake"),
            ("_Private", "_private"),
            ("MyLLMAgent", "my_llm_agent"),
        ];
        for (ident, name) in cases {
            assert_eq!(snake_case(ident), name, "{ident}");
        }
    }

    #[test]
    fn names_from_the_struct_outside_an_agents_directory() {
        assert_eq!(default_name(None, "EchoAgent").unwrap(), "echo_agent");
        let file = Path::new("/p/src/main.rs");
        assert_eq!(default_name(Some(file), "EchoAgent").unwrap(), "echo_agent");
        let file = Path::new("src/agents.rs");
        assert_eq!(default_name(Some(file), "Echo").unwrap(), "echo");
    }

    #[test]
    fn names_from_an_agents_file() {
        let file = Path::new("/project/src/agents/weather.rs");
        assert_eq!(default_name(Some(file), "Forecast").unwrap(), "weather");
        let file = Path::new("agents/web-search.rs");
        assert_eq!(default_name(Some(file), "Search").unwrap(), "web-search");
    }

    #[test]
    fn names_from_an_agents_module_directory() {
        let file = Path::new("/project/agents/search/mod.rs");
        assert_eq!(default_name(Some(file), "Searcher").unwrap(), "search");
    }

    #[test]
    fn agents_mod_rs_itself_is_not_an_agent_file() {
        let file = Path::new("/project/src/agents/mod.rs");
        assert_eq!(default_name(Some(file), "Echo").unwrap(), "echo");
    }

    #[test]
    fn nested_or_non_rust_files_fall_back_to_the_struct_name() {
        let file = Path::new("/project/agents/search/helpers.rs");
        assert_eq!(default_name(Some(file), "Helper").unwrap(), "helper");
        let file = Path::new("/project/agents/notes.txt");
        assert_eq!(default_name(Some(file), "Notes").unwrap(), "notes");
    }

    #[test]
    fn refuses_a_file_name_that_is_not_url_safe() {
        let file = Path::new("/project/agents/web+search.rs");
        let err = default_name(Some(file), "Search").unwrap_err();
        assert_eq!(err.reason, NameError::BadChar('+'));
        assert_eq!(err.source, NameSource::File);
        let message = err.to_string();
        assert!(message.contains("\"web+search\""), "{message}");
        assert!(message.contains("rename the file"), "{message}");
        let file = Path::new("/project/agents/web search/mod.rs");
        let err = default_name(Some(file), "Search").unwrap_err();
        assert_eq!(err.source, NameSource::Directory);
        assert!(err.to_string().contains("rename the directory"), "{err}");
    }

    #[test]
    fn refuses_a_non_ascii_struct_name() {
        let err = default_name(None, "Café").unwrap_err();
        assert_eq!(err.reason, NameError::BadChar('é'));
        assert_eq!(err.source, NameSource::Struct);
        assert!(!err.to_string().contains("rename"), "{err}");
    }
}
