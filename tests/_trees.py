"""Session fixtures for the golden containers and their rebuilt source trees.

Kept out of ``conftest.py`` on purpose: test modules import what they need
from here, so this module coexists with any conftest another suite adds.
"""

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

SHARED = Path(os.environ.get("CLFSLOAD_SHARED", Path(__file__).resolve().parents[2] / "shared"))
GOLDEN = SHARED / "golden"
MKTREES = GOLDEN / "mktrees.py"

#: golden folder -> (source tree name, preserve_hardlinks, compression on)
GOLDEN_RUNS: Dict[str, tuple] = {
    "basic": ("basic", False, True),
    "basic-nocompress": ("basic", False, False),
    "basic-preserve": ("basic", True, True),
    "hardlinks": ("hardlinks", False, True),
    "hardlinks-preserve": ("hardlinks", True, True),
    "bigdir": ("bigdir", False, True),
    "boundaries": ("boundaries", False, True),
    "special": ("special", False, True),
}


def golden_dir(name: str) -> Path:
    """The folder of one golden container (one file per blob)."""
    return GOLDEN / name


@pytest.fixture(scope="session")
def source_trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All golden source trees, rebuilt once per session by mktrees.py.

    The device nodes of 'special' need root; without it mktrees skips them
    and the comparison against the golden 'special' container fails.
    """
    dest = tmp_path_factory.mktemp("trees")
    subprocess.run([sys.executable, str(MKTREES), str(dest)], check=True, capture_output=True)
    return dest
