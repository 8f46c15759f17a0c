"""Attention that second-order and forward-mode differentiation can run through.

PyTorch picks fused kernels for attention that have no second derivative and
no forward-mode rule: on the CPU, ``scaled_dot_product_attention`` runs a
flash kernel whose backward cannot be differentiated again (Hessian-vector
products by double backward fail with "derivative for
aten::_scaled_dot_product_flash_attention_for_cpu_backward is not
implemented"), and ``nn.TransformerEncoderLayer`` / ``nn.MultiheadAttention``
take a fused "fast path" (``aten::_transformer_encoder_layer_fwd``) in eval
mode without gradients, which forward-mode AD cannot run. Inside
:func:`differentiable_attention` both choose their plain, differentiable
implementations; the values are the same up to round-off.

Used around the Hessian-vector products (:mod:`lossmap.hessian.operator`) and
the per-example slopes (:mod:`lossmap.backends.torch.slopes`); the scan's
plain evaluation keeps the fast kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def differentiable_attention() -> Iterator[None]:
    """Run attention on the math kernel and the unfused encoder path; restore both after.

    Both settings are global (``torch.backends.mha`` and the SDPA backend
    flags); the previous values come back on exit, after an error too.

    Examples
    --------
    >>> before = torch.backends.mha.get_fastpath_enabled()
    >>> with differentiable_attention():
    ...     torch.backends.mha.get_fastpath_enabled()
    False
    >>> torch.backends.mha.get_fastpath_enabled() == before
    True
    """
    fast = torch.backends.mha.get_fastpath_enabled()
    with contextlib.ExitStack() as stack:
        try:
            from torch.nn.attention import SDPBackend, sdpa_kernel
        except ImportError:  # an older torch: there is no kernel to choose
            pass
        else:
            stack.enter_context(sdpa_kernel(SDPBackend.MATH))
        torch.backends.mha.set_fastpath_enabled(False)
        try:
            yield
        finally:
            torch.backends.mha.set_fastpath_enabled(fast)
