//! `snapward list -f POLICY`: every store's snapshots with identity,
//! validity, and what retention would keep or delete, with reasons; and,
//! when the policy's key store can be read and holds unseal key shares, each
//! local snapshot's authenticity (see `verify`). Read-only.
//!
//! Cost: the local store and filesystem targets are listed through the
//! verification cache, read-only (`crate::backends::verify_cache`): a file
//! whose name, size, mtime, inode and ctime match a remembered entry is not
//! read again; `--verify` ignores the cache and reads every file in full.
//! When the keys are usable, authenticating reads each valid local snapshot
//! once more (a fresh read, never the cache). Remote snapshots are judged by
//! their tag (S3, Azure, GCS object metadata) or their sealed sums (a
//! filesystem target): see `exec::trust`.

use std::path::Path;

use serde::Serialize;

use super::verify::{Checked, UnsealKey, Verdict, policy_key};
use crate::backends::local::LocalSnapshot;
use crate::backends::verify_cache::CacheUse;
use crate::backends::{RemoteSnapshot, Trust};
use crate::cli::OutputFormat;
use crate::exec::select::{local_candidate, remote_candidate, remote_valid};
use crate::exit::Exit;
use crate::policy;
use crate::retention::{self, Candidate, Decision};

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
    verdict: retention::Verdict,
    reasons: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invalid: Option<String>,
    /// Local, valid snapshots when the keys are usable.
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticity: Option<Verdict>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authenticity_reason: Option<String>,
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
                invalid: r.trust.reason().map(|why| format!("foreign: {why}")),
                authenticity: (r.trust == Trust::Authentic).then_some(Verdict::Authentic),
                authenticity_reason: None,
            })
        })
        .collect()
}

/// The second pass over a verified local snapshot: verify again (the file
/// may have changed since the inventory) and judge its sealed sums.
fn authenticate_again(key: &UnsealKey, dir: &Path, s: &LocalSnapshot) -> Option<Checked> {
    let listed = s.identity.as_ref()?;
    Some(match key.check_file(&dir.join(&s.name)) {
        Ok((id, _)) if id.sha256 != listed.sha256 => {
            Checked::not_checkable("the file changed while it was listed".into())
        }
        Ok((_, checked)) => checked,
        Err(e) => Checked::not_checkable(format!("the second read failed: {}: {e}", e.check())),
    })
}

/// `verify`: read and verify every file (`list --verify`), ignoring the
/// verification cache; otherwise the cache is used, never written.
pub async fn run(
    path: &Path,
    format: OutputFormat,
    kubeconfig: Option<&Path>,
    verify: bool,
) -> Exit {
    let cache = if verify {
        CacheUse::Off
    } else {
        CacheUse::ReadOnly
    };
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
    let key = match policy_key(&p, kubeconfig).await {
        None => None,
        Some(Ok(k)) => Some(k),
        Some(Err(reason)) => {
            crate::ewriteln!("note: authenticity not shown: {reason}");
            None
        }
    };
    let trust_keys = key.as_ref().map(|k| std::sync::Arc::new(k.trust_keys()));
    let local_keys = trust_keys.clone();
    let mut out = Vec::new();
    let local = crate::wiring::local_store_with(&p, cache);
    let mut failed = false;
    let listed = tokio::task::spawn_blocking(move || {
        local.inventory().map(|mut inv| {
            crate::exec::trust::judge_inventory(&mut inv, local_keys.as_deref());
            let checked: Vec<Option<Checked>> = match &key {
                Some(k) => inv
                    .iter()
                    .map(|s| authenticate_again(k, &local.dir, s))
                    .collect(),
                None => vec![None; inv.len()],
            };
            (inv, checked)
        })
    });
    match listed.await {
        Ok(Ok((inv, checked))) => {
            let cands: Vec<Candidate> = inv.iter().map(local_candidate).collect();
            let rows = verdicts(&p.local.rules, &cands)
                .into_iter()
                .filter_map(|d| {
                    let i = inv.iter().position(|s| s.name == d.id)?;
                    let s = inv.get(i)?;
                    let c = checked.get(i).cloned().flatten();
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
                        authenticity: c.as_ref().map(|c| c.verdict),
                        authenticity_reason: c.and_then(|c| c.reason),
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
    for slot in crate::wiring::build_targets_with(&p, cache).await {
        let listing = match &slot.target {
            Ok(t) => match t.list().await {
                Ok(mut list) => {
                    // Retention counts only what the stored keys authenticate.
                    crate::exec::trust::judge_listing(&mut list, trust_keys.as_deref());
                    StoreListing {
                        store: slot.name.clone(),
                        error: None,
                        snapshots: remote_rows(&list, &slot.rules),
                    }
                }
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
                // The authenticity column, only in a store where it was checked.
                let auth_column = s.snapshots.iter().any(|r| r.authenticity.is_some());
                for r in &s.snapshots {
                    let id = match (r.index, r.term) {
                        (Some(i), Some(t)) => format!("index={i} term={t}"),
                        _ => "invalid".to_string(),
                    };
                    let verdict = match r.verdict {
                        retention::Verdict::Keep => "keep",
                        retention::Verdict::Delete => "delete",
                        retention::Verdict::Ignore => "ignore",
                    };
                    let auth = if auth_column {
                        let word = match r.authenticity {
                            Some(Verdict::Authentic) => "authentic",
                            Some(Verdict::OtherKeys) => "other-keys",
                            Some(Verdict::SumsMismatch) => "sums-mismatch",
                            Some(Verdict::NotCheckable) => "not-checkable",
                            None => "",
                        };
                        format!("{word:<14}")
                    } else {
                        String::new()
                    };
                    text.push_str(&format!(
                        "  {}  {:<24} {:<7} {auth}{}\n",
                        r.name,
                        id,
                        verdict,
                        r.reasons.join(", ")
                    ));
                    if let Some(i) = &r.invalid {
                        text.push_str(&format!("      {i}\n"));
                    }
                    if let Some(why) = &r.authenticity_reason {
                        text.push_str(&format!("      not checkable: {why}\n"));
                    }
                }
            }
        }
    }
    super::emit(&text, if failed { Exit::Retry } else { Exit::Success })
}
