using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Inference;
using VptSharp.Tuning;
using Xunit.Abstractions;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class InferenceTests(ITestOutputHelper output)
{
    static readonly Preprocessing Pre = new() { ImageSize = 32 };

    /// <summary>A model whose task tensors moved away from their init (as if trained): head weights of std ≈ 0.2 give
    /// logits of order 1, so softmax outputs are neither uniform nor saturated and probability comparisons mean something.</summary>
    static PromptedModel TrainedLike(Backbone backbone, MethodConfig config, int classes, int seed)
    {
        manual_seed(seed);
        var model = PromptedModel.Create(backbone, config, classes);
        using (no_grad())
        {
            // Head at a trained-like scale (O(1) logits), not the reference's kaiming init, whose logits are far larger.
            model.head.weight!.normal_(0, 0.01); model.head.bias!.zero_();
            foreach (var (_, p) in model.TaskTensors()) p.add_(randn_like(p) * 0.2);
        }
        model.eval();
        return model;
    }

    static TaskArtifact Artifact(PromptedModel model, LoadedBackbone bb, int classes, string tag = "c") =>
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config),
            Enumerable.Range(0, classes).Select(i => $"{tag}{i}").ToArray(), Pre);

    [Theory]
    [InlineData(PromptOutput.Cls, null, null, 2, -1)]
    [InlineData(PromptOutput.ImagePool, null, null, 2, -1)]
    [InlineData(PromptOutput.Cls, 1, 3, 3, -1)]        // depth range 1→L
    [InlineData(PromptOutput.ImagePool, 2, 3, 3, -1)]  // k→L: block 1 runs without a prefix
    [InlineData(PromptOutput.Cls, 3, 2, 3, 8)]         // either order; prompts through a projection
    public void PrefixForwardEqualsVptDeep(PromptOutput pooled, int? firstBlock, int? lastBlock, int depth, int projectDim)
    {
        using var backbone = TinyVit(1, Tiny with { Depth = depth });
        var config = new PromptConfig { Tokens = 3, Deep = true, Output = pooled, FirstBlock = firstBlock, LastBlock = lastBlock, ProjectDim = projectDim };
        using var model = TrainedLike(backbone, config, 4, seed: 2);
        manual_seed(3);
        var x = randn(5, 3, 32, 32);
        using var _ = no_grad();
        using var prefix = TaskPrefix.FromModel(model);
        var expected = model.forward(x);
        var viaPrefix = model.ForwardHead(prefix.Features(backbone, x));
        double diff = MaxAbsDiff(viaPrefix, expected);
        // Without the prompts the logits are clearly different, so the comparison can fail.
        double withoutPrompts = MaxAbsDiff(model.ForwardHead(TaskPrefix.Pool(backbone.ForwardFeatures(x), pooled)), expected);
        output.WriteLine($"{pooled} {firstBlock}->{lastBlock} of {depth}, project {projectDim}: prefix vs prompted max|diff| = {diff:E2} (no prompts: {withoutPrompts:F3})");
        Assert.True(diff < 1e-5, $"max |diff| {diff}");
        Assert.True(withoutPrompts > 1e-2);
        Assert.Equal(Math.Min(firstBlock ?? 1, lastBlock ?? depth) == 1 ? 3 : 0, prefix.LengthAt(0)); // blocks before the range: no prefix
        Assert.Equal(3, prefix.LengthAt(depth - 1));
    }

    /// <summary>VPT-deep trained in prefix form (prompts as keys/values only) computes the same logits and the same
    /// prompt and head gradients as the token form, with dropout off; with dropout on it still trains.</summary>
    [Theory]
    [InlineData(PromptOutput.Cls, null, 3)]
    [InlineData(PromptOutput.ImagePool, 2, 3)] // prompts in blocks 2→3 only
    public void PrefixFormTrainsExactlyLikeTokenForm(PromptOutput pooled, int? firstBlock, int depth)
    {
        using var backbone = TinyVit(1, Tiny with { Depth = depth });
        var tokenForm = new PromptConfig { Tokens = 3, Dropout = 0, Output = pooled, FirstBlock = firstBlock, PrefixForm = false };
        using var a = TrainedLike(backbone, tokenForm, 4, seed: 5);
        using var b = TrainedLike(backbone, tokenForm with { PrefixForm = true }, 4, seed: 5);
        Assert.Equal(3, a.method.ExtraTokens);
        Assert.Equal(0, b.method.ExtraTokens);
        using (var byDefault = PromptedModel.Create(backbone, tokenForm with { PrefixForm = null }, 4))
            Assert.Equal(0, byDefault.method.ExtraTokens); // where it is exact, VPT-deep trains in prefix form unless told otherwise
        manual_seed(6);
        var x = randn(4, 3, 32, 32);
        var y = tensor(new long[] { 0, 1, 2, 3 });
        var grads = new List<Tensor[]>();
        foreach (var m in new[] { a, b })
        {
            m.train();
            m.zero_grad();
            nn.functional.cross_entropy(m.forward(x), y).backward();
            grads.Add(m.TrainableParameters().Select(p => p.Param.grad!.clone()).ToArray());
        }
        double gradDiff = grads[0].Zip(grads[1]).Max(g => MaxAbsDiff(g.First, g.Second));
        double gradScale = grads[0].Max(g => g.abs().max().item<float>());
        a.eval(); b.eval();
        using var _ = no_grad();
        double logitDiff = MaxAbsDiff(a.forward(x), b.forward(x));
        output.WriteLine($"{pooled} from block {firstBlock ?? 1}: logits max|diff| {logitDiff:E2}, gradients max|diff| {gradDiff:E2} (largest gradient {gradScale:E2})");
        Assert.True(logitDiff < 1e-5, $"logits {logitDiff}");
        Assert.True(gradScale > 1e-3 && gradDiff < 1e-5, $"gradients {gradDiff} of {gradScale}");
        // A prefix-form task is a prefix for inference as it stands.
        using var prefix = TaskPrefix.FromModel(b);
        Assert.True(MaxAbsDiff(b.ForwardHead(prefix.Features(backbone, x)), b.forward(x)) < 1e-5);
    }

    [Fact]
    public void PrefixFormWithDropoutTrainsAndIsRefusedWhereInexact()
    {
        using var backbone = TinyVit(1);
        using var model = TrainedLike(backbone, new PromptConfig { Tokens = 3, Dropout = 0.5, PrefixForm = true }, 2, seed: 8);
        var opt = optim.SGD(model.TrainableParameters().Select(p => p.Param), 0.5, momentum: 0.9);
        manual_seed(9);
        var x = randn(8, 3, 32, 32);
        var y = tensor(new long[] { 0, 1, 0, 1, 0, 1, 0, 1 });
        model.train();
        var losses = new List<double>();
        for (int i = 0; i < 15; i++)
        {
            using var scope = NewDisposeScope();
            var loss = nn.functional.cross_entropy(model.forward(x), y);
            opt.zero_grad(); loss.backward(); opt.step();
            losses.Add(loss.item<float>());
        }
        output.WriteLine($"losses {string.Join(", ", losses.Select(l => l.ToString("F3")))}");
        Assert.True(losses.TakeLast(3).Average() < 0.5 * losses[0], $"loss {losses[0]} → {losses[^1]}");
        // Dropout draws a mask per sample in training: two identical images get different logits.
        using (no_grad())
        {
            var twin = model.forward(cat([x[..1], x[..1]], 0));
            Assert.True(MaxAbsDiff(twin[0], twin[1]) > 1e-4);
        }
        foreach (var (config, message) in new (PromptConfig, string)[]
                 {
                     (new PromptConfig { Tokens = 2, Deep = false, PrefixForm = true }, "VPT-shallow is not a prefix"),
                     (new PromptConfig { Tokens = 2, Output = PromptOutput.PromptPool, PrefixForm = true }, "prompt-pool"),
                     (new PromptConfig { Tokens = 2, LastBlock = 1, PrefixForm = true }, "ending at block 1 of 2"),
                 })
        {
            var e = Assert.Throws<InvalidSettingException>(() => PromptedModel.Create(backbone, config, 2));
            Assert.Equal("prefix-form", e.Setting);
            Assert.Contains(message, e.Message);
        }
    }

    [Fact]
    public void DefaultAttentionPathIsUnchangedAndMaskedPrefixIsNoPrefix()
    {
        using var backbone = TinyVit(1);
        manual_seed(4);
        var x = randn(2, 5, 32);
        var attn = backbone.blocks[0].attn;
        using var _ = no_grad();
        var plain = attn.forward(x);
        var keys = randn(1, 2, 3, 16);
        var values = randn(1, 2, 3, 16);
        Assert.True(Same(attn.Forward(x, null), plain));
        Assert.True(Same(attn.Forward(x, new KeyValuePrefix(zeros(1, 2, 0, 16), zeros(1, 2, 0, 16))), plain));
        // A fully masked prefix contributes nothing; an unmasked one changes every output.
        var allMasked = full(2, 3, double.NegativeInfinity);
        Assert.True(MaxAbsDiff(attn.Forward(x, new KeyValuePrefix(keys, values, allMasked)), plain) < 1e-6);
        Assert.True(MaxAbsDiff(attn.Forward(x, new KeyValuePrefix(keys, values)), plain) > 1e-2);
        // Masking only sample 1's prefix: sample 0 sees the prefix, sample 1 does not.
        var mixed = cat([zeros(1, 3), full(1, 3, double.NegativeInfinity)], 0);
        var o = attn.Forward(x, new KeyValuePrefix(keys, values, mixed));
        Assert.True(MaxAbsDiff(o[0], attn.Forward(x[..1], new KeyValuePrefix(keys, values))[0]) < 1e-6);
        Assert.True(MaxAbsDiff(o[1], plain[1]) < 1e-6);
    }

    [Theory]
    [InlineData("vpt-shallow", "VPT-shallow is not a prefix")]
    [InlineData("depth 1-1", "ending at block 1 of 2")]
    [InlineData("prompt-pool", "prompt-pool")]
    [InlineData("global-pool", "global-pool")]
    [InlineData("add", "location add")]
    [InlineData("prompt+bias", "prompt+bias")]
    [InlineData("adapter", "method adapter")]
    public void NonPrefixMethodsAreRefused(string what, string expectedMessage)
    {
        MethodConfig config = what switch
        {
            "vpt-shallow" => new PromptConfig { Tokens = 2, Deep = false },
            "depth 1-1" => new PromptConfig { Tokens = 2, FirstBlock = 1, LastBlock = 1 },
            "prompt-pool" => new PromptConfig { Tokens = 2, Output = PromptOutput.PromptPool },
            "global-pool" => new PromptConfig { Tokens = 2, Output = PromptOutput.GlobalPool },
            "add" => new PromptConfig { Tokens = 1, Location = PromptLocation.Add },
            "prompt+bias" => new PromptConfig { Tokens = 2, TrainBiases = true },
            _ => new AdapterConfig(),
        };
        using var backbone = TinyVit(1);
        using var model = PromptedModel.Create(backbone, config, 2);
        var e = Assert.Throws<ArgumentException>(() => TaskPrefix.FromModel(model));
        Assert.Contains(expectedMessage, e.Message);
    }

    [Fact]
    public void LinearAndMlpHeadsAreZeroLengthPrefixes()
    {
        using var backbone = TinyVit(1);
        foreach (var config in new MethodConfig[] { new LinearProbeConfig(), new PromptConfig { Tokens = 2, Fixed = true }, new MlpHeadConfig() })
        {
            using var model = TrainedLike(backbone, config, 3, seed: 6);
            using var prefix = TaskPrefix.FromModel(model);
            var x = randn(2, 3, 32, 32);
            using var _ = no_grad();
            Assert.True(MaxAbsDiff(model.ForwardHead(prefix.Features(backbone, x)), model.forward(x)) < 1e-5);
            Assert.Equal(config is PromptConfig ? 2 : 0, prefix.LengthAt(1));
        }
    }

    /// <summary>Three tasks on one backbone: different prompt lengths, prompted blocks, pooling and class counts.</summary>
    static (LoadedBackbone Backbone, PromptedModel[] Models, TaskArtifact[] Artifacts) ThreeTasks()
    {
        var bb = BackboneLoader.Load(SaveTinyBackbone(TempDir(), seed: 7));
        var models = new[]
        {
            TrainedLike(bb.Model, new PromptConfig { Tokens = 4 }, 3, seed: 11),
            TrainedLike(bb.Model, new PromptConfig { Tokens = 2, FirstBlock = 2, Output = PromptOutput.ImagePool }, 5, seed: 12),
            TrainedLike(bb.Model, new LinearProbeConfig(), 2, seed: 13),
        };
        var artifacts = models.Select((m, i) => Artifact(m, bb, m.NumClasses, $"t{i}c")).ToArray();
        return (bb, models, artifacts);
    }

    [Fact]
    public void MixedBatchEqualsEachSampleAlone()
    {
        var (bb, models, artifacts) = ThreeTasks();
        using var engine = new MultiTaskEngine(bb);
        for (int t = 0; t < 3; t++) Assert.Equal(t, engine.AddTask(artifacts[t], $"task{t}"));
        manual_seed(21);
        var x = randn(7, 3, 32, 32);
        int[] taskOfSample = [0, 1, 2, 0, 1, 2, 1];
        var probs = engine.Predict(x, taskOfSample);
        double worst = 0;
        using (no_grad())
            for (int j = 0; j < x.shape[0]; j++)
            {
                var model = models[taskOfSample[j]];
                var alone = nn.functional.softmax(model.forward(x[j..(j + 1)]), 1)[0];
                Assert.Equal(model.NumClasses, probs[j].shape[0]);
                worst = Math.Max(worst, MaxAbsDiff(probs[j], alone));
            }
        output.WriteLine($"mixed batch vs alone: max |diff| = {worst:E2}");
        Assert.True(worst < 1e-5, $"max |diff| {worst}");
        // Engine state survives the callers' dispose scopes: a second mixed batch, inside a scope, gives the same answers.
        using (NewDisposeScope())
        {
            var again = engine.Predict(x[..3], taskOfSample[..3]);
            for (int j = 0; j < 3; j++) Assert.True(MaxAbsDiff(again[j], probs[j]) < 1e-6, $"sample {j}");
        }
        // Samples 0 and 1 under the linear task instead of their own.
        var other = engine.Predict(x[..2], [2, 2]);
        using (no_grad())
            for (int j = 0; j < 2; j++)
                Assert.True(MaxAbsDiff(other[j], nn.functional.softmax(models[2].forward(x[j..(j + 1)]), 1)[0]) < 1e-5);
        // A task trained on another backbone is refused by hash.
        using var otherBb = BackboneLoader.Load(SaveTinyBackbone(TempDir(), seed: 8));
        using var foreign = TrainedLike(otherBb.Model, new LinearProbeConfig(), 2, seed: 1);
        Assert.Throws<BackboneMismatchException>(() => engine.AddTask(Artifact(foreign, otherBb, 2), "foreign"));
        Assert.Throws<ArgumentException>(() => engine.Predict(x[..2], [0, 3]));
        foreach (var m in models) m.Dispose();
        bb.Dispose();
    }

    [Fact]
    public void Bf16BackboneAgreesWithFp32()
    {
        var (bb, models, artifacts) = ThreeTasks();
        using var fp32 = new MultiTaskEngine(bb);
        MultiTaskEngine bf16;
        using (NewDisposeScope()) // the engine's bf16 copy of the backbone belongs to the engine, not to this scope
        {
            bf16 = new MultiTaskEngine(bb, ScalarType.BFloat16);
            for (int t = 0; t < 3; t++) { fp32.AddTask(artifacts[t], $"task{t}"); bf16.AddTask(artifacts[t], $"task{t}"); }
        }
        manual_seed(22);
        var x = randn(24, 3, 32, 32);
        int[] taskOfSample = Enumerable.Range(0, 24).Select(i => i % 3).ToArray();
        var a = fp32.Predict(x, taskOfSample);
        var b = bf16.Predict(x, taskOfSample);
        double worst = 0;
        for (int j = 0; j < a.Length; j++)
        {
            Assert.Equal(ScalarType.Float32, b[j].dtype);
            Assert.Equal(a[j].argmax().item<long>(), b[j].argmax().item<long>());
            worst = Math.Max(worst, MaxAbsDiff(a[j], b[j]));
        }
        output.WriteLine($"bf16 vs fp32 probabilities: max |diff| = {worst:E2}");
        // bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.2%) at each of ~10 rounding steps per block, so the
        // O(1) features carry errors of ~1e-2 and the O(1) logits a few 1e-2; a probability moves by at most 1/4 of a logit
        // change. Measured 4.6e-3 here; 0.02 leaves a 4× margin yet fails if anything (prefix, mask, head) ran in bf16 wrongly.
        Assert.True(worst < 0.02, $"max |diff| {worst}");
        Assert.True(worst > 1e-5, "the bf16 engine must actually round (fp32-level agreement means it ran in fp32)");
        bf16.Dispose();
        foreach (var m in models) m.Dispose();
        bb.Dispose();
    }

    [Fact]
    public void EnsembleIsTheMeanOfItsMembersAndRoundTrips()
    {
        var dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 7));
        var models = new[]
        {
            TrainedLike(bb.Model, new PromptConfig { Tokens = 3 }, 4, seed: 31),
            TrainedLike(bb.Model, new PromptConfig { Tokens = 5, Output = PromptOutput.ImagePool }, 4, seed: 32),
            TrainedLike(bb.Model, new PromptConfig { Tokens = 2, FirstBlock = 2 }, 4, seed: 33),
        };
        var paths = models.Select((m, j) =>
        {
            string p = Path.Combine(dir, $"m{j}.vpt");
            Artifact(m, bb, 4).Save(p);
            return p;
        }).ToArray();
        var ensemble = EnsembleArtifact.FromFiles(paths);
        manual_seed(23);
        var x = randn(6, 3, 32, 32);
        Tensor expected;
        using (no_grad()) expected = stack(models.Select(m => nn.functional.softmax(m.forward(x), 1)), 0).mean([0]);
        Tensor direct;
        using (var predictor = ensemble.Attach(bb)) direct = predictor.Probabilities(x);
        double diff = MaxAbsDiff(direct, expected);
        double toFirstMember = MaxAbsDiff(direct, nn.functional.softmax(models[0].forward(x), 1));
        output.WriteLine($"ensemble vs mean of members: max |diff| = {diff:E2} (vs member 0 alone: {toFirstMember:F3})");
        Assert.True(diff < 1e-5, $"max |diff| {diff}");
        Assert.True(toFirstMember > 1e-2);

        string file = Path.Combine(dir, "ens.vpt");
        ensemble.Save(file);
        Assert.True(EnsembleArtifact.IsEnsembleFile(file));
        Assert.False(EnsembleArtifact.IsEnsembleFile(paths[0]));
        var loaded = EnsembleArtifact.Load(file);
        Assert.Equal(["m0.vpt", "m1.vpt", "m2.vpt"], loaded.Sources);
        Assert.Equal(["c0", "c1", "c2", "c3"], loaded.Classes);
        for (int j = 0; j < 3; j++)
            foreach (var (name, t) in ensemble.Members[j].Tensors) Assert.True(Same(loaded.Members[j].Tensors[name], t), name);
        using (var predictor = loaded.LoadPredictor()) Assert.True(Same(predictor.Probabilities(x), direct));
        foreach (var m in models) m.Dispose();
    }

    [Fact]
    public void EnsembleRefusesMismatchedMembers()
    {
        var dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 7));
        using var a = TrainedLike(bb.Model, new PromptConfig { Tokens = 2 }, 3, seed: 1);
        using var b = TrainedLike(bb.Model, new PromptConfig { Tokens = 2 }, 3, seed: 2);
        using var shallow = TrainedLike(bb.Model, new PromptConfig { Tokens = 2, Deep = false }, 3, seed: 3);
        var e = Assert.Throws<ArgumentException>(() => EnsembleArtifact.FromTasks([("a.vpt", Artifact(a, bb, 3)), ("b.vpt", Artifact(b, bb, 3, "other"))]));
        Assert.Contains("same classes", e.Message);
        var otherBackbone = new BackboneRef(bb.Source, new string('0', 64), bb.Config);
        var foreign = TaskArtifact.FromModel(b, otherBackbone, ["c0", "c1", "c2"], Pre);
        e = Assert.Throws<ArgumentException>(() => EnsembleArtifact.FromTasks([("a.vpt", Artifact(a, bb, 3)), ("b.vpt", foreign)]));
        Assert.Contains("share one backbone", e.Message);
        e = Assert.Throws<ArgumentException>(() => EnsembleArtifact.FromTasks([("a.vpt", Artifact(a, bb, 3)), ("s.vpt", Artifact(shallow, bb, 3))]));
        Assert.Contains("s.vpt: VPT-shallow", e.Message);
        e = Assert.Throws<ArgumentException>(() => EnsembleArtifact.FromTasks([("a.vpt", Artifact(a, bb, 3))]));
        Assert.Contains("at least two", e.Message);
    }

    [Fact]
    public void CliBuildsAnEnsembleThatEvalAndPredictAccept()
    {
        var dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 7));
        string data = MakeImageFolder(Path.Combine(dir, "data"), 3, 3);
        string Save(MethodConfig config, int classes, int seed, string name)
        {
            using var m = TrainedLike(bb.Model, config, classes, seed);
            string p = Path.Combine(dir, name);
            Artifact(m, bb, classes, "class").Save(p);
            return p;
        }
        string a = Save(new PromptConfig { Tokens = 2 }, 3, 41, "a.vpt"), b = Save(new PromptConfig { Tokens = 3 }, 3, 42, "b.vpt");
        string twoClasses = Save(new LinearProbeConfig(), 2, 43, "c.vpt");
        string ens = Path.Combine(dir, "ens.vpt");

        var built = RunCli("ensemble", "--out", ens, a, b);
        Assert.True(built.ExitCode == 0, built.Stderr);
        Assert.Contains("2 members", built.Stdout);
        var info = RunCli("info", ens);
        Assert.True(info.ExitCode == 0, info.Stderr);
        Assert.Contains("member 2", info.Stdout);
        Assert.Contains("b.vpt: vpt-deep", info.Stdout);
        var bad = RunCli("ensemble", "--out", Path.Combine(dir, "bad.vpt"), a, twoClasses);
        Assert.Equal(1, bad.ExitCode);
        Assert.StartsWith("error: c.vpt has classes", bad.Stderr);
        Assert.Single(bad.Stderr.Trim().Split('\n'));
        Assert.False(File.Exists(Path.Combine(dir, "bad.vpt")));

        using var ensemble = EnsembleArtifact.Load(ens).Attach(bb);
        string image = Path.Combine(data, "class1", "000.png");
        var predict = RunCli("predict", "--task", ens, "--top-k", "3", "--precision", "fp32", image); // compared with the fp32 library below
        Assert.True(predict.ExitCode == 0, predict.Stderr);
        var top = System.Text.Json.JsonDocument.Parse(predict.Stdout).RootElement[0].GetProperty("top");
        var tf = new ImageTransform(Pre, train: false);
        var buf = new float[tf.OutputLength];
        tf.Apply(FileImageDataset.Decode(image), new Random(0), buf);
        using var probs = ensemble.Probabilities(tensor(buf, [1, 3, 32, 32]));
        Assert.Equal(3, top.GetArrayLength());
        foreach (var entry in top.EnumerateArray())
            Assert.Equal(probs[0, entry.GetProperty("index").GetInt32()].item<float>(), entry.GetProperty("probability").GetDouble(), 5);

        string json = Path.Combine(dir, "eval.json");
        var eval = RunCli("eval", "--task", ens, "--data", data, "--json", json, "--precision", "fp32");
        Assert.True(eval.ExitCode == 0, eval.Stderr);
        var expected = ensemble.Evaluate(DatasetSpec.Open(data, ensemble.Classes), batchSize: 4);
        var written = System.Text.Json.JsonDocument.Parse(File.ReadAllText(json)).RootElement;
        Assert.Equal(expected.Top1, written.GetProperty("top1").GetDouble(), 9);
        Assert.Equal(expected.Loss, written.GetProperty("loss").GetDouble(), 4);
        Assert.StartsWith("ensemble of 2", written.GetProperty("method").GetString());
    }
}
