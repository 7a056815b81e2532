using System.Diagnostics;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using VptSharp.IO;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Hardware;
using VptSharp.Training;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Cli;

/// <summary>
/// `vpt bench --profile train:vpt-deep:50`: where a training step's time goes. Two views: the real step split into its
/// phases (forward, backward, optimizer), and every op of one transformer block run alone at the step's shapes, times
/// the depth, with the GFLOP/s each matrix product reaches — set against an N×N matmul, the best rate this CPU gives.
/// (TorchSharp has no binding for libtorch's profiler, so ops are timed one by one; libtorch runs them synchronously
/// on the CPU, so wall-clock time is theirs.)
/// </summary>
internal static class BenchProfile
{
    /// <param name="BackwardMsPerImage">The op's input-gradient backward alone (forward + backward − forward).</param>
    public sealed record OpRow(string Op, double MsPerImage, double Gflop, double GflopPerSecond, double BackwardMsPerImage, double BackwardGflopPerSecond);
    /// <param name="CpuMsPerImage">Process CPU time per image ÷ threads (robust to other load; = wall when idle).</param>
    public sealed record PhaseRow(string Phase, double MsPerImage, double CpuMsPerImage);
    static TimeSpan Cpu() { using var me = Process.GetCurrentProcess(); return me.TotalProcessorTime; }

    public static void Run(string spec, string backboneSource, int batch, int iters, int threads, string outPath, string? markdownPath = null)
    {
        var parts = spec.Split(':');
        if (parts.Length is < 3 or > 4 || parts[0] != "train" || !int.TryParse(parts[2], out int p))
            throw new ArgumentException($"--profile {spec}: expected train:method:p[:fp32|bf16|auto], e.g. train:vpt-deep:50 or train:vpt-prefix:50:bf16");
        string method = parts[1];
        bool prefixForm = method == "vpt-prefix";
        using var bb = BackboneLoader.Load(backboneSource);
        var vit = bb.Config;
        manual_seed(0);
        using var images = randn(batch, 3, vit.ImageSize, vit.ImageSize);
        using var labels = randint(0, 100, batch, dtype: ScalarType.Int64);
        var cfg = MethodRegistry.FromOptions(prefixForm ? "vpt-deep" : method,
            new MethodOptions { Prompts = Math.Max(p, 1), Reduction = 8, PrefixForm = prefixForm ? true : method == "vpt-deep" ? false : null });
        using var model = PromptedModel.Create(bb.Model, cfg, 100);
        var precision = model.ApplyPrecision(PrecisionPolicy.Parse(parts.Length == 4 ? parts[3] : "auto"));
        var dtype = precision.Dtype;
        var trainer = new Trainer(new TrainOptions { BatchSize = batch });
        using var opt = trainer.CreateOptimizer(model);
        model.train();

        // Phases of the real step.
        double fwd = 0, bwd = 0, step = 0, cFwd = 0, cBwd = 0, cStep = 0;
        for (int i = 0; i <= iters; i++) // i = 0 warms up
        {
            using var scope = NewDisposeScope();
            // The trainer's own step, timed at the end of each phase on both clocks.
            var ends = new double[3];
            var cpuEnds = new TimeSpan[3];
            var c0 = Cpu();
            var clock = Stopwatch.StartNew();
            trainer.TrainStep(model, opt, images, labels, lr: 0.01, phaseDone: ph => { ends[(int)ph] = clock.Elapsed.TotalMilliseconds; cpuEnds[(int)ph] = Cpu(); });
            double t1 = ends[0], t2 = ends[1], t3 = ends[2];
            var (c1, c2, c3) = (cpuEnds[0], cpuEnds[1], cpuEnds[2]);
            if (i > 0)
            {
                fwd += t1; bwd += t2 - t1; step += t3 - t2;
                cFwd += (c1 - c0).TotalMilliseconds; cBwd += (c2 - c1).TotalMilliseconds; cStep += (c3 - c2).TotalMilliseconds;
            }
        }
        double per = iters * (double)batch, cper = per * threads;
        var phases = new List<PhaseRow> { new("forward", fwd / per, cFwd / cper), new("backward", bwd / per, cBwd / cper), new("optimizer", step / per, cStep / cper) };

        // Each op of block 1 alone, at the step's shapes and dtype, forward and then forward + input-gradient backward
        // (the frozen weights get no gradient, as in the step); × depth (every block has the same shapes).
        bool prefixed = model.method.Config is PromptConfig { PrefixForm: true };
        long b = batch, n = 1 + vit.NumPatches, t = n + model.method.ExtraTokens, d = vit.Width;
        long kvLen = t + (prefixed ? p : 0), hd = d / vit.Heads;
        var block = bb.Vit!.blocks[0];
        Tensor Input(params long[] shape) => randn(shape).to(dtype).requires_grad_(true);
        using var x = Input(b, t, d);
        using var q = Input(b, vit.Heads, t, hd);
        using var k = Input(b, vit.Heads, kvLen, hd);
        using var v = Input(b, vit.Heads, kvLen, hd);
        using var hidden = Input(b, t, vit.MlpDim);
        using var promptTokens = Input(b, Math.Max(p, 1), d); // per sample: training draws a dropout mask per sample
        var ops = new List<(string Name, Func<Tensor[]> Run, double Flop)>
        {
            ("layer norms (2)", () => [block.norm1.forward(x), block.norm2.forward(x)], 0),
            ("qkv linear", () => [block.attn.qkv.forward(x)], 2.0 * b * t * d * 3 * d),
            ("attention", () => [Attention.Attend(q, k, v, null)], 4.0 * b * t * kvLen * d),
            // Not in the step: libtorch's fused kernel at the same shapes, the reason Attend uses plain products on the CPU.
            ("(attention as fused sdpa)", () => [nn.functional.scaled_dot_product_attention(q, k, v)], 4.0 * b * t * kvLen * d),
            ("attention proj", () => [block.attn.proj.forward(x)], 2.0 * b * t * d * d),
            ("mlp fc1", () => [block.mlp.fc1.forward(x)], 2.0 * b * t * d * vit.MlpDim),
            ("gelu", () => [nn.functional.gelu(hidden)], 0),
            ("mlp fc2", () => [block.mlp.fc2.forward(hidden)], 2.0 * b * t * vit.MlpDim * d),
            ("residual adds (2)", () => [x + x, x + x], 0),
        };
        if (prefixed)
            ops.Add(("prompt k/v", () => { var kv = block.attn.KeyValuesOf(promptTokens); return [kv.Keys, kv.Values]; }, 2.0 * b * p * d * 2 * d));
        var opRows = new List<OpRow>();
        foreach (var (name, run, flop) in ops)
        {
            double Forward() { using var _ = no_grad(); using var s = NewDisposeScope(); run(); return 0; }
            double ForwardBackward()
            {
                using var s = NewDisposeScope();
                var outs = run();
                autograd.backward(outs, outs.Select(o => ones_like(o)).ToList());
                return 0;
            }
            double Time(Func<double> f) { f(); var clock = Stopwatch.StartNew(); for (int i = 0; i < iters; i++) f(); return clock.Elapsed.TotalMilliseconds / iters; }
            double ms = Time(Forward), both = Time(ForwardBackward), back = Math.Max(both - ms, 0);
            double scale = vit.Depth / (double)batch;
            opRows.Add(new OpRow(name, ms * scale, flop * scale / 1e9, flop > 0 ? flop / (ms * 1e6) : double.NaN,
                back * scale, flop > 0 && back > 0 ? flop / (back * 1e6) : double.NaN));
        }

        // The best matrix-product rate here in the step's dtype: one 1024³ product, as `vpt bench --only matmul:mm:1024:bf16`.
        using var ma = randn(1024, 1024).to(dtype);
        using var mb = randn(1024, 1024).to(dtype);
        ma.mm(mb).Dispose();
        double best = double.MaxValue;
        for (int i = 0; i < 10; i++) // the fastest of ten: the rate this CPU gives when nothing else interferes
        {
            var mm = Stopwatch.StartNew();
            ma.mm(mb).Dispose();
            best = Math.Min(best, mm.Elapsed.TotalMilliseconds);
        }
        double peak = 2.0 * 1024 * 1024 * 1024 / (best * 1e6);
        var mc0 = Cpu();
        for (int i = 0; i < 20; i++) ma.mm(mb).Dispose();
        double peakCpu = 2.0 * 1024 * 1024 * 1024 * 20 / ((Cpu() - mc0).TotalMilliseconds / threads * 1e6); // per-thread CPU clock

        var phaseTable = new Table().AddColumns("phase", "ms/img", "CPU ms/img ÷ threads", "share");
        double total = phases.Sum(r => r.MsPerImage), totalCpu = phases.Sum(r => r.CpuMsPerImage);
        foreach (var r in phases) phaseTable.AddRow(r.Phase, $"{r.MsPerImage:F1}", $"{r.CpuMsPerImage:F1}", $"{r.MsPerImage / total:P0}");
        phaseTable.AddRow("step", $"{total:F1}", $"{totalCpu:F1}", "100%");
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(spec)}[/], precision {Markup.Escape(precision.ToString())}, batch {batch}, {threads} threads, {iters} timed steps");
        AnsiConsole.Write(phaseTable);
        var opTable = new Table().AddColumns("op (one block alone, × depth)", "forward ms/img", "share", "GFLOP/img", "GFLOP/s", "backward ms/img", "GFLOP/s");
        var stepOps = opRows.Where(r => !r.Op.StartsWith('(')).ToList(); // "(…)" rows are comparisons, not part of the step
        double opsTotal = stepOps.Sum(r => r.MsPerImage), backTotal = stepOps.Sum(r => r.BackwardMsPerImage), gflop = stepOps.Sum(r => r.Gflop);
        string Rate(double r) => double.IsNaN(r) ? "–" : $"{r:F0}";
        foreach (var r in opRows)
            opTable.AddRow(r.Op, $"{r.MsPerImage:F1}", $"{(r.Op.StartsWith('(') ? "–" : $"{r.MsPerImage / opsTotal:P0}")}", r.Gflop > 0 ? $"{r.Gflop:F2}" : "–", Rate(r.GflopPerSecond), $"{r.BackwardMsPerImage:F1}", Rate(r.BackwardGflopPerSecond));
        opTable.AddRow("sum of block ops", $"{opsTotal:F1}", "100%", $"{gflop:F2}", $"{gflop / opsTotal * 1000:F0}", $"{backTotal:F1}", "");
        AnsiConsole.Write(opTable);
        // The floor of a frozen-backbone step: its forward GEMMs once, and once more for the input gradients (≈ 2× the forward FLOPs).
        double floor = 2 * gflop / peak * 1000, ratio = total / floor;
        double floorCpu = 2 * gflop / peakCpu * 1000, ratioCpu = totalCpu / floorCpu;
        string verdict = $"1024³ matmul in {precision.Name}: {peak:F0} GFLOP/s (best of 10, wall; {peakCpu:F0} on the per-thread CPU clock). " +
                         $"Floor of the step (2 × {gflop:F1} forward GFLOP/img at that rate): {floor:F1} ms/img; the step takes {total:F1} ms/img = {ratio:F2}× the floor " +
                         $"(goal ≤ 1.5×: {(ratio <= 1.5 ? "met" : "missed")}); on the CPU clock {totalCpu:F1} vs {floorCpu:F1} ms/img = {ratioCpu:F2}× ({(ratioCpu <= 1.5 ? "met" : "missed")}).";
        AnsiConsole.MarkupLine(Markup.Escape(verdict));
        AtomicFile.WriteAllText(outPath, JsonSerializer.Serialize(new
        {
            spec, precision = precision.Name, precision_reason = precision.Reason, cpu = CpuFeatures.Current.Model, cpu_vector_extensions = CpuFeatures.Current.VectorExtensions,
            load_average = BenchReport.LoadAverage(), batch, iters, threads, date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'"),
            matmul_gflop_per_second = Math.Round(peak, 1), floor_ms_per_image = Math.Round(floor, 1), step_ms_per_image = Math.Round(total, 1), step_over_floor = Math.Round(ratio, 3),
            matmul_gflop_per_second_cpu_clock = Math.Round(peakCpu, 1), step_cpu_ms_per_image = Math.Round(totalCpu, 1), step_over_floor_cpu_clock = Math.Round(ratioCpu, 3),
            phases, ops = opRows,
        }, JsonFormat.PascalIndented));
        if (markdownPath is not null)
        {
            var md = new System.Text.StringBuilder();
            md.AppendLine($"`vpt bench --profile {spec}` — precision **{precision.Name}** ({precision.Reason}); CPU **{CpuFeatures.Current.Model}**, **{CpuFeatures.Current.VectorExtensions}**; " +
                          $"batch {batch}, {threads} threads, {iters} timed steps; load average {BenchReport.LoadAverage()} at {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC.");
            md.AppendLine();
            md.AppendLine("| phase | ms/img | CPU ms/img ÷ threads |");
            md.AppendLine("|---|---:|---:|");
            foreach (var r in phases) md.AppendLine($"| {r.Phase} | {r.MsPerImage:F1} | {r.CpuMsPerImage:F1} |");
            md.AppendLine($"| **step** | **{total:F1}** | **{totalCpu:F1}** |");
            md.AppendLine();
            md.AppendLine("| op (one block alone, × depth) | forward ms/img | GFLOP/img | GFLOP/s | backward ms/img | GFLOP/s |");
            md.AppendLine("|---|---:|---:|---:|---:|---:|");
            foreach (var r in opRows)
                md.AppendLine($"| {r.Op} | {r.MsPerImage:F1} | {(r.Gflop > 0 ? $"{r.Gflop:F2}" : "–")} | {Rate(r.GflopPerSecond)} | {r.BackwardMsPerImage:F1} | {Rate(r.BackwardGflopPerSecond)} |");
            md.AppendLine($"| sum | {opsTotal:F1} | {gflop:F2} | {gflop / opsTotal * 1000:F0} | {backTotal:F1} | |");
            md.AppendLine();
            md.AppendLine(verdict);
            AtomicFile.WriteAllText(markdownPath, md.ToString());
        }
    }
}
