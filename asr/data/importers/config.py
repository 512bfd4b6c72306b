"""Settings of a corpus import: text normalisation, duration limits, audio, and the seeded split.

Plain dataclasses (the importer is a command-line tool, not a Hydra entry point); `python -m asr.data.importers`
fills them from its options and writes them into the import report, so a manifest folder says how it was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CASES = ("upper", "lower", "keep")
PUNCTUATION = ("remove", "keep")
NUMBERS = ("keep", "skip")


@dataclass
class TextNormConfig:
    # Upper case as the LibriSpeech recipe's transcripts, so that BPE models and WERs compare across recipes;
    # "keep" for scripts or corpora where case carries meaning.
    case: str = "upper"
    # "remove": Unicode punctuation (categories P*) becomes a space, except apostrophes inside words (see below);
    # symbols such as % $ + stay. "keep": the text is left as it is.
    punctuation: str = "remove"
    # Keep apostrophes between letters ("DON'T") when punctuation is removed, as LibriSpeech does.
    keep_apostrophes: bool = True
    # Punctuation characters (Unicode P*) that carry words and so stay when punctuation is removed: "50%" is
    # "fifty percent", "R&D", "a@b". Symbols outside P* ($ + = ...) always stay.
    keep_chars: str = "%&@#"
    # Numbers are never rewritten (their spoken form depends on language and context): "keep" leaves digits as
    # they are, "skip" drops utterances whose transcript holds a digit (counted as such).
    numbers: str = "keep"
    # Unicode NFKC first: full-width letters, ligatures and composed accents get one spelling.
    unicode_nfkc: bool = True

    def __post_init__(self) -> None:
        for name, value, allowed in (("case", self.case, CASES), ("punctuation", self.punctuation, PUNCTUATION),
                                     ("numbers", self.numbers, NUMBERS)):
            if value not in allowed:
                raise ValueError(f"text normalisation: {name}={value!r}, expected one of {', '.join(allowed)}")


@dataclass
class SplitConfig:
    # Fractions of the utterances held out for dev and test when the corpus has no such set. Whole speakers are
    # moved (no voice in two sets), so the sizes are met approximately; each held-out set gets at least one
    # speaker (one utterance when there are no speakers) while its fraction is above 0.
    dev_fraction: float = 0.05
    test_fraction: float = 0.05
    # The split is a function of the seed and the utterance/speaker ids only (not of the order files were found).
    seed: int = 0

    def __post_init__(self) -> None:
        if not (0 <= self.dev_fraction < 1 and 0 <= self.test_fraction < 1
                and self.dev_fraction + self.test_fraction < 1):
            raise ValueError(f"split: dev_fraction={self.dev_fraction}, test_fraction={self.test_fraction}: "
                             "each in [0, 1) and together below 1")


@dataclass
class ImportConfig:
    text: TextNormConfig = field(default_factory=TextNormConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    # Utterances shorter than this are dropped: under half a second there is rarely a whole word, and very short
    # cuts give the subsampled encoder only a frame or two.
    min_duration: float = 0.5
    # Utterances longer than this are dropped: memory of a transducer batch grows with T x U; training filters
    # again at its own (usually tighter) limits, so this only keeps unusable files out of every set.
    max_duration: float = 30.0
    # Recordings at another rate are resampled on load to this one (lhotse records a Resample transform in the
    # manifest; the files are not rewritten): the fbank of asr.data.features expects 16 kHz. 0 keeps the rates.
    sample_rate: int = 16000
    # Multi-channel audio: "downmix" writes a mono FLAC copy (mean of the channels) under <out>/audio/ and uses
    # it, "first" the same with channel 0, "skip" drops it (counted). The feature pipeline is single-channel.
    multichannel: str = "downmix"
    # Parallel threads probing audio headers (and running wav.scp commands).
    jobs: int = 2
    # Seconds a wav.scp command may run before its recording counts as unreadable.
    command_timeout: float = 120.0

    def __post_init__(self) -> None:
        if not 0 <= self.min_duration < self.max_duration:
            raise ValueError(f"min_duration={self.min_duration}, max_duration={self.max_duration}: "
                             "need 0 <= min < max")
        if self.multichannel not in ("downmix", "first", "skip"):
            raise ValueError(f"multichannel={self.multichannel!r}, expected downmix, first or skip")
