"""The model download cache (:func:`tasks.inference.model_cache.download`) on real sqlite stores.

Each test makes its own MLflow store in ``tmp_path`` (sqlite registry, file artifact store) whose
versions point at a small logged folder (a ``model.onnx`` of known bytes, no real model): an
alias resolves to its version's entry, a second download is served with the artifact store gone,
a moving reference ("latest") is fetched every time, an alias no version holds is a clear error
that writes nothing, and two stores never share an entry.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.mlflow_state import mlflow_uris_restored

from tasks.inference.model_cache import download

NAME = "asl-cache-test"


class Store:
    """A sqlite MLflow store with a file artifact store, all under ``root``."""

    def __init__(self, root: Path, template: Path) -> None:
        import mlflow

        root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template, root / "mlflow.db")  # its tables made once per module
        self.root = root
        self.uri = f"sqlite:///{root / 'mlflow.db'}"
        self.artifacts = root / "artifacts"
        self.use()
        self.client = mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        self.experiment = self.client.create_experiment("cache", self.artifacts.as_uri())
        self.runs: list[str] = []

    def use(self) -> None:
        """Point mlflow's process-wide URIs here (what ``download`` reads)."""
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)

    def add_version(self, content: str) -> str:
        """Log a ``model`` folder whose ``model.onnx`` holds ``content``; register it."""
        folder = self.root / f"logged-{len(self.runs)}" / "model"
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_text(content)
        (folder / "metadata.json").write_text("{}")
        run = self.client.create_run(self.experiment).info
        self.client.log_artifacts(run.run_id, str(folder), "model")
        self.client.set_terminated(run.run_id)
        self.runs.append(run.run_id)
        if not self.client.search_registered_models(f"name = '{NAME}'"):
            self.client.create_registered_model(NAME)
        version = self.client.create_model_version(
            NAME, f"{run.artifact_uri}/model", run_id=run.run_id
        )
        return str(version.version)


@pytest.fixture(autouse=True)
def _uris_restored() -> Iterator[None]:
    with mlflow_uris_restored():
        yield


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store with MLflow's tables (creating them takes seconds)."""
    import mlflow

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    with mlflow_uris_restored():
        # Both URIs each time: one left out defaults to ./mlflow.db in the working folder.
        client = mlflow.MlflowClient(
            tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}"
        )
        client.search_experiments()
        client.search_registered_models()
    return path


@pytest.fixture
def make_store(tmp_path: Path, empty_db: Path) -> Callable[[str], Store]:
    return lambda name: Store(tmp_path / name, empty_db)


def _content(local: Path) -> str:
    return (local / "model.onnx").read_text()


def test_an_alias_is_cached_as_the_version_it_points_at_now(
    tmp_path: Path, make_store: Callable[[str], Store]
) -> None:
    store, cache = make_store("store"), tmp_path / "cache"
    first, second = store.add_version("one"), store.add_version("two")
    store.client.set_registered_model_alias(NAME, "champion", first)  # not the newest

    by_alias = download(f"models:/{NAME}@champion", cache)
    assert _content(by_alias) == "one" and by_alias.is_relative_to(cache)
    assert download(f"models:/{NAME}/{first}", cache) == by_alias, "one entry per version"

    store.client.set_registered_model_alias(NAME, "champion", second)
    moved = download(f"models:/{NAME}@champion", cache)
    assert _content(moved) == "two" and moved != by_alias
    assert _content(by_alias) == "one", "the older version's entry is left as it was"


def test_a_second_download_is_served_without_the_artifact_store(
    tmp_path: Path, make_store: Callable[[str], Store]
) -> None:
    store, cache = make_store("store"), tmp_path / "cache"
    version = store.add_version("kept")
    store.client.set_registered_model_alias(NAME, "champion", version)
    uris = [f"models:/{NAME}@champion", f"models:/{NAME}/{version}", f"runs:/{store.runs[0]}/model"]
    first = {uri: download(uri, cache) for uri in uris}

    shutil.rmtree(store.artifacts)  # nothing left to fetch from
    for uri in uris:
        again = download(uri, cache)
        assert again == first[uri] and _content(again) == "kept", uri


def test_a_moving_reference_is_fetched_again_each_time(
    tmp_path: Path, make_store: Callable[[str], Store]
) -> None:
    store, cache = make_store("store"), tmp_path / "cache"
    store.add_version("one")
    before = download(f"models:/{NAME}/latest", cache)
    assert _content(before) == "one" and before.is_relative_to(cache)

    store.add_version("two")
    after = download(f"models:/{NAME}/latest", cache)
    assert _content(after) == "two", "latest was served from an old copy"
    assert after != before

    published = [entry.name for entry in cache.iterdir() if not entry.name.startswith(".")]
    assert published == [], "a moving reference left a cache entry a later call could reuse"


def test_a_version_whose_artifacts_are_missing_is_an_error_not_an_empty_entry(
    tmp_path: Path, make_store: Callable[[str], Store]
) -> None:
    store, cache = make_store("store"), tmp_path / "cache"
    version = store.add_version("late")
    hidden = store.root / "hidden"
    store.artifacts.rename(hidden)  # the artifact store is away (unmounted, not synced yet)
    try:
        with pytest.raises(FileNotFoundError, match=f"models:/{NAME}/{version}"):
            download(f"models:/{NAME}/{version}", cache)
    finally:
        hidden.rename(store.artifacts)
    assert _content(download(f"models:/{NAME}/{version}", cache)) == "late"


@pytest.mark.parametrize("registered", [False, True], ids=["no-model", "model-without-alias"])
def test_an_alias_no_version_holds_is_a_clear_error_that_writes_nothing(
    tmp_path: Path, make_store: Callable[[str], Store], registered: bool
) -> None:
    store, cache = make_store("store"), tmp_path / "cache"
    if registered:
        store.add_version("unaliased")
    with pytest.raises(FileNotFoundError) as caught:
        download(f"models:/{NAME}@champion", cache)
    message = str(caught.value)
    assert f"model {NAME!r} holds alias 'champion'" in message
    assert str(tmp_path / "store" / "mlflow.db") in message, "the store it looked in"
    assert f"models:/{NAME}/<n>" in message and "make demo" in message, "what to do instead"
    assert not cache.exists(), "nothing is written for a model that is not there"


def test_two_stores_with_the_same_version_number_do_not_share_an_entry(
    tmp_path: Path, make_store: Callable[[str], Store]
) -> None:
    cache = tmp_path / "cache"
    first = make_store("first")
    assert first.add_version("from the first store") == "1"
    second = make_store("second")
    assert second.add_version("from the second store") == "1"

    second.use()
    from_second = download(f"models:/{NAME}/1", cache)
    first.use()
    from_first = download(f"models:/{NAME}/1", cache)

    assert from_first != from_second
    assert _content(from_first) == "from the first store"
    assert _content(from_second) == "from the second store"
    shutil.rmtree(second.artifacts)
    second.use()
    assert _content(download(f"models:/{NAME}/1", cache)) == "from the second store"
