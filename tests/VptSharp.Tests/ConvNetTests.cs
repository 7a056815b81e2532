using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// ResNet and ConvNeXt against torchvision 0.14 (goldens from tools/make_convnet_goldens.py: tiny random configs of
/// torchvision's own blocks, every tensor perturbed), the full-size key layouts, exact parameter groups, and the
/// paper's ConvNet methods (Table 5: Linear, Partial-1, Mlp-3, Bias, Full, VPT-pad) with exact trainable counts.
/// </summary>
public class ConvNetTests
{
    static string G(string name) => Golden(Path.Combine("convnets", name));

    /// <summary>A golden checkpoint loaded as its family (architecture inferred from the tensors), with its classifier.</summary>
    public static Backbone LoadGolden(string name, bool timm, int imageSize)
    {
        var raw = CheckpointReader.Read(G(timm ? $"{name}_timm.safetensors" : $"{name}.pth"));
        Backbone net;
        if (name.StartsWith("resnet"))
        {
            var m = ResNetCheckpointKeys.ToTorchvision(raw);
            var r = new ResNet(ResNetCheckpointKeys.InferConfig(m, imageSize), (int)m["fc.weight"].shape[0]);
            r.LoadTorchvision(m, name);
            net = r;
        }
        else
        {
            var m = ConvNeXtCheckpointKeys.ToTorchvision(raw);
            var c = new ConvNeXt(ConvNeXtCheckpointKeys.InferConfig(m, imageSize), (int)m["classifier.2.weight"].shape[0]);
            c.LoadTorchvision(m, name);
            net = c;
        }
        net.Freeze();
        return net;
    }

    [Theory]
    [InlineData("resnet_basic", false, 64)]
    [InlineData("resnet_basic", true, 64)]
    [InlineData("resnet_bottleneck", false, 64)]
    [InlineData("resnet_bottleneck", true, 64)]
    [InlineData("convnext", false, 32)]
    [InlineData("convnext", true, 32)]
    public void FeaturesAndLogitsMatchTorchvision(string name, bool timm, int image)
    {
        using var net = LoadGolden(name, timm, image);
        var x = Npy.Read(G($"{name}_input.npy"));
        using var _ = no_grad();
        using var f = net.ForwardFeatures(x);
        double features = MaxAbsDiff(net.ForwardHead(f, preLogits: true), Npy.Read(G($"{name}_features.npy")));
        double logits = MaxAbsDiff(net.forward(x), Npy.Read(G($"{name}_logits.npy")));
        Console.WriteLine($"{name} ({(timm ? "timm safetensors" : "torchvision .pth")}): features max |Δ| {features:E2}, logits {logits:E2}");
        Assert.True(features < 1e-4 && logits < 1e-4, $"features {features}, logits {logits}");
    }

    /// <summary>ResNets with every BatchNorm folded into its conv for inference (stem, 3×3s, 1×1s, strided downsamples)
    /// still match torchvision; unfolding restores the two-step path; a bf16 backbone folds in bf16.</summary>
    [Theory]
    [InlineData("resnet_basic")]
    [InlineData("resnet_bottleneck")]
    public void FoldedNormsMatchTorchvision(string name)
    {
        using var net = LoadGolden(name, false, 64);
        var x = Npy.Read(G($"{name}_input.npy"));
        var golden = Npy.Read(G($"{name}_features.npy"));
        using var _ = no_grad();
        net.FoldNormsForInference();
        using (var f = net.ForwardFeatures(x))
        {
            double d = MaxAbsDiff(net.ForwardHead(f, preLogits: true), golden);
            Assert.True(d < 1e-4, $"folded: features max |Δ| {d}");
        }
        // Folding changes the arithmetic (one rounding of w·γ/σ): a changed value proves the folded path ran.
        using var folded = net.ForwardFeatures(x);
        net.FoldNormsForInference(false);
        using var unfolded = net.ForwardFeatures(x);
        Assert.True(MaxAbsDiff(folded, unfolded) > 0, "folding left the arithmetic unchanged: the folded path did not run");

        net.to(ScalarType.BFloat16);
        double Bf16Error()
        {
            using var half = net.ForwardFeatures(x.to(ScalarType.BFloat16));
            return MaxAbsDiff(net.ForwardHead(half, preLogits: true).to(ScalarType.Float32), golden) / golden.abs().max().item<float>();
        }
        double twoStep = Bf16Error();
        net.FoldNormsForInference();
        double oneStep = Bf16Error();
        Console.WriteLine($"{name} bf16 relative error: norms folded {oneStep:E2}, as two steps {twoStep:E2}");
        Assert.True(oneStep < 1.5 * twoStep + 1e-3, $"bf16: folded {oneStep} vs two steps {twoStep}");
        net.to(ScalarType.Float32);
        Assert.Throws<InvalidOperationException>(() => net.ForwardFeatures(x)); // folded in bf16; the input is fp32 now
    }

    static List<(string Key, long[] Shape)> KeyList(string file) => File.ReadAllLines(G(file)).Select(l => l.Split(' '))
        .Select(p => (p[0], p.Length > 1 && p[1].Length > 0 ? p[1].Split(',').Select(long.Parse).ToArray() : Array.Empty<long>())).ToList();

    /// <summary>Every key of torchvision's full-size resnet18/50 and convnext_tiny/base (and timm's layout of the ConvNeXts)
    /// maps onto the module built from the preset, with the same shape; nothing is left over.</summary>
    [Theory]
    [InlineData("resnet18")]
    [InlineData("resnet50")]
    [InlineData("convnext_tiny")]
    [InlineData("convnext_base")]
    public void FullSizeCheckpointLayoutsMapKeyForKey(string name)
    {
        using Backbone net = name.StartsWith("resnet") ? new ResNet(ResNetConfig.Preset(name), 1000) : new ConvNeXt(ConvNeXtConfig.Preset(name), 1000);
        var ours = net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var layouts = new List<string> { $"{name}_keys.txt" };
        if (name.StartsWith("convnext")) layouts.Add($"{name}_timm_keys.txt");
        foreach (var layout in layouts)
        {
            var keys = KeyList(layout);
            var raw = keys.ToDictionary(k => k.Key, k => empty(k.Shape)); // shapes only: no weights needed
            var mapped = name.StartsWith("resnet") ? ResNetCheckpointKeys.ToTorchvision(raw) : ConvNeXtCheckpointKeys.ToTorchvision(raw);
            var expected = ours.Keys.Where(k => !k.EndsWith("num_batches_tracked")).Order().ToList();
            Assert.Equal(expected, mapped.Keys.Order().ToList());
            foreach (var (k, t) in mapped) Assert.True(t.shape.SequenceEqual(ours[k]), $"{layout}: {k} [{string.Join(",", t.shape)}] vs [{string.Join(",", ours[k])}]");
            var inferred = name.StartsWith("resnet") ? (object)ResNetCheckpointKeys.InferConfig(mapped) : ConvNeXtCheckpointKeys.InferConfig(mapped);
            Assert.Equal(name.StartsWith("resnet") ? Describe(ResNetConfig.Preset(name)) : Describe(ConvNeXtConfig.Preset(name)), Describe(inferred));
        }
        Assert.Equal(KeyList($"{name}_keys.txt").Select(k => k.Key).Order(), ours.Keys.Order()); // torchvision's own names, buffers included
    }

    static string Describe(object cfg) => System.Text.Json.JsonSerializer.Serialize(cfg);

    /// <summary>Parameter groups at full size against counts computed by torchvision from the same architectures.</summary>
    [Fact]
    public void FullSizeParameterGroupsAreExact()
    {
        long Count(Backbone b, ParameterGroup g, int k = 1) => b.Parameters(g, k).Sum(p => p.Param.numel());
        using (var r = new ResNet(ResNetConfig.Preset("resnet50"), 1000))
        {
            Assert.Equal(23_508_032, Count(r, ParameterGroup.All)); // torchvision resnet50 without fc
            Assert.Equal(26_560, Count(r, ParameterGroup.Biases)); // BatchNorm biases: the convs have none
            Assert.Equal(53_120, Count(r, ParameterGroup.Norms));
            Assert.Equal(14_964_736, Count(r, ParameterGroup.LastBlocks, 1)); // partial-1 = layer4
            Assert.Equal(16, r.Depth);
            Assert.Throws<ArgumentOutOfRangeException>(() => Count(r, ParameterGroup.LastBlocks, 5));
        }
        using (var c = new ConvNeXt(ConvNeXtConfig.Preset("convnext_base"), 1000))
        {
            Assert.Equal(87_566_464, Count(c, ParameterGroup.All));
            Assert.Equal(130_304, Count(c, ParameterGroup.Biases));
            Assert.Equal(40_192, Count(c, ParameterGroup.Norms));
            Assert.Equal(27_445_248, Count(c, ParameterGroup.LastBlocks, 1)); // last stage, its downsample, the final norm
            Assert.Equal(36, c.Depth);
        }
    }

    /// <summary>VPT-pad in the reference code's form equals it: two [0, 1] pixel tensors (top+bottom, left+right), drawn
    /// U(0, 1), ImageNet-normalised, then concatenated around the image, through torchvision.</summary>
    [Fact]
    public void PixelPadPromptLogitsMatchReference()
    {
        using var tb = Npy.Read(G("pad3px_tb.npy"));
        using var lr = Npy.Read(G("pad3px_lr.npy"));
        AssertPadLogitsMatch(PadInit.Pixels, [tb.narrow(2, 0, 3), tb.narrow(2, 3, 3), lr.narrow(3, 0, 3), lr.narrow(3, 3, 3)], "pad3px_logits.npy");
    }

    /// <summary>VPT-pad's xavier form (<c>--pad-init xavier</c>) on a ResNet equals the reference written for it: the image
    /// framed by the four normalised strips, through torchvision.</summary>
    [Fact]
    public void PadPromptLogitsMatchReference() =>
        AssertPadLogitsMatch(PadInit.Xavier, [.. new[] { "top", "bottom", "left", "right" }.Select(s => Npy.Read(G($"pad3_{s}.npy")))], "pad3_logits.npy");

    /// <summary>vpt-pad p = 3 on the golden resnet_basic with the given strips (top, bottom, left, right) and the
    /// checkpoint's classifier as head: its logits against the reference's.</summary>
    static void AssertPadLogitsMatch(PadInit init, Tensor[] strips, string goldenLogits)
    {
        using var net = LoadGolden("resnet_basic", false, 64);
        var model = PromptedModel.Create(net, new PadPromptConfig { Pixels = 3, Init = init }, 5);
        var pad = (PadPrompts)model.method;
        using (no_grad())
        {
            foreach (var (param, value) in new[] { pad.top, pad.bottom, pad.left, pad.right }.Zip(strips)) param.copy_(value);
            model.head.weight!.copy_(net.Classifier!.weight!); model.head.bias!.copy_(net.Classifier.bias!);
        }
        model.eval();
        using var _ = no_grad();
        double d = MaxAbsDiff(model.forward(Npy.Read(G("resnet_basic_input.npy"))), Npy.Read(G(goldenLogits)));
        Console.WriteLine($"vpt-pad p=3 ({KebabCase.Of(init)}) on resnet_basic: logits max |Δ| {d:E2}");
        Assert.True(d < 1e-4, $"{d}");
    }

    [Fact]
    public void PadPromptCountsAndInitFollowThePaper()
    {
        using var r50 = new ResNet(ResNetConfig.Preset("resnet50"));
        r50.Freeze();
        manual_seed(0);
        using var model = PromptedModel.Create(r50, new PadPromptConfig { Pixels = 5 }, 10);
        Assert.Equal(3L * (234 * 234 - 224 * 224), model.MethodCount); // 13,740
        Assert.Equal(3L * (234 * 234 - 224 * 224) + 2048 * 10 + 10, model.TrainableCount);
        // The reference's init: U(0, 1) pixels (mean 1/2, std 1/√12 over 3·5·234 values).
        var pad = (PadPrompts)model.method;
        Assert.True(pad.top.min().item<float>() >= 0 && pad.top.max().item<float>() <= 1);
        Assert.InRange(pad.top.mean().item<float>(), 0.48, 0.52);
        Assert.InRange(pad.top.std().item<float>(), 0.95 / Math.Sqrt(12), 1.05 / Math.Sqrt(12));
        // What the backbone sees is normalised like the image: a border of value v pads as (v − mean_c) / std_c.
        using (no_grad())
        {
            foreach (var s in new[] { pad.top, pad.bottom, pad.left, pad.right }) s.fill_(0.5f);
            using var padded = pad.Pad(zeros(1, 3, 224, 224));
            for (int c = 0; c < 3; c++)
                Assert.Equal((0.5f - r50.PixelMean[c]) / r50.PixelStd[c], padded[0, c, 0, 0].item<float>(), 5);
            Assert.Equal(0f, padded[0, 0, 5, 5].item<float>());
        }
        // --pad-init xavier: xavier-uniform on [1, 3, 5, 234], bound √(6 / (4·5·234)), used as normalised values.
        using var xavier = new PadPrompts(new PadPromptConfig { Pixels = 5, Init = PadInit.Xavier }, 3, 224, 224, r50.PixelMean, r50.PixelStd);
        double bound = Math.Sqrt(6.0 / (4 * 5 * 234));
        Assert.True(xavier.top.abs().max().item<float>() <= bound && xavier.top.abs().max().item<float>() > 0.9 * bound);
        Assert.InRange(xavier.top.std().item<float>(), 0.9 * bound / Math.Sqrt(3), 1.1 * bound / Math.Sqrt(3));
        using (no_grad()) using (var framed = xavier.Pad(zeros(1, 3, 224, 224)))
            Assert.Equal(xavier.top[0, 1, 2, 7].item<float>(), framed[0, 1, 2, 7].item<float>());
        foreach (int p in new[] { 1, 3, 5, 7, 9, 11 })
            Assert.Equal(3L * ((224 + 2 * p) * (224 + 2 * p) - 224 * 224), new PadPrompts(new PadPromptConfig { Pixels = p }, 3, 224, 224, r50.PixelMean, r50.PixelStd).parameters().Sum(t => t.numel()));
        Assert.Equal("vpt-pad p=5", MethodRegistry.FromOptions("vpt-pad", new MethodOptions { Prompts = 5 }).Label);
        Assert.Equal("vpt-pad p=5 xavier", MethodRegistry.FromOptions("vpt-pad", new MethodOptions { Prompts = 5, PadInit = PadInit.Xavier }).Label);
        Assert.Equal([SweepAxis.PadPixels], MethodRegistry.Get("vpt-pad").SweepAxes); // its own grid (paper: 1,3,5,7,9,11 pixels), not the token counts
    }

    /// <summary>Task files keep their meaning: a vpt-pad config written before "init" existed holds xavier strips in
    /// normalised space, and one written now says which form it is.</summary>
    [Fact]
    public void PadPromptConfigJsonKeepsOldFilesXavier()
    {
        var legacy = (PadPromptConfig)MethodRegistry.FromJson("vpt-pad", """{"pixels":7}""");
        Assert.Equal((7, PadInit.Xavier), (legacy.Pixels, legacy.Init));
        foreach (var init in new[] { PadInit.Pixels, PadInit.Xavier })
        {
            string json = MethodRegistry.ToJson(new PadPromptConfig { Pixels = 3, Init = init });
            Assert.Contains($"\"init\":\"{KebabCase.Of(init)}\"", json);
            Assert.Equal(new PadPromptConfig { Pixels = 3, Init = init }, MethodRegistry.FromJson("vpt-pad", json));
        }
        Assert.Equal(PadInit.Pixels, new PadPromptConfig().Init);
    }

    /// <summary>A state dict is untrusted input: the architecture it implies is checked against the tensors it holds
    /// before a module is built, and each refusal is one line naming the file and the tensor.</summary>
    [Fact]
    public void HostileConvNetStateDictsAreRefusedBeforeAnythingIsBuilt()
    {
        string Refusal(Dictionary<string, Tensor> sd) =>
            Assert.Throws<CheckpointException>(() => ConvNetLoader.TryFromTensors(sd, "evil.pth", new ArchOverrides(), "evil.pth")).Message;
        Dictionary<string, Tensor> ResNetWith(params (string Key, Tensor T)[] more)
        {
            var sd = new Dictionary<string, Tensor> { ["conv1.weight"] = zeros(8, 3, 7, 7), ["layer1.0.conv1.weight"] = zeros(4, 8, 3, 3), ["layer1.0.conv2.weight"] = zeros(4, 4, 3, 3) };
            foreach (var (k, t) in more) sd[k] = t;
            return sd;
        }
        // No values, yet a 2e9-channel stage would be built from its shape.
        Assert.Equal("evil.pth: 'layer1.0.conv2.weight' is [2000000000,0,3,3], not a ResNet convolution",
            Refusal(ResNetWith(("layer1.0.conv2.weight", empty(2_000_000_000, 0, 3, 3)))));
        // A thousand one-value blocks would each be built at the stage's width.
        var many = ResNetWith([.. Enumerable.Range(1, 1000).Select(b => ($"layer1.{b}.conv1.weight", zeros(1)))]);
        Assert.Equal("evil.pth: 'layer1.1.conv2.weight' is missing; not a whole ResNet state dict", Refusal(many));
        Assert.Equal("evil.pth: 'layer1.1.conv2.weight' is [1,1,3,3], not a ResNet convolution [4,4,3,3]",
            Refusal(ResNetWith(("layer1.1.conv1.weight", zeros(4, 4, 3, 3)), ("layer1.1.conv2.weight", zeros(1, 1, 3, 3)))));
        Assert.Equal("evil.pth: 'conv1.weight' is [8], not a ResNet convolution", Refusal(ResNetWith(("conv1.weight", zeros(8)))));
        Assert.Equal("evil.pth: holds both 'conv1.weight' and 'module.conv1.weight'; keep one of them",
            Refusal(ResNetWith(("module.conv1.weight", zeros(8, 3, 7, 7)))));
        // A damaged file's values: NaN weights, negative BatchNorm variances.
        var golden = CheckpointReader.Read(G("resnet_basic.pth"));
        var nan = golden.ToDictionary(kv => kv.Key, kv => kv.Key == "layer2.0.conv1.weight" ? kv.Value.clone().fill_(float.NaN) : kv.Value);
        Assert.Equal("evil.pth: 'layer2.0.conv1.weight' holds NaN or infinite values; the file is damaged", Refusal(nan));
        var negative = golden.ToDictionary(kv => kv.Key, kv => kv.Key == "bn1.running_var" ? -kv.Value : kv.Value);
        Assert.Equal("evil.pth: 'bn1.running_var' holds negative variances; the file is damaged", Refusal(negative));
        // timm ConvNeXt keys too short or not numbered where the layout numbers them.
        foreach (var key in new[] { "stages.0", "head.norm", "stages.x.blocks.0.gamma", "stages.0.blocks.y.gamma" })
            Assert.Equal($"evil.pth: '{key}' is not a ConvNeXt tensor in timm's layout",
                Refusal(new() { ["stem.0.weight"] = zeros(8, 3, 4, 4), [key] = zeros(8) }));
    }

    /// <summary>A ViT's position embeddings fix its input size: vpt-pad is refused there in one line (VPT's ViT form is tokens).</summary>
    [Fact]
    public void PadPromptIsRefusedOnViT()
    {
        var e = Assert.Throws<UnsupportedMethodException>(() => PromptedModel.Create(TinyBackbone.Value, new PadPromptConfig(), 3));
        Assert.Equal("method vpt-pad needs to take images larger than it was built for, which the vit backbone does not offer", e.Message);
    }

    public static Backbone TinyResNet(int seed = 0)
    {
        manual_seed(seed);
        var r = new ResNet(new ResNetConfig { Layers = [1, 1, 1, 1], Widths = [16, 16, 32, 32], StemWidth = 16, ImageSize = 32 });
        r.Freeze();
        return r;
    }

    public static Backbone TinyConvNeXt(int seed = 0)
    {
        manual_seed(seed);
        var c = new ConvNeXt(new ConvNeXtConfig { Depths = [1, 1, 2, 1], Widths = [16, 16, 32, 32], ImageSize = 32, LayerScale = 0.5 });
        c.Freeze();
        return c;
    }

    /// <summary>Table 5's methods on each ConvNet: exact trainable counts (by an independent rule over torchvision names),
    /// the loss falls over steps on a repeated batch, and exactly the intended backbone tensors change.</summary>
    [Theory]
    [InlineData("resnet")]
    [InlineData("convnext")]
    public void Table5MethodsTrainOnConvNets(string family)
    {
        string[] methods = ["linear", "partial-1", "mlp-3", "bias", "full", "vpt-pad"];
        foreach (var method in methods)
        {
            using var net = family == "resnet" ? TinyResNet(1) : TinyConvNeXt(1);
            long d = net.NumFeatures, C = 3;
            var names = net.named_parameters().ToDictionary(p => p.name, p => p.parameter.numel());
            string[] lastStage = family == "resnet" ? ["layer4."] : ["features.7.", "features.6.", "classifier.0."];
            var expectedBackbone = method switch
            {
                "partial-1" => names.Keys.Where(k => lastStage.Any(k.StartsWith)).ToHashSet(),
                "bias" => names.Keys.Where(k => k.EndsWith(".bias")).ToHashSet(),
                "full" => names.Keys.ToHashSet(),
                _ => [],
            };
            long expectedOwn = method switch
            {
                "mlp-3" => 2 * (d * d + 3 * d), // (k−1)·(Linear d² + d, BatchNorm 2d), as the reference head
                "vpt-pad" => 3L * ((32 + 10) * (32 + 10) - 32 * 32),
                _ => 0,
            };
            var cfg = MethodRegistry.FromOptions(method, new MethodOptions { Prompts = 5 });
            var before = net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            manual_seed(2);
            using var model = PromptedModel.Create(net, cfg, (int)C);
            Assert.Equal(expectedBackbone.Sum(k => names[k]) + expectedOwn + d * C + C, model.TrainableCount);
            var trainable = model.TrainableParameters();
            var opt = cfg.TrainsWholeBackbone ? (optim.Optimizer)optim.AdamW(trainable.Select(p => p.Param), 0.003)
                : optim.SGD(trainable.Select(p => p.Param), 0.05, momentum: 0.9);
            model.train();
            var x = randn(6, 3, 32, 32, generator: new Generator(7));
            var y = tensor(new long[] { 0, 1, 2, 0, 1, 2 });
            float first = 0, last = 0;
            for (int step = 0; step < 5; step++)
            {
                using var scope = NewDisposeScope();
                var loss = nn.functional.cross_entropy(model.forward(x), y);
                opt.zero_grad(); loss.backward(); opt.step();
                if (step == 0) first = loss.item<float>(); else last = loss.item<float>();
            }
            Assert.True(last < first, $"{family} {method}: loss {first} → {last}");
            foreach (var (name, t) in net.state_dict())
            {
                if (name.EndsWith("num_batches_tracked") || name.StartsWith("fc.") || name.StartsWith("classifier.2.")) continue;
                bool trained = expectedBackbone.Contains(name);
                Assert.True(trained != Same(before[name], t), $"{family} {method}: {name} expected {(trained ? "trained" : "bit-identical")}");
            }
        }
    }

    /// <summary>Token methods are refused on ConvNets with one line naming what is missing.</summary>
    [Theory]
    [InlineData("vpt-deep", "a token sequence")]
    [InlineData("adapter", "a hook on each block's MLP output")]
    [InlineData("cls-learned", "a learnable class token")]
    public void TokenMethodsAreRefusedOnConvNets(string method, string missing)
    {
        foreach (var net in new[] { TinyResNet(), TinyConvNeXt() })
        {
            var e = Assert.Throws<UnsupportedMethodException>(() => PromptedModel.Create(net, MethodRegistry.FromOptions(method, new MethodOptions { Prompts = 2 }), 3));
            Assert.StartsWith($"method {method} needs {missing}", e.Message);
            Assert.Contains($"the {net.Family} backbone does not offer", e.Message);
        }
    }
}
