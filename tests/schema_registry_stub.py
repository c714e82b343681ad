"""A Confluent Schema Registry REST stub for tests: the subset the Avro serde uses.

Not a real registry (none can be installed here: Karapace is not on PyPI and
Confluent's Schema Registry needs Maven Central); it exists so that tests go
through confluent-kafka's real HTTP client (httpx, basic auth, retries, error
statuses) instead of the in-process mock. It does no compatibility checks.

Endpoints: ``POST /subjects/{s}/versions`` (register), ``POST /subjects/{s}``
(lookup), ``GET /schemas/ids/{id}``, ``GET /subjects``,
``GET /subjects/{s}/versions`` and ``GET /subjects/{s}/versions/{v|latest}``.

    with RegistryStub(auth=("sr", "secret")) as registry:
        registry.url                       # http://127.0.0.1:PORT
        registry.versions("t-value")       # [schema dict of version 1, ...]
        registry.fail_with = 503           # every request answers 503 from now on
        registry.stop(); registry.start()  # unreachable, then back on the same port
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit


class RegistryStub:
    def __init__(self, auth: tuple[str, str] | None = None):
        self.auth = auth
        self.fail_with: int | None = None
        self.requests: list[tuple[str, str]] = []
        self.schemas: dict[int, str] = {}  # id -> schema text
        self.subjects: dict[str, list[int]] = {}  # subject -> schema id per version
        self.port = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def versions(self, subject: str) -> list[dict[str, Any]]:
        """The schemas registered under `subject`, oldest first, parsed."""
        return [json.loads(self.schemas[i]) for i in self.subjects.get(subject, [])]

    def start(self) -> RegistryStub:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RegistryStub:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the API ----------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, Any]:
        self.requests.append((method, path))
        if self.fail_with is not None:
            return self.fail_with, {"error_code": self.fail_with * 100,
                                    "message": f"stub answers {self.fail_with}"}
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(":".join(self.auth).encode()).decode()
            if headers.get("Authorization") != expected:
                return 401, {"error_code": 40101, "message": "Unauthorized"}
        parts = [unquote(p) for p in urlsplit(path).path.strip("/").split("/")]
        with self._lock:
            if method == "POST" and len(parts) == 3 and parts[0] == "subjects" \
                    and parts[2] == "versions":
                return 200, {"id": self._register(parts[1], json.loads(body)["schema"])}
            if method == "POST" and len(parts) == 2 and parts[0] == "subjects":
                return self._lookup(parts[1], json.loads(body)["schema"])
            if method == "GET" and len(parts) == 3 and parts[:2] == ["schemas", "ids"]:
                text = self.schemas.get(int(parts[2]))
                if text is None:
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": text}
            if method == "GET" and parts == ["subjects"]:
                return 200, sorted(self.subjects)
            if method == "GET" and len(parts) >= 3 and parts[0] == "subjects" \
                    and parts[2] == "versions":
                ids = self.subjects.get(parts[1])
                if not ids:
                    return 404, {"error_code": 40401, "message": "Subject not found"}
                if len(parts) == 3:
                    return 200, list(range(1, len(ids) + 1))
                version = len(ids) if parts[3] == "latest" else int(parts[3])
                return 200, {"subject": parts[1], "version": version, "id": ids[version - 1],
                             "schema": self.schemas[ids[version - 1]]}
        return 404, {"error_code": 404, "message": f"the stub has no {method} {path}"}

    def _register(self, subject: str, text: str) -> int:
        canonical = json.dumps(json.loads(text), sort_keys=True)
        schema_id = next((i for i, t in self.schemas.items()
                          if json.dumps(json.loads(t), sort_keys=True) == canonical), None)
        if schema_id is None:
            schema_id = len(self.schemas) + 1
            self.schemas[schema_id] = text
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def _lookup(self, subject: str, text: str) -> tuple[int, Any]:
        canonical = json.dumps(json.loads(text), sort_keys=True)
        for version, schema_id in enumerate(self.subjects.get(subject, []), start=1):
            if json.dumps(json.loads(self.schemas[schema_id]), sort_keys=True) == canonical:
                return 200, {"subject": subject, "version": version, "id": schema_id,
                             "schema": self.schemas[schema_id]}
        return 404, {"error_code": 40403, "message": "Schema not found"}


def _handler(stub: RegistryStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, payload = stub.handle(self.command, self.path, self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            pass

    return Handler
