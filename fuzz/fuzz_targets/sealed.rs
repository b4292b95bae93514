//! `SHA256SUMS.sealed` on arbitrary bytes: the BlobInfo reader and offline
//! authentication never panic, and under a key the input does not choose
//! nothing is authentic (that would be a GCM forgery). The first byte picks
//! the mode; the rest is the sealed file and, in two modes, the shares too.
#![no_main]
use libfuzzer_sys::fuzz_target;
use snapward::secret::Secret;
use snapward::snapshot::auth::{self, Authenticity};

const SUMS: &[u8] = b"4392c52f24296e1958679de44ee7a34e801f1ef10d3351380d11f8167cf5348e  meta.json\n\
4392c52f24296e1958679de44ee7a34e801f1ef10d3351380d11f8167cf5348e  state.bin\n";

fuzz_target!(|data: &[u8]| {
    if let Ok(blob) = auth::blob::parse(data) {
        assert!(blob.ciphertext.len() <= data.len());
        assert!(blob.iv.len() <= data.len());
    }
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // a fixed key
        0 => {
            let v = auth::authenticate_with_key(rest, SUMS, &[7u8; 32]);
            assert!(!matches!(v, Ok(Authenticity::Authentic)));
        }
        1 => {
            let v = auth::authenticate_with_key(rest, rest, &[7u8; 16]);
            assert!(!matches!(v, Ok(Authenticity::Authentic)));
        }
        // raw shares cut from the input, the sealed file after them
        2 => {
            let (shares, sealed) = rest.split_at(rest.len().min(66));
            let (a, b) = shares.split_at(shares.len() / 2);
            let _ = auth::authenticate_raw(sealed, SUMS, &[a, b]);
            let _ = auth::authenticate_raw(sealed, SUMS, &[shares]);
        }
        // stored shares: arbitrary text, decoded as sys/unseal does
        _ => {
            let text = String::from_utf8_lossy(rest).into_owned();
            let mid = (0..=text.len() / 2)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            let (a, b) = text.split_at(mid);
            let _ = auth::authenticate(rest, SUMS, &[Secret::new(a), Secret::new(b)]);
        }
    }
});
