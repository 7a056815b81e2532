using System.Text.RegularExpressions;
using TorchSharp;
using static TorchSharp.torch;

namespace VptSharp.Backbones;

/// <summary>
/// Maps the known ViT checkpoint layouts onto <see cref="VisionTransformer"/>'s (timm) parameter names.
/// Each mapping takes the raw tensors of a file and returns timm-named tensors in PyTorch layout.
/// </summary>
public static class VitCheckpointKeys
{
    public enum Layout { Timm, Torchvision, GoogleNpz }

    public static Layout Detect(IReadOnlyDictionary<string, Tensor> raw)
    {
        if (raw.ContainsKey("class_token") || raw.Keys.Any(k => k.StartsWith("encoder.layers."))) return Layout.Torchvision;
        if (raw.ContainsKey("cls") || raw.Keys.Any(k => k.StartsWith("Transformer/"))) return Layout.GoogleNpz;
        return Layout.Timm;
    }

    public static Dictionary<string, Tensor> ToTimm(IReadOnlyDictionary<string, Tensor> raw) => Detect(raw) switch
    {
        Layout.Torchvision => FromTorchvision(raw),
        Layout.GoogleNpz => FromGoogleNpz(raw),
        _ => FromTimm(raw),
    };

    /// <summary>
    /// timm / Hugging Face: already our names. Also the self-supervised layouts built on timm's ViT: MoCo v3
    /// (keeps "module.base_encoder.*", drops the momentum encoder and predictor) and MAE (drops the decoder and
    /// mask token). DDP "module." and "model." prefixes are stripped.
    /// </summary>
    public static Dictionary<string, Tensor> FromTimm(IReadOnlyDictionary<string, Tensor> raw)
    {
        IEnumerable<KeyValuePair<string, Tensor>> items = raw;
        var moco = new Regex(@"^(module\.)?base_encoder\.");
        if (raw.Keys.Any(k => moco.IsMatch(k)))
            items = raw.Where(kv => moco.IsMatch(kv.Key)).Select(kv => KeyValuePair.Create(moco.Replace(kv.Key, ""), kv.Value));
        return items
            .Select(kv => KeyValuePair.Create(Regex.Replace(kv.Key, @"^(module\.|model\.)", ""), kv.Value))
            .Where(kv => !kv.Key.StartsWith("decoder") && kv.Key != "mask_token")
            .ToDictionary(kv => kv.Key, kv => kv.Value);
    }

    /// <summary>torchvision VisionTransformer state_dict.</summary>
    public static Dictionary<string, Tensor> FromTorchvision(IReadOnlyDictionary<string, Tensor> raw)
    {
        var o = new Dictionary<string, Tensor>();
        foreach (var (key, t) in raw)
        {
            string k = key;
            var m = Regex.Match(k, @"^encoder\.layers\.encoder_layer_(\d+)\.(.+)$");
            if (m.Success)
            {
                string rest = m.Groups[2].Value
                    .Replace("ln_1.", "norm1.").Replace("ln_2.", "norm2.")
                    .Replace("self_attention.in_proj_weight", "attn.qkv.weight")
                    .Replace("self_attention.in_proj_bias", "attn.qkv.bias")
                    .Replace("self_attention.out_proj.", "attn.proj.")
                    .Replace("mlp.0.", "mlp.fc1.").Replace("mlp.3.", "mlp.fc2.")
                    .Replace("mlp.linear_1.", "mlp.fc1.").Replace("mlp.linear_2.", "mlp.fc2.");
                o[$"blocks.{m.Groups[1].Value}.{rest}"] = t;
                continue;
            }
            k = k switch
            {
                "class_token" => "cls_token",
                "encoder.pos_embedding" => "pos_embed",
                "conv_proj.weight" => "patch_embed.proj.weight",
                "conv_proj.bias" => "patch_embed.proj.bias",
                "encoder.ln.weight" => "norm.weight",
                "encoder.ln.bias" => "norm.bias",
                "heads.head.weight" => "head.weight",
                "heads.head.bias" => "head.bias",
                _ => k,
            };
            o[k] = t;
        }
        return o;
    }

    /// <summary>Google (big_vision / vit_jax) .npz: HWIO conv kernel, per-head q/k/v kernels, "scale" = LN weight.</summary>
    public static Dictionary<string, Tensor> FromGoogleNpz(IReadOnlyDictionary<string, Tensor> raw)
    {
        var o = new Dictionary<string, Tensor>();
        Tensor Get(string k) => raw.TryGetValue(k, out var t) ? t
            : throw new CheckpointException($"Google ViT .npz is missing '{k}'");
        Tensor Dense(string k) => Get(k).t().contiguous(); // (in, out) → (out, in)

        o["patch_embed.proj.weight"] = Get("embedding/kernel").permute(3, 2, 0, 1).contiguous();
        o["patch_embed.proj.bias"] = Get("embedding/bias");
        o["cls_token"] = Get("cls");
        o["pos_embed"] = Get("Transformer/posembed_input/pos_embedding");
        o["norm.weight"] = Get("Transformer/encoder_norm/scale");
        o["norm.bias"] = Get("Transformer/encoder_norm/bias");
        if (raw.ContainsKey("head/kernel") && raw["head/kernel"].shape[1] > 0)
        {
            o["head.weight"] = Dense("head/kernel");
            o["head.bias"] = Get("head/bias");
        }
        var blockIds = raw.Keys.Select(k => Regex.Match(k, @"^Transformer/encoderblock_(\d+)/")).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value)).Distinct().Order();
        foreach (int i in blockIds)
        {
            string p = $"Transformer/encoderblock_{i}/", b = $"blocks.{i}.";
            string att = p + "MultiHeadDotProductAttention_1/";
            o[b + "norm1.weight"] = Get(p + "LayerNorm_0/scale");
            o[b + "norm1.bias"] = Get(p + "LayerNorm_0/bias");
            o[b + "norm2.weight"] = Get(p + "LayerNorm_2/scale");
            o[b + "norm2.bias"] = Get(p + "LayerNorm_2/bias");
            // query/key/value kernels are (d, heads, head_dim): flatten the output to d, then transpose to (out, in).
            var qkvW = new[] { "query", "key", "value" }.Select(n => Get(att + n + "/kernel").flatten(1).t()).ToArray();
            var qkvB = new[] { "query", "key", "value" }.Select(n => Get(att + n + "/bias").flatten()).ToArray();
            o[b + "attn.qkv.weight"] = cat(qkvW, 0).contiguous();
            o[b + "attn.qkv.bias"] = cat(qkvB, 0).contiguous();
            o[b + "attn.proj.weight"] = Get(att + "out/kernel").flatten(0, 1).t().contiguous(); // (heads, hd, d) → (d, d)
            o[b + "attn.proj.bias"] = Get(att + "out/bias");
            o[b + "mlp.fc1.weight"] = Dense(p + "MlpBlock_3/Dense_0/kernel");
            o[b + "mlp.fc1.bias"] = Get(p + "MlpBlock_3/Dense_0/bias");
            o[b + "mlp.fc2.weight"] = Dense(p + "MlpBlock_3/Dense_1/kernel");
            o[b + "mlp.fc2.bias"] = Get(p + "MlpBlock_3/Dense_1/bias");
        }
        return o;
    }

    /// <summary>
    /// Reads the architecture off tensor shapes: patch size and width from the patch projection, depth from
    /// the block count, MLP width from fc1, image size from the position grid. Head count is not visible in
    /// the shapes: it comes from <paramref name="heads"/> or the usual value for the width.
    /// </summary>
    public static VitConfig InferConfig(IReadOnlyDictionary<string, Tensor> timm, int? heads = null)
    {
        if (!timm.TryGetValue("patch_embed.proj.weight", out var pw) || !timm.TryGetValue("pos_embed", out var pos))
            throw new CheckpointException("not a ViT checkpoint: no patch_embed.proj.weight / pos_embed (after key mapping)");
        if (pw.dim() != 4 || pos.dim() != 3 || pw.shape[2] < 1 || pw.shape[2] != pw.shape[3] || pos.shape[1] < 2 || pos.shape[2] != pw.shape[0])
            throw new CheckpointException($"not a ViT checkpoint: patch_embed.proj.weight [{string.Join(",", pw.shape)}] / pos_embed [{string.Join(",", pos.shape)}] have the wrong shapes");
        int width = (int)pw.shape[0], patch = (int)pw.shape[2];
        int depth = timm.Keys.Select(k => Regex.Match(k, @"^blocks\.(\d+)\.")).Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value)).DefaultIfEmpty(-1).Max() + 1;
        int tokens = (int)pos.shape[1];
        int grid = (int)Math.Round(Math.Sqrt(tokens - 1));
        if (grid * grid != tokens - 1)
            throw new CheckpointException($"pos_embed has {tokens} tokens, which is not 1 + a square grid");
        int mlp = timm.TryGetValue("blocks.0.mlp.fc1.weight", out var f1) ? (int)f1.shape[0] : 4 * width;
        return new VitConfig
        {
            ImageSize = grid * patch, PatchSize = patch, Width = width, Depth = depth,
            Heads = heads ?? VitConfig.DefaultHeads(width), MlpDim = mlp, InChannels = (int)pw.shape[1],
        };
    }

    /// <summary>Bicubic resize of the position grid (CLS position kept) to a new image size.</summary>
    public static Tensor ResizePosEmbed(Tensor pos, int newGrid)
    {
        using var scope = NewDisposeScope();
        int tokens = (int)pos.shape[1], d = (int)pos.shape[2];
        int oldGrid = (int)Math.Round(Math.Sqrt(tokens - 1));
        if (oldGrid == newGrid) return pos.alias().MoveToOuterDisposeScope();
        var cls = pos[.., ..1];
        var grid = pos[.., 1..].reshape(1, oldGrid, oldGrid, d).permute(0, 3, 1, 2).to(float32);
        var resized = nn.functional.interpolate(grid, [newGrid, newGrid], mode: InterpolationMode.Bicubic, align_corners: false);
        var flat = resized.permute(0, 2, 3, 1).reshape(1, newGrid * newGrid, d).to(pos.dtype);
        return cat([cls, flat], 1).MoveToOuterDisposeScope();
    }
}

