"""Where ``hf-tasks demo`` publishes: a local Hub endpoint it serves itself, or (``--hub-dir``) a plain folder.

Both expose ``publish(run_dir, repo_name) -> reference`` (what ``from_pretrained`` takes: a repo id or a path),
``client_env()`` (the environment of a user's fresh process that loads it) and ``close()``.
"""

from __future__ import annotations

import contextlib
import secrets
import shutil
from pathlib import Path
from typing import Iterator

from hf_tasks.demo.jobs import OFFLINE_ENV


class ServedHub:
    """The local Hub endpoint (``hf_tasks.hub.server``) on a free loopback port, storing repos under ``root``."""

    def __init__(self, root: Path, namespace: str):
        from hf_tasks.hub.server import serve

        self.token = "hf_demo_" + secrets.token_hex(16)  # this server accepts only it
        self.namespace, self.home = namespace, root.parent / "hf_home"
        self.handle = serve(root, tokens=[self.token])
        self.where = f"local Hub at {self.handle.url} (repos stored in {root})"

    def publish(self, run_dir: Path, repo_name: str) -> str:
        from hf_tasks.hub.push import push_run

        repo_id = f"{self.namespace}/{repo_name}"
        with local_endpoint_client():
            push_run(run_dir, repo_id, endpoint=self.handle.url, token=self.token)
        return repo_id

    def client_env(self) -> dict[str, str]:
        """A user's fresh process: online against this endpoint, with an empty cache of its own."""
        shutil.rmtree(self.home, ignore_errors=True)
        return {"HF_ENDPOINT": self.handle.url, "HF_TOKEN": self.token, "HF_HUB_DISABLE_XET": "1",
                "HF_HOME": str(self.home), "HF_HUB_CACHE": str(self.home / "hub"), "HF_HUB_OFFLINE": "0",
                "TRANSFORMERS_OFFLINE": "0", "HF_DATASETS_OFFLINE": "1"}

    def close(self) -> None:
        self.handle.stop()


@contextlib.contextmanager
def local_endpoint_client() -> Iterator[None]:
    """This process's client as ``HF_HUB_DISABLE_XET=1 HF_HUB_OFFLINE=0`` would make it, for one push.

    The local endpoint speaks the plain LFS protocol (not Xet), and it is on loopback, so an offline setting (right
    for everything else the demo does) must not stop it. huggingface_hub reads both variables once, at import, into
    ``constants``, and looks the flags up there at request time.
    """
    from huggingface_hub import constants

    before = constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE
    constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = True, False
    try:
        yield
    finally:
        constants.HF_HUB_DISABLE_XET, constants.HF_HUB_OFFLINE = before


class FolderHub:
    """``--hub-dir``: each repo is a folder ``DIR/namespace/name`` holding exactly what a push would upload."""

    def __init__(self, root: Path, namespace: str):
        self.root, self.namespace = root, namespace
        self.where = f"folder {root}"

    def publish(self, run_dir: Path, repo_name: str) -> str:
        from hf_tasks.cards.render import write_card
        from hf_tasks.hub.push import files_to_push

        dest = self.root / self.namespace / repo_name
        write_card(run_dir, model_id=str(dest))
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for name in files_to_push(run_dir):
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(run_dir / name, tmp / name)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.replace(dest)
        return str(dest)

    def client_env(self) -> dict[str, str]:
        return dict(OFFLINE_ENV)

    def close(self) -> None:
        pass
