"""The analysis commands end to end, and one-line errors (exit 2, no traceback) on bad input."""

import json

import numpy as np
import pytest

from saescale.cli import main

RECOMMEND_KEYS = ("flops", "features", "steps", "tokens", "batch_size", "lr", "lambda", "predicted_loss")


def run(argv, capsys):
    """Run the CLI; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    return info.value.code, captured.out, captured.err


def assert_one_line_error(code, err, fragment):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err


def test_fit_writes_fit_json(small_dir, capsys):
    code, out, _ = run(["fit", str(small_dir), "--bootstrap", "50"], capsys)
    assert code == 0
    assert "wrote" in out and "surface" in out
    content = json.loads((small_dir / "fit.json").read_text())
    assert content["dropped"] == {"status=failed": 1}
    assert content["n_used"] == content["n_rows"] - 1
    (group,) = content["groups"]
    for key in ("frontier", "isoflop", "surface", "lr", "allocation", "compute_range", "cells", "warnings"):
        assert key in group
    surface = group["surface"]
    assert surface["converged"] is True and surface["n_points"] == 16
    assert surface["alpha_interval"][0] <= surface["alpha"] <= surface["alpha_interval"][1]
    assert group["allocation"]["basis"] == "surface"
    assert "vs_compute" in group["lr"]["laws"] and "m_prior" in group["lr"]
    assert group["lr"]["m_prior"]["prior_exponent"] == -0.5


def test_recommend_json(small_dir, capsys):
    code, out, _ = run(["recommend", "--flops", "1e15", "--results", str(small_dir), "--bootstrap", "50", "--json"], capsys)
    assert code == 0
    rec = json.loads(out)
    for key in RECOMMEND_KEYS:
        assert key in rec
        if key != "flops":
            assert len(rec[f"{key}_interval"]) == 2
    assert rec["flops"] == 1e15
    assert rec["extrapolation_factor"] > 1


def test_recommend_flops_factor(small_dir, capsys):
    code, out, _ = run(["recommend", "--flops-factor", "10", "--results", str(small_dir), "--bootstrap", "0", "--json"], capsys)
    assert code == 0
    rec = json.loads(out)
    assert rec["extrapolation_factor"] == pytest.approx(10.0)
    assert rec["flops"] == pytest.approx(10 * rec["max_flops_seen"])


def test_recommend_table_output(small_dir, capsys):
    code, out, _ = run(["recommend", "--flops", "1e18", "--results", str(small_dir), "--bootstrap", "20"], capsys)
    assert code == 0
    assert "predicted_loss" in out and "warning: extrapolating" in out


def test_plot_writes_png_and_svg(small_dir, tmp_path, capsys):
    code, out, _ = run(["plot", str(small_dir), "--out", str(tmp_path / "figs"), "--flops", "1e16", "--bootstrap", "20"], capsys)
    assert code == 0
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    for fig in ("loss_frontier", "isoflop", "allocation", "lr_law"):
        assert f"{fig}.png" in names and f"{fig}.svg" in names
    assert (tmp_path / "figs" / "lr_law.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_table_reads_a_data_column(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    from analysis.surface import SurfaceParams

    truth = SurfaceParams(E=1.5, A=200.0, B=900.0, alpha=0.35, beta=0.4)
    n, d = (g.ravel() for g in np.meshgrid(np.geomspace(1e7, 1e10, 6), np.geomspace(1e9, 1e12, 6)))
    pd.DataFrame({"N": n, "D": d, "L": truth.loss(n, d)}).to_csv(tmp_path / "t.csv", index=False)
    code, out, _ = run(["fit-table", str(tmp_path / "t.csv"), "--size-col", "N", "--data-col", "D", "--loss-col", "L", "--json"], capsys)
    assert code == 0
    fit = json.loads(out)
    assert fit["alpha"] == pytest.approx(0.35, rel=1e-4) and fit["B"] == pytest.approx(900.0, rel=1e-4)
    assert "alpha_interval" not in fit


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["fit", "{tmp}/nope"], "no such results directory or table file"),
        (["fit", "{tmp}"], "no results.parquet and no runs/*.parquet"),
        (["fit", "{small}", "--where", "lambda"], "is not KEY=VALUE"),
        (["fit", "{small}", "--lambda", "7"], "no runs match lambda=7.0 (lambda values: 5)"),
        (["fit", "{small}", "--lr-method", "akima"], "LR method 'akima'"),
        (["recommend", "--flops", "-5", "--results", "{small}", "--bootstrap", "0"], "--flops must be a positive number"),
        (["recommend", "--results", "{small}"], "give exactly one of --flops and --flops-factor"),
        (["fit-table", "{tmp}/t.csv", "--size-col", "N", "--data-col", "D", "--loss-col", "loss"], "no column(s) 'loss'"),
        (["fit-table", "{tmp}/t.csv", "--size-col", "N", "--loss-col", "L"], "give exactly one of --data-col and --flops-col"),
        (["fit-table", "{tmp}/few.csv", "--size-col", "N", "--data-col", "D", "--loss-col", "L"], "fewer than the 5 parameters"),
        (["fit-table", "{tmp}/neg.csv", "--size-col", "N", "--data-col", "D", "--loss-col", "L"], "size column has 1 non-finite or non-positive"),
        (["fit-table", "{tmp}/bad.parquet", "--size-col", "N", "--data-col", "D", "--loss-col", "L"], "cannot read table"),
    ],
)
def test_bad_input_is_one_error_line(argv, fragment, small_dir, tmp_path, capsys):
    (tmp_path / "t.csv").write_text("N,D,L\n1,2,3\n")
    (tmp_path / "few.csv").write_text("N,D,L\n1,1,3\n2,2,2\n3,3,1\n")
    (tmp_path / "neg.csv").write_text("N,D,L\n-1,1,3\n2,2,2\n3,3,1\n4,4,1\n5,5,1\n6,6,1\n")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 garbage")
    argv = [a.format(tmp=tmp_path, small=small_dir) for a in argv]
    code, _, err = run(argv, capsys)
    assert_one_line_error(code, err, fragment)


def test_plot_file_prefixes_name_what_differs():
    from analysis.plots import file_prefixes

    keys = [{"recipe": "r", "lambda": 5.0, "n": 64}, {"recipe": "r", "lambda": 10.0, "n": 64}]
    assert file_prefixes(keys) == ["lambda-5_", "lambda-10_"]
    assert file_prefixes(keys[:1]) == [""]


def test_lr_plot_when_the_point_estimate_lies_outside_its_interval(monkeypatch, tmp_path):
    """Small bootstraps can put the plug-in estimate outside its percentile interval; it must still plot."""
    from analysis import fit_results
    from analysis.plots import plot_lr_law
    from analysis.synthetic import synthetic_table, write_results_dir

    write_results_dir(synthetic_table(seed=3), tmp_path / "r")
    group = fit_results(tmp_path / "r", n_boot=50).only_group()
    law = group.lr.laws["vs_compute"]
    target = 100 * group.max_flops
    y = float(law.predict(target))
    monkeypatch.setattr(type(law), "predict_interval", lambda self, c, level=0.9: (1.1 * y, 1.3 * y))
    fig = plot_lr_law(group, target)
    assert fig.axes[0].get_legend() is not None


def test_lr_plot_draws_the_prediction_interval_that_recommend_quotes(tmp_path):
    """The LR figure's band at the target is recommend's eta* prediction interval, not the narrower bootstrap band."""
    from matplotlib.collections import LineCollection

    from analysis import fit_results
    from analysis.plots import plot_lr_law
    from analysis.synthetic import synthetic_table, write_results_dir

    write_results_dir(synthetic_table(seed=3), tmp_path / "r")
    group = fit_results(tmp_path / "r", n_boot=50).only_group()
    target = 10 * group.max_flops
    pred = group.lr.predictors["vs_compute"].predict(np.log([target]), 0.9)
    boot = group.lr.laws["vs_compute"].predict_interval(target, level=0.9)
    assert pred.interval[1] / pred.interval[0] > boot[1] / boot[0]     # the two differ on this table
    fig = plot_lr_law(group, target)
    (seg,) = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)][0].get_segments()
    assert np.allclose(sorted(seg[:, 1]), pred.interval, rtol=1e-9)
    assert any("prediction interval" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
