using System.CommandLine;
using Spectre.Console;
using VptSharp.Data;
using VptSharp.Training;

namespace VptSharp.Cli;

/// <summary>
/// `vpt sweep plan` and `vpt sweep run`: a sweep as two stages of independent runs for a cluster scheduler's job
/// arrays (Slurm `sbatch --array`, Kubernetes Indexed Jobs), on a shared folder. No scheduler of our own.
/// </summary>
internal static partial class ProtocolCommands
{
    static Command PlanCommand()
    {
        var backbone = Common.Backbone();
        var c = new Command("plan", "write the sweep as a run list for job arrays: OUT/plan.jsonl (grid stage, then final stage) + OUT/plan.json");
        Common.AddBackboneOptions(c, backbone);
        foreach (var o in new Option[] { SuiteOpt, DataRoot, MethodsOpt, TasksOpt, Lrs, FullLrs, Wds, PromptsOpt, PadPixelsOpt, Reductions, Epochs, Warmup, SweepBatch,
                     Seeds, Fractions, CurvePrompts, CurveDepths, Shard, Out, Workers, Common.Threads, Common.Device })
            c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            if (r.GetValue(Shard) is not null) throw new ArgumentException("--shard: a plan lists the whole sweep; the scheduler's array spreads its runs");
            string suiteFile = Path.GetFullPath(r.GetValue(SuiteOpt)!);
            string? dataRoot = r.GetValue(DataRoot) is string dr ? Path.GetFullPath(dr) : null;
            var suite = Suite.Load(suiteFile, dataRoot);
            var options = ReadOptions(r, suite);
            string source = r.GetValue(backbone)!;
            if (File.Exists(source) || Directory.Exists(source)) source = Path.GetFullPath(source); // array tasks may start elsewhere
            var arch = Common.ArchFrom(r);
            using var bb = Common.LoadBackbone(source, arch);
            string outDir = r.GetValue(Out)!;
            Directory.CreateDirectory(outDir);
            var header = new PlanHeader
            {
                SuiteFile = suiteFile, DataRoot = dataRoot, Backbone = source, Arch = arch, BackboneSha256 = bb.Sha256, Options = options,
                Threads = r.GetValue(Common.Threads),
            };
            var plan = ClusterPlan.Create(suite, new Sweep(suite, bb, options, outDir), options, header);
            plan.Save(outDir);
            string items = Path.Combine(outDir, ClusterPlan.ItemsFile);
            Console.WriteLine($"grid: {plan.Grid.Count} runs (array indices 0-{plan.Grid.Count - 1}); final: {plan.Final.Count} runs (0-{plan.Final.Count - 1}), after the grid; plan in {items}");
            Console.WriteLine($"run one: vpt sweep run --out {outDir} --stage grid --index 0   (the index defaults to SLURM_ARRAY_TASK_ID or JOB_COMPLETION_INDEX)");
            return 0;
        }));
        return c;
    }

    static Command RunCommand()
    {
        var outDir = new Option<string>("--out", "-o") { Description = "sweep folder holding plan.json + plan.jsonl (made by vpt sweep plan); shared by every array task", Required = true };
        var stage = new Option<string>("--stage") { Description = "grid or final (final selects each config from the finished grid results)", Required = true };
        stage.AcceptOnlyFromAmong(ClusterPlan.Stages);
        var index = new Option<int?>("--index") { Description = "item within the stage (default: SLURM_ARRAY_TASK_ID, else JOB_COMPLETION_INDEX)" };
        var threads = new Option<int?>("--threads") { Description = "torch threads (default: the plan's; 0 = all cores)" };
        var c = new Command("run", "run one item of a sweep plan (a job-array task); a finished result is never recomputed; safe to re-run or requeue");
        foreach (var o in new Option[] { outDir, stage, index, threads }) c.Options.Add(o);
        c.SetAction(r => Common.Run(() =>
        {
            string dir = r.GetValue(outDir)!;
            var plan = ClusterPlan.Load(dir);
            var h = plan.Header;
            int i = r.GetValue(index) ?? ClusterPlan.IndexFromEnvironment()
                ?? throw new ArgumentException("no --index, and neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set; pass --index I");
            int t = r.GetValue(threads) ?? h.Threads;
            if (t > 0) TorchSharp.torch.set_num_threads(t);
            var suite = Suite.Load(h.SuiteFile, h.DataRoot);
            string st = r.GetValue(stage)!;
            if (i < 0 || i >= plan.Stage(st).Count) // before loading the backbone: a wrong array range fails fast
                throw new ArgumentException($"--index {i}: the {st} stage of {Path.Combine(dir, ClusterPlan.ItemsFile)} has items 0..{plan.Stage(st).Count - 1}");
            using var bb = Common.LoadBackbone(h.Backbone, h.Arch);
            if (bb.Sha256 != h.BackboneSha256)
                throw new ArgumentException($"{h.Backbone}: sha256 {bb.Sha256[..12]}… differs from {h.BackboneSha256[..12]}… recorded in {Path.Combine(dir, ClusterPlan.HeaderFile)}; restore that backbone or plan again");
            var runner = new ClusterPlanRunner(plan, new Sweep(suite, bb, h.Options, dir), dir);
            runner.Waiting += m => Console.Error.WriteLine(m);
            var o = runner.Run(st, i);
            var res = o.Result;
            string score = res.Error is not null ? $"failed: {res.Error}" : res.Diverged ? "diverged" : res.ValTop1 is double v ? $"val {Common.Percent(v)}" : $"test {Common.Percent(res.TestTop1!.Value)}";
            Console.WriteLine(o.AlreadyDone ? $"{st} {i}: {o.Item.Id} → {o.Spec.Id} already done ({score}); nothing recomputed: {o.ResultPath}"
                                            : $"{st} {i}: {o.Item.Id} → {o.Spec.Id} {score} in {res.Seconds:F1}s → {o.ResultPath}");
            return 0;
        }));
        return c;
    }
}
