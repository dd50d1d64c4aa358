#!/usr/bin/python3
"""torch_step.py - one PyTorch timing for bench/run.sh: the models of
/work/shared/bench/torch_ref.py (a-d), eager mode, train step (zero_grad, CE,
backward, SGD lr .01 mom .9 step) and inference (eval, inference_mode).
Usage: /usr/bin/python3 torch_step.py MODEL(a|b|c|d) TORCH_THREADS STEPS
(set OPENBLAS_NUM_THREADS in the environment). Prints
  torch_train_ms MEDIAN MIN
  torch_infer_ms MEDIAN MIN"""
import sys, time, statistics
import torch
import torch.nn as nn
import torch.nn.functional as F


def build(name):
    if name == "a":
        return nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10)), (128, 784)
    if name == "b":
        return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                             nn.Linear(1024, 10)), (256, 784)
    if name == "c":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)), (64, 1, 28, 28)
    if name == "d":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4096, 256), nn.ReLU(),
            nn.Linear(256, 10)), (64, 3, 32, 32)
    raise ValueError(name)


def timed(fn, steps, warm):
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, min(ts) * 1e3


def main():
    name, threads, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m, shape = build(name)
    x = torch.randn(*shape)
    y = torch.randint(0, 10, (shape[0],))
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def train():
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()

    med, mn = timed(train, steps, max(10, steps // 10))
    print(f"torch_train_ms {med:.4f} {mn:.4f}")
    m.eval()
    with torch.inference_mode():
        med, mn = timed(lambda: m(x), steps, max(10, steps // 10))
    print(f"torch_infer_ms {med:.4f} {mn:.4f}")


if __name__ == "__main__":
    main()
