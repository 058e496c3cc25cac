"""A local HTTP server that plays the Roboflow API for one dataset version.

It answers the calls the real ``roboflow`` client makes for
``Roboflow(api_key).workspace(ws).project(p).version(v).download("yolov8")``:

* ``POST /?api_key=K``               key check, names the key's workspace
* ``GET  /<ws>?api_key=K``           workspace with its projects
* ``GET  /<ws>/<p>?api_key=K``       project and its versions (with ready exports)
* ``GET  /<ws>/<p>/<v>?api_key=K``   one version (not generating)
* ``GET  /<ws>/<p>/<v>/yolov8?...``  export description with a download link
* ``GET  /download/<token>.zip``     the export zip, built from a local YOLO folder

Only 127.0.0.1 is used. Point the client at it with the ``API_URL`` environment variable,
which ``roboflow.config`` reads when the client is imported.
"""

from __future__ import annotations

import io
import json
import threading
import time
import zipfile
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

SPLITS = ("train", "valid", "test")
EXPORT_FORMAT = "yolov8"


def build_export_zip(dataset: Path, workspace: str, project: str, version: int) -> bytes:
    """Zip a YOLO folder the way a Roboflow YOLOv8 export is laid out.

    Args:
        dataset: Folder with ``data.yaml`` and ``{train,valid,test}/{images,labels}``.
        workspace: Workspace slug written into data.yaml's ``roboflow`` block.
        project: Project slug.
        version: Version number.

    Returns:
        The zip file's bytes.
    """
    names = yaml.safe_load((dataset / "data.yaml").read_text())["names"]
    # Roboflow's own data.yaml points one level up, at folders next to the zip's root.
    data_yaml = {
        "train": "../train/images",
        "val": "../valid/images",
        "test": "../test/images",
        "nc": len(names),
        "names": names,
        "roboflow": {
            "workspace": workspace,
            "project": project,
            "version": version,
            "license": "Public Domain",
            "url": f"https://universe.roboflow.com/{workspace}/{project}/dataset/{version}",
        },
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as bundle:
        bundle.writestr("data.yaml", yaml.safe_dump(data_yaml, sort_keys=False))
        bundle.writestr("README.roboflow.txt", "exported by a fake Roboflow for tests\n")
        for split in SPLITS:
            for kind in ("images", "labels"):
                for path in sorted((dataset / split / kind).iterdir()):
                    bundle.write(path, f"{split}/{kind}/{path.name}")
    return buffer.getvalue()


class FakeRoboflow:
    """The fake API server; use as a context manager, then read ``url`` and ``calls``."""

    def __init__(
        self,
        dataset: Path,
        api_key: str,
        workspace: str = "fingerspell-tests",
        project: str = "asl-letters",
        version: int = 1,
    ) -> None:
        self.dataset = dataset
        self.api_key = api_key
        self.workspace = workspace
        self.project = project
        self.version = version
        self.calls: list[str] = []  # "METHOD /path" without the query string (no key)
        self._zip: bytes | None = None
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL to put in ``API_URL``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def export_zip(self) -> bytes:
        """The export served at the download link (built once)."""
        if self._zip is None:
            self._zip = build_export_zip(self.dataset, self.workspace, self.project, self.version)
        return self._zip

    def __enter__(self) -> FakeRoboflow:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # The JSON bodies carry the fields the client's Workspace/Project/Version read.
    def workspace_json(self) -> dict[str, Any]:
        """Body of ``GET /<ws>``."""
        return {
            "workspace": {
                "name": self.workspace,
                "url": self.workspace,
                "members": 1,
                "projects": [self.project_json()],
            }
        }

    def project_json(self) -> dict[str, Any]:
        """The ``project`` object."""
        names = yaml.safe_load((self.dataset / "data.yaml").read_text())["names"]
        now = time.time()
        return {
            "id": f"{self.workspace}/{self.project}",
            "type": "object-detection",
            "name": "American Sign Language Letters",
            "created": now - 86400,
            "updated": now,
            "images": self.image_count(),
            "unannotated": 0,
            "annotation": "letters",
            "public": True,
            "splits": self.split_counts(),
            "classes": dict.fromkeys(names, 1),
            "colors": dict.fromkeys(names, "#C7FC00"),
        }

    def version_json(self) -> dict[str, Any]:
        """The ``version`` object, export ready and not generating."""
        return {
            "id": f"{self.workspace}/{self.project}/{self.version}",
            "name": "v1",
            "version": str(self.version),
            "created": time.time() - 3600,
            "images": self.image_count(),
            "splits": self.split_counts(),
            "augmentation": {},
            "preprocessing": {},
            "exports": [EXPORT_FORMAT],
            "generating": False,
            "progress": 1.0,
        }

    def split_counts(self) -> dict[str, int]:
        """Images per split of the served dataset."""
        return {split: len(list((self.dataset / split / "images").iterdir())) for split in SPLITS}

    def image_count(self) -> int:
        """All images of the served dataset."""
        return sum(self.split_counts().values())


def _handler_for(fake: FakeRoboflow) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            # The default writes the request line, api_key included, to stderr.
            return

        def do_POST(self) -> None:
            self._route("POST")

        def do_GET(self) -> None:
            self._route("GET")

        def _route(self, method: str) -> None:
            parsed = urlparse(self.path)
            fake.calls.append(f"{method} {parsed.path}")
            parts = [part for part in parsed.path.split("/") if part]
            if method == "GET" and len(parts) == 2 and parts[0] == "download":
                self._send(HTTPStatus.OK, fake.export_zip, "application/zip")
                return
            if parse_qs(parsed.query).get("api_key") != [fake.api_key]:
                self._json(
                    HTTPStatus.UNAUTHORIZED,
                    {
                        "error": {
                            "message": "This API key does not exist.",
                            "type": "OAuthException",
                        }
                    },
                )
                return
            body = self._api_body(method, parts)
            if body is None:
                self._json(HTTPStatus.NOT_FOUND, {"error": {"message": f"no route {parsed.path}"}})
            else:
                self._json(HTTPStatus.OK, body)

        def _api_body(self, method: str, parts: list[str]) -> dict[str, Any] | None:
            ours = [fake.workspace, fake.project, str(fake.version), EXPORT_FORMAT]
            if method == "POST":
                return {"workspace": fake.workspace} if not parts else None
            if parts != ours[: len(parts)] or not parts:
                return None
            if len(parts) == 1:
                return fake.workspace_json()
            project = {"workspace": fake.workspace_json()["workspace"]}
            project["project"] = fake.project_json()
            if len(parts) == 2:
                return {**project, "versions": [fake.version_json()]}
            if len(parts) == 3:
                return {**project, "version": fake.version_json()}
            link = f"{fake.url}/download/{fake.workspace}-{fake.project}-{fake.version}.zip"
            return {"export": {"format": EXPORT_FORMAT, "link": link, "size": len(fake.export_zip)}}

        def _json(self, status: HTTPStatus, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: HTTPStatus, payload: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
