//! The real Gemma 3 270M Q4_K_M GGUF: a SentencePiece vocabulary with no
//! merges in the file, rebuilt by Quarry. Token ids are checked against two
//! independent implementations (llama.cpp via llama-cpp-python 0.3.36, and
//! transformers 5.24's GGUF conversion), which agree with each other.

mod common;

use common::top;
use quarry_core::generate::{ChatMessage, GenerateOptions, LocalModel};

fn load() -> LocalModel {
    common::load_installed("gemma3-270m-q4_k_m", "gemma-3-270m-q4_k_m.gguf", true)
}

/// (text, ids without BOS) from llama.cpp's and transformers' tokenizers.
const REFERENCE: &[(&str, &[u32])] = &[
    ("Hello, world!", &[9259, 236764, 1902, 236888]),
    (
        "  leading and trailing spaces  ",
        &[138, 26016, 532, 45330, 9952, 138],
    ),
    (
        "Crème brûlée costs €5 — naïve café.",
        &[
            15760, 9809, 125501, 155666, 5384, 11361, 236810, 2192, 120362, 33443, 236761,
        ],
    ),
    (
        "東京は日本の首都です。",
        &[31414, 237048, 76444, 120211, 3652, 236924],
    ),
    (
        "tabs\tand\nnewlines\n\n",
        &[39218, 255968, 624, 107, 208697, 108],
    ),
    (
        "fn main() { println!(\"{}\", 1 + 2); }",
        &[
            15059, 1689, 825, 642, 32374, 183228, 236743, 236770, 900, 236743, 236778, 626, 682,
        ],
    ),
    (
        "emoji 🚀🔥 and numbers 1234567890",
        &[
            67906, 236743, 242015, 240785, 532, 4945, 236743, 236770, 236778, 236800, 236812,
            236810, 236825, 236832, 236828, 236819, 236771,
        ],
    ),
    (
        "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
        &[
            105, 2364, 107, 3689, 563, 506, 5279, 529, 7001, 236881, 106, 107, 105, 4368, 107,
        ],
    ),
];

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn gemma_tokenizer_matches_references_and_round_trips() {
    let model = load();
    assert_eq!(model.architecture(), "gemma3");
    let tok = model.tokenizer();
    for (text, ids) in REFERENCE {
        let ours = tok.encode(*text, false).unwrap().get_ids().to_vec();
        assert_eq!(&ours, ids, "ids of {text:?}");
        let back = tok.decode(&ours, false).unwrap();
        assert_eq!(&back, text, "round trip of {text:?}");
    }
    // Byte fallback: a character outside the vocabulary survives the round trip.
    let rare = "\u{10FFFD} private use and \u{1F9EC}";
    let ids = tok.encode(rare, false).unwrap().get_ids().to_vec();
    assert_eq!(tok.decode(&ids, false).unwrap(), rare);
    // The fallback chat template (this GGUF has none) opens the model's turn.
    let prompt = model
        .render_chat(&[
            ChatMessage::new("system", "Answer briefly."),
            ChatMessage::new("user", "Hi"),
        ])
        .unwrap();
    assert!(prompt.starts_with("<bos><start_of_turn>user\n"), "{prompt}");
    assert!(prompt.contains("Answer briefly."), "{prompt}");
    assert!(prompt.ends_with("<start_of_turn>model\n"), "{prompt}");
    assert_eq!(prompt.matches("<start_of_turn>user").count(), 1, "{prompt}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn gemma_logits_agree_with_llama_cpp_and_greedy_is_deterministic() {
    let mut model = load();
    let tok = model.tokenizer().clone();
    let id = |s: &str| tok.token_to_id(s).unwrap() as usize;
    // After "<bos>Hello", transformers (the same file dequantized to f32):
    // "," 19.06, "!" 18.08, " everyone" 18.00; llama.cpp (quantized): 18.58, 17.43, 17.70.
    // Quarry quantizes activations to 8 bits as llama.cpp does (with finer
    // scales): each logit lies between the two references, give or take 0.15.
    let logits = model.next_token_logits("<bos>Hello").unwrap();
    let best = top(&logits, 3);
    assert_eq!(best[0], id(","), "top token after Hello: {best:?}");
    for (t, f32_ref, llama_cpp) in [
        (",", 19.06f32, 18.58f32),
        ("!", 18.08, 17.43),
        ("\u{2581}everyone", 18.00, 17.70),
    ] {
        let got = logits[id(t)];
        let (lo, hi) = (f32_ref.min(llama_cpp) - 0.15, f32_ref.max(llama_cpp) + 0.15);
        assert!(
            (lo..=hi).contains(&got),
            "{t:?}: {got} outside {lo}..{hi} (transformers {f32_ref}, llama.cpp {llama_cpp})"
        );
    }

    // This is the pretrained (base) 270M: after a chat prompt it continues
    // with a question, "What" ahead of "The" in both references.
    let chat = model
        .render_chat(&[ChatMessage::new("user", "What is the capital of France?")])
        .unwrap();
    let logits = model.next_token_logits(&chat).unwrap();
    let best = top(&logits, 2);
    assert_eq!(best, vec![id("What"), id("The")], "{best:?}");
    assert!(
        (logits[id("What")] - 6.75).abs() < 0.3,
        "{}",
        logits[id("What")]
    );

    // A 1,048-token prompt crosses the 512-token sliding window of five layers
    // in six: transformers gives "1" 33.77, "0" 25.03 for the next token.
    let count = |to: u32| {
        (1..=to)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let long = format!("<bos>Counting: {}, 23", count(230));
    let logits = model.next_token_logits(&long).unwrap();
    assert_eq!(top(&logits, 1), vec![id("1")]);
    assert!((logits[id("1")] - 33.77).abs() < 0.5, "{}", logits[id("1")]);
    assert!((logits[id("0")] - 25.03).abs() < 0.5, "{}", logits[id("0")]);
    // Decoding past the window keeps counting (the window applied token by token).
    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let (more, _) = model
        .generate(
            &format!("<bos>Counting: {}, ", count(229)),
            &opts,
            &mut |_| true,
        )
        .unwrap();
    assert!(more.starts_with("230, 231, 232"), "{more:?}");

    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let (a, stats) = model.generate("<bos>Hello", &opts, &mut |_| true).unwrap();
    assert!(stats.generated_tokens > 0);
    let (b, _) = model.generate("<bos>Hello", &opts, &mut |_| true).unwrap();
    assert_eq!(a, b, "greedy decoding is deterministic");
    assert!(a.starts_with(','), "{a:?}");
}
