"""The packaging metadata and the README as PyPI shows it."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def project_url() -> str:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    urls = dict(
        line.split(" = ", 1)
        for line in config["metadata"]["project_urls"].strip().splitlines()
    )
    return urls["Source"]


def test_readme_links_are_absolute_so_that_they_work_on_pypi() -> None:
    links = LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert links
    relative = [link for link in links if not re.match(r"https?://", link)]
    assert relative == []


def test_readme_links_into_the_project_name_files_that_exist() -> None:
    base = project_url()
    links = LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    ours = [link for link in links if link.startswith(base + "/")]
    assert len(ours) >= 10
    for link in ours:
        match = re.fullmatch(
            re.escape(base) + r"/(?:blob|raw|tree)/main/([^#]+)(?:#[\w-]+)?", link
        )
        assert match, link
        assert (ROOT / match.group(1)).exists(), link


def test_the_license_is_an_spdx_expression_without_license_classifiers() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    metadata = config["metadata"]
    assert metadata["license_expression"] == "MIT"
    assert "license" not in metadata
    assert "License ::" not in metadata["classifiers"]
    assert (ROOT / metadata["license_files"]).exists()


def test_the_sdist_template_takes_every_file_in_git() -> None:
    """MANIFEST.in names every tracked file outside the package (tests,
    scripts, docs), so the sdist can run its own tests."""
    filelist_module = pytest.importorskip("setuptools.command.egg_info")
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    files = filelist_module.FileList()
    files.allfiles = tracked
    for line in (ROOT / "MANIFEST.in").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            files.process_template_line(line)
    wanted = {
        path
        for path in tracked
        if not path.startswith("wspractice/") and path not in {".gitignore"}
    }
    assert wanted - set(files.files) == set()
