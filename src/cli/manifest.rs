//! What a directory's `Cargo.toml` says: its package's name, and whether it depends on rayai
//! (which makes it a rayai project).

use std::path::Path;

/// The parsed `Cargo.toml` of `dir`.
pub(crate) fn read(dir: &Path) -> Result<toml::Table, String> {
    let path = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{} is not valid TOML: {}", path.display(), e.message()))
}

/// `[package] name`.
pub(crate) fn package_name(manifest: &toml::Table) -> Option<&str> {
    manifest.get("package")?.get("name")?.as_str()
}

/// Whether `[dependencies]` (or a `[target.'...'.dependencies]`) has rayai, under its own name or
/// renamed (`x = { package = "rayai", ... }`).
pub(crate) fn depends_on_rayai(manifest: &toml::Table) -> bool {
    let is_rayai = |deps: &toml::Value| {
        deps.as_table().is_some_and(|deps| {
            deps.iter().any(|(key, dep)| {
                key == "rayai" || dep.get("package").and_then(|p| p.as_str()) == Some("rayai")
            })
        })
    };
    manifest.get("dependencies").is_some_and(is_rayai)
        || manifest
            .get("target")
            .and_then(|t| t.as_table())
            .is_some_and(|targets| {
                targets
                    .values()
                    .filter_map(|t| t.get("dependencies"))
                    .any(is_rayai)
            })
}

/// A rayai project, as `rayai status` recognizes one: a `Cargo.toml` that depends on rayai, next
/// to an `agents/` directory.
pub(crate) fn is_rayai_project(dir: &Path) -> bool {
    dir.join("agents").is_dir() && read(dir).is_ok_and(|m| depends_on_rayai(&m))
}

/// `s` as a TOML basic string, in double quotes.
pub(crate) fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn finds_rayai_among_the_dependencies() {
        assert!(depends_on_rayai(&parse(
            "[dependencies]\nrayai = \"0.1.0\"\n"
        )));
        assert!(depends_on_rayai(&parse(
            "[dependencies]\nr = { package = \"rayai\", path = \"x\" }\n"
        )));
        assert!(depends_on_rayai(&parse(
            "[target.'cfg(unix)'.dependencies]\nrayai = { git = \"u\" }\n"
        )));
        assert!(!depends_on_rayai(&parse(
            "[package]\nname = \"rayai\"\n[dependencies]\nrayai-core = \"1\"\n"
        )));
        assert!(!depends_on_rayai(&parse(
            "[dev-dependencies]\nrayai = \"1\"\n"
        )));
        assert_eq!(
            package_name(&parse("[package]\nname = \"rayai\"\n")),
            Some("rayai")
        );
    }

    #[test]
    fn toml_strings_round_trip() {
        for s in [
            "0.1.0",
            r"C:\Users\me\rayai",
            "a \"quoted\" path",
            "tab\there",
            "bell\u{7}",
        ] {
            let table = parse(&format!("v = {}", toml_string(s)));
            assert_eq!(table["v"].as_str(), Some(s), "{s}");
        }
        assert_eq!(toml_string("0.1.0"), "\"0.1.0\"");
    }
}
