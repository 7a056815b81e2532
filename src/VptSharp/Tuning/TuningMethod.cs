using TorchSharp;
using VptSharp.Backbones;
using static TorchSharp.torch;

namespace VptSharp.Tuning;

/// <summary>
/// The module a method adds to a frozen backbone. It owns its trainable tensors, attaches through
/// <see cref="IBlockHooks"/>, and names the backbone parameters (if any) that it unfreezes — explicitly, never by
/// matching parameter names.
/// </summary>
public abstract class TuningMethod(string name) : nn.Module(name), IBlockHooks
{
    public abstract MethodConfig Config { get; }

    /// <summary>Input-level hook: images → what block 1 takes (the backbone's own embedding by default). Pixel-space
    /// prompt locations change the input here, through the frozen patch embedding.</summary>
    public virtual Tensor Embed(Backbone backbone, Tensor images) => backbone.Embed(images);

    public virtual Tensor BeforeBlock(int block, Tensor tokens) => tokens;

    public virtual Tensor AfterMlp(int block, Tensor mlpOutput) => mlpOutput;

    public virtual Tensor? KeyValueTokens(int block, long batch) => null;

    public virtual Tensor? WindowPrompts(int block, Tensor? carried, long batch) => carried;

    /// <summary>The feature the head sees, from the backbone's final features: the backbone's own pooling unless the
    /// method says otherwise.</summary>
    public virtual Tensor Pool(Backbone backbone, Tensor features) => backbone.Pool(features);

    /// <summary>Blends the pooled backbone feature with anything computed from the images themselves (a side network).</summary>
    public virtual Tensor CombineFeatures(Tensor pooled, Tensor images) => pooled;

    /// <summary>Transforms the pooled feature before the linear head (an MLP head's hidden layers).</summary>
    public virtual Tensor ProcessFeatures(Tensor pooled) => pooled;

    /// <summary>Tokens the method adds after CLS (prompt tokens), so heads can tell image tokens apart.</summary>
    public virtual int ExtraTokens => 0;

    /// <summary>The method's own parameters that train (default: all of them; prompt-fixed keeps its prompts frozen).</summary>
    public virtual IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> OwnTrainableParameters() =>
        named_parameters().Select(p => (p.name, p.parameter));

    /// <summary>Backbone parameters this method trains (none for prompt methods and linear probing).</summary>
    public virtual IEnumerable<(string Name, TorchSharp.Modules.Parameter Param)> BackboneParametersToTrain(Backbone backbone) => [];

    /// <summary>For a method that is exact as a key/value prefix (<see cref="MethodConfig.PrefixInexactReason"/> null):
    /// the tokens [p, d] whose keys/values block <paramref name="block"/> attends to, or null where it has none.</summary>
    public virtual Tensor? PrefixTokens(int block) => null;

    /// <summary>True when the method adds nothing the backbone's features depend on, so frozen features may be cached.</summary>
    public virtual bool FeaturesAreFrozen => false;
}
