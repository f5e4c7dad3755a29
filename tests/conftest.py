"""Test-wide settings: nothing reaches the network, and shared fixtures build small data once."""

from __future__ import annotations

import os
import socket
import sys

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_EVALUATE_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_XET": "1",
    "YOLO_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}
os.environ.update(OFFLINE_ENV)

import pytest  # noqa: E402

TOKEN = "hf_test_secret_token_123"  # the local hub accepts it; tests check it never leaks

_real_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
        return _real_connect(self, address)
    raise OSError(f"tests must not reach the network (tried {address!r})")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    """In-process runs each build an Accelerator; accelerate keeps process-wide singletons to reset."""
    yield
    if "accelerate.state" in sys.modules:
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The server on a free loopback port, and this process's client pointed at it (online, with a token)."""
    import huggingface_hub.constants as constants

    from hf_tasks.hub.server import serve

    with serve(tmp_path_factory.mktemp("hub_root")) as handle, pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("hf_home")
        env = {"HF_ENDPOINT": handle.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
               "TRANSFORMERS_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_TOKEN": TOKEN, "HF_HOME": str(home),
               "HF_HUB_CACHE": str(home / "hub")}
        for key, value in env.items():
            mp.setenv(key, value)
        mp.setattr(constants, "ENDPOINT", handle.url)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        handle.env = env
        yield handle


@pytest.fixture(scope="session")
def shapes_classification(tmp_path_factory):
    """A small, visually distinct 3-class shapes dataset in save_to_disk format."""
    from tests.helpers import build_dataset

    out = tmp_path_factory.mktemp("data") / "shapes_cls"
    build_dataset(["shapes", "--task", "classification", "--num-images", "90", "--image-size", "32",
                   "--seed", "0", "--out", str(out)])
    return out


def pytest_configure(config):
    sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope="session")
def fault_data(tmp_path_factory):
    """The tiniest shapes dataset of each task, for the fault-injection tests (``tests.faults``)."""
    from tests.faults import build_fault_datasets

    return build_fault_datasets(tmp_path_factory.mktemp("fault_data"))
