//! The real SmolLM2-135M-Instruct Q4_1 GGUF: tokenizer from GGUF metadata
//! round-trips, the chat template renders, greedy output is deterministic.

mod common;

use common::top;
use quarry_core::generate::{ChatMessage, GenerateOptions, LocalModel};

fn load(requantize: bool) -> LocalModel {
    common::load_installed(
        "smollm2-135m-instruct-q4_1",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        requantize,
    )
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn tokenizer_round_trips_and_template_uses_special_tokens() {
    let model = load(true);
    assert_eq!(model.architecture(), "llama");
    let tok = model.tokenizer();
    for text in [
        "Hello, world!",
        "  leading and trailing spaces  ",
        "Crème brûlée costs €5 — naïve café.",
        "東京は日本の首都です。",
        "tabs\tand\nnewlines\n\n",
        "fn main() { println!(\"{}\", 1 + 2); }",
        "emoji 🚀🔥 and numbers 1234567890",
    ] {
        let ids = tok.encode(text, false).unwrap().get_ids().to_vec();
        let back = tok.decode(&ids, false).unwrap();
        assert_eq!(back, text, "round trip of {text:?}");
    }
    let prompt = model
        .render_chat(&[ChatMessage::new("user", "Hi")])
        .unwrap();
    assert!(
        prompt.contains("<|im_start|>user\nHi<|im_end|>"),
        "{prompt}"
    );
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    // The same ids as transformers' own GGUF tokenizer conversion (an independent
    // implementation) gives for SmolLM2's templated prompt.
    let chat = model
        .render_chat(&[ChatMessage::new("user", "What is the capital of France?")])
        .unwrap();
    let ours = tok.encode(chat.as_str(), false).unwrap().get_ids().to_vec();
    let reference: Vec<u32> = vec![
        1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
        407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1,
        520, 9531, 198,
    ];
    assert_eq!(ours, reference, "{chat:?}");
    let im_start = tok
        .token_to_id("<|im_start|>")
        .expect("special token in vocab");
    let ids = tok
        .encode(prompt.as_str(), false)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(
        ids.iter().filter(|&&i| i == im_start).count(),
        prompt.matches("<|im_start|>").count()
    );
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn logits_agree_with_transformers() {
    // Reference: transformers loading the same GGUF (dequantized, PyTorch, f32):
    // after "Hello" the top tokens are "-" 27.79, "," 26.16, "\n" 25.34, "_" 25.22, " and" 24.91.
    let mut model = load(true);
    let logits = model.next_token_logits("Hello").unwrap();
    let tok = model.tokenizer().clone();
    let id = |s: &str| tok.token_to_id(s).unwrap() as usize;
    let best = top(&logits, 5);
    assert_eq!(best[0], id("-"), "top token after Hello");
    assert!(
        (logits[id("-")] - 27.79).abs() < 0.75,
        "{}",
        logits[id("-")]
    );
    assert!(
        (logits[id(",")] - 26.16).abs() < 0.75,
        "{}",
        logits[id(",")]
    );
    // The France prompt: "The" 25.33 and "L" 25.24 are nearly tied in the
    // reference; both must lead here too.
    let chat = model
        .render_chat(&[ChatMessage::new("user", "What is the capital of France?")])
        .unwrap();
    let logits = model.next_token_logits(&chat).unwrap();
    let best = top(&logits, 3);
    assert!(
        best.contains(&id("The")) && best.contains(&id("L")),
        "{best:?}"
    );
}

/// The largest difference between two logit vectors.
fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_decoding_step_agrees_with_the_prompt_path() {
    // The last token fed as a decoding step (quantized kernels, decode
    // attention over the cache) against the whole text as one prompt (dense
    // weights, batched attention), at a context long enough to matter.
    let mut model = load(true);
    let paragraph = "Glaciers form where snow accumulates faster than it melts. \
                     Over centuries the snow compacts into ice that flows downhill. ";
    let text = format!(
        "Read the notes and answer.\n{}\nQuestion: what do glaciers form from?\nAnswer:",
        paragraph.repeat(20)
    );
    assert!(model.count_tokens(&text) > 400);
    let whole = model.next_token_logits(&text).unwrap();
    let step = model.next_token_logits_stepwise(&text).unwrap();
    assert_eq!(top(&whole, 1), top(&step, 1), "same next token");
    let worst = max_abs_diff(&whole, &step);
    assert!(worst < 0.75, "largest logit difference {worst}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn quantized_prompts_agree_with_dense_prompts() {
    // The path models too large for dense copies take: prompts through the
    // quantized kernels and the stacked query/key/value and gate/up products.
    // (Where Quarry's kernels run the weights, which is every CPU with AVX2,
    // no dense copies are made and both models take that path; elsewhere
    // small models' prompts go through dense f32 copies.)
    let mut dense = load(true);
    let mut quantized = common::load_installed_with(
        "smollm2-135m-instruct-q4_1",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        true,
        true,
    );
    let text = dense
        .render_chat(&[ChatMessage::new(
            "user",
            "Glaciers form where snow accumulates faster than it melts. What do they form from?",
        )])
        .unwrap();
    let want = dense.next_token_logits(&text).unwrap();
    for got in [
        quantized.next_token_logits(&text).unwrap(),
        quantized.next_token_logits_stepwise(&text).unwrap(),
    ] {
        assert_eq!(top(&want, 1), top(&got, 1), "same next token");
        // Quantized activations move logits by about one unit at worst over
        // the whole vocabulary (1.07 here, with or without the stacked
        // products); the leading candidates stay close.
        let worst = max_abs_diff(&want, &got);
        assert!(worst < 1.5, "largest logit difference {worst}");
        for i in top(&want, 10) {
            assert!(
                (want[i] - got[i]).abs() < 0.75,
                "token {i}: {} vs {}",
                want[i],
                got[i]
            );
        }
    }
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn greedy_generation_is_deterministic() {
    let mut model = load(true);
    let prompt = model
        .render_chat(&[ChatMessage::new("user", "Name three colours.")])
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 24,
        ..Default::default()
    };
    let mut streamed = String::new();
    let (a, stats) = model
        .generate(&prompt, &opts, &mut |t| {
            streamed.push_str(t);
            true
        })
        .unwrap();
    assert_eq!(streamed, a, "streamed text equals the result");
    assert!(!a.trim().is_empty());
    assert!(stats.generated_tokens > 0 && stats.generated_tokens <= 24);
    let (b, _) = model.generate(&prompt, &opts, &mut |_| true).unwrap();
    assert_eq!(a, b, "greedy decoding is deterministic");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn requantized_model_agrees_with_original() {
    let mut original = load(false);
    let mut converted = load(true);
    let prompt = original
        .render_chat(&[ChatMessage::new("user", "Name three colours.")])
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    let (a, _) = original.generate(&prompt, &opts, &mut |_| true).unwrap();
    let (b, _) = converted.generate(&prompt, &opts, &mut |_| true).unwrap();
    // Q4_1 → Q8_0 is lossless up to rounding: greedy output starts the same.
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert!(common >= 8, "original {a:?} vs converted {b:?}");
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn stop_strings_and_cancel() {
    let mut model = load(true);
    let prompt = model
        .render_chat(&[ChatMessage::new(
            "user",
            "Count from 1 to 20, separated by commas.",
        )])
        .unwrap();
    let opts = GenerateOptions {
        max_tokens: 60,
        stop: vec!["5".into()],
        ..Default::default()
    };
    let (text, stats) = model.generate(&prompt, &opts, &mut |_| true).unwrap();
    assert!(!text.contains('5'), "{text}");
    assert_eq!(
        stats.stop,
        quarry_core::generate::StopReason::StopString,
        "{text}"
    );
    let mut n = 0;
    let (_, stats) = model
        .generate(&prompt, &GenerateOptions::default(), &mut |_| {
            n += 1;
            n < 3
        })
        .unwrap();
    assert_eq!(stats.stop, quarry_core::generate::StopReason::Cancelled);
}

/// A RAG-shaped prompt: an answer that repeats words of its source.
fn rag_prompt(model: &LocalModel) -> String {
    model
        .render_chat(&[ChatMessage::new(
            "user",
            "Source [1]: The Morteratsch glacier in the Swiss Alps lost almost forty metres \
             of length this year, the largest loss since measurements began in 1878. \
             The Pers glacier, which joins it, lost twenty-two metres.\n\n\
             Repeat the first sentence of the source word for word.",
        )])
        .unwrap()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn prompt_lookup_drafts_but_never_changes_greedy_output() {
    let mut model = load(true);
    let prompt = rag_prompt(&model);
    // A strong copy bias on a question answered in the model's own words:
    // it steers the output, so verified drafts must see it too.
    let question = model
        .render_chat(&[ChatMessage::new(
            "user",
            "Source [1]: The Morteratsch glacier in the Swiss Alps lost almost forty metres \
             of length this year, the largest loss since measurements began in 1878.\n\n\
             In your own words, why does this matter for the valley below?",
        )])
        .unwrap();
    let run = |model: &mut LocalModel, lookup: bool, copy_bias: f32| {
        let prompt = if copy_bias > 0.0 { &question } else { &prompt };
        let opts = GenerateOptions {
            max_tokens: 48,
            lookup,
            copy_bias,
            ..Default::default()
        };
        let mut streamed = String::new();
        let (text, stats) = model
            .generate(prompt, &opts, &mut |t| {
                streamed.push_str(t);
                true
            })
            .unwrap();
        assert_eq!(streamed, text);
        (text, stats)
    };
    // With and without the copy bias: the bias depends only on the answer
    // so far, so verified drafts must see it as single steps do.
    for copy_bias in [0.0, 8.0] {
        let (plain, plain_stats) = run(&mut model, false, copy_bias);
        assert_eq!(plain_stats.drafted_tokens, 0);
        let (drafted, stats) = run(&mut model, true, copy_bias);
        assert_eq!(
            drafted, plain,
            "prompt lookup changed the output (copy bias {copy_bias})"
        );
        assert_eq!(stats.generated_tokens, plain_stats.generated_tokens);
        assert!(
            stats.accepted_tokens >= 5,
            "copying the source should be drafted: {} of {} accepted in {drafted:?}",
            stats.accepted_tokens,
            stats.drafted_tokens
        );
    }
    // Sampling never drafts.
    let sampled = GenerateOptions {
        max_tokens: 8,
        temperature: 0.8,
        ..Default::default()
    };
    let (_, s) = model.generate(&prompt, &sampled, &mut |_| true).unwrap();
    assert_eq!(s.drafted_tokens, 0);
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn a_prompt_reuses_the_cached_prefix_and_answers_the_same() {
    let mut model = load(true);
    let prompt = rag_prompt(&model);
    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let (first, stats) = model.generate(&prompt, &opts, &mut |_| true).unwrap();
    assert_eq!(stats.reused_tokens, 0, "a fresh model has nothing to reuse");
    // The same prompt again: all but its last two tokens come from the cache.
    let (again, stats) = model.generate(&prompt, &opts, &mut |_| true).unwrap();
    assert_eq!(stats.reused_tokens, stats.prompt_tokens - 2);
    assert_eq!(again, first);
    // A prefix prepared ahead is not computed again; a different prompt
    // after it reuses just the shared part.
    let head = &prompt[..prompt.find("glacier").unwrap()];
    let other = model
        .render_chat(&[ChatMessage::new("user", "Name three colours.")])
        .unwrap();
    // The cache holds it, as the start of the last prompt (the last token
    // may differ: a text cut mid-phrase can end in another token).
    assert!(model.prefill_prefix(head).unwrap() <= 1);
    let (_, stats) = model.generate(&other, &opts, &mut |_| true).unwrap();
    assert!(
        stats.reused_tokens > 0 && stats.reused_tokens < stats.prompt_tokens,
        "reused {} of {}",
        stats.reused_tokens,
        stats.prompt_tokens
    );
    let computed = model.prefill_prefix(head).unwrap();
    assert!(computed > 0, "the other prompt replaced part of it");
    assert_eq!(model.prefill_prefix(head).unwrap(), 0, "prepared already");
    let (again, stats) = model.generate(&prompt, &opts, &mut |_| true).unwrap();
    assert!(
        stats.reused_tokens + 1 >= computed,
        "{}",
        stats.reused_tokens
    );
    assert_eq!(again, first);
    // And the answer is what a fresh model gives.
    let mut fresh = load(true);
    let (want, _) = fresh.generate(&other, &opts, &mut |_| true).unwrap();
    let (got, _) = model.generate(&other, &opts, &mut |_| true).unwrap();
    assert_eq!(got, want);
}

/// While a model writes reasoning (here: a prompt that opens a `<think>`
/// block, as some templates do), nothing is shown, the caller hears of each
/// reasoning token as empty text, and can stop it there.
#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn reasoning_is_held_back_but_reported_and_stoppable() {
    let mut model = load(true);
    let prompt = model
        .render_chat(&[ChatMessage::new("user", "What is two plus two?")])
        .unwrap()
        + "<think>\n";
    let opts = GenerateOptions {
        max_tokens: 6,
        lookup: false,
        ..Default::default()
    };
    let mut pieces = Vec::new();
    let (text, stats) = model
        .generate(&prompt, &opts, &mut |t| {
            pieces.push(t.to_string());
            true
        })
        .unwrap();
    assert_eq!(text, "", "reasoning is not the answer");
    assert_eq!(pieces.len(), stats.generated_tokens, "{pieces:?}");
    assert!(pieces.iter().all(String::is_empty), "{pieces:?}");
    let mut heard = 0;
    let (_, stats) = model
        .generate(&prompt, &opts, &mut |_| {
            heard += 1;
            false
        })
        .unwrap();
    assert_eq!(stats.stop, quarry_core::generate::StopReason::Cancelled);
    assert_eq!((heard, stats.generated_tokens), (1, 1));
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn the_best_sources_are_read_twice_and_the_rest_once() {
    use quarry_core::answer::{build_prompt, Source};
    let model = load(true);
    let source = |n: usize, text: &str| Source {
        n,
        path: format!("/docs/note-{n}.txt"),
        page: None,
        heading: None,
        text: text.to_string(),
        excerpt: None,
        char_start: 0,
        char_end: text.len() as u64,
        score: 1.0,
        ocr_confidence: None,
    };
    let sources = [
        source(1, "The Tilburg plant is run by Anna Verhoef."),
        source(2, "The Breda office opened in 2019."),
        source(
            3,
            "The Delft lab tests coatings for ships, bridges and wind turbines.",
        ),
    ];
    let user_turn = |reread: usize| {
        let (messages, used) =
            build_prompt(&model, &[], "Who runs the plant?", &sources, 1536, reread).unwrap();
        assert_eq!(used.len(), 3, "every source fits");
        messages.last().unwrap().content.clone()
    };
    let twice = user_turn(2);
    let count = |text: &str| twice.matches(text).count();
    assert_eq!(count("Anna Verhoef"), 2, "{twice}");
    assert_eq!(count("[2] note-2.txt"), 2, "{twice}");
    assert_eq!(count("Delft"), 1, "{twice}");
    assert_eq!(user_turn(0).matches("Anna Verhoef").count(), 1);
    // A source read twice costs its tokens twice: in a budget that holds
    // each source once, the copies leave the last source out, and a source
    // whose second copy does not fit is read once.
    let (messages, _) =
        build_prompt(&model, &[], "Who runs the plant?", &sources, 1536, 0).unwrap();
    let budget = model.count_tokens(&model.render_chat(&messages).unwrap()) + 5;
    let fitted = |reread| {
        let (messages, used) =
            build_prompt(&model, &[], "Who runs the plant?", &sources, budget, reread).unwrap();
        (messages.last().unwrap().content.clone(), used.len())
    };
    assert_eq!(fitted(0).1, 3);
    let (tight, n) = fitted(3);
    assert_eq!(n, 2, "{tight}");
    assert_eq!(tight.matches("Anna Verhoef").count(), 2, "{tight}");
    assert_eq!(tight.matches("Breda").count(), 1, "{tight}");
}
