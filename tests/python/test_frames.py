"""pandas out: ReplayResult.to_frame() (the actions, built in C++ column by column), nudge.replay,
and the statistics as DataFrames."""
import subprocess

import pandas as pd
import pytest

import nudge
from conftest import EXAMPLES, SCENARIOS, T0, DAY
from test_replay import cli_path

CSV_COLUMNS = ["ts", "contact", "rule", "action", "arg"]


def scenario(name):
    contacts = EXAMPLES / f"{name}.contacts.csv"
    return (EXAMPLES / f"{name}.rules.json", EXAMPLES / f"{name}.events.csv",
            contacts if contacts.exists() else None)


def read_actions_csv(path, like):
    """`nudge replay`'s CSV as the DataFrame to_frame() makes of the same actions: every field
    text, ts parsed as UTC, rule and action categorical over to_frame()'s categories."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    for c in ("rule", "action"):
        df[c] = pd.Categorical(df[c], categories=like[c].cat.categories)
    return df


@pytest.mark.parametrize("name", SCENARIOS)
def test_frame_equals_the_csv_of_nudge_replay(tmp_path, name):
    cli = cli_path()
    if cli is None or not cli.exists():
        pytest.skip("the nudge CLI was not found: set NUDGE_CLI to <build>/src/cli/nudge")
    rules, events, contacts = scenario(name)
    out = tmp_path / "actions.csv"
    args = [str(cli), "replay", "--rules", str(rules), "--events", str(events), "--out", str(out)]
    if contacts:
        args += ["--contacts", str(contacts)]
    subprocess.run(args, check=True, capture_output=True)

    df = nudge.replay(rules, events, contacts).to_frame()
    assert list(df.columns) == CSV_COLUMNS + ["step", "params", "idempotency_key"]
    assert str(df["ts"].dtype) == "datetime64[ns, UTC]"
    assert (str(df["idempotency_key"].dtype), df["rule"].dtype.name) == ("uint64", "category")
    pd.testing.assert_frame_equal(df[CSV_COLUMNS], read_actions_csv(out, df))


def test_frame_columns_carry_what_each_due_action_carries():
    rules, events, contacts = scenario("wf_abandoned_cart")
    result = nudge.Engine(nudge.Program.load(rules)).replay(events, contacts)
    df = result.to_frame()
    assert len(df) == len(result) > 0
    for a, row in zip(result.actions, df.itertuples(index=False)):
        assert row.ts.to_pydatetime() == a.ts
        assert (row.contact, row.action, row.arg, row.params) == (a.contact, a.action, a.arg,
                                                                 a.params)
        assert row.rule == (f"{a.rule}/{a.step}" if a.step else a.rule)
        assert row.step == a.step
        assert row.idempotency_key == a.idempotency_key


def test_params_and_counts_of_a_replay(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text(f"ts,contact,type,key,value\n{T0},c1,purchase,o1,5\n"
                      f"{T0 + 60},\"a,b\",purchase,o2,7\n")
    rules = {"rules": [
        {"id": "never", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "x"}]},
        {"id": "thanks", "on": {"event": "purchase"},
         "then": [{"do": "send_email", "arg": "thanks", "params": {"lang": "pl"}},
                  {"do": "add_tag", "arg": "buyer", "notify": True}]}]}
    result = nudge.replay(rules, events)
    df = result.to_frame()
    assert df[CSV_COLUMNS].astype({"ts": "int64", "rule": object, "action": object}).values.tolist() \
        == [[T0 * 10**9, "c1", "thanks", "send_email", "thanks"],
            [T0 * 10**9, "c1", "thanks", "add_tag", "buyer"],
            [(T0 + 60) * 10**9, "a,b", "thanks", "send_email", "thanks"],
            [(T0 + 60) * 10**9, "a,b", "thanks", "add_tag", "buyer"]]
    assert list(df["rule"].cat.categories) == ["never", "thanks"]  # every rule, in program order
    assert list(df["action"].cat.categories) == ["send_email", "add_tag"]  # those that occur
    assert df["params"].tolist() == [{"lang": "pl"}, {}, {"lang": "pl"}, {}]
    assert df["step"].isna().all()
    assert df.groupby("rule").size().to_dict() == {"never": 0, "thanks": 4}

    stats = result.stats.to_frame()
    assert stats.index.tolist() == ["never", "thanks"]
    assert stats.loc["thanks", ["triggered", "passed", "emitted"]].tolist() == [2, 2, 4]
    assert stats.loc["thanks", "first"] == pd.Timestamp(T0, unit="s", tz="UTC")
    assert pd.isna(stats.loc["never", "first"])
    assert str(stats["last"].dtype) == "datetime64[ns, UTC]"
    assert result.stats == nudge.Engine(nudge.Program.from_json(rules)).replay(events).stats


def test_workflow_stats_frame_per_step_and_per_workflow():
    rules, events, contacts = scenario("wf_abandoned_cart")
    engine = nudge.Engine(nudge.Program.load(rules))
    engine.replay(events, contacts)
    stats = engine.workflow_stats()
    assert isinstance(stats, dict) and isinstance(stats, nudge.WorkflowStats)
    steps = stats.to_frame()
    assert steps.index.names == ["workflow", "step"]
    for wf, w in stats.items():
        for step, s in w["steps"].items():
            assert steps.loc[(wf, step), "reached"] == s["reached"]
            assert steps.loc[(wf, step), "sent"] == s["sent"]
    flows = stats.to_frame(steps=False)
    assert flows.index.tolist() == list(stats)
    assert flows["entered"].tolist() == [w["entered"] for w in stats.values()]


def test_frame_of_a_replay_past_pandas_range_is_refused(tmp_path):
    events = tmp_path / "events.csv"
    events.write_text("ts,contact,type,key,value\n2300-01-01T00:00:00Z,c1,signup,,\n")
    result = nudge.replay({"rules": [{"id": "hi", "on": {"event": "signup"},
                                      "then": [{"do": "send_email", "arg": "hi"}]}]}, events)
    with pytest.raises(ValueError, match=r"to_frame: action 0 is due at 2300-01-01T00:00:00Z, "
                                         r"outside what pandas' datetime64\[ns\] holds"):
        result.to_frame()


def test_replay_takes_a_program_a_dict_or_a_path():
    rules, events, contacts = scenario("coupon")
    by_path = nudge.replay(rules, events, contacts)
    by_program = nudge.replay(nudge.Program.load(rules), events, contacts)
    assert by_path.actions == by_program.actions
    with pytest.raises(TypeError, match="rules: expected a Program, a rule dict or a path, got int"):
        nudge.replay(1, events)
