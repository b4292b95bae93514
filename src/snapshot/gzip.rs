//! Stage: snapshot verification, layer 1 — strict gzip framing (RFC 1952).
//!
//! [`Gunzip`] inflates one gzip stream (one or more concatenated members) and
//! checks what a lenient reader skips: every member's header, its CRC32 and
//! ISIZE trailer, and that nothing but another member follows a member. It
//! reports `Ok(0)` only after all of that held, so reading it to EOF *is* the
//! trailer check. Errors travel through `Read` as tagged [`VerifyError`]s.
//!
//! Must never buffer more than the inflate window and the caller's buffer,
//! allocate from header fields (names and extra fields are skipped, not
//! stored), or panic on input.

use std::io::{self, BufRead, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

use super::error::{Layer, VerifyError};

const ID1: u8 = 0x1f;
const ID2: u8 = 0x8b;
const CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first member's header.
    Start,
    Body,
    Done,
}

pub(crate) struct Gunzip<B> {
    src: B,
    layer: Layer,
    state: State,
    inflate: Decompress,
    crc: Crc,
}

impl<B: BufRead> Gunzip<B> {
    pub(crate) fn new(src: B, layer: Layer) -> Self {
        Gunzip {
            src,
            layer,
            state: State::Start,
            inflate: Decompress::new(false),
            crc: Crc::new(),
        }
    }

    fn truncated(&self, detail: &str) -> io::Error {
        VerifyError::Truncated {
            layer: self.layer,
            detail: detail.to_owned(),
        }
        .into_io()
    }

    fn structure(&self, detail: String) -> io::Error {
        VerifyError::GzipStructure {
            layer: self.layer,
            detail,
        }
        .into_io()
    }

    /// The stream does not start with the gzip magic where a member must start.
    fn bad_magic(&self, first: bool, found: String) -> io::Error {
        if first && self.layer == Layer::Outer {
            VerifyError::NotGzip { found }.into_io()
        } else if first {
            self.structure(format!("it starts with {found}, not 1f 8b"))
        } else {
            VerifyError::TrailingGzipData { layer: self.layer }.into_io()
        }
    }

    /// One byte of a header or trailer; `None` at end of input.
    fn next_byte(&mut self) -> io::Result<Option<u8>> {
        let b = match self.src.fill_buf()?.first() {
            Some(b) => *b,
            None => return Ok(None),
        };
        self.src.consume(1);
        Ok(Some(b))
    }

    /// A header byte, also fed to the header CRC; end of input is truncation.
    fn header_byte(&mut self, hcrc: &mut Crc) -> io::Result<u8> {
        match self.next_byte()? {
            Some(b) => {
                hcrc.update(&[b]);
                Ok(b)
            }
            None => Err(self.truncated("inside a gzip header")),
        }
    }

    /// Parses a member header. `first` is true for the stream's first member.
    fn read_header(&mut self, first: bool) -> io::Result<()> {
        let mut hcrc = Crc::new();
        let id1 = match self.next_byte()? {
            Some(b) => b,
            None if first && self.layer == Layer::Outer => {
                return Err(VerifyError::EmptyFile.into_io());
            }
            None => return Err(self.truncated("before the gzip header")),
        };
        if id1 != ID1 {
            return Err(self.bad_magic(first, format!("{id1:02x}")));
        }
        hcrc.update(&[id1]);
        let id2 = match self.next_byte()? {
            Some(b) => b,
            None if first => return Err(self.truncated("inside the gzip header")),
            None => return Err(VerifyError::TrailingGzipData { layer: self.layer }.into_io()),
        };
        if id2 != ID2 {
            return Err(self.bad_magic(first, format!("{id1:02x} {id2:02x}")));
        }
        hcrc.update(&[id2]);
        let cm = self.header_byte(&mut hcrc)?;
        if cm != CM_DEFLATE {
            return Err(self.structure(format!(
                "compression method {cm}, gzip defines only 8 (deflate)"
            )));
        }
        let flg = self.header_byte(&mut hcrc)?;
        if flg & FRESERVED != 0 {
            return Err(self.structure(format!("reserved header flags set ({flg:#04x})")));
        }
        // MTIME (4), XFL, OS
        for _ in 0..6 {
            self.header_byte(&mut hcrc)?;
        }
        if flg & FEXTRA != 0 {
            let lo = self.header_byte(&mut hcrc)?;
            let hi = self.header_byte(&mut hcrc)?;
            let xlen = u16::from_le_bytes([lo, hi]);
            for _ in 0..xlen {
                self.header_byte(&mut hcrc)?;
            }
        }
        for flag in [FNAME, FCOMMENT] {
            if flg & flag != 0 {
                while self.header_byte(&mut hcrc)? != 0 {}
            }
        }
        if flg & FHCRC != 0 {
            let expected = (hcrc.sum() & 0xffff) as u16;
            let lo = self.header_byte(&mut hcrc)?;
            let hi = self.header_byte(&mut hcrc)?;
            let listed = u16::from_le_bytes([lo, hi]);
            if listed != expected {
                return Err(self.structure(format!(
                    "header CRC16 is {listed:04x}, the header hashes to {expected:04x}"
                )));
            }
        }
        self.inflate.reset(false);
        self.crc.reset();
        self.state = State::Body;
        Ok(())
    }

    /// Reads and checks the 8-byte trailer, then looks for another member.
    fn finish_member(&mut self) -> io::Result<()> {
        let mut trailer = [0u8; 8];
        for slot in trailer.iter_mut() {
            *slot = match self.next_byte()? {
                Some(b) => b,
                None => return Err(self.truncated("inside the gzip trailer (CRC32 and size)")),
            };
        }
        let listed_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
        let listed_size = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        let crc = self.crc.sum();
        if listed_crc != crc {
            return Err(VerifyError::GzipTrailer {
                layer: self.layer,
                detail: format!("the data has CRC32 {crc:08x}, the trailer says {listed_crc:08x}"),
            }
            .into_io());
        }
        let size = self.crc.amount();
        if listed_size != size {
            let total = self.inflate.total_out();
            let detail = if total > u64::from(u32::MAX) {
                format!(
                    "the data is {total} bytes ({size} mod 2^32), the trailer says {listed_size}"
                )
            } else {
                format!("the data is {size} bytes, the trailer says {listed_size}")
            };
            return Err(VerifyError::GzipTrailer {
                layer: self.layer,
                detail,
            }
            .into_io());
        }
        if self.src.fill_buf()?.is_empty() {
            self.state = State::Done;
        } else {
            self.read_header(false)?;
        }
        Ok(())
    }
}

impl<B: BufRead> Read for Gunzip<B> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Start => self.read_header(true)?,
                State::Body => {
                    if out.is_empty() {
                        return Ok(0);
                    }
                    let input = self.src.fill_buf()?;
                    let eof = input.is_empty();
                    let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
                    let status = self.inflate.decompress(input, out, FlushDecompress::None);
                    let consumed = (self.inflate.total_in() - in0) as usize;
                    let produced = (self.inflate.total_out() - out0) as usize;
                    self.src.consume(consumed);
                    let status = match status {
                        Ok(s) => s,
                        Err(e) => return Err(self.structure(format!("bad deflate data: {e}"))),
                    };
                    let produced_slice = out.get(..produced).unwrap_or(out);
                    self.crc.update(produced_slice);
                    if status == Status::StreamEnd {
                        self.finish_member()?;
                        if produced > 0 {
                            return Ok(produced);
                        }
                        continue;
                    }
                    if produced > 0 {
                        return Ok(produced);
                    }
                    if eof {
                        return Err(self.truncated("inside the compressed data"));
                    }
                    if consumed == 0 {
                        return Err(self.structure("the deflate data makes no progress".into()));
                    }
                }
            }
        }
    }
}
