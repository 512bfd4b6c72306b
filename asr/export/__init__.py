"""Deployment: a trained transducer exported to ONNX for sherpa-onnx (fp32 and int8) and to TorchScript.

Export and deploy
-----------------
Install the `export` extra (`pip install -e .[export]`; `scripts/setup.sh --test` does it): onnx, onnxruntime and
sherpa-onnx, pinned; training needs none of them. Then

    asr-export --exp-dir exp/demo --epoch 0 --avg 1 --out exp/demo/onnx --int8 --jit

writes `encoder.onnx`, `decoder.onnx`, `joiner.onnx`, `tokens.txt` (sherpa-onnx's offline transducer layout), the
same with int8 weights (`*.int8.onnx`), `jit.pt` (TorchScript, loadable by `torch.jit.load` alone) and `bpe.model`.
The checkpoint flags are those of decoding (`--epoch/--avg`, `--iter`, `--use-averaged-model`, `--checkpoint`).
sherpa-onnx (Linux, Windows, macOS, Android, iOS, WebAssembly; C, C++, Python, Java, Go, ...) then runs the model
without this repository; in Python:

    import sherpa_onnx
    import soundfile as sf

    recognizer = sherpa_onnx.OfflineRecognizer.from_transducer(
        encoder="encoder.int8.onnx", decoder="decoder.int8.onnx", joiner="joiner.int8.onnx",
        tokens="tokens.txt", num_threads=1, decoding_method="greedy_search")  # or "modified_beam_search"
    samples, sample_rate = sf.read("test.wav", dtype="float32")  # mono, any rate: sherpa-onnx resamples
    stream = recognizer.create_stream()
    stream.accept_waveform(sample_rate, samples)
    recognizer.decode_stream(stream)
    print(stream.result.text)

`recipes/librispeech/export.sh` exports a run and decodes test folders with sherpa-onnx, writing its WER beside
decode.py's; `python -m asr.export.evaluate` does the decoding part alone.

What the export guarantees (tests/export)
-----------------------------------------
- sherpa-onnx's greedy search picks the same tokens as our PyTorch greedy search, one stream at a time and batched
  (`decode_streams`, which pads features with log(1e-10): the encoder masks by x_lens); modified beam search within
  0.5 WER of ours, int8 within 1.5 WER of fp32; jit.pt the same tokens as PyTorch. fp32 results do not depend on
  batching; int8 ones can: dynamic quantization takes activation scales over the whole padded batch (seen on 1 of
  12 test utterances with modified beam search), so decode one stream at a time where int8 must be reproducible.
- The ONNX encoder equals PyTorch within 1e-4 relative (conformer_small, conformer_l12, half-rate layers) for odd
  lengths (101, 997, 1503 frames) and padded batches: N and T are dynamic (TorchScript-based exporter, opset 17;
  the relative shift is a gather, not `as_strided`). The per-utterance feature normalisation of the demo models is
  inside encoder.onnx (sherpa-onnx feeds raw fbank), and so is the joiner's encoder projection.
- The decoder maps the context label -1 (sherpa-onnx starts every utterance from [-1, ..., -1, 0]) to the zero
  embedding, as the blank row in training, never to the embedding's last row.
- Refused with a message: a blank id other than 0 (sherpa-onnx hard-codes it), a missing BPE model, a missing
  checkpoint; `check_model_dir` names a missing metadata key before sherpa-onnx, which ends the process on it, loads
  the directory.

Front end
---------
sherpa-onnx computes Kaldi-compatible fbank itself (16 kHz, 80 bins, 25/10 ms, povey window, pre-emphasis 0.97, DC
removal, 20 Hz to Nyquist - 400 Hz, no dither, snip_edges false, samples in [-1, 1]); training uses lhotse's Fbank
with its defaults, the same settings. Measured on flite speech (the demo corpus's kind of audio, 8 files, 29 s) with
`frontend.fbank_difference` against torchaudio's Kaldi fbank with sherpa-onnx's settings: the same frame counts, max
|difference| 1.5e-4 and mean 9e-7 log-mel units. No token changes: on those files a random-weight conformer_small
(no confident margins, the most sensitive case) gives the same greedy tokens from sherpa-onnx (its own fbank) as from
PyTorch (lhotse fbank) on 8 of 8 files, and the trained test model on 12 of 12. So the features need no change.

Speed and size (bench/bench_export.py, AMD EPYC, 1 thread, the demo's conformer_small at 64 units with random
weights, 8 flite files, 29 s, machine otherwise idle): real-time factor PyTorch greedy 0.0076, sherpa-onnx fp32
0.0049 (1.55x faster), int8 0.0037 (2.05x faster; 1.7x / 2.2x in a run on a busy machine); ONNX files fp32 12.9 MB,
int8 3.6 MB (0.28x; the subsampling convolutions stay float32). int8 with random weights keeps PyTorch's exact tokens
on only 2 of 8 files (no confident margins); on the trained test model its WER is within 1.5 of fp32.

Modules: `onnx` (export, int8, directory check), `modules` (the export-friendly views of the model), `jit`
(TorchScript), `sherpa` (decoding with sherpa-onnx), `frontend` (audio and the two fbanks), `evaluate` (WER on test
folders), `cli` (asr-export).
"""

from asr.export.onnx import ExportError, check_model_dir, export_onnx, quantize_int8

__all__ = ["ExportError", "check_model_dir", "export_onnx", "quantize_int8"]
