"""Small corpora written by the tests themselves, in the real schemas of the sources they stand in for."""

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = (  # noqa: SIM905
    "the of and to in is was for on that with as by at from his her they which this be are or an have one had "
    "not but what all were when we there can more if no out so said up into time has them some could than other "
    "river mountain physics energy garden history language music number ocean planet science theory water ümlaut "
    "café naïve 東京 🤖 x=1; def f(): return 42"
).split()


def make_documents(count: int, seed: int = 0, prefix: str = "doc") -> list[str]:
    """Deterministic documents of varied length; each starts with its own unique tag so tests can identify it."""
    rng = random.Random(seed)
    docs = []
    for index in range(count):
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 120)))
        docs.append(f"{prefix}{index:05d}: {body}.")
    return docs


def write_fineweb_edu_shards(directory: Path, docs: list[str], num_shards: int) -> list[Path]:
    """Parquet files in FineWeb-Edu's schema (text, id, dump, url, file_path, language, language_score,
    token_count, score, int_score), documents split across shards in order."""
    directory.mkdir(parents=True, exist_ok=True)
    per_shard = -(-len(docs) // num_shards)
    paths = []
    for shard in range(num_shards):
        chunk = docs[shard * per_shard : (shard + 1) * per_shard]
        table = pa.table(
            {
                "text": chunk,
                "id": [f"<urn:uuid:{shard:04d}-{i:06d}>" for i in range(len(chunk))],
                "dump": ["CC-MAIN-2024-10"] * len(chunk),
                "url": [f"https://example.org/{shard}/{i}" for i in range(len(chunk))],
                "file_path": [f"s3://commoncrawl/crawl-data/CC-MAIN-2024-10/{shard:05d}.warc.gz"] * len(chunk),
                "language": ["en"] * len(chunk),
                "language_score": pa.array([0.95] * len(chunk), type=pa.float64()),
                "token_count": pa.array([len(t.split()) for t in chunk], type=pa.int64()),
                "score": pa.array([3.1] * len(chunk), type=pa.float64()),
                "int_score": pa.array([3] * len(chunk), type=pa.int64()),
            }
        )
        path = directory / f"train-{shard:05d}-of-{num_shards:05d}.parquet"
        pq.write_table(table, path, row_group_size=16)
        paths.append(path)
    return paths


def write_jsonl(path: Path, docs: list[str], column: str = "text") -> Path:
    path.write_text("".join(json.dumps({column: doc, "meta": i}) + "\n" for i, doc in enumerate(docs)))
    return path
