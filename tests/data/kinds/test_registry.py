"""The dataset kind registry (sdl.data.kinds.registry)."""

from __future__ import annotations

import pytest

from sdl.config.typed import ParamsError
from sdl.data.kinds import KINDS, check_options
from sdl.data.kinds.registry import sample_evenly


def test_sample_evenly() -> None:
    assert sample_evenly(list(range(10)), None) == list(range(10))
    picked = sample_evenly(list(range(10)), 3)
    assert len(picked) == 3 and picked[0] == 0 and picked[-1] == 9
    assert len(set(sample_evenly(list(range(100)), 7))) == 7


def test_every_kind_registers_itself_with_its_options() -> None:
    assert set(KINDS) == {"embedded", "nus_wide", "coco", "open_images"}
    for name, kind in KINDS.items():
        assert kind.name == name and callable(kind.acquire)
    assert check_options("coco", {"max_images": 3}, "download.x").max_images == 3


def test_options_are_checked_naming_the_key() -> None:
    with pytest.raises(ParamsError, match=r"download.x.options: unknown key\(s\) \['mirror'\]"):
        check_options("coco", {"mirror": "http://example.org"}, "download.x")
    with pytest.raises(ParamsError, match="download.x.kind: unknown dataset kind 'imagenet'"):
        check_options("imagenet", {}, "download.x")
    with pytest.raises(ParamsError, match="workers must be >= 1"):
        check_options("open_images", {"workers": 0}, "download.x")
