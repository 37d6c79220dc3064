"""Stage `register`: register the trained model as the `challenger` of `sdl-<dataset>`, then
run the promotion gate.

The gate scores the challenger and the current `champion` from their registered artifacts on
the test images with the current vocabulary, compares `register.<dataset>.primary_metric`
(default `gzsl.map`) and moves `champion` only when the challenger wins by more than zero and
by at least `min_margin`; the first model becomes champion. A model (training run) already
registered and gated is not registered again: a grown vocabulary reruns this stage without a
new version; a version whose gate did not finish (store down, champion lock busy) is gated.
``registered.json`` records the version, its aliases, the run and the gate's decision.

    python -m stages.register --dataset embedded --model models/embedded \
        --manifest data/embedded/manifest.parquet --split data/embedded/split \
        --vocabulary data/embedded/vocabulary.parquet --metrics metrics/embedded/eval.json \
        --out metrics/embedded/registered.json
"""

from __future__ import annotations

from collections.abc import Sequence

from sdl.mlops.registration import register_and_gate
from sdl.safety.errors import run_command
from stages._common import load_dataset, parse_args, setup_logging

PATHS = ["model", "manifest", "split", "vocabulary", "metrics", "out"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(__doc__, PATHS, argv)
    setup_logging()
    params = load_dataset(args.params, args.dataset)
    register_and_gate(args.dataset, params, **{name: getattr(args, name) for name in PATHS})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_command(main, "register"))
