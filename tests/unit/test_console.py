"""The default console is quiet about the libraries' own chatter, and $MEDTUNE_VERBOSE brings it back.

(The whole scripts' consoles: integration/test_evaluate_cli.py checks no W&B summary, advert, loading bar or httpx
request line reaches them.)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from medtune.config import QuantizationConfig
from medtune.console import (
    LOADING_BAR,
    REQUEST_LOGGERS,
    VERBOSE_ENV,
    quiet_request_logs,
)
from medtune.models import load_base_model
from medtune.tracking import console_settings


@pytest.fixture
def request_loggers() -> Iterator[list[logging.Logger]]:
    loggers = [logging.getLogger(name) for name in REQUEST_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
    yield loggers
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


def test_request_lines_are_off_unless_turned_up(request_loggers, monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    httpx, httpx2 = request_loggers
    httpx2.setLevel(logging.DEBUG)  # as `hydra.verbose=httpx2` sets it
    quiet_request_logs()
    assert (httpx.level, httpx2.level) == (logging.WARNING, logging.DEBUG)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    quiet_request_logs()
    assert all(logger.isEnabledFor(logging.INFO) for logger in request_loggers)


def test_wandb_notices_and_summary_follow_the_knob(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    assert (console_settings().quiet, console_settings().show_info) == (True, False)
    monkeypatch.setenv(VERBOSE_ENV, "1")
    assert (console_settings().quiet, console_settings().show_info) == (False, True)


def test_the_loading_bar_shows_only_when_verbose(tiny_models, monkeypatch, capsys):
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()  # bench_shapes, run in-process by its tests, turns every bar off
    hf_logging.enable_progress_bar()
    try:
        base = tiny_models["tiny_gptneox"]
        monkeypatch.delenv(VERBOSE_ENV, raising=False)
        load_base_model(base, QuantizationConfig())
        assert LOADING_BAR not in capsys.readouterr().err
        monkeypatch.setenv(VERBOSE_ENV, "1")
        load_base_model(base, QuantizationConfig())
        assert LOADING_BAR in capsys.readouterr().err
    finally:
        if not was_on:
            hf_logging.disable_progress_bar()
