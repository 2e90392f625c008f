#!/usr/bin/env python3
"""The "not in your documents" rule per domain, from dumped rankings
(`quarry eval --dump-runs`): for each question, the best cosine similarity
and the keyword evidence (best BM25 score over ln(1 + chunks)) of the library
as it is (answerable) and of the library without the question's relevant
documents (its best non-relevant hits: as if they were absent).

    python3 bench/retrieval/abstention.py NAME=RUNS.jsonl:QRELS.tsv:CHUNKS ... \
        [--threshold 0.40] [--keywords 1.95] [--search]

CHUNKS is the library's chunk count (`quarry status`), the N of BM25's IDF.
A question is declined when its similarity is under --threshold and its
keyword evidence under --keywords. --search lists the pairs that keep at
least as many answerable questions as the similarity floor 0.39 alone on
every set, best total of declined unanswerable first.
"""
import math
import sys

from fusion_lab import load


def features(runs, qrels, chunks):
    """(similarity, keyword evidence) per question, with and without its documents."""
    norm = math.log1p(chunks)
    have, absent = [], []
    for q in runs:
        rel = qrels[q["id"]]
        vec, kw = q["vector"], q["keyword"]
        have.append((vec[0][2] if vec else 0.0, kw[0][2] / norm if kw else 0.0))
        vec = [s for d, _, s in vec if d not in rel]
        kw = [s for d, _, s in kw if d not in rel]
        absent.append((vec[0] if vec else 0.0, kw[0] / norm if kw else 0.0))
    return have, absent


def rates(have, absent, t, k):
    declined = lambda s, e: s < t and e < k
    kept = sum(not declined(*f) for f in have) / len(have)
    return kept, sum(declined(*f) for f in absent) / len(absent)


def main():
    args = sys.argv[1:]
    opts = {"--threshold": 0.40, "--keywords": 1.95}
    for name in list(opts):
        if name in args:
            i = args.index(name)
            opts[name] = float(args[i + 1])
            del args[i : i + 2]
    search = "--search" in args
    args = [a for a in args if a != "--search"]
    sets = {}
    for arg in args:
        name, rest = arg.split("=", 1)
        runs, qrels, chunks = rest.split(":")
        sets[name] = features(*load(runs, qrels), int(chunks))
    t, k = opts["--threshold"], opts["--keywords"]
    print(f"| set | similarity 0.39 alone: kept / declined | similarity {t} or keywords {k}: kept / declined |")
    print("|---|---|---|")
    for name, (have, absent) in sets.items():
        a, b = rates(have, absent, 0.39, math.inf), rates(have, absent, t, k)
        print(f"| {name} | {a[0]:.1%} / {a[1]:.1%} | {b[0]:.1%} / {b[1]:.1%} |")
    if search:
        base = {n: rates(h, a, 0.39, math.inf) for n, (h, a) in sets.items()}
        found = []
        for t in [x / 100 for x in range(36, 56)]:
            for k in [x / 20 for x in range(20, 60)]:
                r = {n: rates(h, a, t, k) for n, (h, a) in sets.items()}
                if all(r[n][0] >= base[n][0] for n in r):
                    found.append((sum(r[n][1] - base[n][1] for n in r), t, k))
        for gain, t, k in sorted(found, reverse=True)[:5]:
            print(f"similarity {t:.2f}, keywords {k:.2f}: declined +{gain:.3f} in total")


if __name__ == "__main__":
    main()
