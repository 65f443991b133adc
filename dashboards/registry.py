"""The MLflow model registry as the dashboard shows it: which version is each model's champion.

A champion is the model version carrying the alias ``champion`` (MLflow 3 aliases replace the
old stages); its training run's metrics come along. MLflow is imported only here and only when
the models page asks, so the other pages start fast.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

CHAMPION_ALIAS = "champion"

CHAMPION_SCHEMA: dict[str, pl.DataType] = {
    "registered_model": pl.String(),
    "version": pl.String(),
    "registered_at": pl.Datetime("us", "UTC"),
    "run_id": pl.String(),
    "metrics": pl.String(),
}


def champions(tracking_uri: str) -> pl.DataFrame:
    """Every registered model that has a champion: its version, run and the run's metrics."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    rows = []
    for model in client.search_registered_models():
        version = (model.aliases or {}).get(CHAMPION_ALIAS)
        if version is None:
            continue
        mv = client.get_model_version(model.name, str(version))
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        rows.append(
            {
                "registered_model": model.name,
                "version": str(mv.version),
                "registered_at": datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC),
                "run_id": mv.run_id or "",
                "metrics": ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())),
            }
        )
    return pl.DataFrame(rows, schema=CHAMPION_SCHEMA).sort("registered_model")
