//! Snapshot surgery for tests: a real snapshot's entries, changed and
//! written back as OpenBao lays them out (a forged copy: raised Index,
//! recomputed sums; a flipped state.bin byte).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

/// The entries of a snapshot, in archive order.
pub fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(
        File::open(path).expect("open snapshot"),
    ));
    ar.entries()
        .expect("tar entries")
        .map(|e| {
            let mut e = e.expect("tar entry");
            let name = e.path().expect("name").to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read entry");
            (name, data)
        })
        .collect()
}

pub fn entry<'a>(es: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    &es.iter().find(|(n, _)| n == name).expect(name).1
}

pub fn entry_mut<'a>(es: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut es.iter_mut().find(|(n, _)| n == name).expect(name).1
}

/// `SHA256SUMS` recomputed for the current meta.json and state.bin.
pub fn resum(es: &mut [(String, Vec<u8>)]) {
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(entry(es, "meta.json"))),
        hex::encode(Sha256::digest(entry(es, "state.bin")))
    );
    *entry_mut(es, "SHA256SUMS") = sums.into_bytes();
}

/// A gzip'ed tar of `es` (OpenBao's layout: 0600 regular files).
pub fn write_snapshot(es: &[(String, Vec<u8>)], to: &Path) {
    let gz = flate2::write::GzEncoder::new(
        File::create(to).expect("create"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    for (name, data) in es {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, name, &data[..]).expect("append");
    }
    tar.into_inner()
        .expect("tar")
        .finish()
        .expect("gzip")
        .sync_all()
        .expect("sync");
}
