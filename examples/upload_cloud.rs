//! Upload throughput of snapward's targets (bench/upload-cloud.sh): puts
//! one file of SIZE_MIB random bytes ROUNDS times to each given store,
//! through the same `Target::put` the `upload:<target>` action runs
//! (create-only upload + read-back confirmation), and prints MiB/s.
//!
//!   upload_cloud SIZE_MIB ROUNDS [azure=ENDPOINT,KEYFILE] [s3=ENDPOINT,AKFILE,SKFILE]
//!
//! The Azure container `bench` (created here, Shared Key signed) and the S3
//! bucket `bench` (created by the script) are used.

#![allow(clippy::expect_used, clippy::indexing_slicing, clippy::panic)] // a bench tool: it stops on any failure

use std::process::ExitCode;
use std::time::Instant;

use base64::Engine as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest, Sha256};
use snapward::backends::{Target, UploadTag, snapshot_name};
use snapward::policy::model;
use snapward::snapshot::Identity;
use tokio_util::sync::CancellationToken;

const ACCOUNT: &str = "devstoreaccount1";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(size), Some(rounds)) = (
        args.first().and_then(|a| a.parse::<usize>().ok()),
        args.get(1).and_then(|a| a.parse::<usize>().ok()),
    ) else {
        eprintln!(
            "usage: upload_cloud SIZE_MIB ROUNDS [azure=ENDPOINT,KEYFILE] [s3=ENDPOINT,AKFILE,SKFILE]"
        );
        return ExitCode::from(2);
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bench.snap");
    let mut bytes = vec![0u8; size * 1024 * 1024];
    let mut seed = Sha256::digest(b"snapward bench");
    for chunk in bytes.chunks_mut(32) {
        seed = Sha256::digest(seed);
        let n = chunk.len();
        chunk.copy_from_slice(&seed[..n]);
    }
    std::fs::write(&file, &bytes).expect("write bench file");
    let identity = Identity {
        index: 1,
        term: 1,
        version: 1,
        state_size: 0,
        file_size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
    };
    drop(bytes);
    let mut targets: Vec<(String, Box<dyn Target>)> = Vec::new();
    for a in &args[2..] {
        if let Some(rest) = a.strip_prefix("azure=") {
            let (endpoint, key_file) = rest.split_once(',').expect("azure=ENDPOINT,KEYFILE");
            let key = std::fs::read_to_string(key_file).expect("key file");
            create_container(endpoint, key.trim(), "bench").await;
            let cfg = model::AzureTarget {
                account: ACCOUNT.to_owned(),
                container: "bench".to_owned(),
                prefix: String::new(),
                endpoint: Some(endpoint.to_owned()),
                credentials: Some(model::AzureCredentials {
                    account_key_file: Some(key_file.to_owned()),
                    sas_token_file: None,
                }),
            };
            let t = snapward::backends::azure::target("azurite", &cfg, "openbao-")
                .await
                .expect("azure target");
            targets.push(("azurite (object_store)".to_owned(), Box::new(t)));
        } else if let Some(rest) = a.strip_prefix("s3=") {
            let parts: Vec<&str> = rest.split(',').collect();
            let cfg = model::S3Target {
                endpoint: Some(parts[0].to_owned()),
                region: "us-east-1".to_owned(),
                bucket: "bench".to_owned(),
                prefix: String::new(),
                path_style: true,
                credentials: Some(model::S3Credentials {
                    access_key_id_file: parts[1].to_owned(),
                    secret_access_key_file: parts[2].to_owned(),
                    session_token_file: None,
                }),
                server_side_encryption: None,
                object_lock: None,
                timeouts: None,
                stream: true,
            };
            let settings = snapward::policy::S3Settings::try_from(&cfg).expect("s3 settings");
            let t = snapward::backends::s3::S3Target::new("s3s-fs", &settings, "openbao-")
                .await
                .expect("s3 target");
            targets.push(("s3s-fs (aws-sdk-s3)".to_owned(), Box::new(t)));
        }
    }
    let mib = size as f64;
    println!("upload of {size} MiB, {rounds} rounds (put + read-back confirmation):");
    for (label, t) in &targets {
        let mut rates = Vec::new();
        for r in 0..rounds {
            let when = jiff::Timestamp::from_second(1_800_000_000 + r as i64).expect("time");
            let name = snapshot_name("openbao-", when);
            let start = Instant::now();
            t.put(
                &file,
                &name,
                &identity,
                &UploadTag::default(),
                &CancellationToken::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{label}: put {name}: {e}"));
            rates.push(mib / start.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        println!(
            "  {label:<24} best {:>7.1} MiB/s  median {:>7.1} MiB/s  worst {:>7.1} MiB/s",
            rates[rates.len() - 1],
            rates[rates.len() / 2],
            rates[0]
        );
    }
    ExitCode::SUCCESS
}

async fn create_container(endpoint: &str, key: &str, container: &str) {
    let date = jiff::Timestamp::now()
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:2021-08-06\n/{ACCOUNT}/{ACCOUNT}/{container}\nrestype:container"
    );
    let k = base64::engine::general_purpose::STANDARD
        .decode(key)
        .expect("base64 key");
    let mut m = Hmac::<Sha256>::new_from_slice(&k).expect("hmac");
    m.update(to_sign.as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    let res = reqwest::Client::new()
        .put(format!("{endpoint}/{container}?restype=container"))
        .header("x-ms-date", &date)
        .header("x-ms-version", "2021-08-06")
        .header("content-length", "0")
        .header("authorization", format!("SharedKey {ACCOUNT}:{sig}"))
        .send()
        .await
        .expect("create container");
    assert!(
        res.status().is_success() || res.status().as_u16() == 409,
        "create container: {}",
        res.status()
    );
}
