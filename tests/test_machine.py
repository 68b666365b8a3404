"""anxin.machine: the facts a result file records about where it ran."""

from anxin.machine import REPORTED_FLAGS, machine_facts


def test_machine_facts_name_the_cpu_its_flags_and_torch_only_when_asked():
    facts = machine_facts()
    assert facts["cpu"] and set(facts["cpu_flags"]) <= set(REPORTED_FLAGS)
    assert facts["torch"]  # the test environment has torch
    without = machine_facts(torch_too=False)  # for work that runs on numpy alone
    assert "torch" not in without and without["cpu_flags"] == facts["cpu_flags"]
