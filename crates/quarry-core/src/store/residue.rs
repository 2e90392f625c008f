//! Looking for what should be gone. Probes are taken from the chunks of
//! documents about to be forgotten — runs of eight words of their text, and
//! the leading bytes of their vectors — and searched for in every file of the
//! library, in the raw bytes and inside every zstd frame (tantivy's document
//! store compresses its blocks with zstd; LanceDB keeps strings and vectors
//! as they are).

use std::path::{Path, PathBuf};

use aho_corasick::AhoCorasick;
use serde::Serialize;

use super::sealed::LibraryFiles;
use super::ChunkRecord;
use crate::chunk::{TokenSpans as _, Whitespace};
use crate::error::{Error, Result};

/// Words in a text probe.
const PROBE_WORDS: usize = 8;
/// Text probes taken from one chunk at most.
const PROBES_PER_CHUNK: usize = 3;
/// Leading floats of a vector taken as its probe.
const VECTOR_FLOATS: usize = 8;
/// Most bytes decoded from one zstd frame.
const FRAME_LIMIT: u64 = 64 << 20;

/// What a probe was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// A run of words of a chunk's text.
    Text,
    /// The leading bytes of a chunk's vector.
    Vector,
}

/// A vector's probe: its leading floats as stored (little-endian); `None`
/// for a vector too short or all zeros (not embedded yet).
pub fn vector_prefix(vector: &[f32]) -> Option<Vec<u8>> {
    (vector.len() >= VECTOR_FLOATS && vector.iter().any(|v| *v != 0.0)).then(|| {
        vector[..VECTOR_FLOATS]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    })
}

/// The probes of a set of chunks.
#[derive(Debug, Default)]
pub struct Probes {
    patterns: Vec<Vec<u8>>,
    kinds: Vec<ProbeKind>,
    /// The text of the chunk each vector probe was taken from.
    sources: Vec<Option<String>>,
}

impl Probes {
    /// Text and vector probes from `chunks`.
    pub fn from_chunks(chunks: &[ChunkRecord]) -> Probes {
        let mut probes = Probes::default();
        for c in chunks {
            for text in text_probes(&c.text) {
                probes.push(text.into_bytes(), ProbeKind::Text, None);
            }
            if let Some(bytes) = vector_prefix(&c.vector) {
                probes.push(bytes, ProbeKind::Vector, Some(c.text.clone()));
            }
        }
        probes
    }

    fn push(&mut self, pattern: Vec<u8>, kind: ProbeKind, source: Option<String>) {
        if !self.patterns.contains(&pattern) {
            self.patterns.push(pattern);
            self.kinds.push(kind);
            self.sources.push(source);
        }
    }

    /// For vector probe `i`: the text of its chunk, and the leading floats
    /// it matches.
    pub fn vector(&self, i: usize) -> Option<(&str, &[u8])> {
        match (&self.kinds[i], &self.sources[i]) {
            (ProbeKind::Vector, Some(text)) => Some((text, &self.patterns[i])),
            _ => None,
        }
    }

    /// How many probes of `kind` there are.
    pub fn count(&self, kind: ProbeKind) -> usize {
        self.kinds.iter().filter(|k| **k == kind).count()
    }

    /// The text of probe `i`, when it is a text probe.
    pub fn text(&self, i: usize) -> Option<&str> {
        (self.kinds[i] == ProbeKind::Text)
            .then(|| std::str::from_utf8(&self.patterns[i]).ok())
            .flatten()
    }

    /// No probes at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

/// Runs of [`PROBE_WORDS`] words, exactly as they appear in `text`, from
/// stretches without characters that JSON escapes (so a copy inside a JSON
/// file is found too) nor SQL `LIKE` wildcards; a short text's one stretch.
fn text_probes(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for stretch in text.split(|c: char| c.is_control() || matches!(c, '"' | '\\' | '%' | '_')) {
        let words = Whitespace.token_spans(stretch);
        if words.len() < PROBE_WORDS {
            let short = stretch.trim();
            if words.len() >= 3 && short.len() >= 16 && out.is_empty() {
                out.push(short.to_string());
            }
            continue;
        }
        let last = words.len() - PROBE_WORDS;
        for start in [0, last / 2, last] {
            let probe = &stretch[words[start].0..words[start + PROBE_WORDS - 1].1];
            if probe.len() >= 24 && !out.iter().any(|p| p == probe) {
                out.push(probe.to_string());
            }
        }
    }
    out.truncate(PROBES_PER_CHUNK);
    out
}

/// A probe found in a file.
#[derive(Debug, Clone, Serialize)]
pub struct Residue {
    /// The file, relative to the library folder.
    pub file: PathBuf,
    /// What the probe was taken from.
    pub kind: ProbeKind,
    /// Found inside a compressed (zstd) block rather than in the raw bytes.
    pub compressed: bool,
    /// Which probe.
    pub probe: usize,
}

/// What a scan read and found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScanOutcome {
    /// Files read.
    pub files: usize,
    /// Bytes read.
    pub bytes: u64,
    /// zstd frames decoded and searched.
    pub frames: usize,
    /// Every probe found, once per file, place and probe.
    pub residues: Vec<Residue>,
}

/// Search every file under `dir` for the probes — in an encrypted library,
/// in what each file holds once opened with the key (`files`), since a copy
/// under the key is still a copy.
pub fn scan(dir: &Path, files: &LibraryFiles, probes: &Probes) -> Result<ScanOutcome> {
    let mut outcome = ScanOutcome::default();
    if probes.is_empty() {
        return Ok(outcome);
    }
    let matcher = AhoCorasick::new(&probes.patterns)
        .map_err(|e| Error::Internal(format!("probe matcher: {e}")))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in fs_err::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.is_file() {
                scan_file(dir, &path, files, &matcher, probes, &mut outcome)?;
            }
        }
    }
    outcome
        .residues
        .sort_by(|a, b| (&a.file, a.probe).cmp(&(&b.file, b.probe)));
    Ok(outcome)
}

fn scan_file(
    root: &Path,
    path: &Path,
    files: &LibraryFiles,
    matcher: &AhoCorasick,
    probes: &Probes,
    outcome: &mut ScanOutcome,
) -> Result<()> {
    let data = files.open_any(path)?;
    outcome.files += 1;
    outcome.bytes += fs_err::metadata(path)?.len();
    let file = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    let mut found = std::collections::BTreeSet::new();
    for m in matcher.find_overlapping_iter(&data) {
        found.insert((m.pattern().as_usize(), false));
    }
    for offset in memchr_frames(&data) {
        if let Some(plain) = decode_frame(&data[offset..]) {
            outcome.frames += 1;
            for m in matcher.find_overlapping_iter(&plain) {
                found.insert((m.pattern().as_usize(), true));
            }
        }
    }
    for (probe, compressed) in found {
        outcome.residues.push(Residue {
            file: file.clone(),
            kind: probes.kinds[probe],
            compressed,
            probe,
        });
    }
    Ok(())
}

/// Offsets of the zstd frame magic number in `data`.
fn memchr_frames(data: &[u8]) -> Vec<usize> {
    const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    data.windows(4)
        .enumerate()
        .filter(|(_, w)| *w == MAGIC)
        .map(|(i, _)| i)
        .collect()
}

/// The content of the zstd frame at the start of `bytes`, if it is one.
fn decode_frame(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read as _;
    let decoder = zstd::stream::read::Decoder::with_buffer(bytes)
        .ok()?
        .single_frame();
    let mut out = Vec::new();
    decoder.take(FRAME_LIMIT).read_to_end(&mut out).ok()?;
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(text: &str, vector: Vec<f32>) -> ChunkRecord {
        ChunkRecord {
            id: "c".into(),
            doc_id: "d".into(),
            path: "/p".into(),
            ext: "txt".into(),
            index: 0,
            title: None,
            heading: None,
            page: None,
            char_start: 0,
            char_end: text.len() as u64,
            text: text.into(),
            vector,
        }
    }

    #[test]
    fn probes_are_exact_runs_of_words_without_escaped_characters() {
        let text = "The claimant, Jane Roe of 12 Harbour Lane, reported the loss on 3 March.\n\"Quoted\" and 100% short.";
        let probes = text_probes(text);
        assert_eq!(probes[0], "The claimant, Jane Roe of 12 Harbour Lane,");
        for p in &probes {
            assert!(text.contains(p.as_str()), "{p}");
            assert!(
                !p.contains('\n') && !p.contains('"') && !p.contains('%'),
                "{p}"
            );
        }
        assert!(text_probes("tiny").is_empty());
        assert_eq!(
            text_probes("a short memo for Jane"),
            ["a short memo for Jane"]
        );
    }

    #[test]
    fn the_scan_finds_probes_raw_and_inside_zstd_frames_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let text = "Policy QX-4471 covers the warehouse at Pier Nine against flood and fire damage";
        let vector: Vec<f32> = (0..16).map(|i| 0.1 + i as f32).collect();
        let probes = Probes::from_chunks(&[chunk(text, vector.clone())]);
        assert_eq!(probes.count(ProbeKind::Text), 3);
        assert_eq!(probes.count(ProbeKind::Vector), 1);
        std::fs::write(
            dir.path().join("plain.json"),
            format!("{{\"a\": \"x {text} y\"}}"),
        )
        .unwrap();
        let mut packed = b"header".to_vec();
        packed.extend(zstd::bulk::compress(format!("zz {text} zz").as_bytes(), 3).unwrap());
        std::fs::create_dir(dir.path().join("store")).unwrap();
        std::fs::write(dir.path().join("store/seg.store"), packed).unwrap();
        let floats: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(
            dir.path().join("vectors.lance"),
            [&b"rows"[..], &floats].concat(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("other.txt"),
            "Policy QX-4471 covers a different warehouse",
        )
        .unwrap();
        let outcome = scan(dir.path(), &LibraryFiles::default(), &probes).unwrap();
        assert_eq!(outcome.files, 4);
        assert_eq!(outcome.frames, 1);
        let hits = |name: &str, compressed: bool, kind: ProbeKind| {
            outcome
                .residues
                .iter()
                .filter(|r| {
                    r.file == Path::new(name) && r.compressed == compressed && r.kind == kind
                })
                .count()
        };
        assert_eq!(hits("plain.json", false, ProbeKind::Text), 3);
        assert_eq!(hits("store/seg.store", true, ProbeKind::Text), 3);
        assert_eq!(
            hits("store/seg.store", false, ProbeKind::Text),
            0,
            "compressed, not raw"
        );
        assert_eq!(hits("vectors.lance", false, ProbeKind::Vector), 1);
        assert!(outcome
            .residues
            .iter()
            .all(|r| r.file != Path::new("other.txt")));
    }

    #[test]
    fn in_an_encrypted_library_the_scan_sees_through_the_sealing() {
        use crate::store::sealed::LibraryKey;
        let dir = tempfile::tempdir().unwrap();
        let key = LibraryKey::create(
            dir.path(),
            &secrecy::SecretString::from("a long passphrase"),
        )
        .unwrap();
        let files = LibraryFiles::with_key(Some(key));
        let text = "Policy QX-4471 covers the warehouse at Pier Nine against flood and fire damage";
        let probes = Probes::from_chunks(&[chunk(text, Vec::new())]);
        let mut packed = b"header".to_vec();
        packed.extend(zstd::bulk::compress(format!("zz {text} zz").as_bytes(), 3).unwrap());
        files.write(&dir.path().join("seg.store"), &packed).unwrap();
        files
            .append_line(
                &dir.path().join("cache.jsonl"),
                format!("{{\"a\": \"{text}\"}}").as_bytes(),
            )
            .unwrap();
        let blind = scan(dir.path(), &LibraryFiles::default(), &probes).unwrap();
        assert!(blind.residues.is_empty(), "sealed bytes hold no plain text");
        let seen = scan(dir.path(), &files, &probes).unwrap();
        let in_file = |name: &str| {
            seen.residues
                .iter()
                .filter(|r| r.file == Path::new(name))
                .count()
        };
        assert_eq!(in_file("seg.store"), 3);
        assert_eq!(in_file("cache.jsonl"), 3);
    }
}
