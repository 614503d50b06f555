"""Fixtures shared by the `nudge run` scripts (one_writer.py, disk_full.py): a fresh work
directory, a generated events file, and the `nudge run` command line."""
import os
import shutil

# 2024-01-01T00:00:00Z, the tests' origin of time.
T0 = 1704067200


def fresh_workdir(work):
    """`work`, emptied (a previous run's leftovers removed) and created."""
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)


def write_events(path, count, contacts, step, digits):
    """`count` events, `step` seconds apart from T0, over `contacts` contacts (named with
    `digits` digits), in rounds of signup, cart, page_view (/pricing), purchase (19.5): each
    contact's events of one kind before the next kind begins."""
    with open(path, "w") as f:
        f.write("ts,contact,type,key,value\n")
        for i in range(count):
            contact = f"contact_{i % contacts:0{digits}d}"
            kind = ("signup", "cart", "page_view", "purchase")[(i // contacts) % 4]
            key = "/pricing" if kind == "page_view" else (f"o{i}" if kind == "purchase" else "")
            value = "19.5" if kind == "purchase" else ""
            f.write(f"{T0 + i * step},{contact},{kind},{key},{value}\n")


def run_command(nudge, rules, events, db, out, batch, *extra):
    """The `nudge run` command line with these files and batch size, then `extra`."""
    return [nudge, "run", "--db", db, "--rules", rules, "--events", events, "--out", out,
            "--batch", str(batch), *extra]
