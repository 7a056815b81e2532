using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
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
    /// because VPT-deep discards every block's prompt outputs. Only where that holds (<see cref="PrefixInexactReason"/>).
    /// </summary>
    public bool PrefixForm { get; init; }

    public override string Method => TrainBiases ? "prompt+bias" : Fixed ? "prompt-fixed" : Deep ? "vpt-deep" : "vpt-shallow";
    public override TuningMethod Create(VitConfig vit) => Location switch
    {
        PromptLocation.PrependPixel => new PixelPrompts(this, vit),
        PromptLocation.ConcatChannel => new ChannelPrompt(this, vit),
        _ => new VisualPrompts(this, vit),
    };

    public static PromptConfig FromOptions(MethodOptions o, bool deep) => new()
    {
        Tokens = o.Prompts, Deep = deep, ProjectDim = o.ProjectDim, PrefixForm = o.PrefixForm,
        Dropout = o.PromptDropout ?? (deep ? 0.1 : 0.0),
        Output = o.PromptOutput, Sharing = o.PromptSharing, FirstBlock = o.PromptDepth?.First, LastBlock = o.PromptDepth?.Last,
        Location = o.PromptLocation, Init = o.PromptInit,
    };

    /// <summary>The VPT ablation flags of `vpt train` (paper §4.3, appendix B) with their prompt-parameter formulas.</summary>
    public static readonly IReadOnlyList<(string Flag, string Description, string ParameterFormula)> Ablations =
    [
        ("--prompt-location prepend", "p tokens after CLS (default)", "L·p·d deep, p·d shallow"),
        ("--prompt-location add", "added to the image-patch tokens (CLS untouched), p = 1 or N patches", "L·p·d deep, p·d shallow"),
        ("--prompt-location prepend-pixel", "p patch-sized pixel blocks through the frozen patch embedding (vpt-shallow)", "p·3·P²"),
        ("--prompt-location concat-channel", "a learnable 4th input channel + its zero-init patch filter (vpt-shallow)", "H·W + d·P²"),
        ("--prompt-output cls|image-pool|prompt-pool|global-pool", "what the head sees (Fig. 6)", "unchanged"),
        ("--prompt-depth i-j", "prompts only in blocks i..j, either order (Fig. 7)", "(|j−i|+1)·p·d"),
        ("--prompt-sharing intra|inter|all", "one vector per block | same p prompts in every block | one vector everywhere", "L·d | p·d | d"),
        ("--prompt-init cls-prototype", "prompt k = mean final CLS embedding of class k (appendix B)", "p = C: L·C·d"),
        ("--project k", "prompts of width k through a shared linear map to d", "L·p·k + k·d + d"),
    ];

    /// <summary>
    /// Null when these prompts act on the image tokens only as per-block keys/values — the frozen backbone with a
    /// prefix in blocks i→L computes the same head input — else why not. Exact: VPT-deep, prepend, output cls or
    /// image-pool, prompted blocks ending at the last block. (Whether a backbone may be shared is a separate question.)
    /// </summary>
    public string? PrefixInexactReason(int depth)
    {
        if (Location != PromptLocation.Prepend)
            return $"prompt location {Kebab(Location)} changes the tokens themselves, not only the keys/values: only prepend prompts are a prefix";
        if (!Deep)
            return "VPT-shallow is not a prefix: only block 1's prompts are fixed; later blocks see the prompt outputs, which depend on the image";
        if (Output is PromptOutput.PromptPool or PromptOutput.GlobalPool)
            return $"--prompt-output {Kebab(Output)} pools the prompt outputs, which a prefix never computes: only cls and image-pool are exact";
        int last = Math.Max(FirstBlock ?? 1, LastBlock ?? depth);
        return last == depth ? null
            : $"prompt depth ending at block {last} of {depth} is not a prefix: the last prompted block's prompt outputs stay in the sequence for blocks {last + 1}→{depth}";
    }

    static string Kebab<T>(T value) where T : Enum =>
        System.Text.RegularExpressions.Regex.Replace(value.ToString(), "(?<=[a-z])([A-Z])", "-$1").ToLowerInvariant();

    /// <summary>The pooled feature for <see cref="Output"/>, given how many prompt tokens follow CLS.</summary>
    public Tensor Pool(Tensor tokens, int promptTokens) => Output switch
    {
        PromptOutput.Cls => tokens.select(1, 0),
        PromptOutput.ImagePool => tokens[.., (1 + promptTokens)..].mean([1]),
        PromptOutput.PromptPool when promptTokens > 0 => tokens[.., 1..(1 + promptTokens)].mean([1]),
        PromptOutput.PromptPool => throw new ArgumentException($"--prompt-output prompt-pool needs prompt tokens in the sequence; location {Location} adds none"),
        _ => tokens[.., 1..].mean([1]),
    };
}

public enum PromptLocation
{
    /// <summary>p tokens inserted after CLS (the paper's default).</summary>
    Prepend,
    /// <summary>Prompts added element-wise to the image-patch tokens (not CLS); sequence length unchanged. p = 1 (one vector
    /// added to every patch) or p = number of patches (prompt i added to patch i).</summary>
    Add,
    /// <summary>p learnable patch-sized pixel blocks, embedded by the frozen patch projection, prepended after CLS (input level).</summary>
    PrependPixel,
    /// <summary>A learnable 4th input channel, seen through an extra, zero-initialised patch-projection channel (input level).</summary>
    ConcatChannel,
}

public enum PromptInit
{
    /// <summary>Xavier-uniform over a patch-sized fan-in (the reference default).</summary>
    Random,
    /// <summary>Per-class mean of the frozen backbone's final CLS embedding on the train split, one prompt per class
    /// (paper appendix B); set by the trainer before the first step.</summary>
    ClsPrototype,
}

public enum PromptOutput
{
    /// <summary>The final CLS token (default).</summary>
    Cls,
    /// <summary>Mean of the image-patch outputs.</summary>
    ImagePool,
    /// <summary>Mean of the prompt outputs.</summary>
    PromptPool,
    /// <summary>Mean of prompt and image-patch outputs (all but CLS).</summary>
    GlobalPool,
}

public enum PromptSharing
{
    /// <summary>p distinct prompts per prompted block.</summary>
    None,
    /// <summary>One vector per block, repeated p times ("shared-intra").</summary>
    Intra,
    /// <summary>The same p prompts at every prompted block ("shared-inter").</summary>
    Inter,
    /// <summary>One vector, repeated p times, at every prompted block ("shared-all").</summary>
    All,
}

/// <summary>
/// Prompt tokens entering the backbone through its block hook. At the first prompted block the p prompts are
/// inserted after CLS (after the position embedding, so they get none). For VPT-deep, before each later prompted
/// block the previous block's prompt outputs are dropped and this block's own prompts take their place; blocks
/// outside the prompted range carry whatever sequence they receive.
/// </summary>
public sealed class VisualPrompts : TuningMethod
{
    readonly PromptConfig config;
    readonly int first, last; // 0-based, inclusive
    /// <summary>[rows, p or 1, prompt width]: one row per prompted block, or a single shared row.</summary>
    public readonly Parameter prompts;
    public readonly Linear? prompt_proj;
    readonly Dropout dropout;

    public VisualPrompts(PromptConfig config, VitConfig vit) : base("VisualPrompts")
    {
        if (config.Tokens < 1) throw new ArgumentException("prompt length must be at least 1 (--prompts)");
        this.config = config;
        if (config.Location == PromptLocation.Add && config.Tokens != 1 && config.Tokens != vit.NumPatches)
            throw new ArgumentException($"--prompt-location add needs --prompts 1 or {vit.NumPatches} (one per image patch), not {config.Tokens}");
        if (config.Location == PromptLocation.Add && config.Output == PromptOutput.PromptPool)
            throw new ArgumentException("--prompt-output prompt-pool needs prompt tokens; --prompt-location add adds none");
        if (config.Location is not (PromptLocation.Prepend or PromptLocation.Add))
            throw new ArgumentException($"location {config.Location} is built by PromptConfig.Create, not VisualPrompts");
        (first, last) = config.Deep ? PromptedRange(config, vit.Depth) : (0, 0);
        if (config.PrefixForm && config.PrefixInexactReason(vit.Depth) is string why)
            throw new ArgumentException($"--prefix-form: {why}");
        int width = config.ProjectDim > 0 ? config.ProjectDim : vit.Width;
        bool sharedAcrossBlocks = config.Sharing is PromptSharing.Inter or PromptSharing.All;
        bool oneVectorPerBlock = config.Sharing is PromptSharing.Intra or PromptSharing.All;
        int rows = sharedAcrossBlocks ? 1 : last - first + 1;
        // Xavier-uniform over a patch-sized fan-in, as in the reference: uniform(±sqrt(6 / (3·patch² + width))).
        double bound = Math.Sqrt(6.0 / (3 * vit.PatchSize * vit.PatchSize + width));
        prompts = Parameter(empty(rows, oneVectorPerBlock ? 1 : config.Tokens, width).uniform_(-bound, bound));
        if (config.ProjectDim > 0)
        {
            prompt_proj = Linear(config.ProjectDim, vit.Width);
            init.kaiming_normal_(prompt_proj.weight!, a: 0, mode: init.FanInOut.FanOut);
            using (no_grad()) prompt_proj.bias!.zero_();
        }
        dropout = Dropout(config.Dropout);
        RegisterComponents();
    }

    /// <summary>"from→to" in either direction names the same set of blocks; e.g. 12→7 = 7→12.</summary>
    static (int First, int Last) PromptedRange(PromptConfig c, int depth)
    {
        int a = c.FirstBlock ?? 1, b = c.LastBlock ?? depth;
        (a, b) = (Math.Min(a, b), Math.Max(a, b));
        if (a < 1 || b > depth) throw new ArgumentException($"prompt depth {a}→{b} is outside blocks 1→{depth}");
        return (a - 1, b - 1);
    }

    public override MethodConfig Config => config;
    /// <summary>The blocks that get prompts, 0-based inclusive (VPT-shallow: block 0 only).</summary>
    public (int First, int Last) PromptedBlocks => (first, last);
    public override int ExtraTokens => config.Location == PromptLocation.Add || config.PrefixForm ? 0 : config.Tokens;

    public override IEnumerable<(string Name, Parameter Param)> OwnTrainableParameters() =>
        config.Fixed ? [] : base.OwnTrainableParameters();

    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(VisionTransformer backbone) =>
        config.TrainBiases ? backbone.BiasParameters() : [];

    /// <summary>The prompt tokens for a block, projected to the backbone width: [p, d].</summary>
    public Tensor PromptsFor(int block)
    {
        using var scope = NewDisposeScope();
        var p = prompts[prompts.shape[0] == 1 ? 0 : block - first].expand(config.Tokens, -1);
        return (prompt_proj is null ? p : prompt_proj.forward(p)).MoveToOuterDisposeScope();
    }

    public override Tensor BeforeBlock(int block, Tensor tokens)
    {
        if (block < first || block > last || config.PrefixForm) return tokens;
        using var scope = NewDisposeScope();
        long b = tokens.shape[0];
        var p = dropout.forward(PromptsFor(block).unsqueeze(0).expand(b, -1, -1)).to(tokens.dtype); // float32 prompts, any backbone dtype
        if (config.Location == PromptLocation.Add) // each prompted block adds its prompts to the patch tokens entering it
            return cat([tokens[.., ..1], tokens[.., 1..] + p], 1).MoveToOuterDisposeScope();
        var cls = tokens[.., ..1];
        // The first prompted block inserts; later ones replace the p tokens after CLS.
        var rest = block == first ? tokens[.., 1..] : tokens[.., (1 + config.Tokens)..];
        return cat([cls, p, rest], 1).MoveToOuterDisposeScope();
    }

    /// <summary>Prefix form: the block's prompts (after dropout) as key/value-only tokens. Without active dropout one
    /// [1, p, d] set serves the whole batch; with it each sample gets its own mask, as in the token form.</summary>
    public override Tensor? KeyValueTokens(int block, long batch)
    {
        if (!config.PrefixForm || block < first || block > last) return null;
        using var scope = NewDisposeScope();
        var p = PromptsFor(block).unsqueeze(0);
        if (training && config.Dropout > 0) p = dropout.forward(p.expand(batch, -1, -1));
        return p.MoveToOuterDisposeScope();
    }

    public override Tensor Pool(Tensor tokens) => config.Pool(tokens, ExtraTokens);

    /// <summary>Cls-prototype init: every prompted block's prompts become the per-class prototypes [C = p, d].</summary>
    public void InitializeFromPrototypes(Tensor prototypes)
    {
        if (prompt_proj is not null || prompts.shape[1] != config.Tokens)
            throw new ArgumentException("cls-prototype init needs unshared, unprojected prompts (--prompt-sharing none or inter, no --project)");
        if (prototypes.shape[0] != config.Tokens || prototypes.shape[1] != prompts.shape[2])
            throw new ArgumentException($"cls-prototype init needs one prompt per class: --prompts {prototypes.shape[0]} (got {config.Tokens})");
        using (no_grad()) prompts.copy_(prototypes.unsqueeze(0).expand_as(prompts));
    }
}

/// <summary>Linear probing: nothing is added to the backbone; only the head trains.</summary>
public sealed record LinearProbeConfig : MethodConfig
{
    public override string Method => "linear";
    public override TuningMethod Create(VitConfig vit) => new LinearProbe(this);
}

public sealed class LinearProbe(LinearProbeConfig config) : TuningMethod("LinearProbe")
{
    public override MethodConfig Config => config;
    public override bool FeaturesAreFrozen => true;
}
