"""The project states its method in docs/method.md and cites nothing outside the repository.

Code and docs point to ``docs/method.md §N``; a reference to the external "SPEC" document (e.g.
"SPEC §1", "SPEC)") must not come back. The identifier ``SPECS`` (a dict in tests/_eval_runs.py) is fine.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["alm", "conf", "tests", "scripts", "docs", "README.md"]
SUFFIXES = {".py", ".yaml", ".yml", ".md", ".txt", ".toml", ".cfg", ".ini", ".sh"}
SPEC = re.compile(r"\bSPEC\b")  # not SPECS, not MixtureSpec / spec

# the keys of the symbol table (docs/method.md §3), as a user types them
TABLE_KEYS = ["method.w1", "method.w2", "method.w_cond", "method.iterations"]


def _files():
    """The scanned files, this one excepted (it has to spell the pattern)."""
    me = Path(__file__).resolve()
    for name in SCANNED:
        path = ROOT / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from (p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in SUFFIXES
                        and "__pycache__" not in p.parts and p.resolve() != me)


def test_no_reference_to_the_external_spec():
    hits = []
    for path in _files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if SPEC.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not hits, "point these at docs/method.md §N instead:\n" + "\n".join(hits)


def test_the_pattern_spares_the_specs_identifier():
    assert SPEC.search("SPEC §1") and SPEC.search("(SPEC)") and SPEC.search("SPEC-level") and SPEC.search("SPEC's")
    assert not SPEC.search("SPECS = {") and not SPEC.search("MixtureSpec") and not SPEC.search("spec")


def test_method_doc_exists_with_the_symbol_table():
    doc = ROOT / "docs" / "method.md"
    assert doc.is_file()
    text = doc.read_text(encoding="utf-8")
    for key in TABLE_KEYS:
        assert f"`{key}`" in text or f"{key} " in text, key
    assert "must sweep `method.w_cond`, not `method.w2`" in text
    # the sections that code comments cite as docs/method.md §N
    for n in range(1, 12):
        assert re.search(rf"^## {n}\. ", text, re.M), f"docs/method.md has no section {n}"


def test_section_citations_exist():
    """Every ``docs/method.md §N`` (or §N-M, §N.K) cited in the scanned files names an existing section."""
    text = (ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^##+ (\d+(?:\.\d+)?)\.? ", text, re.M))
    bad = []
    for path in _files():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in re.finditer(r"docs/method\.md §(\S+)", line):
                if m.group(1).startswith("N"):  # the placeholder in prose: "docs/method.md §N"
                    continue
                for part in re.findall(r"\d+(?:\.\d+)?", m.group(1)):
                    if part not in sections:
                        bad.append(f"{path.relative_to(ROOT)}:{n}: §{m.group(1)}")
                if not re.match(r"\d", m.group(1)):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: §{m.group(1)}")
    assert not bad, "cited sections missing from docs/method.md:\n" + "\n".join(bad)
