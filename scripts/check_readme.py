#!/usr/bin/python3
"""Checks that README.md's C++ quick start is the code tests/readme_test.cpp compiles and runs.

The test holds the snippet between "// README begin" and "// README end", indented by two
spaces; README.md holds it in the ```cpp block that follows "<!-- tests/readme_test.cpp -->".
"""
import pathlib
import sys

root = pathlib.Path(__file__).resolve().parent.parent
test = (root / "tests/readme_test.cpp").read_text().splitlines()
readme = (root / "README.md").read_text().splitlines()

begin, end = test.index("  // README begin"), test.index("  // README end")
from_test = [line[2:] if line.startswith("  ") else line for line in test[begin + 1:end]]

marker = readme.index("<!-- tests/readme_test.cpp -->")
start = readme.index("```cpp", marker) + 1
from_readme = readme[start:readme.index("```", start)]

if from_test != from_readme:
    import difflib
    sys.stdout.writelines(difflib.unified_diff(
        [l + "\n" for l in from_readme], [l + "\n" for l in from_test],
        "README.md", "tests/readme_test.cpp"))
    print("readme: the quick start differs from tests/readme_test.cpp")
    sys.exit(1)
print(f"readme: quick start matches tests/readme_test.cpp ({len(from_test)} lines)")
