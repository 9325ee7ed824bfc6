"""Accuracy of memba and association against the simulator's truth (issue 14).

Simulates a multi-night survey (``surveydm simulate --nights``), runs the nightly pipeline on
every night, loads the deep reference catalog, runs memba and the association, and prints per
band the median co-added flux bias of stars with S/N > 50 (target |bias| <= 0.5 %), the pull
width (target 1.0 +- 0.1) and the median chi2 per degree of freedom, the rms of measured/true
star fluxes over the narrow bands (target <= 1 %), and association purity / completeness of
isolated objects with S/N > 10 (targets >= 99.5 %). With ``--home`` it only measures an
installation where all of that already ran (and ``--truth`` names its truth directory).

    python benchmarks/accuracy_memba.py [--nights 2026-11-20..2026-11-21] [--trays NB455-525]
        [--repeats 1] [--processes 2] [--home DIR --truth DIR [--production ID]] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from surveydm.config import Settings
from surveydm.db import Registry
from surveydm.db.migrate import upgrade
from surveydm.db.models.production import Production
from surveydm.pipelines.memba.accuracy import association_accuracy, memba_accuracy


class _TreeCpu:
    """CPU seconds (user + system) of this process and all its descendants, from /proc polled
    every second by a thread (the pilots are children of a multiprocessing fork server, so
    getrusage(RUSAGE_CHILDREN) does not see them; a process that lives less than a second
    between polls is missed)."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.lock = threading.Lock()
        self.tick = os.sysconf("SC_CLK_TCK")
        threading.Thread(target=self._loop, daemon=True).start()

    def _loop(self) -> None:
        while True:
            self.poll()
            time.sleep(1.0)

    def poll(self) -> float:
        children: dict[int, list[tuple[int, float]]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / self.tick
            children.setdefault(int(fields[1]), []).append((int(name), cpu))
        me = os.getpid()
        own = resource.getrusage(resource.RUSAGE_SELF)
        found, stack = {me: own.ru_utime + own.ru_stime}, [me]
        while stack:
            for pid, cpu in children.get(stack.pop(), []):
                found[pid] = cpu
                stack.append(pid)
        with self.lock:
            for pid, cpu in found.items():
                self.seen[pid] = max(self.seen.get(pid, 0.0), cpu)
            return sum(self.seen.values())


_CPU: _TreeCpu | None = None


def _cpu_seconds() -> float:
    global _CPU  # noqa: PLW0603
    if _CPU is None:
        _CPU = _TreeCpu()
    return _CPU.poll()


@contextmanager
def _timed(label: str, totals: dict[str, tuple[float, float]]) -> Iterator[None]:
    """Record the wall and CPU seconds of a step (CPU / 2: its wall time on an idle 2-core
    machine if both cores were kept busy, whatever the load while it ran)."""
    wall, cpu = time.perf_counter(), _cpu_seconds()
    yield
    totals[label] = (time.perf_counter() - wall, _cpu_seconds() - cpu)
    w, c = totals[label]
    print(f"  {label}: wall {w:.0f} s, CPU {c:.0f} s, load {os.getloadavg()[0]:.1f}", flush=True)


def _run_all(args: argparse.Namespace, root: Path) -> tuple[Settings, Path]:
    from surveydm.pipelines.association import run_association
    from surveydm.pipelines.memba import run_memba
    from surveydm.pipelines.memba.refcat import load_deep_refcat
    from surveydm.pipelines.night import run_night
    from surveydm.pipelines.refcat import load_refcat
    from surveydm.simulation.survey import parse_nights, simulate_survey

    steps: dict[str, tuple[float, float]] = {}
    with _timed("simulate", steps):
        survey = simulate_survey("paucam-mini", root / "buffer", parse_nights(args.nights),
                                 trays=args.trays.split(","), repeats=args.repeats)  # fmt: skip
    print(f"simulate: {len(survey.nights)} nights")
    settings = Settings(home=root / "home")
    with _timed("load catalogs", steps):
        upgrade(settings.resolved_database_url)
        reg = Registry(settings.resolved_database_url)
        load_refcat(reg, survey.truth_dir / "refcat.fits", "pixelsim")
        load_deep_refcat(reg, survey.deep_refcat, "deep")
        reg.dispose()
    with _timed("nightly", steps):
        night = run_night(settings, root / "buffer", processes=args.processes, settle_seconds=0)
    print(f"nightly: {night.ccds_reduced} CCDs")
    with _timed("memba", steps):
        m = run_memba(settings, refcat="deep", processes=args.processes)
    print(f"memba: {m.images} images, {m.forced_rows} forced rows, {m.coadd_rows} co-adds")
    with _timed("association", steps):
        a = run_association(settings, processes=args.processes)
    print(f"association: {a.partitions} partitions, {a.objects} objects, {a.measures} detections")
    wall = sum(w for w, _ in steps.values())
    cpu = sum(c for _, c in steps.values())
    print(f"demo total: wall {wall:.0f} s, CPU {cpu:.0f} s = {cpu / 2 / 60:.1f} min on an idle "
          f"2-core machine (target <= ~10 min)")  # fmt: skip
    return settings, survey.truth_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", default="2026-11-20..2026-11-21")
    parser.add_argument("--trays", default="NB455-525")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--home", type=Path, help="measure this installation only")
    parser.add_argument("--truth", type=Path, help="its truth directory (with --home)")
    parser.add_argument("--keep", type=Path, help="work in this new directory and keep it")
    parser.add_argument("--production", type=int, help="memba production id (default: newest)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.home:
            settings, truth = Settings(home=args.home), args.truth
        else:
            settings, truth = _run_all(args, args.keep or Path(tmp))
        reg = Registry(settings.resolved_database_url)
        with reg.session(write=False) as s:
            ids = {p.pipeline: p.id for p in s.scalars(select(Production).order_by(Production.id))}
        memba_id = args.production or ids["memba"]
        print(f"memba production {memba_id}")
        acc = memba_accuracy(reg, truth, memba_id)
        print(f"{'band':8s} {'stars':>5s} {'bias %':>8s} {'pull w':>7s} {'chi2/dof':>8s} "
              f"{'chi2/median(dof)':>16s}")  # fmt: skip
        for b in acc.bands:
            print(f"{b.band:8s} {b.n_stars:5d} {100 * b.bias:8.2f} {b.pull_width:7.2f} "
                  f"{b.chi2_dof:8.2f} {b.chi2_norm:16.2f}")  # fmt: skip
        print(f"all bands: pull width {acc.pull_width:.2f} (target 1.0 +- 0.1)")
        print(f"narrow-band star co-adds with S/N > 50 ({acc.n_narrow}): rms of measured/true "
              f"{100 * acc.narrow_rms:.2f} % (target <= 1 %), robust "
              f"{100 * acc.narrow_robust_rms:.2f} %; from the quoted errors "
              f"{100 * acc.narrow_noise_rms:.2f} %, excess over them "
              f"{100 * acc.narrow_excess_rms:.2f} %; S/N > 100: rms "
              f"{100 * acc.narrow_rms_snr100:.2f} %")  # fmt: skip
        if "association" in ids:
            assoc = association_accuracy(reg, truth, ids["association"])
            print(f"association (isolated, S/N > 10): {assoc.n_objects} objects, "
                  f"{assoc.n_detections} detections, purity {100 * assoc.purity:.2f} %, "
                  f"completeness {100 * assoc.completeness:.2f} % (targets >= 99.5 %)")  # fmt: skip
        reg.dispose()


if __name__ == "__main__":
    main()
