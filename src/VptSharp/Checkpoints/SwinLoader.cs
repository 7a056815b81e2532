using System.Text.Json;
using VptSharp.Backbones;
using static TorchSharp.torch;

namespace VptSharp.Checkpoints;

/// <summary>
/// Swin checkpoints at any image size and window (the paper's Table 11: Swin-B at 384 px). The architecture comes from
/// the tensors' shapes; the image size from the request (--image-size, or a timm name such as
/// swin_base_patch4_window12_384 via --arch), else the file's swin_config, else 224; the window from the request, else
/// the checkpoint's. A different window resizes every relative-position table bicubically (timm's and the official
/// loaders' rule); the relative-position index and shift masks are recomputed by the model for its window and map sizes,
/// and maps a window does not divide are padded as torchvision pads them.
/// </summary>
public static class SwinLoader
{
    /// <summary>Largest window accepted ((2W−1)² bias rows per head).</summary>
    public const int MaxWindow = 64;

    public static LoadedBackbone FromFile(Dictionary<string, Tensor> raw, string weightsPath, ArchOverrides arch, string source)
    {
        Dictionary<string, Tensor> mapped;
        try { mapped = SwinCheckpointKeys.ToTorchvision(raw); }
        catch (CheckpointException e) { throw new CheckpointException($"{weightsPath}: {e.Message}"); }
        int? fileImage = null;
        if (weightsPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
            && SafetensorsFile.ReadMetadata(weightsPath).TryGetValue("swin_config", out var sc))
            fileImage = JsonSerializer.Deserialize<SwinConfig>(sc)!.ImageSize;
        var made = SwinCheckpointKeys.InferConfig(mapped, fileImage ?? 224);
        var cfg = Target(made, arch, weightsPath, fileImage);
        var model = new SwinTransformer(cfg);
        var tensors = mapped.ToDictionary(kv => kv.Key, kv =>
        {
            var t = kv.Value.dtype == float32 ? kv.Value : kv.Value.to(float32);
            return cfg.Window != made.Window && kv.Key.EndsWith(".relative_position_bias_table")
                ? ResizeTable(t, cfg.Window, $"{weightsPath}: {kv.Key}") : t;
        });
        model.LoadTorchvision(tensors, weightsPath);
        model.Freeze();
        return new LoadedBackbone(model, source, CheckpointReader.Sha256OfFile(weightsPath), weightsPath);
    }

    static Tensor ResizeTable(Tensor table, int window, string what)
    {
        try { return SwinCheckpointKeys.ResizeRelativePositionTable(table, window); }
        catch (CheckpointException e) { throw new CheckpointException($"{what}: {e.Message}"); }
    }

    /// <summary>random:swin_t … swin_l or random:swin_base_patch4_window12_384 (timm's names), seeded.</summary>
    public static LoadedBackbone Random(string name, long seed, ArchOverrides arch, string source)
    {
        var named = SwinConfig.FromTimmName(name) ?? SwinConfig.Preset(name);
        var cfg = named with { ImageSize = arch.ImageSize ?? named.ImageSize, Window = arch.Window ?? named.Window };
        Check(cfg, source);
        manual_seed(seed);
        var swin = new SwinTransformer(cfg);
        swin.Freeze();
        return new LoadedBackbone(swin, source, CheckpointReader.Sha256(System.Text.Encoding.UTF8.GetBytes(source)), null);
    }

    /// <summary>The model to build for a checkpoint made as <paramref name="made"/>: its architecture, at the requested
    /// image size and window. A timm name in --arch must describe the checkpoint's architecture.</summary>
    public static SwinConfig Target(SwinConfig made, ArchOverrides arch, string what, int? fileImage = null)
    {
        SwinConfig? named = null;
        if (arch.Preset is string preset)
        {
            named = SwinConfig.FromTimmName(preset);
            if (named is null)
            {
                try { named = SwinConfig.Preset(preset) with { ImageSize = arch.ImageSize ?? fileImage ?? 224, Window = made.Window, PatchSize = made.PatchSize }; }
                catch (ArgumentException)
                {
                    throw new ConfigMismatchException($"{what} is a Swin checkpoint; architecture '{preset}' is not a Swin name (swin_t, swin_b, swin_base_patch4_window12_384, …)", "arch");
                }
            }
            var diffs = new List<string>();
            if (named.EmbedDim != made.EmbedDim) diffs.Add($"width {named.EmbedDim} vs {made.EmbedDim}");
            if (!named.Depths.SequenceEqual(made.Depths)) diffs.Add($"blocks {string.Join("-", named.Depths)} vs {string.Join("-", made.Depths)}");
            if (!named.Heads.SequenceEqual(made.Heads)) diffs.Add($"heads {string.Join("-", named.Heads)} vs {string.Join("-", made.Heads)}");
            if (named.PatchSize != made.PatchSize) diffs.Add($"patch size {named.PatchSize} vs {made.PatchSize}");
            if (diffs.Count > 0)
                throw new ConfigMismatchException($"{what}: architecture '{preset}' does not match the checkpoint's tensors ({string.Join(", ", diffs)})", "arch");
        }
        var cfg = made with
        {
            ImageSize = arch.ImageSize ?? named?.ImageSize ?? fileImage ?? 224,
            Window = arch.Window ?? named?.Window ?? made.Window,
        };
        Check(cfg, what);
        return cfg;
    }

    /// <summary>A window asked of a backbone that has none (ViT, ConvNets) is refused rather than ignored.</summary>
    public static void RefuseWindow(ArchOverrides arch, string what)
    {
        if (arch.Window is int w)
            throw new ConfigMismatchException($"{what} is not a Swin: an attention window ({w}) applies only to a Swin backbone", "window");
    }

    /// <summary>The combinations no Swin can run: a window below 1 or above <see cref="MaxWindow"/>; an image size that is not
    /// a whole number of patches (the patch convolution would silently drop the last rows and columns; timm refuses it too).</summary>
    static void Check(SwinConfig cfg, string what)
    {
        if (cfg.Window < 1 || cfg.Window > MaxWindow)
            throw new ConfigMismatchException($"{what}: window {cfg.Window} is outside 1..{MaxWindow}", "window");
        if (cfg.ImageSize < cfg.PatchSize || cfg.ImageSize % cfg.PatchSize != 0)
        {
            int lower = Math.Max(cfg.PatchSize, cfg.ImageSize / cfg.PatchSize * cfg.PatchSize), upper = lower + (cfg.ImageSize < cfg.PatchSize ? 0 : cfg.PatchSize);
            throw new ConfigMismatchException(
                $"{what}: image size {cfg.ImageSize} is not a whole number of the Swin's {cfg.PatchSize}-pixel patches (e.g. {lower}{(upper != lower ? $" or {upper}" : "")})", "image-size");
        }
    }
}
