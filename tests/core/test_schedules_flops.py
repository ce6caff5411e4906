"""LR decay and lambda warm-up at their boundary steps; the FLOP count."""

import pytest

from sae_core.flops import FLOPS_CONVENTION, flops_per_token, run_flops
from sae_core.schedules import lambda_factor, lr_factor


def test_lr_constant_then_linear_decay_over_last_20_percent():
    S = 1000  # decay window D = 200: steps 800..999
    assert lr_factor(0, S, 0.2) == 1.0
    assert lr_factor(799, S, 0.2) == 1.0
    assert lr_factor(800, S, 0.2) == 1.0
    assert lr_factor(801, S, 0.2) == pytest.approx(199 / 200)
    assert lr_factor(900, S, 0.2) == pytest.approx(0.5)
    assert lr_factor(999, S, 0.2) == pytest.approx(1 / 200)
    assert lr_factor(S, S, 0.2) == 0.0


def test_lambda_warmup_first_5_percent():
    S = 1000  # warm-up W = 50
    assert lambda_factor(0, S, 0.05) == 0.0
    assert lambda_factor(25, S, 0.05) == pytest.approx(0.5)
    assert lambda_factor(49, S, 0.05) == pytest.approx(49 / 50)
    assert lambda_factor(50, S, 0.05) == 1.0
    assert lambda_factor(999, S, 0.05) == 1.0


def test_lambda_warmup_over_all_of_training():
    S = 400
    assert lambda_factor(0, S, 1.0) == 0.0
    assert lambda_factor(200, S, 1.0) == pytest.approx(0.5)
    assert lambda_factor(399, S, 1.0) == pytest.approx(399 / 400)
    assert lambda_factor(S, S, 1.0) == 1.0


def test_disabled_schedules_are_constant():
    assert lr_factor(999, 1000, 0.0) == 1.0
    assert lambda_factor(0, 1000, 0.0) == 1.0


def test_flops_dense_sae():
    assert flops_per_token(64, 512) == 10 * 64 * 512
    assert flops_per_token(384, 4096, 768) == 4 * 384 * 4096 + 6 * 4096 * 768
    assert run_flops(64, 512, batch_size=512, steps=400) == 10 * 64 * 512 * 512 * 400
    assert FLOPS_CONVENTION == "sae-dense-4nm+6mo"
