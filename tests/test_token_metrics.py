"""lm.metrics: token losses exact under padding, against brute-force float64 loops.

Each model test builds a tiny ``transformers`` model from a config (nothing is downloaded),
evaluates it on dict batches of two different sequence lengths whose padding is labelled
-100, and compares ``Σ totals / Σ counts`` with a loop over every scored token in float64.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch

import lossmap as lm
from lossmap import metrics
from lossmap.errors import InputError, InputTypeError

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.hf]


def _tf():
    """transformers, imported when a test runs (not at collection: `make test-fast` skips hf)."""
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers
V = 64


def _padded(lengths: list[int], width: int, seed: int, *, pad_id: int = 0) -> dict:
    """Right-padded random token rows: real tokens, then ``pad_id``, labels -100 there."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), width), pad_id)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, V, (n,), generator=g)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask,
            "labels": ids.masked_fill(mask == 0, -100)}


def _two_batches(seed: int = 0) -> list[dict]:
    # different widths (11, 6), padded rows and an unpadded one in each
    return [_padded([11, 7, 3, 11], 11, seed), _padded([6, 2, 5], 6, seed + 1)]


def _brute(logits: torch.Tensor, labels: torch.Tensor, shift: bool) -> tuple[float, int]:
    """Summed float64 cross-entropy over scored tokens, one token at a time."""
    total, count = 0.0, 0
    for b in range(labels.shape[0]):
        for t in range(labels.shape[1] - (1 if shift else 0)):
            target = int(labels[b, t + 1 if shift else t])
            if target == -100:
                continue
            row = logits[b, t].double()
            total += float(torch.logsumexp(row, 0) - row[target])
            count += 1
    return total, count


def _ratio(pairs) -> float:
    return float(sum(t.sum() for t, _ in pairs) / sum(c.sum() for _, c in pairs))


@pytest.fixture(scope="module")
def gpt2():
    torch.manual_seed(0)
    cfg = _tf().GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=V, n_positions=32,
                     bos_token_id=0, eos_token_id=0)
    return _tf().GPT2LMHeadModel(cfg).eval()


@pytest.fixture(scope="module")
def bert_config():
    return _tf().BertConfig(vocab_size=V, hidden_size=32, num_hidden_layers=2,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=32)


def test_causal_lm_loss_is_the_exact_token_mean_over_padded_batches_of_two_lengths(gpt2):
    batches = _two_batches()
    pairs, brute_total, brute_count, hits, hit_count = [], 0.0, 0, 0, 0
    with torch.no_grad():
        for batch in batches:
            out = gpt2(**batch)
            totals, counts = metrics.causal_lm_loss(out, batch)
            assert totals.shape == counts.shape == (batch["labels"].shape[0],)
            assert totals.dtype == torch.float64
            for b in range(len(totals)):  # per example, too
                t, c = _brute(out.logits[b:b + 1], batch["labels"][b:b + 1], shift=True)
                assert counts[b] == c and totals[b].item() == pytest.approx(t, rel=1e-6)
            t, c = _brute(out.logits, batch["labels"], shift=True)
            brute_total, brute_count = brute_total + t, brute_count + c
            pairs.append((totals, counts))
            right, n = metrics.token_accuracy(out, batch)
            hits += right.sum().item()
            hit_count += n.sum().item()
            pred = out.logits[:, :-1].argmax(-1)
            lab = batch["labels"][:, 1:]
            assert right.sum() == ((pred == lab) & (lab != -100)).sum()
    assert brute_count == 10 + 6 + 2 + 10 + 5 + 1 + 4  # each row: its length - 1
    assert _ratio(pairs) == pytest.approx(brute_total / brute_count, rel=1e-6)
    assert hit_count == brute_count
    # the row-weighted mean of per-batch means is not the token mean: padding matters
    batch_means = [float(t.sum() / c.sum()) for t, c in pairs]
    rows = [b["labels"].shape[0] for b in batches]
    assert abs(np.average(batch_means, weights=rows) - brute_total / brute_count) > 1e-3


def test_the_models_own_loss_agrees_with_causal_lm_loss_and_model_loss_weights_it(gpt2):
    unpadded = _padded([9, 9, 9], 9, seed=5)
    with torch.no_grad():
        out = gpt2(**unpadded)
        totals, counts = metrics.causal_lm_loss(out, unpadded)
        assert out.loss.item() == pytest.approx(float(totals.sum() / counts.sum()), rel=1e-6)
        pairs, own = [], []
        for batch in _two_batches(seed=3):  # padded: model_loss still weights exactly
            out = gpt2(**batch)
            pairs.append(metrics.causal_lm_loss(out, batch))
            own.append(metrics.model_loss(out, batch))  # CausalLMOutput…: shifted counts
            assert own[-1][1] == pairs[-1][1].sum()
    assert _ratio([(t.reshape(1), c.reshape(1)) for t, c in own]) == pytest.approx(
        _ratio(pairs), rel=1e-6)


def test_metrics_run_under_vmap_over_points_as_on_accelerators(gpt2):
    """The evaluator vmaps a chunk of points on accelerators: no data-dependent control flow."""
    from torch.func import functional_call, vmap

    batch = _two_batches()[0]
    g = torch.Generator().manual_seed(1)
    stacked = {k: torch.stack([v.detach(), v.detach() + 0.05 * torch.randn(v.shape, generator=g)])
               for k, v in gpt2.named_parameters()}  # (K=2, ...) each
    fns = (metrics.causal_lm_loss, metrics.token_accuracy, metrics.sequence_accuracy,
           metrics.model_loss)

    def at(params):
        out = functional_call(gpt2, params, args=(), kwargs=batch)
        return [x for fn in fns for x in fn(out, batch)]

    with torch.no_grad():
        together = vmap(at)(stacked)
        for i in range(2):
            alone = at({k: v[i] for k, v in stacked.items()})
            for a, b in zip(together, alone, strict=True):
                assert torch.allclose(a[i], b, rtol=1e-5)
    assert not torch.allclose(together[0][0], together[0][1])  # two different points


def test_labels_may_come_from_input_ids_or_shift_labels(gpt2):
    batch = _two_batches()[0]
    with torch.no_grad():
        out = gpt2(**batch)
    want = metrics.causal_lm_loss(out, batch)
    no_labels = {k: v for k, v in batch.items() if k != "labels"}
    shifted = {**no_labels,
               "shift_labels": torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1),
                                                       value=-100)}
    for other in (no_labels, shifted, batch["labels"]):  # a tensor: the y of (X, y) data
        got = metrics.causal_lm_loss(out, other)
        assert torch.equal(got[1], want[1]) and torch.allclose(got[0], want[0])


def test_masked_lm_loss_is_exact_over_padded_batches(bert_config):
    torch.manual_seed(1)
    model = _tf().BertForMaskedLM(bert_config).eval()
    pairs, brute_total, brute_count, own = [], 0.0, 0, []
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for batch in _two_batches(seed=11):
            scored = (torch.rand(batch["labels"].shape, generator=g) < 0.4) & (
                batch["attention_mask"] == 1)
            scored[:, 0] |= batch["attention_mask"][:, 0] == 1  # at least one per row
            batch = {**batch, "labels": batch["input_ids"].masked_fill(~scored, -100)}
            batch["input_ids"] = batch["input_ids"].masked_fill(scored, V - 1)  # [MASK]
            out = model(**batch)
            totals, counts = metrics.masked_lm_loss(out, batch)
            t, c = _brute(out.logits, batch["labels"], shift=False)
            assert counts.sum() == c == int(scored.sum())
            brute_total, brute_count = brute_total + t, brute_count + c
            pairs.append((totals, counts))
            own.append(metrics.model_loss(out, batch))  # MaskedLMOutput: no shift
            right, n = metrics.masked_token_accuracy(out, batch)
            assert n.sum() == c and right.sum() == (
                (out.logits.argmax(-1) == batch["labels"]) & scored).sum()
    assert _ratio(pairs) == pytest.approx(brute_total / brute_count, rel=1e-6)
    assert _ratio([(t.reshape(1), c.reshape(1)) for t, c in own]) == pytest.approx(
        brute_total / brute_count, rel=1e-6)


def test_sequence_classifier_with_attention_masks(bert_config):
    torch.manual_seed(2)
    model = _tf().BertForSequenceClassification(
        _tf().BertConfig(**{**bert_config.to_dict(), "num_labels": 3})).eval()
    values, own, brute = [], [], []
    with torch.no_grad():
        for batch in _two_batches(seed=21):
            n = batch["input_ids"].shape[0]
            batch = {**batch, "labels": torch.arange(n) % 3}
            out = model(**batch)
            losses = metrics.classification_loss(out, batch)
            assert losses.shape == (n,) and losses.dtype == torch.float64
            for b in range(n):  # brute force: each row alone, padding cut off
                length = int(batch["attention_mask"][b].sum())
                alone = model(input_ids=batch["input_ids"][b:b + 1, :length])
                row = alone.logits[0].double()
                brute.append(float(torch.logsumexp(row, 0) - row[int(batch["labels"][b])]))
            values.append(losses)
            own.append(metrics.model_loss(out, batch))  # 1-D labels: weighted by rows
            assert own[-1][1] == n
            acc = metrics.classification_accuracy(out, batch)
            assert torch.equal(acc.bool(), out.logits.argmax(-1) == batch["labels"])
    # the attention mask makes padding irrelevant: the padded rows equal the rows alone
    assert float(torch.cat(values).mean()) == pytest.approx(np.mean(brute), rel=1e-5)
    assert _ratio([(t.reshape(1), c.reshape(1)) for t, c in own]) == pytest.approx(
        np.mean(brute), rel=1e-5)


# --------------------------------------------------------------------------- without a model


def _logits(B=2, T=5, seed=0, dtype=torch.float32):
    return torch.randn(B, T, 7, generator=torch.Generator().manual_seed(seed)).to(dtype)


def test_outputs_of_every_kind_give_the_same_logits():
    logits = _logits()
    batch = {"labels": torch.tensor([[1, 2, 3, -100, -100], [4, 5, 6, 0, 1]])}
    want = metrics.causal_lm_loss(logits, batch)
    ns = type("Out", (), {"logits": logits})()
    for outputs in ({"logits": logits}, (logits, None), [logits], ns):
        got = metrics.causal_lm_loss(outputs, batch)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert want[1].tolist() == [2.0, 4.0]


def test_half_precision_logits_are_summed_in_float32_or_wider():
    logits = _logits(seed=1)
    batch = {"labels": torch.tensor([[1, 2, 3, 4, 5], [0, 1, 2, 3, -100]])}
    exact = metrics.causal_lm_loss(logits.double(), batch)[0]
    bf = metrics.causal_lm_loss(logits.bfloat16(), batch)[0]
    assert bf.dtype == torch.float64
    ref = metrics.causal_lm_loss(logits.bfloat16().double(), batch)[0]
    assert torch.allclose(bf, ref, rtol=1e-6)  # only the logits' own rounding remains
    assert torch.allclose(bf, exact, rtol=2e-2)


def test_sequence_accuracy_counts_whole_sequences():
    logits = torch.zeros(3, 3, 4)
    logits[0, 0, 1] = logits[0, 1, 2] = 1.0  # row 0: both next tokens right
    logits[1, 0, 1] = 1.0  # row 1: first right, second wrong
    batch = {"labels": torch.tensor([[0, 1, 2], [0, 1, 2], [0, -100, -100]])}
    right, counts = metrics.sequence_accuracy(logits, batch)
    assert right.tolist() == [1.0, 0.0, 0.0] and counts.tolist() == [1.0, 1.0, 0.0]


def test_model_loss_weights_by_the_right_count():
    out = {"loss": torch.tensor(1.5)}
    labels = torch.tensor([[1, 2, -100], [3, 4, 5]])
    assert metrics.model_loss(out, {"labels": labels}, shift=True)[1].item() == 3
    assert metrics.model_loss(out, {"labels": labels}, shift=False)[1].item() == 5
    empty = {"labels": torch.full((2, 3), -100)}
    total, n = metrics.model_loss({"loss": torch.tensor(float("nan"))}, empty, shift=True)
    assert total.item() == 0.0 and n.item() == 0.0  # HF's 0/0 mean adds nothing
    shifted = functools.partial(metrics.model_loss, shift=True)
    assert shifted(out, {"labels": labels})[0].item() == 4.5


def test_model_loss_reads_the_shift_from_transformers_output_classes():
    from transformers.modeling_outputs import CausalLMOutputWithPast, MaskedLMOutput

    labels = torch.tensor([[1, 2, 3]])
    loss = torch.tensor(1.0)
    assert metrics.model_loss(CausalLMOutputWithPast(loss=loss), {"labels": labels})[1] == 2
    assert metrics.model_loss(MaskedLMOutput(loss=loss), {"labels": labels})[1] == 3
    with pytest.raises(InputError, match=r"cannot tell whether .*shift=True"):
        metrics.model_loss({"loss": loss}, {"labels": labels})
    assert _tf()  # imported plainly: the hf extra is installed for the tests


def test_errors_name_the_problem_and_the_fix():
    logits = _logits()
    with pytest.raises(InputTypeError, match=r"hold no logits.*pass a metric of your own"):
        metrics.causal_lm_loss({"hidden": logits}, {"labels": torch.zeros(2, 5)})
    with pytest.raises(InputTypeError, match=r"needs a dict batch .*or a tensor of labels"):
        metrics.causal_lm_loss(logits, (torch.zeros(2, 5), torch.zeros(2, 5)))
    with pytest.raises(InputError, match=r"no 'labels' \(keys: attention_mask\)"):
        metrics.masked_lm_loss(logits, {"attention_mask": torch.ones(2, 5)})
    with pytest.raises(InputError, match=r"do not fit labels of shape \(2, 4\)"):
        metrics.causal_lm_loss(logits, {"labels": torch.zeros(2, 4, dtype=torch.long)})
    with pytest.raises(InputError, match=r"label 9 is outside the vocabulary 0\.\.6"):
        metrics.masked_lm_loss(logits, {"labels": torch.full((2, 5), 9)})
    with pytest.raises(InputError, match=r"returned no loss .*labels"):
        metrics.model_loss({"logits": logits}, {"input_ids": torch.zeros(2, 5)})
    with pytest.raises(InputError, match=r"expected \(batch, classes\) and \(batch,\)"):
        metrics.classification_loss(logits, {"labels": torch.zeros(2, dtype=torch.long)})


def test_perplexity_and_where_it_shows():
    assert metrics.perplexity(math.log(8)) == pytest.approx(8.0)
    arr = metrics.perplexity(np.array([0.0, np.nan]))
    assert arr[0] == 1.0 and np.isnan(arr[1])
    assert metrics.perplexity(torch.tensor(0.0)).item() == 1.0
    assert metrics.perplexity(1e4) == math.inf
    assert metrics.is_token_loss(functools.partial(metrics.model_loss, shift=True))
    assert metrics.is_token_loss("masked_lm_loss") and not metrics.is_token_loss(
        metrics.token_accuracy)

    def mine(outputs, batch):
        return outputs

    assert not metrics.is_token_loss(mine)
    mine.token_loss = True
    assert metrics.is_token_loss(mine)
    assert metrics.perplexity_name("test_loss") == "test_perplexity"


def test_lm_metrics_is_the_module():
    assert lm.metrics is metrics and "metrics" in lm.__all__
