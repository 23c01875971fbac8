"""Latency values as users write them (``15ms``): parsing, refusals, the short form."""

import pytest

from nas.core.errors import ConfigError
from nas.latency.units import check_plausible_latency, format_latency, parse_latency


@pytest.mark.parametrize("text, ms", [("15ms", 15.0), ("15 ms", 15.0), ("800us", 0.8),
                                      ("800µs", 0.8), ("0.2s", 200.0), ("1e1ms", 10.0),
                                      (" 2.5ms ", 2.5), (".5s", 500.0)])
def test_parses_units(text, ms):
    assert parse_latency(text) == pytest.approx(ms)


@pytest.mark.parametrize("value, words", [
    ("15", "needs its unit"), (15, "needs its unit"), (0.5, "needs its unit"),
    ("fast", "expected a latency"), ("0ms", "positive"), ("-5ms", "positive"), ("0", "positive"), ("-5", "positive"),
    (0, "positive"), ("-.5 s", "positive"),
    ("15 m s", "expected a latency"), ("15MS", "expected a latency"), ("", "expected"),
    (None, "expected a latency"), (True, "expected a latency"), ("inf ms", "expected"),
    ("1e999ms", "positive")])
def test_refuses_with_one_line(value, words):
    with pytest.raises(ConfigError) as e:
        parse_latency(value, "target_latency")
    msg = str(e.value)
    assert words in msg and "target_latency" in msg and "\n" not in msg


def test_plausibility_names_the_fix_and_force():
    assert check_plausible_latency(15.0, "15ms") == 15.0
    with pytest.raises(ConfigError, match="15ms, not 15s"):
        check_plausible_latency(parse_latency("90s"), "90s")
    with pytest.raises(ConfigError, match="under 10us"):
        check_plausible_latency(parse_latency("1us"), "1us")
    assert check_plausible_latency(0.001, "1us", force=True) == 0.001


@pytest.mark.parametrize("ms", [0.0123, 0.85, 1.0, 15.24, 99.9, 150.0, 1500.0, 42_000.0])
def test_format_reads_back(ms):
    shown = format_latency(ms)
    assert parse_latency(shown) == pytest.approx(ms, rel=0.01, abs=1e-3)
