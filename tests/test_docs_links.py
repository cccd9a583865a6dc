"""Every relative link in every tracked Markdown file points at a file or folder of the repo, and a
`#anchor` into a Markdown file names one of its headings. Absolute (http, https, mailto) links are
not checked: this runs offline."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

REPO = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).*?\1")
# [text](target) and ![alt](target); the text may hold one level of brackets, the target an optional "title"
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def tracked_markdown() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "*.md"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def outside_fences(text: str) -> list[tuple[int, str]]:
    """(line number, line) for the lines outside fenced code blocks."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def links(text: str) -> list[tuple[int, str]]:
    found = []
    for number, line in outside_fences(text):
        line = CODE_SPAN.sub("", line)  # `[not](a link)`
        for match in INLINE_LINK.finditer(line):
            found.append((number, match.group(1)))
        match = REFERENCE_DEF.match(line)
        if match:
            found.append((number, match.group(1)))
    return [(number, target.strip("<>")) for number, target in found]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading renders as its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated heading gets -1, -2, ... as on GitHub."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for _, line in outside_fences(text):
        match = HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = counts.get(base, 0)
            counts[base] = count + 1
            found.add(f"{base}-{count}" if count else base)
    return found


def has_anchor(md: Path, anchor: str) -> bool:
    return unquote(anchor).lower() in anchors(md.read_text(encoding="utf-8"))


def broken_links(md: Path, root: Path = REPO) -> list[str]:
    """'file:line: target (why)' for each relative link of `md` that does not resolve."""
    text = md.read_text(encoding="utf-8")
    problems = []
    for number, target in links(text):
        if not target or EXTERNAL.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (md.parent / unquote(path_part)).resolve() if path_part else md
        where = f"{md.relative_to(root)}:{number}: {target}"
        if not dest.is_relative_to(root.resolve()):
            problems.append(f"{where} (points outside the repository)")
        elif not dest.exists():
            problems.append(f"{where} (no such file)")
        elif anchor and dest.suffix == ".md" and dest.is_file() and not has_anchor(dest, anchor):
            problems.append(f"{where} (no heading with that anchor in {dest.relative_to(root.resolve())})")
    return problems


def test_every_relative_link_in_tracked_markdown_resolves():
    files = tracked_markdown()
    assert REPO / "README.md" in files
    problems = [problem for md in files for problem in broken_links(md)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_checker_finds_what_is_broken(tmp_path: Path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n\n## `dtype: auto`: the choice\n\n## Twice\n\n## Twice\n")
    md = tmp_path / "docs" / "page.md"
    md.write_text(
        "# Page\n"
        "[ok](other.md) [ok](other.md#dtype-auto-the-choice) [ok](other.md#twice-1) [ok](#page) [ok](../docs/)\n"
        "[web](https://example.com/missing.md) ![img](missing.png) [gone](../NOPE.md)\n"
        "[outside](../../elsewhere/x.md) [anchor](other.md#nope) `[code](missing.md)`\n"
        "```\n[fenced](missing.md)\n```\n"
        '[ref]: <also missing.md> "title"\n'
    )
    assert broken_links(md, tmp_path) == [
        "docs/page.md:3: missing.png (no such file)",
        "docs/page.md:3: ../NOPE.md (no such file)",
        "docs/page.md:4: ../../elsewhere/x.md (points outside the repository)",
        "docs/page.md:4: other.md#nope (no heading with that anchor in docs/other.md)",
        "docs/page.md:8: also missing.md (no such file)",
    ]
