"""``cage push``: one commit to the Hugging Face Hub with everything a CAGE repository needs.

The upload is staged as a folder first (the exact folder ``--dry-run DIR`` writes): the model folder's
safetensors weights, ``config.json`` (with ``auto_map`` and any pipeline registration),
``preprocessor_config.json``, the flat ``*_cage.py`` code files they name, the rendered ``README.md`` model
card, and the metrics JSON when given. ``HfApi.upload_folder`` then sends it as a single commit.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .card import load_metrics, render_model_card

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
UPLOAD_SUFFIXES = (".safetensors", ".json", ".py")
METRICS_FILE = "metrics.json"


class HubPushError(RuntimeError):
    """A push that cannot be done; the message is one line saying why and what to do."""


def _referenced_modules(config: dict[str, Any]) -> set[str]:
    """Module names (``configuration_cage`` ...) that ``auto_map`` and ``custom_pipelines`` point to."""
    names = set()
    for value in (config.get("auto_map") or {}).values():
        for reference in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(reference, str):
                names.add(reference.split("--")[-1].rsplit(".", 1)[0])
    for task in (config.get("custom_pipelines") or {}).values():
        if isinstance(task, dict) and isinstance(task.get("impl"), str):
            names.add(task["impl"].rsplit(".", 1)[0])
    return names


def check_repo_id(repo_id: str) -> None:
    """Raise ``HubPushError`` unless ``repo_id`` is a valid ``namespace/name`` Hub repository id."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubPushError(f"invalid --repo-id {repo_id!r}: {str(error).splitlines()[0]}") from error
    if "/" not in repo_id:
        raise HubPushError(f"invalid --repo-id {repo_id!r}: give it as namespace/name (e.g. cage/maxvit-va)")


def check_model_folder(model_dir: str | Path) -> list[Path]:
    """Check that ``model_dir`` is a complete, pickle-free model folder; return the files to upload.

    Raises:
        HubPushError: missing folder or files, pickle files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``, ``.pkl``),
            no safetensors weights, no ``auto_map``, or a code file that ``auto_map``/``custom_pipelines`` names
            but the folder lacks.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise HubPushError(f"{model_dir} is not a folder")
    pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise HubPushError(
            f"{model_dir} holds pickle files ({', '.join(pickles)}); cage push uploads safetensors only: "
            "remove them, or save the model with cage.model_folder.save_model_folder"
        )
    for name in ("config.json", "preprocessor_config.json"):
        if not (model_dir / name).is_file():
            raise HubPushError(f"{model_dir} has no {name}; is it a model folder written by cage?")
    if not list(model_dir.glob("*.safetensors")):
        raise HubPushError(f"{model_dir} has no .safetensors weights")
    missing = []
    for name in ("config.json", "preprocessor_config.json"):
        try:
            config = json.loads((model_dir / name).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise HubPushError(f"{model_dir / name} is not valid JSON ({error})") from error
        if not config.get("auto_map"):
            raise HubPushError(f"{model_dir / name} has no auto_map: the repo would not load with trust_remote_code")
        missing += [f"{m}.py" for m in _referenced_modules(config) if not (model_dir / f"{m}.py").is_file()]
    if missing:
        raise HubPushError(f"{model_dir} lacks code files its configs name: {', '.join(sorted(set(missing)))}")
    return sorted(p for p in model_dir.iterdir() if p.is_file() and p.suffix in UPLOAD_SUFFIXES)


def stage_model_folder(
    model_dir: str | Path,
    stage_dir: str | Path,
    repo_id: str,
    metrics: str | Path | None = None,
    license: str | None = None,
    reproduction: str | None = None,
    extra_files: list[str | Path] = (),
) -> Path:
    """Write the folder that ``cage push`` uploads to ``stage_dir`` (created; must be absent or empty).

    Args:
        model_dir: a model folder written by ``save_model_folder``.
        stage_dir: where to write the upload.
        repo_id: the target repository, ``namespace/name`` (used by the card's snippets).
        metrics: a ``cage evaluate`` metrics JSON: its numbers go into the card and it is uploaded as
            ``metrics.json``.
        license: Hub license id for the card (default: see ``cage.hub.card.default_license``).
        reproduction: Markdown of the card's "Reproduction" section (``cage reproduce``).
        extra_files: more files copied into ``stage_dir`` under their names (e.g. the card's plot); a name
            that clashes with a staged file is refused.

    Returns:
        ``stage_dir``, holding the model files, ``README.md``, optionally ``metrics.json`` and ``extra_files``.

    Raises:
        HubPushError: see [`check_model_folder`]; a non-empty ``stage_dir``; an invalid metrics file.
    """
    check_repo_id(repo_id)
    files = check_model_folder(model_dir)
    try:
        metrics_data = load_metrics(metrics) if metrics is not None else None
    except (FileNotFoundError, ValueError) as error:
        raise HubPushError(str(error)) from error
    card = render_model_card(model_dir, repo_id, metrics_data, license=license, reproduction=reproduction)
    extra_files = [Path(f) for f in extra_files]
    taken = {f.name for f in files} | {"README.md", METRICS_FILE}
    for extra in extra_files:
        if not extra.is_file():
            raise HubPushError(f"{extra} does not exist")
        if extra.name in taken or extra.suffix in PICKLE_SUFFIXES:
            raise HubPushError(f"{extra} would replace a staged file or is a pickle; rename it")
    stage_dir = Path(stage_dir)
    if stage_dir.exists() and (not stage_dir.is_dir() or any(stage_dir.iterdir())):
        raise HubPushError(f"{stage_dir} exists and is not an empty folder; choose a new --dry-run folder")
    stage_dir.mkdir(parents=True, exist_ok=True)
    for file in files:
        shutil.copy2(file, stage_dir / file.name)
    if metrics is not None:
        shutil.copyfile(metrics, stage_dir / METRICS_FILE)
    for extra in extra_files:
        shutil.copyfile(extra, stage_dir / extra.name)
    card.save(stage_dir / "README.md")
    return stage_dir


def upload_staged_folder(
    stage_dir: str | Path,
    repo_id: str,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a folder written by [`stage_model_folder`] to ``repo_id`` as it is, in one commit; return the
    commit URL. The repository (and branch ``revision``) is created if needed.

    Raises:
        HubPushError: offline mode, authentication, repository or network problems, as one line; a folder
            without ``README.md`` or with pickle files.
    """
    from huggingface_hub import HfApi, is_offline_mode
    from huggingface_hub.errors import OfflineModeIsEnabled

    stage_dir = Path(stage_dir)
    if is_offline_mode():
        raise HubPushError(hub_error_message(OfflineModeIsEnabled("HF_HUB_OFFLINE=1"), repo_id))
    check_repo_id(repo_id)
    if not (stage_dir / "README.md").is_file():
        raise HubPushError(f"{stage_dir} is not a staged upload (no README.md); stage it with stage_model_folder")
    check_model_folder(stage_dir)
    api = HfApi(token=token)
    try:
        api.whoami()
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=stage_dir, revision=revision,
            commit_message=commit_message or "Upload CAGE model with cage reproduce",
        )  # fmt: skip
    except Exception as error:  # every Hub/network failure becomes one line
        raise HubPushError(hub_error_message(error, repo_id, revision)) from error
    return commit.commit_url


def hub_error_message(error: Exception, repo_id: str, revision: str | None = None) -> str:
    """One line explaining a Hub failure (auth, missing repo or revision, network, offline mode)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE=1 is set: pushing needs the network (unset it, or use --dry-run DIR)"
    if isinstance(error, LocalTokenNotFoundError):
        return "not logged in to the Hugging Face Hub: run `hf auth login` or set HF_TOKEN to a write token"
    if isinstance(error, RevisionNotFoundError):
        return f"revision {revision!r} of {repo_id} does not exist and could not be created"
    if isinstance(error, RepositoryNotFoundError):
        return f"repository {repo_id} does not exist or your token cannot see it"
    if isinstance(error, HfHubHTTPError):
        status = getattr(error.response, "status_code", None)
        if status == 401:
            return "the Hub rejected your token (401): run `hf auth login` or set HF_TOKEN to a valid write token"
        if status == 403:
            return f"your token may not write to {repo_id} (403): use a write token with access to that namespace"
        server = (getattr(error, "server_message", None) or str(error)).splitlines()[0]
        return f"the Hub refused the request ({status}): {server}"
    if isinstance(error, (OSError, ConnectionError)) or type(error).__module__.startswith(("httpx", "httpcore")):
        return f"cannot reach the Hub at {constants.ENDPOINT}: {str(error).splitlines()[0] if str(error) else type(error).__name__}"
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def push_model_folder(
    model_dir: str | Path,
    repo_id: str,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    metrics: str | Path | None = None,
    license: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a model folder, its card and metrics to ``repo_id`` in one commit; return the commit URL.

    The repository is created if needed (``private`` applies then), and the branch ``revision`` too.
    Offline mode (``HF_HUB_OFFLINE=1``) and authentication are checked before anything is staged or sent.

    Raises:
        HubPushError: offline mode, authentication, repository, network or folder problems, as one line.
    """
    from huggingface_hub import HfApi, is_offline_mode
    from huggingface_hub.errors import OfflineModeIsEnabled

    if is_offline_mode():
        raise HubPushError(hub_error_message(OfflineModeIsEnabled("HF_HUB_OFFLINE=1"), repo_id))
    check_repo_id(repo_id)
    check_model_folder(model_dir)  # fail on the folder before touching the network
    api = HfApi(token=token)
    try:
        api.whoami()
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision not in (None, "main"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="cage-push-") as tmp:
            stage = stage_model_folder(model_dir, Path(tmp) / "upload", repo_id, metrics=metrics, license=license)
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=stage,
                revision=revision,
                commit_message=commit_message or "Upload CAGE model with cage push",
            )
    except HubPushError:
        raise
    except Exception as error:  # every Hub/network failure becomes one line
        raise HubPushError(hub_error_message(error, repo_id, revision)) from error
    return commit.commit_url


__all__ = [
    "HubPushError",
    "check_model_folder",
    "hub_error_message",
    "push_model_folder",
    "stage_model_folder",
    "upload_staged_folder",
]
