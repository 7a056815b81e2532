#!/usr/bin/python3
"""PyTorch peer of `vpt bench`: the same ViT-B/16 measurements (paper Table 12 / Figs. 18-19) with torch + torchvision.

Run with Debian's interpreter after `apt-get install -y python3-torch python3-torchvision libopenblas0-openmp`:
    /usr/bin/python3 tools/bench_pytorch.py --threads 2 --batch 8 --out docs/results/bench-pytorch.json

Every configuration runs in a fresh child process so its peak RSS (ru_maxrss) is its own. Random weights: timing only.
VPT is written from the paper (prompts after CLS; VPT-deep replaces each block's prompts), adapters and bias tuning from
their definitions; nothing here is taken from another code base.
"""
import argparse
import json
import resource
import subprocess
import sys
import time

CONFIGS = (
    [("infer", "plain", 0, "fp32"), ("infer", "plain", 0, "bf16")]
    + [("infer", "vpt-deep", p, "fp32") for p in (1, 10, 50, 100, 200)]
    + [("train", m, 0, "fp32") for m in ("full", "linear", "bias", "adapter")]
    + [("train", m, p, "fp32") for m in ("vpt-shallow", "vpt-deep") for p in (1, 10, 50, 100, 200)]
)


def run_one(kind, method, p, dtype, batch, iters, threads):
    import torch
    import torch.nn.functional as F
    from torchvision.models import vit_b_16

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = vit_b_16().eval()
    for q in model.parameters():
        q.requires_grad_(False)
    d, layers = 768, len(model.encoder.layers)
    head = torch.nn.Linear(d, 100)
    prompts = torch.nn.Parameter(torch.zeros(layers if method == "vpt-deep" else 1, max(p, 1), d).uniform_(-0.06, 0.06))
    adapters = torch.nn.ModuleList(torch.nn.Sequential(torch.nn.Linear(d, d // 8), torch.nn.GELU(), torch.nn.Linear(d // 8, d))
                                   for _ in range(layers))

    def block(layer, x, i):
        y = layer.ln_1(x)
        y, _ = layer.self_attention(y, y, y, need_weights=False)
        x = x + y
        z = layer.mlp(layer.ln_2(x))
        if method == "adapter":
            z = z + adapters[i](z)
        return x + z

    def features(images):
        n = images.shape[0]
        h = torch.cat([model.class_token.expand(n, -1, -1), model._process_input(images)], 1) + model.encoder.pos_embedding
        for i, layer in enumerate(model.encoder.layers):
            if method in ("vpt-deep", "vpt-shallow") and p > 0 and (i == 0 or method == "vpt-deep"):
                rest = h[:, 1:] if i == 0 else h[:, 1 + p:]
                h = torch.cat([h[:, :1], prompts[i if method == "vpt-deep" else 0].expand(n, -1, -1).to(h.dtype), rest], 1)
            h = block(layer, h, i)
        return model.encoder.ln(h)[:, 0]

    x = torch.randn(batch, 3, 224, 224)
    labels = torch.randint(0, 100, (batch,))
    if kind == "infer":
        if dtype == "bf16":
            model.to(torch.bfloat16)
            x = x.to(torch.bfloat16)

        def step():
            with torch.no_grad():
                head(features(x).float())
    else:
        if method == "full":
            trainable = list(model.parameters())
        elif method == "bias":
            trainable = [q for n_, q in model.named_parameters() if n_.endswith("bias") and not n_.startswith("heads")]
        elif method == "adapter":
            trainable = list(adapters.parameters())
        elif method.startswith("vpt"):
            trainable = [prompts]
        else:
            trainable = []
        for q in trainable:
            q.requires_grad_(True)
        if method == "full":
            model.train()
        opt = torch.optim.SGD(trainable + list(head.parameters()), lr=0.01, momentum=0.9)

        def step():
            if method == "linear":
                with torch.no_grad():
                    f = features(x)
            else:
                f = features(x)
            loss = F.cross_entropy(head(f), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()

    step()  # warm-up (allocations, one-time kernel choices)
    def cpu_s():
        u = resource.getrusage(resource.RUSAGE_SELF)
        return u.ru_utime + u.ru_stime
    cpu0 = cpu_s()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    ms = 1000 * (time.perf_counter() - start) / (iters * batch)
    # CPU time per image / threads: equals wall time on an idle machine, far less inflated when others share the cores.
    cpu_ms = 1000 * (cpu_s() - cpu0) / (iters * batch) / threads
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"kind": kind, "method": method, "prompts": p, "dtype": dtype, "batch": batch, "iters": iters,
            "ms_per_image": round(ms, 2), "cpu_ms_per_image": round(cpu_ms, 2), "peak_rss_mib": round(peak_mb, 1), "threads": threads,
            "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--out", default="bench-pytorch.json")
    ap.add_argument("--only", help="comma-separated kind:method:p:dtype entries (default: all)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per configuration before it is recorded as timed out")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # child mode: kind:method:p:dtype
    a = ap.parse_args()
    if a.one:
        k, m, p, dt = a.one.split(":")
        print(json.dumps(run_one(k, m, int(p), dt, a.batch, a.iters, a.threads)))
        return
    configs = [tuple(c.split(":")) for c in a.only.split(",")] if a.only else CONFIGS
    rows = []
    for c in configs:
        spec = ":".join(str(v) for v in c)
        try:
            out = subprocess.run([sys.executable, __file__, "--one", spec, "--batch", str(a.batch), "--iters", str(a.iters),
                                  "--threads", str(a.threads)], capture_output=True, text=True, check=True, timeout=a.timeout)
            row = json.loads(out.stdout.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            # e.g. bf16 on torch 1.13's CPU kernels: recorded as a fact instead of stalling the table
            row = {"kind": c[0], "method": c[1], "prompts": int(c[2]), "dtype": c[3], "batch": a.batch, "iters": a.iters,
                   "ms_per_image": None, "peak_rss_mib": None, "threads": a.threads, "timed_out_after_s": a.timeout}
            rows.append(row)
            print(f"{spec}: timed out after {a.timeout:.0f} s", flush=True)
            continue
        rows.append(row)
        print(f"{row['kind']:5} {row['method']:11} p={row['prompts']:<3} {row['dtype']}: {row['ms_per_image']:8.1f} ms/img, "
              f"peak {row['peak_rss_mib']:7.0f} MiB", flush=True)
    with open(a.out + ".tmp", "w") as f:
        json.dump({"machine": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].split(":", 1)[1].strip(),
                   "date": time.strftime("%Y-%m-%d"), "rows": rows}, f, indent=1)
    import os
    os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
