using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

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

    public VisualPrompts(PromptConfig config, Backbone backbone) : base("VisualPrompts")
    {
        var vit = (ITokenSequenceBackbone)backbone;
        if (config.Tokens < 1) throw new InvalidSettingException("prompts", config.Tokens, "prompt length must be at least 1");
        this.config = config;
        if (config.Location == PromptLocation.Add && config.Tokens != 1 && config.Tokens != vit.NumPatches + 1)
            throw new InvalidSettingException("prompts", config.Tokens, $"prompt location add needs 1 or {vit.NumPatches + 1} prompts (one per token: CLS + {vit.NumPatches} patches)");
        if (config.Location == PromptLocation.Add && config.Output == PromptOutput.PromptPool)
            throw new InvalidSettingException("prompt-output", "prompt-pool", "needs prompt tokens; prompt location add adds none");
        if (config.Location is not (PromptLocation.Prepend or PromptLocation.Add))
            throw new ArgumentException($"location {config.Location} is built by PromptConfig.Create, not VisualPrompts");
        (first, last) = config.Deep ? config.PromptedBlocks(backbone.Depth) : (0, 0);
        if (config.PrefixForm == true && config.PromptsInexactReason(backbone.Depth) is string why)
            throw new InvalidSettingException("prefix-form", null, why);
        if (config.PrefixForm == true && vit.GlobalPool && config.Output is PromptOutput.Cls or PromptOutput.GlobalPool)
            throw new InvalidSettingException("prefix-form", null, "this backbone pools globally (MAE), prompt outputs included, which a prefix never computes; the image-pool prompt output avoids it");
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
            // As the reference (vit_prompt/vit.py): kaiming-normal fan_out weight; the bias keeps nn.Linear's default init.
            init.kaiming_normal_(prompt_proj.weight!, a: 0, mode: init.FanInOut.FanOut);
        }
        dropout = Dropout(config.Dropout);
        RegisterComponents();
    }


    public override MethodConfig Config => config;
    /// <summary>The blocks that get prompts, 0-based inclusive (VPT-shallow: block 0 only).</summary>
    public (int First, int Last) PromptedBlocks => (first, last);
    public override int ExtraTokens => config.Location == PromptLocation.Add || config.PrefixForm == true ? 0 : config.Tokens;

    public override IEnumerable<(string Name, Parameter Param)> OwnTrainableParameters() =>
        config.Fixed ? [] : base.OwnTrainableParameters();

    public override IEnumerable<(string Name, Parameter Param)> BackboneParametersToTrain(Backbone backbone) =>
        config.TrainBiases ? backbone.Parameters(ParameterGroup.Biases) : [];

    /// <summary>The prompt tokens for a block, projected to the backbone width: [p, d].</summary>
    public Tensor PromptsFor(int block)
    {
        using var scope = NewDisposeScope();
        var p = prompts[prompts.shape[0] == 1 ? 0 : block - first].expand(config.Tokens, -1);
        return (prompt_proj is null ? p : prompt_proj.forward(p)).MoveToOuterDisposeScope();
    }

    public override Tensor BeforeBlock(int block, Tensor tokens)
    {
        if (block < first || block > last || config.PrefixForm == true) return tokens;
        using var scope = NewDisposeScope();
        long b = tokens.shape[0];
        var p = dropout.forward(PromptsFor(block).unsqueeze(0).expand(b, -1, -1)).to(tokens.dtype); // float32 prompts, any backbone dtype
        if (config.Location == PromptLocation.Add) // each prompted block adds its prompts to every token entering it, CLS included (reference "add" / "add-1")
            return (tokens + p).MoveToOuterDisposeScope();
        var cls = tokens[.., ..1];
        // The first prompted block inserts; later ones replace the p tokens after CLS.
        var rest = block == first ? tokens[.., 1..] : tokens[.., (1 + config.Tokens)..];
        return cat([cls, p, rest], 1).MoveToOuterDisposeScope();
    }

    /// <summary>Prefix form: the block's prompts (after dropout) as key/value-only tokens. Without active dropout one
    /// [1, p, d] set serves the whole batch; with it each sample gets its own mask, as in the token form.</summary>
    public override Tensor? KeyValueTokens(int block, long batch)
    {
        if (config.PrefixForm != true || block < first || block > last) return null;
        using var scope = NewDisposeScope();
        var p = PromptsFor(block).unsqueeze(0);
        if (training && config.Dropout > 0) p = dropout.forward(p.expand(batch, -1, -1));
        return p.MoveToOuterDisposeScope();
    }

    public override Tensor Pool(Backbone backbone, Tensor tokens) => backbone is ITokenSequenceBackbone { GlobalPool: true } vit
        ? config.PoolGlobal(vit, tokens, ExtraTokens) : config.Pool(tokens, ExtraTokens);

    /// <summary>VPT-prefix: block i's prompts (after any projection, without dropout) serve only as its keys/values.</summary>
    public override Tensor? PrefixTokens(int block) => block < first || block > last ? null : PromptsFor(block);

    /// <summary>Cls-prototype init: every prompted block's prompts become the per-class prototypes [C = p, d].</summary>
    public void InitializeFromPrototypes(Tensor prototypes)
    {
        if (prompt_proj is not null || prompts.shape[1] != config.Tokens)
            throw new InvalidSettingException("prompt-init", "cls-prototype", "needs unshared, unprojected prompts (sharing none or inter, no projection)");
        if (prototypes.shape[0] != config.Tokens || prototypes.shape[1] != prompts.shape[2])
            throw new InvalidSettingException("prompts", config.Tokens, $"cls-prototype init needs one prompt per class: {prototypes.shape[0]}");
        using (no_grad()) prompts.copy_(prototypes.unsqueeze(0).expand_as(prompts));
    }
}
