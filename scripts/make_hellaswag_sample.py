"""Write data/hellaswag_sample.jsonl: made-up items in HellaSwag's schema, for tests and the quickstart.

No text comes from HellaSwag. The items imitate both of its sources: ActivityNet captions (a short context, a
lowercase ``ctx_b`` the task capitalises) and WikiHow steps (``[header]``, ``[title]``, ``[step]``, ``[substeps]``
markup, double spaces, empty ``ctx_b``), with labels as ints (the original jsonl) and as strings (the Hub dataset).

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
DISTRACTORS = [
    "flies into the sky holding an umbrella.",
    "reads a newspaper upside down.",
    "starts singing to a cactus on the windowsill.",
    "turns into a bicycle and rolls away.",
    "orders a pizza for the neighbours' cat.",
    "counts the clouds until it gets dark.",
    "paints the ceiling with a toothbrush.",
    "sells the house to a passing pigeon.",
]


def activitynet_row(rng: random.Random, index: int) -> dict:
    label_text, (ctx_a, subject, action) = rng.choice(sorted(ACTIVITIES.items()))
    gold = rng.randrange(4)
    endings = [f"{action} carefully and keeps going." if i == gold else rng.choice(DISTRACTORS) for i in range(4)]
    return {
        "ind": index,
        "activity_label": label_text,
        "ctx_a": ctx_a,
        "ctx_b": subject,
        "ctx": f"{ctx_a} {subject}",
        "endings": endings,
        "source_id": f"activitynet~v_sample{index:04d}",
        "split": "val",
        "split_type": "indomain",
        "label": gold if index % 2 else str(gold),
    }


def wikihow_row(rng: random.Random, index: int) -> dict:
    label_text, (title, step, next_step) = rng.choice(sorted(WIKIHOW.items()))
    gold = rng.randrange(4)
    ctx_a = f"[header] {title} [title] {step} [step] Take your time  with it."
    ctx_b = "" if index % 3 == 0 else "[substeps] Keep  your tools nearby."
    endings = [
        f"[substeps] {next_step}  Then check the result." if i == gold else f"[title] {rng.choice(DISTRACTORS)}"
        for i in range(4)
    ]
    return {
        "ind": index,
        "activity_label": label_text,
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}".strip(),
        "endings": endings,
        "source_id": f"wikihow~{index:05d}",
        "split": "val",
        "split_type": "zeroshot",
        "label": gold if index % 2 else str(gold),
    }


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
