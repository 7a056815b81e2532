using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Data;
using VptSharp.Training;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>`vpt sweep plan` / `vpt sweep run` in the library: stable items, the same results as a local sweep, idempotence, the lock.</summary>
public class ClusterPlanTests
{
    /// <summary>A 2-task suite of synthetic fractal images (built-in data specs, nothing on disk but the suite file).</summary>
    internal static string FractalSuite(string dir)
    {
        Directory.CreateDirectory(dir);
        string path = Path.Combine(dir, "tiny.json");
        new Suite
        {
            Name = "tiny", Root = ".",
            Tasks = [.. new[] { ("a", "Natural", 1), ("b", "Structured", 4) }.Select(t => new SuiteTask
            {
                Name = t.Item1, Group = t.Item2, Classes = 3,
                Train = $"fractal:3:8:{t.Item3}", Val = $"fractal:3:3:{t.Item3 + 1}",
                TrainVal = $"fractal:3:8:{t.Item3}|fractal:3:3:{t.Item3 + 1}", Test = $"fractal:3:5:{t.Item3 + 2}",
            })],
        }.Save(path);
        return path;
    }

    static SweepOptions Options(params string[] tasks) => new()
    {
        Methods = ["linear", "vpt-deep"], Lrs = [1.0, 0.25], Prompts = [2], Epochs = 2, WarmupEpochs = 1, BatchSize = 8, Seeds = 2, Workers = 1,
        Tasks = tasks.Length > 0 ? tasks : null, CurvePrompts = [1],
    };

    static ClusterPlan MakePlan(Suite suite, LoadedBackbone bb, SweepOptions options, string dir) =>
        ClusterPlan.Create(suite, new Sweep(suite, bb, options, dir), options,
            new PlanHeader { SuiteFile = "tiny.json", Backbone = bb.Source, BackboneSha256 = bb.Sha256, Options = options });

    [Fact]
    public void PlanListsTheGridThenTheFinalRunsWithStableIdsAndIndices()
    {
        string dir = TempDir();
        var suite = Suite.Load(FractalSuite(dir));
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2));
        var plan = MakePlan(suite, bb, Options(), Path.Combine(dir, "s"));
        // Per task: linear 2 lrs, vpt-deep 2 lrs × 1 p → 4 grid runs; finals: linear 2 seeds, vpt-deep 2 seeds + 1 prompt-curve run → 5.
        Assert.Equal(8, plan.Grid.Count);
        Assert.Equal(10, plan.Final.Count);
        Assert.Equal("a/vpt-deep/tune_lr0.25_wd0.0001_p2", plan.Grid[3].Id);
        Assert.Equal(["a/vpt-deep/final_s0", "a/vpt-deep/final_s1", "a/vpt-deep/prompts_p1_s0"], plan.Final.Skip(2).Take(3).Select(i => i.Id));
        Assert.Equal(["b/vpt-deep/tune_lr1_wd0.0001_p2", "b/vpt-deep/tune_lr0.25_wd0.0001_p2"], plan.Final[^1].DependsOn);
        Assert.Equal(Enumerable.Range(0, 10), plan.Final.Select(i => i.Index));
        Assert.Equal(18, plan.Grid.Concat(plan.Final).Select(i => i.Id).Distinct().Count());

        // Same options → byte-identical files; they load back to the same items.
        plan.Save(Path.Combine(dir, "p1"));
        MakePlan(suite, bb, Options(), Path.Combine(dir, "s")).Save(Path.Combine(dir, "p2"));
        Assert.Equal(File.ReadAllText(Path.Combine(dir, "p1", "plan.jsonl")), File.ReadAllText(Path.Combine(dir, "p2", "plan.jsonl")));
        var loaded = ClusterPlan.Load(Path.Combine(dir, "p1"));
        Assert.Equal(plan.Final.Select(i => i.Id), loaded.Final.Select(i => i.Id));
        Assert.Equal(plan.Grid[5].Spec, loaded.Grid[5].Spec);

        File.WriteAllText(Path.Combine(dir, "p1", "plan.jsonl"), File.ReadAllText(Path.Combine(dir, "p1", "plan.jsonl")).Replace("\"index\":3,", "\"index\":9,"));
        var e = Assert.Throws<InputFileException>(() => ClusterPlan.Load(Path.Combine(dir, "p1")));
        Assert.Equal(("sweep-plan", Path.Combine(dir, "p1")), (e.Setting, e.Path));
        Assert.Contains("damaged sweep plan", e.Message);
    }

    [Fact]
    public void EveryItemRunAloneGivesTheLocalSweepsResultsAndIsNeverRecomputed()
    {
        string dir = TempDir();
        var suite = Suite.Load(FractalSuite(dir));
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2));
        var options = Options("b");
        var local = new Sweep(suite, bb, options, Path.Combine(dir, "local")).Run().ToDictionary(r => $"{r.Spec.Method}/{r.Spec.Id}");

        string shared = Path.Combine(dir, "shared");
        var plan = MakePlan(suite, bb, options, shared);
        var sweep = new Sweep(suite, bb, options, shared);
        int epochs = 0;
        sweep.EpochEnd += _ => epochs++;
        var runner = new ClusterPlanRunner(plan, sweep, shared);

        // The final stage refuses, naming what is missing, until its grid runs exist.
        var notReady = Assert.Throws<PlanNotReadyException>(() => runner.Run("final", 0));
        Assert.Contains("b/linear/tune_lr1_wd0.0001", notReady.Message);
        Assert.Equal("index", Assert.Throws<InvalidSettingException>(() => runner.Run("grid", plan.Grid.Count)).Setting);

        // Array tasks finish in any order.
        foreach (var i in Enumerable.Range(0, plan.Grid.Count).Reverse()) Assert.False(runner.Run("grid", i).AlreadyDone);
        foreach (var i in Enumerable.Range(0, plan.Final.Count)) Assert.False(runner.Run("final", i).AlreadyDone);
        Assert.Equal(9 * options.Epochs, epochs);
        var cluster = Sweep.LoadResults(shared).ToDictionary(r => $"{r.Spec.Method}/{r.Spec.Id}");
        Assert.Equal(local.Keys.Order(), cluster.Keys.Order());
        foreach (var (id, r) in local)
        {
            Assert.Equal(r.Spec, cluster[id].Spec);
            Assert.Equal((r.ValTop1, r.TestTop1, r.FinalTrainLoss, r.TrainableParams), (cluster[id].ValTop1, cluster[id].TestTop1, cluster[id].FinalTrainLoss, cluster[id].TrainableParams));
        }
        Assert.Contains(cluster.Values, r => r.Spec.Phase == "prompts" && r.Spec.Prompts == 1 && r.TestTop1 is not null);
        var log = File.ReadAllLines(ClusterPlanRunner.LogPath(shared, plan.Grid[0].Spec!));
        Assert.Equal(options.Epochs, log.Count(l => l.Contains(" epoch {")));
        Assert.Contains("done in", log[^1]);

        // Re-run or requeue: read back, nothing trained, nothing rewritten.
        var stamps = Directory.EnumerateFiles(Path.Combine(shared, "runs"), "*.json", SearchOption.AllDirectories).ToDictionary(f => f, File.GetLastWriteTimeUtc);
        Assert.True(runner.Run("final", 3).AlreadyDone);
        Assert.True(runner.Run("grid", 1).AlreadyDone);
        Assert.Equal(9 * options.Epochs, epochs);
        foreach (var (f, t) in stamps) Assert.Equal(t, File.GetLastWriteTimeUtc(f));
    }

    [Fact]
    public async Task SecondCopyOfAnIndexWaitsForTheFirstAndDoesNotTrain()
    {
        string dir = TempDir();
        var suite = Suite.Load(FractalSuite(dir));
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 2));
        var options = Options("a");
        string shared = Path.Combine(dir, "shared");
        var plan = MakePlan(suite, bb, options, shared);
        var sweep = new Sweep(suite, bb, options, shared);
        int epochs = 0;
        sweep.EpochEnd += _ => epochs++;
        var runner = new ClusterPlanRunner(plan, sweep, shared) { LockPoll = TimeSpan.FromMilliseconds(50) };
        var waiting = new TaskCompletionSource();
        runner.Waiting += _ => waiting.TrySetResult();

        // The "first copy" holds the run's lock; the second must wait, then find the first's result.
        var spec = plan.Grid[0].Spec!;
        Directory.CreateDirectory(Path.GetDirectoryName(ClusterPlanRunner.LockPath(shared, spec))!);
        var first = new FileStream(ClusterPlanRunner.LockPath(shared, spec), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        var second = Task.Run(() => runner.Run("grid", 0));
        await waiting.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(second.IsCompleted);
        var finished = new RunResult { Spec = spec, ValTop1 = 0.125, FinishedUtc = DateTime.UtcNow };
        AtomicFile.WriteAllText(Sweep.ResultPath(shared, spec), System.Text.Json.JsonSerializer.Serialize(finished, VptSharp.IO.JsonFormat.Indented));
        first.Dispose();
        var outcome = await second.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(outcome.AlreadyDone);
        Assert.Equal(0.125, outcome.Result.ValTop1);
        Assert.Equal(0, epochs);

        // With the lock free and no result, the run trains.
        Assert.False(runner.Run("grid", 1).AlreadyDone);
        Assert.Equal(options.Epochs, epochs);
    }

    [Fact]
    public void ArrayIndexComesFromSlurmThenKubernetes()
    {
        Assert.Equal(4, ClusterPlan.IndexFromEnvironment(n => n == "SLURM_ARRAY_TASK_ID" ? "4" : n == "JOB_COMPLETION_INDEX" ? "7" : null));
        Assert.Equal(7, ClusterPlan.IndexFromEnvironment(n => n == "JOB_COMPLETION_INDEX" ? "7" : null));
        Assert.Null(ClusterPlan.IndexFromEnvironment(_ => null));
        var e = Assert.Throws<ArgumentException>(() => ClusterPlan.IndexFromEnvironment(n => n == "SLURM_ARRAY_TASK_ID" ? "-1" : null));
        Assert.Contains("SLURM_ARRAY_TASK_ID='-1'", e.Message);
    }
}
