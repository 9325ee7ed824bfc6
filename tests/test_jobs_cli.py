"""``surveydm jobs ...`` and ``surveydm worker`` end to end (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from surveydm.cli.main import app
from surveydm.db.models.jobs import Job
from surveydm.orchestration import load_task_modules
from surveydm.orchestration.status import JobStatus as S

load_task_modules(["jobtasks"])


@pytest.fixture
def cli(db_url, tmp_path, monkeypatch):
    monkeypatch.setenv("SURVEYDM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SURVEYDM_DATABASE_URL", db_url)
    monkeypatch.setenv("SURVEYDM_LEASE_SECONDS", "5")
    monkeypatch.delenv("SURVEYDM_CONFIG", raising=False)
    from surveydm.cli import common

    monkeypatch.setattr(common.console, "width", 220)  # room for the tables
    runner = CliRunner()

    def run(*args: str, code: int = 0) -> str:
        res = runner.invoke(app, list(args))
        assert res.exit_code == code, res.output + repr(res.exception)
        return res.output

    return run


def test_submit_worker_list_show_stats(cli, registry, tmp_path):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(
        json.dumps(
            {
                "jobs": [
                    {"task": "t_bad", "name": "bad"},
                    {"task": "t_record", "name": "after", "after": ["bad"]},
                    {"task": "t_record", "name": "ok"},
                ]
            }
        )
    )
    out = cli(
        "jobs",
        "submit",
        "t_graph",
        "--config",
        str(cfg),
        "--name",
        "night-1",
        "--module",
        "jobtasks",
    )
    assert "submitted job 1" in out
    out = cli("worker", "--once", "--module", "jobtasks", "--poll", "0.05")
    assert "executed" in out
    with registry.session(write=False) as s:
        statuses = {j.name: j.status for j in s.scalars(select(Job))}
    assert statuses == {
        "night-1": S.DONE_PARTIAL,  # its epilog ran, part of its tree failed
        "bad": S.FAILED_QUALITY,
        "after": S.SKIPPED,
        "ok": S.DONE,
    }
    out = cli("jobs", "list", "--status", "failed_quality")
    assert "jobs (1 shown)" in out and "failed_qua" in out
    out = cli("jobs", "list", "--parent", "1", "--task", "t_record")
    assert "jobs (2 shown)" in out and "t_bad" not in out
    out = cli("jobs", "list", "--roots", "--since", "2000-01-01")
    assert "jobs (1 shown)" in out and "night-1" in out
    assert "jobs (0 shown)" in cli("jobs", "list", "--until", "2000-01-01")
    out = cli("jobs", "show", "1")
    for text in ("t_graph", "night-1", "configuration", "sub-jobs: 3 in tree", "QC red"):
        assert text in out, text
    assert "done_partial" in out and "attempts" in out and "ok" in out
    with registry.session(write=False) as s:
        bad_id = s.scalars(select(Job.id).where(Job.name == "bad")).one()
    out = cli("jobs", "show", str(bad_id))
    assert "noise" in out and "quality control" in out and "12.5" in out
    assert "quality" in out.split("attempts")[-1]  # the attempt table names its outcome
    out = cli("jobs", "stats")
    assert "t_bad" in out and "t_record" in out
    out = cli("jobs", "retry", "1")
    assert "re-queued 2 job(s)" in out
    out = cli("jobs", "abort", "1")
    assert "aborted" in out
    # a key names the work: a second job for it is refused with one line, exit 2
    key = ["--key", "obs_set=X", "--module", "jobtasks"]
    assert "submitted job" in cli("jobs", "submit", "t_record", *key)
    out = cli("jobs", "submit", "t_record", *key, code=2)
    assert "with key 'obs_set=X' exists already" in out
    with registry.session(write=False) as s:
        assert s.get(Job, 1).status == S.ABORTED


def test_cli_errors_are_one_line(cli):
    out = cli("jobs", "show", "424242", code=2)
    assert "no job with id 424242" in out
    out = cli("jobs", "submit", "no_such_task", code=2)
    assert "unknown task type" in out
    out = cli("jobs", "list", "--status", "bogus", code=2)
    assert "unknown status" in out
    out = cli("jobs", "list", "--since", "yesterday", code=2)
    assert "not an ISO date" in out
    out = cli("worker", "--executor", "dask", "--module", "jobtasks", code=2)
    assert "--scheduler" in out
