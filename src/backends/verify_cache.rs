//! A verification cache that survives runs (issue 14, item 3): the local
//! store and filesystem targets remember each verified snapshot in
//! [`FILE_NAME`] in their directory, so a steady-state run reads only the
//! new snapshot instead of the whole history.
//!
//! Stage: backends. Blocking file I/O: call from `spawn_blocking`.
//!
//! An entry is used only when the file's name, size, mtime (ns), device,
//! inode and ctime (ns) all equal what they were when it was verified. A
//! file whose contents were changed has a new ctime even when its mtime
//! was put back (`touch -d`), so it is read and verified again; `ctime`
//! cannot be set from user space. What is stored is what authenticating
//! the file needs later (the identity and the bytes of `SHA256SUMS` and
//! `SHA256SUMS.sealed`, which are in the snapshot itself): never a key.
//!
//! Only valid verdicts are remembered (an invalid file is read again next
//! run: rare, and its error stays current). A missing, unreadable or
//! corrupt cache file is logged and rebuilt, never fatal; a cache that
//! cannot be written (read-only or WORM mount) is logged and skipped.
//! `snapward list --verify` and `snapward verify` do not use it.
//!
//! Must never: hand out an entry for a file whose metadata differs from
//! the entry's, or be mistaken for a snapshot or a temp file (its name has
//! neither the `.snap` suffix nor `.partial`).

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::snapshot::{Identity, SealedSums};

/// The cache file in a store or target directory.
pub const FILE_NAME: &str = ".snapward-verified.json";
/// Its temp name while it is rewritten.
const TMP_NAME: &str = ".snapward-verified.json.tmp";
const VERSION: u32 = 1;

/// The file metadata an entry is valid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub dev: u64,
    pub ino: u64,
}

impl Stamp {
    pub fn of(m: &Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Stamp {
            size: m.len(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    stamp: Stamp,
    identity: Identity,
    /// Base64 of `SHA256SUMS`.
    sums: String,
    /// Base64 of `SHA256SUMS.sealed`.
    sealed: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    entries: BTreeMap<String, Entry>,
}

/// How a listing uses the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheUse {
    /// Look up, and write what was verified (`snapward run`).
    #[default]
    ReadWrite,
    /// Look up, never write (`snapward list`, a dry run: read-only).
    ReadOnly,
    /// Read every file, write nothing (`snapward list --verify`).
    Off,
}

/// One directory's cache, loaded once per listing.
#[derive(Debug)]
pub struct VerifyCache {
    dir: PathBuf,
    entries: BTreeMap<String, Entry>,
    /// Names seen in this listing (entries of gone files are dropped).
    seen: BTreeMap<String, ()>,
    dirty: bool,
    mode: CacheUse,
}

impl VerifyCache {
    /// Loads `dir`'s cache (nothing is read with [`CacheUse::Off`]).
    pub fn load(dir: &Path, mode: CacheUse) -> Self {
        let path = dir.join(FILE_NAME);
        if mode == CacheUse::Off {
            return VerifyCache {
                dir: dir.to_path_buf(),
                entries: BTreeMap::new(),
                seen: BTreeMap::new(),
                dirty: false,
                mode,
            };
        }
        let (entries, dirty) = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(d) if d.version == VERSION => (d.entries, false),
                Ok(d) => {
                    tracing::info!(file = %path.display(), version = d.version, "verification cache of another version; rebuilding it");
                    (BTreeMap::new(), true)
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "verification cache is corrupt; ignoring it and rebuilding it (every snapshot is read once)");
                    (BTreeMap::new(), true)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => (BTreeMap::new(), false),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "verification cache cannot be read; ignoring it and rebuilding it");
                (BTreeMap::new(), true)
            }
        };
        VerifyCache {
            dir: dir.to_path_buf(),
            entries,
            seen: BTreeMap::new(),
            dirty,
            mode,
        }
    }

    /// The remembered verdict for `name`, if its metadata is unchanged.
    pub fn get(&mut self, name: &str, meta: &Metadata) -> Option<SealedSums> {
        self.seen.insert(name.to_string(), ());
        if self.mode == CacheUse::Off {
            return None;
        }
        let Some(e) = self.entries.get(name) else {
            tracing::debug!(
                file = name,
                "verification cache: no entry; verifying the file"
            );
            return None;
        };
        if e.stamp != Stamp::of(meta) {
            tracing::debug!(
                file = name,
                "verification cache: file changed; verifying again"
            );
            return None;
        }
        let (Ok(sums), Ok(sealed)) = (B64.decode(&e.sums), B64.decode(&e.sealed)) else {
            return None;
        };
        tracing::debug!(file = name, "verification cache: unchanged; not read");
        Some(SealedSums {
            identity: e.identity.clone(),
            sums,
            sealed,
        })
    }

    /// Remembers a valid verdict for `name` as it is now (`meta` taken
    /// before the read: a file changed during the read has another ctime
    /// next time and is read again).
    pub fn put(&mut self, name: &str, meta: &Metadata, s: &SealedSums) {
        self.seen.insert(name.to_string(), ());
        self.entries.insert(
            name.to_string(),
            Entry {
                stamp: Stamp::of(meta),
                identity: s.identity.clone(),
                sums: B64.encode(&s.sums),
                sealed: B64.encode(&s.sealed),
            },
        );
        self.dirty = true;
    }

    /// Forgets `name` (it did not verify, or was deleted).
    pub fn forget(&mut self, name: &str) {
        if self.entries.remove(name).is_some() {
            self.dirty = true;
        }
    }

    /// Writes the cache when it changed: entries of files not seen in this
    /// listing are dropped; temp file, fsync, rename, fsync of the
    /// directory. A failure is logged, never returned: the cache only
    /// saves work.
    pub fn save(mut self) {
        if self.mode != CacheUse::ReadWrite {
            return;
        }
        let before = self.entries.len();
        let seen = std::mem::take(&mut self.seen);
        self.entries.retain(|k, _| seen.contains_key(k));
        if !self.dirty && self.entries.len() == before {
            return;
        }
        if let Err(e) = self.write() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the verification cache; the next run reads every snapshot again");
        }
    }

    /// [`Self::save`] without dropping entries of files not looked up
    /// (one new entry after a commit, not a whole listing).
    pub fn save_keeping_unseen(self) {
        if self.mode != CacheUse::ReadWrite || !self.dirty {
            return;
        }
        if let Err(e) = self.write() {
            tracing::warn!(dir = %self.dir.display(), error = %e, "could not write the verification cache; the next run reads every snapshot again");
        }
    }

    fn write(&self) -> io::Result<()> {
        let tmp = self.dir.join(TMP_NAME);
        let _ = fs::remove_file(&tmp);
        let body = serde_json::to_vec(&OnDisk {
            version: VERSION,
            entries: self.entries.clone(),
        })
        .map_err(io::Error::other)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let written = f.write_all(&body).and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, self.dir.join(FILE_NAME))) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums() -> SealedSums {
        SealedSums {
            identity: Identity {
                index: 7,
                term: 2,
                version: 1,
                state_size: 10,
                file_size: 5,
                sha256: "ab".repeat(32),
            },
            sums: b"sums".to_vec(),
            sealed: b"sealed".to_vec(),
        }
    }

    #[test]
    fn an_entry_is_used_only_while_size_mtime_inode_and_ctime_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.snap");
        fs::write(&f, b"hello").unwrap();
        let mut c = VerifyCache::load(dir.path(), CacheUse::ReadWrite);
        c.put("a.snap", &fs::metadata(&f).unwrap(), &sums());
        c.save();
        let mut c = VerifyCache::load(dir.path(), CacheUse::ReadWrite);
        let hit = c.get("a.snap", &fs::metadata(&f).unwrap()).expect("a hit");
        assert_eq!(hit.identity, sums().identity);
        assert_eq!((hit.sums, hit.sealed), (sums().sums, sums().sealed));
        // Same length, mtime put back: ctime still changed.
        let m0 = fs::metadata(&f).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(&f, b"HELLO").unwrap();
        let t = fs::File::options().write(true).open(&f).unwrap();
        t.set_modified(m0.modified().unwrap()).unwrap();
        let m1 = fs::metadata(&f).unwrap();
        assert_eq!(Stamp::of(&m1).mtime_ns, Stamp::of(&m0).mtime_ns);
        assert!(c.get("a.snap", &m1).is_none(), "a changed file is a miss");
        assert!(
            VerifyCache::load(dir.path(), CacheUse::Off)
                .get("a.snap", &m0)
                .is_none(),
            "a disabled cache never answers"
        );
    }

    #[test]
    fn a_corrupt_cache_is_ignored_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"{not json").unwrap();
        let f = dir.path().join("a.snap");
        fs::write(&f, b"hello").unwrap();
        let mut c = VerifyCache::load(dir.path(), CacheUse::ReadWrite);
        let m = fs::metadata(&f).unwrap();
        assert!(c.get("a.snap", &m).is_none());
        c.put("a.snap", &m, &sums());
        c.save();
        assert!(
            VerifyCache::load(dir.path(), CacheUse::ReadWrite)
                .get("a.snap", &m)
                .is_some()
        );
        assert!(!dir.path().join(TMP_NAME).exists(), "no temp file left");
    }
}
