"""lm.sharpness on a language model: dict batches, a token-exact loss, a parameter subset.

The reference is the token mean of the next-token cross-entropy over every
scored token of the split (labels of -100 are not scored; the batches score
different numbers of tokens), computed by hand from the logits at the centre
and at the centre moved by the perturbation the measure reports.
"""

import pytest
import torch
from torch.func import functional_call

import helpers
import lossmap as lm

pytestmark = [pytest.mark.hf, pytest.mark.usefixtures("one_thread")]


def _token_mean(net, state, ids, labels) -> float:
    logits = functional_call(net, state, (ids,)).logits[:, :-1]
    t = labels[:, 1:]
    total = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), t.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return float(total / (t != -100).sum())


@pytest.mark.parametrize("kind", ["worst", "average"])
def test_token_exact_losses_on_dict_batches_of_a_gpt2(kind):
    net, ids, labels = helpers.tiny_gpt2()
    batches = [{"input_ids": ids[i : i + 2], "labels": labels[i : i + 2]} for i in (0, 2, 4)]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    r = lm.sharpness(
        net,
        lm.metrics.causal_lm_loss,
        batches,
        rho=0.05,
        kind=kind,
        params="transformer.h.0.mlp.*",
        steps=5,
        draws=4,
    )
    state = {**dict(net.named_parameters()), **dict(net.named_buffers())}
    assert r.centre_loss == pytest.approx(_token_mean(net, state, ids, labels), abs=1e-12)
    d = r.direction
    assert set(d.keys()) == {k for k in state if k.startswith("transformer.h.0.mlp.")}
    moved = {k: v + d[k].to(v.dtype) if k in d else v for k, v in state.items()}
    if kind == "worst":  # the loss at the point found is the loss at centre + δ
        assert r.perturbed_loss == pytest.approx(_token_mean(net, moved, ids, labels), abs=1e-12)
        assert r.value == pytest.approx(r.perturbed_loss - r.centre_loss, abs=1e-12)
        assert r.value > 0
    assert r.evidence.dtype == "float64"
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
