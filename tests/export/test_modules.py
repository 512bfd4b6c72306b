"""The export views compute what the model computes: relative positions and shift, encoder, decoder, joiner; and the
ONNX files of conformer_small / conformer_l12 and of encoder variants (half-rate layers, depthwise subsampling; random
weights) match PyTorch for odd lengths and padded batches."""

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from asr.export.modules import ExportDecoder, ExportEncoder, ExportJoiner, relative_positions, relative_shift
from asr.models import ModelConfig, build_model
from asr.models.conformer import relative_positions as model_relative_positions

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
PAD_VALUE = float(np.log(1e-10))  # what sherpa-onnx pads batched features with


def build(name: str, **overrides):
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / f"{name}.yaml"), overrides)
    torch.manual_seed(0)
    return build_model(OmegaConf.to_object(cfg)).eval()


def test_relative_positions_equal_the_model_table():
    for t in (1, 2, 25, 64):
        assert torch.equal(relative_positions(t, 144, torch.device("cpu"), torch.float32),
                           model_relative_positions(t, 144, torch.device("cpu"), torch.float32))


def test_relative_shift_by_brute_force():
    b, h, t = 2, 3, 5
    pos = torch.randn(b, h, t, 2 * t - 1)
    out = relative_shift(pos)
    for i in range(t):
        for j in range(t):
            assert torch.equal(out[:, :, i, j], pos[:, :, i, t - 1 - i + j])


def test_export_views_equal_the_model_in_eager_mode():
    model = build("conformer_small", encoder={"num_layers": 2})
    x, x_lens = torch.randn(2, 131, 80), torch.tensor([131, 90])
    with torch.no_grad():
        ref, ref_lens = model.encode(x, x_lens)
        out, out_lens = ExportEncoder(model.encoder, model.joiner.encoder_proj)(x, x_lens)
        torch.testing.assert_close(out, model.joiner.encoder_proj(ref), rtol=1e-5, atol=1e-5)
        assert torch.equal(out_lens, ref_lens)
        y = torch.tensor([[0, 0], [5, 7]])
        dec_ref = model.joiner.decoder_proj(model.decoder(y, need_pad=False)).squeeze(1)
        torch.testing.assert_close(ExportDecoder(model)(y), dec_ref)
        e, d = torch.randn(4, 144), torch.randn(4, 144)
        torch.testing.assert_close(ExportJoiner(model)(e, d), model.joiner(e, d, project_input=False))


def test_minus_one_context_is_the_zero_embedding_not_the_last_row():
    """sherpa-onnx starts from [-1, blank]: -1 must act as blank (zero row), never as row V-1."""
    model = build("conformer_small", encoder={"num_layers": 1})
    with torch.no_grad():
        assert model.decoder.embedding.weight[-1].abs().sum() > 0
        dec = ExportDecoder(model)
        blank = dec(torch.tensor([[0, 0]]))
        torch.testing.assert_close(dec(torch.tensor([[-1, 0]])), blank)
        torch.testing.assert_close(dec(torch.tensor([[-1, -1]])), blank)
        last_row = dec(torch.tensor([[model.vocab_size - 1, 0]]))
        assert not torch.allclose(last_row, blank)


def _rel_err(a: np.ndarray, r: np.ndarray) -> float:
    return float(np.abs(a - r).max() / np.abs(r).max())


def check_onnx_matches(model, tmp_path: Path, lengths: list[list[int]]) -> None:
    """Export `model` (no int8) and compare the three ONNX files with PyTorch (relative error <= 1e-4)."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import sentencepiece as spm

    from asr.data.bpe import train_bpe
    from asr.export.onnx import export_onnx

    bpe = train_bpe(["a b c d e f g h"] * 3, tmp_path / "lang", vocab_size=13)  # sizes only matter
    model = _resize_vocab(model, spm.SentencePieceProcessor(model_file=str(bpe)).get_piece_size())
    export_onnx(model, bpe, tmp_path / "onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = {n: ort.InferenceSession(str(tmp_path / "onnx" / f"{n}.onnx"), opts, providers=["CPUExecutionProvider"])
            for n in ("encoder", "decoder", "joiner")}  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    for lens in lengths:
        x = torch.randn(len(lens), max(lens), 80, generator=gen)
        for i, n in enumerate(lens):
            x[i, n:] = PAD_VALUE
        x_lens = torch.tensor(lens)
        enc, enc_lens = sess["encoder"].run(None, {"x": x.numpy(), "x_lens": x_lens.numpy()})
        with torch.no_grad():
            for i, n in enumerate(lens):  # each utterance alone and unpadded: padding must not matter
                ref, ref_lens = model.encode(x[i : i + 1, :n], x_lens[i : i + 1])
                ref = model.joiner.encoder_proj(ref)[0].numpy()
                assert enc_lens[i] == ref_lens[0]
                assert _rel_err(enc[i, : ref.shape[0]], ref) <= 1e-4, (lens, i)
    y = np.array([[-1, 0], [3, 4], [0, 0]], dtype=np.int64)
    with torch.no_grad():
        ref = model.joiner.decoder_proj(model.decoder(torch.tensor([[0, 0], [3, 4], [0, 0]]), need_pad=False))[:, 0]
        (dec,) = sess["decoder"].run(None, {"y": y})
        assert dec.shape == ref.shape and _rel_err(dec, ref.numpy()) <= 1e-4
        e = torch.randn(5, dec.shape[1], generator=gen)
        d = torch.randn(5, dec.shape[1], generator=gen)
        (logit,) = sess["joiner"].run(None, {"encoder_out": e.numpy(), "decoder_out": d.numpy()})
        assert _rel_err(logit, model.joiner(e, d, project_input=False).numpy()) <= 1e-4


def _resize_vocab(model, vocab: int):
    """The same model with a vocabulary of `vocab` (random new output rows): the test BPE model is small."""
    model.decoder.embedding = torch.nn.Embedding(vocab, model.decoder.decoder_dim, padding_idx=0)
    model.decoder.vocab_size = vocab
    j = model.joiner.output_linear
    model.joiner.output_linear = torch.nn.Linear(j.in_features, vocab)
    model.vocab_size = vocab
    return model.eval()


def test_conformer_small_onnx_matches_pytorch(tmp_path):
    check_onnx_matches(build("conformer_small"), tmp_path, [[101], [997], [1503, 101, 997]])


@pytest.mark.slow
def test_conformer_l12_onnx_matches_pytorch(tmp_path):
    check_onnx_matches(build("conformer_l12"), tmp_path, [[101], [1503, 101, 997]])


@pytest.mark.parametrize("encoder", [{"half_rate_layers": [1, 5]}, {"subsampling_conv": "depthwise", "num_layers": 2}],
                         ids=["half_rate_layers", "depthwise_subsampling"])
def test_encoder_variants_export(tmp_path, encoder):
    check_onnx_matches(build("conformer_small", encoder=encoder), tmp_path, [[997, 101, 303]])
