"""H·v on a Hugging Face GPT-2 against central differences of the gradient: lossmap, curvlinops.

A 1-layer float64 GPT-2 from a config (tied and untied embeddings), the
shifted cross-entropy, one random v. The reference is (∇L(θ+hv) − ∇L(θ−hv)) /
2h with plain first-order autograd (h = 1e-5). Prints each tool's relative
error. curvlinops runs with the math attention kernel forced (its products
fail on the fused CPU kernel).

Run: ``.venv/bin/python benchmarks/curvature_fd_gpt2.py`` (seconds).
"""

from __future__ import annotations

import torch
import transformers
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

import lossmap as lm


class CausalLM(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids=input_ids).logits


class ShiftedCE(nn.Module):
    reduction = "mean"  # curvlinops reads it

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        v = logits.shape[-1]
        return nn.functional.cross_entropy(logits[:, :-1].reshape(-1, v), labels[:, 1:].reshape(-1))


def gradient(model: nn.Module, x: torch.Tensor, params: list, delta: torch.Tensor) -> torch.Tensor:
    """∇L at θ + delta (plain autograd), θ restored after."""

    def shift(sign: float) -> None:
        with torch.no_grad():
            i = 0
            for p in params:
                p.add_(sign * delta[i : i + p.numel()].view_as(p))
                i += p.numel()

    shift(1.0)
    model.zero_grad()
    ShiftedCE()(model(x), x).backward()
    g = torch.cat([p.grad.reshape(-1) for p in params]).clone()
    shift(-1.0)
    return g


def main() -> None:
    import curvlinops

    transformers.logging.set_verbosity_error()
    for tie in (True, False):
        torch.manual_seed(0)
        cfg = transformers.GPT2Config(
            n_layer=1, n_embd=16, n_head=2, vocab_size=32, n_positions=16, tie_word_embeddings=tie
        )
        model = CausalLM(transformers.GPT2LMHeadModel(cfg)).eval().double()
        x = torch.randint(0, 32, (2, 16))
        params = list(model.parameters())
        v = torch.randn(sum(p.numel() for p in params), dtype=torch.float64)
        ours = lm.curvature_operator(model, ShiftedCE(), (x, x))._flat_matvec(v)
        op = curvlinops.HessianLinearOperator(
            model, ShiftedCE(), params, [(x, x)], check_deterministic=False
        )
        with sdpa_kernel(SDPBackend.MATH):
            theirs = op @ v
            h = 1e-5
            fd = (gradient(model, x, params, h * v) - gradient(model, x, params, -h * v)) / (2 * h)
        err = {
            k: float((t - fd).norm() / fd.norm())
            for k, t in (("lossmap", ours), ("curvlinops", theirs))
        }
        print(
            f"{'tied' if tie else 'untied'} embeddings: relative error of H·v vs central "
            f"differences: lossmap {err['lossmap']:.1e}, curvlinops {err['curvlinops']:.1e}"
        )


if __name__ == "__main__":
    main()
