//! The sealed file format: a file cut into blocks of [`BLOCK`] bytes, each
//! encrypted and authenticated on its own with XChaCha20-Poly1305, so that
//! any byte range is read by opening only the blocks it touches.
//!
//! Layout: a 32-byte header (magic `QSEALED1`, a random 16-byte file id, the
//! block size as u32 LE, 4 zero bytes), then the blocks, each its ciphertext
//! followed by its 16-byte tag. The last block may be short or empty (an
//! empty file is one empty block), so the plain length follows from the
//! sealed length alone. Block `i`'s nonce is the file id then `i` (u64 LE);
//! its associated data is the header and a byte saying whether it is the
//! last block, so blocks cannot be reordered, moved between files, or cut
//! from the end unnoticed. A file id is drawn afresh for every file written,
//! so no nonce is ever used twice under one key.

use std::ops::Range;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};
use rand::RngCore;

/// Plain bytes per block.
pub const BLOCK: usize = 16 * 1024;
/// Bytes of the header.
pub const HEADER_LEN: usize = 32;
/// Bytes of each block's authentication tag.
pub const TAG_LEN: usize = 16;
const MAGIC: &[u8; 8] = b"QSEALED1";
const SEALED_BLOCK: u64 = (BLOCK + TAG_LEN) as u64;

/// Why sealed bytes could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes do not start with a sealed header.
    #[error("not an encrypted Quarry file")]
    NotSealed,
    /// The length cannot be that of a sealed file (cut short).
    #[error("length {0} is not that of a whole encrypted file")]
    BadLength(u64),
    /// A block failed authentication: wrong key, or changed bytes.
    #[error("block {0} failed authentication")]
    Tampered(u64),
}

/// The cipher of one library key.
pub(crate) fn cipher(key: &[u8; 32]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

/// A file's header: its id and block size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    id: [u8; 16],
}

impl Header {
    /// A header with a fresh random file id.
    pub fn fresh() -> Header {
        let mut id = [0u8; 16];
        rand::rng().fill_bytes(&mut id);
        Header { id }
    }

    /// The header's bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..24].copy_from_slice(&self.id);
        b[24..28].copy_from_slice(&(BLOCK as u32).to_le_bytes());
        b
    }

    /// Parse a header (the first [`HEADER_LEN`] bytes of a sealed file).
    pub fn parse(bytes: &[u8]) -> Result<Header, FormatError> {
        if bytes.len() < HEADER_LEN
            || &bytes[..8] != MAGIC
            || bytes[24..28] != (BLOCK as u32).to_le_bytes()
        {
            return Err(FormatError::NotSealed);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[8..24]);
        Ok(Header { id })
    }

    fn nonce(&self, block: u64) -> XNonce {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(&self.id);
        n[16..].copy_from_slice(&block.to_le_bytes());
        n.into()
    }

    fn aad(&self, last: bool) -> [u8; HEADER_LEN + 1] {
        let mut a = [0u8; HEADER_LEN + 1];
        a[..HEADER_LEN].copy_from_slice(&self.to_bytes());
        a[HEADER_LEN] = last as u8;
        a
    }
}

/// The sealed length of `plain` plain bytes.
pub fn sealed_len(plain: u64) -> u64 {
    let full = plain / BLOCK as u64;
    let rem = plain % BLOCK as u64;
    let blocks = if rem == 0 && full > 0 { full } else { full + 1 };
    HEADER_LEN as u64 + plain + blocks * TAG_LEN as u64
}

/// The plain length of a sealed file of `sealed` bytes.
pub fn plain_len(sealed: u64) -> Result<u64, FormatError> {
    let body = sealed
        .checked_sub(HEADER_LEN as u64)
        .ok_or(FormatError::BadLength(sealed))?;
    let full = body / SEALED_BLOCK;
    let rem = body % SEALED_BLOCK;
    match rem {
        0 if full > 0 => Ok(full * BLOCK as u64),
        r if r >= TAG_LEN as u64 => Ok(full * BLOCK as u64 + r - TAG_LEN as u64),
        _ => Err(FormatError::BadLength(sealed)),
    }
}

/// Seal `plain` whole.
pub fn seal(cipher: &XChaCha20Poly1305, plain: &[u8]) -> Vec<u8> {
    let mut sealer = Sealer::new(cipher.clone());
    let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
    sealer.push(plain, &mut out);
    sealer.finish(&mut out);
    out
}

/// One record of a sealed log: `plain` sealed whole, in base64 (no newline),
/// so a log stays one line per record and an append stays one write.
pub fn seal_line(cipher: &XChaCha20Poly1305, plain: &[u8]) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD
        .encode(seal(cipher, plain))
        .into_bytes()
}

/// The plain bytes of one sealed log line; `None` when it does not open
/// (torn by a crash, changed, plain, or sealed with another key).
pub fn open_line(cipher: &XChaCha20Poly1305, line: &[u8]) -> Option<Vec<u8>> {
    use base64::Engine;
    let sealed = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(line)
        .ok()?;
    unseal(cipher, &sealed).ok()
}

/// The non-empty lines of a log file's bytes.
pub fn log_lines(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty() && *l != b"\r")
}

/// Open a whole sealed file.
pub fn unseal(cipher: &XChaCha20Poly1305, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
    let opener = Opener::new(cipher, sealed, sealed.len() as u64)?;
    let len = opener.plain_len();
    opener.open(0..len, &sealed[HEADER_LEN..])
}

/// Seals a stream of bytes block by block.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    header: Header,
    buf: Vec<u8>,
    next: u64,
}

impl Sealer {
    /// A sealer for one new file.
    pub fn new(cipher: XChaCha20Poly1305) -> Sealer {
        Sealer {
            cipher,
            header: Header::fresh(),
            buf: Vec::with_capacity(BLOCK),
            next: 0,
        }
    }

    /// Take `data`, appending to `out` the header (first) and every block
    /// known not to be the last.
    pub fn push(&mut self, mut data: &[u8], out: &mut Vec<u8>) {
        while !data.is_empty() {
            if self.buf.len() == BLOCK {
                self.seal_block(false, out);
            }
            let take = (BLOCK - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    /// Append the last block (what is buffered, possibly nothing).
    pub fn finish(mut self, out: &mut Vec<u8>) {
        self.seal_block(true, out);
    }

    fn seal_block(&mut self, last: bool, out: &mut Vec<u8>) {
        if self.next == 0 {
            out.extend_from_slice(&self.header.to_bytes());
        }
        let nonce = self.header.nonce(self.next);
        let tag = self
            .cipher
            .encrypt_in_place_detached(&nonce, &self.header.aad(last), &mut self.buf)
            .expect("a block is far below the cipher's length limit");
        out.extend_from_slice(&self.buf);
        out.extend_from_slice(&tag);
        self.buf.clear();
        self.next += 1;
    }
}

/// Opens byte ranges of one sealed file.
pub struct Opener<'a> {
    cipher: &'a XChaCha20Poly1305,
    header: Header,
    plain_len: u64,
}

impl<'a> Opener<'a> {
    /// An opener for a sealed file of `sealed_len` bytes whose header is at
    /// the start of `header`.
    pub fn new(
        cipher: &'a XChaCha20Poly1305,
        header: &[u8],
        sealed_len: u64,
    ) -> Result<Opener<'a>, FormatError> {
        Ok(Opener {
            cipher,
            header: Header::parse(header)?,
            plain_len: plain_len(sealed_len)?,
        })
    }

    /// The file's plain length.
    pub fn plain_len(&self) -> u64 {
        self.plain_len
    }

    fn blocks(&self) -> u64 {
        self.plain_len.div_ceil(BLOCK as u64).max(1)
    }

    /// The sealed bytes to read for the plain `range`: whole blocks, from
    /// the file's start (the header included in the offsets).
    pub fn sealed_range(&self, range: &Range<u64>) -> Range<u64> {
        let first = range.start / BLOCK as u64;
        let last = (range.end.max(range.start + 1) - 1) / BLOCK as u64;
        let last = last.min(self.blocks() - 1);
        let start = HEADER_LEN as u64 + first * SEALED_BLOCK;
        let end = (HEADER_LEN as u64 + (last + 1) * SEALED_BLOCK).min(sealed_len(self.plain_len));
        start..end
    }

    /// The plain bytes of `range`, given `sealed` = the bytes of
    /// [`Self::sealed_range`] for it.
    pub fn open(&self, range: Range<u64>, sealed: &[u8]) -> Result<Vec<u8>, FormatError> {
        let range = range.start.min(self.plain_len)..range.end.min(self.plain_len);
        let first = range.start / BLOCK as u64;
        let mut plain = Vec::with_capacity(sealed.len());
        for (k, chunk) in sealed.chunks(SEALED_BLOCK as usize).enumerate() {
            let block = first + k as u64;
            if chunk.len() < TAG_LEN {
                return Err(FormatError::BadLength(chunk.len() as u64));
            }
            let (body, tag) = chunk.split_at(chunk.len() - TAG_LEN);
            let start = plain.len();
            plain.extend_from_slice(body);
            let last = block + 1 == self.blocks();
            self.cipher
                .decrypt_in_place_detached(
                    &self.header.nonce(block),
                    &self.header.aad(last),
                    &mut plain[start..],
                    Tag::from_slice(tag),
                )
                .map_err(|_| FormatError::Tampered(block))?;
        }
        let skip = (range.start - first * BLOCK as u64) as usize;
        let want = (range.end - range.start) as usize;
        if plain.len() < skip + want {
            return Err(FormatError::BadLength(sealed.len() as u64));
        }
        plain.drain(..skip);
        plain.truncate(want);
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> XChaCha20Poly1305 {
        cipher(&[b; 32])
    }

    #[test]
    fn lengths_round_trip_at_every_block_edge() {
        for plain in [
            0,
            1,
            100,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            3 * BLOCK,
            3 * BLOCK + 7,
        ] {
            let plain = plain as u64;
            assert_eq!(plain_len(sealed_len(plain)), Ok(plain), "{plain}");
            let sealed = seal(&key(1), &vec![7u8; plain as usize]);
            assert_eq!(sealed.len() as u64, sealed_len(plain));
        }
        assert!(plain_len(HEADER_LEN as u64 + 5).is_err());
        assert!(plain_len(3).is_err());
    }

    #[test]
    fn any_range_opens_to_the_plain_bytes() {
        let c = key(2);
        let plain: Vec<u8> = (0..(2 * BLOCK + 500))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let sealed = seal(&c, &plain);
        assert!(sealed
            .windows(64)
            .all(|w| !plain.windows(64).any(|p| p == w)));
        let opener = Opener::new(&c, &sealed, sealed.len() as u64).unwrap();
        for r in [
            0..0,
            0..1,
            5..BLOCK + 3,
            BLOCK..2 * BLOCK,
            2 * BLOCK + 499..2 * BLOCK + 500,
        ] {
            let r64 = r.start as u64..r.end as u64;
            let s = opener.sealed_range(&r64);
            let got = opener
                .open(r64, &sealed[s.start as usize..s.end as usize])
                .unwrap();
            assert_eq!(got, &plain[r.clone()], "{r:?}");
        }
        assert_eq!(unseal(&c, &sealed).unwrap(), plain);
    }

    #[test]
    fn a_wrong_key_a_changed_byte_or_a_cut_end_is_refused() {
        let plain = vec![9u8; 2 * BLOCK];
        let sealed = seal(&key(3), &plain);
        assert_eq!(unseal(&key(4), &sealed), Err(FormatError::Tampered(0)));
        let mut changed = sealed.clone();
        changed[HEADER_LEN + BLOCK + 40] ^= 1;
        assert_eq!(unseal(&key(3), &changed), Err(FormatError::Tampered(1)));
        // Cut after the first whole block: the first block was not sealed as last.
        let cut = &sealed[..HEADER_LEN + BLOCK + TAG_LEN];
        assert_eq!(unseal(&key(3), cut), Err(FormatError::Tampered(0)));
        assert_eq!(unseal(&key(3), b"plain text"), Err(FormatError::NotSealed));
    }

    #[test]
    fn two_seals_of_the_same_bytes_differ() {
        let a = seal(&key(5), b"same");
        let b = seal(&key(5), b"same");
        assert_ne!(a, b);
    }
}
