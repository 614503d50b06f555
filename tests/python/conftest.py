"""Shared helpers for the nudge Python tests.

Run with Debian's interpreter and the build's package on the path:

    PYTHONPATH=build-py/bindings/python /usr/bin/python3 -m pytest tests/python
"""
import csv
import datetime as dt
import json
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "rules"
UTC = dt.timezone.utc
T0 = 1704067200  # 2024-01-01T00:00:00Z
HOUR = 3600
DAY = 86400


def utc(seconds):
    """The aware UTC datetime `seconds` after the epoch."""
    return dt.datetime.fromtimestamp(seconds, UTC)


def rows(actions):
    """Due actions as (epoch, contact, rule, action, arg) tuples, the CSV columns (a workflow
    step's action names "workflow/step" as its rule)."""
    return [(a.ts_epoch, a.contact, a.rule + ("/" + a.step if a.step else ""), a.action, a.arg)
            for a in actions]


def read_events_csv(path):
    """An events CSV (ts,contact,type,key,value[,lat,lon]) as tuples for Engine.process."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            props = {"value": float(r["value"])} if r.get("value") else {}
            if r.get("lat"):  # optional location columns (docs/rules.md, "Location")
                props.update(lat=float(r["lat"]), lon=float(r["lon"]))
            out.append((r["contact"], r["type"], int(r["ts"]), r["key"], props or None))
    return out


def read_expected_csv(path):
    with open(path, newline="") as f:
        return [(int(r["ts"]), r["contact"], r["rule"], r["action"], r["arg"])
                for r in csv.DictReader(f)]


def read_contacts_csv(path):
    """contacts.csv rows as (id, fields) for Engine.upsert_contact, as the C++ reader does."""
    out = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            cid = r.pop("contact")
            fields = {"details": {}}
            if r.get("lat"):
                fields["location"] = (float(r.pop("lat")), float(r.pop("lon")))
            for k, v in r.items():
                if v == "" or k in ("lat", "lon"):
                    continue
                if k in ("status", "stage", "owner", "time_zone"):
                    fields[k] = v
                elif k == "score":
                    fields[k] = float(v)
                elif k == "consent":
                    fields[k] = {ch: True for ch in v.split(";") if ch}
                else:
                    fields["details"][k] = v
            out.append((cid, fields))
    return out


SCENARIOS = sorted(p.name[: -len(".rules.json")] for p in EXAMPLES.glob("*.rules.json"))


@pytest.fixture
def scenario_files():
    def files(name):
        contacts = EXAMPLES / f"{name}.contacts.csv"
        return {
            "rules": json.loads((EXAMPLES / f"{name}.rules.json").read_text()),
            "events": EXAMPLES / f"{name}.events.csv",
            "contacts": contacts if contacts.exists() else None,
            "expected": EXAMPLES / f"{name}.expected.csv",
        }
    return files
