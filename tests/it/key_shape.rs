//! The key shape travels with the keys (issue 12, item 4): snapward's init
//! records shares and threshold beside the keys (`key-shape`), and a
//! restore temp-initialises node 0 with that shape whatever `spec.init`
//! says. Before, a policy whose `init` shape did not equal the stored keys'
//! (a typo, a copied policy) broke the recovery: the restored node refused
//! the stored keys. Real OpenBao 2.7.2 and the real binary.

use std::fs;

use crate::support::drill::{Drill, RESTORE, SHARES, THRESHOLD};

#[tokio::test]
async fn a_restore_uses_the_shape_recorded_with_the_keys_not_a_mistyped_policy() {
    let mut d = Drill::single(false).await;
    let (keys_dir, snap_dir) = (d.keys_dir(), d.snap_dir());
    let policy = d.policy("policy", &d.opts());
    let (_, token) = d.snapward_init(&policy, &keys_dir).await;
    // The shape is recorded beside the keys (not a secret).
    let record = fs::read_to_string(keys_dir.join("key-shape")).expect("key-shape recorded");
    let v: serde_json::Value = serde_json::from_str(&record).expect("json");
    assert_eq!(v["shares"], SHARES);
    assert_eq!(v["threshold"], THRESHOLD);
    d.write_marker("before").await;
    d.backup(&policy, &snap_dir).await;

    // The same policy with another init shape.
    let yaml = fs::read_to_string(&policy).expect("policy");
    let typo = format!("shares: {SHARES}, threshold: {THRESHOLD}");
    assert!(yaml.contains(&typo), "{yaml}");
    let mistyped = d.path("mistyped.yaml");
    fs::write(&mistyped, yaml.replace(&typo, "shares: 5, threshold: 3")).expect("write");

    d.bao.wipe(0).await;
    let r = d.run(&mistyped).await;
    r.expect_exit(0).expect_branch("restore");
    for id in RESTORE {
        r.expect_status(id, "succeeded");
    }
    let mismatch = r.items_of("restore", "key-shape-mismatch");
    assert_eq!(mismatch.len(), 1, "{}", r.context());
    assert_eq!(mismatch[0]["storedShares"], SHARES, "{}", r.context());
    assert_eq!(mismatch[0]["policyShares"], 5, "{}", r.context());
    d.expect_data(&token, &["before"], &[]).await;
}
