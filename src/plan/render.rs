//! Render a plan: text for humans, Markdown for a PR comment, JSON for
//! machines, DOT and Mermaid for pictures. Deterministic output.
//!
//! Stage: plan. Pure: returns strings.

use std::fmt::Write;

use super::inventory::{Preview, StorePreview, StoreStatus};
use super::{Plan, PlannedStep, Verdict};
use crate::exit::Exit;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Json,
    Dot,
    Mermaid,
}

impl Format {
    pub fn all() -> &'static [Format] {
        &[
            Format::Text,
            Format::Markdown,
            Format::Json,
            Format::Dot,
            Format::Mermaid,
        ]
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::Markdown => "markdown",
            Format::Json => "json",
            Format::Dot => "dot",
            Format::Mermaid => "mermaid",
        }
    }
}

pub fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Text => text(plan),
        Format::Markdown => markdown(plan),
        Format::Json => {
            let mut s = serde_json::to_string_pretty(plan).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Dot => dot(plan),
        Format::Mermaid => mermaid(plan),
    }
}

fn exit_name(e: Exit) -> &'static str {
    match e {
        Exit::Success => "0 success",
        Exit::Invalid => "1 invalid",
        Exit::Usage => "2 usage",
        Exit::Refused => "3 refused — a human must act",
        Exit::Retry => "4 failed — retry",
        Exit::Busy => "5 busy",
        Exit::RestoreTestFailed => "6 backed up, restore test failed",
    }
}

fn verdict_word(v: &Verdict) -> (&'static str, &str) {
    match v {
        Verdict::Run => ("run", ""),
        Verdict::RunIf(g) => ("run if", g.as_str()),
        Verdict::Skip(r) => ("skip", r.as_str()),
    }
}

fn text(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = write!(s, "Plan for policy `{}`", plan.policy);
    match plan.scenario {
        Some(sc) => {
            let _ = writeln!(s, " — scenario `{}`", sc.name());
        }
        None => s.push('\n'),
    }
    if let Some(d) = &plan.decision {
        let _ = writeln!(s, "\nObserved: {}", d.observed);
        let _ = writeln!(s, "Guard:    {} (rule: {})", d.branch.name(), d.rule);
        let _ = writeln!(s, "          {}", d.explanation);
        if let Some(e) = plan.exit {
            let _ = writeln!(s, "Exit:     {}", exit_name(e));
        }
    }
    let _ = writeln!(s, "\nActions (in order):");
    let width = plan.steps.iter().map(|st| st.id.len()).max().unwrap_or(0);
    for (i, st) in plan.steps.iter().enumerate() {
        let (word, why) = verdict_word(&st.verdict);
        let _ = write!(s, "  {:>2}. {:<width$}  ", i + 1, st.id);
        if plan.decision.is_some() {
            let _ = write!(s, "{word:<6}");
            if !why.is_empty() {
                let _ = write!(s, "  {why}");
            }
        } else if let Some(b) = st.branch {
            let _ = write!(s, "[{b}]");
        }
        s.push('\n');
        if !st.requires.is_empty() {
            let _ = writeln!(s, "      {:width$}  after: {}", "", deps(st));
        }
        if plan.decision.is_none() && !st.preconditions.is_empty() {
            let pre: Vec<String> = st.preconditions.iter().map(|p| p.describe()).collect();
            let _ = writeln!(s, "      {:width$}  needs: {}", "", pre.join("; "));
        }
    }
    let _ = writeln!(s, "\nScenarios:");
    let w = plan
        .scenarios
        .iter()
        .map(|o| o.scenario.name().len())
        .max()
        .unwrap_or(0);
    for o in &plan.scenarios {
        let _ = writeln!(
            s,
            "  {:<w$}  {:<8} exit {}  {}",
            o.scenario.name(),
            o.decision.branch.name(),
            o.exit.code(),
            o.decision.explanation
        );
    }
    if let Some(r) = &plan.retention {
        retention_text(&mut s, r);
    }
    // No trailing spaces: plans are pasted into logs and pinned in tests.
    let mut out: String = s.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
    out.push('\n');
    out
}

fn deps(st: &PlannedStep) -> String {
    let mut v: Vec<String> = st.requires.clone();
    v.extend(st.after.iter().map(|a| format!("{a} (any outcome)")));
    v.join(", ")
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
}

fn markdown(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### snapward plan: `{}`\n", plan.policy);
    if let (Some(sc), Some(d)) = (plan.scenario, &plan.decision) {
        let _ = writeln!(
            s,
            "Scenario **{}** → guard chooses **{}** (exit {}).\n\n> {}\n",
            sc.name(),
            d.branch.name(),
            plan.exit.map(|e| e.code()).unwrap_or(0),
            md_escape(&d.explanation)
        );
    }
    let _ = writeln!(s, "| scenario | branch | exit | what happens |");
    let _ = writeln!(s, "|---|---|---|---|");
    for o in &plan.scenarios {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} |",
            o.scenario.name(),
            o.decision.branch.name(),
            o.exit.code(),
            md_escape(&o.decision.explanation)
        );
    }
    if let Some(r) = &plan.retention {
        retention_markdown(&mut s, r);
    }
    let _ = writeln!(
        s,
        "\n<details><summary>Actions ({})</summary>\n",
        plan.steps.len()
    );
    let _ = writeln!(
        s,
        "| # | action | branch | after | {} |",
        if plan.decision.is_some() {
            "verdict"
        } else {
            "preconditions"
        }
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (i, st) in plan.steps.iter().enumerate() {
        let last = if plan.decision.is_some() {
            let (w, why) = verdict_word(&st.verdict);
            if why.is_empty() {
                w.to_string()
            } else {
                format!("{w}: {why}")
            }
        } else {
            st.preconditions
                .iter()
                .map(|p| p.describe())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            s,
            "| {} | `{}` | {} | {} | {} |",
            i + 1,
            st.id,
            st.branch.unwrap_or("—"),
            md_escape(&deps(st)),
            md_escape(&last)
        );
    }
    let _ = writeln!(s, "\n```mermaid\n{}```\n\n</details>", mermaid(plan));
    s
}

fn node_style(st: &PlannedStep) -> &'static str {
    match st.verdict {
        Verdict::Run => "run",
        Verdict::RunIf(_) => "gated",
        Verdict::Skip(_) => "skip",
    }
}

fn dot(plan: &Plan) -> String {
    let mut s = String::from(
        "digraph snapward {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for st in &plan.steps {
        let (color, style) = match node_style(st) {
            "run" => ("darkgreen", "solid"),
            "gated" => ("black", "solid"),
            _ => ("gray", "dashed"),
        };
        let _ = writeln!(s, "  \"{}\" [color={color}, style={style}];", st.id);
    }
    for st in &plan.steps {
        for r in &st.requires {
            let _ = writeln!(s, "  \"{r}\" -> \"{}\";", st.id);
        }
        for a in &st.after {
            let _ = writeln!(s, "  \"{a}\" -> \"{}\" [style=dotted];", st.id);
        }
    }
    s.push_str("}\n");
    s
}

fn mermaid_id(id: &str) -> String {
    id.replace([':', '-'], "_")
}

fn mermaid(plan: &Plan) -> String {
    let mut s = String::from("flowchart LR\n");
    for st in &plan.steps {
        let _ = writeln!(
            s,
            "  {}[\"{}\"]:::{}",
            mermaid_id(&st.id),
            st.id,
            node_style(st)
        );
    }
    for st in &plan.steps {
        for r in &st.requires {
            let _ = writeln!(s, "  {} --> {}", mermaid_id(r), mermaid_id(&st.id));
        }
        for a in &st.after {
            let _ = writeln!(s, "  {} -.-> {}", mermaid_id(a), mermaid_id(&st.id));
        }
    }
    s.push_str("  classDef run stroke:#2a2,stroke-width:2px\n  classDef gated stroke:#333\n  classDef skip stroke:#aaa,stroke-dasharray:4 4,color:#999\n");
    s
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// The line about the next run's snapshot (or why it is not counted).
fn next_run_line(r: &Preview, code: fn(&str) -> String) -> String {
    let newest = r
        .newest_listed
        .map(|t| format!("newest snapshot listed {t}"))
        .unwrap_or_else(|| "no snapshot listed".into());
    match &r.next_run {
        Some(n) => format!(
            "{newest}; the next run ({}, from spec.schedule) adds {}, then prunes",
            n.time,
            code(&n.name)
        ),
        None if r.newest_listed.is_some() => {
            format!(
                "{newest}; the policy has no spec.schedule, so the next run's own snapshot is not counted"
            )
        }
        None => format!("{newest}; the next run's own snapshot is not counted"),
    }
}

/// "keeps N, would delete M" and what else the store does.
fn store_summary(st: &StorePreview, code: fn(&str) -> String) -> String {
    match &st.status {
        StoreStatus::NotInInventory => {
            return "not in the inventory: nothing to compare (list it with `snapward list -f POLICY --format json`)".into();
        }
        StoreStatus::Unavailable(e) => {
            return format!("unavailable when listed ({e}): nothing to compare");
        }
        StoreStatus::Listed => {}
    }
    let mut s = format!("keeps {}", st.keep.len());
    match st.delete.as_slice() {
        [] => s.push_str(", deletes nothing"),
        [one] => {
            let _ = write!(s, ", would delete 1 snapshot ({})", code(one));
        }
        [oldest, .., newest] => {
            let _ = write!(
                s,
                ", would delete {} snapshots (oldest {}, newest {})",
                st.delete.len(),
                code(oldest),
                code(newest)
            );
        }
    }
    if !st.retained_by_lock.is_empty() {
        let last = st.retained_by_lock.iter().map(|l| l.locked_until).max();
        let _ = write!(
            s,
            "; Object Lock keeps {} more it would delete{}",
            st.retained_by_lock.len(),
            last.map(|t| format!(" (until {t} at the latest)"))
                .unwrap_or_default()
        );
    }
    if !st.kept_unmirrored.is_empty() {
        let _ = write!(
            s,
            "; keeps {} no target holds (guards.keepUnmirroredLocal)",
            plural(st.kept_unmirrored.len(), "more snapshot")
        );
    }
    if !st.not_counted.is_empty() {
        let _ = write!(
            s,
            "; {} not counted, never deleted",
            plural(st.not_counted.len(), "snapshot")
        );
    }
    s
}

fn plain(s: &str) -> String {
    s.to_string()
}

fn code(s: &str) -> String {
    format!("`{}`", s.replace('`', "'"))
}

fn retention_text(s: &mut String, r: &Preview) {
    let _ = writeln!(
        s,
        "\nRetention at the next run (inventory {}):",
        r.inventory
    );
    let _ = writeln!(s, "  {}", next_run_line(r, plain));
    let w = r.stores.iter().map(|st| st.store.len()).max().unwrap_or(0);
    for st in &r.stores {
        let _ = writeln!(s, "  {:<w$}  {}", st.store, store_summary(st, plain));
        for d in &st.delete {
            let _ = writeln!(s, "  {:<w$}    delete  {d}", "");
        }
        for l in &st.retained_by_lock {
            let _ = writeln!(
                s,
                "  {:<w$}    locked  {} (until {})",
                "", l.name, l.locked_until
            );
        }
        for k in &st.kept_unmirrored {
            let _ = writeln!(s, "  {:<w$}    kept    {k} (no target holds it)", "");
        }
        for n in &st.not_counted {
            let _ = writeln!(s, "  {:<w$}    ignored {} ({})", "", n.name, n.reason);
        }
    }
    if !r.not_in_policy.is_empty() {
        let _ = writeln!(
            s,
            "  In the inventory, not in the policy (ignored): {}",
            r.not_in_policy.join(", ")
        );
    }
}

fn retention_markdown(s: &mut String, r: &Preview) {
    let _ = writeln!(s, "\n#### Retention at the next run\n");
    let _ = writeln!(
        s,
        "From the inventory {}: {}.\n",
        code(&r.inventory),
        next_run_line(r, code)
    );
    for st in &r.stores {
        let _ = writeln!(
            s,
            "- **{}**: {}",
            md_escape(&st.store),
            md_escape(&store_summary(st, code))
        );
    }
    if !r.not_in_policy.is_empty() {
        let names: Vec<String> = r.not_in_policy.iter().map(|n| code(n)).collect();
        let _ = writeln!(
            s,
            "- in the inventory, not in the policy (ignored): {}",
            names.join(", ")
        );
    }
    let rows: Vec<(&str, &str, String)> = r
        .stores
        .iter()
        .flat_map(|st| {
            let del = st
                .delete
                .iter()
                .map(|d| (st.store.as_str(), d.as_str(), "delete".to_string()));
            let locked = st.retained_by_lock.iter().map(|l| {
                (
                    st.store.as_str(),
                    l.name.as_str(),
                    format!(
                        "retention would delete; Object Lock keeps it until {}",
                        l.locked_until
                    ),
                )
            });
            let kept = st.kept_unmirrored.iter().map(|k| {
                (
                    st.store.as_str(),
                    k.as_str(),
                    "kept: no target holds it (guards.keepUnmirroredLocal)".to_string(),
                )
            });
            let ignored = st.not_counted.iter().map(|n| {
                (
                    st.store.as_str(),
                    n.name.as_str(),
                    format!("not counted, never deleted: {}", n.reason),
                )
            });
            del.chain(locked)
                .chain(kept)
                .chain(ignored)
                .collect::<Vec<_>>()
        })
        .collect();
    if !rows.is_empty() {
        let deletions: usize = r.stores.iter().map(|st| st.delete.len()).sum();
        let _ = writeln!(
            s,
            "\n<details><summary>{} to delete, and what is spared</summary>\n",
            plural(deletions, "snapshot")
        );
        let _ = writeln!(s, "| store | snapshot | at the next run |");
        let _ = writeln!(s, "|---|---|---|");
        for (store, name, what) in rows {
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                md_escape(store),
                code(name),
                md_escape(&what)
            );
        }
        let _ = writeln!(s, "\n</details>");
    }
}
