"""lm.curvature_operator on a Hugging Face GPT-2: dict batches, the model's own loss, params.

The reference is the exact mean over every scored token of the split (labels
of -100 are not scored), computed by hand from the logits, differentiated by
central differences of its gradient (float64, step 1e-5), on the parameters
selected by a regular expression. (torch.func.hessian is no reference here:
on this GPT-2 it returns a matrix whose ln_f/ln_2 blocks are asymmetric by
1.5e-4 of a largest entry of 8e-4, forward-over-reverse and reverse-over-
reverse alike, with PyTorch 2.13 and transformers 4.x.)
"""

import pytest
import torch
from torch.func import functional_call, grad

import helpers
import lossmap as lm

pytestmark = [pytest.mark.hf, pytest.mark.usefixtures("one_thread")]


def test_model_loss_hessian_on_dict_batches_is_the_token_mean():
    net, ids, labels = helpers.tiny_gpt2()
    batches = [{"input_ids": ids[i : i + 2], "labels": labels[i : i + 2]} for i in (0, 2, 4)]
    op = lm.curvature_operator(net, None, batches, params=r"ln_f|h\.0\.ln_2")
    names = op.names
    assert names == [
        "transformer.h.0.ln_2.weight",
        "transformer.h.0.ln_2.bias",
        "transformer.ln_f.weight",
        "transformer.ln_f.bias",
    ]
    state = {k: v.detach() for k, v in (*net.named_parameters(), *net.named_buffers())}
    shapes = [state[k].shape for k in names]
    theta = torch.cat([state[k].reshape(-1) for k in names])

    def mean_loss(t):
        parts, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            parts[k] = t[i : i + s.numel()].reshape(s)
            i += s.numel()
        logits = functional_call(net, {**state, **parts}, (ids,)).logits[:, :-1]
        target = labels[:, 1:]
        return (
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, 11), target.reshape(-1), ignore_index=-100, reduction="sum"
            )
            / (target != -100).sum()
        )

    g, h = grad(mean_loss), 1e-5
    eye = torch.eye(len(theta), dtype=theta.dtype)
    want = torch.stack([(g(theta + h * e) - g(theta - h * e)) / (2 * h) for e in eye])
    got = op.to_dense()
    err = float((got - want).abs().max()) / float(want.abs().max())
    assert err < 1e-6, err  # central differences: O(h²) truncation and round-off
    # symmetric to the float32 round-off of the model's own loss (transformers upcasts the
    # logits to float32 in its loss), far below the asymmetry torch.func shows here
    assert float((got - got.T).abs().max()) < 1e-7 * float(got.abs().max())
    top = op.blocks("layer", k=1)
    assert set(top) == {"transformer.h.0.ln_2", "transformer.ln_f"}
