using System.Text.Json;
using TorchSharp;
using VptSharp.Analysis;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Training;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Each rule of docs/fidelity.md pinned with real values: the reference recipe (KMnP/vpt) as VptSharp's default.</summary>
public class RecipeFidelityTests
{
    [Fact]
    public void MethodsTrainWithTheirReferenceBaseConfig()
    {
        foreach (var m in new[] { "full", "partial-1", "partial-4", "bias", "adapter" })
            Assert.Equal(new MethodRecipe(RecipeFamily.Finetune, OptimizerKind.AdamW, 5, 384), Recipe.For(m));
        foreach (var m in new[] { "linear", "mlp-3", "sidetune" })
            Assert.Equal(new MethodRecipe(RecipeFamily.Linear, OptimizerKind.Sgd, 10, 1024), Recipe.For(m));
        foreach (var m in new[] { "vpt-deep", "vpt-shallow", "prompt+bias", "prompt-fixed", "cls-learned" })
            Assert.Equal(new MethodRecipe(RecipeFamily.Prompt, OptimizerKind.Sgd, 10, 128), Recipe.For(m));
        Assert.Equal([0.001, 0.0001, 0.0005, 0.005], Recipe.For("full").LrGrid);
        Assert.Equal([50, 25, 10, 5, 2.5, 1, 0.5, 0.25, 0.1, 0.05], Recipe.For("vpt-deep").LrGrid);
        Assert.Equal((0.01, 1e-6), (Recipe.AdamWWeightDecay, Recipe.AdamWEpsilon));
        Assert.Equal(0.01, new TrainOptions().AdamWDecay);
        Assert.False(new TrainOptions().LrPerStep);
    }

    [Fact]
    public void WeightDecayGroupsFollowTheReferenceOptimizer()
    {
        using var vit = TinyVit();
        // SGD (prompt+bias): every trainable tensor decays — prompts, backbone biases, norm weights — but the head's bias.
        using var pb = PromptedModel.Create(vit, new PromptConfig { Tokens = 2, TrainBiases = true }, 5);
        var trainable = pb.TrainableParameters();
        var (decay, noDecay) = Recipe.WeightDecayGroups(trainable, OptimizerKind.Sgd);
        Assert.Same(pb.head.bias, Assert.Single(noDecay));
        Assert.Equal(trainable.Count - 1, decay.Count);
        Assert.Contains(decay, p => ReferenceEquals(p, trainable.Single(t => t.Name == "method.prompts").Param));
        // AdamW (full): names containing "bias" are not decayed; LayerNorm weights, CLS, position embedding are.
        using var full = PromptedModel.Create(vit, new FullConfig(), 5);
        var all = full.TrainableParameters();
        var (d2, n2) = Recipe.WeightDecayGroups(all, OptimizerKind.AdamW);
        var biasNames = all.Where(p => p.Name.Contains("bias")).ToList();
        // Tiny ViT (d = 32, L = 2): patch bias + per block (qkv 3d, proj d, fc1 4d? as 2d here, fc2 d, two norms) + final norm + head.
        Assert.Equal(biasNames.Count, n2.Count);
        Assert.Equal(2 + 2 * 6 + 1, biasNames.Count); // patch_embed, 6 per block (norm1, qkv, proj, norm2, fc1, fc2), final norm, head
        Assert.Contains(d2, p => ReferenceEquals(p, all.Single(t => t.Name == "backbone.blocks.0.norm1.weight").Param));
        Assert.Equal(all.Count - n2.Count, d2.Count);
    }

    [Fact]
    public void WarmupIsPerEpochFromZeroThenCosine()
    {
        Assert.Equal(0.0, WarmupCosine.AtEpoch(0, 100, 10, 1.0));
        Assert.Equal(0.5, WarmupCosine.AtEpoch(5, 100, 10, 1.0), 12);
        Assert.Equal(1.0, WarmupCosine.AtEpoch(10, 100, 10, 1.0), 12);
        Assert.Equal(0.5, WarmupCosine.AtEpoch(55, 100, 10, 1.0), 12);
        Assert.Equal(0.5 * (1 + Math.Cos(Math.PI * 89 / 90)), WarmupCosine.AtEpoch(99, 100, 10, 1.0), 12);

        // The trainer uses one rate per epoch (0, peak/2, peak with 2 warm-up epochs); --lr-per-step keeps the old schedule.
        var data = new FractalImages(3, 8, 32, seed: 1);
        var pre = new Preprocessing { ImageSize = 32 };
        using var vit = TinyVit();
        manual_seed(0);
        using var model = PromptedModel.Create(vit, new LinearProbeConfig(), 3);
        var opts = new TrainOptions { Epochs = 3, WarmupEpochs = 2, BatchSize = 8, BaseLr = 2.56, Workers = 1 };
        var h = new Trainer(opts).Fit(model, data, null, pre).History;
        Assert.Equal([0.0, 0.04, 0.08], h.Select(m => Math.Round(m.LearningRate, 10))); // peak 2.56 × 8 / 256
    }

    [Fact]
    public void HeadStartsAsTheReferenceMlpLastLayer()
    {
        using var vit = TinyVit();
        manual_seed(3);
        using var model = PromptedModel.Create(vit, new LinearProbeConfig(), 10);
        Assert.All(model.head.bias!.data<float>().ToArray(), b => Assert.Equal(-4.59512, b, 4)); // −log(99)
        double std = model.head.weight!.std().item<float>();
        Assert.InRange(std, 0.85 * Math.Sqrt(2.0 / 10), 1.15 * Math.Sqrt(2.0 / 10)); // kaiming-normal, fan_out = 10
    }

    [Fact]
    public void MlpHeadHasBatchNormAndDropoutAndItsStatisticsTravelInTheTaskFile()
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir));
        manual_seed(0);
        using var model = PromptedModel.Create(bb.Model, new MlpHeadConfig { Layers = 3 }, 4);
        Assert.Equal(2 * (32 * 32 + 3 * 32), model.MethodCount); // (k−1)(d² + 3d): Linear + BatchNorm affine
        var head = (MlpHead)model.method;
        Assert.Equal(Math.Sqrt(2.0 / 32), head.hidden[0].weight!.std().item<float>(), 1); // kaiming-normal fan_out
        manual_seed(1);
        var feats = randn(16, 32) * 3 + 1;
        model.train();
        using (no_grad()) { model.ForwardHead(feats).Dispose(); }
        var mean = head.norms[0].running_mean.data<float>().ToArray();
        Assert.Contains(mean, v => Math.Abs(v) > 1e-3); // training forward updated the running statistics
        using (no_grad())
        {
            var a = model.ForwardHead(feats); var b = model.ForwardHead(feats);
            Assert.False(Same(a, b)); // dropout 0.1 is active in training
            model.eval();
            var c = model.ForwardHead(feats); var d = model.ForwardHead(feats);
            Assert.True(Same(c, d));
            var task = TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["a", "b", "c", "d"], new Preprocessing { ImageSize = 32 }, []);
            string path = Path.Combine(dir, "mlp.vpt");
            task.Save(path);
            using var loaded = TaskArtifact.Load(path).Attach(bb);
            Assert.Equal(head.norms[0].running_mean.data<float>().ToArray(), ((MlpHead)loaded.method).norms[0].running_mean.data<float>().ToArray());
            Assert.True(MaxAbsDiff(c, loaded.ForwardHead(feats)) < 1e-6);
        }
    }

    [Fact]
    public void AdapterDefaultsToTheReferenceZeroInitWhoseOnlyGradientIsTheUpBias()
    {
        using var vit = TinyVit();
        var x = randn(4, 3, 32, 32);
        var y = tensor(new long[] { 0, 1, 0, 1 });
        foreach (var init in new[] { AdapterInit.ZeroBoth, AdapterInit.ZeroUp })
        {
            manual_seed(0);
            using var model = PromptedModel.Create(vit, new AdapterConfig { Reduction = 4, Init = init }, 2);
            nn.functional.cross_entropy(model.forward(x), y).backward();
            var a = (Adapter)model.method;
            double G(TorchSharp.Modules.Parameter p) => p.grad is null ? 0 : p.grad.abs().sum().item<float>();
            if (init == AdapterInit.ZeroBoth)
            {
                Assert.Equal(0, G(a.down[0].weight!)); Assert.Equal(0, G(a.down[0].bias!)); Assert.Equal(0, G(a.up[0].weight!));
                Assert.True(G(a.up[0].bias!) > 0);
            }
            else
            {
                Assert.True(G(a.up[0].weight!) > 0);
                Assert.True(a.down[0].weight!.abs().sum().item<float>() > 0);
            }
        }
        Assert.Equal(AdapterInit.ZeroBoth, new AdapterConfig().Init);
    }

    [Fact]
    public void PromptProjectionKeepsDefaultBiasAndAddPromptsReachCls()
    {
        using var vit = TinyVit();
        manual_seed(0);
        var proj = new VisualPrompts(new PromptConfig { Tokens = 2, ProjectDim = 8 }, vit);
        var bias = proj.prompt_proj!.bias!.data<float>().ToArray();
        Assert.Contains(bias, b => b != 0);
        Assert.All(bias, b => Assert.InRange(b, -1 / Math.Sqrt(8), 1 / Math.Sqrt(8))); // nn.Linear default: U(±1/√fan_in)

        int tokens = vit.Config.NumPatches + 1; // "add": one prompt per token, CLS included
        var add = new VisualPrompts(new PromptConfig { Tokens = tokens, Deep = false, Dropout = 0, Location = PromptLocation.Add }, vit);
        add.eval();
        var zeros = torch.zeros(2, tokens, 32);
        var outp = add.BeforeBlock(0, zeros);
        Assert.True(MaxAbsDiff(outp[0], add.PromptsFor(0)) < 1e-7);
        Assert.Throws<InvalidSettingException>(() => new VisualPrompts(new PromptConfig { Tokens = vit.Config.NumPatches, Location = PromptLocation.Add }, vit));
        _ = new VisualPrompts(new PromptConfig { Tokens = 1, Location = PromptLocation.Add }, vit); // "add-1"
    }

    [Fact]
    public void ConcatChannelTrainsThePatchProjection()
    {
        using var vit = TinyVit();
        using var model = PromptedModel.Create(vit, new PromptConfig { Tokens = 2, Deep = false, Dropout = 0, Location = PromptLocation.ConcatChannel }, 3);
        var names = model.TrainableParameters().Select(p => p.Name).ToList();
        Assert.Contains("backbone.patch_embed.proj.weight", names);
        Assert.Contains("backbone.patch_embed.proj.bias", names);
        int d = 32, p = 2, P = 8, H = 32;
        Assert.Equal(p * H * H + p * d * P * P + 3 * d * P * P + d, model.MethodCount);
    }

    [Fact]
    public void FgvcResizeKeepsTheAspectRatioThenCrops()
    {
        Assert.Equal((256, 438, 512), (ImageTransform.ResizeBeforeCrop(224), ImageTransform.ResizeBeforeCrop(384), ImageTransform.ResizeBeforeCrop(448)));
        Assert.Equal((341, 256), ImageTransform.ShorterSideTo(500, 375, 256)); // torchvision: int(256 · 500 / 375)
        Assert.Equal((256, 384), ImageTransform.ShorterSideTo(200, 300, 256));
        // A 64×32 image at size 28: the shorter side is already 32, so the eval crop is exact: offsets (18, 2).
        var px = new byte[64 * 32 * 3];
        for (int y = 0; y < 32; y++) for (int x = 0; x < 64; x++) { px[3 * (y * 64 + x)] = (byte)(3 * x); px[3 * (y * 64 + x) + 1] = (byte)(5 * y); }
        var pre = new Preprocessing { ImageSize = 28, Resize = ResizeMode.CropFlip, Mean = [0, 0, 0], Std = [1, 1, 1] };
        var dst = new float[3 * 28 * 28];
        new ImageTransform(pre, train: false).Apply(new RgbImage(64, 32, px), new Random(0), dst);
        Assert.Equal(3 * 18 / 255f, dst[0], 6);            // R at (0, 0) = column 18
        Assert.Equal(5 * 2 / 255f, dst[28 * 28], 6);       // G at (0, 0) = row 2
        Assert.Equal(3 * (18 + 27) / 255f, dst[27], 6);    // last column of the crop
    }

    [Fact]
    public void FgvcFinalRunsTrainOnTrainOnly()
    {
        var suite = Suite.Load(Path.Combine(RepoRoot(), "suites", "fgvc.json"));
        Assert.All(suite.Tasks, t => Assert.Equal(t.Train, t.TrainVal));
        var vtab = Suite.Load(Path.Combine(RepoRoot(), "suites", "vtab-1k.json"));
        Assert.All(vtab.Tasks, t => Assert.EndsWith("train800val200.txt", t.TrainVal));
    }

    static string RepoRoot()
    {
        var d = new DirectoryInfo(AppContext.BaseDirectory);
        while (d is not null && !Directory.Exists(Path.Combine(d.FullName, "suites"))) d = d.Parent;
        return d?.FullName ?? throw new DirectoryNotFoundException("repository root with suites/ not found");
    }

    // SciPy 1.10.1 values from tools/stats_reference.py (the paper's tests are one-tailed).
    [Fact]
    public void OneTailedTestsMatchScipy()
    {
        double[] x8 = [0.812, 0.774, 0.905, 0.661, 0.738, 0.859, 0.702, 0.931], y8 = [0.790, 0.781, 0.861, 0.652, 0.699, 0.848, 0.645, 0.902];
        var g = Statistics.WilcoxonSignedRank(x8, y8, Alternative.Greater);
        Assert.Equal((35.0, 0.0078125), (g.Statistic, g.PValue));
        Assert.Equal(0.99609375, Statistics.WilcoxonSignedRank(x8, y8, Alternative.Less).PValue, 12);
        Assert.Equal(0.015625, Statistics.WilcoxonSignedRank(x8, y8).PValue, 12); // two-sided unchanged
        double[] ax = [12, 15, 9, 20, 14, 11, 18, 16, 13, 17, 10, 19, 15, 14], ay = [10, 12, 9, 17, 16, 8, 15, 13, 11, 20, 7, 16, 14, 12];
        var ga = Statistics.WilcoxonSignedRank(ax, ay, Alternative.Greater);
        Assert.Equal(78.0, ga.Statistic);
        Assert.Equal(0.009657340005628727, ga.PValue, 12);
        Assert.Equal(0.9903426599943713, Statistics.WilcoxonSignedRank(ax, ay, Alternative.Less).PValue, 12);
        double[] tx = [5, 7, 3, 9, 6, 8, 4, 10], ty = [3, 4, 2, 6, 7, 5, 2, 6];
        Assert.Equal(0.01171875, Statistics.WilcoxonSignedRank(tx, ty, Alternative.Greater).PValue, 12);
        Assert.Equal(0.9921875, Statistics.WilcoxonSignedRank(tx, ty, Alternative.Less).PValue, 12);
        var lx = Enumerable.Range(0, 60).Select(i => (i * 37 % 101) / 10.0).ToArray();
        var ly = Enumerable.Range(0, 60).Select(i => (i * 53 % 97) / 10.0 + 0.05).ToArray();
        Assert.Equal(0.24101533921049517, Statistics.WilcoxonSignedRank(lx, ly, Alternative.Greater).PValue, 10);
        Assert.Equal(0.021575956626391196, Statistics.WelchTTest([81.2, 80.7, 81.9], [79.8, 80.4, 79.1], Alternative.Greater).PValue, 10);
        Assert.Equal(0.9784240433736088, Statistics.WelchTTest([81.2, 80.7, 81.9], [79.8, 80.4, 79.1], Alternative.Less).PValue, 10);
        Assert.Equal(0.3012540524659576, Statistics.WelchTTest([0.71, 0.74, 0.69, 0.77, 0.73, 0.70, 0.75], [0.64, 0.79, 0.58, 0.83, 0.66], Alternative.Greater).PValue, 10);
    }

    [Fact]
    public void DepthCurveReselectsThePromptLengthOnVal()
    {
        string dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir));
        var suite = new Suite { Name = "s", Root = dir, Tasks = [new SuiteTask { Name = "t", Group = "Natural", Train = "a", Val = "b", TrainVal = "c", Test = "d" }] };
        var options = new SweepOptions { Methods = ["vpt-deep"], Lrs = [1.0], WeightDecays = [0], Prompts = [1, 5], CurveDepths = ["1-1"], Seeds = 1, Epochs = 1 };
        var ran = new List<RunSpec>();
        var sweep = new Sweep(suite, bb, options, Path.Combine(dir, "sweep"))
        {
            // Full depth prefers p = 5; depth 1-1 prefers p = 1 — the curve must use 1 there.
            Runner = s =>
            {
                ran.Add(s);
                double val = s.Depth is null ? (s.Prompts == 5 ? 0.9 : 0.5) : (s.Prompts == 1 ? 0.8 : 0.3);
                return new RunResult { Spec = s, ValTop1 = s.Phase.EndsWith("tune") ? val : null, TestTop1 = s.Phase.EndsWith("tune") ? null : 0.7 };
            },
        };
        var results = sweep.Run();
        Assert.Equal(["tune", "tune", "final", "depth-tune", "depth-tune", "depth"], ran.Select(s => s.Phase));
        Assert.Equal(5, ran.Single(s => s.Phase == "final").Prompts);
        var depth = ran.Single(s => s.Phase == "depth");
        Assert.Equal((1, "1-1"), (depth.Prompts!.Value, depth.Depth!));
        Assert.Equal(6, results.Count);
    }
}
