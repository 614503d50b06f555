#!/usr/bin/env python3
"""schema/rules.schema.json against the loader (src/io/json), so that the two cannot drift:

1. The field names: every name the loader accepts (the lists it hands check_fields, and its
   tables of condition forms, operators and event shorthands) is a property somewhere in the
   schema, and every property of the schema is a name the loader accepts. The enum of "do" equals
   the loader's verbs.
2. Valid files: every rule file `nudge check` accepts (examples/**/*.rules.json, the test rule
   files, the W1 rules of examples/w1/make_rules.py and the workflow benchmark's rules) validates.
3. Bad files: every golden bad file of tests/data/errors fails validation, except the ones whose
   errors are semantic (references, limits, cycles: listed in SEMANTIC below, which must pass the
   schema, so the list stays honest) and the ones that are not JSON at all (NOT_JSON).
4. "$schema" is accepted at the top level (by both) and refused elsewhere (by both).

    schema_test.py NUDGE REPO WORKDIR

Exit 77 (ctest: skipped) when python3-jsonschema is missing.
"""
import glob
import json
import os
import re
import subprocess
import sys

try:
    import jsonschema
except ImportError:
    print("schema_test: python3-jsonschema is not installed (scripts/setup.sh); skipped")
    sys.exit(77)

# Golden bad files whose problems the schema cannot see: they are well-formed, and only the
# loader's cross-checks or limits refuse them.
SEMANTIC = {
    "compiler_depth.json": "conditions nested past max_condition_depth (a limit)",
    "duplicate_id.json": "two rules with one id",
    "duplicate_key.json": "a key twice in one object (JSON parsers keep the last)",
    "rule_cycle.json": "rules triggering each other for ever",
    "string_too_long.json": "a string past max_string_bytes (a limit)",
    "too_deep.json": "conditions nested past max_condition_depth (a limit)",
    "unknown_event_type.json": "event types neither built in nor declared",
    "workflow_graph.json": "steps naming missing steps, unreachable steps, cycles, split sums",
}
# Not JSON: refused by the parser before any schema applies.
NOT_JSON = {"syntax_bad_byte.json", "syntax_trailing_comma.json", "syntax_truncated.json"}

failures = []


def fail(message):
    failures.append(message)
    print("FAIL:", message)


def string_literals(text):
    return re.findall(r'"((?:[^"\\]|\\.)*)"', text)


def loader_fields(repo):
    """The field names the loader accepts, read from its sources."""
    names = set()
    calls = 0
    for path in sorted(glob.glob(os.path.join(repo, "src/io/json/*.cpp"))):
        text = open(path, encoding="utf-8").read()
        # check_fields(OBJECT, AT, {"a", "b", ...}): the braces after the call's opening.
        for m in re.finditer(r"check_fields\(", text):
            end = text.index(";", m.end())
            call = text[m.end():end]
            if "{" not in call:
                continue
            calls += 1
            names.update(string_literals(call[call.index("{"):]))
        # Other fixed field tables: the step forms.
        for m in re.finditer(r"std::array<std::string_view, \d+> forms\{([^}]*)\}", text):
            names.update(string_literals(m.group(1)))
    walker = open(os.path.join(repo, "src/io/json/walker.hpp"), encoding="utf-8").read()
    tables = {}
    for table in ("condition_forms", "operators", "key_shorthands", "verbs"):
        m = re.search(r"std::array<std::string_view, \d+> " + table + r"\{([^}]*)\}", walker)
        if m is None:
            fail(f"src/io/json/walker.hpp: table {table} not found (the test must learn its new "
                 "shape)")
            continue
        tables[table] = string_literals(m.group(1))
    for table in ("condition_forms", "operators", "key_shorthands"):
        names.update(tables.get(table, []))
    # A reader that finds nothing would make the comparison vacuous.
    if calls < 30 or len(names) < 100:
        fail(f"read only {calls} check_fields calls and {len(names)} names from the loader")
    return names, tables.get("verbs", [])


def schema_properties(node, out):
    """Every property name the schema declares (keys of any "properties")."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "properties" and isinstance(v, dict):
                out.update(v.keys())
                for sub in v.values():
                    schema_properties(sub, out)
            else:
                schema_properties(v, out)
    elif isinstance(node, list):
        for v in node:
            schema_properties(v, out)
    return out


def check(nudge, path):
    """Whether `nudge check` accepts the file."""
    r = subprocess.run([nudge, "check", path], capture_output=True, text=True)
    return r.returncode == 0


def main(nudge, repo, work):
    os.makedirs(work, exist_ok=True)
    schema = json.load(open(os.path.join(repo, "schema/rules.schema.json"), encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)

    def errors(doc):
        return sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))

    # 1. Field names, both ways.
    loader, verbs = loader_fields(repo)
    declared = schema_properties(schema, set())
    for name in sorted(loader - declared):
        fail(f"the loader accepts field {name!r}; the schema does not declare it")
    for name in sorted(declared - loader):
        fail(f"the schema declares field {name!r}; the loader does not accept it")
    do_enum = schema["$defs"]["action"]["properties"]["do"]["enum"]
    if do_enum != verbs:
        fail(f"the schema's verbs {do_enum} differ from the loader's {verbs}")

    # 2. Every rule file the loader accepts validates.
    valid = sorted(glob.glob(os.path.join(repo, "examples/**/*.rules.json"), recursive=True))
    valid += sorted(glob.glob(os.path.join(repo, "tests/data/rules/*.json")))
    valid += sorted(glob.glob(os.path.join(repo, "tests/cli/**/*.json"), recursive=True))
    w1 = os.path.join(work, "w1_rules.json")
    with open(w1, "w") as f:
        subprocess.run([sys.executable, os.path.join(repo, "examples/w1/make_rules.py"),
                        "--filler", "7"], stdout=f, check=True)
    wf = os.path.join(work, "w1_workflow_rules.json")
    with open(wf, "w") as f:
        subprocess.run([sys.executable, os.path.join(repo, "bench/make_workflow_rules.py"), w1],
                       stdout=f, check=True)
    valid += [w1, wf]
    accepted = 0
    for path in valid:
        if not check(nudge, path):
            continue  # a bad file among the test files (e.g. tests/cli/bad_rules.json)
        accepted += 1
        for e in errors(json.load(open(path, encoding="utf-8")))[:3]:
            fail(f"{path}: accepted by nudge check, refused by the schema at "
                 f"{e.json_path}: {e.message[:200]}")
    if accepted < 25:
        fail(f"only {accepted} valid rule files found")

    # 3. Golden bad files: structural ones fail the schema, semantic ones pass it.
    bad = sorted(glob.glob(os.path.join(repo, "tests/data/errors/*.json")))
    for path in bad:
        name = os.path.basename(path)
        if check(nudge, path):
            fail(f"{path}: nudge check accepts a golden bad file")
        if name in NOT_JSON:
            try:
                json.load(open(path, encoding="utf-8"))
                fail(f"{path}: listed as not JSON but parses")
            except ValueError:
                pass
            continue
        found = errors(json.load(open(path, encoding="utf-8")))
        if name in SEMANTIC and found:
            fail(f"{path}: listed as semantic ({SEMANTIC[name]}) but the schema refuses it: "
                 f"{found[0].json_path}: {found[0].message[:200]}")
        if name not in SEMANTIC and not found:
            fail(f"{path}: a structural error the schema accepts (or list it in SEMANTIC)")
    for name in sorted(set(SEMANTIC) | NOT_JSON):
        if not os.path.exists(os.path.join(repo, "tests/data/errors", name)):
            fail(f"tests/data/errors/{name} is listed but does not exist")

    # 4. "$schema": at the top level both accept it; inside a rule both refuse it.
    rule = {"id": "hi", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "hi"}]}
    top = {"$schema": "./schema/rules.schema.json", "rules": [rule]}
    nested = {"rules": [dict(rule, **{"$schema": "x"})]}
    for doc, ok in ((top, True), (nested, False)):
        path = os.path.join(work, "dollar_schema.json")
        with open(path, "w") as f:
            json.dump(doc, f)
        if check(nudge, path) != ok or (not errors(doc)) != ok:
            fail(f"{json.dumps(doc)}: expected {'accepted' if ok else 'refused'} by both")

    if failures:
        print(f"schema_test: {len(failures)} failures")
        return 1
    print(f"schema_test: {len(loader)} fields agree; {accepted} valid files validate; "
          f"{len(bad) - len(SEMANTIC) - len(NOT_JSON)} structural bad files fail, "
          f"{len(SEMANTIC)} semantic ones pass")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
