using System.Text.Json.Serialization;
using VptSharp.Backbones;

namespace VptSharp.Tuning;

/// <summary>
/// A tuning method's settings. A method is a small config record + the module it adds (<see cref="TuningMethod"/>)
/// + how that module attaches (block hooks) + which parameters train. Configs round-trip through JSON in task files.
/// Everything the rest of the library asks about a method — which backbone capabilities it needs, whether it trains the
/// whole backbone, whether it is exact as a key/value prefix, its one-line label — it answers here, about itself.
/// </summary>
public abstract record MethodConfig
{
    [JsonIgnore] public abstract string Method { get; }

    /// <summary>The backbone capabilities <see cref="Create"/> relies on; <see cref="Attach"/> refuses a backbone without them.</summary>
    [JsonIgnore] public virtual BackboneCapability Requires => BackboneCapability.None;

    /// <summary>What the method needs of this backbone: <see cref="Requires"/>, unless the method has a form for a
    /// capability the family offers instead (VPT: window prompts on a Swin, prompt tokens on a ViT).</summary>
    public virtual BackboneCapability RequiresOf(Backbone backbone) => Requires;

    /// <summary>True when every backbone weight trains: such methods default to AdamW (as the reference does for end-to-end
    /// fine-tuning) and their task file is necessarily a whole model.</summary>
    [JsonIgnore] public virtual bool TrainsWholeBackbone => false;

    /// <summary>A short label with the settings that matter ("vpt-deep p=50", "adapter r=8").</summary>
    [JsonIgnore] public virtual string Label => Method;

    /// <summary>
    /// Null when the method's forward equals the frozen backbone with a per-block key/value prefix and a CLS or
    /// image-pool head (so it can share one backbone pass with other tasks: VPT-prefix), else why not.
    /// </summary>
    public virtual string? PrefixInexactReason(int depth) =>
        $"method {Method} changes the backbone's computation, not just per-block keys/values: it cannot share the frozen backbone as a prefix";

    /// <summary>Builds the method's module for <paramref name="backbone"/>, after checking the backbone offers what it needs.</summary>
    public TuningMethod Attach(Backbone backbone)
    {
        var missing = RequiresOf(backbone) & ~backbone.Capabilities;
        if (missing != BackboneCapability.None)
            throw new UnsupportedMethodException(Method, backbone.Family, BackboneCapabilities.Describe(missing));
        return Create(backbone);
    }

    /// <summary>Builds the module; <see cref="Requires"/> has been checked, so capability interfaces may be cast to.</summary>
    protected abstract TuningMethod Create(Backbone backbone);
}
