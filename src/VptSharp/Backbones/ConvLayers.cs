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
    public double Eps => eps;

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

/// <summary>
/// A convolution and the <see cref="FrozenBatchNorm2d"/> after it as one convolution with a bias: weight w·γ/√(σ²+ε),
/// bias β − μ·γ/√(σ²+ε) (computed in float32, stored in the weight's dtype). One pass over the output instead of two, as
/// inference runtimes (ONNX Runtime, torch.fx's fuser) do it. Built from the tensors' values when constructed: for a
/// backbone that no longer trains (<see cref="Backbone.FoldNormsForInference"/>).
/// </summary>
public sealed class FoldedConvBn : IDisposable
{
    readonly Tensor weight, bias;
    readonly long stride, padding;

    public FoldedConvBn(Tensor convWeight, FrozenBatchNorm2d bn, long stride, long padding)
    {
        (this.stride, this.padding) = (stride, padding);
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        using var eps = bn.Eps.ToScalar(); // Scalars held across the native calls (see Scalars)
        var scale = bn.weight.to(ScalarType.Float32).mul(bn.running_var.to(ScalarType.Float32).add(eps, Scalars.One).rsqrt());
        weight = convWeight.to(ScalarType.Float32).mul(scale.view(-1, 1, 1, 1)).to(convWeight.dtype).MoveToOuterDisposeScope();
        bias = bn.bias.to(ScalarType.Float32).sub(bn.running_mean.to(ScalarType.Float32).mul(scale)).to(convWeight.dtype).MoveToOuterDisposeScope();
    }

    public Tensor forward(Tensor x)
    {
        if (x.dtype != weight.dtype)
            throw new InvalidOperationException($"these folded norms are {weight.dtype}, the input {x.dtype}: fold again after changing the backbone's precision");
        return weight.shape[2] == 1 && weight.shape[3] == 1 && padding == 0
            ? PointwiseConv2d.Apply(x, weight, bias, stride)
            : functional.conv2d(x, weight, bias, strides: [stride, stride], padding: [padding, padding]);
    }

    public void Dispose() { weight.Dispose(); bias.Dispose(); }
}

/// <summary>
/// The channels-last memory layout (same shape, NHWC strides) for a ConvNet's first convolution in reduced precision.
/// libtorch's oneDNN bf16 kernel for the 3-channel 7×7/2 stem reorders an NCHW input at a cost larger than the conv;
/// on NHWC it does not. Measured on ResNet-18, 224 px, batch 8, 2 threads, avx512_bf16 EPYC (ms/img; table in
/// docs/results/resnet18-vs-mlnet.md): bf16 stem 4.7–5.4 NCHW vs 1.1–1.3 channels-last; bf16 blocks were slower
/// channels-last (9.4–11.8 vs 6.0–8.6), and so was fp32 (stem 19.2 vs 5.0–8.3). So ResNet converts only a bf16/fp16 stem input and returns to
/// NCHW after it; ConvNeXt's blocks permute to NHWC anyway and stay channels-last. TorchSharp 0.107 has no memory_format
/// argument: the layout is made by a permute round trip. Off when the environment variable VPTSHARP_CHANNELS_LAST is 0.
/// </summary>
public static class ChannelsLast
{
    /// <summary>Read on every forward.</summary>
    public static bool Enabled { get; set; } = Environment.GetEnvironmentVariable("VPTSHARP_CHANNELS_LAST") != "0";

    /// <summary>x [B, C, H, W] with NHWC strides when enabled and x is bf16/fp16; otherwise (or when it has them
    /// already) an alias of x.</summary>
    public static Tensor ForConv(Tensor x)
    {
        if (!Enabled || x.dim() != 4 || x.dtype is not (ScalarType.BFloat16 or ScalarType.Float16) || IsChannelsLast(x)) return x.alias();
        using var nhwc = x.permute(0, 2, 3, 1).contiguous();
        return nhwc.permute(0, 3, 1, 2);
    }

    /// <summary>Whether x [B, C, H, W] is laid out NHWC. Strides of size-1 dimensions do not matter: a 1-pixel map or
    /// a single channel is both layouts at once.</summary>
    public static bool IsChannelsLast(Tensor x)
    {
        if (x.dim() != 4) return false;
        var (shape, stride) = (x.shape, x.stride());
        long[] nhwc = [shape[1] * shape[2] * shape[3], 1, shape[3] * shape[1], shape[1]];
        for (int d = 0; d < 4; d++)
            if (shape[d] > 1 && stride[d] != nhwc[d]) return false;
        return true;
    }
}

/// <summary>
/// A 1×1 convolution (torch's Conv2d parameter name and [out, in, 1, 1] shape) computed as a matrix product over the
/// channels of the NHWC view, with stride by subsampling. On channels-last input libtorch 2.10's oneDNN 1×1 kernels gave
/// wrong fp32 values (256 → 512 off by up to 2.2 on outputs of magnitude 3–4) and crashed in bf16 (1024 → 2048 at 7 px) on
/// an avx512_bf16 EPYC, while every 3×3 and 7×7 matched (tools/probes/ChannelsLastProbe.cs). The product is the same
/// arithmetic, through the GEMMs the ViT already uses; the output keeps the input's layout. No bias (ResNet's have none).
/// </summary>
public sealed class PointwiseConv2d : Module<Tensor, Tensor>
{
    public readonly Parameter weight;
    readonly long stride;

    public PointwiseConv2d(long inChannels, long outChannels, long stride = 1) : base("Conv2d")
    {
        this.stride = stride;
        weight = Parameter(empty(outChannels, inChannels, 1, 1));
        init.kaiming_uniform_(weight, Math.Sqrt(5)); // torch's Conv2d default; checkpoints overwrite it
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Apply(x, weight, null, stride);

    /// <summary>The 1×1 convolution of x with <paramref name="weight"/> [out, in, 1, 1] and an optional bias [out].</summary>
    public static Tensor Apply(Tensor x, Tensor weight, Tensor? bias, long stride)
    {
        using var scope = NewDisposeScope();
        var sampled = stride == 1 ? x : x[.., .., TensorIndex.Slice(null, null, stride), TensorIndex.Slice(null, null, stride)];
        var w = weight.flatten(1);
        if (ChannelsLast.IsChannelsLast(x)) // [B, H, W, C] · Wᵀ (+ b), viewed back as NCHW with NHWC strides
            return functional.linear(sampled.permute(0, 2, 3, 1), w, bias).permute(0, 3, 1, 2).MoveToOuterDisposeScope();
        long b = sampled.shape[0], h = sampled.shape[2], wd = sampled.shape[3];
        var y = w.matmul(sampled.reshape(b, sampled.shape[1], h * wd)); // W · [B, C, HW]
        if (bias is not null) y = y.add(bias.view(-1, 1), Scalars.One);
        return y.view(b, w.shape[0], h, wd).MoveToOuterDisposeScope();
    }
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
                + "; the file is not this family's state dict, or not the architecture asked for");
        using var _ = no_grad();
        foreach (var (k, dst) in expected)
        {
            if (!tensors.TryGetValue(k, out var src)) continue;
            // A damaged file's NaN or negative variance would only surface as NaN features, far from its cause.
            if (src.is_floating_point() && !src.isfinite().all().item<bool>())
                throw new CheckpointException($"{what}: '{k}' holds NaN or infinite values; the file is damaged");
            if (k.EndsWith("running_var") && (src < 0).any().item<bool>())
                throw new CheckpointException($"{what}: '{k}' holds negative variances; the file is damaged");
            dst.copy_(src.to(dst.dtype));
        }
    }
}
