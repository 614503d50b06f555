"""Inputs as shops write them and outputs as tools read them (issues 13 and 14): RFC 4180 CSV
through pandas, timestamps with fractions and offsets, the supported time range, .gz files and
standard input, extra CSV columns as props."""
import datetime as dt
import gzip
import json
import subprocess

import pandas as pd
import pytest

import nudge
from conftest import T0, UTC, rows
from test_replay import cli_path

RANGE = "is outside the supported range (1900-01-01T00:00:00Z to 9799-12-31T23:59:59Z)"
HELLO = {"rules": [{"id": "hello", "on": {"event": "signup"},
                    "then": [{"do": "send_email", "arg": "hi, there"}]},
                   {"id": "quote", "on": {"event": "signup"},
                    "then": [{"do": "send_sms", "arg": 'said "hi"'}]}]}
WINBACK = {"rules": [{"id": "w", "on": {"event": "purchase"}, "delay": "60d",
                      "then": [{"do": "send_email", "arg": "x"}]}]}
COLUMNS = ["ts", "contact", "rule", "action", "arg"]


@pytest.fixture
def cli():
    path = cli_path()
    if path is None or not path.exists():
        pytest.skip("the nudge CLI was not found: set NUDGE_CLI to <build>/src/cli/nudge")
    return lambda *args, **kw: subprocess.run([str(path), *map(str, args)], capture_output=True,
                                              text=True, **kw)


def write_rules(tmp_path, rules):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules))
    return path


def test_commas_and_quotes_round_trip_through_pandas(tmp_path, cli):
    rules = write_rules(tmp_path, HELLO)
    events = tmp_path / "events.csv"
    events.write_text(f'ts,contact,type\n{T0},"Smith, John",signup\n'
                      f'{T0 + 1},"Ann ""A"" Lee",signup\n')
    expected = [[str(T0), "Smith, John", "hello", "send_email", "hi, there"],
                [str(T0), "Smith, John", "quote", "send_sms", 'said "hi"'],
                [str(T0 + 1), 'Ann "A" Lee', "hello", "send_email", "hi, there"],
                [str(T0 + 1), 'Ann "A" Lee', "quote", "send_sms", 'said "hi"']]

    # nudge replay
    out = tmp_path / "replay.csv"
    p = cli("replay", "--rules", rules, "--events", events, "--time-format", "epoch",
            "--out", out)
    assert p.returncode == 0, p.stderr
    assert out.read_text().splitlines()[1] == f'{T0},"Smith, John",hello,send_email,"hi, there"'
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(df.columns) == COLUMNS
    assert df.values.tolist() == expected

    # Python's write_csv: the same bytes
    py_out = tmp_path / "py.csv"
    nudge.Engine(nudge.Program.from_json(HELLO)).replay(events).write_csv(py_out,
                                                                          time_format="epoch")
    assert py_out.read_bytes() == out.read_bytes()

    # nudge run --out (no header; a sixth column, the idempotency key)
    run_out = tmp_path / "run.csv"
    p = cli("run", "--db", tmp_path / "db", "--rules", rules, "--events", events,
            "--out", run_out)
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(run_out, dtype=str, keep_default_na=False, header=None,
                     names=COLUMNS + ["idempotency_key"])
    assert df[COLUMNS].values.tolist() == expected
    assert df["idempotency_key"].str.fullmatch(r"\d+").all()


def test_a_line_break_inside_quotes_is_one_field(tmp_path, cli):
    rules = write_rules(tmp_path, {"rules": [
        {"id": "echo", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "x"}]}]})
    events = tmp_path / "events.csv"
    events.write_bytes(f'ts,contact,type\n{T0},"two\nlines",signup\n{T0 + 1},c2,signup\n'.encode())
    out = tmp_path / "out.csv"
    p = cli("replay", "--rules", rules, "--events", events, "--time-format", "epoch",
            "--out", out)
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert df["contact"].tolist() == ["two\nlines", "c2"]
    # nudge run reads one record per line (it resumes by lines): refused, naming the line.
    p = cli("run", "--db", tmp_path / "db", "--rules", rules, "--events", events)
    assert p.returncode == 1
    assert f"{events}:2: unterminated quoted field (here each record must fit on one line)" \
        in p.stderr


def test_year_9999_is_refused_at_input_by_replay(tmp_path, cli):
    rules = write_rules(tmp_path, WINBACK)
    events = tmp_path / "events.csv"
    events.write_text("ts,contact,type\n9999-12-30T00:00:00Z,c1,purchase\n")
    p = cli("replay", "--rules", rules, "--events", events)
    assert p.returncode == 1
    assert p.stderr.strip() == f"{events}:2: ts 9999-12-30T00:00:00Z {RANGE}"
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text('{"ts": "10000-01-01T00:00:00Z", "contact": "c1", "type": "purchase"}\n')
    p = cli("replay", "--rules", rules, "--events", jsonl)
    assert p.returncode == 1
    assert p.stderr.strip() == f"{jsonl}:1: ts 10000-01-01T00:00:00Z {RANGE}"
    p = cli("replay", "--rules", rules, "--events", events, "--until", "9999-01-01T00:00:00Z")
    assert p.returncode == 2
    assert p.stderr.strip() == f'--until: "9999-01-01T00:00:00Z" {RANGE}'


def test_year_9999_never_bricks_a_database(tmp_path, cli):
    rules = write_rules(tmp_path, WINBACK)
    events = tmp_path / "events.csv"
    db = tmp_path / "state.db"
    out = tmp_path / "out.csv"
    run = ("run", "--db", db, "--rules", rules, "--events", events, "--out", out)
    events.write_text("ts,contact,type\n9999-12-30T00:00:00Z,c1,purchase\n")
    p = cli(*run)
    assert p.returncode == 1
    assert f"{events}:2: ts 9999-12-30T00:00:00Z {RANGE}" in p.stderr
    # The range's edge: the 60-day timer is due in 9800, past the input range but inside what
    # the database stores and reads back. Every later run works.
    events.write_text("ts,contact,type\n9799-12-31T00:00:00Z,c1,purchase\n")
    for processed in (1, 0):
        p = cli(*run)
        assert p.returncode == 0, p.stderr
        assert p.stderr.startswith(f"{processed} events processed, 0 rejected (1 lines of ")
    with events.open("a") as f:
        f.write("9799-12-31T23:59:59Z,c2,purchase\n")
    p = cli(*run)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("1 events processed, 0 rejected (2 lines of ")
    p = cli(*run, "--until", "9800-01-01T00:00:00Z")
    assert p.returncode == 2
    assert p.stderr.strip() == f'--until: "9800-01-01T00:00:00Z" {RANGE}'
    p = cli("outbox", "--db", db)
    assert (p.returncode, p.stdout) == (0, "ts,contact,rule,action,arg,idempotency_key\n")
    assert out.read_text() == ""  # the timers are due after the last input instant


def test_snapshot_at_the_range_edge_loads(tmp_path, cli):
    rules = write_rules(tmp_path, WINBACK)
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("ts,contact,type\n9799-12-31T00:00:00Z,c1,purchase\n")
    second.write_text("ts,contact,type\n9799-12-31T23:59:59Z,c2,purchase\n")
    snap, snap2 = tmp_path / "a.snap", tmp_path / "b.snap"
    p = cli("replay", "--rules", rules, "--events", first, "--save-snapshot", snap)
    assert p.returncode == 0, p.stderr
    assert "(until 9799-12-31T23:59:59Z)" in p.stderr  # the default end stops at the range's end
    p = cli("replay", "--rules", rules, "--events", second, "--load-snapshot", snap,
            "--save-snapshot", snap2)
    assert p.returncode == 0, p.stderr


def test_timestamps_as_javascript_and_shops_write_them(tmp_path, cli):
    rules = write_rules(tmp_path, HELLO)
    events = tmp_path / "events.csv"
    events.write_text("ts,contact,type\n2024-01-01T10:00:00.123Z,c1,signup\n"
                      "2024-01-01T11:00:00.999+0100,c2,signup\n"
                      "2024-01-01T04:30:00-05:30,c3,signup\n")
    p = cli("replay", "--rules", rules, "--events", events, "--time-format", "epoch")
    assert p.returncode == 0, p.stderr
    df = pd.read_csv(pd.io.common.StringIO(p.stdout), dtype=str)
    assert set(df["ts"]) == {"1704103200"}
    # Python: the same second from a string, a datetime with microseconds and a float.
    engine = nudge.Engine(nudge.Program.from_json(HELLO))
    due = engine.process([("s", "signup", "2024-01-01T10:00:00.999Z", "", None),
                          ("d", "signup", dt.datetime(2024, 1, 1, 10, 0, 0, 999999, UTC), "",
                           None),
                          ("f", "signup", 1704103200.999, "", None)], now=1704103200)
    assert {r[0] for r in rows(due)} == {1704103200}
    with pytest.raises(ValueError, match=r"outside the supported range \(1900-01-01T00:00:00Z "
                                         r"to 9799-12-31T23:59:59Z\)"):
        engine.process([("x", "signup", "9999-12-30T00:00:00Z", "", None)], now=1704103200)


def test_gz_files_and_standard_input(tmp_path, cli):
    rules = write_rules(tmp_path, HELLO)
    text = f'ts,contact,type\n{T0},"Smith, John",signup\n{T0 + 5},c2,signup\n'
    events = tmp_path / "events.csv"
    events.write_text(text)
    p = cli("replay", "--rules", rules, "--events", events)
    assert p.returncode == 0, p.stderr
    expected = p.stdout
    gz = tmp_path / "events.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    assert cli("replay", "--rules", rules, "--events", gz).stdout == expected
    p = cli("replay", "--rules", rules, "--events", "-", input=text)
    assert (p.returncode, p.stdout) == (0, expected), p.stderr
    jsonl = "".join(json.dumps({"ts": ts, "contact": c, "type": "signup"}) + "\n"
                    for ts, c in ((T0, "Smith, John"), (T0 + 5, "c2")))
    p = cli("replay", "--rules", rules, "--events", "-", input=jsonl)
    assert (p.returncode, p.stdout) == (0, expected), p.stderr
    (tmp_path / "events.jsonl.gz").write_bytes(gzip.compress(jsonl.encode()))
    assert cli("replay", "--rules", rules, "--events", tmp_path / "events.jsonl.gz").stdout == \
        expected
    for source in ("-", gz):
        p = cli("run", "--db", tmp_path / "db", "--rules", rules, "--events", source)
        assert p.returncode == 2
        assert "nudge run resumes the events file at a byte offset" in p.stderr


def test_extra_csv_columns_are_props_unless_strict(tmp_path, cli):
    rules = write_rules(tmp_path, {"rules": [
        {"id": "big", "on": {"event": "purchase"},
         "if": {"sum": {"event": "purchase", "property": "amount", "within": "30d", "gt": 100}},
         "then": [{"do": "send_email", "arg": "vip"}]}]})
    events = tmp_path / "events.csv"
    events.write_text(f"ts,contact,type,amount,sku\n{T0},c1,purchase,60,007\n"
                      f"{T0 + 1},c1,purchase,50.5,A-1\n")
    p = cli("replay", "--rules", rules, "--events", events, "--time-format", "epoch")
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"ts,contact,rule,action,arg\n{T0 + 1},c1,big,send_email,vip\n"
    p = cli("replay", "--rules", rules, "--events", events, "--strict")
    assert p.returncode == 1
    assert p.stderr.strip() == (
        f'{events}:1: bad header: unknown column "amount" (expected ts, contact, type, key, '
        f'value, lat, lon; without strict_columns (--strict) it would be a prop)')


def test_bytes_that_are_not_utf8_are_refused_alike(tmp_path, cli):
    rules = write_rules(tmp_path, HELLO)
    csv_file = tmp_path / "events.csv"
    csv_file.write_bytes(b"ts,contact,type\n1704103200,Krak\xf3w,signup\n")
    p = cli("replay", "--rules", rules, "--events", csv_file)
    assert (p.returncode, p.stderr.strip()) == (1, f"{csv_file}:2: not valid UTF-8")
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_bytes(b'{"ts": 1704103200, "contact": "Krak\xf3w", "type": "signup"}\n')
    p = cli("replay", "--rules", rules, "--events", jsonl)
    assert p.returncode == 1
    assert p.stderr.startswith(f"{jsonl}:1: not valid JSON")


def shuffled_log(seed, count):
    """`count` CSV records with few distinct times (many ties), quoted commas, quotes and line
    breaks, in random order."""
    import random
    rnd = random.Random(seed)
    records = []
    for i in range(count):
        ts = T0 + rnd.randrange(300)
        key = rnd.choice(["plain", '"a, b"', '"say ""hi"""', '"two\nlines"', ""])
        records.append((ts, f"{ts},c{i},signup,{key}"))
    rnd.shuffle(records)
    return records


@pytest.mark.parametrize("memory", ["2K", "64K", "256M"])
def test_sort_puts_a_shuffled_log_in_order_byte_for_byte(tmp_path, cli, memory):
    records = shuffled_log(7, 5000)
    unsorted = tmp_path / "events.csv"
    unsorted.write_bytes(("ts,contact,type,key\n" + "".join(r + "\n" for _, r in records))
                         .encode())
    # Stable: equal times keep the file's order.
    expected = "ts,contact,type,key\n" + "".join(
        r + "\n" for _, r in sorted(records, key=lambda x: x[0]))
    out = tmp_path / "sorted.csv"
    p = cli("sort", unsorted, "-o", out, "--memory", memory, "--temp-dir", tmp_path)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == expected.encode()
    assert p.stderr.startswith("5000 records sorted into ")
    if memory == "2K":  # > 64 runs: a merge pass before the last
        assert int(p.stderr.split("(")[1].split()[0]) > 64
    assert sorted(tmp_path.iterdir()) == sorted([unsorted, out])  # no run file is left
    rules = write_rules(tmp_path, HELLO)
    p = cli("replay", "--rules", rules, "--events", out)
    assert p.returncode == 0, p.stderr
    assert p.stderr.startswith("5000 events read, 0 rejected, 10000 actions")


def test_sort_jsonl_gz_and_standard_input(tmp_path, cli):
    records = [(ts, json.dumps({"ts": ts if i % 2 else f"{ts}", "contact": f"c{i}",
                                "type": "signup"}))
               for i, (ts, _) in enumerate(shuffled_log(3, 2000))]
    text = "".join(r + "\n" for _, r in records)
    expected = "".join(r + "\n" for _, r in sorted(records, key=lambda x: x[0]))
    gz_in = tmp_path / "events.jsonl.gz"
    gz_in.write_bytes(gzip.compress(text.encode()))
    gz_out = tmp_path / "sorted.jsonl.gz"
    p = cli("sort", gz_in, "-o", gz_out, "--memory", "8K", "--temp-dir", tmp_path)
    assert p.returncode == 0, p.stderr
    assert gzip.decompress(gz_out.read_bytes()).decode() == expected
    out = tmp_path / "sorted.jsonl"
    p = cli("sort", "-", "-o", out, "--format", "jsonl", input=text)
    assert p.returncode == 0, p.stderr
    assert out.read_text() == expected


def test_sort_splits_quoted_fields_as_the_readers_do(tmp_path, cli):
    # One CSV splitter (nudge/io/csv.hpp's split_csv) for the readers and `nudge sort`: a quoted
    # header, a quoted ts, a comma inside quotes and CRLF line ends; the bytes are kept.
    log = tmp_path / "events.csv"
    log.write_bytes(b'contact,"ts",type\r\n"c,1","%d",signup\r\nc2,%d,signup\r\n' % (T0 + 60, T0))
    out = tmp_path / "sorted.csv"
    p = cli("sort", log, "-o", out)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == (b'contact,"ts",type\r\nc2,%d,signup\r\n"c,1","%d",signup\r\n'
                                % (T0, T0 + 60))
    log.write_text(f'ts,contact,type\n{T0},c1,signup\n"{T0},c3,signup\n')
    p = cli("sort", log, "-o", out)
    assert (p.returncode, p.stderr.strip()) == (
        1, f"{log}:3: no ts field (a malformed quote, or too few fields)")


def test_sort_names_the_line_it_cannot_place(tmp_path, cli):
    bad = tmp_path / "events.csv"
    bad.write_text(f"ts,contact,type\n{T0},c1,signup\n9999-12-30T00:00:00Z,c2,signup\n")
    out = tmp_path / "sorted.csv"
    p = cli("sort", bad, "-o", out)
    assert p.returncode == 1
    assert p.stderr.strip() == f"{bad}:3: ts 9999-12-30T00:00:00Z {RANGE}"
    assert not out.exists() and not (tmp_path / "sorted.csv.partial").exists()
    bad.write_text("contact,type\nc1,signup\n")
    p = cli("sort", bad, "-o", out)
    assert (p.returncode, p.stderr.strip()) == (1, f'{bad}:1: bad header: missing column "ts"')
    p = cli("sort", bad, "-o", out, "--memory", "lots")
    assert p.returncode == 2
