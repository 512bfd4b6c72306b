"""jit.pt: the same tokens as PyTorch (its scripted greedy search and asr.decode's searches on it), and it loads
with torch alone, with no code of this repository importable."""

import subprocess
import sys

import torch

from asr.export.jit import JitAdapter, load_jit, transcribe_files_jit


def test_scripted_greedy_equals_pytorch(trained, exported, samples, pytorch_hyps):
    from asr.data.audio import fbank as training_fbank

    module, pieces = load_jit(exported / "jit.pt")
    assert pieces[0] == "<blk>" and len(pieces) == trained.model.vocab_size
    feats = [training_fbank(s) for s in samples]
    one = [module.greedy_search(f.unsqueeze(0), torch.tensor([f.size(0)]))[0] for f in feats]
    assert one == pytorch_hyps["greedy"]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True, padding_value=-23.0)  # (N, T, F)
    batch = module.greedy_search(x, torch.tensor([f.size(0) for f in feats]))
    assert batch == pytorch_hyps["greedy"]


def test_our_searches_on_jit_equal_pytorch(trained, exported, samples, pytorch_hyps):
    from asr.decode.search import search
    from asr.data.audio import fbank as training_fbank

    model = JitAdapter(load_jit(exported / "jit.pt")[0])
    with torch.inference_mode():
        for i, s in enumerate(samples):
            f = training_fbank(s)
            enc, enc_lens = model.encode(f.unsqueeze(0), torch.tensor([f.size(0)]))
            for method in ("greedy", "modified_beam_search"):
                assert search(model, enc, enc_lens, method, beam=4)[0].tokens == pytorch_hyps[method][i], (method, i)


def test_transcribe_files_jit(trained, exported, pytorch_hyps):
    from asr.data.tokenizer import Tokenizer

    expected = [t.upper() for t in Tokenizer(trained.bpe_model).decode(pytorch_hyps["greedy"])]
    assert transcribe_files_jit(exported / "jit.pt", trained.wavs) == expected


def test_loads_without_this_repository(exported, tmp_path):
    code = ("import sys, torch\n"
            "class Block:  # the editable install puts asr on every path: forbid importing it instead\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'asr':\n"
            "            raise ImportError('asr is blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            f"m = torch.jit.load({str(exported / 'jit.pt')!r})\n"
            "x = torch.randn(2, 157, m.num_features)\n"
            "print(len(m.greedy_search(x, torch.tensor([157, 99]))), 'asr' in sys.modules)\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
