using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Checkpoints;
using VptSharp.IO;
using VptSharp.Tuning;
using static TorchSharp.torch;
using static VptSharp.Tests.TestUtil;

namespace VptSharp.Tests;

/// <summary>
/// The self-supervised ViTs of the paper's Table 4 in their published layouts (goldens from tools/make_ssl_vit_goldens.py,
/// a tiny random ViT written in exactly MoCo v3's and MAE's key names): MoCo v3's pretraining file keeps only
/// module.base_encoder (momentum encoder, predictor and projection MLP dropped) and pools the final-norm CLS token; MAE's
/// files get MAE's head (fc_norm of the mean of the tokens after CLS, the encoder norm unused), and VPT-deep on MAE pools
/// as the reference does.
/// </summary>
public class SelfSupervisedVitTests
{
    static string G(string name) => Golden(Path.Combine("ssl", name));

    static LoadedBackbone Load(string file) => BackboneLoader.FromFile(G(file), null, new ArchOverrides { Heads = 2 }, file);

    static double FeatureError(LoadedBackbone bb, string golden)
    {
        var x = Npy.Read(G("input.npy"));
        using var _ = no_grad();
        using var f = bb.Model.ForwardFeatures(x);
        return MaxAbsDiff(bb.Model.ForwardHead(f, preLogits: true), Npy.Read(G(golden)));
    }

    [Fact]
    public void MocoV3PretrainingCheckpointIsItsBaseEncoder()
    {
        using var bb = Load("mocov3_vit_tiny.pth.tar");
        Assert.False(bb.Vit!.GlobalPool);
        Assert.Null(bb.Model.Classifier); // the projection MLP under base_encoder.head is not a classifier
        Assert.Equal((32, 2, 8, 32), (bb.Config.Width, bb.Config.Depth, bb.Config.PatchSize, bb.Config.ImageSize));
        double d = FeatureError(bb, "mocov3_features.npy");
        Console.WriteLine($"MoCo v3 (module.base_encoder.*): CLS features max |Δ| {d:E2}");
        Assert.True(d < 1e-4, $"{d}");
    }

    [Theory]
    [InlineData("mae_pretrain_vit_tiny.pth", "mae_pretrain_features.npy")]
    [InlineData("mae_finetuned_vit_tiny.pth", "mae_finetuned_features.npy")]
    public void MaeCheckpointsGetMaesGlobalPoolHead(string file, string golden)
    {
        using var bb = Load(file);
        Assert.True(bb.Vit!.GlobalPool);
        Assert.Null(bb.Vit!.norm);
        Assert.Contains(bb.Model.Parameters(ParameterGroup.Norms), p => p.Name == "fc_norm.weight");
        double d = FeatureError(bb, golden);
        Console.WriteLine($"MAE ({file}): fc_norm(mean of patch tokens) max |Δ| {d:E2}");
        Assert.True(d < 1e-4, $"{d}");
        if (file.Contains("pretrain")) Assert.True(Same(bb.Vit!.fc_norm!.weight!, ones(32)), "a pretraining file has no fc_norm: it starts at its init");
    }

    /// <summary>VPT-deep on MAE as the reference (vit_prompt/vit_mae.py, pool "original"): the head sees fc_norm of the mean
    /// of every token after CLS, prompts included, so it runs in token form (a prefix would never compute the prompt outputs).</summary>
    [Fact]
    public void VptDeepOnMaeMatchesReference()
    {
        using var bb = Load("mae_finetuned_vit_tiny.pth");
        using var model = PromptedModel.Create(bb.Model, new PromptConfig { Tokens = 3, Deep = true, Dropout = 0 }, 5);
        Assert.False(((PromptConfig)model.method.Config).PrefixForm);
        var vp = (VisualPrompts)model.method;
        using (no_grad()) vp.prompts.copy_(Npy.Read(G("mae_vpt_deep_p3_prompts.npy")));
        model.eval();
        using var _ = no_grad();
        double d = MaxAbsDiff(model.Features(Npy.Read(G("input.npy"))), Npy.Read(G("mae_vpt_deep_p3_features.npy")));
        double moved = MaxAbsDiff(Npy.Read(G("mae_vpt_deep_p3_features.npy")), Npy.Read(G("mae_finetuned_features.npy")));
        Console.WriteLine($"VPT-deep p=3 on MAE: pooled features max |Δ| {d:E2} (prompts move them by {moved:E2})");
        Assert.True(moved > 1e-2 && d < 1e-4, $"{d} (moved {moved})");
        var e = Assert.Throws<InvalidSettingException>(() => PromptedModel.Create(bb.Model, new PromptConfig { Tokens = 3, PrefixForm = true }, 5));
        Assert.StartsWith("prefix-form: this backbone pools globally (MAE)", e.Message);
    }
}
