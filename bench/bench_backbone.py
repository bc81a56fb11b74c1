"""Time one training step of MultiHeadModel per backbone, in fp32 and in bf16 with channels_last.

A step is forward, a dummy loss, backward and an SGD step at batch 32 on 80x60 inputs, which
the model resizes to the given input size. The median over the timed steps is printed, so a
burst of load from another process does not set the figure. Used to choose the default
backbone and whether bf16 autocast pays on the CPU.

Run: ``.venv/bin/python bench/bench_backbone.py [--backbones resnet18 mobilenetv3_small_100]``
"""

import argparse
import time

import torch

from mclfir.config import ModelConfig
from mclfir.model import MultiHeadModel

CASES = [
    ("resnet18", [128, 96]),
    ("resnet18", [96, 72]),
    ("resnet10t", [128, 96]),
    ("mobilenetv3_small_100", [128, 96]),
    ("mobilenetv3_large_100", [128, 96]),
    ("efficientnet_b0", [128, 96]),
]
BATCH = 32


def time_step(backbone: str, image_size: list[int], bf16: bool, steps: int, warmup: int) -> float:
    """Return the median seconds of one training step."""
    torch.manual_seed(0)
    model = MultiHeadModel(ModelConfig(backbone=backbone, feature_index=3, image_size=image_size))
    model.add_increment("inc0", ["a", "b", "c"])
    model.add_increment("inc1", ["d"])
    images = torch.rand(BATCH, 3, 80, 60)
    attributes = ["a", "b", "c", "d"] * (BATCH // 4)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    model.train()

    times = []
    for _ in range(warmup + steps):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            embeddings = model(images, attributes)  # [B, D]
            loss = (embeddings[:-1] * embeddings[1:]).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)

    timed = sorted(times[warmup:])
    return timed[len(timed) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", nargs="*", default=None, help="timm names to time (default: all cases)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per case")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cases = [case for case in CASES if args.backbones is None or case[0] in args.backbones]
    for backbone, image_size in cases:
        for bf16 in (False, True):
            step_s = time_step(backbone, image_size, bf16, args.steps, args.warmup)
            mode = "bf16+channels_last" if bf16 else "fp32"
            print(f"{backbone:24s} {image_size[0]}x{image_size[1]} {mode:18s} {step_s * 1000:7.0f} ms/step "
                  f"{BATCH / step_s:6.1f} img/s", flush=True)


if __name__ == "__main__":
    main()
