"""Keeping the model libraries' chatter out of the commands' output: transformers warns about a
missing torchvision on import, diffusers and transformers draw their own tqdm bars while
loading and saving weights, peft warns on every adapter after the first. None of it is for a
user of ``royalflow families``; our own rich progress bars and errors stay. Called once by the
families commands (``training/cli.py``) before any of those libraries is imported.
"""

from __future__ import annotations

import os
import sys
import warnings

# Settings the libraries read when they are imported (before that, setting them is enough).
QUIET_ENVIRONMENT = {
    "TRANSFORMERS_VERBOSITY": "error",
    "DIFFUSERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}
# Python warnings raised by the libraries at load time that say nothing to the user.
QUIET_WARNINGS = (
    r"Already found a `peft_config`",  # peft: several adapters on one UNet is what a family is
    r".*requires torchvision",
    r".*`resume_download` is deprecated",
)


def quiet_libraries(*, import_them: bool = False) -> None:
    """Silence the libraries. ``import_them``: import their logging modules now and set them
    (seconds: for the commands that load models anyway); otherwise the environment settings
    cover a later import, and libraries already imported are set directly."""
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    if import_them:  # diffusers' tqdm bars ignore the environment: only its function turns them off
        import diffusers.utils.logging  # noqa: F401
        import transformers.utils.logging  # noqa: F401
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    if "diffusers" in sys.modules:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
