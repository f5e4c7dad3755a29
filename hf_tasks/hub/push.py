"""Push a finished run folder to the Hub as ONE commit of an explicit allow-list of files.

What goes up is what a user needs to load, reproduce and judge the model (weights as safetensors, configs, the
processor, the card, results and plots) and never what only a resumed run needs (``checkpoints/``, optimizer,
scheduler and RNG states, pickles). The token comes from huggingface_hub's usual places (``HF_TOKEN``, the cached
login); it is never printed nor written anywhere, and Hub failures become one ``HfTasksError`` line.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import re
from pathlib import Path
from typing import Iterator

from hf_tasks.errors import HfTasksError

logger = logging.getLogger(__name__)

ALLOWED = ("*.safetensors", "model.safetensors.index.json", "config.json", "preprocessor_config.json",
           "tokenizer*.json", "tokenizer.model", "added_tokens.json", "vocab*", "merges.txt",
           "special_tokens_map.json", "processor_config.json", "generation_config.json", "README.md",
           "train_config.yaml", "results.json", "log_history.json", "comparison.json", "*.png")
DENIED = ("*.bin", "*.pkl", "*.pickle", "*.pt", "*.pth", "*.ckpt", "optimizer*", "scheduler*", "rng_state*",
          "random_states*", "trainer_state.json")
SHARD_RE = re.compile(r"^model-\d+-of-\d+\.safetensors$")
REPO_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
EXPORT_MANIFEST = "export_manifest.json"


def push_run(output_dir: str | Path, repo_id: str, private: bool = True, revision: str | None = None,
             create_pr: bool = False, commit_message: str | None = None, endpoint: str | None = None,
             token: str | None = None):
    """Create the repo (and branch) if needed, re-render the card for ``repo_id``, upload in one commit.

    ``endpoint``/``token`` default to huggingface_hub's own (``HF_ENDPOINT``, ``HF_TOKEN``, the cached login).
    Returns huggingface_hub's ``CommitInfo`` (``.oid``, ``.repo_url``, ``.pr_url``).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    from hf_tasks.cards.render import write_card

    output_dir = Path(output_dir)
    check_push_args(output_dir, repo_id)
    token = token or require_token()
    write_card(output_dir, model_id=repo_id)  # local and can fail: before anything is created on the Hub
    files = files_to_push(output_dir)
    api = HfApi(endpoint=endpoint, token=token)
    with hub_errors(repo_id, token):
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision and revision != "main" and not revision.startswith("refs/pr/"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=output_dir / name) for name in files]
    message = commit_message or f"Upload {output_dir.name} with hf-tasks"
    with hub_errors(repo_id, token):
        info = api.create_commit(repo_id, operations, commit_message=message, revision=revision,
                                 create_pr=create_pr)
    logger.info("pushed %d files to %s (commit %s)", len(files), info.repo_url, info.oid)
    return info


def check_push_args(output_dir: Path, repo_id: str) -> None:
    """Fail before any network call: a bad repo id, an unfinished run or a folder with no loadable weights."""
    from hf_tasks.engine.run_folder import check_finished

    if not REPO_ID_RE.match(repo_id) or ".." in repo_id:
        raise HfTasksError(f"--repo-id {repo_id!r} must look like 'namespace/name' (e.g. your-user/shapes-cnn)")
    if not output_dir.is_dir():
        raise HfTasksError(f"{output_dir} is not a folder")
    check_finished(output_dir, "push")
    shards = [p for p in output_dir.glob("*.safetensors") if SHARD_RE.match(p.name)]
    if not (output_dir / "model.safetensors").is_file() and not shards:
        raise HfTasksError(f"{output_dir} has no model.safetensors (nor sharded model-0000x-of-0000y.safetensors): "
                           "nothing loadable to push; push the output folder of a finished run")


def require_token() -> str:
    from huggingface_hub import get_token

    token = get_token()
    if not token:
        raise HfTasksError("no Hugging Face token found: set HF_TOKEN or run `hf auth login` (a write token)")
    return token


def files_to_push(output_dir: str | Path) -> list[str]:
    """Top-level files on the allow-list and off the deny-list, plus ultralytics ``.pt`` exports listed on purpose."""
    output_dir = Path(output_dir)
    chosen = [p.name for p in sorted(output_dir.iterdir()) if p.is_file() and is_allowed(p.name)]
    return chosen + [name for name in exported_pt_files(output_dir) if name not in chosen]


def is_allowed(name: str) -> bool:
    def matches(patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)

    return matches(ALLOWED) and not matches(DENIED)


def exported_pt_files(output_dir: Path) -> list[str]:
    """The ``"pt"`` entry of ``export_manifest.json``: a ``.pt`` the user exported to share, never a checkpoint."""
    manifest = output_dir / EXPORT_MANIFEST
    if not manifest.is_file():
        return []
    try:
        listed = json.loads(manifest.read_text()).get("pt") or []
    except (json.JSONDecodeError, AttributeError) as err:
        raise HfTasksError(f"{manifest} is not a JSON object: {err}") from None
    names = [listed] if isinstance(listed, str) else list(listed)
    root = output_dir.resolve()
    for name in names:
        path = (output_dir / name).resolve()
        if path.suffix != ".pt" or not path.is_file() or root not in path.parents:
            raise HfTasksError(f"{manifest}: 'pt' entry {name!r} is not a .pt file inside {output_dir}")
        if path.relative_to(root).parts[0] == "checkpoints":
            raise HfTasksError(f"{manifest}: {name!r} is a training checkpoint; export the model first")
    return [(output_dir / name).resolve().relative_to(root).as_posix() for name in names]


@contextlib.contextmanager
def hub_errors(repo_id: str, token: str) -> Iterator[None]:
    """Turn the client's HTTP, network and upload errors into one message (with the token scrubbed, to be sure)."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        yield
    except RepositoryNotFoundError as err:
        raise _error(f"the Hub refused access to {repo_id} (repository not found or token without access)", err,
                     token) from None
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        hint = " (check that your token has write access)" if status in (401, 403) else ""
        raise _error(f"the Hub answered {status} for {repo_id}{hint}", err, token) from None
    except (RuntimeError, ValueError, OSError) as err:
        cause = f" ({_last_line(err.__cause__)})" if err.__cause__ else ""
        raise _error(f"pushing to {repo_id} failed, nothing was committed: {_last_line(err)}{cause} "
                     "Retry the push", None, token) from None
    except Exception as err:
        if type(err).__module__.split(".")[0] not in ("httpx", "httpx2", "httpcore"):
            raise
        raise _error(f"cannot reach the Hub for {repo_id}", err, token) from None


def _error(summary: str, err: BaseException | None, token: str) -> HfTasksError:
    text = f"{summary}: {_last_line(err)}" if err is not None else summary
    return HfTasksError(text.replace(token, "***"))


def _last_line(err: BaseException) -> str:
    """The informative end of a (multi-line) client error, prefixed by its type."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__


def add_push_parser(sub) -> None:
    p = sub.add_parser("push", help="push a finished run folder to the Hub in one commit")
    p.add_argument("output_dir")
    p.add_argument("--repo-id", required=True, help="namespace/name on the Hub")
    p.add_argument("--public", action="store_true", help="create the repo public (default: private)")
    p.add_argument("--revision", help="branch to push to (created from main if new)")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of pushing to the branch")
    p.add_argument("--commit-message")


def add_hub_parser(sub) -> None:
    p = sub.add_parser("hub", help="a local Hub-compatible endpoint (for offline pushes and downloads)")
    serve = p.add_subparsers(dest="hub_command", required=True).add_parser("serve", help="serve in the foreground")
    serve.add_argument("--root", required=True, help="folder holding the repos")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--tokens-file", help="accept only the tokens listed in this file (default: any token)")


def run_push(args) -> int:
    info = push_run(args.output_dir, args.repo_id, private=not args.public, revision=args.revision,
                    create_pr=args.create_pr, commit_message=args.commit_message)
    print(f"pushed {args.output_dir} to {info.repo_url} (commit {info.oid})")
    if info.pr_url:
        print(f"pull request: {info.pr_url}")
    return 0


def run_hub(args) -> int:
    from hf_tasks.hub.server import run_forever

    tokens = None
    if args.tokens_file:
        tokens = [line.strip() for line in Path(args.tokens_file).read_text().splitlines() if line.strip()]
    return run_forever(args.root, host=args.host, port=args.port, tokens=tokens)
