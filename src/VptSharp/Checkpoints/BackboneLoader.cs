using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using VptSharp.Backbones;
using VptSharp.Data;
using static TorchSharp.torch;

namespace VptSharp.Checkpoints;

/// <summary>What the user may say about the architecture; each set field overrides what the checkpoint implies.</summary>
public sealed record ArchOverrides
{
    public string? Preset { get; init; }
    public int? Heads { get; init; }
    public int? ImageSize { get; init; }
    public int? PatchSize { get; init; }
    public int? Width { get; init; }
    public int? Depth { get; init; }
    public int? MlpDim { get; init; }
    /// <summary>Swin: the attention window to build (a checkpoint's relative-position tables are resized to it).</summary>
    public int? Window { get; init; }

    public VitConfig Apply(VitConfig c) => c with
    {
        Heads = Heads ?? c.Heads, ImageSize = ImageSize ?? c.ImageSize, PatchSize = PatchSize ?? c.PatchSize,
        Width = Width ?? c.Width, Depth = Depth ?? c.Depth, MlpDim = MlpDim ?? c.MlpDim,
    };
}

/// <summary>A frozen, eval-mode backbone of any family and where it came from.</summary>
public sealed class LoadedBackbone(Backbone model, string source, string sha256, string? path) : IDisposable
{
    public Backbone Model { get; } = model;
    /// <summary>"default", a file path, "hf:org/name", "resnet18-imagenet" or "random:preset:seed".</summary>
    public string Source { get; } = source;
    /// <summary>sha256 of the weights file(s): what task files are bound to.</summary>
    public string Sha256 { get; } = sha256;
    public string? WeightsPath { get; } = path;
    /// <summary>The backbone as a ViT, or null for another family.</summary>
    public VisionTransformer? Vit => Model as VisionTransformer;
    /// <summary>The ViT's architecture; only ViT-only features ask for it (a one-line refusal on other families).</summary>
    public VitConfig Config => Vit?.Config ?? throw NotAVit("this needs a Vision Transformer's architecture");

    /// <summary>The input normalisation the weights expect (<see cref="Backbone.PixelMean"/>, <see cref="Backbone.PixelStd"/>:
    /// ImageNet's unless the source says otherwise, e.g. the NuGet ResNet-18's folded mean image), at the backbone's image size.</summary>
    public Preprocessing Preprocessing(ResizeMode resize = ResizeMode.Plain) =>
        new() { ImageSize = Model.ImageSize, Resize = resize, Mean = [.. Model.PixelMean], Std = [.. Model.PixelStd] };

    /// <summary>The one-line refusal of a ViT-only feature on another family.</summary>
    public InvalidSettingException NotAVit(string why) =>
        new("backbone", Source, $"is a {Model.Family} backbone, not a ViT: {why}");

    public void Dispose() => Model.Dispose();
}

/// <summary>
/// Turns a backbone reference into a loaded ViT: "default" (embedded), "hf:org/name" (hub, cached),
/// a directory with config.json + weights, a checkpoint file, or "random:PRESET[:SEED]" (for timing).
/// Architecture: config.json where one exists, else --arch, else inferred from shapes; flags override.
/// </summary>
public static class BackboneLoader
{
    public const string DefaultResource = "VptSharp.Resources.default-vit.safetensors";

    public static LoadedBackbone Load(string source, ArchOverrides? arch = null, HubClient? hub = null,
        IProgress<DownloadProgress>? progress = null)
    {
        arch ??= new ArchOverrides();
        if (source == "default") return LoadDefault(arch);
        if (source == ImageNetResNet18.Source) return ConvNetLoader.LoadImageNetResNet18();
        if (source.StartsWith("random:")) return ConvNetLoader.TryRandom(source) ?? LoadRandom(source, arch);
        if (source.StartsWith("hf:"))
        {
            hub ??= new HubClient();
            var (repo, rev) = HubClient.ParseId(source);
            string? config = hub.GetFileAsync(repo, rev, "config.json", optional: true, progress: progress).GetAwaiter().GetResult();
            string weights = hub.GetFileAsync(repo, rev, "model.safetensors", optional: true, progress: progress).GetAwaiter().GetResult()
                ?? hub.GetFileAsync(repo, rev, "pytorch_model.bin", progress: progress).GetAwaiter().GetResult()!;
            return FromFile(weights, config, arch, source);
        }
        if (Directory.Exists(source))
        {
            string? weights = new[] { "model.safetensors", "pytorch_model.bin", "model.pth" }
                .Select(f => Path.Combine(source, f)).FirstOrDefault(File.Exists)
                ?? throw new CheckpointException($"{source}: directory has no model.safetensors or pytorch_model.bin");
            string cfg = Path.Combine(source, "config.json");
            return FromFile(weights, File.Exists(cfg) ? cfg : null, arch, Path.GetFullPath(source));
        }
        if (!File.Exists(source))
            throw new CheckpointException($"{source}: no such backbone; pass 'default', hf:org/name, a checkpoint file or a directory with config.json");
        string beside = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(source))!, "config.json");
        return FromFile(source, File.Exists(beside) ? beside : null, arch, Path.GetFullPath(source));
    }

    public static LoadedBackbone FromFile(string weightsPath, string? configJson, ArchOverrides arch, string source)
    {
        var raw = CheckpointReader.Read(weightsPath);
        if (SwinCheckpointKeys.IsSwin(raw)) return SwinLoader.FromFile(raw, weightsPath, arch, source);
        SwinLoader.RefuseWindow(arch, weightsPath);
        if (ConvNetLoader.TryFromTensors(raw, weightsPath, arch, source) is LoadedBackbone convNet) return convNet;
        var mapped = VitCheckpointKeys.ToTimm(raw);
        VitConfig? fromJson = configJson is null ? null : ConfigFromJson(configJson);
        // VptSharp's own backbone files (vpt pretrain) carry their architecture in the safetensors metadata.
        if (fromJson is null && weightsPath.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)
            && SafetensorsFile.ReadMetadata(weightsPath).TryGetValue("vit_config", out var vc))
            fromJson = JsonSerializer.Deserialize<VitConfig>(vc);
        var cfg = fromJson ?? (arch.Preset is not null ? VitConfig.Preset(arch.Preset) : VitCheckpointKeys.InferConfig(mapped, arch.Heads));
        cfg = arch.Apply(cfg);
        // MAE (its pretraining file: mask_token and decoder; fine-tuned: fc_norm) is read with its own head: global pooling.
        if (raw.Keys.Any(k => k == "mask_token" || k.StartsWith("decoder_") || k == "fc_norm.weight")) cfg = cfg with { GlobalPool = true };
        CheckShapesBeforeBuild(cfg, mapped, configJson ?? weightsPath);
        var model = Build(cfg, mapped.ToDictionary(kv => kv.Key, kv => kv.Value.dtype == float32 ? kv.Value : kv.Value.to(float32)), weightsPath);
        return new LoadedBackbone(model, source, CheckpointReader.Sha256OfFile(weightsPath), weightsPath);
    }

    public static LoadedBackbone LoadDefault(ArchOverrides arch)
    {
        SwinLoader.RefuseWindow(arch, "the embedded default backbone");
        var bytes = DefaultBackboneBytes();
        using var ms = new MemoryStream(bytes);
        var meta = SafetensorsFile.ReadMetadata(ms, "embedded default backbone");
        ms.Position = 0;
        var tensors = SafetensorsFile.Load(ms);
        var cfg = arch.Apply(JsonSerializer.Deserialize<VitConfig>(meta["vit_config"])!);
        var model = Build(cfg, tensors.ToDictionary(kv => kv.Key, kv => kv.Value.to(float32)), "embedded default backbone");
        return new LoadedBackbone(model, "default", CheckpointReader.Sha256(bytes), null);
    }

    public static byte[] DefaultBackboneBytes()
    {
        using var s = typeof(BackboneLoader).Assembly.GetManifestResourceStream(DefaultResource)
            ?? throw new CheckpointException("the embedded default backbone is missing from this build");
        using var ms = new MemoryStream();
        s.CopyTo(ms);
        return ms.ToArray();
    }

    static LoadedBackbone LoadRandom(string source, ArchOverrides arch)
    {
        var parts = source.Split(':');
        if (parts.Length > 1 && parts[1].StartsWith("swin", StringComparison.OrdinalIgnoreCase))
            return SwinLoader.Random(parts[1], parts.Length > 2 ? long.Parse(parts[2]) : 0, arch, source);
        SwinLoader.RefuseWindow(arch, source);
        var cfg = arch.Apply(VitConfig.Preset(parts.Length > 1 ? parts[1] : "vit-b16"));
        long seed = parts.Length > 2 ? long.Parse(parts[2]) : 0;
        manual_seed(seed);
        var model = new VisionTransformer(cfg);
        model.Freeze();
        return new LoadedBackbone(model, source, CheckpointReader.Sha256(System.Text.Encoding.UTF8.GetBytes(source)), null);
    }

    /// <summary>timm's config.json (architecture name, optional explicit dims), or a VptSharp vit_config.</summary>
    public static VitConfig? ConfigFromJson(string path)
    {
        var root = JsonNode.Parse(File.ReadAllText(path))?.AsObject();
        if (root is null) return null;
        if (root["vit_config"] is JsonObject vc) return vc.Deserialize<VitConfig>();
        string? archName = root["architecture"]?.GetValue<string>() ?? root["model_type"]?.GetValue<string>();
        var cfg = archName is null ? null : VitConfig.FromTimmName(archName);
        if (root["model_args"] is JsonObject args && cfg is not null)
        {
            cfg = cfg with
            {
                ImageSize = args["img_size"]?.GetValue<int>() ?? cfg.ImageSize,
                PatchSize = args["patch_size"]?.GetValue<int>() ?? cfg.PatchSize,
                Width = args["embed_dim"]?.GetValue<int>() ?? cfg.Width,
                Depth = args["depth"]?.GetValue<int>() ?? cfg.Depth,
                Heads = args["num_heads"]?.GetValue<int>() ?? cfg.Heads,
            };
            cfg = cfg with { MlpDim = (int)Math.Round((args["mlp_ratio"]?.GetValue<double>() ?? 4.0) * cfg.Width) };
        }
        return cfg;
    }

    /// <summary>The architecture asked for (config.json, --arch, flags) against the checkpoint's own tensor shapes, before a
    /// model of that size is allocated: a config.json claiming width 2048 beside a small checkpoint stops here.</summary>
    static void CheckShapesBeforeBuild(VitConfig cfg, IReadOnlyDictionary<string, Tensor> mapped, string what)
    {
        cfg.Validate();
        var actual = VitCheckpointKeys.InferConfig(mapped, cfg.Heads);
        var diffs = new List<string>();
        if (actual.Width != cfg.Width) diffs.Add($"width {cfg.Width} vs {actual.Width}");
        if (actual.Depth != cfg.Depth) diffs.Add($"depth {cfg.Depth} vs {actual.Depth}");
        if (actual.PatchSize != cfg.PatchSize) diffs.Add($"patch size {cfg.PatchSize} vs {actual.PatchSize}");
        if (actual.MlpDim != cfg.MlpDim) diffs.Add($"MLP width {cfg.MlpDim} vs {actual.MlpDim}");
        if (diffs.Count > 0)
            throw new ConfigMismatchException($"{what}: the architecture asked for does not match the checkpoint's tensors ({string.Join(", ", diffs)})",
                "arch", "width", "depth", "patch-size", "mlp-dim");
    }

    /// <summary>Builds the model and copies tensors in; unknown or missing keys fail with one message listing them.</summary>
    public static VisionTransformer Build(VitConfig cfg, IReadOnlyDictionary<string, Tensor> timmTensors, string what)
    {
        var model = new VisionTransformer(cfg);
        var expected = model.state_dict();
        // A classifier (or MoCo v3's projection MLP under head.*) is never read. With global pooling (MAE) the encoder norm
        // is not used, as MAE's models_vit.py deletes it; fc_norm comes from the file or, for a pretraining checkpoint that
        // has none, starts at LayerNorm's init (weight 1, bias 0) as the reference's strict=False load leaves it.
        var given = timmTensors.Where(kv => !kv.Key.StartsWith("head.") && kv.Key != "norm_pre.weight" && kv.Key != "norm_pre.bias"
                && !(cfg.GlobalPool ? kv.Key.StartsWith("norm.") : kv.Key.StartsWith("fc_norm.")))
            .ToDictionary(kv => kv.Key, kv => kv.Value);
        if (cfg.GlobalPool && !given.ContainsKey("fc_norm.weight"))
        {
            given["fc_norm.weight"] = ones(cfg.Width);
            given["fc_norm.bias"] = zeros(cfg.Width);
        }
        var missing = expected.Keys.Where(k => !given.ContainsKey(k)).ToList();
        var unexpected = given.Keys.Where(k => !expected.ContainsKey(k)).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new CheckpointException($"{what}: checkpoint does not match a ViT ({cfg.Depth} blocks, width {cfg.Width}): "
                + (missing.Count > 0 ? $"missing [{string.Join(", ", missing.Take(12))}{(missing.Count > 12 ? $", … {missing.Count} in all" : "")}] " : "")
                + (unexpected.Count > 0 ? $"unexpected [{string.Join(", ", unexpected.Take(12))}{(unexpected.Count > 12 ? $", … {unexpected.Count} in all" : "")}]" : "")
                + "; is the file a ViT state dict of this architecture?");
        using (no_grad())
        {
            foreach (var (k, dst) in expected)
            {
                var src = given[k];
                if (k == "pos_embed" && src.shape[1] != dst.shape[1])
                    src = VitCheckpointKeys.ResizePosEmbed(src, cfg.GridSize);
                if (k == "cls_token" && src.dim() == 3 && dst.dim() == 3 && !src.shape.SequenceEqual(dst.shape))
                    src = src.reshape(dst.shape);
                if (!src.shape.SequenceEqual(dst.shape))
                    throw new ConfigMismatchException($"{what}: '{k}' has shape [{string.Join(",", src.shape)}] but the model expects [{string.Join(",", dst.shape)}]", "arch", "heads", "image-size");
                dst.copy_(src.to(dst.dtype));
            }
        }
        model.Freeze();
        return model;
    }
}
