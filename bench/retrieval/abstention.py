#!/usr/bin/env python3
"""The "not in your documents" threshold per domain, from dumped rankings
(`quarry eval --dump-runs`): for each question, the best cosine similarity of
the library as it is (answerable) and of the library without the question's
relevant documents (its best non-relevant hit: as if they were absent).

    python3 bench/retrieval/abstention.py NAME=RUNS.jsonl:QRELS.tsv ... [--threshold 0.39]
"""
import sys

from fusion_lab import load


def main():
    threshold = 0.39
    args = [a for a in sys.argv[1:]]
    if "--threshold" in args:
        i = args.index("--threshold")
        threshold = float(args[i + 1])
        del args[i : i + 2]
    print(f"| set | answerable kept at {threshold} | unanswerable declined at {threshold} | threshold keeping 95% | declined there |")
    print("|---|---|---|---|---|")
    for arg in args:
        name, rest = arg.split("=", 1)
        runs, qrels = load(*rest.split(":"))
        have, absent = [], []
        for q in runs:
            rel = qrels[q["id"]]
            have.append(q["vector"][0][2])
            others = [s for d, _, s in q["vector"] if d not in rel]
            absent.append(others[0] if others else 0.0)
        kept = sum(s >= threshold for s in have) / len(have)
        declined = sum(s < threshold for s in absent) / len(absent)
        t95 = sorted(have)[int(0.05 * len(have))]
        declined95 = sum(s < t95 for s in absent) / len(absent)
        print(f"| {name} | {kept:.1%} | {declined:.1%} | {t95:.2f} | {declined95:.1%} |")


if __name__ == "__main__":
    main()
