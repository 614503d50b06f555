"""pandas in: Engine.process takes a DataFrame of events with the columns of an event file (ts,
contact, type, key, other columns props), and a row of DataFrame.to_dict("records") is an event
of the dict API."""
import datetime as dt

import pandas as pd
import pytest

import nudge
from conftest import DAY, EXAMPLES, T0, rows

SESSIONS = {"event_types": ["app_session"], "rules": [
    {"id": "engaged", "on": {"event": "app_session"},
     "if": {"sum": {"event": "app_session", "property": "minutes", "within": "7d", "ge": 30}},
     "then": [{"do": "send_email", "arg": "engaged"}]},
    {"id": "big", "on": {"event": "purchase"},
     "if": {"average": {"event": "purchase", "property": "value", "within": "30d", "gt": 100}},
     "then": [{"do": "send_email", "arg": "vip"}]}]}


def engine(rules=SESSIONS):
    return nudge.Engine(nudge.Program.from_json(rules))


def sessions_frame():
    return pd.DataFrame({
        "ts": [T0, T0 + 60, T0 + 120, T0 + 180],
        "contact": ["c1", "c1", "c2", "c2"],
        "type": ["app_session", "app_session", "purchase", "purchase"],
        "key": [None, None, "o1", "o2"],
        "minutes": [20, 15, None, None],      # float64 with NaN: no prop where missing
        "value": [None, None, 90, 150],
    })


EXPECTED = [(T0 + 60, "c1", "engaged", "send_email", "engaged"),
            (T0 + 180, "c2", "big", "send_email", "vip")]


def test_a_frame_of_events_is_processed_like_the_event_file(tmp_path):
    df = sessions_frame()
    assert rows(engine().process(df, now=T0 + DAY)) == EXPECTED
    # The same rows written as an event file and replayed: the same actions.
    path = tmp_path / "events.csv"
    df.to_csv(path, index=False)
    replayed = engine().replay(path, until=T0 + DAY)
    assert rows(replayed.actions) == EXPECTED


def test_to_dict_records_of_the_frame_works_with_the_dict_api():
    df = sessions_frame()
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    records = df.to_dict("records")
    assert isinstance(records[0]["ts"], pd.Timestamp) and "minutes" in records[0]
    assert rows(engine().process(records, now=T0 + DAY)) == EXPECTED


@pytest.mark.parametrize("form", ["aware", "aware_paris", "naive_utc", "epoch", "epoch_float",
                                  "iso", "objects"])
def test_ts_column_forms(form):
    df = sessions_frame()
    seconds = df["ts"]
    df["ts"] = {
        "aware": lambda: pd.to_datetime(seconds, unit="s", utc=True),
        "aware_paris": lambda: pd.to_datetime(seconds, unit="s", utc=True).dt.tz_convert(
            "Europe/Paris"),
        "naive_utc": lambda: pd.to_datetime(seconds, unit="s"),  # pandas' epoch conversion
        "epoch": lambda: seconds,
        "epoch_float": lambda: seconds + 0.5,                     # floored to the second
        "iso": lambda: [dt.datetime.fromtimestamp(s, dt.timezone.utc).isoformat() for s in seconds],
        "objects": lambda: pd.Series([dt.datetime.fromtimestamp(s, dt.timezone.utc)
                                      for s in seconds], dtype=object),
    }[form]()
    assert rows(engine().process(df, now=T0 + DAY)) == EXPECTED


def test_a_sliced_frame_reads_its_own_rows():
    # Every other row of a wider frame: its columns are strided views of the original's.
    df = sessions_frame()
    filler = df.assign(contact="zz", type="signup", key=None, minutes=1.0, value=1.0)
    wide = pd.concat([df, filler]).sort_index(kind="stable").reset_index(drop=True)
    assert rows(engine().process(wide.iloc[::2], now=T0 + DAY)) == EXPECTED
    assert not wide.iloc[::2]["ts"].to_numpy().flags["C_CONTIGUOUS"]


def test_numeric_ids_from_read_csv_are_their_text(tmp_path):
    # pd.read_csv makes int columns of numeric contact ids and keys: they are read as the CSV
    # reader reads them, as text.
    path = tmp_path / "events.csv"
    path.write_text(f"ts,contact,type,key,value\n{T0},17850,purchase,536365,120.5\n"
                    f"{T0 + 1},17850,purchase,536366,130\n")
    df = pd.read_csv(path)
    assert df["contact"].dtype.kind == "i"
    due = engine().process(df, now=T0 + DAY)
    assert rows(due) == [(T0, "17850", "big", "send_email", "vip"),
                         (T0 + 1, "17850", "big", "send_email", "vip")]
    assert rows(engine().replay(path, until=T0 + DAY).actions) == rows(due)


def test_a_props_column_of_dicts_and_other_column_types():
    program = nudge.Program.from_json({"event_types": ["app_session"], "rules": [
        {"id": "r", "on": {"event": "app_session"},
         "if": {"sum": {"event": "app_session", "property": "minutes", "within": "7d", "ge": 30}},
         "then": [{"do": "send_email", "arg": "x"}]}]})
    df = pd.DataFrame({"ts": [T0, T0 + 1], "contact": ["c1", "c1"],
                       "type": ["app_session", "app_session"],
                       "props": [{"minutes": 10}, None],
                       "minutes": pd.array([None, 25], dtype="Int64"),  # nullable ints
                       "flag": [True, False], "note": ["", "hello"]})
    assert rows(nudge.Engine(program).process(df, now=T0 + 1)) == [
        (T0 + 1, "c1", "r", "send_email", "x")]


def test_errors_name_the_row_and_the_column():
    df = sessions_frame()
    df.loc[2, "ts"] = None
    with pytest.raises(ValueError, match=r'^events row 2, column "ts": the time is missing$'):
        engine().process(df, now=T0)
    df = sessions_frame()
    df["contact"] = ["c1", 1.5, "c2", "c2"]
    with pytest.raises(TypeError, match=r'^events row 1, column "contact": expected str or int, '
                                        r"got float$"):
        engine().process(df, now=T0)
    df = sessions_frame()
    df["ts"] = pd.to_datetime(df["ts"], unit="s").astype(object)  # naive datetime objects
    with pytest.raises(ValueError, match=r'^events row 0, column "ts": naive datetime'):
        engine().process(df, now=T0)
    df = sessions_frame()
    df.loc[3, "type"] = None
    with pytest.raises(ValueError, match=r'^events row 3, column "type": the type is missing$'):
        engine().process(df, now=T0)
    df = sessions_frame()
    df["ts"] = [T0, T0, 10**13, T0]
    with pytest.raises(ValueError, match=r'^events row 2, column "ts": 10000000000000 is outside '
                                         r"the supported range"):
        engine().process(df, now=T0)
    with pytest.raises(ValueError, match=r'^events: missing column "type" \(a DataFrame of events'):
        engine().process(sessions_frame().drop(columns="type"), now=T0)
    with pytest.raises(ValueError, match=r'^events: unknown column "at" \(the event\'s time is "ts"'):
        engine().process(sessions_frame().rename(columns={"ts": "at"}), now=T0)
    with pytest.raises(TypeError, match=r"^events: DataFrame column names must be str, got int"):
        engine().process(sessions_frame().rename(columns={"minutes": 7}), now=T0)
    df = sessions_frame()
    df["props"] = ["x", None, None, None]
    with pytest.raises(TypeError, match=r'^events row 0, column "props": expected a dict, got str'):
        engine().process(df, now=T0)
    # The batch was refused whole: nothing happened.
    e = engine()
    with pytest.raises(ValueError):
        bad = sessions_frame()
        bad.loc[3, "ts"] = None
        e.process(bad, now=T0)
    assert e.contact("c1") is None


def test_an_example_log_as_a_frame_gives_the_expected_actions():
    df = pd.read_csv(EXAMPLES / "restaurant_loyalty.events.csv", dtype={"contact": str, "key": str})
    program = nudge.Program.load(EXAMPLES / "restaurant_loyalty.rules.json")
    result = nudge.Engine(program).replay(EXAMPLES / "restaurant_loyalty.events.csv")
    e = nudge.Engine(program)
    assert rows(e.process(df, now=result.until)) == rows(result.actions)
