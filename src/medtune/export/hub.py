"""--push-to-hub: the exported folder uploaded with huggingface_hub, or one line saying why not (no retries: the
folder is complete on disk, and `hf upload` sends it later)."""

from __future__ import annotations

from pathlib import Path

from medtune.errors import ConfigError, MedtuneError

HUB_FAILED_EXIT = 1  # the export is done; only the upload failed (not a mistake in the command line)


class HubUnavailable(MedtuneError):
    """The hub could not be reached, or refused the upload."""


def check_hub_allowed(repo: str) -> None:
    """Offline mode (HF_HUB_OFFLINE=1) is known before anything is merged: say so at once."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise ConfigError(
            f"--push-to-hub {repo}: HF_HUB_OFFLINE is set, so the hub cannot be reached; unset it, or export without "
            "--push-to-hub and upload the folder later with `hf upload`."
        )


def push_folder(folder: Path, repo: str, private: bool = False) -> str:
    """Create the repo (if new) and upload every file of the folder in one commit; returns the commit's URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HTTPError  # the base error of the HTTP client the hub library itself uses

    api = HfApi()
    try:
        api.create_repo(repo, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo, folder_path=str(folder), commit_message="medtune export")
    except (OSError, HTTPError) as err:  # HfHubHTTPError, a missing token and network errors are all here
        reason = (str(err).strip().splitlines() or [""])[0]
        raise HubUnavailable(
            f"--push-to-hub {repo}: the upload failed ({type(err).__name__}: {reason}); the export is complete in "
            f"{folder}: upload it later with `hf upload {repo} {folder}`."
        ) from err
    return commit.commit_url
