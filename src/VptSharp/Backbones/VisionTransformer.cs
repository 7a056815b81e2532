using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace VptSharp.Backbones;

/// <summary>Multi-head self-attention with a fused qkv projection (see <see cref="Attend"/> for the kernel).
/// Submodules are invoked with call() (not forward()) throughout the backbone so module hooks see every op.</summary>
public sealed class Attention : Module<Tensor, Tensor>
{
    readonly int heads;
    public readonly Linear qkv, proj;

    public Attention(int width, int heads) : base("Attention")
    {
        this.heads = heads;
        qkv = Linear(width, 3 * width);
        proj = Linear(width, width);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        var qkvOut = qkv.call(x).reshape(b, n, 3, heads, d / heads).permute(2, 0, 3, 1, 4);
        var o = Attend(qkvOut[0], qkvOut[1], qkvOut[2], null);
        return proj.call(o.transpose(1, 2).reshape(b, n, d)).MoveToOuterDisposeScope();
    }

    /// <summary>Keys and values of already-normalised prefix tokens [b, p, d] (only the k and v rows of qkv are computed).</summary>
    public KeyValuePrefix KeyValuesOf(Tensor normed)
    {
        using var scope = NewDisposeScope();
        long b = normed.shape[0], p = normed.shape[1], d = normed.shape[2];
        var kv = functional.linear(normed, qkv.weight!.narrow(0, d, 2 * d), qkv.bias!.narrow(0, d, 2 * d))
            .reshape(b, p, 2, heads, d / heads).permute(2, 0, 3, 1, 4); // [2, b, heads, p, head_dim]
        return new KeyValuePrefix(kv[0].MoveToOuterDisposeScope(), kv[1].MoveToOuterDisposeScope());
    }

    /// <summary>
    /// Attention whose keys/values are the prefix's followed by the sequence's own (prefix-tuning / VPT-prefix);
    /// queries and output cover the sequence only. No prefix = <see cref="forward"/>, unchanged.
    /// </summary>
    public Tensor Forward(Tensor x, KeyValuePrefix? prefix)
    {
        if (prefix is not KeyValuePrefix pre || pre.Length == 0) return forward(x);
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        var qkvOut = qkv.call(x).reshape(b, n, 3, heads, d / heads).permute(2, 0, 3, 1, 4);
        var k = cat([pre.Keys.expand(b, -1, -1, -1), qkvOut[1]], 2);
        var v = cat([pre.Values.expand(b, -1, -1, -1), qkvOut[2]], 2);
        Tensor? mask = null;
        if (pre.Mask is Tensor m)
        {
            // The sequence's own keys are never masked; the mask takes the attention's dtype (bf16 engines).
            var prefixMask = m.to(x.dtype).reshape(m.shape[0], 1, 1, pre.Length).expand(b, 1, 1, pre.Length);
            mask = cat([prefixMask, zeros(b, 1, 1, n, dtype: x.dtype, device: x.device)], 3);
        }
        var o = Attend(qkvOut[0], k, v, mask);
        return proj.call(o.transpose(1, 2).reshape(b, n, d)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// softmax(q kᵀ / √d_head + mask) v. On the CPU as two batched matrix products: libtorch 2.10's CPU
    /// scaled_dot_product_attention (flash kernel) runs at 36 GFLOP/s backward and 90 forward in bf16 at ViT-B/16 shapes,
    /// the products at 130 and 225 (`vpt bench --profile`, avx512_bf16 EPYC); elsewhere the fused kernel.
    /// </summary>
    public static Tensor Attend(Tensor q, Tensor k, Tensor v, Tensor? additiveMask)
    {
        if (q.device_type != DeviceType.CPU) return functional.scaled_dot_product_attention(q, k, v, attn_mask: additiveMask);
        using var scope = NewDisposeScope();
        // An explicit, disposed-after-use Scalar: an implicit double → Scalar conversion can be finalized by the GC while
        // libtorch still reads it (seen here as "Unknown scalar type" from at::native::mul mid-training).
        using var scale = (1.0 / Math.Sqrt(q.shape[^1])).ToScalar();
        var scores = q.mul(scale).matmul(k.transpose(-2, -1));
        if (additiveMask is not null) scores = scores.add(additiveMask, Scalars.One);
        return functional.softmax(scores, -1).matmul(v).MoveToOuterDisposeScope();
    }
}

public sealed class Mlp : Module<Tensor, Tensor>
{
    public readonly Linear fc1, fc2;
    public Mlp(int width, int hidden) : base("Mlp")
    {
        fc1 = Linear(width, hidden);
        fc2 = Linear(hidden, width);
        RegisterComponents();
    }
    public override Tensor forward(Tensor x)
    {
        using var h = functional.gelu(fc1.call(x));
        return fc2.call(h);
    }
}

/// <summary>Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)).</summary>
public sealed class Block : Module<Tensor, Tensor>
{
    public readonly LayerNorm norm1, norm2;
    public readonly Attention attn;
    public readonly Mlp mlp;

    public Block(VitConfig c) : base("Block")
    {
        norm1 = LayerNorm(c.Width, c.LayerNormEps);
        attn = new Attention(c.Width, c.Heads);
        norm2 = LayerNorm(c.Width, c.LayerNormEps);
        mlp = new Mlp(c.Width, c.MlpDim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => Forward(x, 0, NoHooks.Instance);

    public Tensor Forward(Tensor x, int index, IBlockHooks hooks)
    {
        using var scope = NewDisposeScope();
        // Only hooks that supply a prefix change attention; the default path is the plain forward.
        var prefix = hooks.PrefixKeyValues(index);
        if (prefix is null && hooks.KeyValueTokens(index, x.shape[0]) is Tensor kvTokens)
            prefix = attn.KeyValuesOf(norm1.call(kvTokens.to(x.dtype)));
        var h = x.add(prefix is KeyValuePrefix pre
            ? attn.Forward(norm1.call(x), pre)
            : attn.call(norm1.call(x)), Scalars.One);
        return h.add(hooks.AfterMlp(index, mlp.call(norm2.call(h))), Scalars.One).MoveToOuterDisposeScope();
    }

    /// <summary>Every bias of the block (both norms, qkv, attention projection, both MLP layers).</summary>
    public IEnumerable<(string Name, Parameter Param)> Biases() =>
    [
        ("norm1.bias", norm1.bias!), ("attn.qkv.bias", attn.qkv.bias!), ("attn.proj.bias", attn.proj.bias!),
        ("norm2.bias", norm2.bias!), ("mlp.fc1.bias", mlp.fc1.bias!), ("mlp.fc2.bias", mlp.fc2.bias!),
    ];
}

public sealed class PatchEmbed : Module<Tensor, Tensor>
{
    public readonly Conv2d proj;
    public PatchEmbed(VitConfig c) : base("PatchEmbed")
    {
        proj = Conv2d(c.InChannels, c.Width, c.PatchSize, stride: c.PatchSize);
        RegisterComponents();
    }
    /// <summary>[B, C, H, W] → [B, N, d] (row-major patch order).</summary>
    public override Tensor forward(Tensor x)
    {
        using var y = proj.forward(x);
        return y.flatten(2).transpose(1, 2);
    }
}

/// <summary>
/// Vision Transformer (Dosovitskiy et al., 2021) with timm's parameter names, so a timm state dict loads
/// unchanged; other layouts are mapped in <see cref="VitCheckpointKeys"/>. Tuning methods act through
/// <see cref="IBlockHooks"/> and the capability interfaces only.
/// </summary>
public sealed class VisionTransformer : Backbone, ITokenSequenceBackbone, IAttentionPrefixBackbone, IPatchProjectionBackbone
{
    public VitConfig Config { get; }
    public readonly PatchEmbed patch_embed;
    public readonly Parameter cls_token, pos_embed;
    public readonly ModuleList<Block> blocks;
    /// <summary>The final norm over the sequence (null with <see cref="VitConfig.GlobalPool"/>).</summary>
    public readonly LayerNorm? norm;
    /// <summary>MAE's norm after global pooling (only with <see cref="VitConfig.GlobalPool"/>).</summary>
    public readonly LayerNorm? fc_norm;
    public Linear? head;
    LayerNorm FinalNorm => norm ?? fc_norm!;
    string FinalName => norm is null ? "fc_norm" : "norm";

    public VisionTransformer(VitConfig config, int numClasses = 0) : base("VisionTransformer")
    {
        config.Validate();
        Config = config;
        patch_embed = new PatchEmbed(config);
        cls_token = Parameter(zeros(1, 1, config.Width));
        pos_embed = Parameter(zeros(1, 1 + config.NumPatches, config.Width));
        blocks = new ModuleList<Block>(Enumerable.Range(0, config.Depth).Select(_ => new Block(config)).ToArray());
        if (config.GlobalPool) fc_norm = LayerNorm(config.Width, config.LayerNormEps);
        else norm = LayerNorm(config.Width, config.LayerNormEps);
        head = numClasses > 0 ? Linear(config.Width, numClasses) : null;
        RegisterComponents();
        InitWeights();
    }

    /// <summary>timm-style init for training from scratch: trunc-normal(0.02) weights, zero biases.</summary>
    public void InitWeights()
    {
        using var _ = no_grad();
        Init.TruncNormal(pos_embed, 0.02);
        Init.TruncNormal(cls_token, 1e-6);
        foreach (var (name, p) in named_parameters())
        {
            if (name.StartsWith("blocks") || name.StartsWith("head"))
            {
                if (name.EndsWith(".weight") && p.dim() == 2) Init.TruncNormal(p, 0.02);
                else if (name.EndsWith(".bias")) p.zero_();
            }
        }
    }

    public override string Family => "vit";
    public override string Architecture => $"{Family} {System.Text.Json.JsonSerializer.Serialize(Config)}";
    public override BackboneCapability Capabilities =>
        BackboneCapability.TokenSequence | BackboneCapability.ClassToken | BackboneCapability.MlpHook
        | BackboneCapability.AttentionPrefix | BackboneCapability.PatchProjection;
    public override int NumFeatures => Config.Width;
    public override int Depth => Config.Depth;
    public override int ImageSize => Config.ImageSize;
    public override int InChannels => Config.InChannels;
    public override Linear? Classifier => head;
    public int Width => Config.Width;
    public int PatchSize => Config.PatchSize;
    public int NumPatches => Config.NumPatches;
    public int Heads => Config.Heads;
    public int HeadDim => Config.HeadDim;
    public Parameter ClassToken => cls_token;

    /// <summary>Patch embedding + CLS + position embedding: [B, 1+N, d].</summary>
    public override Tensor Embed(Tensor images)
    {
        using var scope = NewDisposeScope();
        var patches = patch_embed.forward(images);
        var cls = cls_token.expand(images.shape[0], -1, -1);
        return cat([cls, patches], 1).add(pos_embed, Scalars.One).MoveToOuterDisposeScope();
    }

    /// <summary>Runs the blocks (calling the hooks before each) and the final norm over the token sequence [B, T, d] (with
    /// global pooling, MAE, the sequence is returned un-normed: its norm comes after pooling).</summary>
    public override Tensor ForwardBlocks(Tensor tokens, IBlockHooks hooks)
    {
        using var scope = NewDisposeScope();
        var x = tokens;
        for (int i = 0; i < blocks.Count; i++)
            x = blocks[i].Forward(hooks.BeforeBlock(i, x), i, hooks);
        return (norm is null ? x.alias() : norm.call(x)).MoveToOuterDisposeScope();
    }

    /// <summary>The class token of a final-norm sequence (token 0); with global pooling (MAE) fc_norm of the mean of every
    /// token after the class token.</summary>
    public override Tensor Pool(Tensor features) => fc_norm is null ? features.select(1, 0) : PoolTokens(features, 1, features.shape[1] - 1);

    public bool GlobalPool => fc_norm is not null;

    /// <summary>fc_norm(mean of tokens first … first + count − 1) of an un-normed sequence (global pooling).</summary>
    public Tensor PoolTokens(Tensor features, long first, long count)
    {
        if (fc_norm is null) throw new InvalidOperationException("PoolTokens is the global-pooling head; this ViT pools its class token");
        using var mean = features.narrow(1, first, count).mean([1]);
        return fc_norm.call(mean);
    }

    public KeyValuePrefix KeyValuesOf(int block, Tensor tokens) => blocks[block].attn.KeyValuesOf(blocks[block].norm1.forward(tokens));

    public Tensor ProjectPatches(Tensor pixelPatches) => patch_embed.proj.forward(pixelPatches).flatten(1);

    public override void ResetClassifier(int numClasses)
    {
        if (head is not null)
        {
            _internal_submodules.Remove("head"); // TorchSharp has no unregister; the registry is this module's own
            head.Dispose();
        }
        head = numClasses > 0 ? Linear(Config.Width, numClasses) : null;
        if (head is not null)
        {
            using (no_grad())
            {
                Init.TruncNormal(head.weight!, 0.02);
                head.bias!.zero_();
            }
            register_module("head", head);
        }
    }

    public override IEnumerable<(string Name, Parameter Param)> Parameters(ParameterGroup group, int count = 1) => group switch
    {
        ParameterGroup.All => named_parameters().Where(p => !p.name.StartsWith("head.")).Select(p => (p.name, p.parameter)),
        // Patch projection, each block's (both norms, qkv, attention projection, both MLP layers), final norm.
        ParameterGroup.Biases => new[] { ("patch_embed.proj.bias", patch_embed.proj.bias!) }
            .Concat(blocks.SelectMany((b, i) => b.Biases().Select(p => ($"blocks.{i}.{p.Name}", p.Param))))
            .Append((FinalName + ".bias", FinalNorm.bias!)),
        ParameterGroup.Norms => blocks.SelectMany((b, i) => new[]
            {
                ($"blocks.{i}.norm1.weight", b.norm1.weight!), ($"blocks.{i}.norm1.bias", b.norm1.bias!),
                ($"blocks.{i}.norm2.weight", b.norm2.weight!), ($"blocks.{i}.norm2.bias", b.norm2.bias!),
            }).Concat([(FinalName + ".weight", FinalNorm.weight!), (FinalName + ".bias", FinalNorm.bias!)]),
        ParameterGroup.LastBlocks => LastBlocks(count),
        ParameterGroup.PatchProjection => [("patch_embed.proj.weight", patch_embed.proj.weight!), ("patch_embed.proj.bias", patch_embed.proj.bias!)],
        _ => throw new ArgumentOutOfRangeException(nameof(group), group, null),
    };

    IEnumerable<(string Name, Parameter Param)> LastBlocks(int count)
    {
        if (count < 1 || count > Config.Depth) throw new ArgumentOutOfRangeException(nameof(count), count, $"the backbone has {Config.Depth} blocks");
        return Enumerable.Range(Config.Depth - count, count)
            .SelectMany(i => blocks[i].named_parameters().Select(p => ($"blocks.{i}.{p.name}", p.parameter)))
            .Concat(FinalNorm.named_parameters().Select(p => ($"{FinalName}.{p.name}", p.parameter)));
    }
}
