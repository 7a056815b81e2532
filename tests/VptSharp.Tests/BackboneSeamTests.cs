using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using VptSharp.Inference;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// The backbone seam (issue 10): methods see a <see cref="Backbone"/> and its capabilities, never a concrete family.
/// A second, deliberately minimal family — a tiny ConvNet with no token sequence, class token, attention or MLP hook —
/// shows which methods attach to any family and that the others are refused with one line naming what is missing.
/// </summary>
public class BackboneSeamTests
{
    /// <summary>Stem conv, <c>depth</c> residual 3×3 conv blocks (each preceded by its BeforeBlock hook), a final
    /// GroupNorm, global average pooling. Offers no capability beyond what every family has.</summary>
    sealed class TinyConvNet : Backbone
    {
        public readonly Conv2d stem;
        public readonly ModuleList<Conv2d> blocks;
        public readonly GroupNorm norm;
        Linear? head;

        public TinyConvNet(int width = 16, int depth = 3) : base("TinyConvNet")
        {
            stem = Conv2d(3, width, 3, stride: 2, padding: 1);
            blocks = new ModuleList<Conv2d>(Enumerable.Range(0, depth).Select(_ => Conv2d(width, width, 3, padding: 1)).ToArray());
            norm = GroupNorm(1, width);
            using (no_grad()) { norm.weight!.fill_(1); norm.bias!.zero_(); } // TorchSharp 0.107's GroupNorm leaves its affine tensors uninitialised
            RegisterComponents();
        }

        public override string Family => "tinyconv";
        public override string Architecture => $"{Family} {NumFeatures}×{Depth}";
        public override BackboneCapability Capabilities => BackboneCapability.AnyImageSize; // convolutions + global pooling
        public override int NumFeatures => (int)stem.weight!.shape[0];
        public override int Depth => blocks.Count;
        public override int ImageSize => 32;
        public override int InChannels => 3;
        public override Linear? Classifier => head;
        public override Tensor Embed(Tensor images) => stem.forward(images);

        public override Tensor ForwardBlocks(Tensor x, IBlockHooks hooks)
        {
            using var scope = NewDisposeScope();
            for (int i = 0; i < blocks.Count; i++)
            {
                x = hooks.BeforeBlock(i, x);
                x = x + functional.relu(blocks[i].forward(x));
            }
            return norm.forward(x).MoveToOuterDisposeScope();
        }

        public override Tensor Pool(Tensor features) => features.mean([2, 3]);

        public override void ResetClassifier(int numClasses)
        {
            head = numClasses > 0 ? Linear(NumFeatures, numClasses) : null;
            if (head is not null) register_module("head", head);
        }

        public override IEnumerable<(string Name, Parameter Param)> Parameters(ParameterGroup group, int count = 1) => group switch
        {
            ParameterGroup.All => named_parameters().Where(p => !p.name.StartsWith("head.")).Select(p => (p.name, p.parameter)),
            ParameterGroup.Biases => new[] { ("stem.bias", stem.bias!) }
                .Concat(blocks.Select((b, i) => ($"blocks.{i}.bias", b.bias!))).Append(("norm.bias", norm.bias!)),
            ParameterGroup.Norms => [("norm.weight", norm.weight!), ("norm.bias", norm.bias!)],
            ParameterGroup.LastBlocks => Enumerable.Range(blocks.Count - count, count)
                .SelectMany(i => new[] { ($"blocks.{i}.weight", blocks[i].weight!), ($"blocks.{i}.bias", blocks[i].bias!) })
                .Concat([("norm.weight", norm.weight!), ("norm.bias", norm.bias!)]),
            _ => throw new ArgumentOutOfRangeException(nameof(group)),
        };
    }

    static TinyConvNet FrozenConvNet()
    {
        manual_seed(3);
        var net = new TinyConvNet();
        net.Freeze();
        return net;
    }

    /// <summary>By an independent rule: what each registered method needs that a plain ConvNet lacks.</summary>
    static readonly Dictionary<string, string?> RefusedBecause = new()
    {
        ["vpt-shallow"] = "a token sequence", ["vpt-deep"] = "a token sequence", ["prompt+bias"] = "a token sequence",
        ["prompt-fixed"] = "a token sequence", ["cls-learned"] = "a learnable class token", ["adapter"] = "a hook on each block's MLP output",
        ["vpt-pad"] = null, ["linear"] = null, ["full"] = null, ["partial-k"] = null, ["mlp-k"] = null, ["sidetune"] = null, ["bias"] = null,
    };

    /// <summary>Backbone tensors each method may change on the ConvNet, by name (not the method's own selection).</summary>
    static HashSet<string> ExpectedTrained(string method, TinyConvNet net) => method switch
    {
        "bias" => net.state_dict().Keys.Where(k => k.EndsWith(".bias")).ToHashSet(),
        "partial-k" => net.state_dict().Keys.Where(k => k.StartsWith("blocks.2.") || k.StartsWith("norm.")).ToHashSet(),
        "full" => net.state_dict().Keys.ToHashSet(),
        _ => [],
    };

    [Fact]
    public void EveryMethodEitherTrainsOnAConvNetOrIsRefusedWithOneLine()
    {
        Assert.Equal(RefusedBecause.Keys.Order(), MethodRegistry.All.Select(e => e.Name).Order()); // a new method needs a row here
        foreach (var entry in MethodRegistry.All)
        {
            var net = FrozenConvNet();
            var config = entry.FromOptions(new MethodOptions { Prompts = 2, Reduction = 4, SideWidth = 4 });
            if (RefusedBecause[entry.Name] is string missing)
            {
                var e = Assert.Throws<UnsupportedMethodException>(() => PromptedModel.Create(net, config, 3));
                Assert.StartsWith($"method {config.Method} needs {missing}", e.Message);
                Assert.Contains("tinyconv backbone does not offer", e.Message);
                Assert.DoesNotContain('\n', e.Message);
                continue;
            }
            var before = net.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            using var model = PromptedModel.Create(net, config, 3);
            var trainable = model.TrainableParameters();
            var opt = optim.SGD(trainable.Select(p => p.Param), 0.01, momentum: 0.9);
            model.train();
            Assert.Equal(ExpectedTrained(entry.Name, net).Count > 0, net.training); // a frozen backbone stays in eval mode
            float first = 0, last = 0;
            for (int step = 0; step < 3; step++)
            {
                using var scope = NewDisposeScope();
                var loss = functional.cross_entropy(model.forward(randn(4, 3, 32, 32, generator: new Generator(7))), tensor(new long[] { 0, 1, 2, 0 }));
                opt.zero_grad(); loss.backward(); opt.step();
                if (step == 0) first = loss.item<float>(); else last = loss.item<float>();
            }
            Assert.True(last < first, $"{entry.Name}: loss {first} → {last} did not decrease on a repeated batch");
            var expected = ExpectedTrained(entry.Name, net);
            foreach (var (name, t) in net.state_dict())
                Assert.True(expected.Contains(name) != Same(before[name], t), $"{entry.Name}: {name} expected {(expected.Contains(name) ? "trained" : "bit-identical")}");
        }
    }

    [Fact]
    public void OnlyFamiliesWithAttentionPrefixesServeAsPrefixes()
    {
        using var conv = PromptedModel.Create(FrozenConvNet(), new LinearProbeConfig(), 3);
        var e = Assert.Throws<UnsupportedMethodException>(() => TaskPrefix.FromModel(conv));
        Assert.Equal(["per-block attention keys/values"], e.Missing);
        using var vit = PromptedModel.Create(TinyVit(1), new LinearProbeConfig(), 3);
        using var prefix = TaskPrefix.FromModel(vit); // a linear probe is a zero-length prefix on a ViT
        Assert.All(Enumerable.Range(0, 2), i => Assert.Equal(0, prefix.LengthAt(i)));
    }

    [Fact]
    public void MethodsAnswerForThemselves()
    {
        Assert.Equal([SweepAxis.PromptLength, SweepAxis.PromptDepth], MethodRegistry.Resolve("vpt-deep").Entry.SweepAxes);
        Assert.Equal([SweepAxis.PromptLength], MethodRegistry.Resolve("vpt-shallow").Entry.SweepAxes);
        Assert.Equal([SweepAxis.Reduction], MethodRegistry.Resolve("adapter").Entry.SweepAxes);
        Assert.Empty(MethodRegistry.Resolve("linear").Entry.SweepAxes);
        var (partial, k) = MethodRegistry.Resolve("partial-2");
        Assert.Equal(("partial-k", 2), (partial.Name, k));
        Assert.Equal("partial-2", MethodRegistry.FromOptions("partial-2", new MethodOptions()).Label);
        Assert.Equal("adapter r=64", new AdapterConfig { Reduction = 64 }.Label);
        Assert.Equal("vpt-deep p=10", new PromptConfig { Tokens = 10 }.Label);
        Assert.Null(new LinearProbeConfig().PrefixInexactReason(12));
        Assert.Null(new MlpHeadConfig().PrefixInexactReason(12));
        Assert.Null(new PromptConfig().PrefixInexactReason(12));
        Assert.Contains("biases", new PromptConfig { TrainBiases = true }.PrefixInexactReason(12));
        Assert.Contains("VPT-shallow", new PromptConfig { Deep = false }.PrefixInexactReason(12));
        Assert.Contains("cannot share", new AdapterConfig().PrefixInexactReason(12));
        Assert.True(new FullConfig().TrainsWholeBackbone);
        Assert.False(new BiasConfig().TrainsWholeBackbone);
    }

    [Fact]
    public void ViTParameterGroupsAreExact()
    {
        var vit = VitB16.Value;
        long d = 768, L = 12;
        long Count(ParameterGroup g, int k = 1) => vit.Parameters(g, k).Sum(p => p.Param.numel());
        Assert.Equal(85_798_656, Count(ParameterGroup.All));
        Assert.Equal(d + 11 * L * d + d, Count(ParameterGroup.Biases)); // patch proj + (2 norms, qkv 3d, proj, fc1 4d, fc2) per block + final norm
        Assert.Equal(4 * L * d + 2 * d, Count(ParameterGroup.Norms));
        Assert.Equal(2 * (12 * d * d + 13 * d) + 2 * d, Count(ParameterGroup.LastBlocks, 2));
        Assert.Throws<ArgumentOutOfRangeException>(() => Count(ParameterGroup.LastBlocks, 13));
    }
}
