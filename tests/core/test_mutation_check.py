"""scripts/mutation_check.py: parsing, the exactly-once rule, and one tiny mutation killed end to end."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _checker():
    spec = importlib.util.spec_from_file_location("mutation_check", ROOT / "scripts" / "mutation_check.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mutation_check"] = mod
    spec.loader.exec_module(mod)
    return mod


mc = _checker()


def test_repo_mutation_files_parse_and_every_old_text_occurs_once():
    paths = sorted((ROOT / "scripts" / "mutations").glob("*.toml"))
    assert any(p.name == "anthropic.toml" for p in paths)
    mutations = mc.load_mutations(paths)
    anthropic = [m for m in mutations if m.source.startswith("anthropic.toml#")]
    assert len(anthropic) >= 60
    assert mc.check_targets(ROOT, mutations) == []


def test_parse_defaults_and_errors(tmp_path):
    good = tmp_path / "a.toml"
    good.write_text('[[mutation]]\nfile = "m.py"\nold = "x = 1"\nnew = "x = 2"\nwhy = "w"\n')
    (m,) = mc.load_mutations([good])
    assert (m.file, m.old, m.new, m.why, m.tests, m.source) == ("m.py", "x = 1", "x = 2", "w", ("tests/core",), "a.toml#0")
    assert m.apply("y = 0\nx = 1\n") == "y = 0\nx = 2\n"
    for text, match in [('[[mutation]]\nfile = "m.py"\nold = "a"\nwhy = "w"\n', "missing keys"),
                        ('[[mutation]]\nfile = "m.py"\nold = "a"\nnew = "a"\nwhy = "w"\n', "same text"),
                        ('[[mutation]]\nfile = "m.py"\nold = "a"\nnew = "b"\nwhy = "w"\nextra = 1\n', "unknown keys"),
                        ('[[mutation]]\nfile = "m.py"\nold = "a"\nnew = "b"\nwhy = "w"\ntests = []\n', "tests"),
                        ("title = 1\n", "no \\[\\[mutation\\]\\]")]:
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(mc.MutationFileError, match=match):
            mc.load_mutations([bad])


def _tiny_repo(tmp_path: Path, mutations: str) -> Path:
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "tests").mkdir()
    (repo / "scripts" / "mutations").mkdir(parents=True)
    (repo / "pkg" / "__init__.py").write_text("")
    (repo / "pkg" / "mod.py").write_text("def double(x):\n    return 2 * x  # twice\n")
    (repo / "tests" / "test_mod.py").write_text("from pkg.mod import double\n\n\ndef test_double():\n    assert double(3) == 6\n")
    (repo / "scripts" / "mutations" / "tiny.toml").write_text(mutations)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    return repo


def test_checker_kills_a_real_mutation_and_reports_a_survivor(tmp_path, capsys):
    head = '[[mutation]]\nfile = "pkg/mod.py"\ntests = ["tests/test_mod.py"]\n'
    repo = _tiny_repo(tmp_path, head + 'old = "2 * x"\nnew = "3 * x"\nwhy = "triple"\n\n'
                                + head + 'old = "# twice"\nnew = "# two times"\nwhy = "comment only"\n')
    assert mc.main(["--root", str(repo), "--list"]) == 0
    assert mc.main(["--root", str(repo), "--jobs", "1"]) == 1      # the comment change survives
    out = capsys.readouterr().out
    assert "KILLED" in out and "triple" in out
    assert "2 mutations: 1 killed, 1 survived" in out and "survived: tiny.toml#1" in out
    assert (repo / "pkg" / "mod.py").read_text() == "def double(x):\n    return 2 * x  # twice\n"   # source untouched


def test_checker_refuses_old_text_not_found_exactly_once(tmp_path, capsys):
    head = '[[mutation]]\nfile = "pkg/mod.py"\nnew = "y"\nwhy = "w"\n'
    repo = _tiny_repo(tmp_path, head + 'old = "x"\n\n' + head + 'old = "absent"\n')
    assert mc.main(["--root", str(repo), "--list"]) == 2
    err = capsys.readouterr().err
    assert "tiny.toml#0: `old` occurs 2 times" in err and "tiny.toml#1: `old` occurs 0 times" in err
    assert mc.main(["--root", str(repo), "--only", "other.toml"]) == 2
