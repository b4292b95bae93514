//! `snapward lint FILE|DIR...`: every problem of every file, as miette
//! diagnostics (human) or JSON lines' worth of objects (json).

use std::path::{Path, PathBuf};

use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::cli::OutputFormat;
use crate::diag::PolicyDiagnostic;
use crate::exit::Exit;
use crate::policy::{self, FileReport};

/// Render diagnostics without colour at a fixed width (stable for tests and
/// CI logs).
pub fn render_human(diags: &[PolicyDiagnostic]) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    for d in diags {
        if handler.render_report(&mut out, d).is_err() {
            out.push_str(&format!(
                "{}:{}:{}: {}: {}\n",
                d.file, d.line, d.column, d.code, d.message
            ));
        }
        out.push('\n');
    }
    out
}

/// Lint one file by path.
pub fn lint_file(path: &Path, require_policy: bool) -> std::io::Result<FileReport> {
    let text = std::fs::read_to_string(path)?;
    Ok(policy::lint_text(
        &path.display().to_string(),
        &text,
        require_policy,
    ))
}

pub fn run(
    paths: &[PathBuf],
    format: OutputFormat,
    deny_warnings: bool,
    skip_non_policies: bool,
) -> Exit {
    let mut reports = Vec::new();
    let mut io_failed = false;
    for p in paths {
        let (files, explicit) = if p.is_dir() {
            match policy::yaml_files(p) {
                Ok(f) => (f, false),
                Err(e) => {
                    crate::ewriteln!("error: cannot read directory {}: {e}", p.display());
                    io_failed = true;
                    continue;
                }
            }
        } else {
            (vec![p.clone()], !skip_non_policies)
        };
        for f in files {
            match lint_file(&f, explicit) {
                Ok(r) => reports.push(r),
                Err(e) => {
                    crate::ewriteln!("error: cannot read {}: {e}", f.display());
                    io_failed = true;
                }
            }
        }
    }
    let diags: Vec<&PolicyDiagnostic> = reports.iter().flat_map(|r| &r.diagnostics).collect();
    let errors: usize = reports.iter().map(FileReport::errors).sum();
    let warnings: usize = reports.iter().map(FileReport::warnings).sum();
    let policies: usize = reports.iter().map(|r| r.policies_seen).sum();
    let mut stdout = String::new();
    match format {
        OutputFormat::Json => {
            let items: Vec<_> = diags.iter().map(|d| d.to_json()).collect();
            stdout = format!(
                "{}\n",
                serde_json::to_string_pretty(&items).unwrap_or_else(|_| "[]".into())
            );
        }
        OutputFormat::Human => {
            let owned: Vec<PolicyDiagnostic> = diags.iter().map(|d| (*d).clone()).collect();
            crate::ewrite!("{}", render_human(&owned));
            crate::ewriteln!(
                "{} file(s), {policies} polic{}: {errors} error(s), {warnings} warning(s)",
                reports.len(),
                if policies == 1 { "y" } else { "ies" }
            );
        }
    }
    let exit = if io_failed {
        Exit::Usage
    } else if errors > 0 || (deny_warnings && warnings > 0) {
        Exit::Invalid
    } else {
        Exit::Success
    };
    super::emit(&stdout, exit)
}
