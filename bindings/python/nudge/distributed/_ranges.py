"""The tasks of a distributed replay that run on the workers, and the planning of byte ranges.

An event log is cut into byte ranges; each range is read by one task. A range owns the records
that start inside it: a record starts after a line break that lies outside a quoted CSV field
(the reader's own rule: an odd count of '"' since the record began means the line break is
inside a field). A first, cheap pass counts line breaks and quotes per range, so that each task
knows the line number and the quote parity at its start without reading what comes before.
"""
from __future__ import annotations

import functools
import gzip
import os
import time

from .. import _core

# Bytes read past a range's end per step while looking for the end of its last record.
_STEP = 1 << 16


def format_of(path: str) -> tuple[str, bool]:
    """("csv" | "jsonl", gzipped) by extension, as `nudge replay` chooses."""
    lower = path.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[:-3]
    if lower.endswith(".csv"):
        return "csv", gz
    if lower.endswith(".jsonl"):
        return "jsonl", gz
    e = _core.ReadError(
        f"{path}: unknown file format (expected a .csv, .jsonl, .csv.gz or .jsonl.gz extension)"
    )
    e.file, e.line, e.reason = path, 0, str(e).split(": ", 1)[1]
    raise e


@functools.lru_cache(maxsize=4)
def program(rules_text: bytes, rules_name: str) -> _core.Program:
    """The compiled program, once per worker process and rule file."""
    return _core.Program.from_json(rules_text, rules_name)


def count_range(path: str, begin: int, end: int) -> tuple[int, int]:
    """(line breaks, quotes) in bytes [begin, end) of the file."""
    with open(path, "rb") as f:
        f.seek(begin)
        data = f.read(end - begin)
    return data.count(b"\n"), data.count(b'"')


def header_of(path: str, csv: bool, gz: bool) -> bytes:
    """A CSV file's header record with its line break (b"" for JSON Lines)."""
    if not csv:
        return b""
    with (gzip.open if gz else open)(path, "rb") as f:
        head = b""
        while True:
            chunk = f.read(_STEP)
            if not chunk:
                return head
            start = len(head)
            head += chunk
            at = head.find(b"\n", start)
            while at >= 0:
                if head.count(b'"', 0, at) % 2 == 0:
                    return head[: at + 1]
                at = head.find(b"\n", at + 1)


def _record_start(f, at: int, parity: int, csv: bool, size: int) -> tuple[int, int]:
    """The first record start at or after `at` (a line break outside quotes precedes it), and the
    line breaks in [at, start). `parity`: the quote count before `at`, modulo 2."""
    if at >= size:
        return size, 0
    f.seek(at - 1)
    prev = f.read(1)
    if prev == b"\n" and parity == 0:
        return at, 0
    pos = at
    newlines = 0
    while pos < size:
        f.seek(pos)
        chunk = f.read(_STEP)
        i = 0
        while True:
            nl = chunk.find(b"\n", i)
            if nl < 0:
                if csv:
                    parity = (parity + chunk.count(b'"', i)) % 2
                break
            if csv:
                parity = (parity + chunk.count(b'"', i, nl)) % 2
            newlines += 1
            if parity == 0:
                return pos + nl + 1, newlines
            i = nl + 1
        pos += len(chunk)
    return size, newlines


def read_range(spec: dict, identities, partitions: int, not_before):
    """Reads one byte range (its records) through the C++ reader: without `identities` the
    identify events' (contact, key) pairs, with them the events cut by partition."""
    path = spec["path"]
    prog = program(spec["rules_text"], spec["rules_name"])
    header = spec["header"]
    if spec["gz"]:
        with gzip.open(path, "rb") as f:
            body = f.read()[len(header) :]
        first_line = header.count(b"\n") + 1
    else:
        csv = spec["format"] == "csv"
        size = spec["size"]
        with open(path, "rb") as f:
            if spec["begin"] == 0:
                start, skipped = len(header), header.count(b"\n")
            else:
                start, skipped = _record_start(f, spec["begin"], spec["parity"], csv, size)
            end, _ = _record_start(f, spec["end"], spec["end_parity"], csv, size)
            if end <= start:
                body = b""
            else:
                f.seek(start)
                body = f.read(end - start)
        first_line = spec["lines"] + skipped + 1
    return _core._distributed_scan(
        prog,
        header + body,
        spec["format"],
        spec["name"],
        header.count(b"\n"),
        first_line,
        not_before,
        spec["until"],
        spec["strict"],
        spec["skip"],
        identities,
        partitions,
    )


def identity_map(identities: dict) -> dict:
    """The identity pass's map (every merged id to its canonical id) as a task result."""
    return identities


def meta(result: dict) -> dict:
    """A range's result without its shuffled blocks (what the client gathers)."""
    return {k: v for k, v in result.items() if k != "parts"}


def block(result: dict, partition: int) -> bytes:
    return result["parts"][partition]


def replay_partition(spec: dict, identities, partition: int, untils: list, *blocks: bytes) -> dict:
    """One partition's replay (C++, the GIL released) on its events, in the log's order."""
    prog = program(spec["rules_text"], spec["rules_name"])
    started = time.thread_time()
    result = _core._distributed_replay(
        prog,
        list(blocks),
        spec["contacts"] or "",
        spec["contacts_name"] or "",
        identities,
        partition,
        spec["partitions"],
        spec["upsert_at"],
        untils,
        spec["batch"],
        spec["skip"],
        spec["time_format"],
    )
    result["cpu"] = time.thread_time() - started
    result["block_bytes"] = sum(len(b) for b in blocks)
    return result


def check_contacts(spec: dict) -> None:
    """Reads the contacts file once, as `nudge replay` does before any event: its first problem
    (with on_error="stop") fails the run before any event problem does."""
    prog = program(spec["rules_text"], spec["rules_name"])
    if not spec["skip"]:
        _core._distributed_check_contacts(prog, spec["contacts"], spec["contacts_name"])


def plan_ranges(path: str, ranges: int) -> list[tuple[int, int]]:
    size = os.path.getsize(path)
    ranges = max(1, min(ranges, size))
    step = -(-size // ranges) if size else 1
    return [(b, min(b + step, size)) for b in range(0, max(size, 1), step)]
