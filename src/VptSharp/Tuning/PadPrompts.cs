using TorchSharp;
using TorchSharp.Modules;
using System.Text.Json.Serialization;
using VptSharp.Backbones;
using VptSharp.IO;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Tuning;

/// <summary>How pad prompts start, and in which space they live.</summary>
public enum PadInit
{
    /// <summary>The reference's (_setup_prompt_pad): [0, 1] pixel values drawn U(0, 1), normalised like the image (the
    /// backbone's <see cref="Backbone.PixelMean"/> / <see cref="Backbone.PixelStd"/>) on every forward, so the border starts
    /// as full-contrast noise and a step moves it by lr/σ² in the backbone's input space.</summary>
    Pixels,
    /// <summary>Values in the normalised input space, xavier-uniform like VPT's ViT prompts (VptSharp's form before
    /// the reference's was built: a near-zero, mean-grey border).</summary>
    Xavier,
}

/// <summary>
/// VPT for ConvNets (paper §4.4, Table 5): the input image is padded by <see cref="Pixels"/> learnable pixels on every
/// side, (H + 2p) × (W + 2p), and the padded image goes through the frozen backbone. Needs a backbone that takes larger
/// images (<see cref="BackboneCapability.AnyImageSize"/>: ConvNets); a ViT's position embeddings fix its input size,
/// so it is refused there (the token prompts are VPT's ViT form). p is swept like a prompt length (paper grid
/// {1, 3, 5, 7, 9, 11}; `--prompts`). Trainable: C·((H + 2p)(W + 2p) − HW)  (+ head).
/// </summary>
public sealed record PadPromptConfig : MethodConfig
{
    public PadPromptConfig() { }

    /// <summary>How task files are read: one written before <see cref="Init"/> existed has no "init", and its strips hold
    /// xavier-initialised values in normalised space.</summary>
    [JsonConstructor]
    PadPromptConfig(PadInit init = PadInit.Xavier) => Init = init;

    /// <summary>Learnable pixels on each side of the image.</summary>
    public int Pixels { get; init; } = 5;
    /// <summary>The reference's pixel-space prompts unless set.</summary>
    public PadInit Init { get; init; } = PadInit.Pixels;
    public override string Method => "vpt-pad";
    public override BackboneCapability Requires => BackboneCapability.AnyImageSize;
    public override string Label => Init == PadInit.Pixels ? $"vpt-pad p={Pixels}" : $"vpt-pad p={Pixels} {KebabCase.Of(Init)}";

    protected override TuningMethod Create(Backbone backbone)
    {
        if (Pixels < 1) throw new ArgumentException($"vpt-pad: pixels per side must be at least 1 (got {Pixels})");
        return new PadPrompts(this, backbone.InChannels, backbone.ImageSize, backbone.ImageSize, backbone.PixelMean, backbone.PixelStd);
    }

    public static MethodRegistry.Entry Entry => new("vpt-pad",
        "VPT for ConvNets (paper §4.4): p learnable pixels padded around the input image (p = the prompt count; paper grid 1,3,5,7,9,11)",
        "C·((H+2p)(W+2p) − HW)  (+ head)", typeof(PadPromptConfig),
        o => new PadPromptConfig { Pixels = o.Prompts, Init = o.PadInit ?? PadInit.Pixels }, [SweepAxis.PadPixels]);
}

/// <summary>
/// The pad prompt as four strips: top and bottom [1, C, p, W + 2p] (corners included), left and right [1, C, H, p].
/// <see cref="PadInit.Pixels"/>: [0, 1] pixels drawn U(0, 1), normalised by the backbone's mean and std when padded (the
/// reference); <see cref="PadInit.Xavier"/>: normalised values, each strip xavier-uniform as torch initialises a tensor
/// of its shape.
/// </summary>
public sealed class PadPrompts : TuningMethod
{
    readonly PadPromptConfig config;
    readonly float[] mean, std;
    // mean and std as [1, C, 1, 1] tensors on the device last padded on, made once rather than per forward. A tuple field,
    // not a Tensor one, so RegisterComponents does not make them buffers and task files keep their keys.
    (Device Device, Tensor Mean, Tensor Std)? normalisation;
    readonly object normalisationLock = new();
    public readonly Parameter top, bottom, left, right;

    public PadPrompts(PadPromptConfig config, int channels, int height, int width, float[] mean, float[] std) : base("PadPrompts")
    {
        if (config.Init == PadInit.Pixels && (mean.Length != channels || std.Length != channels))
            throw new ArgumentException($"vpt-pad: pixel prompts need a mean and std per input channel ({channels}); got {mean.Length} and {std.Length}");
        this.config = config;
        (this.mean, this.std) = (mean, std);
        int p = config.Pixels;
        top = Parameter(InitialStrip(1, channels, p, width + 2 * p));
        bottom = Parameter(InitialStrip(1, channels, p, width + 2 * p));
        left = Parameter(InitialStrip(1, channels, height, p));
        right = Parameter(InitialStrip(1, channels, height, p));
        RegisterComponents();
    }

    /// <summary>A strip's initial values: U(0, 1) pixels, or torch.nn.init.xavier_uniform_ on a [o, i, h, w] tensor,
    /// U(±√(6 / ((i + o)·h·w))).</summary>
    Tensor InitialStrip(long o, long i, long h, long w)
    {
        if (config.Init == PadInit.Pixels) return empty(o, i, h, w).uniform_(0, 1);
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
        var (m, s) = config.Init == PadInit.Pixels ? Normalisation(images.device) : (null, null);
        Tensor Border(Parameter p)
        {
            var v = m is null ? p : (p - m) / s!; // normalised like the image (the reference's prompt_norm), in float32
            return v.to(images.dtype).expand(b, -1, -1, -1);
        }
        var middle = cat([Border(left), images, Border(right)], 3);
        return cat([Border(top), middle, Border(bottom)], 2).MoveToOuterDisposeScope();
    }

    (Tensor, Tensor) Normalisation(Device device)
    {
        lock (normalisationLock) // served tasks pad from several request threads
        {
            if (normalisation is not { } n || n.Device.type != device.type || n.Device.index != device.index)
            {
                n = (device, tensor(mean, [1, mean.Length, 1, 1], device: device).DetachFromDisposeScope(),
                     tensor(std, [1, std.Length, 1, 1], device: device).DetachFromDisposeScope());
                normalisation = n;
            }
            return (n.Mean, n.Std);
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && normalisation is { } n) { n.Mean.Dispose(); n.Std.Dispose(); normalisation = null; }
        base.Dispose(disposing);
    }

    public override Tensor Embed(Backbone backbone, Tensor images)
    {
        using var padded = Pad(images);
        return backbone.Embed(padded);
    }
}
