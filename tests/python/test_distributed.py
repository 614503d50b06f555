"""nudge.distributed: a replay partitioned by contact on a Dask LocalCluster (2 worker processes,
loopback only), byte-identical to `nudge replay` (the CLI at $NUDGE_CLI) and with its statistics.

Data: W1 from the project's generator (tests/support/gen_w1.py), 20,000 contacts and 200,000
events, sized so that this file runs in well under a minute on two busy cores; the example rule
files (workflows, segments, identity merges, delivery policy); and logs derived from W1 with
identify chains, quoted line breaks, bad and out-of-order lines.
"""
import os
import signal
import subprocess
import sys

import pytest

distributed = pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")

import nudge  # noqa: E402
import nudge.distributed as nd  # noqa: E402

from conftest import EXAMPLES, ROOT  # noqa: E402

SUPPORT = ROOT / "tests" / "support"
CLI = os.environ.get("NUDGE_CLI")
needs_cli = pytest.mark.skipif(not CLI, reason="NUDGE_CLI (the nudge binary) is not set")
pytestmark = needs_cli


@pytest.fixture(scope="module")
def client():
    import dask

    # A killed worker's address refuses connections at once on loopback; a connection that
    # hangs still should not hold a test for the default 30 s.
    config = dask.config.set({"distributed.comm.timeouts.connect": "5s"})
    config.__enter__()
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    config.__exit__(None, None, None)


@pytest.fixture(scope="module")
def w1(tmp_path_factory):
    d = tmp_path_factory.mktemp("w1")
    subprocess.run(
        [sys.executable, str(SUPPORT / "gen_w1.py"), "--contacts", "20000", "--events", "200000",
         "--quiet", "--out", str(d)],
        check=True,
    )
    for k in (100, 1000):
        rules = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "w1" / "make_rules.py"), "--filler", str(k)],
            check=True, capture_output=True,
        ).stdout
        (d / f"rules{k}.json").write_bytes(rules)
    return d


def one_process(tmp, rules, events, contacts=None, *extra):
    """`nudge replay`'s actions (bytes), standard error and exit status."""
    out = tmp / "one.csv"
    cmd = [CLI, "replay", "--rules", str(rules), "--events", str(events), "--out", str(out)]
    if contacts:
        cmd += ["--contacts", str(contacts)]
    p = subprocess.run(cmd + list(extra), capture_output=True, text=True)
    return (out.read_bytes() if p.returncode == 0 else None), p.stderr, p.returncode


def distributed_replay(client, tmp, rules, events, contacts=None, **kw):
    out = tmp / "dist.csv"
    r = nd.replay(rules, events, contacts, client=client, out=out, **kw)
    return out.read_bytes(), r


# ---- W1 ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [100, 1000])
def test_w1_identical_to_one_process(client, w1, tmp_path, k):
    rules, events, contacts = w1 / f"rules{k}.json", w1 / "events.csv", w1 / "contacts.csv"
    expected, _, status = one_process(tmp_path, rules, events, contacts, "--time-format", "epoch")
    assert status == 0
    # Ranges of 1 MiB: eight read tasks, cut inside the log.
    got, r = distributed_replay(client, tmp_path, rules, events, contacts, partitions=4,
                                time_format="epoch", range_bytes=1 << 20)
    assert got == expected
    assert r.events_read == 200_000 and r.contacts_read == 20_000
    assert r.action_count == expected.count(b"\n") - 1
    # The statistics are the sums of the partitions' and equal one process's.
    engine = nudge.Engine(nudge.Program.load(rules))
    one = engine.replay(events, contacts)
    assert r.stats == engine.stats()
    assert r.workflow_stats == engine.workflow_stats()
    assert r.until == one.until and r.pending == one.pending == 0


def test_w1_command_line_same_output_and_tables(client, w1, tmp_path):
    rules, events, contacts = w1 / "rules100.json", w1 / "events.csv", w1 / "contacts.csv"
    expected, stderr, _ = one_process(tmp_path, rules, events, contacts, "--stats")
    out = tmp_path / "cli.csv"
    p = subprocess.run(
        [sys.executable, "-m", "nudge.distributed", "replay", "--scheduler",
         client.scheduler.address, "--partitions", "3", "--rules", str(rules), "--events",
         str(events), "--contacts", str(contacts), "--out", str(out), "--stats"],
        capture_output=True, text=True, env=dict(os.environ),
    )
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == expected
    assert p.stderr == stderr  # the rule table, the summary and the pending line


def test_w1_jsonl_identical(client, w1, tmp_path):
    # The same log as JSON Lines (a number in "props", a key when there is one).
    import csv
    import json
    events = tmp_path / "events.jsonl"
    with open(w1 / "events.csv", newline="") as f, open(events, "w") as out:
        for row in csv.DictReader(f):
            rec = {"ts": int(row["ts"]), "contact": row["contact"], "type": row["type"]}
            if row["key"]:
                rec["key"] = row["key"]
            if row["value"]:
                rec["props"] = {"amount": float(row["value"])}
            out.write(json.dumps(rec) + "\n")
    rules, contacts = w1 / "rules100.json", w1 / "contacts.csv"
    expected, _, _ = one_process(tmp_path, rules, events, contacts)
    got, _ = distributed_replay(client, tmp_path, rules, events, contacts, partitions=2,
                                range_bytes=3 << 20)
    assert got == expected


def test_w1_as_dataframe(client, w1, tmp_path):
    rules, events, contacts = w1 / "rules100.json", w1 / "events.csv", w1 / "contacts.csv"
    expected, _, _ = one_process(tmp_path, rules, events, contacts)
    r = nd.replay(rules, events, contacts, client=client, partitions=2)
    frame = r.actions
    assert list(frame.columns) == ["ts", "contact", "rule", "action", "arg"]
    assert len(frame) == r.action_count == expected.count(b"\n") - 1
    want = pd.read_csv(tmp_path / "one.csv", dtype=str, keep_default_na=False)
    assert frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ").tolist() == want["ts"].tolist()
    for col in ["contact", "rule", "action", "arg"]:
        assert frame[col].tolist() == want[col].tolist()
    # Epoch times in, the same datetimes out; no actions, an empty frame with the columns.
    small_rules = EXAMPLES / "wf_abandoned_cart.rules.json"
    small = EXAMPLES / "wf_abandoned_cart.events.csv"
    iso = nd.replay(small_rules, small, client=client, partitions=2).actions
    epoch = nd.replay(small_rules, small, client=client, partitions=2, time_format="epoch")
    assert len(iso) > 0 and epoch.actions.equals(iso)
    empty = tmp_path / "empty.csv"
    empty.write_text("ts,contact,type,key,value\n")
    none = nd.replay(rules, empty, client=client, partitions=2)
    assert list(none.actions.columns) == list(frame.columns) and len(none.actions) == 0


def identified(src, dst):
    """W1 with identity merges: every 5th contact's first events come from a visitor id
    identified as the contact mid-way, and every 15th's earliest from a second visitor first
    identified as the first visitor (a chain v2 -> v1 -> c): the ids of one contact hash to
    different partitions, so only the identity pass keeps them together."""
    lines = src.read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    times = {}
    for line in body:
        ts, contact = line.split(",", 2)[:2]
        times.setdefault(contact, []).append(int(ts))
    cut = {}
    for i, (c, ts) in enumerate(sorted(times.items())):
        if i % 5 == 0 and len(ts) >= 4:
            cut[c] = (ts[len(ts) // 4], ts[len(ts) // 2], i % 15 == 0)
    out = [header]
    done = set()
    for line in body:
        ts_text, contact, rest = line.split(",", 2)
        ts = int(ts_text)
        if contact in cut:
            q1, mid, chain = cut[contact]
            if chain and ts >= q1 and (contact, 1) not in done:
                out.append(f"{q1},v2-{contact},identify,v1-{contact},\n")
                done.add((contact, 1))
            if ts >= mid and (contact, 2) not in done:
                out.append(f"{mid},v1-{contact},identify,{contact},\n")
                done.add((contact, 2))
            if ts < mid:
                contact = f"v2-{contact}" if chain and ts < q1 else f"v1-{contact}"
        out.append(f"{ts_text},{contact},{rest}")
    dst.write_text("".join(out))


def test_w1_identity_merges_identical(client, w1, tmp_path):
    events = tmp_path / "identified.csv"
    identified(w1 / "events.csv", events)
    rules, contacts = w1 / "rules100.json", w1 / "contacts.csv"
    expected, _, status = one_process(tmp_path, rules, events, contacts)
    assert status == 0
    got, r = distributed_replay(client, tmp_path, rules, events, contacts, partitions=4,
                                range_bytes=1 << 20)
    assert got == expected
    engine = nudge.Engine(nudge.Program.load(rules))
    engine.replay(events, contacts)
    assert r.stats == engine.stats()


@pytest.mark.parametrize("when", ["after the shuffle", "during a partition's replay"])
def test_worker_killed_mid_run_same_output(client, w1, tmp_path, when):
    import threading
    import time

    # W1 with identity merges: the identity map is a task result that may be lost too.
    events = tmp_path / "identified.csv"
    identified(w1 / "events.csv", events)
    rules, contacts = w1 / "rules100.json", w1 / "contacts.csv"
    expected, _, _ = one_process(tmp_path, rules, events, contacts)
    pids = client.run(os.getpid)
    killed = []

    def kill_while_replaying():
        # SIGKILL the worker that is running a partition's replay, while it runs.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for worker, keys in client.processing().items():
                if any(str(k).startswith("replay_partition") for k in keys) and worker in pids:
                    os.kill(pids[worker], signal.SIGKILL)
                    killed.append(worker)
                    return
            time.sleep(0.005)

    def on_stage(stage):
        if stage != "shuffled":
            return
        if when == "after the shuffle":
            # Each worker holds part of the partitions' blocks: losing one makes Dask
            # recompute its read tasks (the nanny starts a new worker).
            worker = sorted(pids)[0]
            os.kill(pids[worker], signal.SIGKILL)
            killed.append(worker)
        else:
            threading.Thread(target=kill_while_replaying, daemon=True).start()

    got, _ = distributed_replay(client, tmp_path, rules, events, contacts, partitions=4,
                                range_bytes=1 << 20, on_stage=on_stage)
    assert killed
    assert got == expected
    client.wait_for_workers(2, timeout=60)


# ---- Example rule files ------------------------------------------------------------------------

EXAMPLE_NAMES = sorted(p.name[: -len(".rules.json")] for p in EXAMPLES.glob("*.rules.json"))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_identical(client, tmp_path, name):
    rules = EXAMPLES / f"{name}.rules.json"
    events = EXAMPLES / f"{name}.events.csv"
    contacts = EXAMPLES / f"{name}.contacts.csv"
    contacts = contacts if contacts.exists() else None
    expected, _, _ = one_process(tmp_path, rules, events, contacts)
    # Ranges of 64 bytes: a few records each, so every boundary rule is exercised.
    got, r = distributed_replay(client, tmp_path, rules, events, contacts, partitions=3,
                                range_bytes=64)
    assert got == expected
    engine = nudge.Engine(nudge.Program.load(rules))
    engine.replay(events, contacts)
    assert r.stats == engine.stats()
    assert r.workflow_stats == engine.workflow_stats()


# ---- Bad input -----------------------------------------------------------------------------------

def quoted_log(path, bad=None):
    """A CSV log whose `note` column holds quoted line breaks and quotes (records spanning lines,
    so a range may start inside a field), optionally with `bad` as one line near the end."""
    rows = ["ts,contact,type,key,value,note\n"]
    for i in range(400):
        note = '"line one\nline ""two"""' if i % 3 == 0 else "plain"
        rows.append(f"{1704067200 + i * 60},c{i % 37},page_view,/p/{i % 11},,{note}\n")
        if bad and i == 350:
            rows.append(bad)
    path.write_text("".join(rows))


def test_quoted_line_breaks_identical(client, tmp_path):
    events = tmp_path / "quoted.csv"
    quoted_log(events)
    rules = EXAMPLES / "cart_by_url.rules.json"
    expected, _, status = one_process(tmp_path, rules, events)
    assert status == 0
    data = events.read_bytes()
    # Some range begins inside a quoted field (an odd count of quotes before it).
    assert any(data.count(b'"', 0, b) % 2 for b in range(499, len(data), 499))
    got, _ = distributed_replay(client, tmp_path, rules, events, partitions=3, range_bytes=499)
    assert got == expected


@pytest.mark.parametrize("bad", [
    "1704088200,c1,page_view,/p/1,not-a-number,x\n",        # a bad value
    "1704067200,c1,page_view,/p/1,,x\n",                     # out of order
    '1704088200,c1,page_view,/p/1,,"unterminated\n',         # a quote never closed
])
def test_bad_line_names_file_and_line(client, tmp_path, bad):
    events = tmp_path / "bad.csv"
    quoted_log(events, bad)
    rules = EXAMPLES / "cart_by_url.rules.json"
    _, stderr, status = one_process(tmp_path, rules, events)
    assert status == 1
    with pytest.raises(nudge.ReadError) as e:
        nd.replay(rules, events, client=client, partitions=3, out=tmp_path / "x.csv",
                  range_bytes=1499)
    assert str(e.value) == stderr.splitlines()[0]
    assert e.value.file == str(events)
    assert f"{events}:{e.value.line}:" in stderr
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.part").exists()


def test_skipped_lines_and_rejects_identical(client, tmp_path):
    events = tmp_path / "skip.csv"
    quoted_log(events, "1704067200,c1,page_view,/p/1,,x\n1704088200,c2,page_view,/p/1,zz,x\n")
    rules = EXAMPLES / "cart_by_url.rules.json"
    expected, _, _ = one_process(tmp_path, rules, events, None, "--on-error", "skip",
                                 "--rejects", str(tmp_path / "one.rejects"))
    got, r = distributed_replay(client, tmp_path, rules, events, partitions=3, range_bytes=1499,
                                on_error="skip", rejects=tmp_path / "dist.rejects")
    assert got == expected
    assert (tmp_path / "dist.rejects").read_bytes() == (tmp_path / "one.rejects").read_bytes()
    assert r.rejected == 2


def test_bad_contacts_line_first(client, tmp_path):
    contacts = tmp_path / "contacts.csv"
    # A contact twice: "duplicate contact" at the second line.
    contacts.write_text((EXAMPLES / "education.contacts.csv").read_text()
                        + "c9,lead,,,\nc9,lead,,,\n")
    rules, events = EXAMPLES / "education.rules.json", EXAMPLES / "education.events.csv"
    _, stderr, status = one_process(tmp_path, rules, events, contacts)
    assert status == 1
    with pytest.raises(nudge.ReadError) as e:
        nd.replay(rules, events, contacts, client=client, partitions=2, out=tmp_path / "x.csv")
    assert str(e.value) == stderr.splitlines()[0]


# ---- State that spans contacts -------------------------------------------------------------------

def test_round_robin_refused_naming_the_rule(client, tmp_path):
    # Its counter runs across contacts in the order one process meets them: refused.
    text = (EXAMPLES / "lead_assignment.rules.json").read_text()
    rules = tmp_path / "rr.rules.json"
    rules.write_text(text.replace('"do": "assign_owner", "arg": "sales"',
                                  '"do": "assign_owner", "arg": "sales", "pick": "round_robin"'))
    with pytest.raises(ValueError) as e:
        nd.replay(rules, EXAMPLES / "lead_assignment.events.csv", client=client, partitions=2)
    assert str(e.value) == (
        'nudge.distributed: rule "lead_pricing", rule "lead_tag" assigns owners round robin: its '
        "counter runs across contacts in the order one process meets them, which partitions by "
        "contact cannot reproduce; replay these rules in one process (nudge replay)")


def test_partition_is_a_stable_hash():
    # XXH3-64 of the id's bytes: the same in every process and run, whatever Python's hash seed
    # (its salted hash() would differ between these processes).
    code = "import nudge.distributed as nd; print([nd.partition_of(f'c{i}', 7) for i in range(50)])"
    runs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env=dict(os.environ, PYTHONHASHSEED=seed)).stdout
        for seed in ("1", "2", "3")
    }
    assert len(runs) == 1
    assert runs.pop().strip() == str([nd.partition_of(f"c{i}", 7) for i in range(50)])
    assert len({nd.partition_of(f"c{i}", 7) for i in range(50)}) == 7  # all partitions used
    assert nd.partition_of("c0000001", 1) == 0
    with pytest.raises(ValueError):
        nd.partition_of("c1", 0)


# ---- Ends, compressed logs, files --------------------------------------------------------------

def test_explicit_until_identical_and_later_events_refused(client, w1, tmp_path):
    rules, events, contacts = w1 / "rules100.json", w1 / "events.csv", w1 / "contacts.csv"
    expected, _, _ = one_process(tmp_path, rules, events, contacts, "--until",
                                 "2024-06-01T00:00:00Z")
    got, r = distributed_replay(client, tmp_path, rules, events, contacts, partitions=2,
                                until="2024-06-01T00:00:00Z")
    assert got == expected and r.extensions == 0
    _, stderr, status = one_process(tmp_path, rules, events, contacts, "--until",
                                    "2024-02-01T00:00:00Z")
    assert status == 1
    with pytest.raises(nudge.ReadError) as e:
        nd.replay(rules, events, contacts, client=client, partitions=2, until=1706745600,
                  range_bytes=1 << 20)
    assert str(e.value) == stderr.splitlines()[0]


def test_gzipped_log_identical(client, tmp_path):
    import gzip
    name = "wf_abandoned_cart"
    events = tmp_path / "events.csv.gz"
    events.write_bytes(gzip.compress((EXAMPLES / f"{name}.events.csv").read_bytes()))
    rules = EXAMPLES / f"{name}.rules.json"
    expected, _, _ = one_process(tmp_path, rules, events)
    got, _ = distributed_replay(client, tmp_path, rules, events, partitions=2)
    assert got == expected


@pytest.mark.parametrize("events", ["/nonexistent/events.csv", "events.txt"])
def test_unreadable_events_file_as_one_process(client, tmp_path, events):
    rules = EXAMPLES / "coupon.rules.json"
    _, stderr, status = one_process(tmp_path, rules, events)
    assert status == 1
    with pytest.raises(nudge.ReadError) as e:
        nd.replay(rules, events, client=client, partitions=2)
    assert str(e.value) == stderr.splitlines()[-1]


def test_standard_input_refused(client):
    with pytest.raises(ValueError, match="a file every worker can open"):
        nd.replay(EXAMPLES / "coupon.rules.json", "-", client=client, partitions=2)


# ---- The command line ----------------------------------------------------------------------------

def module_cli(client, *args):
    return subprocess.run(
        [sys.executable, "-m", "nudge.distributed", "replay", "--scheduler",
         client.scheduler.address, "--partitions", "2", *args],
        capture_output=True, text=True, env=dict(os.environ),
    )


def test_cli_skip_prints_rejects_and_summary_as_nudge_replay(client, tmp_path):
    events = tmp_path / "skip.csv"
    quoted_log(events, "1704067200,c1,page_view,/p/1,,x\n1704088200,c2,page_view,/p/1,zz,x\n")
    rules = EXAMPLES / "cart_by_url.rules.json"
    expected, stderr, status = one_process(tmp_path, rules, events, None, "--on-error", "skip",
                                           "--time-format", "epoch")
    assert status == 0 and "rejected: " in stderr
    out = tmp_path / "cli.csv"
    p = module_cli(client, "--rules", str(rules), "--events", str(events), "--on-error", "skip",
                   "--time-format", "epoch", "--out", str(out), "--range-bytes", "1499")
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == expected
    assert p.stderr == stderr


def test_cli_bad_line_and_bad_until_as_nudge_replay(client, tmp_path):
    events = tmp_path / "bad.csv"
    quoted_log(events, "1704088200,c1,page_view,/p/1,not-a-number,x\n")
    rules = EXAMPLES / "cart_by_url.rules.json"
    _, stderr, status = one_process(tmp_path, rules, events)
    p = module_cli(client, "--rules", str(rules), "--events", str(events), "--out",
                   str(tmp_path / "x.csv"))
    assert (p.returncode, p.stderr) == (status, stderr) == (1, stderr)
    assert not (tmp_path / "x.csv").exists()
    _, stderr, status = one_process(tmp_path, rules, events, None, "--until", "soon")
    p = module_cli(client, "--rules", str(rules), "--events", str(events), "--until", "soon")
    assert (p.returncode, p.stderr) == (status, stderr) == (2, stderr)


@pytest.mark.parametrize("shape", ["header only", "crlf", "no final line break", "blank lines"])
def test_edge_logs_identical(client, tmp_path, shape):
    name = "wf_birthday"  # contacts with yearly dates: something happens without events too
    text = (EXAMPLES / f"{name}.events.csv").read_text()
    if shape == "header only":
        text = text.splitlines(keepends=True)[0]
    elif shape == "crlf":
        text = text.replace("\n", "\r\n")
    elif shape == "no final line break":
        text = text.rstrip("\n")
    else:
        text = text.replace("\n", "\n\n")
    events = tmp_path / "events.csv"
    events.write_text(text, newline="")
    rules, contacts = EXAMPLES / f"{name}.rules.json", EXAMPLES / f"{name}.contacts.csv"
    expected, stderr, status = one_process(tmp_path, rules, events, contacts)
    if status != 0:
        with pytest.raises(nudge.ReadError) as e:
            nd.replay(rules, events, contacts, client=client, partitions=3, range_bytes=40)
        assert str(e.value) == stderr.splitlines()[-1]
        return
    got, _ = distributed_replay(client, tmp_path, rules, events, contacts, partitions=3,
                                range_bytes=40)
    assert got == expected


def test_strict_and_batch_as_nudge_replay(client, tmp_path):
    events = tmp_path / "quoted.csv"
    quoted_log(events)
    rules = EXAMPLES / "cart_by_url.rules.json"
    _, stderr, status = one_process(tmp_path, rules, events, None, "--strict")
    assert status == 1  # the note column
    with pytest.raises(nudge.ReadError) as e:
        nd.replay(rules, events, client=client, partitions=2, strict=True, range_bytes=1499)
    assert str(e.value) == stderr.splitlines()[0]
    name = "wf_abandoned_cart"
    rules, events = EXAMPLES / f"{name}.rules.json", EXAMPLES / f"{name}.events.csv"
    expected, _, _ = one_process(tmp_path, rules, events, None, "--batch", "1")
    got, _ = distributed_replay(client, tmp_path, rules, events, partitions=3, batch_events=1)
    assert got == expected


def test_cli_standard_output_and_recurring_timers(client, tmp_path):
    name = "wf_birthday"  # yearly dates: "recurring ... not counted" on the pending line
    args = ["--rules", str(EXAMPLES / f"{name}.rules.json"), "--events",
            str(EXAMPLES / f"{name}.events.csv"), "--contacts",
            str(EXAMPLES / f"{name}.contacts.csv")]
    one = subprocess.run([CLI, "replay", *args], capture_output=True, text=True)
    p = module_cli(client, *args)
    assert "recurring" in one.stderr
    assert (p.returncode, p.stdout, p.stderr) == (one.returncode, one.stdout, one.stderr)


def test_cli_bad_rules_as_nudge_replay(client, tmp_path):
    rules = tmp_path / "bad.rules.json"
    rules.write_text('{"rules": [{"id": "x", "on": {"event": "cart"}, "delay": "60x", '
                     '"then": [{"do": "send_email", "arg": "a"}]}]}')
    args = ["--rules", str(rules), "--events", str(EXAMPLES / "coupon.events.csv")]
    one = subprocess.run([CLI, "replay", *args], capture_output=True, text=True)
    p = module_cli(client, *args)
    assert one.stderr.endswith("1 error\n")
    assert (p.returncode, p.stderr) == (one.returncode, one.stderr) == (1, one.stderr)
