"""Layered settings: YAML 1.2 numbers in --set and in YAML layers, and the README's --set
examples as a shell would pass them."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from nas.cli import scale, search
from nas.cli.jobs import dump
from nas.cli.parser import overrides
from nas.core.files import dump_yaml_text, load_yaml_text, read_yaml
from nas.core.settings import layers, load
from nas.core.settings import parse_overrides as parse_set
from nas.search.settings import ScaleSettings, SearchSettings


def search_settings(*argv: str) -> SearchSettings:
    args = search.build_parser().parse_args(list(argv))
    return load(SearchSettings, preset=args.preset, config=args.config,
                overrides=overrides(args, search.KEYS))

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text,value", [
    ("1e-3", 0.001), ("3e8", 3e8), ("1E5", 1e5), ("-2.5e-4", -2.5e-4), ("1.5e5", 1.5e5),
    ("+1e2", 100.0), (".5e1", 5.0), ("1.0e-5", 1e-5), ("0.001", 0.001), ("12", 12),
])
def test_numbers_read_as_yaml_1_2_numbers(text, value):
    for got in (load_yaml_text(text), parse_set([f"proxy.lr={text}"])["proxy"]["lr"]):
        assert got == value and type(got) is type(value), (text, got)


@pytest.mark.parametrize("text", ["'3e8'", "3e", "e3", "1e3.5", "abc", "400M"])
def test_what_is_not_a_number_stays_text(text):
    assert isinstance(load_yaml_text(text), str)
    assert isinstance(parse_set([f"a={text}"])["a"], str)


def test_dumped_yaml_reads_back_as_it_was():
    data = {"name": "3e8", "lr": 1e-3, "big": 3e8, "text": "1E5", "n": 12, "yes": "yes"}
    assert load_yaml_text(dump_yaml_text(data)) == data
    s = load(SearchSettings, overrides={"name": "3e8", "proxy.lr": 1e-3, "target_flops": 3e8})
    assert SearchSettings.from_mapping(load_yaml_text(dump(s))) == s


def test_yaml_layers_read_yaml_1_2_numbers(tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("proxy:\n  lr: 1e-3\n  weight_decay: 4E-5\ntarget_flops: 4e8\n")
    assert read_yaml(cfg)["proxy"] == {"lr": 0.001, "weight_decay": 4e-5}
    s = load(SearchSettings, config=str(cfg), overrides=["proxy.momentum=9e-1"])
    assert (s.trials.recipe.lr, s.trials.recipe.weight_decay, s.trials.recipe.momentum) == \
        (0.001, 4e-5, 0.9)
    assert s.target_macs == 400_000_000


def test_set_lr_in_scientific_notation_is_accepted():
    s = search_settings("--target-flops", "400M", "--set", "proxy.lr=1e-3")
    assert s.trials.recipe.lr == 0.001


# --------------------------------------------------------------------------- README examples

# A shell would split, glob or brace-expand an unquoted value holding one of these.
_SHELL_SPECIAL = set(" \t{}[]*?$;&|<>()`\"'\\")


def readme_set_examples() -> list[tuple[str, str]]:
    """(snippet, raw text after --set) for every ``--set`` in the code of the README and the
    user guide's pages (docs/*.md but the benchmark log): inline code spans and lines of code
    blocks."""
    pages = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").glob("*.md")
                                         if p.name != "benchmarks.md")]
    text = "\n".join(p.read_text() for p in pages)
    blocks = re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)
    snippets = [line for b in blocks for line in b.splitlines()]
    outside = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
    snippets += re.findall(r"`([^`\n]+)`", outside)
    out = []
    for snippet in snippets:
        for m in re.finditer(r"--set\s+(\S.*)", snippet):
            out.append((snippet, m.group(1)))
    return out


def test_the_readme_has_set_examples():
    raws = [raw for _, raw in readme_set_examples()]
    assert any("strategy_options" in r for r in raws) and any("proxy.lr" in r for r in raws)


@pytest.mark.parametrize("snippet,raw", readme_set_examples())
def test_readme_set_examples_work_pasted_into_a_shell(snippet, raw):
    words = shlex.split(snippet)  # POSIX shell quoting
    item = words[words.index("--set") + 1]
    assert "=" in item, (snippet, item)
    value = item.split("=", 1)[1]
    if _SHELL_SPECIAL & set(value):  # the shell must see it quoted, as one word
        assert raw[0] in "'\"", f"quote the value in the README: {snippet}"
    key = item.split("=", 1)[0]
    if re.search(r"\b[A-Z]{2,}\b", key):  # a template such as proxy.KEY=VALUE
        return
    # The real parser and config layers take it.
    scale_keys = set(read_yaml(ROOT / "configs" / "scale.yaml")) - \
        set(read_yaml(ROOT / "configs" / "search.yaml"))
    if key.split(".")[0] in scale_keys or "scale.py" in snippet:
        args = scale.build_parser().parse_args(["--set", item])
        cfg = layers(ScaleSettings, overrides=overrides(args, scale.KEYS))
        ScaleSettings.from_mapping(cfg)
    else:
        args = search.build_parser().parse_args(["--target-flops", "400M", "--set", item])
        cfg = layers(SearchSettings, overrides=overrides(args, search.KEYS))
        SearchSettings.from_mapping(cfg)
    node, expected = cfg, parse_set([item])
    for part in key.split("."):
        node, expected = node[part], expected[part]
    assert node == expected


@pytest.mark.parametrize("value,seconds", [
    ("30m", 1800.0), ("2h", 7200.0), ("90s", 90.0), ("1.5h", 5400.0), ("45", 45.0),
    (" 10M ", 600.0), (120, 120.0), (0.5, 0.5), (None, None)])
def test_time_budget_reads_durations(value, seconds):
    from nas.core.checks import check_duration
    assert check_duration(value, "time_budget") == seconds


@pytest.mark.parametrize("value", ["soon", "", "m", "-5m", "0", 0, True, "inf", "nanh", [30]])
def test_a_bad_time_budget_is_one_line(value):
    from nas.core.checks import check_duration
    from nas.core.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        check_duration(value, "time_budget")
    assert "\n" not in str(e.value) and str(e.value).startswith("time_budget: got ")
    assert "30m" in str(e.value)


def test_a_time_budget_given_on_resume_replaces_the_saved_one(tmp_path):
    from nas.cli import jobs
    out = tmp_path / "run"
    out.mkdir()
    s = load(SearchSettings, overrides={"target_flops": "400M", "out": str(out),
                                        "time_budget": "1h"})
    (out / "config.yaml").write_text(dump(s))
    resumed = jobs.saved_settings(SearchSettings, out, ("search", "oneshot"),
                                  {"time_budget": "20m"}, jobs.SEARCH_RESUMABLE, "search")
    assert resumed.time_budget == 1200.0
    again = jobs.saved_settings(SearchSettings, out, ("search", "oneshot"), {"time_budget": None},
                                jobs.SEARCH_RESUMABLE, "search")
    assert again.time_budget is None
    with pytest.raises(Exception, match="'strategy' cannot change"):
        jobs.saved_settings(SearchSettings, out, ("search", "oneshot"), {"strategy": "random"},
                            jobs.SEARCH_RESUMABLE, "search")
