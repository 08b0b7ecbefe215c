"""Shared fixtures of the Python tests: the package from this repository's python/ folder (unless
PACKLM_TEST_INSTALLED=1 asks for the installed one), the library from PACKLM_LIB or build/."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
if os.environ.get("PACKLM_TEST_INSTALLED") != "1":
    sys.path.insert(0, os.path.join(ROOT, "python"))
DATA = os.path.join(ROOT, "tests", "data")
FIXTURES = ["tiny-dense", "tiny-moe", "tiny-vl"]
CLI = os.path.join(ROOT, "build", "packlm")


def fixture_dir(name):
    return os.path.join(DATA, name)


def read_inputs(name):
    with open(os.path.join(DATA, name, "inputs.txt")) as f:
        return [[int(x) for x in line.split()] for line in f if line.strip()]


def ref_logits(name):
    return np.load(os.path.join(DATA, name, "logits.npy"))


def run_cli(*args):
    """(exit status, stdout, stderr) of build/packlm."""
    p = subprocess.run([CLI, *args], capture_output=True, text=True, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def cli_error(stderr):
    """The message of the CLI's `packlm CMD: error: MSG` line."""
    for line in stderr.splitlines():
        if ": error: " in line:
            return line.split(": error: ", 1)[1]
    return stderr.strip()


@pytest.fixture(scope="session")
def packlm():
    import packlm as p
    return p


@pytest.fixture(scope="session")
def models(packlm):
    return {n: packlm.Model(fixture_dir(n), threads=2) for n in FIXTURES}


def load_json(path):
    with open(path) as f:
        return json.load(f)
