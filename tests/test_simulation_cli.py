"""``surveydm simulate``: progress, summary, and clear errors."""

from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from surveydm.cli.main import app

runner = CliRunner()


def _text(result) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_simulate_command_writes_obs_set_and_summary(tmp_path: Path) -> None:
    out = tmp_path / "buffer"
    truth = tmp_path / "elsewhere" / "truth"
    result = runner.invoke(
        app,
        [
            "simulate", "--instrument", "t80cam-mini", "--out", str(out), "--night",
            "2026-12-01", "--seed", "3", "--science", "1", "--bias", "1", "--flats", "1",
            "--trays", "r", "--test", "0", "--focus", "0", "--truth", str(truth),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load((out / "20261201_001" / "manifest.yaml").read_text())
    assert [f["kind"] for f in manifest["files"]] == ["bias", "flat", "science"]
    assert manifest["night"] == "2026-12-01" and manifest["instrument"] == "t80cam-mini"
    assert "20261201_001" in result.output and "total" in result.output
    assert str(truth) in result.output.replace("\n", "")
    assert "Traceback" not in result.output
    assert (truth / "refcat.fits").is_file() and (truth / "exposures.parquet").is_file()
    assert not list(out.rglob("*.parquet"))


def test_simulate_command_reports_bad_input_without_traceback(tmp_path: Path) -> None:
    out = tmp_path / "buffer"
    bad_tray = runner.invoke(app, ["simulate", "--out", str(out), "--trays", "Halpha"])
    assert bad_tray.exit_code == 2
    assert "no filter tray 'Halpha'" in _text(bad_tray) and "Traceback" not in _text(bad_tray)
    bad_inst = runner.invoke(app, ["simulate", "--instrument", "nocam", "--out", str(out)])
    assert bad_inst.exit_code == 2 and "unknown instrument" in _text(bad_inst)
    inside = runner.invoke(app, ["simulate", "--out", str(out), "--truth", str(out / "t")])
    assert inside.exit_code == 2 and "inside the observatory buffer" in _text(inside)
    bad_night = runner.invoke(app, ["simulate", "--out", str(out), "--night", "tomorrow"])
    assert bad_night.exit_code == 2 and "YYYY-MM-DD" in _text(bad_night)
    assert not out.exists() or not any(out.iterdir())
