"""Step 5 of the GPU check: decoding throughput of greedy and modified beam search (beam 4).

Decoding = encoder forward + search, from features to token ids, on a batch of utterances of LibriSpeech-like
lengths; throughput in utterances per second and real-time factor (compute seconds per audio second). With random
weights the search emits on far more frames than a trained model does (a trained one emits on about one frame in
ten), so the search share is an upper bound; the labels per frame are in the table. The demo model is decoded too
when its experiment directory is given (--demo-exp), loaded with asr.decode.inference.load_model.
"""

from __future__ import annotations

import torch

from bench.gpu import workload


def _decode_rows(model, name: str, device: torch.device, profile: dict) -> list[dict]:
    from asr.decode.greedy import greedy_search_batch
    from asr.decode.modified_beam_search import modified_beam_search

    pool = workload.utterance_pool(profile["decode_utts"], seed=6, scale=profile["scale"])
    num_features = model.encoder.num_features if hasattr(model.encoder, "num_features") else 80
    x, x_lens, _, _ = workload.feature_batch(pool, model.vocab_size, device, seed=7, num_features=num_features)
    audio = sum(u.seconds for u in pool)
    methods = {
        "greedy": lambda e, n: greedy_search_batch(model, e, n),
        "modified_beam_search (beam 4)": lambda e, n: modified_beam_search(model, e, n, beam=4),
    }
    rows = []
    with torch.inference_mode():
        for method, search in methods.items():
            row = {"model": name, "method": method, "utterances": len(pool), "audio_s": audio}
            try:
                hyps = []

                def decode(i: int) -> None:
                    enc, enc_lens = model.encode(x, x_lens)
                    hyps[:] = search(enc, enc_lens)
                    row["encoder_frames"] = int(enc_lens.sum())

                row.update(workload.time_steps(decode, device, 1, profile["decode_repeats"]))
                seconds = row["median_ms"] / 1e3
                row["utt_per_s"] = len(pool) / seconds
                row["rtf"] = seconds / audio
                row["labels_per_frame"] = sum(len(h.tokens) for h in hyps) / row["encoder_frames"]
                row["status"] = "ok"
            except Exception as e:
                row.update(status="failed", error=f"{type(e).__name__}: {str(e)[:300]}")
            rows.append(row)
    return rows


def run(device: torch.device, profile: dict, emit, demo_exp: str = "") -> None:
    from bench.gpu.step_train import build

    model = build(profile["decode_model"], device, profile.get("decode_overrides")).eval()
    for row in _decode_rows(model, f"{profile['decode_model']} (random weights)", device, profile):
        emit(row)
    del model
    if not demo_exp:
        emit({"model": "demo model", "status": "skipped", "error": "no --demo-exp given"})
        return
    try:
        from asr.decode.inference import load_model

        demo = load_model(demo_exp, device=device).model
    except Exception as e:
        emit({"model": f"demo model ({demo_exp})", "status": "failed", "error": f"{type(e).__name__}: {e}"[:300]})
        return
    for row in _decode_rows(demo, f"demo model ({demo_exp})", device, profile):
        emit(row)
