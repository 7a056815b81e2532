using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Data;

namespace VptSharp.Training;

/// <summary>
/// One item of a sweep plan: a run that a scheduler's array task executes by its index within its stage.
/// Grid items carry their <see cref="RunSpec"/>; a final item names a slot of <see cref="Sweep.FinalRuns"/> whose
/// learning rate, weight decay and prompt length are only known once the grid runs it depends on are finished.
/// </summary>
public sealed record PlanItem
{
    /// <summary>"grid" (tuning runs, train → val) or "final" (the selected config on train+val → test; seeds and curves).</summary>
    public required string Stage { get; init; }
    /// <summary>Position within the stage: the array task index (Slurm's SLURM_ARRAY_TASK_ID, Kubernetes' JOB_COMPLETION_INDEX).</summary>
    public required int Index { get; init; }
    /// <summary>Stable name: "task/method/run", e.g. "a/vpt-deep/tune_lr2.5_wd0.0001_p10" or "a/vpt-deep/final_s0".</summary>
    public required string Id { get; init; }
    public required string Task { get; init; }
    public required string Method { get; init; }
    /// <summary>Grid items: the run itself.</summary>
    public RunSpec? Spec { get; init; }
    /// <summary>Final items: position in the final runs derived from the selected grid config.</summary>
    public int? Slot { get; init; }
    /// <summary>Final items: the grid items (ids) whose best val top-1 selects this run's config.</summary>
    public IReadOnlyList<string>? DependsOn { get; init; }
}

/// <summary>What a plan was made from, so every array task runs the same sweep (plan.json beside plan.jsonl).</summary>
public sealed record PlanHeader
{
    public required string SuiteFile { get; init; }
    public string? DataRoot { get; init; }
    /// <summary>The backbone source as given to the loader ("default", a path made absolute, hf:…, random:…).</summary>
    public required string Backbone { get; init; }
    public ArchOverrides Arch { get; init; } = new();
    /// <summary>Every array task checks its backbone against this, so no result is computed on other weights.</summary>
    public required string BackboneSha256 { get; init; }
    public required SweepOptions Options { get; init; }
    /// <summary>Torch threads per run (0 = all cores).</summary>
    public int Threads { get; init; }
    public int GridRuns { get; init; }
    public int FinalRuns { get; init; }
}

/// <summary>The final stage was asked to run before the grid results it selects from exist (try again once they do).</summary>
public sealed class PlanNotReadyException(string message) : VptException(message);

/// <summary>
/// A sweep as a fixed list of independent runs for a cluster scheduler (Slurm job arrays, Kubernetes Indexed Jobs):
/// stage "grid" (every tuning run of every task and method) and stage "final" (per task and method, the seeds and
/// curves of the selected config; each depends on its pair's grid runs). Items are ordered by suite task, then
/// method, then the order <see cref="Sweep"/> itself uses, so the same options always give the same indices and ids.
/// Results land where <c>vpt sweep</c> puts them (runs/task/method/id.json), so <c>vpt report</c> and a local sweep
/// read them as their own.
/// </summary>
public sealed class ClusterPlan
{
    public const string ItemsFile = "plan.jsonl", HeaderFile = "plan.json";
    public static readonly string[] Stages = ["grid", "final"];

    /// <summary>One item per line; absent fields (a grid item's slot, a final item's spec) left out.</summary>
    internal static readonly JsonSerializerOptions Line = new(JsonFormat.Options) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    public required PlanHeader Header { get; init; }
    public required IReadOnlyList<PlanItem> Grid { get; init; }
    public required IReadOnlyList<PlanItem> Final { get; init; }

    public IReadOnlyList<PlanItem> Stage(string stage) => stage switch
    {
        "grid" => Grid,
        "final" => Final,
        _ => throw new InvalidSettingException("stage", stage, "not a stage; the stages are grid and final"),
    };

    /// <summary>The plan of a sweep with these options (the sweep's <c>Shard</c> is ignored: the scheduler spreads the runs).</summary>
    public static ClusterPlan Create(Suite suite, Sweep sweep, SweepOptions options, PlanHeader header)
    {
        foreach (var m in options.Methods) Tuning.MethodRegistry.FromOptions(m, new Tuning.MethodOptions()); // unknown names fail here
        var grid = new List<PlanItem>();
        var final = new List<PlanItem>();
        foreach (var task in suite.Tasks.Where(t => options.Tasks is null || options.Tasks.Contains(t.Name)))
            foreach (var method in options.Methods)
            {
                var tune = sweep.TuneRuns(task, method).ToList();
                var deps = new List<string>();
                foreach (var spec in tune)
                {
                    var item = new PlanItem { Stage = "grid", Index = grid.Count, Id = $"{task.Name}/{method}/{spec.Id}", Task = task.Name, Method = method, Spec = spec };
                    grid.Add(item);
                    deps.Add(item.Id);
                }
                int slot = 0;
                foreach (var template in sweep.FinalRuns(tune[0])) // how many final runs and which: the same for any selected config
                    final.Add(new PlanItem
                    {
                        Stage = "final", Index = final.Count, Id = $"{task.Name}/{method}/{SlotName(template)}", Task = task.Name, Method = method,
                        Slot = slot++, DependsOn = deps,
                    });
            }
        return new ClusterPlan { Header = header with { Options = options with { Shard = null }, GridRuns = grid.Count, FinalRuns = final.Count }, Grid = grid, Final = final };
    }

    /// <summary>A final run's name before its config is selected: phase, curve value, seed.</summary>
    static string SlotName(RunSpec s)
    {
        var c = CultureInfo.InvariantCulture;
        return s.Phase switch
        {
            "fraction" => $"fraction_f{s.Fraction.ToString("G4", c)}_s{s.Seed}",
            "prompts" => $"prompts_p{s.Prompts}_s{s.Seed}",
            "depth" => $"depth_d{s.Depth}_s{s.Seed}",
            _ => $"{s.Phase}_s{s.Seed}",
        };
    }

    /// <summary>Writes plan.json and plan.jsonl (one item per line) atomically.</summary>
    public void Save(string dir)
    {
        AtomicFile.WriteAllText(Path.Combine(dir, HeaderFile), JsonSerializer.Serialize(Header, JsonFormat.Indented));
        AtomicFile.WriteAllText(Path.Combine(dir, ItemsFile), string.Concat(Grid.Concat(Final).Select(i => JsonSerializer.Serialize(i, Line) + "\n")));
    }

    public static ClusterPlan Load(string dir)
    {
        string header = Path.Combine(dir, HeaderFile), items = Path.Combine(dir, ItemsFile);
        if (!File.Exists(header) || !File.Exists(items))
            throw new InputFileException(dir, $"no sweep plan here ({HeaderFile} + {ItemsFile})", "sweep-plan");
        try
        {
            var h = JsonSerializer.Deserialize<PlanHeader>(File.ReadAllText(header), JsonFormat.Options) ?? throw new JsonException("empty");
            var all = File.ReadLines(items).Where(l => l.Length > 0).Select(l => JsonSerializer.Deserialize<PlanItem>(l, JsonFormat.Options)!).ToList();
            var plan = new ClusterPlan { Header = h, Grid = all.Where(i => i.Stage == "grid").ToList(), Final = all.Where(i => i.Stage == "final").ToList() };
            if (plan.Grid.Any(i => i.Spec is null) || plan.Final.Any(i => i.Slot is null || i.DependsOn is null))
                throw new JsonException("a grid item lacks its spec, or a final item its slot or depends_on");
            foreach (var stage in Stages)
                if (plan.Stage(stage).Select((item, i) => item.Index == i).Any(ok => !ok) || plan.Stage(stage).Count != (stage == "grid" ? h.GridRuns : h.FinalRuns))
                    throw new JsonException($"the {stage} items are not numbered 0..{(stage == "grid" ? h.GridRuns : h.FinalRuns) - 1}");
            return plan;
        }
        catch (JsonException e) { throw new InputFileException(dir, $"damaged sweep plan ({e.Message})", "sweep-plan", e); }
    }

    /// <summary>
    /// The array index the scheduler gave this process: SLURM_ARRAY_TASK_ID (Slurm job arrays), else
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs); null when neither is set.
    /// </summary>
    public static int? IndexFromEnvironment(Func<string, string?>? getenv = null)
    {
        getenv ??= Environment.GetEnvironmentVariable;
        foreach (var name in new[] { "SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX" })
            if (getenv(name) is { Length: > 0 } v)
                return int.TryParse(v, NumberStyles.None, CultureInfo.InvariantCulture, out int i)
                    ? i : throw new ArgumentException($"environment variable {name}='{v}' is not an array index (a non-negative integer)");
        return null;
    }
}

/// <summary>How one plan item ended in this process.</summary>
public sealed record PlanRunOutcome(PlanItem Item, RunSpec Spec, string ResultPath, bool AlreadyDone, RunResult Result);

/// <summary>
/// Runs single plan items with <see cref="Sweep.ExecuteOne"/>, idempotently on a shared folder: a finished result is
/// read back, never recomputed; a lock file (an exclusive advisory lock, released by the OS when its process dies)
/// keeps two copies of one index — a requeue racing a dying task — from training and writing at once; results are
/// written atomically; a killed run resumes from its epoch checkpoint; every attempt appends to logs/task/method/id.log.
/// </summary>
public sealed class ClusterPlanRunner(ClusterPlan plan, Sweep sweep, string outDir)
{
    /// <summary>How long to sleep between attempts to take a lock held by another copy.</summary>
    public TimeSpan LockPoll { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Told once when this process waits for another copy of the same run.</summary>
    public event Action<string>? Waiting;

    public static string LogPath(string outDir, RunSpec s) => Path.Combine(outDir, "logs", s.Task, s.Method, s.Id + ".log");
    public static string LockPath(string outDir, RunSpec s) => Path.Combine(outDir, "locks", s.Task, s.Method, s.Id + ".lock");

    /// <summary>The run an item stands for. For a final item: the selection from its grid results, which must all exist.</summary>
    public RunSpec Resolve(PlanItem item)
    {
        if (item.Spec is RunSpec spec) return spec;
        var deps = plan.Grid.Where(g => item.DependsOn!.Contains(g.Id)).ToList();
        var missing = deps.Where(g => !File.Exists(Sweep.ResultPath(outDir, g.Spec!))).ToList();
        if (missing.Count > 0 || deps.Count != item.DependsOn!.Count)
            throw new PlanNotReadyException($"final item {item.Index} ({item.Id}) selects from {item.DependsOn!.Count} grid runs of {item.Task}/{item.Method}; " +
                $"{missing.Count} not finished (first: grid item {missing.FirstOrDefault()?.Index} {missing.FirstOrDefault()?.Id}): finish the grid stage first");
        var best = Sweep.SelectBest(deps.Select(g => Read(Sweep.ResultPath(outDir, g.Spec!))));
        return sweep.FinalRuns(best).ElementAtOrDefault(item.Slot!.Value)
            ?? throw new InputFileException(item.Id, $"final slot {item.Slot} does not exist for the plan's sweep options (the plan was edited or is damaged)", "sweep-plan");
    }

    /// <summary>Runs (or reads back) the item with this index in this stage.</summary>
    public PlanRunOutcome Run(string stage, int index, CancellationToken ct = default)
    {
        var items = plan.Stage(stage);
        if (index < 0 || index >= items.Count)
            throw new InvalidSettingException("index", index, $"outside the {stage} stage of the plan in {outDir} (items 0..{items.Count - 1})");
        var item = items[index];
        var spec = Resolve(item);
        string result = Sweep.ResultPath(outDir, spec);
        if (File.Exists(result)) return new PlanRunOutcome(item, spec, result, true, Read(result));
        using var held = Lock(LockPath(outDir, spec), ct);
        if (File.Exists(result)) return new PlanRunOutcome(item, spec, result, true, Read(result)); // the other copy finished it

        string logPath = LogPath(outDir, spec);
        Directory.CreateDirectory(Path.GetDirectoryName(logPath)!);
        using var log = new StreamWriter(new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        void Line(string text) => log.WriteLine($"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {text}");
        Line($"start {stage} item {index} {item.Id} → {spec.Id} on {Environment.MachineName} pid {Environment.ProcessId}" +
             (Environment.GetEnvironmentVariable("SLURM_JOB_ID") is string job ? $" slurm job {job}" : ""));
        Action<EpochMetrics> epoch = m => Line("epoch " + JsonSerializer.Serialize(m, ClusterPlan.Line));
        Action<string> message = m => Line(m);
        sweep.EpochEnd += epoch;
        sweep.Log += message;
        try
        {
            var r = sweep.ExecuteOne(spec, ct);
            Directory.CreateDirectory(Path.GetDirectoryName(result)!);
            AtomicFile.WriteAllText(result, JsonSerializer.Serialize(r, JsonFormat.Indented));
            Line($"done in {r.Seconds:F1}s: " + (r.Diverged ? "diverged" : r.ValTop1 is double v ? $"val top-1 {v:F4}" : $"test top-1 {r.TestTop1:F4}"));
            return new PlanRunOutcome(item, spec, result, false, r);
        }
        catch (Exception e)
        {
            Line($"failed: {e.GetType().Name}: {e.Message}");
            throw;
        }
        finally
        {
            sweep.EpochEnd -= epoch;
            sweep.Log -= message;
        }
    }

    static RunResult Read(string path) => JsonSerializer.Deserialize<RunResult>(File.ReadAllText(path), JsonFormat.Indented)
        ?? throw new InputFileException(path, "empty result; delete it to rerun that run");

    /// <summary>Takes the run's exclusive lock, waiting while another process holds it.</summary>
    FileStream Lock(string path, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        bool told = false;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            // FileShare.None takes an exclusive flock() on Unix; it is released when the holder exits or is killed.
            try { return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None); }
            catch (IOException) when (File.Exists(path))
            {
                if (!told) { Waiting?.Invoke($"another process is running this run (lock {path}); waiting for it"); told = true; }
                Thread.Sleep(LockPoll);
            }
        }
    }
}
