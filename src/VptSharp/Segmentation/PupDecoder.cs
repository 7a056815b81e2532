using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Segmentation;

/// <summary>The PUP decoder's shape (SETR, Zheng et al., CVPR 2021, §3.3; mmseg SETRUPHead).</summary>
public sealed record PupConfig
{
    /// <summary>Channels of every conv stage (SETR-PUP on ViT-L: 256).</summary>
    public int Channels { get; init; } = 64;
    /// <summary>Conv + ×2 bilinear stages; null = log2 of the patch size rounded up, i.e. back to full resolution
    /// (SETR's 4 stages for patch 16).</summary>
    public int? Stages { get; init; }
    /// <summary>Kernel of each stage's conv (SETR-PUP: 3).</summary>
    public int KernelSize { get; init; } = 3;

    public const int MaxChannels = 4096, MaxStages = 8;

    public int StagesFor(int patchSize) => Stages ?? NeededStages(patchSize);

    /// <summary>×2 stages that bring a patch grid back to (at least) image resolution; more would build maps larger than
    /// the image only to shrink them again.</summary>
    public static int NeededStages(int patchSize) => Math.Max(1, (int)Math.Ceiling(Math.Log2(patchSize) - 1e-9));

    /// <summary>Values the decoder stores (parameters and BatchNorm statistics) over tokens of <paramref name="width"/>: a
    /// task file's description is checked against what the file holds before the decoder is allocated.</summary>
    public long StoredValues(int width, int patchSize, int numClasses)
    {
        long c = Channels, k2 = (long)KernelSize * KernelSize, total = 2L * width + c * numClasses + numClasses;
        for (int i = 0; i < StagesFor(patchSize); i++) total += c * (i == 0 ? width : c) * k2 + 4 * c;
        return total;
    }

    public void Validate()
    {
        if (Channels < 1 || Channels > MaxChannels) throw new InvalidSettingException("decoder-channels", Channels, $"must be in 1..{MaxChannels}");
        if (Stages is int s && (s < 1 || s > MaxStages)) throw new InvalidSettingException("decoder-stages", s, $"must be in 1..{MaxStages}");
        if (KernelSize is not (1 or 3 or 5)) throw new InvalidSettingException("decoder-kernel", KernelSize, "must be 1, 3 or 5");
    }
}

/// <summary>One PUP stage: conv (no bias, as mmseg's ConvModule before a norm) → BatchNorm → ReLU → ×2 bilinear.</summary>
public sealed class PupStage : Module<Tensor, Tensor>
{
    public readonly Conv2d conv;
    public readonly BatchNorm2d bn;

    public PupStage(int inChannels, int channels, int kernel) : base("PupStage")
    {
        conv = Conv2d(inChannels, channels, kernel, padding: kernel / 2, bias: false);
        bn = BatchNorm2d(channels);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = functional.relu(bn.forward(conv.forward(x)));
        return functional.interpolate(y, scale_factor: [2.0, 2.0], mode: InterpolationMode.Bilinear, align_corners: false)
            .MoveToOuterDisposeScope();
    }
}

/// <summary>
/// SETR's progressive-upsampling decoder on a patch-token map: LayerNorm over the tokens (SETRUPHead's own norm), the
/// tokens laid out as a [d, h, w] map, <see cref="PupConfig.StagesFor"/> stages of conv + BN + ReLU + ×2 bilinear, a
/// 1×1 classifier, then a bilinear resize to the exact output size (a no-op when the patch size is a power of two).
/// </summary>
public sealed class PupDecoder : Module<Tensor, Tensor>
{
    public readonly LayerNorm norm;
    public readonly ModuleList<PupStage> stages;
    public readonly Conv2d cls;
    public PupConfig Config { get; }
    public int NumClasses { get; }

    public PupDecoder(int width, int patchSize, int numClasses, PupConfig config) : base("PupDecoder")
    {
        config.Validate();
        Config = config;
        NumClasses = numClasses;
        norm = LayerNorm(width, 1e-6);
        int n = config.StagesFor(patchSize);
        stages = new ModuleList<PupStage>(Enumerable.Range(0, n)
            .Select(i => new PupStage(i == 0 ? width : config.Channels, config.Channels, config.KernelSize)).ToArray());
        cls = Conv2d(config.Channels, numClasses, 1);
        RegisterComponents();
    }

    /// <summary>Unused: the decoder needs the grid and output size (<see cref="Forward"/>).</summary>
    public override Tensor forward(Tensor tokens) => throw new NotSupportedException("use Forward(tokens, gridH, gridW, outH, outW)");

    /// <summary>Patch tokens [B, h·w, d] (image tokens only, row-major) → logits [B, classes, outH, outW].</summary>
    public Tensor Forward(Tensor tokens, int gridH, int gridW, int outH, int outW)
    {
        using var scope = NewDisposeScope();
        long b = tokens.shape[0], d = tokens.shape[2];
        if (tokens.shape[1] != (long)gridH * gridW)
            throw new ArgumentException($"{tokens.shape[1]} patch tokens for a {gridH}×{gridW} grid");
        var x = norm.forward(tokens).transpose(1, 2).reshape(b, d, gridH, gridW);
        foreach (var s in stages) x = s.forward(x);
        x = cls.forward(x);
        if (x.shape[2] != outH || x.shape[3] != outW)
            x = functional.interpolate(x, size: [outH, outW], mode: InterpolationMode.Bilinear, align_corners: false);
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>What a task file stores of the decoder: parameters and BatchNorm running statistics (not the step counter).</summary>
    public IEnumerable<(string Name, Tensor Tensor)> Tensors() =>
        state_dict().Where(kv => !kv.Key.EndsWith("num_batches_tracked")).Select(kv => (kv.Key, kv.Value));
}
