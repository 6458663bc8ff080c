"""Writes lvmjax/datasets/scipy_docs.tsv.gz: the prose of SciPy's public docstrings, one document each.

Run with the SciPy release that lvmjax/datasets/README.md names (the text changes between
releases): ``python tools/make_scipy_docs.py``. Every public function and class of the
subpackages below with a docstring of at least 20 words is one document, labelled by its
subpackage. Kept: the summary, the extended summary and the parameter and return descriptions;
dropped: the call signatures, the numpydoc "name : type" lines and section headings, the
sections Notes, References, See Also and Examples, and doctest lines; whitespace is collapsed
and a document is cut at a word boundary after 2000 characters. It runs with PYTHONHASHSEED=0
(re-executing itself), since a few docstrings show a set. Objects exported by two subpackages
count once, under the first. The file is gzip with no time stamp, so its bytes are reproducible.
"""

import gzip
import hashlib
import importlib
import inspect
import os
import re
import sys
import warnings
from pathlib import Path

import scipy

SUBPACKAGES = (
    "fft",
    "integrate",
    "interpolate",
    "io",
    "linalg",
    "ndimage",
    "optimize",
    "signal",
    "sparse",
    "sparse.linalg",
    "sparse.csgraph",
    "spatial",
    "special",
    "stats",
)
MIN_WORDS = 20
MAX_CHARACTERS = 2000
OUTPUT = Path(__file__).parents[1] / "lvmjax" / "datasets" / "scipy_docs.tsv.gz"
_CUT = re.compile(r"^\s*(Examples|References|See Also|Notes)\s*\n\s*-{3,}", re.M)
_SIGNATURE = re.compile(r"^\s*[\w.]+\(.*\)\s*$")
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_SECTION = re.compile(r"^\s*(Parameters|Returns|Yields|Raises|Warns|Attributes|Methods|Other Parameters)\s*$")
_TYPE_LINE = re.compile(r"^\s*\*{0,2}[\w, ]+ : .*$")  # a numpydoc "name : type" line


def prose(doc: str) -> str:
    doc = inspect.cleandoc(doc)
    cut = _CUT.search(doc)
    lines = (doc[: cut.start()] if cut else doc).splitlines()
    while lines and (not lines[0].strip() or _SIGNATURE.match(lines[0])):
        lines.pop(0)
    kept = [
        line
        for line in lines
        if not line.strip().startswith((">>>", "..."))
        and not any(pattern.match(line) for pattern in (_UNDERLINE, _SECTION, _TYPE_LINE))
    ]
    text = " ".join(" ".join(kept).split())
    return text if len(text) <= MAX_CHARACTERS else text[:MAX_CHARACTERS].rsplit(" ", 1)[0]


def documents() -> list[tuple[str, str, str]]:
    seen, rows = set(), []
    for subpackage in SUBPACKAGES:
        module = importlib.import_module(f"scipy.{subpackage}")
        for name in sorted(getattr(module, "__all__", dir(module))):
            value = getattr(module, name, None)
            doc = getattr(value, "__doc__", None)
            if name.startswith("_") or value is None or inspect.ismodule(value) or not isinstance(doc, str):
                continue
            text = prose(doc)
            if id(value) in seen or len(text.split()) < MIN_WORDS:
                continue
            seen.add(id(value))
            rows.append((subpackage, f"scipy.{subpackage}.{name}", text))
    return rows


def main() -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":  # a docstring or two format a set, whose order the hash seed sets
        os.execve(sys.executable, [sys.executable, __file__], {**os.environ, "PYTHONHASHSEED": "0"})
    warnings.filterwarnings("ignore")  # deprecated names warn when they are looked up
    rows = documents()
    payload = "".join(f"{subpackage}\t{name}\t{text}\n" for subpackage, name, text in rows).encode()
    with open(OUTPUT, "wb") as file, gzip.GzipFile(fileobj=file, mode="wb", mtime=0, filename="") as archive:
        archive.write(payload)
    print(f"scipy {scipy.__version__}: {len(rows)} documents, {len(payload)} bytes of text")
    print(f"sha256 of the text: {hashlib.sha256(payload).hexdigest()}")
    print(f"sha256 of {OUTPUT.name}: {hashlib.sha256(OUTPUT.read_bytes()).hexdigest()}")


if __name__ == "__main__":
    main()
