//! `rayai init` and `rayai create-agent`: a project from the templates, and an agent file.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::CliResult;

const CARGO_TOML: &str = include_str!("../../templates/project/Cargo.toml.tmpl");
const BUILD_RS: &str = include_str!("../../templates/project/build.rs");
const MAIN_RS: &str = include_str!("../../templates/project/main.rs");
const RAYAI_TOML: &str = include_str!("../../templates/project/rayai.toml");
const ENV_EXAMPLE: &str = include_str!("../../templates/project/env.example");
const GITIGNORE: &str = include_str!("../../templates/project/gitignore");
const README: &str = include_str!("../../templates/project/README.md");
const AGENT: &str = include_str!("../../templates/agent/plain.rs");
const STREAM_AGENT: &str = include_str!("../../templates/agent/stream.rs");

/// The rayai checkout this binary was built from: new projects depend on it by path.
const RAYAI_CHECKOUT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The project's directory, created here; its last part is the package name.
    name: PathBuf,
    /// Depend on the rayai crate at this path [default: the checkout this binary was built from].
    #[arg(long, conflicts_with = "rayai_version")]
    rayai_path: Option<PathBuf>,
    /// Depend on this version of rayai from crates.io instead of a path.
    #[arg(long)]
    rayai_version: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct CreateAgentArgs {
    /// The agent's name: a Rust identifier (`web_search`); its URL is `/agents/NAME/chat`.
    name: String,
    /// The agent also streams its answer (`run_stream`).
    #[arg(long)]
    stream: bool,
    /// The project to add it to.
    #[arg(long, default_value = ".")]
    project: PathBuf,
}

pub(crate) fn init(args: &InitArgs) -> CliResult {
    let dir = &args.name;
    let package = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} is not a project name", dir.display()))?;
    check_package_name(package)?;
    if dir.exists() && dir.read_dir().map_or(true, |mut d| d.next().is_some()) {
        return Err(format!(
            "{} already exists and is not empty; choose another name",
            dir.display()
        ));
    }
    let dependency = match (&args.rayai_version, &args.rayai_path) {
        (Some(version), _) => format!("{{ version = {:?} }}", version),
        (None, path) => {
            let path = path
                .clone()
                .unwrap_or_else(|| PathBuf::from(RAYAI_CHECKOUT));
            let path = path.canonicalize().map_err(|e| {
                format!("cannot find the rayai checkout at {}: {e}", path.display())
            })?;
            if !path.join("Cargo.toml").is_file() {
                return Err(format!(
                    "{} has no Cargo.toml: not a rayai checkout",
                    path.display()
                ));
            }
            format!("{{ path = {:?} }}", path.display().to_string())
        }
    };
    let fill = |t: &str| {
        t.replace("{{name}}", package)
            .replace("{{rayai_dep}}", &dependency)
    };
    let files: [(&str, String); 8] = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("build.rs", BUILD_RS.to_owned()),
        ("src/main.rs", fill(MAIN_RS)),
        ("agents/echo.rs", agent_source("echo", false)),
        ("rayai.toml", RAYAI_TOML.to_owned()),
        (".env.example", ENV_EXAMPLE.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        ("README.md", fill(README)),
    ];
    for (path, contents) in &files {
        write_new(&dir.join(path), contents)?;
    }
    // A path dependency on a checkout: start from its lock file, so the project builds with the
    // versions rayai is tested with (and shares their compiled artifacts).
    if args.rayai_version.is_none() {
        let checkout = args
            .rayai_path
            .clone()
            .unwrap_or_else(|| PathBuf::from(RAYAI_CHECKOUT));
        let _ = std::fs::copy(checkout.join("Cargo.lock"), dir.join("Cargo.lock"));
    }
    println!("Created project `{package}` in {}", dir.display());
    println!("  agents/echo.rs   the example agent: POST /agents/echo/chat");
    println!("  rayai.toml       replicas, resources and HTTP options, read at start");
    println!();
    println!("Next:");
    println!("  cd {}", dir.display());
    println!("  rayai create-agent my_agent");
    println!("  rayai serve");
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn create_agent(args: &CreateAgentArgs) -> CliResult {
    check_agent_name(&args.name)?;
    let project = &args.project;
    if !project.join("Cargo.toml").is_file() {
        return Err(format!(
            "{} is not a project (no Cargo.toml); run this in one made by `rayai init`, or pass --project",
            project.display()
        ));
    }
    let agents = project.join("agents");
    let file = agents.join(format!("{}.rs", args.name));
    let module_dir = agents.join(&args.name);
    if file.exists() || module_dir.exists() {
        return Err(format!(
            "agent `{}` already exists ({}); choose another name",
            args.name,
            if file.exists() {
                file.display()
            } else {
                module_dir.display()
            }
        ));
    }
    write_new(&file, &agent_source(&args.name, args.stream))?;
    println!("Created agent `{}` in {}", args.name, file.display());
    println!(
        "  served at POST /agents/{}/chat on the next `rayai serve`",
        args.name
    );
    Ok(ExitCode::SUCCESS)
}

fn agent_source(name: &str, stream: bool) -> String {
    let template = if stream { STREAM_AGENT } else { AGENT };
    template
        .replace("{{name}}", name)
        .replace("{{Struct}}", &struct_name(name))
}

fn write_new(path: &Path, contents: &str) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, contents).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `web_search` -> `WebSearch`, `echo` -> `Echo`, `_x` -> `X`.
fn struct_name(name: &str) -> String {
    let mut out: String = name
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'A');
    }
    out
}

const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "main",
];

/// An agent's name is its module's name: a Rust identifier, not a keyword.
fn check_agent_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let is_ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_";
    if !is_ident {
        return Err(format!(
            "`{name}` is not a valid agent name: use a Rust identifier (ASCII letters, digits and `_`, \
             not starting with a digit), e.g. `web_search`"
        ));
    }
    if KEYWORDS.contains(&name) {
        return Err(format!(
            "`{name}` is not a valid agent name: it is a reserved word in Rust; choose another"
        ));
    }
    Ok(())
}

fn check_package_name(name: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok && !KEYWORDS.contains(&name) && name != "rayai" && name != "test" {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid project name: use ASCII letters, digits, `_` and `-`, starting \
             with a letter (and not `rayai`, `test` or a Rust keyword)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_names_are_identifiers() {
        for ok in ["echo", "web_search", "_private", "a1", "Echo"] {
            assert!(check_agent_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1st",
            "web-search",
            "a b",
            "é",
            "_",
            "fn",
            "type",
            "self",
        ] {
            assert!(check_agent_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn struct_names_are_camel_case() {
        assert_eq!(struct_name("echo"), "Echo");
        assert_eq!(struct_name("web_search"), "WebSearch");
        assert_eq!(struct_name("_x"), "X");
        assert_eq!(struct_name("a1_b"), "A1B");
    }
}
