"""`registry demo`: the whole flow on a generated catalog, in its own scratch database."""

from __future__ import annotations

import json

from click.testing import CliRunner

from registry import Registry
from registry.cli import cli


def test_demo_runs_the_whole_flow_and_shows_meaningful_prefixes(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--items", "3000",
                                      "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    steps = [s["step"] for s in report["steps"]]
    assert steps == ["init", "add", "train", "freeze", "activate", "add", "assign", "get",
                     "lookup", "versions"]
    assert report["steps"][6]["result"]["assigned"] == 1500
    # items that share a level-1 code share a topic: the codes mean something
    assert report["level1_topic_purity"] > 0.8
    assert all(m["items"] > 0 and m["examples"] for m in report["meanings"])
    with Registry(report["database"]) as reg:
        (summary,) = reg.versions()
        assert (summary.version.state, summary.version.aliases, summary.items) == \
            ("frozen", ["active"], 4500)


def test_demo_text_says_where_its_database_is(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path), "--items", "2000"])
    assert result.exit_code == 0, result.output
    assert f"database sqlite:///{tmp_path}/demo.db" in result.output
    assert "$ registry assign" in result.output and "what the level-1 codes mean" in result.output
    assert CliRunner().invoke(cli, ["demo", "--items", "10"]).exit_code == 2
