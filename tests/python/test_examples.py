"""examples/python: the backtest and live-loop scripts run and print what they promise."""
import os
import pathlib
import subprocess
import sys

from conftest import EXAMPLES, ROOT

SCRIPTS = ROOT / "examples" / "python"


def run(*args):
    return subprocess.run([sys.executable, *map(str, args)], check=True, capture_output=True,
                          text=True, env=dict(os.environ)).stdout


def test_backtest_writes_the_expected_actions_and_prints_stats(tmp_path):
    out = tmp_path / "actions.csv"
    stdout = run(SCRIPTS / "backtest.py", EXAMPLES / "restaurant_loyalty.rules.json",
                 EXAMPLES / "restaurant_loyalty.events.csv", "--out", out)
    assert stdout.splitlines()[0].startswith("6 events, 9 actions up to 2024-02-08")
    assert "fifth_order                      6       1       5       0        1" in stdout
    lines = out.read_text().splitlines()
    assert lines[0] == "ts,contact,rule,action,arg"
    assert lines[-1] == "2024-02-08T00:00:00Z,c1,miss_you,send_email,miss_you"


def test_backtest_reports_rule_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rules": [{"id": "x", "on": {"event": "signup"}, "then": [{"do": "mail"}]}]}')
    p = subprocess.run([sys.executable, str(SCRIPTS / "backtest.py"), str(bad), "e.csv"],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.startswith(f"{bad}:1:")


def test_live_loop_sends_by_printing():
    stdout = run(SCRIPTS / "live_loop.py")
    assert "2024-03-05 16:00 send_email  cart_reminder  to bob@example.com" in stdout
    assert "2024-03-06 10:00 send_email  welcome_2      to bob@example.com" in stdout
    assert "welcome_2      to ana@example.com" not in stdout  # she bought: no second mail
    assert "abandoned_cart  triggered 3, passed 1, emitted 1" in stdout
