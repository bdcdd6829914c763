"""What `import handbook` does to the process: OpenMP threads sleep while they wait, unless the user
chose, and every torch thread computes denormal floats as zero."""

from __future__ import annotations

import os
import platform
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


# A product whose exact value, 1e-39, is a float32 denormal, on 2 torch threads: the share of the
# elements left nonzero.
_DENORMAL_SHARE = """
import torch
{imports}
torch.set_num_threads(2)
product = torch.full((1_000_000,), 1e-20) * 1e-19
print((product != 0).float().mean().item())
"""


def denormal_share(imports: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _DENORMAL_SHARE.format(imports=imports)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(done.stdout)


def test_import_flushes_denormals_on_every_torch_thread() -> None:
    if platform.machine().lower() not in ("x86_64", "amd64", "aarch64", "arm64"):
        pytest.skip("torch flushes denormals on x86 and ARM64 CPUs only")
    assert denormal_share("") == 1.0  # torch alone keeps them
    assert denormal_share("import handbook") == 0.0  # both threads flush, not only the main one
