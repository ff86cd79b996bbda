"""The ONNX models on a GPU: where onnxruntime places each node, parity with the CPU, and throughput.

For each shipped model it runs four sessions on the same rows: the skl2onnx tree ensemble and its
matrix rewrite (``detector.detect.models.gemm``), each on the CPU provider and with the CUDA provider
asked for first. Node placement is read from onnxruntime's own profile (each node event names its
provider). Needs only numpy, onnx and onnxruntime-gpu (not the rest of the package)::

    python benchmarks/onnx_cuda.py [--rows 1000,100000,1000000] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from detector.detect.models.gemm import to_gemm

MODELS = Path(__file__).resolve().parents[1] / "models"


def _session(model: bytes, providers: list[str], profile_dir: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(profile_dir) / "p")
    opts.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=opts, providers=providers)


def _placement(sess: ort.InferenceSession) -> dict[str, str]:
    """Operator -> provider, from the profile of the runs so far."""
    events = json.loads(Path(sess.end_profiling()).read_text())
    out: dict[str, Counter[str]] = {}
    for e in events:
        args = e.get("args") or {}
        if e.get("cat") == "Node" and "provider" in args:
            out.setdefault(args.get("op_name", "?"), Counter())[args["provider"]] += 1
    return {op: ",".join(sorted(c)) for op, c in sorted(out.items())}


def _time(sess: ort.InferenceSession, x: np.ndarray, repeat: int) -> float:
    sess.run(None, {"features": x})  # warm-up (CUDA: kernels, allocations)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        sess.run(None, {"features": x})
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rows", default="1000,100000,1000000")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    result: dict[str, object] = {
        "onnxruntime": ort.__version__,
        "available_providers": ort.get_available_providers(),
        "device": ort.get_device(),
        "models": {},
    }
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(MODELS.glob("*.onnx")):
            tree = path.read_bytes()
            gemm = to_gemm(tree)
            parity = np.load(path.with_name(path.stem + ".parity.npz"))
            x0 = parity["x"]
            forms = {"tree": tree, "gemm": gemm}
            sessions = {
                (form, where): _session(blob, prov, tmp)
                for form, blob in forms.items()
                for where, prov in (
                    ("cpu", ["CPUExecutionProvider"]),
                    ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"]),
                )
            }
            probs = {k: s.run(None, {"features": x0})[1][:, 1] for k, s in sessions.items()}
            ref = parity["p"]
            entry: dict[str, object] = {
                "reported_provider": {f"{f}/{w}": s.get_providers()[0] for (f, w), s in sessions.items()},
                "max_abs_diff_vs_training_probabilities": {
                    f"{f}/{w}": float(np.abs(p - ref).max()) for (f, w), p in probs.items()
                },
            }
            timings: dict[str, dict[str, float]] = {}
            for n in (int(r) for r in args.rows.split(",")):
                noise = rng.uniform(0.8, 1.2, (n, x0.shape[1])).astype(np.float32)
                x = x0[rng.integers(0, len(x0), n)] * noise
                got = {k: s.run(None, {"features": x})[1][:, 1] for k, s in sessions.items()}
                base = got[("tree", "cpu")]
                timings[str(n)] = {
                    **{f"{f}/{w} rows/s": n / _time(s, x, args.repeat) for (f, w), s in sessions.items()},
                    **{f"{f}/{w} max diff": float(np.abs(g - base).max()) for (f, w), g in got.items()},
                }
            entry["rows"] = timings
            entry["placement"] = {f"{f}/{w}": _placement(s) for (f, w), s in sessions.items()}
            result["models"][path.stem] = entry  # type: ignore[index]
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
