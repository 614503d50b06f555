#!/usr/bin/env python3
"""nudge graph (docs/rules.md, "Workflow diagrams").

    graph.py golden NUDGE REPO WORKDIR   the diagrams equal the golden files in tests/cli/graph/
    graph.py render NUDGE REPO WORKDIR   every DOT diagram renders with Graphviz (dot -Tsvg);
                                         exit 77 (ctest: skipped) only when dot is missing

The diagrams: examples/rules/wf_first_purchase_feedback.rules.json (a wait, a send, a wait for a
click with a timeout, an internal action, an end) in both formats, and with the step counts of a
replay of its events (nudge replay --stats, standard error); tests/cli/graph/every_step.rules.json
(every step, wait and entry kind, goals, on_complete, a paused workflow, quotes in a label) in
both formats. Each is drawn twice: the same bytes both times.
"""
import os
import shutil
import subprocess
import sys


def main(mode, nudge, repo, work):
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    examples = os.path.join(repo, "examples/rules")
    golden_dir = os.path.join(repo, "tests/cli/graph")
    feedback = os.path.join(examples, "wf_first_purchase_feedback.rules.json")
    every = os.path.join(golden_dir, "every_step.rules.json")

    stats = os.path.join(work, "stats.txt")
    with open(stats, "w") as err:
        subprocess.run([nudge, "replay", "--rules", feedback, "--events",
                        os.path.join(examples, "wf_first_purchase_feedback.events.csv"),
                        "--stats"], stdout=subprocess.DEVNULL, stderr=err, check=True)

    cases = {
        "feedback.mmd": [feedback, "--format", "mermaid"],
        "feedback.dot": [feedback, "--format", "dot"],
        "feedback_stats.mmd": [feedback, "--format", "mermaid", "--stats", stats],
        "feedback_stats.dot": [feedback, "--format", "dot", "--stats", stats],
        "every_step.mmd": [every, "--format", "mermaid"],
        "every_step.dot": [every, "--format", "dot"],
        "every_step_onboarding.dot": [every, "--format", "dot", "--workflow", "onboarding"],
    }
    drawn = {}
    for name, args in cases.items():
        outs = [subprocess.run([nudge, "graph", *args], capture_output=True, text=True,
                               check=True).stdout for _ in range(2)]
        assert outs[0] == outs[1], f"{name}: two runs differ"
        drawn[name] = outs[0]

    if mode == "golden":
        failed = False
        for name, text in drawn.items():
            if name == "every_step_onboarding.dot":
                continue  # checked below against every_step.dot
            golden = open(os.path.join(golden_dir, name)).read()
            if text != golden:
                failed = True
                with open(os.path.join(work, name), "w") as f:
                    f.write(text)
                print(f"FAIL: {name} differs from tests/cli/graph/{name} "
                      f"(the new one: {os.path.join(work, name)})")
        # --workflow draws that workflow alone, as it is drawn among the others (numbered 0).
        both = drawn["every_step.dot"]
        header = both[:both.index("  subgraph cluster_w0 {")]
        second = both[both.index("  subgraph cluster_w1 {"):-len("}\n")]
        expected = header + second.replace("cluster_w1", "cluster_w0").replace("w1_", "w0_") + "}\n"
        if drawn["every_step_onboarding.dot"] != expected:
            failed = True
            print("FAIL: --workflow onboarding is not the onboarding part of the whole diagram")
        if failed:
            return 1
        print(f"nudge graph: {len(drawn)} diagrams equal their golden files")
        return 0

    if shutil.which("dot") is None:
        print("graph.py: Graphviz's dot is not installed (scripts/setup.sh); skipped")
        return 77
    for name, text in drawn.items():
        if not name.endswith(".dot"):
            continue
        r = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr == "", f"{name}: dot says {r.stderr}"
        assert "<svg" in r.stdout and "</svg>" in r.stdout, name
        print(f"{name}: rendered, {len(r.stdout)} bytes of SVG")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
