"""The optional dependency groups: the app brings no Google Cloud SDK, Vertex no Streamlit.

Offline and fast: each install's closure is walked through the metadata of the distributions
installed here (``make setup`` installs the whole lock, so these are the locked versions).
``make check-extras`` runs this file as a script: pip resolves each install against the package
index and the lock (``pip install --dry-run --report``) and the same bars are checked.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
GOOGLE_CLOUD = re.compile(r"^(google-cloud-.*|google-api-.*|gcsfs|prefect-gcp)$")
APP = re.compile(r"^(streamlit.*|aiortc|av)$")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(name: str, extras: frozenset[str]) -> list[Requirement]:
    """The requirements ``name[extras]`` brings, as declared (pyproject for this project)."""
    if _canonical(name) == "fingerspell":
        lines = list(PROJECT["dependencies"])
        for extra in extras:
            lines += PROJECT["optional-dependencies"][extra]
        return [Requirement(line) for line in lines]
    requirements = []
    for line in distribution(name).requires or []:
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": e}) for e in extras or {""}):
            requirements.append(requirement)
    return requirements


def closure(extras: frozenset[str]) -> set[str]:
    """Every distribution ``pip install fingerspell[extras]`` installs (names, canonical)."""
    seen: dict[str, frozenset[str]] = {}
    pending = [("fingerspell", extras)]
    while pending:
        name, wanted = pending.pop()
        key = _canonical(name)
        if key in seen and wanted <= seen[key]:
            continue
        seen[key] = seen.get(key, frozenset()) | wanted
        for requirement in _requirements(name, wanted):
            try:
                distribution(requirement.name)
            except PackageNotFoundError:
                if requirement.marker is None or requirement.marker.evaluate():
                    pytest.fail(f"{requirement} (needed by {name}) is not installed here")
                continue  # only for another platform or Python
            pending.append((requirement.name, frozenset(requirement.extras)))
    return set(seen) - {"fingerspell"}


def test_the_core_has_neither_the_app_nor_google_cloud():
    names = closure(frozenset())
    assert {"torch", "prefect", "mlflow", "ultralytics-opencv-headless"} <= names
    assert not {n for n in names if GOOGLE_CLOUD.match(n) or APP.match(n)}


def test_the_app_has_no_google_cloud_packages():
    names = closure(frozenset({"app"}))
    assert {"streamlit", "streamlit-webrtc"} <= names
    assert not {n for n in names if GOOGLE_CLOUD.match(n)}


def test_gcp_has_no_streamlit():
    names = closure(frozenset({"gcp"}))
    assert {"prefect-gcp", "gcsfs", "google-cloud-aiplatform"} <= names
    assert not {n for n in names if APP.match(n)}


def test_dev_is_everything():
    assert closure(frozenset({"app", "gcp"})) <= closure(frozenset({"dev"}))


def test_every_locked_release_is_what_the_groups_need():
    """constraints.txt locks the dev closure: nothing it needs is missing from the lock."""
    locked = {
        _canonical(line.split("==")[0])
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    # pip freeze, which wrote the lock, leaves out pip's own tools
    assert closure(frozenset({"dev"})) - {"pip", "setuptools", "wheel"} <= locked


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_requires_python_admits(version: str):
    from packaging.specifiers import SpecifierSet

    assert version in SpecifierSet(PROJECT["requires-python"])


def resolve_with_pip(extras: str) -> set[str]:
    """What ``pip install '.[extras]'`` would install here (a dry run against the lock)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        target = f"{REPO}[{extras}]" if extras else str(REPO)
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
                   "--quiet", "-c", str(REPO / "constraints.txt"), "--report", str(report),
                   target]  # fmt: skip
        subprocess.run(command, check=True)
        installs = json.loads(report.read_text())["install"]
    return {_canonical(item["metadata"]["name"]) for item in installs} - {"fingerspell"}


def main() -> int:
    """Check the bars against pip's own resolution; print what each install holds."""
    failures = 0
    for extras, banned in (("", (GOOGLE_CLOUD, APP)), ("app", (GOOGLE_CLOUD,)), ("gcp", (APP,))):
        names = resolve_with_pip(extras)
        found = sorted(name for name in names if any(p.match(name) for p in banned))
        label = f".[{extras}]" if extras else "."
        print(f"{label}: {len(names)} distributions; forbidden: {found or 'none'}")
        failures += bool(found)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
