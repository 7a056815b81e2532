using TorchSharp;
using TorchSharp.Modules;
using VptSharp.Backbones;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>
/// VPT for ConvNets (paper §4.4, Table 5): the input image is padded by <see cref="Pixels"/> learnable pixels on every
/// side, (H + 2p) × (W + 2p), and the padded image goes through the frozen backbone. Needs a backbone that takes larger
/// images (<see cref="BackboneCapability.AnyImageSize"/>: ConvNets); a ViT's position embeddings fix its input size,
/// so it is refused there (the token prompts are VPT's ViT form). p is swept like a prompt length (paper grid
/// {1, 3, 5, 7, 9, 11}; `--prompts`). Trainable: C·((H + 2p)(W + 2p) − HW)  (+ head).
/// </summary>
public sealed record PadPromptConfig : MethodConfig
{
    /// <summary>Learnable pixels on each side of the image.</summary>
    public int Pixels { get; init; } = 5;
    public override string Method => "vpt-pad";
    public override BackboneCapability Requires => BackboneCapability.AnyImageSize;
    public override string Label => $"vpt-pad p={Pixels}";

    protected override TuningMethod Create(Backbone backbone)
    {
        if (Pixels < 1) throw new ArgumentException($"vpt-pad: pixels per side must be at least 1 (got {Pixels})");
        return new PadPrompts(this, backbone.InChannels, backbone.ImageSize, backbone.ImageSize);
    }

    public static MethodRegistry.Entry Entry => new("vpt-pad",
        "VPT for ConvNets (paper §4.4): p learnable pixels padded around the input image (p = the prompt count; paper grid 1,3,5,7,9,11)",
        "C·((H+2p)(W+2p) − HW)  (+ head)", typeof(PadPromptConfig), o => new PadPromptConfig { Pixels = o.Prompts }, [SweepAxis.PadPixels]);
}

/// <summary>
/// The pad prompt as four strips in normalised-pixel space: top and bottom [1, C, p, W + 2p] (corners included), left and
/// right [1, C, H, p]; each xavier-uniform initialised as torch initialises a tensor of that shape.
/// </summary>
public sealed class PadPrompts : TuningMethod
{
    readonly PadPromptConfig config;
    public readonly Parameter top, bottom, left, right;

    public PadPrompts(PadPromptConfig config, int channels, int height, int width) : base("PadPrompts")
    {
        this.config = config;
        int p = config.Pixels;
        top = Parameter(XavierUniform(1, channels, p, width + 2 * p));
        bottom = Parameter(XavierUniform(1, channels, p, width + 2 * p));
        left = Parameter(XavierUniform(1, channels, height, p));
        right = Parameter(XavierUniform(1, channels, height, p));
        RegisterComponents();
    }

    /// <summary>torch.nn.init.xavier_uniform_ on a [o, i, h, w] tensor: U(±√(6 / ((i + o)·h·w))).</summary>
    static Tensor XavierUniform(long o, long i, long h, long w)
    {
        double bound = Math.Sqrt(6.0 / ((i + o) * h * w));
        return empty(o, i, h, w).uniform_(-bound, bound);
    }

    public override MethodConfig Config => config;

    /// <summary>The images with the learnable border: [B, C, H + 2p, W + 2p].</summary>
    public Tensor Pad(Tensor images)
    {
        if (images.shape[2] != left.shape[2] || images.shape[3] + 2 * config.Pixels != top.shape[3])
            throw new ArgumentException($"vpt-pad prompt surrounds {left.shape[2]}×{top.shape[3] - 2 * config.Pixels} px images; these are {images.shape[2]}×{images.shape[3]}");
        using var scope = NewDisposeScope();
        long b = images.shape[0];
        Tensor Strip(Parameter s) => s.to(images.dtype).expand(b, -1, -1, -1);
        var middle = cat([Strip(left), images, Strip(right)], 3);
        return cat([Strip(top), middle, Strip(bottom)], 2).MoveToOuterDisposeScope();
    }

    public override Tensor Embed(Backbone backbone, Tensor images)
    {
        using var padded = Pad(images);
        return backbone.Embed(padded);
    }
}
