"""A local Hub-compatible HTTP endpoint, so the real ``huggingface_hub`` client can push and download offline.

Point ``HF_ENDPOINT`` at it (and set ``HF_HUB_DISABLE_XET=1``: uploads then use the plain LFS protocol). It serves
what huggingface_hub's ``HfApi`` (repo create/info, branches, refs, tree, preupload, LFS batch, commit),
``hf_hub_download``/``snapshot_download`` and therefore ``from_pretrained``/``timm.create_model("hf-hub:…")``
call. Storage lives in ``storage.py``, the routes that move content in ``transfer.py``, and what both route
modules share (``Hub``, ``Faults``, the protocol helpers) in ``protocol.py``.
Run it with ``hf-tasks hub serve --root DIR`` or, in tests, ``with serve(root) as hub: …`` (uvicorn in a thread).

Two details of the client's protocol shape these routes (helpers in ``protocol.py``):
* revisions arrive URL-quoted as ONE path segment (``refs%2Fpr%2F1``), but ASGI servers decode ``%2F`` before
  routing, so every route re-reads the revision from ``scope["raw_path"]``;
* LFS upload URLs are pre-signed (the client PUTs without its token, as to S3), so they carry an HMAC.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Request

from hf_tasks.hub.protocol import Faults, Hub, base_url, json_response, raw_segments, repo_type_of, split_revision
from hf_tasks.hub.storage import HubError, Storage, info_payload, parse_card, tree_entries
from hf_tasks.hub.transfer import add_transfer_routes


def create_app(root: str | Path, tokens: list[str] | None = None, user: str = "user",
               faults: Faults | None = None):
    """The FastAPI app; ``app.state.hub`` holds its storage and fault plan."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    hub = Hub(Storage(root), set(tokens) if tokens else None, user, faults or Faults())
    app = FastAPI(title="hf-tasks local hub", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub

    @app.exception_handler(HubError)
    async def hub_error(request, exc: HubError):
        message = exc.message.replace("\n", " ")
        headers = {"X-Error-Message": message.encode("latin-1", "replace").decode("latin-1")}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        if exc.commit:
            headers["X-Repo-Commit"] = exc.commit
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

    _account_routes(app, hub)
    _repo_routes(app, hub)
    add_transfer_routes(app, hub)
    return app


def _account_routes(app, hub: Hub) -> None:
    @app.get("/api/whoami-v2")
    def whoami(request: Request):
        name = hub.user_of(request, required=True)
        return {"type": "user", "id": name, "name": name, "fullname": name, "email": None, "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "local", "role": "write"}}}

    @app.post("/api/validate-yaml")
    async def validate_yaml(request: Request):
        content = (await request.json()).get("content", "")
        try:
            parse_card(content)
        except ValueError as err:
            return json_response({"errors": [{"message": str(err)}]}, 400)
        return {"errors": [], "warnings": []}

    @app.post("/api/repos/create")
    async def create_repo(request: Request):
        user = hub.user_of(request, required=True)
        body = await request.json()
        if not body.get("name"):
            raise HubError(400, "missing repo name")
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or user}/{body['name']}"
        created = hub.storage.create_repo(repo_type, repo_id, body.get("visibility", body.get("private")) in
                                          ("private", True), author=user)
        url = f"{base_url(request)}{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if not created:
            return json_response({"error": "You already created this model repo", "url": url}, 409)
        return {"url": url, "name": repo_id, "id": repo_id}

    @app.delete("/api/repos/delete")
    async def delete_repo(request: Request):
        user = hub.user_of(request, required=True)
        body = await request.json()
        repo_type, repo_id = body.get("type") or "model", f"{body.get('organization') or user}/{body.get('name')}"
        with hub.storage.lock:
            hub.storage.require_repo(repo_type, repo_id)
            shutil.rmtree(hub.storage.repo_dir(repo_type, repo_id))
        return {}


def _repo_routes(app, hub: Hub) -> None:
    prefix = "/api/{plural}/{namespace}/{name}"

    @app.get(prefix)
    def repo_info(plural: str, namespace: str, name: str, request: Request):
        return _info(hub, request, repo_type_of(plural), f"{namespace}/{name}", "main")

    @app.get(prefix + "/revision/{rest:path}")
    def repo_info_at(plural: str, namespace: str, name: str, request: Request):
        revision, _ = split_revision(raw_segments(request)[5:])
        return _info(hub, request, repo_type_of(plural), f"{namespace}/{name}", revision)

    @app.get(prefix + "/refs")
    def refs(plural: str, namespace: str, name: str, request: Request):
        meta = hub.readable(request, repo_type_of(plural), f"{namespace}/{name}")
        branches = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in meta["branches"].items()]
        pulls = [{"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": c} for n, c in meta["pulls"].items()]
        return {"branches": branches, "converts": [], "tags": [], "pullRequests": pulls}

    @app.get(prefix + "/tree/{rest:path}")
    def tree(plural: str, namespace: str, name: str, request: Request):
        meta, commit, rest = _read_revision(hub, request, plural, f"{namespace}/{name}")
        recursive = request.query_params.get("recursive", "false").lower() in ("1", "true")
        return tree_entries(commit["files"], "/".join(rest).strip("/"), recursive)

    @app.post(prefix + "/paths-info/{rest:path}")
    async def paths_info(plural: str, namespace: str, name: str, request: Request):
        meta, commit, _ = _read_revision(hub, request, plural, f"{namespace}/{name}")
        form = parse_qs((await request.body()).decode())
        wanted = [p.strip("/") for p in form.get("paths", [])]
        found = tree_entries(commit["files"], "", recursive=True)
        return [entry for entry in found if entry["path"] in wanted]

    @app.get(prefix + "/commits/{rest:path}")
    def commits(plural: str, namespace: str, name: str, request: Request):
        meta, commit, _ = _read_revision(hub, request, plural, f"{namespace}/{name}")
        return [{"id": c["id"], "title": c["title"], "message": c["message"], "date": c["date"],
                 "authors": [{"user": c["author"]}]} for c in hub.storage.history(meta, commit["id"])]

    @app.post(prefix + "/branch/{rest:path}")
    async def create_branch(plural: str, namespace: str, name: str, request: Request):
        repo_type, repo_id = repo_type_of(plural), f"{namespace}/{name}"
        hub.writable(request, repo_type, repo_id)
        body = json.loads(await request.body() or b"{}")
        hub.storage.create_branch(repo_type, repo_id, "/".join(raw_segments(request)[5:]),
                                  body.get("startingPoint"))
        return {}


def _read_revision(hub: Hub, request, plural: str, repo_id: str) -> tuple[dict, dict, list[str]]:
    """(repo meta, commit, remaining path segments) for routes shaped ``/api/<type>s/<ns>/<name>/<verb>/<rev>/…``."""
    meta = hub.readable(request, repo_type_of(plural), repo_id)
    revision, rest = split_revision(raw_segments(request)[5:])
    commit_id, _ = hub.storage.resolve(meta, revision)
    return meta, hub.storage.read_commit(meta, commit_id), rest


def _info(hub: Hub, request, repo_type: str, repo_id: str, revision: str) -> dict[str, Any]:
    meta = hub.readable(request, repo_type, repo_id)
    commit_id, _ = hub.storage.resolve(meta, revision)
    return info_payload(hub.storage, meta, hub.storage.read_commit(meta, commit_id))


class ServerHandle:
    """A running server (uvicorn in a background thread): ``.url``, ``.faults``, ``.storage``, ``.stop()``."""

    def __init__(self, server, thread: threading.Thread, url: str, hub: Hub):
        self.server, self.thread, self.url, self.hub = server, thread, url, hub
        self.faults, self.storage = hub.faults, hub.storage

    def stop(self, timeout: float = 10) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> "ServerHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 0, tokens: list[str] | None = None,
          faults: Faults | None = None) -> ServerHandle:
    """Start the server on ``host:port`` (0 = a free port) in a daemon thread; returns once it accepts requests."""
    import time

    import uvicorn

    app = create_app(root, tokens=tokens, faults=faults)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, http="h11", lifespan="off", log_config=None, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    app.state.hub.server = server
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="hf-tasks-hub", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the local hub server did not start")
        time.sleep(0.02)
    bound_host, bound_port = sock.getsockname()[:2]
    return ServerHandle(server, thread, f"http://{bound_host}:{bound_port}", app.state.hub)


def run_forever(root: str | Path, host: str = "127.0.0.1", port: int = 8000, tokens: list[str] | None = None) -> int:
    """``hf-tasks hub serve``: serve in the foreground until interrupted."""
    import uvicorn

    app = create_app(root, tokens=tokens)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, http="h11", lifespan="off"))
    app.state.hub.server = server
    print(f"local hub serving {Path(root).resolve()} at http://{host}:{port} "
          f"(export HF_ENDPOINT=http://{host}:{port} HF_HUB_DISABLE_XET=1)", flush=True)
    server.run()
    return 0
