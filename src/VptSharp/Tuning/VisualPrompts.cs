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

    public override string Method => Deep ? "vpt-deep" : "vpt-shallow";
    public override TuningMethod Create(VitConfig vit) => new VisualPrompts(this, vit);

    public static PromptConfig FromOptions(MethodOptions o, bool deep) => new()
    {
        Tokens = o.Prompts, Deep = deep, ProjectDim = o.ProjectDim,
        Dropout = o.PromptDropout ?? (deep ? 0.1 : 0.0),
    };
}

/// <summary>
/// Prompt tokens entering the backbone through its block hook. Before block 0 the p prompts are inserted after
/// CLS (after the position embedding, so they get none). For VPT-deep, before each later block the previous
/// block's prompt outputs are dropped and this block's own prompts take their place.
/// </summary>
public sealed class VisualPrompts : TuningMethod
{
    readonly PromptConfig config;
    /// <summary>[blocks-with-prompts, p, prompt width]: 1 row for shallow, L rows for deep.</summary>
    public readonly Parameter prompts;
    public readonly Linear? prompt_proj;
    readonly Dropout dropout;

    public VisualPrompts(PromptConfig config, VitConfig vit) : base("VisualPrompts")
    {
        if (config.Tokens < 1) throw new ArgumentException("prompt length must be at least 1 (--prompts)");
        this.config = config;
        int width = config.ProjectDim > 0 ? config.ProjectDim : vit.Width;
        int rows = config.Deep ? vit.Depth : 1;
        // Xavier-uniform over a patch-sized fan-in, as in the reference: uniform(±sqrt(6 / (3·patch² + width))).
        double bound = Math.Sqrt(6.0 / (3 * vit.PatchSize * vit.PatchSize + width));
        prompts = Parameter(empty(rows, config.Tokens, width).uniform_(-bound, bound));
        if (config.ProjectDim > 0)
        {
            prompt_proj = Linear(config.ProjectDim, vit.Width);
            init.kaiming_normal_(prompt_proj.weight!, a: 0, mode: init.FanInOut.FanOut);
            using (no_grad()) prompt_proj.bias!.zero_();
        }
        dropout = Dropout(config.Dropout);
        RegisterComponents();
    }

    public override MethodConfig Config => config;
    public override int ExtraTokens => config.Tokens;

    /// <summary>The prompt tokens for a block, projected to the backbone width: [p, d].</summary>
    public Tensor PromptsFor(int block)
    {
        var p = prompts[config.Deep ? block : 0];
        return prompt_proj is null ? p : prompt_proj.forward(p);
    }

    public override Tensor BeforeBlock(int block, Tensor tokens)
    {
        if (block > 0 && !config.Deep) return tokens;
        using var scope = NewDisposeScope();
        long b = tokens.shape[0];
        var p = dropout.forward(PromptsFor(block).unsqueeze(0).expand(b, -1, -1));
        var cls = tokens[.., ..1];
        // Block 0 inserts; later blocks replace the p tokens after CLS.
        var rest = block == 0 ? tokens[.., 1..] : tokens[.., (1 + config.Tokens)..];
        return cat([cls, p, rest], 1).MoveToOuterDisposeScope();
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
