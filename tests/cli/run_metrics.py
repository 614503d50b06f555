#!/usr/bin/env python3
"""`nudge run`'s metrics and logs (docs/live.md, "Metrics and logs"):

- --metrics-file: the Prometheus text (format 0.0.4) parses, every family has HELP and TYPE,
  and the counts equal the run's outputs: nudge_actions_total per (rule, action) equals the
  lines of --out, events and rejects equal the summary's; written atomically (no FILE.tmp left);
- --metrics 127.0.0.1:0: the bound address is named on stderr, GET /metrics answers with the
  same format while the run is blocked writing to a full pipe, other paths get 404;
- --log-format json: every stderr line is a JSON object with ts, level and msg; one info line
  per batch (events, actions, seconds), a refused line at warn, an error at error;
  --log-format text: "TS LEVEL message"; --log-level warn keeps warn and error lines only.

Usage: run_metrics.py NUDGE RULES WORKDIR
"""
import collections
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support import T0, fresh_workdir, write_events  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse_metrics(text):
    """{name: {"help", "type", "samples": [(labels dict, value)]}}; asserts the format."""
    families = {}
    assert text.endswith("\n"), text
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, help_text = line[7:].split(" ", 1)
            families.setdefault(name, {"samples": []})["help"] = help_text
        elif line.startswith("# TYPE "):
            name, kind = line[7:].split(" ")
            assert kind in ("counter", "gauge", "histogram"), line
            assert "help" in families.get(name, {}), f"TYPE before HELP: {line}"
            families[name]["type"] = kind
        else:
            m = SAMPLE.match(line)
            assert m, f"not a sample: {line!r}"
            name, labels_text, value = m.group(1), m.group(3) or "", m.group(4)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            family = families.get(name) or families.get(base)
            assert family and "type" in family, f"sample without TYPE: {line}"
            labels, pos = {}, 0
            while pos < len(labels_text):
                lm = LABEL.match(labels_text, pos)
                assert lm, f"bad labels: {line!r}"
                labels[lm.group(1)] = re.sub(r"\\(.)", lambda e: {"n": "\n"}.get(e.group(1), e.group(1)),
                                             lm.group(2))
                pos = lm.end()
            family["samples"].append((name, labels, float(value)))
    return families


def value(families, name, **labels):
    for fam in families.values():
        for n, ls, v in fam["samples"]:
            if n == name and ls == labels:
                return v
    return None


def check_counts(families, out_lines, events, rejected):
    actions = collections.Counter()
    for line in out_lines:
        fields = line.split(",")
        actions[(fields[2], fields[3])] += 1
    got = {(ls["rule"], ls["action"]): v for _, ls, v in families["nudge_actions_total"]["samples"]}
    assert got == dict(actions), (got, actions)
    assert value(families, "nudge_events_read_total") == events
    assert value(families, "nudge_events_rejected_total") == rejected
    count = value(families, "nudge_batch_duration_seconds_count")
    assert value(families, "nudge_batch_duration_seconds_bucket", le="+Inf") == count
    buckets = [v for n, ls, v in families["nudge_batch_duration_seconds"]["samples"]
               if n.endswith("_bucket")]
    assert buckets == sorted(buckets), buckets  # cumulative
    for name in ("nudge_outbox_depth", "nudge_outbox_oldest_age_seconds",
                 "nudge_clock_lag_seconds", "nudge_engine_time_seconds"):
        assert families[name]["type"] == "gauge", name


def main():
    nudge, rules, work = sys.argv[1:4]
    fresh_workdir(work)
    path = lambda name: os.path.join(work, name)

    def run(*args, **kw):
        return subprocess.run([nudge, "run", "--rules", rules, *args], capture_output=True,
                              text=True, **kw)

    # --- --metrics-file: counts equal the outputs; a refused line counted once.
    events = path("events.csv")
    write_events(events, 400, 40, 60, 2)
    with open(events, "a") as f:
        f.write(f"{T0 - 100},late,signup,,\n")  # late: refused with --on-error skip
        f.write(f"{T0 + 400 * 60},c_last,signup,,\n")
    metrics_file = path("metrics.prom")
    r = run("--db", path("m.db"), "--events", events, "--out", path("m.out"), "--batch", "50",
            "--on-error", "skip", "--metrics-file", metrics_file)
    assert r.returncode == 0, r.stderr
    summary = re.search(r"^(\d+) events processed, (\d+) rejected", r.stderr, re.M)
    assert summary and summary.group(1) == "401" and summary.group(2) == "1", r.stderr
    with open(path("m.out")) as f:
        out_lines = f.read().splitlines()
    assert out_lines, "the example must produce actions"
    with open(metrics_file) as f:
        families = parse_metrics(f.read())
    check_counts(families, out_lines, 401, 1)
    assert value(families, "nudge_batch_duration_seconds_count") >= 9
    assert value(families, "nudge_outbox_depth") == 0
    assert value(families, "nudge_engine_time_seconds") == T0 + 400 * 60
    assert not os.path.exists(metrics_file + ".tmp")
    # A second run on the same database starts its counters at 0 (one process's counts).
    with open(events, "a") as f:
        f.write(f"{T0 + 401 * 60},c_next,signup,,\n")
    r = run("--db", path("m.db"), "--events", events, "--out", path("m2.out"),
            "--metrics-file", metrics_file)
    assert r.returncode == 0, r.stderr
    with open(path("m2.out")) as f:
        out2 = f.read().splitlines()
    with open(metrics_file) as f:
        check_counts(parse_metrics(f.read()), out2, 1, 0)

    # --- --outbox-only (nudge deliver delivers): the actions counted are those committed to
    # the outbox, the same lines nudge outbox lists.
    r = run("--db", path("o.db"), "--events", events, "--outbox-only", "--batch", "50",
            "--on-error", "skip", "--metrics-file", metrics_file)
    assert r.returncode == 0, r.stderr
    listed = subprocess.run([nudge, "outbox", "--db", path("o.db")], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    listed = [line for line in listed if line and not line.startswith("ts,")]
    assert listed, "the example must leave actions in the outbox"
    with open(metrics_file) as f:
        families = parse_metrics(f.read())
    got = {(ls["rule"], ls["action"]): v for _, ls, v in families["nudge_actions_total"]["samples"]}
    want = collections.Counter((l.split(",")[2], l.split(",")[3]) for l in listed)
    assert got == dict(want), (got, want)
    assert value(families, "nudge_outbox_depth") == len(listed)

    # --- Label values escaped: a rule id with a quote, a backslash and a line break.
    odd_id = 'say "hi"\\there\nnow'
    with open(path("odd_rules.json"), "w") as f:
        json.dump({"version": 1, "rules": [{"id": odd_id, "on": {"event": "signup"},
                                            "then": [{"do": "send_email", "arg": "x"}]}]}, f)
    with open(path("odd.csv"), "w") as f:
        f.write(f"ts,contact,type,key,value\n{T0},c1,signup,,\n{T0 + 1},c2,signup,,\n")
    r = subprocess.run([nudge, "run", "--rules", path("odd_rules.json"), "--db", path("odd.db"),
                        "--events", path("odd.csv"), "--out", path("odd.out"),
                        "--metrics-file", path("odd.prom")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(path("odd.prom")) as f:
        text = f.read()
    assert 'nudge_actions_total{rule="say \\"hi\\"\\\\there\\nnow",action="send_email"} 2\n' in text, text
    odd = parse_metrics(text)
    assert value(odd, "nudge_actions_total", rule=odd_id, action="send_email") == 2

    # --- --metrics 127.0.0.1:0: GET /metrics while the run blocks on a full stdout pipe (the
    # output, some 5,000 lines, is larger than a pipe holds, and this test reads it only later).
    big = path("big.csv")
    with open(big, "w") as f:
        f.write("ts,contact,type,key,value\n")
        for i in range(5000):
            f.write(f"{T0 + i},visitor_{i:05d},signup,,\n")
    p = subprocess.Popen([nudge, "run", "--rules", rules, "--db", path("http.db"), "--events", big,
                          "--batch", "100", "--metrics", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    address = None
    err_lines = []
    while address is None:
        line = p.stderr.readline()
        assert line, f"no address on stderr: {err_lines}"
        err_lines.append(line)
        m = re.match(r"^metrics: serving http://(127\.0\.0\.1:\d+)/metrics$", line.strip())
        if m:
            address = m.group(1)
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        mid = parse_metrics(resp.read().decode())
    assert "nudge_actions_total" in mid and "nudge_batch_duration_seconds" in mid
    assert value(mid, "nudge_events_read_total") <= 5000
    try:
        urllib.request.urlopen(f"http://{address}/other", timeout=10)
        raise AssertionError("/other must be 404")
    except urllib.error.HTTPError as e:
        assert e.code == 404, e.code
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert len(out.splitlines()) == 5000, len(out.splitlines())
    assert re.search(r"^5000 events processed", err, re.M), err

    # A taken port fails the run before it does anything.
    import socket
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        r = run("--db", path("taken.db"), "--events", big, "--metrics", f"127.0.0.1:{port}")
    assert r.returncode == 1, r.stderr
    assert r.stderr == f"--metrics 127.0.0.1:{port}: cannot bind: Address already in use\n", r.stderr
    assert not os.path.exists(path("taken.db"))
    r = run("--db", path("taken.db"), "--events", big, "--metrics", "127.0.0.1:http")
    assert r.returncode == 2, r.stderr
    assert r.stderr == "--metrics 127.0.0.1:http: not an address: expected HOST:PORT, :PORT or PORT\n"

    # --- --log-format json: every line parses; batches at info, a refused line at warn.
    write_events(path("log.csv"), 100, 10, 60, 2)
    with open(path("log.csv"), "a") as f:
        f.write(f"{T0 - 5},late \"quoted\",signup,,\n")
    r = run("--db", path("log.db"), "--events", path("log.csv"), "--out", path("log.out"),
            "--batch", "25", "--on-error", "skip", "--log-format", "json")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    for entry in lines:
        assert set(entry) >= {"ts", "level", "msg"}, entry
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", entry["ts"]), entry
    batches = [e for e in lines if e["msg"].startswith("batch: ")]
    assert len(batches) >= 4 and all(e["level"] == "info" for e in batches), lines
    assert sum(e["events"] for e in batches) == 100, batches
    assert all(isinstance(e["seconds"], float) and isinstance(e["actions"], int)
               for e in batches), batches
    warns = [e for e in lines if e["level"] == "warn"]
    assert len(warns) == 1 and warns[0]["msg"].startswith(f"rejected: {path('log.csv')}:102: "), warns
    assert warns[0]["line"] == 102, warns
    assert lines[-1]["level"] == "info" and lines[-1]["events"] == 100, lines[-1]
    # An error is a JSON line at error.
    r = run("--db", path("nowhere/x.db"), "--events", path("log.csv"), "--log-format", "json")
    assert r.returncode == 1, r.stderr
    entry = json.loads(r.stderr.strip().splitlines()[-1])
    assert entry["level"] == "error" and "nowhere/x.db" in entry["msg"], entry

    # --- --log-format text, and --log-level warn.
    with open(path("log.csv"), "a") as f:
        f.write(f"{T0 - 6},late2,signup,,\n{T0 + 200 * 60},c_new,signup,,\n")
    r = run("--db", path("log.db"), "--events", path("log.csv"), "--out", path("log.out"),
            "--on-error", "skip", "--log-format", "text")
    assert r.returncode == 0, r.stderr
    text = r.stderr.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (info|warn|error) ", t)
               for t in text), text
    assert any(re.match(r"^\S+ warn rejected: .*:103: ", t) for t in text), text
    assert any(re.match(r"^\S+ info batch: 1 events, \d+ actions, 1 rejected, ", t) for t in text), text
    with open(path("log.csv"), "a") as f:
        f.write(f"{T0 - 7},late3,signup,,\n")
    r = run("--db", path("log.db"), "--events", path("log.csv"), "--out", path("log.out"),
            "--on-error", "skip", "--log-format", "text", "--log-level", "warn")
    assert r.returncode == 0, r.stderr
    text = r.stderr.splitlines()
    assert len(text) == 1 and re.match(r"^\S+ warn rejected: .*:105: ", text[0]), text
    print("run metrics and logs: ok")


if __name__ == "__main__":
    main()
