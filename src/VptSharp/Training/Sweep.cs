using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Training;

/// <summary>
/// The paper's protocol (§4.1, appendix A) over a suite: per task and method, a grid over lr × weight decay
/// (× prompt length for VPT, × reduction for adapters) trained on the tuning split and scored on val; the best val
/// top-1 (ties → smaller lr, then smaller weight decay, then fewer parameters) is then trained on train+val with
/// several seeds and scored on test. Optional curves (data fraction, prompt length, prompt depth) reuse the
/// selected config.
/// </summary>
public sealed record SweepOptions
{
    public required IReadOnlyList<string> Methods { get; init; }
    /// <summary>Base lr grid (at batch 256) for SGD methods.</summary>
    public IReadOnlyList<double> Lrs { get; init; } = [2.5, 0.5];
    /// <summary>Base lr grid for methods that train the whole backbone (AdamW).</summary>
    public IReadOnlyList<double> WholeBackboneLrs { get; init; } = [1e-3, 1e-4];
    public IReadOnlyList<double> WeightDecays { get; init; } = [1e-4];
    /// <summary>Prompt lengths searched for prompt methods (paper: 1, 5, 10, 50, 100, 200).</summary>
    public IReadOnlyList<int> Prompts { get; init; } = [10];
    /// <summary>Adapter reductions searched (paper: 8, 64, 256).</summary>
    public IReadOnlyList<int> Reductions { get; init; } = [8];
    public int Epochs { get; init; } = 100;
    public int WarmupEpochs { get; init; } = 10;
    public int BatchSize { get; init; } = 64;
    /// <summary>Seeds of the final runs (paper: 3 in the main text, 5 in the appendix).</summary>
    public int Seeds { get; init; } = 3;
    public int Workers { get; init; } = 2;
    public string Device { get; init; } = "cpu";
    /// <summary>Fig. 3: train+val fractions for extra final runs (1 seed each) with the selected config.</summary>
    public IReadOnlyList<double> Fractions { get; init; } = [];
    /// <summary>Fig. 6: prompt lengths for extra VPT final runs (1 seed each).</summary>
    public IReadOnlyList<int> CurvePrompts { get; init; } = [];
    /// <summary>Fig. 7: VPT-deep prompt depth ranges ("1-6", "12-7") for extra final runs (1 seed each).</summary>
    public IReadOnlyList<string> CurveDepths { get; init; } = [];
    /// <summary>"i/n": this machine runs the (task, method) pairs with stable hash % n == i, so sweeps spread over machines.</summary>
    public string? Shard { get; init; }
    /// <summary>Only these tasks (null = all).</summary>
    public IReadOnlyList<string>? Tasks { get; init; }
}

/// <summary>One training run of a sweep. Its <see cref="Id"/> names its result file, so a finished run is never repeated.</summary>
public sealed record RunSpec
{
    public required string Task { get; init; }
    public required string Group { get; init; }
    public required string Method { get; init; }
    /// <summary>"tune" (train → val), "final" (train+val → test), or a curve: "fraction", "prompts", "depth".</summary>
    public required string Phase { get; init; }
    public double Lr { get; init; }
    public double WeightDecay { get; init; }
    public int? Prompts { get; init; }
    public int? Reduction { get; init; }
    public int Seed { get; init; }
    public double Fraction { get; init; } = 1;
    public string? Depth { get; init; }

    [JsonIgnore] public string Id
    {
        get
        {
            var c = CultureInfo.InvariantCulture;
            var parts = new List<string> { Phase, "lr" + Lr.ToString("G6", c), "wd" + WeightDecay.ToString("G6", c) };
            if (Prompts is int p) parts.Add("p" + p);
            if (Reduction is int r) parts.Add("r" + r);
            if (Fraction < 1) parts.Add("f" + Fraction.ToString("G4", c));
            if (Depth is not null) parts.Add("d" + Depth);
            if (Phase != "tune") parts.Add("s" + Seed);
            return string.Join('_', parts);
        }
    }

    public MethodOptions MethodOptions() => new()
    {
        Prompts = Prompts ?? 50, Reduction = Reduction,
        PromptDepth = Depth is null ? null : (int.Parse(Depth.Split('-')[0]), int.Parse(Depth.Split('-')[1])),
    };
}

/// <summary>What a run measured; written atomically as JSON beside the others.</summary>
public sealed record RunResult
{
    public required RunSpec Spec { get; init; }
    public double? ValTop1 { get; init; }
    public double? TestTop1 { get; init; }
    public long TrainableParams { get; init; }
    public long BackboneParams { get; init; }
    public int TrainImages { get; init; }
    public int EvalImages { get; init; }
    public double FinalTrainLoss { get; init; }
    public double Seconds { get; init; }
    /// <summary>The loss became non-finite: the run has no score (a tuning run is then never selected).</summary>
    public bool Diverged { get; init; }
    /// <summary>The run failed twice (e.g. its process crashed): no score; delete this file to try it again.</summary>
    public string? Error { get; init; }
    public string Backbone { get; init; } = "";
    public string BackboneSha256 { get; init; } = "";
    public int Threads { get; init; }
    public DateTime FinishedUtc { get; init; }
}

public sealed record SweepProgress(int Done, int Total, RunSpec? Current, RunResult? Finished, TimeSpan Elapsed, int RunsThisSession);

public sealed class Sweep(Suite suite, LoadedBackbone backbone, SweepOptions options, string outDir)
{
    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals, // a diverged run's loss is NaN
    };

    public event Action<SweepProgress>? Progress;

    /// <summary>
    /// Runs one spec somewhere else (e.g. a child process, so a native crash costs one run, not the sweep) and returns its
    /// result; null = in this process. The runner need not write the result file: the sweep does.
    /// </summary>
    public Func<RunSpec, RunResult>? Runner { get; init; }
    public event Action<string>? Log;
    public event Action<EpochMetrics>? EpochEnd;

    /// <summary>Whether a method has a grid axis besides lr and weight decay (each method's registry entry says).</summary>
    static bool HasAxis(string method, SweepAxis axis) => MethodRegistry.Resolve(method).Entry.SweepAxes.Contains(axis);

    public static string ResultPath(string outDir, RunSpec s) => Path.Combine(outDir, "runs", s.Task, s.Method, s.Id + ".json");

    /// <summary>Every result file under a sweep folder.</summary>
    public static List<RunResult> LoadResults(string outDir)
    {
        string runs = Path.Combine(outDir, "runs");
        if (!Directory.Exists(runs)) return [];
        return Directory.EnumerateFiles(runs, "*.json", SearchOption.AllDirectories).Order(StringComparer.Ordinal)
            .Select(f => JsonSerializer.Deserialize<RunResult>(File.ReadAllText(f), Json)
                ?? throw new InvalidDataException($"{f}: empty result; delete it to rerun that run"))
            .ToList();
    }

    bool WholeBackbone(string method) => MethodRegistry.FromOptions(method, new MethodOptions()).TrainsWholeBackbone;

    /// <summary>The grid of tuning runs for one task and method.</summary>
    public IEnumerable<RunSpec> TuneRuns(SuiteTask task, string method)
    {
        var lrs = WholeBackbone(method) ? options.WholeBackboneLrs : options.Lrs;
        int?[] prompts = HasAxis(method, SweepAxis.PromptLength) ? options.Prompts.Select(p => (int?)p).ToArray() : [null];
        int?[] reductions = HasAxis(method, SweepAxis.Reduction) ? options.Reductions.Select(r => (int?)r).ToArray() : [null];
        foreach (var lr in lrs)
            foreach (var wd in options.WeightDecays)
                foreach (var p in prompts)
                    foreach (var r in reductions)
                        yield return new RunSpec { Task = task.Name, Group = task.Group, Method = method, Phase = "tune", Lr = lr, WeightDecay = wd, Prompts = p, Reduction = r };
    }

    /// <summary>Best val top-1; ties go to the smaller lr, then smaller weight decay, then fewer prompts / larger reduction.</summary>
    public static RunSpec SelectBest(IEnumerable<RunResult> tuneResults) =>
        tuneResults.OrderByDescending(r => r.ValTop1 ?? double.NegativeInfinity)
            .ThenBy(r => r.Spec.Lr).ThenBy(r => r.Spec.WeightDecay)
            .ThenBy(r => r.Spec.Prompts ?? 0).ThenByDescending(r => r.Spec.Reduction ?? 0)
            .First().Spec;

    /// <summary>Final and curve runs derived from the selected tuning config.</summary>
    public IEnumerable<RunSpec> FinalRuns(RunSpec best)
    {
        var final = best with { Phase = "final" };
        for (int s = 0; s < options.Seeds; s++) yield return final with { Seed = s };
        foreach (var f in options.Fractions.Where(f => f < 1)) yield return final with { Phase = "fraction", Fraction = f };
        if (HasAxis(best.Method, SweepAxis.PromptLength))
            foreach (var p in options.CurvePrompts) yield return final with { Phase = "prompts", Prompts = p };
        if (HasAxis(best.Method, SweepAxis.PromptDepth))
            foreach (var d in options.CurveDepths) yield return final with { Phase = "depth", Depth = d };
    }

    IEnumerable<(SuiteTask Task, string Method)> Pairs()
    {
        (int index, int count) = (0, 1);
        if (options.Shard is string sh)
        {
            var parts = sh.Split('/');
            if (parts.Length != 2 || !int.TryParse(parts[0], out index) || !int.TryParse(parts[1], out count) || count < 1 || index < 0 || index >= count)
                throw new ArgumentException($"--shard {sh}: expected i/n with 0 ≤ i < n, e.g. 0/4");
        }
        foreach (var t in suite.Tasks.Where(t => options.Tasks is null || options.Tasks.Contains(t.Name)))
            foreach (var m in options.Methods)
                if (StableSeed.Of([.. (t.Name + "/" + m).Select(c => (long)c)]) % count == index)
                    yield return (t, m);
    }

    /// <summary>Runs everything not yet done; returns all results of this shard (old and new).</summary>
    public List<RunResult> Run(CancellationToken ct = default)
    {
        foreach (var m in options.Methods) MethodRegistry.FromOptions(m, new MethodOptions()); // unknown names fail before any work
        var pairs = Pairs().ToList();
        // Totals are known up front: every pair has its grid, then seeds and curves.
        int Count(SuiteTask t, string m) => TuneRuns(t, m).Count() + FinalRuns(TuneRuns(t, m).First()).Count();
        int total = pairs.Sum(p => Count(p.Task, p.Method));
        int done = pairs.Sum(p => TuneRuns(p.Task, p.Method).Count(s => File.Exists(ResultPath(outDir, s))));
        var all = new List<RunResult>();
        var clock = Stopwatch.StartNew();
        int session = 0;
        // Only in-process runs need the backbone copy and the opened splits; child processes make their own.
        var snapshot = new Lazy<BackboneSnapshot>(() => new BackboneSnapshot(backbone.Model));
        try
        {
            foreach (var (task, method) in pairs)
            {
                var data = new Lazy<TaskData>(() => new TaskData(suite, task));
                var tune = new List<RunResult>();
                foreach (var spec in TuneRuns(task, method))
                {
                    ct.ThrowIfCancellationRequested();
                    tune.Add(GetOrRun(spec, data, snapshot, ref done, ref session, total, clock, ct));
                }
                all.AddRange(tune);
                var best = SelectBest(tune);
                Log?.Invoke($"{task.Name} / {method}: selected {best.Id} (val top-1 {tune.First(r => r.Spec == best).ValTop1:P2})");
                foreach (var spec in FinalRuns(best))
                {
                    ct.ThrowIfCancellationRequested();
                    if (File.Exists(ResultPath(outDir, spec))) done++;
                    all.Add(GetOrRun(spec, data, snapshot, ref done, ref session, total, clock, ct));
                }
            }
        }
        finally { if (snapshot.IsValueCreated) snapshot.Value.Dispose(); }
        return all;
    }

    /// <summary>The run's stored result, or trains it now. (Existing results were counted in <paramref name="done"/> already.)</summary>
    RunResult GetOrRun(RunSpec spec, Lazy<TaskData> data, Lazy<BackboneSnapshot> snapshot, ref int done, ref int session, int total, Stopwatch clock,
        CancellationToken ct)
    {
        string path = ResultPath(outDir, spec);
        if (File.Exists(path)) return JsonSerializer.Deserialize<RunResult>(File.ReadAllText(path), Json)!;
        Progress?.Invoke(new SweepProgress(done, total, spec, null, clock.Elapsed, session));
        var result = Runner is null ? Execute(spec, data.Value, snapshot.Value, ct) : Runner(spec);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        AtomicFile.WriteAllText(path, JsonSerializer.Serialize(result, Json));
        done++; session++;
        Progress?.Invoke(new SweepProgress(done, total, null, result, clock.Elapsed, session));
        return result;
    }

    /// <summary>One run in this process, on its own (what a child process of a sweep does); returns the result without writing it.</summary>
    public RunResult ExecuteOne(RunSpec spec, CancellationToken ct = default)
    {
        using var snapshot = new BackboneSnapshot(backbone.Model);
        return Execute(spec, new TaskData(suite, suite.Task(spec.Task)), snapshot, ct);
    }

    /// <summary>Trains one run (resuming its checkpoints if a previous process was killed mid-run) and scores it.</summary>
    RunResult Execute(RunSpec spec, TaskData data, BackboneSnapshot snapshot, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var cfg = MethodRegistry.FromOptions(spec.Method, spec.MethodOptions());
        bool tuning = spec.Phase == "tune";
        var train = tuning ? data.Train : data.TrainVal;
        if (spec.Fraction < 1) train = train.SubsampleBalanced(spec.Fraction, spec.Seed);
        var eval = tuning ? data.Val : data.Test;
        var pre = new Preprocessing { ImageSize = backbone.Config.ImageSize, Resize = data.Task.Augment == "crop-flip" ? ResizeMode.CropFlip : ResizeMode.Plain };
        string work = Path.Combine(outDir, "work", spec.Task, spec.Method, spec.Id);
        var opts = new TrainOptions
        {
            Epochs = options.Epochs, WarmupEpochs = Math.Min(options.WarmupEpochs, Math.Max(0, options.Epochs - 1)), BatchSize = options.BatchSize,
            BaseLr = spec.Lr, WeightDecay = spec.WeightDecay, Optimizer = cfg.TrainsWholeBackbone ? OptimizerKind.AdamW : OptimizerKind.Sgd,
            Seed = StableSeed.Of(spec.Seed, 7919), OutDir = work, Resume = true, Workers = options.Workers, Device = options.Device,
        };
        manual_seed(opts.Seed); // prompt and head init
        using var model = PromptedModel.Create(backbone.Model, cfg, data.Classes);
        bool touchesBackbone = model.method.BackboneParametersToTrain(backbone.Model).Any();
        try
        {
            var trainer = new Trainer(opts);
            trainer.EpochEnd += m => EpochEnd?.Invoke(m);
            IReadOnlyList<EpochMetrics> history;
            try { history = trainer.Fit(model, train, null, pre, null, ct).History; }
            catch (TrainingDivergedException e)
            {
                Log?.Invoke($"{spec.Task} / {spec.Method} / {spec.Id} diverged: {e.Message}");
                Directory.Delete(work, recursive: true);
                return new RunResult
                {
                    Spec = spec, Diverged = true, TrainableParams = model.TrainableCount, BackboneParams = backbone.Model.BackboneParameterCount,
                    TrainImages = train.Count, EvalImages = eval.Count, FinalTrainLoss = double.NaN, Seconds = clock.Elapsed.TotalSeconds,
                    Backbone = backbone.Source, BackboneSha256 = backbone.Sha256, Threads = get_num_threads(), FinishedUtc = DateTime.UtcNow,
                };
            }
            var score = Predictor.Evaluate(model, eval, pre, Math.Max(options.BatchSize, 128), options.Device, options.Workers);
            var result = new RunResult
            {
                Spec = spec, ValTop1 = tuning ? score.Top1 : null, TestTop1 = tuning ? null : score.Top1,
                TrainableParams = model.TrainableCount, BackboneParams = backbone.Model.BackboneParameterCount,
                TrainImages = train.Count, EvalImages = eval.Count, FinalTrainLoss = history[^1].TrainLoss,
                Seconds = clock.Elapsed.TotalSeconds, Backbone = backbone.Source, BackboneSha256 = backbone.Sha256,
                Threads = get_num_threads(), FinishedUtc = DateTime.UtcNow,
            };
            Directory.Delete(work, recursive: true); // checkpoints of a finished run are no longer needed
            return result;
        }
        finally
        {
            // Methods that train backbone tensors edit the shared backbone in place: put the pretrained weights back.
            if (touchesBackbone) snapshot.Restore();
        }
    }

    /// <summary>A task's splits, opened once with one class list.</summary>
    sealed class TaskData
    {
        public SuiteTask Task { get; }
        public ImageDataset Train { get; }
        public ImageDataset Val { get; }
        public ImageDataset TrainVal { get; }
        public ImageDataset Test { get; }
        public int Classes => TrainVal.Classes.Count;

        public TaskData(Suite suite, SuiteTask task)
        {
            Task = task;
            TrainVal = DatasetSpec.Open(suite.Resolve(task.TrainVal));
            Train = DatasetSpec.Open(suite.Resolve(task.Train), TrainVal.Classes);
            Val = DatasetSpec.Open(suite.Resolve(task.Val), TrainVal.Classes);
            Test = DatasetSpec.Open(suite.Resolve(task.Test), TrainVal.Classes);
            if (task.Classes > 0 && TrainVal.Classes.Count != task.Classes)
                throw new ArgumentException($"task {task.Name}: {suite.Resolve(task.TrainVal)} has {TrainVal.Classes.Count} classes, the suite says {task.Classes}");
        }
    }
}

/// <summary>A copy of a backbone's tensors, to undo in-place training of shared backbone weights.</summary>
public sealed class BackboneSnapshot : IDisposable
{
    readonly Backbones.VisionTransformer model;
    readonly Dictionary<string, Tensor> saved;

    public BackboneSnapshot(Backbones.VisionTransformer model)
    {
        this.model = model;
        saved = model.BackboneParameters().ToDictionary(p => p.Name, p => p.Param.detach().clone());
    }

    public void Restore()
    {
        using var _ = no_grad();
        foreach (var (name, p) in model.BackboneParameters()) p.copy_(saved[name]);
        model.Freeze();
    }

    public void Dispose() { foreach (var t in saved.Values) t.Dispose(); }
}
