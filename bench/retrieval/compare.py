#!/usr/bin/env python3
"""nDCG@10 and Recall@10 per domain for keyword, vector, hybrid with rank
fusion (the old default) and hybrid with standardised-score fusion (the new
one), with `quarry eval` on each set, as one Markdown table.

    python3 bench/retrieval/compare.py --quarry target/release/quarry \\
        squaddev=../shared/data/squaddev faq=/work/retrieval-sets/faq ...

Each set is indexed once under --work (kept: re-runs are incremental).
`--queries N` evaluates N queries spread over a set (squaddev: use 1000).
"""
import argparse
import json
import os
import subprocess


def run(quarry, dataset, work, queries, extra):
    cmd = [quarry, "eval", "--dataset", dataset, "--work", work, "--json"] + extra
    if queries:
        cmd += ["--queries", str(queries)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quarry", default="quarry")
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/quarry/eval-sets"))
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("sets", nargs="+", help="NAME=BEIR_DIR")
    args = ap.parse_args()
    rows = []
    for spec in args.sets:
        name, path = spec.split("=", 1)
        work = os.path.join(args.work, name)
        new = run(args.quarry, path, work, args.queries, [])
        old = run(args.quarry, path, work, args.queries, ["--modes", "hybrid", "--fusion", "ranks"])
        rows.append((name, new["keyword"], new["vector"], old["hybrid"], new["hybrid"]))
    print("| set | keyword | vector | hybrid, rank fusion (before) | hybrid, score fusion (now) | now − best single |")
    print("|---|---|---|---|---|---|")
    for name, k, v, old, new in rows:
        cell = lambda m: f"{m['ndcg@10']:.3f} / {m['recall@10']:.3f}"
        best = max(k["ndcg@10"], v["ndcg@10"])
        print(f"| {name} | {cell(k)} | {cell(v)} | {cell(old)} | **{cell(new)}** | {new['ndcg@10'] - best:+.3f} |")
    print()
    print("nDCG@10 / Recall@10. Hybrid p50 latency (ms), rank vs score fusion: " + ", ".join(
        f"{name} {old['p50_ms']:.0f} vs {new['p50_ms']:.0f}" for name, _, _, old, new in rows))


if __name__ == "__main__":
    main()
