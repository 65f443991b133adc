"""``floorsight bench`` at a tiny size: every field is there and the runs did what they claim.

No timing assertions: the figures depend on the machine; the test checks the measurement ran
(the same windows end to end as in the compute limit, alerts seen by the latency run, a soak
sample per simulated hour) and that the docs page is written from the result.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from floorsight.bench import (
    CHECKS,
    LIMITS,
    SIZES,
    kernel_per_million,
    serial_floor,
    write_docs_page,
)

FIELDS = {
    "readings_per_s",
    "readings_per_s_2_workers",
    "readings_per_cpu_s",
    "readings_per_cpu_s_2_workers",
    "limit_readings_per_s",
    "limit_slowest",
    *(f"limit_{name}_readings_per_s" for name in LIMITS),
    "latency_p50_ms",
    "latency_p99_ms",
    "latency_p99_beyond_window_ms",
    "latency_alerts",
    "latency_load_readings_per_s",
    "peak_rss_mb",
    "peak_rss_mb_2_workers",
    "soak_hours",
    "soak_rss_mb_start",
    "soak_rss_mb_end",
    "soak_rss_mb_max",
    "soak_rss_mb_per_hour",
    "ratio_to_limit",
    "limit_readings_per_cpu_s",
    "limit_slowest_cpu",
    "ratio_to_limit_cpu",
    "limits_readings_per_cpu_s",
    "scaling_2_workers",
    "serial_floor_ratio",
    "serial_floor_ratio_cpu",
    "serial_floor_ratio_with_checks",
    "serial_floor_ratio_with_checks_cpu",
    "scaling_2_workers_cpu",
    "scaling_2_workers_runs",
    "scaling_2_workers_running",
    "readings_per_s_2_workers_one_file",
    "serial_floor_us_per_reading",
    "us_per_reading_1_worker",
    "kernel_per_million_readings",
    "readings",
    "fresh_databases",
    "feature_rows",
    "settings",
    "machine",
    "load_average",
    "seconds",
}


def test_kernel_figures_are_per_million_readings_of_the_same_runs() -> None:
    stages = {
        name: {"sys_s": 0.1, "minor_faults": 1000 * (i + 1)}
        for i, name in enumerate((*LIMITS, CHECKS))
    }
    figures = kernel_per_million(stages, {"sys_s": 1.0, "minor_faults": 30_000}, 2_000_000)
    assert figures["1_worker"] == {"sys_ms": 500.0, "minor_faults": 15_000}
    assert figures["stages"]["engine"] == {"sys_ms": 50.0, "minor_faults": 500}
    assert figures["stages_added_up"] == {"sys_ms": 250.0, "minor_faults": 7_500}


def test_serial_floor_adds_up_the_stages_and_divides_by_the_pipeline() -> None:
    # 1 M readings: the stages took 0.1 + 0.2 + 0.3 + 0.2 s alone, the pipeline 1.0 s
    limits = {
        name: {"seconds": s, "cpu_s": 2 * s}
        for name, s in zip(LIMITS, (0.1, 0.2, 0.3, 0.2), strict=True)
    }
    floor = serial_floor(limits, {"seconds": 1.0, "cpu_s": 1.6}, 1_000_000)
    assert floor["serial_floor_us_per_reading"] == pytest.approx(0.8)
    assert floor["serial_floor_ratio"] == pytest.approx(0.8)
    assert floor["serial_floor_ratio_cpu"] == pytest.approx(1.0)  # 1.6 CPU s of stages / 1.6
    assert floor["serial_floor_stages_us_per_reading"]["models"] == pytest.approx(0.3)
    # validation and the duplicate gate (0.1 s alone) as a fifth stage: 0.9 of the pipeline
    limits[CHECKS] = {"seconds": 0.1, "cpu_s": 0.2}
    checked = serial_floor(limits, {"seconds": 1.0, "cpu_s": 1.6}, 1_000_000, (*LIMITS, CHECKS))
    assert checked["serial_floor_ratio"] == pytest.approx(0.9)
    assert checked["serial_floor_stages_us_per_reading"][CHECKS] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def result() -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "floorsight.cli", "bench", "--size", "tiny"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.e2e
def test_tiny_bench_prints_every_field(result) -> None:
    assert not FIELDS - set(result), f"missing: {FIELDS - set(result)}"
    tiny = SIZES["tiny"]
    assert result["readings"] == tiny.readings
    for key in ("readings_per_s", "readings_per_s_2_workers", "readings_per_cpu_s", "peak_rss_mb"):
        assert result[key] > 0
    limits = {name: result[f"limit_{name}_readings_per_s"] for name in LIMITS}
    assert result["limit_slowest"] == min(limits, key=limits.__getitem__)
    assert result["limit_readings_per_s"] == min(limits.values())
    assert result["ratio_to_limit"]["limit_readings_per_s"] == 1.0
    assert set(result["limits_readings_per_cpu_s"]) == set(LIMITS)
    assert result["limit_slowest_cpu"] in LIMITS
    # the pipeline and the compute limit computed the same windows from the same data
    rows = result["feature_rows"]
    assert rows["end_to_end"] == rows["compute_limit"] > 0
    # the cluster wrote a per-process store, and its views hold the same windows
    assert rows["cluster"] == rows["end_to_end"]
    assert result["serial_floor_ratio_with_checks"] > result["serial_floor_ratio"]
    # the paced run saw alerts on the faulty machines, and their readings waited at least the
    # allowed lateness after their window (a latency below that would be a measuring error)
    assert result["latency_alerts"] >= 1
    assert result["latency_p99_ms"] >= result["latency_p50_ms"] >= tiny.lateness_s * 1000
    assert result["soak_hours"] == tiny.soak_hours
    assert result["soak_rss_mb_max"] >= result["soak_rss_mb_end"] > 0
    assert result["machine"]["cores"] >= 1 and result["machine"]["cpu"]
    # the serial floor is the limits of the same run added up, over the one-worker pipeline
    stages = result["serial_floor_stages_us_per_reading"]
    assert set(stages) == set(LIMITS)
    assert result["serial_floor_us_per_reading"] == pytest.approx(sum(stages.values()), abs=1e-3)
    assert result["serial_floor_ratio"] == pytest.approx(
        result["serial_floor_us_per_reading"] / result["us_per_reading_1_worker"], abs=2e-3
    )
    # ... of the median pair of run and limits taken next to each other
    pairs = result["serial_floor_pairs"]
    assert len(pairs) == tiny.floor_pairs
    assert result["serial_floor_ratio_cpu"] in [pair["ratio_cpu"] for pair in pairs]
    # a cluster run next to every pair
    runs = result["scaling_2_workers_runs"]
    assert len(runs) == tiny.floor_pairs
    if tiny.floor_pairs == 1:  # the medians of one run each: that pair's ratios
        assert [
            result["scaling_2_workers"],
            result["scaling_2_workers_cpu"],
            result["scaling_2_workers_running"],
        ] == runs[0]
    assert 0 < result["start_up_s_1_worker"] < result["readings"] / result["readings_per_s"]
    # every pair's run, and each cluster process, started on an empty database
    assert result["fresh_databases"] is True
    # the kernel's share of the run and of each stage: reading files touches fresh pages
    kernel = result["kernel_per_million_readings"]
    assert set(kernel["stages"]) == {*LIMITS, CHECKS}
    assert kernel["1_worker"]["minor_faults"] > 0
    assert kernel["stages"]["engine"]["minor_faults"] > 0
    assert kernel["stages_added_up"]["minor_faults"] == sum(
        v["minor_faults"] for v in kernel["stages"].values()
    )


@pytest.mark.e2e
def test_docs_page_holds_the_table_the_machine_and_the_command(result, tmp_path) -> None:
    page = tmp_path / "performance.md"
    write_docs_page(result, "floorsight bench --size tiny --write-docs", page)
    text = page.read_text()
    assert "`floorsight bench --size tiny --write-docs`" in text
    assert result["machine"]["cpu"] in text
    assert f"{result['readings_per_s']:,} readings/s" in text
    assert "| measurement | value | ratio to the slowest limit |" in text
    assert f"{result['serial_floor_ratio']:.2f} / {result['serial_floor_ratio_cpu']:.2f}" in text
