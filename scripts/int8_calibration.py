"""INT8 of one run over calibration draws: the file's own mAP and its mAP against the teacher's gallery
for each calibration method and number of images, five draws each (the draw's seed picks the images).

Usage: .venv/bin/python scripts/int8_calibration.py RUN_DIR OUT.json [--format onnx|openvino]
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from capdist.methods.deploy import DeployConfig, deploy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("out")
    parser.add_argument("--format", default="onnx", choices=("onnx", "openvino"))
    parser.add_argument("--data", default="fmnist-open")
    parser.add_argument("--test-subset", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for method in ("minmax", "percentile"):
            for images in (256, 1024):
                asym, own = [], []
                for seed in range(5):
                    config = DeployConfig(args.format, "int8", calibration_images=images, calibration_method=method,
                                          seed=seed)
                    name = "model.int8.onnx" if args.format == "onnx" else "model.int8.xml"
                    s = deploy(args.run, config, Path(work) / name, args.data, None, args.test_subset)
                    own.append(100 * s["exported"]["symmetric"]["mAP"])
                    asym.append(100 * s["exported"]["asymmetric"]["mAP"])
                    fp32 = s["pytorch"]
                rows.append({"method": method, "images": images, "mAP": own, "mAP_asym": asym,
                             "fp32_mAP": 100 * fp32["symmetric"]["mAP"],
                             "fp32_mAP_asym": 100 * fp32["asymmetric"]["mAP"]})
                print(f"{method:10s} {images:5d}  own {statistics.fmean(own):.2f} ± {statistics.stdev(own):.2f}  "
                      f"teacher gallery {statistics.fmean(asym):.2f} ± {statistics.stdev(asym):.2f} "
                      f"(min {min(asym):.2f}, max {max(asym):.2f}; fp32 {rows[-1]['fp32_mAP_asym']:.2f})", flush=True)
    Path(args.out).write_text(json.dumps({"run": args.run, "format": args.format, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
