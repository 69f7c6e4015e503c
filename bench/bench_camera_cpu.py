"""CPU benchmark: LiDAR-only ``tiny`` vs LiDAR + camera ``tiny_cam``, ONNX Runtime, same run.

Exports both presets with seeded weights through the same exporter into a temporary folder
(latency does not depend on the weights), then times ONNX Runtime on the CPU execution
provider with ``--threads`` intra-op threads on the same inputs: the exporter's synthetic
sweep (or the real KITTI sweep when ``../shared/data`` is there) and, for ``tiny_cam``, a
simulator-rendered 640 x 360 front-camera frame through :func:`vla_edge.camera_input.image_tensor`.
The shipped ``engines/student.onnx`` is timed too, as a reference row. Prints median and p99
of each, the image preprocessing, and the tiny_cam / tiny ratio measured in the same run.

Usage::

    python bench/bench_camera_cpu.py [--iters 100] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
KITTI = ROOT.parent / "shared" / "data" / "lidar" / "kitti_000008.bin"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=100, help="timed runs per case")
    ap.add_argument("--threads", type=int, default=2, help="intra-op threads of ONNX Runtime")
    args = ap.parse_args()

    import onnxruntime as ort
    from bench_model_cpu import timeit

    from training.export import camera_spec, example_inputs, export
    from training.model.presets import build_model
    from vla_edge.calibration import Calibration
    from vla_edge.camera_input import image_tensor
    from vla_edge.config import load_config
    from vla_edge.pillarize import pillarize
    from vla_edge.sim.camera import Camera
    from vla_edge.sim.scenarios import ScenarioSpec, make_scenario

    sim = load_config("sim")
    calib = Calibration.from_config(load_config("calibration"))
    world = make_scenario(ScenarioSpec("empty_road", 5, 0.0), sim, 5.0)
    frame_img = Camera(sim["camera"], calib).render(np.array([20.0, -1.75, 0.0]), world.boxes(), world.ground)

    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    rows, sizes = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        feeds = {}
        for preset in ("tiny", "tiny_cam"):
            model = build_model(preset, seed=0)
            summary = export(model, tmp, preset, "random-seeded", torchscript=False)
            sizes[preset] = summary["bytes"] / 2**20
            inputs = {k: v.numpy() for k, v in example_inputs(model).items()}
            if KITTI.is_file():
                pts = np.fromfile(KITTI, dtype=np.float32).reshape(-1, 4)
                f, c, n = pillarize(pts, model.cfg.spec)
                inputs.update(pillar_features=f[None], pillar_coords=c[None])
                inputs["pillar_count"] = np.array([n], np.int32)
            if model.camera is not None:
                cam = camera_spec(model)
                inputs["image"] = image_tensor(frame_img, cam, frame_img.shape[:2])[None]
                prep = timeit(lambda cam=cam: image_tensor(frame_img, cam, frame_img.shape[:2]), 200)
            sess = ort.InferenceSession(
                str(Path(tmp) / f"{preset}.onnx"), so, providers=["CPUExecutionProvider"]
            )
            names = [i.name for i in sess.get_inputs()]
            feeds[preset] = (sess, {n: inputs[n] for n in names})
        shipped = ROOT / "engines" / "student.onnx"
        if shipped.is_file():
            sess = ort.InferenceSession(str(shipped), so, providers=["CPUExecutionProvider"])
            feeds["engines/student.onnx"] = (sess, feeds["tiny"][1])
        # interleave the cases so that load from other processes hits them alike
        times: dict[str, list[tuple[float, float]]] = {p: [] for p in feeds}
        for _ in range(3):
            for preset, (sess, feed) in feeds.items():
                times[preset].append(timeit(lambda s=sess, f=feed: s.run(None, f), max(1, args.iters // 3)))
        for preset in feeds:
            med = float(np.median([t[0] for t in times[preset]]))
            p99 = float(np.max([t[1] for t in times[preset]]))
            rows.append((preset if "/" in preset else f"{preset} (exported now)", med, p99))

    src = f"KITTI sweep {KITTI.name}" if KITTI.is_file() else "synthetic sweep (../shared/data not found)"
    print(f"onnxruntime {ort.__version__} CPU, threads={args.threads}, iters={args.iters}; input: {src}")
    print(f"ONNX size: tiny {sizes['tiny']:.2f} MiB, tiny_cam {sizes['tiny_cam']:.2f} MiB")
    print(f"{'case':<28}{'median ms':>10}{'p99 ms':>10}")
    for name, med, p99 in rows:
        print(f"{name:<28}{med:>10.2f}{p99:>10.2f}")
    print(f"{'image_tensor 640x360->96x160':<28}{prep[0]:>10.3f}{prep[1]:>10.3f}")
    ratio = rows[1][1] / rows[0][1]
    print(f"tiny_cam / tiny (ORT median, same run) = {ratio:.2f}x; tiny_cam + image prep = "
          f"{rows[1][1] + prep[0]:.2f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
