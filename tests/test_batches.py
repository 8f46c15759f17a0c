"""Splits of any batch structure (issue 13): dict batches, several inputs, dynamic padding,
streams. Every scanned value equals a brute-force loop over the same batches."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lossmap as lm
from lossmap.errors import LossmapError


def _tf():
    """transformers (the hf extra), imported when a test runs, not at collection."""
    import transformers

    transformers.logging.set_verbosity_error()
    return transformers

VOCAB = 64


def gpt2(seed=0):
    torch.manual_seed(seed)
    cfg = _tf().GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB,
                                  n_positions=32, bos_token_id=0, eos_token_id=0)
    return _tf().GPT2LMHeadModel(cfg).eval()


def bert(kind="mlm", seed=0):
    torch.manual_seed(seed)
    cfg = _tf().BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=32, num_labels=3)
    tf = _tf()
    cls = tf.BertForMaskedLM if kind == "mlm" else tf.BertForSequenceClassification
    return cls(cfg).eval()


def token_batch(rows, length, pad, seed, *, mask_prob=None):
    """input_ids, attention_mask and labels; the first row padded by ``pad`` positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (rows, length), generator=g)
    am = torch.ones(rows, length, dtype=torch.long)
    am[0, length - pad:] = 0
    labels = ids.clone()
    labels[0, length - pad:] = -100
    if mask_prob is not None:  # masked LM: score only some positions
        keep = torch.rand(rows, length, generator=g) < mask_prob
        keep[:, 0] = True
        labels[~keep | (am == 0)] = -100
    return {"input_ids": ids, "attention_mask": am, "labels": labels}


def moved(model, dirs, coefs):
    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in m.named_parameters():
            for a, d in zip(coefs, dirs, strict=True):
                if name in d:
                    p.add_(float(a) * d[name].to(p.dtype))
    return m


def brute_tokens(model, batches, *, shift):
    """Σ token losses over all batches / number of scored tokens, float64, by a loop."""
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            logits, labels = logits.double(), b["labels"]
            if shift:
                logits, labels = logits[:, :-1], labels[:, 1:]
            for i in range(labels.shape[0]):
                for t in range(labels.shape[1]):
                    if labels[i, t] != -100:
                        total -= float(torch.log_softmax(logits[i, t], -1)[labels[i, t]])
                        count += 1
    return total / count


@pytest.mark.slow
@pytest.mark.hf
def test_gpt2_dict_batches_of_two_lengths_line_and_plane_equal_brute_force():
    model = gpt2()
    data = [token_batch(3, 9, 3, seed=1), token_batch(2, 14, 6, seed=2)]
    d1, d2 = lm.random_directions(model, 2, seed=4)
    line = lm.scan(model, lm.metrics.causal_lm_loss, data={"train": data}, directions=d1,
                   grid=(-1, 1, 3), progress=False)
    plane = lm.scan(model, lm.metrics.causal_lm_loss, data={"train": data},
                    directions=[d1, d2], grid=[(-1, 1, 2), (-0.5, 0.5, 2)], progress=False)
    for i, a in enumerate(line.coords["alpha"]):
        want = brute_tokens(moved(model, [d1], [a]), data, shift=True)
        assert line["train_loss"][i] == pytest.approx(want, rel=1e-5)
    for i, a in enumerate(plane.coords["alpha"]):
        for j, b in enumerate(plane.coords["beta"]):
            want = brute_tokens(moved(model, [d1, d2], [a, b]), data, shift=True)
            assert plane["train_loss"][i, j] == pytest.approx(want, rel=1e-5)
    assert line.se("train_loss") is not None and np.isfinite(line.se("train_loss")).all()
    # the model's own outputs.loss (loss_fn=None), weighted by its token count: the same
    own = lm.scan(model, None, data={"train": data}, directions=d1, grid=(-1, 1, 3),
                  progress=False)
    np.testing.assert_allclose(own["train_loss"], line["train_loss"], rtol=1e-5)
    assert own.spec.metrics == ("loss",)


@pytest.mark.slow
@pytest.mark.hf
def test_bert_masked_lm_and_sequence_classifier_with_attention_masks():
    mlm = bert("mlm")
    data = [token_batch(3, 10, 4, seed=5, mask_prob=0.3), token_batch(2, 7, 2, seed=6,
                                                                     mask_prob=0.3)]
    d = lm.random_direction(mlm, seed=1)
    s = lm.scan(mlm, lm.metrics.masked_lm_loss, data={"train": data}, directions=d,
                grid=(-1, 1, 3), progress=False)
    for i, a in enumerate(s.coords["alpha"]):
        want = brute_tokens(moved(mlm, [d], [a]), data, shift=False)
        assert s["train_loss"][i] == pytest.approx(want, rel=1e-5)

    clf = bert("clf")
    batches = []
    for k, (rows, length) in enumerate([(3, 8), (2, 12)]):
        b = token_batch(rows, length, 3, seed=10 + k)
        b["labels"] = torch.tensor([0, 2, 1][:rows])
        batches.append(b)
    dc = lm.random_direction(clf, seed=2)
    sc = lm.scan(clf, None, data={"train": batches}, directions=dc, grid=(-1, 1, 3),
                 progress=False)
    for i, a in enumerate(sc.coords["alpha"]):
        m = moved(clf, [dc], [a])
        with torch.no_grad():
            losses = [F.cross_entropy(m(input_ids=b["input_ids"],
                                        attention_mask=b["attention_mask"]).logits.double(),
                                      b["labels"], reduction="sum") for b in batches]
        want = float(sum(losses)) / 5
        assert sc["train_loss"][i] == pytest.approx(want, rel=1e-5)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Linear(4, 3), nn.Linear(2, 3)

    def forward(self, x1, x2):
        return self.a(x1) + self.b(x2)


def test_tuple_of_several_inputs_and_a_target():
    net = TwoInputs()
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g),
                torch.randint(0, 3, (5,), generator=g)) for _ in range(3)]
    d = lm.random_direction(net, seed=3)
    s = lm.scan(net, nn.CrossEntropyLoss(), data={"train": batches}, directions=d,
                grid=(-1, 1, 5), progress=False)
    assert s.spec.metrics == ("loss", "accuracy")
    for i, a in enumerate(s.coords["alpha"]):
        m = moved(net, [d], [a])
        with torch.no_grad():
            per = torch.cat([F.cross_entropy(m(x1, x2).double(), y, reduction="none")
                             for x1, x2, y in batches])
        assert s["train_loss"][i] == pytest.approx(float(per.mean()), rel=1e-6)
        assert s.se("train_loss")[i] == pytest.approx(float(per.std() / per.numel() ** 0.5),
                                                      rel=1e-5)


def test_dynamically_padded_pairs_are_kept_as_batches_with_exact_token_means():
    """(X, y) batches whose length differs per batch; a (totals, counts) metric over the
    real positions gives the exact mean over them; a batch mean gives the row-weighted mean."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Embedding(10, 6), nn.Linear(6, 10))
    batches = []
    for k, length in enumerate([4, 7, 5]):
        g = torch.Generator().manual_seed(k)
        X = torch.randint(0, 10, (3, length), generator=g)
        y = torch.randint(0, 10, (3, length), generator=g)
        y[0, -2:] = -100
        batches.append((X, y))

    def token_loss(out, y):
        per = F.cross_entropy(out.transpose(1, 2), y, reduction="none", ignore_index=-100)
        return per.sum(1), (y != -100).sum(1)

    def batch_mean(out, y):
        return F.cross_entropy(out.transpose(1, 2), y, ignore_index=-100)

    d = lm.random_direction(net, seed=2)
    s = lm.scan(net, token_loss, data={"train": batches}, directions=d, grid=(-1, 1, 3),
                metrics=(("tok", token_loss), ("mean", batch_mean)), progress=False)
    m = moved(net, [d], [1.0])
    with torch.no_grad():
        outs = [(m(X).double(), y) for X, y in batches]
    tok = [F.cross_entropy(o.transpose(1, 2), y, reduction="sum", ignore_index=-100)
           for o, y in outs]
    n_tok = sum(int((y != -100).sum()) for _, y in outs)
    assert s["train_tok"][2] == pytest.approx(float(sum(tok)) / n_tok, rel=1e-6)
    means = [float(F.cross_entropy(o.transpose(1, 2), y, ignore_index=-100)) * 3
             for o, y in outs]
    assert s["train_mean"][2] == pytest.approx(sum(means) / 9, rel=1e-6)
    assert s["train_tok"][2] != pytest.approx(s["train_mean"][2], rel=1e-4)


def test_samples_subset_and_stream_give_the_same_values_and_a_changed_stream_is_refused():
    net = TwoInputs()
    g = torch.Generator().manual_seed(5)
    batches = [{"x1": torch.randn(4, 4, generator=g), "x2": torch.randn(4, 2, generator=g),
                "y": torch.randint(0, 3, (4,), generator=g)} for _ in range(4)]

    def loss(out, batch):
        return F.cross_entropy(out, batch["y"], reduction="none")

    d = lm.random_direction(net, seed=1)
    kw = dict(directions=d, grid=(-1, 1, 3), progress=False, samples=6, seed=3)
    held = lm.scan(net, loss, data={"train": batches}, **kw)
    streamed = lm.scan(net, loss, data={"train": lm.data.stream(batches)}, **kw)
    np.testing.assert_array_equal(held["train_loss"], streamed["train_loss"])
    assert held.fingerprints["data_train"] == streamed.fingerprints["data_train"]
    assert held.samples == {"train": 6}

    class Changing(list):
        passes = 0

        def __iter__(self):
            Changing.passes += 1
            for b in super().__iter__():
                yield {**b, "x1": b["x1"] + (Changing.passes > 3)}

    with pytest.raises(LossmapError, match="streamed and gave other batches"):
        lm.scan(net, loss, data={"train": lm.data.stream(Changing(batches))},
                directions=d, grid=(-1, 1, 3), progress=False)


def test_store_resume_with_dict_batches(tmp_path):
    net = TwoInputs()
    g = torch.Generator().manual_seed(2)
    batches = [{"x1": torch.randn(3, 4, generator=g), "x2": torch.randn(3, 2, generator=g),
                "y": torch.randint(0, 3, (3,), generator=g)} for _ in range(2)]

    def loss(out, batch):
        return F.cross_entropy(out, batch["y"])

    d = lm.random_direction(net, seed=0)
    path = tmp_path / "s.lossmap"
    full = lm.scan(net, loss, data={"train": batches}, directions=d, grid=(-1, 1, 5),
                   store=path, progress=False)
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM points WHERE idx IN (0, 4)")
    again = lm.scan(net, loss, data={"train": batches}, directions=d, grid=(-1, 1, 5),
                    store=path, progress=False)
    np.testing.assert_array_equal(again["train_loss"], full["train_loss"])
    other = [{**b, "y": (b["y"] + 1) % 3} for b in batches]
    with pytest.raises(lm.StoreError, match="data"):
        lm.scan(net, loss, data={"train": other}, directions=d, grid=(-1, 1, 5), store=path,
                progress=False)


def test_clear_errors_for_structured_batches():
    net = TwoInputs()
    batches = [{"x1": torch.randn(3, 4), "x2": torch.randn(3, 2), "y": torch.zeros(3).long()}]
    d = lm.random_direction(net, seed=0)

    def loss(out, batch):
        return F.cross_entropy(out, batch["y"])

    with pytest.raises(lm.InputError, match="strategy='vmap'"):
        lm.scan(net, loss, data={"train": batches}, directions=d, grid=(-1, 1, 3),
                progress=False, strategy="vmap")
    with pytest.raises(lm.InputError, match=r"model fails on a batch of .*'x1'"):
        lm.scan(net, loss, data={"train": [{"x1": torch.randn(3, 5), "x2": torch.randn(3, 2),
                                             "y": torch.zeros(3).long()}]},
                directions=d, grid=(-1, 1, 3), progress=False)
    with pytest.raises(lm.InputError, match=r"metric 'loss' fails .*f\(outputs, batch\)"):
        lm.scan(net, nn.CrossEntropyLoss(), data={"train": batches}, directions=d,
                grid=(-1, 1, 3), progress=False)
    with pytest.raises(lm.InputError, match="mixes dict and tuple"):
        lm.data.as_split([batches[0], (torch.randn(3, 4), torch.zeros(3))], "train")
    with pytest.raises(lm.InputTypeError, match="loss_fn is None"):
        lm.scan(net, None, data={"train": (torch.randn(4, 4), torch.zeros(4).long())},
                directions=d, grid=(-1, 1, 3), progress=False)
    with pytest.raises(lm.InputTypeError, match="read again"):
        lm.data.stream(iter(batches))
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), TwoInputs().parameters(),
                                                  strict=True))  # the model is unchanged


def test_half_precision_points_are_formed_in_float32():
    """bfloat16 weights: c + a·d formed in float32 and cast once, not rounded step by step."""
    from lossmap.backends.torch.build import build_points

    c = torch.full((4,), 1.0, dtype=torch.bfloat16)
    d = [torch.full((4,), 3e-3), torch.full((4,), 3e-3)]  # bfloat16's step at 1 is 2^-7
    out = build_points({"w": c}, {"w": d}, {}, [[1.0, 1.0]])["w"][0]
    assert out.dtype == torch.bfloat16
    assert out[0] == torch.tensor(1.006).to(torch.bfloat16) > 1.0  # one rounding of 1.006
    step = torch.full((4,), 3e-3, dtype=torch.bfloat16)
    naive = (c + step) + step
    assert naive[0] == 1.0  # each step rounded away: what the float32 formation avoids


@pytest.mark.hf
def test_interpolation_between_models_with_tied_weights():
    """GPT-2 ties lm_head.weight to the token embedding: a direction between two such models
    names the tied tensor once, as named_parameters() does, and scans."""
    a, b = gpt2(seed=0), gpt2(seed=1)
    d = lm.interpolation(a, b)
    assert "lm_head.weight" not in d and "transformer.wte.weight" in d
    data = [token_batch(2, 6, 1, seed=3)]
    s = lm.scan(a, lm.metrics.causal_lm_loss, data={"train": data}, directions=d,
                grid=(0, 1, 2), progress=False)
    for i, m in enumerate((a, b)):
        assert s["train_loss"][i] == pytest.approx(brute_tokens(m, data, shift=True), rel=1e-5)


def test_report_shows_perplexity_beside_a_token_loss(tmp_path):
    import math

    from lossmap.report import write_report

    spec = lm.ScanSpec(grid=((-1, 1, 3),), splits=("zen",), metrics=("loss",),
                       loss="causal_lm_loss")
    tok = lm.Surface(spec, {"zen_loss": np.array([2.0, 1.25, 1.5])}, np.ones(3, bool))
    page = write_report([("tok", tok)], tmp_path / "r.html").read_text()
    assert f"exp(L) = {math.exp(1.25):.4g} at the centre" in page
    other = lm.Surface(lm.ScanSpec(grid=((-1, 1, 3),), splits=("zen",), metrics=("loss",),
                                   loss="CrossEntropyLoss"), tok.values, tok.done)
    assert "perplexity" not in write_report([("ce", other)], tmp_path / "c.html").read_text()


class TinyLM(nn.Module):
    """Token ids (B, T) to logits (B, T, V): an embedding and a linear head, no transformers."""

    def __init__(self, vocab=16, width=8):
        super().__init__()
        torch.manual_seed(0)
        self.emb, self.head = nn.Embedding(vocab, width), nn.Linear(width, vocab)

    def forward(self, input_ids, attention_mask=None):
        return self.head(torch.tanh(self.emb(input_ids)))


def _token_batches(scored: bool) -> list[dict]:
    g = torch.Generator().manual_seed(3)
    out = []
    for width in (6, 4):
        ids = torch.randint(0, 16, (3, width), generator=g)
        out.append({"input_ids": ids, "labels": ids if scored else torch.full_like(ids, -100)})
    return out


def test_a_split_with_no_scored_tokens_is_refused_before_any_point():
    """Issue 21 item 15: every label -100 is one line at scan time, not 'all diverged'."""
    model = TinyLM()
    data = {"train": _token_batches(True), "val": _token_batches(False)}

    def loss(outputs, batch):
        return lm.metrics.causal_lm_loss(outputs, batch)

    loss.token_loss = True  # a user's token loss (is_token_loss)
    with pytest.raises(lm.InputError, match=r"^split 'val' has no scored tokens: every label is "
                                            r"-100 \(ignore_index\)"):
        lm.scan(model, loss, data=data, directions=lm.random_direction(model, seed=0),
                grid=(-1, 1, 5), progress=False)
    for fn in (lm.metrics.causal_lm_loss, lm.metrics.masked_lm_loss):  # as named
        with pytest.raises(lm.InputError, match=r"split 'val' has no scored tokens"):
            lm.scan(model, fn, data=data, directions=lm.random_direction(model, seed=0),
                    grid=(-1, 1, 3), progress=False)
    surf = lm.scan(model, lm.metrics.causal_lm_loss, data={"train": data["train"]},
                   directions=lm.random_direction(model, seed=0), grid=(-1, 1, 3),
                   progress=False)
    assert surf.done.all() and np.isfinite(surf["train_loss"]).all()
