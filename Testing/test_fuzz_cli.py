"""Fuzzing the command line's options: any value of any option ends either in the project's one-line error
(exit 2) or in work started with options that are valid, never in a traceback; and a damaged model config is
either refused naming its key or yields a consistent config."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from DiffuX2CTLib.cli import MAX_SEED, main
from DiffuX2CTLib.model.config import ConfigError, ModelConfig

FUZZ = settings(max_examples=60, deadline=None)
SAMPLE = Path(__file__).resolve().parent.parent / "Resources" / "SampleData"


class _Reached(Exception):
    """The command got past its checks and started its work."""


VALUES = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        ["", "0", "1", "-1", "1e23", "nan", "inf", "-inf", "abc", "3.5", "phantom:7", "phantom:x", "phantoms", "  4 "]
    ),
    st.text(max_size=12),
)
OPTIONS = {
    "reconstruct": [
        "--steps",
        "--seed",
        "--samples",
        "--sampler",
        "--method",
        "--device",
        "--out",
        "--preview",
        "--guidance",
    ],
    "phantom": ["--seed", "--size", "--spacing", "--region", "--implant", "--out"],
    "synthesize": ["--sdd", "--sid", "--pixels", "--pixel-spacing", "--out"],
    "evaluate": ["--cases", "--steps", "--samples", "--seed", "--device", "--out", "--guidance"],
    "train": [
        "--steps",
        "--batch",
        "--lr",
        "--grid",
        "--checkpoint-every",
        "--seed",
        "--residual-scale",
        "--data",
        "--time-limit",
    ],
}
REQUIRED = {
    "reconstruct": [
        "--ap",
        str(SAMPLE / "ap.nrrd"),
        "--lateral",
        str(SAMPLE / "lateral.nrrd"),
        "--out",
        "{tmp}/ct.nrrd",
    ],
    "phantom": ["--seed", "1", "--out", "{tmp}/ct.nrrd"],
    "synthesize": ["--ct", str(SAMPLE / "ct.nrrd"), "--out", "{tmp}/pair"],
    "evaluate": ["--set", "phantoms", "--out", "{tmp}/evaluation"],
    "train": ["--out", "{tmp}/run"],
}


def _stop(*args, **kwargs):
    raise _Reached


def _run(argv: list[str]) -> tuple[str, int | None, str]:
    """('reached' | 'refused' | 'usage', exit code, stderr) of one command line, with every command's work stubbed."""
    stderr = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.redirect_stderr(stderr),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        patch.setattr("DiffuX2CTLib.inference.reconstruct.reconstruct_pair", _stop)
        patch.setattr("DiffuX2CTLib.cli.VolumeGrid", _stop)
        patch.setattr("DiffuX2CTLib.imaging.image_io.read_ct", _stop)
        patch.setattr("DiffuX2CTLib.evaluation.evaluate.evaluate_set", _stop)
        patch.setattr("DiffuX2CTLib.training.trainer.train", _stop)
        try:
            code = main(argv)
        except _Reached:
            return "reached", None, stderr.getvalue()
        except SystemExit as exit_info:
            return "usage", exit_info.code, stderr.getvalue()
    return "refused", code, stderr.getvalue()


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


@FUZZ
@given(command=st.sampled_from(sorted(OPTIONS)), data=st.data())
def test_any_option_values_are_refused_in_one_line_or_valid(tmp_path_factory, command, data):
    tmp = tmp_path_factory.mktemp("fuzz")
    chosen = data.draw(st.lists(st.sampled_from(OPTIONS[command]), min_size=1, max_size=4, unique=True))
    values = {option: data.draw(VALUES) for option in chosen}
    argv = [command, *[a.format(tmp=tmp) for a in REQUIRED[command]]]
    for option, value in values.items():
        argv += [f"{option}={value}"]  # '=' keeps values that start with '-' attached to their option
    outcome, code, err = _run(argv)
    assert "Traceback" not in err
    if outcome == "usage":
        assert code == 2 and err.strip().splitlines()[-1].startswith(f"diffux2ct {command}: error: argument ")
        return
    if outcome == "refused":
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"diffux2ct {command}: error: ")
        return
    for option in ("--steps", "--samples", "--cases", "--batch", "--checkpoint-every", "--pixels", "--size"):
        if option in values:
            assert (_whole(values[option]) or 0) >= 1, (option, values[option])
    if "--seed" in values:
        assert 0 <= _whole(values["--seed"]) <= MAX_SEED
    for option in ("--sdd", "--sid", "--pixel-spacing", "--spacing", "--lr", "--residual-scale"):
        if option in values:
            assert 0 < float(values[option]) < float("inf"), (option, values[option])
    assert not list(tmp.iterdir())  # nothing written before the work


CONFIG_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.one_of(st.integers(-4, 300), st.booleans()), max_size=5),
)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(ModelConfig().to_dict())), CONFIG_VALUES, min_size=1, max_size=3))
def test_any_damaged_model_config_is_refused_naming_a_key_or_is_consistent(changes):
    data = {**ModelConfig().to_dict(), **changes}
    try:
        config = ModelConfig.from_dict(data)
    except ConfigError as error:
        assert any(str(error).startswith(key) for key in data), str(error)
        return
    assert config.hu_low < config.hu_high and 1 <= config.default_steps <= config.timesteps
    assert config.source_to_detector_mm > config.source_to_isocenter_mm > 0 and config.residual_scale > 0
    assert (
        len(config.unet_channels) == len(config.attention_levels)
        and config.grid_size % 2 ** (len(config.unet_channels) - 1) == 0
    )
