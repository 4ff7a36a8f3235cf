"""The load test's report folder and summary (loadtest/run.py), without running a load: any
--reports folder works, inside the repository or not, given relative or absolute; and its pure
outcome checks judge figures as they say."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loadtest.run import (
    ROOT,
    Admission,
    Check,
    Sales,
    check_bucket_ceiling,
    check_capacity,
    check_clients_saw,
    check_max_active,
    check_purchases,
    report,
    report_folder,
    shown,
)


def samples(count: int) -> list[dict[str, Any]]:
    return [
        {
            "t": float(i),
            "waiting": 10 - i,
            "admitted_total": i,
            "seats_sold": i,
            "seats_held": 1,
            "rate_per_min": 60,
        }
        for i in range(count)
    ]


def test_report_folder_relative_to_where_the_run_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = tmp_path / "here"
    start.mkdir()
    monkeypatch.chdir(start)
    assert report_folder(Path("../lt-reports"), "20250101-120000") == (
        tmp_path.resolve() / "lt-reports" / "20250101-120000"
    )
    assert report_folder(tmp_path / "abs", "s") == tmp_path.resolve() / "abs" / "s"


def test_shown_is_relative_inside_the_repository_and_absolute_outside(tmp_path: Path) -> None:
    assert shown(ROOT / "loadtest" / "reports" / "x" / "run.png") == "loadtest/reports/x/run.png"
    assert shown(tmp_path / "run.png") == str(tmp_path / "run.png")


@pytest.mark.parametrize("inside", [False, True])
def test_report_prints_the_checks_for_a_folder_anywhere(
    inside: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parent = ROOT / "loadtest" / "reports" if inside else tmp_path / "outside"
    out = report_folder(parent, f"unit-{tmp_path.name}")
    out.mkdir(parents=True)
    try:
        checks = [Check("seats sold <= capacity", True, "3 sold of 10"), Check("x", None, "info")]
        code = report(checks, samples(3), out, "unit")
        printed = capsys.readouterr().out
        assert code == 0
        assert "seats sold <= capacity  PASS    3 sold of 10" in printed
        plot_line = next(line for line in printed.splitlines() if line.startswith("plot"))
        where = f"loadtest/reports/{out.name}/run.png" if inside else str(out / "run.png")
        assert plot_line.split()[-1] == where
        assert (out / "run.png").stat().st_size > 0
        assert f"PASS: 0 of 1 checks failed; reports in {out}" in printed
        assert (out / "summary.txt").read_text().splitlines()[2].startswith("seats sold")
    finally:
        if inside:
            for f in out.iterdir():
                f.unlink()
            out.rmdir()


def test_report_fails_when_a_check_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checks = [Check("a", True, ""), Check("b", False, "broken")]
    assert report(checks, samples(1), tmp_path, "unit") == 1
    printed = capsys.readouterr().out
    assert "FAIL: 1 of 2 checks failed" in printed
    assert "plot" not in printed  # one sample: nothing to plot
    assert not (tmp_path / "run.png").exists()


def sales(capacity: int, seated: int, ga_cap: int, ga_sold: int, orders: int) -> Sales:
    lines = [{"order_id": f"o{i}", "seat_id": f"A-1-{i}"} for i in range(orders)]
    return Sales(capacity, {"GA": ga_cap}, lines, seated, {"GA": ga_sold})


@pytest.mark.parametrize(
    ("capacity", "seated", "ga_cap", "ga_sold", "ok"),
    [
        (10, 5, 5, 5, True),
        (10, 6, 5, 5, False),  # over the whole capacity
        (20, 5, 5, 6, False),  # over a standing section's capacity
        (10, 0, 5, 0, True),
    ],
)
def test_capacity_check(capacity: int, seated: int, ga_cap: int, ga_sold: int, ok: bool) -> None:
    check = check_capacity(sales(capacity, seated, ga_cap, ga_sold, 0))
    assert check.ok is ok
    assert check.figures.startswith(f"{seated + ga_sold} sold of {capacity} (seated {seated}")


def admission(admitted: int, elapsed_ms: int, max_active: int = 5) -> Admission:
    return Admission(
        rate=60,
        tick_ms=200,
        max_active=max_active,
        admitted_total=admitted,
        serving=admitted,
        elapsed_ms=elapsed_ms,
    )


def test_admission_checks() -> None:
    from server.core.rules import admission_ceiling

    ceiling = admission_ceiling(60, 200, 10_000)
    assert check_bucket_ceiling(admission(ceiling, 10_000)).ok is True
    assert check_bucket_ceiling(admission(ceiling + 1, 10_000)).ok is False
    assert check_max_active([{"active": 5}, {"active": 3}], admission(0, 0)).ok is True
    assert check_max_active([{"active": 6}], admission(0, 0)).ok is False
    assert check_clients_saw([{}, {}], admission(2, 0)).ok is True
    assert check_clients_saw([{}, {}, {}], admission(2, 0)).ok is False
    assert check_purchases(sales(10, 1, 0, 0, 1)).ok is True
    assert check_purchases(sales(10, 0, 0, 0, 0)).ok is False
