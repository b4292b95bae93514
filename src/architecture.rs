//! The architecture as a test: every `crate::…` path in every file under
//! `src/` is an arrow from the file's top-level module to another one; an
//! arrow that the stage order below does not allow fails the test, and so
//! does any cycle between top-level modules. See `docs/architecture.md`.
//!
//! Stage: test only (compiled under `cfg(test)`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module → the top-level modules it may name. Core modules
/// (pure data and logic) come first; each later line may use only what is
/// listed for it. `backends` may read the policy's configuration data only
/// (`policy::model`, the parsed `policy::valid` settings) — see [`FINER`].
const ALLOWED: &[(&str, &[&str])] = &[
    // Core: leaves.
    ("secret", &[]),
    ("crash", &[]),
    // Output: progress lines on a terminal.
    ("progress", &[]),
    ("diag", &[]),
    ("exit", &[]),
    ("cluster", &[]),
    ("snapshot", &["secret"]),
    ("retention", &["snapshot"]),
    // Pure stages.
    ("policy", &["diag", "secret", "retention", "snapshot"]),
    (
        "plan",
        &["policy", "cluster", "retention", "snapshot", "exit", "diag"],
    ),
    // The outside world, behind traits. Knows nothing of the DAG.
    (
        "backends",
        &[
            "cluster",
            "snapshot",
            "secret",
            "crash",
            "policy",
            "retention",
            "progress",
        ],
    ),
    // The executor: schedules the DAG, calls backends through their traits.
    (
        "exec",
        &[
            "plan",
            "backends",
            "policy",
            "cluster",
            "snapshot",
            "retention",
            "secret",
            "crash",
            "exit",
            "progress",
        ],
    ),
    // The composition root.
    (
        "wiring",
        &[
            "backends", "exec", "policy", "cluster", "secret", "exit", "cli",
        ],
    ),
    // The edge: the CLI and its commands.
    ("cli", &["plan"]),
    (
        "commands",
        &[
            "wiring",
            "exec",
            "plan",
            "backends",
            "policy",
            "cluster",
            "snapshot",
            "retention",
            "secret",
            "diag",
            "exit",
            "cli",
            "progress",
        ],
    ),
];

/// Finer rules: (module, path prefix it may name, the only sub-paths allowed).
const FINER: &[(&str, &str, &[&str])] =
    &[("backends", "policy", &["policy::model", "policy::valid"])];

/// Macros exported at the crate root, not modules.
const MACROS: &[&str] = &["ewriteln", "ewrite"];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`None`: crate root files).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let m = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(m, "lib" | "main" | "architecture")).then(|| m.to_string())
}

/// Code without `//` comments and string literals (a path in a doc
/// comment or a message is not an arrow).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = '\0';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
                out.push(' ');
            } else if !in_str {
                out.push(c);
            }
            prev = if prev == '\\' && c == '\\' { '\0' } else { c };
        }
        out.push('\n');
    }
    // A brace in a char literal would unbalance `strip_cfg_test`.
    out.replace("'{'", "   ").replace("'}'", "   ")
}

/// `code` without its `#[cfg(test)]` items (a `mod tests { … }`, a
/// test-only `use …;` or fn), wherever they are in the file: unit tests may
/// reach further (fixtures), the code around them may not.
fn strip_cfg_test(code: &str) -> String {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(i) = rest.find(ATTR) {
        out.push_str(&rest[..i]);
        let item = &rest[i + ATTR.len()..];
        let brace = item.find('{');
        let semi = item.find(';');
        let end = match (brace, semi) {
            (Some(b), Some(s)) if s < b => s + 1,
            (None, Some(s)) => s + 1,
            (Some(b), _) => {
                let mut depth = 0usize;
                let mut end = item.len();
                for (k, c) in item.char_indices().skip_while(|(k, _)| *k < b) {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                end = k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (None, None) => item.len(),
        };
        rest = &item[end..];
    }
    out.push_str(rest);
    out
}

/// Every `crate::a::b…` path in `code` as `a::b…` (groups `crate::{a, b::c}`
/// expanded to their first segments).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        // `$crate::` inside macros, or an identifier ending in `crate`.
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let p: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                if !p.is_empty() {
                    out.push(p);
                }
            }
            continue;
        }
        let p: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        out.push(p.trim_end_matches(':').to_string());
    }
    out
}

/// (file, from-module, to-path) for every arrow under `src/`.
fn arrows(src: &Path) -> Vec<(PathBuf, String, String)> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let Some(from) = module_of(src, &f) else {
            continue;
        };
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for p in crate_paths(&strip_cfg_test(&code_only(&text))) {
            out.push((f.clone(), from.clone(), p));
        }
    }
    out
}

/// Every arrow against [`ALLOWED`] and [`FINER`], as messages.
fn violations(arrows: &[(PathBuf, String, String)]) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut bad = Vec::new();
    for (file, from, path) in arrows {
        let to = path.split("::").next().unwrap_or("");
        if to == from.as_str() || MACROS.contains(&to) {
            continue;
        }
        let Some(ok) = allowed.get(from.as_str()) else {
            bad.push(format!(
                "{}: module `{from}` is not in the stage table (src/architecture.rs ALLOWED)",
                file.display()
            ));
            continue;
        };
        if !ok.contains(&to) {
            bad.push(format!(
                "{}: `{from}` may not use `crate::{path}` (allowed: {})",
                file.display(),
                ok.join(", ")
            ));
            continue;
        }
        for (m, prefix, only) in FINER {
            let within = |o: &&str| path == o || path.starts_with(&format!("{o}::"));
            if m == from && to == *prefix && !only.iter().any(within) {
                bad.push(format!(
                    "{}: `{from}` may use only {} of `{prefix}`, not `crate::{path}`",
                    file.display(),
                    only.join(", ")
                ));
            }
        }
    }
    bad
}

/// A cycle between top-level modules, as `a -> b -> a`, if any.
fn cycle(arrows: &[(PathBuf, String, String)]) -> Option<String> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, from, path) in arrows {
        let to = path.split("::").next().unwrap_or("").to_string();
        if &to != from && !MACROS.contains(&to.as_str()) {
            g.entry(from.clone()).or_default().insert(to);
        }
    }
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<String> {
        if let Some(i) = stack.iter().position(|s| s == n) {
            let mut c = stack[i..].to_vec();
            c.push(n.to_string());
            return Some(c.join(" -> "));
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        if let Some(c) = visit(n, &g, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_import_follows_the_stage_order() {
    let a = arrows(&src_dir());
    assert!(
        a.len() > 100,
        "found only {} arrows: is src/ there?",
        a.len()
    );
    let bad = violations(&a);
    assert!(
        bad.is_empty(),
        "imports against the stage order:\n{}",
        bad.join("\n")
    );
}

#[test]
fn no_cycle_between_top_level_modules() {
    let a = arrows(&src_dir());
    assert_eq!(cycle(&a), None, "a cycle between top-level modules");
}

#[test]
fn every_top_level_module_is_in_the_stage_table() {
    let a = arrows(&src_dir());
    let known: BTreeSet<&str> = ALLOWED.iter().map(|(m, _)| *m).collect();
    let used: BTreeSet<&str> = a.iter().map(|(_, m, _)| m.as_str()).collect();
    let missing: Vec<&&str> = used.difference(&known).collect();
    assert!(missing.is_empty(), "not in ALLOWED: {missing:?}");
}

#[test]
fn the_checker_sees_forbidden_arrows_and_cycles() {
    let f = PathBuf::from("src/backends/x.rs");
    let arrow = |from: &str, to: &str| (f.clone(), from.to_string(), to.to_string());
    // backends -> exec is forbidden; backends -> policy::validate too.
    let v = violations(&[
        arrow("backends", "exec::events::Notifier"),
        arrow("backends", "policy::validate::parse_timeout"),
        arrow("backends", "policy::model::Cluster"),
    ]);
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].contains("may not use `crate::exec::events::Notifier`"));
    assert!(v[1].contains("may use only policy::model, policy::valid"));
    assert_eq!(
        cycle(&[arrow("plan", "exec::x"), arrow("exec", "plan::y")]).as_deref(),
        Some("exec -> plan -> exec")
    );
    // Paths in comments and strings are not arrows; groups are expanded.
    let code = code_only(
        "use crate::{plan::Dag, exec};\n// crate::wiring\nlet s = \"crate::cli\";\n$crate::x",
    );
    assert_eq!(crate_paths(&code), vec!["plan::Dag", "exec"]);
    // Test-only items are skipped wherever they are; code after them counts.
    let code = code_only(
        "#[cfg(test)]\nuse crate::cli;\n#[cfg(test)]\nmod tests { fn f() { let _ = crate::wiring::x; } }\nuse crate::exec::y;\n",
    );
    assert_eq!(crate_paths(&strip_cfg_test(&code)), vec!["exec::y"]);
}
