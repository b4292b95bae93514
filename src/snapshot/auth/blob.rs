//! A tiny protobuf reader for go-kms-wrapping's `BlobInfo` — what OpenBao
//! writes as `SHA256SUMS.sealed` (`proto.Marshal` of the seal's
//! `Encrypt` result). From go-kms-wrapping v2 `types.proto`:
//!
//! ```text
//! message BlobInfo { bytes ciphertext = 1; bytes iv = 2; KeyInfo key_info = 5; }
//! message KeyInfo  { uint64 mechanism = 1; string key_id = 3; bytes wrapped_key = 5; }
//! ```
//!
//! The Shamir seal (an `aead.Wrapper`) fills `ciphertext` with
//! `nonce(12) ‖ AES-GCM ciphertext ‖ tag(16)` and an empty `key_info`; a real
//! 2.7.2 file is `0a <len> <ciphertext> 2a 00`.
//!
//! Decoding follows protobuf-go: fields in any order, the last occurrence of
//! a scalar wins, repeated `key_info` messages merge, unknown fields and
//! known fields with another wire type are skipped, `key_id` must be UTF-8.
//! Unlike protobuf-go it refuses the deprecated group wire types (3, 4),
//! which no OpenBao writes.
//!
//! Must never panic, allocate, or recurse more than one level, whatever the
//! input (it is fuzzed: `fuzz/fuzz_targets/sealed.rs`). It borrows from the
//! input.

/// A decoded `BlobInfo`; every field borrows from the input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlobInfo<'a> {
    /// Field 1. For the Shamir seal: `nonce ‖ ciphertext ‖ tag`.
    pub ciphertext: &'a [u8],
    /// Field 2. Unused by the Shamir seal (the nonce is in `ciphertext`).
    pub iv: &'a [u8],
    /// Field 5, if present (the Shamir seal writes an empty one).
    pub key_info: Option<KeyInfo<'a>>,
}

/// A decoded `KeyInfo`. Not covered by the AEAD tag: nothing in it is
/// authenticated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyInfo<'a> {
    pub mechanism: u64,
    pub key_id: &'a str,
    pub wrapped_key: &'a [u8],
}

/// Why bytes are not a `BlobInfo`. Offsets are into the parsed message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("it ends inside a varint at byte {offset}")]
    TruncatedVarint { offset: usize },
    #[error("the varint at byte {offset} is longer than 64 bits")]
    VarintOverflow { offset: usize },
    #[error("field number {number} at byte {offset} is out of range (1 ..= 2^29-1)")]
    FieldNumber { number: u64, offset: usize },
    #[error("wire type {wire_type} at byte {offset} is {}", if *wire_type < 6 { "a group (unsupported)" } else { "invalid" })]
    WireType { wire_type: u8, offset: usize },
    #[error("field {number} at byte {offset} claims {len} bytes, {left} are left")]
    Truncated {
        number: u32,
        offset: usize,
        len: u64,
        left: usize,
    },
    #[error("key_info.key_id is not UTF-8")]
    KeyIdNotUtf8,
}

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

/// A cursor over one message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// One field: number, and its value (a varint's value, or a LEN's bytes).
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, BlobError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(BlobError::TruncatedVarint { offset: start });
            };
            self.pos += 1;
            // the 10th byte carries bit 63 only (as protowire.ConsumeVarint)
            if i == 9 && b > 1 {
                return Err(BlobError::VarintOverflow { offset: start });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(BlobError::VarintOverflow { offset: start })
    }

    fn take(&mut self, number: u32, offset: usize, len: u64) -> Result<&'a [u8], BlobError> {
        let left = self.buf.len().saturating_sub(self.pos);
        let n = usize::try_from(len)
            .ok()
            .filter(|&n| n <= left)
            .ok_or(BlobError::Truncated {
                number,
                offset,
                len,
                left,
            })?;
        let bytes = self.buf.get(self.pos..self.pos + n).unwrap_or_default();
        self.pos += n;
        Ok(bytes)
    }

    /// The next field, or `None` at the end of the message.
    fn field(&mut self) -> Result<Option<(u32, Value<'a>)>, BlobError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let offset = self.pos;
        let tag = self.varint()?;
        let wire_type = (tag & 7) as u8;
        let number = tag >> 3;
        let number = u32::try_from(number)
            .ok()
            .filter(|&n| (1..1 << 29).contains(&n))
            .ok_or(BlobError::FieldNumber { number, offset })?;
        let value = match wire_type {
            VARINT => Value::Varint(self.varint()?),
            I64 => {
                self.take(number, offset, 8)?;
                Value::Fixed
            }
            LEN => {
                let len = self.varint()?;
                Value::Bytes(self.take(number, offset, len)?)
            }
            I32 => {
                self.take(number, offset, 4)?;
                Value::Fixed
            }
            other => {
                return Err(BlobError::WireType {
                    wire_type: other,
                    offset,
                });
            }
        };
        Ok(Some((number, value)))
    }
}

/// Decodes a `BlobInfo` (see the module docs for the rules).
pub fn parse(bytes: &[u8]) -> Result<BlobInfo<'_>, BlobError> {
    let mut blob = BlobInfo::default();
    let mut r = Reader::new(bytes);
    while let Some((number, value)) = r.field()? {
        match (number, value) {
            (1, Value::Bytes(b)) => blob.ciphertext = b,
            (2, Value::Bytes(b)) => blob.iv = b,
            (5, Value::Bytes(b)) => {
                let base = blob.key_info.unwrap_or_default();
                blob.key_info = Some(parse_key_info(b, base)?);
            }
            _ => {} // unknown, or a known number with another wire type
        }
    }
    Ok(blob)
}

/// Decodes a `KeyInfo` merged onto `base` (protobuf merges repeated
/// sub-messages field by field).
fn parse_key_info<'a>(bytes: &'a [u8], mut info: KeyInfo<'a>) -> Result<KeyInfo<'a>, BlobError> {
    let mut r = Reader::new(bytes);
    while let Some((number, value)) = r.field()? {
        match (number, value) {
            (1, Value::Varint(v)) => info.mechanism = v,
            (3, Value::Bytes(b)) => {
                info.key_id = std::str::from_utf8(b).map_err(|_| BlobError::KeyIdNotUtf8)?;
            }
            (5, Value::Bytes(b)) => info.wrapped_key = b,
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn openbao_shamir_layout() {
        let mut b = vec![0x0a, 0xb4, 0x01];
        b.extend((0..180u8).collect::<Vec<u8>>());
        b.extend([0x2a, 0x00]);
        let blob = parse(&b).unwrap();
        assert_eq!(blob.ciphertext.len(), 180);
        assert_eq!(blob.ciphertext[179], 179);
        assert_eq!(blob.iv, b"");
        assert_eq!(blob.key_info, Some(KeyInfo::default()));
    }

    #[test]
    fn every_field_and_the_rules() {
        // iv, key_info{mechanism 300, key_id "k", wrapped 2 bytes}, an unknown
        // fixed64 (field 9), field 1 twice (last wins), key_info again (merges)
        let b = [
            0x12, 0x02, 0xaa, 0xbb, // iv
            0x2a, 0x09, 0x08, 0xac, 0x02, 0x1a, 0x01, b'k', 0x2a, 0x01, 0x07, // key_info
            0x49, 1, 2, 3, 4, 5, 6, 7, 8, // field 9, I64
            0x0a, 0x01, 0x01, // ciphertext [1]
            0x0d, 1, 2, 3, 4, // field 1 as I32: skipped (wire type mismatch)
            0x0a, 0x02, 0x02, 0x03, // ciphertext [2, 3]: wins
            0x2a, 0x03, 0x1a, 0x01, b'z', // key_info: key_id "z", rest kept
        ];
        let blob = parse(&b).unwrap();
        assert_eq!(blob.ciphertext, [2, 3]);
        assert_eq!(blob.iv, [0xaa, 0xbb]);
        assert_eq!(
            blob.key_info,
            Some(KeyInfo {
                mechanism: 300,
                key_id: "z",
                wrapped_key: &[7],
            })
        );
        assert_eq!(parse(&[]).unwrap(), BlobInfo::default());
    }

    #[test]
    fn refusals() {
        use BlobError::*;
        let cases: &[(&[u8], BlobError)] = &[
            (&[0x0a], TruncatedVarint { offset: 1 }),
            (&[0x8a], TruncatedVarint { offset: 0 }),
            (
                &[0x0a, 0x05, 1, 2],
                Truncated {
                    number: 1,
                    offset: 0,
                    len: 5,
                    left: 2,
                },
            ),
            (
                &[
                    0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                Truncated {
                    number: 1,
                    offset: 0,
                    len: u64::MAX,
                    left: 0,
                },
            ),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
                VarintOverflow { offset: 1 },
            ),
            (
                &[
                    0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                ],
                VarintOverflow { offset: 1 },
            ),
            (
                &[0x02, 0x00],
                FieldNumber {
                    number: 0,
                    offset: 0,
                },
            ),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x10],
                FieldNumber {
                    number: 1 << 29,
                    offset: 0,
                },
            ),
            (
                &[0x0b],
                WireType {
                    wire_type: 3,
                    offset: 0,
                },
            ),
            (
                &[0x0e],
                WireType {
                    wire_type: 6,
                    offset: 0,
                },
            ),
            (&[0x2a, 0x03, 0x1a, 0x01, 0xff], KeyIdNotUtf8),
            (
                &[0x2a, 0x02, 0x1a, 0x05],
                Truncated {
                    number: 3,
                    offset: 0,
                    len: 5,
                    left: 0,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes).as_ref().err(), Some(want), "{bytes:02x?}");
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(blob) = parse(&bytes) {
                // whatever it returns lies inside the input
                prop_assert!(blob.ciphertext.len() <= bytes.len());
            }
        }

        #[test]
        fn ciphertext_round_trips(ct in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = Vec::new();
            b.push(0x0a);
            let mut n = ct.len() as u64;
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 { b.push(byte); break; }
                b.push(byte | 0x80);
            }
            b.extend(&ct);
            b.extend([0x2a, 0x00]);
            prop_assert_eq!(parse(&b).unwrap().ciphertext, &ct[..]);
        }
    }
}
