using System.Diagnostics;
using System.Text.Json;
using Spectre.Console;
using TorchSharp;
using VptSharp.IO;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
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
    public sealed record OpRow(string Op, double MsPerImage, double Gflop, double GflopPerSecond);
    public sealed record PhaseRow(string Phase, double MsPerImage);

    public static void Run(string spec, string backboneSource, int batch, int iters, int threads, string outPath)
    {
        var parts = spec.Split(':');
        if (parts.Length < 3 || parts[0] != "train" || !int.TryParse(parts[2], out int p))
            throw new ArgumentException($"--profile {spec}: expected train:method:p, e.g. train:vpt-deep:50 or train:vpt-prefix:50");
        string method = parts[1];
        bool prefixForm = method == "vpt-prefix";
        using var bb = BackboneLoader.Load(backboneSource);
        var vit = bb.Config;
        manual_seed(0);
        using var images = randn(batch, 3, vit.ImageSize, vit.ImageSize);
        using var labels = randint(0, 100, batch, dtype: ScalarType.Int64);
        var cfg = MethodRegistry.FromOptions(prefixForm ? "vpt-deep" : method,
            new MethodOptions { Prompts = Math.Max(p, 1), Reduction = 8, PrefixForm = prefixForm });
        using var model = PromptedModel.Create(bb.Model, cfg, 100);
        var trainer = new Trainer(new TrainOptions { BatchSize = batch });
        using var opt = trainer.CreateOptimizer(model);
        model.train();

        // Phases of the real step: the trainer's own step, timed at the end of each phase.
        double fwd = 0, bwd = 0, step = 0;
        for (int i = 0; i <= iters; i++) // i = 0 warms up
        {
            using var scope = NewDisposeScope();
            var clock = Stopwatch.StartNew();
            var ends = new double[3];
            trainer.TrainStep(model, opt, images, labels, lr: 0.01, phaseDone: ph => ends[(int)ph] = clock.Elapsed.TotalMilliseconds);
            if (i > 0) { fwd += ends[0]; bwd += ends[1] - ends[0]; step += ends[2] - ends[1]; }
        }
        double per = iters * (double)batch;
        var phases = new List<PhaseRow> { new("forward", fwd / per), new("backward", bwd / per), new("optimizer", step / per) };

        // Each op of block 1 alone, forward, at the step's shapes; × depth (every block has the same shapes).
        long b = batch, n = 1 + vit.NumPatches, extra = cfg is PromptConfig && p > 0 && !prefixForm ? p : 0, t = n + extra, d = vit.Width;
        long kvLen = t + (prefixForm ? p : 0), hd = d / vit.Heads;
        var block = bb.Model.blocks[0];
        using var x = randn(b, t, d);
        using var q = randn(b, vit.Heads, t, hd);
        using var k = randn(b, vit.Heads, kvLen, hd);
        using var v = randn(b, vit.Heads, kvLen, hd);
        using var hidden = randn(b, t, vit.MlpDim);
        using var promptTokens = randn(b, Math.Max(p, 1), d); // per sample: training draws a dropout mask per sample
        var ops = new List<(string Name, Action Run, double Flop)>
        {
            ("layer norms (2)", () => { block.norm1.forward(x).Dispose(); block.norm2.forward(x).Dispose(); }, 0),
            ("qkv linear", () => block.attn.qkv.forward(x).Dispose(), 2.0 * b * t * d * 3 * d),
            ("attention (sdpa)", () => nn.functional.scaled_dot_product_attention(q, k, v).Dispose(), 4.0 * b * t * kvLen * d),
            ("attention proj", () => block.attn.proj.forward(x).Dispose(), 2.0 * b * t * d * d),
            ("mlp fc1", () => block.mlp.fc1.forward(x).Dispose(), 2.0 * b * t * d * vit.MlpDim),
            ("gelu", () => nn.functional.gelu(hidden).Dispose(), 0),
            ("mlp fc2", () => block.mlp.fc2.forward(hidden).Dispose(), 2.0 * b * t * vit.MlpDim * d),
            ("residual adds (2)", () => { (x + x).Dispose(); (x + x).Dispose(); }, 0),
        };
        if (prefixForm)
            ops.Add(("prompt k/v", () => { var kv = block.attn.KeyValuesOf(promptTokens); kv.Keys.Dispose(); kv.Values.Dispose(); }, 2.0 * b * p * d * 2 * d));
        var opRows = new List<OpRow>();
        using (no_grad())
            foreach (var (name, run, flop) in ops)
            {
                run();
                var clock = Stopwatch.StartNew();
                for (int i = 0; i < iters; i++) run();
                double ms = clock.Elapsed.TotalMilliseconds / iters;
                opRows.Add(new OpRow(name, ms * vit.Depth / batch, flop * vit.Depth / batch / 1e9, flop > 0 ? flop / (ms * 1e6) : double.NaN));
            }

        // The best matrix-product rate here: one 1024³ product, as in `vpt bench --only matmul:mm:1024:fp32`.
        using var ma = randn(1024, 1024);
        using var mb = randn(1024, 1024);
        ma.mm(mb).Dispose();
        var mm = Stopwatch.StartNew();
        for (int i = 0; i < 5; i++) ma.mm(mb).Dispose();
        double peak = 2.0 * 1024 * 1024 * 1024 * 5 / (mm.Elapsed.TotalMilliseconds * 1e6);

        var phaseTable = new Table().AddColumns("phase", "ms/img", "share");
        double total = phases.Sum(r => r.MsPerImage);
        foreach (var r in phases) phaseTable.AddRow(r.Phase, $"{r.MsPerImage:F1}", $"{r.MsPerImage / total:P0}");
        phaseTable.AddRow("step", $"{total:F1}", "100%");
        AnsiConsole.MarkupLine($"[bold]{Markup.Escape(spec)}[/], batch {batch}, {threads} threads, {iters} timed steps");
        AnsiConsole.Write(phaseTable);
        var opTable = new Table().AddColumns("op (one block alone, × depth, forward)", "ms/img", "share of ops", "GFLOP/img", "GFLOP/s");
        double opsTotal = opRows.Sum(r => r.MsPerImage), gflop = opRows.Sum(r => r.Gflop);
        foreach (var r in opRows)
            opTable.AddRow(r.Op, $"{r.MsPerImage:F1}", $"{r.MsPerImage / opsTotal:P0}", r.Gflop > 0 ? $"{r.Gflop:F2}" : "–", double.IsNaN(r.GflopPerSecond) ? "–" : $"{r.GflopPerSecond:F0}");
        opTable.AddRow("sum of block ops", $"{opsTotal:F1}", "100%", $"{gflop:F2}", $"{gflop / opsTotal * 1000:F0}");
        AnsiConsole.Write(opTable);
        AnsiConsole.MarkupLine($"1024³ matmul: [bold]{peak:F0} GFLOP/s[/]. Forward floor at that rate: {gflop / peak * 1000:F0} ms/img; " +
                               $"a frozen-backbone step (forward + input-gradient backward ≈ 2× the forward FLOPs): {2 * gflop / peak * 1000:F0} ms/img.");
        AtomicFile.WriteAllText(outPath, JsonSerializer.Serialize(new
        {
            spec, batch, iters, threads, date = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'"), matmul_gflop_per_second = Math.Round(peak, 1),
            phases, ops = opRows,
        }, JsonFormat.PascalIndented));
    }
}
