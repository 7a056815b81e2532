using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using VptSharp.IO;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>VPT settings (paper §3.2, appendix A).</summary>
public sealed record PromptConfig : MethodConfig
{
    /// <summary>Prompt length p.</summary>
    public int Tokens { get; init; } = 50;
    /// <summary>VPT-deep (prompts before every block) or VPT-shallow (before the first only).</summary>
    public bool Deep { get; init; } = true;
    /// <summary>Dropout on prompt tokens; the reference uses 0.1 for VPT-deep.</summary>
    public double Dropout { get; init; } = 0.1;
    /// <summary>&gt;0: prompts live in this width and a shared linear projection maps them to d (reference PROJECT).</summary>
    public int ProjectDim { get; init; } = -1;
    /// <summary>What the head sees (paper Fig. 6 "final output" ablation).</summary>
    public PromptOutput Output { get; init; } = PromptOutput.Cls;
    /// <summary>VPT-deep: first and last block (1-based, inclusive) that get prompts; null = all (paper Fig. 7 depth ablation).</summary>
    public int? FirstBlock { get; init; }
    public int? LastBlock { get; init; }
    /// <summary>Parameter sharing (paper appendix "sharing" ablation).</summary>
    public PromptSharing Sharing { get; init; } = PromptSharing.None;
    /// <summary>Where prompts enter (paper Fig. 5 "location" ablation).</summary>
    public PromptLocation Location { get; init; } = PromptLocation.Prepend;
    /// <summary>How prompts start (paper appendix B "initialization").</summary>
    public PromptInit Init { get; init; } = PromptInit.Random;

    /// <summary>Also train every backbone bias ("prompt+bias").</summary>
    public bool TrainBiases { get; init; }
    /// <summary>Keep prompts at their initial values; only the head trains ("prompt-fixed").</summary>
    public bool Fixed { get; init; }
    /// <summary>
    /// Compute VPT-deep in its prefix form, in training too: each block's prompts enter its attention as extra keys and
    /// values only (no prompt queries, no prompt rows in the MLP), which gives the same outputs and prompt gradients
    /// because VPT-deep discards every block's prompt outputs. Null (the default) = wherever that holds
    /// (<see cref="PromptsInexactReason"/>) and the backbone can take attention prefixes; true = required (refused where
    /// inexact); false = the token form. The method built from a config records the resolved value.
    /// </summary>
    public bool? PrefixForm { get; init; }

    public override string Method => TrainBiases ? "prompt+bias" : Fixed ? "prompt-fixed" : Deep ? "vpt-deep" : "vpt-shallow";
    public override string Label => $"{Method} p={Tokens}";

    /// <summary>Token prompts need a token sequence; pixel-space locations need the patch projection; prompt+bias the
    /// bias group every family has.</summary>
    public override BackboneCapability Requires => Location switch
    {
        PromptLocation.PrependPixel => BackboneCapability.TokenSequence | BackboneCapability.PatchProjection,
        PromptLocation.ConcatChannel => BackboneCapability.TokenSequence | BackboneCapability.PatchProjection,
        _ when PrefixForm == true => BackboneCapability.TokenSequence | BackboneCapability.AttentionPrefix,
        _ => BackboneCapability.TokenSequence,
    };

    /// <summary>On a backbone with windowed attention (Swin) prepended prompts join its windows (paper §4.2); elsewhere
    /// they need <see cref="Requires"/>.</summary>
    public override BackboneCapability RequiresOf(Backbone backbone) =>
        Location == PromptLocation.Prepend && PrefixForm != true && backbone.Has(BackboneCapability.WindowPrompts)
            ? BackboneCapability.WindowPrompts : Requires;

    protected override TuningMethod Create(Backbone backbone)
    {
        if (RequiresOf(backbone) == BackboneCapability.WindowPrompts) return new WindowedPrompts(this with { PrefixForm = false }, backbone);
        // Unless told, VPT-deep computes in its prefix form wherever that is exact and the backbone takes prefixes.
        var resolved = PrefixForm is null
            ? this with { PrefixForm = PromptsInexactReason(backbone.Depth) is null && backbone.Capabilities.HasFlag(BackboneCapability.AttentionPrefix)
                && !(backbone is ITokenSequenceBackbone { GlobalPool: true } && Output is PromptOutput.Cls or PromptOutput.GlobalPool) }
            : this;
        return Location switch
        {
            PromptLocation.PrependPixel => new PixelPrompts(resolved, backbone),
            PromptLocation.ConcatChannel => new ChannelPrompt(resolved, backbone),
            _ => new VisualPrompts(resolved, backbone),
        };
    }

    /// <summary>The registry entries of the prompt methods: VPT-shallow, VPT-deep and the two appendix variants.</summary>
    public static IEnumerable<MethodRegistry.Entry> Entries =>
    [
        new("vpt-shallow", "p prompt tokens inserted once, before the first block (VPT-shallow, paper §3.2)",
            "p·d  (+ head d·C + C)", typeof(PromptConfig), o => FromOptions(o, deep: false), [SweepAxis.PromptLength]),
        new("vpt-deep", "p prompt tokens per block, replacing the previous block's prompt outputs (VPT-deep)",
            "L·p·d  (+ head d·C + C)", typeof(PromptConfig), o => FromOptions(o, deep: true), [SweepAxis.PromptLength, SweepAxis.PromptDepth]),
        new("prompt+bias", "VPT-deep prompts plus every backbone bias (paper appendix, Table 9)",
            "L·p·d + d + 11·L·d + d  (+ head)", typeof(PromptConfig), o => FromOptions(o, deep: true) with { TrainBiases = true }, [SweepAxis.PromptLength]),
        new("prompt-fixed", "VPT-deep prompts kept at their random init; only the head trains (ablation)",
            "0 (prompts stored, not trained)  (+ head)", typeof(PromptConfig), o => FromOptions(o, deep: true) with { Fixed = true }, [SweepAxis.PromptLength]),
    ];

    public static PromptConfig FromOptions(MethodOptions o, bool deep) => new()
    {
        Tokens = o.Prompts, Deep = deep, ProjectDim = o.ProjectDim, PrefixForm = o.PrefixForm,
        Dropout = o.PromptDropout ?? (deep ? 0.1 : 0.0),
        Output = o.PromptOutput, Sharing = o.PromptSharing, FirstBlock = o.PromptDepth?.First, LastBlock = o.PromptDepth?.Last,
        Location = o.PromptLocation, Init = o.PromptInit,
    };

    /// <summary>
    /// Null when these prompts act on the image tokens only as per-block keys/values — the frozen backbone with a
    /// prefix in blocks i→L computes the same head input — else why not. Exact: VPT-deep (prompt-fixed too), prepend,
    /// output cls or image-pool, prompted blocks ending at the last block, no backbone parameter trained.
    /// </summary>
    public override string? PrefixInexactReason(int depth) =>
        TrainBiases ? "prompt+bias trains the backbone's biases, so its backbone differs from the shared frozen one: not a prefix"
            : PromptsInexactReason(depth);

    /// <summary><see cref="PrefixInexactReason"/> for the prompts alone (what --prefix-form training needs).</summary>
    /// <summary>The deep prompts' blocks, 0-based inclusive, on a backbone of <paramref name="depth"/> blocks;
    /// "from→to" in either direction names the same set, e.g. 12→7 = 7→12.</summary>
    public (int First, int Last) PromptedBlocks(int depth)
    {
        int a = FirstBlock ?? 1, b = LastBlock ?? depth;
        (a, b) = (Math.Min(a, b), Math.Max(a, b));
        if (a < 1 || b > depth) throw new ArgumentException($"prompt depth {a}→{b} is outside blocks 1→{depth}");
        return (a - 1, b - 1);
    }

    public string? PromptsInexactReason(int depth)
    {
        if (Location != PromptLocation.Prepend)
            return $"prompt location {KebabCase.Of(Location)} changes the tokens themselves, not only the keys/values: only prepend prompts are a prefix";
        if (!Deep)
            return "VPT-shallow is not a prefix: only block 1's prompts are fixed; later blocks see the prompt outputs, which depend on the image";
        if (Output is PromptOutput.PromptPool or PromptOutput.GlobalPool)
            return $"prompt output {KebabCase.Of(Output)} pools the prompt outputs, which a prefix never computes: only cls and image-pool are exact";
        int last = Math.Max(FirstBlock ?? 1, LastBlock ?? depth);
        return last == depth ? null
            : $"prompt depth ending at block {last} of {depth} is not a prefix: the last prompted block's prompt outputs stay in the sequence for blocks {last + 1}→{depth}";
    }

    /// <summary>On a globally pooling backbone (MAE) the head input as the reference's pool types (vit_prompt/vit_mae.py):
    /// cls = its default ("original": every token after CLS, prompts included), image-pool, prompt-pool, global-pool;
    /// each the mean, then the backbone's post-pool norm.</summary>
    public Tensor PoolGlobal(ITokenSequenceBackbone vit, Tensor tokens, int promptTokens)
    {
        long after = tokens.shape[1] - 1;
        return Output switch
        {
            PromptOutput.ImagePool => vit.PoolTokens(tokens, 1 + promptTokens, after - promptTokens),
            PromptOutput.PromptPool when promptTokens > 0 => vit.PoolTokens(tokens, 1, promptTokens),
            PromptOutput.PromptPool => throw new InvalidSettingException("prompt-output", "prompt-pool", $"needs prompt tokens in the sequence; prompt location {KebabCase.Of(Location)} adds none"),
            _ => vit.PoolTokens(tokens, 1, after),
        };
    }

    /// <summary>The pooled feature for <see cref="Output"/>, given how many prompt tokens follow CLS.</summary>
    public Tensor Pool(Tensor tokens, int promptTokens) => Output switch
    {
        PromptOutput.Cls => tokens.select(1, 0),
        PromptOutput.ImagePool => tokens[.., (1 + promptTokens)..].mean([1]),
        PromptOutput.PromptPool when promptTokens > 0 => tokens[.., 1..(1 + promptTokens)].mean([1]),
        PromptOutput.PromptPool => throw new InvalidSettingException("prompt-output", "prompt-pool", $"needs prompt tokens in the sequence; prompt location {KebabCase.Of(Location)} adds none"),
        _ => tokens[.., 1..].mean([1]),
    };
}
