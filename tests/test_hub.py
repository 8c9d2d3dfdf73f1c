"""``load(name, download=True)`` through huggingface_hub, against a fake hub on 127.0.0.1.

The fake answers what huggingface_hub 2.4's ``snapshot_download`` asks of a model repo:
``GET /api/models/{repo}/revision/main`` for the commit sha, ``GET /api/models/{repo}/tree/{sha}``
for the file list (which ``allow_patterns`` filters), then ``HEAD`` (commit, etag, size) and
``GET`` of ``/{repo}/resolve/{sha}/{file}`` for each file kept. Each load runs in a fresh
interpreter, because huggingface_hub reads ``HF_ENDPOINT`` when it is imported.
"""

import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import torch

from minimodal.clip import CLIP, CLIPConfig
from minimodal.convert import save_hf_checkpoint
from minimodal.text import TextConfig
from minimodal.vit import VisionConfig

ROOT = Path(__file__).resolve().parents[1]
REPO, BIN_ONLY, MISSING = "someorg/tiny-clip", "someorg/bin-only", "someorg/missing"
SHA = "0123456789abcdef0123456789abcdef01234567"
PICKLE = re.compile(r"\.(bin|pt|pth|pkl|pickle|ckpt)$")
# A pickle the repos list but no one may fetch: loading it would run code from the network.
PICKLE_BYTES = b"a pickle; never to be downloaded"


class FakeHub:
    """Model repos ({repo id: {file name: bytes}}) served on a loopback port, every request recorded."""

    def __init__(self, repos: dict[str, dict[str, bytes]]):
        self.repos = repos
        self.requests: list[tuple[str, str]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 5  # a client that stops talking cannot hold a thread

            def do_GET(self):
                self.reply(*hub.answer(self.command, self.path))

            def do_HEAD(self):
                status, headers, _ = hub.answer(self.command, self.path)
                self.reply(status, headers, b"")

            def reply(self, status: int, headers: dict, body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler

    def answer(self, method: str, url: str) -> tuple[int, dict, bytes]:
        """The status, headers and body the hub gives ``method url``."""
        path = urlsplit(url).path
        self.requests.append((method, path))
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/(revision|tree)/([^/]+)", path):
            repo, kind, _ = match.groups()
            if repo not in self.repos:
                return 404, {"X-Error-Code": "RepoNotFound"}, b""
            return self.json(self.info(repo) if kind == "revision" else self.tree(repo))
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            repo, _, name = match.groups()
            if name not in self.repos.get(repo, {}):
                return 404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": SHA}, b""
            data = self.repos[repo][name]
            return 200, {"X-Repo-Commit": SHA, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                         "Content-Length": str(len(data))}, data
        return 404, {}, b""

    def info(self, repo: str) -> dict:
        return {"id": repo, "sha": SHA, "siblings": [{"rfilename": name} for name in self.repos[repo]]}

    def tree(self, repo: str) -> list[dict]:
        return [{"type": "file", "path": name, "size": len(data),
                 "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                for name, data in self.repos[repo].items()]

    @staticmethod
    def json(value) -> tuple[int, dict, bytes]:
        body = json.dumps(value).encode()
        return 200, {"Content-Type": "application/json", "Content-Length": str(len(body))}, body

    def fetched(self) -> set[str]:
        """The files whose bytes were asked for."""
        return {path.rsplit("/", 1)[-1] for method, path in self.requests if method == "GET" and "/resolve/" in path}

    def pickles_requested(self) -> list[str]:
        return [path for _, path in self.requests if PICKLE.search(path)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[dict[str, bytes], dict[str, torch.Tensor]]:
    """A tiny CLIP checkpoint's files in transformers' format, and its state dict.

    Every parameter is drawn at random, so that a weight left at its initial value fails the comparison.
    """
    torch.manual_seed(0)
    model = CLIP(CLIPConfig(
        vision=VisionConfig(image_size=32, patch_size=8, width=32, layers=1, heads=2, embed_dim=16),
        text=TextConfig(vocab_size=100, context_length=16, width=32, layers=1, heads=2, embed_dim=16,
                        eot_token_id=99)))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter))
    folder = save_hf_checkpoint(model, tmp_path_factory.mktemp("tiny"))
    files = {name: (folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    return files, {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture
def hub(tiny):
    files, _ = tiny
    repos = {REPO: {**files, "pytorch_model.bin": PICKLE_BYTES},
             BIN_ONLY: {"config.json": files["config.json"], "pytorch_model.bin": PICKLE_BYTES}}
    with FakeHub(repos) as hub:
        yield hub


def hub_env(hub: FakeHub, cache: Path, **extra: str) -> dict[str, str]:
    """This environment with huggingface_hub pointed at ``hub`` and a cache of its own, and no proxy, token or
    offline switch inherited; short timeouts keep a stuck request from stalling the suite."""
    inherited = {k: v for k, v in os.environ.items()
                 if not k.upper().endswith("_PROXY") and not k.startswith(("HF_", "HUGGINGFACE", "TRANSFORMERS_"))}
    return {**inherited, "HF_ENDPOINT": hub.url, "HF_HOME": str(cache / "home"), "HF_HUB_CACHE": str(cache / "hub"),
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_ETAG_TIMEOUT": "5", "HF_HUB_DOWNLOAD_TIMEOUT": "5",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "NO_PROXY": "127.0.0.1", **extra}


LOAD = """
import json, sys, torch
from minimodal.clip_api import load_model
name, download, out = sys.argv[1], sys.argv[2] == "download", sys.argv[3]
try:
    torch.save(load_model(name, download=download).state_dict(), out)
    print(json.dumps({"loaded": True}))
except OSError as err:
    print(json.dumps({"error": [c.__name__ for c in type(err).__mro__], "message": str(err)}))
"""


def run_python(code: str, hub: FakeHub, cache: Path, *args: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter against ``hub``; the JSON object it printed last."""
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=hub_env(hub, cache, **env),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def load(hub: FakeHub, cache: Path, name: str, download: bool, **env: str) -> dict:
    """load_model(name, download) in a fresh interpreter: {"state": its state dict} or the OSError it raised."""
    out = cache / "state.pt"
    result = run_python(LOAD, hub, cache, name, "download" if download else "no", str(out), **env)
    if result.get("loaded"):
        return {"state": torch.load(out, weights_only=True)}
    return result


def assert_same_state(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), f"{key} differs from the served checkpoint"


def test_download_fetches_the_checkpoint_into_the_hf_cache(hub, tiny, tmp_path):
    """Through the server the weights arrive intact, in the hub's cache layout; a later load needs no server."""
    result = load(hub, tmp_path, REPO, download=True)
    assert "state" in result, result
    assert_same_state(result["state"], tiny[1])
    snapshot = tmp_path / "hub" / "models--someorg--tiny-clip" / "snapshots" / SHA
    assert (snapshot / "config.json").is_file() and (snapshot / "model.safetensors").is_file()
    assert hub.fetched() == {"config.json", "model.safetensors"}
    assert hub.pickles_requested() == [], "allow_patterns let a pickle through"

    hub.requests.clear()
    again = load(hub, tmp_path, REPO, download=False)
    assert "state" in again, again
    assert_same_state(again["state"], tiny[1])
    assert hub.requests == []


def test_without_download_nothing_is_requested(hub, tmp_path):
    result = load(hub, tmp_path, REPO, download=False)
    assert "FileNotFoundError" in result.get("error", []), result
    assert "download=True" in result["message"]
    assert hub.requests == []


def test_a_repo_without_safetensors_is_refused_without_fetching_its_pickle(hub, tmp_path):
    result = load(hub, tmp_path, BIN_ONLY, download=True)
    assert "FileNotFoundError" in result.get("error", []), result
    assert BIN_ONLY in result["message"] and "model.safetensors" in result["message"]
    assert hub.fetched() == {"config.json"}
    assert hub.pickles_requested() == []


def test_an_unknown_repo_is_an_error_naming_it(hub, tmp_path):
    result = load(hub, tmp_path, MISSING, download=True)
    assert "FileNotFoundError" in result.get("error", []), result
    assert MISSING in result["message"]
    assert any(MISSING in path for _, path in hub.requests), "the hub was never asked"


def test_offline_mode_is_honoured(hub, tmp_path):
    result = load(hub, tmp_path, REPO, download=True, HF_HUB_OFFLINE="1")
    assert "OSError" in result.get("error", []), result
    assert REPO in result["message"] and "HF_HUB_OFFLINE" in result["message"]
    assert hub.requests == []


def test_import_never_downloads(hub, tmp_path):
    code = "import json, minimodal, minimodal.clip_api; minimodal.load; print(json.dumps({}))"
    assert run_python(code, hub, tmp_path) == {}
    assert hub.requests == []
