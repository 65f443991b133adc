"""Alert rules: turn a machine's stream of window scores into deduplicated alerts.

One open alert per machine and cause. An alert opens after ``open_after`` consecutive anomalous
windows (so one stray window raises nothing), is updated while the anomaly lasts, and clears
after ``clear_after`` consecutive normal windows (hysteresis). Its id is derived from machine,
cause and the first anomalous window, so replaying the same scores after a restart rewrites the
same alert instead of adding one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import polars as pl

from floorsight.alerts.tables import ALERTS
from floorsight.records import AlertStatus, Severity

ALERT_SCHEMA = ALERTS.polars_schema


@dataclass
class AlertTracker:
    """Alert state of one machine for one cause."""

    cause: str = "anomaly"
    #: how the reason names what was seen
    label: str = "process anomaly"
    open_after: int = 2
    clear_after: int = 3
    critical_after: int = 10
    _streak: list[dict] = field(default_factory=list)
    _normal: int = 0
    _open: dict | None = None

    def update(self, scores: pl.DataFrame) -> pl.DataFrame | None:
        """Feed score rows (one machine, any number of windows); returns alert rows to upsert."""
        changed = self.update_rows(scores.sort("window_start", maintain_order=True).to_dicts())
        return pl.DataFrame(changed, schema=ALERT_SCHEMA) if changed else None

    def update_rows(self, rows: list[dict]) -> list[dict]:
        """Like :meth:`update` for score rows as dicts already in time order."""
        changed: dict[str, dict] = {}
        for row in rows:
            alert = self._step(row)
            if alert is not None:
                changed[alert["alert_id"]] = dict(alert)
        return list(changed.values())

    def _step(self, row: dict) -> dict | None:
        if row["is_anomaly"]:
            self._normal = 0
            if self._open is not None:
                a = self._open
                a["last_seen"] = row["window_end"]
                a["windows"] += 1
                a["score"] = max(a["score"], row["score"])
                if a["windows"] >= self.critical_after:
                    a["severity"] = str(Severity.CRITICAL)
                return a
            self._streak.append(row)
            if len(self._streak) < self.open_after:
                return None
            first = self._streak[0]
            self._open = {
                "alert_id": alert_id(row["machine_id"], self.cause, first["window_start"]),
                "machine_id": row["machine_id"],
                "cause": self.cause,
                "severity": str(Severity.WARNING),
                "status": str(AlertStatus.OPEN),
                "first_seen": first["window_start"],
                "raised_at": row["window_end"],
                "last_seen": row["window_end"],
                "cleared_at": None,
                "score": max(r["score"] for r in self._streak),
                "windows": len(self._streak),
                "reason": (
                    f"{row['machine_id']}: {self.label} in {len(self._streak)} consecutive "
                    f"windows while running {row['work_order'] or 'no work order'}"
                    f" ({row['product'] or 'unknown product'}); strongest signals: "
                    f"{row['evidence']}"
                ),
                "evidence": row["evidence"],
                "work_order": row["work_order"],
                "product": row["product"],
                "material_lot": row["material_lot"],
            }
            self._streak = []
            return self._open
        self._streak = []
        if self._open is None:
            return None
        self._normal += 1
        if self._normal < self.clear_after:
            return None
        a = self._open
        a["cleared_at"] = row["window_end"]
        self._open = None
        self._normal = 0
        return a


def alert_id(machine_id: str, cause: str, first_seen: datetime) -> str:
    return f"{machine_id}:{cause}:{first_seen:%Y%m%dT%H%M%SZ}"
