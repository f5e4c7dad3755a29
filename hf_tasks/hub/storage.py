"""On-disk storage of the local Hub (see ``server.py``): content-addressed blobs, snapshot commits, refs.

Layout under ``root``::

    blobs/<sha256>                                  every file content ever uploaded, once
    repos/<type>s/<namespace>/<name>/repo.json      visibility, branches {name: commit}, pull requests {n: commit}
    repos/<type>s/<namespace>/<name>/commits/<id>   one JSON per commit: parent, message, full manifest

A commit is a *full snapshot* (``{path: {sha256, size, lfs, sha1}}``), so reading a revision never walks history.
Refs move last and by ``os.replace``: a commit whose blobs are missing never becomes visible, and a crash between
writing the commit and moving the ref leaves an unreferenced commit, never a half-applied one.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import re
import tempfile
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

REPO_TYPES = ("model", "dataset", "space")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
LFS_THRESHOLD = 10 * 1024 * 1024
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in (
    "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.ftz", "*.gz", "*.h5", "*.joblib", "*.lfs.*", "*.mlmodel",
    "*.model", "*.msgpack", "*.npy", "*.npz", "*.onnx", "*.ot", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt",
    "*.pth", "*.rar", "*.safetensors", "*.tar.*", "*.tar", "*.tflite", "*.tgz", "*.wasm", "*.xz", "*.zip", "*.zst",
    "*tfevents*"))


class HubError(Exception):
    """An error the server answers with ``status`` and, for the client's error mapping, an ``X-Error-Code``."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.commit = status, message, code, commit


def now_iso() -> str:
    """The Hub's date format (``parse_datetime`` in huggingface_hub accepts exactly this)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def git_blob_sha1(data: bytes) -> str:
    """Git's object id of a blob: what the Hub reports as a regular file's ``oid`` and ETag."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def check_repo_path(path: str) -> str:
    """Refuse paths that could escape the snapshot (``..``, absolute, empty segments)."""
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path:
        raise HubError(400, f"invalid path in repo: {path!r}")
    return path


class Storage:
    """All repository state of one server; one lock serialises every ref update."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        self.lock = threading.RLock()

    # ---- blobs -------------------------------------------------------------------------------------------------
    def blob_path(self, sha256: str) -> Path:
        if not SHA256_RE.match(sha256):  # ids come from clients: never let one name a path outside blobs/
            raise HubError(400, f"invalid sha256 oid {sha256!r}")
        return self.root / "blobs" / sha256

    def has_blob(self, sha256: str, size: int | None = None) -> bool:
        path = self.blob_path(sha256)
        return path.is_file() and (size is None or path.stat().st_size == size)

    def blob_writer(self) -> "BlobWriter":
        return BlobWriter(self)

    def put_bytes(self, data: bytes) -> str:
        writer = self.blob_writer()
        writer.write(data)
        return writer.finish(expected_sha256=None, expected_size=len(data))

    # ---- repos and refs ----------------------------------------------------------------------------------------
    def repo_dir(self, repo_type: str, repo_id: str) -> Path:
        namespace, _, name = repo_id.partition("/")
        if repo_type not in REPO_TYPES or not NAME_RE.match(namespace) or not NAME_RE.match(name):
            raise HubError(400, f"invalid repo id {repo_id!r} (expected namespace/name)")
        return self.root / "repos" / f"{repo_type}s" / namespace / name

    def load_repo(self, repo_type: str, repo_id: str) -> dict[str, Any] | None:
        path = self.repo_dir(repo_type, repo_id) / "repo.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_repo(self, repo_type: str, repo_id: str, meta: dict[str, Any]) -> None:
        _atomic_write(self.repo_dir(repo_type, repo_id) / "repo.json", json.dumps(meta, indent=1).encode())

    def create_repo(self, repo_type: str, repo_id: str, private: bool, author: str) -> bool:
        """Create with an initial ``.gitattributes`` commit, like the Hub; False when it already exists."""
        with self.lock:
            if self.load_repo(repo_type, repo_id) is not None:
                return False
            meta = {"id": repo_id, "type": repo_type, "private": private, "createdAt": now_iso(),
                    "branches": {}, "pulls": {}}
            sha = self.put_bytes(DEFAULT_GITATTRIBUTES.encode())
            files = {".gitattributes": _entry(self, sha, lfs=False)}
            meta["branches"]["main"] = self.write_commit(repo_type, repo_id, None, "initial commit", "", files, author)
            self.save_repo(repo_type, repo_id, meta)
            return True

    def resolve(self, meta: dict[str, Any], revision: str) -> tuple[str, str | None]:
        """(commit id, ref name) of a branch, ``refs/heads/x``, ``refs/pr/N`` or a full commit id."""
        branch = revision.removeprefix("refs/heads/")
        if branch in meta["branches"]:
            return meta["branches"][branch], branch
        match = re.fullmatch(r"refs/pr/(\d+)", revision)
        if match and match.group(1) in meta["pulls"]:
            return meta["pulls"][match.group(1)], revision
        if COMMIT_RE.match(revision) and self.commit_path(meta, revision).is_file():
            return revision, None
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def create_branch(self, repo_type: str, repo_id: str, branch: str, starting_point: str | None) -> None:
        if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", branch) or ".." in branch or branch.startswith("refs/"):
            raise HubError(400, f"invalid branch name {branch!r}")
        with self.lock:
            meta = self.require_repo(repo_type, repo_id)
            if branch in meta["branches"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            meta["branches"][branch] = self.resolve(meta, starting_point or "main")[0]
            self.save_repo(repo_type, repo_id, meta)

    def require_repo(self, repo_type: str, repo_id: str) -> dict[str, Any]:
        meta = self.load_repo(repo_type, repo_id)
        if meta is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return meta

    # ---- commits -----------------------------------------------------------------------------------------------
    def commit_path(self, meta: dict[str, Any], commit_id: str) -> Path:
        return self.repo_dir(meta["type"], meta["id"]) / "commits" / f"{commit_id}.json"

    def read_commit(self, meta: dict[str, Any], commit_id: str) -> dict[str, Any]:
        return json.loads(self.commit_path(meta, commit_id).read_text())

    def write_commit(self, repo_type: str, repo_id: str, parent: str | None, title: str, message: str,
                     files: dict[str, dict], author: str) -> str:
        body = {"parent": parent, "title": title, "message": message, "date": now_iso(), "author": author,
                "files": dict(sorted(files.items()))}
        commit_id = hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()
        path = self.repo_dir(repo_type, repo_id) / "commits" / f"{commit_id}.json"
        _atomic_write(path, json.dumps({"id": commit_id, **body}).encode())
        return commit_id

    def history(self, meta: dict[str, Any], commit_id: str) -> Iterable[dict[str, Any]]:
        while commit_id:
            commit = self.read_commit(meta, commit_id)
            yield commit
            commit_id = commit["parent"]

    def apply_commit(self, repo_type: str, repo_id: str, revision: str, header: dict[str, Any],
                     operations: list[tuple[str, dict[str, Any]]], create_pr: bool, author: str
                     ) -> tuple[str, int | None]:
        """Apply all operations or none: validate everything, write the commit, then move exactly one ref."""
        with self.lock:
            meta = self.require_repo(repo_type, repo_id)
            head, ref = self.resolve(meta, revision)
            if ref is None:
                raise HubError(400, f"cannot commit to a commit id ({revision}); name a branch")
            parent = header.get("parentCommit")
            if parent and parent != head:
                raise HubError(412, f"A commit has happened since {parent}. Please refresh and try again.")
            files = dict(self.read_commit(meta, head)["files"])
            for key, value in operations:
                self._apply_operation(files, key, value)
            commit_id = self.write_commit(repo_type, repo_id, head, header.get("summary") or "Upload files",
                                          header.get("description") or "", files, author)
            pr_num = None
            if create_pr:
                pr_num = max((int(n) for n in meta["pulls"]), default=0) + 1
                meta["pulls"][str(pr_num)] = commit_id
            elif ref.startswith("refs/pr/"):
                meta["pulls"][ref.rsplit("/", 1)[1]] = commit_id
            else:
                meta["branches"][ref] = commit_id
            self.save_repo(repo_type, repo_id, meta)
            return commit_id, pr_num

    def _apply_operation(self, files: dict[str, dict], key: str, value: dict[str, Any]) -> None:
        raw_path = str(value.get("path", ""))
        path = check_repo_path(raw_path.rstrip("/") if key == "deletedFolder" else raw_path)
        if key == "file":
            files[path] = _entry(self, self.put_bytes(base64.b64decode(value.get("content", ""))), lfs=False)
        elif key == "lfsFile":
            sha, size = value.get("oid", ""), value.get("size")
            if not self.has_blob(sha, size):
                raise HubError(422, f"Your push was rejected because an LFS pointer pointed to a file that does not "
                                    f"exist: {path} (oid {sha}). Upload it through the LFS batch API first.")
            files[path] = _entry(self, sha, lfs=True)
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
        elif key == "deletedFolder":
            doomed = [p for p in files if p.startswith(path + "/")]
            if not doomed:
                raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
            for p in doomed:
                del files[p]
        else:
            raise HubError(400, f"unsupported commit operation {key!r}")

    def lfs_patterns(self, manifest: dict[str, dict]) -> list[str]:
        entry = manifest.get(".gitattributes")
        text = self.blob_path(entry["sha256"]).read_text() if entry else DEFAULT_GITATTRIBUTES
        return [line.split()[0] for line in text.splitlines() if "filter=lfs" in line and line.strip()]


def is_lfs(path: str, size: int, sample: bytes, patterns: list[str]) -> bool:
    """The preupload decision: tracked by ``.gitattributes``, large, or binary (NUL in the first bytes)."""
    name = path.rsplit("/", 1)[-1]
    tracked = any(fnmatch.fnmatch(path if "/" in p else name, p) for p in patterns)
    return tracked or size >= LFS_THRESHOLD or b"\0" in sample[:512]


class BlobWriter:
    """Streams an upload to a temporary file, then renames it to its sha256: partial uploads never become blobs."""

    def __init__(self, storage: Storage):
        self.storage = storage
        fd, name = tempfile.mkstemp(dir=storage.root / "tmp")
        self.file, self.tmp = os.fdopen(fd, "wb"), Path(name)
        self.hash, self.size = hashlib.sha256(), 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.hash.update(chunk)
        self.size += len(chunk)

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def finish(self, expected_sha256: str | None, expected_size: int | None) -> str:
        self.file.close()
        sha = self.hash.hexdigest()
        if (expected_sha256 and sha != expected_sha256) or (expected_size is not None and self.size != expected_size):
            self.tmp.unlink(missing_ok=True)
            raise HubError(400, f"uploaded content does not match: sha256 {sha}, {self.size} bytes")
        os.replace(self.tmp, self.storage.blob_path(sha))
        return sha


def _entry(storage: Storage, sha256: str, lfs: bool) -> dict[str, Any]:
    """A manifest entry; ``sha1`` is git's id of the content, which the client compares for regular files."""
    path = storage.blob_path(sha256)
    size = path.stat().st_size
    sha1 = hashlib.sha1(b"blob %d\0" % size)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            sha1.update(chunk)
    return {"sha256": sha256, "size": size, "lfs": lfs, "sha1": sha1.hexdigest()}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---- JSON views the client parses (ModelInfo, RepoFile/RepoFolder) ------------------------------------------------
def parse_card(text: str) -> dict[str, Any]:
    """The YAML header of a README.md (``{}`` without one); ValueError when it is not valid YAML mapping."""
    import yaml

    match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not match:
        return {}
    try:
        data = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"invalid YAML in README.md metadata: {err}") from err
    if not isinstance(data, dict):
        raise ValueError("README.md metadata must be a YAML mapping")
    return data


def tree_entry(path: str, entry: dict[str, Any]) -> dict[str, Any]:
    """A file as ``/tree`` and ``/paths-info`` list it: ``oid`` is git's id (of the pointer, for LFS files)."""
    item: dict[str, Any] = {"type": "file", "path": path, "size": entry["size"], "oid": entry["sha1"]}
    if entry["lfs"]:
        pointer = lfs_pointer(entry["sha256"], entry["size"])
        item["oid"] = git_blob_sha1(pointer)
        item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": len(pointer)}
    return item


def tree_entries(files: dict[str, dict], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """Files and folders under ``prefix`` (direct children unless ``recursive``), folders first like the Hub."""
    if prefix and prefix in files:
        return [tree_entry(prefix, files[prefix])]
    start = f"{prefix}/" if prefix else ""
    inside = {p: e for p, e in files.items() if p.startswith(start)}
    if prefix and not inside:
        raise HubError(404, f"Entry not found: {prefix}", "EntryNotFound")
    folders: dict[str, list[str]] = {}
    listed = []
    for path, entry in sorted(inside.items()):
        parts = path[len(start):].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            folders.setdefault(start + "/".join(parts[:depth]), []).append(entry["sha1"])
        if recursive or len(parts) == 1:
            listed.append(tree_entry(path, entry))
    dirs = [{"type": "directory", "path": path, "size": 0,
             "oid": hashlib.sha1("".join(sorted(oids)).encode()).hexdigest()} for path, oids in sorted(folders.items())]
    return dirs + listed


def info_payload(storage: Storage, meta: dict[str, Any], commit: dict[str, Any]) -> dict[str, Any]:
    """``/api/<type>s/<id>[/revision/<rev>]``: what ModelInfo/DatasetInfo read, with card metadata when present."""
    files = commit["files"]
    card: dict[str, Any] = {}
    if "README.md" in files:
        try:
            card = parse_card(storage.blob_path(files["README.md"]["sha256"]).read_text(errors="replace"))
        except ValueError:
            card = {}
    siblings = []
    for path, entry in sorted(files.items()):
        item = tree_entry(path, entry)
        lfs = item.get("lfs")
        siblings.append({"rfilename": path, "size": entry["size"], "blobId": item["oid"],
                         **({"lfs": {"sha256": lfs["oid"], "size": lfs["size"], "pointerSize": lfs["pointerSize"]}}
                            if lfs else {})})
    payload = {"_id": meta["id"], "id": meta["id"], "author": meta["id"].split("/")[0], "sha": commit["id"],
               "private": meta["private"], "gated": False, "disabled": False, "downloads": 0, "likes": 0,
               "createdAt": meta["createdAt"], "lastModified": commit["date"], "tags": card.get("tags") or [],
               "cardData": card or None, "siblings": siblings,
               "usedStorage": sum(e["size"] for e in files.values())}
    if meta["type"] == "model":
        payload.update({"pipeline_tag": card.get("pipeline_tag"), "library_name": card.get("library_name"),
                        "model-index": card.get("model-index")})
    return payload
