"""Text sources: folders in sorted order, suffix filter, HTML stripping, one-line errors."""

from __future__ import annotations

import importlib.util

import pytest

from sae_core.lm.text import html_to_text, iter_documents, resolve_sources
from sae_core.errors import UserError


def test_folder_is_expanded_in_sorted_order_with_text_suffixes_only(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.rst.txt").write_text("reST source\n")
    (tmp_path / "a.md").write_text("# heading\n")
    (tmp_path / "c.html").write_text("<p>para</p>")
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / ".hidden.txt").write_text("secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("secret")
    (tmp_path / "empty.txt").write_text("  \n")
    [src] = resolve_sources([str(tmp_path)])
    assert [p.relative_to(tmp_path).as_posix() for p in src.files] == ["a.md", "b/z.rst.txt", "c.html", "empty.txt"]
    docs = list(iter_documents([src]))
    assert [d.text for d in docs] == ["# heading\n", "reST source\n", "para\n"]  # empty.txt skipped, HTML stripped


def test_an_explicit_file_is_read_whatever_its_suffix(tmp_path):
    f = tmp_path / "kjv"
    f.write_text("In the beginning\n")
    assert [d.text for d in iter_documents(resolve_sources([str(f)]))] == ["In the beginning\n"]


def test_html_to_text_drops_markup_scripts_and_styles():
    html = ("<html><head><title>Title</title><style>body{color:red}</style></head><body>"
            "<h1>Heading</h1><script>var x = 1;</script><p>First &amp; <b>bold</b> para.</p>"
            "<ul><li>one</li><li>two</li></ul></body></html>")
    assert html_to_text(html) == "Heading\n\nFirst & bold para.\n\none\n\ntwo\n"


@pytest.mark.parametrize("specs, message", [
    ([], "--text: give at least one"),
    (["/nonexistent/file.txt"], "no such file or folder"),
    (["hf:"], "expected hf:NAME"),
])
def test_bad_text_arguments_are_user_errors(specs, message):
    with pytest.raises(UserError, match=message):
        resolve_sources(specs)


def test_folder_without_text_files_is_a_user_error(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\0")
    with pytest.raises(UserError, match="no .txt/.md/.rst/.html/.htm files"):
        resolve_sources([str(tmp_path)])


def test_non_utf8_file_is_named_in_the_error(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError, match="latin1.txt: not UTF-8"):
        list(iter_documents(resolve_sources([str(f)])))


@pytest.mark.skipif(importlib.util.find_spec("datasets") is not None, reason="datasets is installed")
def test_hf_dataset_without_datasets_package_is_a_user_error():
    with pytest.raises(UserError, match="need the `datasets` package"):
        resolve_sources(["hf:wikitext:wikitext-2-raw-v1"])
