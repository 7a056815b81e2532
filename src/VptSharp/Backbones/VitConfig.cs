using System.Text.Json.Serialization;
using System.Text.RegularExpressions;

namespace VptSharp.Backbones;

/// <summary>Architecture of a plain (pre-norm, CLS-token, learned position embedding) Vision Transformer.</summary>
public sealed record VitConfig
{
    public int ImageSize { get; init; } = 224;
    public int PatchSize { get; init; } = 16;
    public int Width { get; init; } = 768;
    public int Depth { get; init; } = 12;
    public int Heads { get; init; } = 12;
    public int MlpDim { get; init; } = 3072;
    public int InChannels { get; init; } = 3;
    public double LayerNormEps { get; init; } = 1e-6;
    /// <summary>MAE's head (models_vit.py, global_pool=True, as the reference VPT code builds its MAE backbone): no final
    /// norm over the sequence; the head input is fc_norm(mean of the tokens after CLS). False: the final-norm CLS token.</summary>
    public bool GlobalPool { get; init; }

    [JsonIgnore] public int GridSize => ImageSize / PatchSize;
    [JsonIgnore] public int NumPatches => GridSize * GridSize;
    [JsonIgnore] public int HeadDim => Width / Heads;

    /// <summary>Backbone parameters without a classifier, in closed form: patch embedding, CLS, position embedding,
    /// per block two LayerNorms + qkv + projection + MLP, final norm (ViT-B/16: 85,798,656).</summary>
    [JsonIgnore] public long ParameterCount
    {
        get
        {
            long d = Width, m = MlpDim;
            long block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * m + m) + (m * d + d);
            return (long)InChannels * PatchSize * PatchSize * d + d + d + (1L + NumPatches) * d + Depth * block + 2 * d;
        }
    }

    /// <summary>Bounds that keep a config read from a file or flag from asking for unbounded memory (ViT-H/14 at 518 fits).</summary>
    public const int MaxImageSize = 4096, MaxWidth = 8192, MaxDepth = 256, MaxMlpDim = 65536;

    public void Validate()
    {
        if (ImageSize < 1 || ImageSize > MaxImageSize)
            throw new InvalidSettingException("image-size", ImageSize, $"the image size must be in 1..{MaxImageSize}");
        if (PatchSize < 1 || PatchSize > ImageSize)
            throw new InvalidSettingException("patch-size", PatchSize, $"the patch size must be in 1..{ImageSize} (the image size)");
        if (Heads < 1) throw new InvalidSettingException("heads", Heads, "the number of heads must be at least 1");
        if (Width < 1 || Width > MaxWidth) throw new InvalidSettingException("width", Width, $"the width must be in 1..{MaxWidth}");
        if (Depth > MaxDepth) throw new InvalidSettingException("depth", Depth, $"at most {MaxDepth} blocks");
        if (MlpDim > MaxMlpDim) throw new InvalidSettingException("mlp-dim", MlpDim, $"the MLP width must be at most {MaxMlpDim}");
        if (InChannels < 1 || InChannels > 4) throw new ArgumentException($"{InChannels} input channels: must be in 1..4");
        if (!(LayerNormEps > 0 && LayerNormEps < 1)) throw new ArgumentException($"layer norm eps {LayerNormEps}: must be in (0, 1)");
        if (ImageSize % PatchSize != 0)
            throw new InvalidSettingException("image-size", ImageSize, $"not a multiple of the patch size {PatchSize}");
        if (Width % Heads != 0)
            throw new InvalidSettingException("heads", Heads, $"does not divide the width {Width}");
        if (Depth < 1 || MlpDim < 1) throw new ArgumentException("depth and MLP width must be positive");
    }

    static VitConfig Make(int patch, int width, int depth, int heads, int image = 224) =>
        new() { ImageSize = image, PatchSize = patch, Width = width, Depth = depth, Heads = heads, MlpDim = width * 4 };

    /// <summary>Named presets (timm sizes). Names: vit-{ti,s,b,l,h}{patch}[-{image}], e.g. vit-b16, vit-s16-384, vit-ti4-32.</summary>
    public static readonly IReadOnlyDictionary<string, (int Width, int Depth, int Heads)> Sizes =
        new Dictionary<string, (int, int, int)>
        {
            ["ti"] = (192, 12, 3), ["s"] = (384, 12, 6), ["b"] = (768, 12, 12), ["l"] = (1024, 24, 16), ["h"] = (1280, 32, 16),
        };

    public static string[] PresetNames =>
        ["vit-ti16", "vit-s16", "vit-b16", "vit-b32", "vit-l16", "vit-l14", "vit-h14", "vit-ti4-32", "vit-s4-32"];

    public static VitConfig Preset(string name)
    {
        var m = Regex.Match(name.ToLowerInvariant().Replace('_', '-'), @"^vit-(ti|s|b|l|h)(\d+)(?:-(\d+))?$");
        if (!m.Success)
            throw new ArgumentException($"unknown architecture '{name}'; use one of {string.Join(", ", PresetNames)} (vit-SIZE PATCH[-IMAGE])");
        var (w, d, h) = Sizes[m.Groups[1].Value];
        int patch = int.Parse(m.Groups[2].Value);
        int image = m.Groups[3].Success ? int.Parse(m.Groups[3].Value) : 224;
        return Make(patch, w, d, h, image);
    }

    /// <summary>Maps a timm architecture name (config.json "architecture") to a config, e.g. vit_base_patch16_224.</summary>
    public static VitConfig? FromTimmName(string arch)
    {
        var m = Regex.Match(arch, @"^vit_(tiny|small|base|large|huge)_patch(\d+)_(?:[a-z_]*?)(\d+)");
        if (!m.Success) return null;
        string size = m.Groups[1].Value switch { "tiny" => "ti", "small" => "s", "base" => "b", "large" => "l", _ => "h" };
        var (w, d, h) = Sizes[size];
        return Make(int.Parse(m.Groups[2].Value), w, d, h, int.Parse(m.Groups[3].Value));
    }

    /// <summary>Usual head count for a width when nothing else tells (head dim 64).</summary>
    public static int DefaultHeads(int width) => width switch
    {
        192 => 3, 384 => 6, 768 => 12, 1024 => 16, 1280 => 16,
        _ => width % 64 == 0 ? width / 64 : (width % 32 == 0 ? width / 32 : 1),
    };
}
