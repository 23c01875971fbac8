"""scale.py: families without training, bad input, and (slow) a real grid and --compare on Ray."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import nas
import scale
import scaler

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED_PARAMS = [7_794_184, 9_109_994, 12_233_232, 19_341_616, 30_389_784, 43_040_704,
                    66_347_960]


def run_main(capsys, *argv: str) -> tuple[int, str, str]:
    if "--baseline" not in argv:  # not the newest runs/*/best.yaml of whoever runs the tests
        argv = (*argv, "--baseline", "efficientnet-b0")
    code = scale.main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def family_specs(folder: Path) -> list[nas.ArchSpec]:
    return [nas.load_spec(p) for p in sorted(folder.glob("*.yaml"))]


def test_official_rule_reproduces_the_published_family(capsys, tmp_path):
    code, out, err = run_main(capsys, "--rule", "official", "--baseline", "efficientnet-b0",
                              "--out", str(tmp_path))
    assert code == 0, err
    specs = family_specs(tmp_path / "family-official")
    assert [nas.count_params(s) for s in specs] == PUBLISHED_PARAMS
    for s in specs:  # every emitted YAML loads, builds and re-counts to its recorded numbers
        assert nas.count_macs(s) == s.meta["family"]["macs"]
        assert nas.count_params(s) == s.meta["family"]["params"]
    rows = list(csv.DictReader(open(tmp_path / "family-official" / "family.csv")))
    assert len(rows) == 8 and "official" in (tmp_path / "family-official" / "family.md").read_text()


def test_budget_family_and_custom_budgets_land_within_3_percent(capsys, tmp_path):
    code, _, err = run_main(capsys, "--coefficients", "1.2,1.1,1.15", "--out", str(tmp_path / "a"))
    assert code == 0, err
    for s in family_specs(tmp_path / "a" / "family-budget"):
        fam = s.meta["family"]
        assert abs(nas.count_macs(s) / fam["target_macs"] - 1) <= 0.03
    code, out, err = run_main(capsys, "--coefficients", "1.2,1.1,1.15", "--budgets",
                              "600M,1.2G,2.5G", "--out", str(tmp_path / "b"))
    assert code == 0, err
    specs = family_specs(tmp_path / "b" / "family-budgets")
    targets = sorted(s.meta["family"]["target_macs"] for s in specs)
    assert targets == [600_000_000, 1_200_000_000, 2_500_000_000]
    for s in specs:
        assert abs(nas.count_macs(s) / s.meta["family"]["target_macs"] - 1) <= 0.03
        nas.build_model(s.replace(resolution=32), num_classes=10)  # builds as it is


def test_coefficients_come_from_a_scaling_file(capsys, tmp_path):
    c = scaler.Coefficients(1.2, 1.1, 1.15)
    scaler.write_scaling(c, [scaler.GridResult(c, 0.9, 770_000_000)], tmp_path / "s.yaml",
                         baseline_name="efficientnet-b0")
    code, out, err = run_main(capsys, "--scaling", str(tmp_path / "s.yaml"), "--rule", "paper",
                              "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert "alpha=1.2 beta=1.1 gamma=1.15" in out
    specs = family_specs(tmp_path / "run" / "family-paper")
    assert len(specs) == 7 and all(s.meta["family"]["rule"] == "paper" for s in specs)


@pytest.mark.parametrize("argv,needle", [
    (["--target-flops", "abc"], "--target-flops"),
    (["--target-flops", "10M"], "below the baseline"),
    (["--budgets", "600M,zz"], "--budgets"),
    (["--coefficients", "1.2,1.1"], "--coefficients"),
    (["--coefficients", "a,b,c"], "--coefficients"),
    (["--rule", "magic"], "--rule"),
    (["--grid", "--step", "0"], "--step"),
    (["--grid", "--tol", "-1"], "--tol"),
    (["--grid", "--alpha-range", "2"], "--alpha-range"),
    (["--baseline", "/nonexistent.yaml"], "file not found"),
    (["--set", "nope=1"], "unknown key 'nope'"),
    (["--target-flops", "1G", "--budgets", "2G"], "exclude each other"),
    (["--grid", "--phi", "100"], "--phi 100: the grid trains every candidate"),
    (["--grid", "--phi", "0"], "use 0 < phi <= 3"),
    (["--phi", "2"], "--phi sets the grid search, which runs only with --grid"),
    (["--set", "phi=2"], "--phi sets the grid search"),
    (["--step", "0.1"], "--step sets the grid search"),
    (["--budgets", ",,"], "--budgets ',,': no budget given"),
    (["--budgets", "600M,,1G"], "--budgets '600M,,1G': an empty item"),
    (["--set", "budgets=[]"], "budgets: got []"),
    (["--coefficients", "0.9,1.1,1.2"], "needs alpha, beta, gamma >= 1"),
    (["--coefficients", "1,1,1"], "at least one must be above 1"),
    (["--budgets", "600M,0.6G"], "given twice"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, needle):
    code, _, err = run_main(capsys, *argv, "--out", str(tmp_path))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert not list(tmp_path.iterdir())  # checked before anything is written


def test_coefficients_far_from_the_constraint_warn_on_one_line(capsys, tmp_path):
    code, out, err = run_main(capsys, "--coefficients", "2,2,2", "--rule", "paper",
                              "--out", str(tmp_path))
    assert code == 0
    assert err.strip().splitlines() == [
        "warning: coefficients alpha=2 beta=2 gamma=2 (from the given coefficients): "
        "alpha*beta^2*gamma^2 = 32, more than the grid's tol 0.1 from 2, so each step of phi "
        "multiplies the MACs by about 32, not 2"]
    code, out, err = run_main(capsys, "--coefficients", "1.2,1.1,1.15", "--rule", "paper",
                              "--out", str(tmp_path / "ok"))
    assert code == 0 and err == ""  # product 1.92: within the grid's tol


def test_run_folders_that_cannot_be_used_are_one_line(capsys, tmp_path):
    from nas.cli.jobs import dump
    from nas.core.settings import load
    from nas.search.settings import ScaleSettings, SearchSettings
    (tmp_path / "somefile").write_text("x")
    code, _, err = run_main(capsys, "--out", str(tmp_path / "somefile" / "run"))
    assert code == 2 and "somefile is a file, not a folder" in err
    assert len(err.strip().splitlines()) == 1
    # A search folder is continued by search.py.
    search_run = tmp_path / "search-run"
    search_run.mkdir()
    (search_run / "config.yaml").write_text(dump(load(
        SearchSettings, overrides={"target_flops": "400M", "out": str(search_run)})))
    (search_run / "driver.pt").write_bytes(b"")
    code, _, err = run_main(capsys, "--resume", "--out", str(search_run))
    assert code == 2 and err.strip() == (
        f"error: {search_run} holds a search (driver.pt), not a scale run; continue it with "
        f"search.py --resume --out {search_run}")
    # A grid whose saved state is empty cannot be continued; nothing is written.
    scale_run = tmp_path / "scale-run"
    scale_run.mkdir()
    (scale_run / "config.yaml").write_text(dump(load(
        ScaleSettings, overrides={"out": str(scale_run), "baseline": "efficientnet-b0",
                                  "grid_search": True})))
    (scale_run / "grid").mkdir()
    (scale_run / "grid" / "driver.pt").write_bytes(b"")
    before = sorted(p.name for p in scale_run.rglob("*"))
    code, _, err = run_main(capsys, "--resume", "--grid", "--out", str(scale_run))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{scale_run / 'grid' / 'driver.pt'}: cannot read the saved state (it is empty)" in err
    assert sorted(p.name for p in scale_run.rglob("*")) == before


def test_grid_proxy_resolutions_below_what_a_spec_takes_are_refused(capsys, tmp_path,
                                                                     tiny_fmnist):
    # No proxy resolution: the grid trains at the data's size, here 6 px after resizing.
    code, _, err = run_main(capsys, "--grid", "--data", str(tiny_fmnist),
                            "--set", "data.val_size=100", "--set", "data.image_size=6",
                            "--set", "proxy.resolution=null", "--out", str(tmp_path / "run"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: proxy.resolution (or data.image_size when it is null): the "
                          "baseline would fail to build on every worker")
    assert not (tmp_path / "run").exists()


def test_a_budget_family_member_that_cannot_be_made_fails_naming_it(capsys, tmp_path,
                                                                   monkeypatch):
    """No fallback to a member outside 3 %: one line naming the member and what to do
    (here with a tolerance no member can meet, since every B1-B7 lands within 3 %)."""
    import functools
    monkeypatch.setattr(scaler, "make_family",
                        functools.partial(scaler.make_family, tolerance=1e-9))
    code, out, err = run_main(capsys, "--coefficients", "1.2,1.1,1.15", "--out", str(tmp_path))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "warning" not in err, err
    assert lines[0].startswith("error: --rule 'budget', the target=") and "(b1)" in lines[0]
    assert lines[0].endswith("member b1 cannot be made; use other coefficients (--coefficients "
                             "or --scaling) or another rule (--rule 'paper' or --rule "
                             "'official')")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_small_real_grid_and_compare_end_to_end(tiny_fmnist, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, str(ROOT / "scale.py"), "--grid", "--compare", "--preset", "smoke",
           "--baseline", "efficientnet-b0",
           "--data", str(tiny_fmnist), "--set", "data.val_size=100",
           "--set", "proxy.train_subset=256", "--set", "proxy.resolution=16",
           # 3 grid points, not the preset's 6 (tol 0.25): each run trains the grid
           "--set", "grid.tol=0.1", "--out", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    record = scaler.load_scaling(out / "scaling.yaml")
    grid = scaler.GridConfig(step=0.25, tol=0.1)
    assert record.grid_points == len(grid.candidates()) and record.best is not None
    for r in record.results:  # every candidate satisfies the constraint and the bounds
        c = r.coefficients
        assert abs(c.product() - 2) <= 0.1 and min(c.alpha, c.beta, c.gamma) >= 1
    assert (out / "grid" / "candidates.csv").is_file()
    assert list((out / "grid" / "tensorboard").glob("events.out.tfevents.*"))
    compare = (out / "compare" / "compare.md").read_text()
    for label in ("width only", "depth only", "resolution only", "compound"):
        assert label in compare
    specs = family_specs(out / "family-budget")
    assert len(specs) == 7
    for s in specs:
        assert nas.count_macs(s) == s.meta["family"]["macs"]
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["grid"]["step"] == 0.25 and saved["grid"]["tol"] == 0.1
    # The best candidates were re-trained before choosing, and the file says why.
    assert record.recheck is not None and record.recheck.chosen == record.coefficients
    assert all(len(r.accuracies) == 2 for r in record.recheck.table)  # the grid's + 1 seed
    assert len(record.recheck.table) == 2
    assert "recheck" in (out / "scaling.yaml").read_text()

    # The same seed chooses the same coefficients from the same accuracies.
    again = tmp_path / "again"
    cmd = [*cmd[:-1], str(again)]
    cmd.remove("--compare")
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    second = scaler.load_scaling(again / "scaling.yaml")
    assert second.coefficients == record.coefficients
    assert [r.accuracy for r in second.results] == [r.accuracy for r in record.results]
