"""The TAP service behind a real HTTP server (uvicorn in a thread), on SQLite and PostgreSQL:
pyvo's ``TAPService`` runs sync and async queries, with and without an upload, unmodified;
STILTS ``taplint`` (Debian ``stilts``) reports no errors when it is installed."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import uvicorn
from astropy.table import Table

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.publish.web import create_app
from tapdata import CENTER, N_CLUSTER, N_FAR, fill_registry

pyvo = pytest.importorskip("pyvo")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tap_url(registry: Registry, settings: Settings) -> Iterator[str]:
    fill_registry(registry)
    app = create_app(settings, registry=registry)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/tap"
    server.should_exit = True
    thread.join(10)
    app.state.tap_jobs.close()


def test_pyvo_sync_async_and_upload(tap_url: str) -> None:
    service = pyvo.dal.TAPService(tap_url)
    cone = (
        "SELECT id, ra, dec FROM surveydm.detection WHERE 1 = CONTAINS(POINT('ICRS', ra, dec),"
        f" CIRCLE('ICRS', {CENTER[0]}, {CENTER[1]}, 30.0/3600))"
    )
    assert len(service.run_sync(cone).to_table()) == N_CLUSTER
    result = service.run_async("SELECT COUNT(*) AS n FROM surveydm.detection")
    assert int(result.to_table()["n"][0]) == N_CLUSTER + N_FAR
    # An uploaded table of positions cross-matched with the detections
    mine = Table({"name": ["near", "far"], "ra": [CENTER[0], 0.0], "dec": [CENTER[1], -30.0]})
    xmatch = (
        "SELECT u.name, COUNT(*) AS n FROM TAP_UPLOAD.mine AS u JOIN surveydm.detection AS d"
        " ON 1 = CONTAINS(POINT('ICRS', d.ra, d.dec), CIRCLE('ICRS', u.ra, u.dec, 0.01))"
        " GROUP BY u.name"
    )
    t = service.run_sync(xmatch, uploads={"mine": mine}).to_table()
    assert list(t["name"]) == ["near"] and int(t["n"][0]) == N_CLUSTER
    t = service.run_async(xmatch, uploads={"mine": mine}).to_table()
    assert int(t["n"][0]) == N_CLUSTER
    # Column metadata reaches the client
    tables = service.tables
    ra = tables["surveydm.detection"].columns[
        [c.name for c in tables["surveydm.detection"].columns].index("ra")
    ]
    assert ra.unit == "deg" and ra.ucd == "pos.eq.ra;meta.main"
    # A bad query raises pyvo's DALQueryError with the service's message
    with pytest.raises(pyvo.dal.DALQueryError, match="no column"):
        service.run_sync("SELECT nope FROM surveydm.detection")
    assert np.isfinite(
        service.run_sync("SELECT TOP 1 RAND() AS r FROM surveydm.detection").to_table()["r"][0]
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("stilts") is None, reason="STILTS (Debian stilts) not installed")
def test_taplint_reports_no_errors(tap_url: str) -> None:
    out = subprocess.run(
        ["stilts", "taplint", f"tapurl={tap_url}", "report=EWSF"],
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    totals = re.search(r"Totals: Errors: (\d+); Warnings: (\d+)", out)
    assert totals, out[-2000:]
    errors = [line for line in out.splitlines() if line.startswith("E-")]
    assert int(totals.group(1)) == 0, "\n".join(errors)
    # no warning either (docs/vo.md, Compliance)
    warnings = [line for line in out.splitlines() if line.startswith("W-")]
    assert int(totals.group(2)) == 0, "\n".join(warnings)
