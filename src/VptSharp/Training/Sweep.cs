using System.Diagnostics;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;

namespace VptSharp.Training;

public sealed record SweepProgress(int Done, int Total, RunSpec? Current, RunResult? Finished, TimeSpan Elapsed, int RunsThisSession);

/// <summary>
/// The paper's protocol (§4.1, appendix A) over a suite: per task and method, a grid over lr × weight decay
/// (× prompt length for VPT, × reduction for adapters) trained on the tuning split and scored on val; the best val
/// top-1 (ties → smaller lr, then smaller weight decay, then fewer parameters) is then trained on train+val with
/// several seeds and scored on test. Optional curves (data fraction, prompt length, prompt depth) reuse the
/// selected config.
/// The plan (SweepPlan.cs), the execution of one run
/// (SweepExecution.cs) and the result files (SweepResults.cs) are parts of this class; this file is the loop.
/// </summary>
public sealed partial class Sweep(Suite suite, LoadedBackbone backbone, SweepOptions options, string outDir)
{
    public event Action<SweepProgress>? Progress;

    /// <summary>
    /// Runs one spec somewhere else (e.g. a child process, so a native crash costs one run, not the sweep) and returns its
    /// result; null = in this process. The runner need not write the result file: the sweep does.
    /// </summary>
    public Func<RunSpec, RunResult>? Runner { get; init; }
    public event Action<string>? Log;
    public event Action<EpochMetrics>? EpochEnd;

    /// <summary>Runs everything not yet done; returns all results of this shard (old and new).</summary>
    public List<RunResult> Run(CancellationToken ct = default)
    {
        foreach (var m in options.Methods) MethodRegistry.FromOptions(m, new MethodOptions()); // unknown names fail before any work
        CheckFolderBackbone();
        var pairs = Pairs().ToList();
        // Totals are known up front: every pair has its grid, then seeds and curves.
        int Count(SuiteTask t, string m) => TuneRuns(t, m).Count() + FinalRuns(TuneRuns(t, m).First()).Count()
            + CurveDepths(m).Sum(d => DepthTuneRuns(TuneRuns(t, m).First(), d).Count() + 1);
        int total = pairs.Sum(p => Count(p.Task, p.Method));
        int done = pairs.Sum(p => TuneRuns(p.Task, p.Method).Count(s => File.Exists(ResultPath(outDir, s))));
        var all = new List<RunResult>();
        var clock = Stopwatch.StartNew();
        int session = 0;
        // Only in-process runs need the backbone copy and the opened splits; child processes make their own.
        var snapshot = new Lazy<BackboneSnapshot>(() => new BackboneSnapshot(backbone.Model));
        Lazy<TaskData>? data = null;
        SuiteTask? dataTask = null;
        try
        {
            foreach (var (task, method) in pairs)
            {
                if (dataTask != task) // pairs come task by task: a task's splits and features serve all its methods
                {
                    if (data?.IsValueCreated == true) data.Value.Dispose();
                    data = new Lazy<TaskData>(() => new TaskData(suite, task, FeatureFolder, backbone.Sha256));
                    dataTask = task;
                }
                var taskData = data!;
                var tune = new List<RunResult>();
                foreach (var spec in TuneRuns(task, method))
                {
                    ct.ThrowIfCancellationRequested();
                    tune.Add(GetOrRun(spec, taskData, snapshot, ref done, ref session, total, clock, ct));
                }
                all.AddRange(tune);
                var best = SelectBest(tune);
                Log?.Invoke($"{task.Name} / {method}: selected {best.Id} (val top-1 {tune.First(r => r.Spec == best).ValTop1:P2})");
                foreach (var spec in FinalRuns(best))
                {
                    ct.ThrowIfCancellationRequested();
                    if (File.Exists(ResultPath(outDir, spec))) done++;
                    all.Add(GetOrRun(spec, taskData, snapshot, ref done, ref session, total, clock, ct));
                }
                foreach (var depth in CurveDepths(method))
                {
                    var depthTune = new List<RunResult>();
                    foreach (var spec in DepthTuneRuns(best, depth).Append(null))
                    {
                        ct.ThrowIfCancellationRequested();
                        var s = spec ?? DepthFinal(best, depth, depthTune);
                        if (File.Exists(ResultPath(outDir, s))) done++;
                        var r = GetOrRun(s, taskData, snapshot, ref done, ref session, total, clock, ct);
                        if (spec is not null) depthTune.Add(r);
                        all.Add(r);
                    }
                }
            }
        }
        finally
        {
            if (snapshot.IsValueCreated) snapshot.Value.Dispose();
            if (data?.IsValueCreated == true) data.Value.Dispose();
        }
        return all;
    }

    /// <summary>The run's stored result, or trains it now. (Existing results were counted in <paramref name="done"/> already.)</summary>
    RunResult GetOrRun(RunSpec spec, Lazy<TaskData> data, Lazy<BackboneSnapshot> snapshot, ref int done, ref int session, int total, Stopwatch clock,
        CancellationToken ct)
    {
        string path = ResultPath(outDir, spec);
        if (File.Exists(path)) return ReadResult(path);
        Progress?.Invoke(new SweepProgress(done, total, spec, null, clock.Elapsed, session));
        var result = Runner is null ? Execute(spec, data.Value, snapshot.Value, ct) : Runner(spec);
        WriteResult(path, result);
        done++; session++;
        Progress?.Invoke(new SweepProgress(done, total, null, result, clock.Elapsed, session));
        return result;
    }
}
