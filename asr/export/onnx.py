"""ONNX export of a trained `Transducer` in sherpa-onnx's offline transducer layout, int8 quantization, and the
check of an exported directory (sherpa-onnx exits the whole process on missing metadata: we check first).

    encoder.onnx  x (N, T, F) float32, x_lens (N,) int64 -> encoder_out (N, T', J), encoder_out_lens (N,) int64
    decoder.onnx  y (N, context_size) int64 -> decoder_out (N, J)
    joiner.onnx   encoder_out (N, J), decoder_out (N, J) -> logit (N, V)
    tokens.txt    `piece id` per line, ids 0 .. V-1 (`<blk> 0` first)
    *.int8.onnx   the same models with int8 weights (onnxruntime dynamic quantization)
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch
from torch import nn

from asr.export.modules import ExportDecoder, ExportEncoder, ExportJoiner
from asr.models.transducer import Transducer

log = logging.getLogger(__name__)

# opset 17 with the TorchScript-based exporter (dynamo=False): torch's newer exporter honours dynamic_axes only in
# part, and sherpa-onnx's bundled onnxruntime (1.2x) loads opset 17.
OPSET = 17
FILES = ("encoder", "decoder", "joiner")
AUTHOR = "asr (pruned RNN-T toolkit)"
# Metadata that sherpa-onnx reads (it exits the process without decoder's vocab_size / context_size, and its
# C++ CLI refuses an encoder without model_type), plus ours. Checked by `check_model_dir`.
REQUIRED_METADATA = {
    "encoder": ("model_type", "version", "model_author", "comment"),
    "decoder": ("vocab_size", "context_size"),
    "joiner": ("joiner_dim",),
}
# Ops quantized to int8 (icefall's choice: MatMul in encoder and joiner, MatMul + Gather in the decoder). The
# subsampling Conv2d stays float32: ConvInteger was slower than float Conv here (conformer_small encoder, 1 thread,
# 1000 frames: 0.093 s with it, 0.062 s without). Per-channel weight scales for the MatMuls: more accurate and, by
# the same measure, faster (0.055 s; fp32 0.096 s, PyTorch 0.129 s).
INT8_OPS = {"encoder": ["MatMul"], "decoder": ["MatMul", "Gather"], "joiner": ["MatMul"]}
INT8_PER_CHANNEL = {"encoder": True, "decoder": False, "joiner": True}


class ExportError(Exception):
    """A model or a directory that cannot be exported or deployed; the message names the file, key or id."""


def check_exportable(model: Transducer, bpe_model: str | Path) -> "object":
    """Refuse what sherpa-onnx cannot run; returns the loaded sentencepiece processor.

    Raises ExportError: blank id not 0 (sherpa-onnx hard-codes it), a BPE model that is missing, whose `<blk>` is
    not id 0, or whose size differs from the model's vocabulary.
    """
    import sentencepiece as spm

    if model.blank_id != 0:
        raise ExportError(f"the model's blank id is {model.blank_id}; sherpa-onnx assumes blank = 0")
    path = Path(bpe_model)
    if not path.is_file():
        raise ExportError(f"BPE model {path} does not exist (tokens.txt is written from it)")
    sp = spm.SentencePieceProcessor(model_file=str(path))
    if sp.get_piece_size() != model.vocab_size:
        raise ExportError(f"{path} has {sp.get_piece_size()} pieces, the model's vocabulary is {model.vocab_size}")
    if sp.id_to_piece(0) != "<blk>":
        raise ExportError(f"{path}: id 0 is {sp.id_to_piece(0)!r}, not <blk>; sherpa-onnx assumes blank = 0")
    return sp


def write_tokens(sp, path: Path) -> None:
    """tokens.txt: `piece id` for every id of the sentencepiece model `sp`."""
    lines = []
    for i in range(sp.get_piece_size()):
        piece = sp.id_to_piece(i)
        if not piece or any(c.isspace() for c in piece):
            raise ExportError(f"piece {i} ({piece!r}) cannot be written to tokens.txt (empty or with whitespace)")
        lines.append(f"{piece} {i}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_metadata(path: Path, meta: dict[str, object]) -> None:
    """Write `meta` (values as strings) into the metadata_props of the ONNX model at `path`."""
    import onnx

    proto = onnx.load(str(path))
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in meta.items():
        prop = existing.get(key) or proto.metadata_props.add()
        prop.key, prop.value = key, str(value)
    onnx.save(proto, str(path))


def read_metadata(path: Path) -> dict[str, str]:
    """metadata_props of an ONNX file (its weights are not loaded)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]], opset: int) -> None:
    # eval() first: the exporter restores the wrapper's mode afterwards, and a wrapper left in train mode (the
    # default of a new module) would put the shared model's dropout back on.
    module.eval()
    torch.onnx.export(module, args, str(path), input_names=inputs, output_names=outputs, dynamic_axes=dynamic,
                      opset_version=opset, dynamo=False, do_constant_folding=True)


def metadata(model: Transducer, comment: str = "") -> dict[str, dict[str, object]]:
    """The metadata of each file."""
    enc = model.encoder
    joiner_dim = model.joiner.encoder_proj.out_features
    return {
        "encoder": {"model_type": "conformer", "version": "1", "model_author": AUTHOR,
                    "comment": comment or "offline pruned RNN-T Conformer",
                    "num_features": enc.num_features, "subsampling_factor": enc.subsampling_factor,
                    "input_norm": enc.input_norm, "vocab_size": model.vocab_size},
        "decoder": {"vocab_size": model.vocab_size, "context_size": model.context_size},
        "joiner": {"joiner_dim": joiner_dim},
    }  # fmt: skip


@torch.no_grad()
def export_onnx(model: Transducer, bpe_model: str | Path, out_dir: str | Path, int8: bool = False,
                opset: int = OPSET, comment: str = "") -> Path:
    """Export `model` to `out_dir` (encoder/decoder/joiner.onnx, tokens.txt; *.int8.onnx too when `int8`).

    The model is put in eval mode on CPU in float32 (a copy is not made: it is left there). Returns out_dir.
    Raises ExportError for what sherpa-onnx cannot run (see `check_exportable`).
    """
    sp = check_exportable(model, bpe_model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu", torch.float32).eval()
    enc = model.encoder
    joiner_dim = model.joiner.encoder_proj.out_features
    meta = metadata(model, comment)

    x = torch.zeros(2, 123, enc.num_features)  # an odd length: nothing may depend on T % 4
    x_lens = torch.tensor([123, 100], dtype=torch.int64)
    _export(ExportEncoder(enc, model.joiner.encoder_proj), (x, x_lens), out / "encoder.onnx", ["x", "x_lens"],
            ["encoder_out", "encoder_out_lens"],
            {"x": {0: "N", 1: "T"}, "x_lens": {0: "N"}, "encoder_out": {0: "N", 1: "T_out"},
             "encoder_out_lens": {0: "N"}}, opset)  # fmt: skip
    y = torch.full((2, model.context_size), -1, dtype=torch.int64)
    _export(ExportDecoder(model), (y,), out / "decoder.onnx", ["y"], ["decoder_out"],
            {"y": {0: "N"}, "decoder_out": {0: "N"}}, opset)
    e, d = torch.zeros(2, joiner_dim), torch.zeros(2, joiner_dim)
    _export(ExportJoiner(model), (e, d), out / "joiner.onnx", ["encoder_out", "decoder_out"], ["logit"],
            {"encoder_out": {0: "N"}, "decoder_out": {0: "N"}, "logit": {0: "N"}}, opset)
    for name in FILES:
        add_metadata(out / f"{name}.onnx", meta[name])
    write_tokens(sp, out / "tokens.txt")
    if int8:
        quantize_int8(out)
    check_model_dir(out, int8=int8)
    return out


def quantize_int8(model_dir: str | Path) -> None:
    """`<name>.int8.onnx` beside each `<name>.onnx`: onnxruntime dynamic quantization (int8 weights), metadata kept."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    d = Path(model_dir)
    for name in FILES:
        src, dst = d / f"{name}.onnx", d / f"{name}.int8.onnx"
        quantize_dynamic(str(src), str(dst), op_types_to_quantize=INT8_OPS[name], weight_type=QuantType.QInt8,
                         per_channel=INT8_PER_CHANNEL[name])
        add_metadata(dst, read_metadata(src))  # quantize_dynamic does not carry metadata_props over


def model_files(model_dir: str | Path, int8: bool = False) -> dict[str, Path]:
    """{"encoder", "decoder", "joiner", "tokens"} -> paths in `model_dir` (the .int8.onnx ones when `int8`)."""
    d = Path(model_dir)
    suffix = ".int8.onnx" if int8 else ".onnx"
    files = {name: d / f"{name}{suffix}" for name in FILES}
    files["tokens"] = d / "tokens.txt"
    return files


def check_model_dir(model_dir: str | Path, int8: bool = False) -> dict[str, dict[str, str]]:
    """What sherpa-onnx needs of an exported directory, checked before it sees it; returns each file's metadata.

    Raises ExportError naming the missing file or metadata key, or a tokens.txt that does not match vocab_size.
    """
    d = Path(model_dir)
    if not d.is_dir():
        raise ExportError(f"model directory {d} does not exist")
    files = model_files(d, int8)
    for path in files.values():
        if not path.is_file():
            raise ExportError(f"{path} is missing (export with asr-export{' --int8' if int8 else ''})")
    metas = {}
    for name in FILES:
        meta = read_metadata(files[name])
        missing = [k for k in REQUIRED_METADATA[name] if k not in meta]
        if missing:
            raise ExportError(f"{files[name]}: metadata key {missing[0]!r} is missing (sherpa-onnx needs "
                              f"{', '.join(REQUIRED_METADATA[name])})")  # fmt: skip
        metas[name] = meta
    vocab = metas["decoder"]["vocab_size"]
    if not vocab.isdigit() or int(vocab) < 2:
        raise ExportError(f"{files['decoder']}: metadata vocab_size={vocab!r} is not a vocabulary size")
    if not metas["decoder"]["context_size"].isdigit() or int(metas["decoder"]["context_size"]) < 1:
        raise ExportError(f"{files['decoder']}: metadata context_size={metas['decoder']['context_size']!r} "
                          "is not a positive integer")  # fmt: skip
    lines = files["tokens"].read_text(encoding="utf-8").splitlines()
    if len(lines) != int(vocab):
        raise ExportError(f"{files['tokens']} has {len(lines)} lines, the decoder's vocab_size is {vocab}")
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) != 2 or parts[1] != str(i):
            raise ExportError(f"{files['tokens']}:{i + 1}: expected '<piece> {i}', got {line!r}")
    if lines[0].split()[0] != "<blk>":
        raise ExportError(f"{files['tokens']}:1: id 0 must be <blk> (sherpa-onnx's blank), got {lines[0]!r}")
    return metas


def copy_bpe_model(bpe_model: str | Path, out_dir: str | Path) -> None:
    """Keep the BPE model beside the export (sherpa-onnx does not need it; our own tools may)."""
    shutil.copyfile(bpe_model, Path(out_dir) / "bpe.model")
