using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.Backbones;

/// <summary>
/// Swin checkpoint layouts → <see cref="SwinTransformer"/>'s (torchvision 0.14) names. torchvision .pth: as is. timm
/// (≥ 0.9) and the official Microsoft release (= older timm): patch_embed.{proj, norm} → features.0.{0, 2};
/// layers.s.blocks.j.* → features.(2s+1).j.* with mlp.fc1/fc2 → mlp.0/3; layers.s.downsample.* → the merging before
/// stage s (timm ≥ 0.9: features.2s) or after it (official: features.(2s+2)) — told apart by whether stage 0 has one;
/// head.fc → head. The official attn_mask buffers and every relative_position_index are derived from the window size
/// and dropped (the model recomputes them).
/// </summary>
public static class SwinCheckpointKeys
{
    /// <summary>Buffers a Swin computes from its window size; never read from a checkpoint.</summary>
    public static bool IsDerivedBuffer(string key) => key.EndsWith(".relative_position_index") || key.EndsWith(".attn_mask");

    /// <summary>True when the raw tensors (any of the three layouts) are a Swin's: window attention has a relative-position table.</summary>
    public static bool IsSwin(IReadOnlyDictionary<string, Tensor> raw) => raw.Keys.Any(k => k.EndsWith(".attn.relative_position_bias_table"));

    public static Dictionary<string, Tensor> ToTorchvision(IReadOnlyDictionary<string, Tensor> raw)
    {
        var stripped = raw.ToDictionary(kv => kv.Key.StartsWith("module.") ? kv.Key["module.".Length..] : kv.Key, kv => kv.Value);
        bool official = stripped.Keys.Any(k => k.StartsWith("layers.0.downsample."));
        var outp = new Dictionary<string, Tensor>();
        foreach (var (k, t) in stripped)
        {
            if (IsDerivedBuffer(k)) continue;
            if (k == "absolute_pos_embed")
                throw new CheckpointException("'absolute_pos_embed': a Swin with absolute position embeddings (ape=True) is not supported; the released Swin v1 checkpoints have none");
            if (k.StartsWith("features.") || k.StartsWith("norm.") || k is "head.weight" or "head.bias") { outp[k] = t; continue; } // torchvision already (official heads too)
            var p = k.Split('.');
            string? mapped = p[0] switch
            {
                "patch_embed" when p.Length == 3 && p[1] is "proj" or "norm" => $"features.0.{(p[1] == "proj" ? 0 : 2)}.{p[2]}",
                "head" when p.Length == 3 && p[1] == "fc" => $"head.{p[2]}",
                "layers" when p.Length >= 5 && p[2] == "blocks" =>
                    $"features.{2 * int.Parse(p[1]) + 1}.{p[3]}." + string.Join('.', p[4..]).Replace("mlp.fc1.", "mlp.0.").Replace("mlp.fc2.", "mlp.3."),
                "layers" when p.Length == 5 && p[2] == "downsample" => $"features.{2 * int.Parse(p[1]) + (official ? 2 : 0)}.{p[3]}.{p[4]}",
                _ => null,
            };
            if (mapped is null) throw new CheckpointException($"'{k}' is not a Swin tensor in torchvision's, timm's or the official layout");
            outp[mapped] = t;
        }
        return outp;
    }

    /// <summary>A relative-position table [(2W−1)², heads] of window W resized to window <paramref name="newWindow"/>: each
    /// head's (2W−1)×(2W−1) grid of biases resampled bicubically (align_corners false) to (2W'−1)×(2W'−1), as the official
    /// Swin's load_pretrained does when a checkpoint meets another window (e.g. Swin-B 224/window 7 → 384/window 12);
    /// timm ≥ 0.9 resamples on BEiT's geometric grid instead, which gives other values.</summary>
    public static Tensor ResizeRelativePositionTable(Tensor table, int newWindow)
    {
        using var scope = NewDisposeScope();
        long rows = table.shape[0], heads = table.dim() == 2 ? table.shape[1] : 0;
        int side = (int)Math.Round(Math.Sqrt(rows)), newSide = 2 * newWindow - 1;
        if (heads == 0 || (long)side * side != rows || side % 2 == 0)
            throw new CheckpointException($"a relative_position_bias_table of shape [{string.Join(", ", table.shape)}] is not [(2W−1)², heads] for any window W");
        if (side == newSide) return table.alias().MoveToOuterDisposeScope();
        var grid = table.to(float32).permute(1, 0).reshape(1, heads, side, side);
        var resized = nn.functional.interpolate(grid, [newSide, newSide], mode: InterpolationMode.Bicubic, align_corners: false);
        return resized.reshape(heads, (long)newSide * newSide).permute(1, 0).contiguous().to(table.dtype).MoveToOuterDisposeScope();
    }

    public static bool Looks(IReadOnlyDictionary<string, Tensor> mapped) =>
        mapped.ContainsKey("features.0.0.weight") && mapped.ContainsKey("features.1.0.attn.relative_position_bias_table");

    /// <summary>The architecture from tensor shapes: patch size and width (patch conv), blocks per stage, heads and window
    /// (each stage's relative-position table: [(2W−1)², heads]), MLP ratio.</summary>
    public static SwinConfig InferConfig(IReadOnlyDictionary<string, Tensor> mapped, int imageSize = 224)
    {
        if (!Looks(mapped)) throw new CheckpointException("not a Swin checkpoint: no patch embedding or relative-position table");
        var conv = mapped["features.0.0.weight"];
        int embed = (int)conv.shape[0];
        var depths = new List<int>();
        var heads = new List<int>();
        int window = 0;
        for (int s = 0; mapped.ContainsKey($"features.{2 * s + 1}.0.attn.relative_position_bias_table"); s++)
        {
            int n = 0;
            while (mapped.ContainsKey($"features.{2 * s + 1}.{n}.attn.relative_position_bias_table")) n++;
            var table = mapped[$"features.{2 * s + 1}.0.attn.relative_position_bias_table"];
            int side = (int)Math.Round(Math.Sqrt(table.shape[0]));
            int w = (side + 1) / 2;
            if (side * side != table.shape[0] || side % 2 == 0 || (window != 0 && w != window))
                throw new CheckpointException($"Swin stage {s + 1}: relative-position table of {table.shape[0]} rows is not (2W−1)² for one window W");
            window = w;
            long width = mapped[$"features.{2 * s + 1}.0.norm1.weight"].shape[0];
            if (width != (long)embed << s) throw new CheckpointException($"Swin stage {s + 1} has width {width}; a Swin v1 doubles the width per stage ({embed << s})");
            depths.Add(n);
            heads.Add((int)table.shape[1]);
        }
        double mlpRatio = mapped["features.1.0.mlp.0.weight"].shape[0] / (double)embed;
        return new SwinConfig
        {
            PatchSize = (int)conv.shape[2], EmbedDim = embed, Depths = [.. depths], Heads = [.. heads], Window = window,
            MlpRatio = mlpRatio, InChannels = (int)conv.shape[1], ImageSize = imageSize,
        };
    }
}
