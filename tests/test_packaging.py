"""The packaging metadata and the README as PyPI shows it."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

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
