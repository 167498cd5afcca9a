"""What the checksums cost: verifying the token shards of 1B tokens (BLAKE2b and the id range, as the reader does
before each shard's first read), and the checksum share of saving a 124M checkpoint (model, AdamW's two states).

Times are wall-clock seconds on this machine; the page cache is dropped before the cold read where the system
allows it (root), so "cold" is what the first epoch pays and "warm" what a rerun pays.

    python bench/checksum_speed.py                  # 1B tokens (2 GB of shards, written to a temporary directory)
    python bench/checksum_speed.py --tokens 2e8
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gpt_scratch import GPTScratchConfig, GPTScratchForCausalLM  # noqa: E402
from gpt_scratch.atomic import write_json  # noqa: E402
from gpt_scratch.checksum import buffer_digest, file_digest  # noqa: E402
from gpt_scratch.data import TextSource, TokenShardBatches  # noqa: E402
from gpt_scratch.data.shards import MANIFEST, new_manifest  # noqa: E402


def drop_page_cache() -> bool:
    result = subprocess.run(["sh", "-c", "sync && echo 3 > /proc/sys/vm/drop_caches"], capture_output=True)
    return result.returncode == 0


def shards_of(directory: Path, tokens: int, per_shard: int) -> None:
    rng = np.random.default_rng(0)
    manifest = new_manifest(TextSource("bench"))
    for index, start in enumerate(range(0, tokens, per_shard)):
        array = rng.integers(0, 50257, min(per_shard, tokens - start), dtype=np.uint16)
        path = directory / f"shard_{index:06d}.npy"
        np.save(path, array)
        entry = {"file": path.name, "tokens": len(array), "bytes": path.stat().st_size}
        manifest["shards"].append({**entry, "blake2b": buffer_digest(array)})
    manifest["complete"] = True
    write_json(directory / MANIFEST, manifest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=float, default=1e9)
    parser.add_argument("--shard-tokens", type=float, default=1e8)
    args = parser.parse_args()
    tokens, per_shard = int(args.tokens), int(args.shard_tokens)
    with tempfile.TemporaryDirectory(dir=ROOT) as scratch:
        shards = Path(scratch) / "shards"
        shards.mkdir()
        shards_of(shards, tokens, per_shard)
        size = sum(p.stat().st_size for p in shards.glob("*.npy"))
        for label in ("cold", "warm"):
            cold = label == "cold" and drop_page_cache()
            reader = TokenShardBatches(shards, batch_size=8, seq_len=1024)
            start = time.perf_counter()
            for shard in range(len(reader.shards)):
                reader.verify(shard)
            seconds = time.perf_counter() - start
            what = label if label == "warm" or cold else "warm (could not drop the page cache)"
            print(f"verify {tokens / 1e9:g}B tokens ({size / 1e9:.1f} GB, {len(reader.shards)} shards), {what}: "
                  f"{seconds:.1f} s, {seconds / (size / 1e9):.2f} s/GB; per shard before its first read "
                  f"{seconds / len(reader.shards):.2f} s")  # fmt: skip

        model = GPTScratchForCausalLM(GPTScratchConfig.from_preset("gpt2"))
        checkpoint = Path(scratch) / "checkpoint"
        checkpoint.mkdir()
        state = model.state_dict()
        moments = {k: {"exp_avg": v.clone(), "exp_avg_sq": v.clone()} for k, v in state.items()}
        start = time.perf_counter()
        torch.save(state, checkpoint / "model.pt")
        torch.save(moments, checkpoint / "optimizer.pt")
        save_seconds = time.perf_counter() - start
        start = time.perf_counter()
        for path in checkpoint.iterdir():
            file_digest(path)
        hash_seconds = time.perf_counter() - start
        size = sum(p.stat().st_size for p in checkpoint.iterdir())
        print(
            f"124M checkpoint ({size / 1e9:.2f} GB): save {save_seconds:.1f} s, checksums {hash_seconds:.1f} s "
            f"(+{100 * hash_seconds / save_seconds:.0f}% of the save; verifying it on resume costs the same)"
        )


if __name__ == "__main__":
    main()
