"""Engine.replay (files read and evaluated in C++), and the Python engine against the CLI on the
W1 small data set (tests/support/gen_w1.py; expected output from tests/support/w1_reference.py)."""
import os
import pathlib
import subprocess
import sys

import pytest

import nudge
from conftest import DAY, ROOT, T0, read_events_csv, rows

SUPPORT = ROOT / "tests" / "support"
RULES = {"rules": [
    {"id": "winback", "on": {"event": "purchase"}, "delay": "60d",
     "if": {"not_happened": {"event": "purchase", "within": "60d"}},
     "then": [{"do": "send_email", "arg": "winback"}]}]}


def cli_path():
    """The `nudge` CLI: $NUDGE_CLI, else <build>/src/cli/nudge beside this build of the module."""
    if os.environ.get("NUDGE_CLI"):
        return pathlib.Path(os.environ["NUDGE_CLI"])
    guess = pathlib.Path(nudge.__file__).resolve().parents[3] / "src" / "cli" / "nudge"
    return guess if guess.exists() else None


def test_replay_applies_to_this_engine_and_keeps_its_state(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text(f"ts,contact,type,key,value\n{T0},c1,purchase,o1,9.50\n")
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    result = engine.replay(events, until=T0 + 59 * DAY)
    assert (len(result), result.events_read, result.rejected) == (0, 1, 0)
    assert result.until.timestamp() == T0 + 59 * DAY
    assert engine.stats()["winback"]["triggered"] == 1
    assert rows(engine.advance(T0 + 60 * DAY)) == [(T0 + 60 * DAY, "c1", "winback", "send_email",
                                                    "winback")]
    assert repr(result) == ("ReplayResult(actions=0, events_read=1, contacts_read=0, rejected=0, "
                            "until=2024-02-29T00:00:00Z)")


def test_replay_bad_line_raises_read_error_or_is_skipped(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text(f"ts,contact,type,key,value\n{T0},c1,purchase,o1,\nsoon,c2,purchase,o2,\n"
                      f"{T0 + 1},c3,purchase,o3,\n")
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    with pytest.raises(nudge.ReadError) as info:
        engine.replay(events)
    assert isinstance(info.value, ValueError)
    assert (pathlib.Path(info.value.file).name, info.value.line) == ("events.csv", 3)
    assert str(info.value).startswith(f"{events}:3: ")
    assert engine.stats()["winback"]["triggered"] == 0  # nothing was applied
    rejects = tmp_path / "rejects.txt"
    result = engine.replay(events, on_error="skip", rejects=rejects)
    assert (result.events_read, result.rejected) == (2, 1)
    assert rejects.read_text().startswith(f"{events}:3: ")
    assert [a.contact for a in result.actions] == ["c1", "c3"]


def test_replay_refuses_bad_options(tmp_path):
    engine = nudge.Engine(nudge.Program.from_json(RULES))
    with pytest.raises(ValueError, match='on_error must be "stop" or "skip"'):
        engine.replay(tmp_path / "e.csv", on_error="ignore")
    with pytest.raises(nudge.ReadError):
        engine.replay(tmp_path / "missing.csv")


@pytest.fixture(scope="module")
def w1_small(tmp_path_factory):
    make_rules = ROOT / "examples" / "w1" / "make_rules.py"
    out = tmp_path_factory.mktemp("w1")
    subprocess.run([sys.executable, str(SUPPORT / "gen_w1.py"), "--contacts", "1000", "--events",
                    "20000", "--days", "90", "--seed", "1", "--quiet", "--out", str(out / "small")],
                   check=True)
    rules = out / "rules.json"
    rules.write_bytes(subprocess.run([sys.executable, str(make_rules), "--filler", "100"],
                                     check=True, capture_output=True).stdout)
    events = out / "small" / "events.csv"
    last = int(events.read_text().rstrip("\n").rsplit("\n", 1)[1].split(",", 1)[0])
    return {"dir": out, "rules": rules, "contacts": out / "small" / "contacts.csv",
            "events": events, "until": last + 90 * DAY}


def test_w1_small_python_replay_matches_the_oracle(w1_small, tmp_path):
    oracle = subprocess.run([sys.executable, str(SUPPORT / "w1_reference.py"), "--contacts",
                             str(w1_small["contacts"]), "--events", str(w1_small["events"]),
                             "--filler", "100"], check=True, capture_output=True).stdout
    engine = nudge.Engine(nudge.Program.load(w1_small["rules"]))
    result = engine.replay(w1_small["events"], contacts=w1_small["contacts"],
                           until=w1_small["until"])
    out = tmp_path / "actions.csv"
    result.write_csv(out, time_format="epoch")
    assert len(result) == oracle.count(b"\n") - 1 > 5000
    assert out.read_bytes() == oracle


def test_w1_small_python_engine_and_cli_give_identical_actions(w1_small, tmp_path):
    cli = cli_path()
    if cli is None or not cli.exists():
        pytest.skip("the nudge CLI was not found: set NUDGE_CLI to <build>/src/cli/nudge")
    cli_out = tmp_path / "cli.csv"
    subprocess.run([str(cli), "replay", "--rules", str(w1_small["rules"]),
                    "--contacts", str(w1_small["contacts"]), "--events", str(w1_small["events"]),
                    "--until", str(w1_small["until"]), "--time-format", "epoch",
                    "--out", str(cli_out)], check=True)
    expected = cli_out.read_text()

    # 1. Engine.replay: files read in C++.
    program = nudge.Program.load(w1_small["rules"])
    py_out = tmp_path / "py.csv"
    nudge.Engine(program).replay(w1_small["events"], contacts=w1_small["contacts"],
                                 until=w1_small["until"]).write_csv(py_out, time_format="epoch")
    assert py_out.read_text() == expected

    # 2. Engine.process: events as Python tuples, contacts upserted from Python.
    engine = nudge.Engine(program)
    import csv
    with open(w1_small["contacts"], newline="") as f:
        for r in csv.DictReader(f):
            details = {k: r[k] for k in ("company", "language") if r[k]}
            engine.upsert_contact(r["contact"], status=r["status"], details=details)
    due = engine.process(read_events_csv(w1_small["events"]), now=w1_small["until"])
    lines = ["ts,contact,rule,action,arg"] + [",".join(map(str, row)) for row in rows(due)]
    assert "\n".join(lines) + "\n" == expected
