//! `snapward list -f POLICY`: every store's snapshots with identity,
//! validity, and what retention would keep or delete, with reasons.
//! Read-only.

use std::path::Path;

use serde::Serialize;

use crate::backends::RemoteSnapshot;
use crate::cli::OutputFormat;
use crate::exec::select::{local_candidate, remote_candidate, remote_valid};
use crate::exit::Exit;
use crate::policy;
use crate::retention::{self, Candidate, Decision, Verdict};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row {
    name: String,
    time: jiff::Timestamp,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    verdict: Verdict,
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StoreListing {
    store: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    snapshots: Vec<Row>,
}

fn verdicts(rules: &retention::Rules, c: &[Candidate]) -> Vec<Decision> {
    retention::apply(rules, c)
}

fn remote_rows(list: &[RemoteSnapshot], rules: &retention::Rules) -> Vec<Row> {
    let cands: Vec<Candidate> = list.iter().map(remote_candidate).collect();
    verdicts(rules, &cands)
        .into_iter()
        .filter_map(|d| {
            let r = list.iter().find(|r| r.name == d.id)?;
            Some(Row {
                name: r.name.clone(),
                time: r.time,
                valid: remote_valid(r),
                index: r.index,
                term: r.term,
                size: Some(r.size),
                sha256: r.sha256.clone(),
                verdict: d.verdict,
                reasons: d.reasons,
                invalid: None,
            })
        })
        .collect()
}

pub async fn run(path: &Path, format: OutputFormat) -> Exit {
    let p = match policy::load_policy(path) {
        Ok(p) => p,
        Err(e) => {
            let exit = if matches!(e, policy::PolicyError::Io { .. }) {
                Exit::Usage
            } else {
                Exit::Invalid
            };
            crate::ewriteln!("{:?}", miette::Report::new(e));
            return exit;
        }
    };
    let mut out = Vec::new();
    let local = crate::wiring::local_store(&p);
    let mut failed = false;
    match tokio::task::spawn_blocking(move || local.inventory()).await {
        Ok(Ok(inv)) => {
            let cands: Vec<Candidate> = inv.iter().map(local_candidate).collect();
            let rows = verdicts(&p.local.rules, &cands)
                .into_iter()
                .filter_map(|d| {
                    let s = inv.iter().find(|s| s.name == d.id)?;
                    Some(Row {
                        name: s.name.clone(),
                        time: s.time,
                        valid: s.identity.is_some(),
                        index: s.identity.as_ref().map(|i| i.index),
                        term: s.identity.as_ref().map(|i| i.term),
                        size: s.identity.as_ref().map(|i| i.file_size),
                        sha256: s.identity.as_ref().map(|i| i.sha256.clone()),
                        verdict: d.verdict,
                        reasons: d.reasons,
                        invalid: s.invalid.clone(),
                    })
                })
                .collect();
            out.push(StoreListing {
                store: crate::policy::StoreId::LOCAL.into(),
                error: None,
                snapshots: rows,
            });
        }
        Ok(Err(e)) => {
            failed = true;
            out.push(StoreListing {
                store: crate::policy::StoreId::LOCAL.into(),
                error: Some(format!(
                    "cannot read the local store {} (spec.local.path): {e}",
                    p.local.dir.display()
                )),
                snapshots: vec![],
            });
        }
        Err(e) => {
            failed = true;
            out.push(StoreListing {
                store: crate::policy::StoreId::LOCAL.into(),
                error: Some(e.to_string()),
                snapshots: vec![],
            });
        }
    }
    for slot in crate::wiring::build_targets(&p).await {
        let listing = match &slot.target {
            Ok(t) => match t.list().await {
                Ok(list) => StoreListing {
                    store: slot.name.clone(),
                    error: None,
                    snapshots: remote_rows(&list, &slot.rules),
                },
                Err(e) => {
                    failed = true;
                    StoreListing {
                        store: slot.name.clone(),
                        error: Some(e.to_string()),
                        snapshots: vec![],
                    }
                }
            },
            Err(e) => {
                failed |= !slot.optional;
                StoreListing {
                    store: slot.name.clone(),
                    error: Some(e.to_string()),
                    snapshots: vec![],
                }
            }
        };
        out.push(listing);
    }
    let mut text = String::new();
    match format {
        OutputFormat::Json => {
            text = format!(
                "{}\n",
                serde_json::to_string_pretty(&out).unwrap_or_default()
            )
        }
        OutputFormat::Human => {
            for s in &out {
                text.push_str(&format!("{}:\n", s.store));
                if let Some(e) = &s.error {
                    text.push_str(&format!("  unavailable: {e}\n"));
                }
                for r in &s.snapshots {
                    let id = match (r.index, r.term) {
                        (Some(i), Some(t)) => format!("index={i} term={t}"),
                        _ => "invalid".to_string(),
                    };
                    let verdict = match r.verdict {
                        Verdict::Keep => "keep",
                        Verdict::Delete => "delete",
                        Verdict::Ignore => "ignore",
                    };
                    text.push_str(&format!(
                        "  {}  {:<24} {:<7} {}\n",
                        r.name,
                        id,
                        verdict,
                        r.reasons.join(", ")
                    ));
                    if let Some(i) = &r.invalid {
                        text.push_str(&format!("      {i}\n"));
                    }
                }
            }
        }
    }
    super::emit(&text, if failed { Exit::Retry } else { Exit::Success })
}
