"""Whether the Hugging Face Hub can be reached, asked once and fast, so that a machine without network works from
the cache at once: otherwise every file asked of the Hub costs five retries (1 + 2 + 4 + 8 + 8 s) and a log line each
before the same failure, and the failure is in the Hub client's words, not naming what the user asked for."""

import os
import sys
import urllib.error
import urllib.request

PROBE_SECONDS = 3.0


def offline_already() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false", "no", "off")


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """The Hub's endpoint answers (any HTTP status: it is there); honours HF_ENDPOINT and the proxy variables."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False
    return True


def offline_unless_reachable(what: str) -> bool:
    """True when this process works from the cache only: HF_HUB_OFFLINE was set, or the Hub cannot be reached, and
    then it is set (for ``huggingface_hub``, ``datasets`` and transformers, loaded or not) with one line saying
    so and naming ``what`` would have come from the Hub."""
    if offline_already():
        return True
    if hub_reachable():
        return False
    print(f"the Hugging Face Hub cannot be reached: {what} from the local cache only (as HF_HUB_OFFLINE=1 does)",
          file=sys.stderr)  # fmt: skip
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    for module, attribute in (("huggingface_hub.constants", "HF_HUB_OFFLINE"), ("datasets.config", "HF_HUB_OFFLINE"),
                              ("datasets.config", "HF_DATASETS_OFFLINE")):  # fmt: skip
        if module in sys.modules:  # read at their import: set on the loaded module too
            setattr(sys.modules[module], attribute, True)
    return True
