//! The verification cache that survives runs (`.snapward-verified.json` in
//! the local store and in a filesystem target's directory), on real files
//! holding a real OpenBao snapshot: a steady-state listing reads only the
//! new snapshot, a changed file is read again and refused, `list --verify`
//! reads everything, a corrupt cache is rebuilt.
//!
//! Which files were read is observed through the binary's debug log lines
//! (`verification cache: unchanged; not read` / `...; verifying the
//! file`): as root (the test environment) a chmod 000 file is still
//! readable, so unreadability cannot prove it.

use std::path::{Path, PathBuf};

use snapward::backends::Target;
use snapward::backends::filesystem::FsTarget;
use snapward::backends::local::LocalStore;
use snapward::backends::verify_cache::FILE_NAME;

use crate::support::fixture_snapshot;

const OLD: [&str; 3] = [
    "openbao-20261120-020000.snap",
    "openbao-20261121-020000.snap",
    "openbao-20261122-020000.snap",
];
const NEW: &str = "openbao-20261123-020000.snap";

struct Stores {
    _dir: tempfile::TempDir,
    local: PathBuf,
    nfs: PathBuf,
    policy: PathBuf,
}

fn stores() -> Stores {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("local");
    let nfs = dir.path().join("nfs");
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&nfs).unwrap();
    for name in OLD {
        std::fs::copy(fixture_snapshot(), local.join(name)).unwrap();
        std::fs::copy(fixture_snapshot(), nfs.join(name)).unwrap();
    }
    let policy = dir.path().join("p.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: snapward.dev/v1alpha1\nkind: SnapshotPolicy\nmetadata: {{name: l}}\nspec:\n  cluster: {{nodes: [{{address: \"http://127.0.0.1:1\"}}]}}\n  local: {{path: {}, retention: {{keepLast: 10}}}}\n  targets:\n    - {{name: nfs, filesystem: {{path: {}}}, retention: {{keepLast: 10}}}}\n",
            local.display(),
            nfs.display()
        ),
    )
    .unwrap();
    Stores {
        _dir: dir,
        local,
        nfs,
        policy,
    }
}

fn local_store(dir: &Path) -> LocalStore {
    LocalStore::new(dir, "openbao-", 0o640)
}

fn fs_target(dir: &Path) -> FsTarget {
    let cfg = serde_json::from_value(serde_json::json!({ "path": dir })).unwrap();
    FsTarget::new("nfs", &cfg, "openbao-", 0o640)
}

/// What a run does to both stores' caches: list (and write the cache).
fn warm(s: &Stores) {
    let inv = local_store(&s.local).inventory().unwrap();
    assert!(inv.iter().all(|x| x.identity.is_some()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed = rt.block_on(fs_target(&s.nfs).list()).unwrap();
    assert!(listed.iter().all(|x| x.sha256.is_some()));
    assert!(s.local.join(FILE_NAME).is_file() && s.nfs.join(FILE_NAME).is_file());
}

/// `snapward list` (plus `extra` flags) with debug logs: the JSON stores,
/// and per store directory how many files were skipped and read.
struct Listed {
    stores: Vec<serde_json::Value>,
    log: String,
}

impl Listed {
    fn count(&self, what: &str) -> usize {
        self.log.lines().filter(|l| l.contains(what)).count()
    }
    fn skipped(&self) -> usize {
        self.count("unchanged; not read")
    }
    fn read(&self) -> usize {
        self.count("no entry; verifying the file") + self.count("file changed; verifying again")
    }
    fn valid(&self, store: usize, name: &str) -> bool {
        self.stores[store]["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))["valid"]
            == true
    }
}

fn list(s: &Stores, extra: &[&str]) -> Listed {
    let out = crate::support::cmd::snapward()
        .env("SNAPWARD_LOG", "snapward=debug")
        .args(["--log-format", "json", "list", "--format", "json"])
        .args(extra)
        .arg("-f")
        .arg(&s.policy)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{log}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Listed {
        stores: v.as_array().unwrap().clone(),
        log,
    }
}

#[test]
fn a_steady_state_listing_reads_only_the_new_snapshot() {
    let s = stores();
    warm(&s);
    std::fs::copy(fixture_snapshot(), s.local.join(NEW)).unwrap();
    std::fs::copy(fixture_snapshot(), s.nfs.join(NEW)).unwrap();
    let before = std::fs::read(s.local.join(FILE_NAME)).unwrap();
    let l = list(&s, &[]);
    assert_eq!(
        l.skipped(),
        2 * OLD.len(),
        "old snapshots not read: {}",
        l.log
    );
    assert_eq!(l.read(), 2, "only the new one, in each store: {}", l.log);
    assert!(l.valid(0, NEW) && l.valid(1, NEW));
    assert!(OLD.iter().all(|n| l.valid(0, n) && l.valid(1, n)));
    assert_eq!(
        std::fs::read(s.local.join(FILE_NAME)).unwrap(),
        before,
        "list is read-only: the cache is not rewritten"
    );
}

#[test]
fn a_file_changed_after_it_was_cached_is_read_again_and_refused() {
    let s = stores();
    warm(&s);
    for dir in [&s.local, &s.nfs] {
        // Same name, contents cut, mtime put back: only ctime betrays it.
        let path = dir.join(OLD[1]);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let f = std::fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(mtime).unwrap();
    }
    let l = list(&s, &[]);
    assert_eq!(l.read(), 2, "the changed file, in each store: {}", l.log);
    assert!(!l.valid(0, OLD[1]), "local copy refused");
    assert!(!l.valid(1, OLD[1]), "target copy refused");
    assert!(l.valid(0, OLD[0]) && l.valid(1, OLD[2]));
}

#[test]
fn list_verify_reads_every_file_and_catches_what_a_forged_cache_would_pass() {
    let s = stores();
    warm(&s);
    // Tamper with a file, then make its cache entry match the tampered
    // file (what a filesystem with unreliable ctime, or someone editing
    // the cache, would do): a cached listing trusts it, --verify does not.
    let path = s.local.join(OLD[0]);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let meta = std::fs::metadata(&path).unwrap();
    let cache_path = s.local.join(FILE_NAME);
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_path).unwrap()).unwrap();
    let stamp = serde_json::to_value(snapward::backends::verify_cache::Stamp::of(&meta)).unwrap();
    cache["entries"][OLD[0]]["stamp"] = stamp;
    std::fs::write(&cache_path, serde_json::to_vec(&cache).unwrap()).unwrap();

    let cached = list(&s, &[]);
    assert!(
        cached.valid(0, OLD[0]),
        "the forged entry is used by a plain list (the premise of this test)"
    );
    let full = list(&s, &["--verify"]);
    assert_eq!(full.skipped(), 0, "--verify skips nothing: {}", full.log);
    assert!(!full.valid(0, OLD[0]), "--verify reads and refuses it");
    assert!(full.valid(0, OLD[1]) && full.valid(1, OLD[0]));
}

#[test]
fn a_corrupt_cache_is_ignored_and_rebuilt() {
    let s = stores();
    std::fs::write(s.local.join(FILE_NAME), b"{\"version\": 1, \"entr").unwrap();
    std::fs::write(s.nfs.join(FILE_NAME), b"\x00\xff not json").unwrap();
    let l = list(&s, &[]);
    assert_eq!(l.read(), 2 * OLD.len(), "everything read: {}", l.log);
    assert!(l.log.contains("verification cache is corrupt"), "{}", l.log);
    assert!(OLD.iter().all(|n| l.valid(0, n) && l.valid(1, n)));
    // A run (read-write) rewrites it; the next listing reads nothing.
    warm(&s);
    let again = list(&s, &[]);
    assert_eq!(again.read(), 0, "{}", again.log);
    assert_eq!(again.skipped(), 2 * OLD.len());
}

#[test]
fn the_cache_file_is_never_listed_as_a_snapshot_or_cleaned_up_as_a_temp_file() {
    let s = stores();
    warm(&s);
    let inv = local_store(&s.local).inventory().unwrap();
    assert_eq!(inv.len(), OLD.len());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let t = fs_target(&s.nfs);
    assert_eq!(rt.block_on(t.list()).unwrap().len(), OLD.len());
    let cleaned = rt
        .block_on(t.cleanup_older_than(std::time::Duration::ZERO))
        .unwrap();
    assert!(cleaned.removed.is_empty(), "{:?}", cleaned.removed);
    assert!(s.nfs.join(FILE_NAME).is_file());
    assert!(
        local_store(&s.local)
            .remove_stale_partials()
            .unwrap()
            .is_empty()
    );
}
