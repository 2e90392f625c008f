#!/usr/bin/env python3
"""The relevance baseline per library (answer/floor.rs), offline.

    python3 bench/retrieval/baseline.py make SET OUT
        writes OUT, a BEIR folder over SET's corpus whose queries are the 64
        probes of crates/quarry-core/src/answer/floor.rs; then
        quarry eval --dataset OUT --work W --modes keyword --dump-runs PROBES.jsonl
        (W: the work folder SET was evaluated in, so the same library)
    python3 bench/retrieval/baseline.py report NAME=RUNS.jsonl:PROBES.jsonl:QRELS.tsv:FLOOR ...
        per set: the probes' median and 90th percentile best similarity, the
        floor Quarry uses (FLOOR, the registry's, unless it is under the
        median: then the 90th percentile), and at FLOOR and at that floor the
        share of answerable questions kept, of questions declined when their
        documents are absent, and of probes declined (similarity alone).
"""
import json
import os
import re
import sys

FLOOR_RS = os.path.join(os.path.dirname(__file__), "../../crates/quarry-core/src/answer/floor.rs")


def probes():
    text = open(FLOOR_RS).read()
    block = text[text.index("pub const PROBES"):]
    block = block[: block.index("];")]
    return re.findall(r'^\s*"(.*)",$', block, re.M)


def make(src, out):
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    corpus = os.path.join(out, "corpus.jsonl")
    if not os.path.exists(corpus):
        os.symlink(os.path.abspath(os.path.join(src, "corpus.jsonl")), corpus)
    first = json.loads(open(os.path.join(src, "corpus.jsonl")).readline())["_id"]
    ps = probes()
    with open(os.path.join(out, "queries.jsonl"), "w") as f:
        for i, p in enumerate(ps):
            f.write(json.dumps({"_id": f"p{i:02d}", "text": p}) + "\n")
    # quarry eval needs a relevant document per query; this one means nothing.
    with open(os.path.join(out, "qrels/test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i in range(len(ps)):
            f.write(f"p{i:02d}\t{first}\t1\n")
    print(f"{out}: {len(ps)} probes over {src}")


def quantile(xs, q):
    xs = sorted(xs)
    pos = q * (len(xs) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def best(lst):
    return lst[0][2] if lst else 0.0


def report(specs):
    for spec in specs:
        name, rest = spec.split("=", 1)
        runs, probe_runs, qrels_path, floor = rest.split(":")
        rel = {}
        for i, line in enumerate(open(qrels_path)):
            q, d, s = line.rstrip("\n").split("\t")[:3]
            if i == 0 and not s.strip().isdigit():
                continue
            if int(s) > 0:
                rel.setdefault(q, set()).add(d)
        runs = [json.loads(l) for l in open(runs)]
        have = [best(r["vector"]) for r in runs]
        absent = [best([h for h in r["vector"] if h[0] not in rel[r["id"]]]) for r in runs]
        null = [best(json.loads(l)["vector"]) for l in open(probe_runs)]
        registry = float(floor)
        median, p90 = quantile(null, 0.5), quantile(null, 0.9)
        own = p90 if registry < median else registry
        cells = []
        for f in (registry, own):
            kept = sum(s >= f for s in have) / len(have)
            dec = sum(s < f for s in absent) / len(absent)
            pdec = sum(s < f for s in null) / len(null)
            cells.append(f"{f:.3f}: kept {kept:.1%}, absent declined {dec:.1%}, probes declined {pdec:.1%}")
        print(f"{name}: probes median {median:.3f}, p90 {p90:.3f}\n  registry {cells[0]}\n  library  {cells[1]}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 2 and sys.argv[1] == "report":
        report(sys.argv[2:])
    else:
        sys.exit(__doc__)
