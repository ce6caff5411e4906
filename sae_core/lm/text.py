"""Text sources for activation caching: files, folders, or a Hugging Face dataset, as documents.

A source is a file (read whole; .html/.htm files have their markup stripped), a folder
(every .txt/.md/.rst/.html/.htm file below it, `.rst.txt` included, hidden entries skipped,
in sorted path order so the document order is deterministic), or `hf:NAME[:CONFIG]` (the
`text` column of the train split of a Hugging Face dataset; needs the `datasets` package and
a reachable hub). One file or one dataset record is one document.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from sae_core.lm.hub import hub_endpoint, hub_reachable
from sae_core.errors import UserError

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".html", ".htm")
HTML_SUFFIXES = (".html", ".htm")
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class Document:
    """One unit of text (a file or a dataset record) and where it came from."""

    source: str
    text: str


@dataclass(frozen=True)
class TextSource:
    """A resolved `--text` argument: a list of files, or a Hugging Face dataset."""

    spec: str
    files: tuple[Path, ...] = ()
    dataset: str | None = None
    config: str | None = None

    def describe(self) -> str:
        """The form recorded in store metadata: an absolute path or the hf: spec."""
        return self.spec if self.dataset else str(Path(self.spec).resolve())


def resolve_sources(specs: Sequence[str]) -> list[TextSource]:
    """Check every `--text` argument exists and expand folders into their sorted text files."""
    if not specs:
        raise UserError("--text: give at least one file, folder or hf:<dataset>")
    sources = []
    for spec in specs:
        if spec.startswith(HF_PREFIX):
            name, _, config = spec[len(HF_PREFIX):].partition(":")
            if not name:
                raise UserError(f"--text {spec!r}: expected hf:NAME[:CONFIG]")
            if importlib.util.find_spec("datasets") is None:
                raise UserError(f"--text {spec}: Hugging Face datasets need the `datasets` package (pip install datasets)")
            if not hub_reachable():
                raise UserError(f"--text {spec}: the Hugging Face hub ({hub_endpoint()}) is unreachable")
            sources.append(TextSource(spec=spec, dataset=name, config=config or None))
            continue
        path = Path(spec)
        if path.is_file():
            sources.append(TextSource(spec=spec, files=(path,)))
        elif path.is_dir():
            files = _text_files(path)
            if not files:
                raise UserError(f"--text {spec}: no {'/'.join(TEXT_SUFFIXES)} files in this folder")
            sources.append(TextSource(spec=spec, files=tuple(files)))
        else:
            raise UserError(f"--text {spec}: no such file or folder")
    return sources


def _text_files(root: Path) -> list[Path]:
    files = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if p.name.lower().endswith(TEXT_SUFFIXES):
            files.append(p)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def iter_documents(sources: Sequence[TextSource]) -> Iterator[Document]:
    """Yield the documents of every source in order; empty documents are skipped."""
    for src in sources:
        if src.dataset is not None:
            yield from _dataset_documents(src)
            continue
        for path in src.files:
            text = read_text_file(path)
            if text.strip():
                yield Document(source=str(path), text=text)


def read_text_file(path: Path) -> str:
    """A file's text (UTF-8), with HTML markup stripped for .html/.htm files."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"--text {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UserError(f"--text {path}: unreadable: {exc.strerror}") from None
    if path.name.lower().endswith(HTML_SUFFIXES):
        text = html_to_text(text)
    return text


class _HTMLText(HTMLParser):
    """Collects visible text; block-level elements end a line; script/style are dropped."""

    _BLOCK = {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "pre",
              "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "dt", "dd", "title", "hr"}
    _HIDDEN = {"script", "style", "head", "noscript", "template"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: tags and script/style/head removed, blank lines squeezed."""
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    lines = (re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n"))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def _dataset_documents(src: TextSource) -> Iterator[Document]:
    import datasets

    try:
        records = datasets.load_dataset(src.dataset, src.config, split="train", streaming=True)
        for i, record in enumerate(records):
            if "text" not in record:
                raise UserError(f"--text {src.spec}: the dataset has no 'text' column (columns: {sorted(record)})")
            if record["text"].strip():
                yield Document(source=f"{src.spec}#{i}", text=record["text"])
    except (OSError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise UserError(f"--text {src.spec}: cannot load the dataset: {str(exc).splitlines()[0]}") from None
