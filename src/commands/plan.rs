//! `snapward plan`: compile the policy and render the plan. No network.
//! With `--inventory FILE` (the JSON `snapward list --format json`
//! printed), the plan also shows what retention would keep and delete per
//! store at the next run (`plan::inventory`).

use std::path::Path;

use crate::exit::Exit;
use crate::plan::{self, Scenario, inventory, render};

pub fn run(
    policy: &Path,
    scenario: Option<Scenario>,
    format: render::Format,
    inventory: Option<&Path>,
) -> miette::Result<Exit> {
    let p = match crate::policy::load_policy(policy) {
        Ok(p) => p,
        Err(e) => {
            let exit = match e {
                crate::policy::PolicyError::Io { .. } => Exit::Usage,
                _ => Exit::Invalid,
            };
            crate::ewriteln!("{:?}", miette::Report::new(e));
            return Ok(exit);
        }
    };
    let listed = match inventory.map(read_inventory).transpose() {
        Ok(l) => l,
        Err(message) => {
            crate::ewriteln!("error: {message}");
            return Ok(Exit::Usage);
        }
    };
    let dag = plan::compile(&p)?;
    let mut built = plan::build(&p, &dag, scenario, None)?;
    if inventory.is_some() && matches!(format, render::Format::Dot | render::Format::Mermaid) {
        crate::ewriteln!(
            "note: --format {} draws the DAG only; what retention would delete is in text, markdown and json",
            format.name()
        );
    }
    if let (Some(path), Some(stores)) = (inventory, listed) {
        built.retention = Some(inventory::preview(&p, &path.display().to_string(), &stores));
    }
    Ok(super::emit(&render::render(&built, format), Exit::Success))
}

/// The inventory file, parsed; the error names the file and the problem.
fn read_inventory(path: &Path) -> Result<Vec<inventory::ListedStore>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the inventory {}: {e} (--inventory takes the file `snapward list -f POLICY --format json` wrote)",
            path.display()
        )
    })?;
    inventory::parse(&text).map_err(|e| format!("inventory {}: {e}", path.display()))
}
