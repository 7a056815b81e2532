using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using VptSharp.IO;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// VPT on a hierarchical Transformer (paper §4.2, Swin): the p prompts of a block join every local window of that
/// block — the same p in each window — attend and are attended there with no relative-position bias and no shift mask
/// (they belong to no image region), and patch merging drops them. VPT-deep: every block (in the prompted range) gets its
/// own p prompts at its stage's width, replacing what the previous block's prompts became; VPT-shallow: p prompts
/// before block 1, carried (as the blocks transform them) through stage 1 only. The head sees the backbone's pooling
/// of the image tokens (Swin has no class token; prompt outputs are never pooled). Tensors: stage{s} = [prompted blocks
/// of stage s, p, width of stage s]. Trainable: Σ_s (prompted blocks of s)·p·C_s.
/// Differences from the reference code (KMnP/vpt, vit_prompt/swin_transformer.py), which the paper's text does not
/// describe: its shallow prompts pass through patch merging (repeated 4× into the merged width) — here they stop at
/// stage 1 as the paper says; its windows take prompts in window-major order, which mixes samples' prompts once they
/// differ per sample (shallow, batch &gt; 1) — here each sample's windows take that sample's prompts.
/// </summary>
public sealed class WindowedPrompts : TuningMethod
{
    protected override void RegisterComponents() { }

    readonly PromptConfig config;
    readonly IWindowPromptBackbone swin;
    readonly int first, last; // 0-based, inclusive
    /// <summary>Per stage, its prompts (null for a stage without prompted blocks) and its first prompted block.</summary>
    readonly (Parameter? Prompts, int FirstBlock)[] stages;
    readonly Dropout dropout;

    public WindowedPrompts(PromptConfig config, Backbone backbone) : base("WindowedPrompts")
    {
        swin = (IWindowPromptBackbone)backbone;
        this.config = config;
        (string Setting, object Value, string Why)? unsupported =
            config.Location != PromptLocation.Prepend ? ("prompt-location", KebabCase.Of(config.Location), "only prepended prompts join the windows") :
            config.Sharing != PromptSharing.None ? ("prompt-sharing", KebabCase.Of(config.Sharing), "the stages differ in width") :
            config.ProjectDim > 0 ? ("project", config.ProjectDim, "the stages differ in width") :
            config.Output is not (PromptOutput.Cls or PromptOutput.ImagePool) ? ("prompt-output", KebabCase.Of(config.Output), "prompt outputs never reach the head (the pooled image tokens do)") :
            config.Init != PromptInit.Random ? ("prompt-init", KebabCase.Of(config.Init), "it needs a class token") : null;
        if (unsupported is var (setting, value, why))
            throw new InvalidSettingException(setting, value, $"not defined for VPT on a {backbone.Family} backbone, whose prompts join its attention windows: {why}");
        if (config.Tokens < 1) throw new InvalidSettingException("prompts", config.Tokens, "prompt length must be at least 1");
        (first, last) = config.Deep ? config.PromptedBlocks(backbone.Depth) : (0, 0);
        dropout = Dropout(config.Dropout);
        register_module("dropout", dropout);
        // Xavier-uniform over a patch-sized fan-in at the first stage's width, in every stage as the reference:
        // uniform(±sqrt(6 / (3·patch² + C_1))).
        double bound = Math.Sqrt(6.0 / (3 * swin.PatchSize * swin.PatchSize + swin.StageWidths[0]));
        stages = new (Parameter?, int)[swin.StageDepths.Count];
        int blockStart = 0;
        for (int s = 0; s < stages.Length; s++)
        {
            int lo = Math.Max(first, blockStart), hi = Math.Min(last, blockStart + swin.StageDepths[s] - 1);
            if (lo <= hi)
            {
                var prm = Parameter(empty(hi - lo + 1, config.Tokens, swin.StageWidths[s]).uniform_(-bound, bound));
                register_parameter($"stage{s}", prm);
                stages[s] = (prm, lo);
            }
            blockStart += swin.StageDepths[s];
        }
    }


    public override MethodConfig Config => config;
    /// <summary>The blocks that get their own prompts, 0-based inclusive (VPT-shallow: block 0 only).</summary>
    public (int First, int Last) PromptedBlocks => (first, last);

    /// <summary>Stage <paramref name="stage"/>'s prompts [prompted blocks, p, C_s], or null.</summary>
    public Parameter? StagePrompts(int stage) => stages[stage].Prompts;

    public override IEnumerable<(string Name, Parameter Param)> OwnTrainableParameters() =>
        config.Fixed ? [] : base.OwnTrainableParameters();

    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(Backbone backbone) =>
        config.TrainBiases ? backbone.Parameters(ParameterGroup.Biases) : [];

    /// <summary>A prompted block takes its own prompts (after dropout, one set per sample); any other block carries on
    /// what the previous block of its stage produced (nothing after patch merging).</summary>
    public override Tensor? WindowPrompts(int block, Tensor? carried, long batch)
    {
        if (block < first || block > last) return carried;
        var (prompts, start) = stages[swin.StageOf(block)];
        using var scope = NewDisposeScope();
        var p = prompts![block - start].unsqueeze(0).expand(batch, -1, -1);
        return dropout.forward(p).MoveToOuterDisposeScope();
    }
}
