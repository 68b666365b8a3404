"""OpenMP's wait policy: spin on an idle machine, sleep on a busy one, the user's choice wins."""

import pytest

from anxin import openmp


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(openmp, "_chosen", None)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    # The test process has torch loaded; pretend it has not, as in `anxin VERB` at start-up.
    monkeypatch.delitem(openmp.sys.modules, "torch", raising=False)
    return monkeypatch


def test_busy_machine_makes_idle_threads_sleep(fresh):
    fresh.setattr(openmp, "busy_cores", lambda: 1.6)
    assert "sleep" in openmp.choose_wait_policy()
    assert openmp.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"


def test_idle_machine_keeps_the_spinning_default(fresh):
    fresh.setattr(openmp, "busy_cores", lambda: 0.1)
    assert "spin" in openmp.choose_wait_policy()
    assert "OMP_WAIT_POLICY" not in openmp.os.environ


def test_the_users_policy_wins_and_the_choice_is_made_once(fresh):
    fresh.setenv("OMP_WAIT_POLICY", "ACTIVE")
    fresh.setattr(openmp, "busy_cores", lambda: pytest.fail("must not sample"))
    first = openmp.choose_wait_policy()
    assert "ACTIVE" in first and openmp.choose_wait_policy() is first


def test_busy_cores_reads_the_machine():
    busy = openmp.busy_cores(0.05)
    assert busy is None or 0 <= busy <= openmp.os.cpu_count()
