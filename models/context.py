"""The ERP and CMMS tables the models read, as the lookups :class:`~floorsight.models.base.Context`
holds: spec limits by (product, characteristic), lab results and maintenance events by machine.
"""

from __future__ import annotations

import polars as pl

from floorsight.models.base import LabResult, Maintenance, SpecLimits


def spec_limits_dict(frame: pl.DataFrame) -> SpecLimits:
    """The ERP ``spec_limits`` table as a lookup."""
    return {
        (p, c): (lsl, target, usl)
        for p, c, lsl, target, usl in frame.select(
            "product", "characteristic", "lsl", "target", "usl"
        ).iter_rows()
    }


def lab_results_by_machine(frame: pl.DataFrame | None) -> dict[str, list[LabResult]]:
    """The ERP ``lab_results`` table by machine, each list ordered by ``available_at``."""
    out: dict[str, list[LabResult]] = {}
    if frame is None or frame.height == 0:
        return out
    cols = ("machine_id", "sample_id", "characteristic", "part_made_at", "available_at", "value")
    for machine_id, *rest in frame.sort("available_at").select(cols).iter_rows():
        out.setdefault(machine_id, []).append(LabResult(*rest))
    return out


def maintenance_events(log: pl.DataFrame | None) -> dict[str, list[Maintenance]]:
    """The ERP ``maintenance_log`` table by machine."""
    out: dict[str, list[Maintenance]] = {}
    if log is None or log.height == 0:
        return out
    for machine_id, kind, start, end in log.select(
        "machine_id", "kind", "start", "end"
    ).iter_rows():
        out.setdefault(machine_id, []).append(Maintenance(kind, start, end))
    return out
