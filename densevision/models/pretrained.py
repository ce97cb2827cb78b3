"""Released weights of zoo variants: where they live, the local cache, downloads, and the training setting that
picks a backbone's starting weights.

A variant's ``pretrained_cfg`` names its weights with timm's keys: ``hf_hub_id`` (a Hugging Face Hub repo, e.g.
``timm/hrnet_w18_small_v2.ms_in1k``, kept in the Hugging Face cache) or ``url`` (kept in torch hub's
``get_dir()/checkpoints``, like ``torch.hub.load_state_dict_from_url``), plus ``file_hash`` (a sha256 prefix of the
``url`` file) where known. A file is downloaded once, under a temporary name renamed when complete (and, with a
hash, verified first). ``DENSEVISION_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``) allows cached files only.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from http.client import HTTPException
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlparse
from urllib.request import HTTPRedirectHandler, Request, build_opener

import torch.hub

from densevision.errors import CheckpointError
from densevision.models.bodies import TIMM_PREFIX
from densevision.models.registry import get_pretrained_cfg

OFFLINE_ENVS = ("DENSEVISION_OFFLINE", "HF_HUB_OFFLINE")
AUTO = "auto"
NONE = "none"
# timm's weight files in a Hugging Face Hub repo, in the order timm tries them.
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
HUB_TIMEOUT_S = 10.0
# Backbone arguments that leave every parameter shape unchanged (ViT position embeddings and Swin bias tables are
# resampled on load), so ImageNet weights still apply.
SHAPE_FREE_KWARGS = frozenset({
    "drop_rate", "drop_path_rate", "attn_drop_rate", "proj_drop_rate", "pos_drop_rate", "img_size", "window_size",
})
LOCAL_FILE_HINT = 'pass a local copy with pretrained="path/to/file.pth"'
_LOGGER = logging.getLogger(__name__)


class WeightsUnavailable(CheckpointError):
    """Released weights cannot be had here (offline and not cached, or the download failed); ``reason`` says why."""

    def __init__(self, name: str, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{name}: {reason}; {LOCAL_FILE_HINT}")


def offline_setting() -> str | None:
    """``"DENSEVISION_OFFLINE=1"`` (or the ``HF_HUB_OFFLINE`` one) when set to 1/true/yes/on, else None."""
    for env in OFFLINE_ENVS:
        value = os.environ.get(env, "").strip()
        if value.upper() in {"1", "TRUE", "YES", "ON"}:
            return f"{env}={value}"
    return None


def weights_location(cfg: Mapping[str, Any]) -> str | None:
    """Where a ``pretrained_cfg``'s weights live: ``hf-hub:<repo>`` or the URL; None when it names none."""
    if cfg.get("hf_hub_id"):
        return f"hf-hub:{cfg['hf_hub_id']}"
    return cfg.get("url") or None


def url_cache_path(url: str) -> Path:
    """The cache file of ``url``: ``torch.hub.get_dir()/checkpoints/<file name of the URL>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def cached_weights(cfg: Mapping[str, Any]) -> Path | None:
    """The cached file of a ``pretrained_cfg``'s weights; None when nothing is cached or no location is known."""
    if cfg.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in _hub_files(cfg):
            found = try_to_load_from_cache(cfg["hf_hub_id"], filename)
            if isinstance(found, str):
                return Path(found)
        return None
    if cfg.get("url"):
        path = url_cache_path(cfg["url"])
        return path if path.is_file() else None
    return None


def fetch_weights(cfg: Mapping[str, Any], name: str) -> Path:
    """The local file of the weights a ``pretrained_cfg`` names (variant ``name``): cached, else downloaded.

    Raises :class:`WeightsUnavailable` (offline and not cached, or the download failed) or ``CheckpointError`` (no
    location known, hash mismatch), each a one-line message naming the URL or hub id.
    """
    location = weights_location(cfg)
    if location is None:
        raise CheckpointError(f"{name}: no download location is known for its weights; {LOCAL_FILE_HINT}")
    cached = cached_weights(cfg)
    if cached is not None:
        return cached
    offline = offline_setting()
    if offline:
        raise WeightsUnavailable(name, f"{location} is not cached and {offline} forbids downloading")
    if cfg.get("hf_hub_id"):
        return _download_from_hub(cfg["hf_hub_id"], _hub_files(cfg), name)
    return _download_url(cfg["url"], cfg.get("file_hash"), name)


def _hub_files(cfg: Mapping[str, Any]) -> tuple[str, ...]:
    return (cfg["hf_hub_filename"],) if cfg.get("hf_hub_filename") else HUB_FILES


def _download_url(url: str, file_hash: str | None, name: str) -> Path:
    """``url`` into its cache file, with a progress bar: written under a temporary name, its sha256 prefix checked,
    then renamed."""
    path = url_cache_path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, os.fspath(path), hash_prefix=file_hash, progress=True)
    except RuntimeError as exc:  # download_url_to_file's hash check; it removes the temporary file
        raise CheckpointError(f"{name}: the file downloaded from {url} fails its sha256 check ({_first_line(exc)}); "
                              "it was not kept") from None
    except (OSError, HTTPException, ValueError) as exc:  # urllib's URLError / HTTPError are OSErrors
        raise WeightsUnavailable(name, f"cannot download {url} ({_first_line(getattr(exc, 'reason', exc))})") from None
    return path


def _download_from_hub(repo_id: str, filenames: tuple[str, ...], name: str) -> Path:
    """The first of ``filenames`` the Hub repo ``repo_id`` holds, into the Hugging Face cache.

    One short HEAD request finds the file first: an unreachable Hub is one quick error (the Hub client itself
    retries a refused connection for half a minute, warning at each try). A redirect (to the storage holding the
    file, whose signed URLs answer GET only) is not followed: it says the file is there.
    """
    from huggingface_hub import constants, hf_hub_download

    opener = build_opener(_NoRedirect)
    for filename in filenames:
        url = f"{constants.ENDPOINT}/{repo_id}/resolve/main/{filename}"
        try:
            with opener.open(Request(url, method="HEAD", headers={"User-Agent": "densevision"}), timeout=HUB_TIMEOUT_S):
                pass
        except HTTPError as exc:
            if exc.code == 404:
                continue
            if not 300 <= exc.code < 400:
                raise WeightsUnavailable(name, f"cannot download hf-hub:{repo_id} ({url}: HTTP {exc.code})") from None
        except (OSError, HTTPException, ValueError) as exc:
            reason = f"{constants.ENDPOINT}: {_first_line(getattr(exc, 'reason', exc))}"
            raise WeightsUnavailable(name, f"cannot download hf-hub:{repo_id} ({reason})") from None
        try:
            return Path(hf_hub_download(repo_id, filename))
        except Exception as exc:  # the Hub client raises many types (connection, HTTP, validation)
            raise WeightsUnavailable(name, f"cannot download hf-hub:{repo_id} ({_first_line(exc)})") from None
    raise CheckpointError(f"{name}: hf-hub:{repo_id} holds none of {', '.join(filenames)}; {LOCAL_FILE_HINT}")


class _NoRedirect(HTTPRedirectHandler):
    """Redirects come back as ``HTTPError`` 3xx instead of being followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def setting_file(setting: str | os.PathLike | None) -> str | None:
    """The checkpoint file a backbone-weights setting names (None for ``"auto"``, ``"none"`` and None)."""
    return None if setting is None or os.fspath(setting) in (AUTO, NONE) else os.fspath(setting)


def backbone_weights(
    name: str,
    setting: str | os.PathLike | None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> str | None:
    """The checkpoint a training run starts the backbone ``name`` from; one line on stderr says which.

    ``setting``: ``"auto"`` (the ImageNet weights of the zoo variant ``name`` when cached or downloadable, else
    none), ``"none"`` (from scratch) or a checkpoint path; None is the builders' default (no weights, nothing
    printed). Under ``auto``, architecture ``overrides`` other than :data:`SHAPE_FREE_KWARGS` mean from scratch too
    (the weights would not fit), as does a ``timm:`` backbone (densevision knows no weights of those).
    """
    if setting is None:
        return None
    setting = os.fspath(setting)
    if setting == NONE:
        _say(f"backbone {name}: training from scratch (backbone weights: none)")
        return None
    if setting != AUTO:
        _say(f"backbone {name}: weights from {setting}")
        return setting
    changed = sorted(set(overrides or {}) - SHAPE_FREE_KWARGS)
    cfg = {} if name.startswith(TIMM_PREFIX) else get_pretrained_cfg(name)
    location = weights_location(cfg)
    if changed:
        reason = f"its ImageNet weights do not fit the overrides {', '.join(changed)}"
    elif location is None:
        reason = "no ImageNet weights are known for it"
    else:
        try:
            path = fetch_weights(cfg, name)
        except WeightsUnavailable as exc:
            reason = exc.reason
        else:
            _say(f"backbone {name}: ImageNet weights {location} ({path})")
            return os.fspath(path)
    _say(f"backbone {name}: training from scratch ({reason}; backbone weights: auto)")
    return None


def _say(line: str) -> None:
    """One line of the training log: on stderr from the main process, and logged (INFO) for the run's ``log.txt``."""
    _LOGGER.info(line)
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)
