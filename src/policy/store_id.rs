//! `StoreId`: which store of a policy a snapshot lives in — the local
//! snapshot directory or one named target. Spelled as today's strings
//! (`local`, the target's name) wherever it is shown or serialised, so
//! reports, plans and metrics read the same.
//!
//! Stage: validate (pure data).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A store of the policy. `local` is reserved (validation refuses a target
/// of that name), so the string form is unambiguous.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StoreId {
    /// The local snapshot directory (`spec.local`), spelled `local`.
    Local,
    /// The target of this name (`spec.targets[].name`).
    Target(String),
}

impl StoreId {
    /// How the local store is named in restore sources, reports and metrics.
    pub const LOCAL: &'static str = "local";

    /// `local` is the local store; any other name is a target's.
    pub fn from_name(name: &str) -> Self {
        if name == Self::LOCAL {
            StoreId::Local
        } else {
            StoreId::Target(name.to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            StoreId::Local => Self::LOCAL,
            StoreId::Target(name) => name,
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, StoreId::Local)
    }
}

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `store == "local"`, `store == name`: compares the string form.
impl PartialEq<str> for StoreId {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for StoreId {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for StoreId {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl Serialize for StoreId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for StoreId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(StoreId::from_name(&name))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::StoreId;

    #[rstest]
    #[case::local("local", StoreId::Local)]
    #[case::target("r2", StoreId::Target("r2".into()))]
    #[case::not_quite_local("Local", StoreId::Target("Local".into()))]
    fn spelled_as_the_policy_spells_it(#[case] name: &str, #[case] id: StoreId) {
        assert_eq!(StoreId::from_name(name), id);
        assert_eq!(id.to_string(), name);
        assert!(id == name, "compares with its string");
        let json = serde_json::to_string(&id).expect("serialise");
        assert_eq!(json, format!("{name:?}"));
        assert_eq!(serde_json::from_str::<StoreId>(&json).expect("parse"), id);
    }
}
