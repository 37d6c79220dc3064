"""Epsilon's head (sdl.models.epsilon_head, paper eq. 1-8) against a slow float64 loop of the
equations (tests/helpers/epsilon_reference.py), for every open choice the options expose."""

from __future__ import annotations

import pytest
import torch

from sdl.config.epsilon import EpsilonOptions
from sdl.models.epsilon_head import EpsilonHead, GlobalForwardPropagation, GroupPromptsAggregation
from tests.helpers import epsilon_reference as ref

ROWS, DIM, WORDVEC = 3, 8, 16


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_torch_thread: None) -> None:
    """Tiny tensors: one thread."""


def options(**changes) -> EpsilonOptions:
    return EpsilonOptions(**{"encoder_heads": 2, "dropout": 0.0, **changes})


@pytest.mark.parametrize(
    ("layers", "enc_heads", "gpa_heads", "axis"),
    [(1, 2, 1, "tokens"), (2, 4, 2, "tokens"), (1, 2, 2, "prompts")],
)
def test_gpa_matches_eq_1_to_3(layers, enc_heads, gpa_heads, axis):
    torch.manual_seed(0)
    config = options(encoder_layers=layers, encoder_heads=enc_heads, gpa_heads=gpa_heads, gpa_softmax_axis=axis)
    gpa = GroupPromptsAggregation(config, ROWS, DIM).eval()
    tokens = torch.randn(2, 5, DIM)
    expected = ref.gpa(tokens, gpa)
    with torch.no_grad():  # eval + no_grad: PyTorch's fused encoder fast path
        got = gpa(tokens)
    assert got.shape == (2, ROWS, DIM)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)
    trained = gpa.train()(tokens)  # the autograd path (dropout 0)
    torch.testing.assert_close(trained.detach().double(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("axis", ["tokens", "channels", "all"])
@pytest.mark.parametrize(("encoding", "share"), [("linear", False), ("identity", True)])
def test_gfp_matches_eq_4_to_6(axis, encoding, share):
    torch.manual_seed(1)
    config = options(gfp_softmax_axis=axis, gfp_block_encoding=encoding, gfp_share_mlp=share, gfp_hidden=6)
    gfp = GlobalForwardPropagation(config, ROWS, DIM)
    tokens = torch.randn(2, 5, DIM)
    with torch.no_grad():
        got = gfp(tokens)
    assert got.shape == (2, ROWS, DIM)
    torch.testing.assert_close(got.double(), ref.gfp(tokens, gfp), atol=1e-5, rtol=1e-5)


def test_gfp_tokens_axis_is_a_convex_pooling_per_channel():
    """eq. 5 over tokens makes eq. 6 a weighted mean per channel: with identity blocks, every
    GoS entry lies between the channel's smallest and largest token value."""
    torch.manual_seed(3)
    gfp = GlobalForwardPropagation(options(gfp_block_encoding="identity"), ROWS, DIM)
    tokens = torch.randn(4, 7, DIM)
    with torch.no_grad():
        pooled = gfp(tokens)
    low, high = tokens.min(dim=1).values[:, None], tokens.max(dim=1).values[:, None]
    assert bool(((pooled >= low - 1e-6) & (pooled <= high + 1e-6)).all())


@pytest.mark.parametrize("modules", ["both", "gpa", "gfp"])
def test_fuse_and_whole_head_match_eq_7_and_8(modules):
    torch.manual_seed(2)
    head = EpsilonHead(options(modules=modules), ROWS, WORDVEC, DIM).eval()
    tokens = torch.randn(2, 5, DIM)
    assert (head.gpa is None) == (modules == "gfp") and (head.gfp is None) == (modules == "gpa")
    assert head.fuser.in_features == (2 * DIM if modules == "both" else DIM)
    with torch.no_grad():
        gos = head.gfp(tokens) if head.gfp is not None else None
        grs = head.gpa(tokens) if head.gpa is not None else None
        fused, out = head.fuse(gos, grs), head(tokens)
    as64 = lambda x: None if x is None else ref.d64(x)  # noqa: E731
    torch.testing.assert_close(fused.double(), ref.fuse(as64(gos), as64(grs), head.fuser), atol=1e-5, rtol=1e-5)
    ref_gos = ref.gfp(tokens, head.gfp) if head.gfp is not None else None
    ref_grs = ref.gpa(tokens, head.gpa) if head.gpa is not None else None
    expected = ref.fuse(ref_gos, ref_grs, head.fuser)  # the whole head, eq. 1-8
    assert out.shape == (2, ROWS, WORDVEC)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)


def test_global_semantics_come_first_in_the_concatenation():
    """eq. 7: GS = Concat(GoS, GrS): the fuser's first D inputs read GoS."""
    torch.manual_seed(4)
    head = EpsilonHead(options(), ROWS, WORDVEC, DIM).eval()
    gos, grs = torch.randn(1, ROWS, DIM), torch.zeros(1, ROWS, DIM)
    with torch.no_grad():
        head.fuser.weight[:, DIM:] = 0.0
        head.fuser.bias.zero_()
        fused = head.fuse(gos, grs)
    torch.testing.assert_close(fused, gos @ head.fuser.weight[:, :DIM].t())


def test_bad_widths_and_shapes_are_named():
    with pytest.raises(ValueError, match="divisible by epsilon.encoder_heads"):
        GroupPromptsAggregation(options(encoder_heads=3), ROWS, DIM)
    head = EpsilonHead(options(), ROWS, WORDVEC, DIM)
    with pytest.raises(ValueError, match=r"tokens must be \(B, N, 8\)"):
        head(torch.randn(2, 5, DIM + 1))
