using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// Pixel-space prompt locations of the paper's Fig. 5 ablation. Both act on the input only (VPT-shallow): the prompt
/// lives in image space and reaches the transformer through the frozen patch embedding, via the method's Embed hook.
/// </summary>
static class InputLevelPrompts
{
    public static void Validate(PromptConfig c)
    {
        string where = c.Location == PromptLocation.PrependPixel ? "prepend-pixel" : "concat-channel";
        if (c.Deep) throw new InvalidSettingException("prompt-location", where, "prompts the input only, so it needs method vpt-shallow");
        if (c.ProjectDim > 0 || c.Sharing != PromptSharing.None || c.Init != PromptInit.Random)
            throw new InvalidSettingException("prompt-location", where, "takes no prompt projection, sharing or init (those act on prompt tokens)");
    }
}

/// <summary>
/// "Prepend-pixel": p learnable patch-sized pixel blocks [p, 3, P, P] (normalised-pixel scale, N(0, 1) init), embedded
/// by the frozen patch projection (its bias included, no position embedding, like token prompts) and inserted after CLS.
/// Trainable: p·3·P².
/// </summary>
public sealed class PixelPrompts : TuningMethod
{
    readonly PromptConfig config;
    public readonly Parameter pixels;

    public PixelPrompts(PromptConfig config, Backbone backbone) : base("PixelPrompts")
    {
        var vit = (IPatchProjectionBackbone)backbone;
        InputLevelPrompts.Validate(config);
        if (config.Tokens < 1) throw new InvalidSettingException("prompts", config.Tokens, "prompt length must be at least 1");
        this.config = config;
        pixels = Parameter(randn(config.Tokens, backbone.InChannels, vit.PatchSize, vit.PatchSize));
        RegisterComponents();
    }

    public override MethodConfig Config => config;
    public override int ExtraTokens => config.Tokens;

    public override Tensor Embed(Backbone backbone, Tensor images)
    {
        using var scope = NewDisposeScope();
        var emb = backbone.Embed(images);
        var tokens = ((IPatchProjectionBackbone)backbone).ProjectPatches(pixels.to(emb.dtype)); // [p, d]: each block is exactly one patch
        var p = tokens.unsqueeze(0).expand(images.shape[0], -1, -1);
        return cat([emb[.., ..1], p, emb[.., 1..]], 1).MoveToOuterDisposeScope();
    }

    public override Tensor Pool(Backbone backbone, Tensor tokens) => config.Pool(tokens, config.Tokens);
}

/// <summary>
/// "Concat-channel" (the reference's "below" location, vit_prompt/vit_ablations.py): p learnable image channels
/// [1, p, H, W] concatenated to every RGB input, so the patch projection takes 3 + p channels. As in the reference the
/// prompt channels and the new filters [d, p, P, P] start xavier-uniform(±√(6 / (3·P² + d))) and the whole patch
/// projection trains (vit_models.py: "prompt" and "embeddings.patch_embeddings.{weight,bias}"); its RGB filters start
/// from the pretrained ones (the reference rebuilds the conv from scratch, and its checkpoint loader cannot copy a
/// 3-channel kernel into it). By linearity the (3 + p)-channel projection is the backbone's RGB embedding plus the
/// extra channels' projection, so the backbone is never copied. Sequence length unchanged.
/// Trainable: p·H·W + p·d·P² + (3·d·P² + d).
/// </summary>
public sealed class ChannelPrompt : TuningMethod
{
    readonly PromptConfig config;
    readonly int patch;
    public readonly Parameter channel, channel_proj;

    public ChannelPrompt(PromptConfig config, Backbone backbone) : base("ChannelPrompt")
    {
        var vit = (ITokenSequenceBackbone)backbone;
        InputLevelPrompts.Validate(config);
        if (config.Tokens < 1) throw new InvalidSettingException("prompts", config.Tokens, "concat-channel needs at least 1 extra channel");
        if (config.Output == PromptOutput.PromptPool) throw new InvalidSettingException("prompt-output", "prompt-pool", "needs prompt tokens; prompt location concat-channel adds none");
        this.config = config;
        patch = vit.PatchSize;
        double bound = Math.Sqrt(6.0 / (3 * vit.PatchSize * vit.PatchSize + backbone.NumFeatures));
        channel = Parameter(empty(1, config.Tokens, backbone.ImageSize, backbone.ImageSize).uniform_(-bound, bound));
        channel_proj = Parameter(empty(backbone.NumFeatures, config.Tokens, vit.PatchSize, vit.PatchSize).uniform_(-bound, bound));
        RegisterComponents();
    }

    public override MethodConfig Config => config;

    /// <summary>The patch projection (RGB filters and bias) trains with the prompt channels.</summary>
    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(Backbone backbone) =>
        backbone.Parameters(ParameterGroup.PatchProjection);

    public override Tensor Embed(Backbone backbone, Tensor images)
    {
        using var scope = NewDisposeScope();
        var emb = backbone.Embed(images);
        if (images.shape[2] != channel.shape[2] || images.shape[3] != channel.shape[3])
            throw new ArgumentException($"concat-channel prompt is {channel.shape[2]}×{channel.shape[3]} px; images are {images.shape[2]}×{images.shape[3]}");
        var extra = functional.conv2d(channel, channel_proj, strides: [patch, patch]).flatten(2).transpose(1, 2); // [1, N, d]
        return cat([emb[.., ..1], emb[.., 1..] + extra.to(emb.dtype)], 1).MoveToOuterDisposeScope();
    }

    public override Tensor Pool(Backbone backbone, Tensor tokens) => config.Pool(tokens, 0);
}
