"""`registry demo`: the whole flow on the shipped Debian sample, in its own scratch database."""

from __future__ import annotations

import json

from click.testing import CliRunner

from registry import Registry
from registry.cli import cli


def test_demo_runs_the_whole_flow_on_real_packages(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--items", "600",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    steps = [s["step"] for s in report["steps"]]
    assert steps == ["init", "add", "train", "freeze", "activate", "add", "assign", "get",
                     "lookup", "versions"]
    assert report["steps"][1]["result"]["embedded"] == 600
    assert report["steps"][1]["command"] == "registry add catalog.jsonl --text '{key}: {title}'"
    assert report["steps"][6]["result"]["assigned"] == 500
    # the IDs were made from the texts alone, yet a level-1 code gathers packages of a section
    # far more often than chance (the largest of Debian's 58 sections holds ~11% of packages)
    assert report["level1_section_purity"] > 0.35
    assert all(m["items"] > 0 and len(m["examples"]) == 3 for m in report["meanings"])
    with Registry(report["database"]) as reg:
        (summary,) = reg.versions()
        assert (summary.version.state, summary.version.aliases, summary.items) == \
            ("frozen", ["active"], 1100)
        assert reg.items().counts == {"live": 1100, "removed": 0}


def test_demo_text_says_where_its_database_is(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path), "--items", "600"])
    assert result.exit_code == 0, result.output
    assert f"database sqlite:///{tmp_path}/demo.db" in result.output
    assert "$ registry assign" in result.output and "what the level-1 codes mean" in result.output
    small = CliRunner().invoke(cli, ["demo", "--items", "10"])
    assert small.exit_code == 1 and "--items: use between 600 and 3000 items" in small.output
