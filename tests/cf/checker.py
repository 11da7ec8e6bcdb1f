"""The IOOS compliance-checker's CF checks, run on a file, high-priority findings only."""

from __future__ import annotations

from pathlib import Path

CF_VERSION = "cf:1.8"


def high_priority_findings(path: Path) -> list[str]:
    """Messages of the failed high-priority (weight 3) CF checks for ``path``.

    The checker uses the CF standard-name table it ships (no download: the files checked
    here carry no ``standard_name_vocabulary`` attribute that would ask for another).
    """
    from compliance_checker.runner import CheckSuite

    suite = CheckSuite()
    suite.load_all_available_checkers()
    ds = suite.load_dataset(str(path))
    try:
        results = suite.run_all(ds, [CF_VERSION], skip_checks=[])
    finally:
        ds.close()
    findings = []
    for name, (groups, errors) in results.items():
        if errors:
            findings.append(f"{name}: checker errors {errors}")
        for group in groups:
            if group.weight == 3 and group.value[0] < group.value[1]:
                findings.extend(f"{group.name}: {msg}" for msg in group.msgs)
    return findings
