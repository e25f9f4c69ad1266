"""``archbench-transcribe FILE.wav [...] --model-uri URI``: the digits heard in each WAV file, by
a CTC model (task ctc, e.g. ``data=fsdd_strings model=deepspeech``) logged or registered in MLflow.
Prints one CSV row per file: the file and the digits, space-separated. The WAV is read as in
training (mono, resampled to the model's rate) and turned into the model's own features.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from archbench.cli.common import (
    add_model_arguments,
    at_least,
    load_logged_model,
    reporting_errors,
    wav_files,
)

PROGRAM = "archbench-transcribe"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__)
    parser.add_argument("files", type=Path, nargs="+",
                        help="PCM WAV files (any rate; stereo is averaged), or folders: every .wav in them")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="prefix beam width (1: greedy; default: the model's decode.beam_size)")
    add_model_arguments(parser, "fsdd_strings-deepspeech")
    args = parser.parse_args(argv)
    at_least(PROGRAM, "--beam-size", args.beam_size, 1, " (1: greedy)")
    args.files = [file for path in args.files for file in wav_files(PROGRAM, path)]

    def run() -> None:
        from archbench.data.audio import read_wav

        model = load_logged_model(PROGRAM, args, "transcribe",
                                  "a transcription model (train one with data=fsdd_strings model=deepspeech)")
        waves = [read_wav(path, model.sample_rate) for path in args.files]
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["file", "digits"])
        for path, digits in zip(args.files, model.transcribe(waves, args.beam_size), strict=True):
            writer.writerow([str(path), digits])

    reporting_errors(PROGRAM, run)


if __name__ == "__main__":
    main()
