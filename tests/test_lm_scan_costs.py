"""What a language-model scan costs per point: no copy of the logits, bounded batches (issue 26).

The next-token loss must not copy the shifted slice of the logits (as large as
the logits), the automatic batch must keep a batch's logits under a bound (the
scan's memory peak) while the MLP and CNN batches stay what they were, the
grid check's reading of the weights must not copy them, and the values stay
those of a plain loop.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import lossmap as lm
from lossmap.backends.torch import sizing
from lossmap.scan.plan import _largest_finite

pytestmark = pytest.mark.usefixtures("one_thread")

_VIEWS = {"view", "_unsafe_view", "slice", "select", "reshape", "as_strided", "expand",
          "alias", "detach", "t", "transpose", "unsqueeze", "squeeze"}


class _Written(TorchDispatchMode):
    """The sizes (numel) of every tensor an op writes that is not a view of its input."""

    def __init__(self):
        super().__init__()
        self.sizes: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name not in _VIEWS:
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor):
                    self.sizes.append((name, t.numel()))
        return out


def _old_causal_terms(logits: torch.Tensor, labels: torch.Tensor):
    """causal_lm_loss as it was: cross-entropy of the (copied) shifted slice."""
    lg, lb = logits[:, :-1], labels[:, 1:]
    v = F.cross_entropy(lg.reshape(-1, lg.shape[-1]), lb.reshape(-1), ignore_index=-100,
                        reduction="none").reshape(lb.shape)
    return v.double().sum(1), (lb != -100).double().sum(1)


def test_causal_lm_loss_writes_one_tensor_as_large_as_the_logits_and_the_same_values():
    """Old: the shifted slice copied, then log-softmax: two logits-sized tensors written."""
    g = torch.Generator().manual_seed(0)
    B, T, V = 3, 9, 1000
    logits = torch.randn(B, T, V, generator=g) * 4
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[1, 4:] = -100  # padding
    labels[2, 0] = -100
    with _Written() as seen:
        totals, counts = lm.metrics.causal_lm_loss(logits, {"labels": labels})
    large = [name for name, n in seen.sizes if n >= B * (T - 1) * V]
    assert len(large) == 1, large  # the log-softmax only
    ref_t, ref_c = _old_causal_terms(logits, labels)
    assert torch.equal(totals, ref_t)  # bit for bit: each row's value is its own
    assert torch.equal(counts, ref_c)


def test_causal_lm_loss_of_half_logits_and_one_token():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 5, 50, generator=g).to(torch.bfloat16)
    labels = torch.randint(0, 50, (2, 5), generator=g)
    totals, counts = lm.metrics.causal_lm_loss(logits, {"labels": labels})
    ref_t, ref_c = _old_causal_terms(logits.float(), labels)
    assert torch.equal(totals, ref_t) and torch.equal(counts, ref_c)
    totals, counts = lm.metrics.causal_lm_loss(logits[:, :1], {"labels": labels[:, :1]})
    assert totals.tolist() == [0.0, 0.0] and counts.tolist() == [0.0, 0.0]


class _TinyLM(nn.Module):
    """Embedding, then a vocabulary-wide head: logits (B, T, V) are the largest output."""

    def __init__(self, vocab: int, width: int = 8):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        return self.head(torch.tanh(self.emb(ids)))


def test_batch_rule_keeps_a_language_models_logits_under_the_cap():
    """Old: at least MIN_BATCH = 64 sequences per batch: 64 x 256 x 4000 floats, 262 MB."""
    vocab, tokens = 4000, 256
    model = _TinyLM(vocab).eval()
    X = torch.zeros(2, tokens, dtype=torch.long)
    batch = sizing.auto_batch_size(model, dict(model.state_dict()), X, torch.device("cpu"))
    per_sequence = tokens * vocab * 4
    cap = sizing.ACTIVATION_CAP * sizing.ACTIVATION_TARGET
    assert batch * per_sequence <= cap < 2 * batch * per_sequence  # the largest power of 2
    assert batch == 16  # 4 MB per sequence


def test_batch_rule_is_unchanged_below_a_megabyte_per_sample():
    """The MLP and CNN batches: the old rule for every largest output up to 1 MB per sample."""
    def old(per_sample: int, target: int, top: int) -> int:
        size = target // max(per_sample, 1)
        return int(min(top, max(sizing.MIN_BATCH, 2 ** int(np.log2(max(size, 1))))))

    for target, top in [(sizing.ACTIVATION_TARGET, 1024),
                        (sizing.COMPILED_ACTIVATION_TARGET, 1024),
                        (64 * sizing.ACTIVATION_TARGET, 16 * 1024)]:
        for per_sample in [0, 4, 1000, 8 * 1024, 50_000, 64 * 1024, 200_000, 1024**2]:
            assert sizing.batch_for(per_sample, target, top) == old(per_sample, target, top)
    # above: the floor gives way to the cap, down to one sample
    assert sizing.batch_for(4 * 1024**2, sizing.ACTIVATION_TARGET, 1024) == 16
    assert sizing.batch_for(10**9, sizing.ACTIVATION_TARGET, 1024) == 1


@pytest.mark.hf
@pytest.mark.slow  # a 2-layer GPT-2 with a 5,000-token vocabulary: a few seconds
def test_gpt2_scan_in_small_batches_equals_a_plain_loop():
    """lm.scan picks batches of 2 sequences here (old rule: all 6 in one); same values."""
    import transformers

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=5000,
                                  n_positions=1024, use_cache=False)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    ids = torch.randint(0, 5000, (6, 1024), generator=torch.Generator().manual_seed(1))
    dirs = lm.random_directions(model, 2, seed=0)
    grid = [(-1.0, 1.0, 2), (-0.5, 0.5, 2)]
    surf = lm.scan(model, lm.metrics.causal_lm_loss, data={"train": (ids, ids)},
                   directions=dirs, grid=grid, metrics=("loss",), progress=False)
    assert surf.profile["batch_size"] == 2  # 1024 x 5000 x 4 bytes = 20 MB per sequence
    params = dict(model.named_parameters())
    centre = {k: p.detach().clone() for k, p in params.items()}
    want = []
    with torch.no_grad():
        for a in (-1.0, 1.0):
            for b in (-0.5, 0.5):
                for k, p in params.items():
                    p.copy_(centre[k] + a * dirs[0][k] + b * dirs[1][k])
                total = 0.0
                for x in ids.split(3):
                    lg = model(input_ids=x).logits[:, :-1]
                    total += float(F.cross_entropy(lg.reshape(-1, 5000), x[:, 1:].reshape(-1),
                                                   reduction="sum").double())
                want.append(total / ids[:, 1:].numel())
        for k, p in params.items():
            p.copy_(centre[k])
    np.testing.assert_allclose(surf["train_loss"].reshape(-1), want, rtol=1e-6)


def test_grid_check_reads_the_weights_without_copying_them():
    """Old: ``abs`` and ``nan_to_num`` wrote two copies of every tensor."""
    t = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    with _Written() as seen:
        top = _largest_finite(t)
    assert top == float(t.abs().max())
    assert not [name for name, n in seen.sizes if n >= t.numel()]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_grid_check_skips_entries_that_are_not_finite(bad):
    t = torch.tensor([0.5, -3.0, bad, 2.0])
    assert _largest_finite(t) == 3.0
    assert _largest_finite(torch.full((3,), bad)) == 0.0
    assert _largest_finite(torch.tensor([-7.0, 1.0]).to(torch.bfloat16)) == 7.0


def test_probe_runs_in_the_scans_batches(monkeypatch):
    """Old: the probe evaluated its 64 samples in one batch, whatever the scan's batch."""
    from lossmap.backends.torch import backend as tb

    seen = []
    real = tb.plain_values

    def spy(*args, **kwargs):
        seen.append(args[7])  # the batch size
        return real(*args, **kwargs)

    monkeypatch.setattr(tb, "plain_values", spy)
    model = _TinyLM(4000).eval()
    ids = torch.randint(0, 4000, (40, 256), generator=torch.Generator().manual_seed(0))
    surf = lm.scan(model, lm.metrics.causal_lm_loss, data={"train": (ids, ids)},
                   directions=lm.random_direction(model, seed=0), grid=(-1, 1, 2),
                   metrics=("loss",), progress=False)
    assert surf.profile["batch_size"] == 16
    assert seen and seen[0] == 16


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_points_are_built_in_one_pass_less_with_the_same_values(dtype):
    """Old: a copy of c, then one add per direction (three passes for a plane)."""
    from lossmap.backends.torch.build import build_points, directions_on

    g = torch.Generator().manual_seed(0)
    centre = {"w": (torch.randn(300, 7, generator=g) * 5).to(dtype),
              "b": torch.randn(7, generator=g).to(dtype)}
    dirs = [{k: torch.randn(v.shape, generator=g).to(dtype) for k, v in centre.items()}
            for _ in range(2)]
    D = directions_on(torch.device("cpu"), centre, dirs)
    coef = [[0.3, -0.7], [0.0, 0.9], [0.0, 0.0], [-1.0 / 3.0, 0.0]]
    work: dict = {}
    with _Written() as seen:
        got = build_points(centre, D, work, coef)
    for name, c in centre.items():
        for k, row in enumerate(coef):
            want = c.float().clone() if dtype == torch.bfloat16 else c.clone()
            for a, d in zip(row, D[name], strict=True):
                if a != 0.0:
                    want.add_(d, alpha=a)
            assert torch.equal(got[name][k], want.to(dtype))
    if dtype == torch.float32:  # bfloat16 keeps the copy into its float32 buffer
        writes = sum(1 for _, n in seen.sizes if n == 300 * 7)
        assert writes == 2 + 1 + 1 + 1  # old: 3 + 2 + 1 + 2
