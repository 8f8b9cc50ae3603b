"""``python -m benchmarks.paired OLD NEW``: upload latency of two checkouts of the server, side by side.

The default run compares the server with a bare loop measured in the same run; between sessions this VM's
speed drifts by 10-20 %, so a slower figure than last time says nothing about the code. This probe answers
"did these commits make an upload slower?": one home is seeded once (the quick-profile CxrNet, every
finding positive on the benchmark study) and copied twice; ``dxassist serve`` runs from each checkout
(``OLD`` and ``NEW``, two clones or worktrees at the commits to compare, sharing this interpreter's
packages) on its own copy; one client posts the uncompressed benchmark study (new UIDs each time) in
blocks of sequential uploads, alternating between the two servers block by block so both see the same
load. Printed: each server's median and quartiles, and NEW's median over OLD's. Never asserted.

```
git worktree add /tmp/old 7afeb2d
python -m benchmarks.paired /tmp/old .            # 10 blocks of 20 uploads a server
python -m benchmarks.paired /tmp/old . --blocks 20 --per-block 10
```
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

import inference  # noqa: F401  (telemetry off before onnxruntime or mlflow is imported anywhere)


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paired", description=__doc__.split("\n")[0])
    parser.add_argument("old", type=Path, help="checkout of the server to compare against")
    parser.add_argument("new", type=Path, help="checkout of the server under test")
    parser.add_argument("--blocks", type=int, default=10, help="blocks per server (default 10)")
    parser.add_argument("--per-block", type=int, default=20, help="sequential uploads per block (default 20)")
    return parser.parse_args(argv)


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(np.asarray(samples) * 1000.0, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    checkouts = {"old": args.old.resolve(), "new": args.new.resolve()}
    for name, path in checkouts.items():
        if not (path / "inference" / "cli.py").is_file():
            print(f"{name}: {path} is not a checkout of this project (no inference/cli.py)", file=sys.stderr)
            return 2
    from benchmarks import _bare, _files, _model, _server
    from inference.config import Settings
    from inference.security import issue_token

    here = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="dxassist-paired-") as name:
        tmp = Path(name)
        home, work = tmp / "home", tmp / "work"
        work.mkdir()
        os.environ.update(_server.server_env(home))
        uids = _files.UidTemplate()
        explicit = next(
            f for f in _files.encode_all(_files.chest_pixels(), uids) if f.syntax.key == "explicit"
        )
        model = _model.build_imaging(work, input_size=_model.quick_profile_input_size(), seed=0)
        pipe = _bare.BarePipeline(model.path, model.preprocess)
        logits = pipe.run(pipe.prepare(pipe.decode(explicit.data)))[0][0]
        _model.set_thresholds(model.path, 1.0 / (1.0 + np.exp(-logits)), positives=5)
        _model.seed_home(home, model.path, work)
        # The token's signing key is made in the home: issued before the copies, it opens both servers.
        token = issue_token(Settings(), subject="benchmark", role="pacs", facility="BENCHMARK")
        homes = {key: tmp / f"home-{key}" for key in checkouts}
        for copy in homes.values():
            shutil.copytree(home, copy)
        counter = 1

        def bodies(n: int) -> list[bytes]:
            nonlocal counter
            made = [
                _server.multipart_body(v)
                for v in _files.uid_variants(explicit.data, uids, range(counter, counter + n))
            ]
            counter += n
            return made

        samples: dict[str, list[float]] = {key: [] for key in checkouts}
        with contextlib.ExitStack() as stack:
            bases: dict[str, str] = {}
            for key, path in checkouts.items():
                os.chdir(path)  # `python -m inference.cli` imports the checkout it starts in
                try:
                    os.environ.update(_server.server_env(homes[key]))
                    bases[key], _pid = stack.enter_context(
                        _server.running_server(homes[key], tmp / f"{key}.log")
                    )
                finally:
                    os.chdir(here)
            for base in bases.values():
                _server.latency(base, token, bodies(4), warmup=4)
            for block in range(args.blocks):
                for key in ("old", "new") if block % 2 == 0 else ("new", "old"):
                    timing = _server.latency(bases[key], token, bodies(args.per_block), warmup=0)
                    samples[key].extend(timing.samples)
    for key, path in checkouts.items():
        q1, q2, q3 = _quartiles(samples[key])
        print(f"{key} ({path}): p50 {q2:.1f} ms, quartiles {q1:.1f}-{q3:.1f} ms, n={len(samples[key])}")
    ratio = statistics.median(samples["new"]) / statistics.median(samples["old"])
    print(f"new / old, median upload latency: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
