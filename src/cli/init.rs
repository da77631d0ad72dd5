//! `rayai init` and `rayai create-agent`: a project from the templates, and an agent file.
//!
//! Both check every name before writing anything, and write into a temporary name next to the
//! target, renamed into place at the end: a refusal or a failure leaves nothing behind.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::CliResult;
use super::manifest;

const CARGO_TOML: &str = include_str!("../../templates/project/Cargo.toml.tmpl");
const BUILD_RS: &str = include_str!("../../templates/project/build.rs");
const MAIN_RS: &str = include_str!("../../templates/project/main.rs");
const RAYAI_TOML: &str = include_str!("../../templates/project/rayai.toml");
const ENV_EXAMPLE: &str = include_str!("../../templates/project/env.example");
const GITIGNORE: &str = include_str!("../../templates/project/gitignore");
const DOCKERFILE: &str = include_str!("../../templates/project/Dockerfile");
const DOCKERIGNORE: &str = include_str!("../../templates/project/dockerignore");
const README: &str = include_str!("../../templates/project/README.md");
const AGENT: &str = include_str!("../../templates/agent/plain.rs");
const STREAM_AGENT: &str = include_str!("../../templates/agent/stream.rs");

/// The version of rayai this command belongs to: new projects depend on it by default.
const RAYAI_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The project's directory, created here; its last part is the package name.
    name: PathBuf,
    /// Depend on this version of rayai from crates.io.
    #[arg(long, value_name = "VERSION", default_value = RAYAI_VERSION)]
    rayai_version: String,
    /// Depend on the rayai crate in this directory (a checkout of rayai) instead of crates.io.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["rayai_version", "rayai_git"])]
    rayai_path: Option<PathBuf>,
    /// Depend on rayai from this git repository instead of crates.io.
    #[arg(long, value_name = "URL", conflicts_with = "rayai_version")]
    rayai_git: Option<String>,
    /// With --rayai-git: this commit.
    #[arg(
        long,
        value_name = "REV",
        requires = "rayai_git",
        conflicts_with = "rayai_branch"
    )]
    rayai_rev: Option<String>,
    /// With --rayai-git: this branch.
    #[arg(long, value_name = "BRANCH", requires = "rayai_git")]
    rayai_branch: Option<String>,
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

/// Where a new project gets rayai from.
#[derive(Debug, Clone, PartialEq)]
enum RayaiDependency {
    /// A version requirement, from crates.io.
    Registry(String),
    /// A checkout of rayai, by its absolute path.
    Path(PathBuf),
    /// A git repository, optionally at a commit or on a branch.
    Git {
        url: String,
        rev: Option<String>,
        branch: Option<String>,
    },
}

impl RayaiDependency {
    /// The dependency from the command line, checked: a path must hold rayai's `Cargo.toml`.
    fn from_args(args: &InitArgs) -> Result<Self, String> {
        if let Some(path) = &args.rayai_path {
            return checkout(path).map(RayaiDependency::Path);
        }
        if let Some(url) = &args.rayai_git {
            if url.trim().is_empty() {
                return Err("--rayai-git needs a repository URL".to_owned());
            }
            return Ok(RayaiDependency::Git {
                url: url.clone(),
                rev: args.rayai_rev.clone(),
                branch: args.rayai_branch.clone(),
            });
        }
        let version = args.rayai_version.trim();
        let ok = !version.is_empty()
            && version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-+^~=<>*, ".contains(c));
        if !ok {
            return Err(format!(
                "`{version}` is not a version requirement for --rayai-version (e.g. `{RAYAI_VERSION}` or `^0.1`)"
            ));
        }
        Ok(RayaiDependency::Registry(version.to_owned()))
    }

    /// The value of `rayai = ...` in the project's `Cargo.toml`.
    fn toml(&self) -> String {
        match self {
            RayaiDependency::Registry(version) => manifest::toml_string(version),
            RayaiDependency::Path(path) => format!(
                "{{ path = {} }}",
                manifest::toml_string(&path.display().to_string())
            ),
            RayaiDependency::Git { url, rev, branch } => {
                let mut out = format!("{{ git = {}", manifest::toml_string(url));
                if let Some(rev) = rev {
                    out += &format!(", rev = {}", manifest::toml_string(rev));
                }
                if let Some(branch) = branch {
                    out += &format!(", branch = {}", manifest::toml_string(branch));
                }
                out + " }"
            }
        }
    }

    /// `rayai dependency: rayai = "0.1.0" (crates.io)`, as `init` prints it.
    fn describe(&self) -> String {
        let source = match self {
            RayaiDependency::Registry(_) => "crates.io",
            RayaiDependency::Path(_) => "a local checkout",
            RayaiDependency::Git { .. } => "git",
        };
        format!("rayai dependency: rayai = {} ({source})", self.toml())
    }
}

/// `dir`, absolute, when it holds the `Cargo.toml` of the package `rayai`.
fn checkout(dir: &Path) -> Result<PathBuf, String> {
    let abs = dir.canonicalize().map_err(|e| {
        format!(
            "--rayai-path {}: no such directory ({e}); give the directory of a rayai checkout",
            dir.display()
        )
    })?;
    if !abs.join("Cargo.toml").is_file() {
        return Err(format!(
            "--rayai-path {}: it has no Cargo.toml; give the directory of a rayai checkout (the one with rayai's Cargo.toml)",
            abs.display()
        ));
    }
    let toml = manifest::read(&abs).map_err(|e| format!("--rayai-path {}: {e}", abs.display()))?;
    match manifest::package_name(&toml) {
        Some("rayai") => Ok(abs),
        other => Err(format!(
            "--rayai-path {}: its Cargo.toml is {}, not of the package `rayai`; give the directory of a rayai checkout",
            abs.display(),
            other.map_or_else(
                || "a workspace".to_owned(),
                |name| format!("the package `{name}`")
            )
        )),
    }
}

pub(crate) fn init(args: &InitArgs) -> CliResult {
    let dir = &args.name;
    let Some(package) = dir.file_name().and_then(|n| n.to_str()) else {
        return Err(format!(
            "`{}` does not name a new directory: give the project's directory, e.g. `rayai init my_agents`",
            dir.display()
        ));
    };
    check_package_name(package).map_err(|rule| {
        if Path::new(package) == dir.as_path() {
            format!("`{package}` is not a valid project name: {rule}")
        } else {
            format!(
                "`{package}` (the last part of {}) is not a valid project name: {rule}",
                dir.display()
            )
        }
    })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(format!(
            "cannot create {}: the directory {} does not exist; create it first",
            dir.display(),
            parent.display()
        ));
    }
    let into_existing = match std::fs::symlink_metadata(dir) {
        Err(_) => false,
        Ok(meta) if !meta.is_dir() => {
            return Err(format!(
                "`{}` already exists and is not a directory: choose another name",
                dir.display()
            ));
        }
        Ok(_) => {
            let empty = dir.read_dir().is_ok_and(|mut d| d.next().is_none());
            if !empty {
                return Err(format!(
                    "`{}` already exists and is not empty: choose another name, or remove it",
                    dir.display()
                ));
            }
            true
        }
    };
    let dependency = RayaiDependency::from_args(args)?;
    let rayai_dep = dependency.toml();
    let fill = |t: &str| {
        t.replace("{{name}}", package)
            .replace("{{rayai_dep}}", &rayai_dep)
    };
    let files: [(&str, String); 10] = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("build.rs", BUILD_RS.to_owned()),
        ("src/main.rs", fill(MAIN_RS)),
        ("agents/echo.rs", agent_source("echo", false)),
        ("rayai.toml", RAYAI_TOML.to_owned()),
        (".env.example", ENV_EXAMPLE.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        ("Dockerfile", fill(DOCKERFILE)),
        (".dockerignore", DOCKERIGNORE.to_owned()),
        ("README.md", fill(README)),
    ];

    let staging =
        Staging::create(parent.join(format!(".{package}.rayai-init-{}", std::process::id())))?;
    for (path, contents) in &files {
        write_new(&staging.path.join(path), contents)?;
    }
    // A path dependency on a checkout: start from its lock file, so the project builds with the
    // versions rayai is tested with (and shares their compiled artifacts).
    if let RayaiDependency::Path(checkout) = &dependency {
        let _ = std::fs::copy(checkout.join("Cargo.lock"), staging.path.join("Cargo.lock"));
    }
    if into_existing {
        staging.move_entries_into(dir)?;
    } else {
        staging.rename_to(dir)?;
    }

    println!("Created project `{package}` in {}", dir.display());
    println!("{}", dependency.describe());
    println!("  agents/echo.rs   the example agent: POST /agents/echo/chat");
    println!("  rayai.toml       replicas, resources and HTTP options, read at start");
    println!();
    println!("Next:");
    println!("  cd {}", dir.display());
    println!("  rayai create-agent my_agent");
    println!("  rayai serve");
    Ok(ExitCode::SUCCESS)
}

/// A directory being filled: removed with what is in it when dropped, unless renamed into place.
struct Staging {
    path: PathBuf,
    done: bool,
}

impl Staging {
    fn create(path: PathBuf) -> Result<Self, String> {
        // A leftover of a run with the same process id that was killed half-way.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Staging { path, done: false })
    }

    fn rename_to(mut self, target: &Path) -> Result<(), String> {
        std::fs::rename(&self.path, target)
            .map_err(|e| format!("cannot move the new project to {}: {e}", target.display()))?;
        self.done = true;
        Ok(())
    }

    /// Moves each entry into `target`, an empty directory; on a failure, takes back those moved.
    fn move_entries_into(self, target: &Path) -> Result<(), String> {
        let entries = std::fs::read_dir(&self.path)
            .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let mut moved: Vec<PathBuf> = Vec::new();
        for entry in entries {
            let result = entry.and_then(|entry| {
                let to = target.join(entry.file_name());
                std::fs::rename(entry.path(), &to).map(|()| to)
            });
            match result {
                Ok(to) => moved.push(to),
                Err(e) => {
                    for path in moved {
                        let _ =
                            std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                    }
                    return Err(format!(
                        "cannot move the new project into {}: {e}",
                        target.display()
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

pub(crate) fn create_agent(args: &CreateAgentArgs) -> CliResult {
    let name = &args.name;
    check_agent_name(name).map_err(|rule| format!("`{name}` is not a valid agent name: {rule}"))?;
    let project = &args.project;
    if !project.join("Cargo.toml").is_file() {
        return Err(format!(
            "{} is not a project (no Cargo.toml): run this in one made by `rayai init`, or pass --project DIR",
            project.display()
        ));
    }
    if !manifest::depends_on_rayai(&manifest::read(project)?) {
        return Err(format!(
            "{} is not a rayai project (its Cargo.toml does not depend on rayai): run this in one made by `rayai init`, or pass --project DIR",
            project.display()
        ));
    }
    let agents = project.join("agents");
    if let Some(existing) = existing_agent(&agents, name) {
        return Err(format!(
            "agent `{name}` already exists ({}): choose another name",
            existing.display()
        ));
    }
    let file = agents.join(format!("{name}.rs"));
    let made_agents_dir = !agents.exists();
    let tmp = agents.join(format!(".{name}.rs.rayai-new-{}", std::process::id()));
    let written = write_new(&tmp, &agent_source(name, args.stream)).and_then(|()| {
        std::fs::rename(&tmp, &file).map_err(|e| format!("cannot write {}: {e}", file.display()))
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        if made_agents_dir {
            let _ = std::fs::remove_dir(&agents);
        }
        return Err(e);
    }
    println!("Created agent `{name}` in {}", file.display());
    println!("  served at POST /agents/{name}/chat on the next `rayai serve`");
    println!(
        "  reserves 0.25 CPU and 256MB per replica: raise them in its #[agent(...)], or in \
         rayai.toml's [agents.{name}]"
    );
    Ok(ExitCode::SUCCESS)
}

/// The file or directory of `agents/` that already makes an agent (a module) named `name`: the
/// project's `build.rs` turns `agents/<stem>.rs` and `agents/<stem>/` into `mod <stem>`, with `-`
/// and `.` as `_`.
fn existing_agent(agents: &Path, name: &str) -> Option<PathBuf> {
    std::fs::read_dir(agents)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let stem = if path.is_dir() {
                path.file_name()
            } else if path.extension().is_some_and(|e| e == "rs") {
                path.file_stem()
            } else {
                None
            };
            stem.and_then(|s| s.to_str())
                .is_some_and(|s| s.replace(['-', '.'], "_") == name)
        })
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

/// Rust's keywords, strict and reserved.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
}

/// An agent's name is its module's name in the project's `main.rs`: a Rust identifier, not a
/// keyword, and not a name `main.rs` already uses. The error is the rule broken.
fn check_agent_name(name: &str) -> Result<(), String> {
    if !is_identifier(name) {
        return Err(
            "use a Rust identifier (ASCII letters, digits and `_`, not starting with a \
                    digit), e.g. `web_search`"
                .to_owned(),
        );
    }
    if KEYWORDS.contains(&name) {
        return Err("it is a reserved word in Rust; choose another".to_owned());
    }
    if ["main", "rayai", "std", "core", "alloc"].contains(&name) {
        return Err(format!(
            "the project's main.rs already uses the name `{name}`; choose another"
        ));
    }
    Ok(())
}

/// A project's name is its cargo package's name: cargo's rules, and not a name its build would
/// confuse with another crate. The error is the rule broken.
fn check_package_name(name: &str) -> Result<(), String> {
    let chars_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !chars_ok {
        return Err(
            "a package name is ASCII letters, digits, `-` and `_`, starting with a letter \
                    or `_`; choose another"
                .to_owned(),
        );
    }
    let crate_name = name.replace('-', "_");
    let lower = crate_name.to_ascii_lowercase();
    if KEYWORDS.contains(&crate_name.as_str()) {
        return Err(
            "it is a reserved word in Rust, and cargo refuses it; choose another".to_owned(),
        );
    }
    if [
        "rayai",
        "rayai_core",
        "rayai_http",
        "rayai_macros",
        "rayai_rules",
    ]
    .contains(&lower.as_str())
    {
        return Err(
            "it is the name of a rayai crate, which the project depends on; choose \
                    another"
                .to_owned(),
        );
    }
    if ["test", "core", "std", "alloc", "proc_macro"].contains(&lower.as_str()) {
        return Err(
            "it is the name of a crate of Rust's standard library; choose another".to_owned(),
        );
    }
    if ["build", "deps", "examples", "incremental"].contains(&lower.as_str()) {
        return Err(
            "it is the name of a directory of cargo's target/, and cargo refuses it; \
                    choose another"
                .to_owned(),
        );
    }
    let windows = ["con", "prn", "aux", "nul"].contains(&lower.as_str())
        || ((lower.starts_with("com") || lower.starts_with("lpt"))
            && lower.len() == 4
            && lower.ends_with(|c: char| ('1'..='9').contains(&c)));
    if windows {
        return Err("it is a reserved file name on Windows; choose another".to_owned());
    }
    Ok(())
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
            "main",
            "rayai",
            "std",
        ] {
            assert!(check_agent_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn package_names_follow_cargo() {
        for ok in [
            "demo",
            "my-agents",
            "my_agents",
            "_x",
            "Agents2",
            "rayai_bot",
            "com10",
        ] {
            assert!(check_package_name(ok).is_ok(), "{ok}");
        }
        for (bad, rule) in [
            ("1-bad", "ASCII letters"),
            ("a.b", "ASCII letters"),
            ("a b", "ASCII letters"),
            ("-x", "ASCII letters"),
            ("fn", "reserved word"),
            ("self", "reserved word"),
            ("rayai", "rayai crate"),
            ("rayai-core", "rayai crate"),
            ("test", "standard library"),
            ("proc-macro", "standard library"),
            ("deps", "target/"),
            ("nul", "Windows"),
            ("COM1", "Windows"),
        ] {
            let err = check_package_name(bad).unwrap_err();
            assert!(err.contains(rule), "{bad}: {err}");
        }
    }

    #[test]
    fn struct_names_are_camel_case() {
        assert_eq!(struct_name("echo"), "Echo");
        assert_eq!(struct_name("web_search"), "WebSearch");
        assert_eq!(struct_name("_x"), "X");
        assert_eq!(struct_name("a1_b"), "A1B");
    }

    fn args(extra: &[&str]) -> InitArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            init: InitArgs,
        }
        let mut argv = vec!["init", "demo"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().init
    }

    #[test]
    fn the_dependency_is_crates_io_by_default_else_a_path_or_git() {
        let dep = RayaiDependency::from_args(&args(&[])).unwrap();
        assert_eq!(dep, RayaiDependency::Registry(RAYAI_VERSION.to_owned()));
        assert_eq!(
            dep.describe(),
            format!("rayai dependency: rayai = \"{RAYAI_VERSION}\" (crates.io)")
        );
        let dep = RayaiDependency::from_args(&args(&["--rayai-version", "^0.1"])).unwrap();
        assert_eq!(dep.toml(), "\"^0.1\"");
        assert!(RayaiDependency::from_args(&args(&["--rayai-version", "\"x"])).is_err());

        let root = env!("CARGO_MANIFEST_DIR");
        let dep = RayaiDependency::from_args(&args(&["--rayai-path", root])).unwrap();
        let abs = Path::new(root).canonicalize().unwrap();
        assert_eq!(dep, RayaiDependency::Path(abs.clone()));
        assert_eq!(
            dep.toml(),
            format!(
                "{{ path = {} }}",
                manifest::toml_string(&abs.display().to_string())
            )
        );
        // rayai-core is a crate, but not rayai.
        let core = format!("{root}/rayai-core");
        let err = RayaiDependency::from_args(&args(&["--rayai-path", &core])).unwrap_err();
        assert!(
            err.contains("the package `rayai-core`, not of the package `rayai`"),
            "{err}"
        );
        let err = RayaiDependency::from_args(&args(&["--rayai-path", &format!("{root}/src")]))
            .unwrap_err();
        assert!(err.contains("it has no Cargo.toml"), "{err}");

        let dep = RayaiDependency::from_args(&args(&[
            "--rayai-git",
            "https://example.invalid/rayai.git",
            "--rayai-branch",
            "main",
        ]))
        .unwrap();
        assert_eq!(
            dep.describe(),
            "rayai dependency: rayai = { git = \"https://example.invalid/rayai.git\", branch = \"main\" } (git)"
        );
        let dep =
            RayaiDependency::from_args(&args(&["--rayai-git", "u", "--rayai-rev", "abc"])).unwrap();
        assert_eq!(dep.toml(), "{ git = \"u\", rev = \"abc\" }");
    }

    #[test]
    fn the_dependency_flags_exclude_each_other() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            init: InitArgs,
        }
        for argv in [
            &["init", "d", "--rayai-path", ".", "--rayai-git", "u"][..],
            &["init", "d", "--rayai-path", ".", "--rayai-version", "1"],
            &["init", "d", "--rayai-git", "u", "--rayai-version", "1"],
            &[
                "init",
                "d",
                "--rayai-git",
                "u",
                "--rayai-rev",
                "a",
                "--rayai-branch",
                "b",
            ],
            &["init", "d", "--rayai-rev", "a"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }
}
