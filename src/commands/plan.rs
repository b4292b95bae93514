//! `snapward plan`: compile the policy and render the plan. No network.

use std::path::Path;

use crate::exit::Exit;
use crate::plan::{self, Scenario, render};

pub fn run(
    policy: &Path,
    scenario: Option<Scenario>,
    format: render::Format,
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
    let dag = plan::compile(&p)?;
    let built = plan::build(&p, &dag, scenario, None)?;
    Ok(super::emit(&render::render(&built, format), Exit::Success))
}
