"""Released weights: ``create_model(name, pretrained=True)`` against a local HTTP server, the cache, hashes, offline
use, and the training setting ``backbone_weights`` (auto / none / path). Nothing here touches the internet."""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

import densevision.models.cyclemlp as cyclemlp_family
import densevision.models.hrnet as hrnet_family
from densevision.errors import CheckpointError
from densevision.models import create_model, list_models
from densevision.models.pretrained import (
    SHAPE_FREE_KWARGS,
    backbone_weights,
    fetch_weights,
    setting_file,
    url_cache_path,
    weights_location,
)
from densevision.models.registry import get_pretrained_cfg

NAME = "cyclemlp_b1"
TINY = dict(layers=(1, 1, 2, 1), embed_dims=(8, 16, 24, 32), mlp_ratios=(2, 2, 2, 2))
FILE = "CycleMLP_tiny.pth"
HRNET_TINY = dict(width=4, stage1_blocks=1, stage1_planes=8, num_modules=(1, 2, 1), num_blocks=(1, 1, 1))


class Server:
    """A static file server on 127.0.0.1 (its own thread) that records the paths requested."""

    def __init__(self, root: Path) -> None:
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weights(tmp_path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a tiny CycleMLP, saved as ``served/FILE``."""
    torch.manual_seed(1)
    state = create_model(NAME, **TINY).state_dict()
    (tmp_path / "served").mkdir()
    torch.save(state, tmp_path / "served" / FILE)
    return state


@pytest.fixture
def server(tmp_path: Path, weights: dict) -> Iterator[Server]:
    srv = Server(tmp_path / "served")
    yield srv
    srv.close()


@pytest.fixture
def online(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Downloads allowed (the suite sets DENSEVISION_OFFLINE=1), torch hub's cache under ``tmp_path``."""
    monkeypatch.delenv("DENSEVISION_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def serve_as(monkeypatch: pytest.MonkeyPatch, url: str, **extra: str) -> None:
    """Make the CycleMLP variants name ``url`` (and ``extra`` keys) as their weights."""
    original = cyclemlp_family._pretrained_cfg
    monkeypatch.setattr(cyclemlp_family, "_pretrained_cfg",
                        lambda name, num_classes: {**original(name, num_classes), "url": url, **extra})
    monkeypatch.setitem(cyclemlp_family.default_cfgs, NAME, cyclemlp_family._pretrained_cfg(NAME, 1000))


def assert_same(model: torch.nn.Module, state: dict[str, torch.Tensor], skip: tuple[str, ...] = ()) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own and not key.startswith(skip):
            assert torch.equal(own[key], value), key


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_then_cache_hit(server: Server, online: Path, weights: dict, monkeypatch) -> None:
    serve_as(monkeypatch, server.url(FILE))
    model = create_model(NAME, pretrained=True, **TINY)
    assert_same(model, weights)
    assert (online / FILE).is_file() and url_cache_path(server.url(FILE)) == online / FILE
    assert [p.name for p in online.iterdir()] == [FILE]  # no temporary file left
    again = create_model(NAME, pretrained=True, **TINY)
    assert_same(again, weights)
    assert server.requests == [f"/{FILE}"]


def test_features_and_other_classes_load_the_same_weights(server: Server, online: Path, weights: dict,
                                                          monkeypatch) -> None:
    serve_as(monkeypatch, server.url(FILE))
    features = create_model(NAME, pretrained=True, features_only=True, **TINY)
    assert_same(features, weights)
    assert not any(k.startswith("head.") for k in features.state_dict())
    classifier = create_model(NAME, pretrained=True, num_classes=3, **TINY)
    assert_same(classifier, weights, skip=("head.",))
    assert classifier.get_classifier().out_features == 3
    with pytest.raises(CheckpointError, match="shape mismatch"):  # a file path keeps the strict check
        create_model(NAME, pretrained=online / FILE, num_classes=3, **TINY)


def test_timm_create_model_loads_them_too(server: Server, online: Path, weights: dict, monkeypatch) -> None:
    serve_as(monkeypatch, server.url(FILE))
    assert_same(timm.create_model(NAME, pretrained=True, **TINY), weights)


def test_hash_checked(server: Server, online: Path, weights: dict, tmp_path: Path, monkeypatch) -> None:
    digest = hashlib.sha256((tmp_path / "served" / FILE).read_bytes()).hexdigest()
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "1" * 8
    serve_as(monkeypatch, server.url(FILE), file_hash=wrong)
    with pytest.raises(CheckpointError) as exc:
        create_model(NAME, pretrained=True, **TINY)
    text = one_line(exc)
    assert "sha256" in text and server.url(FILE) in text and "not kept" in text
    assert not online.exists() or not any(online.iterdir())
    serve_as(monkeypatch, server.url(FILE), file_hash=digest[:8])
    assert_same(create_model(NAME, pretrained=True, **TINY), weights)


def test_unreachable_url_is_one_line(online: Path, monkeypatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}/{FILE}"
    serve_as(monkeypatch, url)
    with pytest.raises(CheckpointError) as exc:
        create_model(NAME, pretrained=True, **TINY)
    text = one_line(exc)
    assert url in text and 'pretrained="path/to/file.pth"' in text
    assert not online.exists() or not any(online.iterdir())


@pytest.mark.parametrize("env", ["DENSEVISION_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_fails_fast_without_network(server: Server, online: Path, monkeypatch, env: str) -> None:
    serve_as(monkeypatch, server.url(FILE))
    monkeypatch.setenv(env, "1")
    with pytest.raises(CheckpointError) as exc:
        create_model(NAME, pretrained=True, **TINY)
    text = one_line(exc)
    assert server.url(FILE) in text and f"{env}=1" in text and "pretrained=" in text
    assert server.requests == []


def test_offline_uses_the_cache(server: Server, online: Path, weights: dict, monkeypatch) -> None:
    serve_as(monkeypatch, server.url(FILE))
    create_model(NAME, pretrained=True, **TINY)
    monkeypatch.setenv("DENSEVISION_OFFLINE", "1")
    assert_same(create_model(NAME, pretrained=True, **TINY), weights)
    assert len(server.requests) == 1


def fake_hub_cache(root: Path, repo_id: str, state: dict[str, torch.Tensor]) -> Path:
    """``state`` as ``model.safetensors`` of ``repo_id`` in a Hugging Face cache laid out under ``root``."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, snapshot / "model.safetensors")
    return snapshot / "model.safetensors"


def test_hub_weights_from_the_hugging_face_cache(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    state = create_model("hrnet_w18_small", **HRNET_TINY).state_dict()
    repo_id = get_pretrained_cfg("hrnet_w18_small")["hf_hub_id"]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as exc:  # offline (the suite's setting) and not cached
        create_model("hrnet_w18_small", pretrained=True, **HRNET_TINY)
    assert f"hf-hub:{repo_id}" in one_line(exc) and "DENSEVISION_OFFLINE=1" in str(exc.value)
    fake_hub_cache(tmp_path / "hub", repo_id, state)
    assert_same(create_model("hrnet_w18_small", pretrained=True, **HRNET_TINY), state)
    body = create_model("hrnet_w18_small", pretrained=True, features_only=True, **HRNET_TINY)
    assert_same(body, state)


class FakeHub(http.server.BaseHTTPRequestHandler):
    """The Hub's answers for the files of ``root/<repo id>/``: ``/<repo id>/resolve/main/<file>`` redirects to a
    storage host (``cdn``: ``/cdn/...``, GET only, as signed URLs are) with the headers the Hub client reads; 404 for
    files not there."""

    root: Path
    requests: list[str]
    cdn: str

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self.reply()

    def do_GET(self) -> None:  # noqa: N802
        self.reply()

    def reply(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        stored = self.path.startswith("/cdn/")
        repo, _, filename = self.path.removeprefix("/cdn").lstrip("/").partition("/resolve/main/")
        path = self.root / repo / filename
        if not path.is_file():
            self.answer(404, {"X-Error-Code": "EntryNotFound"})
        elif stored and self.command == "HEAD":
            self.answer(403)
        elif stored:
            self.answer(200, body=path.read_bytes())
        else:
            data = path.read_bytes()
            self.answer(302, {"Location": f"{self.cdn}/cdn{self.path}", "X-Repo-Commit": "0" * 40,
                              "X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                              "X-Linked-Size": str(len(data))})

    def answer(self, code: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


HUB_SCRIPT = f"""
import sys, torch, densevision
model = densevision.create_model("hrnet_w18_small", pretrained=True, **{HRNET_TINY!r})
expected = torch.load(sys.argv[1])
assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
print("loaded")
"""


def test_hub_download_into_the_hugging_face_cache(tmp_path: Path) -> None:
    """A Hub repo holding ``pytorch_model.bin`` only (no ``model.safetensors``): downloaded once into the Hugging
    Face cache (a fresh process sets ``HF_ENDPOINT`` to a local fake Hub), then read from there."""
    repo_id = get_pretrained_cfg("hrnet_w18_small")["hf_hub_id"]
    (tmp_path / "hub_files" / repo_id).mkdir(parents=True)
    torch.save(create_model("hrnet_w18_small", **HRNET_TINY).state_dict(), tmp_path / "hub_files" / repo_id /
               "pytorch_model.bin")
    handler = type("Hub", (FakeHub,), {"root": tmp_path / "hub_files", "requests": []})
    servers = [http.server.ThreadingHTTPServer((host, 0), handler) for host in ("127.0.0.1", "127.0.0.2")]
    httpd, storage = servers
    handler.cdn = f"http://127.0.0.2:{storage.server_port}"
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{httpd.server_port}", "DENSEVISION_OFFLINE": "0",
           "HF_HUB_CACHE": str(tmp_path / "hf_cache"), "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("HF_HUB_OFFLINE", None)
    try:
        for _ in range(2):
            run = subprocess.run([sys.executable, "-c", HUB_SCRIPT, str(tmp_path / "hub_files" / repo_id /
                                                                         "pytorch_model.bin")],
                                 env=env, capture_output=True, text=True, timeout=300)
            assert run.returncode == 0 and "loaded" in run.stdout, run.stderr
    finally:
        for srv in servers:
            srv.shutdown()
            srv.server_close()
    gets = [r for r in handler.requests if r.startswith("GET") and "/resolve/" in r]
    assert gets == [f"GET /cdn/{repo_id}/resolve/main/pytorch_model.bin"]
    assert f"HEAD /{repo_id}/resolve/main/model.safetensors" in handler.requests
    assert list((tmp_path / "hf_cache").glob(f"models--timm--{repo_id.split('/')[1]}/snapshots/*/pytorch_model.bin"))


def test_unreachable_hub_is_one_quick_line(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("DENSEVISION_OFFLINE")
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(CheckpointError) as exc:
        fetch_weights({"hf_hub_id": "timm/nothing.here"}, "x")
    text = one_line(exc)
    assert "hf-hub:timm/nothing.here" in text and endpoint in text and 'pretrained="path/to/file.pth"' in text


def test_no_known_location_says_how_to_load_a_file() -> None:
    with pytest.raises(CheckpointError, match=r'asmlp_tiny: no download location .*pretrained="path/to/file.pth"'):
        create_model("asmlp_tiny", pretrained=True, embed_dim=8, depths=(1, 1, 1, 1))


def test_pretrained_false_or_none_leaves_the_initialisation(monkeypatch) -> None:
    serve_as(monkeypatch, "http://127.0.0.1:1/never")
    for value in (False, None):
        torch.manual_seed(0)
        model = create_model(NAME, pretrained=value, **TINY)
        torch.manual_seed(0)
        assert_same(model, create_model(NAME, **TINY).state_dict())


@pytest.mark.parametrize("name", list_models(kind=None))
def test_every_variant_names_its_weights(name: str) -> None:
    cfg = get_pretrained_cfg(name)
    location = weights_location(cfg)
    if name.startswith(("asmlp", "pose_hrnet")):  # released as share links only: no download location
        assert location is None
    elif name.startswith("cyclemlp"):
        assert location == f"https://github.com/ShoufaChen/CycleMLP/releases/download/v0.1/CycleMLP_B{name[-1]}.pth"
    else:  # timm hosts the same weights under the same key names
        tag = cfg["hf_hub_id"].removeprefix("timm/")
        assert tag.split(".")[0] == name and tag in timm.list_pretrained(name + ".*")
        assert timm.models.get_pretrained_cfg(tag).hf_hub_id == cfg["hf_hub_id"]
    if name.startswith("hrnet"):  # the official weights, not timm's default Gluon / augmented ones
        assert cfg["hf_hub_id"].endswith(".ms_in1k")


def test_built_models_carry_the_location() -> None:
    for name in ("hrnet_w18_small", "swin_tiny_patch4_window7_224", "vit_tiny_patch16_224", "cyclemlp_b1"):
        expected = weights_location(get_pretrained_cfg(name))
        for features_only in (False, True):
            with torch.device("meta"):
                model = create_model(name, features_only=features_only)
            assert weights_location(model.pretrained_cfg) == expected


def test_fetch_weights_offline_cached_url_needs_no_server(online: Path, monkeypatch) -> None:
    url = f"http://127.0.0.1:{closed_port()}/cached.pth"
    online.mkdir(parents=True)
    torch.save({}, online / "cached.pth")
    monkeypatch.setenv("DENSEVISION_OFFLINE", "1")
    assert fetch_weights({"url": url}, "x") == online / "cached.pth"


# ----------------------------------------------------------------------------------- the training setting


def test_setting_none_path_and_builder_default(tmp_path: Path, capsys) -> None:
    assert backbone_weights(NAME, None) is None and capsys.readouterr().err == ""
    assert backbone_weights(NAME, "none") is None
    assert capsys.readouterr().err.strip() == f"backbone {NAME}: training from scratch (backbone weights: none)"
    assert backbone_weights(NAME, tmp_path / "w.pth") == str(tmp_path / "w.pth")
    assert capsys.readouterr().err.strip() == f"backbone {NAME}: weights from {tmp_path / 'w.pth'}"
    assert [setting_file(s) for s in ("auto", "none", None, "a.pth")] == [None, None, None, "a.pth"]


def test_auto_offline_without_cache_trains_from_scratch(online: Path, monkeypatch, capsys) -> None:
    serve_as(monkeypatch, "http://127.0.0.1:1/never.pth")
    monkeypatch.setenv("DENSEVISION_OFFLINE", "1")
    assert backbone_weights(NAME, "auto") is None
    line = capsys.readouterr().err.strip()
    assert "\n" not in line and line.startswith(f"backbone {NAME}: training from scratch (")
    assert "DENSEVISION_OFFLINE=1" in line and "backbone weights: auto" in line


def test_auto_downloads_then_uses_the_cache(server: Server, online: Path, monkeypatch, capsys) -> None:
    serve_as(monkeypatch, server.url(FILE))
    assert backbone_weights(NAME, "auto") == str(online / FILE)
    assert f"ImageNet weights {server.url(FILE)}" in capsys.readouterr().err
    monkeypatch.setenv("DENSEVISION_OFFLINE", "1")
    assert backbone_weights(NAME, "auto", overrides={"drop_path_rate": 0.1}) == str(online / FILE)
    assert len(server.requests) == 1


def test_auto_unreachable_trains_from_scratch(online: Path, monkeypatch, capsys) -> None:
    url = f"http://127.0.0.1:{closed_port()}/{FILE}"
    serve_as(monkeypatch, url)
    assert backbone_weights(NAME, "auto") is None
    assert f"cannot download {url}" in capsys.readouterr().err


def test_auto_skips_what_cannot_fit(server: Server, online: Path, monkeypatch, capsys) -> None:
    serve_as(monkeypatch, server.url(FILE))
    assert backbone_weights(NAME, "auto", overrides={"embed_dims": (8, 16, 24, 32)}) is None
    assert "do not fit the overrides embed_dims" in capsys.readouterr().err
    assert backbone_weights("timm:resnet18", "auto") is None
    assert "no ImageNet weights are known" in capsys.readouterr().err
    assert backbone_weights("asmlp_tiny", "auto") is None
    assert server.requests == [] and {"drop_path_rate", "img_size"} <= SHAPE_FREE_KWARGS


def test_hrnet_cfg_is_used_by_auto(tmp_path: Path, monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    cached = fake_hub_cache(tmp_path / "hub", hrnet_family.default_cfgs["hrnet_w32"]["hf_hub_id"], {})
    assert backbone_weights("hrnet_w32", "auto") == str(cached)
