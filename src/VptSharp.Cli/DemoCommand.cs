using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Spectre.Console;
using VptSharp.IO;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Training;
using VptSharp.Tuning;

namespace VptSharp.Cli;

/// <summary>
/// The main job on the embedded default backbone, offline: a VTAB-1k-shaped task (800 train / 200 val images) made of
/// the five Fashion-MNIST classes the default backbone never saw (sandal, shirt, sneaker, bag, ankle boot), tuned with
/// Linear and VPT-deep, tested on all 5,000 test images of those classes.
/// </summary>
internal static class DemoCommand
{
    public const string TrainSpec = "fashion-mnist:train[30000:60000]@5-9";
    public const string TestSpec = "fashion-mnist:test@5-9";

    public static Command Create()
    {
        var c = new Command("demo", "tune VPT-deep and Linear on an offline downstream task with the default backbone; print test accuracy; write task files");
        var outDir = new Option<string>("--out", "-o") { Description = "output folder", DefaultValueFactory = _ => Path.Combine("runs", "demo") };
        var epochs = new Option<int>("--epochs") { Description = "VPT-deep epochs", DefaultValueFactory = _ => 50 };
        var prompts = new Option<int>("--prompts", "-p") { Description = "VPT-deep prompt length", DefaultValueFactory = _ => 10 };
        var lr = new Option<double>("--lr") { Description = "VPT-deep base learning rate (× batch / 256)", DefaultValueFactory = _ => 0.25 };
        var linearLr = new Option<double>("--linear-lr") { Description = "Linear base learning rate", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 42 };
        // Another backbone for the same task (e.g. resnet18-imagenet, the demo-decision measurement of issue 12): a
        // backbone without a token sequence gets VPT's ConvNet form, vpt-pad with --prompts pixels per side.
        var backbone = Common.Backbone();
        foreach (var o in new Option[] { outDir, epochs, prompts, lr, linearLr, seed, backbone, Common.Precision, Common.Threads }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            var wall = Stopwatch.StartNew();
            string root = r.GetValue(outDir)!;
            int s = r.GetValue(seed);
            var pool = DatasetSpec.Open(TrainSpec);
            // VTAB-1k shape: 1,000 images per task, 800 to train and 200 to validate (class-stratified, seeded).
            var (_, thousand) = pool.SplitTrainVal(1000.0 / pool.Count, s);
            var (train, val) = thousand.SplitTrainVal(0.2, s);
            var test = DatasetSpec.Open(TestSpec);
            using var bb = Common.LoadBackbone(r.GetValue(backbone)!, new ArchOverrides());
            var pre = bb.Preprocessing();
            bool tokens = bb.Model.Has(VptSharp.Backbones.BackboneCapability.TokenSequence);
            string vpt = tokens ? "vpt-deep" : "vpt-pad";
            AnsiConsole.MarkupLine($"task: Fashion-MNIST classes the default backbone never saw ({string.Join(", ", train.Classes)}): " +
                $"{train.Count} train / {val.Count} val from its train split, {test.Count} test images");

            // Results are deterministic on one CPU type; its vector extensions pick libtorch's kernels (and so the last bits).
            AnsiConsole.MarkupLine(Markup.Escape(Common.CpuLine()));
            var requested = Common.PrecisionFrom(r);
            var rows = new List<(string Method, long Params, double Val, double Test, double Seconds, string Precision)>();
            foreach (var (name, cfg, opts) in new (string, MethodConfig, TrainOptions)[]
            {
                ("linear", new LinearProbeConfig(), new TrainOptions { Epochs = 50, BatchSize = 64, BaseLr = r.GetValue(linearLr), WeightDecay = 0, WarmupEpochs = 5, Seed = s }),
                (vpt, tokens ? (MethodConfig)new PromptConfig { Tokens = r.GetValue(prompts), Deep = true, Dropout = 0.1 } : new PadPromptConfig { Pixels = r.GetValue(prompts) },
                    new TrainOptions { Epochs = r.GetValue(epochs), BatchSize = 64, BaseLr = r.GetValue(lr), WeightDecay = 1e-4, WarmupEpochs = Math.Max(1, r.GetValue(epochs) / 10), Seed = s }),
            })
            {
                var clock = Stopwatch.StartNew();
                AnsiConsole.MarkupLine($"[bold]{name}[/]");
                TorchSharp.torch.manual_seed(s);
                var model = PromptedModel.Create(bb.Model, cfg, train.Classes.Count);
                var precision = model.ApplyPrecision(requested);
                AnsiConsole.MarkupLine(Markup.Escape($"precision {precision}"));
                string dir = Path.Combine(root, name);
                var task = new TaskContext(BackboneRef.Of(bb), train.Classes.ToArray(), pre);
                var result = TrainCommands.RunWithProgress(new Trainer(opts with { OutDir = dir }), model, train, val, pre, task);
                var best = TaskArtifact.Load(result.BestTaskPath!);
                var bestModel = best.Attach(bb, result.BestTaskPath!);
                var testResult = Evaluation.Evaluate(bestModel, test, pre, 256);
                var metrics = new Dictionary<string, double>(best.Metadata.Metrics) { ["test_top1"] = testResult.Top1 };
                var final = new TaskArtifact(best.Metadata with { Metrics = metrics }, best.Tensors.ToDictionary(kv => kv.Key, kv => kv.Value));
                final.Save(Path.Combine(dir, "task.vpt"));
                rows.Add((name, model.TrainableCount, result.BestValTop1 ?? 0, testResult.Top1, clock.Elapsed.TotalSeconds, precision.Name));
            }

            var table = new Table().AddColumns("method", "precision", "trainable params", $"val top-1 ({val.Count})", $"test top-1 ({test.Count})", "wall time");
            foreach (var row in rows)
                table.AddRow(row.Method, row.Precision, $"{row.Params:N0}", Common.Percent(row.Val), Common.Percent(row.Test), $"{row.Seconds:F0} s");
            AnsiConsole.Write(table);
            double gain = rows[1].Test - rows[0].Test;
            AnsiConsole.MarkupLine($"{vpt} vs Linear on test: [bold]{(gain >= 0 ? "+" : "")}{100 * gain:F2} points[/]; task file {Markup.Escape(Path.Combine(root, vpt, "task.vpt"))} " +
                $"({new FileInfo(Path.Combine(root, vpt, "task.vpt")).Length / 1024.0:F1} KiB); total {wall.Elapsed.TotalMinutes:F1} min");
            AtomicFile.WriteAllText(Path.Combine(root, "demo.json"), JsonSerializer.Serialize(new
            {
                train = TrainSpec, test = TestSpec, seed = s, backbone = bb.Source, backbone_sha256 = bb.Sha256, threads = TorchSharp.torch.get_num_threads(),
                cpu = VptSharp.Hardware.CpuFeatures.Current.Model, cpu_vector_extensions = VptSharp.Hardware.CpuFeatures.Current.VectorExtensions,
                results = rows.Select(x => new { method = x.Method, precision = x.Precision, trainable = x.Params, val_top1 = x.Val, test_top1 = x.Test, seconds = x.Seconds }),
                wall_seconds = wall.Elapsed.TotalSeconds,
            }, JsonFormat.PascalIndented));
            return 0;
        }));
        return c;
    }
}
