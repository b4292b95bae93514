//! Writes a synthetic but valid OpenBao-shaped raft snapshot for benchmarks:
//! gzip (stored blocks, as OpenBao writes them) of a ustar archive holding
//! meta.json, a pseudo-random state.bin of the requested size, SHA256SUMS
//! and a dummy SHA256SUMS.sealed. Streams; memory stays small.
//!
//!     cargo run --release --example make_big_snapshot -- OUT.snap SIZE_MIB

// A benchmark tool, not library code: an index bug here fails loudly.
#![allow(clippy::indexing_slicing)]

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::process::ExitCode;

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// xorshift64* bytes: incompressible like the encrypted state.bin, and fast.
struct Noise(u64);

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(buf.len())
    }
}

/// Passes bytes through while hashing them.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

fn header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o600);
    h.set_mtime(1_700_000_000);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn run(out: &str, mib: u64) -> io::Result<()> {
    let size = mib << 20;
    let meta = format!(
        r#"{{"Version":1,"ID":"bolt-snapshot","Index":{},"Term":7,"Peers":null,"Configuration":{{"Servers":[{{"Suffrage":0,"ID":"n0","Address":"127.0.0.1:8201"}}]}},"ConfigurationIndex":1,"Size":{size}}}"#,
        1000 + mib
    );
    let gz = GzEncoder::new(
        BufWriter::with_capacity(1 << 20, File::create(out)?),
        Compression::none(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.append(&header("meta.json", meta.len() as u64)?, meta.as_bytes())?;
    let mut state = Hashing {
        inner: Noise(0x9e37_79b9_7f4a_7c15).take(size),
        hash: Sha256::new(),
    };
    tar.append(&header("state.bin", size)?, &mut state)?;
    let sums = format!(
        "{}  meta.json\n{}  state.bin\n",
        hex::encode(Sha256::digest(meta.as_bytes())),
        hex::encode(state.hash.finalize())
    );
    tar.append(&header("SHA256SUMS", sums.len() as u64)?, sums.as_bytes())?;
    let sealed = [0x5au8; 185];
    tar.append(
        &header("SHA256SUMS.sealed", sealed.len() as u64)?,
        &sealed[..],
    )?;
    tar.into_inner()?.finish()?.flush()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(out), Some(Ok(mib))) = (args.first(), args.get(1).map(|s| s.parse::<u64>())) else {
        eprintln!("usage: make_big_snapshot OUT.snap SIZE_MIB");
        return ExitCode::from(2);
    };
    match run(out, mib) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("make_big_snapshot: {e}");
            ExitCode::FAILURE
        }
    }
}
