"""Arena-Hard v2 prompts with the answer lengths of another model, as a `{prompt,
output_len}` JSONL file that `llmsim evaluate-ranker --data FILE` reads: a prompt set and
answering models that no CASTILLO-trained predictor has seen (transfer).

    python benchmarks/arena_answers.py --answers o3-mini-2025-01-31 --out arena-o3-mini.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/arena_hard_v2")
    ap.add_argument("--answers", default="o3-mini-2025-01-31",
                    help="answer file stem: o3-mini-2025-01-31 or sky-t1-32b")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    folder = Path(args.data)
    prompts = {q["uid"]: q["prompt"] for q in _jsonl(folder / "question.jsonl")}
    rows = []
    for a in _jsonl(folder / f"{args.answers}.jsonl"):
        tokens = (a.get("metadata") or {}).get("token_len")  # o200k tokens of the answer
        if a["uid"] in prompts and tokens:
            rows.append({"prompt": prompts[a["uid"]], "output_len": int(tokens)})
    args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{len(rows)} prompts with {args.answers}'s answer lengths in {args.out}")


def _jsonl(path: Path) -> list[dict]:
    # split on newlines only: texts hold U+2028, which str.splitlines() would split on
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


if __name__ == "__main__":
    main()
