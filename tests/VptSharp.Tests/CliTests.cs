using System.Text.Json;
using TorchSharp;
using VptSharp.IO;
using VptSharp.Checkpoints;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>The real `vpt` program, run as a user runs it.</summary>
public class CliTests
{
    [Fact]
    public void TrainEvalPredictInfoEndToEnd()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 12);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string run = Path.Combine(dir, "run");

        var train = RunCli("train", "--backbone", bb, "--data", data, "--val-fraction", "0.25", "--method", "vpt-deep", "--prompts", "2",
            "--epochs", "3", "--warmup-epochs", "1", "--batch-size", "8", "--lr", "2", "--out", run);
        Assert.True(train.ExitCode == 0, train.Stderr + train.Stdout);
        string task = Path.Combine(run, "task.vpt");
        Assert.True(File.Exists(task));
        Assert.Equal(3, File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Length);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(run, "tensorboard")));

        string json = Path.Combine(dir, "eval.json");
        var eval = RunCli("eval", "--task", task, "--data", data, "--json", json, "--precision", "fp32");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        Assert.Equal(36, doc.RootElement.GetProperty("count").GetInt32());
        double top1 = doc.RootElement.GetProperty("top1").GetDouble();
        Assert.True(top1 > 0.5, $"top-1 {top1:P1} on three colour classes (chance 33%)"); // seeded, so deterministic
        Assert.Contains("top-1", eval.Stdout);

        string img = Path.Combine(data, "class2", "000.png");
        var predict = RunCli("predict", "--task", task, "--top-k", "2", img);
        Assert.True(predict.ExitCode == 0, predict.Stderr);
        using var pred = JsonDocument.Parse(predict.Stdout);
        var top = pred.RootElement[0].GetProperty("top");
        Assert.Equal(2, top.GetArrayLength());
        Assert.StartsWith("class", top[0].GetProperty("label").GetString());
        Assert.True(top[0].GetProperty("probability").GetDouble() >= top[1].GetProperty("probability").GetDouble());

        // bf16 backbone through the multi-task engine: same task, same data, a real accuracy (close to fp32's).
        string jsonBf16 = Path.Combine(dir, "eval-bf16.json");
        var evalBf16 = RunCli("eval", "--task", task, "--data", data, "--json", jsonBf16, "--bf16");
        Assert.True(evalBf16.ExitCode == 0, evalBf16.Stderr);
        using (var bf = JsonDocument.Parse(File.ReadAllText(jsonBf16)))
        {
            Assert.Contains("bf16", bf.RootElement.GetProperty("method").GetString());
            Assert.InRange(bf.RootElement.GetProperty("top1").GetDouble(), top1 - 0.1, top1 + 0.1); // 36 images: within 3 answers
        }

        var info = RunCli("info", task);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("vpt-deep", info.Stdout);
        Assert.Contains($"{2 * 2 * 32:N0} method", info.Stdout); // L·p·d = 2·2·32 prompt parameters
    }

    [Fact]
    public void AblationFlagsAndMethodDefaultsReachTheTaskFile()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 6);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string[] common = ["train", "--backbone", bb, "--data", data, "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "6"];

        // cls-prototype: p becomes the number of classes, and the prompts start as the class means.
        string proto = Path.Combine(dir, "proto");
        var r = RunCli([.. common, "--method", "vpt-deep", "--prompt-init", "cls-prototype", "--out", proto]);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("class prototypes", r.Stdout);
        var art = VptSharp.Tuning.TaskArtifact.Load(Path.Combine(proto, "task.vpt"));
        Assert.Equal(new long[] { 2, 3, 32 }, art.Tensors["method.prompts"].shape);
        Assert.Contains("cls-prototype", art.Metadata.MethodConfig.ToJsonString());

        string pixel = Path.Combine(dir, "pixel");
        r = RunCli([.. common, "--method", "vpt-shallow", "--prompt-location", "prepend-pixel", "--prompts", "2", "--out", pixel]);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Equal(new long[] { 2, 3, 8, 8 }, VptSharp.Tuning.TaskArtifact.Load(Path.Combine(pixel, "task.vpt")).Tensors["method.pixels"].shape);

        // full: AdamW with its own lr by default; its task file is a whole model, and info says so.
        string full = Path.Combine(dir, "full");
        r = RunCli([.. common, "--method", "full", "--out", full]);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        Assert.Contains("AdamW", r.Stdout);
        Assert.Contains("base 0.001", r.Stdout);
        var info = RunCli("info", Path.Combine(full, "task.vpt"));
        Assert.Contains("whole model", info.Stdout);

        var bad = RunCli([.. common, "--method", "vpt-deep", "--prompt-location", "concat-channel", "--out", Path.Combine(dir, "bad")]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("--prompt-location concat-channel: prompts the input only, so it needs method vpt-shallow", bad.Stderr); // the location asked for
    }

    /// <summary>`vpt methods` lists every registered method, and the flags that set a method's own settings.</summary>
    [Fact]
    public void MethodsListsEachMethodAndItsFlags()
    {
        var r = RunCli("methods");
        Assert.True(r.ExitCode == 0, r.Stderr);
        Assert.All(VptSharp.Tuning.MethodRegistry.All, m => Assert.Contains($"│ {m.Name} ", r.Stdout));
        Assert.Contains("--side-width", r.Stdout);
        Assert.Contains("--adapter-init", r.Stdout);
    }

    /// <summary>`--prefix-form` and `--bf16` reach the model: the task file records the prefix form and holds float32
    /// tensors after a bf16 run; inexact or backbone-training combinations stop with one line naming the fix.</summary>
    [Fact]
    public void PrefixFormAndBf16FlagsTrainOrRefuseClearly()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 6);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string[] common = ["train", "--backbone", bb, "--data", data, "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "6", "--prompts", "2"];
        string run = Path.Combine(dir, "prefix-bf16");
        var r = RunCli([.. common, "--method", "vpt-deep", "--prefix-form", "--bf16", "--out", run]);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        var art = VptSharp.Tuning.TaskArtifact.Load(Path.Combine(run, "task.vpt"));
        Assert.Contains("\"prefix_form\":true", art.Metadata.MethodConfig.ToJsonString());
        Assert.All(art.Tensors.Values, t => Assert.Equal(torch.ScalarType.Float32, t.dtype));
        var eval = RunCli("eval", "--task", Path.Combine(run, "task.vpt"), "--data", data);
        Assert.True(eval.ExitCode == 0, eval.Stderr);

        var shallow = RunCli([.. common, "--method", "vpt-shallow", "--prefix-form", "--out", Path.Combine(dir, "bad1")]);
        Assert.Equal(1, shallow.ExitCode);
        Assert.Contains("--prefix-form: VPT-shallow is not a prefix", shallow.Stderr);
        var bias = RunCli([.. common, "--method", "bias", "--bf16", "--out", Path.Combine(dir, "bad2")]);
        Assert.Equal(1, bias.ExitCode);
        Assert.Contains("bias trains backbone weights, which need one: use --precision fp32 or auto", bias.Stderr);
    }

    /// <summary>`--precision`: auto follows this host's CPU flags (bf16 only with avx512_bf16/amx_bf16), the choice and the
    /// CPU's vector extensions are printed, and the precision is recorded in metrics.jsonl, the task file and eval's JSON.</summary>
    [Fact]
    public void PrecisionIsChosenPrintedAndRecorded()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 6);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string[] common = ["train", "--backbone", bb, "--data", data, "--epochs", "1", "--warmup-epochs", "0", "--batch-size", "6", "--prompts", "2"];
        var cpu = VptSharp.Hardware.CpuFeatures.Current;
        string expected = cpu.FastBf16 ? "bf16" : "fp32";
        foreach (var (flag, want) in new[] { ("auto", expected), ("fp32", "fp32"), ("bf16", "bf16") })
        {
            string run = Path.Combine(dir, flag);
            var r = RunCli([.. common, "--precision", flag, "--out", run]);
            Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
            Assert.Contains($"precision {want} (", r.Stdout);
            Assert.Contains(cpu.VectorExtensions, r.Stdout);
            Assert.All(File.ReadAllLines(Path.Combine(run, "metrics.jsonl")), l => Assert.Contains($"\"precision\":\"{want}\"", l));
            Assert.Equal(want, VptSharp.Tuning.TaskArtifact.Load(Path.Combine(run, "task.vpt")).Metadata.Precision);
            string json = Path.Combine(dir, flag + ".json");
            var eval = RunCli("eval", "--task", Path.Combine(run, "task.vpt"), "--data", data, "--precision", flag, "--json", json);
            Assert.True(eval.ExitCode == 0, eval.Stderr);
            using var doc = JsonDocument.Parse(File.ReadAllText(json));
            Assert.Equal(want, doc.RootElement.GetProperty("precision").GetString());
        }
        var bad = RunCli([.. common, "--precision", "fp16", "--out", Path.Combine(dir, "bad")]);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("use auto, fp32 or bf16", bad.Stderr);
        var full = RunCli([.. common, "--method", "full", "--out", Path.Combine(dir, "full")]); // auto never puts a trained backbone in bf16
        Assert.True(full.ExitCode == 0, full.Stderr);
        Assert.Contains("precision fp32 (auto: the method trains backbone weights)", full.Stdout);
    }

    /// <summary>`vpt bench --profile`: the step's phases and one row per block op, with FLOP counts that follow from the
    /// shapes (vit-ti8-32: width 192, depth 12, 16 patches + CLS; prefix form with p = 4 keeps 17 query tokens).</summary>
    [Fact]
    public void BenchProfileCountsTheFlopsOfEachOp()
    {
        string dir = TempDir(), json = Path.Combine(dir, "profile.json");
        var r = RunCli("bench", "--backbone", "random:vit-ti8-32", "--profile", "train:vpt-prefix:4", "--batch", "2", "--iters", "1",
            "--threads", "1", "--out", json);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var phases = doc.RootElement.GetProperty("phases").EnumerateArray().ToList();
        Assert.Equal(["forward", "backward", "optimizer"], phases.Select(x => x.GetProperty("Phase").GetString()));
        Assert.All(phases.Take(2), x => Assert.True(x.GetProperty("MsPerImage").GetDouble() > 0));
        var ops = doc.RootElement.GetProperty("ops").EnumerateArray().ToDictionary(x => x.GetProperty("Op").GetString()!, x => x.GetProperty("Gflop").GetDouble());
        const double d = 192, t = 17, depth = 12, p = 4;
        Assert.Equal(2 * t * d * 3 * d * depth / 1e9, ops["qkv linear"], 9);        // per image: batch cancels
        Assert.Equal(2 * t * d * 4 * d * depth / 1e9, ops["mlp fc1"], 9);
        Assert.Equal(4 * t * (t + p) * d * depth / 1e9, ops["attention"], 9); // queries over prefix + own keys
        Assert.Equal(ops["attention"], ops["(attention as fused sdpa)"], 9); // the comparison row times the same product
        Assert.Equal(2 * p * d * 2 * d * depth / 1e9, ops["prompt k/v"], 9);
        var bad = RunCli("bench", "--backbone", "random:vit-ti8-32", "--profile", "infer:plain:0", "--out", json);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("expected train:method:p", bad.Stderr);
    }

    /// <summary>The benchmark command runs each configuration in a child process and records it (no timing is asserted).</summary>
    [Fact]
    public void BenchWritesOneRowPerConfiguration()
    {
        string dir = TempDir(), json = Path.Combine(dir, "bench.json");
        var r = RunCli("bench", "--backbone", "random:vit-ti8-32", "--only", "infer:vpt-prefix:2:fp32,train:vpt-deep:2:fp32,multitask-mixed:vpt-prefix:2:fp32",
            "--batch", "2", "--iters", "1", "--tasks", "2", "--threads", "1", "--out", json);
        Assert.True(r.ExitCode == 0, r.Stderr + r.Stdout);
        using var doc = JsonDocument.Parse(File.ReadAllText(json));
        var rows = doc.RootElement.GetProperty("rows").EnumerateArray().ToList();
        Assert.Equal(["infer", "train", "multitask-mixed"], rows.Select(x => x.GetProperty("Kind").GetString()));
        Assert.All(rows, x => Assert.True(x.GetProperty("MsPerImage").GetDouble() > 0 && x.GetProperty("PeakRssMib").GetDouble() > 50));
        var bad = RunCli("bench", "--only", "infer:nope:1:fp32", "--backbone", "random:vit-ti8-32", "--out", json);
        Assert.Equal(1, bad.ExitCode);
        Assert.Contains("unknown configuration", bad.Stderr);
    }

    [Fact]
    public void ResumeInANewProcessRepeatsTheUninterruptedRun()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 10);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string[] common = ["train", "--backbone", bb, "--data", data, "--method", "vpt-deep", "--prompts", "2", "--epochs", "3",
            "--warmup-epochs", "1", "--batch-size", "8", "--lr", "1", "--augment", "crop-flip", "--seed", "5"];
        string a = Path.Combine(dir, "a"), b = Path.Combine(dir, "b");
        Assert.Equal(0, RunCli([.. common, "--out", a]).ExitCode);
        Assert.Equal(0, RunCli([.. common, "--out", b, "--stop-after", "2"]).ExitCode);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(b, "metrics.jsonl")).Length); // stopped after epoch 2
        var resumed = RunCli([.. common, "--out", b, "--resume"]);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        var ta = SafetensorsFile.Load(Path.Combine(a, "last.vpt"));
        var tb = SafetensorsFile.Load(Path.Combine(b, "last.vpt"));
        Assert.Equal(ta.Keys.Order(), tb.Keys.Order());
        foreach (var k in ta.Keys) Assert.True(Same(ta[k], tb[k]), $"{k} differs after a resume in a new process");
    }

    [Fact]
    public void EmbedOfPreprocessedNpyMatchesPyTorch()
    {
        string dir = TempDir();
        string output = Path.Combine(dir, "feats.npy");
        var r = RunCli("embed", "--backbone", Golden("vit_torchvision.pth"), "--heads", "2", "--out", output, Golden("input.npy"));
        Assert.True(r.ExitCode == 0, r.Stderr);
        double diff = MaxAbsDiff(Npy.Read(output), Npy.Read(Golden("cls.npy")));
        Assert.True(diff < 1e-4, $"max |diff| {diff:E2}");
    }

    [Fact]
    public void BadInputsGiveOneLineErrorsAndNonZeroExit()
    {
        string dir = TempDir();
        string bad = Path.Combine(dir, "broken.jpg");
        File.WriteAllBytes(bad, [0xff, 0xd8, 0xff, 0x00, 0x01]);
        string bb = SaveTinyBackbone(dir, seed: 1);
        var missingTask = RunCli("predict", "--task", Path.Combine(dir, "nope.vpt"), bad);
        Assert.NotEqual(0, missingTask.ExitCode);
        Assert.Contains("nope.vpt", missingTask.Stderr);

        string data = MakeImageFolder(Path.Combine(dir, "data"), 2, 4);
        File.Copy(bad, Path.Combine(data, "class0", "broken.jpg"));
        var train = RunCli("train", "--backbone", bb, "--data", data, "--epochs", "1", "--out", Path.Combine(dir, "run"));
        Assert.Equal(1, train.ExitCode);
        Assert.Contains("broken.jpg", train.Stderr);
        Assert.Contains("--skip-bad", train.Stderr);
        Assert.Single(train.Stderr.Trim().Split('\n'));

        var wrongCkpt = RunCli("info", Golden("input.npy"));
        Assert.NotEqual(0, wrongCkpt.ExitCode);
        Assert.Contains("input.npy", wrongCkpt.Stderr);
    }

    /// <summary>--val-fraction 0 trains on all of --data (the protocol's final runs on train+val) and keeps the last epoch.</summary>
    [Fact]
    public void NoValidationKeepsTheLastEpoch()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 2, 6);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string run = Path.Combine(dir, "run");
        var train = RunCli("train", "--backbone", bb, "--data", data, "--val-fraction", "0", "--method", "linear", "--epochs", "2", "--warmup-epochs", "0", "--out", run);
        Assert.True(train.ExitCode == 0, train.Stderr);
        Assert.Contains("train 12 images, val 0", train.Stdout);
        Assert.Contains("no validation: epoch 2, the last, kept", train.Stdout);
        var epochs = File.ReadAllLines(Path.Combine(run, "metrics.jsonl")).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(2, epochs.Count);
        Assert.All(epochs, e => Assert.Equal(JsonValueKind.Null, e.GetProperty("val_top1").ValueKind));
        Assert.Equal(File.ReadAllBytes(Path.Combine(run, "last.vpt")), File.ReadAllBytes(Path.Combine(run, "task.vpt")));
        var bad = RunCli("train", "--backbone", bb, "--data", data, "--val-fraction", "1.5", "--method", "linear", "--out", Path.Combine(dir, "bad"));
        Assert.Equal(1, bad.ExitCode);
        Assert.Equal("error: --val-fraction 1.5: use 0 (no validation) or a fraction below 1, e.g. 0.2", bad.Stderr.Trim());
    }

    [Fact]
    public void TaskRefusesABackboneWithAnotherHash()
    {
        string dir = TempDir();
        string data = MakeImageFolder(Path.Combine(dir, "data"), 2, 6);
        string bb = SaveTinyBackbone(dir, seed: 1);
        string run = Path.Combine(dir, "run");
        Assert.Equal(0, RunCli("train", "--backbone", bb, "--data", data, "--method", "linear", "--epochs", "1", "--out", run).ExitCode);
        string other = SaveTinyBackbone(Directory.CreateDirectory(Path.Combine(dir, "other")).FullName, seed: 2);
        var r = RunCli("eval", "--task", Path.Combine(run, "task.vpt"), "--backbone", other, "--data", data);
        Assert.Equal(3, r.ExitCode);
        Assert.Contains("sha256", r.Stderr);
        Assert.Contains("pass --backbone with the original weights", r.Stderr);
    }
}
