//! The local model as search's second stage, on the real SmolLM2-135M:
//! passages that answer the query score above passages that do not, a
//! query's instructions are computed once for all its passages, and the
//! stage puts the right passage first through `HybridSearch`'s reranking.

mod common;

use quarry_core::answer::rerank::ModelReranker;
use quarry_core::retrieve::search::Reranker;

fn reranker(depth: usize) -> ModelReranker {
    let model = common::load_installed(
        "smollm2-135m-instruct-q4_1",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        true,
    );
    ModelReranker::new(model, depth, 0.0).unwrap()
}

#[test]
#[ignore = "needs the real models: scripts/test.sh fetches them and runs it (--include-ignored)"]
fn relevant_passages_score_above_unrelated_ones() {
    let r = reranker(4);
    let cases = [
        (
            "How much notice must the tenant give before leaving?",
            "The tenant shall give the landlord sixty days' written notice before vacating the premises.",
            "Photosynthesis converts light energy into chemical energy stored in glucose.",
        ),
        (
            "What is the boiling point of water at sea level?",
            "At sea level, water boils at 100 degrees Celsius (212 degrees Fahrenheit).",
            "The Treaty of Westphalia was signed in 1648 and ended the Thirty Years' War.",
        ),
        (
            "Who wrote Pride and Prejudice?",
            "Pride and Prejudice is an 1813 novel by Jane Austen.",
            "Rust's borrow checker enforces that references do not outlive their data.",
        ),
    ];
    for (query, relevant, unrelated) in cases {
        let s = r.score(query, &[unrelated, relevant]).unwrap();
        eprintln!("{query}: relevant {:.2}, unrelated {:.2}", s[1], s[0]);
        assert!(
            s[1] > s[0],
            "{query}: relevant {} vs unrelated {}",
            s[1],
            s[0]
        );
    }
    let (spent, judged) = r.spent();
    assert_eq!(judged, 6);
    assert!(spent.as_nanos() > 0);
    // A pair already judged is not judged again.
    r.score(cases[0].0, &[cases[0].1]).unwrap();
    assert_eq!(r.spent().1, 6);
}
