#!/usr/bin/env python3
"""One version everywhere: project(nudge VERSION x.y.z) in CMakeLists.txt, the generated
nudge/version.hpp, `nudge --version`, the CMake package version file and, when the module is
built, Python's nudge.__version__.

    version_agrees.py NUDGE REPO BUILD_DIR
"""
import os
import re
import subprocess
import sys


def main(nudge, repo, build):
    failures = []
    text = open(os.path.join(repo, "CMakeLists.txt"), encoding="utf-8").read()
    m = re.search(r"project\(nudge VERSION ([0-9]+)\.([0-9]+)\.([0-9]+)", text)
    if m is None:
        print("FAIL: no project(nudge VERSION x.y.z) in CMakeLists.txt")
        return 1
    version = ".".join(m.groups())
    seen = {"CMakeLists.txt": version}

    header = open(os.path.join(build, "include/nudge/version.hpp"), encoding="utf-8").read()
    macros = dict(re.findall(r"#define (NUDGE_VERSION_\w+) (\S+)", header))
    parts = [macros.get(f"NUDGE_VERSION_{p}") for p in ("MAJOR", "MINOR", "PATCH")]
    seen["version.hpp MAJOR.MINOR.PATCH"] = ".".join(str(p) for p in parts)
    seen["version.hpp NUDGE_VERSION_STRING"] = macros.get("NUDGE_VERSION_STRING", "").strip('"')

    out = subprocess.run([nudge, "--version"], capture_output=True, text=True)
    if out.returncode != 0:
        failures.append(f"nudge --version exited with {out.returncode}")
    seen["nudge --version"] = out.stdout.strip().removeprefix("nudge ")

    config = os.path.join(build, "nudgeConfigVersion.cmake")
    if os.path.exists(config):
        cm = re.search(r'set\(PACKAGE_VERSION "([^"]*)"\)', open(config, encoding="utf-8").read())
        seen["nudgeConfigVersion.cmake"] = cm.group(1) if cm else "(none)"

    if os.path.isdir(os.path.join(build, "bindings/python/nudge")) and any(
            f.startswith("_core") for f in os.listdir(os.path.join(build, "bindings/python/nudge"))):
        py = subprocess.run(
            [sys.executable, "-c", "import nudge; print(nudge.__version__)"], capture_output=True,
            text=True, env=dict(os.environ, PYTHONPATH=os.path.join(build, "bindings/python")))
        seen["nudge.__version__"] = py.stdout.strip() if py.returncode == 0 else py.stderr.strip()

    for where, v in seen.items():
        print(f"{where}: {v}")
        if v != version:
            failures.append(f"{where} says {v!r}, CMakeLists.txt {version!r}")
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print(f"version {version} agrees in {len(seen)} places")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
