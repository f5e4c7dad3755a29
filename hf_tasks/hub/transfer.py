"""The routes of the local Hub that move content: preupload + commit, the LFS batch/upload/verify API, downloads.

Split from ``server.py`` (app, auth, repo metadata routes, ``serve``) to keep both files small, with what both
share in ``protocol.py``; the protocol they implement is huggingface_hub's ``_commit_api.py``, ``lfs.py`` and
``file_download.py``.
"""

from __future__ import annotations

import base64
import hmac
import json
import re

from fastapi import Request

from hf_tasks.hub.protocol import Hub, base_url, json_response, raw_segments, repo_type_of, split_revision
from hf_tasks.hub.storage import HubError, is_lfs


def add_transfer_routes(app, hub: Hub) -> None:
    commit_routes(app, hub)
    lfs_routes(app, hub)
    download_routes(app, hub)


def commit_routes(app, hub: Hub) -> None:
    prefix = "/api/{plural}/{namespace}/{name}"

    @app.post(prefix + "/preupload/{rest:path}")
    async def preupload(plural: str, namespace: str, name: str, request: Request):
        repo_type, repo_id = repo_type_of(plural), f"{namespace}/{name}"
        meta, _ = hub.writable(request, repo_type, repo_id)
        head, _ = hub.storage.resolve(meta, split_revision(raw_segments(request)[5:])[0])
        files = hub.storage.read_commit(meta, head)["files"]
        patterns = hub.storage.lfs_patterns(files)
        answer = []
        for item in (await request.json()).get("files", []):
            lfs = is_lfs(item["path"], int(item.get("size", 0)), base64.b64decode(item.get("sample", "")), patterns)
            existing = files.get(item["path"])
            oid = (existing["sha256"] if lfs else existing["sha1"]) if existing else None
            answer.append({"path": item["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                           "oid": oid})
        return {"files": answer, "commitOid": head}

    @app.post(prefix + "/commit/{rest:path}")
    async def commit(plural: str, namespace: str, name: str, request: Request):
        repo_type, repo_id = repo_type_of(plural), f"{namespace}/{name}"
        _, user = hub.writable(request, repo_type, repo_id)
        revision = split_revision(raw_segments(request)[5:])[0]
        try:
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise HubError(400, f"commit payload is not NDJSON: {err}") from err
        header = next((line["value"] for line in lines if line.get("key") == "header"), {})
        operations = [(line.get("key"), line.get("value") or {}) for line in lines if line.get("key") != "header"]
        create_pr = request.query_params.get("create_pr", "0").lower() in ("1", "true")
        commit_id, pr_num = hub.storage.apply_commit(repo_type, repo_id, revision, header, operations, create_pr,
                                                     author=user)
        url = f"{base_url(request)}{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        return {"success": True, "commitOid": commit_id, "commitUrl": f"{url}/commit/{commit_id}",
                "hookOutput": "", "pullRequestUrl": f"{url}/discussions/{pr_num}" if pr_num else None}


def lfs_routes(app, hub: Hub) -> None:
    async def batch(request: Request, repo_type: str, namespace: str, name: str):
        hub.writable(request, repo_type, f"{namespace}/{name}")
        body = await request.json()
        if body.get("operation") != "upload":
            raise HubError(400, "this endpoint only accepts LFS uploads; download files through /resolve/")
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), obj.get("size")
            if not re.fullmatch(r"[0-9a-f]{64}", oid) or not isinstance(size, int) or size < 0:
                objects.append({"oid": oid, "size": size if isinstance(size, int) else 0,
                                "error": {"code": 422, "message": "invalid oid or size"}})
            elif hub.storage.has_blob(oid, size):
                objects.append({"oid": oid, "size": size})
            else:
                base = base_url(request)
                actions = {"upload": {"href": f"{base}lfs/upload/{oid}?size={size}&sig={hub.sign(oid, size)}",
                                      "header": {}},
                           "verify": {"href": f"{base}lfs/verify/{oid}", "header": {}}}
                objects.append({"oid": oid, "size": size, "authenticated": True, "actions": actions})
        return json_response({"transfer": "basic", "objects": objects}, 200, "application/vnd.git-lfs+json")

    @app.post("/{namespace}/{name}.git/info/lfs/objects/batch")
    async def model_batch(namespace: str, name: str, request: Request):
        return await batch(request, "model", namespace, name)

    @app.post("/{plural}/{namespace}/{name}.git/info/lfs/objects/batch")
    async def typed_batch(plural: str, namespace: str, name: str, request: Request):
        return await batch(request, repo_type_of(plural), namespace, name)

    @app.put("/lfs/upload/{oid}")
    async def upload(oid: str, request: Request):
        size = request.query_params.get("size", "")
        if not size.isdigit() or not hmac.compare_digest(request.query_params.get("sig", ""), hub.sign(oid, int(size))):
            raise HubError(403, "invalid or missing upload signature")
        drop = hub.faults.should_drop(oid)
        writer = hub.storage.blob_writer()
        try:
            async for chunk in request.stream():
                writer.write(chunk)
                if drop:
                    writer.abort()
                    await hub.drop_connection(request)
                    return json_response({}, 499)
            writer.finish(expected_sha256=oid, expected_size=int(size))
        except BaseException:
            writer.abort()
            raise
        return json_response({}, 200)

    @app.post("/lfs/verify/{oid}")
    async def verify(oid: str, request: Request):
        hub.user_of(request, required=True)
        if not hub.storage.has_blob(oid, (await request.json()).get("size")):
            raise HubError(404, f"object {oid} was not uploaded")
        return {"success": True}


def download_routes(app, hub: Hub) -> None:
    def resolve_file(request, repo_type: str, repo_id: str, segments: list[str]):
        from fastapi.responses import FileResponse

        meta = hub.readable(request, repo_type, repo_id)
        revision, rest = split_revision(segments)
        commit_id, _ = hub.storage.resolve(meta, revision)
        path = "/".join(rest)
        entry = hub.storage.read_commit(meta, commit_id)["files"].get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", commit=commit_id)
        etag = entry["sha256"] if entry["lfs"] else entry["sha1"]
        headers = {"X-Repo-Commit": commit_id, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if entry["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(entry["size"])})
        return FileResponse(hub.storage.blob_path(entry["sha256"]), headers=headers,
                            media_type="application/octet-stream")

    @app.api_route("/{namespace}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
    def model_file(namespace: str, name: str, request: Request):
        return resolve_file(request, "model", f"{namespace}/{name}", raw_segments(request)[3:])

    @app.api_route("/{plural}/{namespace}/{name}/resolve/{rest:path}", methods=["GET", "HEAD"])
    def typed_file(plural: str, namespace: str, name: str, request: Request):
        return resolve_file(request, repo_type_of(plural), f"{namespace}/{name}", raw_segments(request)[4:])
