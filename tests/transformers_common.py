"""transformers' own common test mixins, from the source release of the installed transformers version.

transformers tests every model it ships with ``ModelTesterMixin`` (``tests/test_modeling_common.py``),
``ConfigTester`` (``tests/test_configuration_common.py``) and ``ImageProcessingTestMixin``
(``tests/test_image_processing_common.py``). They are not installed with the wheel; the source
distribution on PyPI carries them. [`load_common_tests`] downloads that sdist once with pip
(``pip download --no-deps --no-binary :all: transformers==<installed>``, the package index only) into a
cache outside this repository and imports the three files from there. Nothing of it is copied into the repo.

The sdist holds the top-level ``tests/*.py`` files but not four helper modules they import from the
repository's other folders; small stand-ins are written beside them, each saying what it replaces:

- ``tests/exporters/test_export.py`` (``ExportTesterMixin``): empty mixin, so the export tests of the
  repository (torch.export/ONNX through optimum) do not run here; cage's ONNX export has its own tests;
- ``tests/generation/test_utils.py`` (``GenerationTesterMixin``): empty; CAGE does not generate;
- ``tests/utils/test_configuration_utils.py`` (``config_common_kwargs``): the PreTrainedConfig-wide
  arguments with non-default values, which ``ConfigTester.check_config_arguments_init`` sets and reads back;
- ``utils/fetch_hub_objects_for_ci.py`` (``url_to_local_path``): returns the URL unchanged (no test used
  here fetches a Hub image; offline, one that did would fail, never pass silently).

Cache: ``$CAGE_TRANSFORMERS_TESTS_CACHE`` or ``~/.cache/cage/transformers-tests``. A download failure raises
(CI must run these tests); deselect them locally with ``-m "not transformers_mixins"``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import transformers

PACKAGE = "transformers_common_tests"
COMMON_FILES = ("test_modeling_common.py", "test_configuration_common.py", "test_image_processing_common.py")

STAND_INS = {
    "__init__.py": "",
    "exporters/__init__.py": "",
    "exporters/test_export.py": '''"""Stand-in (cage): the sdist lacks tests/exporters; no export tests from here."""


class ExportTesterMixin:
    pass
''',
    "generation/__init__.py": "",
    "generation/test_utils.py": '''"""Stand-in (cage): the sdist lacks tests/generation; CAGE does not generate."""


class GenerationTesterMixin:
    pass
''',
    "utils/__init__.py": "",
    "utils/test_configuration_utils.py": '''"""Stand-in (cage): PreTrainedConfig-wide arguments, not at defaults."""

config_common_kwargs = {
    "return_dict": False,
    "output_hidden_states": True,
    "output_attentions": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["BertModel"],
    "id2label": {0: "label"},
    "label2id": {"label": "0"},
    "problem_type": "regression",
}
''',
}
ROOT_STAND_INS = {
    "utils/fetch_hub_objects_for_ci.py": '''"""Stand-in (cage): the sdist lacks utils/; URLs are used as they are."""


def url_to_local_path(url, *args, **kwargs):
    return url
''',
}


def cache_dir() -> Path:
    """The cache folder for the installed transformers version and these stand-ins (a change to either: a new one)."""
    default = Path.home() / ".cache" / "cage" / "transformers-tests"
    stand_ins = hashlib.sha256(repr((STAND_INS, ROOT_STAND_INS)).encode()).hexdigest()[:8]
    name = f"transformers-{transformers.__version__}-{stand_ins}"
    return Path(os.environ.get("CAGE_TRANSFORMERS_TESTS_CACHE", default)) / name


def _download(target: Path) -> None:
    """Fetch the sdist of the installed transformers with pip and unpack the common test files into ``target``."""
    version = transformers.__version__
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        command += ["--quiet", "--dest", tmp, f"transformers=={version}"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
        archives = list(Path(tmp).glob("transformers-*.tar.gz"))
        if not archives:
            raise RuntimeError(
                f"could not download the transformers {version} source release from the package index "
                f"({' '.join(command)}): {done.stderr.strip()[-2000:]}"
            )
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        package = staging / PACKAGE
        with tarfile.open(archives[0]) as archive:
            for name in COMMON_FILES:
                member = archive.getmember(f"transformers-{version}/tests/{name}")
                source = archive.extractfile(member)
                if source is None:
                    raise RuntimeError(f"{archives[0].name}: tests/{name} is not a file")
                (package / name).parent.mkdir(parents=True, exist_ok=True)
                (package / name).write_bytes(source.read())
        for relative, text in STAND_INS.items():
            (package / relative).parent.mkdir(parents=True, exist_ok=True)
            (package / relative).write_text(text)
        for relative, text in ROOT_STAND_INS.items():
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).write_text(text)
        staging.rename(target)  # atomic: a half-written cache is never used


def load_common_tests() -> dict[str, ModuleType]:
    """Import transformers' three common test modules (downloading them once); keyed by file stem.

    Raises:
        RuntimeError: the source release cannot be downloaded or lacks one of the files.
    """
    target = cache_dir()
    if not (target / PACKAGE / COMMON_FILES[0]).is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        _download(target)
    # The image-processing module appends <its folder>/../utils to sys.path itself (for fetch_hub_objects_for_ci).
    if str(target) not in sys.path:
        sys.path.insert(0, str(target))
    return {name[:-3]: importlib.import_module(f"{PACKAGE}.{name[:-3]}") for name in COMMON_FILES}
