"""What the local Hub's route modules share (``server``: app, auth, repo metadata, ``serve``; ``transfer``: commits,
LFS, downloads): the per-app ``Hub`` state with its fault plan, and the helpers that read the client's protocol.

Imported by both route modules and importing neither, so the dependencies go one way:
``server`` → ``transfer`` → ``protocol`` → ``storage``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from fastapi import Request

from hf_tasks.hub.storage import HubError, Storage

READ_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


@dataclass
class Faults:
    """Fault injection for tests: drop the connection (no response at all) while an LFS object is uploaded.

    PUTs are counted from when ``drop_lfs_put`` was called; the object of the ``nth`` PUT becomes the victim and
    its next ``times`` upload attempts are dropped (uploads of other objects go through). huggingface_hub retries a
    dropped PUT 5 times with 1+2+4+8+8 s of backoff, so ``times=6`` makes the push fail.
    """

    drop_at: int | None = None
    drop_times: int = 1
    puts_seen: int = 0
    dropped: int = 0
    victim: str | None = None

    def drop_lfs_put(self, nth: int = 1, times: int = 1) -> None:
        self.drop_at, self.drop_times, self.puts_seen, self.dropped, self.victim = nth, times, 0, 0, None

    def clear(self) -> None:
        self.drop_at, self.victim = None, None

    def should_drop(self, oid: str) -> bool:
        """Called once per upload PUT, on the event loop (no lock needed)."""
        self.puts_seen += 1
        if self.drop_at is not None and self.victim is None and self.puts_seen == self.drop_at:
            self.victim = oid
        drop = oid == self.victim and self.dropped < self.drop_times
        self.dropped += drop
        return drop


@dataclass
class Hub:
    """What every route needs: storage, who may write, fault plan, and the uvicorn server (to drop connections)."""

    storage: Storage
    tokens: set[str] | None = None
    user: str = "user"
    faults: Faults = field(default_factory=Faults)
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    server: Any = None

    def user_of(self, request, required: bool = False) -> str | None:
        """Any bearer token is accepted unless a token list is configured; None when anonymous."""
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        if token is None and not required:
            return None
        if token is None or (self.tokens is not None and token not in self.tokens):
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.user

    def readable(self, request, repo_type: str, repo_id: str) -> dict[str, Any]:
        meta = self.storage.load_repo(repo_type, repo_id)
        if meta is None or (meta["private"] and self.user_of(request) is None):
            raise HubError(404 if meta is None else 401, "Repository not found", "RepoNotFound")
        return meta

    def writable(self, request, repo_type: str, repo_id: str) -> tuple[dict[str, Any], str]:
        user = self.user_of(request, required=True)
        return self.storage.require_repo(repo_type, repo_id), user

    def sign(self, oid: str, size: int) -> str:
        return hmac.new(self.secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    async def drop_connection(self, request: Request) -> None:
        """Abort the TCP connection of this request so the client sees no response at all."""
        client = request.scope.get("client")
        connections = self.server.server_state.connections if self.server is not None else ()
        for conn in list(connections):
            if getattr(conn, "client", None) == tuple(client or ()):
                conn.transport.abort()
        while (await request.receive())["type"] != "http.disconnect":
            pass


def raw_segments(request: Request) -> list[str]:
    """Path segments as sent (``%2F`` inside a segment stays inside it), each unquoted."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    return [unquote(s) for s in raw.decode("latin-1").split("?", 1)[0].strip("/").split("/")]


def split_revision(segments: list[str]) -> tuple[str, list[str]]:
    """(revision, rest): the revision is one quoted segment, or ``refs/pr/N`` / ``refs/heads/x`` sent unquoted."""
    if not segments or not segments[0]:
        raise HubError(400, "missing revision")
    if segments[0] == "refs" and len(segments) >= 3 and segments[1] in ("pr", "heads"):
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


def repo_type_of(plural: str) -> str:
    if plural not in READ_TYPES:
        raise HubError(404, f"unknown repo type {plural!r}")
    return READ_TYPES[plural]


def base_url(request: Request) -> str:
    return str(request.base_url)


def json_response(payload: Any, status: int, media_type: str = "application/json"):
    from fastapi.responses import JSONResponse

    return JSONResponse(payload, status_code=status, media_type=media_type)
