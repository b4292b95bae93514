//! `snapward verify FILE...`: offline verification; prints each identity.

use std::path::PathBuf;

use serde::Serialize;

use crate::cli::OutputFormat;
use crate::exit::Exit;
use crate::snapshot::{self, Identity, VerifyError};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a Identity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(files: &[PathBuf], format: OutputFormat) -> Exit {
    let results: Vec<(PathBuf, Result<Identity, VerifyError>)> = files
        .iter()
        .map(|f| (f.clone(), snapshot::verify_file(f)))
        .collect();
    let mut exit = Exit::Success;
    let mut rows = Vec::new();
    for (f, r) in &results {
        match r {
            Ok(id) => rows.push(Row {
                file: f.display().to_string(),
                valid: true,
                identity: Some(id),
                check: None,
                error: None,
            }),
            Err(e) => {
                let io = e.check() == "io";
                if io {
                    exit = Exit::Usage;
                } else if exit == Exit::Success {
                    exit = Exit::Invalid;
                }
                rows.push(Row {
                    file: f.display().to_string(),
                    valid: false,
                    identity: None,
                    check: Some(e.check()),
                    error: Some(e.to_string()),
                });
            }
        }
    }
    let mut out = String::new();
    match format {
        OutputFormat::Json => {
            out = format!(
                "{}\n",
                serde_json::to_string_pretty(&rows).unwrap_or_default()
            )
        }
        OutputFormat::Human => {
            for r in &rows {
                match (r.identity, r.check) {
                    (Some(id), _) => out.push_str(&format!(
                        "{}: valid  index={} term={} size={} sha256={}\n",
                        r.file, id.index, id.term, id.file_size, id.sha256
                    )),
                    (None, check) => out.push_str(&format!(
                        "{}: INVALID  check={}  {}\n",
                        r.file,
                        check.unwrap_or("?"),
                        r.error.as_deref().unwrap_or("")
                    )),
                }
            }
        }
    }
    super::emit(&out, exit)
}
