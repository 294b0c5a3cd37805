"""Synthetic routing data of RouterBench's size, only to time ``polyroute train`` at that scale.

RouterBench's halves hold ~18k prompts × 11 models; the data we may use (LLMRouter's) holds
6,108 rows × 9 models. This writes 18,324 × 11: LLMRouter's train and test rows three times
(copies 1 and 2 get a " (variant k)" suffix and 15% of their 0/1 labels flipped) and two more
models, noisy copies (20% of labels flipped) of the first and last model, priced 1.7× and
0.6× theirs. Its routing figures mean nothing (near-copies of prompts); its training time is
what docs/routers.md ("size and speed") cites::

    polyroute import-data --format llmrouter $D/train.json --out train.jsonl
    polyroute import-data --format llmrouter $D/test.json --out test.jsonl
    python benchmarks/scale_data.py train.jsonl test.jsonl --out big.jsonl
    polyroute train --data big.jsonl --out routers/big
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="routing JSONL (with costs)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--copies", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(0)
    rows = []
    for path in args.inputs:
        with path.open() as lines:  # not splitlines(): prompts may hold U+2028 and the like
            rows += [json.loads(line) for line in lines if line.strip()]

    def flip(v: float, p: float) -> float:
        draw = rng.random()  # one draw per score, fractional ones too
        return 1 - v if draw < p and v in (0, 1) else v

    with args.out.open("w") as f:
        for k in range(args.copies):
            for r in rows:
                scores = {m: flip(v, 0.15) if k else v for m, v in r["scores"].items()}
                costs = dict(r["costs"])
                models = list(scores)
                for name, source, factor in (
                    ("copy-a", models[0], 1.7),
                    ("copy-b", models[-1], 0.6),
                ):
                    scores[name] = flip(scores[source], 0.2)
                    costs[name] = costs[source] * factor
                suffix = f" (variant {k})" if k else ""
                row = {"id": f"{r['id']}-{k}", "prompt": r["prompt"] + suffix, "scores": scores}
                f.write(json.dumps({**row, "costs": costs, "task": r.get("task")}) + "\n")
    print(f"wrote {args.copies * len(rows)} prompts to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
