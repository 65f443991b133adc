"""Sensor health: is the measurement itself wrong (stuck, missing, spiking)?

A sensor fault is not a process fault: the parts are fine, the number is not. Maintenance
needs to hear "replace the pressure transducer", not "process anomaly". Three checks per
sensor and window, each learned per product and sensor from the machine's own normal windows:

- **missing**: the machine is running (other sensors deliver full windows) but the sensor
  delivers none, or less than ``min_share`` of what it delivers in a full window;
- **stuck**: the sensor's value has not changed for longer than it ever did in normal
  operation (``stuck_factor`` times the longest normal run of unchanged windows, and at least
  ``stuck_min_windows``). Sensors that hold a value per machine cycle legitimately repeat for a
  few windows; the learned run covers that;
- **spikes**: the window's range (max - min) is more than ``spike_factor`` times the sensor's
  typical within-window standard deviation (learned from windows in which the value changed).
  Normal noise spans about 3 to 5 standard deviations in a window of 10 to 100 readings; an
  isolated spike of 10 or more stands out. A sensor that holds one value per machine cycle (no
  spread in most windows) is judged by its range against ``held_spike_factor`` times its usual
  change from one cycle to the next.

The score of a window is the largest of the three ratios (observed / limit), capped at 1;
``is_anomaly`` is a score of 1. Nothing is scored before ``grace_windows`` normal windows of
the product and sensor were learned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from floorsight.models.base import AlertRule, Context, MachineModel, ModelOutput, fading_factor
from floorsight.models.machine import Segment


@dataclass
class _SensorState:
    windows: int = 0
    changing: int = 0
    zero: int = 0
    typical_std: float = 0.0
    typical_range: float = 0.0
    full_n: int = 0
    last: float | None = None
    run: int = 0
    normal_max_run: int = 0


@dataclass
class SensorHealthModel(MachineModel):
    """Sensor health checks of one machine (model and alert cause ``sensor``). Its flagged
    windows are quarantined: the models after it learn nothing from a faulty measurement.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def window(i, temp_max):
    ...     start = t0 + timedelta(seconds=10 * i)
    ...     return {"machine_id": "M1", "sensor": "temp", "window_start": start,
    ...             "window_end": start + timedelta(seconds=10), "work_order": "WO-1",
    ...             "product": "P", "material_lot": "L", "n": 10, "mean": 40.0, "std": 1.0,
    ...             "min": 38.5, "max": temp_max, "last": 40.0 + (i % 7) / 10}
    >>> import polars as pl
    >>> model = SensorHealthModel(grace_windows=20)
    >>> normal = model.score(pl.DataFrame([window(i, 41.5) for i in range(30)]))
    >>> bool(normal["is_anomaly"].any())
    False
    >>> spiky = model.score(pl.DataFrame([window(30, 52.0)]))
    >>> spiky["is_anomaly"].to_list(), spiky["evidence"][0].split(":")[0]
    ([True], 'temp spikes')
    """

    name: ClassVar[str] = "sensor"
    alert: ClassVar[AlertRule] = AlertRule(label="sensor fault (the measurement, not the process)")
    quarantines: ClassVar[bool] = True

    grace_windows: int = 60
    min_share: float = 0.5
    stuck_factor: float = 2.0
    stuck_min_windows: int = 6
    spike_factor: float = 9.0
    held_spike_factor: float = 5.0
    half_life: float = 360.0
    _state: dict[tuple[str, str], _SensorState] = field(default_factory=dict)

    def _sensor(self, product: str, sensor: str) -> _SensorState:
        key = (product, sensor)
        if key not in self._state:
            self._state[key] = _SensorState()
        return self._state[key]

    def score_segments(self, segments: list[Segment], context: Context) -> ModelOutput:
        """One score row per segment, in time order."""
        rows = []
        alpha = fading_factor(self.half_life)
        #: product -> (sensors known when listed, its sensors): listed again when one is added
        sensors_of: dict[str, tuple[int, list[str]]] = {}
        for seg in segments:
            product = seg.product or "?"
            present = seg.rows
            # the machine is running when some sensor delivers a full window
            full = [
                s
                for s, r in present.items()
                if (st := self._state.get((product, s))) and st.full_n and r["n"] >= st.full_n
            ]
            findings: list[tuple[float, str]] = []
            if full:
                known, expected = sensors_of.get(product, (-1, []))
                if known != len(self._state):
                    expected = [s for (p, s) in self._state if p == product]
                    sensors_of[product] = (len(self._state), expected)
                for sensor in expected:
                    st = self._state[(product, sensor)]
                    n = present[sensor]["n"] if sensor in present else 0
                    if st.windows >= self.grace_windows and n < self.min_share * st.full_n:
                        findings.append(
                            (1.0, f"{sensor} missing: {n} of {st.full_n} readings in the window")
                        )
            for sensor, r in present.items():
                findings.extend(self._check(product, sensor, r, alpha))
            score = min(1.0, max((f[0] for f in findings), default=0.0))
            flagged = score >= 1.0
            evidence = "; ".join(f[1] for f in sorted(findings, key=lambda f: -f[0]) if f[0] >= 1)
            rows.append(seg.score_row(self.name, score, flagged, evidence))
        return ModelOutput(rows)

    def _check(self, product: str, sensor: str, r: dict, alpha: float) -> list[tuple[float, str]]:
        st = self._sensor(product, sensor)
        if r["last"] is not None and r["last"] == st.last and r["min"] == r["max"]:
            st.run += 1
        else:
            st.run = 0
        st.last = r["last"]
        if r["n"] < 2 or r["std"] is None:
            return []
        out: list[tuple[float, str]] = []
        warm = st.windows >= self.grace_windows
        spike = 0.0
        span = r["max"] - r["min"] if r["max"] is not None else 0.0
        held = st.windows and st.zero > 0.3 * st.windows
        if warm and held and st.typical_range > 0:
            # held per cycle: a window holds one or two values, so compare its range with the
            # usual change from one cycle to the next
            spike = span / (self.held_spike_factor * st.typical_range)
            # evidence is written only for findings that flag (score >= 1): formatting it for
            # every sensor of every window would cost more than the check
            out.append(
                (
                    spike,
                    f"{sensor} spikes: range {span:.4g} is {span / st.typical_range:.1f} x its "
                    f"usual cycle-to-cycle change {st.typical_range:.3g}"
                    if spike >= 1
                    else "",
                )
            )
        elif warm and st.typical_std > 0:
            spike = span / (self.spike_factor * st.typical_std)
            out.append(
                (
                    spike,
                    f"{sensor} spikes: range {span:.4g} is {span / st.typical_std:.1f} x its "
                    f"typical std {st.typical_std:.3g}"
                    if spike >= 1
                    else "",
                )
            )
        stuck_limit = max(self.stuck_min_windows, self.stuck_factor * st.normal_max_run)
        stuck = st.run / stuck_limit if warm else 0.0
        if stuck > 0:
            text = (
                f"{sensor} stuck at {r['last']:.6g} for {st.run + 1} windows" if stuck >= 1 else ""
            )
            out.append((stuck, text))
        if spike < 0.5 and stuck < 0.5:
            # learn only from windows that look normal: a fault must not teach its own level
            st.windows += 1
            st.zero += r["std"] == 0
            st.full_n = max(st.full_n, r["n"])
            if r["n"] >= 0.8 * st.full_n and r["std"] > 0:
                # windows where the value changed: a sensor held per machine cycle repeats one
                # value for several windows, and zeros would make any change look like a spike
                st.changing += 1
                a = max(1.0 / st.changing, alpha)
                st.typical_std += a * (r["std"] - st.typical_std)
                st.typical_range += a * (span - st.typical_range)
            st.normal_max_run = max(st.normal_max_run, st.run)
        return out
