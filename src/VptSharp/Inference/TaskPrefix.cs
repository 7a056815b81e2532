using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Tuning;
using static TorchSharp.torch;

namespace VptSharp.Inference;

/// <summary>
/// One task as per-block key/value prefixes on its frozen backbone, and the pooling its head expects. As an
/// <see cref="IBlockHooks"/> it runs the task on the plain backbone: <c>backbone.ForwardFeatures(images, prefix)</c>.
/// </summary>
public sealed class TaskPrefix : IBlockHooks, IDisposable
{
    /// <summary>Per block: [1, heads, p, head_dim], or null where the block has no prompts.</summary>
    readonly Tensor?[] keys, values;

    /// <summary>What the head sees: <see cref="PromptOutput.Cls"/> or <see cref="PromptOutput.ImagePool"/>.</summary>
    public PromptOutput Output { get; }
    public int Depth => keys.Length;

    TaskPrefix(Tensor?[] keys, Tensor?[] values, PromptOutput output) => (this.keys, this.values, Output) = (keys, values, output);

    /// <summary>Prefix length of a block (0 = no prompts there).</summary>
    public int LengthAt(int block) => keys[block] is Tensor k ? (int)k.shape[2] : 0;
    public Tensor? KeysAt(int block) => keys[block];
    public Tensor? ValuesAt(int block) => values[block];

    /// <summary>Precomputes K_i, V_i from the model's prompts (after any projection, without dropout) and the frozen
    /// norm1 / qkv of each prompted block; refuses methods for which this is not exact (<see cref="PrefixRules.Check"/>).</summary>
    public static TaskPrefix FromModel(PromptedModel model)
    {
        var backbone = model.backbone;
        PrefixRules.Check(model.method.Config, backbone.Depth);
        if (backbone is not IAttentionPrefixBackbone attention)
            throw new UnsupportedMethodException("VPT-prefix", backbone.Family, BackboneCapabilities.Describe(BackboneCapability.AttentionPrefix));
        var keys = new Tensor?[backbone.Depth];
        var values = new Tensor?[backbone.Depth];
        var output = model.method.Config is PromptConfig pc ? pc.Output : PromptOutput.Cls;
        using var _ = no_grad();
        for (int i = 0; i < backbone.Depth; i++)
        {
            using var scope = NewDisposeScope();
            if (model.method.PrefixTokens(i) is not Tensor tokens) continue;
            var kv = attention.KeyValuesOf(i, tokens.unsqueeze(0)); // [1, heads, p, head_dim] each
            // Owned by this prefix (disposed in Dispose), whatever scope the caller is in.
            keys[i] = kv.Keys.contiguous().DetachFromDisposeScope();
            values[i] = kv.Values.contiguous().DetachFromDisposeScope();
        }
        return new TaskPrefix(keys, values, output);
    }

    public Tensor BeforeBlock(int block, Tensor tokens) => tokens;

    public KeyValuePrefix? PrefixKeyValues(int block) =>
        keys[block] is Tensor k ? new KeyValuePrefix(k, values[block]!) : null;

    /// <summary>The pooled feature from a final-norm sequence of CLS + patch tokens (no prompt tokens in it): [B, d].</summary>
    public Tensor Pool(Tensor tokens) => Pool(tokens, Output);

    /// <summary>CLS or mean of the image-patch tokens of a prompt-free final-norm sequence.</summary>
    public static Tensor Pool(Tensor tokens, PromptOutput output) => output == PromptOutput.ImagePool
        ? tokens[.., 1..].mean([1])
        : tokens.select(1, 0).clone();

    /// <summary>Pooled feature of images on the plain backbone with this prefix (equals the prompted model's features).</summary>
    public Tensor Features(Backbone backbone, Tensor images)
    {
        using var scope = NewDisposeScope();
        return Pool(backbone.ForwardFeatures(images, this)).MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var t in keys.Concat(values)) t?.Dispose();
    }
}
