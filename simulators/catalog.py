"""The plant's master data: machine types, their sensors, and products with recipes and specs.

Two machine types: CNC machining centres (a bore is cut; an in-line gauge measures its
diameter) and injection-moulding machines (a part is moulded; an in-line scale weighs it). A
product runs on one machine type; its recipe holds the setpoint of every sensor and its cycle
time, and its spec limits (LSL, target, USL) apply to the type's quality characteristic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl


@dataclass(frozen=True, slots=True)
class Sensor:
    """A sensor of a machine type: unit, nominal value per product, noise and slow wander.

    ``rate_hz`` (None: the plant's sample rate) sets how often it is published. A ``per_cycle``
    sensor holds the value of the last completed machine cycle (cycle time, part weight), so it
    changes once per part however often it is sampled.
    """

    name: str
    unit: str
    nominal: dict[str, float]
    noise: float
    wander: float = 0.0
    wander_period_s: float = 1800.0
    rate_hz: float | None = None
    per_cycle: bool = False


@dataclass(frozen=True, slots=True)
class Product:
    """A product (ERP material master): the machine type it runs on, cycle time and specs."""

    product: str
    description: str
    machine_type: str
    cycle_time_s: float
    specs: dict[str, tuple[float, float, float]]  # characteristic -> (lsl, target, usl)


@dataclass(frozen=True, slots=True)
class MachineType:
    """A kind of machine: its sensors, the quality characteristic it makes, how it fails."""

    name: str
    sensors: tuple[Sensor, ...]
    quality: str
    #: sensor -> additive effect at full strength, per fault kind (see simulators.faults)
    fault_effects: dict[str, dict[str, float]] = field(default_factory=dict)

    def sensor(self, name: str) -> Sensor:
        return next(s for s in self.sensors if s.name == name)


PRODUCTS: tuple[Product, ...] = (
    Product(
        "P-100", "Bracket, bore 25 mm", "cnc", 40.0, {"bore_diameter_mm": (24.980, 25.000, 25.020)}
    ),
    Product(
        "P-200", "Housing, bore 32 mm", "cnc", 55.0, {"bore_diameter_mm": (31.975, 32.000, 32.025)}
    ),
    Product(
        "P-300",
        "Cover, PA6, 48 g",
        "injection_moulding",
        28.0,
        {"part_weight_g": (47.4, 48.0, 48.6)},
    ),
    Product(
        "P-400",
        "Housing, PP, 62 g",
        "injection_moulding",
        34.0,
        {"part_weight_g": (61.3, 62.0, 62.7)},
    ),
)

CNC_SENSORS: tuple[Sensor, ...] = (
    Sensor("spindle_temp_c", "degC", {"P-100": 42.0, "P-200": 46.0}, 0.25, 0.3, 7200.0),
    Sensor("vibration_mm_s", "mm/s", {"P-100": 1.8, "P-200": 2.1}, 0.08, 0.02, 5400.0),
    Sensor("spindle_current_a", "A", {"P-100": 11.5, "P-200": 13.5}, 0.15, 0.05, 3600.0),
    Sensor("bore_diameter_mm", "mm", {"P-100": 25.000, "P-200": 32.000}, 0.003, 0.0005, 3600.0),
)

MOULDING_SENSORS: tuple[Sensor, ...] = (
    Sensor("barrel_temp_c", "degC", {"P-300": 265.0, "P-400": 225.0}, 0.6, 0.8, 7200.0),
    Sensor("mould_temp_c", "degC", {"P-300": 80.0, "P-400": 45.0}, 0.3, 0.4, 5400.0),
    Sensor("injection_pressure_bar", "bar", {"P-300": 900.0, "P-400": 780.0}, 6.0, 3.0, 3600.0),
    Sensor("cooling_flow_l_min", "l/min", {"P-300": 14.0, "P-400": 16.0}, 0.15, 0.1, 3600.0),
    Sensor("motor_current_a", "A", {"P-300": 31.0, "P-400": 27.0}, 0.4, 0.2, 3600.0),
    Sensor("vibration_mm_s", "mm/s", {"P-300": 1.2, "P-400": 1.1}, 0.06, 0.02, 5400.0),
    Sensor("cycle_time_s", "s", {"P-300": 28.0, "P-400": 34.0}, 0.15, 0.05, 3600.0, 1.0, True),
    Sensor("part_weight_g", "g", {"P-300": 48.0, "P-400": 62.0}, 0.09, 0.02, 3600.0, 1.0, True),
)

# Effects at full strength. Bearing wear grows over its duration (slowly, then faster), tool wear
# grows linearly, process upsets and bad lots shift at once (see simulators.faults).
CNC = MachineType(
    "cnc",
    CNC_SENSORS,
    "bore_diameter_mm",
    {
        "bearing_wear": {"vibration_mm_s": 2.5, "spindle_temp_c": 4.0},
        "process_upset": {"spindle_current_a": 1.2, "bore_diameter_mm": 0.012},
        "tool_wear": {"bore_diameter_mm": 0.03, "spindle_current_a": 0.8},
        "bad_lot": {"bore_diameter_mm": 0.012, "spindle_current_a": 0.6},
    },
)
INJECTION_MOULDING = MachineType(
    "injection_moulding",
    MOULDING_SENSORS,
    "part_weight_g",
    {
        "bearing_wear": {"vibration_mm_s": 2.0, "motor_current_a": 3.0},
        "process_upset": {"injection_pressure_bar": 60.0, "part_weight_g": 0.45},
        "tool_wear": {"part_weight_g": 0.9, "cycle_time_s": 1.5},
        "bad_lot": {"part_weight_g": -0.45, "injection_pressure_bar": 45.0},
    },
)
MACHINE_TYPES: dict[str, MachineType] = {t.name: t for t in (CNC, INJECTION_MOULDING)}


def products_for(machine_type: str) -> tuple[Product, ...]:
    return tuple(p for p in PRODUCTS if p.machine_type == machine_type)


def product(name: str) -> Product:
    return next(p for p in PRODUCTS if p.product == name)


def products_frame() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "product": p.product,
                "description": p.description,
                "machine_type": p.machine_type,
                "cycle_time_s": p.cycle_time_s,
            }
            for p in PRODUCTS
        ]
    )


def recipes_frame() -> pl.DataFrame:
    """Setpoint of every sensor for every product (the recipe loaded at changeover)."""
    rows = [
        {
            "product": p.product,
            "parameter": s.name,
            "setpoint": s.nominal[p.product],
            "unit": s.unit,
        }
        for p in PRODUCTS
        for s in MACHINE_TYPES[p.machine_type].sensors
    ]
    return pl.DataFrame(rows)


def spec_limits_frame() -> pl.DataFrame:
    return pl.DataFrame(
        [
            {"product": p.product, "characteristic": c, "lsl": lsl, "target": tgt, "usl": usl}
            for p in PRODUCTS
            for c, (lsl, tgt, usl) in p.specs.items()
        ]
    )
