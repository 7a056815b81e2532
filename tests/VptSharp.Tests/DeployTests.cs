using System.Diagnostics;
using System.Runtime.InteropServices;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Tuning;
using YamlDotNet.RepresentationModel;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// deploy/k8s: the manifests parse, agree with themselves (labels, ports, probes, grace period), and their container
/// commands do what they claim when run here with the volume mapped to a temp dir and the index variable set.
/// </summary>
public class DeployTests
{
    static string RepoFile(string relative)
    {
        for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
            if (File.Exists(Path.Combine(d.FullName, relative))) return Path.Combine(d.FullName, relative);
        throw new FileNotFoundException($"{relative} not found above {AppContext.BaseDirectory}");
    }

    static List<YamlMappingNode> Documents(string relative)
    {
        var stream = new YamlStream();
        using (var reader = new StreamReader(RepoFile(relative))) stream.Load(reader);
        return stream.Documents.Select(d => (YamlMappingNode)d.RootNode).ToList();
    }

    static YamlNode At(YamlNode node, params object[] path)
    {
        foreach (var step in path)
            node = step is int i ? ((YamlSequenceNode)node).Children[i] : ((YamlMappingNode)node).Children[new YamlScalarNode((string)step)];
        return node;
    }

    static string Text(YamlNode node, params object[] path) => ((YamlScalarNode)At(node, path)).Value!;
    static List<string> Strings(YamlNode node, params object[] path) => ((YamlSequenceNode)At(node, path)).Children.Select(c => ((YamlScalarNode)c).Value!).ToList();

    /// <summary>The container's command with "vpt" → this build's CLI and the volume's mount path → <paramref name="mounted"/>.</summary>
    static ProcessStartInfo Local(List<string> command, string mountPath, string mounted, params (string, string)[] env)
    {
        Assert.Equal("vpt", command[0]);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(CliDll);
        foreach (var a in command.Skip(1)) psi.ArgumentList.Add(a.StartsWith(mountPath + "/") ? mounted + a[mountPath.Length..] : a);
        psi.Environment.Remove("SLURM_ARRAY_TASK_ID");
        foreach (var (k, v) in env) psi.Environment[k] = v;
        return psi;
    }

    static CliResult Run(ProcessStartInfo psi)
    {
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(true); throw new TimeoutException(string.Join(' ', psi.ArgumentList)); }
        return new CliResult(p.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void SweepIndexedJobsRunTheirItemsLocallyWithJobCompletionIndex()
    {
        string dir = TempDir();
        string shared = Directory.CreateDirectory(Path.Combine(dir, "shared")).FullName;
        string suite = ClusterPlanTests.FractalSuite(Path.Combine(shared, "suite"));
        string backbone = SaveTinyBackbone(shared, seed: 5);
        var plan = RunCli("sweep", "plan", "--suite", suite, "--backbone", backbone, "--methods", "linear", "--lrs", "1,0.25", "--tasks", "a",
            "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "8", "--seeds", "1", "--workers", "1", "--threads", "1", "--out", Path.Combine(shared, "sweep"));
        Assert.True(plan.ExitCode == 0, plan.Stderr);
        Assert.Contains("grid: 2 runs", plan.Stdout);

        var jobs = new[] { "grid", "final" }.ToDictionary(s => s, s => Documents($"deploy/k8s/sweep-{s}-job.yaml").Single());
        foreach (var (stage, job) in jobs)
        {
            Assert.Equal(("batch/v1", "Job", "Indexed"), (Text(job, "apiVersion"), Text(job, "kind"), Text(job, "spec", "completionMode")));
            Assert.Equal("Never", Text(job, "spec", "template", "spec", "restartPolicy"));
            var command = Strings(job, "spec", "template", "spec", "containers", 0, "command");
            Assert.Equal(["vpt", "sweep", "run"], command.Take(3));
            Assert.Equal(stage, command[command.IndexOf("--stage") + 1]);
            Assert.DoesNotContain("--index", command); // the index comes from JOB_COMPLETION_INDEX
            string mount = Text(job, "spec", "template", "spec", "containers", 0, "volumeMounts", 0, "mountPath");
            Assert.StartsWith(mount + "/", command[command.IndexOf("--out") + 1]);
            Assert.True(int.Parse(Text(job, "spec", "completions")) >= 1);
        }

        string Mount(string stage) => Text(jobs[stage], "spec", "template", "spec", "containers", 0, "volumeMounts", 0, "mountPath");
        ProcessStartInfo Pod(string stage, int index) =>
            Local(Strings(jobs[stage], "spec", "template", "spec", "containers", 0, "command"), Mount(stage), shared, ("JOB_COMPLETION_INDEX", index.ToString()));

        var grid1 = Run(Pod("grid", 1));
        Assert.True(grid1.ExitCode == 0, grid1.Stderr);
        Assert.Contains("a/linear/tune_lr0.25_wd0.0001", grid1.Stdout);
        Assert.True(File.Exists(Path.Combine(shared, "sweep", "runs", "a", "linear", "tune_lr0.25_wd0.0001.json")));

        // The final pod before the grid is complete: one line naming the missing run, non-zero exit, nothing written.
        var early = Run(Pod("final", 0));
        Assert.Equal(1, early.ExitCode);
        Assert.Single(early.Stderr.Trim().Split('\n'));
        Assert.Contains("a/linear/tune_lr1_wd0.0001", early.Stderr);
        Assert.False(Directory.EnumerateFiles(Path.Combine(shared, "sweep", "runs"), "final_*", SearchOption.AllDirectories).Any());

        Assert.Equal(0, Run(Pod("grid", 0)).ExitCode);
        var final = Run(Pod("final", 0));
        Assert.True(final.ExitCode == 0, final.Stderr);
        Assert.Single(Directory.EnumerateFiles(Path.Combine(shared, "sweep", "runs"), "final_*_s0.json", SearchOption.AllDirectories));
        var again = Run(Pod("grid", 1)); // a retried pod of a finished index
        Assert.Contains("already done", again.Stdout);
    }

    [DllImport("libc.so.6", SetLastError = true)] static extern int kill(int pid, int sig);

    [Fact]
    public async Task ServeDeploymentProbesAndDrainWorkWithItsOwnCommand()
    {
        var docs = Documents("deploy/k8s/serve.yaml");
        var deployment = docs.Single(d => Text(d, "kind") == "Deployment");
        var service = docs.Single(d => Text(d, "kind") == "Service");
        var pod = At(deployment, "spec", "template");
        var container = At(pod, "spec", "containers", 0);
        var command = Strings(container, "command");
        Assert.Equal(["vpt", "serve"], command.Take(2));
        string Arg(string name) => command[command.IndexOf(name) + 1];

        // The Service reaches the pods: its selector is in the pod labels and its target port is the container's port.
        foreach (var (k, v) in ((YamlMappingNode)At(service, "spec", "selector")).Children)
            Assert.Equal(((YamlScalarNode)v).Value, Text(pod, "metadata", "labels", ((YamlScalarNode)k).Value!));
        Assert.Equal(Text(service, "spec", "ports", 0, "targetPort"), Text(container, "ports", 0, "name"));
        Assert.Equal(Arg("--port"), Text(container, "ports", 0, "containerPort"));
        Assert.Equal(("/readyz", "/healthz"), (Text(container, "readinessProbe", "httpGet", "path"), Text(container, "livenessProbe", "httpGet", "path")));
        double drain = double.Parse(Arg("--drain-seconds")), shutdown = double.Parse(Arg("--shutdown-timeout-seconds"));
        int grace = int.Parse(Text(pod, "spec", "terminationGracePeriodSeconds"));
        Assert.True(drain > 0 && drain + shutdown < grace, $"drain {drain} s + shutdown {shutdown} s must fit in the {grace} s grace period");

        // The same command here: the tasks folder mounted from a temp dir, loopback and any free port.
        string dir = TempDir();
        string mount = Text(container, "volumeMounts", 0, "mountPath");
        Assert.StartsWith(mount + "/", Arg("--tasks"));
        string tasks = Directory.CreateDirectory(dir + Arg("--tasks")[mount.Length..]).FullName; // empty at start
        var local = command.Select((a, i) => i > 0 && command[i - 1] == "--host" ? "127.0.0.1" : i > 0 && command[i - 1] == "--port" ? "0" : a).ToList();
        var psi = Local(local, mount, dir);
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        Uri? url = null;
        var lines = new List<string>();
        while (url is null && p.StandardOutput.ReadLine() is string line)
        {
            lines.Add(line);
            if (line.StartsWith("serving") && line.IndexOf("http://", StringComparison.Ordinal) is int at and >= 0) url = new Uri(line[at..].Split(' ')[0].TrimEnd(',') + "/");
        }
        if (url is null) Assert.Fail("vpt serve did not start: " + string.Join('\n', lines) + await stderr);
        var rest = p.StandardOutput.ReadToEndAsync();
        try
        {
            using var http = new HttpClient { BaseAddress = url };
            string readiness = Text(container, "readinessProbe", "httpGet", "path");
            var ready = await http.GetAsync(readiness);
            Assert.Equal(503, (int)ready.StatusCode); // no task loaded yet: not ready
            Assert.Contains("no tasks loaded", await ready.Content.ReadAsStringAsync());
            using (var bb = BackboneLoader.Load(Arg("--backbone")))
            {
                manual_seed(1);
                var model = PromptedModel.Create(bb.Model, new LinearProbeConfig(), 3);
                TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["a", "b", "c"], new Preprocessing { ImageSize = bb.Config.ImageSize })
                    .Save(Path.Combine(tasks, "probe.vpt"));
            }
            for (int i = 0; i < 100 && (int)ready.StatusCode != 200; i++) // the shared folder is rescanned every 2 s
            {
                await Task.Delay(200);
                ready = await http.GetAsync(readiness);
            }
            Assert.Equal(200, (int)ready.StatusCode);
            Assert.Contains("\"tasks\":1", await ready.Content.ReadAsStringAsync());
            Assert.Equal(200, (int)(await http.GetAsync(Text(container, "livenessProbe", "httpGet", "path"))).StatusCode);

            // What the kubelet does at termination: SIGTERM, then SIGKILL after the grace period.
            var clock = Stopwatch.StartNew();
            Assert.Equal(0, kill(p.Id, 15));
            var draining = await http.GetAsync("readyz");
            for (int i = 0; i < 20 && (int)draining.StatusCode == 200; i++) // the signal is handled on another thread
            {
                await Task.Delay(50);
                draining = await http.GetAsync("readyz");
            }
            Assert.Equal(503, (int)draining.StatusCode);
            Assert.Equal(200, (int)(await http.GetAsync("healthz")).StatusCode); // alive while draining: no restart
            Assert.True(p.WaitForExit(TimeSpan.FromSeconds(grace)), $"still running {grace} s after SIGTERM");
            Assert.Equal(0, p.ExitCode);
            Assert.InRange(clock.Elapsed.TotalSeconds, drain - 0.5, grace);
            Assert.Contains("draining", await rest);
        }
        finally { if (!p.HasExited) p.Kill(true); }
    }
}
