"""Thread counts from the CPUs a process may really use (affinity, cgroup quota), and the passive wait policy."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.threads import available_cpus, cgroup_cpu_limit


def test_cgroup_quota_is_read_from_v2_and_v1_files(tmp_path):
    v2 = tmp_path / "cpu.max"
    v1_quota, v1_period = tmp_path / "quota", tmp_path / "period"
    missing = tmp_path / "missing"
    v2.write_text("150000 100000\n")
    assert cgroup_cpu_limit(v2, missing, missing) == 2  # 1.5 CPUs rounds up
    v2.write_text("max 100000\n")
    assert cgroup_cpu_limit(v2, missing, missing) is None
    v1_quota.write_text("50000\n")
    v1_period.write_text("100000\n")
    assert cgroup_cpu_limit(missing, v1_quota, v1_period) == 1
    v1_quota.write_text("-1\n")
    assert cgroup_cpu_limit(missing, v1_quota, v1_period) is None
    assert cgroup_cpu_limit(missing, missing, missing) is None


def test_available_cpus_follows_the_affinity_mask():
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))
    code = "from core.threads import available_cpus; print(available_cpus())"
    one_cpu = ["taskset", "-c", str(min(os.sched_getaffinity(0))), sys.executable, "-c", code]
    try:
        out = subprocess.run(one_cpu, capture_output=True, text=True, check=True, timeout=60).stdout
    except FileNotFoundError:
        pytest.skip("taskset is not installed")
    assert out.strip() == "1"


def _child(code: str, env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120, env={**clean, **env}
    )
    return done.stdout.strip()


def test_configure_threads_before_torch_sets_threads_and_passive_wait():
    code = (
        "from core.threads import configure_threads, available_cpus; s = configure_threads(); import torch, os; "
        "print(s.torch_threads == torch.get_num_threads() == available_cpus(), s.wait_policy, "
        "os.environ['OMP_WAIT_POLICY'], s.passive_in_effect)"
    )
    assert _child(code, {}) == "True PASSIVE PASSIVE True"


def test_configure_threads_after_torch_says_the_policy_came_too_late_and_keeps_the_users_choice():
    late = (
        "import torch; from core.threads import configure_threads; s = configure_threads(1); "
        "print(s.passive_in_effect, torch.get_num_threads())"
    )
    assert _child(late, {}) == "False 1"
    user = "from core.threads import configure_threads; s = configure_threads(); print(s.wait_policy)"
    assert _child(user, {"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_configure_threads_refuses_bad_counts(bad):
    from core.threads import configure_threads

    with pytest.raises(ValueError, match="threads must be a positive int"):
        configure_threads(bad)
