"""The texts the embedding peers (st_embed.py, ort_embed.py) time: the first `n`
passages of a BEIR corpus, as "title\n\ntext" — the same strings `quarry bench`
embeds."""
import json
import os


def load_texts(dataset, n):
    """The first `n` passages of `dataset`/corpus.jsonl."""
    texts = []
    with open(os.path.join(dataset, "corpus.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            texts.append(f"{d.get('title', '')}\n\n{d['text']}")
            if len(texts) >= n:
                break
    return texts
