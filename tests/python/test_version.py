"""nudge.__version__ is CMake's project version (nudge/version.hpp), as `nudge --version` says."""
import os
import pathlib
import re
import subprocess

import pytest

import nudge


def project_version():
    text = (pathlib.Path(__file__).resolve().parents[2] / "CMakeLists.txt").read_text()
    return re.search(r"project\(nudge VERSION ([0-9]+\.[0-9]+\.[0-9]+)", text).group(1)


def test_version_is_the_cmake_project_version():
    assert nudge.__version__ == project_version()
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", nudge.__version__)


def test_version_is_what_the_cli_prints():
    cli = os.environ.get("NUDGE_CLI")
    if not cli:
        pytest.skip("NUDGE_CLI is not set (the CLI is not built)")
    out = subprocess.run([cli, "--version"], capture_output=True, text=True, check=True)
    assert out.stdout == f"nudge {nudge.__version__}\n"
