#!/usr/bin/env python3
"""Table of bench/resnet18-mini-suite.sh: per task, ML.NET's two trainers vs VptSharp linear and vpt-pad (test top-1 of the
final runs, mean ± std over seeds) and featurization images/s. Writes OUT/table.md and OUT/summary.json."""
import glob, json, os, statistics, sys

out = sys.argv[1]
tasks = [os.path.basename(p)[:-5] for p in sorted(glob.glob(os.path.join(out, "mlnet", "*.json")))]


def finals(method_dir, task, method):
    runs = [json.load(open(p)) for p in glob.glob(os.path.join(out, method_dir, "runs", task, method, "final_*.json"))]
    return [r["test_top1"] * 100 for r in runs if r.get("test_top1") is not None]


def fmt(xs):
    if not xs: return "–"
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


rows, summary = [], {}
for t in tasks:
    m = json.load(open(os.path.join(out, "mlnet", f"{t}.json")))
    by = {tr["trainer"].split(" ")[0]: tr["top1"] * 100 for tr in m["trainers"]}
    lin, pad = finals("linear", t, "linear"), finals("vpt-pad", t, "vpt-pad")
    thr_path = os.path.join(out, "throughput", f"{t}.json")
    thr = json.load(open(thr_path))["images_per_second"] if os.path.exists(thr_path) else None
    best_pe = max([statistics.mean(x) for x in (lin, pad) if x], default=None)
    best_ml = max(by.values())
    summary[t] = dict(mlnet=by, mlnet_images_per_second=m["featurize_images_per_second"], linear=lin, vpt_pad=pad,
                      vptsharp_images_per_second=thr, best_parameter_efficient=best_pe, beats_mlnet=best_pe is not None and best_pe > best_ml)
    rows.append(f"| {t} | {by.get('LbfgsMaximumEntropy', 0):.1f} | {by.get('SdcaMaximumEntropy', 0):.1f} | {fmt(lin)} | {fmt(pad)} | "
                f"{'**yes**' if summary[t]['beats_mlnet'] else 'no'} | {m['featurize_images_per_second']:.0f} | {thr:.0f} |" if thr else
                f"| {t} | {by.get('LbfgsMaximumEntropy', 0):.1f} | {by.get('SdcaMaximumEntropy', 0):.1f} | {fmt(lin)} | {fmt(pad)} | "
                f"{'**yes**' if summary[t]['beats_mlnet'] else 'no'} | {m['featurize_images_per_second']:.0f} | – |")
head = ("| task | ML.NET L-BFGS | ML.NET SDCA (min-max) | VptSharp linear | VptSharp vpt-pad p=5 | best PE method > ML.NET | "
        "ML.NET featurize img/s | VptSharp `vpt eval` img/s |\n|---|---:|---:|---:|---:|---|---:|---:|")
table = head + "\n" + "\n".join(rows) + "\n"
with open(os.path.join(out, "table.md"), "w") as f: f.write(table)
with open(os.path.join(out, "summary.json"), "w") as f: json.dump(summary, f, indent=2)
print(table)
