using TorchSharp;
using VptSharp.IO;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>Numerical parity with PyTorch/torchvision goldens made by tools/make_goldens.py.</summary>
public class ParityTests
{
    /// <summary>The CPU attention (two batched products, see Attention.Attend) equals libtorch's fused kernel, with and
    /// without an additive prefix mask, in fp32 (tight) and bf16 (to bf16's resolution).</summary>
    [Fact]
    public void AttentionProductsEqualTheFusedKernel()
    {
        manual_seed(3);
        using var scope = NewDisposeScope();
        var q = randn(2, 3, 7, 8); var k = randn(2, 3, 11, 8); var v = randn(2, 3, 11, 8);
        var mask = zeros(2, 1, 1, 11);
        mask[0, 0, 0, 1] = tensor(float.NegativeInfinity); // one prefix key hidden from the first sample
        foreach (var m in new Tensor?[] { null, mask })
        {
            var fused = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: m);
            var ours = Attention.Attend(q, k, v, m);
            Assert.True((ours - fused).abs().max().item<float>() < 1e-6f);
            var ours16 = Attention.Attend(q.bfloat16(), k.bfloat16(), v.bfloat16(), m?.bfloat16());
            Assert.Equal(ScalarType.BFloat16, ours16.dtype);
            Assert.True((ours16.@float() - fused).abs().max().item<float>() < 0.05f);
        }
        // The mask really hides the key: moving that key's value changes nothing for sample 0, something for sample 1.
        var v2 = v.clone(); v2[TensorIndex.Colon, TensorIndex.Colon, 1] += 10;
        var moved = Attention.Attend(q, k, v2, mask) - Attention.Attend(q, k, v, mask);
        Assert.True(moved[0].abs().max().item<float>() < 1e-6f);
        Assert.True(moved[1].abs().max().item<float>() > 0.01f);
    }

    const double Tol = 1e-4;

    static Tensor Cls(LoadedBackbone bb, Tensor x)
    {
        using var _ = no_grad();
        using var f = bb.Model.ForwardFeatures(x);
        return bb.Model.ForwardHead(f, preLogits: true).clone();
    }

    [Theory]
    [InlineData("vit_torchvision.pth")]
    [InlineData("timm_vit")]
    [InlineData("vit_google.npz")]
    public void ClsFeaturesMatchTorchvision(string checkpoint)
    {
        using var bb = BackboneLoader.Load(Golden(checkpoint), new ArchOverrides { Heads = 2 });
        Assert.Equal(new VitConfig { ImageSize = 32, PatchSize = 8, Width = 32, Depth = 2, Heads = 2, MlpDim = 64 }, bb.Config);
        var x = Npy.Read(Golden("input.npy"));
        var diff = MaxAbsDiff(Cls(bb, x), Npy.Read(Golden("cls.npy")));
        Assert.True(diff < Tol, $"{checkpoint}: max |diff| {diff:E2}");
    }

    [Fact]
    public void LogitsMatchTorchvisionWithItsHead()
    {
        var raw = VitCheckpointKeys.ToTimm(CheckpointReader.Read(Golden("vit_torchvision.pth")));
        using var bb = BackboneLoader.Load(Golden("vit_torchvision.pth"), new ArchOverrides { Heads = 2 });
        var logits = nn.functional.linear(Cls(bb, Npy.Read(Golden("input.npy"))), raw["head.weight"], raw["head.bias"]);
        var diff = MaxAbsDiff(logits, Npy.Read(Golden("logits.npy")));
        Assert.True(diff < Tol, $"max |diff| {diff:E2}");
        Assert.True(raw["head.weight"].abs().sum().item<float>() > 0); // the golden head is not torchvision's zero init
    }

    [Fact]
    public void ResizedPositionEmbeddingMatchesBicubicReference()
    {
        using var bb = BackboneLoader.Load(Golden("vit_torchvision.pth"), new ArchOverrides { Heads = 2, ImageSize = 48 });
        Assert.Equal(1 + 36, bb.Vit!.pos_embed.shape[1]);
        var diff = MaxAbsDiff(Cls(bb, Npy.Read(Golden("input48.npy"))), Npy.Read(Golden("cls48.npy")));
        Assert.True(diff < Tol, $"max |diff| {diff:E2}");
    }

    [Theory]
    [InlineData(true, "vpt_deep_logits.npy")]
    [InlineData(false, "vpt_shallow_logits.npy")]
    public void PromptedLogitsMatchReferenceVpt(bool deep, string golden)
    {
        using var bb = BackboneLoader.Load(Golden("timm_vit"));
        var model = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = 3, Deep = deep, Dropout = 0.1 }, 5);
        var method = (VisualPrompts)model.method;
        using (no_grad())
        {
            var prompts = Npy.Read(Golden("vpt_prompts.npy"));
            method.prompts.copy_(deep ? prompts : prompts[..1]);
            model.head.weight!.copy_(Npy.Read(Golden("vpt_head_w.npy")));
            model.head.bias!.copy_(Npy.Read(Golden("vpt_head_b.npy")));
        }
        model.eval(); // prompt dropout off
        using var _ = no_grad();
        var diff = MaxAbsDiff(model.forward(Npy.Read(Golden("input.npy"))), Npy.Read(Golden(golden)));
        Assert.True(diff < Tol, $"max |diff| {diff:E2}");
    }

    [Fact]
    public void ImagePoolAndDepthRangeMatchReferenceVpt()
    {
        using var bb = BackboneLoader.Load(Golden("timm_vit"));
        var prompts = Npy.Read(Golden("vpt_prompts.npy"));
        foreach (var (cfg, rows, golden) in new[]
        {
            (new PromptConfig { Tokens = 3, Deep = true, Output = PromptOutput.ImagePool }, prompts, "vpt_deep_imagepool_logits.npy"),
            (new PromptConfig { Tokens = 3, Deep = true, FirstBlock = 2, LastBlock = 2 }, prompts[1..2], "vpt_deep_block2only_logits.npy"),
        })
        {
            var model = PromptedModel.Create(bb.Model, cfg, 5);
            using (no_grad())
            {
                ((VisualPrompts)model.method).prompts.copy_(rows);
                model.head.weight!.copy_(Npy.Read(Golden("vpt_head_w.npy")));
                model.head.bias!.copy_(Npy.Read(Golden("vpt_head_b.npy")));
            }
            model.eval();
            using var _ = no_grad();
            var diff = MaxAbsDiff(model.forward(Npy.Read(Golden("input.npy"))), Npy.Read(Golden(golden)));
            Assert.True(diff < Tol, $"{golden}: max |diff| {diff:E2}");
        }
    }

    /// <summary>Adapter (r = 4, non-zero weights) and Bias against tools/make_goldens.py: forward logits, then the logits
    /// after one plain SGD step (lr 0.1) on cross-entropy, which checks the gradients of exactly the trained tensors.</summary>
    [Theory]
    [InlineData("adapter", "adapter_logits.npy", "adapter_step_logits.npy")]
    [InlineData("bias", null, "bias_step_logits.npy")]
    public void AdapterAndBiasMatchReferenceBeforeAndAfterOneStep(string method, string? forwardGolden, string stepGolden)
    {
        using var bb = BackboneLoader.Load(Golden("timm_vit"));
        var model = PromptedModel.Create(bb.Model, MethodRegistry.FromOptions(method, new MethodOptions { Reduction = 4 }), 5);
        using (no_grad())
        {
            if (model.method is Adapter a)
                for (int i = 0; i < 2; i++)
                {
                    a.down[i].weight!.copy_(Npy.Read(Golden("adapter_down_w.npy"))[i]);
                    a.down[i].bias!.copy_(Npy.Read(Golden("adapter_down_b.npy"))[i]);
                    a.up[i].weight!.copy_(Npy.Read(Golden("adapter_up_w.npy"))[i]);
                    a.up[i].bias!.copy_(Npy.Read(Golden("adapter_up_b.npy"))[i]);
                }
            model.head.weight!.copy_(Npy.Read(Golden("vpt_head_w.npy")));
            model.head.bias!.copy_(Npy.Read(Golden("vpt_head_b.npy")));
        }
        model.eval();
        var x = Npy.Read(Golden("input.npy"));
        if (forwardGolden is not null)
            using (no_grad())
            {
                var diff = MaxAbsDiff(model.forward(x), Npy.Read(Golden(forwardGolden)));
                Assert.True(diff < Tol, $"{forwardGolden}: max |diff| {diff:E2}");
            }
        var opt = optim.SGD(model.TrainableParameters().Select(p => p.Param), 0.1);
        var loss = nn.functional.cross_entropy(model.forward(x), Npy.Read(Golden("step_labels.npy")).to(int64));
        opt.zero_grad(); loss.backward(); opt.step();
        using (no_grad())
        {
            var diff = MaxAbsDiff(model.forward(x), Npy.Read(Golden(stepGolden)));
            Assert.True(diff < Tol, $"{stepGolden}: max |diff| {diff:E2}");
        }
    }

    [Fact]
    public void WrongCheckpointListsMissingKeys()
    {
        var dir = TempDir();
        string path = Path.Combine(dir, "partial.safetensors");
        var raw = CheckpointReader.Read(Golden("timm_vit/model.safetensors"));
        raw.Remove("blocks.1.mlp.fc2.weight");
        raw["blocks.1.extra.weight"] = zeros(2);
        SafetensorsFile.Save(path, raw);
        var e = Assert.Throws<CheckpointException>(() => BackboneLoader.Load(path, new ArchOverrides { Heads = 2 }));
        Assert.Contains("blocks.1.mlp.fc2.weight", e.Message);
        Assert.Contains("blocks.1.extra.weight", e.Message);
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void MocoV3AndMaeLayoutsMapOntoTimmNames()
    {
        var timm = CheckpointReader.Read(Golden("timm_vit/model.safetensors"));
        var moco = timm.ToDictionary(kv => "module.base_encoder." + kv.Key, kv => kv.Value);
        foreach (var kv in timm) moco["module.momentum_encoder." + kv.Key] = kv.Value;
        moco["module.predictor.0.weight"] = zeros(4, 4);
        var fromMoco = VitCheckpointKeys.ToTimm(moco);
        Assert.Equal(timm.Keys.Order(), fromMoco.Keys.Order());
        var mae = new Dictionary<string, Tensor>(timm) { ["mask_token"] = zeros(1, 1, 32), ["decoder_embed.weight"] = zeros(16, 32) };
        Assert.Equal(timm.Keys.Order(), VitCheckpointKeys.ToTimm(mae).Keys.Order());
    }

    [Fact]
    public void ArchitectureIsInferredFromShapes()
    {
        var raw = VitCheckpointKeys.ToTimm(CheckpointReader.Read(Golden("vit_google.npz")));
        var cfg = VitCheckpointKeys.InferConfig(raw, heads: 2);
        Assert.Equal((32, 8, 32, 2, 64), (cfg.ImageSize, cfg.PatchSize, cfg.Width, cfg.Depth, cfg.MlpDim));
        Assert.Equal(VitCheckpointKeys.Layout.GoogleNpz, VitCheckpointKeys.Detect(CheckpointReader.Read(Golden("vit_google.npz"))));
    }
}
