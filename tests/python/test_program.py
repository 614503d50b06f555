"""Program: rule files from JSON text, dicts and paths; RuleError with every problem located."""
import json
import pathlib

import pytest

import nudge

RULES = {
    "version": 1,
    "rules": [
        {"id": "hello", "on": {"event": "signup"}, "then": [{"do": "send_email", "arg": "welcome"}]},
        {"id": "bye", "on": {"event": "purchase"}, "delay": "60d",
         "then": [{"do": "send_email", "arg": "winback"}]},
    ],
}

BAD = """{
  "rules": [
    {"id": "a", "on": {"event": "signup"}, "then": [{"do": "send_mail", "arg": "x"}]},
    {"id": "b", "on": {"event": "signup"}, "delay": "soon", "then": [{"do": "send_email", "arg": "y"}]}
  ]
}"""


def test_program_from_dict_str_and_bytes_compile_the_same_rules():
    for source in (RULES, json.dumps(RULES), json.dumps(RULES).encode()):
        program = nudge.Program.from_json(source)
        assert program.rule_ids == ["hello", "bye"]
        assert len(program) == 2
    assert repr(program) == "Program(2 rules: hello, bye)"


def test_program_longest_delay_and_known_event_types():
    program = nudge.Program.from_json(RULES)
    assert program.longest_delay.total_seconds() == 60 * 86400
    assert program.knows_event_type("purchase")
    assert not program.knows_event_type("PURCHASE")


def test_program_load_reads_a_path_or_pathlike(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(RULES))
    assert nudge.Program.load(path).rule_ids == ["hello", "bye"]
    assert nudge.Program.load(str(path)).rule_ids == ["hello", "bye"]


def test_rule_error_is_a_value_error_listing_every_problem_with_location():
    with pytest.raises(nudge.RuleError) as info:
        nudge.Program.from_json(BAD, file_name="cart.json")
    e = info.value
    assert isinstance(e, ValueError)
    assert [d.json_pointer for d in e.diagnostics] == ["/rules/0/then/0/do", "/rules/1/delay"]
    first = e.diagnostics[0]
    assert (first.file, first.line, first.column) == ("cart.json", 3, 60)
    assert first.code and first.message
    assert (e.file, e.line, e.column, e.json_pointer) == ("cart.json", 3, 60, "/rules/0/then/0/do")
    lines = str(e).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("cart.json:3:60: /rules/0/then/0/do: unknown action \"send_mail\"")
    assert lines[1].startswith("cart.json:4:")
    assert str(first) == lines[0]
    d = first.to_dict()
    assert set(d) == {"file", "line", "column", "json_pointer", "code", "message"}
    assert d["line"] == 3


def test_rule_error_from_a_dict_carries_json_pointers():
    with pytest.raises(nudge.RuleError) as info:
        nudge.Program.from_json({"rules": [{"id": "x", "on": {"event": "signup"}, "then": [],
                                            "colour": "red"}]})
    assert "/rules/0/colour" in [d.json_pointer for d in info.value.diagnostics]


def test_rule_error_for_an_unreadable_file(tmp_path):
    with pytest.raises(nudge.RuleError) as info:
        nudge.Program.load(tmp_path / "missing.json")
    assert "missing.json" in str(info.value)


def test_program_from_json_refuses_other_types():
    with pytest.raises(TypeError, match="expected a JSON str, bytes or a dict, got list"):
        nudge.Program.from_json([1, 2])


def test_program_counts_every_section_and_len_counts_rules():
    # A file of workflows only: len() stays the rule count (0); counts says what is there.
    repo = pathlib.Path(__file__).resolve().parents[2]
    wf = nudge.Program.load(repo / "examples" / "rules" / "wf_abandoned_cart.rules.json")
    assert len(wf) == 0
    assert wf.counts == {"rules": 0, "workflows": 1, "segments": 0, "scoring": 0}
    every = nudge.Program.load(repo / "tests" / "cli" / "counts_rules.json")
    assert len(every) == 2
    assert every.counts == {"rules": 2, "workflows": 1, "segments": 2, "scoring": 1}
