//! Whether a document's text is English, roughly: enough to tell a user whose
//! folder is mostly French, Russian or Japanese that the English embedder
//! will not understand it and a multilingual one exists.
//!
//! Two cheap signals over the first few thousand characters: the share of
//! letters outside the Latin alphabets (Cyrillic, Greek, Arabic, CJK, Thai…),
//! and, for Latin text, the share of words that are English function words
//! ("the", "of", "and"… make up a quarter or more of English prose and a few
//! percent of French, German or Spanish).

/// English function words: frequent in any English prose, rare elsewhere.
const ENGLISH: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "with", "as", "was", "on", "are",
    "be", "by", "this", "from", "or", "at", "an", "not", "have", "which", "but", "they", "has",
    "had", "were", "their", "been", "there", "can", "will", "would", "all", "its", "we", "you",
    "he", "she", "if", "what", "when", "who", "more", "than", "also", "into", "these",
];

/// How much text is looked at.
const SAMPLE_CHARS: usize = 4000;
/// Fewer words than this: too short to tell.
const MIN_WORDS: usize = 25;

/// The language of a text, as far as embedding cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// English (or close enough for an English embedder).
    English,
    /// Something else.
    Other,
    /// Too little text to tell.
    Unknown,
}

/// Guess whether `texts` (a document's chunks, in order) are English.
pub fn guess<'a>(texts: impl IntoIterator<Item = &'a str>) -> Language {
    let mut sample = String::new();
    for t in texts {
        if sample.len() >= SAMPLE_CHARS {
            break;
        }
        sample.push_str(t);
        sample.push(' ');
    }
    let (mut latin, mut other) = (0usize, 0usize);
    for c in sample.chars().filter(|c| c.is_alphabetic()) {
        // Basic Latin through Latin Extended-B, and Latin Extended Additional.
        if (c as u32) <= 0x024F || (0x1E00..=0x1EFF).contains(&(c as u32)) {
            latin += 1;
        } else {
            other += 1;
        }
    }
    if other >= 50 && other * 10 > (latin + other) * 3 {
        return Language::Other;
    }
    let words: Vec<String> = sample
        .split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    if words.len() < MIN_WORDS {
        return Language::Unknown;
    }
    let english = words
        .iter()
        .filter(|w| ENGLISH.contains(&w.as_str()))
        .count();
    if english * 100 >= words.len() * 12 {
        Language::English
    } else {
        Language::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_english_from_other_languages() {
        let en = "The committee met on Tuesday to review the budget for the next year. \
            It was agreed that the spending on travel would be cut, and that the savings \
            would go to the training of new staff, which has been delayed for months.";
        let fr = "Le comité s'est réuni mardi pour examiner le budget de l'année prochaine. \
            Il a été convenu que les dépenses de voyage seraient réduites et que les économies \
            iraient à la formation du nouveau personnel, retardée depuis des mois.";
        let de = "Der Ausschuss trat am Dienstag zusammen, um den Haushalt für das nächste Jahr \
            zu prüfen. Es wurde vereinbart, die Reisekosten zu kürzen und die Einsparungen für \
            die Schulung neuer Mitarbeiter zu verwenden, die sich seit Monaten verzögert.";
        let ru =
            "Комитет собрался во вторник, чтобы рассмотреть бюджет на следующий год. ".repeat(6);
        let ja = "委員会は火曜日に会合を開き、来年度の予算を審議した。".repeat(12);
        assert_eq!(guess([en]), Language::English);
        assert_eq!(guess([fr]), Language::Other);
        assert_eq!(guess([de]), Language::Other);
        assert_eq!(guess([ru.as_str()]), Language::Other);
        assert_eq!(guess([ja.as_str()]), Language::Other);
        assert_eq!(guess(["Invoice 42"]), Language::Unknown);
    }
}
