"""Model lookups in MLflow: reachability, champion, versions, per-letter results, plots."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.servers import free_port

from tasks.registry.tracking import client_for
from ui.model_info import (
    ModelUnavailable,
    check_tracking,
    confusion_png,
    list_versions,
    per_letter,
    resolve,
)


def test_a_missing_sqlite_store_is_not_created(tmp_path: Path):
    db = tmp_path / "mlflow.db"
    with pytest.raises(ModelUnavailable) as caught:
        check_tracking(f"sqlite:///{db}")
    assert caught.value.kind == "no_models" and not db.exists()


def test_a_dead_server_is_reported_as_unreachable():
    port = free_port()  # nothing listens there
    with pytest.raises(ModelUnavailable) as caught:
        check_tracking(f"http://127.0.0.1:{port}", timeout=2)
    assert caught.value.kind == "unreachable" and str(port) in str(caught.value)


def test_champion_details_metrics_and_evaluation_artifacts(app_env: str, smoke_report):
    client = client_for(app_env)
    assert [(v.version, v.aliases) for v in list_versions(client)] == [
        ("2", ()),
        ("1", ("champion",)),
    ]
    details = resolve(client)
    assert (details.version, details.aliases, details.dataset_id) == ("1", ("champion",),
                                                                      "smoke-subset")  # fmt: skip
    assert details.uri == "models:/asl-detector/1" and details.trained_at is not None
    rows = details.metric_rows()
    assert [row["split"] for row in rows] == ["test"]
    assert rows[0]["top1"] == pytest.approx(smoke_report.top1_accuracy)
    assert rows[0]["map50"] == pytest.approx(smoke_report.map50)
    assert rows[0]["top1_low"] <= rows[0]["top1"] <= rows[0]["top1_high"]
    letters = per_letter(client, details.evaluate_run_id, "test")
    assert letters == smoke_report.per_letter_rows()
    assert per_letter(client, details.evaluate_run_id, "valid") == []
    png = confusion_png(client, details.evaluate_run_id, "test")
    assert png is not None and png.startswith(b"\x89PNG")


def test_unknown_versions_and_a_missing_champion(app_env: str):
    client = client_for(app_env)
    with pytest.raises(ModelUnavailable) as caught:
        resolve(client, "99")
    assert caught.value.kind == "no_version"
    with pytest.raises(ModelUnavailable) as caught:
        resolve(client, None, name="never-registered")
    assert caught.value.kind == "no_models"
    client.delete_registered_model_alias("asl-detector", "champion")
    try:
        with pytest.raises(ModelUnavailable) as caught:
            resolve(client)
        assert caught.value.kind == "no_champion"
    finally:
        client.set_registered_model_alias("asl-detector", "champion", "1")


def test_tracking_credentials_never_reach_the_page_message():
    port = free_port()  # nothing listens there
    with pytest.raises(ModelUnavailable) as caught:
        check_tracking(f"http://ann:FAKEPASS456@127.0.0.1:{port}", timeout=2)
    assert "FAKEPASS456" not in str(caught.value)
    assert f"MLflow tracking server http://ann:***@127.0.0.1:{port} does not answer" in str(
        caught.value
    )
    # Whoever builds the message (the pages echo MLflow's errors), the page gets it redacted.
    problem = ModelUnavailable("unreachable", "GET https://h/api?token=FAKETOKEN failed")
    assert str(problem) == "GET https://h/api?token=*** failed"


def test_the_parts_of_a_fused_model_are_read_from_its_metadata(tmp_path):
    import json

    from ui.model_info import fusion_rows, landmark_misses

    assert fusion_rows(tmp_path) == [] and landmark_misses(tmp_path) is None, "no metadata"
    figures = {
        f"{kind}_top1_{part}": value
        for part, value in (("pixel", 0.7), ("landmark", 0.9), ("fused", 0.92))
        for kind in ("box_valid", "shifted_valid")
    } | {"landmark_train_missing": 32.0, "landmark_valid_missing": 1.0}
    (tmp_path / "metadata.json").write_text(json.dumps({"fusion_figures": figures}))
    rows = fusion_rows(tmp_path)
    assert [row["reading"] for row in rows] == ["pixel", "landmark", "fused"]
    assert rows[2] == {"reading": "fused", "valid": 0.92, "shifted valid": 0.92}
    assert landmark_misses(tmp_path) == (32, 1)
