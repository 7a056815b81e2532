using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Data;
using VptSharp.Training;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Every registered method and every VPT ablation, on a tiny ViT (issue 3's matrix).</summary>
public class MethodTests
{
    /// <summary>Every method and ablation variant, as the CLI would build it for the tiny ViT (4×4 patches of 8 px).</summary>
    static readonly Dictionary<string, Func<MethodConfig>> Specs = new()
    {
        ["vpt-shallow"] = () => new PromptConfig { Tokens = 2, Deep = false },
        ["vpt-deep"] = () => new PromptConfig { Tokens = 2 },
        ["vpt-deep-prefix-form"] = () => new PromptConfig { Tokens = 2, PrefixForm = true },
        ["vpt-deep-token-form"] = () => new PromptConfig { Tokens = 2, PrefixForm = false },
        ["prompt+bias"] = () => MethodRegistry.FromOptions("prompt+bias", new MethodOptions { Prompts = 2 }),
        ["prompt-fixed"] = () => MethodRegistry.FromOptions("prompt-fixed", new MethodOptions { Prompts = 2 }),
        ["cls-learned"] = () => new ClsLearnedConfig(),
        ["full"] = () => new FullConfig(),
        ["linear"] = () => new LinearProbeConfig(),
        ["partial-1"] = () => new PartialConfig { Blocks = 1 },
        ["mlp-3"] = () => new MlpHeadConfig { Layers = 3 },
        ["sidetune"] = () => new SidetuneConfig { Width = 4 },
        ["bias"] = () => new BiasConfig(),
        ["adapter"] = () => new AdapterConfig { Reduction = 4, Init = AdapterInit.ZeroUp },
        ["adapter-reference-init"] = () => new AdapterConfig { Reduction = 4 },
        ["location-add-1"] = () => new PromptConfig { Tokens = 1, Location = PromptLocation.Add },
        ["location-add-per-token"] = () => new PromptConfig { Tokens = 17, Deep = false, Location = PromptLocation.Add },
        ["location-prepend-pixel"] = () => new PromptConfig { Tokens = 2, Deep = false, Location = PromptLocation.PrependPixel },
        ["location-concat-channel"] = () => new PromptConfig { Tokens = 1, Deep = false, Location = PromptLocation.ConcatChannel },
        ["output-image-pool"] = () => new PromptConfig { Tokens = 2, Output = PromptOutput.ImagePool },
        ["output-prompt-pool"] = () => new PromptConfig { Tokens = 2, Output = PromptOutput.PromptPool },
        ["output-global-pool"] = () => new PromptConfig { Tokens = 2, Output = PromptOutput.GlobalPool },
        ["depth-2-to-2"] = () => new PromptConfig { Tokens = 2, FirstBlock = 2, LastBlock = 2 },
        ["sharing-intra"] = () => new PromptConfig { Tokens = 2, Sharing = PromptSharing.Intra },
        ["sharing-inter"] = () => new PromptConfig { Tokens = 2, Sharing = PromptSharing.Inter },
        ["sharing-all"] = () => new PromptConfig { Tokens = 2, Sharing = PromptSharing.All },
        ["init-cls-prototype"] = () => new PromptConfig { Tokens = 3, Init = PromptInit.ClsPrototype },
        ["vpt-pad"] = () => new PadPromptConfig { Pixels = 2 },
    };

    /// <summary>True (after checking the one-line refusal) for a spec the ViT cannot run: vpt-pad needs a ConvNet's
    /// size-agnostic input; ConvNetTests trains it.</summary>
    static bool RefusedOnViT(string spec)
    {
        var cfg = Specs[spec]();
        if (TinyBackbone.Value.Has(cfg.Requires)) return false;
        Assert.Throws<UnsupportedMethodException>(() => PromptedModel.Create(TinyBackbone.Value, cfg, 3));
        return true;
    }

    public static TheoryData<string> AllSpecs() => new(Specs.Keys);

    [Fact]
    public void EveryRegisteredMethodIsInTheMatrix()
    {
        foreach (var e in MethodRegistry.All)
            Assert.Contains(Specs.Values, f => f().Method == e.Name);
    }

    /// <summary>Backbone tensors each method may change, by an independent rule (not the method's own selection).</summary>
    static HashSet<string> ExpectedBackboneTrained(string spec, VisionTransformer vit) => spec switch
    {
        "bias" or "prompt+bias" => vit.state_dict().Keys.Where(k => k.EndsWith(".bias")).ToHashSet(),
        "cls-learned" => ["cls_token"],
        "partial-1" => vit.state_dict().Keys.Where(k => k.StartsWith("blocks.1.") || k.StartsWith("norm.")).ToHashSet(),
        "full" => vit.state_dict().Keys.ToHashSet(),
        "location-concat-channel" => ["patch_embed.proj.weight", "patch_embed.proj.bias"],
        _ => [],
    };

    [Theory]
    [MemberData(nameof(AllSpecs))]
    public void TwoStepsChangeExactlyTheIntendedTensors(string spec)
    {
        if (RefusedOnViT(spec)) return;
        var vit = TinyVit(1);
        var before = vit.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        manual_seed(2);
        var model = PromptedModel.Create(vit, Specs[spec](), 3);
        var methodBefore = model.method.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var trainable = model.TrainableParameters();
        var expected = ExpectedBackboneTrained(spec, vit);
        var backboneTrained = trainable.Where(p => p.Name.StartsWith("backbone.")).Select(p => p.Name["backbone.".Length..]).ToHashSet();
        Assert.Equal(expected.Order(), backboneTrained.Order());
        var initial = trainable.ToDictionary(p => p.Name, p => p.Param.detach().clone());
        var opt = optim.SGD(trainable.Select(p => p.Param), 0.5, momentum: 0.9);
        model.train();
        // Two steps: a zero-initialised layer (adapter up-projection, concat-channel filter) passes gradient on only once it moved.
        for (int step = 0; step < 2; step++)
        {
            var loss = nn.functional.cross_entropy(model.forward(randn(4, 3, 32, 32)), tensor(new long[] { 0, 1, 2, 0 }));
            opt.zero_grad(); loss.backward(); opt.step();
        }
        foreach (var (name, t) in vit.state_dict())
            Assert.True(expected.Contains(name) != Same(before[name], t), $"{name}: expected {(expected.Contains(name) ? "trained" : "bit-identical")}");
        // The reference's adapter init (both projections zero) passes gradient to the up-projection's bias only.
        bool Dead(string name) => spec == "adapter-reference-init" && name.StartsWith("method.") && !(name.StartsWith("method.up.") && name.EndsWith(".bias"));
        foreach (var (name, p) in model.TrainableParameters())
            Assert.True(Dead(name) == Same(initial[name], p), $"{name}: expected {(Dead(name) ? "unchanged" : "trained")}");
        var trainedMethod = trainable.Where(p => p.Name.StartsWith("method.")).Select(p => p.Name["method.".Length..]).ToHashSet();
        foreach (var (name, p) in model.method.named_parameters())
            // BatchNorm running statistics (mlp-k) are not trained but move with every training-mode forward.
            Assert.Equal(!trainedMethod.Contains(name) && !StoredBatchNorm.IsStatistic(name) || Dead("method." + name), Same(methodBefore[name], p));
        Assert.Equal(spec == "prompt-fixed", methodBefore.Count > 0 && trainedMethod.Count == 0);
    }

    /// <summary>
    /// A bfloat16 frozen backbone (`vpt train --bf16`): every method whose trainable tensors live outside the backbone
    /// runs on it with those tensors and the head in float32 — features within bf16 rounding of float32's, gradients
    /// pointing the same way, no backbone gradient; methods that train backbone parameters are refused.
    /// </summary>
    [Theory]
    [MemberData(nameof(AllSpecs))]
    public void Bf16BackboneKeepsMethodTensorsFloat32(string spec)
    {
        if (RefusedOnViT(spec)) return;
        using var vit = TinyVit(3);
        manual_seed(1);
        using var model = PromptedModel.Create(vit, Specs[spec](), 3);
        if (model.method.BackboneParametersToTrain(vit).Any())
        {
            var e = Assert.Throws<InvalidSettingException>(() => model.SetBackboneDtype(ScalarType.BFloat16));
            Assert.Equal("precision", e.Setting);
            Assert.Contains("trains backbone parameters", e.Message);
            return;
        }
        manual_seed(2);
        var x = randn(4, 3, 32, 32);
        var y = tensor(new long[] { 0, 1, 2, 0 });
        model.eval(); // no dropout: both precisions see the same network
        (Tensor Features, Tensor Gradient) Run()
        {
            model.zero_grad();
            var f = model.Features(x);
            nn.functional.cross_entropy(model.ForwardHead(f), y).backward();
            return (f.detach(), cat(model.TrainableParameters().Select(p => p.Param.grad!.flatten()).ToArray()));
        }
        var (f32, g32) = Run();
        model.SetBackboneDtype(ScalarType.BFloat16);
        Assert.All(vit.parameters(), p => Assert.True(p.dtype == ScalarType.BFloat16 && !p.requires_grad));
        Assert.All(model.TrainableParameters(), p => Assert.True(p.Param.dtype == ScalarType.Float32 && p.Param.requires_grad, p.Name));
        var (f16, g16) = Run();
        Assert.Equal(ScalarType.Float32, f16.dtype);
        double featureError = (f16 - f32).norm().item<float>() / f32.norm().item<float>();
        double cosine = (g16 * g32).sum().item<float>() / (g16.norm().item<float>() * g32.norm().item<float>());
        Console.WriteLine($"{spec}: bf16 vs fp32 features rel. error {featureError:E2}, gradient cosine {cosine:F5}");
        Assert.True(featureError < 0.05, $"features {featureError}");
        Assert.True(cosine > 0.98, $"gradient cosine {cosine}");
    }

    [Theory]
    [MemberData(nameof(AllSpecs))]
    public void TaskFileRoundTripsToIdenticalLogits(string spec)
    {
        if (RefusedOnViT(spec)) return;
        var dir = TempDir();
        using var bb = BackboneLoader.Load(SaveTinyBackbone(dir, seed: 3));
        manual_seed(9);
        var model = PromptedModel.Create(bb.Model, Specs[spec](), 3);
        using (no_grad()) foreach (var (_, p) in model.TaskTensors()) p.add_(randn_like(p) * 0.1); // as if trained
        model.eval();
        var x = randn(2, 3, 32, 32);
        Tensor expected;
        using (no_grad()) expected = model.forward(x);
        string task = Path.Combine(dir, "task.vpt");
        TaskArtifact.FromModel(model, new BackboneRef(bb.Source, bb.Sha256, bb.Config), ["a", "b", "c"], new Preprocessing { ImageSize = 32 }).Save(task);
        var stored = TaskArtifact.Load(task);
        Assert.Equal(model.TaskTensors().Select(p => p.Name).Order(), stored.Tensors.Keys.Order()); // only what the method owns or trains
        using var fresh = BackboneLoader.Load(bb.WeightsPath!); // a new, untouched copy of the backbone
        var loaded = stored.Attach(fresh, task);
        using (no_grad()) Assert.True(MaxAbsDiff(loaded.forward(x), expected) == 0, spec);
    }

    /// <summary>A short real training run (coloured squares, 3 classes, 60 images, 48 steps) lowers the training loss.</summary>
    /// <summary>Base lrs off the defaults: the adapters' head starts at the reference's kaiming scale and, under AdamW,
    /// needs a larger step to move within 8 epochs; "add-1" adds one prompt to every token, CLS included, in every block,
    /// which SGD at base lr 2.0 overshoots.</summary>
    static readonly Dictionary<string, double> LrOverride = new() { ["adapter"] = 0.05, ["adapter-reference-init"] = 0.05, ["location-add-1"] = 0.5 };

    [Theory]
    [MemberData(nameof(AllSpecs))]
    public void ShortTrainingReducesLoss(string spec)
    {
        if (RefusedOnViT(spec)) return;
        var dir = TempDir();
        var data = FileImageDataset.FromFolder(MakeImageFolder(Path.Combine(dir, "data"), classes: 3, perClass: 20, seed: 4));
        manual_seed(5);
        var cfg = Specs[spec]();
        var model = PromptedModel.Create(TinyVit(6), cfg, 3);
        bool adamw = Recipe.For(cfg.Method).Optimizer == OptimizerKind.AdamW; // the reference's optimizer for the method
        var opts = new TrainOptions
        {
            Epochs = 8, BatchSize = 10, WarmupEpochs = 1, Seed = 1, Workers = 1,
            Optimizer = adamw ? OptimizerKind.AdamW : OptimizerKind.Sgd, BaseLr = LrOverride.GetValueOrDefault(spec, adamw ? 0.01 : 2.0),
        };
        var r = new Trainer(opts).Fit(model, data, null, new Preprocessing { ImageSize = 32 });
        double first = r.History[0].TrainLoss, last = r.History[^1].TrainLoss;
        Console.WriteLine($"{spec}: loss {first:F3} → {last:F3} ({last / first:F2} of the first epoch's)");
        Assert.True(last < 0.8 * first, $"{spec}: loss {first:F3} → {last:F3}");
    }

    [Fact]
    public void ClsPrototypeInitSetsEveryBlocksPromptsToClassMeans()
    {
        var dir = TempDir();
        var data = FileImageDataset.FromFolder(MakeImageFolder(Path.Combine(dir, "data"), classes: 3, perClass: 5, seed: 2));
        var vit = TinyVit(3);
        var pre = new Preprocessing { ImageSize = 32 };
        var model = PromptedModel.Create(vit, new PromptConfig { Tokens = 3, Init = PromptInit.ClsPrototype }, 3);
        Assert.True(ClsPrototypes.InitializeIfRequested(model, data, pre, new TrainOptions { Workers = 1 }));
        // Independent computation: the plain backbone's CLS output per image, averaged per class.
        var transform = new ImageTransform(pre, train: false);
        var pixels = new float[data.Count * 3 * 32 * 32];
        for (int i = 0; i < data.Count; i++) transform.Apply(data.Load(i), new Random(0), pixels.AsSpan(i * 3072, 3072));
        var x = tensor(pixels).reshape(data.Count, 3, 32, 32);
        using (no_grad())
        {
            var cls = vit.ForwardFeatures(x).select(1, 0);
            var prompts = ((VisualPrompts)model.method).prompts;
            for (int c = 0; c < 3; c++)
            {
                var idx = Enumerable.Range(0, data.Count).Where(i => data.LabelOf(i) == c).Select(i => (long)i).ToArray();
                var mean = cls.index_select(0, tensor(idx)).mean([0]);
                for (int block = 0; block < 2; block++)
                    Assert.True(MaxAbsDiff(prompts[block, c], mean) < 1e-5);
            }
        }
        var wrongLength = PromptedModel.Create(vit, new PromptConfig { Tokens = 5, Init = PromptInit.ClsPrototype }, 3);
        var e = Assert.Throws<InvalidSettingException>(() => ClsPrototypes.InitializeIfRequested(wrongLength, data, pre, new TrainOptions { Workers = 1 }));
        Assert.Equal(("prompts", 5, "cls-prototype init needs one prompt per class: 3"), (e.Setting, e.Value, e.Fact));
    }

    [Fact]
    public void AddLocationAddsToEveryTokenIncludingCls()
    {
        var cfg = new PromptConfig { Tokens = 17, Deep = false, Dropout = 0, Location = PromptLocation.Add };
        var p = (VisualPrompts)cfg.Attach(TinyBackbone.Value);
        var tokens = randn(2, 17, 32);
        var y = p.BeforeBlock(0, tokens);
        Assert.Equal(tokens.shape, y.shape);
        Assert.True(MaxAbsDiff(y, tokens + p.prompts[0]) == 0); // prompt i on token i, CLS (token 0) included, as the reference's "add"
        Assert.Equal(0, p.ExtraTokens);
        Assert.Equal("prompts", Assert.Throws<InvalidSettingException>(() => new PromptConfig { Tokens = 16, Location = PromptLocation.Add }.Attach(TinyBackbone.Value)).Setting); // p ∈ {1, N + 1}
        Assert.Equal("prompt-output", Assert.Throws<InvalidSettingException>(() => new PromptConfig { Tokens = 1, Location = PromptLocation.Add, Output = PromptOutput.PromptPool }.Attach(TinyBackbone.Value)).Setting);
    }

    [Fact]
    public void PixelLocationsActOnTheInputThroughTheFrozenPatchEmbedding()
    {
        var vit = TinyVit(4);
        var x = randn(2, 3, 32, 32);
        // Prepend-pixel: the prompt tokens are the patch embedding of the prompt pixels; image tokens follow unchanged.
        var pixel = (PixelPrompts)new PromptConfig { Tokens = 2, Deep = false, Location = PromptLocation.PrependPixel }.Attach(vit);
        using (no_grad())
        {
            var emb = pixel.Embed(vit, x);
            Assert.Equal(new long[] { 2, 1 + 2 + 16, 32 }, emb.shape);
            var direct = vit.patch_embed.proj.forward(pixel.pixels).flatten(1);
            Assert.True(MaxAbsDiff(emb[0, 1..3], direct) < 1e-6);
            Assert.True(Same(emb[.., 3..], vit.Embed(x)[.., 1..]));
        }
        // Concat-channel: equals a (3 + p)-channel patch projection over [RGB; prompt channels] with the extra filters appended.
        var channel = (ChannelPrompt)new PromptConfig { Tokens = 2, Deep = false, Location = PromptLocation.ConcatChannel }.Attach(vit);
        using (no_grad())
        {
            double bound = Math.Sqrt(6.0 / (3 * 8 * 8 + 32)); // the reference's xavier-uniform init of prompts and new filters
            Assert.InRange(channel.channel_proj.abs().max().item<float>(), 0.5 * bound, bound);
            Assert.InRange(channel.channel.abs().max().item<float>(), 0.5 * bound, bound);
            var w4 = cat([vit.patch_embed.proj.weight!, channel.channel_proj], 1);
            var x4 = cat([x, channel.channel.expand(2, -1, -1, -1)], 1); // [2, 5, 32, 32]
            var patches = nn.functional.conv2d(x4, w4, vit.patch_embed.proj.bias, strides: [8, 8]).flatten(2).transpose(1, 2);
            var expected = cat([vit.cls_token.expand(2, -1, -1), patches], 1) + vit.pos_embed;
            double diff = MaxAbsDiff(channel.Embed(vit, x), expected);
            Assert.True(diff < 1e-4, $"max |diff| {diff:E2}"); // values of order 10: summation order differs
        }
        var e = Assert.Throws<InvalidSettingException>(() => new PromptConfig { Deep = true, Location = PromptLocation.PrependPixel }.Attach(vit));
        Assert.Contains("vpt-shallow", e.Message);
    }

    [Fact]
    public void SidetuneBlendsWithALearnedAlpha()
    {
        var vit = TinyVit(5);
        var model = PromptedModel.Create(vit, new SidetuneConfig { Width = 4 }, 3);
        var side = (Sidetune)model.method;
        Assert.Equal(0.5, side.Alpha, 6);
        var x = randn(2, 3, 32, 32);
        using (no_grad())
        {
            var expected = 0.5 * vit.ForwardFeatures(x).select(1, 0) + 0.5 * side.SideFeatures(x);
            Assert.True(MaxAbsDiff(model.Features(x), expected) < 1e-6);
        }
    }

    [Fact]
    public void VitB16CountsOfNewMethodsMatchClosedForms()
    {
        var vit = new VisionTransformer(VitConfig.Preset("vit-b16"));
        vit.Freeze();
        long d = 768, L = 12, P = 16, c = 16;
        long Count(MethodConfig cfg)
        {
            using var m = PromptedModel.Create(vit, cfg, 10);
            return m.MethodCount;
        }
        Assert.Equal(9 * (3 * c + 42 * c * c) + 15 * c + 8 * c * d + d + 1, Count(new SidetuneConfig())); // 196,513
        Assert.Equal(196_513, Count(new SidetuneConfig()));
        Assert.Equal(L * d, Count(new PromptConfig { Tokens = 1, Location = PromptLocation.Add }));
        Assert.Equal(197 * d, Count(new PromptConfig { Tokens = 197, Deep = false, Location = PromptLocation.Add })); // CLS + 196 patches
        Assert.Equal(50 * 3 * P * P, Count(new PromptConfig { Tokens = 50, Deep = false, Location = PromptLocation.PrependPixel }));
        Assert.Equal(224 * 224 + d * P * P + 3 * d * P * P + d, Count(new PromptConfig { Tokens = 1, Deep = false, Location = PromptLocation.ConcatChannel })); // + the whole patch projection
        Assert.Equal(L * 100 * d, Count(new PromptConfig { Tokens = 100, Init = PromptInit.ClsPrototype }));
    }
}
