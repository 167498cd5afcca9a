"""Write data/hellaswag_sample.jsonl: made-up items in HellaSwag's schema, for tests and the quickstart.

No text comes from HellaSwag. The items imitate both of its sources: ActivityNet captions (a short context, a
lowercase ``ctx_b`` the task capitalises) and WikiHow steps (``[header]``, ``[title]``, ``[step]``, ``[substeps]``
markup, double spaces, empty ``ctx_b``), with labels as ints (the original jsonl) and as strings (the Hub dataset).

Every ending of an item has the same form: the right one continues its own context, the three wrong ones are the
same sentence for other contexts. Length gives nothing away (in an earlier version the right ending was the longest
in 171 of 200 items, so acc_norm rewarded length, not understanding). What the sample is good for: checking that a
pipeline scores as lm-evaluation-harness does, and a model that has learned anything beats 0.25 on it; it is no
HellaSwag score.

    python scripts/make_hellaswag_sample.py [--count 200] [--out data/hellaswag_sample.jsonl]
"""

import argparse
import json
import random
from pathlib import Path

ACTIVITIES = {
    "Making a sandwich": ("A man stands at a kitchen counter with bread and a knife.", "he", "spreads butter"),
    "Washing a car": ("A woman sprays water over a dusty red car.", "she", "scrubs the hood"),
    "Playing the violin": ("A boy lifts a violin to his chin in a quiet room.", "he", "draws the bow"),
    "Skateboarding": ("A teenager rolls down an empty ramp at a park.", "the teen", "jumps onto the rail"),
    "Painting a fence": ("Two people stand beside a long wooden fence with buckets.", "they", "dip their brushes"),
    "Baking cookies": ("A girl pours flour into a large bowl.", "she", "cracks two eggs"),
    "Swimming laps": ("A swimmer dives into a pool lane.", "the swimmer", "kicks toward the wall"),
    "Tying a tie": ("A man stands in front of a mirror holding a striped tie.", "he", "crosses the wide end"),
}
WIKIHOW = {
    "Home and Garden": ("How to repot a plant", "Choose a pot one size larger.", "Loosen the roots gently."),
    "Food and Entertaining": ("How to make iced tea", "Boil four cups of water.", "Steep the tea bags."),
    "Health": ("How to stretch your back", "Lie flat on a soft mat.", "Pull one knee to your chest."),
    "Pets and Animals": ("How to brush a dog", "Pick a brush for the coat type.", "Brush in the direction of growth."),
    "Finance and Business": ("How to make a budget", "List every monthly expense.", "Compare it with your income."),
}


def endings_with(gold_text: str, others: list[str], rng: random.Random) -> tuple[list[str], int]:
    """Four endings: ``gold_text`` at a random position, three of ``others`` (distinct) elsewhere."""
    endings = rng.sample([other for other in others if other != gold_text], 3)
    gold = rng.randrange(4)
    endings.insert(gold, gold_text)
    return endings, gold


def sample_row(index: int, label_text: str, ctx_a: str, ctx_b: str, endings: list[str], gold: int, source_id: str,
               split_type: str) -> dict:  # fmt: skip
    """One item in HellaSwag's schema; the label an int in odd rows (the original jsonl), a string in even ones (the
    Hub dataset)."""
    return {
        "ind": index,
        "activity_label": label_text,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}".strip(),
        "endings": endings,
        "source_id": source_id,
        "split": "val",
        "split_type": split_type,
        "label": gold if index % 2 else str(gold),
    }


def activitynet_row(rng: random.Random, index: int) -> dict:
    label_text, (ctx_a, subject, action) = rng.choice(sorted(ACTIVITIES.items()))
    actions = sorted(f"{other} carefully and keeps going." for _, _, other in ACTIVITIES.values())
    endings, gold = endings_with(f"{action} carefully and keeps going.", actions, rng)
    return sample_row(index, label_text, ctx_a, subject, endings, gold, f"activitynet~v_sample{index:04d}", "indomain")


def wikihow_row(rng: random.Random, index: int) -> dict:
    label_text, (title, step, next_step) = rng.choice(sorted(WIKIHOW.items()))
    ctx_a = f"[header] {title} [title] {step} [step] Take your time  with it."
    ctx_b = "" if index % 3 == 0 else "[substeps] Keep  your tools nearby."
    steps = sorted(f"[substeps] {other}  Then check the result." for _, _, other in WIKIHOW.values())
    endings, gold = endings_with(f"[substeps] {next_step}  Then check the result.", steps, rng)
    return sample_row(index, label_text, ctx_a, ctx_b, endings, gold, f"wikihow~{index:05d}", "zeroshot")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(Path(__file__).resolve().parent.parent / "data" / "hellaswag_sample.jsonl")
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    rows = [(wikihow_row if i % 2 else activitynet_row)(rng, i) for i in range(args.count)]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
