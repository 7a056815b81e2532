using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

public class TuningTests
{
    [Fact]
    public void VitB16PromptCountsMatchPaper()
    {
        // Paper §3.2: ViT-B/16 (d = 768, 12 layers), 50 prompts: shallow 38,400 (0.04%), deep 460,800 (0.53%) of 86M.
        var vit = new VisionTransformer(VitConfig.Preset("vit-b16"));
        vit.Freeze();
        Assert.Equal(85_798_656, vit.BackboneParameterCount); // timm vit_base_patch16_224 without its head
        Assert.Equal(vit.BackboneParameterCount, vit.Config.ParameterCount);
        int classes = 100;
        long head = 768L * classes + classes;
        using var shallow = PromptedModel.Create(vit, new PromptConfig { Tokens = 50, Deep = false }, classes);
        Assert.Equal(50L * 768, shallow.MethodCount);
        Assert.Equal(38_400 + head, shallow.TrainableCount);
        using var deep = PromptedModel.Create(vit, new PromptConfig { Tokens = 50, Deep = true }, classes);
        Assert.Equal(12L * 50 * 768, deep.MethodCount);
        Assert.Equal(460_800 + head, deep.TrainableCount);
        Assert.Equal(0.04, Math.Round(100.0 * 38_400 / 86e6, 2));
        Assert.Equal(0.54, Math.Round(100.0 * 460_800 / vit.BackboneParameterCount, 2)); // paper rounds to 0.53% of "86M"
        using var linear = PromptedModel.Create(vit, new LinearProbeConfig(), classes);
        Assert.Equal(head, linear.TrainableCount);
    }

    [Fact]
    public void VitB16BaselineCountsMatchClosedForms()
    {
        var vit = new VisionTransformer(VitConfig.Preset("vit-b16"));
        vit.Freeze();
        long d = 768, L = 12;
        long Count(string method, MethodOptions? o = null)
        {
            using var m = PromptedModel.Create(vit, MethodRegistry.FromOptions(method, o ?? new MethodOptions()), 10);
            return m.MethodCount;
        }
        Assert.Equal(d + 11 * L * d + d, Count("bias"));                                   // 102,912
        Assert.Equal(102_912, Count("bias"));
        Assert.Equal(1 * (12 * d * d + 13 * d) + 2 * d, Count("partial-1"));              // 7,089,408
        Assert.Equal(4 * (12 * d * d + 13 * d) + 2 * d, Count("partial-4"));
        Assert.Equal(2 * (d * d + 3 * d), Count("mlp-3"));                                 // 1,184,256: Linear + BatchNorm affine
        Assert.Equal(L * (2 * d * d / 8 + d / 8 + d), Count("adapter", new MethodOptions { Reduction = 8 })); // 1,779,840
        Assert.Equal(1_779_840, Count("adapter", new MethodOptions { Reduction = 8 }));
        Assert.Equal(L * (2 * d * d / 256 + d / 256 + d), Count("adapter", new MethodOptions { Reduction = 256 }));
        Assert.Equal(vit.BackboneParameterCount, Count("full"));
    }


    [Theory]
    [InlineData("vpt-deep")]
    [InlineData("vpt-shallow")]
    [InlineData("linear")]
    public void OneStepChangesOnlyMethodAndHead(string method)
    {
        var vit = TinyVit(1);
        var before = vit.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var model = PromptedModel.Create(vit, MethodRegistry.FromOptions(method, new MethodOptions { Prompts = 4 }), 3);
        var trainableBefore = model.TrainableParameters().ToDictionary(p => p.Name, p => p.Param.detach().clone());
        var opt = optim.SGD(model.TrainableParameters().Select(p => p.Param), 0.5, momentum: 0.9, weight_decay: 1e-4);
        model.train();
        Assert.False(vit.training); // frozen backbone stays in eval mode
        var x = randn(4, 3, 32, 32);
        var loss = nn.functional.cross_entropy(model.forward(x), tensor(new long[] { 0, 1, 2, 0 }));
        opt.zero_grad(); loss.backward(); opt.step();
        foreach (var (name, t) in vit.state_dict())
            Assert.True(Same(before[name], t), $"backbone tensor {name} changed");
        foreach (var (name, p) in model.TrainableParameters())
            Assert.False(Same(trainableBefore[name], p), $"trainable tensor {name} did not change");
        Assert.All(vit.parameters(), p => Assert.False(p.requires_grad));
    }

    [Fact]
    public void FullFinetuneTrainsEveryBackboneTensor()
    {
        var vit = TinyVit(1);
        var before = vit.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.clone());
        var model = PromptedModel.Create(vit, new FullConfig(), 3);
        Assert.Equal(vit.BackboneParameterCount + 3 * 32 + 3, model.TrainableCount);
        var opt = optim.SGD(model.TrainableParameters().Select(p => p.Param), 0.5);
        model.train();
        var loss = nn.functional.cross_entropy(model.forward(randn(4, 3, 32, 32)), tensor(new long[] { 0, 1, 2, 0 }));
        opt.zero_grad(); loss.backward(); opt.step();
        foreach (var (name, t) in vit.state_dict())
            Assert.False(Same(before[name], t), $"backbone tensor {name} did not train");
    }

    [Fact]
    public void DeepPromptsReplaceEachBlocksPromptOutputs()
    {
        var vit = TinyVit(2);
        var prompts = new VisualPrompts(new PromptConfig { Tokens = 3, Deep = true, Dropout = 0 }, vit);
        prompts.eval();
        var tokens = randn(2, 17, 32);
        var first = prompts.BeforeBlock(0, tokens);
        Assert.Equal(new long[] { 2, 20, 32 }, first.shape);
        Assert.True(Same(first[.., 1..4], prompts.prompts[0].expand(2, -1, -1)));
        Assert.True(Same(first[.., 4..], tokens[.., 1..]));
        var second = prompts.BeforeBlock(1, first + 1);
        Assert.Equal(new long[] { 2, 20, 32 }, second.shape);
        Assert.True(Same(second[.., 1..4], prompts.prompts[1].expand(2, -1, -1)));
        Assert.True(Same(second[.., 4..], first[.., 4..] + 1));
        var shallow = new VisualPrompts(new PromptConfig { Tokens = 3, Deep = false, Dropout = 0 }, vit);
        Assert.True(Same(shallow.BeforeBlock(1, first), first));
    }

    [Fact]
    public void PromptVariantCountsOnVitB16()
    {
        var cfg = VitB16.Value;
        long d = 768, L = 12, p = 50;
        long Count(PromptConfig c) => new VisualPrompts(c, cfg).parameters().Sum(t => t.numel());
        Assert.Equal(L * p * d, Count(new PromptConfig { Tokens = 50 }));
        Assert.Equal(L * d, Count(new PromptConfig { Tokens = 50, Sharing = PromptSharing.Intra }));
        Assert.Equal(p * d, Count(new PromptConfig { Tokens = 50, Sharing = PromptSharing.Inter }));
        Assert.Equal(d, Count(new PromptConfig { Tokens = 50, Sharing = PromptSharing.All }));
        Assert.Equal(6 * p * d, Count(new PromptConfig { Tokens = 50, FirstBlock = 1, LastBlock = 6 }));
        Assert.Equal(6 * p * d, Count(new PromptConfig { Tokens = 50, FirstBlock = 12, LastBlock = 7 }));
        Assert.Equal(p * d, Count(new PromptConfig { Tokens = 50, Deep = false, FirstBlock = 3 })); // shallow ignores depth
        Assert.Equal(L * p * 16 + 16 * d + d, Count(new PromptConfig { Tokens = 50, ProjectDim = 16 }));
        Assert.Throws<ArgumentException>(() => new VisualPrompts(new PromptConfig { FirstBlock = 0, LastBlock = 13 }, cfg));
    }

    [Fact]
    public void PoolingChoosesTheRightTokens()
    {
        var tokens = arange(2 * 6 * 1, dtype: float32).reshape(2, 6, 1); // CLS, 2 prompts, 3 patches
        float Pool(PromptOutput o) => new VisualPrompts(new PromptConfig { Tokens = 2, Output = o }, TinyBackbone.Value).Pool(TinyBackbone.Value, tokens)[0, 0].item<float>();
        Assert.Equal(0f, Pool(PromptOutput.Cls));
        Assert.Equal(1.5f, Pool(PromptOutput.PromptPool));
        Assert.Equal(4f, Pool(PromptOutput.ImagePool));
        Assert.Equal(3f, Pool(PromptOutput.GlobalPool));
    }

    [Fact]
    public void SharedPromptsAreOneTensorReusedEverywhere()
    {
        var shared = new VisualPrompts(new PromptConfig { Tokens = 3, Sharing = PromptSharing.All, Dropout = 0 }, TinyBackbone.Value);
        var a = shared.PromptsFor(0);
        Assert.Equal(new long[] { 3, 32 }, a.shape);
        Assert.True(Same(a[0], a[2]));
        Assert.True(Same(a, shared.PromptsFor(1)));
        var ranged = new VisualPrompts(new PromptConfig { Tokens = 3, FirstBlock = 2, LastBlock = 2, Dropout = 0 }, TinyBackbone.Value);
        var x = randn(1, 17, 32);
        Assert.True(Same(ranged.BeforeBlock(0, x), x)); // block 1 (1-based) is outside 2→2
        Assert.Equal(20, ranged.BeforeBlock(1, x).shape[1]);  // block 2 inserts
    }

    [Fact]
    public void ResetClassifierReplacesOrRemovesTheHead()
    {
        var vit = new VisionTransformer(Tiny, numClasses: 10);
        var x = randn(2, 3, 32, 32);
        Assert.Equal(10, vit.forward(x).shape[1]);
        vit.ResetClassifier(5);
        Assert.Equal(5, vit.forward(x).shape[1]);
        Assert.Equal(2, vit.named_parameters().Count(p => p.name.StartsWith("head.")));
        vit.ResetClassifier(0);
        Assert.Equal(32, vit.forward(x).shape[1]); // pre-logits
        Assert.DoesNotContain(vit.named_parameters(), p => p.name.StartsWith("head."));
    }

    [Fact]
    public void FromScratchInitHasTimmScales()
    {
        manual_seed(0);
        var vit = new VisionTransformer(VitConfig.Preset("vit-s16"), numClasses: 10);
        double qkvStd = vit.blocks[0].attn.qkv.weight!.std().item<float>();
        Assert.InRange(qkvStd, 0.0170, 0.0182); // normal(0, 0.02) truncated at ±2σ has std 0.02 × 0.880 = 0.0176
        Assert.InRange(vit.pos_embed.std().item<float>(), 0.0168, 0.0184);
        Assert.True(vit.blocks[0].attn.qkv.weight!.abs().max().item<float>() <= 0.04f + 1e-6f);
        Assert.Equal(0f, vit.blocks[0].attn.qkv.bias!.abs().max().item<float>());
        var model = PromptedModel.Create(vit, new LinearProbeConfig(), 10);
        // A task head starts as the reference's (kaiming-normal fan_out, std √(2/10) ≈ 0.447), not timm's 0.01.
        Assert.InRange(model.head.weight!.std().item<float>(), 0.40, 0.50);
    }

    [Fact]
    public void PromptInitFollowsXavierBound()
    {
        var p = new VisualPrompts(new PromptConfig { Tokens = 50, Deep = true }, VitB16.Value);
        double bound = Math.Sqrt(6.0 / (3 * 16 * 16 + 768));
        double max = p.prompts.abs().max().item<float>();
        Assert.True(max <= bound && max > 0.95 * bound, $"max {max} vs bound {bound}");
    }

    [Fact]
    public void ProjectedPromptsHaveTheirOwnWidth()
    {
        var p = new VisualPrompts(new PromptConfig { Tokens = 5, Deep = false, ProjectDim = 8 }, TinyBackbone.Value);
        Assert.Equal(new long[] { 1, 5, 8 }, p.prompts.shape);
        Assert.Equal(5 * 8 + 8 * 32 + 32, p.parameters().Sum(t => t.numel()));
        Assert.Equal(new long[] { 5, 32 }, p.PromptsFor(0).shape);
    }
}
