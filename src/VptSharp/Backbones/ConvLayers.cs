using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Backbones;

/// <summary>
/// BatchNorm2d that always normalises with its running statistics (torchvision's eval mode), also while its affine
/// weights train: tuning sets are small (VTAB-1k: 800 images) and a frozen backbone must give the same features in
/// training and prediction. Buffers and names are torch's (running_mean, running_var, num_batches_tracked).
/// Initialised explicitly (weight 1, bias 0, mean 0, var 1), not left to a factory.
/// </summary>
public sealed class FrozenBatchNorm2d : Module<Tensor, Tensor>
{
    public readonly Parameter weight, bias;
    public readonly Tensor running_mean, running_var, num_batches_tracked;
    readonly double eps;

    public FrozenBatchNorm2d(long channels, double eps = 1e-5) : base("BatchNorm2d")
    {
        this.eps = eps;
        weight = Parameter(ones(channels));
        bias = Parameter(zeros(channels));
        running_mean = zeros(channels);
        running_var = ones(channels);
        num_batches_tracked = zeros(1, dtype: int64).squeeze();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) =>
        functional.batch_norm(x, running_mean, running_var, weight, bias, training: false, eps: eps);
}

/// <summary>LayerNorm over the channels of an NCHW map (torchvision's LayerNorm2d: permute, normalise, permute back).
/// Weight 1 and bias 0 set explicitly.</summary>
public sealed class LayerNorm2d : Module<Tensor, Tensor>
{
    public readonly Parameter weight, bias;
    readonly double eps;

    public LayerNorm2d(long channels, double eps = 1e-6) : base("LayerNorm2d")
    {
        this.eps = eps;
        weight = Parameter(ones(channels));
        bias = Parameter(zeros(channels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var nhwc = x.permute(0, 2, 3, 1);
        using var y = functional.layer_norm(nhwc, [weight.shape[0]], weight, bias, eps);
        return y.permute(0, 3, 1, 2);
    }
}

/// <summary>A container that registers its children under the given names ("0", "2", …) so state-dict keys follow
/// the reference layout (torchvision's nn.Sequential indices) while the parent keeps typed references.</summary>
public sealed class Named : Module
{
    /// <summary>Children are registered explicitly under torchvision's names; TorchSharp's field-name registration
    /// (which it also runs lazily) would add them a second time under the C# field names.</summary>
    protected override void RegisterComponents() { }

    public Named(params (string Name, Module Child)[] children) : base("Named")
    {
        foreach (var (n, c) in children) register_module(n, c);
    }

    /// <summary>Replaces (or with null removes) a child: TorchSharp has no unregister; the registry is this module's own.</summary>
    public void Set(string name, Module? child)
    {
        if (named_children().Any(c => c.name == name)) _internal_submodules.Remove(name);
        if (child is not null) register_module(name, child);
    }
}

/// <summary>Shared by the ConvNet families: state-dict copy with one error listing missing/unexpected keys and
/// mismatched shapes.</summary>
public static class ConvNetWeights
{
    /// <summary>Copies <paramref name="tensors"/> (already in the module's own names) into <paramref name="model"/>;
    /// keys starting with one of <paramref name="optionalPrefixes"/> may be absent (a classifier the model lacks).</summary>
    public static void CopyInto(Module model, IReadOnlyDictionary<string, Tensor> tensors, string what, string family, params string[] optionalPrefixes)
    {
        var expected = model.state_dict();
        bool Optional(string k) => optionalPrefixes.Any(k.StartsWith) || k.EndsWith("num_batches_tracked");
        var missing = expected.Keys.Where(k => !tensors.ContainsKey(k) && !Optional(k)).ToList();
        var unexpected = tensors.Keys.Where(k => !expected.ContainsKey(k) && !Optional(k)).ToList();
        var wrongShape = expected.Where(kv => tensors.TryGetValue(kv.Key, out var t) && !t.shape.SequenceEqual(kv.Value.shape))
            .Select(kv => $"{kv.Key} [{string.Join(",", tensors[kv.Key].shape)}] vs [{string.Join(",", kv.Value.shape)}]").ToList();
        if (missing.Count + unexpected.Count + wrongShape.Count > 0)
            throw new CheckpointException($"{what}: checkpoint does not match a {family}: "
                + string.Join("; ", new[] { ("missing", missing), ("unexpected", unexpected), ("shape", wrongShape) }.Where(x => x.Item2.Count > 0)
                    .Select(x => $"{x.Item1} [{string.Join(", ", x.Item2.Take(8))}{(x.Item2.Count > 8 ? $", … {x.Item2.Count} in all" : "")}]"))
                + "; check the architecture name (--arch) or that the file is this family's state dict");
        using var _ = no_grad();
        foreach (var (k, dst) in expected)
            if (tensors.TryGetValue(k, out var src)) dst.copy_(src.to(dst.dtype));
    }
}
