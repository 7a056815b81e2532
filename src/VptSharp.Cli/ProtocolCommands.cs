using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;
using VptSharp.IO;
using VptSharp.Analysis;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Training;

namespace VptSharp.Cli;

/// <summary>`vpt sweep` (the paper's protocol over a suite) and `vpt report` (its Table 1, tests and curves).</summary>
internal static partial class ProtocolCommands
{
    static readonly Option<string> SuiteOpt = new("--suite", "-s") { Description = "suite file (suites/vtab-1k.json, suites/fgvc.json, suites/mini.json, or your own)", Required = true };
    static readonly Option<string?> DataRoot = new("--data-root") { Description = "folder the suite's relative paths resolve against (default: the suite file's root)" };
    static readonly Option<string> MethodsOpt = new("--methods", "-m") { Description = "comma-separated methods", DefaultValueFactory = _ => "linear,full,bias,adapter,vpt-shallow,vpt-deep" };
    static readonly Option<string?> TasksOpt = new("--tasks") { Description = "comma-separated task names (default: all of the suite)" };
    static readonly Option<string> Lrs = new("--lrs") { Description = "base lr grid (at batch 256) for SGD methods; paper: 50,25,10,5,2.5,1,0.5,0.25,0.1,0.05", DefaultValueFactory = _ => "2.5,0.5" };
    static readonly Option<string> FullLrs = new("--full-lrs") { Description = "base lr grid for the reference's fine-tuning family (AdamW: full, partial-k, bias, adapter); reference: 0.001,0.0001,0.0005,0.005", DefaultValueFactory = _ => "0.001,0.0001" };
    static readonly Option<string> Wds = new("--wds") { Description = "weight-decay grid; paper: 0.01,0.001,0.0001,0", DefaultValueFactory = _ => "0.0001" };
    static readonly Option<string> PromptsOpt = new("--prompts", "-p") { Description = "prompt-length grid for prompt methods; paper: 1,5,10,50,100,200", DefaultValueFactory = _ => "10" };
    static readonly Option<string> PadPixelsOpt = new("--pad-pixels") { Description = "pad-prompt width grid for vpt-pad (pixels per side); paper (ConvNets): 1,3,5,7,9,11", DefaultValueFactory = _ => "5" };
    static readonly Option<string> Reductions = new("--reductions") { Description = "adapter reduction grid; paper: 8,64,256", DefaultValueFactory = _ => "8" };
    static readonly Option<int> Epochs = new("--epochs") { Description = "epochs per run (paper: 100)", DefaultValueFactory = _ => 100 };
    static readonly Option<int?> Warmup = new("--warmup-epochs") { Description = "warm-up epochs (default: the method's reference recipe — 5 for the AdamW fine-tuning family, 10 otherwise)" };
    static readonly Option<int?> SweepBatch = new("--batch-size") { Description = "batch size (default: the method's reference recipe — 384 fine-tuning family, 1024 linear/mlp/sidetune, 128 prompts)" };
    static readonly Option<int> Seeds = new("--seeds") { Description = "seeds of the final runs (paper: 3; appendix: 5)", DefaultValueFactory = _ => 3 };
    static readonly Option<string?> Fractions = new("--fractions") { Description = "extra runs on class-balanced fractions of train+val (Fig. 3), e.g. 0.1,0.2,0.4,0.8" };
    static readonly Option<string?> CurvePrompts = new("--curve-prompts") { Description = "extra VPT runs at these prompt lengths (Fig. 6), e.g. 1,5,10,50" };
    static readonly Option<string?> CurveDepths = new("--curve-depths") { Description = "extra VPT-deep runs with these prompted-block ranges (Fig. 7), e.g. 1-1,1-3,1-6,6-6,6-4,6-1" };
    static readonly Option<bool> LinearLbfgs = new("--linear-lbfgs") { Description = "linear runs solve their head by full-batch L-BFGS on cached features (scikit-learn's and ML.NET's linear probe): --wds is then their L2 grid and --lrs does not apply to them (one run per L2 value)" };
    static readonly Option<string?> Shard = new("--shard") { Description = "i/n: run only this machine's share of the (task, method) pairs" };
    static readonly Option<string> Out = new("--out", "-o") { Description = "sweep folder (runs/…json results, resumable)", Required = true };
    static readonly Option<int> Workers = new("--workers") { Description = "image decoding threads", DefaultValueFactory = _ => 2 };
    static readonly Option<bool> InProcess = new("--in-process") { Description = "train every run in this process (default: one child process per run, so a crash costs one run)" };
    static readonly Option<string> SweepPrecision = new("--precision") { Description = "frozen-backbone precision of the runs that train none of it: fp32 (default, so a grid's numbers do not depend on the CPU), auto or bf16; methods that train backbone weights run fp32", DefaultValueFactory = _ => "fp32" };
    static readonly Option<string?> RunOne = new("--run-one") { Hidden = true }; // child mode: one RunSpec as JSON

    static List<double> Doubles(string text, string option) => text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
        .Select(s => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : throw new ArgumentException($"{option}: '{s}' is not a number"))
        .ToList();

    static List<int> Ints(string text, string option) => Doubles(text, option).Select(v => v == Math.Floor(v) && v >= 1 ? (int)v
        : throw new ArgumentException($"{option}: {v} is not a positive integer")).ToList();

    static List<string> Names(string? text) => (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();

    public static Command SweepCommand()
    {
        var backbone = Common.Backbone();
        var c = new Command("sweep", "the paper's protocol over a suite: lr × wd (× p, × r) grid on train → val, then N seeds on train+val → test; resumable");
        Common.AddBackboneOptions(c, backbone);
        foreach (var o in new Option[] { SuiteOpt, DataRoot, MethodsOpt, TasksOpt, Lrs, FullLrs, Wds, PromptsOpt, PadPixelsOpt, Reductions, Epochs, Warmup, SweepBatch,
                     Seeds, Fractions, CurvePrompts, CurveDepths, LinearLbfgs, Common.LbfgsStandardize, Common.HeadInitOpt, SweepPrecision, Shard, Out, Workers, InProcess, RunOne, Common.Threads, Common.Device })
            c.Options.Add(o);
        c.Subcommands.Add(PlanCommand());
        c.Subcommands.Add(RunCommand());
        c.SetAction(r => Common.Run(() =>
        {
            Common.ApplyThreads(r);
            var suite = Suite.Load(r.GetValue(SuiteOpt)!, r.GetValue(DataRoot));
            var options = ReadOptions(r, suite);
            string outDir = r.GetValue(Out)!;
            Directory.CreateDirectory(outDir);
            using var bb = Common.LoadBackbone(r.GetValue(backbone)!, Common.ArchFrom(r));
            if (r.GetValue(RunOne) is string specJson) // child: one run, its result as the last stdout line
            {
                var spec = JsonSerializer.Deserialize<RunSpec>(specJson, JsonFormat.Indented)!;
                Console.WriteLine(JsonSerializer.Serialize(new Sweep(suite, bb, options, outDir).ExecuteOne(spec), JsonFormat.Indented).ReplaceLineEndings(" "));
                return 0;
            }
            var sweep = new Sweep(suite, bb, options, outDir) { Runner = r.GetValue(InProcess) ? null : spec => RunInChild(spec, suite, bb) };
            sweep.CheckFolderBackbone(); // a refused folder keeps its own sweep.json
            // What was asked, for the record (the report reads the runs themselves).
            AtomicFile.WriteAllText(Path.Combine(outDir, "sweep.json"), JsonSerializer.Serialize(new
            {
                suite = suite.Name, root = suite.Root, backbone = bb.Source, backbone_sha256 = bb.Sha256, options,
                command = "vpt " + string.Join(' ', Environment.GetCommandLineArgs().Skip(1)),
            }, JsonFormat.Indented));
            sweep.Log += m => AnsiConsole.MarkupLine($"[grey]{Markup.Escape(m)}[/]");
            double secondsThisSession = 0;
            sweep.Progress += p =>
            {
                if (p.Current is RunSpec s)
                    AnsiConsole.MarkupLine($"[grey]{p.Done}/{p.Total}[/] {Markup.Escape($"{s.Task} / {s.Method} / {s.Id}")} …");
                else if (p.Finished is RunResult f)
                {
                    secondsThisSession += f.Seconds;
                    double eta = secondsThisSession / p.RunsThisSession * (p.Total - p.Done);
                    string score = f.ValTop1 is double v ? $"val {100 * v:F2}%" : $"test {100 * f.TestTop1!.Value:F2}%";
                    AnsiConsole.MarkupLine($"[green]{p.Done}/{p.Total}[/] {Markup.Escape($"{f.Spec.Task} / {f.Spec.Method} / {f.Spec.Id}")}: [bold]{score}[/] " +
                                           $"in {f.Seconds:F0}s; ETA {TimeSpan.FromSeconds(eta):hh\\:mm\\:ss}");
                }
            };
            var results = sweep.Run();
            AnsiConsole.MarkupLine($"sweep done: {results.Count} runs in {Markup.Escape(outDir)}; next: [bold]vpt report {Markup.Escape(outDir)}[/]");
            return 0;
        }));
        return c;
    }

    /// <summary>The sweep options of `vpt sweep` and `vpt sweep plan`, checked against the suite.</summary>
    static SweepOptions ReadOptions(ParseResult r, Suite suite)
    {
        var options = new SweepOptions
        {
            Methods = Names(r.GetValue(MethodsOpt)), Tasks = r.GetValue(TasksOpt) is string ts ? Names(ts) : null,
            Lrs = Doubles(r.GetValue(Lrs)!, "--lrs"), WholeBackboneLrs = Doubles(r.GetValue(FullLrs)!, "--full-lrs"),
            WeightDecays = Doubles(r.GetValue(Wds)!, "--wds"), Prompts = Ints(r.GetValue(PromptsOpt)!, "--prompts"),
            PadPixels = Ints(r.GetValue(PadPixelsOpt)!, "--pad-pixels"),
            Reductions = Ints(r.GetValue(Reductions)!, "--reductions"), Epochs = r.GetValue(Epochs), WarmupEpochs = r.GetValue(Warmup),
            BatchSize = r.GetValue(SweepBatch), Seeds = r.GetValue(Seeds), Workers = r.GetValue(Workers), Device = r.GetValue(Common.Device)!,
            Fractions = r.GetValue(Fractions) is string f ? Doubles(f, "--fractions") : [],
            CurvePrompts = r.GetValue(CurvePrompts) is string cp ? Ints(cp, "--curve-prompts") : [],
            CurveDepths = Names(r.GetValue(CurveDepths)), Shard = r.GetValue(Shard), LinearLbfgs = r.GetValue(LinearLbfgs),
            LbfgsStandardize = r.GetValue(Common.LbfgsStandardize), Precision = Hardware.PrecisionPolicy.Parse(r.GetValue(SweepPrecision)!),
            HeadInit = Tuning.HeadInit.Parse(r.GetValue(Common.HeadInitOpt)!),
        };
        if (options.LbfgsStandardize && !options.LinearLbfgs) throw new ArgumentException("--lbfgs-standardize applies to --linear-lbfgs only: add it or drop --lbfgs-standardize");
        if (options.Tasks?.FirstOrDefault(t => suite.Tasks.All(x => x.Name != t)) is string missing) suite.Task(missing); // names the valid tasks
        if (options.Fractions.Any(x => x <= 0 || x >= 1)) throw new ArgumentException("--fractions must lie in (0, 1)");
        return options;
    }

    /// <summary>Runs one spec in a child `vpt sweep --run-one`; a crash is retried once, then recorded as failed.</summary>
    static RunResult RunInChild(RunSpec spec, Suite suite, Checkpoints.LoadedBackbone bb)
    {
        string last = "";
        for (int attempt = 1; attempt <= 2; attempt++)
        {
            var psi = Common.SelfProcess([.. Environment.GetCommandLineArgs().Skip(1), "--run-one", JsonSerializer.Serialize(spec, JsonFormat.Indented).ReplaceLineEndings(" ")]);
            using var p = System.Diagnostics.Process.Start(psi)!;
            var stderr = p.StandardError.ReadToEndAsync();
            string stdout = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
            if (p.ExitCode == 0 && lines.Length > 0)
                return JsonSerializer.Deserialize<RunResult>(lines[^1], JsonFormat.Indented)!;
            last = stderr.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault(l => l.Contains("rror") || l.Contains("xception"))?.Trim() ?? $"exit code {p.ExitCode}";
            AnsiConsole.MarkupLine($"[yellow]{Markup.Escape($"{spec.Task} / {spec.Method} / {spec.Id}: attempt {attempt} failed: {last}")}[/]");
        }
        return new RunResult
        {
            Spec = spec, Error = last, BackboneParams = bb.Model.BackboneParameterCount, Backbone = bb.Source, BackboneSha256 = bb.Sha256,
            FinishedUtc = DateTime.UtcNow, FinalTrainLoss = double.NaN,
        };
    }

    public static Command ReportCommand()
    {
        var c = new Command("report", "Table 1 of a sweep: group means, wins vs Full, parameter totals, Wilcoxon / Welch tests, curves (Markdown, CSV, PNG)");
        var dir = new Argument<string>("sweep") { Description = "sweep folder (made by vpt sweep)" };
        var outOpt = new Option<string?>("--out", "-o") { Description = "where report.md, report.csv and plots go (default: the sweep folder)" };
        c.Arguments.Add(dir); c.Options.Add(outOpt); c.Options.Add(MethodsOpt);
        c.SetAction(r => Common.Run(() =>
        {
            string sweepDir = r.GetValue(dir)!;
            if (!Directory.Exists(sweepDir)) throw new DirectoryNotFoundException($"{sweepDir}: no such sweep folder; run vpt sweep --out {sweepDir} first");
            var report = new SweepReport(Sweep.LoadResults(sweepDir), Names(r.GetValue(MethodsOpt)));
            string outDir = r.GetValue(outOpt) ?? sweepDir;
            Console.WriteLine(report.Write(outDir));
            AnsiConsole.MarkupLine($"wrote [bold]{Markup.Escape(Path.Combine(outDir, "report.md"))}[/] (+ report.csv, plots)");
            return 0;
        }));
        return c;
    }
}
