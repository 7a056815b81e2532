using VptSharp.Analysis;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Training;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class SweepTests
{
    static RunResult Tune(string method, double lr, double wd, double val, int? p = null) => new()
    {
        Spec = new RunSpec { Task = "t", Group = "Natural", Method = method, Phase = "tune", Lr = lr, WeightDecay = wd, Prompts = p },
        ValTop1 = val,
    };

    [Fact]
    public void BestConfigIsHighestValThenSmallerLrThenSmallerWeightDecay()
    {
        Assert.Equal(0.5, Sweep.SelectBest([Tune("linear", 2.5, 0, 0.80), Tune("linear", 0.5, 0, 0.81), Tune("linear", 0.1, 0, 0.79)]).Lr);
        Assert.Equal(0.5, Sweep.SelectBest([Tune("linear", 2.5, 0, 0.80), Tune("linear", 0.5, 0, 0.80)]).Lr); // tie → smaller lr
        var best = Sweep.SelectBest([Tune("vpt-deep", 1, 1e-3, 0.7, 10), Tune("vpt-deep", 1, 1e-4, 0.7, 50), Tune("vpt-deep", 1, 1e-4, 0.7, 10)]);
        Assert.Equal((1e-4, 10), (best.WeightDecay, best.Prompts!.Value)); // then smaller wd, then fewer prompts
    }

    /// <summary>A grid widened on resume can change the selection: the report keeps only the finals of the config
    /// selected now, not those of the superseded one.</summary>
    [Fact]
    public void ReportKeepsOnlyTheFinalsOfTheSelectedConfig()
    {
        RunResult Final(double lr, double test) => new()
        {
            Spec = new RunSpec { Task = "t", Group = "Natural", Method = "linear", Phase = "final", Lr = lr, WeightDecay = 0 },
            TestTop1 = test, BackboneParams = 1000, Backbone = "x", BackboneSha256 = new string('0', 64),
        };
        var report = new SweepReport([Tune("linear", 0.1, 0, 0.60), Tune("linear", 0.5, 0, 0.70), Final(0.1, 0.9), Final(0.5, 0.5)]);
        Assert.Equal([50.0], report.Scores("t", "linear"));
    }

    [Fact]
    public void RunWhoseLossEndsAboveItsStartIsNeverSelected()
    {
        var steady = Tune("linear", 0.1, 0, 0.60) with { FirstTrainLoss = 2.0, FinalTrainLoss = 0.9 };
        var risen = Tune("linear", 2.5, 0, 0.75) with { FirstTrainLoss = 2.0, FinalTrainLoss = 6.5 };
        Assert.True(risen.LossRose);
        Assert.False(steady.LossRose);
        Assert.Equal(0.1, Sweep.SelectBest([risen, steady]).Lr); // higher val, but its loss ran away
        var diverged = Tune("linear", 0.5, 0, 0) with { Diverged = true, ValTop1 = null };
        Assert.Equal(2.5, Sweep.SelectBest([diverged, risen]).Lr); // all unstable: still the best of them
        Assert.False((Tune("linear", 1, 0, 0.5) with { FinalTrainLoss = 3 }).LossRose); // older results: no first loss recorded
    }

    /// <summary>A 2-task suite of coloured squares on disk: class folders for train / val / train+val / test.</summary>
    static Suite TinySuite(string dir)
    {
        foreach (var (task, seed) in new[] { ("a", 1), ("b", 2) })
        {
            string root = Path.Combine(dir, task);
            MakeImageFolder(Path.Combine(root, "train"), 3, 8, seed: seed);
            MakeImageFolder(Path.Combine(root, "val"), 3, 3, seed: seed + 10);
            MakeImageFolder(Path.Combine(root, "trainval"), 3, 11, seed: seed);
            MakeImageFolder(Path.Combine(root, "test"), 3, 5, seed: seed + 20);
        }
        var suite = new Suite
        {
            Name = "tiny", Root = ".",
            Tasks = [.. new[] { ("a", "Natural"), ("b", "Structured") }.Select(t => new SuiteTask
            {
                Name = t.Item1, Group = t.Item2, Train = $"{t.Item1}/train", Val = $"{t.Item1}/val", TrainVal = $"{t.Item1}/trainval", Test = $"{t.Item1}/test", Classes = 3,
            })],
        };
        string path = Path.Combine(dir, "tiny.json");
        suite.Save(path);
        return Suite.Load(path);
    }

    [Fact]
    public void SweepRunsGridThenSeedsResumesAndRestoresTheBackbone()
    {
        string dir = TempDir();
        var suite = TinySuite(Path.Combine(dir, "data"));
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2));
        var before = bb.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var options = new SweepOptions
        {
            Methods = ["linear", "full", "vpt-deep"], Lrs = [1.0, 0.25], WholeBackboneLrs = [1e-3], Prompts = [2],
            Epochs = 2, WarmupEpochs = 1, BatchSize = 8, Seeds = 2, Workers = 1, Tasks = ["a"],
        };
        string outDir = Path.Combine(dir, "sweep");
        var sweep = new Sweep(suite, bb, options, outDir);
        var results = sweep.Run();
        // linear: 2 lrs + 2 seeds; full: 1 lr + 2 seeds; vpt-deep: 2 lrs × 1 p + 2 seeds.
        Assert.Equal(4 + 3 + 4, results.Count);
        Assert.Equal(11, Sweep.LoadResults(outDir).Count);
        Assert.All(results.Where(r => r.Spec.Phase == "final"), r => Assert.Equal(15, r.EvalImages));
        Assert.All(results.Where(r => r.Spec.Phase == "tune"), r => Assert.Equal((24, 9), (r.TrainImages, r.EvalImages)));
        foreach (var (name, t) in bb.Model.state_dict())
            Assert.True(Same(before[name], t), $"{name} was left changed by a run that trained it");
        Assert.Empty(Directory.GetFiles(Path.Combine(outDir, "work"), "*", SearchOption.AllDirectories)); // finished runs leave no checkpoints

        // A lost result is recomputed, the others are read back, not retrained.
        var victim = Sweep.ResultPath(outDir, results.First(r => r.Spec.Method == "vpt-deep" && r.Spec.Phase == "final").Spec);
        File.Delete(victim);
        var stamps = Directory.EnumerateFiles(Path.Combine(outDir, "runs"), "*.json", SearchOption.AllDirectories).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        int trained = 0;
        var again = new Sweep(suite, bb, options, outDir);
        again.Progress += p => { if (p.Finished is not null) trained++; };
        Assert.Equal(11, again.Run().Count);
        Assert.Equal(1, trained);
        Assert.True(File.Exists(victim));
        foreach (var (f, t) in stamps) Assert.Equal(t, File.GetLastWriteTimeUtc(f));

        // Resuming the folder with another backbone is refused before any run, naming a run of the first one.
        File.Delete(victim);
        using var other = BackboneLoader.Load(SaveTinyBackbone(Directory.CreateDirectory(Path.Combine(dir, "other")).FullName, seed: 3));
        var refused = Assert.Throws<BackboneMismatchException>(() => new Sweep(suite, other, options, outDir).Run());
        Assert.Contains(Path.Combine(outDir, "runs"), refused.Message);
        Assert.Contains(bb.Sha256[..12], refused.Message);
        // So are the same weights under another architecture (one attention head instead of two).
        using var oneHead = BackboneLoader.Load(bb.WeightsPath!, new ArchOverrides { Heads = 1 });
        Assert.Contains("\"Heads\":2", Assert.Throws<BackboneMismatchException>(() => new Sweep(suite, oneHead, options, outDir).Run()).Message);
        Assert.False(File.Exists(victim));
    }

    /// <summary>--precision bf16: runs that keep the backbone frozen run it in bfloat16; a run that trains it afterwards
    /// starts from the exact float32 weights (the same result as in an fp32-only sweep), not from their bfloat16 cast.</summary>
    [Fact]
    public void Bf16SweepKeepsTrainedBackbonesOnTheirFloat32Weights()
    {
        string dir = TempDir();
        var suite = TinySuite(Path.Combine(dir, "data"));
        string checkpoint = SaveTinyBackbone(dir, seed: 2);
        var options = new SweepOptions
        {
            Methods = ["linear", "full"], Lrs = [1.0], WholeBackboneLrs = [1e-3], Epochs = 2, WarmupEpochs = 1, BatchSize = 8, Seeds = 1,
            Workers = 1, Tasks = ["a"], Precision = Hardware.Precision.Bf16,
        };
        using var bb = BackboneLoader.Load(checkpoint);
        var before = bb.Model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var mixed = new Sweep(suite, bb, options, Path.Combine(dir, "bf16")).Run();
        Assert.All(mixed.Where(r => r.Spec.Method == "linear"), r => Assert.Equal("bf16", r.Precision));
        Assert.All(mixed.Where(r => r.Spec.Method == "full"), r => Assert.Equal("fp32", r.Precision));
        foreach (var (name, t) in bb.Model.state_dict())
            Assert.True(t.dtype == ScalarType.Float32 && Same(before[name], t), $"{name} is not the float32 weight it was");

        using var fresh = BackboneLoader.Load(checkpoint);
        var alone = new Sweep(suite, fresh, options with { Methods = ["full"], Precision = Hardware.Precision.Fp32 }, Path.Combine(dir, "fp32")).Run();
        foreach (var r in alone)
            Assert.Equal(r.FinalTrainLoss, mixed.Single(m => m.Spec == r.Spec).FinalTrainLoss);
    }

    [Fact]
    public void KilledRunContinuesFromItsCheckpoint()
    {
        string dir = TempDir();
        var suite = TinySuite(Path.Combine(dir, "data"));
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2));
        var options = new SweepOptions { Methods = ["vpt-deep"], Lrs = [1.0], Prompts = [2], Epochs = 3, WarmupEpochs = 1, BatchSize = 8, Seeds = 1, Workers = 1, Tasks = ["b"] };
        string outDir = Path.Combine(dir, "sweep");
        using var cts = new CancellationTokenSource();
        var first = new Sweep(suite, bb, options, outDir);
        int epochs = 0;
        first.EpochEnd += _ => { if (++epochs == 2) cts.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => first.Run(cts.Token));
        string work = Path.Combine(outDir, "work", "b", "vpt-deep");
        Assert.NotEmpty(Directory.GetFiles(work, "train-state.json", SearchOption.AllDirectories));
        var resumed = new Sweep(suite, bb, options, outDir);
        int resumedEpochs = 0;
        resumed.EpochEnd += _ => resumedEpochs++;
        var results = resumed.Run();
        Assert.Equal(2, results.Count);
        Assert.Equal(1 + 3, resumedEpochs); // the tune run's last epoch, then the final run's three
    }

    [Fact]
    public void ReportComputesTableOneFromRawResults()
    {
        // Two tasks per group; full and vpt-deep with 3 seeds, linear with 3 seeds, made-up accuracies.
        var runs = new List<RunResult>();
        string[] tasks = ["n1", "n2", "s1", "s2"];
        var acc = new Dictionary<string, double[]>
        {
            ["full"] = [0.70, 0.80, 0.40, 0.50], ["vpt-deep"] = [0.75, 0.78, 0.45, 0.55], ["linear"] = [0.60, 0.70, 0.20, 0.30],
        };
        var trainable = new Dictionary<string, long> { ["full"] = 1000, ["vpt-deep"] = 20, ["linear"] = 5 };
        var fit = new Dictionary<string, double> { ["full"] = 0.1, ["vpt-deep"] = 0.5, ["linear"] = 0.9 };
        foreach (var (m, a) in acc)
            for (int t = 0; t < 4; t++)
                for (int s = 0; s < 3; s++)
                    runs.Add(new RunResult
                    {
                        Spec = new RunSpec { Task = tasks[t], Group = t < 2 ? "Natural" : "Structured", Method = m, Phase = "final", Seed = s },
                        TestTop1 = a[t] + 0.01 * (s - 1), TrainableParams = trainable[m], BackboneParams = 1000, Backbone = "x", BackboneSha256 = new string('0', 64),
                        FinalTrainLoss = fit[m] + t + 0.01 * s,
                    });
        // A data-fraction curve on task n1 only: its full-data point is n1's final mean (75.00), not the mean over all tasks.
        runs.Add(new RunResult
        {
            Spec = new RunSpec { Task = "n1", Group = "Natural", Method = "vpt-deep", Phase = "fraction", Fraction = 0.5 },
            TestTop1 = 0.6, TrainableParams = 20, BackboneParams = 1000, Backbone = "x", BackboneSha256 = new string('0', 64),
        });
        // A prompt-length curve on n1 (the finals above ran without a recorded p, so give n1's finals p = 10 first):
        // it passes through the selected length's final mean.
        runs = runs.Select(r => r.Spec.Task == "n1" && r.Spec.Method == "vpt-deep" && r.Spec.Phase == "final" ? r with { Spec = r.Spec with { Prompts = 10 } } : r).ToList();
        runs.Add(new RunResult
        {
            Spec = new RunSpec { Task = "n1", Group = "Natural", Method = "vpt-deep", Phase = "prompts", Prompts = 1 },
            TestTop1 = 0.7, TrainableParams = 20, BackboneParams = 1000, Backbone = "x", BackboneSha256 = new string('0', 64),
        });
        var report = new SweepReport(runs, ["full", "linear", "vpt-deep"]);
        Assert.Equal([(0.5, 60.0), (1.0, 75.0)], report.FractionCurve("vpt-deep").Select(p => (p.X, Math.Round(p.Y, 6))));
        Assert.Equal([(1.0, 70.0), (10.0, 75.0)], report.PromptCurve("vpt-deep").Select(p => (p.X, Math.Round(p.Y, 6))));
        Assert.Equal(4.0, report.TotalParamsMultiple("full"), 9);                // one backbone copy per task
        Assert.Equal(1 + 4 * 20 / 1000.0, report.TotalParamsMultiple("vpt-deep"), 9); // shared backbone + 4 small tasks
        Assert.Equal(2.0, report.TunedPercent("vpt-deep"), 9);
        Assert.Equal(new[] { 74.0, 75.0, 76.0 }, report.Scores("n1", "vpt-deep").Select(x => Math.Round(x, 6)));
        string reportDir = TempDir();
        string md = report.Write(reportDir);
        Assert.Contains("![test top-1 per task](tasks.png)", md);
        Assert.Contains("![accuracy vs data fraction](fraction.png)", md);
        Assert.Contains("![accuracy vs prompt length](prompt-length.png)", md);
        Assert.True(new FileInfo(Path.Combine(reportDir, "tasks.png")).Length > 10_000);
        Assert.Contains("| vpt-deep | 1.08× | 2.00% | 76.50 (1) | 50.00 (2) | 63.25 | 63.25 |", md);
        Assert.Contains("| full | 4.00× | 100.00% | 75.00 | 45.00 | 60.00 | 60.00 |", md);
        Assert.Contains("| n2 | Natural | 1.110 | 1.910 | 1.510 |", md); // training fit: last-epoch loss, mean over seeds (full, linear, vpt-deep)
        var w = Statistics.WilcoxonSignedRank([75.0, 78, 45, 55], [60.0, 70, 20, 30], Alternative.Greater); // one-tailed, as the paper's
        Assert.Contains($"| linear | 4 | +18.25 | {w.Statistic:G4} | {w.PValue.ToString("G3", System.Globalization.CultureInfo.InvariantCulture)} |", md);
    }

    /// <summary>`vpt sweep` as a user runs it: one child process per run, then `vpt report` on the results.</summary>
    [Fact]
    public void SweepAndReportCommandsEndToEnd()
    {
        string dir = TempDir();
        var suite = TinySuite(Path.Combine(dir, "data"));
        string suitePath = Path.Combine(dir, "data", "tiny.json");
        string bb = SaveTinyBackbone(dir, seed: 2);
        string outDir = Path.Combine(dir, "sweep");
        var r = RunCli("sweep", "--suite", suitePath, "--backbone", bb, "--methods", "linear,vpt-deep", "--lrs", "1", "--prompts", "2",
            "--epochs", "2", "--warmup-epochs", "1", "--batch-size", "8", "--seeds", "2", "--workers", "1", "--threads", "1", "--out", outDir);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        var results = Sweep.LoadResults(outDir);
        Assert.Equal(2 * 2 * (1 + 2), results.Count); // 2 tasks × 2 methods × (1 tune + 2 seeds)
        Assert.All(results, x => Assert.Null(x.Error));
        var report = RunCli("report", outDir, "--methods", "linear,vpt-deep");
        Assert.True(report.ExitCode == 0, report.Stderr);
        string md = File.ReadAllText(Path.Combine(outDir, "report.md"));
        Assert.Contains("| vpt-deep |", md);
        Assert.Contains("| linear | 2 |", md); // the significance row: 2 tasks paired
        Assert.True(File.Exists(Path.Combine(outDir, "report.csv")));
        // Another backbone is refused in one line (exit 3), and the folder keeps its record of the sweep that made it.
        string record = File.ReadAllText(Path.Combine(outDir, "sweep.json"));
        string other = SaveTinyBackbone(Directory.CreateDirectory(Path.Combine(dir, "other")).FullName, seed: 3);
        var foreign = RunCli("sweep", "--suite", suitePath, "--backbone", other, "--methods", "linear", "--lrs", "1", "--epochs", "2", "--out", outDir);
        Assert.Equal(3, foreign.ExitCode);
        Assert.DoesNotContain('\n', foreign.Stderr.Trim());
        Assert.Contains("a sweep folder holds one backbone's runs", foreign.Stderr);
        Assert.Equal(record, File.ReadAllText(Path.Combine(outDir, "sweep.json")));
        var bad = RunCli("sweep", "--suite", suitePath, "--backbone", bb, "--methods", "nope", "--out", outDir);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("unknown method", bad.Stderr);
    }

    /// <summary>
    /// The shared JSON settings (IO/JsonFormat) write sweep results, sweep options and suites byte for byte as the
    /// per-file options they replaced did, so earlier sweeps resume and compare unchanged (nulls and defaults left out,
    /// a diverged run's NaN loss as a literal).
    /// </summary>
    [Fact]
    public void SharedJsonSettingsKeepTheFileFormats()
    {
        var before = new System.Text.Json.JsonSerializerOptions
        {
            PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
            DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull,
            NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
        };
        RunResult[] results =
        [
            Tune("vpt-deep", 2.5, 1e-4, 0.75, 10),
            new() { Spec = new RunSpec { Task = "t", Group = "g", Method = "adapter", Phase = "final", Reduction = 8, Seed = 2, Fraction = 0.5 },
                    TestTop1 = 0.5, Diverged = true, FinalTrainLoss = double.NaN, Error = "crashed", FinishedUtc = new DateTime(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc) },
        ];
        foreach (var r in results)
        {
            string json = System.Text.Json.JsonSerializer.Serialize(r, VptSharp.IO.JsonFormat.Indented);
            Assert.Equal(System.Text.Json.JsonSerializer.Serialize(r, before), json);
            Assert.Equal(r.Spec, System.Text.Json.JsonSerializer.Deserialize<RunResult>(json, VptSharp.IO.JsonFormat.Indented)!.Spec);
        }
        Assert.Contains("\"final_train_loss\": \"NaN\"", System.Text.Json.JsonSerializer.Serialize(results[1], VptSharp.IO.JsonFormat.Indented));
        Assert.DoesNotContain("val_top1", System.Text.Json.JsonSerializer.Serialize(results[1], VptSharp.IO.JsonFormat.Indented));
        var options = new SweepOptions { Methods = ["linear"] };
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(options, before), System.Text.Json.JsonSerializer.Serialize(options, VptSharp.IO.JsonFormat.Indented));

        var suiteBefore = new System.Text.Json.JsonSerializerOptions
        {
            PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
            DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingDefault,
        };
        var suite = new Suite
        {
            Name = "s", Root = "/data",
            Tasks = [new SuiteTask { Name = "a", Group = "Natural", Train = "a/train.txt", Val = "a/val.txt", TrainVal = "a/tv.txt", Test = "a/test.txt", Classes = 10 },
                     new SuiteTask { Name = "b", Group = "FGVC", Train = "b/train.json", Val = "b/val.json", TrainVal = "b/train.json|b/val.json", Test = "b/test.json", Augment = "crop-flip" }],
        };
        Assert.Equal(System.Text.Json.JsonSerializer.Serialize(suite, suiteBefore), System.Text.Json.JsonSerializer.Serialize(suite, VptSharp.IO.JsonFormat.Indented));
        string suiteJson = System.Text.Json.JsonSerializer.Serialize(suite, VptSharp.IO.JsonFormat.Indented);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(suiteJson, "\"classes\""));  // 0 = not checked: left out
    }
}
