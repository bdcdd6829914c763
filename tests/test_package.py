"""What `import handbook` does to the process: OpenMP threads sleep while they wait, unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def policy_after_import(policy: str | None) -> str:
    """OMP_WAIT_POLICY in a fresh interpreter after `import handbook`, started with `policy` (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy is not None:
        env["OMP_WAIT_POLICY"] = policy
    code = "import os, handbook; print(os.environ.get('OMP_WAIT_POLICY', '<unset>'))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("before", "after"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE"), ("passive", "passive")]
)
def test_import_sets_passive_openmp_unless_user_chose(before: str | None, after: str) -> None:
    assert policy_after_import(before) == after
