"""llama.cpp's logits on a GGUF for given token ids: the reference values the
decoder's unit tests hold for files of random weights (`decoder_speed write
tiny-llama3 q8_0 FILE`), where candle has no implementation to compare with
(it ignores Llama 3's rope_freqs).

    python bench/llamacpp_logits.py --model FILE --ids 1,17,300 --top 8
    python bench/llamacpp_logits.py --model FILE --prompt-tokens 200 --top 8

`--prompt-tokens N` takes ids (i*7919+13) mod the vocabulary, i < N, as
`decoder_speed time` and the tests do.

Prints, after the last id, the `--top` highest logits as [[id, logit], ...].
"""
import argparse
import json

import numpy as np
from llama_cpp import Llama

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--ids", help="comma-separated token ids")
ap.add_argument("--prompt-tokens", type=int)
ap.add_argument("--top", type=int, default=8)
args = ap.parse_args()

# f32 KV cache, as Quarry keeps it; one thread so sums run in one order.
llm = Llama(model_path=args.model, n_ctx=256, n_threads=1, n_batch=256, logits_all=True, type_k=0, type_v=0, verbose=False)
if args.ids:
    ids = [int(x) for x in args.ids.split(",")]
else:
    ids = [(i * 7919 + 13) % llm.n_vocab() for i in range(args.prompt_tokens)]
llm.eval(ids)
row = np.array(llm.scores[llm.n_tokens - 1])
top = np.argsort(-row)[: args.top]
print(json.dumps([[int(i), round(float(row[i]), 4)] for i in top]))
