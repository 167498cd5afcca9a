"""transformers' own common model tests run on our classes, both architectures: ``ModelTesterMixin`` (save and load,
initialisation, attention outputs, hidden states, gradient checkpointing, resizing embeddings, attention interfaces,
rotary scaling, ...), from the test files of the installed transformers' own release.

    python tests/transformers_common_suite.py            # [needs: network] the transformers sdist from PyPI, once
    python tests/transformers_common_suite.py -k rope    # pytest arguments pass through

The files come from PyPI's source distribution of the installed version (``pip download --no-binary``), kept in
``.transformers-tests/<version>/``. That sdist ships ``tests/test_modeling_common.py`` but not the two modules it
imports mixins from (``tests/generation/test_utils.py``, ``tests/exporters/test_export.py``): in their place go
empty mixins, so the generate and torch.export tests of those modules are not run here (tests/test_generate.py and
tests/test_compile.py test ours against GPT2LMHeadModel). Not part of ``python -m pytest``: it needs the network once
and ``parameterized`` (in ``.[dev]``), and takes about a minute.
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import transformers

ROOT = Path(__file__).resolve().parent.parent
OUR_TESTS = Path(__file__).resolve().parent / "transformers_common_tests.py"
# Stand-ins for the modules the sdist lacks: the mixins' names, with no tests of their own.
MISSING_MIXINS = {
    "generation/test_utils.py": "GenerationTesterMixin",
    "exporters/test_export.py": "ExportTesterMixin",
}


def transformers_tests(version: str) -> Path:
    """``tests/`` of transformers ``version``'s sdist, downloaded once into ``.transformers-tests/<version>``."""
    target = ROOT / ".transformers-tests" / version
    if (target / "tests" / "test_modeling_common.py").is_file():
        return target / "tests"
    with tempfile.TemporaryDirectory() as download:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:"]
        subprocess.run([*pip, "--dest", download, f"transformers=={version}"], check=True)
        (archive,) = Path(download).glob("transformers-*.tar.gz")
        prefix = f"transformers-{version}/tests/"
        with tarfile.open(archive) as sdist:
            members = [member for member in sdist.getmembers() if member.name.startswith(prefix)]
            for member in members:
                member.name = member.name.removeprefix(f"transformers-{version}/")
            partial = target.with_name(target.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            sdist.extractall(partial, members=members, filter="data")
    for relative, mixin in MISSING_MIXINS.items():
        path = partial / "tests" / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            (path.parent / "__init__.py").touch()
            path.write_text(f"class {mixin}:\n    pass  # not in the sdist: its tests are not run\n")
    (partial / "tests" / "__init__.py").touch()
    partial.rename(target)  # complete or absent: an interrupted download is fetched again
    return target / "tests"


def main(pytest_args: list[str]) -> int:
    tests = transformers_tests(transformers.__version__)
    shutil.copyfile(OUR_TESTS, tests / "test_gpt_scratch_common.py")
    command = [sys.executable, "-m", "pytest", "tests/test_gpt_scratch_common.py", "-p", "no:cacheprovider",
               "-o", "addopts=", "--rootdir", str(tests.parent), "-q", "-rfs", *pytest_args]  # fmt: skip
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(command, cwd=tests.parent, env=environment).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
